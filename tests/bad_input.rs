//! Bad input from the tunnel never crashes the proxy and never harms the other
//! connections. Each case is injected by the testbed while a healthy connection echoes
//! beside it; each gets its defined behaviour and a log line:
//! - dropped: zero length, invalid or truncated protobuf, invalid UTF-8 in a service id,
//!   type 0, unknown types (ignorable or not), DATA for an unknown stream, service or
//!   connection, STREAM_START/CONNECTION_START sent to a source, SERVICE_IDS again with
//!   another set, text frames, pongs with any payload;
//! - that connection reset: CONNECTION_START for a connection id already open;
//! - every stream reset, tunnel kept: SESSION_RESET;
//! - reconnect (the byte stream can no longer be trusted): a length prefix over the
//!   limit, a WebSocket frame over 131076 bytes.

mod common;

use common::*;
use localproxy::protocol::{Message, Type};
use localproxy::testbed::{Mode, Testbed, Tunnel};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Bytes;

const LIMIT: Duration = Duration::from_secs(120);

struct Setup {
    tb: Testbed,
    t: Tunnel,
    port: u16,
    src: Proxy,
    dst: Proxy,
}

fn setup(tag: &str, extra: &[(&str, &str)]) -> Setup {
    let r = Rig::new(tag, &["A"], extra);
    let echo = echo_server();
    let port = free_port();
    let dst = r.destination(&format!("A={}", echo.port), &["-v", "5"]);
    let src = r.source(&format!("A={port}"), &["-v", "5"]);
    Setup {
        tb: r.tb,
        t: r.t,
        port,
        src,
        dst,
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn msg(kind: Type, stream: i32, service: &str, conn: u32) -> Message<'_> {
    Message {
        kind,
        stream_id: stream,
        service_id: service,
        connection_id: conn,
        ..Message::default()
    }
}

#[test]
fn dropped_inputs_leave_the_healthy_connection_alone() {
    watchdog(LIMIT, || {
        let s = setup("bad-drop", &[]);
        let healthy = echo_check(s.port, &pattern(20_000, 0));
        // The healthy connection is stream 1, connection 1 of service A.
        let mut ignorable = msg(Type::Other(42), 1, "A", 1);
        ignorable.ignorable = true;
        let mut data_unknown_conn = msg(Type::Data, 1, "A", 77);
        data_unknown_conn.payload = b"must not arrive";
        let mut data_unknown_stream = msg(Type::Data, 999, "A", 1);
        data_unknown_stream.payload = b"must not arrive";
        let mut data_unknown_service = msg(Type::Data, 1, "Z", 1);
        data_unknown_service.payload = b"must not arrive";
        let mut ids = Message::new(Type::ServiceIds);
        ids.available_service_ids = vec!["X", "Y"];
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "zero length",
                vec![0, 0],
                "dropped a malformed tunnel message",
            ),
            (
                "invalid protobuf",
                framed(&[0x08, 0x01, 0xff]),
                "dropped a malformed tunnel message",
            ),
            (
                "truncated varint",
                framed(&[0x10, 0x80, 0x80]),
                "dropped a malformed tunnel message",
            ),
            (
                "bad UTF-8 service id",
                framed(&[0x08, 0x01, 0x10, 0x01, 0x2a, 0x02, 0xc3, 0x28]),
                "dropped a malformed tunnel message",
            ),
            ("type 0", framed(&[0x10, 0x01]), "type 0"),
            (
                "unknown type",
                enc(&msg(Type::Other(42), 1, "A", 1)),
                "unknown type 42",
            ),
            (
                "ignorable unknown type",
                enc(&ignorable),
                "ignorable message of unknown type 42",
            ),
            (
                "DATA, unknown connection",
                enc(&data_unknown_conn),
                "dropped DATA for closed connection",
            ),
            (
                "DATA, stale stream",
                enc(&data_unknown_stream),
                "dropped stale DATA",
            ),
            (
                "DATA, unknown service",
                enc(&data_unknown_service),
                "dropped DATA for unknown service",
            ),
            (
                "STREAM_START to a source",
                enc(&msg(Type::StreamStart, 5, "A", 1)),
                "a source never accepts streams",
            ),
            (
                "CONNECTION_START to a source",
                enc(&msg(Type::ConnectionStart, 1, "A", 9)),
                "a source never accepts streams",
            ),
            (
                "SERVICE_IDS again",
                enc(&ids),
                "ignored SERVICE_IDS repeated mid-session",
            ),
        ];
        for (i, (name, bytes, line)) in cases.iter().enumerate() {
            let before = s.src.count(line);
            assert!(
                s.tb.inject(&s.t, Mode::Source, bytes),
                "{name}: not injected"
            );
            s.src.wait_nth_line(line, before + 1);
            echo_on(&healthy, &pattern(20_000, i as u64 + 1));
        }
        assert!(s.tb.inject_ws(
            &s.t,
            Mode::Source,
            tungstenite::Message::Text("hello".into())
        ));
        s.src.wait_line("dropped a text frame");
        assert!(s.tb.inject_ws(
            &s.t,
            Mode::Source,
            tungstenite::Message::Pong(Bytes::from_static(b"\xff\x00not a number"))
        ));
        echo_on(&healthy, &pattern(20_000, 99));
        // Nothing above cost the tunnel: one session, no reconnect, no crash.
        assert_eq!(s.tb.connection_count(&s.t, Mode::Source), 1);
        assert_eq!(s.src.count("tunnel lost"), 0);
        assert!(s.src.count("panicked") == 0 && s.dst.count("panicked") == 0);
    });
}

