//! The TCP socket under the TLS session, in its two lives.
//!
//! During a connect attempt it is blocking, and every read and write first sets the
//! socket timeout to the time left until the attempt's deadline, so a server that
//! trickles bytes cannot stretch the handshakes.
//!
//! Once the WebSocket is open it is non-blocking and buffered both ways, so system calls
//! are paid per batch rather than per TLS record: OpenSSL's writes (one per 16 KiB record,
//! and small ones for alerts or key updates) land in an output buffer that the tunnel
//! thread sends with one `send` when it has written everything it had ([`Tcp::send`]);
//! OpenSSL's reads (a 5-byte record header, then the record) are served from one `recv`
//! of up to [`IN_CHUNK`] bytes. The buffers are allocated once and never zero-filled
//! again. It knows nothing about TLS or WebSocket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes read from the socket at once in data mode: several TLS records.
pub(crate) const IN_CHUNK: usize = 64 * 1024;

/// The TCP socket under everything a tunnel connection reads and writes.
pub(crate) struct Tcp {
    sock: TcpStream,
    /// Connect phase: the attempt's deadline. Data phase: `None`.
    deadline: Option<Instant>,
    /// Data phase: reads and writes are buffered.
    buffered: bool,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    output: Vec<u8>,
    out_start: usize,
    /// Bytes sent in the data phase, in total.
    sent: u64,
    /// The last `recv` returned less than it could take: the socket had no more then,
    /// so a read waits for poll to say readable instead of finding that out by a system
    /// call that fails (a read per wake-up saved).
    drained: bool,
}

impl Tcp {
    pub(crate) fn new(sock: TcpStream, deadline: Option<Instant>) -> Tcp {
        Tcp {
            sock,
            deadline,
            buffered: false,
            input: Vec::new(),
            in_start: 0,
            in_end: 0,
            output: Vec::new(),
            out_start: 0,
            sent: 0,
            drained: false,
        }
    }

    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.sock
    }

    #[cfg(any(test, feature = "testbed"))] // the testbed's scripted peers only
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Switches to the data phase: non-blocking, no deadline, buffered.
    pub(crate) fn start_data(&mut self) -> io::Result<()> {
        self.deadline = None;
        self.sock.set_read_timeout(None)?;
        self.sock.set_write_timeout(None)?;
        self.sock.set_nonblocking(true)?;
        self.input = vec![0; IN_CHUNK];
        self.buffered = true;
        Ok(())
    }

    /// Back to blocking, unbuffered, with a read timeout (scripted peers in tests).
    #[cfg(any(test, feature = "testbed"))]
    pub(crate) fn set_blocking(&mut self, read_timeout: Duration) -> io::Result<()> {
        self.sock.set_nonblocking(false)?;
        self.sock.set_read_timeout(Some(read_timeout))?;
        self.buffered = false;
        Ok(())
    }

    /// Poll said the socket is readable: the next read asks it again.
    pub(crate) fn mark_readable(&mut self) {
        self.drained = false;
    }

    /// Bytes written (by TLS) and not yet sent.
    pub(crate) fn pending(&self) -> usize {
        self.output.len() - self.out_start
    }

    /// Bytes [`Tcp::send`] has handed the socket, in total.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Sends what is pending until it is all sent or the socket is full. Returns whether
    /// everything went.
    pub(crate) fn send(&mut self) -> io::Result<bool> {
        while self.out_start < self.output.len() {
            match self.sock.write(&self.output[self.out_start..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.out_start += n;
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out_start == self.output.len() {
            self.output.clear();
            self.out_start = 0;
            return Ok(true);
        }
        // Keep the buffer from creeping: move the unsent tail to the front once the
        // sent part is the larger.
        if self.out_start > self.output.len() / 2 {
            self.output.drain(..self.out_start);
            self.out_start = 0;
        }
        Ok(false)
    }

    /// The time left until the deadline, `None` without one; an error once it passed.
    fn left(&self) -> io::Result<Option<Duration>> {
        let Some(d) = self.deadline else {
            return Ok(None);
        };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connect attempt's deadline passed",
            ));
        }
        Ok(Some(left))
    }
}

impl Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.buffered {
            if let Some(left) = self.left()? {
                self.sock.set_read_timeout(Some(left))?;
            }
            return self.sock.read(buf);
        }
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
            if self.drained {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = loop {
                match self.sock.read(&mut self.input) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            self.in_end = n;
            if n == 0 {
                return Ok(0);
            }
            self.drained = n < self.input.len();
        }
        let n = buf.len().min(self.in_end - self.in_start);
        buf[..n].copy_from_slice(&self.input[self.in_start..self.in_start + n]);
        self.in_start += n;
        Ok(n)
    }
}

