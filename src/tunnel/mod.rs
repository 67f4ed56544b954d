//! The tunnel thread: owns the TLS WebSocket and the [`Session`].
//!
//! It connects (see [`connect`]), waits for SERVICE_IDS, turns tunnel messages into
//! local commands and local events into tunnel messages, pings, notices a dead peer,
//! and reconnects with exponential backoff and jitter. After the upgrade the socket is
//! non-blocking and the thread blocks only in `poll(2)` over the socket and its wake
//! fd, with the next ping or dead-peer deadline as the timeout: no polling loops.
//!
//! Back-pressure: it stops reading the WebSocket while the local thread has too much
//! queued ([`Shared::to_local`]), and stops taking local data while the WebSocket cannot
//! be written.

pub mod connect;
mod error;
pub(crate) mod proxy;
pub(crate) mod reconnect;
mod serve;
pub(crate) mod upgrade; // crate-visible for the fuzz wrapper (src/fuzzing.rs)
mod wire;
pub(crate) mod ws;

use crate::config::{read_token_file, Config, Secret};
use crate::link::{self, Shared, ToLocal, ToTunnel};
use crate::logging;
use crate::protocol::codec::Limits;
use crate::session::{Output, Session};
use crate::sys::{self, Interest, PollSet, Recv};
use crate::Exit;
use connect::TlsConnector;
use reconnect::{Decision, Outcome, Policy, Reconnect};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a WebSocket session ended.
enum End {
    /// The service closed the tunnel (close frame): exit 0.
    Closed,
    /// We were asked to stop.
    Shutdown,
    /// Lost for this reason: reconnect.
    Lost(String),
    /// Stop with this exit code.
    Fatal(Exit),
}

enum Phase {
    Connecting,
    Open { since: Instant },
    Backoff { until: Instant },
}

/// The tunnel thread's state. Create with [`TunnelThread::new`], then call `run`.
pub(crate) struct TunnelThread {
    cfg: Arc<Config>,
    tls: TlsConnector,
    session: Session,
    /// Local events, in order (taken only while the WebSocket has room).
    rx: sys::Receiver<ToTunnel>,
    /// Main's requests (Shutdown, Status), shares `rx`'s waker.
    ctl: sys::Receiver<ToTunnel>,
    local: sys::Sender<ToLocal>,
    shared: Arc<Shared>,
    limits: link::Limits,
    codec_limits: Limits,
    rng: u64,
    phase: Phase,
    reconnects: u64,
    outs: Vec<Output>,
    /// The token for the next attempt (re-read from --access-token-file).
    access_token: Secret,
    /// Source with --user: (uid, gid) to switch to once every listener is bound.
    privileges: Option<(u32, u32)>,
    /// https_proxy / HTTPS_PROXY, unless NO_PROXY names the endpoint.
    web_proxy: Option<proxy::WebProxy>,
    listening: Vec<usize>,
    /// Start-up pages were released (once, at the first ready tunnel).
    trimmed: bool,
}

/// What `run` prepared before the threads start: things that can fail as usage errors.
pub(crate) struct Prepared {
    pub(crate) tls: TlsConnector,
    /// Source with --user: (uid, gid) to switch to once every listener is bound.
    pub(crate) privileges: Option<(u32, u32)>,
    pub(crate) web_proxy: Option<proxy::WebProxy>,
}

impl TunnelThread {
    pub(crate) fn new(
        cfg: Arc<Config>,
        prepared: Prepared,
        rx: sys::Receiver<ToTunnel>,
        ctl: sys::Receiver<ToTunnel>,
        local: sys::Sender<ToLocal>,
        shared: Arc<Shared>,
        limits: link::Limits,
    ) -> TunnelThread {
        let Prepared {
            tls,
            privileges,
            web_proxy,
        } = prepared;
        let s = &cfg.settings;
        let session = Session::new(
            cfg.mode,
            cfg.client_type,
            cfg.mappings.clone(),
            cfg.config_dir_mappings.clone(),
            cfg.bind_address.clone(),
            s.tcp_max_active_connections,
        );
        let codec_limits = Limits {
            max_message: s.max_size.min(crate::protocol::MAX_MESSAGE),
            max_payload: s.max_payload_size,
        };
        TunnelThread {
            tls,
            session,
            rx,
            ctl,
            local,
            shared,
            limits,
            codec_limits,
            rng: seed(),
            phase: Phase::Connecting,
            reconnects: 0,
            outs: Vec::new(),
            access_token: cfg.access_token.clone(),
            privileges,
            web_proxy,
            listening: Vec::new(),
            trimmed: false,
            cfg,
        }
    }

