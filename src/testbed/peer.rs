//! One testbed peer connection: TLS accept, the upgrade with token checks, then a poll
//! loop that relays tunnel messages to the other mode's peer and applies the hooks.
//!
//! The thread owns its TLS WebSocket in non-blocking mode and sleeps only in `poll(2)`
//! over the socket and its wake fd. Data for it arrives on one channel and control
//! commands on another, so a freeze or a drop never waits behind data. It stops reading
//! its own peer while the other peer has more than [`QUEUE_LIMIT`] bytes queued.

use super::pace::Paced;
use super::state::{idx, Control, PeerHandle, Recorded, Shared};
use crate::config::Mode;
use crate::protocol::codec::{self, Limits};
use crate::protocol::{Message as TunnelMessage, Type, Version, MAX_WS_FRAME};
use crate::sys::{self, Interest, PollSet, Recv, Waker};
use openssl::ssl::{Ssl, SslContext, SslStream};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

/// A peer that sends nothing within this time after connecting is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes queued for a peer before its sender stops reading.
const QUEUE_LIMIT: usize = 1 << 20;

static NEXT_PEER: AtomicUsize = AtomicUsize::new(1);

type Ws = WebSocket<SslStream<Paced>>;

/// A message to forward: its bytes, its record, and the stream it starts or resets.
type Relayed = (Bytes, Option<Recorded>, Option<(Type, String, i32)>);

struct Admitted {
    tunnel: u64,
    mode: Mode,
    subprotocol: String,
    version: Version,
}

