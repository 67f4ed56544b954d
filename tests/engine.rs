//! End-to-end tests of the engine: the real `localproxy` binary in both modes against the
//! project's tunneling-service double over TLS on loopback (`-e localhost:PORT -c CADIR`),
//! with real echo servers and clients.
//!
//! Every test runs under a watchdog and waits on log lines, sockets and the testbed's
//! recordings, never on sleeps.

mod common;

use common::*;
use localproxy::protocol::Type;
use localproxy::sys::SIGTERM;
use localproxy::testbed::Mode;
use std::net::TcpStream;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn v3_two_services_three_simultaneous_connections_each() {
    watchdog(LIMIT, || {
        let s = Rig::new("v3", &["A", "B"], &[]);
        let (ea, eb) = (echo_server(), echo_server());
        let (pa, pb) = (free_port(), free_port());
        let _dst = s.destination(&format!("A={},B={}", ea.port, eb.port), &[]);
        let _src = s.source(&format!("A={pa},B={pb}"), &[]);
        // Open all six connections first so they are simultaneous, then echo on each
        // in parallel.
        let conns: Vec<(TcpStream, u64)> = (0..6u64)
            .map(|i| {
                let port = if i < 3 { pa } else { pb };
                let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                (c, i)
            })
            .collect();
        let workers: Vec<_> = conns
            .into_iter()
            .map(|(c, i)| {
                std::thread::spawn(move || {
                    echo_on(&c, &pattern(1 << 20, i));
                    c
                })
            })
            .collect();
        let conns: Vec<TcpStream> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(ea.accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(eb.accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        let rec = s.tb.recorded(&s.t, Mode::Source);
        for svc in ["A", "B"] {
            let starts: Vec<(i32, u32)> = rec
                .iter()
                .filter(|m| m.service_id == svc)
                .filter(|m| {
                    m.kind == Type::StreamStart.raw() || m.kind == Type::ConnectionStart.raw()
                })
                .map(|m| (m.kind, m.connection_id))
                .collect();
            assert_eq!(
                starts,
                vec![
                    (Type::StreamStart.raw(), 1),
                    (Type::ConnectionStart.raw(), 2),
                    (Type::ConnectionStart.raw(), 3)
                ],
                "service {svc}"
            );
        }
        drop(conns);
    });
}

/// One connection per service at a time: a second is refused, the first is unharmed,
/// and the next one after it closes is served.
fn one_at_a_time(tag: &str, services: &[&str], dest_map: &str, flag: &str) {
    let s = Rig::new(tag, services, &[]);
    let echo = echo_server();
    let port = free_port();
    let _dst = s.destination(&dest_map.replace("PORT", &echo.port.to_string()), &[]);
    let src = s.source(&port.to_string(), &["-y", flag]);
    let first = echo_check(port, &pattern(100_000, 1));
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        closed_by_peer(&mut second),
        "the second connection was not refused"
    );
    src.wait_line("one connection at a time");
    echo_on(&first, &pattern(200_000, 2));
    drop(first);
    // The next connection is served by the same listener once the first is gone.
    src.wait_line("closed after");
    echo_check(port, &pattern(300_000, 3));
    let rec = s.tb.recorded(&s.t, Mode::Source);
    let starts: Vec<_> = rec
        .iter()
        .filter(|m| m.kind == Type::StreamStart.raw())
        .collect();
    assert_eq!(starts.len(), 2, "{rec:?}");
    for m in rec.iter() {
        assert_eq!(
            m.connection_id, 0,
            "{flag} never sends connection ids: {m:?}"
        );
        if flag == "V1" {
            assert_eq!(m.service_id, "", "V1 never sends service ids: {m:?}");
        }
    }
}

#[test]
fn v2_one_connection_at_a_time() {
    watchdog(LIMIT, || one_at_a_time("v2", &["A"], "A=PORT", "V2"));
}

#[test]
fn v1_one_connection_at_a_time_on_a_tunnel_without_services() {
    watchdog(LIMIT, || one_at_a_time("v1", &[], "PORT", "V1"));
}

#[test]
fn v1_style_source_against_our_destination_on_a_one_service_tunnel() {
    watchdog(LIMIT, || {
        let s = Rig::new("v1dst", &["SSH"], &[]);
        let echo = echo_server();
        let port = free_port();
        let _dst = s.destination(&format!("SSH={}", echo.port), &[]);
        let _src = s.source(&port.to_string(), &["-y", "V1"]);
        echo_check(port, &pattern(500_000, 9));
        let rec = s.tb.recorded(&s.t, Mode::Destination);
        assert!(
            rec.iter()
                .filter(|m| m.kind == Type::Data.raw())
                .all(|m| m.service_id.is_empty() && m.connection_id == 0),
            "the destination must answer a V1 peer in V1 form: {rec:?}"
        );
    });
}

#[test]
fn recut_frames_and_fragmented_messages_keep_data_intact() {
    watchdog(LIMIT, || {
        let s = Rig::new("recut", &["A"], &[]);
        s.tb.set_recut(Some((1, 5000)));
        let echo = echo_server();
        let port = free_port();
        let _dst = s.destination(&format!("A={}", echo.port), &[]);
        let _src = s.source(&format!("A={port}"), &[]);
        echo_check(port, &pattern(1 << 20, 4));
        s.tb.set_recut(None);
        s.tb.set_fragment(Some(4096));
        echo_check(port, &pattern(1 << 20, 5));
    });
}

#[test]
fn destination_target_down_closes_only_that_connection() {
    watchdog(LIMIT, || {
        let s = Rig::new("down", &["A", "B"], &[]);
        let echo = echo_server();
        let dead = free_port();
        let (pa, pb) = (free_port(), free_port());
        let dst = s.destination(&format!("A={dead},B={}", echo.port), &[]);
        let _src = s.source(&format!("A={pa},B={pb}"), &[]);
        let healthy = echo_check(pb, &pattern(50_000, 1));
        let mut doomed = TcpStream::connect(("127.0.0.1", pa)).unwrap();
        assert!(closed_by_peer(&mut doomed), "the client was left hanging");
        dst.wait_line("cannot connect to");
        echo_on(&healthy, &pattern(50_000, 2));
    });
}

#[test]
fn service_closing_the_tunnel_ends_both_proxies_with_exit_0() {
    watchdog(LIMIT, || {
        let s = Rig::new("close", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let mut dst = s.destination(&format!("A={}", echo.port), &[]);
        let mut src = s.source(&format!("A={port}"), &[]);
        let mut c = echo_check(port, &pattern(10_000, 1));
        s.tb.close_tunnel(&s.t);
        assert!(closed_by_peer(&mut c), "the local connection stayed open");
        assert_eq!(src.exit_code(), 0);
        assert_eq!(dst.exit_code(), 0);
    });
}

#[test]
fn rejected_token_exits_3_with_one_line() {
    watchdog(LIMIT, || {
        let s = Rig::new("reject", &["A"], &[]);
        s.tb.reject_upgrades(Some(401));
        let port = free_port().to_string();
        let mut p = s.start(&["-s", &port], &s.t.source_token, &[]);
        assert_eq!(p.exit_code(), 3);
        let errors: Vec<String> = p
            .log()
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("access token refused"), "{errors:?}");
        assert!(errors[0].contains("401"), "{errors:?}");
        assert!(!p.log().join("\n").contains(&s.t.source_token));
    });
}

#[test]
fn sigterm_sends_a_close_frame_and_exits_0() {
    watchdog(LIMIT, || {
        let s = Rig::new("term", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let _dst = s.destination(&format!("A={}", echo.port), &[]);
        let mut src = s.source(&format!("A={port}"), &[]);
        let mut c = echo_check(port, &pattern(10_000, 1));
        src.signal(SIGTERM);
        assert_eq!(src.exit_code(), 0);
        assert!(closed_by_peer(&mut c));
        assert!(
            s.tb.wait_close_frame(&s.t, Mode::Source, WAIT),
            "the testbed saw no close frame from the source"
        );
        let _ = std::fs::remove_dir_all(&s.dir);
    });
}

/// A client that stops reading fills the local queue, the source stops reading the
/// tunnel in the middle of what it has already received, and the sender finishes.
/// When the client reads again, every byte must come at once: with no more data
/// arriving and pings an hour apart, nothing else would wake the proxy.
#[test]
fn a_reader_that_pauses_gets_every_byte_when_it_reads_again() {
    watchdog(LIMIT, || {
        let s = Rig::new(
            "pause",
            &["A"],
            &[
                ("websocket.ping_period_ms", "3600000"),
                // Small DATA messages and a small local queue: the queue fills in the
                // middle of what one read brought.
                ("message.max_payload_size", "1000"),
                ("tcp.write_buffer_size", "64512"),
            ],
        );
        // The relay reads the destination slowly, so the source receives the data in
        // small pieces: its reads often find the socket empty, with unhandled frames
        // left in its buffer when the local queue fills.
        s.tb.set_relay_rate(Some(16.0));
        let total = 4 << 20;
        let data = pattern(total, 7);
        // A target that sends everything at once, then closes.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = l.local_addr().unwrap().port();
        let sent = data.clone();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let _ = std::io::Write::write_all(&mut c, &sent);
        });
        let port = free_port();
        let dst = s.destination(&format!("A={target}"), &[]);
        let _src = s.source(&format!("A={port}"), &[]);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The target has sent it all and closed: the destination says so.
        dst.wait_line("closed after");
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = vec![0u8; total];
        std::io::Read::read_exact(&mut c, &mut got).expect("every byte, without a stall");
        assert!(got == data);
    });
}

