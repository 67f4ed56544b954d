//! The trust store on a bare device: the proxy runs in a mount namespace where /etc/ssl
//! (and /etc/pki) are empty and SSL_CERT_FILE / SSL_CERT_DIR name an empty file and an
//! empty directory, so no CA certificate exists anywhere but in the binary. The built-in
//! Amazon roots are chosen; `-c` with the testbed's CA still verifies the testbed; and
//! without `-c` the testbed's certificate (from an unknown CA) is refused with one clear
//! line, then exit 4 after the retries.
//!
//! Needs root and `unshare` (util-linux); without them it skips through `common::skip`
//! (a failure under `.ci/run`). With them, a mount namespace that cannot be made fails
//! the test.

mod common;

use common::*;
use std::time::Duration;

const HIDE_STORES: &str = "for d in /etc/ssl /etc/pki; do \
     if [ -d \"$d\" ]; then mount -t tmpfs none \"$d\" || exit 97; fi; done; exec \"$@\"";

/// Whether root and `unshare` are there (else [`skip`]); panics when they are but a mount
/// namespace cannot be made, which is a broken scene, not a missing tool.
fn can_unshare(test: &str) -> bool {
    if !is_root() {
        skip(test, "root (for unshare --mount)");
        return false;
    }
    if !have("unshare") {
        skip(test, "unshare (apt-get install util-linux)");
        return false;
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .output()
        .expect("run unshare --mount true");
    assert!(
        out.status.success(),
        "cannot make a mount namespace: unshare --mount true: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    true
}

/// Starts the proxy with `args` in a mount namespace without any CA certificate.
fn start_bare(r: &Rig, args: &[String], token: &str) -> Proxy {
    let empty_file = r.dir.join("empty.pem");
    let empty_dir = r.dir.join("empty-certs");
    std::fs::write(&empty_file, b"").unwrap();
    std::fs::create_dir_all(&empty_dir).unwrap();
    let prefix = [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        HIDE_STORES,
        "hide-stores",
        env!("CARGO_BIN_EXE_localproxy"),
    ];
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_program(
        "unshare",
        &prefix,
        &a,
        &[
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", token),
            ("SSL_CERT_FILE", empty_file.to_str().unwrap()),
            ("SSL_CERT_DIR", empty_dir.to_str().unwrap()),
        ],
    )
}

#[test]
fn bare_device_uses_builtin_roots_capath_adds_and_unknown_ca_is_refused() {
    if !can_unshare("bare_device_uses_builtin_roots_capath_adds_and_unknown_ca_is_refused") {
        return;
    }
    watchdog(Duration::from_secs(60), || {
        let r = Rig::new("trust", &["A"], &[("websocket.connect_retry_count", "1")]);
        let echo = echo_server();

        // With -c: built-in roots chosen, the testbed's CA added, the tunnel works.
        let dst = start_bare(
            &r,
            &r.args(&["-d", &format!("A={}", echo.port)]),
            &r.t.destination_token,
        );
        let line = dst.wait_line("trust store:");
        assert!(
            line.contains("the 5 Amazon root CAs built into the binary"),
            "{line}"
        );
        assert_eq!(
            dst.count("holds no usable CA certificate"),
            2,
            "{:?}",
            dst.log()
        );
        dst.wait_line("-c: 1 more CA(s) from");
        dst.wait_line("tunnel ready");
        let port = free_port();
        let src = start_bare(
            &r,
            &r.args(&["-s", &format!("A={port}"), "-b", "127.0.0.1"]),
            &r.t.source_token,
        );
        src.wait_line("listening on");
        echo_check(port, &pattern(64 << 10, 3));
        drop(src);
        drop(dst);

        // Without -c: the testbed's CA is unknown; one clear line per attempt, then exit 4.
        let r2 = Rig::new(
            "trust-refused",
            &["A"],
            &[("websocket.connect_retry_count", "1")],
        );
        let mut args = r2.args(&["-d", &format!("A={}", echo.port)]);
        let c = args.iter().position(|a| a == "-c").unwrap();
        args.drain(c..c + 2);
        let mut dst = start_bare(&r2, &args, &r2.t.destination_token);
        assert_eq!(dst.exit_code(), 4, "{:?}", dst.log());
        let log = dst.log();
        let refusals: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("add its CA with -c"))
            .collect();
        assert_eq!(refusals.len(), 2, "{log:?}");
        assert!(
            refusals[1].contains("giving up after 2 attempt(s)"),
            "{log:?}"
        );
        assert!(
            refusals[0].contains("TLS: unable to get local issuer certificate"),
            "{log:?}"
        );
        assert_eq!(dst.count("tunnel ready"), 0);
    });
}
