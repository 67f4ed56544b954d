//! The proxy on a serial console: stderr on a pty, as a person running it by hand over a
//! serial line has it. Covers what a console does to a process that a pipe does not:
//! output stopped by flow control (Ctrl-S) must not stop the tunnel; and what logging
//! out does: SIGHUP, which stays ignored when the parent ignored it (nohup).
//!
//! The pty is opened with openpty (`localproxy::sys::tty`; no tmux or screen needed).
//! Not covered here: line widths (tests/widths.rs) and the init script
//! (tests/busybox.rs).

mod common;

use common::*;
use localproxy::sys;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the console stops taking output: the 10 s.
const PAUSE: Duration = Duration::from_secs(10);

/// A pty: the master the test reads, and the slave the proxies write their stderr to.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn openpty() -> Pty {
    let (master, slave) = sys::tty::open_pty().expect("openpty");
    Pty { master, slave }
}

/// Stops (Ctrl-S, XOFF) or restarts (Ctrl-Q) output on the terminal `fd` belongs to.
fn flow(fd: &OwnedFd, on: bool) {
    sys::tty::set_output_flow(fd, on).expect("tcflow");
}

/// Every line the console has shown so far, and a way to wait for one.
type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

fn read_console(master: OwnedFd) -> Lines {
    let lines: Lines = Arc::default();
    let l2 = lines.clone();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        let mut partial = Vec::new();
        // EIO once every slave fd is closed: the end of the console.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            partial.extend_from_slice(&buf[..n]);
            while let Some(i) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if std::env::var_os("LOCALPROXY_TEST_ECHO").is_some() {
                    eprintln!("[console] {text}");
                }
                l2.0.lock().unwrap().push(text);
                l2.1.notify_all();
            }
        }
    });
    lines
}

fn wait_console(lines: &Lines, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + WAIT;
    let (lock, cv) = &**lines;
    let mut g = lock.lock().unwrap();
    loop {
        if let Some(l) = g.iter().filter(|l| l.contains(needle)).nth(n - 1) {
            return l.clone();
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "the console never showed {needle:?} (#{n}); it shows:\n{}",
            g.join("\n")
        );
        g = cv.wait_timeout(g, deadline - now).unwrap().0;
    }
}

/// A proxy whose stderr is the pty's slave; killed when dropped.
struct OnConsole(Child);

impl Drop for OnConsole {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        untrack(self.0.id());
    }
}

fn start_on(pty: &Pty, rig: &Rig, more: &[&str], token: &str) -> OnConsole {
    let child = Command::new(env!("CARGO_BIN_EXE_localproxy"))
        .args(rig.args(more))
        .env_clear()
        .env("AWSIOT_TUNNEL_ACCESS_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()))
        .spawn()
        .expect("start localproxy");
    track(child.id());
    OnConsole(child)
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn a_console_that_stops_taking_output_does_not_stop_the_tunnel() {
    watchdog(PAUSE + WAIT * 3, || {
        let rig = Rig::new("console-xoff", &[], &[]);
        let echo = echo_server();
        let pty = openpty();
        let lines = read_console(pty.master.try_clone().unwrap());
        let target = echo.port.to_string();
        // -v 5: a few lines per connection from each proxy, so the pause fills the queue.
        let dst = start_on(
            &pty,
            &rig,
            &["-d", &target, "-v", "5"],
            &rig.t.destination_token,
        );
        wait_console(&lines, "tunnel ready", 1);
        let port = free_port().to_string();
        let src = start_on(
            &pty,
            &rig,
            &["-s", &port, "-b", "127.0.0.1", "-v", "5"],
            &rig.t.source_token,
        );
        wait_console(&lines, "listening on", 1);
        let port: u16 = port.parse().unwrap();
        let data = pattern(16 * 1024, 1);
        drop(echo_check(port, &data));
        let rss_before = [rss_kb(dst.0.id()), rss_kb(src.0.id())];

        // Ctrl-S: from now on a write(2) to the console blocks.
        flow(&pty.slave, false);
        let start = Instant::now();
        let mut echoes = 0u32;
        while start.elapsed() < PAUSE {
            // A new connection each time: each logs lines on both proxies. If a log
            // write blocked an I/O thread this echo would never come back (read
            // timeout, then the watchdog).
            drop(echo_check(port, &data));
            echoes += 1;
        }
        let rss_after = [rss_kb(dst.0.id()), rss_kb(src.0.id())];
        // Ctrl-Q: the console drains, and says how much it lost. The report also shows
        // the stop took effect: lines are dropped only while the writer is blocked.
        flow(&pty.slave, true);
        let report = wait_console(&lines, "log lines dropped: console not draining", 1);
        println!("{echoes} echoes through the tunnel while the console was stopped");
        println!("VmRSS kB before {rss_before:?}, after the pause {rss_after:?}; {report}");
        assert!(
            echoes > 1,
            "only {echoes} echo during the pause: the tunnel stalled"
        );
        for (b, a) in rss_before.iter().zip(rss_after) {
            // The queue holds 64 KiB of lines at most; anything near a megabyte more
            // would mean the lines are kept rather than dropped.
            assert!(a < b + 1024, "VmRSS grew from {b} kB to {a} kB");
        }
        // After the pause everything works as before and lines reach the console.
        let closed = |l: &Lines| {
            l.0.lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("closed after"))
                .count()
        };
        let before = closed(&lines);
        drop(echo_check(port, &data));
        wait_console(&lines, "closed after", before + 1);
        drop((dst, src));
    });
}

/// `sh -c 'trap "" HUP; exec localproxy ...'`: a parent that ignores SIGHUP, as nohup does.
fn start_ignoring_hup(rig: &Rig, more: &[&str], token: &str) -> Proxy {
    let mut args: Vec<String> = vec![
        "-c".into(),
        "trap '' HUP; exec \"$0\" \"$@\"".into(),
        env!("CARGO_BIN_EXE_localproxy").into(),
    ];
    args.extend(rig.args(more));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start_program("/bin/sh", &[], &a, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", token)])
}

#[test]
fn a_hangup_ignored_at_start_stays_ignored() {
    watchdog(WAIT * 2, || {
        let rig = Rig::new("console-nohup", &[], &[]);
        let echo = echo_server();
        let target = echo.port.to_string();
        let mut dst = start_ignoring_hup(&rig, &["-d", &target], &rig.t.destination_token);
        dst.wait_line("SIGHUP was ignored at start (nohup?): it stays ignored");
        dst.wait_line("tunnel ready");
        dst.signal(sys::SIGHUP);
        // Signals are taken in order by one thread: the status line for the SIGUSR1
        // sent after the SIGHUP shows the SIGHUP has had its chance.
        dst.signal(sys::SIGUSR1);
        dst.wait_line("status:");
        assert_eq!(dst.count("SIGHUP received"), 0, "{:?}", dst.log());
        let port = free_port().to_string();
        let src = rig.source(&port, &[]);
        drop(echo_check(port.parse().unwrap(), &pattern(4096, 2)));
        drop(src);
        dst.signal(sys::SIGTERM);
        assert_eq!(dst.exit_code(), 0);
        dst.wait_line("SIGTERM received");
    });
}

#[test]
fn a_hangup_not_ignored_closes_the_tunnel() {
    watchdog(WAIT, || {
        let rig = Rig::new("console-hup", &[], &[]);
        let mut dst = rig.destination("22", &[]);
        assert_eq!(dst.count("was ignored at start"), 0);
        dst.signal(sys::SIGHUP);
        assert_eq!(dst.exit_code(), 0);
        dst.wait_line("SIGHUP received: closing the tunnel");
    });
}
