//! A real lossy link: the testbed runs in a network namespace of its own, joined to the
//! proxies' by a veth pair with link-local addresses; nftables in that namespace drops
//! 2 % of packets at random and the testbed delays every relayed message by 200 ms
//! (a cellular uplink). A 4 MiB echo must come through intact. Then the link is cut
//! (`ip link set down`: a silent black hole, no RST) for three ping periods and
//! restored: both proxies notice, reconnect, and a new connection works.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); without one of them it skips through
//! `common::skip` (a failure under `.ci/run`). With them, a network that cannot be built
//! (a namespace that cannot be made, a rejected nft rule) fails the test.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(240);
const PING_MS: u64 = 1000;

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace and veth pair; removed on drop.
struct Net {
    ns: String,
    host_if: String,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.host_if]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

const HOST_IP: &str = "169.254.77.1";
const NS_IP: &str = "169.254.77.2";

fn make_net() -> Result<Net, String> {
    let id = std::process::id() % 100_000;
    let ns = format!("lpt{id}");
    let (host_if, ns_if) = (format!("lpa{id}"), format!("lpb{id}"));
    run(&["ip", "netns", "add", &ns])?;
    let net = Net {
        ns: ns.clone(),
        host_if: host_if.clone(),
    };
    run(&[
        "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
    ])?;
    run(&["ip", "link", "set", &ns_if, "netns", &ns])?;
    run(&[
        "ip",
        "addr",
        "add",
        &format!("{HOST_IP}/30"),
        "dev",
        &host_if,
    ])?;
    run(&["ip", "link", "set", &host_if, "up"])?;
    let in_ns = |a: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", &ns];
        v.extend_from_slice(a);
        run(&v)
    };
    in_ns(&["ip", "addr", "add", &format!("{NS_IP}/30"), "dev", &ns_if])?;
    in_ns(&["ip", "link", "set", &ns_if, "up"])?;
    in_ns(&["ip", "link", "set", "lo", "up"])?;
    in_ns(&["nft", "add", "table", "inet", "lossy"])?;
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        in_ns(&[
            "nft",
            "add",
            "chain",
            "inet",
            "lossy",
            chain,
            &format!("{{ type filter hook {hook} priority 0 ; }}"),
        ])?;
        in_ns(&[
            "nft", "add", "rule", "inet", "lossy", chain, "numgen", "random", "mod", "100", "<",
            "2", "counter", "drop",
        ])?;
    }
    Ok(net)
}

/// Packets the two loss rules dropped so far.
fn dropped_packets(net: &Net) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &net.ns, "nft", "list", "table", "inet", "lossy",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("counter packets ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `testbed serve` in the namespace; returns it with (endpoint, CA dir, dst token, src token).
fn serve_in(net: &Net, dir: &std::path::Path) -> (Child, String, String, String, String) {
    let bin = env!("CARGO_BIN_EXE_testbed");
    let port = 18000 + (std::process::id() % 1000) as u16;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.ns, bin, "serve"])
        .args(["--listen", &format!("{NS_IP}:{port}"), "--services", "A"])
        .args(["--dir", dir.to_str().unwrap(), "--delay-ms", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut endpoint, mut ca, mut tokens) = (String::new(), String::new(), Vec::new());
    while tokens.len() < 2 {
        let l = lines.next().expect("testbed serve output").unwrap();
        if let Some(e) = l.strip_prefix("testbed listening: endpoint ") {
            endpoint = e.trim().to_string();
        }
        if let Some(rest) = l.split("(hashed dir ").nth(1) {
            ca = rest.trim_end_matches(')').to_string();
        }
        if let Some(rest) = l.split("AWSIOT_TUNNEL_ACCESS_TOKEN=").nth(1) {
            tokens.push(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, endpoint, ca, tokens[0].clone(), tokens[1].clone())
}

#[test]
fn lossy_delayed_link_and_a_cut_link() {
    const TEST: &str = "lossy_delayed_link_and_a_cut_link";
    if !is_root() {
        skip(TEST, "root (for ip netns and nftables)");
        return;
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if !have(tool) {
            skip(TEST, &format!("{tool} (apt-get install {package})"));
            return;
        }
    }
    let net = make_net().unwrap_or_else(|e| panic!("cannot build the test network: {e}"));
    watchdog(LIMIT, move || {
        let dir = temp_dir("netns");
        let (mut tb, endpoint, ca, dst_token, src_token) = serve_in(&net, &dir);
        let settings = fast_settings(&dir, &[("websocket.ping_period_ms", &PING_MS.to_string())]);
        let echo = echo_server();
        let port = free_port();
        let base = |m: &[String]| -> Vec<String> {
            let mut v = vec![
                "-e".to_string(),
                endpoint.clone(),
                "-c".into(),
                ca.clone(),
                "--settings-json".into(),
                settings.display().to_string(),
            ];
            v.extend_from_slice(m);
            v
        };
        let d = base(&["-d".into(), format!("A={}", echo.port)]);
        let d: Vec<&str> = d.iter().map(String::as_str).collect();
        let dst = Proxy::start(&d, &dst_token);
        dst.wait_line("tunnel ready");
        let s = base(&[
            "-s".into(),
            format!("A={port}"),
            "-b".into(),
            "127.0.0.1".into(),
        ]);
        let s: Vec<&str> = s.iter().map(String::as_str).collect();
        let src = Proxy::start(&s, &src_token);
        src.wait_line("listening on");

        echo_check(port, &pattern(4 << 20, 1));
        let dropped = dropped_packets(&net);
        eprintln!("4 MiB echo over the lossy link: nftables dropped {dropped} packets");
        assert!(
            dropped > 0,
            "the loss rule dropped nothing: the link was not lossy"
        );

        // A silent black hole: no RST, no FIN, nothing.
        run(&["ip", "link", "set", &net.host_if, "down"]).unwrap();
        src.wait_line("tunnel lost");
        dst.wait_line("tunnel lost");
        // Both noticed after about two ping periods; keep the link down for a third.
        std::thread::sleep(Duration::from_millis(PING_MS));
        run(&["ip", "link", "set", &net.host_if, "up"]).unwrap();
        src.wait_nth_line("tunnel ready", 2);
        dst.wait_nth_line("tunnel ready", 2);
        echo_check(port, &pattern(100_000, 2));
        let lost = src.wait_line("tunnel lost");
        assert!(lost.contains("no answer from the service"), "{lost}");
        let _ = tb.kill();
        let _ = tb.wait();
    });
}
