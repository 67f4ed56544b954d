//! A cross-built binary proven on its own architecture: both proxies run as the static
//! binary named by LOCALPROXY_CROSS_BIN, under the emulator named by LOCALPROXY_QEMU
//! (e.g. qemu-arm-static; empty for a native binary), against the testbed on the host.
//! A 4 MiB echo must come through intact, and SIGTERM must end the source with exit 0.
//!
//! `cross/build.sh --test TARGET` (and so CI) sets both variables and runs this ignored
//! test with `--ignored`; a plain `cargo test` lists it as ignored.

mod common;

use common::*;
use localproxy::sys::SIGTERM;
use std::time::Duration;

#[test]
#[ignore = "needs a cross-built binary: cross/build.sh --test TARGET runs it"]
fn cross_built_proxies_carry_a_tunnel_under_emulation() {
    let bin = std::env::var("LOCALPROXY_CROSS_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .expect("set LOCALPROXY_CROSS_BIN (and LOCALPROXY_QEMU), or run cross/build.sh --test");
    let qemu = std::env::var("LOCALPROXY_QEMU").unwrap_or_default();
    watchdog(Duration::from_secs(300), move || {
        let (program, prefix): (&str, Vec<&str>) = if qemu.is_empty() {
            (bin.as_str(), vec![])
        } else {
            (qemu.as_str(), vec![bin.as_str()])
        };
        let r = Rig::new("cross", &["A"], &[]);
        let echo = echo_server();
        let port = free_port();
        let start = |more: &[&str], token: &str| {
            let args = r.args(more);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            Proxy::start_program(
                program,
                &prefix,
                &a,
                &[("AWSIOT_TUNNEL_ACCESS_TOKEN", token)],
            )
        };
        let dst = start(&["-d", &format!("A={}", echo.port)], &r.t.destination_token);
        dst.wait_line("tunnel ready");
        let mut src = start(
            &["-s", &format!("A={port}"), "-b", "127.0.0.1"],
            &r.t.source_token,
        );
        src.wait_line("listening on");
        echo_check(port, &pattern(4 << 20, 7));
        src.signal(SIGTERM);
        assert_eq!(src.exit_code(), 0);
        drop(dst);
        eprintln!("cross binary {bin}: 4 MiB echo intact, SIGTERM exit 0");
    });
}
