//! The value types the rest of the proxy speaks: which end of the tunnel this is
//! ([`Mode`]), the message format ([`ClientType`]), tokens ([`Secret`]), the service
//! [`Endpoint`], a destination [`Target`] and a service [`Mapping`], plus the defaults
//! for an absent endpoint port, target host and log level.
//!
//! Plain data only: nothing here parses, checks or reads anything (that is `rules`),
//! and the whole validated configuration is `effective::Config`. This file imports
//! nothing from the crate, so `cli`, `session` and every rule can use it.

use std::fmt;
use std::path::PathBuf;

/// Which end of the tunnel this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Source,
    Destination,
}

impl Mode {
    /// The value of the `local-proxy-mode` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Source => "source",
            Mode::Destination => "destination",
        }
    }
}

/// Message format a source speaks (`-y`); destinations always detect it from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    V1,
    V2,
    V3,
}

/// A secret string (token, password) that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself: only for the wire, never for a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the service endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal (lowercase), used for DNS, SNI and the certificate check.
    pub host: String,
    pub port: u16,
}

/// Where a destination connects for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // An IPv6 address in brackets, as it is written on the command line.
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One service mapping. The service id is "" for the single unnamed mapping (`-s 5555`,
/// `-d 22`), which adopts the one id the service announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Source: listen on this port (0 = let the OS choose).
    Listen { service_id: String, port: u16 },
    /// Destination: connect here.
    Connect { service_id: String, target: Target },
}

impl Mapping {
    pub fn service_id(&self) -> &str {
        match self {
            Mapping::Listen { service_id, .. } | Mapping::Connect { service_id, .. } => service_id,
        }
    }
}

/// Destination host for a bare port without `-b`.
pub(crate) const DEFAULT_TARGET_HOST: &str = "127.0.0.1";
/// Endpoint port when `-e` gives none, and for `-r`.
pub(crate) const DEFAULT_ENDPOINT_PORT: u16 = 443;
/// `-v` when not given: info.
pub(crate) const DEFAULT_VERBOSITY: u8 = 4;
