//! The OS calls std lacks: poll(2), an eventfd wake-up, channels that wake their
//! receiver, signal masks and `sigwait`, non-blocking TCP and Unix-socket connects, dropping
//! privileges, and the allocator front of the static musl builds ([`CachingAlloc`]).
//!
//! This is the only module with `unsafe`; every block says why it is sound. Nothing here
//! knows about the protocol.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};

/// What a poll entry waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
    pub const BOTH: Interest = Interest {
        read: true,
        write: true,
    };
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
    };
}

/// What poll reported for one entry. `hangup` covers POLLHUP and POLLERR: the caller
/// should try the operation and read the real error from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub read: bool,
    pub write: bool,
    pub hangup: bool,
}

impl Ready {
    pub fn any(self) -> bool {
        self.read || self.write || self.hangup
    }
}

/// A reusable set of file descriptors for one `poll(2)` call.
#[derive(Default)]
pub struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    pub fn new() -> PollSet {
        PollSet { fds: Vec::new() }
    }

    pub fn clear(&mut self) {
        self.fds.clear();
    }

    /// Adds `fd`; returns its index for [`PollSet::ready`].
    pub fn push(&mut self, fd: RawFd, interest: Interest) -> usize {
        let mut events = 0;
        if interest.read {
            events |= libc::POLLIN;
        }
        if interest.write {
            events |= libc::POLLOUT;
        }
        self.fds.push(libc::pollfd {
            fd,
            events,
            revents: 0,
        });
        self.fds.len() - 1
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Blocks until an entry is ready or `timeout` passes (`None` = no timeout).
    /// EINTR counts as "nothing ready". Returns how many entries are ready.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ms: libc::c_int = match timeout {
            None => -1,
            // Round up so a deadline 0.3 ms away does not turn into a busy loop.
            Some(d) => d.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
        };
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the whole
        // call, and its length is passed alongside it.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                for p in &mut self.fds {
                    p.revents = 0;
                }
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }

    pub fn ready(&self, idx: usize) -> Ready {
        let r = self.fds[idx].revents;
        Ready {
            read: r & libc::POLLIN != 0,
            write: r & libc::POLLOUT != 0,
            hangup: r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        }
    }
}

/// Time left until `deadline`, for a poll timeout (`None` = no deadline).
pub fn until(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// An eventfd: a counter another thread bumps to end our `poll`.
pub struct WakeFd {
    fd: OwnedFd,
}

impl WakeFd {
    pub fn new() -> io::Result<WakeFd> {
        // SAFETY: eventfd takes no pointers; a negative return is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(WakeFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the fd readable. Never blocks; a saturated counter is still readable.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an fd we own. Errors (EAGAIN when the
        // counter is saturated) leave the fd readable, which is all a wake needs.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Resets the counter so the fd stops being readable.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (already drained) is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8);
        }
    }
}

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The receiving thread's wake-up: the fd is written only when the receiver is (about
/// to be) asleep, so a busy receiver costs senders no system call. A wake that comes
/// while the receiver is busy is latched and stops its next sleep, so a wake for a
/// condition (buffer space freed) is never lost between the check and the sleep.
pub struct Waker {
    fd: WakeFd,
    armed: AtomicBool,
    notified: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker {
            fd: WakeFd::new()?,
            armed: AtomicBool::new(false),
            notified: AtomicBool::new(false),
        }))
    }

    /// Ends the receiver's poll if it is sleeping, or its next sleep if it is not.
    pub fn wake(&self) {
        self.notified.store(true, Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            self.fd.wake();
        }
    }

    /// Called by the owner before deciding to sleep: from now on a [`Waker::wake`]
    /// writes the fd. The owner must check its sources again after this.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by the owner after waking up.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.fd.drain();
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The sending half of a channel whose receiver sleeps in poll.
pub struct Sender<T> {
    tx: mpsc::Sender<T>,
    waker: Arc<Waker>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<T> Sender<T> {
    /// Queues `v` and wakes the receiver. Fails only when the receiver is gone.
    pub fn send(&self, v: T) -> Result<(), mpsc::SendError<T>> {
        self.tx.send(v)?;
        self.waker.wake();
        Ok(())
    }

    /// The receiver's waker, for signalling something that is not a message
    /// (e.g. "buffer space freed").
    pub fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }
}

