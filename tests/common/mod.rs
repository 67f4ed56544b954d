//! Shared pieces of the integration tests: a watchdog so a stuck test fails instead of
//! hanging, the real `localproxy` binary as a child process whose log lines can be
//! waited for, and loopback echo servers and clients.
//!
//! Nothing here sleeps to synchronise: waits are on log lines, channels and sockets,
//! each with a timeout that turns into a test failure.
#![allow(dead_code)]

use localproxy::sys;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits for: only a broken proxy reaches it.
pub const WAIT: Duration = Duration::from_secs(30);

static PIDS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// Runs `body` on its own thread and fails the test if it takes longer than `limit`.
/// Child processes started through [`Proxy`] are killed either way.
pub fn watchdog<F: FnOnce() + Send + 'static>(limit: Duration, body: F) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {
            let _ = h.join();
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic as this test's failure.
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_all();
            panic!(
                "watchdog: the test did not finish within {} s",
                limit.as_secs()
            );
        }
    }
}

/// Has the watchdog kill `pid` if the test runs past its limit (children that are not
/// [`Proxy`]s: sshd, ssh). Call [`untrack`] once the child is reaped.
pub fn track(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(pid);
}

pub fn untrack(pid: u32) {
    if let Some(s) = PIDS.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        s.remove(&pid);
    }
}

fn kill_all() {
    if let Some(set) = PIDS.lock().unwrap().as_ref() {
        for &pid in set {
            let _ = sys::send_signal(pid, sys::SIGKILL);
        }
    }
}

/// Set by `.ci/run`, which installs every tool the tests need: there a skip fails.
pub const NO_SKIP_ENV: &str = "LOCALPROXY_TEST_NO_SKIP";

/// Where skips are listed, one line each, for `.ci/run` to print at the end.
pub const SKIP_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped-tests.txt");

/// Reports that `test` cannot run on this machine because `missing` (a tool, root) is
/// not there; the caller then returns. Under `.ci/run` ([`NO_SKIP_ENV`]) it fails the
/// test instead: a skipped test is a failed test in CI. Only for a missing tool: a
/// failure while setting the scene up (a rejected nft rule, a namespace that cannot be
/// made) must fail the test, not skip it.
pub fn skip(test: &str, missing: &str) {
    let line = format!("{test}: skipped, needs {missing}");
    // Logged either way, so `.ci/run` lists it even when it turned into a failure.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(SKIP_LOG)
    {
        let _ = writeln!(f, "{line}");
    }
    if std::env::var_os(NO_SKIP_ENV).is_some() {
        panic!("{line} (a skip is a failure under .ci/run, which installs it)");
    }
    // Straight to fd 2, not eprintln!: the test harness captures that for passing tests,
    // which would make the skip silent.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether `cmd` is an executable file in a directory of PATH (or a path to one).
pub fn have(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if cmd.contains('/') {
        return is_exe(Path::new(cmd));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| is_exe(&d.join(cmd)))
}

/// Whether the tests run as root (network namespaces, nft, sshd, --user).
pub fn is_root() -> bool {
    sys::is_root()
}

/// A unique scratch directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "localproxy-test-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a settings JSON with short retry delays (and `extra` keys under
/// tunneling.proxy, e.g. `"websocket.ping_period_ms": "500"`) and returns its path.
pub fn fast_settings(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let mut keys: Vec<(String, String)> = vec![
        ("tcp.connection_retry_delay_ms".into(), "100".into()),
        ("tcp.connection_retry_count".into(), "2".into()),
        ("websocket.retry_delay_ms".into(), "100".into()),
        ("websocket.retry_max_delay_ms".into(), "400".into()),
    ];
    for (k, v) in extra {
        keys.retain(|(kk, _)| kk != k);
        keys.push((k.to_string(), v.to_string()));
    }
    // Nested objects as the reference writes them: "a.b" becomes {"a": {"b": ..}}.
    let mut groups: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (k, v) in keys {
        let (g, leaf) = k.split_once('.').unwrap();
        match groups.iter_mut().find(|(n, _)| n == g) {
            Some((_, items)) => items.push((leaf.into(), v)),
            None => groups.push((g.into(), vec![(leaf.into(), v)])),
        }
    }
    let body: Vec<String> = groups
        .iter()
        .map(|(g, items)| {
            let inner: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("\"{k}\": \"{v}\""))
                .collect();
            format!("\"{g}\": {{ {} }}", inner.join(", "))
        })
        .collect();
    let json = format!(
        "{{ \"tunneling\": {{ \"proxy\": {{ {} }} }} }}",
        body.join(", ")
    );
    let p = dir.join("settings.json");
    std::fs::write(&p, json).unwrap();
    p
}

