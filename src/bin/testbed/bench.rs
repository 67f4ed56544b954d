//! `testbed bench`: what the proxy costs, measured on loopback with fresh processes per
//! run. Direct TCP to a sink/source/echo server gives the ceiling; then the full path
//! client → source proxy → testbed (its own process) → destination proxy → server.
//!
//! Phases: bulk upload, download and echo through a relay as fast as loopback
//! (flattering: the TLS socket never fills); the same through a relay that reads each
//! proxy's connection at `--relay-rate` MiB/s in reads of at most 16 KiB, as the
//! internet drains it; and paced echoes (1 MiB/s in 1 KiB writes, 8 MiB/s in 4 KiB,
//! 20 MiB/s in 16 KiB) through that relay. `--compare` runs every phase with a second
//! build as well (both proxies of that build), run by run alternately with ours.
//!
//! Figures per phase and build (see `report`): MiB/s; per proxy CPU seconds per GiB
//! moved, context switches, read/write system calls and tunnel messages per MiB,
//! RssAnon and RssFile idle and peak; CPU of the testbed. Once: 64-byte round trips,
//! connect to first echoed byte, the TLS cipher's own cost (`openssl speed`), and with
//! `--instructions` instructions per MiB under callgrind. Figures only, no pass/fail.

use crate::demo::{echo_server, first_byte_ms, proxy_binary, round_trips, Child2};
use crate::procfs::{self, Counters, Mem, Sampler};
use crate::report::{self, Build, BuildRuns, Latency, PhaseResult, RunFigures, Spec};
use crate::traffic::{target, transfer, Kind, Pace, WAIT};
use localproxy::sys;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The readiness lines of our proxy and of the C++ reference (which logs its
/// "Listening" line just before it listens: clients retry a refused connect).
const DESTINATION_READY: &[&str] = &["tunnel ready", "Web socket session ID"];
const SOURCE_READY: &[&str] = &["listening on", "Listening for new connection on port"];

/// The paced echoes: MiB/s and write size.
const PACED: [(f64, usize); 3] = [(1.0, 1024), (8.0, 4096), (20.0, 16384)];

/// What the testbed relayed so far, from its SIGUSR1 line.
#[derive(Clone, Copy, Debug, Default)]
struct TbStats {
    messages: [u64; 2],
    bytes: [u64; 2],
    connected: [bool; 2],
}

/// `testbed serve` as a child process, so its CPU time can be read.
struct Serve {
    child: Child,
    endpoint: String,
    ca: String,
    dst_token: String,
    src_token: String,
    stats: mpsc::Receiver<String>,
}

impl Serve {
    fn start(dir: &Path, relay: Option<f64>) -> Result<Serve, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(me);
        cmd.args(["serve", "--services", "bench", "--dir"]).arg(dir);
        if let Some(r) = relay {
            cmd.args(["--relay-rate", &r.to_string()]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start testbed serve: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let (mut endpoint, mut ca, mut tokens) = (String::new(), String::new(), Vec::new());
        while tokens.len() < 2 {
            let l = match lines.next() {
                Some(Ok(l)) => l,
                _ => return Err("testbed serve ended early".into()),
            };
            if let Some(e) = l.strip_prefix("testbed listening: endpoint ") {
                endpoint = e.trim().to_string();
            }
            if let Some(r) = l.split("(hashed dir ").nth(1) {
                ca = r.trim_end_matches(')').to_string();
            }
            if let Some(r) = l.split("AWSIOT_TUNNEL_ACCESS_TOKEN=").nth(1) {
                tokens.push(r.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        let (tx, stats) = mpsc::channel();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                if let Some(s) = l.strip_prefix("testbed stats: ") {
                    let _ = tx.send(s.to_string());
                }
            }
        });
        Ok(Serve {
            child,
            endpoint,
            ca,
            dst_token: tokens[0].clone(),
            src_token: tokens[1].clone(),
            stats,
        })
    }

    /// Asks for the relay counters (SIGUSR1) and reads them.
    fn stats(&self) -> Result<TbStats, String> {
        while self.stats.try_recv().is_ok() {}
        sys::send_signal(self.child.id(), sys::SIGUSR1).map_err(|e| e.to_string())?;
        let line = self
            .stats
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "testbed serve printed no stats".to_string())?;
        let n: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if n.len() < 7 {
            return Err(format!("cannot read the testbed's stats: {line}"));
        }
        Ok(TbStats {
            messages: [n[0], n[1]],
            bytes: [n[2], n[3]],
            connected: [n[5] == 1, n[6] == 1],
        })
    }

    /// Waits until the testbed has the peers `want` (source, destination) connected.
    fn wait_connected(&self, want: [bool; 2]) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = self.stats()?.connected;
            if (c[0] || !want[0]) && (c[1] || !want[1]) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the proxy never connected to the testbed".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM, then SIGKILL if it does not end within 5 s.
fn end(child: &mut Child) {
    let _ = sys::send_signal(child.id(), sys::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One tunnel: testbed, destination in front of `target_port`, source on a free port.
/// Dropping it stops the proxies, then the testbed.
struct Path3 {
    dst: Child2,
    src: Child2,
    serve: Serve,
    port: u16,
}

impl Drop for Path3 {
    fn drop(&mut self) {
        end(&mut self.src.child);
        end(&mut self.dst.child);
    }
}

impl Path3 {
    fn pids(&self) -> [u32; 2] {
        [self.src.child.id(), self.dst.child.id()]
    }
}

fn path3(
    bin: &Path,
    dir: &Path,
    target_port: u16,
    relay: Option<f64>,
    wrap: Option<&[String]>,
) -> Result<Path3, String> {
    let serve = Serve::start(dir, relay)?;
    let common = |m: [String; 2]| {
        let mut v = vec![
            "-e".to_string(),
            serve.endpoint.clone(),
            "-c".into(),
            serve.ca.clone(),
        ];
        v.extend(m);
        v
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = |name: &str| dir.join(name);
    let (dst_bin, dst_args) = wrapped(
        bin,
        wrap,
        common(["-d".into(), format!("bench={target_port}")]),
    );
    let mut dst = Child2::start(&dst_bin, &dst_args, &serve.dst_token, &log("dst.log"))?;
    let ready = dst
        .wait_for_any(DESTINATION_READY)
        .and_then(|_| serve.wait_connected([false, true]));
    if let Err(e) = ready {
        end(&mut dst.child);
        return Err(format!(
            "destination: {e} (log {})",
            log("dst.log").display()
        ));
    }
    let mut sargs = common(["-s".into(), format!("bench={port}")]);
    sargs.extend(["-b".to_string(), "127.0.0.1".to_string()]);
    let (src_bin, src_args) = wrapped(bin, wrap, sargs);
    let src = match Child2::start(&src_bin, &src_args, &serve.src_token, &log("src.log")) {
        Ok(s) => s,
        Err(e) => {
            end(&mut dst.child);
            return Err(e);
        }
    };
    let p = Path3 {
        dst,
        src,
        serve,
        port,
    };
    p.src
        .wait_for_any(SOURCE_READY)
        .and_then(|_| p.serve.wait_connected([true, true]))
        .and_then(|_| procfs::wait_listening(port, WAIT))
        .map_err(|e| format!("source: {e} (log {})", log("src.log").display()))?;
    Ok(p)
}

/// Runs `bin args` under a wrapper command (valgrind) when asked.
fn wrapped(bin: &Path, wrap: Option<&[String]>, args: Vec<String>) -> (PathBuf, Vec<String>) {
    match wrap {
        None => (bin.to_path_buf(), args),
        Some(w) => {
            let mut v: Vec<String> = w[1..].to_vec();
            v.push(bin.display().to_string());
            v.extend(args);
            (PathBuf::from(&w[0]), v)
        }
    }
}

/// The phases, in the order they run.
fn specs(bytes: u64, relay: f64, paced_seconds: f64) -> Vec<Spec> {
    let kinds = [Kind::Upload, Kind::Download, Kind::Echo];
    let mut v: Vec<Spec> = kinds
        .iter()
        .map(|&kind| Spec {
            kind,
            relay: None,
            pace: None,
            bytes,
        })
        .collect();
    v.extend(kinds.iter().map(|&kind| Spec {
        kind,
        relay: Some(relay),
        pace: None,
        bytes,
    }));
    if paced_seconds > 0.0 {
        v.extend(PACED.iter().map(|&(mibs, write)| Spec {
            kind: Kind::Echo,
            relay: Some(relay),
            pace: Some(Pace { mibs, write }),
            bytes: ((mibs * paced_seconds * (1 << 20) as f64) as u64).max(write as u64),
        }));
    }
    v
}

/// One run of one phase with one build: fresh processes, figures over the transfer.
fn run_once(bin: &Path, dir: &Path, spec: &Spec) -> Result<RunFigures, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let (tport, done) = target(spec.kind, spec.bytes).map_err(|e| e.to_string())?;
    let mut p = path3(bin, dir, tport, spec.relay, None)?;
    let pids = p.pids();
    let idle = pids.map(Mem::of);
    let vm_idle = pids.map(|pid| procfs::status_kb(pid, "VmRSS:"));
    let tb_pid = p.serve.child.id();
    let before = (pids.map(Counters::of), procfs::cpu_seconds(tb_pid));
    let stats_before = p.serve.stats()?;
    let sampler = Sampler::start(pids.to_vec());
    let outcome = transfer(spec.kind, p.port, spec.bytes, &done, spec.pace);
    let after = (pids.map(Counters::of), procfs::cpu_seconds(tb_pid));
    let peaks = sampler.finish();
    let outcome = outcome.map_err(|e| format!("{e}{}", why(&mut [&mut p.src, &mut p.dst], dir)))?;
    let stats_after = p.serve.stats()?;
    let vm_peak = pids.map(|pid| procfs::status_kb(pid, "VmHWM:"));
    drop(p);
    let moved = spec.moved() as f64;
    let (gib, mib) = (moved / (1u64 << 30) as f64, moved / (1u64 << 20) as f64);
    let (b, a) = (before.0, after.0);
    let per_mib = |x: u64, y: u64| y.saturating_sub(x) as f64 / mib;
    let messages = [0, 1].map(|d| {
        let bytes = stats_after.bytes[d].saturating_sub(stats_before.bytes[d]);
        let msgs = stats_after.messages[d].saturating_sub(stats_before.messages[d]);
        // A direction that carried no data (the destination of an upload) has no rate.
        (bytes >= 1 << 20).then(|| msgs as f64 / (bytes as f64 / (1u64 << 20) as f64))
    });
    Ok(RunFigures {
        mibs: outcome.mibs,
        lag_ms: outcome.lag_ms,
        cpu: [
            (a[0].cpu - b[0].cpu) / gib,
            (a[1].cpu - b[1].cpu) / gib,
            (after.1 - before.1) / gib,
        ],
        switches: [0, 1].map(|i| per_mib(b[i].switches, a[i].switches)),
        syscalls: [0, 1].map(|i| per_mib(b[i].syscalls, a[i].syscalls)),
        messages,
        idle,
        peak: [
            peaks.first().copied().unwrap_or_default(),
            peaks.get(1).copied().unwrap_or_default(),
        ],
        vm_idle,
        vm_peak,
    })
}

/// What the proxies say about a failed transfer: which of them exited, and how, and
/// the last error line of each log.
fn why(procs: &mut [&mut Child2; 2], dir: &Path) -> String {
    // A proxy that failed may still be on its way out.
    std::thread::sleep(Duration::from_millis(200));
    let mut out = String::new();
    for (c, (name, log)) in procs
        .iter_mut()
        .zip([("source", "src.log"), ("destination", "dst.log")])
    {
        if let Ok(Some(st)) = c.child.try_wait() {
            out.push_str(&format!("; the {name} exited ({st})"));
        }
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        let last = text.lines().rev().find(|l| {
            let l = l.to_ascii_lowercase();
            ["fatal", "error", "panic"].iter().any(|w| l.contains(w))
        });
        if let Some(l) = last {
            // The reference's lines start with a timestamp and a thread id.
            let l = l
                .split_once(") [")
                .map_or(l.to_string(), |(_, r)| format!("[{r}"));
            out.push_str(&format!("; {name} log: {}", l.trim()));
        }
    }
    out
}

/// All runs of one phase: direct TCP (bulk phases through the unpaced relay), then each
/// build, alternately run by run. A failed run keeps its reason.
fn phase(builds: &[Build], dir: &Path, spec: &Spec, runs: usize) -> PhaseResult {
    let mut r = PhaseResult {
        spec: *spec,
        direct: vec![],
        builds: builds.iter().map(|_| BuildRuns::default()).collect(),
    };
    for i in 0..runs {
        if spec.has_direct() {
            let direct = target(spec.kind, spec.bytes)
                .map_err(|e| e.to_string())
                .and_then(|(port, done)| transfer(spec.kind, port, spec.bytes, &done, None));
            if let Ok(o) = direct {
                r.direct.push(o.mibs);
            }
        }
        for (b, build) in builds.iter().enumerate() {
            eprintln!("{} {}, run {}/{runs} ...", spec.label(), build.label, i + 1);
            let run_dir = dir.join(format!("{}-{}-{i}", spec.key(), build.label));
            match run_once(&build.path, &run_dir, spec) {
                Ok(f) => r.builds[b].ok.push(f),
                Err(e) => {
                    eprintln!("  {}: {e}", build.label);
                    r.builds[b].failed.push(e);
                }
            }
        }
    }
    r
}

/// Round trips and time to the first echoed byte through one build's tunnel.
fn latency(bin: &Path, dir: &Path, echo: u16) -> Result<(f64, f64, f64), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let p = path3(bin, dir, echo, None, None)?;
    let first = first_byte_ms(p.port)?;
    let (med, p99) = round_trips(p.port, 5000)?;
    Ok((med, p99, first))
}

/// The cipher the proxy and the testbed agree on (TLS_AES_256_GCM_SHA384: the first of
/// OpenSSL's TLS 1.3 suites, which the client offers and the testbed accepts).
pub const CIPHER: &str = "aes-256-gcm";

/// Seconds per GiB of the negotiated cipher on this machine, from `openssl speed`.
fn tls_floor() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", CIPHER, "-seconds", "1", "-bytes", "16384"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with(CIPHER))?;
    let v = line.split_whitespace().last()?.trim_end_matches('k');
    let kbytes_per_s: f64 = v.parse().ok()?;
    Some((1u64 << 30) as f64 / (kbytes_per_s * 1000.0))
}

/// Instructions per MiB of each proxy on a `mib` MiB upload, under callgrind.
fn instructions(
    bin: &Path,
    dir: &Path,
    keep: Option<&Path>,
    mib: u64,
) -> Result<(f64, f64), String> {
    let (tport, done) = target(Kind::Upload, mib << 20).map_err(|e| e.to_string())?;
    let out = keep
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("callgrind"));
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let wrap = vec![
        "valgrind".to_string(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}/cg.%p", out.display()),
    ];
    let p = path3(bin, dir, tport, None, Some(&wrap))?;
    transfer(Kind::Upload, p.port, mib << 20, &done, None)?;
    let [spid, dpid] = p.pids();
    drop(p);
    let total = |pid: u32| -> Result<f64, String> {
        let text =
            std::fs::read_to_string(out.join(format!("cg.{pid}"))).map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("summary: ")
                    .or_else(|| l.strip_prefix("totals: "))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or_else(|| "no total in the callgrind output".to_string())
    };
    Ok((total(spid)? / mib as f64, total(dpid)? / mib as f64))
}

/// What the command line asked for.
struct Options {
    mib: u64,
    runs: usize,
    relay: f64,
    paced_seconds: f64,
    json: Option<PathBuf>,
    proxy: Option<PathBuf>,
    compare: Option<PathBuf>,
    instructions: bool,
    callgrind_dir: Option<PathBuf>,
}

fn options(args: &[String]) -> Result<Options, String> {
    const WITH_VALUE: &[&str] = &[
        "--mib",
        "--runs",
        "--json",
        "--callgrind-dir",
        "--proxy",
        "--compare",
        "--relay-rate",
        "--paced-seconds",
    ];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            a if WITH_VALUE.contains(&a) && i + 1 < args.len() => i += 2,
            "--instructions" => i += 1,
            other => return Err(format!("unknown or incomplete option {other}")),
        }
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let num = |name: &str, default: f64, zero_ok: bool| -> Result<f64, String> {
        match value(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && (*n > 0.0 || (zero_ok && *n == 0.0)))
                .ok_or(format!("{name} takes a positive number")),
        }
    };
    let whole = |name: &str, default: u64| -> Result<u64, String> {
        match value(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name} takes a positive whole number")),
        }
    };
    let path = |name: &str| value(name).map(PathBuf::from);
    let callgrind_dir = path("--callgrind-dir");
    Ok(Options {
        mib: whole("--mib", 256)?,
        runs: whole("--runs", 3)? as usize,
        relay: num("--relay-rate", 150.0, false)?,
        paced_seconds: num("--paced-seconds", 8.0, true)?,
        json: path("--json"),
        proxy: path("--proxy"),
        compare: path("--compare"),
        instructions: args.iter().any(|a| a == "--instructions") || callgrind_dir.is_some(),
        callgrind_dir,
    })
}

