//! The sandbox through the real binary against the testbed: on by default in both modes
//! (every thread of the process filtered, no_new_privs set, the tunnel working), the test
//! hook's forbidden calls (execve, opening /etc/shadow) refused in a running proxy whose
//! tunnel still works afterwards, `--no-sandbox` (flag and config-file key), `--check`,
//! and `--user`'s second filter.
//!
//! What the filter itself allows and refuses call by call is tested in
//! src/sys/sandbox.rs, in forked children.

mod common;

use common::*;
use localproxy::sys::SIGUSR1;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// `field` of /proc/PID/status (e.g. "Seccomp"), for the process and for each thread.
fn status_fields(pid: u32, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the proxy's threads");
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with(&format!("{field}:"))) {
            out.push(l[field.len() + 1..].trim().to_string());
        }
    }
    out
}

fn assert_filtered(p: &Proxy, filters: &str) {
    let seccomp = status_fields(p.pid(), "Seccomp");
    assert!(
        seccomp.len() >= 3,
        "main, tunnel and local threads: {seccomp:?}"
    );
    assert!(
        seccomp.iter().all(|s| s == "2"),
        "every thread filtered: {seccomp:?}"
    );
    let nnp = status_fields(p.pid(), "NoNewPrivs");
    assert!(nnp.iter().all(|s| s == "1"), "{nnp:?}");
    let n = status_fields(p.pid(), "Seccomp_filters");
    assert!(n.iter().all(|s| s == filters), "{n:?}");
}

#[test]
fn on_by_default_in_both_modes_every_thread_filtered_and_the_tunnel_works() {
    watchdog(LIMIT, || {
        let r = Rig::new("sandbox-on", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let dst = r.destination(&format!("A={}", echo.port), &["-v", "5"]);
        let src = r.source(&format!("A={port}"), &[]);
        // The memory trimming read /proc/PID/smaps through Landlock, after the sandbox.
        let trimmed = dst.wait_line("start-up code pages");
        assert!(trimmed.contains("released"), "{trimmed}");
        for p in [&dst, &src] {
            let line = p.wait_line("sandbox: on");
            assert!(
                line.contains("seccomp") && line.contains("landlock ABI v"),
                "{line}"
            );
        }
        // Two connections, so the local thread's lookups and connects ran sandboxed.
        for i in 0..2 {
            echo_check(port, &pattern(256 << 10, i));
        }
        assert_filtered(&dst, "1");
        assert_filtered(&src, "1");
    });
}

#[test]
fn forbidden_calls_are_refused_in_a_running_proxy_and_the_tunnel_goes_on() {
    watchdog(LIMIT, || {
        let r = Rig::new("sandbox-probe", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let dst = r.start(
            &["-d", &format!("A={}", echo.port)],
            &r.t.destination_token,
            &[("LOCALPROXY_TEST_SANDBOX_PROBE", "exec,shadow")],
        );
        dst.wait_line("tunnel ready");
        let src = r.source(&format!("A={port}"), &[]);
        let c = echo_check(port, &pattern(64 << 10, 1));
        dst.signal(SIGUSR1);
        let exec = dst.wait_line("sandbox probe: execve");
        assert!(exec.contains("execve refused"), "{exec}");
        assert!(exec.contains("Operation not permitted"), "{exec}");
        let shadow = dst.wait_line("sandbox probe: opening /etc/shadow");
        assert!(shadow.contains("refused"), "{shadow}");
        // Landlock, not the file's mode, refused it when the proxy runs as root.
        if is_root() {
            assert!(shadow.contains("Permission denied"), "{shadow}");
        }
        dst.wait_line("status:");
        // Still alive and tunnelling, on the open connection and on a new one.
        echo_on(&c, &pattern(64 << 10, 2));
        echo_check(port, &pattern(64 << 10, 3));
        assert_eq!(dst.count("not refused"), 0, "{:?}", dst.log());
        drop(src);
    });
}

#[test]
fn no_sandbox_turns_it_off_from_the_command_line_or_a_config_file() {
    watchdog(LIMIT, || {
        let r = Rig::new("sandbox-off", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let conf = r.dir.join("off.conf");
        std::fs::write(&conf, "no-sandbox = true\n").unwrap();
        let conf = conf.display().to_string();
        // The destination from a config file, the source with the flag.
        let dst = r.start(
            &["-d", &format!("A={}", echo.port), "--config", &conf],
            &r.t.destination_token,
            &[("LOCALPROXY_TEST_SANDBOX_PROBE", "exec")],
        );
        dst.wait_line("tunnel ready");
        let src = r.source(&format!("A={port}"), &["--no-sandbox"]);
        for p in [&dst, &src] {
            p.wait_line("sandbox: off (--no-sandbox)");
            assert!(
                status_fields(p.pid(), "Seccomp").iter().all(|s| s == "0"),
                "not filtered"
            );
        }
        echo_check(port, &pattern(64 << 10, 4));
        dst.signal(SIGUSR1);
        // Without the filter the probe's execve reaches the kernel, which finds no file.
        let exec = dst.wait_line("sandbox probe: execve");
        assert!(
            exec.contains("not refused") && exec.contains("No such file"),
            "{exec}"
        );
    });
}

#[test]
fn check_shows_the_sandbox_state() {
    let check = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_localproxy"));
        cmd.args(["-r", "eu-west-1", "-d", "22", "--check"])
            .args(extra)
            .env_clear()
            .env("AWSIOT_TUNNEL_ACCESS_TOKEN", "token-for-check");
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let on = check(&[]);
    let line = on.lines().find(|l| l.starts_with("sandbox = ")).unwrap();
    assert!(
        line.starts_with("sandbox = on (seccomp allow-list of "),
        "{line}"
    );
    assert!(line.contains("landlock ABI v"), "{line}");
    let off = check(&["--no-sandbox"]);
    assert!(off.contains("\nsandbox = off (--no-sandbox)\n"), "{off}");
}

#[test]
fn user_switch_works_under_the_sandbox_and_stacks_a_second_filter() {
    const TEST: &str = "user_switch_works_under_the_sandbox_and_stacks_a_second_filter";
    if !is_root() {
        skip(TEST, "root (--user switches from root)");
        return;
    }
    watchdog(LIMIT, || {
        let r = Rig::new("sandbox-user", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let dst = r.destination(&format!("A={}", echo.port), &["--user", "nobody"]);
        let src = r.source(&format!("A={port}"), &["--user", "nobody"]);
        src.wait_line("now running as uid");
        echo_check(port, &pattern(256 << 10, 5));
        // The destination switched before the sandbox: one filter, without the
        // setuid family. The source switched after it: a second filter forbids them.
        assert_filtered(&dst, "1");
        assert_filtered(&src, "2");
        for p in [&dst, &src] {
            let uid = status_fields(p.pid(), "Uid");
            assert!(
                uid.iter().all(|u| !u.split_whitespace().any(|x| x == "0")),
                "{uid:?}"
            );
        }
    });
}
