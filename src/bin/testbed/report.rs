//! What `testbed bench` prints and writes: the phases' figures as tables (a row per
//! phase and build, so a `--compare` build stands beside ours) and as JSON.

use crate::bench::CIPHER;
use crate::procfs::Mem;
use crate::traffic::{Kind, Pace};
use std::path::PathBuf;

/// A proxy build under test.
pub struct Build {
    pub label: &'static str,
    pub path: PathBuf,
    pub size: u64,
}

/// One phase: what moves, through which relay, how the client writes.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub kind: Kind,
    /// The testbed reads each proxy's connection at this many MiB/s (None: unpaced).
    pub relay: Option<f64>,
    pub pace: Option<Pace>,
    /// Bytes the client sends (upload, echo) or receives (download).
    pub bytes: u64,
}

impl Spec {
    /// Bytes through the tunnel, both directions counted: an echo moves its bytes twice.
    pub fn moved(&self) -> u64 {
        match self.kind {
            Kind::Echo => 2 * self.bytes,
            _ => self.bytes,
        }
    }

    /// Direct TCP as the ceiling: for the bulk phases through the unpaced relay.
    pub fn has_direct(&self) -> bool {
        self.relay.is_none() && self.pace.is_none()
    }

    pub fn label(&self) -> String {
        match self.pace {
            Some(p) => format!("{} {}M/s {}K", self.kind.name(), p.mibs, p.write / 1024),
            None => self.kind.name().to_string(),
        }
    }

    /// The name in the JSON: "upload" for the unpaced relay (as before), "upload_relay",
    /// "echo_paced_1mibs_1kib".
    pub fn key(&self) -> String {
        match (self.pace, self.relay) {
            (Some(p), _) => format!(
                "{}_paced_{}mibs_{}kib",
                self.kind.name(),
                p.mibs,
                p.write / 1024
            ),
            (None, Some(_)) => format!("{}_relay", self.kind.name()),
            (None, None) => self.kind.name().to_string(),
        }
    }

    fn relay_text(&self) -> String {
        self.relay.map_or("-".into(), |r| format!("{r}"))
    }
}

/// One run's figures; index 0 the source proxy, 1 the destination (2: the testbed).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunFigures {
    pub mibs: f64,
    pub lag_ms: Option<f64>,
    /// CPU seconds per GiB moved.
    pub cpu: [f64; 3],
    /// Per MiB moved.
    pub switches: [f64; 2],
    pub syscalls: [f64; 2],
    /// Tunnel messages the testbed relayed from this proxy, per MiB it relayed from it.
    pub messages: [Option<f64>; 2],
    pub idle: [Mem; 2],
    pub peak: [Mem; 2],
    /// VmRSS before the transfer and VmHWM after it, kB (the JSON's older rss_kb).
    pub vm_idle: [u64; 2],
    pub vm_peak: [u64; 2],
}

pub struct PhaseResult {
    pub spec: Spec,
    /// Direct TCP MiB/s per run, when the phase has it.
    pub direct: Vec<f64>,
    /// Per build (as in the builds list).
    pub builds: Vec<BuildRuns>,
}

/// One build's runs of one phase: the figures of those that finished, and why the
/// others did not.
#[derive(Default)]
pub struct BuildRuns {
    pub ok: Vec<RunFigures>,
    pub failed: Vec<String>,
}

/// Round trips (median, p99 µs) and first echoed byte (ms): direct, then per build.
pub struct Latency {
    pub direct: (f64, f64, f64),
    pub tunnels: Vec<Result<(f64, f64, f64), String>>,
}

fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut s: Vec<f64> = v.into_iter().filter(|x| !x.is_nan()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn best(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(f64::NAN, f64::max)
}

/// The figures of one phase and build over its runs: medians; memory the largest.
struct Summary {
    best: f64,
    median: f64,
    lag_ms: f64,
    cpu: [f64; 3],
    switches: [f64; 2],
    syscalls: [f64; 2],
    messages: [f64; 2],
    idle: [Mem; 2],
    peak: [Mem; 2],
    vm_idle: [u64; 2],
    vm_peak: [u64; 2],
}

fn summary(runs: &[RunFigures]) -> Summary {
    let m = |f: &dyn Fn(&RunFigures) -> f64| median(runs.iter().map(f));
    let mem = |f: &dyn Fn(&RunFigures) -> Mem| runs.iter().map(f).fold(Mem::default(), Mem::max);
    let most = |f: &dyn Fn(&RunFigures) -> u64| runs.iter().map(f).max().unwrap_or(0);
    Summary {
        best: best(runs.iter().map(|r| r.mibs)),
        median: m(&|r| r.mibs),
        lag_ms: m(&|r| r.lag_ms.unwrap_or(f64::NAN)),
        cpu: [0, 1, 2].map(|i| m(&|r| r.cpu[i])),
        switches: [0, 1].map(|i| m(&|r| r.switches[i])),
        syscalls: [0, 1].map(|i| m(&|r| r.syscalls[i])),
        messages: [0, 1].map(|i| m(&|r| r.messages[i].unwrap_or(f64::NAN))),
        idle: [0, 1].map(|i| mem(&|r| r.idle[i])),
        peak: [0, 1].map(|i| mem(&|r| r.peak[i])),
        vm_idle: [0, 1].map(|i| most(&|r| r.vm_idle[i])),
        vm_peak: [0, 1].map(|i| most(&|r| r.vm_peak[i])),
    }
}

/// A number with `d` decimals, "-" for none.
fn num(x: f64, d: usize) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.d$}")
    }
}

pub fn header(builds: &[Build], mib: u64, runs: usize, relay: f64, paced_seconds: f64, load: &str) {
    for b in builds {
        println!("{:<8} {} ({} bytes)", b.label, b.path.display(), b.size);
    }
    println!(
        "{mib} MiB per bulk transfer, {runs} run(s) per phase and build, fresh processes \
         each run; relay-bound and paced phases: the testbed reads each proxy at \
         {relay} MiB/s in reads of at most 16 KiB; paced phases {paced_seconds} s each"
    );
    println!("load average at start: {load}");
}

/// Prints one table: a row per phase and build, the phase's name on its first row.
fn table(
    title: &str,
    heads: &[&str],
    phases: &[PhaseResult],
    builds: &[Build],
    cells: &dyn Fn(&PhaseResult, usize, &Summary) -> Vec<String>,
) {
    println!();
    println!("{title}");
    let mut line = format!("{:<18} {:>5} {:<8}", "phase", "relay", "build");
    for h in heads {
        line.push_str(&format!(" {h:>9}"));
    }
    println!("{line}");
    for p in phases {
        for (i, b) in builds.iter().enumerate() {
            let (name, relay) = if i == 0 {
                (p.spec.label(), p.spec.relay_text())
            } else {
                (String::new(), String::new())
            };
            let mut line = format!("{name:<18} {relay:>5} {:<8}", b.label);
            let r = &p.builds[i];
            if r.ok.is_empty() {
                line.push_str(" failed every run, see below");
            } else {
                for c in cells(p, i, &summary(&r.ok)) {
                    line.push_str(&format!(" {c:>9}"));
                }
                if !r.failed.is_empty() {
                    line.push_str(&format!(" ({} run(s) failed)", r.failed.len()));
                }
            }
            println!("{line}");
        }
    }
}

