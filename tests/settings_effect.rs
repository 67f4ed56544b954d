//! Settings keys that change what the proxy does on the wire, each shown to take effect
//! against the testbed: `websocket.max_frame_size` bounds the frames accepted from the
//! service, `tcp.read_buffer_size` bounds each local read and so each DATA payload.
//!
//! Every test runs under a watchdog and waits on log lines, sockets and the testbed's
//! recordings, never on sleeps.

mod common;

use common::*;
use localproxy::protocol::Type;
use localproxy::testbed::Mode;
use std::time::Duration;
use tungstenite::{Bytes, Message};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_frame_over_websocket_max_frame_size_ends_the_session_and_the_proxy_reconnects() {
    watchdog(LIMIT, || {
        // 100,000 bytes is within the default limit (131076) but over this one.
        let r = Rig::new(
            "max-frame",
            &["A"],
            &[("websocket.max_frame_size", "70000")],
        );
        let echo = echo_server();
        let port = free_port();
        let _dst = r.destination(&format!("A={}", echo.port), &[]);
        let src = r.source(&format!("A={port}"), &[]);
        // Full-size DATA messages still pass.
        echo_check(port, &pattern(300_000, 1));
        let big = Message::Binary(Bytes::from(vec![0u8; 100_000]));
        assert!(r.tb.inject_ws(&r.t, Mode::Source, big));
        let line = src.wait_line("oversized frame");
        assert!(line.contains("tunnel lost"), "{line}");
        assert!(r.tb.wait_connections(&r.t, Mode::Source, 2, WAIT));
        src.wait_nth_line("tunnel ready", 2);
        echo_check(port, &pattern(50_000, 2));
    });
}

#[test]
fn tcp_read_buffer_size_bounds_every_data_payload() {
    watchdog(LIMIT, || {
        let r = Rig::new("read-buf", &["A"], &[("tcp.read_buffer_size", "1000")]);
        let echo = echo_server();
        let port = free_port();
        let _dst = r.destination(&format!("A={}", echo.port), &[]);
        let _src = r.source(&format!("A={port}"), &[]);
        echo_check(port, &pattern(300_000, 1));
        for mode in [Mode::Source, Mode::Destination] {
            let sizes: Vec<usize> =
                r.tb.recorded(&r.t, mode)
                    .iter()
                    .filter(|m| m.kind == Type::Data.raw())
                    .map(|m| m.payload_len)
                    .collect();
            assert_eq!(sizes.iter().sum::<usize>(), 300_000, "{mode:?}");
            let largest = sizes.iter().max().copied().unwrap_or(0);
            assert!(
                largest <= 1000,
                "{mode:?}: a DATA payload of {largest} bytes"
            );
        }
    });
}

/// The smallest `websocket.read_buffer_size` holds less than one of the service's
/// frames: frames arrive in pieces and every byte still gets through, both ways.
#[test]
fn a_websocket_read_buffer_smaller_than_a_frame_still_carries_everything() {
    watchdog(LIMIT, || {
        let r = Rig::new(
            "ws-read-buf",
            &["A"],
            &[("websocket.read_buffer_size", "4096")],
        );
        let echo = echo_server();
        let port = free_port();
        let _dst = r.destination(&format!("A={}", echo.port), &[]);
        let _src = r.source(&format!("A={port}"), &[]);
        // 64 KiB DATA messages: every frame is 16 times the buffer.
        echo_check(port, &pattern(4 << 20, 3));
    });
}
