//! A real OpenSSH through two localproxy processes: a private `sshd` on 127.0.0.1 behind
//! our destination proxy, the `ssh` and `scp` clients in front of our source proxy, both
//! proxies in their default mode (V3) against the testbed. Once on a tunnel with a named
//! service (`-d SSH=PORT`, `-s SSH=PORT`) and once on a tunnel without services
//! (`-d PORT`, `-s PORT`), each checks:
//!
//! - three remote commands back to back, each its own connection (the second connection
//!   of a tunnel without services used to hang);
//! - scp of 32 MiB of pseudo-random bytes up, then back down, byte for byte;
//! - four simultaneous sessions, each sending 4 MiB to a remote `sha256sum` and receiving
//!   a 4 MiB file back;
//! - `ssh -L` to an echo server through the tunnel;
//! - one more command at the end.
//!
//! It prints figures, never asserted on: scp MiB/s each way and the median 1-byte round
//! trip through an `ssh ... cat` session, through the tunnel and directly to sshd, on
//! lines starting `ssh figures:` (`cargo test --test ssh -- --nocapture`).
//!
//! Needs root (sshd) and OpenSSH (`apt-get install openssh-server openssh-client`);
//! without them the tests report a skip. Every ssh, scp and sshd started here is killed
//! when its test ends, panics or is given up on (a per-command deadline, and
//! PR_SET_PDEATHSIG should the watchdog abandon the test's thread).

mod common;

use common::*;
use localproxy::sys;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);
/// Deadline of a short ssh command (a handshake and a few bytes).
const SHORT: Duration = WAIT;
/// Deadline of an ssh or scp that moves megabytes.
const LONG: Duration = Duration::from_secs(150);
const SSHD: &str = "/usr/sbin/sshd";
const BIG: usize = 32 << 20;
const STREAM: usize = 4 << 20;
const SESSIONS: u64 = 4;
const ROUNDS: usize = 50;
const WARMUP: usize = 5;

#[test]
fn ssh_through_a_named_service() {
    let name = "ssh_through_a_named_service";
    if ready(name) {
        watchdog(LIMIT, || each_pair(true));
    }
}

#[test]
fn ssh_through_a_tunnel_without_services() {
    let name = "ssh_through_a_tunnel_without_services";
    if ready(name) {
        watchdog(LIMIT, || each_pair(false));
    }
}

/// Whether this machine can run the test; if not, reports the skip.
fn ready(test: &str) -> bool {
    if !is_root() {
        skip(test, "root (sshd)");
        return false;
    }
    let missing: Vec<&str> = [SSHD, "ssh", "scp", "ssh-keygen", "sha256sum"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        skip(
            test,
            &format!(
                "{} (apt-get install openssh-server openssh-client)",
                missing.join(", ")
            ),
        );
        return false;
    }
    true
}

/// Our proxies at both ends; with `LOCALPROXY_PEER` set, also that binary (e.g. the
/// C++ reference) as the source and then as the destination.
fn each_pair(named: bool) {
    through_the_tunnel(named, &Bin::Ours, &Bin::Ours);
    if let Some(peer) = peer_bin() {
        through_the_tunnel(named, &peer, &Bin::Ours);
        through_the_tunnel(named, &Bin::Ours, &peer);
    }
}

