//! Sockets: reading into a buffer's spare capacity without zero-filling it, and
//! non-blocking TCP and Unix-socket connects.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Reads at most `max` bytes from `fd` into the spare capacity of `buf` and extends its
/// length by what was read: a read with no zero-filling and no copy afterwards.
pub(crate) fn read_into(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
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

/// Starts a non-blocking TCP connect to `addr`. The stream is writable (or in error) when
/// the connect finishes; check it with `TcpStream::take_error`.
pub(crate) fn connect_nonblocking(addr: &SocketAddr) -> io::Result<TcpStream> {
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
pub(crate) fn connect_unix_nonblocking(path: &Path) -> io::Result<(UnixStream, bool)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::poll::{Interest, PollSet};
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

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