pub fn run(args: Vec<String>) -> i32 {
    let o = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("testbed bench: {e}; see testbed --help");
            return 2;
        }
    };
    match bench(&o) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("testbed bench: {e}");
            1
        }
    }
}

fn build(label: &'static str, path: PathBuf) -> Result<Build, String> {
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}; give a localproxy binary", path.display()))?
        .len();
    Ok(Build { label, path, size })
}

/// Runs everything and prints it; false if a phase of our build failed.
fn bench(o: &Options) -> Result<bool, String> {
    let ours = match &o.proxy {
        Some(p) => p.clone(),
        None => proxy_binary()?,
    };
    let mut builds = vec![build("ours", ours)?];
    if let Some(c) = &o.compare {
        builds.push(build("compare", c.clone())?);
    }
    let dir = std::env::temp_dir().join(format!("testbed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let load_start = procfs::loadavg();
    report::header(
        &builds,
        o.mib,
        o.runs,
        o.relay,
        o.paced_seconds,
        &load_start,
    );

    let mut phases = Vec::new();
    for spec in specs(o.mib << 20, o.relay, o.paced_seconds) {
        phases.push(phase(&builds, &dir, &spec, o.runs));
    }

    eprintln!("latency ...");
    let echo = echo_server().map_err(|e| e.to_string())?;
    let direct_rt = round_trips(echo, 5000)?;
    let direct_first = first_byte_ms(echo)?;
    let tunnels: Vec<Result<(f64, f64, f64), String>> = builds
        .iter()
        .map(|b| latency(&b.path, &dir.join(format!("latency-{}", b.label)), echo))
        .collect();
    let lat = Latency {
        direct: (direct_rt.0, direct_rt.1, direct_first),
        tunnels,
    };
    let floor = tls_floor();
    let insn = if o.instructions {
        eprintln!("instructions (callgrind, 32 MiB upload) ...");
        Some(instructions(
            &builds[0].path,
            &dir.join("insn"),
            o.callgrind_dir.as_deref(),
            32,
        )?)
    } else {
        None
    };
    let load_end = procfs::loadavg();
    report::tables(&builds, &phases, &lat, floor, insn, &load_end);
    if let Some(path) = &o.json {
        let text = report::json(&report::JsonInput {
            builds: &builds,
            mib: o.mib,
            runs: o.runs,
            relay: o.relay,
            paced_seconds: o.paced_seconds,
            phases: &phases,
            latency: &lat,
            floor,
            insn,
            load: (&load_start, &load_end),
        });
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    let failed = phases
        .iter()
        .any(|p| p.builds.iter().any(|b| !b.failed.is_empty()))
        || lat.tunnels.iter().any(Result::is_err);
    if failed {
        println!("logs of the proxies kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(phases.iter().all(|p| p.builds[0].failed.is_empty()) && lat.tunnels[0].is_ok())
}