fn through_the_tunnel(named: bool, src_bin: &Bin, dst_bin: &Bin) {
    let s = Scene::new(named, src_bin, dst_bin);
    let shape = s.shape.as_str();

    // Connections one after the other, each asserted: the second and third must work
    // as the first did (on a tunnel without services the second used to hang).
    for run in 1..=3 {
        let out = s.ssh(&format!("connection {run}"), "echo hello; uname -s");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "hello\nLinux\n",
            "{shape}: remote command, connection {run}"
        );
    }

    // scp 32 MiB up, then the uploaded file back down.
    let data = pattern(BIG, 1);
    let local = s.path("up.bin");
    let remote = s.path("remote.bin");
    let back = s.path("down.bin");
    let at_remote = format!("root@127.0.0.1:{remote}");
    std::fs::write(&local, &data).unwrap();
    let up = s.scp(s.port, &local, &at_remote);
    assert!(
        std::fs::read(&remote).unwrap() == data,
        "{shape}: the file scp uploaded differs from the original"
    );
    let down = s.scp(s.port, &at_remote, &back);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "{shape}: the file scp downloaded differs from the original"
    );
    drop(data);

    // Four simultaneous sessions, each streaming 4 MiB each way.
    let workers: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let file = s.path(&format!("stream-{i}.bin"));
            std::fs::write(&file, pattern(STREAM, 100 + i)).unwrap();
            let mut cmd = s.ssh_cmd(s.port);
            cmd.arg(format!("sha256sum; cat {file}"));
            std::thread::spawn(move || {
                let out = run(&mut cmd, Some(pattern(STREAM, 200 + i)), LONG);
                (i, out.ok("ssh session"))
            })
        })
        .collect();
    for w in workers {
        let (i, out) = w.join().unwrap();
        let out = out.unwrap_or_else(|e| panic!("{shape}: session {i}: {e}\n{}", s.diag()));
        let hash = format!(
            "{}  -\n",
            hex(&openssl::sha::sha256(&pattern(STREAM, 200 + i)))
        );
        assert!(
            out.len() == hash.len() + STREAM,
            "{shape}: session {i}: {} bytes back, expected {}",
            out.len(),
            hash.len() + STREAM
        );
        assert_eq!(
            String::from_utf8_lossy(&out[..hash.len()]),
            hash,
            "{shape}: session {i}: the remote sha256sum of what it was sent"
        );
        assert!(
            out[hash.len()..] == pattern(STREAM, 100 + i)[..],
            "{shape}: session {i}: the streamed file differs"
        );
    }

    // ssh -L to an echo server, the forwarded connections inside the tunnel's one.
    let echo = echo_server();
    let lport = free_port();
    let mut cmd = s.ssh_cmd(s.port);
    cmd.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{lport}:127.0.0.1:{}", echo.port));
    let mut fwd = Kid::spawn(&mut cmd, "ssh -L", LONG, false);
    let deadline = Instant::now() + SHORT;
    let conn = loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", lport)) {
            break c;
        }
        if let Ok(Some(st)) = fwd.child.try_wait() {
            panic!(
                "{shape}: ssh -L exited ({st}) before it listened on {lport}: {}\n{}",
                fwd.stderr(),
                s.diag()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{shape}: ssh -L did not listen on {lport} within {} s\n{}",
            SHORT.as_secs(),
            s.diag()
        );
        // Retrying a connect: there is nothing to wait on until ssh listens.
        std::thread::sleep(Duration::from_millis(20));
    };
    echo_on(&conn, &pattern(1 << 20, 7));
    echo_check(lport, &pattern(100_000, 8));
    echo_on(&conn, &pattern(100_000, 9));
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
    drop(conn);
    drop(fwd);

    // Figures: 1-byte round trips through the tunnel, then the same directly to sshd.
    let rtt = s.round_trip(s.port);
    let direct_up = s.scp(s.sshd.port, &local, &at_remote);
    let direct_down = s.scp(s.sshd.port, &at_remote, &back);
    let direct_rtt = s.round_trip(s.sshd.port);

    // And the tunnel still takes a new connection after all that.
    let out = s.ssh("the last connection", "echo bye");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "bye\n",
        "{shape}: last command"
    );

    let mib = (BIG >> 20) as f64;
    eprintln!(
        "ssh figures: {shape} (V3): scp {} MiB up {:.1} MiB/s, down {:.1} MiB/s; 1-byte round trip median {} µs ({ROUNDS} rounds)",
        BIG >> 20,
        mib / up.as_secs_f64(),
        mib / down.as_secs_f64(),
        rtt.as_micros()
    );
    eprintln!(
        "ssh figures: {shape}, direct to sshd for comparison: scp up {:.1} MiB/s, down {:.1} MiB/s; 1-byte round trip median {} µs",
        mib / direct_up.as_secs_f64(),
        mib / direct_down.as_secs_f64(),
        direct_rtt.as_micros()
    );
}

