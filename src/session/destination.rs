//! The destination side: the source starts a stream or a connection, the session opens
//! a local connection to the service's target (within tcp.max_active_connections) and
//! answers in the form the source uses; a target that cannot be reached is reset.

use super::{describe_id, reset_for, Conn, Control, Form, LocalId, Output, Session};
use crate::logging::peer_log;
use crate::logging::Noise;
use crate::protocol::{Message, Type};
use log::Level;

impl Session {
    pub(super) fn on_stream_start(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
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

    pub(super) fn service_for_start(&self, m: &Message<'_>) -> Option<usize> {
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
    pub(super) fn open_destination(&mut self, idx: usize, key: u32, out: &mut Vec<Output>) {
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

    pub(super) fn on_connection_start(&mut self, m: &Message<'_>, out: &mut Vec<Output>) {
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

    pub(super) fn on_connect_failed(&mut self, local: LocalId, out: &mut Vec<Output>) {
        let Some(c) = self.conns.remove(&local) else {
            return;
        };
        let s = &mut self.services[c.service];
        // Debug: the local thread's line has just said why, at warn.
        log::debug!(
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
}
