//! The OS calls std lacks, one file per job: [`poll`] (poll(2)), [`wake`] (eventfd
//! wake-ups and channels that wake their receiver), [`signals`] (masks, `sigwait`),
//! [`users`] (root, privilege drop), [`memory`] (dropping start-up pages), [`net`]
//! (reads without zero-fill, non-blocking connects), [`clock`] (the /proc clock tick),
//! [`sandbox`] (no_new_privs, the seccomp filter, Landlock), [`alloc`] (the allocator
//! front of the static musl builds) and [`tty`] (ptys, for the console tests only).
//!
//! These files are the only ones with `unsafe`; every block says why it is sound.
//! Nothing here knows about the protocol.

pub(crate) mod alloc;
pub(crate) mod clock;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod poll;
pub(crate) mod sandbox;
pub(crate) mod signals;
pub mod tty;
pub(crate) mod users;
pub(crate) mod wake;

// What the binaries and the integration tests use.
pub use alloc::CachingAlloc;
pub use clock::ticks_per_second;
pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGUSR2};
pub use poll::{Interest, PollSet, Ready};
pub use signals::{block_signals, is_ignored, send_signal, wait_signal, with_all_signals_blocked};
pub use users::is_root;

pub(crate) use memory::drop_startup_pages;
pub(crate) use net::{connect_nonblocking, connect_unix_nonblocking, read_into};
pub(crate) use poll::until;
pub(crate) use signals::signal_self;
pub(crate) use users::{drop_privileges, lookup_user};
pub(crate) use wake::{channel_with, Receiver, Recv, Sender, Waker};
