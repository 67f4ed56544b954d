//! One open WebSocket, served until it ends: the tunnel thread's data plane.
//!
//! Each wake-up does everything there is to do, then sleeps in `poll(2)` until the
//! socket, the wake fd or the next deadline (ping, dead peer, log summary) calls:
//! 1. take every queued local event while the outgoing wire has room, framing DATA
//!    and control messages into one batch (masked while copied, `ws.rs`);
//! 2. read every TLS record there is while the local side has room, turn frames into
//!    tunnel bytes and tunnel messages into session inputs (`session`), and hand DATA
//!    payloads to the local thread;
//! 3. hand the batch to TLS in one write and send the records in one `send`
//!    (`wire.rs`).
//!
//! Both directions pause at a high-water mark and resume at a low-water mark: the local
//! thread stops reading its sockets while `to_tunnel` is high and is woken when it is low
//! again; this thread stops taking local events while too much ciphertext waits for the
//! socket, and stops reading the WebSocket while `to_local` is high (the local thread
//! wakes it when it is low). A wake-up therefore moves a batch, not a message.
//!
//! What the service's frames make us send (pongs, CONNECTION_RESETs for starts we refuse,
//! TLS's own answers) is bounded too: the WebSocket is not read while more than
//! [`READ_HIGH`] bytes wait to go out, only the latest of several waiting pings is
//! answered (RFC 6455 §5.5.3 allows it), and a peer that reads none of what waits for
//! two ping periods counts as gone. A peer that sends without reading therefore fills
//! its own socket, not our memory.

use super::connect::{Opened, Tls};
use super::reconnect::{Beat, KeepAlive};
use super::ws::{self, Incoming};
use super::{epoch_ms, End, Phase, TunnelThread};
use crate::link::Bytes;
use crate::link::{Event, ToLocal, ToTunnel};
use crate::logging::{self, Noise};
use crate::protocol::codec;
use crate::protocol::{Message as TunnelMessage, Version, DATA_HEADROOM};
use crate::session::{Input as SessionInput, Output};
use crate::sys::{Interest, PollSet, Recv};
use crate::Exit;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A batch of frames goes to TLS once it is this large (and at the end of every round).
const SEAL_AT: usize = 128 * 1024;
/// Ciphertext waiting for the socket at which we stop taking local events...
const WIRE_HIGH: usize = 512 * 1024;
/// ... and at which we take them again.
const WIRE_LOW: usize = 128 * 1024;
/// Bytes waiting to go out (ciphertext and frames not yet sealed) at which we stop
/// reading the WebSocket: above what local events alone leave there (`WIRE_HIGH` plus a
/// batch), so a slow upload does not stall the download.
const READ_HIGH: usize = 1024 * 1024;
/// How long a SIGTERM may spend sending the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The open WebSocket: TLS, the frame parser and both buffers.
pub(super) struct Link {
    tls: Tls,
    fd: RawFd,
    reader: ws::Reader,
    /// Decrypted bytes not yet parsed: `rbuf[..rlen]`. Allocated once.
    rbuf: Vec<u8>,
    rlen: usize,
    /// Tunnel bytes of a message that frame or read boundaries cut.
    partial: Vec<u8>,
    /// Masked frames waiting for one TLS write.
    batch: Vec<u8>,
    /// A read may find something: poll said readable, and no read since ended in
    /// WouldBlock (TLS and the wire buffer can hold data the socket no longer shows).
    maybe_readable: bool,
    /// We stopped taking local events (the wire was high) and wait for it to be low.
    wire_full: bool,
    /// The service closed the connection; what it sent before is still to be handled.
    eof: bool,
    /// The payload of the latest ping not yet answered (one pong answers them all).
    pong: Option<Vec<u8>>,
    /// `partial` holds whole tunnel messages left unhandled while too much waited to go
    /// out: they come before anything read later.
    parse_pending: bool,
    /// `Stream::sent` when the keep-alive last heard of it.
    sent_seen: u64,
    /// The socket took everything at the last send, or poll said it has room since.
    writable: bool,
    mask_state: u64,
}

impl Link {
    fn new(opened: Opened, read_buffer: usize, max_frame: usize, seed: u64) -> io::Result<Link> {
        let Opened { mut tls, tail, .. } = opened;
        tls.get_mut().tcp_mut().start_data()?;
        let fd = tls.get_ref().tcp().as_raw_fd();
        let mut rbuf = vec![0u8; read_buffer.max(tail.len())];
        rbuf[..tail.len()].copy_from_slice(&tail);
        Ok(Link {
            tls,
            fd,
            reader: ws::Reader::new(max_frame),
            rlen: tail.len(),
            rbuf,
            partial: Vec::new(),
            batch: Vec::with_capacity(SEAL_AT + 64 * 1024),
            maybe_readable: true,
            wire_full: false,
            eof: false,
            pong: None,
            parse_pending: false,
            sent_seen: 0,
            writable: true,
            mask_state: seed | 1,
        })
    }

