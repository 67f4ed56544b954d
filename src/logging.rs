//! Log setup: plain lines on stderr, e.g.
//! `2026-11-24T10:54:05.123Z INFO Listening on 127.0.0.1:5555`.
//!
//! A line is never written by the thread that logs it: it goes into a bounded queue
//! ([`QUEUE_BYTES`], [`QUEUE_LINES`]) that one `log` thread writes to stderr. A paused
//! serial console (Ctrl-S), a flow-controlled line with nobody attached or a stuck log
//! pipe then blocks only that thread; the I/O threads drop the line and count it, and
//! once the console takes lines again one `(N log lines dropped: console not draining)`
//! line says how many were lost. [`flush`] gives the queue a bounded time at exit.
//! env_logger is used for its filters only (`RUST_LOG` syntax), not for writing.
//!
//! The level comes from `-v` with the reference's numbering; `RUST_LOG`, when set, replaces
//! it entirely (module filters such as `localproxy=trace,tungstenite=debug` work).
//! Timestamps are UTC with milliseconds, computed here from `SystemTime` because
//! env_logger's own timestamps need humantime, which we leave out for size.
//! `LOCALPROXY_LOG_TIMESTAMPS=0` drops them for syslog and procd, which stamp lines
//! themselves. No colours, ever: the output goes to serial consoles and log files.
//! Nothing here decides what is logged; that is each module's business.

use log::LevelFilter;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable that turns timestamps off (`0`, `false`, `no`, `off`).
pub const TIMESTAMPS_ENV: &str = "LOCALPROXY_LOG_TIMESTAMPS";

/// The reference's `-v` numbering: 0 off, 1 fatal (we have no fatal: error), 2 error,
/// 3 warn, 4 info, 5 debug, 6 and up trace.
pub(crate) fn level_for(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::Off,
        1 | 2 => LevelFilter::Error,
        3 => LevelFilter::Warn,
        4 => LevelFilter::Info,
        5 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Name of a `-v` level, for `--check`.
pub(crate) fn level_name(verbosity: u8) -> &'static str {
    match verbosity {
        0 => "off",
        1 => "fatal",
        2 => "error",
        3 => "warn",
        4 => "info",
        5 => "debug",
        _ => "trace",
    }
}

/// Whether the value of [`TIMESTAMPS_ENV`] asks for timestamps (unset: yes).
pub fn timestamps_wanted(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "false" | "no" | "off")
    )
}

/// A byte count for a log line: exact below 10 000, else in KiB, MiB or GiB with one
/// decimal, so a busy connection's line keeps its width.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 10_000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// How [`Repeats::failed`] says to show a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shown {
    /// A new failure: the whole line.
    Full,
    /// The same again, at a power-of-two repeat: `(same failure, attempt N)`.
    Same,
    /// The same again in between: debug level only.
    Quiet,
}

/// A failure that repeats (the service unreachable for hours): shown in full once,
/// then as one short line at the 2nd, 4th, 8th, ... time in a row, so the console gets
/// a line at growing intervals rather than one per attempt.
#[derive(Debug, Default)]
pub(crate) struct Repeats {
    last: Option<String>,
    streak: u32,
}

impl Repeats {
    pub(crate) fn failed(&mut self, why: &str) -> Shown {
        if self.last.as_deref() == Some(why) {
            self.streak = self.streak.saturating_add(1);
            if self.streak.is_power_of_two() {
                Shown::Same
            } else {
                Shown::Quiet
            }
        } else {
            self.last = Some(why.to_string());
            self.streak = 1;
            Shown::Full
        }
    }

    /// Failures in a row so far (0 after a success).
    pub(crate) fn streak(&self) -> u32 {
        self.streak
    }

    /// A success ends the streak: the next failure is shown in full.
    pub(crate) fn reset(&mut self) {
        self.last = None;
        self.streak = 0;
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) in the proleptic Gregorian
/// calendar. Counting years from 1 March puts the leap day at the end of the year, so a
/// month's first day follows from a linear formula and only 400-year eras need division.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097; // 400 years
    let z = days + 719_468; // 0000-03-01 → 1970-01-01
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// `since_epoch` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_utc(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since_epoch.subsec_millis()
    )
}

