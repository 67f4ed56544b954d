//! The project's own double of the AWS IoT Secure Tunneling service, for tests and for
//! trying the proxy without AWS (`testbed serve`, `testbed demo`).
//!
//! It behaves like the real service as far as protocol.md §4 knows it: TLS with its own
//! CA, `GET /tunnel?local-proxy-mode=...` with `access-token` (and `client-token`),
//! single-use tokens unless a client token is given, the offered subprotocol echoed,
//! SERVICE_IDS first on 2.0/3.0, messages relayed unchanged to the other mode's peer,
//! pings answered, STREAM_RESET to the remaining peer when one leaves, close frames when
//! a tunnel closes. Messages for a peer that is not connected are dropped (and counted),
//! like mizo's emulator; the real service's choice is not documented.
//!
//! Test hooks (drop, freeze, delay, relay rate, re-cut, fragment, reject, inject,
//! record) are methods of [`Testbed`]; every wait takes a timeout. It is not a load
//! balancer, has no REST API and keeps everything in memory.

pub mod certs;
pub mod hostile;
mod pace;
mod peer;
pub mod scripted;
mod state;

pub use crate::config::Mode;
use crate::protocol::{codec, Message};
pub use certs::random_token;
use openssl::ssl::{SslContext, SslMethod, SslOptions, SslVersion};
use state::{idx, Control, Shared, Slot, State, TunnelState};
pub use state::{Recorded, Stats};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One tunnel as the tests see it.
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub id: u64,
    pub source_token: String,
    pub destination_token: String,
    pub services: Vec<String>,
}

/// How [`Testbed::drop_peer`] ends a peer's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// TCP shutdown with no close frame, like a network drop.
    Abort,
    /// A close frame (1000), like CloseTunnel.
    Close,
}

/// A running tunneling-service double.
pub struct Testbed {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: PathBuf,
    ca_dir: PathBuf,
}

impl Testbed {
    /// Starts on 127.0.0.1 with an OS-assigned port; certificates go into `dir`.
    pub fn start(dir: &Path) -> Result<Testbed, String> {
        Testbed::start_on(dir, "127.0.0.1:0")
    }

