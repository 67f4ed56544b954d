//! Bounded memory and load: 256 MiB pushed through a tunnel whose far end reads slowly,
//! 256 MiB pulled from the tunnel by a local client that reads slowly, and 64
//! simultaneous V3 connections beside an idle service. The proxies' peak RSS (VmHWM from
//! /proc) stays under 16 MiB and every byte arrives intact and in order.
//!
//! The slow readers pause between reads on purpose: they play a slow peer, they do not
//! synchronise anything.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);
const TOTAL: u64 = 256 << 20;
const RSS_BOUND_KB: u64 = 16 * 1024;

/// A byte stream anyone can regenerate from its seed, to check order and content.
struct Gen(u64);

impl Gen {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

fn send_all(mut s: TcpStream, seed: u64, total: u64) {
    let mut g = Gen(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = buf.len().min((total - sent) as usize);
        g.fill(&mut buf[..n]);
        s.write_all(&buf[..n]).expect("send");
        sent += n as u64;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// Reads `total` bytes, slowly, checking them against the generator.
fn check_all(mut s: TcpStream, seed: u64, total: u64, slow: bool) -> Result<(), String> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut g = Gen(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut reads = 0u64;
    while got < total {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("after {got} bytes: {e}"))?;
        if n == 0 {
            return Err(format!("EOF after {got} of {total} bytes"));
        }
        g.fill(&mut want[..n]);
        if buf[..n] != want[..n] {
            return Err(format!("wrong bytes at offset {got}"));
        }
        got += n as u64;
        reads += 1;
        if slow && reads % 4 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

fn peak_rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

struct Loaded {
    _rig: Rig,
    src: Proxy,
    dst: Proxy,
    port: u16,
}

fn rig(tag: &str, services: &[&str], dst_map: &str, src_map: &str) -> Loaded {
    let r = Rig::new(tag, services, &[]);
    r.tb.set_recording(false);
    let dst = r.destination(dst_map, &[]);
    let src = r.source(src_map, &[]);
    let port = src_map
        .split(',')
        .next()
        .and_then(|m| m.rsplit('=').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    Loaded {
        _rig: r,
        src,
        dst,
        port,
    }
}

#[test]
fn upload_to_a_slow_reader_stays_bounded() {
    watchdog(LIMIT, || {
        // The target reads slowly, so the tunnel backs up all the way to the source.
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink_port = sink.local_addr().unwrap().port();
        let checker = std::thread::spawn(move || {
            let (s, _) = sink.accept().unwrap();
            check_all(s, 42, TOTAL, true)
        });
        let r = rig(
            "mem-up",
            &["A"],
            &format!("A={sink_port}"),
            &format!("A={}", free_port()),
        );
        let c = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
        send_all(c, 42, TOTAL);
        checker
            .join()
            .unwrap()
            .expect("the target got every byte in order");
        let (s, d) = (peak_rss_kb(r.src.pid()), peak_rss_kb(r.dst.pid()));
        eprintln!("upload 256 MiB, slow reader: peak RSS source {s} kB, destination {d} kB");
        assert!(s < RSS_BOUND_KB, "source peak RSS {s} kB");
        assert!(d < RSS_BOUND_KB, "destination peak RSS {d} kB");
    });
}

#[test]
fn download_to_a_slow_local_client_stays_bounded() {
    watchdog(LIMIT, || {
        // The target sends 256 MiB as soon as it is connected; the client reads slowly.
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (s, _) = server.accept().unwrap();
            send_all(s, 7, TOTAL);
        });
        let r = rig(
            "mem-down",
            &["A"],
            &format!("A={server_port}"),
            &format!("A={}", free_port()),
        );
        let c = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
        check_all(c, 7, TOTAL, true).expect("the client got every byte in order");
        let (s, d) = (peak_rss_kb(r.src.pid()), peak_rss_kb(r.dst.pid()));
        eprintln!("download 256 MiB, slow client: peak RSS source {s} kB, destination {d} kB");
        assert!(s < RSS_BOUND_KB, "source peak RSS {s} kB");
        assert!(d < RSS_BOUND_KB, "destination peak RSS {d} kB");
    });
}

#[test]
fn sixty_four_simultaneous_connections_beside_an_idle_service() {
    watchdog(LIMIT, || {
        let echo = echo_server();
        let idle = echo_server();
        let (pa, pb) = (free_port(), free_port());
        let r = rig(
            "mem-64",
            &["A", "IDLE"],
            &format!("A={},IDLE={}", echo.port, idle.port),
            &format!("A={pa},IDLE={pb}"),
        );
        let conns: Vec<TcpStream> = (0..64)
            .map(|_| TcpStream::connect(("127.0.0.1", r.port)).unwrap())
            .collect();
        let workers: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                std::thread::spawn(move || {
                    echo_on(&c, &pattern(1 << 20, 1000 + i as u64));
                    c
                })
            })
            .collect();
        let conns: Vec<TcpStream> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(conns.len(), 64);
        assert_eq!(idle.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(echo.accepted.load(std::sync::atomic::Ordering::SeqCst), 64);
        let (s, d) = (peak_rss_kb(r.src.pid()), peak_rss_kb(r.dst.pid()));
        eprintln!("64 x 1 MiB echo: peak RSS source {s} kB, destination {d} kB");
        assert!(s < RSS_BOUND_KB && d < RSS_BOUND_KB, "{s} kB / {d} kB");
        drop(conns);
    });
}

#[test]
fn max_active_connections_is_enforced_with_a_refusal() {
    watchdog(LIMIT, || {
        let echo = echo_server();
        let r = Rig::new("mem-max", &["A"], &[("tcp.max_active_connections", "4")]);
        let port = free_port();
        let _dst = r.destination(&format!("A={}", echo.port), &[]);
        let src = r.source(&format!("A={port}"), &[]);
        let open: Vec<TcpStream> = (0..4)
            .map(|i| echo_check(port, &pattern(1000, i)))
            .collect();
        let mut fifth = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(closed_by_peer(&mut fifth));
        src.wait_line("tcp.max_active_connections");
        for c in &open {
            echo_on(c, &pattern(1000, 9));
        }
    });
}
