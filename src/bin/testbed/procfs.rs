//! What `testbed bench` reads about a process from Linux's /proc: CPU time, context
//! switches, read/write system calls, resident memory, and a sampler for peak memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// utime + stime of a process (all its threads) in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after ")".
    (ticks(11) + ticks(12)) / localproxy::sys::ticks_per_second()
}

/// The value of `key` (e.g. "RssAnon:") in a /proc status file, in its unit (kB).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// A field of /proc/PID/status (kB for memory); 0 if absent.
pub fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| field(&s, key))
        .unwrap_or(0)
}

/// Voluntary + involuntary context switches, summed over the process's threads now
/// alive (a thread that ended takes its count with it).
pub fn context_switches(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .map(|s| {
            field(&s, "voluntary_ctxt_switches:").unwrap_or(0)
                + field(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0)
        })
        .sum()
}

/// syscr + syscw of /proc/PID/io: read/readv/pread and write/writev/pwrite calls (on
/// sockets too), but not recv/send/recvmsg/sendmsg, nor poll/epoll.
pub fn read_write_syscalls(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .map(|s| field(&s, "syscr:").unwrap_or(0) + field(&s, "syscw:").unwrap_or(0))
        .unwrap_or(0)
}

/// The cumulative counters of one process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub cpu: f64,
    pub switches: u64,
    pub syscalls: u64,
}

impl Counters {
    pub fn of(pid: u32) -> Counters {
        Counters {
            cpu: cpu_seconds(pid),
            switches: context_switches(pid),
            syscalls: read_write_syscalls(pid),
        }
    }
}

/// Resident memory split as /proc/PID/status splits it, in kB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mem {
    pub anon: u64,
    pub file: u64,
}

impl Mem {
    pub fn of(pid: u32) -> Mem {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return Mem::default();
        };
        Mem {
            anon: field(&s, "RssAnon:").unwrap_or(0),
            file: field(&s, "RssFile:").unwrap_or(0),
        }
    }

    pub fn max(self, o: Mem) -> Mem {
        Mem {
            anon: self.anon.max(o.anon),
            file: self.file.max(o.file),
        }
    }
}

/// Samples processes' RssAnon and RssFile every 10 ms and keeps the largest of each
/// (the kernel keeps a peak only for the total, VmHWM).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Mem>>,
}

impl Sampler {
    pub fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = vec![Mem::default(); pids.len()];
            loop {
                let last = flag.load(Ordering::Relaxed);
                for (m, &p) in peak.iter_mut().zip(&pids) {
                    *m = m.max(Mem::of(p));
                }
                if last {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { stop, thread }
    }

    /// Stops sampling; the peaks, in the order of the pids given.
    pub fn finish(self) -> Vec<Mem> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The load average line, for the record of how busy the machine was.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// Whether something listens on TCP port `port` of IPv4 (from /proc/net/tcp).
fn listening(port: u16) -> bool {
    let Ok(t) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!(":{port:04X}");
    t.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address is field 1, st field 3; 0A is LISTEN.
        f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
    })
}

/// Waits until `port` listens: the C++ reference logs that it listens just before.
pub fn wait_listening(port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    while !listening(port) {
        if std::time::Instant::now() > deadline {
            return Err(format!("nothing listens on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
