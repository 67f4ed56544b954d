//! A peer connection's TCP socket under its TLS, optionally read at a set rate: the
//! relay as the internet drains it (`Testbed::set_relay_rate`, `testbed serve
//! --relay-rate`), so the proxy's TLS socket fills and its queues fill and drain.
//!
//! Reads take at most [`MAX_READ`] bytes and only what a token bucket holds; with no
//! tokens a read is `WouldBlock`, and the peer loop stops polling the socket for reading
//! and sleeps for [`Paced::pause`] instead. Writes are never paced.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The largest socket read while paced.
pub(crate) const MAX_READ: usize = 16 * 1024;
/// The bucket holds this much time's worth of tokens: more than poll(2)'s 1 ms step
/// plus a wake-up's lateness on a busy machine, so sleeps cost no throughput.
const BURST: Duration = Duration::from_millis(4);

/// A token bucket of bytes.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Bytes per second.
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket for `rate` bytes per second.
    pub(crate) fn new(rate: f64, now: Instant) -> Bucket {
        let capacity = (rate * BURST.as_secs_f64()).max(MAX_READ as f64);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Bytes that may be read now, at most [`MAX_READ`].
    pub(crate) fn allowance(&mut self, now: Instant) -> usize {
        self.refill(now);
        (self.tokens.max(0.0) as usize).min(MAX_READ)
    }

    pub(crate) fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// How long until a read is worth waking for (a full [`MAX_READ`], or 1 ms of the
    /// rate when that is less); zero when it is already.
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let want = (MAX_READ as f64).min(self.rate / 1000.0).max(1.0);
        if self.tokens >= want {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((want - self.tokens) / self.rate)
        }
    }
}

/// The TCP socket of one peer, read through an optional [`Bucket`].
pub(crate) struct Paced {
    tcp: TcpStream,
    bucket: Option<Bucket>,
    /// While `Some`, writes collect here (see [`Paced::hold`]).
    held: Option<Vec<u8>>,
}

impl Paced {
    pub(crate) fn new(tcp: TcpStream) -> Paced {
        Paced {
            tcp,
            bucket: None,
            held: None,
        }
    }

    /// Collects writes from now on, so that several TLS records can leave in one send
    /// ([`Paced::release`]): the peer then reads them in one read.
    pub(crate) fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Sends what [`Paced::hold`] collected, in one write where the socket takes it all
    /// (waiting for room, 10 s at most per wait), and stops holding.
    pub(crate) fn release(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(b) = self.held.take() else {
            return Ok(());
        };
        let mut at = 0;
        let mut set = crate::sys::PollSet::new();
        while at < b.len() {
            match self.tcp.write(&b[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    set.clear();
                    set.push(self.tcp.as_raw_fd(), crate::sys::Interest::WRITE);
                    if set.wait(Some(Duration::from_secs(10)))? == 0 {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Sets the read rate in bytes per second (`None`: unpaced). The same rate keeps
    /// the bucket as it is.
    pub(crate) fn set_rate(&mut self, rate: Option<f64>) {
        match (rate, &self.bucket) {
            (None, _) => self.bucket = None,
            (Some(r), Some(b)) if b.rate == r => {}
            (Some(r), _) => self.bucket = Some(Bucket::new(r, Instant::now())),
        }
    }

    /// While paced and out of tokens: how long to sleep before reading again.
    pub(crate) fn pause(&mut self) -> Option<Duration> {
        let b = self.bucket.as_mut()?;
        let d = b.wait(Instant::now());
        (!d.is_zero()).then_some(d)
    }
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(b) = self.bucket.as_mut() else {
            return self.tcp.read(buf);
        };
        let allow = b.allowance(Instant::now()).min(buf.len());
        if allow == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tcp.read(&mut buf[..allow])?;
        b.take(n);
        Ok(n)
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(h) = &mut self.held {
            h.extend_from_slice(buf);
            return Ok(buf.len());
        }
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_rate_in_reads_of_at_most_16_kib() {
        let t0 = Instant::now();
        let rate = 150.0 * (1 << 20) as f64;
        let mut b = Bucket::new(rate, t0);
        // Full at the start: the burst, in reads of at most MAX_READ.
        let mut got = 0;
        loop {
            let a = b.allowance(t0);
            if a == 0 {
                break;
            }
            assert!(a <= MAX_READ);
            b.take(a);
            got += a;
        }
        assert_eq!(got as f64, (rate * 0.004).floor());
        // Then the rate: one second later, one second's worth (capped by the burst).
        let w = b.wait(t0);
        assert!(w > Duration::ZERO && w < Duration::from_millis(1), "{w:?}");
        let mut moved = 0usize;
        for ms in 1..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            loop {
                let a = b.allowance(now);
                if a == 0 {
                    break;
                }
                b.take(a);
                moved += a;
            }
        }
        let expected = rate as usize;
        assert!(
            moved.abs_diff(expected) < 2 * MAX_READ,
            "{moved} vs {expected}"
        );
    }

    #[test]
    fn a_slow_rate_wakes_for_a_millisecond_of_data() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, t0); // 1 kB/s: 1 byte per ms
        let all = b.allowance(t0);
        b.take(all);
        let w = b.wait(t0);
        assert!(w <= Duration::from_millis(1), "{w:?}");
        assert!(b.allowance(t0 + Duration::from_millis(20)) >= 19);
    }
}