/// The receiving half: `try_recv` in the loop, [`Receiver::prepare_sleep`] before poll.
pub struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    stash: Option<T>,
    waker: Arc<Waker>,
}

/// A channel whose sender wakes the receiver's poll through `waker`. Several channels
/// (and other wake sources) may share one waker.
pub fn channel_with<T>(waker: Arc<Waker>) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    (
        Sender {
            tx,
            waker: waker.clone(),
        },
        Receiver {
            rx,
            stash: None,
            waker,
        },
    )
}

/// Outcome of [`Receiver::try_recv`].
pub enum Recv<T> {
    Msg(T),
    Empty,
    /// Every sender is gone.
    Closed,
}

impl<T> Receiver<T> {
    pub fn try_recv(&mut self) -> Recv<T> {
        if let Some(v) = self.stash.take() {
            return Recv::Msg(v);
        }
        match self.rx.try_recv() {
            Ok(v) => Recv::Msg(v),
            Err(mpsc::TryRecvError::Empty) => Recv::Empty,
            Err(mpsc::TryRecvError::Disconnected) => Recv::Closed,
        }
    }

    /// Arms the waker and checks the queue once more. Returns false when a message is
    /// already waiting (poll with a zero timeout then), true when it is safe to sleep.
    pub fn prepare_sleep(&mut self) -> bool {
        self.waker.arm();
        if self.waker.notified.swap(false, Ordering::SeqCst) {
            // Something changed since the caller last looked: look again first.
            self.waker.disarm();
            return false;
        }
        if self.stash.is_none() {
            if let Ok(v) = self.rx.try_recv() {
                self.stash = Some(v);
            }
        }
        if self.stash.is_some() {
            self.waker.disarm();
            return false;
        }
        true
    }

    pub fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }

    /// Blocking receive with a timeout, for threads that do not poll sockets.
    pub fn recv_timeout(&mut self, d: Duration) -> Result<T, mpsc::RecvTimeoutError> {
        if let Some(v) = self.stash.take() {
            return Ok(v);
        }
        self.rx.recv_timeout(d)
    }
}

