//! The sans-I/O protocol state machine: every protocol decision lives here.
//!
//! A [`Session`] takes one [`Input`] at a time (a tunnel message, a local accept, connect
//! or close, the WebSocket opening or going away) and appends [`Output`]s (send this
//! control message, listen, connect, deliver this DATA payload, close that local
//! connection). It owns stream ids, service ids, connection ids, V1/V2's one connection
//! per service, V3's simultaneous connections and every reset rule. It does no I/O, reads
//! no clock and never blocks, so it is tested message by message without sockets.
//!
//! Local connections are named by [`LocalId`]s. The session allocates ids for the
//! connections it asks for (destination connects); the local thread allocates ids for
//! accepted connections from the upper half of the range ([`ACCEPTED_ID_BASE`]).

use crate::config::{ClientType, Mapping, Mode, Target};
use crate::logging::peer_log;
use crate::logging::Noise;
use crate::protocol::{codec, Message, Type, Version};
use log::Level;
use std::collections::{HashMap, HashSet};
use std::fmt;

mod destination;
mod services;
mod source;
#[cfg(test)]
mod tests;

/// Names one local TCP (or Unix) connection for the lifetime of the process.
pub type LocalId = u64;

/// How long a V1/V2 source holds a new client while the service's one connection is
/// still active, before refusing it: long enough for the end of a connection its client
/// just closed to be seen, short enough that a second client is told no quickly.
pub const HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// Ids at or above this are allocated by the local thread for accepted connections.
pub const ACCEPTED_ID_BASE: LocalId = 1 << 63;

/// The number a log line shows for a local connection: accepted ones count from 1 as
/// well (a process either accepts, as a source, or connects, as a destination).
pub(crate) fn shown(id: LocalId) -> LocalId {
    id.checked_sub(ACCEPTED_ID_BASE).unwrap_or(id)
}

/// One event for the session.
#[derive(Debug)]
pub enum Input<'a, 'm> {
    /// A WebSocket session is open with the negotiated subprotocol version.
    Opened(Version),
    /// A tunnel message arrived.
    Message(&'a Message<'m>),
    /// Source: a client connected to the listener of service index `service`.
    Accepted { local: LocalId, service: usize },
    /// Destination: the connection to the target is up.
    Connected { local: LocalId },
    /// Destination: the target could not be reached after the retries.
    ConnectFailed { local: LocalId },
    /// The local peer closed the connection (EOF) or it failed.
    LocalClosed { local: LocalId },
    /// Source: a connection held by [`Output::Hold`] waited [`HOLD`] for its turn.
    HoldExpired { local: LocalId },
    /// The WebSocket session ended (closed or lost); every stream is gone.
    Lost,
}

/// A control message the session wants sent (DATA goes through [`Session::data_route`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub kind: Type,
    pub stream_id: i32,
    pub service_id: String,
    pub connection_id: u32,
}

impl Control {
    /// Appends the framed message to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), codec::CodecError> {
        let mut m = Message::new(self.kind);
        m.stream_id = self.stream_id;
        m.service_id = &self.service_id;
        m.connection_id = self.connection_id;
        codec::encode(&m, out)
    }
}

/// What the session asks the I/O threads to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this control message on the tunnel.
    Send(Control),
    /// Source: listen for service index `service` (once per process; listeners survive
    /// reconnects).
    Listen {
        service: usize,
        service_id: String,
        port: u16,
    },
    /// Destination: open `local` to `target`, with the configured retries.
    Connect {
        local: LocalId,
        service: usize,
        target: Target,
    },
    /// Write the payload of the DATA message being handled to `local`.
    Deliver { local: LocalId },
    /// Close `local` after writing what is queued for it.
    Close { local: LocalId },
    /// Close `local` at once: a refused connection (the session logged why).
    Refuse { local: LocalId },
    /// Source, V1/V2: keep `local` open but unread until [`Output::Release`] or
    /// [`Output::Refuse`]; report [`Input::HoldExpired`] after [`HOLD`].
    Hold { local: LocalId },
    /// Start reading a held connection: its stream has started.
    Release { local: LocalId },
    /// The configuration cannot work with this tunnel: stop (exit code 2).
    Fatal(SessionError),
}

