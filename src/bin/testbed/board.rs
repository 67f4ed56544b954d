//! `testbed board`: the pieces `cross/board.sh` runs inside an emulated router, where
//! everything is on the guest's 127.0.0.1 and the results go to the serial console.
//!
//! `board serve` runs the service double with one tunnel and an echo server, and writes
//! the two access tokens to files (the destination's is the init script's token file);
//! `board echo` pushes pseudo-random bytes through a source proxy's port, checks that
//! what comes back is the same stream, and samples a process's memory meanwhile. It
//! prints `BOARD key=value ...` lines for board.sh to parse. It does not start proxies
//! (the guest's init scripts and shell do) and asserts nothing about sizes or times.

use localproxy::sys;
use localproxy::testbed::Testbed;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: testbed board serve --dir DIR --port N --echo-port N \
--destination-token FILE --source-token FILE | testbed board echo --port N --mib N \
[--watch PID] [--mark-after MIB] [--timeout SECONDS]";

pub fn run(args: Vec<String>) -> i32 {
    let rest = args.get(1..).unwrap_or_default().to_vec();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&rest),
        Some("echo") => echo(&rest),
        _ => {
            eprintln!("testbed board: {USAGE}");
            2
        }
    }
}

/// The value after `--name`, parsed; an error line names the option when it is bad.
fn opt<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or(format!(
                "testbed board: {name} needs a valid value; {USAGE}"
            )),
    }
}

fn need<T: std::str::FromStr>(args: &[String], name: &str) -> Result<T, String> {
    opt(args, name)?.ok_or(format!("testbed board: {name} is missing; {USAGE}"))
}

/// Writes a token file as an operator would: mode 0600, one line.
fn write_secret(path: &PathBuf, token: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{token}")
}

fn serve(args: &[String]) -> i32 {
    let parsed = (|| {
        Ok::<_, String>((
            need::<PathBuf>(args, "--dir")?,
            need::<u16>(args, "--port")?,
            need::<u16>(args, "--echo-port")?,
            need::<PathBuf>(args, "--destination-token")?,
            need::<PathBuf>(args, "--source-token")?,
        ))
    })();
    let (dir, port, echo_port, dst_file, src_file) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    if sys::block_signals(&[sys::SIGINT, sys::SIGTERM]).is_err() {
        eprintln!("testbed board serve: cannot block signals");
        return 1;
    }
    let listener = match TcpListener::bind(("127.0.0.1", echo_port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testbed board serve: cannot listen on 127.0.0.1:{echo_port}: {e}");
            return 1;
        }
    };
    std::thread::spawn(move || echo_server(listener));
    let tb = match Testbed::start_on(&dir, &format!("127.0.0.1:{port}")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("testbed board serve: {e}");
            return 1;
        }
    };
    let t = tb.open_tunnel(&["SSH"]);
    for (file, token) in [
        (&dst_file, &t.destination_token),
        (&src_file, &t.source_token),
    ] {
        if let Err(e) = write_secret(file, token) {
            eprintln!("testbed board serve: cannot write {}: {e}", file.display());
            return 1;
        }
    }
    println!(
        "testbed board: service on {} (CA {}), echo on 127.0.0.1:{echo_port}",
        tb.endpoint(),
        tb.ca_dir().display()
    );
    let _ = std::io::stdout().flush();
    let _ = sys::wait_signal(&[sys::SIGINT, sys::SIGTERM]);
    0
}