/// A running `localproxy` child with its stderr collected line by line.
pub struct Proxy {
    child: Child,
    pid: u32,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    eof: Arc<Mutex<bool>>,
}

impl Proxy {
    /// Starts the binary with `args`, the access token in the environment, and nothing
    /// else from the test's environment.
    pub fn start(args: &[&str], token: &str) -> Proxy {
        Proxy::start_env(args, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", token)])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        Proxy::start_program(env!("CARGO_BIN_EXE_localproxy"), &[], args, env)
    }

    /// Runs `program prefix... args...`: another build of the proxy, or one under an
    /// emulator (`qemu-arm-static path/to/localproxy`).
    pub fn start_program(
        program: &str,
        prefix: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut cmd = Command::new(program);
        cmd.args(prefix)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start localproxy");
        let pid = child.id();
        PIDS.lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(pid);
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let eof = Arc::new(Mutex::new(false));
        let (l2, e2) = (lines.clone(), eof.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("LOCALPROXY_TEST_ECHO").is_some() {
                    eprintln!("[{pid}] {line}");
                }
                l2.0.lock().unwrap().push(line);
                l2.1.notify_all();
            }
            *e2.lock().unwrap() = true;
            l2.1.notify_all();
        });
        Proxy {
            child,
            pid,
            lines,
            eof,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for a log line containing `needle` (counting lines already seen) and
    /// returns it; panics with the log so far if it does not come.
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_nth_line(needle, 1)
    }

    /// Waits until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_nth_line(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.lines;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(l) = g.iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return l.clone();
            }
            let now = Instant::now();
            if now >= deadline
                || (*self.eof.lock().unwrap()
                    && g.iter().filter(|l| l.contains(needle)).count() < n)
            {
                panic!(
                    "no log line containing {needle:?} (#{n}) from pid {}; log so far:\n{}",
                    self.pid,
                    g.join("\n")
                );
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// How many log lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn signal(&self, sig: i32) {
        sys::send_signal(self.pid, sig).unwrap();
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        // The stderr reader sees EOF when the process exits (it holds the only other
        // copy of the pipe), so wait for that first, then reap.
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.lines;
        let mut g = lock.lock().unwrap();
        while !*self.eof.lock().unwrap() {
            let now = Instant::now();
            if now >= deadline {
                drop(g);
                panic!(
                    "pid {} did not exit; log:\n{}",
                    self.pid,
                    self.log().join("\n")
                );
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
        drop(g);
        let st = self.child.wait().unwrap();
        PIDS.lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .remove(&self.pid);
        st
    }

    /// Waits for the exit and returns the exit code (panics on death by signal).
    pub fn exit_code(&mut self) -> i32 {
        let st = self.wait_exit();
        st.code()
            .unwrap_or_else(|| panic!("pid {} died by a signal: {st:?}", self.pid))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(s) = PIDS.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            s.remove(&self.pid);
        }
    }
}

/// An echo server on 127.0.0.1: every connection gets back what it sends.
pub struct Echo {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
}

pub fn echo_server() -> Echo {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a2 = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            a2.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    Echo { port, accepted }
}

/// Deterministic test data: `len` bytes from a seed, so corruption and reordering show.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Connects to 127.0.0.1:`port`, sends `data` while reading the echo, and checks that
/// exactly `data` comes back. Keeps the connection open afterwards.
pub fn echo_check(port: u16, data: &[u8]) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the source proxy");
    echo_on(&s, data);
    s
}

/// Sends `data` on `s` from a second thread while reading the echo on this one.
pub fn echo_on(s: &TcpStream, data: &[u8]) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let owned = data.to_vec();
    let writer = std::thread::spawn(move || w.write_all(&owned));
    let mut got = vec![0u8; data.len()];
    let mut r = s;
    r.read_exact(&mut got).expect("read the echo");
    writer.join().unwrap().expect("write the data");
    assert!(got == data, "echoed data differs from what was sent");
}

/// Reads until EOF or error; returns true if the peer closed the connection (EOF or
/// reset) within the wait bound.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A testbed with one tunnel and fast settings, and how to start proxies against it.
pub struct Rig {
    pub tb: localproxy::testbed::Testbed,
    pub t: localproxy::testbed::Tunnel,
    pub dir: PathBuf,
    pub settings: PathBuf,
}