/// Installs the logger; its lines are written in place until [`start_writer`]. `rust_log` is the
/// value of `RUST_LOG` (ignored when empty). Without it, other crates (tungstenite,
/// openssl) log at warn at most, so `-v 6` traces our decisions rather than every TLS
/// record.
pub fn init(verbosity: u8, rust_log: Option<&str>, timestamps: bool) {
    let mut b = env_logger::Builder::new();
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(filters) => {
            b.parse_filters(filters);
        }
        None => {
            let level = level_for(verbosity);
            b.filter_level(level.min(LevelFilter::Warn));
            b.filter_module("localproxy", level);
        }
    }
    let inner = b.build();
    let max = inner.filter();
    STAMPED.store(timestamps, std::sync::atomic::Ordering::Relaxed);
    // A second init (tests) keeps the first logger; nothing to report.
    if log::set_boxed_logger(Box::new(TokenGuard { inner, timestamps })).is_ok() {
        log::set_max_level(max);
    }
}

/// Bytes of log lines the queue holds at most: about 5 s of a 115200-baud console.
pub const QUEUE_BYTES: usize = 64 * 1024;
/// Lines the queue holds at most, whatever their length.
pub const QUEUE_LINES: usize = 1024;

/// Lines waiting for the writer thread, and what was dropped since the last report.
struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: u64,
    /// The writer thread runs; without it (spawn failed) lines are written in place.
    writer: bool,
    /// The writer holds lines it took and has not finished writing.
    busy: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    lines: VecDeque::new(),
    bytes: 0,
    dropped: 0,
    writer: false,
    busy: false,
});
/// Signalled when lines arrive (the writer waits on it) and when the writer has
/// written all it took (`flush` waits on it).
static QUEUED: Condvar = Condvar::new();
static DRAINED: Condvar = Condvar::new();

fn queue() -> std::sync::MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The decision [`enqueue`] makes, pure so it can be tested: whether a line of `len`
/// bytes fits beside what the queue holds.
fn fits(lines: usize, bytes: usize, len: usize) -> bool {
    lines < QUEUE_LINES && bytes + len <= QUEUE_BYTES
}

/// Hands a finished line (newline included) to the writer; never blocks on stderr.
fn enqueue(line: String) {
    let mut q = queue();
    if !q.writer {
        drop(q);
        write_out(line.as_bytes());
        return;
    }
    if fits(q.lines.len(), q.bytes, line.len()) {
        q.bytes += line.len();
        q.lines.push_back(line);
        drop(q);
        QUEUED.notify_one();
    } else {
        q.dropped += 1;
    }
}

/// Writes to fd 2, ignoring errors: a closed log pipe is not a reason to stop tunnels.
fn write_out(bytes: &[u8]) {
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// The report of lines the queue could not hold.
pub(crate) fn dropped_line(n: u64, timestamps: bool) -> String {
    let mut s = String::new();
    if timestamps {
        s.push_str(&now_stamp());
        s.push(' ');
    }
    let plural = if n == 1 { "" } else { "s" };
    s.push_str(&format!(
        "WARN ({n} log line{plural} dropped: console not draining)\n"
    ));
    s
}

fn now_stamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(now)
}

/// Whether the drop report carries a timestamp (set by [`init`]).
static STAMPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Starts the thread that writes the queued lines, so that from now on a log line
/// never waits for the console. The run calls it once the sandbox is in place and
/// before the I/O threads start: a thread inherits Landlock only from the thread that
/// spawns it after the rules are set, so the writer must not exist before them. Until
/// then (start-up, `--check`, usage errors: only the main thread runs) lines are written
/// in place.
pub fn start_writer() {
    if queue().writer {
        return;
    }
    // Spawned with every signal blocked: without a full mask a SIGTERM or the threads'
    // SIGUSR2 could land here and kill the process.
    let spawned = crate::sys::with_all_signals_blocked(|| {
        std::thread::Builder::new()
            .name("log".into())
            // Formatting is done by the logging threads: this one only copies bytes.
            .stack_size(64 * 1024)
            .spawn(writer_loop)
    });
    queue().writer = spawned.is_ok();
}