/// Why the session cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// SERVICE_IDS announced a set the mapping does not match.
    ServiceMismatch {
        configured: Vec<String>,
        announced: Vec<String>,
    },
    /// Destination: an announced service has no target in the configuration.
    MissingTarget(String),
    /// Source with -y V1 on a tunnel with several services: V1 messages name no
    /// service, so the destination could not tell the streams apart.
    V1SeveralServices(Vec<String>),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v.iter()
                    .map(|s| {
                        if s.is_empty() {
                            "(unnamed)".to_string()
                        } else {
                            printable_id(s)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        match self {
            SessionError::ServiceMismatch {
                configured,
                announced,
            } => write!(
                f,
                "the tunnel's services {} do not match the configured services {}; \
                 map exactly the tunnel's services with -s/-d ID=... or --config-dir",
                list(announced),
                list(configured)
            ),
            SessionError::V1SeveralServices(ids) => write!(
                f,
                "-y V1 cannot serve a tunnel with several services ({}): V1 messages carry no \
                 service id; use -y V2, or leave -y out (V3)",
                list(ids)
            ),
            SessionError::MissingTarget(id) => {
                let id = printable_id(id);
                write!(
                    f,
                    "the tunnel announces service {id} but no destination is configured for it; \
                 add {id}=host:port to -d or --config-dir"
                )
            }
        }
    }
}

/// The form of one stream's messages: which optional fields they carry. A destination
/// copies its source's form from the STREAM_START (or CONNECTION_START) that opened the
/// stream, so it answers every peer in the form that peer speaks: the reference's V3
/// source on a tunnel without services, for one, sends connection ids and no service id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Form {
    /// Messages name the service (V2 and V3; moot on a tunnel without services).
    service_ids: bool,
    /// Messages carry connection ids, and a stream carries several connections (V3).
    connection_ids: bool,
}

impl Form {
    const V1: Form = Form {
        service_ids: false,
        connection_ids: false,
    };
    const V2: Form = Form {
        service_ids: true,
        connection_ids: false,
    };
    const V3: Form = Form {
        service_ids: true,
        connection_ids: true,
    };

    /// The form of a start message from the peer.
    fn of(m: &Message<'_>) -> Form {
        Form {
            service_ids: !m.service_id.is_empty(),
            connection_ids: m.connection_id != 0,
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.connection_ids, self.service_ids) {
            (true, true) => "V3 messages",
            (true, false) => "V3 messages without service id",
            (false, true) => "V2 messages",
            (false, false) => "V1 messages",
        })
    }
}

#[derive(Debug)]
struct Service {
    /// Id as announced by the service ("" on tunnels without services).
    id: String,
    port: u16,
    target: Option<Target>,
    /// Current stream, 0 = none.
    stream_id: i32,
    /// Form of the current stream's messages.
    form: Form,
    /// Source V3: next connection id to hand out.
    next_connection_id: u32,
    /// Open local connections of the current stream: connection id → local id.
    conns: HashMap<u32, LocalId>,
    /// Source: connections (keys of `conns`) the peer has sent no DATA for yet. A reset
    /// of one of them is worth a line: the destination could not reach its target.
    /// Empty in steady state, so DATA pays one `is_empty` for it.
    unanswered: HashSet<u32>,
}

#[derive(Debug)]
struct Conn {
    service: usize,
    stream_id: i32,
    connection_id: u32,
}

/// The protocol state of one proxy process, across WebSocket sessions.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    client_type: ClientType,
    mappings: Vec<Mapping>,
    config_dir: Vec<(String, String)>,
    /// Default host for a bare destination port (`-b`), else 127.0.0.1.
    default_host: String,
    max_connections: usize,
    services: Vec<Service>,
    /// The service set has been settled (first SERVICE_IDS, or V1 without it).
    established: bool,
    /// The current WebSocket session may carry streams.
    ready: bool,
    version: Option<Version>,
    /// Stream ids keep increasing for the whole process, so an id from an old session
    /// never matches a new stream.
    next_stream_id: i32,
    next_local_id: LocalId,
    conns: HashMap<LocalId, Conn>,
    /// Source, V1/V2: accepted clients waiting for their service's connection to end,
    /// oldest first: (local id, service index).
    held: Vec<(LocalId, usize)>,
}

impl Session {
    pub fn new(
        mode: Mode,
        client_type: ClientType,
        mappings: Vec<Mapping>,
        config_dir: Vec<(String, String)>,
        default_host: Option<String>,
        max_connections: usize,
    ) -> Session {
        Session {
            mode,
            client_type,
            mappings,
            config_dir,
            default_host: default_host.unwrap_or_else(|| "127.0.0.1".into()),
            max_connections: max_connections.max(1),
            services: Vec::new(),
            established: false,
            ready: false,
            version: None,
            next_stream_id: 1,
            next_local_id: 1,
            conns: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// True while the current WebSocket session can carry new connections.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready
    }

    /// Negotiated version of the current WebSocket session.
    pub(crate) fn version(&self) -> Option<Version> {
        self.version
    }

    /// Service ids in index order (after SERVICE_IDS).
    pub(crate) fn service_ids(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| s.id.as_str())
    }

