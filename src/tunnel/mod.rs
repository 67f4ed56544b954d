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
pub(crate) mod proxy;
pub(crate) mod reconnect;

use crate::config::{read_token_file, Config, Secret};
use crate::link::{self, Event, Shared, ToLocal, ToTunnel};
use crate::logging::{self, Noise};
use crate::protocol::codec::{self, Limits};
use crate::protocol::{Message as TunnelMessage, DATA_HEADROOM};
use crate::session::{Input as SessionInput, Output, Session};
use crate::sys::{self, Interest, PollSet, Recv};
use crate::Exit;
use native_tls::TlsConnector;
use reconnect::{Beat, Decision, KeepAlive, Outcome, Policy, Reconnect};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message};

/// How long a SIGTERM may spend sending the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

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
    rx: sys::Receiver<ToTunnel>,
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
        loop {
            let (outcome, why) = self.attempt(&endpoint);
            let random = self.random();
            let mut decision = machine.after(outcome, random);
            // One line for how the attempt ended, saying what comes next.
            match (outcome, decision) {
                (Outcome::Lost { .. }, Decision::Wait(_)) => {
                    log::warn!("tunnel lost: {why}; reconnecting")
                }
                (Outcome::Lost { .. }, _) => log::error!(
                    "tunnel lost: {why}; not reconnecting because websocket.reconnect_on_data_error is false"
                ),
                (Outcome::ConnectFailed, Decision::Wait(_)) => {
                    log::warn!("cannot connect to {endpoint}: {why}")
                }
                (Outcome::ConnectFailed, _) => log::error!(
                    "cannot connect to {endpoint}: {why}; giving up after {} attempt(s) (websocket.connect_retry_count = {})",
                    machine.failures(),
                    self.cfg.settings.ws_connect_retry_count
                ),
                (Outcome::Refused, Decision::WaitForToken { .. }) => log::warn!("{why}"),
                (Outcome::Refused, _) => log::error!("{why}"),
                _ => {}
            }
            loop {
                match decision {
                    Decision::Connect => break,
                    Decision::Wait(delay) => {
                        log::info!("next attempt in {:.1} s", delay.as_secs_f64());
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
    fn attempt(&mut self, endpoint: &str) -> (Outcome, String) {
        self.phase = Phase::Connecting;
        self.shared.tunnel_ready.store(false, Ordering::SeqCst);
        match &self.web_proxy {
            Some(p) => log::info!(
                "connecting to {endpoint} as {} through the proxy {p}",
                self.cfg.mode.as_str()
            ),
            None => log::info!("connecting to {endpoint} as {}", self.cfg.mode.as_str()),
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
            ws_config: connect::ws_config(
                s.ws_read_buffer_size,
                s.ws_write_buffer_size,
                s.ws_max_frame_size,
            ),
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
            Err(e) if !e.retryable() => (Outcome::Refused, e.to_string()),
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
                match self.rx.try_recv() {
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
            let timeout = if self.rx.prepare_sleep() {
                wake_at.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if set.wait(Some(timeout)).is_ok() && set.ready(0).any() {
                waker.disarm();
            }
        }
    }

    /// Serves one open WebSocket until it ends. Also returns whether the session got
    /// ready (SERVICE_IDS), which resets the backoff.
    fn serve(&mut self, opened: connect::Opened) -> (End, bool) {
        let connect::Opened {
            mut ws,
            version,
            channel_id,
        } = opened;
        log::info!(
            "tunnel open ({version}, channel-id {})",
            channel_id.as_deref().unwrap_or("not given")
        );
        self.phase = Phase::Open {
            since: Instant::now(),
        };
        let mut ever_ready = false;
        let end = self.serve_inner(&mut ws, version, &mut ever_ready);
        self.shared.tunnel_ready.store(false, Ordering::SeqCst);
        let mut outs = std::mem::take(&mut self.outs);
        outs.clear();
        self.session.handle(SessionInput::Lost, &mut outs);
        let _ = self.apply(&mut outs, None, None);
        self.outs = outs;
        (end, ever_ready)
    }

    fn serve_inner(
        &mut self,
        ws: &mut connect::Ws,
        version: crate::protocol::Version,
        ever_ready: &mut bool,
    ) -> End {
        let mut outs = std::mem::take(&mut self.outs);
        outs.clear();
        self.session
            .handle(SessionInput::Opened(version), &mut outs);
        self.publish_ready();
        if let Err(e) = self.apply(&mut outs, Some(ws), None) {
            return e;
        }
        self.outs = outs;
        let fd = ws.get_ref().tcp().as_raw_fd();
        let waker = self.rx.waker().clone();
        let period = Duration::from_millis(self.cfg.settings.ws_ping_period_ms);
        let mut keepalive = KeepAlive::new(Instant::now(), period);
        let mut inbuf: Vec<u8> = Vec::new();
        let mut write_blocked = false;
        // Whether a read may find something: after poll says readable, and until a read
        // ends in WouldBlock (TLS can hold decrypted data the socket no longer shows).
        let mut maybe_readable = true;
        let mut set = PollSet::new();
        loop {
            // Local events, unless the WebSocket cannot take more.
            while !write_blocked {
                match self.rx.try_recv() {
                    Recv::Msg(ToTunnel::Local(ev)) => match self.local_event(ev, Some(ws)) {
                        Ok(blocked) => write_blocked |= blocked,
                        Err(end) => return end,
                    },
                    Recv::Msg(ToTunnel::Status) => self.log_status(),
                    Recv::Msg(ToTunnel::Shutdown) | Recv::Closed => {
                        close_gracefully(ws, fd);
                        return End::Shutdown;
                    }
                    Recv::Empty => break,
                }
            }
            *ever_ready |= self.publish_ready();

            // Tunnel messages, unless local sockets have too much queued.
            let mut can_read = self.may_read();
            // Read only when the socket said so or the last read may have left data in
            // TLS: an idle read still costs a system call and a buffer fill.
            let mut reading = can_read && maybe_readable;
            while reading {
                match ws.read() {
                    Ok(Message::Binary(b)) => {
                        keepalive.heard(Instant::now());
                        if let Err(end) = self.on_binary(b, &mut inbuf, ws) {
                            return end;
                        }
                        can_read = self.may_read();
                        reading = can_read;
                    }
                    Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => keepalive.heard(Instant::now()),
                    Ok(Message::Text(_)) => crate::logging::peer_log!(
                        Noise::Malformed,
                        log::Level::Warn,
                        "dropped a text frame: the service sends only binary frames"
                    ),
                    Ok(Message::Close(frame)) => {
                        match frame {
                            Some(f) => log::info!(
                                "the service closed the tunnel (code {}{}{})",
                                u16::from(f.code),
                                if f.reason.is_empty() { "" } else { ": " },
                                f.reason.as_str()
                            ),
                            None => log::info!("the service closed the tunnel"),
                        }
                        let _ = ws.flush();
                        return End::Closed;
                    }
                    Ok(Message::Frame(_)) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        maybe_readable = false;
                        break;
                    }
                    Err(tungstenite::Error::ConnectionClosed)
                    | Err(tungstenite::Error::AlreadyClosed) => {
                        return End::Lost("the connection closed".into())
                    }
                    Err(e) => return End::Lost(describe_ws_error(&e)),
                }
            }
            let now = Instant::now();
            if !can_read {
                // We are the ones not reading: silence is not evidence of a dead peer.
                keepalive.not_reading(now);
            }
            match keepalive.poll(now) {
                Beat::Ping => {
                    let payload = epoch_ms().to_string();
                    if let Err(end) = write_ws(ws, Message::Ping(Bytes::from(payload))) {
                        return end;
                    }
                }
                Beat::Dead(silent) => {
                    return End::Lost(format!(
                        "no answer from the service for {:.1} s",
                        silent.as_secs_f64()
                    ))
                }
                Beat::Idle => {}
            }
            match ws.flush() {
                Ok(()) => write_blocked = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    write_blocked = true
                }
                Err(e) => return End::Lost(describe_ws_error(&e)),
            }

            set.clear();
            set.push(waker.fd(), Interest::READ);
            set.push(
                fd,
                Interest {
                    read: can_read,
                    write: write_blocked,
                },
            );
            let mut deadline = keepalive.deadline();
            if let Some(due) = logging::flush_noise() {
                deadline = deadline.min(due);
            }
            let timeout = if self.rx.prepare_sleep() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            if let Err(e) = set.wait(Some(timeout)) {
                return End::Lost(format!("poll failed: {e}"));
            }
            if set.ready(0).any() {
                waker.disarm();
            }
            let r = set.ready(1);
            maybe_readable |= r.read || r.hangup;
        }
    }

    /// Tells the local thread whether new connections may be accepted, and logs the
    /// moment the tunnel becomes ready (after the flag, so whoever reads the line can
    /// connect at once). Returns the readiness.
    fn publish_ready(&self) -> bool {
        let ready = self.session.is_ready();
        let was = self.shared.tunnel_ready.swap(ready, Ordering::SeqCst);
        if ready && !was {
            let ids: Vec<String> = self.session.service_ids().map(str::to_string).collect();
            log::info!(
                "tunnel ready; services: {}",
                crate::session::describe_ids(&ids)
            );
        }
        ready
    }

    /// Whether the local side can take more data; marks the tunnel paused if not.
    fn may_read(&self) -> bool {
        let max = self.limits.to_local_max;
        if self.shared.to_local.load(Ordering::SeqCst) < max {
            return true;
        }
        self.shared.tunnel_paused.store(true, Ordering::SeqCst);
        if self.shared.to_local.load(Ordering::SeqCst) < max {
            self.shared.tunnel_paused.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Parses one binary WebSocket message: tunnel messages may be split across frames
    /// or packed several to a frame.
    fn on_binary(
        &mut self,
        b: Bytes,
        inbuf: &mut Vec<u8>,
        ws: &mut connect::Ws,
    ) -> Result<(), End> {
        if inbuf.is_empty() {
            let used = self.parse(&b, Some(&b), ws)?;
            inbuf.extend_from_slice(&b[used..]);
        } else {
            inbuf.extend_from_slice(&b);
            let used = self.parse(inbuf, None, ws)?;
            inbuf.drain(..used);
        }
        Ok(())
    }

    /// Handles every whole message in `buf`; returns the bytes used. `frame` is `buf` as
    /// shared bytes when payloads can be handed on without a copy.
    fn parse(
        &mut self,
        buf: &[u8],
        frame: Option<&Bytes>,
        ws: &mut connect::Ws,
    ) -> Result<usize, End> {
        let mut pos = 0;
        while pos < buf.len() {
            match codec::decode(&buf[pos..], &self.codec_limits) {
                Ok(Some((n, m))) => {
                    pos += n;
                    let mut outs = std::mem::take(&mut self.outs);
                    outs.clear();
                    self.session.handle(SessionInput::Message(&m), &mut outs);
                    // Before any Listen goes out: the local thread refuses clients
                    // while the tunnel is not ready.
                    self.publish_ready();
                    let r = self.apply(&mut outs, Some(ws), Some((&m, frame)));
                    self.outs = outs;
                    r?;
                }
                Ok(None) => break,
                Err(e) => match e.skip() {
                    Some(n) => {
                        crate::logging::peer_log!(
                            Noise::Malformed,
                            log::Level::Warn,
                            "dropped a malformed tunnel message: {e}"
                        );
                        pos += n;
                    }
                    None => return Err(End::Lost(format!("corrupt tunnel data: {e}"))),
                },
            }
        }
        Ok(pos)
    }

    /// Handles one local event. Returns whether the WebSocket is now write-blocked.
    fn local_event(&mut self, ev: Event, ws: Option<&mut connect::Ws>) -> Result<bool, End> {
        let input = match ev {
            Event::Data { local, mut buf } => {
                let n = buf.len().saturating_sub(DATA_HEADROOM);
                self.release_to_tunnel(n);
                let (Some(ws), Some((sid, service, cid))) = (ws, self.session.data_route(local))
                else {
                    return Ok(false);
                };
                return match codec::encode_data_in_place(&mut buf, DATA_HEADROOM, sid, service, cid)
                {
                    Ok(start) => write_ws(ws, Message::Binary(Bytes::from(buf).slice(start..))),
                    Err(e) => {
                        log::error!("cannot encode DATA: {e}");
                        Ok(false)
                    }
                };
            }
            Event::Accepted { local, service } => SessionInput::Accepted { local, service },
            Event::Connected { local } => SessionInput::Connected { local },
            Event::ConnectFailed { local } => SessionInput::ConnectFailed { local },
            Event::Closed { local } => SessionInput::LocalClosed { local },
            Event::HoldExpired { local } => SessionInput::HoldExpired { local },
            Event::Listening { service } => {
                if !self.listening.contains(&service) {
                    self.listening.push(service);
                }
                let all = self.session.service_ids().count();
                if let Some((uid, gid)) = self.privileges {
                    if self.listening.len() >= all {
                        self.privileges = None;
                        if let Err(e) = crate::sys::drop_privileges(uid, gid) {
                            log::error!("cannot switch to --user after binding the listeners: {e}");
                            return Err(End::Fatal(Exit::Internal));
                        }
                        log::info!("listeners bound; now running as uid {uid}, gid {gid}");
                    }
                }
                return Ok(false);
            }
            Event::ListenFailed { error } => {
                log::error!("{error}");
                return Err(End::Fatal(Exit::GaveUp));
            }
        };
        let mut outs = std::mem::take(&mut self.outs);
        outs.clear();
        self.session.handle(input, &mut outs);
        let r = self.apply(&mut outs, ws, None);
        self.outs = outs;
        r
    }

    fn release_to_tunnel(&self, n: usize) {
        let before = self.shared.to_tunnel.fetch_sub(n, Ordering::SeqCst);
        if before.saturating_sub(n) < self.limits.to_tunnel_max
            && self.shared.local_paused.swap(false, Ordering::SeqCst)
        {
            self.local.waker().wake();
        }
    }

    /// Carries out session outputs. `msg` is the tunnel message being handled (for
    /// Deliver). Returns whether the WebSocket is write-blocked.
    fn apply(
        &mut self,
        outs: &mut Vec<Output>,
        mut ws: Option<&mut connect::Ws>,
        msg: Option<(&TunnelMessage<'_>, Option<&Bytes>)>,
    ) -> Result<bool, End> {
        let mut blocked = false;
        for o in outs.drain(..) {
            match o {
                Output::Send(c) => {
                    let Some(ws) = ws.as_deref_mut() else {
                        continue;
                    };
                    let mut buf = Vec::with_capacity(64);
                    if let Err(e) = c.encode(&mut buf) {
                        log::error!("cannot encode {:?}: {e}", c.kind);
                        continue;
                    }
                    blocked |= write_ws(ws, Message::Binary(Bytes::from(buf)))?;
                }
                Output::Listen {
                    service,
                    service_id,
                    port,
                } => {
                    let host = self
                        .cfg
                        .bind_address
                        .clone()
                        .unwrap_or_else(|| self.cfg.settings.default_bind_address.clone());
                    self.to_local(ToLocal::Listen {
                        service,
                        service_id,
                        host,
                        port,
                    });
                }
                Output::Connect {
                    local,
                    service,
                    target,
                } => self.to_local(ToLocal::Connect {
                    local,
                    service,
                    target,
                }),
                Output::Deliver { local } => {
                    let Some((m, frame)) = msg else { continue };
                    if m.payload.is_empty() {
                        continue;
                    }
                    let data = match frame {
                        Some(f) => f.slice_ref(m.payload),
                        None => Bytes::copy_from_slice(m.payload),
                    };
                    self.shared.to_local.fetch_add(data.len(), Ordering::SeqCst);
                    self.to_local(ToLocal::Write { local, data });
                }
                Output::Close { local } => self.to_local(ToLocal::Close { local }),
                Output::Refuse { local } => self.to_local(ToLocal::Refuse { local }),
                Output::Hold { local } => self.to_local(ToLocal::Hold { local }),
                Output::Release { local } => self.to_local(ToLocal::Release { local }),
                Output::Fatal(e) => {
                    log::error!("{e}");
                    return Err(End::Fatal(Exit::Usage));
                }
            }
        }
        Ok(blocked)
    }

    fn to_local(&self, c: ToLocal) {
        // The local thread only goes away when the process stops.
        let _ = self.local.send(c);
    }

    fn log_status(&self) {
        let state = match self.phase {
            Phase::Connecting => "connecting".to_string(),
            Phase::Open { since } => format!(
                "open for {} s ({})",
                since.elapsed().as_secs(),
                self.session
                    .version()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "waiting for SERVICE_IDS".into())
            ),
            Phase::Backoff { until } => format!(
                "backing off, next attempt in {:.1} s",
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
        log::info!(
            "status: tunnel {state}; {} reconnect(s); connections {}; {} bytes from local, {} bytes to local",
            self.reconnects,
            if conns.is_empty() { "none".to_string() } else { conns.join(" ") },
            self.shared.bytes_from_local.get(),
            self.shared.bytes_to_local.get(),
        );
    }
}

/// Queues a message; Ok(true) when the socket is full (the message stays queued).
fn write_ws(ws: &mut connect::Ws, m: Message) -> Result<bool, End> {
    match ws.write(m) {
        Ok(()) => Ok(false),
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
        Err(e) => Err(End::Lost(describe_ws_error(&e))),
    }
}

/// Sends a close frame and gives it CLOSE_TIMEOUT to leave.
fn close_gracefully(ws: &mut connect::Ws, fd: i32) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "local proxy stopping".into(),
    }));
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut set = PollSet::new();
    loop {
        match ws.flush() {
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return,
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        set.clear();
        set.push(fd, Interest::WRITE);
        if set.wait(Some(deadline - now)).is_err() {
            return;
        }
    }
}

fn describe_ws_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Capacity(c) => format!("the service sent an oversized frame ({c})"),
        tungstenite::Error::Protocol(p) => format!("WebSocket protocol error: {p}"),
        tungstenite::Error::Io(io) => format!("connection error: {io}"),
        other => other.to_string(),
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
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