impl Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.buffered {
            if let Some(left) = self.left()? {
                self.sock.set_write_timeout(Some(left))?;
            }
            return self.sock.write(buf);
        }
        // The caller bounds what it writes before each send: the tunnel thread stops
        // taking local events and reading the peer while too much waits here.
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffered {
            // Sending is the tunnel thread's decision (Tcp::send), once per batch.
            return Ok(());
        }
        self.sock.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Waits (at most 10 s) until poll says `fd` is ready for `interest`.
    fn wait(sock: &TcpStream, interest: crate::sys::Interest) {
        use std::os::fd::AsRawFd;
        let mut set = crate::sys::PollSet::new();
        set.push(sock.as_raw_fd(), interest);
        assert_eq!(set.wait(Some(Duration::from_secs(10))).unwrap(), 1);
    }

    fn is_timeout(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    #[test]
    fn a_peer_that_trickles_bytes_cannot_stretch_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The scenario, not synchronisation: one byte every 20 ms keeps every read's
            // own wait short, and stops by itself after 100 s at most.
            for _ in 0..5000 {
                if stopped.load(Ordering::SeqCst) || s.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let sock = TcpStream::connect(addr).unwrap();
        let mut t = Tcp::new(sock, Some(Instant::now() + Duration::from_millis(300)));
        let mut buf = [0u8; 16];
        let err = loop {
            match t.read(&mut buf) {
                Ok(0) => panic!("the trickle ended before the deadline stopped the reads"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(is_timeout(&err), "{err}");
        // Past the deadline every call fails at once, writes too.
        assert_eq!(
            t.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(t.write(b"y").unwrap_err().kind(), io::ErrorKind::TimedOut);
        // Without a deadline the socket is left alone.
        t.set_deadline(None);
        assert!(t.write(b"y").is_ok());
        stop.store(true, Ordering::SeqCst);
        drop(t);
        server.join().unwrap();
    }

    #[test]
    fn data_mode_batches_writes_into_one_send_and_serves_small_reads_from_one_recv() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut t = Tcp::new(TcpStream::connect(l.local_addr().unwrap()).unwrap(), None);
        let (mut peer, _) = l.accept().unwrap();
        t.start_data().unwrap();
        // Writes only fill the buffer; nothing reaches the peer before send().
        for chunk in [&b"hello "[..], b"wire", b"!"] {
            assert_eq!(t.write(chunk).unwrap(), chunk.len());
        }
        assert_eq!(t.pending(), 11);
        assert!(t.send().unwrap());
        assert_eq!(t.pending(), 0);
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello wire!");
        // Reads: nothing yet is WouldBlock; then small reads come from one chunk.
        let mut b = [0u8; 5];
        assert_eq!(
            t.read(&mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        peer.write_all(b"0123456789").unwrap();
        wait(t.get_ref(), crate::sys::Interest::READ);
        t.mark_readable();
        let mut got = Vec::new();
        while got.len() < 10 {
            let n = t.read(&mut b).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"0123456789");
        // That recv took less than it could: the socket is taken as drained, and more
        // data waits for poll's word rather than a failing read.
        peer.write_all(b"more").unwrap();
        wait(t.get_ref(), crate::sys::Interest::READ);
        assert_eq!(
            t.read(&mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        t.mark_readable();
        assert_eq!(t.read(&mut b).unwrap(), 4);
        drop(peer);
        // EOF once the peer is gone and the buffer is empty.
        wait(t.get_ref(), crate::sys::Interest::READ);
        t.mark_readable();
        assert_eq!(t.read(&mut b).unwrap(), 0);
    }

    #[test]
    fn a_full_socket_keeps_the_rest_pending_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut t = Tcp::new(TcpStream::connect(l.local_addr().unwrap()).unwrap(), None);
        let (mut peer, _) = l.accept().unwrap();
        t.start_data().unwrap();
        let data: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 253) as u8).collect();
        t.write_all(&data).unwrap();
        // The peer reads nothing yet: 16 MiB cannot all fit in the socket buffers.
        assert!(!t.send().unwrap());
        let left = t.pending();
        assert!(left > 0 && left < data.len());
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 16 << 20];
            peer.read_exact(&mut got).unwrap();
            got
        });
        while !t.send().unwrap() {
            wait(t.get_ref(), crate::sys::Interest::WRITE);
        }
        assert!(reader.join().unwrap() == data);
    }
}