    /// Number of open local connections per service index.
    pub(crate) fn connection_counts(&self) -> Vec<usize> {
        self.services.iter().map(|s| s.conns.len()).collect()
    }

    /// Header fields for DATA read from `local`: (stream id, service id, connection id),
    /// in the form the stream speaks. None when the connection no longer has a stream
    /// (its data is dropped).
    pub fn data_route(&self, local: LocalId) -> Option<(i32, &str, u32)> {
        let c = self.conns.get(&local)?;
        let s = &self.services[c.service];
        if s.stream_id != c.stream_id || !self.ready {
            return None;
        }
        let service_id = if s.form.service_ids {
            s.id.as_str()
        } else {
            ""
        };
        let connection_id = if s.form.connection_ids {
            c.connection_id
        } else {
            0
        };
        Some((c.stream_id, service_id, connection_id))
    }

    pub fn handle(&mut self, input: Input<'_, '_>, out: &mut Vec<Output>) {
        match input {
            Input::Opened(v) => self.on_opened(v, out),
            Input::Lost => self.on_lost(out),
            Input::Message(m) => self.on_message(m, out),
            Input::Accepted { local, service } => self.on_accepted(local, service, out),
            Input::Connected { local } => {
                if let Some(c) = self.conns.get(&local) {
                    log::debug!(
                        "connection {} to service {} is up",
                        shown(local),
                        self.services[c.service].id
                    );
                }
            }
            Input::ConnectFailed { local } => self.on_connect_failed(local, out),
            Input::LocalClosed { local } => self.on_local_closed(local, out),
            Input::HoldExpired { local } => self.on_hold_expired(local, out),
        }
    }

    fn on_opened(&mut self, v: Version, out: &mut Vec<Output>) {
        self.version = Some(v);
        self.ready = false;
        if v == Version::V1 {
            // A V1 service sends no SERVICE_IDS: the single mapping is the service.
            self.on_service_ids(&[], out);
        }
    }

    fn on_lost(&mut self, out: &mut Vec<Output>) {
        self.ready = false;
        self.version = None;
        self.close_all(out);
    }

    fn close_all(&mut self, out: &mut Vec<Output>) {
        let mut locals: Vec<LocalId> = self.conns.keys().copied().collect();
        locals.sort_unstable();
        for local in locals {
            out.push(Output::Close { local });
        }
        self.conns.clear();
        for s in &mut self.services {
            s.stream_id = 0;
            s.conns.clear();
            s.unanswered.clear();
        }
        for (local, _) in std::mem::take(&mut self.held) {
            out.push(Output::Refuse { local });
        }
    }

    fn close_service(&mut self, idx: usize, out: &mut Vec<Output>) {
        let s = &mut self.services[idx];
        let mut locals: Vec<LocalId> = s.conns.values().copied().collect();
        locals.sort_unstable();
        s.conns.clear();
        s.unanswered.clear();
        s.stream_id = 0;
        for local in locals {
            self.conns.remove(&local);
            out.push(Output::Close { local });
        }
    }

    fn alloc_stream_id(&mut self) -> i32 {
        let id = self.next_stream_id;
        self.next_stream_id = if id == i32::MAX { 1 } else { id + 1 };
        id
    }

    fn on_message(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
        match m.kind {
            Type::ServiceIds => {
                if self.version == Some(Version::V1) && self.ready {
                    log::debug!("ignored SERVICE_IDS on a V1 session");
                    return;
                }
                self.on_service_ids(&m.available_service_ids, out)
            }
            Type::SessionReset => {
                log::info!("the service reset the session; closing every connection");
                self.close_all(out);
            }
            Type::Unknown => peer_log!(
                Noise::UnknownType,
                Level::Warn,
                "dropped a message of type 0 (UNKNOWN)"
            ),
            Type::Other(n) => {
                if m.ignorable {
                    peer_log!(
                        Noise::UnknownType,
                        Level::Debug,
                        "dropped an ignorable message of unknown type {n}"
                    );
                } else {
                    peer_log!(
                        Noise::UnknownType,
                        Level::Warn,
                        "dropped a message of unknown type {n}"
                    );
                }
            }
            _ if !self.ready => peer_log!(
                Noise::Early,
                Level::Warn,
                "dropped a {:?} message that arrived before SERVICE_IDS",
                m.kind
            ),
            Type::Data => self.on_data(m, out),
            Type::StreamStart | Type::ConnectionStart if self.mode == Mode::Source => peer_log!(
                Noise::BadStart,
                Level::Warn,
                "dropped a {:?} message: a source never accepts streams",
                m.kind
            ),
            Type::StreamStart => self.on_stream_start(m, out),
            Type::ConnectionStart => self.on_connection_start(m, out),
            Type::StreamReset => self.on_stream_reset(m, out),
            Type::ConnectionReset => self.on_connection_reset(m, out),
        }
    }

