//! The `testbed` binary: the project's double of the tunneling service, standalone.
//!
//! `testbed serve` runs the service and prints how to point two proxies at it;
//! `testbed demo` runs the service, a destination proxy to a local echo server and a
//! source proxy, and pushes data through to show what happens.

mod bench;
mod board;
mod demo;
mod procfs;
mod report;
mod traffic;

use localproxy::sys;
use localproxy::testbed::hostile::{Answer, Case};
use localproxy::testbed::{Mode, Testbed};
use std::path::PathBuf;

const HELP: &str = "\
testbed: a local double of the AWS IoT Secure Tunneling service, for trying and testing
localproxy without AWS. It listens with TLS on 127.0.0.1 and writes its CA certificate
for the proxies' -c option.

Usage:
  testbed serve [--port N] [--listen ADDR:PORT] [--dir DIR] [--services A,B]
                [--delay-ms MS] [--relay-rate MIBPS] [--hostile CASE]
      Run the service with one open tunnel; print the endpoint, the CA directory, the
      two tokens and the commands that start a source and a destination proxy.
      --listen serves on another address than 127.0.0.1 (its IP goes into the
      certificate); --delay-ms delays every relayed message (a slow link);
      --relay-rate reads each proxy's connection at most MIBPS MiB/s in reads of at
      most 16 KiB (the internet draining the relay: the proxies' TLS sockets fill).
      --hostile CASE: the first proxy of each mode to connect is admitted, then, for
      30 s, gets CASE instead of a relay, then is dropped; its next connection is
      served normally. Floods: ping-flood, start-flood (without reading what they
      cause); close-notify; broken or odd frames: ready-then-garbage, rsv-bits,
      unknown-opcode, long-control, fragmented-control, stray-continuation,
      data-in-fragment, top-bit-length, tera-trickle, over-limit-fragments,
      empty-frames, text-frame, ten-thousand-pings, unsolicited-pong. Or the first
      connection attempt gets a bad handshake: tls-close, tls-garbage, no-accept,
      wrong-accept, no-subprotocol, other-subprotocol, extension, http10-200,
      long-header, many-headers, garbage-status, trickle-header, moved-301,
      error-500, unauthorized-401, timeout-408, too-many-429, coalesced-101 (good).
      SIGUSR1 prints one `testbed stats:` line (relayed messages and bytes from
      sources and destinations, dropped messages, connected peers).
      Stop with Ctrl-C.
  testbed demo [--mib N]
      Run the service, a destination proxy in front of a local echo server and a source
      proxy, push N MiB (default 64) through, and print throughput, round trip and time
      to the first echoed byte.
  testbed bench [--mib N] [--runs N] [--relay-rate MIBPS] [--paced-seconds S]
                [--compare PATH] [--proxy PATH] [--json FILE] [--instructions]
                [--callgrind-dir DIR]
      Measure the proxy on loopback, fresh processes (testbed, destination, source)
      for every run of every phase:
        upload, download, echo   N MiB (--mib, default 256) through a relay as fast
                                 as loopback, beside direct TCP
        the same, relay MIBPS    the testbed reads each proxy's connection at most
                                 MIBPS MiB/s (--relay-rate, default 150) in reads of
                                 at most 16 KiB, as the internet drains it
        echo paced               1 MiB/s in 1 KiB writes, 8 MiB/s in 4 KiB, 20 MiB/s
                                 in 16 KiB, S seconds each (--paced-seconds, default
                                 8; 0 skips them), through that relay
      Per phase (best and median MiB/s of --runs, default 3; medians): CPU seconds
      per GiB moved of each proxy and of the testbed; per MiB moved, context
      switches, read+write syscalls (/proc/PID/io) and tunnel messages of each
      proxy; RssAnon and RssFile idle and peak. Then 64-byte round trips, time to
      the first echoed byte, the TLS cipher's own cost (openssl speed), and with
      --instructions instructions per MiB under valgrind's callgrind
      (--callgrind-dir keeps the callgrind files there, for callgrind_annotate).
      --proxy measures another build as ours (default: the localproxy beside this
      testbed, e.g. target/cross/x86_64-unknown-linux-musl/release/localproxy);
      --compare runs every phase with a second build too (both proxies of that
      build, e.g. the C++ reference), its rows beside ours. Figures only; --json
      writes them to FILE too.
  testbed board serve|echo ...
      What cross/board.sh runs inside an emulated router (src/bin/testbed/board.rs):
      the service double with an echo server, writing the two tokens to files; and a
      checked echo through a source proxy's port, sampling a process's memory.
  testbed --help
";

fn main() {
    let mut args = std::env::args().skip(1);
    let code = match args.next().as_deref() {
        Some("serve") => serve(args.collect()),
        Some("demo") => demo::run(args.collect()),
        Some("bench") => bench::run(args.collect()),
        Some("board") => board::run(args.collect()),
        Some("-h") | Some("--help") | None => {
            print!("{HELP}");
            0
        }
        Some(other) => {
            eprintln!("testbed: unknown command {other:?}; see testbed --help");
            2
        }
    };
    std::process::exit(code);
}

fn value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn serve(args: Vec<String>) -> i32 {
    for a in &args {
        if a.starts_with("--")
            && ![
                "--port",
                "--dir",
                "--services",
                "--listen",
                "--delay-ms",
                "--relay-rate",
                "--hostile",
            ]
            .contains(&a.as_str())
        {
            eprintln!("testbed serve: unknown option {a}; see testbed --help");
            return 2;
        }
    }
    let port: u16 = match value(&args, "--port").map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("testbed serve: --port takes a number from 0 to 65535");
            return 2;
        }
    };
    // A folder of our own is removed on Ctrl-C; one given with --dir is left alone.
    let own_dir = value(&args, "--dir").is_none();
    let dir = value(&args, "--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("testbed-{}", std::process::id())));
    let services: Vec<String> = value(&args, "--services")
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| vec!["SSH".to_string()]);
    let relay_rate = match value(&args, "--relay-rate").map(|r| r.parse::<f64>()) {
        None => None,
        Some(Ok(r)) if r.is_finite() && r > 0.0 => Some(r),
        Some(_) => {
            eprintln!("testbed serve: --relay-rate takes a positive number of MiB/s");
            return 2;
        }
    };
    if sys::block_signals(&[sys::SIGINT, sys::SIGTERM, sys::SIGUSR1]).is_err() {
        eprintln!("testbed serve: cannot block signals");
        return 1;
    }
    let listen = value(&args, "--listen").unwrap_or_else(|| format!("127.0.0.1:{port}"));
    let delay = match value(&args, "--delay-ms").map(|d| d.parse::<u64>()) {
        None => 0,
        Some(Ok(d)) => d,
        Some(Err(_)) => {
            eprintln!("testbed serve: --delay-ms takes a number of milliseconds");
            return 2;
        }
    };
    let (hostile, answer) = match value(&args, "--hostile") {
        None => (None, None),
        Some(name) => match (Case::parse(&name), Answer::parse(&name)) {
            (Some(c), _) => (Some((c, std::time::Duration::from_secs(30))), None),
            (None, Some(a)) => (None, Some(a)),
            (None, None) => {
                let mut names: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
                names.extend(Answer::ALL.iter().map(|a| a.name()));
                eprintln!("testbed serve: --hostile takes one of {}", names.join(", "));
                return 2;
            }
        },
    };
    let tb = match Testbed::start_on(&dir, &listen) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("testbed serve: {e}");
            return 1;
        }
    };
    for m in [Mode::Source, Mode::Destination] {
        tb.set_hostile(m, hostile);
    }
    if let Some(a) = answer {
        tb.queue_answer(a);
    }
    tb.set_delay(std::time::Duration::from_millis(delay));
    tb.set_relay_rate(relay_rate);
    let names: Vec<&str> = services.iter().map(String::as_str).collect();
    let t = tb.open_tunnel(&names);
    let ca = tb.ca_dir();
    let first = services.first().cloned().unwrap_or_default();
    let map = |base: u16| {
        if services.is_empty() {
            base.to_string()
        } else {
            services
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{s}={}", base + i as u16))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    println!("testbed listening: endpoint {}", tb.endpoint());
    println!(
        "CA certificate:   {} (hashed dir {})",
        tb.ca_pem().display(),
        ca.display()
    );
    println!(
        "services:         {}",
        if services.is_empty() {
            "(none)".into()
        } else {
            services.join(",")
        }
    );
    println!();
    println!(
        "destination (e.g. in front of sshd on port 22{}):",
        if first.is_empty() {
            ""
        } else {
            " for the first service"
        }
    );
    let lp = proxy_command();
    println!(
        "  AWSIOT_TUNNEL_ACCESS_TOKEN={} {lp} -e {} -c {} -d {}",
        t.destination_token,
        tb.endpoint(),
        ca.display(),
        if services.is_empty() {
            "22".to_string()
        } else {
            map(22)
        }
    );
    println!("source (then connect to 127.0.0.1:5555):");
    println!(
        "  AWSIOT_TUNNEL_ACCESS_TOKEN={} {lp} -e {} -c {} -s {} -b 127.0.0.1",
        t.source_token,
        tb.endpoint(),
        ca.display(),
        map(5555)
    );
    println!();
    // The proxy always sends a client token (a random one per run unless kept): a
    // token is then good for reconnects of that run, not for a restart.
    println!("Each token is good for one run and its reconnects: a restarted proxy");
    println!("has a new random client token and is refused unless it keeps one");
    println!("(-i, AWSIOT_TUNNEL_CLIENT_TOKEN or --client-token-file). Ctrl-C stops.");
    loop {
        match sys::wait_signal(&[sys::SIGINT, sys::SIGTERM, sys::SIGUSR1]) {
            Ok(sys::SIGUSR1) => println!("{}", stats_line(&tb, &t)),
            _ => {
                if own_dir {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return 0;
            }
        }
    }
}

/// The proxy command to print: the `localproxy` built beside this binary (e.g.
/// `target/release/localproxy`), relative to the working directory when it is below
/// it, so the printed lines work pasted in the checkout; else `localproxy` on PATH.
fn proxy_command() -> String {
    let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("localproxy")))
        .filter(|p| p.is_file())
    else {
        return "localproxy".into();
    };
    match std::env::current_dir()
        .ok()
        .and_then(|cwd| beside.strip_prefix(cwd).ok().map(PathBuf::from))
    {
        Some(rel) => rel.display().to_string(),
        None => beside.display().to_string(),
    }
}

/// What `testbed serve` prints on SIGUSR1 (`testbed bench` reads it): relayed messages
/// and bytes from sources and from destinations, dropped messages, connected peers.
fn stats_line(tb: &Testbed, t: &localproxy::testbed::Tunnel) -> String {
    use localproxy::testbed::Mode;
    let st = tb.stats();
    format!(
        "testbed stats: messages {} {} bytes {} {} dropped {} connected {} {}",
        st.messages[0],
        st.messages[1],
        st.bytes[0],
        st.bytes[1],
        st.dropped,
        u8::from(tb.is_connected(t, Mode::Source)),
        u8::from(tb.is_connected(t, Mode::Destination))
    )
}
