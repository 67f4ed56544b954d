//! Local connections coming and going: on a source a client connects and the session
//! starts a stream or a connection for it; in either mode a local connection that ends
//! is reset towards the peer. Also which service a message from the peer belongs to.

use super::{describe_id, reset_for, shown, Conn, Control, LocalId, Output, Session};
use crate::config::{ClientType, Mode};
use crate::logging::Noise;
use crate::protocol::{Message, Type};

impl Session {
    pub(super) fn on_accepted(&mut self, local: LocalId, service: usize, out: &mut Vec<Output>) {
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
            // One connection at a time: hold the newcomer (unread) until the active one
            // ends. A client that closes and at once reconnects (scp after ssh) can be
            // accepted before its old connection's end is seen; a second client while the
            // first really is active is refused when the hold expires.
            if self.held.len() >= self.max_connections {
                crate::logging::peer_log!(Noise::LocalRefused, log::Level::Warn,
                    "refused local connection {} for service {name}: -y V1/V2 allows one connection at a time and one is active", shown(local)
                );
                out.push(Output::Refuse { local });
                return;
            }
            log::debug!(
                "holding local connection {} for service {name} until the active one ends",
                shown(local)
            );
            self.held.push((local, service));
            out.push(Output::Hold { local });
            return;
        }
        if s.conns.len() >= max {
            crate::logging::peer_log!(Noise::LocalRefused, log::Level::Warn,
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
        s.unanswered.insert(key);
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

    pub(super) fn on_local_closed(&mut self, local: LocalId, out: &mut Vec<Output>) {
        if let Some(i) = self.held.iter().position(|&(l, _)| l == local) {
            // A held client gave up before its turn.
            self.held.remove(i);
            return;
        }
        let Some(c) = self.conns.remove(&local) else {
            return;
        };
        let s = &mut self.services[c.service];
        s.conns.remove(&c.connection_id);
        s.unanswered.remove(&c.connection_id);
        if s.stream_id != c.stream_id || !self.ready {
            return;
        }
        let reset = reset_for(s, c.stream_id, c.connection_id);
        if !s.form.connection_ids {
            s.stream_id = 0;
        }
        out.push(Output::Send(reset));
        self.start_held(c.service, out);
    }

    /// The service's connection ended: the longest-held client for it gets its turn.
    pub(super) fn start_held(&mut self, service: usize, out: &mut Vec<Output>) {
        let Some(i) = self.held.iter().position(|&(_, s)| s == service) else {
            return;
        };
        let (local, _) = self.held.remove(i);
        let before = out.len();
        self.on_accepted(local, service, out);
        if matches!(out.get(before), Some(Output::Send(_))) {
            out.push(Output::Release { local });
        }
    }

    /// A held client waited [`HOLD`](super::HOLD) for its turn: refuse it.
    pub(super) fn on_hold_expired(&mut self, local: LocalId, out: &mut Vec<Output>) {
        let Some(i) = self.held.iter().position(|&(l, _)| l == local) else {
            return;
        };
        let (_, service) = self.held.remove(i);
        let name = describe_id(&self.services[service].id).to_string();
        crate::logging::peer_log!(Noise::LocalRefused, log::Level::Warn,
            "refused local connection {} for service {name}: -y V1/V2 allows one connection at a time and one is active", shown(local)
        );
        out.push(Output::Refuse { local });
    }

    /// Service index a message belongs to. Messages without a service id belong to the
    /// only service, or (V1 source with several services) to the one whose stream matches.
    pub(super) fn service_for(&self, m: &Message<'_>) -> Option<usize> {
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
}
