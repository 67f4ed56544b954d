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

    fn is_client_token_mismatch(&self) -> bool {
        matches!(self, ConnectError::Rejected { detail, .. }
            if detail.to_ascii_lowercase().contains("client token mismatch"))
    }

    /// A second line for the log after the error, when there is a fix to add that does
    /// not fit the first.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        self.is_client_token_mismatch().then_some(
            "to keep a client token across restarts: -i TOKEN, AWSIOT_TUNNEL_CLIENT_TOKEN \
             or --client-token-file FILE",
        )
    }
}

/// The service's own words from a refusal's detail (` Bad Request: Invalid client
/// token: client token mismatch`): the last part, at most 60 characters.
fn service_said(detail: &str) -> String {
    let d = detail.trim().trim_start_matches(':').trim();
    let last = d.rsplit(": ").next().unwrap_or(d).trim();
    let last = if last.is_empty() {
        "no reason given"
    } else {
        last
    };
    last.chars().take(60).collect()
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve(e) => write!(f, "name lookup failed: {e}"),
            ConnectError::Tcp(e) => write!(f, "TCP connect to {e}"),
            ConnectError::Tls(e) => write!(f, "TLS: {e}"),
            ConnectError::Proxy(e) => write!(f, "{e}"),
            ConnectError::Rejected { status, detail } => {
                let said = service_said(detail);
                if self.is_client_token_mismatch() {
                    // The usual cause: a restart, whose new random client token does not
                    // match the first run's. `hint` says how to keep one.
                    write!(
                        f,
                        "access token already used with another client token (HTTP {status}: \
                         {said}): a restart makes a new random one"
                    )
                } else {
                    write!(
                        f,
                        "access token refused (HTTP {status}: {said}): wrong, expired, used or \
                         for the other mode"
                    )
                }
            }
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
