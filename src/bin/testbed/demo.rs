//! `testbed demo`: the whole path on one machine. It starts the service double, a
//! destination proxy in front of a local echo server and a source proxy (the real
//! `localproxy` binary next to `testbed`), then measures time to the first echoed
//! byte, 64-byte round trips and echo throughput, through the tunnel and directly.
//!
//! It prints figures; it asserts nothing. Everything runs on 127.0.0.1.

use localproxy::sys;
use localproxy::testbed::{Mode, Testbed};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// An echo server on 127.0.0.1; returns its port.
pub fn echo_server() -> std::io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// The `localproxy` binary beside the running one.
pub fn proxy_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = me.with_file_name("localproxy");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found; build both binaries first: cargo build --release --features testbed",
            p.display()
        ))
    }
}

/// A proxy child whose stderr goes to a log file and is watched for one line.
pub struct Child2 {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Child2 {
    pub fn start(bin: &Path, args: &[String], token: &str, log: &Path) -> Result<Child2, String> {
        let mut child = Command::new(bin)
            .args(args)
            .env("AWSIOT_TUNNEL_ACCESS_TOKEN", token)
            .env_remove("RUST_LOG")
            // Measured as on a device: the proxy picks its trust store itself (a bundle
            // named in SSL_CERT_FILE for other tools would be parsed whole at start).
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = tx.send(line);
            }
        });
        Ok(Child2 { child, lines: rx })
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> Result<String, String> {
        self.wait_for_any(&[needle])
    }

    /// Waits for a log line containing one of `needles` (another build's wording).
    pub fn wait_for_any(&self, needles: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if needles.iter().any(|n| l.contains(n)) => return Ok(l),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no log line with {needles:?} within {WAIT:?}"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("it ended without a log line with {needles:?}"))
                }
            }
        }
    }

    /// User + system CPU seconds so far, from /proc/PID/stat.
    pub fn cpu_seconds(&self) -> f64 {
        crate::procfs::cpu_seconds(self.child.id())
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = sys::send_signal(self.child.id(), sys::SIGTERM);
        self.child.wait().ok().and_then(|s| s.code())
    }
}

/// Sends `mib` MiB through `port` while reading the echo; returns MiB/s.
pub fn echo_throughput(port: u16, mib: usize) -> Result<f64, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let total = mib << 20;
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            if w.write_all(&chunk[..n]).is_err() {
                return false;
            }
            sent += n;
        }
        true
    });
    let mut r = s;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < total {
        match r.read(&mut buf) {
            Ok(0) => return Err(format!("the echo ended after {got} of {total} bytes")),
            Ok(n) => {
                if buf[..n].iter().any(|&b| b != 0x5a) {
                    return Err("the echo came back corrupted".into());
                }
                got += n;
            }
            Err(e) => return Err(format!("reading the echo: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if !writer.join().unwrap_or(false) {
        return Err("writing failed".into());
    }
    Ok(mib as f64 / secs)
}

/// Time from connect() to the first echoed byte, in ms.
pub fn first_byte_ms(port: u16) -> Result<f64, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    s.write_all(b"x").map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(|e| e.to_string())?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

/// 64-byte round trips on one connection: (median, p99) in µs.
pub fn round_trips(port: u16, n: usize) -> Result<(f64, f64), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).map_err(|e| e.to_string())?;
        s.read_exact(&mut back).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((pick(0.5), pick(0.99)))
}

/// Runs the demo; returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    let mib = match args.iter().position(|a| a == "--mib") {
        None => 64,
        Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
            Some(n) if n > 0 => n,
            _ => {
                eprintln!("testbed demo: --mib takes a positive number");
                return 2;
            }
        },
    };
    match demo(mib) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("testbed demo: {e}");
            1
        }
    }
}

fn demo(mib: usize) -> Result<(), String> {
    let bin = proxy_binary()?;
    let dir = std::env::temp_dir().join(format!("testbed-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tb = Testbed::start(&dir)?;
    tb.set_recording(false);
    let t = tb.open_tunnel(&["demo"]);
    let echo = echo_server().map_err(|e| e.to_string())?;
    let listen = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let common = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            "-e".to_string(),
            tb.endpoint(),
            "-c".into(),
            tb.ca_dir().display().to_string(),
        ];
        v.extend_from_slice(extra);
        v
    };
    println!(
        "testbed on {}, CA in {}",
        tb.endpoint(),
        tb.ca_dir().display()
    );
    let dst = Child2::start(
        &bin,
        &common(&["-d".into(), format!("demo={echo}")]),
        &t.destination_token,
        &dir.join("destination.log"),
    )?;
    dst.wait_for("tunnel ready")?;
    let src = Child2::start(
        &bin,
        &common(&[
            "-s".into(),
            format!("demo={listen}"),
            "-b".into(),
            "127.0.0.1".into(),
        ]),
        &t.source_token,
        &dir.join("source.log"),
    )?;
    src.wait_for("listening on")?;
    if !tb.wait_connected(&t, Mode::Source, WAIT) {
        return Err("the source never connected".into());
    }
    println!(
        "destination pid {}, source pid {}; logs in {}",
        dst.child.id(),
        src.child.id(),
        dir.display()
    );
    println!();

    let first = first_byte_ms(listen)?;
    let first_direct = first_byte_ms(echo)?;
    let (rt_med, rt_p99) = round_trips(listen, 2000)?;
    let (d_med, d_p99) = round_trips(echo, 2000)?;
    let cpu_before = (src.cpu_seconds(), dst.cpu_seconds());
    let through = echo_throughput(listen, mib)?;
    let cpu_after = (src.cpu_seconds(), dst.cpu_seconds());
    let direct = echo_throughput(echo, mib)?;
    let gib = (2 * mib) as f64 / 1024.0; // each proxy moves the data both ways
    println!("{:<38} {:>12} {:>12}", "", "tunnel", "direct");
    println!(
        "{:<38} {:>12.2} {:>12.2}",
        "connect to first echoed byte (ms)", first, first_direct
    );
    println!(
        "{:<38} {:>12.1} {:>12.1}",
        "64-byte round trip, median (us)", rt_med, d_med
    );
    println!(
        "{:<38} {:>12.1} {:>12.1}",
        "64-byte round trip, p99 (us)", rt_p99, d_p99
    );
    println!(
        "{:<38} {:>12.1} {:>12.1}",
        format!("echo {mib} MiB (MiB/s)"),
        through,
        direct
    );
    println!(
        "{:<38} {:>12.2}",
        "source CPU per GiB moved (s)",
        (cpu_after.0 - cpu_before.0) / gib
    );
    println!(
        "{:<38} {:>12.2}",
        "destination CPU per GiB moved (s)",
        (cpu_after.1 - cpu_before.1) / gib
    );
    let st = tb.stats();
    println!(
        "testbed relayed {} messages / {} bytes from the source, {} / {} from the destination",
        st.messages[0], st.bytes[0], st.messages[1], st.bytes[1]
    );
    let (s_code, d_code) = (src.stop(), dst.stop());
    println!(
        "SIGTERM: source {}, destination {}",
        exited(s_code),
        exited(d_code)
    );
    // Kept: the line above named it, and the logs are what a person looks at next.
    println!("logs kept in {}", dir.display());
    Ok(())
}

/// `exited 0`, or how it ended without an exit code.
fn exited(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exited {c}"),
        None => "ended by a signal".to_string(),
    }
}