fn reject(status: u16, body: &str) -> Box<ErrorResponse> {
    let mut r = ErrorResponse::new(Some(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    if let Ok(v) = HeaderValue::from_str(body) {
        r.headers_mut().insert("X-Status-Reason", v);
    }
    Box::new(r)
}

/// Checks an upgrade request against the tunnels and hooks (under the lock).
fn admit(shared: &Shared, req: &Request) -> Result<Admitted, Box<ErrorResponse>> {
    let mut st = shared.lock();
    if let Some(status) = st.reject {
        return Err(reject(status, "rejected by the testbed's reject hook"));
    }
    if req.uri().path() != "/tunnel" {
        return Err(reject(400, "the path must be /tunnel"));
    }
    let mode = match req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("local-proxy-mode="))
    {
        Some("source") => Mode::Source,
        Some("destination") => Mode::Destination,
        _ => {
            return Err(reject(
                400,
                "local-proxy-mode must be source or destination",
            ))
        }
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let Some(token) = header("access-token") else {
        return Err(reject(401, "Missing access token"));
    };
    let Some(&(tunnel, token_mode)) = st.tokens.get(token) else {
        return Err(reject(401, "Invalid access token"));
    };
    if token_mode != mode {
        return Err(reject(
            400,
            "The access token is for the other local-proxy-mode",
        ));
    }
    let offered = header("sec-websocket-protocol").unwrap_or("");
    let Some(subprotocol) = offered
        .split(',')
        .map(str::trim)
        .find(|p| Version::from_subprotocol(p).is_some())
        .map(str::to_string)
    else {
        return Err(reject(400, "No supported Sec-WebSocket-Protocol offered"));
    };
    let version = Version::from_subprotocol(&subprotocol).unwrap_or(Version::V3);
    let client_token = header("client-token").map(str::to_string);
    let single_use = st.single_use;
    let Some(ts) = st.tunnels.get_mut(&tunnel) else {
        return Err(reject(401, "Invalid access token"));
    };
    if ts.closed {
        return Err(reject(400, "Tunnel is closed"));
    }
    let slot = &mut ts.slots[idx(mode)];
    if single_use && slot.used {
        match (&slot.client_token, &client_token) {
            (Some(bound), Some(given)) if bound == given => {}
            (Some(_), Some(_)) => {
                return Err(reject(400, "Invalid client token: client token mismatch"))
            }
            _ => {
                return Err(reject(
                    400,
                    "Invalid access token: The access token was previously used and can not be used again.",
                ))
            }
        }
    }
    if !slot.used {
        slot.used = true;
        slot.client_token = client_token.clone();
    }
    // Recorded before the reply goes out, so a client that sees its handshake complete
    // can rely on them.
    slot.connections += 1;
    slot.subprotocol = Some(subprotocol.clone());
    slot.client_token_seen = client_token.is_some();
    shared.cv.notify_all();
    Ok(Admitted {
        tunnel,
        mode,
        subprotocol,
        version,
    })
}

/// Serves one TCP connection until it ends.
pub(crate) fn serve(shared: Arc<Shared>, tcp: TcpStream, acceptor: Arc<SslContext>) {
    let _ = tcp.set_nodelay(true);
    if tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
        || tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
    {
        return;
    }
    use super::hostile::{self, Answer};
    let mut tcp = tcp;
    let answer = shared.lock().answers.pop_front();
    if let Some(a @ (Answer::TlsClose | Answer::TlsGarbage)) = answer {
        hostile::answer_tls(a, &mut tcp);
        return;
    }
    let Ok(ssl) = Ssl::new(&acceptor) else {
        return;
    };
    let Ok(mut tls) = ssl.accept(Paced::new(tcp)) else {
        return;
    };
    match answer {
        Some(Answer::Coalesced101) => tls.get_mut().hold(),
        Some(a) => {
            hostile::answer_upgrade(a, &mut tls);
            return;
        }
        None => {}
    }
    let mut admitted: Option<Admitted> = None;
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let a = admit(&shared, req).map_err(|e| *e)?;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&a.subprotocol) {
            h.insert("Sec-WebSocket-Protocol", v);
        }
        if let Ok(v) = HeaderValue::from_str(&channel_id()) {
            h.insert("channel-id", v);
        }
        admitted = Some(a);
        Ok(resp)
    };
    let mut config = WebSocketConfig::default();
    // tungstenite zero-fills its whole read chunk (128 KiB by default) before every read,
    // and one read returns one TLS record (16 KiB) at most: a chunk of one record keeps
    // that memset from dominating the relay.
    config.read_buffer_size = 16 * 1024;
    config.max_frame_size = Some(MAX_WS_FRAME);
    config.max_message_size = Some(MAX_WS_FRAME);
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(tls, cb, Some(config)) else {
        return;
    };
    let Some(a) = admitted else { return };
    let tcp = ws.get_ref().get_ref().tcp();
    if tcp.set_read_timeout(None).is_err()
        || tcp.set_write_timeout(None).is_err()
        || tcp.set_nonblocking(true).is_err()
    {
        return;
    }
    let Ok(waker) = Waker::new() else { return };
    let (data_tx, data_rx) = sys::channel_with::<Bytes>(waker.clone());
    let (control_tx, control_rx) = sys::channel_with::<Control>(waker.clone());
    let handle = PeerHandle {
        id: NEXT_PEER.fetch_add(1, Ordering::SeqCst) as u64,
        data: data_tx,
        control: control_tx,
        queued: Arc::new(AtomicUsize::new(0)),
        waiting: Arc::new(Mutex::new(None)),
    };
    let (services, hostile) = {
        let mut st = shared.lock();
        let hostile = match st.hostile[idx(a.mode)].take() {
            Some((case, d, times)) => {
                if times > 1 {
                    st.hostile[idx(a.mode)] = Some((case, d, times - 1));
                }
                Some((case, d))
            }
            None => None,
        };
        let Some(ts) = st.tunnels.get_mut(&a.tunnel) else {
            return;
        };
        let slot = &mut ts.slots[idx(a.mode)];
        if let Some(old) = slot.peer.replace(handle.clone()) {
            let _ = old.control.send(Control::Close(
                1008,
                "replaced by another connection".into(),
            ));
        }
        shared.cv.notify_all();
        (ts.services.clone(), hostile)
    };
    let mut peer = Peer {
        shared: shared.clone(),
        tunnel: a.tunnel,
        mode: a.mode,
        handle: handle.clone(),
        waker,
        data_rx,
        control_rx,
        inbuf: Vec::new(),
        delayed: VecDeque::new(),
        recut_buf: Vec::new(),
        frozen: false,
        write_blocked: false,
        rng: handle.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
    };
    if a.version != Version::V1 {
        let ids: Vec<&str> = services.iter().map(String::as_str).collect();
        let mut m = TunnelMessage::new(Type::ServiceIds);
        m.available_service_ids = ids;
        let mut buf = Vec::new();
        if codec::encode(&m, &mut buf).is_ok() {
            let _ = ws.write(Message::Binary(Bytes::from(buf)));
        }
    }
    if answer == Some(Answer::Coalesced101) {
        // The 101 and SERVICE_IDS leave in one send.
        let _ = ws.flush();
        if ws.get_mut().get_mut().release().is_err() {
            return;
        }
    }
    if let Some((case, duration)) = hostile {
        if case.sends_with_service_ids() {
            // The case's first bytes leave in the same send as SERVICE_IDS.
            ws.get_mut().get_mut().hold();
        }
        let _ = ws.flush();
        let fd = ws.get_ref().get_ref().tcp().as_raw_fd();
        let service = services.first().map(String::as_str).unwrap_or("");
        let until = Instant::now() + duration;
        let report = super::hostile::play(case, until, ws.get_mut(), fd, service);
        let _ = ws.get_ref().get_ref().tcp().shutdown(Shutdown::Both);
        peer.leave();
        shared.lock().hostile_report = Some(report);
        shared.cv.notify_all();
        return;
    }
    peer.run(&mut ws);
    peer.leave();
}