    /// A fresh masking key (xorshift: keys must vary, they need not be secret; RFC 6455
    /// asks for unpredictability against caching intermediaries, not cryptography).
    fn key(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_ne_bytes()
    }

    fn frame(&mut self, opcode: u8, parts: &[&[u8]]) {
        let key = self.key();
        ws::push_frame(&mut self.batch, opcode, parts, key);
    }

    /// Ciphertext waiting for the socket.
    fn wire(&self) -> usize {
        self.tls.get_ref().pending()
    }

    /// Too much waits to go out to read more of what the peer sends (see [`READ_HIGH`]).
    fn output_high(&self) -> bool {
        self.wire() + self.batch.len() >= READ_HIGH
    }

    /// Whether any byte left for the socket since the last call.
    fn moved(&mut self) -> bool {
        let sent = self.tls.get_ref().sent();
        let moved = sent != self.sent_seen;
        self.sent_seen = sent;
        moved
    }

    /// Hands the batch to TLS: its records land in the wire buffer.
    fn seal(&mut self) -> Result<(), End> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let r = self.tls.write_all(&self.batch);
        self.batch.clear();
        r.map_err(|e| End::Lost(format!("connection error: {e}")))
    }

    /// Seals the batch and sends what the socket takes, unless the socket was full at
    /// the last try and poll has not said it has room since. Returns whether all went.
    fn flush(&mut self) -> Result<bool, End> {
        self.seal()?;
        if self.wire() == 0 {
            return Ok(true);
        }
        if !self.writable {
            return Ok(false);
        }
        let all = self
            .tls
            .get_mut()
            .tcp_mut()
            .send()
            .map_err(|e| End::Lost(format!("connection error: {e}")))?;
        self.writable = all;
        Ok(all)
    }

    /// Reads decrypted bytes into the free part of `rbuf`. Ok(false) when nothing came.
    fn fill(&mut self) -> Result<bool, End> {
        let mut got = false;
        while self.rlen < self.rbuf.len() {
            match self.tls.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => {
                    // What came before the end (a close frame, say) is handled first;
                    // the end itself at the next round, without waiting for poll: a
                    // close_notify read together with data leaves the socket silent.
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.rlen += n;
                    got = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Lost(format!("connection error: {e}"))),
            }
        }
        // TLS may have had something to say back (an alert, a key update).
        if self.tls.get_ref().pending() > 0 {
            self.flush()?;
        }
        Ok(got)
    }
}

/// A frame event, owned, so the read buffer is free while it is handled.
enum Seen {
    /// This many payload bytes, where the event started in the read buffer.
    Data(usize),
    Text {
        first: bool,
    },
    Ping(Vec<u8>),
    Pong,
    Close(Option<(u16, String)>),
}

/// What one round of reading found.
enum Round {
    /// Keep reading.
    More,
    /// Stop for now (nothing more, or the local side is full).
    Done,
}

impl TunnelThread {
    /// Serves one open WebSocket until it ends. Also returns whether the session got
    /// ready (SERVICE_IDS), which resets the backoff.
    pub(super) fn serve(&mut self, opened: Opened) -> (End, bool) {
        let (version, channel_id) = (opened.version, opened.channel_id.clone());
        log::info!(
            "tunnel open ({version}, channel-id {})",
            channel_id.as_deref().unwrap_or("not given")
        );
        self.phase = Phase::Open {
            since: Instant::now(),
        };
        let max_frame = self.cfg.settings.ws_max_frame_size;
        let read_buffer = self.cfg.settings.ws_read_buffer_size;
        let seed = self.random();
        let mut ever_ready = false;
        let end = match Link::new(opened, read_buffer, max_frame, seed) {
            Ok(mut link) => self.serve_link(&mut link, version, &mut ever_ready),
            Err(e) => End::Lost(format!("connection error: {e}")),
        };
        // Ready and failed in the same read still counts as ready.
        ever_ready |= self.session.is_ready();
        self.shared.tunnel_ready.store(false, Ordering::SeqCst);
        let mut outs = std::mem::take(&mut self.outs);
        outs.clear();
        self.session.handle(SessionInput::Lost, &mut outs);
        let _ = self.apply(&mut outs, None, None);
        self.outs = outs;
        (end, ever_ready)
    }

