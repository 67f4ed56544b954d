//! Command-line arguments + `--config` file + environment + settings → one validated
//! [`Config`].
//!
//! Precedence is CLI > `--config` file > environment; fine-grained values come from
//! `--settings-json`. Every rule of the reference's input validation lives here, and every
//! failure is a [`ConfigError`] whose text names the option, the problem and the fix. No
//! network, no sockets: `--check` runs exactly this and prints the result.

use crate::settings::Settings;
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

/// Everything the engine needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub access_token: Secret,
    pub client_token: Option<Secret>,
    pub endpoint: Endpoint,
    /// Mappings from `-s`/`-d` (empty when the mapping comes from `--config-dir`).
    pub mappings: Vec<Mapping>,
    /// `ServiceID = value` lines read from `--config-dir`, consulted after SERVICE_IDS
    /// only when `mappings` is empty. Values are raw (a port or an endpoint).
    pub config_dir_mappings: Vec<(String, String)>,
    /// `-b`: source listen host / destination default host for a bare port.
    pub bind_address: Option<String>,
    pub capath: Option<PathBuf>,
    pub no_ssl_host_verify: bool,
    /// `-v` 0..=255, reference mapping: 0 off, 1 fatal, 2 error, 3 warn, 4 info, 5 debug, 6+ trace.
    pub verbosity: u8,
    pub client_type: ClientType,
    pub settings: Settings,
}

impl Config {
    /// A configuration for tests and the testbed: defaults everywhere else.
    pub fn new(
        mode: Mode,
        access_token: &str,
        endpoint: Endpoint,
        mappings: Vec<Mapping>,
    ) -> Config {
        Config {
            mode,
            access_token: Secret::new(access_token),
            client_token: None,
            endpoint,
            mappings,
            config_dir_mappings: Vec::new(),
            bind_address: None,
            capath: None,
            no_ssl_host_verify: false,
            verbosity: 4,
            client_type: ClientType::V3,
            settings: Settings::default(),
        }
    }
}
