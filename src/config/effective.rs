//! [`Config`]: the whole validated configuration the engine runs with, and
//! [`Config::describe`], the `name = value` lines `--check` prints (tokens masked).
//!
//! Building one is `validate`'s job and reading files is `load`'s: this file only holds
//! the result and reads it back.

use super::model::{ClientType, Endpoint, Mapping, Mode, Secret};
use super::settings::{Settings, KEY_PREFIX};
use std::path::PathBuf;

/// Everything the engine needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) mode: Mode,
    pub(crate) access_token: Secret,
    pub(crate) client_token: Option<Secret>,
    pub(crate) endpoint: Endpoint,
    /// Mappings from `-s`/`-d` (empty when the mapping comes from `--config-dir`).
    pub(crate) mappings: Vec<Mapping>,
    /// `ServiceID = value` lines read from `--config-dir`, consulted after SERVICE_IDS
    /// only when `mappings` is empty. Values are raw (a port or an endpoint).
    pub(crate) config_dir_mappings: Vec<(String, String)>,
    /// `-b`: source listen host / destination default host for a bare port.
    pub(crate) bind_address: Option<String>,
    pub(crate) capath: Option<PathBuf>,
    pub(crate) no_ssl_host_verify: bool,
    /// `-v` 0..=255, reference mapping: 0 off, 1 fatal, 2 error, 3 warn, 4 info, 5 debug, 6+ trace.
    pub verbosity: u8,
    pub(crate) client_type: ClientType,
    pub(crate) settings: Settings,
    /// `--access-token-file`: re-read at every connection attempt.
    pub(crate) access_token_file: Option<PathBuf>,
    /// `--client-token-file`: where the client token is kept across restarts.
    pub(crate) client_token_file: Option<PathBuf>,
    /// `--user NAME[:GROUP]`: drop privileges once listeners are bound.
    pub(crate) user: Option<String>,
    /// `--require-non-root`.
    pub(crate) require_non_root: bool,
    /// Off with `--no-sandbox`: see `crate::sandbox`.
    pub(crate) sandbox: bool,
}

impl Config {
    /// The effective configuration as `name = value` lines (what `--check` prints).
    /// Tokens appear only as `***` and their length.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| {
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(v);
            out.push('\n');
        };
        let masked = |s: &Secret| match s.expose().chars().count() {
            1 => "*** (1 char)".to_string(),
            n => format!("*** ({n} chars)"),
        };
        line("mode", self.mode.as_str());
        line("access-token", &masked(&self.access_token));
        line(
            "client-token",
            &self.client_token.as_ref().map_or("(none)".into(), masked),
        );
        if let Some(p) = &self.access_token_file {
            line("access-token-file", &p.display().to_string());
        }
        if let Some(p) = &self.client_token_file {
            line("client-token-file", &p.display().to_string());
        }
        if let Some(u) = &self.user {
            line("user", u);
        }
        if self.require_non_root {
            line("require-non-root", "true");
        }
        line(
            "proxy-endpoint",
            &format!("{}:{}", self.endpoint.host, self.endpoint.port),
        );
        let mapping_key = match self.mode {
            Mode::Source => "source-listen-port",
            Mode::Destination => "destination-app",
        };
        if self.mappings.is_empty() {
            let from_dir: Vec<String> = self
                .config_dir_mappings
                .iter()
                .map(|(id, v)| format!("{id}={v}"))
                .collect();
            let v = if from_dir.is_empty() {
                "(none: no --config-dir mapping found)".to_string()
            } else {
                format!("(from --config-dir) {}", from_dir.join(","))
            };
            line(mapping_key, &v);
        } else {
            let items: Vec<String> = self
                .mappings
                .iter()
                .map(|m| match m {
                    Mapping::Listen { service_id, port } if service_id.is_empty() => {
                        port.to_string()
                    }
                    Mapping::Listen { service_id, port } => format!("{service_id}={port}"),
                    Mapping::Connect { service_id, target } if service_id.is_empty() => {
                        target.to_string()
                    }
                    Mapping::Connect { service_id, target } => format!("{service_id}={target}"),
                })
                .collect();
            line(mapping_key, &items.join(","));
        }
        let bind = match (&self.bind_address, self.mode) {
            (Some(b), _) => b.clone(),
            (None, Mode::Source) => format!("{} (default)", self.settings.default_bind_address),
            (None, Mode::Destination) => "(none)".into(),
        };
        line("local-bind-address", &bind);
        line(
            "capath",
            &self
                .capath
                .as_ref()
                .map_or("(none)".into(), |p| p.display().to_string()),
        );
        line("no-ssl-host-verify", &self.no_ssl_host_verify.to_string());
        line(
            "verbose",
            &format!(
                "{} ({})",
                self.verbosity,
                crate::logging::level_name(self.verbosity)
            ),
        );
        let ct = match self.client_type {
            ClientType::V1 => "V1",
            ClientType::V2 => "V2",
            ClientType::V3 => "V3",
        };
        line("destination-client-type", ct);
        for (k, v) in self.settings.entries() {
            line(&format!("{KEY_PREFIX}{k}"), &v);
        }
        out
    }
}
