//! A hostile service (the testbed's `hostile` cases) against the real proxy binary: a
//! peer that writes as fast as it can and never reads must not grow the proxy's memory.
//! Before the fix, 125-byte pings without reading took a destination from 8.8 MB to
//! 157 MB in 10 s: every pong and every CONNECTION_RESET it caused waited in an
//! unbounded output buffer while the proxy kept reading.
//!
//! Each case runs 30 s against a destination; then the testbed drops that connection,
//! and the proxy's next one, served normally, must carry an echo intact.

mod common;

use common::*;
use localproxy::testbed::hostile::{Answer, Case, Report};
use localproxy::testbed::Mode;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(240);
const CASE_FOR: Duration = Duration::from_secs(30);
const RSS_BOUND_KB: u64 = 16 * 1024;

fn status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the proxy runs");
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The healthy half of a case: a normal proxy of the other mode than `mode`, and an
/// echo of `len` bytes through both to 127.0.0.1:`port`.
fn healthy_echo(r: &Rig, mode: Mode, dst_map: &str, src_map: &str, port: u16, len: usize) {
    let _other = match mode {
        Mode::Destination => r.source(src_map, &[]),
        Mode::Source => r.destination(dst_map, &[]),
    };
    echo_check(port, &pattern(len, len as u64));
}

/// Plays `case` against a destination for [`CASE_FOR`]; returns the case's report, the
/// destination's peak RSS over it and the destination, after checking that a healthy
/// session follows.
fn against_destination(tag: &str, case: Case, settings: &[(&str, &str)]) -> (Report, u64, Proxy) {
    against_destination_for(tag, case, CASE_FOR, settings)
}

/// [`against_destination`] with the case played for `duration` at most.
fn against_destination_for(
    tag: &str,
    case: Case,
    duration: Duration,
    settings: &[(&str, &str)],
) -> (Report, u64, Proxy) {
    against(Mode::Destination, tag, case, duration, settings)
}

/// Plays `case` against a proxy of `mode` for `duration` at most; returns the case's
/// report, that proxy's peak RSS over it and the proxy, after checking that a healthy
/// session with a proxy of the other mode follows.
fn against(
    mode: Mode,
    tag: &str,
    case: Case,
    duration: Duration,
    settings: &[(&str, &str)],
) -> (Report, u64, Proxy) {
    let echo = echo_server();
    let r = Rig::new(tag, &["SSH"], settings);
    r.tb.set_recording(false);
    r.tb.set_hostile(mode, Some((case, duration)));
    let port = free_port();
    let (dst_map, src_map) = (format!("SSH={}", echo.port), format!("SSH={port}"));
    let target = match mode {
        Mode::Destination => r.destination(&dst_map, &[]),
        Mode::Source => r.source(&src_map, &[]),
    };
    let report =
        r.tb.wait_hostile_report(duration + WAIT)
            .expect("the hostile case ended");
    let peak = status_kb(target.pid(), "VmHWM:");
    eprintln!(
        "{}: {} frames ({} messages, {} MiB) sent to the {}, {} stalls; peak RSS {peak} kB",
        case.name(),
        report.frames,
        report.messages,
        report.bytes >> 20,
        mode.as_str(),
        report.stalls
    );
    // The proxy is still up, came back, and tunnels.
    target.wait_nth_line("tunnel ready", 2);
    healthy_echo(&r, mode, &dst_map, &src_map, port, 1 << 20);
    (report, peak, target)
}

#[test]
fn a_peer_that_pings_without_reading_leaves_memory_bounded() {
    watchdog(LIMIT, || {
        let (report, peak, _) = against_destination("hostile-ping", Case::PingFlood, &[]);
        assert!(report.frames > 0, "the flood sent nothing: {report:?}");
        assert!(
            peak < RSS_BOUND_KB,
            "destination peak RSS {peak} kB under a ping flood"
        );
    });
}