    fn serve_link(&mut self, link: &mut Link, version: Version, ever_ready: &mut bool) -> End {
        let mut outs = std::mem::take(&mut self.outs);
        outs.clear();
        self.session
            .handle(SessionInput::Opened(version), &mut outs);
        self.publish_ready();
        let r = self.apply(&mut outs, Some(link), None);
        self.outs = outs;
        if let Err(e) = r {
            return e;
        }
        let waker = self.rx.waker().clone();
        let period = Duration::from_millis(self.cfg.settings.ws_ping_period_ms);
        let mut keepalive = KeepAlive::new(Instant::now(), period);
        let mut set = PollSet::new();
        loop {
            // 0. Main's requests, always.
            loop {
                match self.ctl.try_recv() {
                    Recv::Msg(ToTunnel::Status) => self.log_status(),
                    Recv::Msg(ToTunnel::Shutdown) | Recv::Closed => {
                        close_gracefully(link);
                        return End::Shutdown;
                    }
                    Recv::Msg(ToTunnel::Local(ev)) => {
                        if let Err(end) = self.local_event(ev, Some(link)) {
                            return end;
                        }
                    }
                    Recv::Empty => break,
                }
            }
            // 1. Local events, while the wire has room.
            while !link.wire_full {
                match self.rx.try_recv() {
                    Recv::Msg(ToTunnel::Local(ev)) => {
                        if let Err(end) = self.local_event(ev, Some(link)) {
                            return end;
                        }
                        if link.batch.len() >= SEAL_AT {
                            if let Err(end) = link.seal() {
                                return end;
                            }
                            if link.wire() >= WIRE_HIGH {
                                link.wire_full = true;
                            }
                        }
                    }
                    Recv::Msg(ToTunnel::Status) => self.log_status(),
                    Recv::Msg(ToTunnel::Shutdown) | Recv::Closed => {
                        close_gracefully(link);
                        return End::Shutdown;
                    }
                    Recv::Empty => break,
                }
            }
            *ever_ready |= self.publish_ready();

            // 2. Tunnel messages, while the local side has room and what they make us
            // send is not piling up.
            let mut can_read = self.may_read() && !link.output_high();
            while can_read && link.maybe_readable {
                match self.read_round(link, &mut keepalive) {
                    Ok(Round::More) => {}
                    Ok(Round::Done) => break,
                    Err(end) => return end,
                }
                can_read = self.may_read() && !link.output_high();
            }

            // 3. Pings and the dead-peer check.
            let now = Instant::now();
            if !can_read {
                // We are the ones not reading: silence is not evidence of a dead peer.
                keepalive.not_reading(now);
            }
            match keepalive.poll(now) {
                Beat::Ping => {
                    let payload = epoch_ms().to_string();
                    link.frame(ws::OP_PING, &[payload.as_bytes()]);
                }
                Beat::Dead(silent) => {
                    return End::Lost(format!(
                        "no answer from the service for {:.1} s",
                        silent.as_secs_f64()
                    ))
                }
                Beat::Stuck(stuck) => {
                    return End::Lost(format!(
                        "the service read nothing of what we sent for {:.1} s",
                        stuck.as_secs_f64()
                    ))
                }
                Beat::Idle => {}
            }
            if let Some(p) = link.pong.take() {
                link.frame(ws::OP_PONG, &[&p]);
            }

            // 4. One TLS write and one send for everything this round produced.
            let all_sent = match link.flush() {
                Ok(done) => done,
                Err(end) => return end,
            };
            let wire = link.wire();
            let moved = link.moved();
            keepalive.sent(Instant::now(), wire > 0, moved);
            if link.wire_full && wire <= WIRE_LOW {
                link.wire_full = false;
                // Events queued meanwhile: take them now rather than after a sleep.
                continue;
            }
            if wire >= WIRE_HIGH {
                link.wire_full = true;
            }

            set.clear();
            set.push(waker.fd(), Interest::READ);
            set.push(
                link.fd,
                Interest {
                    read: can_read,
                    write: !all_sent,
                },
            );
            let mut deadline = keepalive.deadline();
            if let Some(due) = logging::flush_noise() {
                deadline = deadline.min(due);
            }
            // While the wire is full, queued local events are no reason to stay awake:
            // only main's requests and the socket are.
            let idle = self.ctl.prepare_sleep() & (link.wire_full || self.rx.prepare_sleep());
            let timeout = if idle {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let polled = set.wait(Some(timeout));
            waker.settle();
            if let Err(e) = polled {
                return End::Lost(format!("poll failed: {e}"));
            }
            let r = set.ready(1);
            if r.read || r.hangup {
                link.maybe_readable = true;
                link.tls.get_mut().mark_readable();
            }
            link.writable |= r.write || r.hangup;
        }
    }

    /// Reads what TLS has (at most one read buffer) and handles every whole frame in it.
    fn read_round(&mut self, link: &mut Link, keepalive: &mut KeepAlive) -> Result<Round, End> {
        if link.parse_pending {
            // Messages held back while output was high come first.
            link.parse_pending = false;
            let mut partial = std::mem::take(&mut link.partial);
            let r = self.parse(&partial, link);
            if let Ok(used) = r {
                partial.drain(..used);
            }
            link.partial = partial;
            r?;
            if link.parse_pending || !self.may_read() {
                link.maybe_readable = true;
                return Ok(Round::Done);
            }
        }
        let got = link.fill()?;
        let mut pos = 0;
        let mut result = Ok(Round::More);
        loop {
            let at = pos;
            let event = match link.reader.next(&link.rbuf[at..link.rlen]) {
                Ok(Some((n, e))) => {
                    pos += n;
                    // Data is the start of `rbuf[at..pos]` (a header alone brings none):
                    // note its length, and let go of the borrow before the session
                    // (which frames into the link) runs.
                    match e {
                        Incoming::Data(d) => Seen::Data(d.len()),
                        Incoming::Text { first } => Seen::Text { first },
                        Incoming::Ping(p) => Seen::Ping(p.to_vec()),
                        Incoming::Pong(_) => Seen::Pong,
                        Incoming::Close(c) => Seen::Close(c),
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(End::Lost(e.to_string())),
            };
            keepalive.heard(Instant::now());
            match event {
                Seen::Data(0) => {}
                Seen::Data(len) => self.on_tunnel_bytes(link, at, len)?,
                Seen::Text { first } => {
                    if first {
                        logging::peer_log!(
                            Noise::Malformed,
                            log::Level::Warn,
                            "dropped a text frame: the service sends only binary frames"
                        );
                    }
                }
                // Answered once per round, with the latest payload.
                Seen::Ping(p) => link.pong = Some(p),
                Seen::Pong => {}
                Seen::Close(frame) => {
                    let said = match &frame {
                        Some((code, reason)) if !reason.is_empty() => {
                            format!("code {code}: {}", reason.escape_debug())
                        }
                        Some((code, _)) => format!("code {code}"),
                        None => "no code".to_string(),
                    };
                    // Answer the close, as RFC 6455 asks, and go.
                    let code = frame.as_ref().map(|(c, _)| *c);
                    link.frame(ws::OP_CLOSE, &[&code.unwrap_or(1000).to_be_bytes()]);
                    let _ = link.flush();
                    return Err(match code.and_then(passing_close) {
                        Some(what) => End::Lost(format!(
                            "the service closed the connection ({said}: {what}); reconnecting"
                        )),
                        None => {
                            log::info!("the service closed the tunnel ({said})");
                            End::Closed
                        }
                    });
                }
            }
            if !self.may_read() || link.output_high() {
                // Frames already read wait in the buffer: when the local side has room
                // again (or our output went out), handle them first, whatever the socket
                // says then (it may say nothing more: the service had sent everything).
                link.maybe_readable = true;
                result = Ok(Round::Done);
                break;
            }
        }
        link.rbuf.copy_within(pos..link.rlen, 0);
        link.rlen -= pos;
        if link.eof && pos == 0 {
            return Err(End::Lost("the connection closed".into()));
        }
        if !got && pos == 0 {
            return Ok(Round::Done);
        }
        result
    }

    /// Tunnel bytes `link.rbuf[start..start + len]`: whole messages are handled from
    /// there, a cut one is kept in `link.partial` until the rest arrives. (The buffer is
    /// moved out while the session runs, since its outputs frame into the link.)
    fn on_tunnel_bytes(&mut self, link: &mut Link, start: usize, len: usize) -> Result<(), End> {
        if link.partial.is_empty() {
            let bytes = std::mem::take(&mut link.rbuf);
            let r = self.parse(&bytes[start..start + len], link);
            if let Ok(used) = r {
                link.partial
                    .extend_from_slice(&bytes[start + used..start + len]);
            }
            link.rbuf = bytes;
            r.map(|_| ())
        } else {
            link.partial
                .extend_from_slice(&link.rbuf[start..start + len]);
            let mut partial = std::mem::take(&mut link.partial);
            let r = self.parse(&partial, link);
            if let Ok(used) = r {
                partial.drain(..used);
                link.partial = partial;
            }
            r.map(|_| ())
        }
    }

    /// Handles every whole tunnel message in `buf`; returns the bytes used. Stops early
    /// (with `link.parse_pending`) while too much waits to go out: one frame can hold
    /// thousands of messages that each make us answer.
    fn parse(&mut self, buf: &[u8], link: &mut Link) -> Result<usize, End> {
        let mut pos = 0;
        while pos < buf.len() {
            if link.output_high() {
                link.parse_pending = true;
                break;
            }
            match codec::decode(&buf[pos..], &self.codec_limits) {
                Ok(Some((n, m))) => {
                    pos += n;
                    let mut outs = std::mem::take(&mut self.outs);
                    outs.clear();
                    self.session.handle(SessionInput::Message(&m), &mut outs);
                    // Before any Listen goes out: the local thread refuses clients
                    // while the tunnel is not ready.
                    self.publish_ready();
                    let r = self.apply(&mut outs, Some(link), Some(&m));
                    self.outs = outs;
                    r?;
                }
                Ok(None) => break,
                Err(e) => match e.skip() {
                    Some(n) => {
                        logging::peer_log!(
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

    /// Handles one local event; `link` is `None` while no tunnel is open.
    pub(super) fn local_event(&mut self, ev: Event, link: Option<&mut Link>) -> Result<(), End> {
        let input = match ev {
            Event::Data { local, mut buf } => {
                let n = buf.len().saturating_sub(DATA_HEADROOM);
                self.release_to_tunnel(n);
                let (Some(link), Some((sid, service, cid))) =
                    (link, self.session.data_route(local))
                else {
                    return Ok(());
                };
                return match codec::encode_data_in_place(&mut buf, DATA_HEADROOM, sid, service, cid)
                {
                    Ok(start) => {
                        link.frame(ws::OP_BINARY, &[&buf[start..]]);
                        Ok(())
                    }
                    Err(e) => {
                        log::error!("cannot encode DATA: {e}");
                        Ok(())
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
                return Ok(());
            }
            Event::ListenFailed { error } => {
                log::error!("{error}");
                return Err(End::Fatal(Exit::GaveUp));
            }
        };
        let mut outs = std::mem::take(&mut self.outs);
        outs.clear();
        self.session.handle(input, &mut outs);
        let r = self.apply(&mut outs, link, None);
        self.outs = outs;
        r
    }

    /// `n` payload bytes left the local → tunnel queue: wake the local thread if it
    /// stopped reading for lack of room and the queue is now at its low-water mark.
    fn release_to_tunnel(&self, n: usize) {
        if self.shared.to_tunnel.release(n, self.limits.to_tunnel_max) {
            self.local.waker().wake();
        }
    }

    /// Carries out session outputs. `msg` is the tunnel message being handled (for
    /// Deliver).
    pub(super) fn apply(
        &mut self,
        outs: &mut Vec<Output>,
        mut link: Option<&mut Link>,
        msg: Option<&TunnelMessage<'_>>,
    ) -> Result<(), End> {
        for o in outs.drain(..) {
            match o {
                Output::Send(c) => {
                    let Some(link) = link.as_deref_mut() else {
                        continue;
                    };
                    let mut buf = Vec::with_capacity(64);
                    if let Err(e) = c.encode(&mut buf) {
                        log::error!("cannot encode {:?}: {e}", c.kind);
                        continue;
                    }
                    link.frame(ws::OP_BINARY, &[&buf]);
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
                    let Some(m) = msg else { continue };
                    if m.payload.is_empty() {
                        continue;
                    }
                    let data = Bytes::copy_from_slice(m.payload);
                    self.shared.to_local.add(data.len());
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
        Ok(())
    }
}

/// Close codes that end one connection, not the tunnel: the service going away or
/// failing for a while. The proxy reconnects after them (with backoff); any other close
/// is the service closing the tunnel (exit 0, as the reference does for every close).
fn passing_close(code: u16) -> Option<&'static str> {
    match code {
        1001 => Some("going away"),
        1011 => Some("server error"),
        1012 => Some("service restart"),
        1013 => Some("try again later"),
        1014 => Some("bad gateway"),
        _ => None,
    }
}

/// Sends a close frame (after what is queued) and gives it CLOSE_TIMEOUT to leave.
fn close_gracefully(link: &mut Link) {
    let mut reason = 1000u16.to_be_bytes().to_vec();
    reason.extend_from_slice(b"local proxy stopping");
    link.frame(ws::OP_CLOSE, &[&reason]);
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut set = PollSet::new();
    loop {
        match link.flush() {
            Ok(false) => {}
            _ => return,
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        set.clear();
        set.push(link.fd, Interest::WRITE);
        if set.wait(Some(deadline - now)).is_err() {
            return;
        }
        link.writable = true;
    }
}
