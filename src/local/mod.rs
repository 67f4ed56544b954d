//! The local thread: owns every local socket (source listeners, accepted connections,
//! destination connections to the targets) and moves bytes between them and the tunnel
//! thread.
//!
//! It makes no protocol decisions: the tunnel thread's session tells it what to listen
//! on, connect, write and close, and it reports accepts, connects, reads and closes back.
//! It blocks only in `poll(2)`; connects (TCP and Unix sockets) are non-blocking with
//! retries on timers, and name lookups (destination hosts, listen addresses) run on
//! throwaway threads ([`crate::resolve`]), so a slow or black-holed target or resolver
//! never delays data on another connection. Memory is bounded by two shared byte
//! counters ([`Shared`]): reading stops while too much is queued towards the tunnel,
//! and the tunnel thread stops reading the WebSocket while too much is queued towards
//! local sockets.

use crate::config::Target;
use crate::link::{Bytes, Event, Limits, Lookup, Shared, ToLocal, ToTunnel};
use crate::logging;
use crate::protocol::DATA_HEADROOM;
use crate::resolve;
use crate::session::{shown, LocalId, ACCEPTED_ID_BASE, HOLD};
use crate::sys::{self, Interest, PollSet, Recv, Waker};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod dial;
mod listen;

/// How long one connect attempt to a destination target (TCP or Unix socket) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long queued data may take to drain when the process stops.
pub(crate) const FLUSH_ON_EXIT: Duration = Duration::from_millis(1000);
/// Reads per connection per wake-up, so one busy connection cannot starve the others.
const READS_PER_WAKE: usize = 4;

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn fd(&self) -> i32 {
        match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
        }
    }
    /// One `writev` of as many queued buffers as fit in one call.
    fn write_queue(&mut self, out: &VecDeque<Bytes>) -> io::Result<usize> {
        let mut slices = [io::IoSlice::new(&[]); 32];
        let mut n = 0;
        for (slot, b) in slices.iter_mut().zip(out.iter()) {
            *slot = io::IoSlice::new(b);
            n += 1;
        }
        match self {
            Sock::Tcp(s) => s.write_vectored(&slices[..n]),
            Sock::Unix(s) => s.write_vectored(&slices[..n]),
        }
    }
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }
    fn shutdown(&self) {
        let _ = match self {
            Sock::Tcp(s) => s.shutdown(Shutdown::Both),
            Sock::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

enum State {
    /// Waiting for the name lookup with this ticket (0: none started yet).
    Resolving {
        ticket: u64,
    },
    /// Waiting until `at` to try again.
    Waiting {
        at: Instant,
    },
    /// A connect to `addrs[next - 1]` is under way until `deadline`.
    Connecting {
        deadline: Instant,
    },
    Open,
}

struct Conn {
    service: usize,
    sock: Option<Sock>,
    state: State,
    target: Option<Target>,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    attempts: i64,
    out: VecDeque<Bytes>,
    out_len: usize,
    /// No more reads: EOF seen, or the session closed it; close once `out` is empty.
    closing: bool,
    /// The socket said WouldBlock at the last write: wait for poll to say writable.
    blocked: bool,
    /// Held by the session (a V1/V2 source's second client): not read until released;
    /// `Some(deadline)` until the session has been told the hold expired.
    held: Option<Option<Instant>>,
    opened: Instant,
    bytes_in: u64,
    bytes_out: u64,
    peer: String,
    /// Source: when to say that nothing came back through the tunnel (see
    /// [`NO_ANSWER`]); cleared by the first byte back.
    answer_due: Option<Instant>,
}

/// How long a source's client may send without anything coming back before one line
/// asks whether a destination is connected: the service does not tell a source that
/// no destination is there, and the client just hangs.
pub(crate) const NO_ANSWER: Duration = Duration::from_secs(10);

struct Listener {
    service: usize,
    service_id: String,
    host: String,
    port: u16,
    sock: Option<TcpListener>,
    attempts: i64,
    retry_at: Option<Instant>,
    /// The ticket of the name lookup under way.
    resolving: Option<u64>,
}

#[derive(Clone, Copy)]
enum Slot {
    Wake,
    Listener(usize),
    Conn(LocalId),
}

/// The local thread's state. Create with [`LocalThread::new`], then call `run`.
pub(crate) struct LocalThread {
    limits: Limits,
    rx: sys::Receiver<ToLocal>,
    me: sys::Sender<ToLocal>,
    events: sys::Sender<ToTunnel>,
    tunnel_waker: Arc<Waker>,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    conns: HashMap<LocalId, Conn>,
    /// Connections with new data to write whose sockets had room at the last write.
    dirty: Vec<LocalId>,
    next_accept_id: LocalId,
    /// The last lookup ticket handed out.
    last_ticket: u64,
    /// Destination targets being looked up, and the ticket every connection waiting
    /// for that name shares: one lookup thread per name in flight, however many
    /// connections a peer starts and resets meanwhile.
    lookups: HashMap<(String, u16), u64>,
    stopping: Option<Instant>,
}

impl LocalThread {
    /// `me` must be a sender of `rx`'s channel (lookup threads report through it).
    pub(crate) fn new(
        limits: Limits,
        rx: sys::Receiver<ToLocal>,
        me: sys::Sender<ToLocal>,
        events: sys::Sender<ToTunnel>,
        shared: Arc<Shared>,
    ) -> LocalThread {
        let tunnel_waker = events.waker().clone();
        LocalThread {
            limits,
            rx,
            me,
            events,
            tunnel_waker,
            shared,
            listeners: Vec::new(),
            conns: HashMap::new(),
            dirty: Vec::new(),
            next_accept_id: ACCEPTED_ID_BASE + 1,
            last_ticket: 0,
            lookups: HashMap::new(),
            stopping: None,
        }
    }

    fn emit(&self, e: Event) {
        // The tunnel thread outlives us in every orderly path; if it is gone, we are
        // stopping anyway.
        let _ = self.events.send(ToTunnel::Local(e));
    }

    /// Runs until `ToLocal::Shutdown` or until every sender is gone.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let waker = self.rx.waker().clone();
        let mut set = PollSet::new();
        let mut slots: Vec<Slot> = Vec::new();
        loop {
            loop {
                match self.rx.try_recv() {
                    Recv::Msg(c) => self.command(c),
                    Recv::Empty => break,
                    Recv::Closed => return Ok(()),
                }
            }
            // Data for sockets that had room at the last write goes out now, not after a
            // poll that would only say they still have room.
            for local in std::mem::take(&mut self.dirty) {
                if let Err(e) = self.flush(local) {
                    self.failed(local, e);
                }
            }
            let now = Instant::now();
            self.timers(now);
            if let Some(deadline) = self.stopping {
                if self.conns.values().all(|c| c.out.is_empty()) || now >= deadline {
                    self.close_everything();
                    return Ok(());
                }
            }

            let can_read = self.update_local_pause();
            set.clear();
            slots.clear();
            set.push(waker.fd(), Interest::READ);
            slots.push(Slot::Wake);
            if self.stopping.is_none() {
                for (i, l) in self.listeners.iter().enumerate() {
                    if let Some(s) = &l.sock {
                        set.push(s.as_raw_fd(), Interest::READ);
                        slots.push(Slot::Listener(i));
                    }
                }
            }
            let mut deadline: Option<Instant> = self.stopping;
            for (&id, c) in &self.conns {
                let Some(sock) = &c.sock else { continue };
                let interest = match c.state {
                    State::Connecting { deadline: d } => {
                        deadline = Some(deadline.map_or(d, |x| x.min(d)));
                        Interest::WRITE
                    }
                    State::Open => Interest {
                        read: can_read && !c.closing && c.held.is_none() && self.stopping.is_none(),
                        write: !c.out.is_empty(),
                    },
                    _ => continue,
                };
                if interest != Interest::NONE {
                    set.push(sock.fd(), interest);
                    slots.push(Slot::Conn(id));
                }
            }
            for c in self.conns.values() {
                if let Some(Some(at)) = c.held {
                    deadline = Some(deadline.map_or(at, |x| x.min(at)));
                }
                if let Some(at) = c.answer_due {
                    deadline = Some(deadline.map_or(at, |x| x.min(at)));
                }
                if let State::Waiting { at } = c.state {
                    deadline = Some(deadline.map_or(at, |x| x.min(at)));
                }
            }
            for l in &self.listeners {
                if let Some(at) = l.retry_at {
                    deadline = Some(deadline.map_or(at, |x| x.min(at)));
                }
            }
            if let Some(due) = logging::flush_noise() {
                deadline = Some(deadline.map_or(due, |x| x.min(due)));
            }
            let timeout = if self.rx.prepare_sleep() {
                sys::until(deadline)
            } else {
                Some(Duration::ZERO)
            };
            set.wait(timeout)?;
            waker.settle();
            // Connections before listeners: a client that closes and at once connects
            // again (scp after ssh) must have its end reported before the new accept,
            // or a one-connection-at-a-time source would refuse the new one.
            let mut accepts = Vec::new();
            for (i, slot) in slots.iter().enumerate() {
                let r = set.ready(i);
                if !r.any() {
                    continue;
                }
                match *slot {
                    Slot::Wake => {}
                    Slot::Listener(idx) => accepts.push(idx),
                    Slot::Conn(id) => self.conn_ready(id, r),
                }
            }
            for idx in accepts {
                self.accept(idx);
            }
        }
    }

    /// Pauses reading while too much waits for the tunnel; returns whether reads may go on.
    /// Reading pauses when `to_tunnel` reaches its bound and resumes when it is down to
    /// half of it (the tunnel thread wakes us then): a wake-up reads a batch.
    fn update_local_pause(&self) -> bool {
        self.shared.to_tunnel.may_produce(self.limits.to_tunnel_max)
    }

    fn command(&mut self, c: ToLocal) {
        if c.counted() && self.shared.commands.release(1, crate::link::MAX_COMMANDS) {
            self.tunnel_waker.wake();
        }
        match c {
            ToLocal::Listen {
                service,
                service_id,
                host,
                port,
            } => {
                self.listeners.push(Listener {
                    service,
                    service_id,
                    host,
                    port,
                    sock: None,
                    attempts: 0,
                    retry_at: None,
                    resolving: None,
                });
                let idx = self.listeners.len() - 1;
                self.bind(idx);
            }
            ToLocal::Connect {
                local,
                service,
                target,
            } => self.connect(local, service, target),
            ToLocal::Write { local, data } => match self.conns.get_mut(&local) {
                Some(c) if c.sock.is_some() || !matches!(c.state, State::Open) => {
                    c.out_len += data.len();
                    c.out.push_back(data);
                    if matches!(c.state, State::Open) && !c.blocked && !self.dirty.contains(&local)
                    {
                        self.dirty.push(local);
                    }
                }
                _ => self.release_to_local(data.len()),
            },
            ToLocal::Close { local } => {
                if let Some(c) = self.conns.get_mut(&local) {
                    c.closing = true;
                    if c.out.is_empty() || !matches!(c.state, State::Open) {
                        self.drop_conn(local, false);
                    }
                }
            }
            ToLocal::Hold { local } => {
                if let Some(c) = self.conns.get_mut(&local) {
                    c.held = Some(Some(Instant::now() + HOLD));
                }
            }
            ToLocal::Release { local } => {
                if let Some(c) = self.conns.get_mut(&local) {
                    c.held = None;
                }
            }
            ToLocal::Refuse { local } => {
                if let Some(c) = self.conns.remove(&local) {
                    if let Some(s) = &c.sock {
                        s.shutdown();
                    }
                    self.release_to_local(c.out_len);
                }
            }
            ToLocal::Shutdown => {
                self.stopping = Some(Instant::now() + FLUSH_ON_EXIT);
                for c in self.conns.values_mut() {
                    c.closing = true;
                }
            }
            ToLocal::Resolved {
                of: Lookup::Conns,
                ticket,
                addrs,
            } => {
                self.lookups.retain(|_, t| *t != ticket);
                let waiting: Vec<LocalId> = self
                    .conns
                    .iter()
                    .filter(
                        |(_, c)| matches!(c.state, State::Resolving { ticket: t } if t == ticket),
                    )
                    .map(|(&id, _)| id)
                    .collect();
                for local in waiting {
                    let copy = match &addrs {
                        Ok(a) => Ok(a.clone()),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    self.resolved(local, copy);
                }
            }
            ToLocal::Resolved {
                of: Lookup::Listener(idx),
                ticket,
                addrs,
            } => {
                if self
                    .listeners
                    .get(idx)
                    .is_some_and(|l| l.resolving == Some(ticket))
                {
                    self.listen_on(idx, addrs);
                }
            }
        }
    }

    /// Starts a name lookup on a throwaway thread; its answer comes back as
    /// [`ToLocal::Resolved`] with the returned ticket.
    fn start_lookup(&mut self, of: Lookup, host: &str, port: u16) -> io::Result<u64> {
        self.last_ticket += 1;
        let ticket = self.last_ticket;
        let me = self.me.clone();
        resolve::spawn(host, port, move |addrs| {
            // The local thread may be gone (shutdown): then nobody waits for this.
            let _ = me.send(ToLocal::Resolved { of, ticket, addrs });
        })?;
        Ok(ticket)
    }

    fn timers(&mut self, now: Instant) {
        let due: Vec<LocalId> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.state {
                State::Waiting { at } => at <= now,
                State::Connecting { deadline } => deadline <= now,
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let timed_out = matches!(
                self.conns.get(&id).map(|c| &c.state),
                Some(State::Connecting { .. })
            );
            if timed_out {
                let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.connect_error(id, err);
            } else {
                self.try_connect(id);
            }
        }
        let expired: Vec<LocalId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.held, Some(Some(at)) if at <= now))
            .map(|(&id, _)| id)
            .collect();
        for local in expired {
            if let Some(c) = self.conns.get_mut(&local) {
                c.held = Some(None);
            }
            self.emit(Event::HoldExpired { local });
        }
        for idx in 0..self.listeners.len() {
            if self.listeners[idx].retry_at.is_some_and(|at| at <= now) {
                self.bind(idx);
            }
        }
        self.no_answer(now);
    }

    /// One line for each source connection whose client sent data and got nothing
    /// back within [`NO_ANSWER`]: the usual cause is that no destination is connected
    /// (or it is still connecting its target). The connection stays open.
    fn no_answer(&mut self, now: Instant) {
        for (&local, c) in self.conns.iter_mut() {
            if c.answer_due.is_none_or(|at| at > now) {
                continue;
            }
            c.answer_due = None;
            if c.bytes_out > 0 || c.bytes_in == 0 {
                continue;
            }
            let name = self
                .listeners
                .iter()
                .find(|l| l.service == c.service)
                .map_or("", |l| l.service_id.as_str());
            let name = if name.is_empty() { "(unnamed)" } else { name };
            crate::logging::peer_log!(
                crate::logging::Noise::NoAnswer,
                log::Level::Warn,
                "connection {} ({name}): {} sent, nothing back in {} s: is a destination \
                 connected?",
                shown(local),
                crate::logging::size(c.bytes_in),
                NO_ANSWER.as_secs()
            );
        }
    }

    fn conn_ready(&mut self, local: LocalId, r: sys::Ready) {
        let Some(c) = self.conns.get_mut(&local) else {
            return;
        };
        if let State::Connecting { .. } = c.state {
            let err = match &c.sock {
                Some(s) => s.take_error().unwrap_or_else(Some),
                None => None,
            };
            match err {
                None if r.write => self.connected(local),
                None => {}
                Some(e) => self.connect_error(local, e),
            }
            return;
        }
        if r.write || r.hangup {
            if let Some(c) = self.conns.get_mut(&local) {
                c.blocked = false;
            }
            if let Err(e) = self.flush(local) {
                self.failed(local, e);
                return;
            }
        }
        if r.read || r.hangup {
            self.read(local);
        }
    }

    fn flush(&mut self, local: LocalId) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(&local) else {
            return Ok(());
        };
        let Some(sock) = c.sock.as_mut() else {
            return Ok(());
        };
        let mut written = 0usize;
        let result = loop {
            if c.out.is_empty() {
                break Ok(());
            }
            match sock.write_queue(&c.out) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(mut n) => {
                    written += n;
                    while n > 0 {
                        let Some(front) = c.out.front_mut() else {
                            break;
                        };
                        if n >= front.len() {
                            n -= front.len();
                            c.out.pop_front();
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.blocked = true;
                    break Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        c.out_len -= written;
        c.bytes_out += written as u64;
        if written > 0 {
            c.answer_due = None;
        }
        let done = c.closing && c.out.is_empty();
        self.shared.bytes_to_local.add(written as u64);
        self.release_to_local(written);
        result?;
        if done {
            self.drop_conn(local, false);
        }
        Ok(())
    }

    /// Frees `n` bytes of the tunnel → local budget and wakes the tunnel thread if it
    /// stopped reading for lack of it and the queue is down to its low-water mark.
    fn release_to_local(&self, n: usize) {
        if n == 0 {
            return;
        }
        if self.shared.to_local.release(n, self.limits.to_local_max) {
            self.tunnel_waker.wake();
        }
    }

    fn read(&mut self, local: LocalId) {
        for _ in 0..READS_PER_WAKE {
            if self.shared.to_tunnel.queued() >= self.limits.to_tunnel_max {
                return;
            }
            let Some(c) = self.conns.get_mut(&local) else {
                return;
            };
            if c.closing {
                return;
            }
            let Some(sock) = c.sock.as_mut() else { return };
            // Read straight behind the header room: the buffer goes to the tunnel as is.
            let mut buf = Vec::with_capacity(DATA_HEADROOM + self.limits.read_chunk);
            buf.resize(DATA_HEADROOM, 0);
            match sys::read_into(sock.fd(), &mut buf, self.limits.read_chunk) {
                Ok(0) => {
                    log::debug!("connection {}: the local peer closed it", shown(local));
                    c.closing = true;
                    self.emit(Event::Closed { local });
                    if self.conns.get(&local).is_some_and(|c| c.out.is_empty()) {
                        self.drop_conn(local, false);
                    }
                    return;
                }
                Ok(n) => {
                    c.bytes_in += n as u64;
                    if n < self.limits.read_chunk / 4 {
                        // The queue towards the tunnel is bounded in payload bytes: do
                        // not let small reads hold large buffers.
                        buf.shrink_to_fit();
                    }
                    self.shared.to_tunnel.add(n);
                    self.shared.bytes_from_local.add(n as u64);
                    self.emit(Event::Data { local, buf });
                    if n < self.limits.read_chunk {
                        // The socket had no more for now: skip the WouldBlock read.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed(local, e);
                    return;
                }
            }
        }
    }

    /// The socket failed: report it (unless the session already closed it) and drop it.
    fn failed(&mut self, local: LocalId, e: io::Error) {
        let Some(c) = self.conns.get(&local) else {
            return;
        };
        log::debug!("connection {}: {e}", shown(local));
        let report = !c.closing;
        self.drop_conn(local, report);
    }

    fn drop_conn(&mut self, local: LocalId, report: bool) {
        let Some(c) = self.conns.remove(&local) else {
            return;
        };
        if let Some(s) = &c.sock {
            s.shutdown();
        }
        self.release_to_local(c.out_len);
        if report {
            self.emit(Event::Closed { local });
        }
        let peer = &c.peer;
        // "in" is what the local peer sent, "out" what it was sent. Sizes are short
        // so the line fits an 80-column console.
        log::info!(
            "connection {} ({peer}) closed after {:.2} s, {} in, {} out",
            shown(local),
            c.opened.elapsed().as_secs_f64(),
            crate::logging::size(c.bytes_in),
            crate::logging::size(c.bytes_out)
        );
    }

    fn close_everything(&mut self) {
        let ids: Vec<LocalId> = self.conns.keys().copied().collect();
        for id in ids {
            self.drop_conn(id, false);
        }
        self.listeners.clear();
    }
}

impl Conn {
    fn new(service: usize, sock: Option<Sock>, state: State, peer: String) -> Conn {
        Conn {
            service,
            sock,
            state,
            target: None,
            addrs: Vec::new(),
            next_addr: 0,
            attempts: 0,
            out: VecDeque::new(),
            out_len: 0,
            closing: false,
            blocked: false,
            held: None,
            opened: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            peer,
            answer_due: None,
        }
    }
}
