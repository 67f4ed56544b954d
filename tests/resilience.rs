//! Resilience tests: the real binary against the testbed's fault hooks. Dropped and
//! frozen WebSockets, single-use tokens and client tokens, token files, refusals while
//! the tunnel is down, status on SIGUSR1, exit codes, privilege drop, token hygiene.

mod common;

use common::*;
use localproxy::sys::{SIGKILL, SIGUSR1};
use localproxy::testbed::{How, Mode, Testbed, Tunnel};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn base_args(tb: &Testbed, settings: &Path) -> Vec<String> {
    vec![
        "-e".into(),
        tb.endpoint(),
        "-c".into(),
        tb.ca_dir().display().to_string(),
        "--settings-json".into(),
        settings.display().to_string(),
        "-v".into(),
        "5".into(),
    ]
}

fn start(args: &[String], env: &[(&str, &str)]) -> Proxy {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_env(&a, env)
}

fn with(mut v: Vec<String>, extra: &[&str]) -> Vec<String> {
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

struct Pair {
    tb: Testbed,
    t: Tunnel,
    dir: PathBuf,
    settings: PathBuf,
    echo: Echo,
    port: u16,
    dst: Proxy,
    src: Proxy,
}

fn pair(tag: &str, extra_settings: &[(&str, &str)]) -> Pair {
    let r = Rig::new(tag, &["A"], extra_settings);
    let echo = echo_server();
    let port = free_port();
    let dst = r.destination(&format!("A={}", echo.port), &["-v", "5"]);
    let src = r.source(&format!("A={port}"), &["-v", "5"]);
    let Rig {
        tb,
        t,
        dir,
        settings,
    } = r;
    Pair {
        tb,
        t,
        dir,
        settings,
        echo,
        port,
        dst,
        src,
    }
}

#[test]
fn twenty_drops_in_the_middle_of_an_echo_each_end_the_connection_and_reconnect() {
    watchdog(LIMIT, || {
        let p = pair("drops", &[]);
        for i in 0..20 {
            let c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            let mut w = c.try_clone().unwrap();
            let data = pattern(4 << 20, i);
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                // Fails once the proxy closes the connection: that is expected.
                let _ = w.write_all(&data);
            });
            // Let some of the echo come back, then drop the destination's WebSocket.
            let mut got = vec![0u8; 64 * 1024];
            std::io::Read::read_exact(&mut &c, &mut got).unwrap();
            assert!(p.tb.drop_peer(&p.t, Mode::Destination, How::Abort));
            let mut c = c;
            assert!(
                closed_by_peer(&mut c),
                "drop {i}: the client was left hanging"
            );
            writer.join().unwrap();
            // The destination reconnects with the same (single-use) token.
            assert!(
                p.tb.wait_connections(&p.t, Mode::Destination, i as usize + 2, WAIT),
                "drop {i}: the destination did not reconnect"
            );
            p.dst.wait_nth_line("tunnel ready", i as usize + 2);
            echo_check(p.port, &pattern(100_000, 100 + i));
        }
        assert!(p.tb.client_token_seen(&p.t, Mode::Destination));
        assert_eq!(p.tb.connection_count(&p.t, Mode::Destination), 21);
        let times = reconnect_times_ms(&p.dst.log());
        assert_eq!(times.len(), 20, "{times:?}");
        let mut sorted = times.clone();
        sorted.sort_unstable();
        eprintln!(
            "reconnect after a drop (tunnel lost -> tunnel ready), ms: min {} median {} max {}",
            sorted[0], sorted[10], sorted[19]
        );
        // Stream ids kept growing across the reconnects.
        let starts: Vec<i32> =
            p.tb.recorded(&p.t, Mode::Source)
                .iter()
                .filter(|m| m.kind == localproxy::protocol::Type::StreamStart.raw())
                .map(|m| m.stream_id)
                .collect();
        assert!(starts.windows(2).all(|w| w[1] > w[0]), "{starts:?}");
    });
}

/// Milliseconds from each "tunnel lost" line to the next "tunnel ready" line.
fn reconnect_times_ms(log: &[String]) -> Vec<u64> {
    // Lines start with 2026-11-24T10:54:05.123Z; the time of day is enough here.
    let ms = |l: &str| -> Option<u64> {
        let t = l.get(11..23)?;
        let (h, rest) = t.split_once(':')?;
        let (m, s) = rest.split_once(':')?;
        let secs: f64 = s.parse().ok()?;
        Some(
            (h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60) * 1000
                + (secs * 1000.0) as u64,
        )
    };
    let mut out = Vec::new();
    let mut lost = None;
    for l in log {
        if l.contains("tunnel lost") {
            lost = ms(l);
        } else if l.contains("tunnel ready") {
            if let (Some(a), Some(b)) = (lost.take(), ms(l)) {
                out.push(b.saturating_sub(a));
            }
        }
    }
    out
}