fn writer_loop() {
    loop {
        let (lines, dropped) = {
            let mut q = queue();
            while q.lines.is_empty() && q.dropped == 0 {
                q = QUEUED.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            q.busy = true;
            q.bytes = 0;
            (std::mem::take(&mut q.lines), std::mem::take(&mut q.dropped))
        };
        for line in &lines {
            write_out(line.as_bytes());
        }
        // The lines taken were queued before any that were dropped (the queue was full
        // then), so the report follows them; it goes out once this write got through,
        // i.e. once the console drains.
        if dropped > 0 {
            let stamped = STAMPED.load(std::sync::atomic::Ordering::Relaxed);
            write_out(dropped_line(dropped, stamped).as_bytes());
        }
        let mut q = queue();
        q.busy = false;
        if q.lines.is_empty() {
            DRAINED.notify_all();
        }
    }
}

/// Waits until every queued line is written, for at most `limit` (a console that does
/// not drain must not keep the process from exiting). Call before `process::exit`.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut q = queue();
    while q.writer && (q.busy || !q.lines.is_empty()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        q = DRAINED
            .wait_timeout(q, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Log lines a peer can cause at will, each limited on its own by [`peer_log!`]: a
/// hostile or buggy peer must not flood a 115200-baud serial console, nor stall the I/O
/// threads writing to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Noise {
    /// Messages of unknown or zero type.
    UnknownType,
    /// Stream messages before SERVICE_IDS.
    Early,
    /// DATA or resets for streams or connections that are not open.
    Stray,
    /// Invalid starts: stream id 0, unknown service, a start to a source, a start that
    /// does not fit the stream's form.
    BadStart,
    /// Starts refused at tcp.max_active_connections.
    Refused,
    /// Tunnel messages that do not decode.
    Malformed,
    /// Local clients refused (tunnel not open, one at a time, limit reached).
    LocalRefused,
    /// SERVICE_IDS that repeat ids, or change the set mid-session.
    ServiceIds,
    /// Source connections the peer reset before sending any data.
    ResetBeforeData,
    /// Source connections that got nothing back through the tunnel in time.
    NoAnswer,
}

impl Noise {
    const ALL: [Noise; 10] = [
        Noise::UnknownType,
        Noise::Early,
        Noise::Stray,
        Noise::BadStart,
        Noise::Refused,
        Noise::Malformed,
        Noise::LocalRefused,
        Noise::ServiceIds,
        Noise::ResetBeforeData,
        Noise::NoAnswer,
    ];

    fn what(self) -> &'static str {
        match self {
            Noise::UnknownType => "messages of unknown type",
            Noise::Early => "messages before SERVICE_IDS",
            Noise::Stray => "messages for streams or connections that are not open",
            Noise::BadStart => "invalid stream or connection starts",
            Noise::Refused => "starts refused at tcp.max_active_connections",
            Noise::Malformed => "malformed tunnel messages",
            Noise::LocalRefused => "refused local connections",
            Noise::ServiceIds => "odd SERVICE_IDS",
            Noise::ResetBeforeData => "connections reset before any data",
            Noise::NoAnswer => "connections without an answer",
        }
    }
}

/// Lines of one kind shown per window; the rest are counted.
pub(crate) const NOISE_BURST: u32 = 5;
/// The window: at most [`NOISE_BURST`] lines of a kind per second.
pub(crate) const NOISE_WINDOW: Duration = Duration::from_secs(1);

/// The limit for one kind of line: pure, time comes in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throttle {
    window_start: Option<Instant>,
    shown: u32,
    suppressed: u64,
    level: log::Level,
}

impl Throttle {
    pub(crate) const fn new() -> Throttle {
        Throttle {
            window_start: None,
            shown: 0,
            suppressed: 0,
            level: log::Level::Trace,
        }
    }

