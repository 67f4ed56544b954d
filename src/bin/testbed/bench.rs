//! `testbed bench`: what the proxy costs, measured on loopback with fresh processes per
//! phase. Direct TCP to a sink/source/echo server gives the ceiling; then the full path
//! client → source proxy → testbed (its own process) → destination proxy → server.
//!
//! Figures per phase: MiB/s (best and median of N runs), CPU seconds per GiB of each
//! proxy and of the testbed (utime+stime from /proc), idle and peak RSS of the proxies;
//! once: 64-byte round trips, connect to first echoed byte, the binary's size, the TLS
//! cipher's own cost (`openssl speed`), and with `--instructions` instructions per MiB
//! under valgrind's callgrind. It prints figures and asserts nothing.

use crate::demo::{cpu_seconds, echo_server, first_byte_ms, proxy_binary, round_trips, Child2};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Upload,
    Download,
    Echo,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Upload => "upload",
            Kind::Download => "download",
            Kind::Echo => "echo",
        }
    }
}

/// A target server for one kind of transfer; reports each connection's bytes.
fn target(kind: Kind, bytes: u64) -> std::io::Result<(u16, mpsc::Receiver<u64>)> {
    if kind == Kind::Echo {
        let (_tx, rx) = mpsc::channel();
        return Ok((echo_server()?, rx));
    }
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                if kind == Kind::Upload {
                    while n < bytes {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k as u64,
                        }
                    }
                } else {
                    buf.fill(0xa5);
                    while n < bytes {
                        let k = buf.len().min((bytes - n) as usize);
                        if s.write_all(&buf[..k]).is_err() {
                            break;
                        }
                        n += k as u64;
                    }
                }
                let _ = tx.send(n);
            });
        }
    });
    Ok((port, rx))
}