#[test]
fn require_non_root_refuses_root_without_user() {
    // A refusal to run as root needs root to be seen; the converse is the next test.
    if !is_root() {
        skip("require_non_root_refuses_root_without_user", "root");
        return;
    }
    watchdog(LIMIT, || {
        let args = ["-e", "127.0.0.1:9", "-s", "5555", "--require-non-root"];
        let mut p = Proxy::start(&args, "token-for-the-root-check");
        assert_eq!(p.exit_code(), 2);
        let log = p.log().join("\n");
        assert!(log.contains("refusing to run as root"), "{log}");
    });
}

/// A line the proxy logs only after the --require-non-root check.
const PAST_THE_ROOT_CHECK: &str = "client token: a random one";

#[test]
fn require_non_root_lets_another_user_and_root_with_user_through() {
    // The non-root half is run as nobody (setpriv), so that it runs where CI runs: as
    // root. Becoming nobody needs root.
    const TEST: &str = "require_non_root_lets_another_user_and_root_with_user_through";
    if !is_root() {
        skip(TEST, "root (to run the proxy as nobody)");
        return;
    }
    if !have("setpriv") {
        skip(TEST, "setpriv (apt-get install util-linux)");
        return;
    }
    watchdog(LIMIT, || {
        let gid = std::process::Command::new("id")
            .args(["-g", "nobody"])
            .output()
            .expect("id -g nobody");
        assert!(gid.status.success(), "no user nobody");
        let gid = String::from_utf8(gid.stdout).unwrap().trim().to_string();
        let port = free_port().to_string();
        let args = [
            "-e",
            "127.0.0.1:9",
            "-s",
            &port,
            "-b",
            "127.0.0.1",
            "--require-non-root",
        ];

        // Started as nobody: let through.
        let regid = format!("--regid={gid}");
        let mut prefix = vec!["--reuid=nobody", &regid, "--clear-groups", "--"];
        prefix.push(env!("CARGO_BIN_EXE_localproxy"));
        let env = [("AWSIOT_TUNNEL_ACCESS_TOKEN", "token-for-the-root-check")];
        let p = Proxy::start_program("setpriv", &prefix, &args, &env);
        p.wait_line(PAST_THE_ROOT_CHECK);
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u != "0"),
            "setpriv left it root: {uid_line}"
        );
        assert_eq!(p.count("refusing to run as root"), 0, "{:?}", p.log());
        drop(p);

        // Started as root with --user: let through too.
        let mut with_user = args.to_vec();
        with_user.extend(["--user", "nobody"]);
        let p = Proxy::start(&with_user, "token-for-the-root-check");
        p.wait_line(PAST_THE_ROOT_CHECK);
        assert_eq!(p.count("refusing to run as root"), 0, "{:?}", p.log());
    });
}

#[test]
fn single_use_token_reconnects_only_with_the_same_client_token() {
    watchdog(LIMIT, || {
        let dir = temp_dir("ct");
        let tb = Testbed::start(&dir).unwrap();
        let t = tb.open_tunnel(&["A"]);
        let settings = fast_settings(&dir, &[]);
        let ct_file = dir.join("client-token");
        let args = with(
            base_args(&tb, &settings),
            &[
                "-d",
                "A=9",
                "--client-token-file",
                ct_file.to_str().unwrap(),
            ],
        );
        let env = [("AWSIOT_TUNNEL_ACCESS_TOKEN", t.destination_token.as_str())];
        let first = start(&args, &env);
        first.wait_line("tunnel ready");
        assert!(first
            .log()
            .iter()
            .any(|l| l.contains("client token: made, stored")));
        first.signal(SIGKILL);
        drop(first);
        assert!(tb.wait_disconnected(&t, Mode::Destination, WAIT));
        // A restarted process with the stored client token gets in again...
        let second = start(&args, &env);
        second.wait_line("tunnel ready");
        assert!(second
            .log()
            .iter()
            .any(|l| l.contains("client token: read from")));
        second.signal(SIGKILL);
        drop(second);
        assert!(tb.wait_disconnected(&t, Mode::Destination, WAIT));
        // ...but one with a fresh random client token is refused: the token is used.
        let no_file = with(base_args(&tb, &settings), &["-d", "A=9"]);
        let mut third = start(&no_file, &env);
        assert_eq!(third.exit_code(), 3);
        let log = third.log().join("\n");
        assert!(log.contains("client token mismatch"), "{log}");
        // The cause (a restart's new random client token) and how to keep one.
        assert!(
            log.contains("access token already used with another client token"),
            "{log}"
        );
        assert!(log.contains("a restart makes a new random one"), "{log}");
        assert!(
            log.contains("-i TOKEN, AWSIOT_TUNNEL_CLIENT_TOKEN or --client-token-file FILE"),
            "{log}"
        );
        assert_eq!(tb.connection_count(&t, Mode::Destination), 2);
    });
}