/// Echoes every connection back, one thread each.
fn echo_server(l: TcpListener) {
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

/// The byte stream sent: xorshift64, so the reader can regenerate it and compare
/// every byte without keeping a copy. Reads of any length continue the same stream.
struct Stream {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            state: 0x9e37_79b9_7f4a_7c15,
            word: [0; 8],
            used: 8,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                self.word = self.state.to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// FNV-1a over a byte stream, the checksum printed for both directions.
fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// VmRSS, RssAnon, RssFile, RssShmem, VmHWM of a process in kB (zeros when it is gone).
/// RssShmem matters in an initramfs: the binary's pages there are shmem, not file.
fn mem(pid: u32) -> [u64; 5] {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    [
        get("VmRSS:"),
        get("RssAnon:"),
        get("RssFile:"),
        get("RssShmem:"),
        get("VmHWM:"),
    ]
}

fn echo(args: &[String]) -> i32 {
    let parsed = (|| {
        Ok::<_, String>((
            need::<u16>(args, "--port")?,
            need::<u64>(args, "--mib")?,
            opt::<u32>(args, "--watch")?,
            opt::<u64>(args, "--mark-after")?,
            opt::<u64>(args, "--timeout")?.unwrap_or(600),
        ))
    })();
    let (port, mib, watch, mark, timeout) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let total = mib * 1024 * 1024;
    let start = Instant::now();
    // A stuck tunnel must end the run by itself: the watchdog prints why and exits.
    let done = Arc::new(AtomicBool::new(false));
    // usize, not u64: mipsel has no 64-bit atomics (the count is for the timeout line).
    let received = Arc::new(AtomicUsize::new(0));
    {
        let (done, received) = (done.clone(), received.clone());
        std::thread::spawn(move || {
            while start.elapsed() < Duration::from_secs(timeout) {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            println!(
                "BOARD echo ok=0 reason=timeout after {timeout} s, {} of {total} bytes back",
                received.load(Ordering::Relaxed)
            );
            std::process::exit(1);
        });
    }
    let s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => {
            println!("BOARD echo ok=0 reason=cannot connect to 127.0.0.1:{port}: {e}");
            return 1;
        }
    };
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(e) => {
            println!("BOARD echo ok=0 reason={e}");
            return 1;
        }
    };
    let writer = std::thread::spawn(move || {
        let mut gen = Stream::new();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut sent, mut sum) = (0u64, FNV_START);
        while sent < total {
            let n = (total - sent).min(buf.len() as u64) as usize;
            gen.fill(&mut buf[..n]);
            if w.write_all(&buf[..n]).is_err() {
                break;
            }
            sum = fnv(sum, &buf[..n]);
            sent += n as u64;
        }
        (sent, sum)
    });
    // Memory of the watched process, every 100 ms, in a thread of its own: the guest
    // has one slow CPU, so sampling more often would cost the transfer.
    let peak = watch.map(|pid| {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut p = [0u64; 5];
            loop {
                for (p, m) in p.iter_mut().zip(mem(pid)) {
                    *p = (*p).max(m);
                }
                if done.load(Ordering::Relaxed) {
                    return p;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let mut r = s;
    let mut expect = Stream::new();
    let (mut buf, mut want) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let (mut got, mut sum, mut marked) = (0u64, FNV_START, false);
    let mut bad = None;
    while got < total {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                bad = Some(format!("read: {e}"));
                break;
            }
        };
        expect.fill(&mut want[..n]);
        if buf[..n] != want[..n] {
            bad = Some(format!("bytes differ within {got}..{}", got + n as u64));
            break;
        }
        sum = fnv(sum, &buf[..n]);
        got += n as u64;
        received.store(got as usize, Ordering::Relaxed);
        if let Some(m) = mark {
            if !marked && got >= m * 1024 * 1024 {
                marked = true;
                println!("BOARD cut-point received_mib={m}");
                let _ = std::io::stdout().flush();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (sent, sent_sum) = writer.join().unwrap_or((0, 0));
    let p = peak.and_then(|h| h.join().ok());
    let hwm = watch.map(|pid| mem(pid)[4]).unwrap_or(0);
    let ok = bad.is_none() && got == total && sent == total && sum == sent_sum;
    let mut line = format!(
        "BOARD echo ok={} mib={mib} sent={sent} received={got} fnv_sent={sent_sum:016x} \
fnv_received={sum:016x} secs={secs:.1} mibps={:.2}",
        u8::from(ok),
        got as f64 / 1048576.0 / secs.max(0.001)
    );
    if let Some(p) = p {
        line += &format!(
            " peak_vmrss_kb={} peak_rssanon_kb={} peak_rssfile_kb={} peak_rssshmem_kb={} \
vmhwm_kb={}",
            p[0],
            p[1],
            p[2],
            p[3],
            hwm.max(p[4])
        );
    }
    if let Some(b) = bad {
        line += &format!(" reason={b}");
    } else if got < total {
        line += " reason=the tunnel closed early";
    }
    println!("{line}");
    i32::from(!ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_does_not_depend_on_how_it_is_cut() {
        let mut whole = vec![0u8; 100];
        Stream::new().fill(&mut whole);
        let mut s = Stream::new();
        let mut pieces = vec![0u8; 100];
        for r in [0..3, 3..8, 8..9, 9..100] {
            s.fill(&mut pieces[r]);
        }
        assert_eq!(whole, pieces);
        assert!(whole.iter().any(|&b| b != whole[0]));
    }

    #[test]
    fn fnv_is_fnv1a_64() {
        assert_eq!(fnv(FNV_START, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(FNV_START, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv(fnv(FNV_START, b"fo"), b"obar"),
            fnv(FNV_START, b"foobar")
        );
    }
}