/// The testbed with both proxies, sshd, the client key and a scratch directory.
struct Scene {
    /// The tunnel shape and which builds run at either end, for messages.
    shape: String,
    /// The source proxy's port: ssh through the tunnel connects here.
    port: u16,
    key: PathBuf,
    data: PathBuf,
    src: Proxy,
    dst: Proxy,
    sshd: Sshd,
    _rig: Rig,
    _scratch: Scratch,
}

impl Scene {
    fn new(named: bool, src_bin: &Bin, dst_bin: &Bin) -> Scene {
        let (tag, services): (&str, &[&str]) = if named {
            ("ssh-named", &["SSH"])
        } else {
            ("ssh-bare", &[])
        };
        let rig = Rig::new(tag, services, &[]);
        let scratch = Scratch(temp_dir(&format!("{tag}-data")));
        let dir = scratch.0.clone();
        let key = dir.join("client_key");
        keygen(&key);
        let sshd = Sshd::start(&dir, &key.with_extension("pub"));
        let port = free_port();
        let (dmap, smap) = if named {
            (format!("SSH={}", sshd.port), format!("SSH={port}"))
        } else {
            (sshd.port.to_string(), port.to_string())
        };
        let dst = rig.start_destination(dst_bin, &dmap);
        let src = rig.start_source(src_bin, &smap, &[]);
        if let Bin::Peer(_) = src_bin {
            // The reference says "Listening" just before it listens.
            connect_with_retries(port);
        }
        Scene {
            shape: format!(
                "{} ({} -> {})",
                if named {
                    "named service"
                } else {
                    "tunnel without services"
                },
                src_bin.name(),
                dst_bin.name()
            ),
            port,
            key,
            data: dir,
            src,
            dst,
            sshd,
            _rig: rig,
            _scratch: scratch,
        }
    }

    /// The client's options, no configuration file, no agent, our key only.
    fn client_opts(&self, cmd: &mut Command) {
        cmd.env_remove("SSH_AUTH_SOCK")
            .args(["-F", "none", "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ]);
    }

    /// `ssh ... -p PORT root@127.0.0.1`; the caller adds options, then the command.
    fn ssh_cmd(&self, port: u16) -> Command {
        let mut cmd = Command::new("ssh");
        self.client_opts(&mut cmd);
        cmd.arg("-p").arg(port.to_string()).arg("root@127.0.0.1");
        cmd
    }

    /// Runs the short command `remote` through the tunnel and returns its stdout; fails
    /// the test (with every log, and `what` it was) unless it succeeds within [`SHORT`].
    fn ssh(&self, what: &str, remote: &str) -> Vec<u8> {
        let mut cmd = self.ssh_cmd(self.port);
        cmd.arg(remote);
        run(&mut cmd, None, SHORT)
            .ok(&format!("{what}: ssh {remote:?}"))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.shape, self.diag()))
    }