fn enc(m: &Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    localproxy::protocol::codec::encode(m, &mut v).unwrap();
    v
}

#[test]
fn connection_start_on_an_open_id_resets_only_that_connection() {
    watchdog(LIMIT, || {
        let s = setup("bad-cstart", &[]);
        let first = echo_check(s.port, &pattern(10_000, 1)); // stream 1, connection 1
        let mut second = echo_check(s.port, &pattern(10_000, 2)); // connection 2
        assert!(s.tb.inject_message(
            &s.t,
            Mode::Destination,
            &msg(Type::ConnectionStart, 1, "A", 2)
        ));
        s.dst.wait_line("already open; resetting it");
        // The destination reset connection 2; the source closes it; connection 1 lives.
        assert!(closed_by_peer(&mut second));
        echo_on(&first, &pattern(10_000, 3));
    });
}

#[test]
fn session_reset_closes_every_stream_and_keeps_the_tunnel() {
    watchdog(LIMIT, || {
        let s = setup("bad-sreset", &[]);
        let mut c = echo_check(s.port, &pattern(10_000, 1));
        assert!(s
            .tb
            .inject_message(&s.t, Mode::Source, &Message::new(Type::SessionReset)));
        s.src.wait_line("the service reset the session");
        assert!(closed_by_peer(&mut c));
        echo_check(s.port, &pattern(10_000, 2));
        assert_eq!(s.tb.connection_count(&s.t, Mode::Source), 1);
    });
}

#[test]
fn untrustworthy_streams_make_the_proxy_reconnect_without_corrupting_data() {
    watchdog(LIMIT, || {
        // A limit below what the 2-byte prefix can say, so an over-limit prefix exists.
        let s = setup("bad-reconnect", &[("message.max_size", "65000")]);
        for (i, bytes) in [
            vec![0xff, 0xff, 1, 2, 3],
            vec![0u8; 140_000], // one WebSocket frame over 131076 bytes
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            echo_on(&c, &pattern(10_000, i as u64));
            assert!(s.tb.inject(&s.t, Mode::Source, &bytes));
            s.src.wait_nth_line("tunnel lost", i + 1);
            // The connection ends cleanly (no garbage is delivered on it)...
            assert!(closed_by_peer(&mut c));
            // ...and the proxy is back.
            assert!(s.tb.wait_connections(&s.t, Mode::Source, i + 2, WAIT));
            s.src.wait_nth_line("tunnel ready", i + 2);
            echo_check(s.port, &pattern(10_000, 10 + i as u64));
        }
        let log = s.src.log().join("\n");
        assert!(log.contains("corrupt tunnel data"), "{log}");
        assert!(log.contains("oversized frame"), "{log}");
    });
}