/// Moves `bytes` through `port` in the direction of `kind`; returns MiB/s.
fn transfer(kind: Kind, port: u16, bytes: u64, done: &mpsc::Receiver<u64>) -> Result<f64, String> {
    let mib = bytes as f64 / (1 << 20) as f64;
    match kind {
        Kind::Echo => crate::demo::echo_throughput(port, (bytes >> 20) as usize),
        Kind::Upload => {
            let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let buf = vec![0x3cu8; 64 * 1024];
            let start = Instant::now();
            let mut n = 0u64;
            while n < bytes {
                let k = buf.len().min((bytes - n) as usize);
                s.write_all(&buf[..k]).map_err(|e| e.to_string())?;
                n += k as u64;
            }
            let got = done
                .recv_timeout(WAIT)
                .map_err(|_| "the sink never finished".to_string())?;
            if got != bytes {
                return Err(format!("the sink got {got} of {bytes} bytes"));
            }
            Ok(mib / start.elapsed().as_secs_f64())
        }
        Kind::Download => {
            let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256 * 1024];
            let start = Instant::now();
            let mut n = 0u64;
            while n < bytes {
                match s.read(&mut buf) {
                    Ok(0) => return Err(format!("EOF after {n} of {bytes} bytes")),
                    Ok(k) => n += k as u64,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(mib / start.elapsed().as_secs_f64())
        }
    }
}

/// `testbed serve` as a child process, so its CPU time can be read.
struct Serve {
    child: Child,
    endpoint: String,
    ca: String,
    dst_token: String,
    src_token: String,
}

impl Serve {
    fn start(dir: &Path) -> Result<Serve, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(me)
            .args(["serve", "--services", "bench", "--dir"])
            .arg(dir)
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
        std::thread::spawn(move || for _ in lines {});
        Ok(Serve {
            child,
            endpoint,
            ca,
            dst_token: tokens[0].clone(),
            src_token: tokens[1].clone(),
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// One tunnel: testbed, destination in front of `target_port`, source on a free port.
struct Path3 {
    serve: Serve,
    dst: Child2,
    src: Child2,
    port: u16,
}

fn path3(
    bin: &Path,
    dir: &Path,
    target_port: u16,
    wrap: Option<&[String]>,
) -> Result<Path3, String> {
    let serve = Serve::start(dir)?;
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
    let (dst_bin, dst_args) = wrapped(
        bin,
        wrap,
        common(["-d".into(), format!("bench={target_port}")]),
    );
    let dst = Child2::start(&dst_bin, &dst_args, &serve.dst_token, &dir.join("dst.log"))?;
    dst.wait_for("tunnel ready")?;
    let mut sargs = common(["-s".into(), format!("bench={port}")]);
    sargs.extend(["-b".to_string(), "127.0.0.1".to_string()]);
    let (src_bin, src_args) = wrapped(bin, wrap, sargs);
    let src = Child2::start(&src_bin, &src_args, &serve.src_token, &dir.join("src.log"))?;
    src.wait_for("listening on")?;
    Ok(Path3 {
        serve,
        dst,
        src,
        port,
    })
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

struct PhaseResult {
    mibs: Vec<f64>,
    cpu_src: Vec<f64>,
    cpu_dst: Vec<f64>,
    cpu_tb: Vec<f64>,
    idle_src: u64,
    idle_dst: u64,
    peak_src: u64,
    peak_dst: u64,
    direct: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

fn phase(
    bin: &Path,
    dir: &Path,
    kind: Kind,
    bytes: u64,
    runs: usize,
) -> Result<PhaseResult, String> {
    let mut r = PhaseResult {
        mibs: vec![],
        cpu_src: vec![],
        cpu_dst: vec![],
        cpu_tb: vec![],
        idle_src: 0,
        idle_dst: 0,
        peak_src: 0,
        peak_dst: 0,
        direct: vec![],
    };
    let gib = bytes as f64 / (1u64 << 30) as f64;
    for i in 0..runs {
        let (tport, done) = target(kind, bytes).map_err(|e| e.to_string())?;
        r.direct.push(transfer(kind, tport, bytes, &done)?);
        let run_dir = dir.join(format!("{}-{i}", kind.name()));
        std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
        let p = path3(bin, &run_dir, tport, None)?;
        r.idle_src = r.idle_src.max(rss_kb(p.src.child.id(), "VmRSS:"));
        r.idle_dst = r.idle_dst.max(rss_kb(p.dst.child.id(), "VmRSS:"));
        let before = (
            p.src.cpu_seconds(),
            p.dst.cpu_seconds(),
            cpu_seconds(p.serve.child.id()),
        );
        r.mibs.push(transfer(kind, p.port, bytes, &done)?);
        let after = (
            p.src.cpu_seconds(),
            p.dst.cpu_seconds(),
            cpu_seconds(p.serve.child.id()),
        );
        r.cpu_src.push((after.0 - before.0) / gib);
        r.cpu_dst.push((after.1 - before.1) / gib);
        r.cpu_tb.push((after.2 - before.2) / gib);
        r.peak_src = r.peak_src.max(rss_kb(p.src.child.id(), "VmHWM:"));
        r.peak_dst = r.peak_dst.max(rss_kb(p.dst.child.id(), "VmHWM:"));
        let Path3 { src, dst, .. } = p;
        src.stop();
        dst.stop();
    }
    Ok(r)
}

/// The cipher the proxy and the testbed agree on (TLS_AES_256_GCM_SHA384: the first of
/// OpenSSL's TLS 1.3 suites, which the client offers and the testbed accepts).
const CIPHER: &str = "aes-256-gcm";

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
    let p = path3(bin, dir, tport, Some(&wrap))?;
    // The idle cost before the transfer, to subtract.
    transfer(Kind::Upload, p.port, mib << 20, &done)?;
    let (spid, dpid) = (p.src.child.id(), p.dst.child.id());
    let Path3 { src, dst, .. } = p;
    src.stop();
    dst.stop();
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

pub fn run(args: Vec<String>) -> i32 {
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--mib" | "--runs" | "--json" | "--callgrind-dir" | "--proxy" if i + 1 < args.len() => {
                i += 2
            }
            "--instructions" => i += 1,
            other => {
                eprintln!(
                    "testbed bench: unknown or incomplete option {other}; see testbed --help"
                );
                return 2;
            }
        }
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let num = |name: &str, default: u64| -> Result<u64, String> {
        match value(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name} takes a positive number")),
        }
    };
    let parsed = (num("--mib", 256), num("--runs", 3));
    let (mib, runs) = match parsed {
        (Ok(m), Ok(r)) => (m, r as usize),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("testbed bench: {e}");
            return 2;
        }
    };
    let json = value("--json").map(PathBuf::from);
    let proxy = match value("--proxy") {
        Some(p) => PathBuf::from(p),
        None => match proxy_binary() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("testbed bench: {e}");
                return 1;
            }
        },
    };
    let callgrind_dir = value("--callgrind-dir").map(PathBuf::from);
    let count_instructions = args.iter().any(|a| a == "--instructions") || callgrind_dir.is_some();
    match bench(
        &proxy,
        mib,
        runs,
        json.as_deref(),
        count_instructions,
        callgrind_dir.as_deref(),
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("testbed bench: {e}");
            1
        }
    }
}

