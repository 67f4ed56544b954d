//! A source's listeners: bind (after a name lookup off the thread when the address is a
//! name), retry a bind that fails, accept clients and hand them to the session.

use super::{Conn, LocalThread, Sock, State};
use crate::link::{Event, Lookup};
use crate::logging::Noise;
use crate::resolve;
use crate::session::shown;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl LocalThread {
    /// Binds listener `idx`: at once for an IP literal, else after a name lookup.
    pub(super) fn bind(&mut self, idx: usize) {
        let l = &mut self.listeners[idx];
        l.retry_at = None;
        let (host, port) = (l.host.clone(), l.port);
        if let Some(ip) = resolve::ip_literal(&host) {
            self.listen_on(idx, Ok(vec![SocketAddr::new(ip, port)]));
            return;
        }
        match self.start_lookup(Lookup::Listener(idx), &host, port) {
            Ok(ticket) => self.listeners[idx].resolving = Some(ticket),
            Err(e) => self.listen_on(idx, Err(e)),
        }
    }

    /// Listens on the first address of a lookup's answer; on failure schedules a retry
    /// (a new lookup and bind) or gives up after tcp.connection_retry_count.
    pub(super) fn listen_on(&mut self, idx: usize, addrs: io::Result<Vec<SocketAddr>>) {
        let l = &mut self.listeners[idx];
        l.resolving = None;
        let result = addrs.and_then(|a| {
            let addr = a.first().copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the name has no address")
            })?;
            let s = TcpListener::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        });
        let name = if l.service_id.is_empty() {
            "(unnamed)".to_string()
        } else {
            l.service_id.clone()
        };
        match result {
            Ok(sock) => {
                let addr = sock
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], l.port)));
                log::info!("listening on {addr} for service {name}");
                l.sock = Some(sock);
                let service = l.service;
                self.emit(Event::Listening { service });
            }
            Err(e) => {
                l.attempts += 1;
                let retries = self.limits.retry_count;
                if retries >= 0 && l.attempts > retries {
                    let error = format!(
                        "cannot listen on {}:{} for service {name}: {e}; free the port or choose another with -s",
                        l.host, l.port
                    );
                    self.emit(Event::ListenFailed { error });
                } else {
                    log::warn!(
                        "cannot listen on {}:{} for service {name}: {e}; retrying in {} ms",
                        l.host,
                        l.port,
                        self.limits.retry_delay.as_millis()
                    );
                    l.retry_at = Some(Instant::now() + self.limits.retry_delay);
                }
            }
        }
    }

    pub(super) fn accept(&mut self, idx: usize) {
        loop {
            let Some(sock) = &self.listeners[idx].sock else {
                return;
            };
            match sock.accept() {
                Ok((s, peer)) => {
                    if !self.shared.tunnel_ready.load(Ordering::SeqCst) {
                        crate::logging::peer_log!(
                            Noise::LocalRefused,
                            log::Level::Warn,
                            "refused a connection from {peer}: the tunnel is not open; try again when it is"
                        );
                        drop(s);
                        continue;
                    }
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    let local = self.next_accept_id;
                    self.next_accept_id += 1;
                    let service = self.listeners[idx].service;
                    log::debug!("accepted connection {} from {peer}", shown(local));
                    let mut c =
                        Conn::new(service, Some(Sock::Tcp(s)), State::Open, peer.to_string());
                    c.answer_due = Some(Instant::now() + super::NO_ANSWER);
                    self.conns.insert(local, c);
                    self.emit(Event::Accepted { local, service });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNABORTED, EMFILE, ...: log and try again at the next wake-up.
                    crate::logging::peer_log!(
                        Noise::LocalRefused,
                        log::Level::Warn,
                        "accept failed: {e}"
                    );
                    return;
                }
            }
        }
    }
}