    /// Connects, serves, reconnects; returns the process exit code. What to do after
    /// each attempt is the [`Reconnect`] machine's decision; this loop carries it out.
    pub(crate) fn run(mut self) -> Exit {
        let endpoint = format!(
            "wss://{}:{}",
            self.cfg.endpoint.host, self.cfg.endpoint.port
        );
        let s = &self.cfg.settings;
        let mut machine = Reconnect::new(Policy {
            retry_delay: Duration::from_millis(s.ws_retry_delay_ms),
            max_delay: Duration::from_millis(s.ws_retry_max_delay_ms),
            connect_retries: s.ws_connect_retry_count,
            reconnect_after_loss: s.ws_reconnect_on_data_error,
            token_file: self.cfg.access_token_file.is_some(),
        });
        let mut repeats = logging::Repeats::default();
        loop {
            let (outcome, why) = self.attempt(&endpoint, repeats.streak() == 0);
            let random = self.random();
            let mut decision = machine.after(outcome, random);
            let next = match decision {
                Decision::Wait(d) => format!("; next attempt in {:.1} s", d.as_secs_f64()),
                _ => String::new(),
            };
            // One line for how the attempt ended, saying what comes next; a failure
            // like the one before prints `(same failure, attempt N)` at attempts 2, 4,
            // 8, ... instead, so a day of retries is a few lines on the console.
            match (outcome, decision) {
                (Outcome::Lost { .. }, Decision::Wait(_) | Decision::Connect) => {
                    repeats.reset();
                    log::warn!("tunnel lost: {why}; reconnecting{next}")
                }
                (Outcome::Lost { .. }, _) => log::error!(
                    "tunnel lost: {why}; not reconnecting (websocket.reconnect_on_data_error)"
                ),
                (Outcome::ConnectFailed, Decision::Wait(_)) => match repeats.failed(&why) {
                    logging::Shown::Full => log::warn!("cannot connect: {why}{next}"),
                    logging::Shown::Same => {
                        log::warn!("(same failure, attempt {})", machine.failures())
                    }
                    logging::Shown::Quiet => log::debug!("cannot connect: {why}{next}"),
                },
                (Outcome::ConnectFailed, _) => log::error!(
                    "cannot connect: {why}; giving up after {} attempt(s)",
                    machine.failures(),
                ),
                (Outcome::Refused, d) => {
                    let mut lines = why.lines();
                    let first = lines.next().unwrap_or_default();
                    if matches!(d, Decision::WaitForToken { .. }) {
                        log::warn!("{first}");
                    } else {
                        log::error!("{first}");
                    }
                    for hint in lines {
                        log::info!("{hint}");
                    }
                }
                _ => {}
            }
            loop {
                match decision {
                    Decision::Connect => break,
                    Decision::Wait(delay) => {
                        // Said in the line about the failure.
                        if let Some(x) = self.wait_offline(Instant::now() + delay) {
                            return x;
                        }
                        break;
                    }
                    Decision::WaitForToken { every } => {
                        let path = self.cfg.access_token_file.clone().unwrap_or_default();
                        log::warn!("waiting for a new access token in {}", path.display());
                        if let Some(x) = self.wait_new_token(&path, every) {
                            return x;
                        }
                        decision = machine.token_changed();
                    }
                    Decision::Exit(x) => return x,
                }
            }
        }
    }

    /// One connect attempt and, if it opens, the session it carries. Returns how it
    /// ended and why, for the caller's log line.
    /// `announce`: log the attempt at info (not while a failure repeats: the failure
    /// line says when the next one is).
    fn attempt(&mut self, endpoint: &str, announce: bool) -> (Outcome, String) {
        self.phase = Phase::Connecting;
        self.shared.tunnel_ready.store(false, Ordering::SeqCst);
        // The mode is in the first line and the web proxy in the start-up lines.
        let via = if self.web_proxy.is_some() {
            " via the web proxy"
        } else {
            ""
        };
        if announce {
            log::info!("connecting to {endpoint}{via}");
        } else {
            log::debug!("connecting to {endpoint}{via}");
        }
        self.refresh_token();
        let s = &self.cfg.settings;
        let target = connect::Target {
            host: &self.cfg.endpoint.host,
            port: self.cfg.endpoint.port,
            mode: self.cfg.mode,
            access_token: &self.access_token,
            client_token: self.cfg.client_token.as_ref(),
            subprotocol: &s.ws_subprotocol,
            tls: &self.tls,
            proxy: self.web_proxy.as_ref(),
            timeout: Duration::from_millis(s.ws_connect_timeout_ms),
        };
        match connect::connect(&target) {
            Ok(opened) => {
                let (end, was_ready) = self.serve(opened);
                match end {
                    End::Closed => (Outcome::Closed, String::new()),
                    End::Shutdown => (Outcome::Shutdown, String::new()),
                    End::Fatal(x) => (Outcome::Fatal(x), String::new()),
                    End::Lost(why) => {
                        self.reconnects += 1;
                        (Outcome::Lost { was_ready }, why)
                    }
                }
            }
            // The hint, if any, on a line of its own after the error (see `run`).
            Err(e) if !e.retryable() => match e.hint() {
                Some(h) => (Outcome::Refused, format!("{e}\n{h}")),
                None => (Outcome::Refused, e.to_string()),
            },
            Err(e) => (Outcome::ConnectFailed, e.to_string()),
        }
    }