#[test]
fn the_source_says_why_the_destination_reset_a_connection() {
    watchdog(LIMIT, || {
        let s = Rig::new("reset-why", &["A", "B"], &[]);
        let dead = free_port();
        // B's target answers with a greeting and closes: a reset after data, normal.
        let greeter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gport = greeter.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in greeter.incoming() {
                let Ok(mut c) = c else { continue };
                let _ = std::io::Write::write_all(&mut c, b"hello\n");
            }
        });
        let (pa, pb) = (free_port(), free_port());
        let _dst = s.destination(&format!("A={dead},B={gport}"), &[]);
        let src = s.source(&format!("A={pa},B={pb}"), &[]);
        for n in 1..=2 {
            let mut doomed = TcpStream::connect(("127.0.0.1", pa)).unwrap();
            assert!(closed_by_peer(&mut doomed), "the client was left hanging");
            let line = src.wait_nth_line("reset by the destination before any data", n);
            assert!(line.contains(" WARN "), "{line}");
            assert!(line.contains("(A)"), "{line}");
        }
        let mut greeted = TcpStream::connect(("127.0.0.1", pb)).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut greeted, &mut got).unwrap();
        assert_eq!(got, b"hello\n");
        src.wait_nth_line("closed after", 3);
        assert_eq!(
            src.count("reset by the destination before any data"),
            2,
            "once per refused connection, none for one that had data: {:?}",
            src.log()
        );
    });
}

#[test]
fn a_source_without_a_destination_says_so_when_nothing_comes_back() {
    watchdog(LIMIT, || {
        let s = Rig::new("no-destination", &["A"], &[]);
        let pa = free_port();
        let src = s.source(&format!("A={pa}"), &[]);
        // No destination: the service has nowhere to send it, and nothing comes back.
        let mut c = TcpStream::connect(("127.0.0.1", pa)).unwrap();
        std::io::Write::write_all(&mut c, b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        // A client that sends nothing is not reported (it may be waiting to speak).
        let _idle = TcpStream::connect(("127.0.0.1", pa)).unwrap();
        let line = src.wait_line("nothing back in 10 s: is a destination connected?");
        assert!(line.contains(" WARN connection "), "{line}");
        assert!(line.contains("(A): 21 B sent"), "{line}");
        // Once per connection: the echo below (with a destination) is not reported.
        let echo = echo_server();
        let _dst = s.destination(&format!("A={}", echo.port), &[]);
        drop(echo_check(pa, &pattern(1000, 9)));
        assert_eq!(src.count("nothing back in"), 1, "{:?}", src.log());
    });
}
