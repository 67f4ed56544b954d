//! The traffic of `testbed bench`: servers behind the destination proxy (sink, source,
//! echo) and the client that drives them through the source proxy, either as fast as
//! the path takes or paced at a set rate and write size.

use crate::demo::echo_server;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Upload,
    Download,
    Echo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Upload => "upload",
            Kind::Download => "download",
            Kind::Echo => "echo",
        }
    }
}

/// A client writing `write` bytes at a time, `mibs` MiB/s on average.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    pub mibs: f64,
    pub write: usize,
}

/// What one transfer measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Payload MiB/s from the first write to the last byte at its end.
    pub mibs: f64,
    /// Echo only: from the last write to the last echoed byte, in ms.
    pub lag_ms: Option<f64>,
}

/// Connects to 127.0.0.1:`port`, retrying a refusal for a few seconds (a proxy may log
/// that it listens just before it does).
pub fn connect(port: u16) -> Result<TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(format!("connect to port {port}: {e}")),
        }
    }
}

/// A target server for one kind of transfer; reports each connection's bytes.
pub fn target(kind: Kind, bytes: u64) -> std::io::Result<(u16, mpsc::Receiver<u64>)> {
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

/// Moves `bytes` through `port` in the direction of `kind` (echo: there and back),
/// paced when `pace` is given (echo only).
pub fn transfer(
    kind: Kind,
    port: u16,
    bytes: u64,
    done: &mpsc::Receiver<u64>,
    pace: Option<Pace>,
) -> Result<Outcome, String> {
    let mib = bytes as f64 / (1 << 20) as f64;
    let at = |start: Instant| Outcome {
        mibs: mib / start.elapsed().as_secs_f64(),
        lag_ms: None,
    };
    match kind {
        Kind::Echo => echo(port, bytes, pace),
        Kind::Upload => {
            let mut s = connect(port)?;
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
            Ok(at(start))
        }
        Kind::Download => {
            let mut s = connect(port)?;
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
            Ok(at(start))
        }
    }
}

/// Writes `bytes` to an echo behind `port` (64 KiB writes as fast as they go, or as
/// `pace` says) while a reader thread reads the echo back and checks it.
pub fn echo(port: u16, bytes: u64, pace: Option<Pace>) -> Result<Outcome, String> {
    let mut w = connect(port)?;
    w.set_write_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let r = w.try_clone().map_err(|e| e.to_string())?;
    r.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let reader = std::thread::spawn(move || -> Result<Instant, String> {
        let mut r = r;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < bytes {
            match r.read(&mut buf) {
                Ok(0) => return Err(format!("the echo ended after {got} of {bytes} bytes")),
                Ok(n) => {
                    if buf[..n].iter().any(|&b| b != 0x5a) {
                        return Err("the echo came back corrupted".into());
                    }
                    got += n as u64;
                }
                Err(e) => return Err(format!("reading the echo after {got} bytes: {e}")),
            }
        }
        Ok(Instant::now())
    });
    let write = pace.map(|p| p.write).unwrap_or(64 * 1024);
    let interval =
        pace.map(|p| Duration::from_secs_f64(p.write as f64 / (p.mibs * (1 << 20) as f64)));
    let chunk = vec![0x5au8; write];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut k = 0u32;
    let written = loop {
        if sent >= bytes {
            break Ok(Instant::now());
        }
        if let Some(iv) = interval {
            // On a schedule from the start, so a late wake-up does not lower the rate.
            let due = start + iv * k;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let n = chunk.len().min((bytes - sent) as usize);
        if let Err(e) = w.write_all(&chunk[..n]) {
            // Ends the reader's wait too.
            let _ = w.shutdown(std::net::Shutdown::Both);
            break Err(format!("writing after {sent} bytes: {e}"));
        }
        sent += n as u64;
        k += 1;
    };
    let end = reader
        .join()
        .map_err(|_| "the echo reader panicked".to_string())??;
    let written = written?;
    let mib = bytes as f64 / (1 << 20) as f64;
    Ok(Outcome {
        mibs: mib / end.duration_since(start).as_secs_f64(),
        lag_ms: Some(end.saturating_duration_since(written).as_secs_f64() * 1000.0),
    })
}
