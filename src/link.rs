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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A DATA payload on its way to a local socket: one allocation, written from the front
/// ([`Bytes::advance`] after a partial write), never copied again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bytes {
    buf: Box<[u8]>,
    /// Bytes already written from the front.
    start: usize,
}

impl Bytes {
    pub(crate) fn copy_from_slice(data: &[u8]) -> Bytes {
        Bytes {
            buf: data.into(),
            start: 0,
        }
    }

    /// Drops `n` written bytes from the front (at most what is left).
    pub(crate) fn advance(&mut self, n: usize) {
        self.start = self.buf.len().min(self.start.saturating_add(n));
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

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

impl ToLocal {
    /// Counted in [`Shared::commands`]: everything the tunnel thread sends but data
    /// (counted in bytes) and what others send (lookup answers, main's Shutdown).
    pub(crate) fn counted(&self) -> bool {
        matches!(
            self,
            ToLocal::Listen { .. }
                | ToLocal::Connect { .. }
                | ToLocal::Close { .. }
                | ToLocal::Refuse { .. }
                | ToLocal::Hold { .. }
                | ToLocal::Release { .. }
        )
    }
}

/// Bound of [`Shared::commands`]: a flood of starts and resets from the peer pauses the
/// tunnel's reading, rather than queueing connects and closes without end while the
/// local thread is slow.
pub(crate) const MAX_COMMANDS: usize = 1024;

/// What a name lookup is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    /// Destination connects: every connection whose state waits for the ticket.
    Conns,
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
    /// Payload bytes read from local sockets and not yet taken by the tunnel thread
    /// (the local thread produces, bound `Limits::to_tunnel_max`).
    pub(crate) to_tunnel: Budget,
    /// Payload bytes handed to the local thread and not yet written to a socket (the
    /// tunnel thread produces, bound `Limits::to_local_max`).
    pub(crate) to_local: Budget,
    /// Commands other than data the tunnel thread queued for the local thread and it has
    /// not taken yet ([`ToLocal::counted`], bound [`MAX_COMMANDS`]).
    pub(crate) commands: Budget,
    /// New local connections may be accepted (the tunnel is open and ready).
    pub(crate) tunnel_ready: AtomicBool,
    /// Payload bytes read from local sockets / written to local sockets, in total.
    pub(crate) bytes_from_local: Counter,
    pub(crate) bytes_to_local: Counter,
}

/// Payload bytes queued from one thread to the other, and whether the producing thread
/// stopped for lack of room. The producer stops at the bound and is woken when the
/// consumer has taken the queue down to half of it (high- and low-water marks), so a
/// wake-up moves a batch rather than one message.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    queued: AtomicUsize,
    paused: AtomicBool,
}

impl Budget {
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// The producer queued `n` bytes.
    pub(crate) fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::SeqCst);
    }

    /// The producer asks whether it may go on. Below `max` it may, unless it paused and
    /// the queue is not yet down to half; otherwise it is marked paused and the
    /// consumer's [`release`](Budget::release) will say when to wake it.
    pub(crate) fn may_produce(&self, max: usize) -> bool {
        let queued = self.queued();
        let paused = self.paused.load(Ordering::SeqCst);
        if queued < max && !(paused && queued > max / 2) {
            self.paused.store(false, Ordering::SeqCst);
            return true;
        }
        self.paused.store(true, Ordering::SeqCst);
        // The consumer may have drained the queue between the load and the store.
        if self.queued() <= max / 2 {
            self.paused.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The consumer took `n` bytes. True once when the producer paused and the queue is
    /// now down to half of `max`: the caller wakes the producer.
    pub(crate) fn release(&self, n: usize, max: usize) -> bool {
        let before = self.queued.fetch_sub(n, Ordering::SeqCst);
        before.saturating_sub(n) <= max / 2 && self.paused.swap(false, Ordering::SeqCst)
    }
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

#[cfg(test)]
mod tests {
    use super::{Budget, Bytes};

    #[test]
    fn a_payload_is_written_from_the_front_after_partial_writes() {
        let mut b = Bytes::copy_from_slice(b"hello world");
        assert_eq!(&*b, b"hello world");
        b.advance(6);
        assert_eq!(&*b, b"world");
        b.advance(100);
        assert!(
            b.is_empty(),
            "advancing past the end leaves nothing, never panics"
        );
    }

    #[test]
    fn a_budget_pauses_at_its_bound_and_wakes_the_producer_once_at_half() {
        let b = Budget::default();
        b.add(99);
        assert!(b.may_produce(100), "under the bound");
        b.add(1);
        assert!(!b.may_produce(100), "at the bound");
        assert!(!b.release(10, 100), "90 left: above half, no wake-up");
        assert!(
            !b.may_produce(100),
            "paused until half, though under the bound"
        );
        assert!(b.release(40, 100), "50 left: wake the producer");
        assert!(!b.release(10, 100), "it was woken already");
        assert!(b.may_produce(100));
        assert_eq!(b.queued(), 40);
    }

    #[test]
    fn a_producer_that_drained_meanwhile_is_not_left_paused() {
        let b = Budget::default();
        b.add(100);
        assert!(!b.may_produce(100));
        // The consumer takes everything without the producer asking in between.
        assert!(b.release(100, 100));
        assert!(b.may_produce(100));
        assert!(!b.release(0, 100), "nobody paused");
    }
}
