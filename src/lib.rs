//! localproxy-rs: a local proxy for the AWS IoT Secure Tunneling service, built for tiny
//! embedded Linux.
//!
//! Module map, read in this order:
//! - [`protocol`]: the wire format (message model, framing codec, limits).
//! - [`session`]: the sans-I/O state machine that makes every protocol decision.
//! - [`cli`]: the command line (option table, parser, `--help`).
//! - [`config`]: command line + config files + environment + settings + `--notification`
//!   → one validated configuration.
//! - `link`: everything the two I/O threads exchange.
//! - `tunnel`: the thread that owns the TLS WebSocket (connect, pings, reconnect).
//! - `local`: the thread that owns every TCP socket.
//! - [`run`]: the main thread: spawn both, wait for signals, exit code.
//! - [`sandbox`]: what the process may still do once started (seccomp, Landlock).
//! - [`logging`], [`trust`], `token`, `resolve`: log lines, CA certificates, the client
//!   token, name lookups off the I/O threads.
//! - [`sys`]: the only `unsafe`: poll, wake fds, signals, privilege drop, sockets, memory, the clock tick,
//!   the sandbox's filters.
//! - `fuzzing`: thin wrappers over the parsers that read peer or user bytes, for
//!   tests/fuzz only (hidden from the docs).
//! - `testbed` (cargo feature `testbed`): the project's own double of the tunneling
//!   service (tests, `testbed` binary).
//!
//! The `localproxy` binary uses everything but `testbed`, which a default build does not
//! compile at all (nor tungstenite, which only the double uses).

pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod link;
pub(crate) mod local;
pub mod logging;
pub mod protocol;
pub(crate) mod resolve;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod sys;
#[cfg(feature = "testbed")]
pub mod testbed;
pub(crate) mod token;
pub mod trust;
pub(crate) mod tunnel;

/// Process exit codes, decided in `main` alone. Documented in README and `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Tunnel closed or expired by the service, SIGTERM/SIGINT, --help, -V, export.
    Ok = 0,
    /// Internal error: a bug or an OS failure the proxy cannot work around.
    Internal = 1,
    /// Usage or configuration error, including SERVICE_IDS that do not match the mapping.
    Usage = 2,
    /// Rejected by the service (4xx on the WebSocket upgrade: bad, used or wrong-mode token).
    Rejected = 3,
    /// Gave up after retries (service unreachable, local listener cannot bind).
    GaveUp = 4,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}