    fn on_data(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
        let Some(idx) = self.service_for(m) else {
            peer_log!(
                Noise::Stray,
                Level::Debug,
                "dropped DATA for unknown service {:?}",
                m.service_id
            );
            return;
        };
        let s = &mut self.services[idx];
        if s.stream_id == 0 || m.stream_id != s.stream_id {
            peer_log!(
                Noise::Stray,
                Level::Debug,
                "dropped stale DATA for stream {}",
                m.stream_id
            );
            return;
        }
        let key = s.key(m);
        if !s.unanswered.is_empty() {
            s.unanswered.remove(&key);
        }
        match s.conns.get(&key) {
            Some(&local) => out.push(Output::Deliver { local }),
            None => peer_log!(
                Noise::Stray,
                Level::Debug,
                "dropped DATA for closed connection {}",
                m.connection_id
            ),
        }
    }

    fn on_stream_reset(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
        let Some(idx) = self.service_for(m) else {
            return;
        };
        let s = &self.services[idx];
        if s.stream_id == 0 || s.stream_id != m.stream_id {
            peer_log!(
                Noise::Stray,
                Level::Debug,
                "ignored STREAM_RESET for stream {}",
                m.stream_id
            );
            return;
        }
        log::debug!(
            "peer reset stream {} of service {}",
            m.stream_id,
            describe_id(&s.id)
        );
        let mut unanswered: Vec<LocalId> = s
            .unanswered
            .iter()
            .filter_map(|k| s.conns.get(k).copied())
            .collect();
        unanswered.sort_unstable();
        for local in unanswered {
            self.reset_before_data(idx, local);
        }
        self.close_service(idx, out);
        // A V1/V2 source's connection ended: a held client gets its turn.
        self.start_held(idx, out);
    }

    fn on_connection_reset(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
        let Some(idx) = self.service_for(m) else {
            return;
        };
        let s = &mut self.services[idx];
        if s.stream_id == 0 || s.stream_id != m.stream_id {
            peer_log!(
                Noise::Stray,
                Level::Debug,
                "ignored CONNECTION_RESET for stream {}",
                m.stream_id
            );
            return;
        }
        let key = s.key(m);
        let unanswered = s.unanswered.remove(&key);
        if let Some(local) = s.conns.remove(&key) {
            if unanswered {
                self.reset_before_data(idx, local);
            }
            self.conns.remove(&local);
            out.push(Output::Close { local });
        }
    }

    /// Says why a source's connection died when the peer resets it before sending any
    /// data, at the default level: without this a client sees its connection close (or
    /// ssh hangs) and the source's log says only "closed". The destination resets a
    /// connection it could not open (target refused, down, or not resolvable) after its
    /// retries. One line per connection, limited with the other peer-caused lines.
    fn reset_before_data(&self, idx: usize, local: LocalId) {
        let name = describe_id(&self.services[idx].id);
        peer_log!(
            Noise::ResetBeforeData,
            Level::Warn,
            "connection {} ({name}) reset by the destination before any data: is its \
             target up? (see the destination's log)",
            shown(local)
        );
    }
}

impl Service {
    /// The key of the connection a message of the current stream is for: its connection
    /// id when the stream has them (0 meaning 1, as the reference reads it), else 0.
    fn key(&self, m: &Message<'_>) -> u32 {
        if self.form.connection_ids {
            m.connection_id.max(1)
        } else {
            0
        }
    }
}

/// The reset that ends connection `connection_id` of stream `stream_id`, in the
/// service's form: CONNECTION_RESET with connection ids, STREAM_RESET without.
fn reset_for(s: &Service, stream_id: i32, connection_id: u32) -> Control {
    let service_id = if s.form.service_ids {
        s.id.clone()
    } else {
        String::new()
    };
    if s.form.connection_ids {
        Control {
            kind: Type::ConnectionReset,
            stream_id,
            service_id,
            connection_id,
        }
    } else {
        Control {
            kind: Type::StreamReset,
            stream_id,
            service_id,
            connection_id: 0,
        }
    }
}

fn describe_id(id: &str) -> &str {
    if id.is_empty() {
        "(unnamed)"
    } else {
        id
    }
}

/// The announced services for a log line.
pub(crate) fn describe_ids(ids: &[String]) -> String {
    if ids.iter().all(|i| i.is_empty()) {
        "(none: single unnamed service)".into()
    } else {
        ids.iter()
            .map(|i| printable_id(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A service id as the console shows it: the service's bytes, control characters (and
/// quotes and backslashes) escaped, so an id cannot forge or garble a log line.
pub(crate) fn printable_id(id: &str) -> String {
    id.escape_debug().to_string()
}