/// Builds a sigset from `sigs`.
fn sigset(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `sigs` in the calling thread; threads spawned afterwards inherit the mask, so
/// only a `sigwait` can take them.
pub fn block_signals(sigs: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(sigs);
    // SAFETY: `set` is a valid sigset; the old mask is not requested (null).
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits for one of `sigs` (which must be blocked) and returns it.
pub fn wait_signal(sigs: &[libc::c_int]) -> io::Result<libc::c_int> {
    let set = sigset(sigs);
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` and `sig` are valid for the duration of the call.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

/// Sends `sig` to this process (not to one thread), so the thread in `wait_signal` gets it.
pub fn signal_self(sig: libc::c_int) {
    // SAFETY: kill with our own pid and a valid signal number has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), sig);
    }
}

/// Sends `sig` to process `pid` (tests and the status helper use it).
pub fn send_signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory effects; the result is checked.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads at most `max` bytes from `fd` into the spare capacity of `buf` and extends its
/// length by what was read: a read with no zero-filling and no copy afterwards.
pub fn read_into(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = max.min(spare.len());
    // SAFETY: `spare` is memory owned by `buf` with room for `want` bytes; read(2) writes
    // at most `want` bytes there and nothing reads that memory before `set_len` below
    // covers exactly the bytes the kernel wrote.
    let r = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), want) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = r as usize;
    // SAFETY: the kernel initialised `r <= want` bytes right after the old length.
    unsafe { buf.set_len(buf.len() + r) };
    Ok(r)
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Resolves `NAME[:GROUP]` to (uid, gid); without a group, the user's primary group.
pub fn lookup_user(spec: &str) -> io::Result<(u32, u32)> {
    let (name, group) = match spec.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (spec, None),
    };
    let not_found =
        |what: &str| io::Error::new(io::ErrorKind::NotFound, format!("no {what} named {name}"));
    let cname = std::ffi::CString::new(name).map_err(|_| not_found("user"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r fills it and points its strings into
    // `buf`, which outlives every use of `pw`; `result` tells whether it found one.
    let (uid, mut gid) = unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        if result.is_null() {
            return Err(not_found("user"));
        }
        (pw.pw_uid, pw.pw_gid)
    };
    if let Some(g) = group {
        let cg = std::ffi::CString::new(g)
            .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "bad group name"))?;
        // SAFETY: as above, for group and getgrnam_r.
        gid = unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let r = libc::getgrnam_r(
                cg.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            if result.is_null() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no group named {g}"),
                ));
            }
            gr.gr_gid
        };
    }
    Ok((uid, gid))
}

/// Switches the whole process (every thread) to `uid`/`gid` and drops supplementary
/// groups; checks that root cannot be regained.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setgroups reads one gid from a live local; setgid/setuid take plain ids.
    // glibc and musl apply them to every thread of the process.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "root could be regained",
            ));
        }
    }
    Ok(())
}

/// Starts a non-blocking TCP connect to `addr`. The stream is writable (or in error) when
/// the connect finishes; check it with `TcpStream::take_error`.
pub fn connect_nonblocking(addr: &SocketAddr) -> io::Result<TcpStream> {
    let (domain, storage, len) = sockaddr(addr);
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nothing else owns; TcpStream takes ownership.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: `storage` holds a sockaddr of `len` bytes built by `sockaddr` for this
    // address family, and lives across the call.
    let r = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(stream)
}

/// Starts a non-blocking connect to the Unix stream socket at `path`. `Ok((s, true))`:
/// connected; `Ok((s, false))`: under way, and `s` turns writable (or in error) when it
/// finishes, like a TCP connect. A full listen backlog (EAGAIN) is an error of kind
/// `WouldBlock` that says so: retry it later like any failed connect.
pub fn connect_unix_nonblocking(path: &Path) -> io::Result<(UnixStream, bool)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // The path must fit with its terminating NUL (a leading NUL would name an abstract
    // socket, which a path never does).
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a Unix socket path must be 1 to {} bytes without NUL",
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nothing else owns; UnixStream takes ownership.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: `addr` is a sockaddr_un whose first `len` bytes hold the family and the
    // NUL-terminated path (`len` is at most its size), and it lives across the call.
    let r = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if r == 0 {
        return Ok((stream, true));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINPROGRESS) => Ok((stream, false)),
        Some(libc::EAGAIN) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the socket's listen backlog is full",
        )),
        _ => Err(e),
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for any
            // sockaddr type.
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin);
            }
            (
                libc::AF_INET,
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6);
            }
            (
                libc::AF_INET6,
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// A global allocator for the static musl builds: musl's malloc returns the memory of a
/// freed block of tens of KiB to the kernel at once, so every 64 KiB DATA buffer and
/// WebSocket frame cost an mmap, a munmap and 16 page faults (twice the CPU per GiB of
/// the glibc build). This front keeps up to [`CACHE_KEEP`] freed blocks per size class
/// between 12 KiB and 192 KiB and hands them out again; everything else goes straight to
/// the system allocator. Blocks are rounded up to their class, so a realloc within the
/// class is free. At most 1.2 MiB is ever held.
pub struct CachingAlloc {
    cache: std::sync::Mutex<[[usize; CACHE_KEEP]; CACHE_CLASSES.len()]>,
}

/// Block sizes the cache rounds to (bytes).
const CACHE_CLASSES: [usize; 8] = [
    16 << 10,
    24 << 10,
    32 << 10,
    48 << 10,
    66 << 10,
    96 << 10,
    132 << 10,
    192 << 10,
];
/// Freed blocks kept per class.
pub const CACHE_KEEP: usize = 2;
const CACHE_MIN: usize = 12 << 10;
const CACHE_ALIGN: usize = 16;

impl CachingAlloc {
    pub const fn new() -> CachingAlloc {
        CachingAlloc {
            cache: std::sync::Mutex::new([[0; CACHE_KEEP]; CACHE_CLASSES.len()]),
        }
    }

    fn class(layout: std::alloc::Layout) -> Option<usize> {
        if layout.align() > CACHE_ALIGN || layout.size() < CACHE_MIN {
            return None;
        }
        CACHE_CLASSES.iter().position(|&c| layout.size() <= c)
    }

    fn class_layout(c: usize) -> std::alloc::Layout {
        // Every class size is a non-zero multiple of the alignment.
        std::alloc::Layout::from_size_align(CACHE_CLASSES[c], CACHE_ALIGN)
            .unwrap_or(std::alloc::Layout::new::<u8>())
    }

    fn take(&self, c: usize) -> *mut u8 {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for slot in cache[c].iter_mut() {
            if *slot != 0 {
                return std::mem::replace(slot, 0) as *mut u8;
            }
        }
        std::ptr::null_mut()
    }

    fn keep(&self, c: usize, p: *mut u8) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for slot in cache[c].iter_mut() {
            if *slot == 0 {
                *slot = p as usize;
                return true;
            }
        }
        false
    }
}

impl Default for CachingAlloc {
    fn default() -> Self {
        CachingAlloc::new()
    }
}

// SAFETY: every block handed out is either the system allocator's answer for the exact
// layout asked (no class), or a block of at least the class size with CACHE_ALIGN
// alignment that no one else holds: it came from the system allocator for
// `class_layout(c)` and was either just allocated or taken out of the cache, which only
// holds blocks given back through `dealloc`. `dealloc` and `realloc` receive the layout
// the block was handed out with (GlobalAlloc's contract), and `class` is a pure function
// of it, so a block goes back to the class (and the system layout) it came from. The
// cache's lock is never held across a call into the system allocator.
unsafe impl std::alloc::GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::alloc::System;
        match Self::class(layout) {
            None => System.alloc(layout),
            Some(c) => {
                let p = self.take(c);
                if p.is_null() {
                    System.alloc(Self::class_layout(c))
                } else {
                    p
                }
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: std::alloc::Layout) {
        use std::alloc::System;
        match Self::class(layout) {
            None => System.dealloc(p, layout),
            Some(c) => {
                if !self.keep(c, p) {
                    System.dealloc(p, Self::class_layout(c));
                }
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use std::alloc::System;
        let Ok(new) = std::alloc::Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (Self::class(layout), Self::class(new)) {
            (None, None) => System.realloc(p, layout, new_size),
            (Some(a), Some(b)) if a == b => p,
            _ => {
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn caching_alloc_reuses_freed_blocks_per_class_and_keeps_data_on_realloc() {
        use super::{CachingAlloc, CACHE_KEEP};
        use std::alloc::{GlobalAlloc, Layout};
        let a = CachingAlloc::new();
        let l60 = Layout::from_size_align(60 << 10, 1).unwrap();
        let l62 = Layout::from_size_align(62 << 10, 8).unwrap();
        // SAFETY: each block is used within its layout and freed once with the layout
        // it was last handed out with.
        unsafe {
            let p = a.alloc(l60);
            assert!(!p.is_null());
            a.dealloc(p, l60);
            // Same class (66 KiB): the freed block comes back.
            let q = a.alloc(l62);
            assert_eq!(p, q);
            // Growing within the class keeps the block; across classes it moves, data kept.
            q.write_bytes(0xab, 62 << 10);
            let r = a.realloc(q, l62, 65 << 10);
            assert_eq!(r, q);
            let l65 = Layout::from_size_align(65 << 10, 8).unwrap();
            let s = a.realloc(r, l65, 100 << 10);
            assert_ne!(s, r);
            assert!(std::slice::from_raw_parts(s, 62 << 10)
                .iter()
                .all(|&b| b == 0xab));
            let l100 = Layout::from_size_align(100 << 10, 8).unwrap();
            // Shrinking below the smallest class hands it to the system allocator.
            let t = a.realloc(s, l100, 100);
            assert!(std::slice::from_raw_parts(t, 100)
                .iter()
                .all(|&b| b == 0xab));
            a.dealloc(t, Layout::from_size_align(100, 8).unwrap());
            // At most CACHE_KEEP blocks per class are kept.
            let blocks: Vec<*mut u8> = (0..CACHE_KEEP + 2).map(|_| a.alloc(l60)).collect();
            for &b in &blocks {
                a.dealloc(b, l60);
            }
            let again: Vec<*mut u8> = (0..CACHE_KEEP + 2).map(|_| a.alloc(l60)).collect();
            let reused = again.iter().filter(|p| blocks.contains(p)).count();
            assert!(reused >= CACHE_KEEP, "{reused}");
            for &b in &again {
                a.dealloc(b, l60);
            }
            // Alignment above 16 and small sizes are not cached.
            let big_align = Layout::from_size_align(64 << 10, 4096).unwrap();
            let u = a.alloc(big_align);
            assert_eq!(u as usize % 4096, 0);
            a.dealloc(u, big_align);
        }
    }

    use super::*;
    use std::net::TcpListener;

    #[test]
    fn channel_wakes_a_sleeping_poll() {
        let waker = Waker::new().unwrap();
        let (tx, mut rx) = channel_with::<u32>(waker.clone());
        assert!(rx.prepare_sleep());
        let t = std::thread::spawn(move || tx.send(7).unwrap());
        let mut set = PollSet::new();
        set.push(waker.fd(), Interest::READ);
        // No timeout: only the sender's wake can end this wait.
        assert_eq!(set.wait(None).unwrap(), 1);
        waker.disarm();
        t.join().unwrap();
        assert!(matches!(rx.try_recv(), Recv::Msg(7)));
        assert!(matches!(rx.try_recv(), Recv::Closed));
    }

    #[test]
    fn prepare_sleep_sees_a_message_sent_before_arming() {
        let waker = Waker::new().unwrap();
        let (tx, mut rx) = channel_with::<u32>(waker);
        tx.send(1).unwrap();
        assert!(!rx.prepare_sleep());
        assert!(matches!(rx.try_recv(), Recv::Msg(1)));
        assert!(rx.prepare_sleep());
    }

    #[test]
    fn a_wake_before_arming_stops_the_next_sleep() {
        // A condition wake (e.g. buffer space freed) that lands while the receiver is
        // busy must not be lost.
        let waker = Waker::new().unwrap();
        let (_tx, mut rx) = channel_with::<u32>(waker.clone());
        waker.wake();
        assert!(!rx.prepare_sleep());
        assert!(rx.prepare_sleep());
    }

    #[test]
    fn nonblocking_connect_completes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = connect_nonblocking(&l.local_addr().unwrap()).unwrap();
        let mut set = PollSet::new();
        set.push(s.as_raw_fd(), Interest::WRITE);
        assert_eq!(set.wait(Some(Duration::from_secs(10))).unwrap(), 1);
        assert!(s.take_error().unwrap().is_none());
        assert!(l.accept().is_ok());
    }

    #[test]
    fn nonblocking_unix_connect_completes_and_reports_errors() {
        let dir = std::env::temp_dir().join(format!("localproxy-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (s, done) = connect_unix_nonblocking(&path).unwrap();
        if !done {
            let mut set = PollSet::new();
            set.push(s.as_raw_fd(), Interest::WRITE);
            assert_eq!(set.wait(Some(Duration::from_secs(10))).unwrap(), 1);
        }
        assert!(s.take_error().unwrap().is_none());
        let (mut a, _) = l.accept().unwrap();
        use std::io::{Read, Write};
        (&s).write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        a.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        drop(l);
        std::fs::remove_file(&path).unwrap();
        let e = connect_unix_nonblocking(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let long = dir.join("x".repeat(200));
        let e = connect_unix_nonblocking(&long).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nonblocking_unix_connect_to_a_full_backlog_would_block() {
        let dir = std::env::temp_dir().join(format!("localproxy-sys-bl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Shrink the backlog to its minimum and never accept: the queue fills at once.
        // SAFETY: listen(2) on a listening socket we own; the result is checked.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let mut held = Vec::new();
        let full = (0..64).find_map(|_| match connect_unix_nonblocking(&path) {
            Ok((s, _)) => {
                held.push(s);
                None
            }
            Err(e) => Some(e),
        });
        let e = full.expect("the backlog never filled");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(e.to_string().contains("backlog is full"), "{e}");
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nonblocking_connect_to_closed_port_reports_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        match connect_nonblocking(&addr) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok(s) => {
                let mut set = PollSet::new();
                set.push(s.as_raw_fd(), Interest::WRITE);
                set.wait(Some(Duration::from_secs(10))).unwrap();
                let err = s.take_error().unwrap().expect("connect error");
                assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            }
        }
    }
}
