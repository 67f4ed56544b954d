//! Everything the two I/O threads exchange, and nothing else: the messages each sends
//! the other ([`ToLocal`], [`ToTunnel`], [`Event`]), the counters and flags they share
//! for flow control and status ([`Shared`]), and the local side's limits ([`Limits`]).
//! The tunnel thread (`tunnel`) and the local thread (`local`) import this file, never
//! each other.
//!
//! A byte's path: a local socket read lands in a buffer with room for the DATA header in
//! front ([`Event::Data`], counted in [`Shared::to_tunnel`]); the tunnel thread writes the
//! header in place and sends it as a WebSocket frame. A DATA payload from the tunnel goes
//! to the local thread as a slice of the received frame ([`ToLocal::Write`], counted in
//! [`Shared::to_local`]), which writes it to the socket.

use crate::config::Target;
use crate::session::LocalId;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;
use tungstenite::Bytes;

/// What the tunnel thread (or main) asks of the local thread.
#[derive(Debug)]
pub(crate) enum ToLocal {
    Listen {
        service: usize,
        service_id: String,
        host: String,
        port: u16,
    },
    Connect {
        local: LocalId,
        service: usize,
        target: Target,
    },
    /// Bytes for a local connection; counted in [`Shared::to_local`].
    Write { local: LocalId, data: Bytes },
    /// Close after writing what is queued.
    Close { local: LocalId },
    /// Close at once, without a log line (the session already said why).
    Refuse { local: LocalId },
    /// Keep `local` open but do not read it (see `session::Output::Hold`); report
    /// [`Event::HoldExpired`] after `session::HOLD`.
    Hold { local: LocalId },
    /// Start reading a held connection.
    Release { local: LocalId },
    /// Stop: flush what can be flushed within `local::FLUSH_ON_EXIT`, close everything, return.
    Shutdown,
    /// A name lookup finished (sent by the lookup thread). Only the answer with the
    /// awaited `ticket` is used: a connection or listener may have moved on since.
    Resolved {
        of: Lookup,
        ticket: u64,
        addrs: io::Result<Vec<SocketAddr>>,
    },
}

/// What a name lookup is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    /// A destination connect.
    Conn(LocalId),
    /// A source listener's bind address (index into the listeners).
    Listener(usize),
}

/// What the local thread reports to the tunnel thread.
#[derive(Debug)]
pub(crate) enum Event {
    Accepted {
        local: LocalId,
        service: usize,
    },
    Connected {
        local: LocalId,
    },
    ConnectFailed {
        local: LocalId,
    },
    /// Bytes read from `local`: the payload is `buf[DATA_HEADROOM..]`, with room in front
    /// for the DATA header. Counted in [`Shared::to_tunnel`].
    Data {
        local: LocalId,
        buf: Vec<u8>,
    },
    Closed {
        local: LocalId,
    },
    Listening {
        service: usize,
    },
    /// A listener could not be bound after the retries: the process gives up.
    ListenFailed {
        error: String,
    },
    /// A held connection waited `session::HOLD` for its turn.
    HoldExpired {
        local: LocalId,
    },
}

/// State both I/O threads share: flow-control counters, the tunnel's readiness, status
/// figures.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Payload bytes read from local sockets and not yet taken by the tunnel thread.
    pub(crate) to_tunnel: AtomicUsize,
    /// Payload bytes handed to the local thread and not yet written to a socket.
    pub(crate) to_local: AtomicUsize,
    /// The local thread stopped reading because `to_tunnel` is over its bound.
    pub(crate) local_paused: AtomicBool,
    /// The tunnel thread stopped reading because `to_local` is over its bound.
    pub(crate) tunnel_paused: AtomicBool,
    /// New local connections may be accepted (the tunnel is open and ready).
    pub(crate) tunnel_ready: AtomicBool,
    /// Payload bytes read from local sockets / written to local sockets, in total.
    pub(crate) bytes_from_local: Counter,
    pub(crate) bytes_to_local: Counter,
}

/// A byte counter for the status line: a 64-bit atomic where the CPU has one, a mutex
/// where it has not (32-bit MIPS), so it never wraps at 4 GiB.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    #[cfg(target_has_atomic = "64")]
    n: std::sync::atomic::AtomicU64,
    #[cfg(not(target_has_atomic = "64"))]
    n: std::sync::Mutex<u64>,
}

impl Counter {
    pub(crate) fn add(&self, v: u64) {
        #[cfg(target_has_atomic = "64")]
        self.n.fetch_add(v, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(target_has_atomic = "64"))]
        {
            let mut g = self.n.lock().unwrap_or_else(|p| p.into_inner());
            *g = g.wrapping_add(v);
        }
    }

    pub(crate) fn get(&self) -> u64 {
        #[cfg(target_has_atomic = "64")]
        return self.n.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(target_has_atomic = "64"))]
        return *self.n.lock().unwrap_or_else(|p| p.into_inner());
    }
}

/// Limits and retry policy of the local side.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Largest read from a local socket, so the largest DATA payload:
    /// tcp.read_buffer_size, at most message.max_payload_size.
    pub(crate) read_chunk: usize,
    /// Bound of `Shared::to_tunnel`.
    pub(crate) to_tunnel_max: usize,
    /// Bound of `Shared::to_local` (enforced by the tunnel thread).
    pub(crate) to_local_max: usize,
    /// Destination connect and source bind retries (-1 = forever) and their delay.
    pub(crate) retry_count: i64,
    pub(crate) retry_delay: Duration,
}

/// What reaches the tunnel thread: local events, and main's requests.
#[derive(Debug)]
pub(crate) enum ToTunnel {
    Local(Event),
    /// SIGTERM/SIGINT: send a close frame and stop.
    Shutdown,
    /// SIGUSR1: log one status line.
    Status,
}
