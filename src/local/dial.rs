//! A destination's connections to its targets: a name lookup off the thread, a
//! non-blocking connect (TCP or Unix socket) to each address in turn, retries on a
//! timer, and the report to the session (connected, or failed after the retries).

use super::{Conn, LocalThread, Sock, State, CONNECT_TIMEOUT};
use crate::config::Target;
use crate::link::{Event, Lookup};
use crate::resolve;
use crate::session::{shown, LocalId};
use crate::sys;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

impl LocalThread {
    pub(super) fn connect(&mut self, local: LocalId, service: usize, target: Target) {
        let peer = target.to_string();
        let mut c = Conn::new(service, None, State::Resolving { ticket: 0 }, peer);
        c.target = Some(target.clone());
        self.conns.insert(local, c);
        match target {
            Target::Unix(_) => self.try_connect(local),
            Target::Tcp { host, port } => {
                if let Some(ip) = resolve::ip_literal(&host) {
                    self.resolved(local, Ok(vec![SocketAddr::new(ip, port)]));
                    return;
                }
                // getaddrinfo blocks; never on this thread. A lookup of the same name
                // already under way answers this connection too.
                let key = (host, port);
                if let Some(&ticket) = self.lookups.get(&key) {
                    if let Some(c) = self.conns.get_mut(&local) {
                        c.state = State::Resolving { ticket };
                    }
                    return;
                }
                match self.start_lookup(Lookup::Conns, &key.0, port) {
                    Ok(ticket) => {
                        self.lookups.insert(key, ticket);
                        if let Some(c) = self.conns.get_mut(&local) {
                            c.state = State::Resolving { ticket };
                        }
                    }
                    Err(e) => self.resolved(local, Err(e)),
                }
            }
        }
    }

    pub(super) fn resolved(&mut self, local: LocalId, addrs: io::Result<Vec<SocketAddr>>) {
        let Some(c) = self.conns.get_mut(&local) else {
            return;
        };
        match addrs {
            Ok(a) if !a.is_empty() => {
                c.addrs = a;
                c.next_addr = 0;
                self.try_connect(local);
            }
            Ok(_) => self.connect_error(
                local,
                io::Error::new(io::ErrorKind::NotFound, "the name has no address"),
            ),
            Err(e) => self.connect_error(local, e),
        }
    }

    pub(super) fn try_connect(&mut self, local: LocalId) {
        let Some(c) = self.conns.get_mut(&local) else {
            return;
        };
        if let Some(Target::Unix(path)) = &c.target {
            match sys::connect_unix_nonblocking(path) {
                Ok((s, true)) => {
                    c.sock = Some(Sock::Unix(s));
                    self.connected(local);
                }
                Ok((s, false)) => {
                    c.sock = Some(Sock::Unix(s));
                    c.state = State::Connecting {
                        deadline: Instant::now() + CONNECT_TIMEOUT,
                    };
                }
                Err(e) => self.connect_error(local, e),
            }
            return;
        }
        if c.addrs.is_empty() {
            // A retry after a failed lookup: look the name up again.
            if let Some(t) = c.target.clone() {
                let service = c.service;
                let keep = std::mem::take(&mut c.out);
                let keep_len = c.out_len;
                let attempts = c.attempts;
                self.connect(local, service, t);
                if let Some(c) = self.conns.get_mut(&local) {
                    c.out = keep;
                    c.out_len = keep_len;
                    c.attempts = attempts;
                }
            }
            return;
        }
        let addr = c.addrs[c.next_addr % c.addrs.len()];
        c.next_addr += 1;
        match sys::connect_nonblocking(&addr) {
            Ok(s) => {
                c.sock = Some(Sock::Tcp(s));
                c.state = State::Connecting {
                    deadline: Instant::now() + CONNECT_TIMEOUT,
                };
            }
            Err(e) => self.connect_error(local, e),
        }
    }

    pub(super) fn connected(&mut self, local: LocalId) {
        let Some(c) = self.conns.get_mut(&local) else {
            return;
        };
        if let Some(Sock::Tcp(s)) = &c.sock {
            let _ = s.set_nodelay(true);
        }
        c.state = State::Open;
        c.opened = Instant::now();
        log::info!("connection {} opened to {}", shown(local), c.peer);
        self.emit(Event::Connected { local });
    }

    /// One connect attempt failed: try the next address, wait and retry, or give up.
    pub(super) fn connect_error(&mut self, local: LocalId, e: io::Error) {
        let Some(c) = self.conns.get_mut(&local) else {
            return;
        };
        c.sock = None;
        if c.next_addr < c.addrs.len() {
            self.try_connect(local);
            return;
        }
        c.attempts += 1;
        c.next_addr = 0;
        let retries = self.limits.retry_count;
        if retries >= 0 && c.attempts > retries {
            log::warn!(
                "cannot connect to {} ({} attempts): {e}; is it running?",
                c.peer,
                c.attempts
            );
            let len = c.out_len;
            self.conns.remove(&local);
            self.release_to_local(len);
            self.emit(Event::ConnectFailed { local });
        } else {
            // Debug: the attempts that fail are summed up in the one line above when
            // the last fails, so a console shows one line per refused connection.
            log::debug!(
                "cannot connect to {}: {e}; retrying in {} ms",
                c.peer,
                self.limits.retry_delay.as_millis()
            );
            c.state = State::Waiting {
                at: Instant::now() + self.limits.retry_delay,
            };
        }
    }
}