#[test]
fn floods_against_a_source_leave_memory_bounded() {
    watchdog(LIMIT, || {
        // A source accepts no starts (each is dropped with a rate-limited line) and
        // answers pings: neither may grow it while the peer does not read.
        for case in [Case::PingFlood, Case::StartFlood] {
            let (report, peak, _) =
                against(Mode::Source, "hostile-src-flood", case, CASE_FOR / 2, &[]);
            assert!(report.frames > 0, "{}: the flood sent nothing", case.name());
            assert!(
                peak < RSS_BOUND_KB,
                "{}: source peak RSS {peak} kB",
                case.name()
            );
        }
    });
}

#[test]
fn a_start_flood_while_the_wire_is_full_leaves_memory_bounded() {
    watchdog(LIMIT, || {
        let (report, peak, _) = against_destination("hostile-start", Case::StartFlood, &[]);
        // The flood did fill the destination's socket (the case happened).
        assert!(
            report.stalls > 0,
            "the flood never filled the socket: {report:?}"
        );
        assert!(
            peak < RSS_BOUND_KB,
            "destination peak RSS {peak} kB under a start flood"
        );
    });
}

#[test]
fn a_peer_that_reads_nothing_for_six_ping_periods_is_left() {
    watchdog(LIMIT, || {
        // Starts pile up answers the peer never reads: once none of them has left for
        // six ping periods, the destination gives the connection up and reconnects
        // (the healthy session after it is checked by against_destination).
        let (_, _, dst) = against_destination(
            "hostile-stuck",
            Case::StartFlood,
            &[("websocket.ping_period_ms", "1000")],
        );
        assert_eq!(dst.count("the service read nothing of what we sent"), 1);
    });
}

/// A raw close frame from the service, `payload` as given (well formed or not).
fn close_frame(payload: &[u8]) -> tungstenite::Message {
    use tungstenite::protocol::frame::coding::{Control, OpCode};
    use tungstenite::protocol::frame::{Frame, FrameHeader};
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Control(Control::Close),
        mask: None,
    };
    tungstenite::Message::Frame(Frame::from_payload(header, payload.to_vec().into()))
}

/// Close frames of every kind to a proxy of `mode`; the other end is a healthy proxy.
fn close_cases(mode: Mode) {
    let echo = echo_server();
    let r = Rig::new(&format!("hostile-close-{}", mode.as_str()), &["SSH"], &[]);
    let dst = r.destination(&format!("SSH={}", echo.port), &[]);
    let port = free_port();
    let src = r.source(&format!("SSH={port}"), &[]);
    let mut target = match mode {
        Mode::Destination => dst,
        Mode::Source => src,
    };
    let mut ready = 1;
    // Malformed closes are protocol errors; 1001 and 1011 are the service going away or
    // failing for a while. Each time the proxy comes back and tunnels.
    for (payload, line) in [
        (&[0x03][..], "a close frame with a 1-byte payload"),
        (&[0x03, 0xED][..], "reserved or unknown close code"),
        (&[0x03, 0xE7][..], "reserved or unknown close code"),
        (
            &[0x03, 0xE8, 0xC3, 0x28][..],
            "a close reason that is not UTF-8",
        ),
        (&[0x03, 0xE9][..], "(code 1001: going away); reconnecting"),
        (
            &b"\x03\xf3oops"[..],
            "(code 1011: oops: server error); reconnecting",
        ),
    ] {
        assert!(r.tb.inject_ws(&r.t, mode, close_frame(payload)));
        target.wait_line(line);
        ready += 1;
        target.wait_nth_line("tunnel ready", ready);
        echo_check(port, &pattern(64 << 10, ready as u64));
    }
    // A normal close with control characters in its reason: the tunnel is closed
    // (exit 0), and the reason reaches the console escaped.
    assert!(r
        .tb
        .inject_ws(&r.t, mode, close_frame(b"\x03\xe8bye\x1b[2J\r\nFAKE LINE")));
    assert_eq!(target.exit_code(), 0);
    let log = target.log();
    let line = log
        .iter()
        .find(|l| l.contains("the service closed the tunnel"))
        .expect("the close is logged");
    assert!(line.contains(r"bye\u{1b}[2J\r\nFAKE LINE"), "{line}");
    assert!(!log.iter().any(|l| l.starts_with("FAKE LINE")));
}