    /// Starts on `addr` (e.g. `127.0.0.1:8443`).
    pub fn start_on(dir: &Path, addr: &str) -> Result<Testbed, String> {
        let extra: Vec<std::net::IpAddr> = addr
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .into_iter()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .collect();
        let certs = certs::make_for(dir, &extra)?;
        let acceptor =
            Arc::new(tls_context(&certs).map_err(|e| format!("cannot set up TLS: {e}"))?);
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tunnels: HashMap::new(),
                tokens: HashMap::new(),
                reject: None,
                single_use: true,
                recut: None,
                fragment: None,
                delay: Duration::ZERO,
                relay_rate: None,
                record: true,
                next_id: 1,
                stats: Stats::default(),
                hostile: [None, None],
                hostile_report: None,
                answers: Default::default(),
            }),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("testbed-accept".into())
            .spawn(move || {
                for s in listener.incoming() {
                    let Ok(s) = s else { continue };
                    let (sh, acc) = (sh.clone(), acceptor.clone());
                    let _ = std::thread::Builder::new()
                        .name("testbed-peer".into())
                        .spawn(move || peer::serve(sh, s, acc));
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Testbed {
            shared,
            addr,
            ca_pem: certs.ca_pem,
            ca_dir: certs.ca_dir,
        })
    }

    /// `localhost:PORT` (or `ADDRESS:PORT` when listening elsewhere), for `-e`.
    pub fn endpoint(&self) -> String {
        if self.addr.ip().is_loopback() {
            format!("localhost:{}", self.addr.port())
        } else {
            self.addr.to_string()
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The CA as an OpenSSL hashed directory, for `-c`.
    pub fn ca_dir(&self) -> PathBuf {
        self.ca_dir.clone()
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.ca_pem.clone()
    }

    /// Opens a tunnel with these services (none: a V1-style tunnel).
    pub fn open_tunnel(&self, services: &[&str]) -> Tunnel {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        let source_token = random_token();
        let destination_token = random_token();
        st.tokens.insert(source_token.clone(), (id, Mode::Source));
        st.tokens
            .insert(destination_token.clone(), (id, Mode::Destination));
        let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        st.tunnels.insert(
            id,
            TunnelState {
                services: services.clone(),
                closed: false,
                slots: Default::default(),
                streams: Vec::new(),
            },
        );
        Tunnel {
            id,
            source_token,
            destination_token,
            services,
        }
    }

    /// Closes a tunnel: close frame (1000) to both peers; its tokens stop working.
    pub fn close_tunnel(&self, t: &Tunnel) {
        let mut st = self.shared.lock();
        if let Some(ts) = st.tunnels.get_mut(&t.id) {
            ts.closed = true;
            for slot in &ts.slots {
                if let Some(p) = &slot.peer {
                    let _ = p
                        .control
                        .send(Control::Close(1000, "Tunnel is closed".into()));
                }
            }
        }
    }

    fn with_peer(&self, t: &Tunnel, m: Mode, c: Control) -> bool {
        let st = self.shared.lock();
        match st
            .tunnels
            .get(&t.id)
            .and_then(|ts| ts.slots[idx(m)].peer.as_ref())
        {
            Some(p) => p.control.send(c).is_ok(),
            None => false,
        }
    }

    /// Ends a peer's connection. Returns false if it was not connected.
    pub fn drop_peer(&self, t: &Tunnel, m: Mode, how: How) -> bool {
        let c = match how {
            How::Abort => Control::Abort,
            How::Close => Control::Close(1000, "Tunnel is closed".into()),
        };
        self.with_peer(t, m, c)
    }

    /// Stops (true) or resumes (false) reading and writing a peer's socket.
    pub fn freeze_peer(&self, t: &Tunnel, m: Mode, frozen: bool) -> bool {
        self.with_peer(t, m, Control::Freeze(frozen))
    }

    /// Sends `bytes` to a peer as one binary frame.
    pub fn inject(&self, t: &Tunnel, m: Mode, bytes: &[u8]) -> bool {
        let msg = tungstenite::Message::Binary(tungstenite::Bytes::copy_from_slice(bytes));
        self.with_peer(t, m, Control::Raw(msg))
    }

    /// Sends an encoded tunnel message to a peer.
    pub fn inject_message(&self, t: &Tunnel, m: Mode, msg: &Message<'_>) -> bool {
        let mut buf = Vec::new();
        if codec::encode(msg, &mut buf).is_err() {
            return false;
        }
        self.inject(t, m, &buf)
    }

    /// Sends any WebSocket message (a text frame, an oversized frame, a pong).
    pub fn inject_ws(&self, t: &Tunnel, m: Mode, msg: tungstenite::Message) -> bool {
        self.with_peer(t, m, Control::Raw(msg))
    }

    /// The next peer of mode `m` to connect plays `case` for `duration` instead of
    /// relaying, then its connection is dropped; later connections are served normally.
    pub fn set_hostile(&self, m: Mode, case: Option<(hostile::Case, Duration)>) {
        self.set_hostile_times(m, case, 1);
    }

    /// [`Testbed::set_hostile`] for the next `times` connections of mode `m`.
    pub fn set_hostile_times(&self, m: Mode, case: Option<(hostile::Case, Duration)>, times: u32) {
        let mut st = self.shared.lock();
        st.hostile[idx(m)] = case.filter(|_| times > 0).map(|(c, d)| (c, d, times));
        st.hostile_report = None;
    }

    /// The next connection attempt (any mode) gets `answer` instead of a good TLS
    /// handshake or upgrade; several queued answers go to the attempts in turn.
    pub fn queue_answer(&self, answer: hostile::Answer) {
        self.shared.lock().answers.push_back(answer);
    }

    /// Waits until a hostile case has ended and returns what it did.
    pub fn wait_hostile_report(&self, timeout: Duration) -> Option<hostile::Report> {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(r) = st.hostile_report.clone() {
                return Some(r);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().delay = d;
    }

    /// Reads each peer's socket at most `mib_per_s` MiB/s, in reads of at most 16 KiB
    /// (`None`, the default: as fast as data comes). The relay as the internet drains
    /// it: the proxies' TLS sockets fill and their queues fill and drain. Applies to
    /// connected peers too.
    pub fn set_relay_rate(&self, mib_per_s: Option<f64>) {
        self.shared.lock().relay_rate = mib_per_s
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| r * (1u64 << 20) as f64);
    }

    /// Whether a peer of mode `m` is connected to the tunnel now.
    pub fn is_connected(&self, t: &Tunnel, m: Mode) -> bool {
        self.slot(t, m, |s| s.peer.is_some()).unwrap_or(false)
    }

    /// Re-cuts relayed bytes into frames of random sizes in [min, max].
    pub fn set_recut(&self, r: Option<(usize, usize)>) {
        self.shared.lock().recut = r.map(|(a, b)| (a.max(1), b.max(a.max(1))));
    }

    /// Sends each relayed message as a fragmented WebSocket message of frames of at most
    /// `n` bytes, as the reference does with n = 4096.
    pub fn set_fragment(&self, n: Option<usize>) {
        self.shared.lock().fragment = n.map(|n| n.max(1));
    }

    /// Answers every upgrade with this status.
    pub fn reject_upgrades(&self, status: Option<u16>) {
        self.shared.lock().reject = status;
    }

    pub fn single_use_tokens(&self, on: bool) {
        self.shared.lock().single_use = on;
    }

    /// Records messages for [`Testbed::recorded`] (on by default; benchmarks turn it off).
    pub fn set_recording(&self, on: bool) {
        self.shared.lock().record = on;
    }

    fn slot<R>(&self, t: &Tunnel, m: Mode, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        let st = self.shared.lock();
        st.tunnels.get(&t.id).map(|ts| f(&ts.slots[idx(m)]))
    }

    pub fn recorded(&self, t: &Tunnel, m: Mode) -> Vec<Recorded> {
        self.slot(t, m, |s| s.recorded.clone()).unwrap_or_default()
    }

    /// Successful upgrades for this tunnel and mode so far.
    pub fn connection_count(&self, t: &Tunnel, m: Mode) -> usize {
        self.slot(t, m, |s| s.connections).unwrap_or(0)
    }

    pub fn close_frames(&self, t: &Tunnel, m: Mode) -> usize {
        self.slot(t, m, |s| s.close_frames).unwrap_or(0)
    }

    pub fn subprotocol(&self, t: &Tunnel, m: Mode) -> Option<String> {
        self.slot(t, m, |s| s.subprotocol.clone()).flatten()
    }

    pub fn client_token_seen(&self, t: &Tunnel, m: Mode) -> bool {
        self.slot(t, m, |s| s.client_token_seen).unwrap_or(false)
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Waits until `pred` holds for the tunnel's slot of mode `m`.
    pub(crate) fn wait_slot(
        &self,
        t: &Tunnel,
        m: Mode,
        timeout: Duration,
        pred: impl Fn(&Slot) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if st
                .tunnels
                .get(&t.id)
                .is_some_and(|ts| pred(&ts.slots[idx(m)]))
            {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    pub fn wait_recorded(
        &self,
        t: &Tunnel,
        m: Mode,
        timeout: Duration,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> bool {
        self.wait_slot(t, m, timeout, |s| pred(&s.recorded))
    }

    pub fn wait_connected(&self, t: &Tunnel, m: Mode, timeout: Duration) -> bool {
        self.wait_slot(t, m, timeout, |s| s.peer.is_some())
    }

    /// Waits until at least `n` upgrades for this tunnel and mode succeeded.
    pub fn wait_connections(&self, t: &Tunnel, m: Mode, n: usize, timeout: Duration) -> bool {
        self.wait_slot(t, m, timeout, |s| s.connections >= n && s.peer.is_some())
    }

    pub fn wait_disconnected(&self, t: &Tunnel, m: Mode, timeout: Duration) -> bool {
        self.wait_slot(t, m, timeout, |s| s.peer.is_none())
    }

    pub fn wait_close_frame(&self, t: &Tunnel, m: Mode, timeout: Duration) -> bool {
        self.wait_slot(t, m, timeout, |s| s.close_frames > 0)
    }
}

/// The service's side of TLS: 1.2 and 1.3, AES-GCM before ChaCha20 for 1.2, OpenSSL's
/// default 1.3 suites in the client's order, as AWS's current TLS policies offer.
/// (native-tls's acceptor follows Mozilla's older intermediate profile: TLS 1.2 only,
/// ChaCha20 first by server preference, which made every benchmark measure ChaCha20.)
fn tls_context(certs: &certs::Certs) -> Result<SslContext, openssl::error::ErrorStack> {
    let mut b = SslContext::builder(SslMethod::tls_server())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_cipher_list(
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
    )?;
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::NO_COMPRESSION);
    b.set_certificate(&certs.leaf)?;
    b.set_private_key(&certs.leaf_key)?;
    b.check_private_key()?;
    Ok(b.build())
}