pub fn tables(
    builds: &[Build],
    phases: &[PhaseResult],
    lat: &Latency,
    floor: Option<f64>,
    insn: Option<(f64, f64)>,
    load_end: &str,
) {
    table(
        "Throughput (MiB/s of payload; medians over runs) and CPU seconds per GiB moved",
        &[
            "direct", "best", "median", "lag ms", "src s/G", "dst s/G", "tb s/G",
        ],
        phases,
        builds,
        &|p, i, s| {
            // Direct TCP is one figure per phase: on its first row.
            let direct = if i == 0 {
                median(p.direct.iter().copied())
            } else {
                f64::NAN
            };
            vec![
                num(direct, 1),
                num(s.best, 1),
                num(s.median, 1),
                num(s.lag_ms, 1),
                num(s.cpu[0], 2),
                num(s.cpu[1], 2),
                num(s.cpu[2], 2),
            ]
        },
    );
    table(
        "Per MiB moved (medians): context switches, read+write syscalls, tunnel messages",
        &[
            "csw src", "csw dst", "rw src", "rw dst", "msg src", "msg dst",
        ],
        phases,
        builds,
        &|_, _, s| {
            vec![
                num(s.switches[0], 1),
                num(s.switches[1], 1),
                num(s.syscalls[0], 1),
                num(s.syscalls[1], 1),
                num(s.messages[0], 1),
                num(s.messages[1], 1),
            ]
        },
    );
    table(
        "Resident memory, kB (idle: before the transfer; peak: sampled every 10 ms; \
         largest over runs)",
        &[
            "anon src", "peak", "file src", "peak", "anon dst", "peak", "file dst", "peak",
        ],
        phases,
        builds,
        &|_, _, s| {
            [
                s.idle[0].anon,
                s.peak[0].anon,
                s.idle[0].file,
                s.peak[0].file,
            ]
            .into_iter()
            .chain([
                s.idle[1].anon,
                s.peak[1].anon,
                s.idle[1].file,
                s.peak[1].file,
            ])
            .map(|v| v.to_string())
            .collect()
        },
    );
    let failures: Vec<String> = phases
        .iter()
        .flat_map(|p| {
            builds.iter().zip(&p.builds).flat_map(move |(b, r)| {
                r.failed.iter().map(move |e| {
                    let relay = p.spec.relay.map(|x| format!(" @{x}")).unwrap_or_default();
                    format!("  {}{relay}, {}: {e}", p.spec.label(), b.label)
                })
            })
        })
        .collect();
    if !failures.is_empty() {
        println!();
        println!("Failed runs (their figures are left out):");
        for f in failures {
            println!("{f}");
        }
    }
    println!();
    println!(
        "MiB moved: payload through the tunnel, both directions counted (an echo moves its \
         bytes twice). lag: from the client's last write to the last echoed byte. CPU: \
         utime+stime (/proc/PID/stat); tb: the testbed. csw: voluntary + involuntary \
         context switches of all threads (/proc/PID/task/*/status). rw: syscr+syscw of \
         /proc/PID/io, which count read/write/readv/writev (on sockets too) but not \
         send/recv/sendmsg/recvmsg, poll or epoll. msg: tunnel messages the testbed \
         relayed from that proxy, per MiB relayed from it (- when it sent no data)."
    );
    println!();
    let (d_med, d_p99, d_first) = lat.direct;
    let mut rt = format!("64-byte round trip, median / p99 us: direct {d_med:.1} / {d_p99:.1}");
    let mut first = format!("connect to first echoed byte, ms: direct {d_first:.2}");
    for (b, t) in builds.iter().zip(&lat.tunnels) {
        match t {
            Ok((med, p99, f)) => {
                rt.push_str(&format!("; {} {med:.1} / {p99:.1}", b.label));
                first.push_str(&format!("; {} {f:.2}", b.label));
            }
            Err(e) => {
                rt.push_str(&format!("; {} failed: {e}", b.label));
                first.push_str(&format!("; {} failed", b.label));
            }
        }
    }
    println!("{rt}");
    println!("{first}");
    match floor {
        Some(f) => println!(
            "TLS cipher floor (openssl speed {CIPHER}): {f:.3} s per GiB, once per proxy and \
             direction"
        ),
        None => println!("TLS cipher floor: n/a (no openssl command)"),
    }
    if let Some((s, d)) = insn {
        println!(
            "instructions per MiB (callgrind, upload, {}): source {s:.0}, destination {d:.0}",
            builds[0].label
        );
    }
    println!("load average at end: {load_end}");
}