#[test]
fn close_frames_that_end_a_connection_not_the_tunnel_make_a_destination_reconnect() {
    watchdog(LIMIT, || close_cases(Mode::Destination));
}

#[test]
fn close_frames_that_end_a_connection_not_the_tunnel_make_a_source_reconnect() {
    watchdog(LIMIT, || close_cases(Mode::Source));
}

#[test]
fn a_close_notify_read_with_data_ends_the_connection_at_once() {
    watchdog(Duration::from_secs(120), || {
        // The case keeps TCP open for 10 minutes after its ping and close_notify, and
        // the ping period is 5 minutes: a proxy that waited for either would trip the
        // watchdog. One that acts on the close_notify reconnects and tunnels.
        let (report, _, dst) = against_destination_for(
            "hostile-notify",
            Case::CloseNotify,
            Duration::from_secs(600),
            &[("websocket.ping_period_ms", "300000")],
        );
        assert_eq!(report.frames, 1);
        assert_eq!(dst.count("the connection closed"), 1);
    });
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the proxy runs")
        .count()
}

#[test]
fn starts_and_resets_of_a_target_whose_lookup_hangs_keep_one_lookup_thread() {
    use localproxy::protocol::{Type, SUBPROTOCOL_V3};
    use localproxy::testbed::scripted::{self, Scripted};
    let test = "starts_and_resets_of_a_target_whose_lookup_hangs_keep_one_lookup_thread";
    if !is_root() {
        return skip(test, "root (for unshare --mount)");
    }
    if !have("unshare") {
        return skip(test, "unshare (apt-get install util-linux)");
    }
    watchdog(LIMIT, || {
        // A name server on loopback that never answers, in a resolv.conf that only the
        // destination sees (its own mount namespace): looking up slow.invalid hangs
        // for 20 s, while the endpoint (localhost) still comes from /etc/hosts.
        let black_hole = std::net::UdpSocket::bind("127.53.0.1:53").expect("bind 127.53.0.1:53");
        let r = Rig::new("hostile-lookup", &["A", "B"], &[]);
        let resolv = r.dir.join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.53.0.1\noptions timeout:20 attempts:1\n",
        )
        .unwrap();
        let echo = echo_server();
        let mapping = format!("A=slow.invalid:22,B=127.0.0.1:{}", echo.port);
        let mut args = r.args(&["-d", &mapping]);
        let script = "mount --bind \"$0\" /etc/resolv.conf || exit 97; exec \"$@\"";
        let mut prefix = vec!["--mount", "--propagation", "private", "sh", "-c", script];
        let resolv = resolv.display().to_string();
        prefix.push(&resolv);
        prefix.push(env!("CARGO_BIN_EXE_localproxy"));
        let a: Vec<&str> = args.iter_mut().map(|s| s.as_str()).collect();
        let dst = Proxy::start_program(
            "unshare",
            &prefix,
            &a,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", &r.t.destination_token)],
        );
        dst.wait_line("tunnel ready");
        let before = threads(dst.pid());
        let mut sc = Scripted::connect(&r.tb, &r.t.source_token, Mode::Source, SUBPROTOCOL_V3)
            .expect("connect the scripted source");
        sc.service_ids(WAIT).unwrap();
        // 200 connections to A started and reset at once, all waiting for one name.
        sc.queue(&scripted::message(Type::StreamStart, 1, "A", 1))
            .unwrap();
        for cid in 2..=200u32 {
            sc.queue(&scripted::message(Type::ConnectionStart, 1, "A", cid))
                .unwrap();
            sc.queue(&scripted::message(Type::ConnectionReset, 1, "A", cid))
                .unwrap();
        }
        sc.flush().unwrap();
        // An echo on B afterwards: once it is back, the destination has handled every
        // start and reset before it, and its local thread every connect.
        sc.send(&scripted::message(Type::StreamStart, 2, "B", 1))
            .unwrap();
        let data = pattern(10_000, 5);
        sc.send(&scripted::data(2, "B", 1, &data)).unwrap();
        let mut got = Vec::new();
        while got.len() < data.len() {
            let m = sc
                .next_where(WAIT, |m| m.kind == Type::Data && m.service_id == "B")
                .expect("the echo on B");
            got.extend_from_slice(&m.payload);
        }
        assert!(got == data, "the echo on B differs");
        let after = threads(dst.pid());
        eprintln!("lookup flood: destination threads {before} before, {after} after 200 starts and resets");
        assert!(
            after <= before + 1,
            "{after} threads after, {before} before: a lookup thread per connection"
        );
        drop(black_hole);
    });
}

