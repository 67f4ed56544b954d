//! Tests of the tunneling-service double itself, with the proxy's own connect code as a
//! bare client: token pairing and single use, modes, subprotocols and SERVICE_IDS,
//! relay (also paced by a relay rate), STREAM_RESET when a peer leaves, pings, the
//! reject hook.

mod common;

use common::{temp_dir, track, untrack, watchdog, WAIT};
use localproxy::protocol::{Message as TunnelMessage, Type, Version};
use localproxy::testbed::scripted::{ConnectError, Scripted};
use localproxy::testbed::{How, Mode, Testbed, Tunnel};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn connect_as(
    tb: &Testbed,
    token: &str,
    mode: Mode,
    client_token: Option<&str>,
    subprotocol: &str,
) -> Result<Scripted, ConnectError> {
    Scripted::connect_with(tb, token, mode, client_token, subprotocol)
}

/// The next tunnel message as (type, stream, service ids or service id, payload).
fn next(c: &mut Scripted) -> (Type, i32, Vec<String>, Vec<u8>) {
    let m = c.next(WAIT).expect("a tunnel message from the testbed");
    let services = if m.kind == Type::ServiceIds {
        m.service_ids
    } else {
        vec![m.service_id]
    };
    (m.kind, m.stream_id, services, m.payload)
}

const V3: &str = "aws.iot.securetunneling-3.0";
const V1: &str = "aws.iot.securetunneling-1.0";

fn pair(tb: &Testbed, t: &Tunnel) -> (Scripted, Scripted) {
    let mut src = connect_as(tb, &t.source_token, Mode::Source, None, V3).unwrap();
    let mut dst = connect_as(tb, &t.destination_token, Mode::Destination, None, V3).unwrap();
    assert_eq!(next(&mut src).0, Type::ServiceIds);
    assert_eq!(next(&mut dst).0, Type::ServiceIds);
    assert!(tb.wait_connected(t, Mode::Source, WAIT));
    (src, dst)
}

#[test]
fn service_ids_come_first_on_3_0_and_never_on_1_0() {
    watchdog(LIMIT, || {
        let tb = Testbed::start(&temp_dir("tb-ids")).unwrap();
        let t = tb.open_tunnel(&["A", "B"]);
        let mut c = connect_as(&tb, &t.source_token, Mode::Source, None, V3).unwrap();
        assert_eq!(c.version, Version::V3);
        let (kind, _, ids, _) = next(&mut c);
        assert_eq!(
            (kind, ids),
            (Type::ServiceIds, vec!["A".to_string(), "B".to_string()])
        );

        let t = tb.open_tunnel(&[]);
        let mut c = connect_as(&tb, &t.source_token, Mode::Source, None, V1).unwrap();
        assert_eq!(c.version, Version::V1);
        assert_eq!(tb.subprotocol(&t, Mode::Source).as_deref(), Some(V1));
        // The first message this peer sees is the one we inject, not SERVICE_IDS.
        assert!(tb.wait_connected(&t, Mode::Source, WAIT));
        assert!(tb.inject_message(&t, Mode::Source, &TunnelMessage::new(Type::SessionReset)));
        assert_eq!(next(&mut c).0, Type::SessionReset);
    });
}