    /// `scp -P PORT from to`; returns how long it took.
    fn scp(&self, port: u16, from: &str, to: &str) -> Duration {
        let mut cmd = Command::new("scp");
        self.client_opts(&mut cmd);
        cmd.args(["-q", "-P", &port.to_string(), from, to]);
        let t = Instant::now();
        run(&mut cmd, None, LONG)
            .ok(&format!("scp {from} {to}"))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.shape, self.diag()));
        t.elapsed()
    }

    /// A file in the scratch directory (the remote side shares this machine's).
    fn path(&self, name: &str) -> String {
        self.data.join(name).to_str().unwrap().to_string()
    }

    /// The median time for one byte to go through `ssh ... cat` on `port` and back.
    fn round_trip(&self, port: u16) -> Duration {
        let mut cmd = self.ssh_cmd(port);
        cmd.arg("cat");
        let mut cat = Kid::spawn(&mut cmd, "ssh cat", LONG, true);
        let mut w = cat.child.stdin.take().unwrap();
        let mut r = cat.child.stdout.take().unwrap();
        let mut times = Vec::with_capacity(ROUNDS);
        for i in 0..WARMUP + ROUNDS {
            let b = [i as u8];
            let mut got = [0u8];
            let t = Instant::now();
            let ok = w.write_all(&b).is_ok() && r.read_exact(&mut got).is_ok();
            let took = t.elapsed();
            if !ok || got != b {
                let timed_out = cat.timer.stop();
                panic!(
                    "{}: ssh cat on port {port}: byte {i} did not come back{}: {}\n{}",
                    self.shape,
                    if timed_out {
                        " (killed at its deadline)"
                    } else {
                        ""
                    },
                    cat.stderr(),
                    self.diag()
                );
            }
            if i >= WARMUP {
                times.push(took);
            }
        }
        drop(w);
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        let (st, timed_out) = cat.wait();
        assert!(
            st.success() && !timed_out && rest.is_empty(),
            "{}: ssh cat on port {port} ended with {st} (timed out: {timed_out}, {} bytes left): {}",
            self.shape,
            rest.len(),
            cat.stderr()
        );
        times.sort();
        times[times.len() / 2]
    }

    /// The end of every log, for a failure message.
    fn diag(&self) -> String {
        let tail = |v: Vec<String>| v[v.len().saturating_sub(40)..].join("\n");
        format!(
            "--- sshd log:\n{}\n--- source proxy log:\n{}\n--- destination proxy log:\n{}",
            tail(self.sshd.log.lock().unwrap().clone()),
            tail(self.src.log()),
            tail(self.dst.log())
        )
    }
}

/// A scratch directory, removed with the files in it (64 MiB and more) on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `ssh-keygen` of a throw-away ed25519 key at `path` (and `path.pub`).
/// Connects to `port` until it accepts (then closes): for a source that logs that it
/// listens before it does.
fn connect_with_retries(port: u16) {
    let deadline = Instant::now() + SHORT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the source never listened on {port}"
        );
        std::thread::yield_now();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "localproxy-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sshd {
    /// Starts sshd with a fresh host key in `dir`, letting in root with the key whose
    /// public half is `client_pub`, and waits until it listens.
    fn start(dir: &Path, client_pub: &Path) -> Sshd {
        // The privilege-separation directory sshd insists on (Debian's tmpfiles.d makes
        // it when the service runs, which it does not here).
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            std::fs::create_dir_all(privsep).unwrap();
            std::fs::set_permissions(privsep, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let host_key = dir.join("host_key");
        keygen(&host_key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(client_pub, &authorized).unwrap();
        let config = dir.join("sshd_config");
        // A taken port shows as a bind failure: try another.
        for _ in 0..5 {
            let port = free_port();
            // No AcceptEnv line: the client's environment is not accepted.
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {}\n\
                     AuthorizedKeysFile {}\n\
                     PermitRootLogin prohibit-password\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PidFile {}\n\
                     AllowTcpForwarding yes\n\
                     X11Forwarding no\n\
                     PrintMotd no\n\
                     Subsystem sftp internal-sftp\n",
                    host_key.display(),
                    authorized.display(),
                    dir.join("sshd.pid").display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new(SSHD);
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("start sshd");
            track(child.id());
            let log: Arc<Mutex<Vec<String>>> = Arc::default();
            let (tx, rx) = mpsc::channel();
            let stderr = child.stderr.take().unwrap();
            let l2 = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("LOCALPROXY_TEST_ECHO").is_some() {
                        eprintln!("[sshd] {line}");
                    }
                    if line.contains("Server listening on") {
                        let _ = tx.send(());
                    }
                    l2.lock().unwrap().push(line);
                }
            });
            let sshd = Sshd { child, port, log };
            match rx.recv_timeout(SHORT) {
                Ok(()) => return sshd,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // sshd exited: stderr closed without the line.
                    let log = sshd.log.lock().unwrap().join("\n");
                    if log.contains("Bind to port") || log.contains("Address already in use") {
                        continue;
                    }
                    panic!("sshd exited before it listened:\n{log}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "sshd did not listen within {} s:\n{}",
                    SHORT.as_secs(),
                    sshd.log.lock().unwrap().join("\n")
                ),
            }
        }
        panic!("sshd found no free port in 5 tries");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        untrack(self.child.id());
    }
}