struct Peer {
    shared: Arc<Shared>,
    tunnel: u64,
    mode: Mode,
    handle: PeerHandle,
    waker: Arc<Waker>,
    data_rx: sys::Receiver<Bytes>,
    control_rx: sys::Receiver<Control>,
    inbuf: Vec<u8>,
    delayed: VecDeque<(Instant, Bytes)>,
    recut_buf: Vec<u8>,
    frozen: bool,
    write_blocked: bool,
    rng: u64,
}

enum Flow {
    Go,
    Stop,
}

impl Peer {
    fn run(&mut self, ws: &mut Ws) {
        let fd = ws.get_ref().get_ref().tcp().as_raw_fd();
        let mut set = PollSet::new();
        loop {
            loop {
                match self.control_rx.try_recv() {
                    Recv::Msg(c) => {
                        if let Flow::Stop = self.control(c, ws) {
                            return;
                        }
                    }
                    Recv::Empty => break,
                    Recv::Closed => return,
                }
            }
            let (delay, recut, fragment, rate) = {
                let st = self.shared.lock();
                (st.delay, st.recut, st.fragment, st.relay_rate)
            };
            ws.get_mut().get_mut().set_rate(rate);
            if !self.frozen {
                // Data for our peer, unless the socket is full.
                while !self.write_blocked {
                    let b = match self.data_rx.try_recv() {
                        Recv::Msg(b) => b,
                        Recv::Empty | Recv::Closed => break,
                    };
                    if delay.is_zero() && self.delayed.is_empty() {
                        if let Flow::Stop = self.send_out(ws, b, recut, fragment) {
                            return;
                        }
                    } else {
                        self.delayed.push_back((Instant::now() + delay, b));
                    }
                }
                let now = Instant::now();
                while !self.write_blocked && self.delayed.front().is_some_and(|(t, _)| *t <= now) {
                    let Some((_, b)) = self.delayed.pop_front() else {
                        break;
                    };
                    if let Flow::Stop = self.send_out(ws, b, recut, fragment) {
                        return;
                    }
                }
                if let Flow::Stop = self.cut(ws, recut) {
                    return;
                }
                if let Flow::Stop = self.read(ws) {
                    return;
                }
                match ws.flush() {
                    Ok(()) => self.write_blocked = false,
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                        self.write_blocked = true
                    }
                    Err(_) => return,
                }
            }
            set.clear();
            set.push(self.waker.fd(), Interest::READ);
            let other_ok = self.other_has_room();
            // Paced and out of tokens: sleep until there are some instead of polling a
            // readable socket.
            let pause = if self.frozen || !other_ok {
                None
            } else {
                ws.get_mut().get_mut().pause()
            };
            set.push(
                fd,
                Interest {
                    read: !self.frozen && other_ok && pause.is_none(),
                    write: !self.frozen && self.write_blocked,
                },
            );
            let ready = self.data_rx.prepare_sleep() & self.control_rx.prepare_sleep();
            let timeout = if !ready {
                Some(Duration::ZERO)
            } else {
                let delayed = if self.frozen || self.write_blocked {
                    None
                } else {
                    self.delayed
                        .front()
                        .map(|(t, _)| t.saturating_duration_since(Instant::now()))
                };
                match (delayed, pause) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let polled = set.wait(timeout);
            self.waker.settle();
            if polled.is_err() {
                return;
            }
        }
    }

