//! A hostile or buggy peer against our destination: a flood of connection starts must
//! open no more sockets than tcp.max_active_connections allows, and a burst of bad
//! messages must not flood the console; the open connection goes on echoing meanwhile.
//! The peer is a scripted source talking to the real destination binary through the
//! testbed.

mod common;

use common::*;
use localproxy::protocol::{Type, SUBPROTOCOL_V3};
use localproxy::testbed::scripted::{self, Scripted};
use localproxy::testbed::Mode;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the destination's fd table")
        .count()
}

/// Lines containing `needle`, and the counts of `(N more like this suppressed: what)`
/// lines about `what`.
fn shown_and_suppressed(log: &[String], needle: &str, what: &str) -> (usize, u64) {
    let shown = log.iter().filter(|l| l.contains(needle)).count();
    let suppressed = log
        .iter()
        .filter(|l| l.contains(&format!("more like this suppressed: {what}")))
        .map(|l| {
            let open = l.find('(').expect("a count in parentheses");
            l[open + 1..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a number")
        })
        .sum();
    (shown, suppressed)
}

/// Echoes `data` on connection 1 of stream 1 of service A through the scripted source.
fn echo_conn1(sc: &mut Scripted, data: &[u8]) {
    for chunk in data.chunks(16 * 1024) {
        sc.queue(&scripted::data(1, "A", 1, chunk)).unwrap();
    }
    sc.flush().unwrap();
    let mut got = Vec::new();
    while got.len() < data.len() {
        let m = sc
            .next_where(WAIT, |m| m.kind == Type::Data && m.connection_id == 1)
            .expect("echo on connection 1");
        got.extend_from_slice(&m.payload);
    }
    assert!(got == data, "the echo on connection 1 differs");
}

#[test]
fn six_hundred_connection_starts_open_at_most_the_limit_and_the_open_one_goes_on() {
    watchdog(LIMIT, || {
        let rig = Rig::new("flood", &["A"], &[("tcp.max_active_connections", "128")]);
        let echo = echo_server();
        let dst = rig.destination(&format!("A={}", echo.port), &[]);
        let mut sc = Scripted::connect(&rig.tb, &rig.t.source_token, Mode::Source, SUBPROTOCOL_V3)
            .expect("connect the scripted source");
        sc.service_ids(WAIT).unwrap();
        sc.send(&scripted::message(Type::StreamStart, 1, "A", 1))
            .unwrap();
        echo_conn1(&mut sc, &pattern(10_000, 1));
        let before = open_fds(dst.pid());

        let started = Instant::now();
        for cid in 2..=601u32 {
            sc.queue(&scripted::message(Type::ConnectionStart, 1, "A", cid))
                .unwrap();
            if cid % 50 == 0 {
                sc.flush().unwrap();
            }
        }
        sc.flush().unwrap();
        // 127 fit beside connection 1; the other 473 are reset.
        let mut resets = Vec::new();
        while resets.len() < 473 {
            let m = sc
                .next_where(WAIT, |m| m.kind == Type::ConnectionReset)
                .unwrap_or_else(|e| panic!("after {} resets: {e}", resets.len()));
            assert_eq!((m.stream_id, m.service_id.as_str()), (1, "A"), "{m:?}");
            resets.push(m.connection_id);
        }
        resets.sort_unstable();
        assert_eq!(resets, (129..=601).collect::<Vec<u32>>());
        // The 127 admitted ones reach the target; wait for them before counting fds.
        dst.wait_nth_line("opened to", 128);
        let after = open_fds(dst.pid());
        eprintln!("flood: destination fds {before} before, {after} after 600 CONNECTION_STARTs (limit 128)");
        assert!(
            after <= before + 127 + 4,
            "{after} fds after the flood, {before} before: more than the limit opened"
        );

        // The open connection goes on.
        echo_conn1(&mut sc, &pattern(200_000, 2));

        // The refusals were logged, a few per second, and the rest counted.
        dst.wait_line("more like this suppressed: starts refused");
        let secs = started.elapsed().as_secs() as usize + 1;
        let (shown, suppressed) =
            shown_and_suppressed(&dst.log(), "refused connection", "starts refused");
        assert!(
            shown <= 5 * (secs + 1),
            "{shown} refusal lines in {secs} s: not limited"
        );
        assert_eq!(
            shown as u64 + suppressed,
            473,
            "every refusal is shown or counted"
        );
        assert_eq!(
            dst.count("opened to"),
            128,
            "no connection beyond the limit"
        );
    });
}

#[test]
fn a_burst_of_unknown_messages_is_limited_on_the_console() {
    watchdog(LIMIT, || {
        let rig = Rig::new("burst", &["A"], &[]);
        let echo = echo_server();
        let dst = rig.destination(&format!("A={}", echo.port), &[]);
        let mut sc = Scripted::connect(&rig.tb, &rig.t.source_token, Mode::Source, SUBPROTOCOL_V3)
            .expect("connect the scripted source");
        sc.service_ids(WAIT).unwrap();
        sc.send(&scripted::message(Type::StreamStart, 1, "A", 1))
            .unwrap();
        echo_conn1(&mut sc, &pattern(10_000, 3));
        let started = Instant::now();
        for i in 0..1000u32 {
            sc.queue(&scripted::message(Type::Other(99), 1, "A", 1))
                .unwrap();
            // And DATA for connections that were never opened.
            sc.queue(&scripted::data(1, "A", 1000 + i, b"stray"))
                .unwrap();
            if i % 100 == 99 {
                sc.flush().unwrap();
            }
        }
        echo_conn1(&mut sc, &pattern(100_000, 4));
        dst.wait_line("more like this suppressed: messages of unknown type");
        let secs = started.elapsed().as_secs() as usize + 1;
        let (shown, suppressed) = shown_and_suppressed(
            &dst.log(),
            "dropped a message of unknown type 99",
            "messages of unknown type",
        );
        eprintln!("burst: 1000 unknown messages -> {shown} lines shown, {suppressed} counted");
        assert!(
            shown <= 5 * (secs + 1),
            "{shown} lines in {secs} s: not limited"
        );
        assert_eq!(shown as u64 + suppressed, 1000);
        assert_eq!(
            dst.count("dropped DATA for closed connection"),
            0,
            "stray DATA is a debug line: not on the console at the default level"
        );
    });
}