#[test]
fn a_session_that_got_ready_and_failed_in_one_read_resets_the_backoff() {
    watchdog(LIMIT, || {
        // Four sessions in a row get SERVICE_IDS and a broken frame in one send. Each
        // was ready, so each retry waits the first delay, not a growing one (with a
        // 1 s base and a 60 s ceiling, a growing one would be 1-2 s, 1-4 s, 1-8 s).
        let r = Rig::new(
            "hostile-ready",
            &["SSH"],
            &[
                ("websocket.retry_delay_ms", "1000"),
                ("websocket.retry_max_delay_ms", "60000"),
            ],
        );
        r.tb.set_hostile_times(
            Mode::Destination,
            Some((Case::ReadyThenGarbage, Duration::from_secs(60))),
            4,
        );
        let echo = echo_server();
        let dst = r.destination(&format!("SSH={}", echo.port), &[]);
        dst.wait_nth_line("tunnel ready", 5);
        let port = free_port();
        let _src = r.source(&format!("SSH={port}"), &[]);
        echo_check(port, &pattern(64 << 10, 3));
        assert_eq!(dst.count("a masked frame from the server"), 4);
        let waits: Vec<String> = dst
            .log()
            .into_iter()
            .filter(|l| l.contains("next attempt in"))
            .collect();
        assert_eq!(waits.len(), 4, "{waits:#?}");
        assert!(
            waits.iter().all(|l| l.ends_with("next attempt in 1.0 s")),
            "{waits:#?}"
        );
    });
}

#[test]
fn repeated_service_ids_print_one_escaped_line_per_message_within_the_rate_limit() {
    use localproxy::protocol::{Message, Type};
    watchdog(LIMIT, || {
        let echo = echo_server();
        let r = Rig::new("hostile-ids", &["SSH"], &[]);
        let dst = r.destination(&format!("SSH={}", echo.port), &[]);
        // 10,000 copies of the tunnel's id and two of an id full of control characters,
        // twenty times over.
        let mut ids = vec!["SSH"; 10_000];
        ids.extend(["\u{1b}[31mEVIL\r\nFAKE", "\u{1b}[31mEVIL\r\nFAKE"]);
        let mut m = Message::new(Type::ServiceIds);
        m.available_service_ids = ids;
        for _ in 0..20 {
            assert!(r.tb.inject_message(&r.t, Mode::Destination, &m));
        }
        dst.wait_line("more like this suppressed");
        let lines: Vec<String> = dst
            .log()
            .into_iter()
            .filter(|l| l.contains("more than once"))
            .collect();
        assert!(!lines.is_empty() && lines.len() <= 10, "{lines:#?}");
        assert!(
            lines[0].contains(r"SSH,\u{1b}[31mEVIL\r\nFAKE more than once"),
            "{}",
            lines[0]
        );
        assert!(!dst.log().iter().any(|l| l.starts_with("FAKE")));
        // The tunnel goes on.
        let port = free_port();
        let _src = r.source(&format!("SSH={port}"), &[]);
        echo_check(port, &pattern(64 << 10, 9));
    });
}