    /// Whether a line at `level` may be shown at `now`; also the count of lines
    /// suppressed in the window that just ended, to report first.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        level: log::Level,
    ) -> (bool, Option<(u64, log::Level)>) {
        let report = self.flush(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
            self.shown = 0;
        }
        if self.shown < NOISE_BURST {
            self.shown += 1;
            (true, report)
        } else {
            self.suppressed += 1;
            // The summary goes out at the most severe level suppressed.
            self.level = self.level.min(level);
            (false, report)
        }
    }

    /// Ends the window if it is over: returns the count suppressed in it, if any.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<(u64, log::Level)> {
        let start = self.window_start?;
        if now.saturating_duration_since(start) < NOISE_WINDOW {
            return None;
        }
        self.window_start = None;
        self.shown = 0;
        let n = std::mem::take(&mut self.suppressed);
        let level = std::mem::replace(&mut self.level, log::Level::Trace);
        (n > 0).then_some((n, level))
    }

    /// When [`Throttle::flush`] has a count to report.
    pub(crate) fn due(&self) -> Option<Instant> {
        match self.window_start {
            Some(start) if self.suppressed > 0 => Some(start + NOISE_WINDOW),
            _ => None,
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

static THROTTLES: Mutex<[Throttle; Noise::ALL.len()]> =
    Mutex::new([Throttle::new(); Noise::ALL.len()]);

fn throttles() -> std::sync::MutexGuard<'static, [Throttle; Noise::ALL.len()]> {
    THROTTLES.lock().unwrap_or_else(|p| p.into_inner())
}

fn report(kind: Noise, counted: Option<(u64, log::Level)>) {
    if let Some((n, level)) = counted {
        log::log!(level, "({n} more like this suppressed: {})", kind.what());
    }
}

/// Whether a peer-caused line of `kind` at `level` may be written now; writes the
/// summary of an ended window first. Use [`peer_log!`].
pub(crate) fn admit(kind: Noise, level: log::Level) -> bool {
    let (show, counted) = throttles()[kind as usize].admit(Instant::now(), level);
    if !show {
        SUPPRESSING.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    report(kind, counted);
    show
}

/// Some kind has lines counted and not yet reported: [`flush_noise`] has work. Lets the
/// I/O threads skip the lock on every wake-up when nothing is suppressed.
static SUPPRESSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes the summaries of windows that have ended; returns when the next one is due.
/// The I/O threads call it on every wake and sleep no later than what it returns.
pub(crate) fn flush_noise() -> Option<Instant> {
    if !SUPPRESSING.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let now = Instant::now();
    let mut counted = Vec::new();
    let mut due: Option<Instant> = None;
    {
        let mut t = throttles();
        for kind in Noise::ALL {
            let th = &mut t[kind as usize];
            if let Some(c) = th.flush(now) {
                counted.push((kind, c));
            }
            if let Some(d) = th.due() {
                due = Some(due.map_or(d, |x: Instant| x.min(d)));
            }
        }
        if due.is_none() {
            // Cleared under the lock: an admit that suppresses takes the lock first.
            SUPPRESSING.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
    for (kind, c) in counted {
        report(kind, Some(c));
    }
    due
}

/// `log!` for lines a peer can cause: at most [`NOISE_BURST`] per kind per second,
/// then one `(N more like this suppressed: ...)` line.
macro_rules! peer_log {
    ($kind:expr, $level:expr, $($arg:tt)+) => {
        if log::log_enabled!($level) && $crate::logging::admit($kind, $level) {
            log::log!($level, $($arg)+);
        }
    };
}
pub(crate) use peer_log;

/// Drops the records that could carry a token whatever the filters say: tungstenite
/// logs the whole upgrade request, `access-token` header included, at trace level.
/// Formats the rest and queues them.
struct TokenGuard {
    inner: env_logger::Logger,
    timestamps: bool,
}

impl TokenGuard {
    fn allowed(meta: &log::Metadata<'_>) -> bool {
        !(meta.target().starts_with("tungstenite") && meta.level() > log::Level::Debug)
    }
}

/// One record as a line: `[timestamp ]LEVEL text\n`.
fn format_line(timestamps: bool, level: log::Level, args: &std::fmt::Arguments<'_>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if timestamps {
        s.push_str(&now_stamp());
        s.push(' ');
    }
    let _ = writeln!(s, "{level} {args}");
    s
}

impl log::Log for TokenGuard {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        Self::allowed(meta) && self.inner.enabled(meta)
    }

    fn log(&self, record: &log::Record<'_>) {
        if Self::allowed(record.metadata()) && self.inner.matches(record) {
            enqueue(format_line(self.timestamps, record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1)); // 2100 is not a leap year
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        let mut prev = civil_from_days(-800);
        for d in -799..80_000 {
            let cur = civil_from_days(d);
            let next_in_month = (prev.0, prev.1, prev.2 + 1);
            let next_month = if prev.1 == 12 {
                (prev.0 + 1, 1, 1)
            } else {
                (prev.0, prev.1 + 1, 1)
            };
            assert!(
                cur == next_in_month || cur == next_month,
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(format_utc(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        // 2026-11-24T10:54:05.123Z
        let t = Duration::from_millis(1_795_517_645_123);
        assert_eq!(format_utc(t), "2026-11-24T10:54:05.123Z");
        let t = Duration::new(951_782_399, 999_999_999);
        assert_eq!(format_utc(t), "2000-02-28T23:59:59.999Z");
    }

    #[test]
    fn tungstenite_trace_never_passes() {
        let meta = |target, level| log::Metadata::builder().target(target).level(level).build();
        assert!(!TokenGuard::allowed(&meta(
            "tungstenite::handshake::client",
            log::Level::Trace
        )));
        assert!(TokenGuard::allowed(&meta(
            "tungstenite::protocol",
            log::Level::Debug
        )));
        assert!(TokenGuard::allowed(&meta(
            "localproxy::tunnel",
            log::Level::Trace
        )));
    }

    #[test]
    fn throttle_shows_a_burst_then_counts_and_reports_once() {
        let t0 = Instant::now();
        let mut t = Throttle::new();
        let ms = |n| t0 + Duration::from_millis(n);
        for i in 0..NOISE_BURST {
            assert_eq!(t.admit(ms(u64::from(i)), log::Level::Warn), (true, None));
        }
        assert_eq!(t.due(), None, "nothing suppressed yet");
        for i in 0..995 {
            let at = ms(10) + Duration::from_micros(i);
            assert_eq!(t.admit(at, log::Level::Warn), (false, None));
        }
        assert_eq!(t.due(), Some(t0 + NOISE_WINDOW));
        assert_eq!(t.flush(ms(999)), None, "the window is not over");
        assert_eq!(t.flush(ms(1000)), Some((995, log::Level::Warn)));
        assert_eq!(t.flush(ms(5000)), None, "reported once");
        assert_eq!(t.due(), None);
        // A new window shows lines again.
        assert_eq!(t.admit(ms(6000), log::Level::Warn), (true, None));
    }

    #[test]
    fn throttle_reports_an_ended_window_before_the_next_line() {
        let t0 = Instant::now();
        let mut t = Throttle::new();
        for _ in 0..NOISE_BURST + 3 {
            t.admit(t0, log::Level::Debug);
        }
        t.admit(t0, log::Level::Warn);
        let later = t0 + NOISE_WINDOW * 2;
        assert_eq!(
            t.admit(later, log::Level::Debug),
            (true, Some((4, log::Level::Warn))),
            "the summary takes the most severe level it stands for"
        );
    }

    #[test]
    fn the_queue_is_bounded_by_lines_and_bytes() {
        assert!(fits(0, 0, 100));
        assert!(fits(0, 0, QUEUE_BYTES));
        assert!(
            !fits(0, 0, QUEUE_BYTES + 1),
            "a line longer than the queue is dropped"
        );
        assert!(!fits(QUEUE_LINES, 0, 1));
        assert!(fits(QUEUE_LINES - 1, QUEUE_BYTES - 1, 1));
        assert!(!fits(QUEUE_LINES - 1, QUEUE_BYTES - 1, 2));
    }

    #[test]
    fn drop_report_wording() {
        assert_eq!(
            dropped_line(1, false),
            "WARN (1 log line dropped: console not draining)\n"
        );
        assert_eq!(
            dropped_line(37, false),
            "WARN (37 log lines dropped: console not draining)\n"
        );
        let stamped = dropped_line(2, true);
        assert_eq!(stamped.as_bytes()[24], b' ', "{stamped}");
        assert!(stamped.ends_with(" WARN (2 log lines dropped: console not draining)\n"));
    }

    #[test]
    fn a_repeated_failure_shows_at_growing_intervals() {
        let mut r = Repeats::default();
        let shown: Vec<Shown> = (0..17).map(|_| r.failed("refused")).collect();
        let loud: Vec<usize> = (0..17).filter(|&i| shown[i] != Shown::Quiet).collect();
        assert_eq!(shown[0], Shown::Full);
        assert_eq!(loud, vec![0, 1, 3, 7, 15], "attempts 1, 2, 4, 8, 16");
        assert_eq!(r.streak(), 17);
        assert_eq!(r.failed("timed out"), Shown::Full, "another failure is new");
        assert_eq!(r.failed("timed out"), Shown::Same);
        r.reset();
        assert_eq!(r.streak(), 0);
        assert_eq!(
            r.failed("timed out"),
            Shown::Full,
            "after a success, in full again"
        );
    }

    #[test]
    fn sizes_stay_short() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(9_999), "9999 B");
        assert_eq!(size(10_000), "9.8 KiB");
        assert_eq!(size(32 * 1024 * 1024), "32.0 MiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
        assert_eq!(size(u64::MAX), "17179869184.0 GiB");
    }

    #[test]
    fn levels() {
        assert_eq!(level_for(0), LevelFilter::Off);
        assert_eq!(level_for(1), LevelFilter::Error);
        assert_eq!(level_for(2), LevelFilter::Error);
        assert_eq!(level_for(3), LevelFilter::Warn);
        assert_eq!(level_for(4), LevelFilter::Info);
        assert_eq!(level_for(5), LevelFilter::Debug);
        assert_eq!(level_for(6), LevelFilter::Trace);
        assert_eq!(level_for(255), LevelFilter::Trace);
        assert_eq!(level_name(1), "fatal");
    }

    #[test]
    fn timestamp_switch() {
        assert!(timestamps_wanted(None));
        assert!(timestamps_wanted(Some("1")));
        assert!(timestamps_wanted(Some("")));
        assert!(!timestamps_wanted(Some("0")));
        assert!(!timestamps_wanted(Some("off")));
        assert!(!timestamps_wanted(Some(" FALSE ")));
    }
}
