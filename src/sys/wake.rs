//! Waking a thread that sleeps in `poll(2)`: an eventfd ([`WakeFd`]), a [`Waker`] that
//! writes it only when its owner is (about to be) asleep, and channels whose sender wakes
//! the receiver ([`channel_with`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// An eventfd: a counter another thread bumps to end our `poll`.
pub(crate) struct WakeFd {
    fd: OwnedFd,
}

impl WakeFd {
    pub(crate) fn new() -> io::Result<WakeFd> {
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
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an fd we own. Errors (EAGAIN when the
        // counter is saturated) leave the fd readable, which is all a wake needs.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Resets the counter so the fd stops being readable.
    pub(crate) fn drain(&self) {
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
pub(crate) struct Waker {
    fd: WakeFd,
    armed: AtomicBool,
    notified: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker {
            fd: WakeFd::new()?,
            armed: AtomicBool::new(false),
            notified: AtomicBool::new(false),
        }))
    }

    /// Ends the receiver's poll if it is sleeping, or its next sleep if it is not.
    pub(crate) fn wake(&self) {
        self.notified.store(true, Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            self.fd.wake();
        }
    }

    /// Called by the owner before deciding to sleep: from now on a [`Waker::wake`]
    /// writes the fd. The owner must check its sources again after this.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by the owner after every poll that followed [`Waker::arm`]: ends the
    /// armed state, and drains the fd only if a [`Waker::wake`] wrote it (a wake takes
    /// the armed flag when it writes), so a wake-up for another reason costs no read.
    pub(crate) fn settle(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            self.fd.drain();
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The sending half of a channel whose receiver sleeps in poll.
pub(crate) struct Sender<T> {
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
    pub(crate) fn send(&self, v: T) -> Result<(), mpsc::SendError<T>> {
        self.tx.send(v)?;
        self.waker.wake();
        Ok(())
    }

    /// The receiver's waker, for signalling something that is not a message
    /// (e.g. "buffer space freed").
    pub(crate) fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }
}

/// The receiving half: `try_recv` in the loop, [`Receiver::prepare_sleep`] before poll.
pub(crate) struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    stash: Option<T>,
    waker: Arc<Waker>,
}

/// A channel whose sender wakes the receiver's poll through `waker`. Several channels
/// (and other wake sources) may share one waker.
pub(crate) fn channel_with<T>(waker: Arc<Waker>) -> (Sender<T>, Receiver<T>) {
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
pub(crate) enum Recv<T> {
    Msg(T),
    Empty,
    /// Every sender is gone.
    Closed,
}

impl<T> Receiver<T> {
    pub(crate) fn try_recv(&mut self) -> Recv<T> {
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
    /// Either way the caller polls, then calls [`Waker::settle`].
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        self.waker.arm();
        if self.waker.notified.swap(false, Ordering::SeqCst) {
            // Something changed since the caller last looked: look again first.
            return false;
        }
        if self.stash.is_none() {
            if let Ok(v) = self.rx.try_recv() {
                self.stash = Some(v);
            }
        }
        self.stash.is_none()
    }

    pub(crate) fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::poll::{Interest, PollSet};

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
        waker.settle();
        // Settled: the fd is drained, so the next poll sleeps.
        assert_eq!(set.wait(Some(std::time::Duration::ZERO)).unwrap(), 0);
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
        waker.settle();
        assert!(rx.prepare_sleep());
        waker.settle();
    }

    #[test]
    fn a_wake_up_for_another_reason_leaves_the_fd_alone() {
        // Armed, then the poll ends for something else: settling must not read the fd
        // (nothing was written), and a wake that came meanwhile is still seen.
        let waker = Waker::new().unwrap();
        let (_tx, mut rx) = channel_with::<u32>(waker.clone());
        assert!(rx.prepare_sleep());
        waker.settle();
        let mut set = PollSet::new();
        set.push(waker.fd(), Interest::READ);
        assert_eq!(set.wait(Some(std::time::Duration::ZERO)).unwrap(), 0);
        // Busy now (not armed): a wake sets the flag without a write...
        waker.wake();
        assert_eq!(set.wait(Some(std::time::Duration::ZERO)).unwrap(), 0);
        // ... and stops the next sleep.
        assert!(!rx.prepare_sleep());
        waker.settle();
    }
}
