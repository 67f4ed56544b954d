//! A scripted peer: a bare tunnel client that sends exactly the messages a test gives
//! it and hands back what it receives, for playing a peer we did not write (the
//! reference 3.3.1's message sequences) or a hostile one (floods, bad starts) against
//! a real proxy through the testbed.
//!
//! It uses the proxy's own connect code, then reads and writes blocking with a timeout
//! on every read: a proxy that never answers fails the test instead of hanging it.

use super::Testbed;
use crate::config::{Mode, Secret};
use crate::protocol::codec::{self, Limits};
use crate::protocol::{Message, Type, Version, MAX_WS_FRAME};
pub use crate::tunnel::connect::ConnectError;
use crate::tunnel::connect::{self, Tls};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::WebSocket;

type Ws = WebSocket<Tls>;
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message as WsMessage};

/// A received tunnel message, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub kind: Type,
    pub stream_id: i32,
    pub service_id: String,
    pub connection_id: u32,
    pub ignorable: bool,
    pub payload: Vec<u8>,
    pub service_ids: Vec<String>,
}

impl Received {
    fn of(m: &Message<'_>) -> Received {
        Received {
            kind: m.kind,
            stream_id: m.stream_id,
            service_id: m.service_id.to_string(),
            connection_id: m.connection_id,
            ignorable: m.ignorable,
            payload: m.payload.to_vec(),
            service_ids: m
                .available_service_ids
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// One connection to the testbed as a source or destination.
pub struct Scripted {
    ws: Ws,
    pub version: Version,
    buf: Vec<u8>,
    /// Encoded messages not yet sent (see [`Scripted::queue`]).
    out: Vec<u8>,
}

impl Scripted {
    /// Connects as `mode` with `token`, offering `subprotocol`.
    pub fn connect(
        tb: &Testbed,
        token: &str,
        mode: Mode,
        subprotocol: &str,
    ) -> Result<Scripted, String> {
        Scripted::connect_with(tb, token, mode, None, subprotocol).map_err(|e| e.to_string())
    }

    /// [`Scripted::connect`] with a client token, returning the proxy's own error (for
    /// tests of the service double's refusals).
    pub fn connect_with(
        tb: &Testbed,
        token: &str,
        mode: Mode,
        client_token: Option<&str>,
        subprotocol: &str,
    ) -> Result<Scripted, ConnectError> {
        let tls = connect::tls_connector(None, Some(&tb.ca_dir()), false)
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let token = Secret::new(token);
        let client_token = client_token.map(Secret::new);
        let target = connect::Target {
            host: "localhost",
            port: tb.port(),
            mode,
            access_token: &token,
            client_token: client_token.as_ref(),
            subprotocol,
            tls: &tls,
            proxy: None,
            timeout: Duration::from_secs(30),
        };
        let mut opened = connect::connect(&target)?;
        let tcp = opened.tls.get_mut().tcp_mut();
        tcp.set_deadline(None);
        tcp.set_blocking(Duration::from_secs(30))
            .map_err(|e| ConnectError::Tcp(e.to_string()))?;
        let mut config = WebSocketConfig::default();
        config.max_frame_size = Some(1 << 20);
        config.max_message_size = Some(1 << 20);
        let ws =
            WebSocket::from_partially_read(opened.tls, opened.tail, Role::Client, Some(config));
        Ok(Scripted {
            ws,
            version: opened.version,
            buf: Vec::new(),
            out: Vec::new(),
        })
    }

    /// Sends one message as one binary frame.
    pub fn send(&mut self, m: &Message<'_>) -> Result<(), String> {
        self.queue(m)?;
        self.flush()
    }

    /// Adds a message to the next frame (several messages per frame, as the service
    /// may deliver them); a frame that would grow past the service's frame limit is
    /// sent first.
    pub fn queue(&mut self, m: &Message<'_>) -> Result<(), String> {
        let start = self.out.len();
        codec::encode(m, &mut self.out).map_err(|e| e.to_string())?;
        if self.out.len() > MAX_WS_FRAME {
            let rest = self.out.split_off(start);
            self.flush()?;
            self.out = rest;
        }
        Ok(())
    }

    /// Sends what [`Scripted::queue`] gathered as one binary frame.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let frame = Bytes::from(std::mem::take(&mut self.out));
        self.ws
            .send(WsMessage::Binary(frame))
            .map_err(|e| format!("send: {e}"))
    }

    /// The next tunnel message, waiting at most `timeout` in all.
    pub fn next(&mut self, timeout: Duration) -> Result<Received, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match codec::decode(&self.buf, &Limits::default()) {
                Ok(Some((n, m))) => {
                    let r = Received::of(&m);
                    self.buf.drain(..n);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable tunnel data: {e}")),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no tunnel message within {timeout:?}"));
            }
            let tcp = self.ws.get_ref().get_ref().tcp();
            tcp.set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.ws.read() {
                Ok(WsMessage::Binary(b)) => self.buf.extend_from_slice(&b),
                Ok(WsMessage::Close(f)) => return Err(format!("closed: {f:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next message that `keep` accepts; the others are dropped.
    pub fn next_where(
        &mut self,
        timeout: Duration,
        keep: impl Fn(&Received) -> bool,
    ) -> Result<Received, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.next(left)?;
            if keep(&m) {
                return Ok(m);
            }
        }
    }

    /// Waits for the SERVICE_IDS the testbed sends first on 2.0 and 3.0.
    pub fn service_ids(&mut self, timeout: Duration) -> Result<Vec<String>, String> {
        let m = self.next(timeout)?;
        if m.kind != Type::ServiceIds {
            return Err(format!("expected SERVICE_IDS first, got {m:?}"));
        }
        Ok(m.service_ids)
    }

    /// Sends a ping with `payload` and returns the pong's payload; tunnel data that
    /// arrives meanwhile is kept for [`Scripted::next`].
    pub fn ping(&mut self, payload: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        self.ws
            .send(WsMessage::Ping(Bytes::copy_from_slice(payload)))
            .map_err(|e| format!("send: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no pong within {timeout:?}"));
            }
            let tcp = self.ws.get_ref().get_ref().tcp();
            tcp.set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.ws.read() {
                Ok(WsMessage::Pong(p)) => return Ok(p.to_vec()),
                Ok(WsMessage::Binary(b)) => self.buf.extend_from_slice(&b),
                Ok(other) => return Err(format!("expected a pong, got {other:?}")),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Sends a WebSocket close frame.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// A message with the header fields a test names.
pub fn message<'a>(
    kind: Type,
    stream_id: i32,
    service_id: &'a str,
    connection_id: u32,
) -> Message<'a> {
    let mut m = Message::new(kind);
    m.stream_id = stream_id;
    m.service_id = service_id;
    m.connection_id = connection_id;
    m
}

/// DATA with a payload.
pub fn data<'a>(
    stream_id: i32,
    service_id: &'a str,
    connection_id: u32,
    payload: &'a [u8],
) -> Message<'a> {
    let mut m = message(Type::Data, stream_id, service_id, connection_id);
    m.payload = payload;
    m
}