    fn control(&mut self, c: Control, ws: &mut Ws) -> Flow {
        match c {
            Control::Close(code, reason) => {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                }));
                let _ = ws.flush();
                let _ = ws.get_ref().get_ref().tcp().shutdown(Shutdown::Write);
                Flow::Stop
            }
            Control::Abort => {
                let _ = ws.get_ref().get_ref().tcp().shutdown(Shutdown::Both);
                Flow::Stop
            }
            Control::Freeze(f) => {
                self.frozen = f;
                Flow::Go
            }
            Control::Raw(m) => match ws.write(m) {
                Ok(()) => Flow::Go,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    Flow::Go
                }
                Err(_) => Flow::Stop,
            },
        }
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Writes one relayed tunnel message in the current framing.
    fn send_out(
        &mut self,
        ws: &mut Ws,
        b: Bytes,
        recut: Option<(usize, usize)>,
        fragment: Option<usize>,
    ) -> Flow {
        self.release(b.len());
        if recut.is_some() {
            self.recut_buf.extend_from_slice(&b);
            return Flow::Go;
        }
        let frames: Vec<Message> = match fragment {
            Some(n) if b.len() > n => {
                let mut v = Vec::new();
                let mut pos = 0;
                while pos < b.len() {
                    let end = (pos + n).min(b.len());
                    let op = if pos == 0 {
                        OpData::Binary
                    } else {
                        OpData::Continue
                    };
                    v.push(Message::Frame(Frame::message(
                        b.slice(pos..end),
                        OpCode::Data(op),
                        end == b.len(),
                    )));
                    pos = end;
                }
                v
            }
            _ => vec![Message::Binary(b)],
        };
        for f in frames {
            if let Flow::Stop = self.write(ws, f) {
                return Flow::Stop;
            }
        }
        Flow::Go
    }

    /// Sends what the re-cut buffer holds as frames of random sizes.
    fn cut(&mut self, ws: &mut Ws, recut: Option<(usize, usize)>) -> Flow {
        let (min, max) = recut.unwrap_or((usize::MAX, usize::MAX));
        while !self.recut_buf.is_empty() {
            let span = (max - min + 1) as u64;
            let size = (min + (self.random() % span.max(1)) as usize).min(self.recut_buf.len());
            let chunk: Vec<u8> = self.recut_buf.drain(..size).collect();
            if let Flow::Stop = self.write(ws, Message::Binary(Bytes::from(chunk))) {
                return Flow::Stop;
            }
        }
        Flow::Go
    }

    fn write(&mut self, ws: &mut Ws, m: Message) -> Flow {
        match ws.write(m) {
            Ok(()) => Flow::Go,
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.write_blocked = true;
                Flow::Go
            }
            Err(_) => Flow::Stop,
        }
    }

    /// Frees queue space and wakes a sender that waits for it.
    fn release(&self, n: usize) {
        let before = self.handle.queued.fetch_sub(n, Ordering::SeqCst);
        if before.saturating_sub(n) < QUEUE_LIMIT / 2 {
            let w = self
                .handle
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }

    fn other(&self) -> Option<PeerHandle> {
        let st = self.shared.lock();
        st.tunnels
            .get(&self.tunnel)
            .and_then(|ts| ts.slots[1 - idx(self.mode)].peer.clone())
    }

    /// Whether the other peer can take more; if not, asks it to wake us.
    fn other_has_room(&self) -> bool {
        let Some(o) = self.other() else { return true };
        if o.queued.load(Ordering::SeqCst) < QUEUE_LIMIT {
            return true;
        }
        *o.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.waker.clone());
        o.queued.load(Ordering::SeqCst) < QUEUE_LIMIT
    }

    fn read(&mut self, ws: &mut Ws) -> Flow {
        let mut other = self.other();
        loop {
            if let Some(o) = &other {
                if o.queued.load(Ordering::SeqCst) >= QUEUE_LIMIT {
                    return Flow::Go;
                }
            }
            match ws.read() {
                Ok(Message::Binary(b)) => {
                    if let Flow::Stop = self.relay(b, &mut other) {
                        return Flow::Stop;
                    }
                }
                Ok(Message::Text(_)) => {
                    let _ = ws.close(Some(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "text frames are not allowed".into(),
                    }));
                    let _ = ws.flush();
                    return Flow::Stop;
                }
                Ok(Message::Close(_)) => {
                    let mut st = self.shared.lock();
                    if let Some(ts) = st.tunnels.get_mut(&self.tunnel) {
                        ts.slots[idx(self.mode)].close_frames += 1;
                    }
                    self.shared.cv.notify_all();
                    drop(st);
                    let _ = ws.flush();
                    return Flow::Stop;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    return Flow::Go
                }
                Err(_) => return Flow::Stop,
            }
        }
    }

    /// Splits received bytes into tunnel messages, records them and forwards each.
    fn relay(&mut self, b: Bytes, other: &mut Option<PeerHandle>) -> Flow {
        let src = if self.inbuf.is_empty() {
            b
        } else {
            self.inbuf.extend_from_slice(&b);
            Bytes::from(std::mem::take(&mut self.inbuf))
        };
        let limits = Limits::default();
        let mut pos = 0;
        let mut msgs: Vec<Relayed> = Vec::new();
        while pos < src.len() {
            match codec::decode(&src[pos..], &limits) {
                Ok(Some((n, m))) => {
                    let rec = Recorded {
                        kind: m.kind.raw(),
                        stream_id: m.stream_id,
                        service_id: m.service_id.to_string(),
                        connection_id: m.connection_id,
                        payload_len: m.payload.len(),
                        ignorable: m.ignorable,
                    };
                    let stream = matches!(m.kind, Type::StreamStart | Type::StreamReset)
                        .then(|| (m.kind, m.service_id.to_string(), m.stream_id));
                    msgs.push((src.slice(pos..pos + n), Some(rec), stream));
                    pos += n;
                }
                Ok(None) => break,
                Err(e) => match e.skip() {
                    Some(n) => {
                        // Relay it unchanged: the service does not parse payloads.
                        msgs.push((src.slice(pos..pos + n), None, None));
                        pos += n;
                    }
                    None => return Flow::Stop,
                },
            }
        }
        self.inbuf.extend_from_slice(&src[pos..]);
        if msgs.is_empty() {
            return Flow::Go;
        }
        {
            let mut st = self.shared.lock();
            let record = st.record;
            let d = idx(self.mode);
            st.stats.messages[d] += msgs.len() as u64;
            st.stats.bytes[d] += msgs.iter().map(|m| m.0.len() as u64).sum::<u64>();
            if other.is_none() {
                st.stats.dropped += msgs.len() as u64;
            }
            if let Some(ts) = st.tunnels.get_mut(&self.tunnel) {
                for (_, rec, stream) in &mut msgs {
                    if let Some((kind, service, id)) = stream.take() {
                        ts.streams.retain(|(s, _)| *s != service);
                        if kind == Type::StreamStart {
                            ts.streams.push((service, id));
                        }
                    }
                    if record {
                        if let Some(r) = rec.take() {
                            ts.slots[d].recorded.push(r);
                        }
                    }
                }
                *other = ts.slots[1 - d].peer.clone();
            }
            self.shared.cv.notify_all();
        }
        if let Some(o) = other {
            for (bytes, _, _) in msgs {
                o.queued.fetch_add(bytes.len(), Ordering::SeqCst);
                if o.data.send(bytes).is_err() {
                    break;
                }
            }
        }
        Flow::Go
    }

    /// Deregisters, and sends STREAM_RESET for the tunnel's streams to the other peer.
    fn leave(&self) {
        let mut st = self.shared.lock();
        let Some(ts) = st.tunnels.get_mut(&self.tunnel) else {
            return;
        };
        let slot = &mut ts.slots[idx(self.mode)];
        if slot.peer.as_ref().map(|p| p.id) != Some(self.handle.id) {
            return; // replaced: the new connection carries on
        }
        slot.peer = None;
        let streams = std::mem::take(&mut ts.streams);
        if let Some(o) = &ts.slots[1 - idx(self.mode)].peer {
            for (service, id) in streams {
                let mut m = TunnelMessage::new(Type::StreamReset);
                m.stream_id = id;
                m.service_id = &service;
                let mut buf = Vec::new();
                if codec::encode(&m, &mut buf).is_ok() {
                    o.queued.fetch_add(buf.len(), Ordering::SeqCst);
                    let _ = o.data.send(Bytes::from(buf));
                }
            }
        }
        self.shared.cv.notify_all();
    }
}

fn channel_id() -> String {
    let t = super::certs::random_token();
    format!(
        "{}-{}-{}-{}-{}",
        &t[0..8],
        &t[8..12],
        &t[12..16],
        &t[16..20],
        &t[20..32]
    )
}
