//! Line widths on an 80-column console: every line a healthy run prints at the default
//! level fits 80 columns after the timestamp, each failure is one line of at most 120
//! with a cause a person can act on, and `--help` fits 80 columns. Also the first line
//! of a run, which names the version for syslog.

mod common;

use common::*;

/// Width of a log line without its timestamp (`2026-11-24T10:54:05.123Z `).
fn width(line: &str) -> usize {
    let rest = match line.split_once(' ') {
        Some((ts, rest)) if ts.len() == 24 && ts.ends_with('Z') => rest,
        _ => line,
    };
    rest.chars().count()
}

fn assert_fits(lines: &[String], max: usize, what: &str) {
    let wide: Vec<String> = lines
        .iter()
        .filter(|l| width(l) > max)
        .map(|l| format!("{:3} {l}", width(l)))
        .collect();
    assert!(
        wide.is_empty(),
        "{what}: {} of {} lines wider than {max}:\n{}",
        wide.len(),
        lines.len(),
        wide.join("\n")
    );
}

#[test]
fn a_healthy_run_fits_80_columns() {
    watchdog(WAIT * 2, || {
        let rig = Rig::new("widths", &["SSH"], &[]);
        let echo = echo_server();
        let mut dst = rig.destination(&format!("SSH={}", echo.port), &[]);
        let port = free_port();
        let mut src = rig.source(&format!("SSH={port}"), &[]);
        for i in 0..3 {
            drop(echo_check(port, &pattern(10_000, i)));
        }
        dst.wait_nth_line("closed after", 3);
        src.wait_nth_line("closed after", 3);
        dst.signal(localproxy::sys::SIGUSR1);
        dst.wait_line("status:");
        src.signal(localproxy::sys::SIGTERM);
        dst.signal(localproxy::sys::SIGTERM);
        assert_eq!(src.exit_code(), 0);
        assert_eq!(dst.exit_code(), 0);
        let version = env!("CARGO_PKG_VERSION");
        for (p, mode) in [(&dst, "destination"), (&src, "source")] {
            let log = p.log();
            println!("--- {mode}\n{}", log.join("\n"));
            let first = log.first().map(|l| l.split_once(' ').unwrap().1).unwrap();
            assert_eq!(
                first,
                format!("INFO localproxy {version} starting as {mode}")
            );
            assert_fits(&log, 80, mode);
        }
    });
}

#[test]
fn each_failure_is_one_line_of_at_most_120_and_a_repeat_is_short() {
    watchdog(WAIT * 2, || {
        // Six attempts with the same failure: shown in full once, then as
        // `(same failure, attempt N)` at attempts 2 and 4, and the last line gives up.
        let rig = Rig::new(
            "widths-fail",
            &["SSH"],
            &[
                ("websocket.connect_retry_count", "5"),
                ("websocket.retry_delay_ms", "1"),
                ("websocket.retry_max_delay_ms", "1"),
            ],
        );
        // A certificate nobody trusts: the testbed's CA without -c.
        let mut args = rig.args(&["-d", "SSH=22"]);
        let c = args.iter().position(|a| a == "-c").unwrap();
        args.drain(c..c + 2);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Proxy::start_env(
            &a,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", &rig.t.destination_token)],
        );
        assert_eq!(p.exit_code(), 4);
        let cert = p.log();
        println!("--- certificate\n{}", cert.join("\n"));
        let failures: Vec<&String> = cert
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let full: Vec<&&String> = failures
            .iter()
            .filter(|l| l.contains("unable to get local issuer certificate"))
            .collect();
        assert_eq!(full.len(), 2, "once in full, once giving up: {cert:?}");
        assert!(full[0].contains("add its CA with -c"), "{}", full[0]);
        assert!(
            !full[0].contains(".c:"),
            "an OpenSSL source file: {}",
            full[0]
        );
        let same: Vec<&&String> = failures
            .iter()
            .filter(|l| l.contains("(same failure, attempt"))
            .collect();
        assert_eq!(same.len(), 2, "attempts 2 and 4: {cert:?}");
        assert!(
            same[0].ends_with("(same failure, attempt 2)"),
            "{}",
            same[0]
        );
        assert!(
            same[1].ends_with("(same failure, attempt 4)"),
            "{}",
            same[1]
        );
        assert_eq!(
            cert.iter().filter(|l| l.contains("connecting to")).count(),
            1
        );
        assert_fits(&cert, 120, "certificate failure");

        // Nothing listens: TCP refused.
        let dead = free_port();
        let rig = Rig::new(
            "widths-tcp",
            &["SSH"],
            &[("websocket.connect_retry_count", "1")],
        );
        let mut args = rig.args(&["-d", "SSH=22"]);
        args[1] = format!("127.0.0.1:{dead}");
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Proxy::start_env(
            &a,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", &rig.t.destination_token)],
        );
        assert_eq!(p.exit_code(), 4);
        let tcp = p.log();
        println!("--- tcp\n{}", tcp.join("\n"));
        assert!(
            tcp.iter().any(|l| l.contains(&format!(
                "TCP connect to 127.0.0.1:{dead}: Connection refused"
            ))),
            "{tcp:?}"
        );
        assert_fits(&tcp, 120, "TCP refused");

        // The service refuses the token: exit 3, one line.
        let rig = Rig::new("widths-token", &["SSH"], &[]);
        let mut p = rig.start(&["-d", "SSH=22"], "AQGAAXhub3RhdG9rZW4", &[]);
        assert_eq!(p.exit_code(), 3);
        let refused = p.log();
        println!("--- refused\n{}", refused.join("\n"));
        assert_fits(&refused, 120, "token refused");
    });
}

