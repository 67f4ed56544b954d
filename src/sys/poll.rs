//! `poll(2)` over a set of file descriptors: what each entry waits for ([`Interest`]),
//! what came back ([`Ready`]), and a reusable [`PollSet`]. Nothing else.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

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
pub(crate) fn until(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}