impl Rig {
    /// A testbed in a fresh directory, a tunnel with `services`, settings with short
    /// retry delays plus `extra` (keys under tunneling.proxy).
    pub fn new(tag: &str, services: &[&str], extra: &[(&str, &str)]) -> Rig {
        let dir = temp_dir(tag);
        let tb = localproxy::testbed::Testbed::start(&dir).expect("start the testbed");
        let t = tb.open_tunnel(services);
        let settings = fast_settings(&dir, extra);
        Rig {
            tb,
            t,
            dir,
            settings,
        }
    }

    /// `-e`, `-c`, `--settings-json`, then `more`.
    pub fn args(&self, more: &[&str]) -> Vec<String> {
        let mut v = vec![
            "-e".to_string(),
            self.tb.endpoint(),
            "-c".into(),
            self.tb.ca_dir().display().to_string(),
            "--settings-json".into(),
            self.settings.display().to_string(),
        ];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    }

    /// Starts a proxy with `args(more)` and the given access token.
    pub fn start(&self, more: &[&str], token: &str, env: &[(&str, &str)]) -> Proxy {
        let args = self.args(more);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut e = vec![("AWSIOT_TUNNEL_ACCESS_TOKEN", token)];
        e.extend_from_slice(env);
        Proxy::start_env(&a, &e)
    }

    /// A destination for `mapping` (`-d`), once its tunnel is ready.
    pub fn destination(&self, mapping: &str, more: &[&str]) -> Proxy {
        let mut m = vec!["-d", mapping];
        m.extend_from_slice(more);
        let p = self.start(&m, &self.t.destination_token, &[]);
        p.wait_line("tunnel ready");
        p
    }

    /// A source for `mapping` (`-s`) on 127.0.0.1, once it listens on every service.
    pub fn source(&self, mapping: &str, more: &[&str]) -> Proxy {
        let mut m = vec!["-s", mapping, "-b", "127.0.0.1"];
        m.extend_from_slice(more);
        let p = self.start(&m, &self.t.source_token, &[]);
        p.wait_nth_line("listening on", mapping.split(',').count());
        p
    }
}

/// Which build runs at one end of a test tunnel: ours, or another binary with the
/// reference's command line, e.g. the C++ reference 3.3.1 built outside the repository.
#[derive(Clone, Debug)]
pub enum Bin {
    Ours,
    Peer(String),
}

impl Bin {
    pub fn name(&self) -> &'static str {
        match self {
            Bin::Ours => "ours",
            Bin::Peer(_) => "peer",
        }
    }
}

/// `LOCALPROXY_PEER=/path/to/localproxy`: tests that support it add runs with that
/// binary at either end. Unset in CI (the reference is not built there); the runs with
/// our proxy at both ends always happen.
pub fn peer_bin() -> Option<Bin> {
    std::env::var("LOCALPROXY_PEER")
        .ok()
        .filter(|p| !p.is_empty())
        .map(Bin::Peer)
}

impl Rig {
    fn start_bin(&self, bin: &Bin, more: &[&str], token: &str) -> Proxy {
        match bin {
            Bin::Ours => self.start(more, token, &[]),
            Bin::Peer(path) => {
                let args = self.args(more);
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                Proxy::start_program(path, &[], &a, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", token)])
            }
        }
    }

    /// A destination of either build for `mapping`, once it can take streams.
    pub fn start_destination(&self, bin: &Bin, mapping: &str) -> Proxy {
        match bin {
            Bin::Ours => self.destination(mapping, &[]),
            Bin::Peer(_) => {
                let p = self.start_bin(bin, &["-d", mapping], &self.t.destination_token);
                // The testbed sends SERVICE_IDS first on the destination's socket, so
                // anything relayed after this point finds the session set up.
                let dst = localproxy::testbed::Mode::Destination;
                assert!(self.tb.wait_connected(&self.t, dst, WAIT));
                p.wait_line("Web socket session ID");
                p
            }
        }
    }

    /// A source of either build for `mapping` on 127.0.0.1, once it listens. (The
    /// reference logs its "Listening" line just before it listens: a client may still
    /// be refused for a moment.)
    pub fn start_source(&self, bin: &Bin, mapping: &str, more: &[&str]) -> Proxy {
        match bin {
            Bin::Ours => self.source(mapping, more),
            Bin::Peer(_) => {
                let mut m = vec!["-s", mapping, "-b", "127.0.0.1"];
                m.extend_from_slice(more);
                let p = self.start_bin(bin, &m, &self.t.source_token);
                p.wait_nth_line(
                    "Listening for new connection on port",
                    mapping.split(',').count(),
                );
                p
            }
        }
    }
}