/// Kills a process unless stopped within its limit. It is stopped (and joined) before
/// the child is reaped, so the kill can never reach a recycled pid.
struct Timer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<bool>>,
}

impl Timer {
    fn start(pid: u32, limit: Duration) -> Timer {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match rx.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = sys::send_signal(pid, sys::SIGKILL);
                true
            }
            _ => false,
        });
        Timer {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops the timer; true if it had already fired.
    fn stop(&mut self) -> bool {
        drop(self.stop.take());
        self.thread
            .take()
            .map(|h| h.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

/// An ssh or scp child with a deadline, its stderr collected; killed on drop.
struct Kid {
    child: Child,
    timer: Timer,
    err: Option<JoinHandle<String>>,
    err_text: String,
}

impl Kid {
    /// Starts `cmd` with stdout and stderr piped, stdin piped when `stdin`, else null.
    fn spawn(cmd: &mut Command, what: &str, limit: Duration, stdin: bool) -> Kid {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        track(child.id());
        let timer = Timer::start(child.id(), limit);
        let mut stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            String::from_utf8_lossy(&v).trim().to_string()
        });
        Kid {
            child,
            timer,
            err: Some(err),
            err_text: String::new(),
        }
    }

    /// Waits for the exit; returns the status and whether the deadline killed it.
    fn wait(&mut self) -> (ExitStatus, bool) {
        let timed_out = self.timer.stop();
        let st = self.child.wait().unwrap();
        (st, timed_out)
    }

    /// Its stderr, once it has exited (or been killed).
    fn stderr(&mut self) -> String {
        if let Some(h) = self.err.take() {
            // Still running (a caller that gave up on it): end it so stderr closes.
            if let Ok(None) = self.child.try_wait() {
                let _ = self.timer.stop();
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            self.err_text = h.join().unwrap_or_default();
        }
        self.err_text.clone()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.timer.stop();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        untrack(self.child.id());
    }
}

/// What a finished child did.
struct Out {
    status: ExitStatus,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    /// Its stdout if it succeeded in time, else a description of what went wrong.
    fn ok(self, what: &str) -> Result<Vec<u8>, String> {
        if self.timed_out {
            Err(format!(
                "{what}: killed after its deadline; stderr: {}",
                self.stderr
            ))
        } else if !self.status.success() {
            Err(format!("{what}: {}; stderr: {}", self.status, self.stderr))
        } else {
            Ok(self.stdout)
        }
    }
}

/// Runs `cmd` to its end with `input` on its stdin, killing it after `limit`.
fn run(cmd: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Out {
    let mut kid = Kid::spawn(cmd, "command", limit, input.is_some());
    let writer = kid.child.stdin.take().map(|mut w| {
        let data = input.unwrap_or_default();
        // An error here (the child gone early) shows in its exit status.
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let mut stdout = Vec::new();
    let _ = kid.child.stdout.take().unwrap().read_to_end(&mut stdout);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let (status, timed_out) = kid.wait();
    let stderr = kid.stderr();
    Out {
        status,
        timed_out,
        stdout,
        stderr,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