#[test]
fn help_fits_80_columns() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_localproxy"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() > 40);
    let wide: Vec<&String> = lines.iter().filter(|l| l.chars().count() > 80).collect();
    assert!(
        wide.is_empty(),
        "--help lines wider than 80:\n{}",
        wide.iter()
            .map(|l| format!("{:3} {l}", l.chars().count()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_name_lookup_failure_names_the_host_once() {
    let test = "a_name_lookup_failure_names_the_host_once";
    if !is_root() {
        return skip(test, "root (for unshare --net)");
    }
    if !have("unshare") || !have("ip") {
        return skip(test, "unshare and ip (util-linux, iproute2)");
    }
    watchdog(WAIT, || {
        // In a network namespace of its own, with only loopback, a lookup fails at once
        // and no query leaves the machine.
        let dir = temp_dir("widths-dns");
        let settings = fast_settings(&dir, &[("websocket.connect_retry_count", "1")]);
        let settings = settings.display().to_string();
        let lp = env!("CARGO_BIN_EXE_localproxy");
        let mut p = Proxy::start_program(
            "unshare",
            &[
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
                lp,
            ],
            &[
                "-r",
                "ap-southeast-2",
                "-d",
                "22",
                "--settings-json",
                &settings,
            ],
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", "AQGAAXh0ZXN0dG9rZW4")],
        );
        assert_eq!(p.exit_code(), 4);
        let log = p.log();
        println!("--- name lookup\n{}", log.join("\n"));
        let host = "data.tunneling.iot.ap-southeast-2.amazonaws.com";
        // The host once, in the line before the failure.
        assert_eq!(
            log.iter().filter(|l| l.contains(host)).count(),
            1,
            "{log:?}"
        );
        let failed: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("name lookup failed: "))
            .collect();
        assert_eq!(failed.len(), 2, "{log:?}");
        for l in &failed {
            assert!(!l.contains("failed to lookup address information"), "{l}");
        }
        assert_fits(&log, 120, "name lookup failure");
    });
}

#[test]
fn a_refused_target_is_one_line_per_connection_on_each_side() {
    watchdog(WAIT * 2, || {
        let rig = Rig::new("widths-target", &["SSH"], &[]);
        let dead = free_port();
        let dst = rig.destination(&format!("SSH={dead}"), &[]);
        let port = free_port();
        let src = rig.source(&format!("SSH={port}"), &[]);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(closed_by_peer(&mut c));
        src.wait_line("reset by the destination before any data");
        let refused = dst.wait_line("(3 attempts)");
        assert!(refused.contains("is it running?"), "{refused}");
        for (p, what) in [(&dst, "destination"), (&src, "source")] {
            let log = p.log();
            println!("--- {what}\n{}", log.join("\n"));
            let problems = log
                .iter()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .count();
            assert_eq!(problems, 1, "one line for one refused connection: {log:?}");
            assert_fits(&log, 120, what);
        }
    });
}
