//! Set-up errors the run finds before it connects, so they never use the access token:
//! against the testbed, a refused set-up (exit 2, the usual two lines) leaves the token
//! usable by the next run. Also the cases that need a namespace or another user: an
//! address the machine does not have (in a network namespace of the test's own) and
//! a port below 1024 as non-root. The plain cases (web proxy URL, --user, -c, -b
//! syntax) are in tests/cli.rs, without a testbed.

mod common;

use common::*;
use std::process::{Command, Output};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The usage-error shape: exit 2, one line naming the problem, then the `Try` line.
fn usage_line(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(lines[1], "Try 'localproxy --help' for a list of options.");
    lines[0].to_string()
}

#[test]
fn a_refused_set_up_does_not_use_the_token() {
    watchdog(WAIT * 2, || {
        let rig = Rig::new("setup-token", &[], &[]);
        let port = free_port().to_string();
        // Before the checks moved ahead of the connection, this run connected (using up
        // the access token with its random client token), then failed to bind.
        let mut bad = rig.start(&["-s", &port, "-b", "999.1.1.1"], &rig.t.source_token, &[]);
        assert_eq!(bad.exit_code(), 2);
        let log = bad.log();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(
            log[0].starts_with("localproxy: --local-bind-address: '999.1.1.1' is not an IPv4"),
            "{log:?}"
        );
        let mut bad = rig.start(
            &["-s", &port, "--user", "nosuchuser"],
            &rig.t.source_token,
            &[],
        );
        assert_eq!(bad.exit_code(), 2);
        // The token was never presented: a run with another random client token gets in.
        let good = rig.source(&port, &[]);
        assert_eq!(good.count("refused"), 0, "{:?}", good.log());
        let echo = echo_server();
        let _dst = rig.destination(&echo.port.to_string(), &[]);
        drop(echo_check(port.parse().unwrap(), &pattern(1000, 3)));
    });
}

#[test]
fn an_address_this_machine_does_not_have_is_refused() {
    let test = "an_address_this_machine_does_not_have_is_refused";
    if !is_root() {
        return skip(test, "root (for unshare --net)");
    }
    if !have("unshare") {
        return skip(test, "unshare (apt-get install util-linux)");
    }
    if !have("ip") {
        return skip(test, "ip (apt-get install iproute2)");
    }
    // In a network namespace of our own, 192.0.2.1 (TEST-NET-1) is no address of the
    // machine, as 10.9.9.9 is none of a router's; nothing leaves the namespace. Should
    // the check miss it, the run still ends: a loopback endpoint and no retries.
    watchdog(WAIT, || {
        let dir = temp_dir("setup-addr");
        let settings = fast_settings(&dir, &[("websocket.connect_retry_count", "0")]);
        let run = |check: bool| {
            let mut c = Command::new("unshare");
            // A new namespace's loopback is down, and then Linux lets any address be
            // bound: bring it up first, as every machine has it.
            c.args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(env!("CARGO_BIN_EXE_localproxy"))
            .args(["-e", "127.0.0.1:9", "-s", "5555", "-b", "192.0.2.1"])
            .arg("--settings-json")
            .arg(&settings)
            .env_clear()
            .env("AWSIOT_TUNNEL_ACCESS_TOKEN", "AQGAAXh0ZXN0dG9rZW4");
            if check {
                c.arg("--check");
            }
            c.output().expect("run unshare")
        };
        let line = usage_line(&run(false));
        assert_eq!(
            line,
            "localproxy: -b: 192.0.2.1 is not an address of this machine; give one of its \
             addresses, 127.0.0.1 or 0.0.0.0"
        );
        assert_eq!(usage_line(&run(true)), line);
    });
}

#[test]
fn a_port_below_1024_as_non_root_says_what_to_do() {
    watchdog(WAIT, low_port);
}

fn low_port() {
    let test = "a_port_below_1024_as_non_root_says_what_to_do";
    let args = ["-r", "us-east-1", "-s", "22", "-b", "127.0.0.1"];
    let run = |check: bool| {
        let mut c = if is_root() {
            // As nobody, the way a router's init would run it without --user.
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(env!("CARGO_BIN_EXE_localproxy"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_localproxy"))
        };
        c.args(args)
            .env_clear()
            .current_dir("/")
            .env("AWSIOT_TUNNEL_ACCESS_TOKEN", "AQGAAXh0ZXN0dG9rZW4");
        if check {
            c.arg("--check");
        }
        c.output().expect("run localproxy")
    };
    if is_root() && !have("setpriv") {
        return skip(
            test,
            "setpriv (apt-get install util-linux) to run as nobody",
        );
    }
    let line = usage_line(&run(false));
    assert_eq!(
        line,
        "localproxy: -s: cannot listen on 127.0.0.1:22: permission denied; ports below 1024 \
         need root: start it as root with --user NAME (it switches after binding), or give a \
         port of 1024 or more"
    );
    assert_eq!(usage_line(&run(true)), line);
}