fn bench(
    bin: &Path,
    mib: u64,
    runs: usize,
    json: Option<&Path>,
    count_instructions: bool,
    callgrind_dir: Option<&Path>,
) -> Result<(), String> {
    let bin = bin.to_path_buf();
    let size = std::fs::metadata(&bin)
        .map_err(|e| format!("{}: {e}; give --proxy a localproxy binary", bin.display()))?
        .len();
    let dir = std::env::temp_dir().join(format!("testbed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bytes = mib << 20;
    println!(
        "localproxy {} ({} bytes); {mib} MiB per transfer, {runs} run(s) per phase",
        bin.display(),
        size
    );
    let mut phases = Vec::new();
    for kind in [Kind::Upload, Kind::Download, Kind::Echo] {
        eprintln!("{} ...", kind.name());
        phases.push((kind, phase(&bin, &dir, kind, bytes, runs)?));
    }
    eprintln!("latency ...");
    let echo = echo_server().map_err(|e| e.to_string())?;
    let lat_dir = dir.join("latency");
    std::fs::create_dir_all(&lat_dir).map_err(|e| e.to_string())?;
    let p = path3(&bin, &lat_dir, echo, None)?;
    let first = first_byte_ms(p.port)?;
    let first_direct = first_byte_ms(echo)?;
    let (rt_med, rt_p99) = round_trips(p.port, 5000)?;
    let (d_med, d_p99) = round_trips(echo, 5000)?;
    let Path3 { src, dst, .. } = p;
    src.stop();
    dst.stop();
    let floor = tls_floor();
    let insn = if count_instructions {
        eprintln!("instructions (callgrind, 32 MiB upload) ...");
        Some(instructions(&bin, &dir.join("insn"), callgrind_dir, 32)?)
    } else {
        None
    };

    println!();
    println!(
        "{:<9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8}",
        "phase",
        "direct",
        "best",
        "median",
        "src s/G",
        "dst s/G",
        "tb s/G",
        "idle src",
        "idle dst",
        "peak src",
        "peak dst"
    );
    println!(
        "{:<9} {:>9} {:>9} {:>9} | {:>26} | {:>35}",
        "", "MiB/s", "MiB/s", "MiB/s", "CPU seconds per GiB (median)", "RSS kB"
    );
    for (kind, r) in &phases {
        println!(
            "{:<9} {:>9.1} {:>9.1} {:>9.1} | {:>8.2} {:>8.2} {:>8.2} | {:>8} {:>8} {:>8} {:>8}",
            kind.name(),
            median(&r.direct),
            best(&r.mibs),
            median(&r.mibs),
            median(&r.cpu_src),
            median(&r.cpu_dst),
            median(&r.cpu_tb),
            r.idle_src,
            r.idle_dst,
            r.peak_src,
            r.peak_dst
        );
    }
    println!();
    println!("64-byte round trip: tunnel median {rt_med:.1} us, p99 {rt_p99:.1} us; direct median {d_med:.1} us, p99 {d_p99:.1} us");
    println!("connect to first echoed byte: tunnel {first:.2} ms, direct {first_direct:.2} ms");
    match floor {
        Some(f) => println!("TLS cipher floor (openssl speed {CIPHER}): {f:.3} s per GiB, once per proxy and direction"),
        None => println!("TLS cipher floor: n/a (no openssl command)"),
    }
    if let Some((s, d)) = insn {
        println!("instructions per MiB (callgrind, upload): source {s:.0}, destination {d:.0}");
    }
    if let Some(path) = json {
        let mut j = String::from("{\n");
        j.push_str(&format!("  \"binary_bytes\": {size},\n  \"mib\": {mib},\n  \"runs\": {runs},\n  \"phases\": {{\n"));
        let items: Vec<String> = phases
            .iter()
            .map(|(k, r)| {
                format!(
                    "    \"{}\": {{\"direct_mibs\": {:.1}, \"best_mibs\": {:.1}, \"median_mibs\": {:.1}, \"cpu_s_per_gib\": {{\"source\": {:.3}, \"destination\": {:.3}, \"testbed\": {:.3}}}, \"rss_kb\": {{\"idle_source\": {}, \"idle_destination\": {}, \"peak_source\": {}, \"peak_destination\": {}}}}}",
                    k.name(),
                    median(&r.direct),
                    best(&r.mibs),
                    median(&r.mibs),
                    median(&r.cpu_src),
                    median(&r.cpu_dst),
                    median(&r.cpu_tb),
                    r.idle_src,
                    r.idle_dst,
                    r.peak_src,
                    r.peak_dst
                )
            })
            .collect();
        j.push_str(&items.join(",\n"));
        j.push_str("\n  },\n");
        j.push_str(&format!(
            "  \"round_trip_us\": {{\"tunnel_median\": {rt_med:.1}, \"tunnel_p99\": {rt_p99:.1}, \"direct_median\": {d_med:.1}, \"direct_p99\": {d_p99:.1}}},\n"
        ));
        j.push_str(&format!(
            "  \"first_byte_ms\": {{\"tunnel\": {first:.3}, \"direct\": {first_direct:.3}}},\n"
        ));
        j.push_str(&format!(
            "  \"tls_floor_s_per_gib\": {},\n",
            floor
                .map(|f| format!("{f:.4}"))
                .unwrap_or_else(|| "null".into())
        ));
        j.push_str(&format!(
            "  \"instructions_per_mib\": {}\n}}\n",
            insn.map(|(s, d)| format!("{{\"source\": {s:.0}, \"destination\": {d:.0}}}"))
                .unwrap_or_else(|| "null".into())
        ));
        std::fs::write(path, j).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