#[test]
fn tokens_are_single_use_without_a_client_token() {
    watchdog(LIMIT, || {
        let tb = Testbed::start(&temp_dir("tb-single")).unwrap();
        let t = tb.open_tunnel(&["A"]);
        drop(connect_as(&tb, &t.source_token, Mode::Source, None, V3).unwrap());
        assert!(tb.wait_disconnected(&t, Mode::Source, WAIT));
        match connect_as(&tb, &t.source_token, Mode::Source, None, V3) {
            Err(ConnectError::Rejected {
                status: 400,
                detail,
            }) => assert!(
                detail.contains("previously used and can not be used again"),
                "{detail}"
            ),
            other => panic!("expected 400, got {:?}", other.err()),
        }
        // With a client token the same token reconnects; another client token does not.
        let ct = "0123456789abcdef0123456789abcdef";
        drop(connect_as(&tb, &t.destination_token, Mode::Destination, Some(ct), V3).unwrap());
        assert!(tb.client_token_seen(&t, Mode::Destination));
        assert!(connect_as(&tb, &t.destination_token, Mode::Destination, Some(ct), V3).is_ok());
        let other = "ffffffffffffffffffffffffffffffff";
        assert!(matches!(
            connect_as(
                &tb,
                &t.destination_token,
                Mode::Destination,
                Some(other),
                V3
            ),
            Err(ConnectError::Rejected { status: 400, .. })
        ));
        assert_eq!(tb.connection_count(&t, Mode::Destination), 2);
    });
}

#[test]
fn wrong_mode_unknown_token_and_reject_hook() {
    watchdog(LIMIT, || {
        let tb = Testbed::start(&temp_dir("tb-reject")).unwrap();
        let t = tb.open_tunnel(&["A"]);
        assert!(matches!(
            connect_as(&tb, &t.source_token, Mode::Destination, None, V3),
            Err(ConnectError::Rejected { status: 400, .. })
        ));
        assert!(matches!(
            connect_as(&tb, "no-such-token", Mode::Source, None, V3),
            Err(ConnectError::Rejected { status: 401, .. })
        ));
        tb.reject_upgrades(Some(503));
        assert!(matches!(
            connect_as(&tb, &t.source_token, Mode::Source, None, V3),
            Err(ConnectError::Status { status: 503, .. })
        ));
        tb.reject_upgrades(None);
        assert!(connect_as(&tb, &t.source_token, Mode::Source, None, V3).is_ok());
    });
}

#[test]
fn relays_both_ways_and_resets_streams_when_a_peer_leaves() {
    watchdog(LIMIT, || {
        let tb = Testbed::start(&temp_dir("tb-relay")).unwrap();
        let t = tb.open_tunnel(&["A"]);
        let (mut src, mut dst) = pair(&tb, &t);
        let mut start = TunnelMessage::new(Type::StreamStart);
        start.stream_id = 7;
        start.service_id = "A";
        start.connection_id = 1;
        src.send(&start).unwrap();
        assert_eq!(next(&mut dst).0, Type::StreamStart);
        let mut data = TunnelMessage::new(Type::Data);
        data.stream_id = 7;
        data.service_id = "A";
        data.connection_id = 1;
        data.payload = b"hello";
        dst.send(&data).unwrap();
        let (kind, stream, _, payload) = next(&mut src);
        assert_eq!(
            (kind, stream, payload.as_slice()),
            (Type::Data, 7, &b"hello"[..])
        );
        let rec = tb.recorded(&t, Mode::Source);
        assert_eq!(rec[0].kind, Type::StreamStart.raw());
        assert_eq!(rec[0].connection_id, 1);
        // The source drops: the destination is told the stream is gone.
        assert!(tb.drop_peer(&t, Mode::Source, How::Abort));
        let (kind, stream, service, _) = next(&mut dst);
        assert_eq!(
            (kind, stream, service),
            (Type::StreamReset, 7, vec!["A".to_string()])
        );
    });
}

#[test]
fn pings_are_answered_with_the_same_payload() {
    watchdog(LIMIT, || {
        let tb = Testbed::start(&temp_dir("tb-ping")).unwrap();
        let t = tb.open_tunnel(&["A"]);
        let mut c = connect_as(&tb, &t.source_token, Mode::Source, None, V3).unwrap();
        let pong = c.ping(b"1234567", WAIT).unwrap();
        assert_eq!(pong, b"1234567");
    });
}