#[test]
fn access_token_file_waits_for_a_new_token_after_a_refusal() {
    watchdog(LIMIT, || {
        let dir = temp_dir("tokfile");
        let tb = Testbed::start(&dir).unwrap();
        let t = tb.open_tunnel(&["A"]);
        let settings = fast_settings(&dir, &[]);
        let file = dir.join("token");
        std::fs::write(&file, "not-the-right-token\n").unwrap();
        let args = with(
            base_args(&tb, &settings),
            &["-d", "A=9", "--access-token-file", file.to_str().unwrap()],
        );
        let p = start(&args, &[]);
        p.wait_line("waiting for a new access token");
        std::fs::write(&file, format!("{}\n", t.destination_token)).unwrap();
        p.wait_line("new access token found");
        p.wait_line("tunnel ready");
        assert!(tb.wait_connected(&t, Mode::Destination, WAIT));
        let log = p.log().join("\n");
        assert!(!log.contains(&t.destination_token), "the token leaked");
    });
}

#[test]
fn a_frozen_peer_is_noticed_after_two_ping_periods_and_replaced() {
    watchdog(LIMIT, || {
        let p = pair("freeze", &[("websocket.ping_period_ms", "300")]);
        echo_check(p.port, &pattern(10_000, 1));
        assert!(p.tb.freeze_peer(&p.t, Mode::Destination, true));
        p.dst.wait_line("no answer from the service");
        assert!(p.tb.wait_connections(&p.t, Mode::Destination, 2, WAIT));
        p.dst.wait_nth_line("tunnel ready", 2);
        echo_check(p.port, &pattern(10_000, 2));
        // The idle source, which kept getting pongs, never reconnected.
        assert_eq!(p.tb.connection_count(&p.t, Mode::Source), 1);
    });
}

#[test]
fn listeners_stay_bound_and_refuse_while_the_tunnel_is_down() {
    watchdog(LIMIT, || {
        let p = pair("down", &[]);
        p.tb.reject_upgrades(Some(503));
        assert!(p.tb.drop_peer(&p.t, Mode::Source, How::Abort));
        p.src.wait_line("tunnel lost");
        p.src.wait_line("HTTP 503");
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        assert!(
            closed_by_peer(&mut c),
            "a client was left hanging while the tunnel was down"
        );
        p.src.wait_line("refused a connection");
        p.tb.reject_upgrades(None);
        p.src.wait_nth_line("tunnel ready", 2);
        // Same port, same listener.
        echo_check(p.port, &pattern(50_000, 3));
        assert_eq!(p.src.count("listening on"), 1);
    });
}

#[test]
fn sigusr1_logs_one_status_line() {
    watchdog(LIMIT, || {
        let p = pair("status", &[]);
        let _c = echo_check(p.port, &pattern(1000, 1));
        p.src.signal(SIGUSR1);
        let line = p.src.wait_line("status:");
        assert!(line.contains("status: open"), "{line}");
        assert!(line.contains("V3"), "{line}");
        assert!(line.contains("A=1"), "{line}");
        assert!(line.contains("0 reconnects"), "{line}");
        assert!(line.contains("1000 B in"), "{line}");
    });
}

#[test]
fn service_ids_that_do_not_match_exit_2_naming_both_sets() {
    watchdog(LIMIT, || {
        let dir = temp_dir("mismatch");
        let tb = Testbed::start(&dir).unwrap();
        let t = tb.open_tunnel(&["A", "B"]);
        let settings = fast_settings(&dir, &[]);
        let args = with(
            base_args(&tb, &settings),
            &[
                "-s",
                &format!("A={},C={}", free_port(), free_port()),
                "-b",
                "127.0.0.1",
            ],
        );
        let mut p = start(&args, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", &t.source_token)]);
        assert_eq!(p.exit_code(), 2);
        let line = p.wait_line("do not match");
        assert!(line.contains("A,B") && line.contains("A,C"), "{line}");
    });
}

#[test]
fn no_token_appears_in_a_full_trace() {
    watchdog(LIMIT, || {
        let p = pair("trace", &[]);
        drop(p.src);
        let client = "0123456789abcdef-0123456789abcdef";
        let args = with(
            base_args(&p.tb, &p.settings),
            &[
                "-s",
                &format!("A={}", free_port()),
                "-b",
                "127.0.0.1",
                "-v",
                "6",
            ],
        );
        // -v twice is a usage error; rebuild without the first -v.
        let args: Vec<String> = {
            let mut v = args;
            let i = v.iter().position(|a| a == "-v").unwrap();
            v.drain(i..i + 2);
            v
        };
        p.tb.single_use_tokens(false);
        let src = start(
            &args,
            &[
                ("AWSIOT_TUNNEL_ACCESS_TOKEN", p.t.source_token.as_str()),
                ("AWSIOT_TUNNEL_CLIENT_TOKEN", client),
                ("RUST_LOG", "trace"),
            ],
        );
        src.wait_line("listening on");
        assert!(p.tb.drop_peer(&p.t, Mode::Source, How::Abort));
        src.wait_nth_line("tunnel ready", 2);
        let log = src.log().join("\n");
        assert!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "no trace output at all"
        );
        assert!(!log.contains(&p.t.source_token), "the access token leaked");
        assert!(!log.contains(client), "the client token leaked");
        let _ = std::fs::remove_dir_all(&p.dir);
        let _ = p.echo.port;
    });
}