/// What a frame case must make the proxy do.
#[derive(Clone, Copy)]
enum Expect {
    /// End the connection with one line containing this, then reconnect.
    Error(&'static str),
    /// Stay on the connection (logging this once, if given) until the testbed drops it.
    Survive(Option<&'static str>),
}

const FRAME_CASES: [(Case, Expect); 14] = [
    (
        Case::ReadyThenGarbage,
        Expect::Error("a masked frame from the server"),
    ),
    (Case::RsvBits, Expect::Error("reserved bits set")),
    (Case::UnknownOpcode, Expect::Error("an unknown opcode")),
    (
        Case::LongControl,
        Expect::Error("a fragmented or long control frame"),
    ),
    (
        Case::FragmentedControl,
        Expect::Error("a fragmented or long control frame"),
    ),
    (
        Case::StrayContinuation,
        Expect::Error("a continuation outside a message"),
    ),
    (
        Case::DataInFragment,
        Expect::Error("a new message before the last one ended"),
    ),
    (Case::TopBitLength, Expect::Error("oversized frame")),
    (Case::TeraTrickle, Expect::Error("oversized frame")),
    (Case::OverLimitFragments, Expect::Error("oversized message")),
    (Case::EmptyFrames, Expect::Survive(None)),
    (
        Case::TextFrame,
        Expect::Survive(Some("dropped a text frame")),
    ),
    (Case::TenThousandPings, Expect::Survive(None)),
    (Case::UnsolicitedPong, Expect::Survive(None)),
];

/// CPU seconds (user + system) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the proxy runs");
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Plays every frame case against a proxy of `mode` (the other end is a healthy proxy
/// of the other mode afterwards) and checks what each did.
fn frame_cases(mode: Mode) {
    let hold = Duration::from_secs(4);
    for (case, expect) in FRAME_CASES {
        let echo = echo_server();
        let tag = format!("hostile-{}-{}", mode.as_str(), case.name());
        let r = Rig::new(&tag, &["SSH"], &[]);
        r.tb.set_recording(false);
        r.tb.set_hostile(mode, Some((case, hold)));
        let port = free_port();
        let dst_map = format!("SSH={}", echo.port);
        let src_map = format!("SSH={port}");
        let hostile = match mode {
            Mode::Destination => r.destination(&dst_map, &[]),
            Mode::Source => r.source(&src_map, &[]),
        };
        let report =
            r.tb.wait_hostile_report(hold + WAIT)
                .expect("the case ended");
        let (cpu, peak) = (
            cpu_seconds(hostile.pid()),
            status_kb(hostile.pid(), "VmHWM:"),
        );
        eprintln!(
            "{} {}: {} bytes; proxy CPU {cpu:.2} s, peak RSS {peak} kB",
            mode.as_str(),
            case.name(),
            report.bytes
        );
        assert!(report.frames > 0, "{}: nothing sent", case.name());
        // The case lasts up to 4 s: a proxy that spun through it would use about that.
        assert!(
            cpu < 2.0,
            "{}: {cpu:.2} CPU seconds: the proxy spins",
            case.name()
        );
        assert!(peak < RSS_BOUND_KB, "{}: peak RSS {peak} kB", case.name());
        hostile.wait_nth_line("tunnel ready", 2);
        match expect {
            Expect::Error(line) => {
                assert_eq!(
                    hostile.count(line),
                    1,
                    "{}: {:#?}",
                    case.name(),
                    hostile.log()
                )
            }
            Expect::Survive(line) => {
                // Dropped by the testbed, not given up by the proxy.
                assert_eq!(hostile.count("the connection closed"), 1, "{}", case.name());
                if let Some(line) = line {
                    assert_eq!(hostile.count(line), 1, "{}", case.name());
                }
            }
        }
        healthy_echo(&r, mode, &dst_map, &src_map, port, 256 << 10);
    }
}

#[test]
fn every_frame_case_against_a_destination() {
    watchdog(Duration::from_secs(400), || frame_cases(Mode::Destination));
}

#[test]
fn every_frame_case_against_a_source() {
    watchdog(Duration::from_secs(400), || frame_cases(Mode::Source));
}

/// What an answer case must make the proxy do.
#[derive(Clone, Copy)]
enum Then {
    /// One failed attempt, its line containing this, then a good session.
    Retry(&'static str),
    /// Exit with this code.
    Exit(i32),
    /// A good session at once.
    Works,
}

const ANSWER_CASES: [(Answer, Then); 18] = [
    (
        Answer::TlsClose,
        Then::Retry("closed the connection during the handshake"),
    ),
    (Answer::TlsGarbage, Then::Retry("does not speak TLS")),
    (Answer::NoAccept, Then::Retry("Sec-WebSocket-Accept")),
    (Answer::WrongAccept, Then::Retry("Sec-WebSocket-Accept")),
    (Answer::NoSubprotocol, Then::Retry("chose no subprotocol")),
    (
        Answer::OtherSubprotocol,
        Then::Retry("which we did not offer"),
    ),
    (
        Answer::Extension,
        Then::Retry("extensions we did not ask for"),
    ),
    (Answer::Http10Ok, Then::Retry("HTTP 200 OK, not a switch")),
    (Answer::LongHeader, Then::Retry("longer than")),
    (Answer::ManyHeaders, Then::Retry("longer than")),
    (Answer::GarbageStatus, Then::Retry("not HTTP/1.x")),
    (Answer::TrickleHeader, Then::Retry("connect_timeout_ms")),
    (Answer::Moved, Then::Retry("HTTP 301")),
    (Answer::ServerError, Then::Retry("HTTP 500")),
    (Answer::Unauthorized, Then::Exit(3)),
    (Answer::RequestTimeout, Then::Retry("HTTP 408")),
    (Answer::TooManyRequests, Then::Retry("HTTP 429")),
    (Answer::Coalesced101, Then::Works),
];

/// Gives a proxy of `mode` each bad answer on its first attempt and checks what it did.
fn answer_cases(mode: Mode) {
    for (answer, then) in ANSWER_CASES {
        let echo = echo_server();
        let tag = format!("answer-{}-{}", mode.as_str(), answer.name());
        // A short connect deadline for the trickle; fast retries for the rest.
        let r = Rig::new(&tag, &["SSH"], &[("websocket.connect_timeout_ms", "2000")]);
        r.tb.queue_answer(answer);
        let port = free_port();
        let dst_map = format!("SSH={}", echo.port);
        let src_map = format!("SSH={port}");
        let (mine, token) = match mode {
            Mode::Destination => (vec!["-d", &dst_map], &r.t.destination_token),
            Mode::Source => (vec!["-s", &src_map, "-b", "127.0.0.1"], &r.t.source_token),
        };
        let mut p = r.start(&mine, token, &[]);
        match then {
            Then::Exit(code) => {
                assert_eq!(p.exit_code(), code, "{}: {:#?}", answer.name(), p.log());
                continue;
            }
            Then::Works => {}
            Then::Retry(_) => {}
        }
        p.wait_line("tunnel ready");
        let (cpu, peak) = (cpu_seconds(p.pid()), status_kb(p.pid(), "VmHWM:"));
        assert!(
            cpu < 2.0,
            "{}: {cpu:.2} CPU seconds: the proxy spins",
            answer.name()
        );
        assert!(peak < RSS_BOUND_KB, "{}: peak RSS {peak} kB", answer.name());
        let failed: Vec<String> = p
            .log()
            .into_iter()
            .filter(|l| l.contains("cannot connect"))
            .collect();
        eprintln!("{} {}: {failed:?}", mode.as_str(), answer.name());
        match then {
            Then::Retry(what) => {
                assert_eq!(failed.len(), 1, "{}: {failed:#?}", answer.name());
                assert!(failed[0].contains(what), "{}: {}", answer.name(), failed[0]);
                assert!(failed[0].len() < 300, "{}: {}", answer.name(), failed[0]);
            }
            Then::Works => assert!(failed.is_empty(), "{}: {failed:#?}", answer.name()),
            Then::Exit(_) => {}
        }
        healthy_echo(&r, mode, &dst_map, &src_map, port, 64 << 10);
    }
}

#[test]
fn every_bad_answer_to_a_destination_attempt() {
    watchdog(Duration::from_secs(400), || answer_cases(Mode::Destination));
}

#[test]
fn every_bad_answer_to_a_source_attempt() {
    watchdog(Duration::from_secs(400), || answer_cases(Mode::Source));
}