#[test]
fn a_relay_rate_paces_reads_and_relays_every_message_intact() {
    watchdog(LIMIT, || {
        let tb = Testbed::start(&temp_dir("tb-rate")).unwrap();
        let t = tb.open_tunnel(&["A"]);
        let (mut src, mut dst) = pair(&tb, &t);
        const RATE: f64 = 2.0; // MiB/s
        const COUNT: usize = 96; // 32 KiB each: 3 MiB
        tb.set_relay_rate(Some(RATE));
        let started = std::time::Instant::now();
        let writer = std::thread::spawn(move || {
            let mut start = TunnelMessage::new(Type::StreamStart);
            start.stream_id = 1;
            start.service_id = "A";
            start.connection_id = 1;
            src.send(&start).unwrap();
            let payload: Vec<u8> = (0..32768u32).map(|i| (i % 251) as u8).collect();
            for _ in 0..COUNT {
                let mut data = TunnelMessage::new(Type::Data);
                data.stream_id = 1;
                data.service_id = "A";
                data.connection_id = 1;
                data.payload = &payload;
                src.send(&data).unwrap();
            }
            src
        });
        assert_eq!(next(&mut dst).0, Type::StreamStart);
        for _ in 0..COUNT {
            let (kind, stream, _, payload) = next(&mut dst);
            assert_eq!((kind, stream, payload.len()), (Type::Data, 1, 32768));
            assert!(payload
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8));
        }
        let secs = started.elapsed().as_secs_f64();
        let _src = writer.join().unwrap();
        // A token bucket can only be slower than its rate, never faster, whatever the
        // load: 3 MiB at 2 MiB/s, less the bucket's first 16 KiB, takes at least 1.4 s.
        // (No upper bound: a slow machine may take longer; the watchdog catches a hang.)
        assert!(
            secs > 1.4,
            "3 MiB went through a 2 MiB/s relay in {secs:.2} s"
        );
        let rec = tb.recorded(&t, Mode::Source);
        assert_eq!(rec.len(), 1 + COUNT);
        assert!(rec[1..].iter().all(|r| r.payload_len == 32768));
        assert_eq!(tb.stats().messages[0], 1 + COUNT as u64);
    });
}

/// Runs the `testbed` binary from the checkout with `args`; stdout as text.
fn testbed_cmd(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

#[test]
fn serve_prints_commands_that_work_from_the_checkout_and_cleans_up() {
    watchdog(WAIT, || {
        use std::io::BufRead;
        let mut child = testbed_cmd(&["serve"]).spawn().unwrap();
        track(child.id());
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for line in out.lines() {
            let line = line.unwrap();
            let end = line.contains("Ctrl-C stops.");
            lines.push(line);
            if end {
                break;
            }
        }
        let text = lines.join("\n");
        // The localproxy built beside the testbed, as a path from the checkout.
        let lp = std::path::Path::new(env!("CARGO_BIN_EXE_localproxy"));
        let rel = lp.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        assert!(text.contains(&format!(" {} -e ", rel.display())), "{text}");
        assert!(
            !text.contains("unless the proxy sends a client token"),
            "{text}"
        );
        let ca = text
            .split("hashed dir ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap()
            .to_string();
        let dir = std::path::Path::new(&ca).parent().unwrap().to_path_buf();
        assert!(dir.is_dir());
        localproxy::sys::send_signal(child.id(), localproxy::sys::SIGINT).unwrap();
        assert!(child.wait().unwrap().success());
        untrack(child.id());
        assert!(!dir.exists(), "{} is left behind", dir.display());
    });
}

#[test]
fn demo_says_exited_0_and_keeps_the_logs_it_names() {
    watchdog(WAIT * 2, || {
        let o = testbed_cmd(&["demo", "--mib", "1"]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            text.contains("SIGTERM: source exited 0, destination exited 0"),
            "{text}"
        );
        let dir = text
            .lines()
            .find_map(|l| l.strip_prefix("logs kept in "))
            .unwrap_or_else(|| panic!("{text}"));
        let dir = std::path::Path::new(dir);
        assert!(dir.join("source.log").is_file(), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    });
}