#[test]
fn user_option_drops_root_after_binding_a_low_port() {
    const TEST: &str = "user_option_drops_root_after_binding_a_low_port";
    if !is_root() {
        skip(TEST, "root (--user switches from root)");
        return;
    }
    watchdog(LIMIT, || {
        let dir = temp_dir("user");
        let tb = Testbed::start(&dir).unwrap();
        let t = tb.open_tunnel(&["A"]);
        let settings = fast_settings(&dir, &[]);
        // The CA directory must stay readable after the switch: it is read at start.
        let low = (600..1000)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port below 1024");
        let args = with(
            base_args(&tb, &settings),
            &[
                "-s",
                &format!("A={low}"),
                "-b",
                "127.0.0.1",
                "--user",
                "nobody",
            ],
        );
        let p = start(&args, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", &t.source_token)]);
        p.wait_line(&format!("listening on 127.0.0.1:{low}"));
        p.wait_line("now running as uid");
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u != "0"),
            "still root: {uid_line}"
        );
    });
}

/// A "service" on 127.0.0.1 that accepts TCP and then sends the start of a TLS record
/// one byte at a time: every read of the handshake gets an answer quickly, so only a
/// deadline on the whole attempt ends it. Stops by itself once its peer is gone, or
/// after 300 s.
fn trickling_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                // A handshake record header announcing 12 KiB, then its body, slowly.
                let head = [0x16u8, 0x03, 0x03, 0x30, 0x00];
                for i in 0..3000usize {
                    let b = head.get(i).copied().unwrap_or(0);
                    if s.write_all(&[b]).is_err() {
                        return;
                    }
                    // The scenario's pace, not synchronisation.
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    port
}

#[test]
fn a_service_that_trickles_its_handshake_is_given_up_at_the_connect_deadline() {
    watchdog(LIMIT, || {
        let dir = temp_dir("trickle");
        let port = trickling_server();
        let settings = fast_settings(
            &dir,
            &[
                ("websocket.connect_timeout_ms", "1000"),
                ("websocket.connect_retry_count", "0"),
            ],
        );
        let args: Vec<String> = [
            "-e",
            &format!("localhost:{port}"),
            "--settings-json",
            &settings.display().to_string(),
            "-d",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = start(&args, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", "token")]);
        assert_eq!(p.exit_code(), 4, "{}", p.log().join("\n"));
        let line = p.wait_line("giving up");
        assert!(
            line.contains("timed out during the TLS handshake")
                && line.contains("websocket.connect_timeout_ms"),
            "{line}"
        );
    });
}

#[test]
fn a_listen_address_given_by_name_is_looked_up_and_retried_while_the_port_is_taken() {
    watchdog(LIMIT, || {
        let r = Rig::new("bind-name", &["A"], &[("tcp.connection_retry_count", "-1")]);
        let echo = echo_server();
        let _dst = r.destination(&format!("A={}", echo.port), &[]);
        // Hold the port on every address the name stands for.
        let port = free_port();
        let addrs: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&("localhost", port))
                .unwrap()
                .collect();
        let holders: Vec<std::net::TcpListener> = addrs
            .iter()
            .filter_map(|a| std::net::TcpListener::bind(a).ok())
            .collect();
        assert!(!holders.is_empty(), "cannot hold port {port} on {addrs:?}");
        let src = r.start(
            &["-s", &format!("A={port}"), "-b", "localhost"],
            &r.t.source_token,
            &[],
        );
        src.wait_line(&format!("cannot listen on localhost:{port}"));
        drop(holders);
        let line = src.wait_line("listening on");
        let addr: std::net::SocketAddr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        assert_eq!(addr.port(), port);
        let c = TcpStream::connect(addr).unwrap();
        echo_on(&c, &pattern(100_000, 1));
    });
}
