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

use crate::config::{parse_target, ClientType, Mapping, Mode, Target};
use crate::logging::Noise;
use crate::peer_log;
use crate::protocol::{codec, Message, Type, Version};
use log::Level;
use std::collections::HashMap;
use std::fmt;

/// Names one local TCP (or Unix) connection for the lifetime of the process.
pub type LocalId = u64;

/// Ids at or above this are allocated by the local thread for accepted connections.
pub const ACCEPTED_ID_BASE: LocalId = 1 << 63;

/// The number a log line shows for a local connection: accepted ones count from 1 as
/// well (a process either accepts, as a source, or connects, as a destination).
pub fn shown(id: LocalId) -> LocalId {
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
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), codec::CodecError> {
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
                            "(unnamed)"
                        } else {
                            s.as_str()
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
            SessionError::MissingTarget(id) => write!(
                f,
                "the tunnel announces service {id} but no destination is configured for it; \
                 add {id}=host:port to -d or --config-dir"
            ),
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
        }
    }

    /// True while the current WebSocket session can carry new connections.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Negotiated version of the current WebSocket session.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Service ids in index order (after SERVICE_IDS).
    pub fn service_ids(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| s.id.as_str())
    }

    /// Number of open local connections per service index.
    pub fn connection_counts(&self) -> Vec<usize> {
        self.services.iter().map(|s| s.conns.len()).collect()
    }

    /// Service index of an open local connection.
    pub fn service_of(&self, local: LocalId) -> Option<usize> {
        self.conns.get(&local).map(|c| c.service)
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
        }
    }

    fn close_service(&mut self, idx: usize, out: &mut Vec<Output>) {
        let s = &mut self.services[idx];
        let mut locals: Vec<LocalId> = s.conns.values().copied().collect();
        locals.sort_unstable();
        s.conns.clear();
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

    fn configured_ids(&self) -> Vec<String> {
        if self.mappings.is_empty() {
            let mut v: Vec<String> = self.config_dir.iter().map(|(k, _)| k.clone()).collect();
            v.dedup();
            v
        } else {
            self.mappings
                .iter()
                .map(|m| m.service_id().to_string())
                .collect()
        }
    }

    fn on_service_ids(&mut self, announced_raw: &[&str], out: &mut Vec<Output>) {
        let mut announced: Vec<String> = Vec::new();
        for id in announced_raw {
            if announced.iter().any(|a| a == id) {
                log::warn!("the service announced service id {id} twice; using it once");
            } else {
                announced.push(id.to_string());
            }
        }
        if self.established {
            let current: Vec<String> = self.services.iter().map(|s| s.id.clone()).collect();
            if self.ready {
                if !same_set(&current, &announced) {
                    log::warn!(
                        "ignored SERVICE_IDS repeated mid-session with a different set ({})",
                        announced.join(",")
                    );
                }
                return;
            }
            // First SERVICE_IDS of a reconnected session: the tunnel must still be the same.
            let unnamed_ok = announced.is_empty() && current.len() == 1 && current[0].is_empty();
            if !same_set(&current, &announced) && !unnamed_ok {
                out.push(Output::Fatal(SessionError::ServiceMismatch {
                    configured: current,
                    announced,
                }));
                return;
            }
            self.ready = true;
            return;
        }
        match self.build_services(&announced) {
            Ok(services) => {
                self.services = services;
                self.established = true;
                self.ready = true;
                if self.mode == Mode::Source {
                    for (i, s) in self.services.iter().enumerate() {
                        out.push(Output::Listen {
                            service: i,
                            service_id: s.id.clone(),
                            port: s.port,
                        });
                    }
                }
            }
            Err(e) => out.push(Output::Fatal(e)),
        }
    }

    /// Applies the reference's rules: a single unnamed mapping adopts the one announced
    /// id; named mappings must equal the announced set; with no mapping the ids are
    /// looked up in --config-dir (a source gets an OS-assigned port for missing ones).
    fn build_services(&self, announced: &[String]) -> Result<Vec<Service>, SessionError> {
        let mismatch = || SessionError::ServiceMismatch {
            configured: self.configured_ids(),
            announced: announced.to_vec(),
        };
        if self.mode == Mode::Source && self.client_type == ClientType::V1 && announced.len() > 1 {
            return Err(SessionError::V1SeveralServices(announced.to_vec()));
        }
        let mut pairs: Vec<(String, u16, Option<Target>)> = Vec::new();
        if self.mappings.is_empty() {
            for id in announced {
                let raw = self
                    .config_dir
                    .iter()
                    .find(|(k, _)| k == id)
                    .map(|(_, v)| v.as_str());
                match (self.mode, raw) {
                    (Mode::Source, raw) => {
                        let port = match raw.map(str::parse::<u16>) {
                            Some(Ok(p)) => p,
                            Some(Err(_)) => {
                                log::warn!("--config-dir: service {id} has no valid port; letting the system choose one");
                                0
                            }
                            None => 0,
                        };
                        pairs.push((id.clone(), port, None));
                    }
                    (Mode::Destination, Some(v)) => {
                        let target = parse_target(v, &self.default_host)
                            .map_err(|_| SessionError::MissingTarget(id.clone()))?;
                        pairs.push((id.clone(), 0, Some(target)));
                    }
                    (Mode::Destination, None) => {
                        return Err(SessionError::MissingTarget(id.clone()));
                    }
                }
            }
            if announced.is_empty() {
                return Err(mismatch());
            }
        } else if self.mappings.len() == 1
            && self.mappings[0].service_id().is_empty()
            && announced.len() <= 1
        {
            let id = announced.first().cloned().unwrap_or_default();
            pairs.push(mapping_parts(&self.mappings[0], id));
        } else {
            let configured = self.configured_ids();
            if !same_set(&configured, announced) {
                return Err(mismatch());
            }
            for m in &self.mappings {
                pairs.push(mapping_parts(m, m.service_id().to_string()));
            }
        }
        let form = match (self.mode, self.client_type) {
            (Mode::Source, ClientType::V1) => Form::V1,
            (Mode::Source, ClientType::V2) => Form::V2,
            _ => Form::V3,
        };
        Ok(pairs
            .into_iter()
            .map(|(id, port, target)| Service {
                form,
                id,
                port,
                target,
                stream_id: 0,
                next_connection_id: 1,
                conns: HashMap::new(),
            })
            .collect())
    }

    fn on_accepted(&mut self, local: LocalId, service: usize, out: &mut Vec<Output>) {
        if !self.ready || self.mode != Mode::Source || service >= self.services.len() {
            log::warn!(
                "refused local connection {}: the tunnel is not open yet",
                shown(local)
            );
            out.push(Output::Refuse { local });
            return;
        }
        let max = self.max_connections;
        let s = &self.services[service];
        let name = describe_id(&s.id).to_string();
        if !s.form.connection_ids && !s.conns.is_empty() {
            crate::peer_log!(Noise::LocalRefused, log::Level::Warn,
                "refused local connection {} for service {name}: -y V1/V2 allows one connection at a time and one is active", shown(local)
            );
            out.push(Output::Refuse { local });
            return;
        }
        if s.conns.len() >= max {
            crate::peer_log!(Noise::LocalRefused, log::Level::Warn,
                "refused local connection {} for service {name}: {max} connections are open (tcp.max_active_connections)", shown(local)
            );
            out.push(Output::Refuse { local });
            return;
        }
        let (form, current, next_cid) = (s.form, s.stream_id, s.next_connection_id);
        let (kind, stream_id, connection_id) = if current == 0 || !form.connection_ids {
            let sid = self.alloc_stream_id();
            (Type::StreamStart, sid, u32::from(form.connection_ids))
        } else {
            (Type::ConnectionStart, current, next_cid)
        };
        let s = &mut self.services[service];
        if kind == Type::StreamStart {
            s.stream_id = stream_id;
            s.next_connection_id = 2;
        } else {
            s.next_connection_id = s.next_connection_id.checked_add(1).unwrap_or(1);
        }
        let key = connection_id;
        s.conns.insert(key, local);
        self.conns.insert(
            local,
            Conn {
                service,
                stream_id,
                connection_id: key,
            },
        );
        let service_id = if s.form.service_ids {
            s.id.clone()
        } else {
            String::new()
        };
        log::info!(
            "connection {} opened for service {name} (stream {stream_id}{})",
            shown(local),
            if connection_id > 0 {
                format!(", connection {connection_id}")
            } else {
                String::new()
            }
        );
        out.push(Output::Send(Control {
            kind,
            stream_id,
            service_id,
            connection_id,
        }));
    }

    fn on_local_closed(&mut self, local: LocalId, out: &mut Vec<Output>) {
        let Some(c) = self.conns.remove(&local) else {
            return;
        };
        let s = &mut self.services[c.service];
        s.conns.remove(&c.connection_id);
        if s.stream_id != c.stream_id || !self.ready {
            return;
        }
        let reset = reset_for(s, c.stream_id, c.connection_id);
        if !s.form.connection_ids {
            s.stream_id = 0;
        }
        out.push(Output::Send(reset));
    }

    fn on_connect_failed(&mut self, local: LocalId, out: &mut Vec<Output>) {
        let Some(c) = self.conns.remove(&local) else {
            return;
        };
        let s = &mut self.services[c.service];
        log::warn!(
            "could not connect to {} for service {}; resetting the {}",
            s.target.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            describe_id(&s.id),
            if s.form.connection_ids {
                "connection"
            } else {
                "stream"
            }
        );
        s.conns.remove(&c.connection_id);
        if s.stream_id != c.stream_id || !self.ready {
            return;
        }
        let reset = reset_for(s, c.stream_id, c.connection_id);
        if !s.form.connection_ids {
            s.stream_id = 0;
        }
        out.push(Output::Send(reset));
    }

    /// Service index a message belongs to. Messages without a service id belong to the
    /// only service, or (V1 source with several services) to the one whose stream matches.
    fn service_for(&self, m: &Message<'_>) -> Option<usize> {
        if !m.service_id.is_empty() {
            if let Some(i) = self.services.iter().position(|s| s.id == m.service_id) {
                return Some(i);
            }
            // A V1 source ignores service ids (the peer may still send them).
            if self.mode == Mode::Source && self.client_type == ClientType::V1 {
                return self
                    .services
                    .iter()
                    .position(|s| s.stream_id == m.stream_id);
            }
            return None;
        }
        if self.services.len() == 1 {
            return Some(0);
        }
        self.services
            .iter()
            .position(|s| s.stream_id != 0 && s.stream_id == m.stream_id)
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
        let s = &self.services[idx];
        if s.stream_id == 0 || m.stream_id != s.stream_id {
            peer_log!(
                Noise::Stray,
                Level::Debug,
                "dropped stale DATA for stream {}",
                m.stream_id
            );
            return;
        }
        match s.conns.get(&s.key(m)) {
            Some(&local) => out.push(Output::Deliver { local }),
            None => peer_log!(
                Noise::Stray,
                Level::Debug,
                "dropped DATA for closed connection {}",
                m.connection_id
            ),
        }
    }

    fn on_stream_start(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
        if m.stream_id == 0 {
            peer_log!(
                Noise::BadStart,
                Level::Warn,
                "dropped a STREAM_START with stream id 0"
            );
            return;
        }
        let Some(idx) = self.service_for_start(m) else {
            return;
        };
        if self.services[idx].stream_id != 0 {
            // A new stream replaces the active one; its DATA will be delivered.
            self.close_service(idx, out);
        }
        let form = Form::of(m);
        let s = &mut self.services[idx];
        s.stream_id = m.stream_id;
        s.form = form;
        log::debug!(
            "stream {} started for service {} ({form})",
            m.stream_id,
            describe_id(&s.id),
        );
        let key = s.key(m);
        self.open_destination(idx, key, out);
    }

    fn service_for_start(&self, m: &Message<'_>) -> Option<usize> {
        if m.service_id.is_empty() {
            if self.services.len() == 1 {
                return Some(0);
            }
            peer_log!(
                Noise::BadStart,
                Level::Warn,
                "dropped a start without service id: this tunnel has several services"
            );
            return None;
        }
        let found = self.services.iter().position(|s| s.id == m.service_id);
        if found.is_none() {
            peer_log!(
                Noise::BadStart,
                Level::Warn,
                "dropped a start for unknown service {:?}",
                m.service_id
            );
        }
        found
    }

    /// Opens connection `key` of service `idx`'s current stream, or refuses it with a
    /// reset when the service already has tcp.max_active_connections open: a peer must
    /// not make the device open sockets without limit.
    fn open_destination(&mut self, idx: usize, key: u32, out: &mut Vec<Output>) {
        let max = self.max_connections;
        let s = &mut self.services[idx];
        let Some(target) = s.target.clone() else {
            return;
        };
        if s.conns.len() >= max {
            peer_log!(
                Noise::Refused,
                Level::Warn,
                "refused connection {key} of stream {} for service {}: {max} connections are open (tcp.max_active_connections)",
                s.stream_id,
                describe_id(&s.id)
            );
            out.push(Output::Send(reset_for(s, s.stream_id, key)));
            return;
        }
        let local = self.next_local_id;
        self.next_local_id += 1;
        s.conns.insert(key, local);
        let stream_id = s.stream_id;
        self.conns.insert(
            local,
            Conn {
                service: idx,
                stream_id,
                connection_id: key,
            },
        );
        out.push(Output::Connect {
            local,
            service: idx,
            target,
        });
    }

    fn on_connection_start(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
        let Some(idx) = self.service_for_start(m) else {
            return;
        };
        if m.stream_id == 0 {
            peer_log!(
                Noise::BadStart,
                Level::Warn,
                "dropped a CONNECTION_START with stream id 0"
            );
            return;
        }
        let s = &mut self.services[idx];
        if s.stream_id == 0 {
            // A restarted destination picks up the source's existing stream.
            s.stream_id = m.stream_id;
            s.form = Form {
                connection_ids: true,
                ..Form::of(m)
            };
            log::debug!(
                "stream {} taken up for service {} ({})",
                m.stream_id,
                describe_id(&s.id),
                s.form
            );
        } else if s.stream_id != m.stream_id {
            peer_log!(
                Noise::Stray,
                Level::Debug,
                "dropped CONNECTION_START for stale stream {}",
                m.stream_id
            );
            return;
        } else if !s.form.connection_ids {
            // The stream was opened without connection ids (V1/V2): it carries one
            // connection, which this start must not replace.
            peer_log!(
                Noise::BadStart,
                Level::Warn,
                "refused CONNECTION_START {} on stream {}: the stream was started without connection ids (V1/V2), which allows one connection",
                m.connection_id,
                m.stream_id
            );
            let reset = Control {
                kind: Type::ConnectionReset,
                stream_id: m.stream_id,
                service_id: m.service_id.to_string(),
                connection_id: m.connection_id,
            };
            out.push(Output::Send(reset));
            return;
        }
        let key = s.key(m);
        if let Some(old) = s.conns.remove(&key) {
            peer_log!(
                Noise::BadStart,
                Level::Warn,
                "CONNECTION_START for connection {key} which is already open; resetting it"
            );
            self.conns.remove(&old);
            out.push(Output::Close { local: old });
            out.push(Output::Send(reset_for(s, m.stream_id, key)));
            return;
        }
        self.open_destination(idx, key, out);
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
        self.close_service(idx, out);
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
        if let Some(local) = s.conns.remove(&key) {
            self.conns.remove(&local);
            out.push(Output::Close { local });
        }
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

fn mapping_parts(m: &Mapping, id: String) -> (String, u16, Option<Target>) {
    match m {
        Mapping::Listen { port, .. } => (id, *port, None),
        Mapping::Connect { target, .. } => (id, 0, Some(target.clone())),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn describe_id(id: &str) -> &str {
    if id.is_empty() {
        "(unnamed)"
    } else {
        id
    }
}

/// The announced services for a log line.
pub fn describe_ids(ids: &[String]) -> String {
    if ids.iter().all(|i| i.is_empty()) {
        "(none: single unnamed service)".into()
    } else {
        ids.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(id: &str, port: u16) -> Mapping {
        Mapping::Listen {
            service_id: id.into(),
            port,
        }
    }

    fn connect(id: &str, port: u16) -> Mapping {
        Mapping::Connect {
            service_id: id.into(),
            target: Target::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
        }
    }

    fn source(ct: ClientType, mappings: Vec<Mapping>) -> Session {
        Session::new(Mode::Source, ct, mappings, vec![], None, 128)
    }

    fn dest(mappings: Vec<Mapping>) -> Session {
        Session::new(
            Mode::Destination,
            ClientType::V3,
            mappings,
            vec![],
            None,
            128,
        )
    }

    fn accept(s: &mut Session, local: LocalId, service: usize) -> Vec<Output> {
        run(s, Input::Accepted { local, service })
    }

    fn listen_out(service: usize, id: &str, port: u16) -> Output {
        Output::Listen {
            service,
            service_id: id.into(),
            port,
        }
    }

    fn run(s: &mut Session, input: Input<'_, '_>) -> Vec<Output> {
        let mut out = Vec::new();
        s.handle(input, &mut out);
        out
    }

    fn msg<'a>(kind: Type, stream: i32, service: &'a str, conn: u32) -> Message<'a> {
        Message {
            kind,
            stream_id: stream,
            service_id: service,
            connection_id: conn,
            ..Message::default()
        }
    }

    fn ids<'a>(v: &[&'a str]) -> Message<'a> {
        Message {
            kind: Type::ServiceIds,
            available_service_ids: v.to_vec(),
            ..Message::default()
        }
    }

    fn send(kind: Type, stream: i32, service: &str, conn: u32) -> Output {
        Output::Send(Control {
            kind,
            stream_id: stream,
            service_id: service.into(),
            connection_id: conn,
        })
    }

    fn open(s: &mut Session, announced: &[&str]) -> Vec<Output> {
        run(s, Input::Opened(Version::V3));
        run(s, Input::Message(&ids(announced)))
    }

    const A1: LocalId = ACCEPTED_ID_BASE + 1;

    #[test]
    fn log_lines_number_accepted_connections_from_one() {
        assert_eq!(shown(A1), 1);
        assert_eq!(shown(ACCEPTED_ID_BASE + 42), 42);
        assert_eq!(shown(3), 3);
    }

    const A2: LocalId = ACCEPTED_ID_BASE + 2;
    const A3: LocalId = ACCEPTED_ID_BASE + 3;

    #[test]
    fn nothing_happens_before_service_ids() {
        let mut s = source(ClientType::V3, vec![listen("A", 5555)]);
        assert!(run(&mut s, Input::Opened(Version::V3)).is_empty());
        assert!(!s.is_ready());
        let out = accept(&mut s, A1, 0);
        assert_eq!(out, vec![Output::Refuse { local: A1 }]);
    }

    #[test]
    fn source_v3_listens_then_starts_stream_and_connections() {
        let mut s = source(ClientType::V3, vec![listen("A", 5555), listen("B", 6666)]);
        let out = open(&mut s, &["B", "A"]);
        assert_eq!(
            out,
            vec![listen_out(0, "A", 5555), listen_out(1, "B", 6666),]
        );
        assert_eq!(
            accept(&mut s, A1, 0),
            vec![send(Type::StreamStart, 1, "A", 1)]
        );
        assert_eq!(
            accept(&mut s, A2, 0),
            vec![send(Type::ConnectionStart, 1, "A", 2)]
        );
        assert_eq!(
            accept(&mut s, A3, 1),
            vec![send(Type::StreamStart, 2, "B", 1)]
        );
        assert_eq!(s.data_route(A2), Some((1, "A", 2)));
        // DATA for connection 2 of A goes to A2; a stale stream id is dropped.
        let d = msg(Type::Data, 1, "A", 2);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: A2 }]
        );
        let stale = msg(Type::Data, 7, "A", 2);
        assert!(run(&mut s, Input::Message(&stale)).is_empty());
        // A local close resets only that connection; the stream stays.
        assert_eq!(
            run(&mut s, Input::LocalClosed { local: A1 }),
            vec![send(Type::ConnectionReset, 1, "A", 1)]
        );
        assert_eq!(s.data_route(A2), Some((1, "A", 2)));
        // The peer resets connection 2.
        let r = msg(Type::ConnectionReset, 1, "A", 2);
        assert_eq!(
            run(&mut s, Input::Message(&r)),
            vec![Output::Close { local: A2 }]
        );
        // A STREAM_RESET closes every connection of B.
        let r = msg(Type::StreamReset, 2, "B", 0);
        assert_eq!(
            run(&mut s, Input::Message(&r)),
            vec![Output::Close { local: A3 }]
        );
        assert_eq!(s.data_route(A3), None);
    }

    #[test]
    fn source_v2_refuses_a_second_connection_and_serves_the_next() {
        let mut s = source(ClientType::V2, vec![listen("A", 5555)]);
        open(&mut s, &["A"]);
        assert_eq!(
            accept(&mut s, A1, 0),
            vec![send(Type::StreamStart, 1, "A", 0)]
        );
        assert_eq!(accept(&mut s, A2, 0), vec![Output::Refuse { local: A2 }]);
        assert_eq!(s.data_route(A1), Some((1, "A", 0)));
        assert_eq!(
            run(&mut s, Input::LocalClosed { local: A1 }),
            vec![send(Type::StreamReset, 1, "A", 0)]
        );
        assert_eq!(
            accept(&mut s, A3, 0),
            vec![send(Type::StreamStart, 2, "A", 0)]
        );
    }

    #[test]
    fn source_v1_sends_no_service_or_connection_id() {
        let mut s = source(ClientType::V1, vec![listen("", 5555)]);
        assert_eq!(open(&mut s, &[]), vec![listen_out(0, "", 5555)]);
        assert_eq!(
            accept(&mut s, A1, 0),
            vec![send(Type::StreamStart, 1, "", 0)]
        );
        let d = msg(Type::Data, 1, "", 0);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: A1 }]
        );
        assert_eq!(s.data_route(A1), Some((1, "", 0)));
        assert_eq!(accept(&mut s, A2, 0), vec![Output::Refuse { local: A2 }]);
    }

    #[test]
    fn source_v1_on_a_named_tunnel_ignores_service_ids() {
        let mut s = source(ClientType::V1, vec![listen("", 5555)]);
        assert_eq!(open(&mut s, &["SSH"]), vec![listen_out(0, "SSH", 5555)]);
        assert_eq!(
            accept(&mut s, A1, 0),
            vec![send(Type::StreamStart, 1, "", 0)]
        );
        let d = msg(Type::Data, 1, "SSH", 0);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: A1 }]
        );
    }

    #[test]
    fn source_v1_refuses_a_tunnel_with_several_services() {
        let mut s = source(ClientType::V1, vec![listen("A", 5555), listen("B", 5556)]);
        let out = open(&mut s, &["A", "B"]);
        assert_eq!(
            out,
            vec![Output::Fatal(SessionError::V1SeveralServices(vec![
                "A".into(),
                "B".into()
            ]))]
        );
        let line = match &out[0] {
            Output::Fatal(e) => e.to_string(),
            _ => unreachable!(),
        };
        assert!(line.contains("use -y V2"), "{line}");
    }

    #[test]
    fn destination_answers_a_v3_peer_on_a_tunnel_without_services_with_connection_ids() {
        // What the reference 3.3.1 (and our source) send as V3 on a tunnel without
        // services: no service id, connection ids. The second connection must work.
        let mut s = dest(vec![connect("", 22)]);
        assert!(open(&mut s, &[]).is_empty());
        let l1 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 1, "", 1)),
        ));
        assert_eq!(s.data_route(l1), Some((1, "", 1)));
        assert_eq!(
            run(&mut s, Input::LocalClosed { local: l1 }),
            vec![send(Type::ConnectionReset, 1, "", 1)]
        );
        // Back to back: the stream stays, the next connection comes as CONNECTION_START.
        let l2 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 1, "", 2)),
        ));
        assert_eq!(s.data_route(l2), Some((1, "", 2)));
        let d = msg(Type::Data, 1, "", 2);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l2 }]
        );
        // And at once: a third beside the second.
        let l3 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 1, "", 3)),
        ));
        let d = msg(Type::Data, 1, "", 3);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l3 }]
        );
        let r = msg(Type::ConnectionReset, 1, "", 2);
        assert_eq!(
            run(&mut s, Input::Message(&r)),
            vec![Output::Close { local: l2 }]
        );
        assert_eq!(s.data_route(l3), Some((1, "", 3)));
    }

    #[test]
    fn destination_answers_a_v3_peer_without_service_id_on_a_named_tunnel_in_kind() {
        let mut s = dest(vec![connect("", 22)]);
        open(&mut s, &["SSH"]);
        let l = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 5, "", 1)),
        ));
        assert_eq!(s.data_route(l), Some((5, "", 1)));
        let out = run(&mut s, Input::Message(&msg(Type::StreamStart, 6, "SSH", 1)));
        assert_eq!(
            out[0],
            Output::Close { local: l },
            "a new stream replaces the old"
        );
        let l = local_of(&out[1..]);
        assert_eq!(s.data_route(l), Some((6, "SSH", 1)));
    }

    #[test]
    fn destination_refuses_starts_beyond_max_active_connections() {
        let mut s = Session::new(
            Mode::Destination,
            ClientType::V3,
            vec![connect("A", 22)],
            vec![],
            None,
            2,
        );
        open(&mut s, &["A"]);
        let l1 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 1, "A", 1)),
        ));
        local_of(&run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 1, "A", 2)),
        ));
        for cid in 3..600 {
            assert_eq!(
                run(
                    &mut s,
                    Input::Message(&msg(Type::ConnectionStart, 1, "A", cid))
                ),
                vec![send(Type::ConnectionReset, 1, "A", cid)],
                "connection {cid}"
            );
        }
        assert_eq!(s.connection_counts(), vec![2]);
        // The open ones go on, and a freed place is usable again.
        let d = msg(Type::Data, 1, "A", 1);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l1 }]
        );
        run(&mut s, Input::LocalClosed { local: l1 });
        local_of(&run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 1, "A", 700)),
        ));
    }

    #[test]
    fn destination_refuses_a_connection_start_on_a_stream_without_connection_ids() {
        let mut s = dest(vec![connect("A", 22)]);
        open(&mut s, &["A"]);
        let l = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 4, "A", 0)),
        ));
        assert_eq!(
            run(
                &mut s,
                Input::Message(&msg(Type::ConnectionStart, 4, "A", 2))
            ),
            vec![send(Type::ConnectionReset, 4, "A", 2)]
        );
        assert_eq!(s.data_route(l), Some((4, "A", 0)), "the first one goes on");
    }

    #[test]
    fn unnamed_mapping_adopts_the_single_announced_id() {
        let mut s = source(ClientType::V3, vec![listen("", 5555)]);
        let out = open(&mut s, &["SSH"]);
        assert_eq!(out, vec![listen_out(0, "SSH", 5555)]);
        assert_eq!(
            accept(&mut s, A1, 0),
            vec![send(Type::StreamStart, 1, "SSH", 1)]
        );
    }

    #[test]
    fn mismatched_service_ids_are_fatal_and_name_both_sets() {
        let mut s = source(ClientType::V3, vec![listen("A", 1), listen("B", 2)]);
        let out = open(&mut s, &["A", "C"]);
        let [Output::Fatal(e)] = out.as_slice() else {
            panic!("expected a fatal error, got {out:?}");
        };
        let text = e.to_string();
        assert!(text.contains("A,C") && text.contains("A,B"), "{text}");
        let mut s = source(ClientType::V3, vec![listen("", 1)]);
        assert!(matches!(
            open(&mut s, &["A", "B"]).as_slice(),
            [Output::Fatal(_)]
        ));
    }

    #[test]
    fn repeated_service_ids_mid_session_are_ignored() {
        let mut s = source(ClientType::V3, vec![listen("A", 1)]);
        open(&mut s, &["A"]);
        accept(&mut s, A1, 0);
        assert!(run(&mut s, Input::Message(&ids(&["X", "Y"]))).is_empty());
        assert_eq!(s.data_route(A1), Some((1, "A", 1)));
    }

    #[test]
    fn reconnect_closes_everything_keeps_listeners_and_stream_ids_grow() {
        let mut s = source(ClientType::V3, vec![listen("A", 1)]);
        open(&mut s, &["A"]);
        accept(&mut s, A1, 0);
        accept(&mut s, A2, 0);
        assert_eq!(
            run(&mut s, Input::Lost),
            vec![Output::Close { local: A1 }, Output::Close { local: A2 }]
        );
        // Closing after the loss sends nothing: the stream died with the session.
        assert!(run(&mut s, Input::LocalClosed { local: A1 }).is_empty());
        // Second session: no second Listen, the next stream id is 2.
        assert!(open(&mut s, &["A"]).is_empty());
        assert_eq!(
            accept(&mut s, A3, 0),
            vec![send(Type::StreamStart, 2, "A", 1)]
        );
        // A reconnect to a tunnel with other services is fatal.
        run(&mut s, Input::Lost);
        assert!(matches!(
            open(&mut s, &["B"]).as_slice(),
            [Output::Fatal(_)]
        ));
    }

    #[test]
    fn max_active_connections_is_enforced_with_a_refusal() {
        let mut s = Session::new(
            Mode::Source,
            ClientType::V3,
            vec![listen("A", 1)],
            vec![],
            None,
            2,
        );
        open(&mut s, &["A"]);
        accept(&mut s, A1, 0);
        accept(&mut s, A2, 0);
        assert_eq!(accept(&mut s, A3, 0), vec![Output::Refuse { local: A3 }]);
    }

    #[test]
    fn source_drops_stream_start_and_unknown_types() {
        let mut s = source(ClientType::V3, vec![listen("A", 1)]);
        open(&mut s, &["A"]);
        for m in [
            msg(Type::StreamStart, 5, "A", 1),
            msg(Type::ConnectionStart, 5, "A", 2),
            msg(Type::Unknown, 0, "", 0),
            msg(Type::Other(42), 1, "A", 1),
            msg(Type::Data, 1, "nope", 1),
            msg(Type::Data, 0, "", 0),
        ] {
            assert!(run(&mut s, Input::Message(&m)).is_empty(), "{m:?}");
        }
    }

    fn local_of(out: &[Output]) -> LocalId {
        match out {
            [Output::Connect { local, .. }] => *local,
            other => panic!("expected one Connect, got {other:?}"),
        }
    }

    #[test]
    fn destination_v3_connects_per_connection_and_resets_failures() {
        let mut s = dest(vec![connect("A", 22), connect("B", 80)]);
        assert!(open(&mut s, &["A", "B"]).is_empty());
        let l1 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 9, "A", 1)),
        ));
        let l2 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 9, "A", 2)),
        ));
        assert_ne!(l1, l2);
        assert_eq!(s.data_route(l2), Some((9, "A", 2)));
        let d = msg(Type::Data, 9, "A", 2);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l2 }]
        );
        // Connection id 0 in a V3 stream means connection 1.
        let d = msg(Type::Data, 9, "A", 0);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l1 }]
        );
        assert_eq!(
            run(&mut s, Input::ConnectFailed { local: l2 }),
            vec![send(Type::ConnectionReset, 9, "A", 2)]
        );
        assert_eq!(
            run(&mut s, Input::LocalClosed { local: l1 }),
            vec![send(Type::ConnectionReset, 9, "A", 1)]
        );
        // CONNECTION_START on an open id resets it.
        let l3 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 9, "A", 3)),
        ));
        assert_eq!(
            run(
                &mut s,
                Input::Message(&msg(Type::ConnectionStart, 9, "A", 3))
            ),
            vec![
                Output::Close { local: l3 },
                send(Type::ConnectionReset, 9, "A", 3)
            ]
        );
    }

    #[test]
    fn destination_answers_a_v2_peer_in_v2_form() {
        let mut s = dest(vec![connect("A", 22)]);
        open(&mut s, &["A"]);
        let l = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 4, "A", 0)),
        ));
        assert_eq!(s.data_route(l), Some((4, "A", 0)));
        assert_eq!(
            run(&mut s, Input::LocalClosed { local: l }),
            vec![send(Type::StreamReset, 4, "A", 0)]
        );
    }

    #[test]
    fn destination_maps_a_v1_peer_to_the_single_service() {
        let mut s = dest(vec![connect("", 22)]);
        open(&mut s, &["SSH"]);
        let l = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 3, "", 0)),
        ));
        assert_eq!(s.data_route(l), Some((3, "", 0)));
        let d = msg(Type::Data, 3, "", 0);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l }]
        );
        assert_eq!(
            run(&mut s, Input::ConnectFailed { local: l }),
            vec![send(Type::StreamReset, 3, "", 0)]
        );
    }

    #[test]
    fn destination_new_stream_start_replaces_the_active_stream() {
        let mut s = dest(vec![connect("A", 22)]);
        open(&mut s, &["A"]);
        let l1 = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 1, "A", 0)),
        ));
        let out = run(&mut s, Input::Message(&msg(Type::StreamStart, 2, "A", 0)));
        assert_eq!(out[0], Output::Close { local: l1 });
        let l2 = local_of(&out[1..]);
        // The new stream's DATA is delivered (the reference drops it, lp#170).
        let d = msg(Type::Data, 2, "A", 0);
        assert_eq!(
            run(&mut s, Input::Message(&d)),
            vec![Output::Deliver { local: l2 }]
        );
        let d = msg(Type::Data, 1, "A", 0);
        assert!(run(&mut s, Input::Message(&d)).is_empty());
    }

    #[test]
    fn destination_config_dir_and_missing_targets() {
        let mut s = Session::new(
            Mode::Destination,
            ClientType::V3,
            vec![],
            vec![
                ("SSH".into(), "2222".into()),
                ("WEB".into(), "localhost:8080".into()),
            ],
            None,
            128,
        );
        assert!(open(&mut s, &["SSH", "WEB"]).is_empty());
        let out = run(&mut s, Input::Message(&msg(Type::StreamStart, 1, "WEB", 1)));
        assert!(matches!(
            out.as_slice(),
            [Output::Connect { target: Target::Tcp { host, port: 8080 }, .. }] if host == "localhost"
        ));
        let mut s = dest(vec![]);
        assert_eq!(
            open(&mut s, &["X"]),
            vec![Output::Fatal(SessionError::MissingTarget("X".into()))]
        );
    }

    #[test]
    fn session_reset_closes_everything_and_keeps_going() {
        let mut s = dest(vec![connect("A", 22)]);
        open(&mut s, &["A"]);
        let l = local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 1, "A", 1)),
        ));
        let r = Message::new(Type::SessionReset);
        assert_eq!(
            run(&mut s, Input::Message(&r)),
            vec![Output::Close { local: l }]
        );
        local_of(&run(
            &mut s,
            Input::Message(&msg(Type::StreamStart, 2, "A", 1)),
        ));
    }

    #[test]
    fn v1_session_needs_no_service_ids() {
        let mut s = source(ClientType::V1, vec![listen("", 5555)]);
        assert_eq!(
            run(&mut s, Input::Opened(Version::V1)),
            vec![listen_out(0, "", 5555)]
        );
        assert!(s.is_ready());
    }
}
