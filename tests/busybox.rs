//! The BusyBox service scripts, run as on a device: `cross/busybox/localproxy.init` and
//! `localproxy-service` under BusyBox sh, with BusyBox's start-stop-daemon, sleep and
//! kill first on PATH. The destination starts from its config file (token from a file),
//! comes back after `kill -9` with the same client token, and stops cleanly (close frame,
//! pid file gone). Needs the `busybox` package; without it the test skips through
//! `common::skip` (a failure under `.ci/run`, which installs it).

mod common;

use common::*;
use localproxy::testbed::Mode;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn init(bb: &Path, script: &Path, env: &[(String, String)], arg: &str) -> Output {
    let mut c = Command::new(bb);
    c.arg("sh").arg(script).arg(arg);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn init_script_starts_respawns_and_stops_the_proxy() {
    let Some(bb) = busybox() else {
        skip(
            "init_script_starts_respawns_and_stops_the_proxy",
            "busybox (apt-get install busybox)",
        );
        return;
    };
    watchdog(Duration::from_secs(120), move || {
        let r = Rig::new("busybox", &["A"], &[]);
        let dir = r.dir.clone();
        let echo = echo_server();
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("cross/busybox");

        // BusyBox applets first on PATH, as on a device.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for applet in ["start-stop-daemon", "sleep", "kill", "cat", "rm", "mkfifo"] {
            std::os::unix::fs::symlink(&bb, bin.join(applet)).unwrap();
        }
        let service = dir.join("localproxy-service");
        write_exec(
            &service,
            &format!(
                "#!{} sh\nexec {} sh {} \"$@\"\n",
                bb.display(),
                bb.display(),
                scripts.join("localproxy-service").display()
            ),
        );
        let token = dir.join("access-token");
        std::fs::write(&token, format!("{}\n", r.t.destination_token)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = dir.join("proxy.log");
        let args = r.args(&["-d", &format!("A={}", echo.port)]).join(" ");
        let conf = dir.join("localproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "LOCALPROXY={}\nTOKEN_FILE={}\nCLIENT_TOKEN_FILE={}\nLOCALPROXY_ARGS=\"{args}\"\nLOG={}\nRESPAWN_DELAY=1\n",
                env!("CARGO_BIN_EXE_localproxy"),
                token.display(),
                dir.join("client-token").display(),
                log.display()
            ),
        )
        .unwrap();
        let pidfile = dir.join("localproxy.pid");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env: Vec<(String, String)> = vec![
            ("PATH".into(), path),
            ("LOCALPROXY_CONF".into(), conf.display().to_string()),
            ("LOCALPROXY_SERVICE".into(), service.display().to_string()),
            ("LOCALPROXY_PIDFILE".into(), pidfile.display().to_string()),
        ];
        let script = scripts.join("localproxy.init");

        let out = init(&bb, &script, &env, "start");
        assert!(out.status.success(), "start: {out:?}");
        assert!(
            r.tb.wait_connected(&r.t, Mode::Destination, WAIT),
            "the proxy never connected"
        );
        assert!(init(&bb, &script, &env, "status").status.success());

        // kill -9 the proxy: the service starts it again, and the stored client token
        // lets the same access token in again.
        let supervisor: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let children =
            std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children"))
                .unwrap();
        let proxy: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
        localproxy::sys::send_signal(proxy, localproxy::sys::SIGKILL).unwrap();
        assert!(
            r.tb.wait_connections(&r.t, Mode::Destination, 2, WAIT),
            "the proxy was not restarted: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        echo_check_through(&r, echo.port);

        let out = init(&bb, &script, &env, "stop");
        assert!(out.status.success(), "stop: {out:?}");
        assert!(
            r.tb.wait_close_frame(&r.t, Mode::Destination, WAIT),
            "no close frame on stop"
        );
        assert!(!pidfile.exists());
        assert_eq!(init(&bb, &script, &env, "status").status.code(), Some(3));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains(&r.t.destination_token),
            "the token leaked into the log"
        );
    });
}

/// A source through the restarted destination still echoes.
fn echo_check_through(r: &Rig, _echo_port: u16) {
    let port = free_port();
    let _src = r.source(&format!("A={port}"), &[]);
    echo_check(port, &pattern(100_000, 5));
}
