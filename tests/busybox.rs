//! The BusyBox service scripts, run as on a device: `cross/busybox/localproxy.init` and
//! `localproxy-service` under BusyBox sh, with BusyBox's start-stop-daemon, sleep and
//! kill first on PATH. The destination starts from its config file (token from a file),
//! comes back after `kill -9` with the same client token, and stops cleanly (close frame,
//! pid file gone). A configuration error is never hidden: `start` runs `--check` first
//! and fails with its line; an exit 2 at run time reaches the LOG file; the inittab mode
//! waits for the configuration to change instead of being respawned at once. Needs the
//! `busybox` package; without it each test skips through `common::skip` (a failure
//! under `.ci/run`, which installs it).

mod common;

use common::*;
use localproxy::testbed::Mode;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A device's /etc as the scripts see it: BusyBox applets first on PATH, the service
/// wrapper, a token file, a config file with `args`, a log file.
struct Device {
    bb: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    pidfile: PathBuf,
    service: PathBuf,
    script: PathBuf,
    env: Vec<(String, String)>,
}

impl Device {
    fn new(bb: &Path, r: &Rig, args: &[&str]) -> Device {
        let dir = r.dir.clone();
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("cross/busybox");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for applet in ["start-stop-daemon", "sleep", "kill", "cat", "rm", "mkfifo"] {
            std::os::unix::fs::symlink(bb, bin.join(applet)).unwrap();
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
        let conf = dir.join("localproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "LOCALPROXY={}\nTOKEN_FILE={}\nCLIENT_TOKEN_FILE={}\nLOCALPROXY_ARGS=\"{}\"\nLOG={}\nRESPAWN_DELAY=1\n",
                env!("CARGO_BIN_EXE_localproxy"),
                token.display(),
                dir.join("client-token").display(),
                r.args(args).join(" "),
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
        let env = vec![
            ("PATH".into(), path),
            ("LOCALPROXY_CONF".into(), conf.display().to_string()),
            ("LOCALPROXY_SERVICE".into(), service.display().to_string()),
            ("LOCALPROXY_PIDFILE".into(), pidfile.display().to_string()),
        ];
        Device {
            bb: bb.to_path_buf(),
            conf,
            log,
            pidfile,
            service,
            script: scripts.join("localproxy.init"),
            env,
        }
    }

    fn init(&self, verb: &str) -> Output {
        init(&self.bb, &self.script, &self.env, verb)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the LOG file holds a line containing `needle`. A file has no
    /// notification to wait on: it is read again every 20 ms, up to [`WAIT`].
    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the log never showed {needle:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `status` says stopped (exit 3): the supervisor exits after its last
    /// log line, a moment after the line is written.
    fn wait_stopped(&self) {
        let deadline = Instant::now() + WAIT;
        while self.init("status").status.code() != Some(3) {
            assert!(Instant::now() < deadline, "status never said stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn start_runs_check_first_and_fails_with_its_line() {
    let test = "start_runs_check_first_and_fails_with_its_line";
    let Some(bb) = busybox() else {
        return skip(test, "busybox (apt-get install busybox)");
    };
    watchdog(Duration::from_secs(60), move || {
        let r = Rig::new("busybox-check", &["A"], &[]);
        let d = Device::new(&bb, &r, &["-s", "5555", "-d", "22"]);
        let out = d.init("start");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "start: {out:?}");
        let want = "localproxy: --source-listen-port and --destination-app: both are given";
        assert!(err.contains(want), "{err}");
        assert!(
            err.contains("localproxy not started: configuration error"),
            "{err}"
        );
        assert!(!text(&out.stdout).contains("localproxy started"), "{out:?}");
        assert!(!d.pidfile.exists(), "a pid file after a refused start");
        assert_eq!(d.init("status").status.code(), Some(3));
        // The same line, from the wrapper, in the LOG file.
        let log = d.log_text();
        assert!(
            log.contains(&format!("localproxy-service: {want}")),
            "{log}"
        );
        assert!(log.contains("localproxy --check exited 2: fix"), "{log}");
        assert_eq!(r.tb.connection_count(&r.t, Mode::Destination), 0);
    });
}

#[test]
fn an_exit_2_at_run_time_reaches_the_log_file_and_is_not_restarted() {
    let test = "an_exit_2_at_run_time_reaches_the_log_file_and_is_not_restarted";
    let Some(bb) = busybox() else {
        return skip(test, "busybox (apt-get install busybox)");
    };
    watchdog(Duration::from_secs(60), move || {
        // --check cannot know the tunnel's services: B passes it, and the run exits 2
        // when the service says the tunnel has only A.
        let r = Rig::new("busybox-exit2", &["A"], &[]);
        let d = Device::new(&bb, &r, &["-d", "B=22"]);
        let out = d.init("start");
        assert!(out.status.success(), "start: {out:?}");
        d.wait_log("localproxy exited 2 (configuration error); not restarting");
        d.wait_stopped();
        let log = d.log_text();
        assert!(log.contains("localproxy-service: starting"), "{log}");
        assert_eq!(
            log.matches("localproxy-service: starting").count(),
            1,
            "{log}"
        );
        assert_eq!(r.tb.connection_count(&r.t, Mode::Destination), 1);
    });
}

#[test]
fn inittab_mode_waits_for_the_configuration_to_change_after_exit_2() {
    let test = "inittab_mode_waits_for_the_configuration_to_change_after_exit_2";
    let Some(bb) = busybox() else {
        return skip(test, "busybox (apt-get install busybox)");
    };
    watchdog(Duration::from_secs(60), move || {
        let r = Rig::new("busybox-inittab", &["A"], &[]);
        let d = Device::new(&bb, &r, &["-d", "B=22"]);
        // What `::respawn:/usr/sbin/localproxy-service` runs.
        let mut c = Command::new(&d.service);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &d.env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        track(child.id());
        d.wait_log("not restarting until");
        // Exited 2 and not gone: init has nothing to respawn yet.
        assert!(child.try_wait().unwrap().is_none(), "{}", d.log_text());
        assert_eq!(r.tb.connection_count(&r.t, Mode::Destination), 1);
        // Fixing the file lets it go, so init starts the proxy with the new settings.
        let mut conf = std::fs::read_to_string(&d.conf).unwrap();
        conf.push_str("# fixed\n");
        std::fs::write(&d.conf, conf).unwrap();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "it did not exit after the fix");
            std::thread::sleep(Duration::from_millis(20));
        };
        untrack(child.id());
        assert_eq!(status.code(), Some(2));
        let log = d.log_text();
        assert!(
            log.contains("changed; exiting so init starts localproxy again"),
            "{log}"
        );
        assert_eq!(r.tb.connection_count(&r.t, Mode::Destination), 1);
    });
}