/// A JSON value that keeps its keys in order.
enum J {
    Num(f64, usize),
    Int(u64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn obj(items: Vec<(&str, J)>) -> J {
    J::Obj(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn opt(x: Option<f64>, d: usize) -> J {
    J::Num(x.unwrap_or(f64::NAN), d)
}

impl J {
    fn write(&self, out: &mut String, indent: usize) {
        match self {
            J::Num(x, d) if x.is_finite() => out.push_str(&format!("{x:.d$}")),
            J::Num(..) => out.push_str("null"),
            J::Int(n) => out.push_str(&n.to_string()),
            J::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out, indent);
                }
                out.push(']');
            }
            J::Obj(items) if items.is_empty() => out.push_str("{}"),
            J::Obj(items) => {
                out.push_str("{\n");
                for (i, (k, v)) in items.iter().enumerate() {
                    out.push_str(&" ".repeat(indent + 2));
                    J::Str(k.clone()).write(out, 0);
                    out.push_str(": ");
                    v.write(out, indent + 2);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
        }
    }
}

fn pair(names: [&str; 2], v: [J; 2]) -> J {
    let [a, b] = v;
    obj(vec![(names[0], a), (names[1], b)])
}

const PROXIES: [&str; 2] = ["source", "destination"];

/// The older per-phase fields (of our build): direct and MiB/s, CPU, VmRSS/VmHWM.
fn legacy(p: &PhaseResult, s: &Summary) -> Vec<(&'static str, J)> {
    vec![
        ("direct_mibs", J::Num(median(p.direct.iter().copied()), 1)),
        ("best_mibs", J::Num(s.best, 1)),
        ("median_mibs", J::Num(s.median, 1)),
        (
            "cpu_s_per_gib",
            obj(vec![
                ("source", J::Num(s.cpu[0], 3)),
                ("destination", J::Num(s.cpu[1], 3)),
                ("testbed", J::Num(s.cpu[2], 3)),
            ]),
        ),
        (
            "rss_kb",
            obj(vec![
                ("idle_source", J::Int(s.vm_idle[0])),
                ("idle_destination", J::Int(s.vm_idle[1])),
                ("peak_source", J::Int(s.vm_peak[0])),
                ("peak_destination", J::Int(s.vm_peak[1])),
            ]),
        ),
    ]
}

fn figures(p: &PhaseResult, runs: &BuildRuns) -> J {
    let failed = || J::Arr(runs.failed.iter().map(|e| J::Str(e.clone())).collect());
    let r = &runs.ok;
    if r.is_empty() {
        return obj(vec![("failed_runs", failed())]);
    }
    let s = summary(r);
    let mut v = legacy(p, &s);
    v.retain(|(k, _)| *k != "direct_mibs");
    let mem = |f: &dyn Fn(Mem) -> u64| {
        obj(vec![
            ("idle_source", J::Int(f(s.idle[0]))),
            ("peak_source", J::Int(f(s.peak[0]))),
            ("idle_destination", J::Int(f(s.idle[1]))),
            ("peak_destination", J::Int(f(s.peak[1]))),
        ])
    };
    v.extend([
        ("lag_ms", J::Num(s.lag_ms, 2)),
        (
            "context_switches_per_mib",
            pair(PROXIES, s.switches.map(|x| J::Num(x, 2))),
        ),
        (
            "read_write_syscalls_per_mib",
            pair(PROXIES, s.syscalls.map(|x| J::Num(x, 2))),
        ),
        (
            "messages_per_mib",
            pair(PROXIES, s.messages.map(|x| J::Num(x, 2))),
        ),
        ("rss_anon_kb", mem(&|m| m.anon)),
        ("rss_file_kb", mem(&|m| m.file)),
        (
            "run_mibs",
            J::Arr(r.iter().map(|f| J::Num(f.mibs, 1)).collect()),
        ),
        ("failed_runs", failed()),
    ]);
    obj(v)
}

pub struct JsonInput<'a> {
    pub builds: &'a [Build],
    pub mib: u64,
    pub runs: usize,
    pub relay: f64,
    pub paced_seconds: f64,
    pub phases: &'a [PhaseResult],
    pub latency: &'a Latency,
    pub floor: Option<f64>,
    pub insn: Option<(f64, f64)>,
    pub load: (&'a str, &'a str),
}

/// The figures as JSON: the older keys as before (our build), then every build's.
pub fn json(i: &JsonInput) -> String {
    let ours = &i.builds[0];
    let phases = i
        .phases
        .iter()
        .map(|p| {
            let mut v: Vec<(&str, J)> = vec![
                ("relay_mibs", opt(p.spec.relay, 1)),
                (
                    "paced",
                    match p.spec.pace {
                        Some(pc) => obj(vec![
                            ("mibs", J::Num(pc.mibs, 1)),
                            ("write_bytes", J::Int(pc.write as u64)),
                        ]),
                        None => J::Num(f64::NAN, 0),
                    },
                ),
                ("bytes", J::Int(p.spec.bytes)),
                ("moved_bytes", J::Int(p.spec.moved())),
            ];
            if p.builds[0].ok.is_empty() {
                v.push(("direct_mibs", J::Num(median(p.direct.iter().copied()), 1)));
            } else {
                v.extend(legacy(p, &summary(&p.builds[0].ok)));
            }
            for (b, runs) in i.builds.iter().zip(&p.builds) {
                v.push((b.label, figures(p, runs)));
            }
            (p.spec.key(), obj(v))
        })
        .collect();
    let (dm, dp, df) = i.latency.direct;
    let ok = |b: usize| i.latency.tunnels.get(b).and_then(|t| t.as_ref().ok());
    let (tm, tp, tf) = ok(0).copied().unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let mut rt = vec![
        ("tunnel_median", J::Num(tm, 1)),
        ("tunnel_p99", J::Num(tp, 1)),
        ("direct_median", J::Num(dm, 1)),
        ("direct_p99", J::Num(dp, 1)),
    ];
    let mut fb = vec![("tunnel", J::Num(tf, 3)), ("direct", J::Num(df, 3))];
    if let Some(&(cm, cp, cf)) = ok(1) {
        rt.push(("compare_median", J::Num(cm, 1)));
        rt.push(("compare_p99", J::Num(cp, 1)));
        fb.push(("compare", J::Num(cf, 3)));
    }
    let builds = i
        .builds
        .iter()
        .map(|b| {
            let v = obj(vec![
                ("path", J::Str(b.path.display().to_string())),
                ("binary_bytes", J::Int(b.size)),
            ]);
            (b.label.to_string(), v)
        })
        .collect();
    let root = obj(vec![
        ("binary_bytes", J::Int(ours.size)),
        ("mib", J::Int(i.mib)),
        ("runs", J::Int(i.runs as u64)),
        ("relay_mibs", J::Num(i.relay, 1)),
        ("paced_seconds", J::Num(i.paced_seconds, 1)),
        ("builds", J::Obj(builds)),
        ("phases", J::Obj(phases)),
        ("round_trip_us", obj(rt)),
        ("first_byte_ms", obj(fb)),
        ("tls_floor_s_per_gib", opt(i.floor, 4)),
        (
            "instructions_per_mib",
            match i.insn {
                Some((s, d)) => obj(vec![
                    ("source", J::Num(s, 0)),
                    ("destination", J::Num(d, 0)),
                ]),
                None => J::Num(f64::NAN, 0),
            },
        ),
        (
            "loadavg",
            obj(vec![
                ("start", J::Str(i.load.0.into())),
                ("end", J::Str(i.load.1.into())),
            ]),
        ),
    ]);
    let mut out = String::new();
    root.write(&mut out, 0);
    out.push('\n');
    out
}
