//! Why a connect attempt failed, and whether trying again can help: the one error type
//! of connecting (`connect.rs`) and of the upgrade (`upgrade.rs`). The tunnel thread
//! turns it into a log line and a reconnect decision.

use std::fmt;
use std::time::Duration;

/// Why a connect attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    Resolve(String),
    Tcp(String),
    Tls(String),
    /// The web proxy failed or refused CONNECT.
    Proxy(String),
    /// The service answered the upgrade with 4xx (but 408 and 429): bad, used or
    /// wrong-mode token.
    Rejected {
        status: u16,
        detail: String,
    },
    /// The service answered the upgrade with another status (5xx, 3xx, 2xx, 408 request
    /// timeout, 429 too many requests): worth another try after the backoff.
    Status {
        status: u16,
        detail: String,
    },
    Handshake(String),
    /// The attempt's deadline passed during this phase.
    TimedOut {
        during: &'static str,
        limit: Duration,
    },
}

impl ConnectError {
    /// Whether the same request can succeed later. 4xx never does.
    pub(crate) fn retryable(&self) -> bool {
        !matches!(self, ConnectError::Rejected { .. })
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve(e) => write!(f, "name lookup failed: {e}"),
            ConnectError::Tcp(e) => write!(f, "TCP connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::Proxy(e) => write!(f, "{e}"),
            ConnectError::Rejected { status, detail } => write!(
                f,
                "the service refused the access token (HTTP {status}{detail}); the token may be \
                 wrong, expired, for the other mode, or already used without a client token: \
                 open a new tunnel or rotate the tokens"
            ),
            ConnectError::Status { status, detail } => {
                write!(f, "the service answered HTTP {status}{detail}")
            }
            ConnectError::Handshake(e) => write!(f, "WebSocket upgrade failed: {e}"),
            ConnectError::TimedOut { during, limit } => write!(
                f,
                "timed out during the {during}: the connect attempt may take {:.1} s \
                 (websocket.connect_timeout_ms)",
                limit.as_secs_f64()
            ),
        }
    }
}
