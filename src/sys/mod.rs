//! The OS calls std lacks, one file per job: [`poll`] (poll(2)), [`wake`] (eventfd
//! wake-ups and channels that wake their receiver), [`signals`] (masks, `sigwait`),
//! [`users`] (root, privilege drop), [`net`] (reads without zero-fill, non-blocking
//! connects) and [`alloc`] (the allocator front of the static musl builds).
//!
//! These files are the only ones with `unsafe`; every block says why it is sound.
//! Nothing here knows about the protocol.

pub mod alloc;
pub mod net;
pub mod poll;
pub mod signals;
pub mod users;
pub mod wake;

pub use alloc::CachingAlloc;
pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
pub use net::{connect_nonblocking, connect_unix_nonblocking, read_into};
pub use poll::{until, Interest, PollSet, Ready};
pub use signals::{block_signals, send_signal, signal_self, wait_signal};
pub use users::{drop_privileges, is_root, lookup_user};
pub use wake::{channel_with, Receiver, Recv, Sender, WakeFd, Waker};