    /// Re-reads --access-token-file; keeps the previous token if the file is unusable.
    fn refresh_token(&mut self) {
        let Some(path) = &self.cfg.access_token_file else {
            return;
        };
        match read_token_file(path) {
            Ok(t) if !t.is_empty() => self.access_token = Secret::new(t),
            Ok(_) => log::warn!(
                "{} is empty; using the previous access token",
                path.display()
            ),
            Err(e) => log::warn!("{e}; using the previous access token"),
        }
    }

    /// After a refusal: checks the token file every `every` until it holds a different
    /// token. Returns an exit code if the thread must stop meanwhile.
    fn wait_new_token(&mut self, path: &std::path::Path, every: Duration) -> Option<Exit> {
        loop {
            if let Some(x) = self.wait_offline(Instant::now() + every) {
                return Some(x);
            }
            if let Ok(t) = read_token_file(path) {
                if !t.is_empty() && t != self.access_token.expose() {
                    log::info!("new access token found in {}", path.display());
                    return None;
                }
            }
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: jitter needs spread, not secrecy.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Waits until `until` while no tunnel is open, serving local events (refusing new
    /// connections). Returns an exit code if the thread must stop.
    fn wait_offline(&mut self, until: Instant) -> Option<Exit> {
        self.phase = Phase::Backoff { until };
        let waker = self.rx.waker().clone();
        let mut set = PollSet::new();
        loop {
            loop {
                let next = match self.ctl.try_recv() {
                    Recv::Empty => self.rx.try_recv(),
                    other => other,
                };
                match next {
                    Recv::Msg(ToTunnel::Shutdown) | Recv::Closed => return Some(Exit::Ok),
                    Recv::Msg(ToTunnel::Status) => self.log_status(),
                    Recv::Msg(ToTunnel::Local(ev)) => {
                        if let Err(end) = self.local_event(ev, None) {
                            return Some(match end {
                                End::Fatal(x) => x,
                                _ => Exit::Ok,
                            });
                        }
                    }
                    Recv::Empty => break,
                }
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            set.clear();
            set.push(waker.fd(), Interest::READ);
            let wake_at = logging::flush_noise().map_or(until, |due| due.min(until));
            let idle = self.ctl.prepare_sleep() & self.rx.prepare_sleep();
            let timeout = if idle {
                wake_at.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            let _ = set.wait(Some(timeout));
            waker.settle();
        }
    }

    /// Tells the local thread whether new connections may be accepted, and logs the
    /// moment the tunnel becomes ready (after the flag, so whoever reads the line can
    /// connect at once). Returns the readiness.
    fn publish_ready(&mut self) -> bool {
        let ready = self.session.is_ready();
        let was = self.shared.tunnel_ready.swap(ready, Ordering::SeqCst);
        if ready && !was {
            let ids: Vec<String> = self.session.service_ids().map(str::to_string).collect();
            log::info!(
                "tunnel ready; services: {}",
                crate::session::describe_ids(&ids)
            );
            if !self.trimmed {
                // Start-up is over: what it touched of the binary need not stay mapped.
                self.trimmed = true;
                match sys::drop_startup_pages() {
                    Ok(n) => log::debug!("released {} KiB of start-up code pages", n >> 10),
                    Err(e) => log::debug!("could not release start-up code pages: {e}"),
                }
            }
        }
        ready
    }

    /// Whether the local side can take more data: reading pauses when `to_local` (or
    /// the count of queued commands) reaches its bound and resumes when it is down to
    /// half of it (the local thread wakes us then), so a wake-up moves a batch rather
    /// than one message.
    fn may_read(&self) -> bool {
        self.shared.to_local.may_produce(self.limits.to_local_max)
            && self.shared.commands.may_produce(crate::link::MAX_COMMANDS)
    }

    fn to_local(&self, c: ToLocal) {
        if c.counted() {
            self.shared.commands.add(1);
        }
        // The local thread only goes away when the process stops.
        let _ = self.local.send(c);
    }

    fn log_status(&self) {
        let state = match self.phase {
            Phase::Connecting => "connecting".to_string(),
            Phase::Open { since } => format!(
                "open {} s ({})",
                since.elapsed().as_secs(),
                self.session
                    .version()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "waiting for SERVICE_IDS".into())
            ),
            Phase::Backoff { until } => format!(
                "down, next attempt in {:.1} s",
                until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            ),
        };
        let conns: Vec<String> = self
            .session
            .service_ids()
            .zip(self.session.connection_counts())
            .map(|(id, n)| format!("{}={n}", if id.is_empty() { "(unnamed)" } else { id }))
            .collect();
        // Short words so the line fits 80 columns: `SSH=1` are the open connections
        // per service, "in" what local peers sent, "out" what they were sent.
        log::info!(
            "status: {state}; {} reconnects; {}; {} in, {} out",
            self.reconnects,
            if conns.is_empty() {
                "none".to_string()
            } else {
                conns.join(" ")
            },
            logging::size(self.shared.bytes_from_local.get()),
            logging::size(self.shared.bytes_to_local.get()),
        );
    }
}

fn seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    let s = u64::from_ne_bytes(b);
    if from_os.is_ok() && s != 0 {
        s
    } else {
        (epoch_ms() as u64) | 1
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
