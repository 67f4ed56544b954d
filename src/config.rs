//! Command-line arguments + `--config` file + environment + settings → one validated
//! [`Config`].
//!
//! Precedence is CLI > `--config` file > environment, key by key, except that `-e` and
//! `-r` travel together: the first source that names either decides the endpoint, so an
//! exported `AWSIOT_TUNNEL_ENDPOINT` does not clash with a `-r` on the command line.
//! Fine-grained values come from `--settings-json`. Every rule of the reference's input
//! validation lives here, and every failure is a [`ConfigError`] whose text names the
//! option (and where its value came from), the problem and the fix, and never contains a
//! token. [`resolve`] and [`Resolved::into_config`] are pure (the environment is a
//! closure, files are text) so tests inject everything; [`load`] is the thin I/O layer
//! `main` calls. No network, no sockets: `--check` runs exactly this and prints the result.

use crate::cli::{self, Args, OptId, OptSpec, OPTIONS};
use crate::settings::{Settings, KEY_PREFIX};
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

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
    /// `--access-token-file`: re-read at every connection attempt.
    pub access_token_file: Option<PathBuf>,
    /// `--client-token-file`: where the client token is kept across restarts.
    pub client_token_file: Option<PathBuf>,
    /// `--user NAME[:GROUP]`: drop privileges once listeners are bound.
    pub user: Option<String>,
    /// `--require-non-root`.
    pub require_non_root: bool,
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
            access_token_file: None,
            client_token_file: None,
            user: None,
            require_non_root: false,
        }
    }
}

impl Config {
    /// Host a destination's bare-port target connects to: `-b`, else 127.0.0.1 (as the
    /// reference; not `localhost`, which may resolve to ::1 first).
    pub fn default_target_host(&self) -> &str {
        self.bind_address.as_deref().unwrap_or(DEFAULT_TARGET_HOST)
    }

    /// The mapping `--config-dir` gives for a service id the service announced, parsed for
    /// this mode (values were checked at start-up, so a present id always parses).
    pub fn config_dir_mapping(&self, service_id: &str) -> Option<Mapping> {
        let (_, raw) = self
            .config_dir_mappings
            .iter()
            .find(|(id, _)| id == service_id)?;
        let service_id = service_id.to_string();
        match self.mode {
            Mode::Source => parse_port(raw)
                .ok()
                .map(|port| Mapping::Listen { service_id, port }),
            Mode::Destination => parse_target(raw, self.default_target_host())
                .ok()
                .map(|target| Mapping::Connect { service_id, target }),
        }
    }

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

/// Destination host for a bare port without `-b`.
pub const DEFAULT_TARGET_HOST: &str = "127.0.0.1";
/// Endpoint port when `-e` gives none, and for `-r`.
pub const DEFAULT_ENDPOINT_PORT: u16 = 443;
/// Largest file read as `--config`, `--settings-json` or a `--config-dir` file: all of
/// them are a few hundred bytes; a larger one is a wrong path, not a configuration.
const MAX_FILE: u64 = 1 << 20;

/// A configuration error: what (an option, a file line, an environment variable), the
/// problem and the fix. `Display` gives the one line `main` prints after `localproxy: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub subject: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(
        subject: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            subject: subject.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Prefixes the subject with where it happened (a file name).
    pub fn within(mut self, outer: &str) -> ConfigError {
        self.subject = if self.subject.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.subject)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.subject.is_empty() {
            write!(f, "{}: ", self.subject)?;
        }
        f.write_str(&self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A problem and its fix, before the caller knows which option it belongs to.
type Problem = (String, String);

fn problem(p: impl Into<String>, fix: impl Into<String>) -> Problem {
    (p.into(), fix.into())
}

/// A user's value, quoted for an error message if it is short printable text, else
/// described. Never used for tokens.
pub fn shown(s: &str) -> String {
    if s.len() <= 80 && s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        s.to_string()
    } else {
        "the value".to_string()
    }
}

/// `true`/`false` the way Boost and the reference's JSON write them, plus the usual
/// shell spellings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Where a value came from; error messages name it so the user edits the right place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Cli,
    File {
        path: String,
        line: usize,
    },
    Env(&'static str),
    /// From a `--notification` document (its label, e.g. `--notification /run/n.json`).
    Notification(String),
}

/// One option's value after precedence.
#[derive(Clone)]
pub struct Value {
    pub text: String,
    pub origin: Origin,
    pub spec: &'static OptSpec,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = matches!(self.spec.id, OptId::AccessToken | OptId::ClientToken);
        let text = if secret { "***" } else { self.text.as_str() };
        write!(f, "{}={:?} from {:?}", self.spec.long, text, self.origin)
    }
}

impl Value {
    /// How the user wrote it: `--region`, `FILE line 3: region` or `AWSIOT_TUNNEL_REGION`.
    pub fn subject(&self) -> String {
        match &self.origin {
            Origin::Cli => cli::label(self.spec),
            Origin::File { path, line } => format!("{path} line {line}: {}", self.spec.long),
            Origin::Env(name) => name.to_string(),
            Origin::Notification(label) => label.clone(),
        }
    }

    fn error(&self, (problem, fix): Problem) -> ConfigError {
        ConfigError::new(self.subject(), problem, fix)
    }
}

/// The text of a `--config` file and the name to quote in errors.
#[derive(Clone, Copy, Debug)]
pub struct ConfigSource<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// One `name = value` line of a `--config` file.
#[derive(Clone)]
pub struct FileEntry {
    pub spec: &'static OptSpec,
    pub value: String,
    pub line: usize,
}

impl fmt::Debug for FileEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = matches!(self.spec.id, OptId::AccessToken | OptId::ClientToken);
        let text = if secret { "***" } else { self.value.as_str() };
        write!(f, "line {}: {}={:?}", self.line, self.spec.long, text)
    }
}

/// Splits a line of the INI-like files: `#` starts a comment anywhere (as in Boost),
/// blank and `[section]` lines are skipped. `Ok(None)`: nothing on this line.
fn ini_line(raw: &str) -> Result<Option<(&str, &str)>, ()> {
    let line = raw.split('#').next().unwrap_or("").trim();
    if line.is_empty() || (line.starts_with('[') && line.ends_with(']')) {
        return Ok(None);
    }
    match line.split_once('=') {
        Some((k, v)) => Ok(Some((k.trim(), v.trim()))),
        None => Err(()),
    }
}

/// Parses a `--config` file: long option names without dashes as keys. Errors are
/// prefixed with `name line N`.
pub fn parse_config_file(name: &str, reader: impl BufRead) -> Result<Vec<FileEntry>, ConfigError> {
    let mut entries: Vec<FileEntry> = Vec::new();
    for (i, raw) in reader.split(b'\n').enumerate() {
        let line = i + 1;
        let at = format!("{name} line {line}");
        let raw = raw.map_err(|e| {
            ConfigError::new(
                name,
                format!("cannot be read: {e}"),
                "check the path and its permissions",
            )
        })?;
        let raw = String::from_utf8(raw).map_err(|_| {
            ConfigError::new(
                at.clone(),
                "is not valid UTF-8 text",
                "save the file as plain text",
            )
        })?;
        let Some((key, value)) = ini_line(&raw).map_err(|_| {
            ConfigError::new(
                at.clone(),
                "is not a 'name = value' line",
                "write one option per line, e.g. region = us-east-1",
            )
        })?
        else {
            continue;
        };
        let Some(spec) = cli::find_long(key) else {
            return Err(ConfigError::new(
                at,
                format!("unknown key '{}'", cli::shown_name(key)),
                "use a long option name without dashes, e.g. region or access-token",
            ));
        };
        if !spec.in_config_file {
            return Err(ConfigError::new(
                at,
                format!("'{key}' cannot be set in a config file"),
                format!("give --{key} on the command line"),
            ));
        }
        if let Some(first) = entries.iter().find(|e| e.spec.id == spec.id) {
            return Err(ConfigError::new(
                at,
                format!("'{key}' is given again (first on line {})", first.line),
                "keep one of the two lines",
            ));
        }
        entries.push(FileEntry {
            spec,
            value: value.to_string(),
            line,
        });
    }
    Ok(entries)
}

/// Parses one `--config-dir` file: `ServiceID = value` lines. The error text names the
/// line; the caller skips the file with a warning.
pub fn parse_mapping_file(reader: impl BufRead) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, raw) in reader.split(b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.map_err(|e| format!("cannot be read: {e}"))?;
        let raw = String::from_utf8(raw).map_err(|_| format!("line {line} is not UTF-8 text"))?;
        let Some((id, value)) =
            ini_line(&raw).map_err(|_| format!("line {line} is not a 'ServiceID = value' line"))?
        else {
            continue;
        };
        if id.is_empty() {
            return Err(format!("line {line} has no service id"));
        }
        check_service_id(id).map_err(|(p, _)| format!("line {line}: the service id {p}"))?;
        if value.is_empty() {
            return Err(format!("line {line} has no value"));
        }
        if !out.iter().any(|(known, _)| known == id) {
            out.push((id.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

/// The options after precedence, not yet validated.
#[derive(Debug)]
pub struct Resolved {
    vals: Vec<Value>,
    /// Warnings found so far (the logger is not up yet; `main` logs them).
    pub warnings: Vec<String>,
}

/// Applies CLI > `--config` file > environment. `env` looks a variable up; an empty
/// value counts as unset (`VAR= localproxy …` is how shells unset one for a command).
pub fn resolve(
    args: &Args,
    config_file: Option<ConfigSource<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    let entries = match config_file {
        Some(src) => parse_config_file(src.name, src.text.as_bytes())?,
        None => Vec::new(),
    };
    let file_name = config_file.map_or("", |c| c.name);
    let layer = |level: usize, spec: &'static OptSpec| -> Option<Value> {
        let (text, origin) = match level {
            0 => (args.value(spec.id)?.to_string(), Origin::Cli),
            1 => {
                let e = entries.iter().find(|e| e.spec.id == spec.id)?;
                let origin = Origin::File {
                    path: file_name.to_string(),
                    line: e.line,
                };
                (e.value.clone(), origin)
            }
            _ => {
                let name = spec.env?;
                let v = env(name).filter(|v| !v.is_empty())?;
                (v, Origin::Env(name))
            }
        };
        Some(Value { text, origin, spec })
    };
    let mut vals = Vec::new();
    for spec in OPTIONS.iter().filter(|o| o.in_config_file) {
        if matches!(spec.id, OptId::ProxyEndpoint | OptId::Region) {
            continue;
        }
        if let Some(v) = (0..3).find_map(|level| layer(level, spec)) {
            vals.push(v);
        }
    }
    let (e, r) = (cli::spec(OptId::ProxyEndpoint), cli::spec(OptId::Region));
    for level in 0..3 {
        let found: Vec<Value> = [layer(level, e), layer(level, r)]
            .into_iter()
            .flatten()
            .collect();
        if !found.is_empty() {
            vals.extend(found);
            break;
        }
    }
    let mut warnings = Vec::new();
    if args.access_token.is_some() {
        warnings.push(
            "the access token given with -t is visible to every user in process listings; \
             set AWSIOT_TUNNEL_ACCESS_TOKEN or put access-token in a --config file instead"
                .to_string(),
        );
    }
    Ok(Resolved { vals, warnings })
}

impl Resolved {
    /// The value of an option after precedence.
    pub fn get(&self, id: OptId) -> Option<&Value> {
        self.vals.iter().find(|v| v.spec.id == id)
    }

    /// A flag's value: absent is false; from a file or the environment, true/false.
    fn flag(&self, id: OptId) -> Result<bool, ConfigError> {
        match self.get(id) {
            Some(k) => parse_bool(&k.text).ok_or_else(|| {
                k.error(problem(
                    format!("'{}' is not true or false", shown(&k.text)),
                    "give true or false",
                ))
            }),
            None => Ok(false),
        }
    }

    /// Puts `v` in place of the option's value (`--notification` uses it).
    pub fn set(&mut self, v: Value) {
        self.vals.retain(|old| old.spec.id != v.spec.id);
        self.vals.push(v);
    }

    /// Whether `-s` or `-d` gives the mapping (else `--config-dir` is consulted).
    pub fn has_mapping(&self) -> bool {
        self.get(OptId::SourceListenPort).is_some() || self.get(OptId::DestinationApp).is_some()
    }

    /// Validates everything and builds the [`Config`]. `settings` come from
    /// `--settings-json` (already validated), `config_dir_mappings` from `--config-dir`.
    pub fn into_config(
        mut self,
        settings: Settings,
        config_dir_mappings: Vec<(String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = std::mem::take(&mut self.warnings);
        let missing_token = || {
            ConfigError::new(
                "--access-token",
                "no access token is given",
                "set AWSIOT_TUNNEL_ACCESS_TOKEN (safest), put access-token in a --config file, or give -t",
            )
        };
        let access_token_file = match self.get(OptId::AccessTokenFile) {
            Some(f) => {
                check_path(&f.text).map_err(|p| f.error(p))?;
                Some((PathBuf::from(&f.text), f.subject()))
            }
            None => None,
        };
        let access_token = match (self.get(OptId::AccessToken), &access_token_file) {
            (Some(t), Some((_, subject))) => {
                return Err(ConfigError::new(
                    format!("{} and {subject}", t.subject()),
                    "both are given",
                    "give the access token in one place: the file, or the option/environment",
                ))
            }
            (Some(token), None) => {
                check_access_token(&token.text).map_err(|p| token.error(p))?;
                Secret::new(token.text.clone())
            }
            (None, Some((path, subject))) => {
                let text = read_token_file(path).map_err(|e| {
                    ConfigError::new(subject.clone(), e, "write the access token into the file")
                })?;
                check_access_token(&text)
                    .map_err(|p| ConfigError::new(subject.clone(), p.0, p.1))?;
                Secret::new(text)
            }
            (None, None) => return Err(missing_token()),
        };
        let client_token_file = match self.get(OptId::ClientTokenFile) {
            Some(f) => {
                check_path(&f.text).map_err(|p| f.error(p))?;
                Some(PathBuf::from(&f.text))
            }
            None => None,
        };
        let user = match self.get(OptId::User) {
            Some(u) => {
                let ok = !u.text.is_empty()
                    && u.text.len() <= 64
                    && u.text.split(':').count() <= 2
                    && u.text.split(':').all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    });
                if !ok {
                    return Err(u.error(problem(
                        format!("'{}' is not NAME or NAME:GROUP", shown(&u.text)),
                        "give a user name, optionally with a group: --user nobody:nogroup",
                    )));
                }
                Some(u.text.clone())
            }
            None => None,
        };
        let require_non_root = self.flag(OptId::RequireNonRoot)?;

        let client_token = match self.get(OptId::ClientToken) {
            Some(v) => {
                check_client_token(&v.text).map_err(|p| v.error(p))?;
                Some(Secret::new(v.text.clone()))
            }
            None => None,
        };

        let endpoint = match (self.get(OptId::ProxyEndpoint), self.get(OptId::Region)) {
            (Some(e), Some(r)) => {
                return Err(ConfigError::new(
                    format!("{} and {}", e.subject(), r.subject()),
                    "both are given",
                    "give either the region (-r) or the endpoint (-e), not both",
                ))
            }
            (Some(e), None) => parse_endpoint(&e.text).map_err(|p| e.error(p))?,
            (None, Some(r)) => {
                check_region(&r.text).map_err(|p| r.error(p))?;
                Endpoint {
                    host: settings.endpoint_host(&r.text),
                    port: DEFAULT_ENDPOINT_PORT,
                }
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "--region",
                    "neither a region nor an endpoint is given",
                    "give -r REGION (e.g. -r us-east-1), set AWSIOT_TUNNEL_REGION, or give -e HOST[:PORT]",
                ))
            }
        };

        let source = self.get(OptId::SourceListenPort);
        let destination = self.get(OptId::DestinationApp);
        let asked = match self.get(OptId::Mode) {
            Some(m) => Some(parse_mode(&m.text).map_err(|p| m.error(p))?),
            None => None,
        };
        let mode = match (source, destination, asked) {
            (Some(s), Some(d), _) => {
                return Err(ConfigError::new(
                    format!("{} and {}", s.subject(), d.subject()),
                    "both are given",
                    "give -s on the source side (where the client runs) or -d on the destination side (the device), not both",
                ))
            }
            (Some(s), None, Some(Mode::Destination)) => {
                return Err(ConfigError::new(
                    s.subject(),
                    "a listen port is a source option but --mode says destination",
                    "drop --mode, or use -d for the destination",
                ))
            }
            (None, Some(d), Some(Mode::Source)) => {
                return Err(ConfigError::new(
                    d.subject(),
                    "a destination app is a destination option but --mode says source",
                    "drop --mode, or use -s for the source",
                ))
            }
            (Some(_), None, _) => Mode::Source,
            (None, Some(_), _) => Mode::Destination,
            (None, None, Some(m)) => m,
            (None, None, None) => {
                return Err(ConfigError::new(
                    "--source-listen-port",
                    "no mode is given",
                    "give -s PORT on the source side, -d [HOST:]PORT on the destination side, or -m with a --config-dir mapping",
                ))
            }
        };

        let bind_address = match self.get(OptId::LocalBindAddress) {
            Some(b) => Some(parse_bind_address(&b.text).map_err(|p| b.error(p))?),
            None => None,
        };
        let default_host = bind_address.as_deref().unwrap_or(DEFAULT_TARGET_HOST);

        let mappings = match (source, destination) {
            (Some(s), _) => {
                parse_listen_mappings(&s.text, &mut warnings).map_err(|p| s.error(p))?
            }
            (_, Some(d)) => parse_connect_mappings(&d.text, default_host, &mut warnings)
                .map_err(|p| d.error(p))?,
            _ => Vec::new(),
        };
        // Bad --config-dir values are dropped now, so the engine never meets one.
        let config_dir_mappings = if mappings.is_empty() {
            config_dir_mappings
                .into_iter()
                .filter(|(id, v)| {
                    let ok = match mode {
                        Mode::Source => parse_port(v).map(|_| ()),
                        Mode::Destination => parse_target(v, default_host).map(|_| ()),
                    };
                    if let Err((p, _)) = &ok {
                        warnings.push(format!("--config-dir mapping for {id} ignored: {p}"));
                    }
                    ok.is_ok()
                })
                .collect()
        } else {
            Vec::new()
        };

        let capath = match self.get(OptId::Capath) {
            Some(c) => {
                check_path(&c.text).map_err(|p| c.error(p))?;
                Some(PathBuf::from(&c.text))
            }
            None => None,
        };
        let no_ssl_host_verify = self.flag(OptId::NoSslHostVerify)?;
        if no_ssl_host_verify {
            warnings.push(
                "certificate verification is off (--no-ssl-host-verify): anyone on the network \
                 path can impersonate the service; use it only for testing"
                    .to_string(),
            );
        }
        let verbosity = match self.get(OptId::Verbose) {
            Some(v) => parse_verbosity(&v.text).map_err(|p| v.error(p))?,
            None => DEFAULT_VERBOSITY,
        };
        let client_type = match self.get(OptId::DestinationClientType) {
            None => ClientType::V3,
            Some(y) => {
                let t = match y.text.to_ascii_uppercase().as_str() {
                    "V1" => ClientType::V1,
                    "V2" => ClientType::V2,
                    "V3" => ClientType::V3,
                    _ => {
                        warnings.push(format!(
                            "{}: '{}' is not V1 or V2; using V3",
                            y.subject(),
                            shown(&y.text)
                        ));
                        ClientType::V3
                    }
                };
                if mode == Mode::Destination && t != ClientType::V3 {
                    warnings.push(format!(
                        "{}: ignored on the destination, which detects the format from the source",
                        y.subject()
                    ));
                }
                t
            }
        };
        let config = Config {
            mode,
            access_token,
            client_token,
            endpoint,
            mappings,
            config_dir_mappings,
            bind_address,
            capath,
            no_ssl_host_verify,
            verbosity,
            client_type,
            settings,
            access_token_file: access_token_file.map(|(p, _)| p),
            client_token_file,
            user,
            require_non_root,
        };
        Ok((config, warnings))
    }
}

/// `-v` when not given: info.
pub const DEFAULT_VERBOSITY: u8 = 4;

/// The configuration and the warnings to log once the logger is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Whether group or others may read a file (a token in it is then not private).
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

/// Reads a token file: the first line, whitespace trimmed. Errors are one phrase.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return Err(format!(
            "{} is not a regular file of at most 64 KiB",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// Reads a small text file for an option; errors name the option.
fn read_text(path: &Path, subject: &str) -> Result<String, ConfigError> {
    let cannot = |e: std::io::Error| {
        ConfigError::new(
            subject,
            format!("cannot read {}: {e}", path.display()),
            "check the path and its permissions",
        )
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(ConfigError::new(
            subject,
            format!("{} is not a regular file of at most 1 MiB", path.display()),
            "give the path of the file itself",
        ));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    String::from_utf8(bytes).map_err(|_| {
        ConfigError::new(
            subject,
            format!("{} is not valid UTF-8 text", path.display()),
            "save the file as plain text",
        )
    })
}

/// Everything with I/O: reads the `--config` file, `--settings-json` and `--config-dir`
/// (default `<cwd>/config` if it exists), then validates. `main` calls this after
/// `--help`, `--version` and `--export-default-settings` are answered.
pub fn load(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    let file_text;
    let file_name;
    let source = match &args.config {
        Some(path) => {
            file_text = read_text(path, "--config")?;
            file_name = path.display().to_string();
            Some(ConfigSource {
                name: &file_name,
                text: &file_text,
            })
        }
        None => None,
    };
    let mut resolved = resolve(args, source, env)?;
    let notification = match &args.notification {
        Some(path) => {
            let n = crate::notification::read(path)?;
            crate::notification::apply(&mut resolved, &n, path)?;
            if path != "-" && readable_by_others(Path::new(path)) {
                resolved.warnings.push(format!(
                    "{} holds the access token and other users can read it; chmod 600 it",
                    shown(path)
                ));
            }
            Some((n, path))
        }
        None => None,
    };
    if let (Some(path), Some(t)) = (&args.config, resolved.get(OptId::AccessToken)) {
        if matches!(t.origin, Origin::File { .. }) && readable_by_others(path) {
            resolved.warnings.push(format!(
                "{} holds the access token and other users can read it; chmod 600 it",
                path.display()
            ));
        }
    }

    let settings = match resolved.get(OptId::SettingsJson) {
        Some(v) => {
            check_path(&v.text).map_err(|p| v.error(p))?;
            let subject = format!("{} {}", v.subject(), v.text);
            let text = read_text(Path::new(&v.text), &v.subject())?;
            let (settings, warnings) =
                Settings::from_json(&text).map_err(|e| e.within(&subject))?;
            resolved.warnings.extend(warnings);
            settings
        }
        None => Settings::default(),
    };

    if let Some(c) = resolved.get(OptId::Capath) {
        check_path(&c.text).map_err(|p| c.error(p))?;
        if !Path::new(&c.text).is_dir() {
            return Err(c.error(problem(
                format!("{} is not a directory", shown(&c.text)),
                "give a directory of CA certificates in OpenSSL hashed form (c_rehash)",
            )));
        }
    }

    let mut dir_mappings = Vec::new();
    let explicit_dir = resolved.get(OptId::ConfigDir).cloned();
    if resolved.has_mapping() {
        if let Some(d) = explicit_dir {
            resolved.warnings.push(format!(
                "{}: ignored because -s or -d gives the mapping",
                d.subject()
            ));
        }
    } else {
        let dir = match &explicit_dir {
            Some(d) => {
                check_path(&d.text).map_err(|p| d.error(p))?;
                if !Path::new(&d.text).is_dir() {
                    return Err(d.error(problem(
                        format!("{} is not a directory", shown(&d.text)),
                        "give a directory of 'ServiceID = value' files",
                    )));
                }
                Some(PathBuf::from(&d.text))
            }
            None => cwd.map(|c| c.join("config")).filter(|d| d.is_dir()),
        };
        if let Some(dir) = dir {
            let warnings = &mut resolved.warnings;
            read_config_dir(&dir, &mut dir_mappings, warnings);
        }
    }
    let (mut config, mut warnings) = resolved.into_config(settings, dir_mappings)?;
    if let Some((n, path)) = notification {
        crate::notification::finish(&mut config, &n, path, &mut warnings)?;
    }
    Ok(Loaded { config, warnings })
}

/// Reads every regular file under `dir` (sorted, so "first file wins" is repeatable) as
/// `ServiceID = value` lines. Unreadable or unparsable files are skipped with a warning;
/// symlinked directories are not followed (no loops).
pub fn read_config_dir(dir: &Path, out: &mut Vec<(String, String)>, warnings: &mut Vec<String>) {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<(String, String)>, warnings: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(e) => {
                warnings.push(format!("--config-dir: cannot read {}: {e}", dir.display()));
                return;
            }
        };
        entries.sort();
        for path in entries {
            let Ok(link) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if link.is_dir() {
                if depth < 8 {
                    walk(&path, depth + 1, out, warnings);
                }
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() <= MAX_FILE => {}
                _ => continue,
            }
            let parsed = std::fs::File::open(&path)
                .map_err(|e| format!("cannot be read: {e}"))
                .and_then(|f| parse_mapping_file(std::io::BufReader::new(f)));
            match parsed {
                Ok(items) => {
                    for (id, v) in items {
                        if out.iter().any(|(known, _)| *known == id) {
                            warnings.push(format!(
                                "--config-dir: {id} in {} ignored: an earlier file maps it",
                                path.display()
                            ));
                        } else {
                            out.push((id, v));
                        }
                    }
                }
                Err(p) => warnings.push(format!("--config-dir: skipping {}: {p}", path.display())),
            }
        }
    }
    walk(dir, 0, out, warnings);
}

// ---- validation rules (protocol.md §2.3), each returning (problem, fix) ----

pub fn check_access_token(t: &str) -> Result<(), Problem> {
    if t.is_empty() {
        return Err(problem(
            "is empty",
            "give the access token CreateTunnel returned",
        ));
    }
    if t.len() > 4096 {
        return Err(problem(
            format!("is {} bytes long, more than 4096", t.len()),
            "give the access token itself, not a file or a JSON document",
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(problem(
            "contains a control or non-ASCII character",
            "give the token exactly as CreateTunnel returned it (no line breaks)",
        ));
    }
    Ok(())
}

fn check_client_token(t: &str) -> Result<(), Problem> {
    let fix = "give 32 to 128 characters of A-Z, a-z, 0-9 and '-' (a UUID works)";
    if !(32..=128).contains(&t.len()) {
        // Length in bytes of a token we do not show; safe to say.
        return Err(problem(
            format!("is {} characters long", t.chars().count()),
            fix,
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(problem(
            "contains a character other than A-Z, a-z, 0-9 and '-'",
            fix,
        ));
    }
    Ok(())
}

/// Region names: `[a-z0-9-]`, 1 to 64 characters.
pub fn check_region(r: &str) -> Result<(), Problem> {
    let fix = "give a region like us-east-1 (lowercase letters, digits and '-')";
    if r.is_empty() || r.len() > 64 {
        return Err(problem(
            format!("'{}' is not 1 to 64 characters", shown(r)),
            fix,
        ));
    }
    if !r
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(problem(format!("'{}' is not a region name", shown(r)), fix));
    }
    Ok(())
}

/// Host names and addresses: at most 253 of `[A-Za-z0-9.:[]-]`, as the reference.
pub fn check_host(h: &str) -> Result<(), Problem> {
    let fix = "give a host name or IP address (letters, digits, '.', '-', ':')";
    if h.is_empty() {
        return Err(problem("is empty", fix));
    }
    if h.len() > 253 {
        return Err(problem("is longer than 253 characters", fix));
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".:[]-".contains(&b))
    {
        return Err(problem(format!("'{}' is not a host name", shown(h)), fix));
    }
    Ok(())
}

/// Service ids: 1 to 128 of `[A-Za-z0-9_-]`.
pub fn check_service_id(id: &str) -> Result<(), Problem> {
    let fix = "give a service id of letters, digits, '_' and '-' (at most 128), as in the tunnel's services";
    if id.is_empty() {
        return Err(problem("is empty", fix));
    }
    if id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(problem(format!("'{}' is not a service id", shown(id)), fix));
    }
    Ok(())
}

/// Ports: digits only, 1 to 65535.
pub fn parse_port(p: &str) -> Result<u16, Problem> {
    let fix = "give a port from 1 to 65535";
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(format!("'{}' is not a port number", shown(p)), fix));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(problem(format!("port {} is out of range", shown(p)), fix)),
    }
}

/// File and directory paths: non-empty, at most 4096 bytes, no NUL.
pub fn check_path(p: &str) -> Result<(), Problem> {
    if p.is_empty() || p.len() > 4096 || p.contains('\0') {
        return Err(problem(
            "is not a usable path",
            "give a path of 1 to 4096 characters",
        ));
    }
    Ok(())
}

fn parse_mode(m: &str) -> Result<Mode, Problem> {
    match m.to_ascii_lowercase().as_str() {
        "src" | "source" => Ok(Mode::Source),
        "dst" | "destination" => Ok(Mode::Destination),
        _ => Err(problem(
            format!("'{}' is not a mode", shown(m)),
            "give src, source, dst or destination",
        )),
    }
}

/// `-v`: the reference takes 0..=65535; everything from 6 up is trace, so clamp to u8.
fn parse_verbosity(v: &str) -> Result<u8, Problem> {
    let fix = "give a number: 0 off, 1 fatal, 2 error, 3 warn, 4 info, 5 debug, 6 trace";
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(format!("'{}' is not a log level", shown(v)), fix));
    }
    match v.parse::<u32>() {
        Ok(n) if n <= 65535 => Ok(n.min(255) as u8),
        _ => Err(problem(format!("{} is out of range", shown(v)), fix)),
    }
}

/// `-b`: a host or address; brackets around an IPv6 literal are dropped.
fn parse_bind_address(b: &str) -> Result<String, Problem> {
    check_host(b)?;
    let inner = b
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(b);
    if inner.is_empty() || inner.contains(['[', ']']) {
        return Err(problem(
            format!("'{}' is not a host name", shown(b)),
            "give a host name or IP address, e.g. 0.0.0.0 or ::1",
        ));
    }
    Ok(inner.to_string())
}

/// Splits `host[:port]`, `[v6]` or `[v6]:port`. `port` is `None` when absent.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), Problem> {
    let fix_v6 = "write an IPv6 address in brackets, e.g. [::1]:443";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(problem("has an unclosed '['", fix_v6));
        };
        if host.is_empty() || !host.contains(':') {
            return Err(problem(
                "has brackets around something that is not an IPv6 address",
                fix_v6,
            ));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(problem("has text after ']'", fix_v6)),
            },
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => {
                let (h, p) = s.split_once(':').unwrap_or((s, ""));
                (h, Some(p))
            }
            _ => return Err(problem("has more than one ':'", fix_v6)),
        }
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err(problem("has no host name", "give HOST or HOST:PORT"));
    }
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((host.to_string(), port))
}

/// `-e host[:port]`: no scheme, no path; lowercased; port 443 unless given.
pub fn parse_endpoint(e: &str) -> Result<Endpoint, Problem> {
    let fix = "give host[:port] without wss:// or a path";
    if e.contains("://") || e.contains('/') {
        return Err(problem(
            format!("'{}' has a scheme or a path", shown(e)),
            fix,
        ));
    }
    check_host(e).map_err(|(p, _)| (p, fix.to_string()))?;
    let (host, port) = split_host_port(e)?;
    Ok(Endpoint {
        host: host.to_ascii_lowercase(),
        port: port.unwrap_or(DEFAULT_ENDPOINT_PORT),
    })
}

/// A destination target: a Unix socket path (contains `/`), `host:port`, or a bare port
/// on `default_host`.
pub fn parse_target(t: &str, default_host: &str) -> Result<Target, Problem> {
    if t.contains('/') {
        check_path(t)?;
        return Ok(Target::Unix(PathBuf::from(t)));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Target::Tcp {
            host: default_host.to_string(),
            port: parse_port(t)?,
        });
    }
    check_host(t)?;
    match split_host_port(t)? {
        (host, Some(port)) => Ok(Target::Tcp { host, port }),
        (_, None) => Err(problem(
            format!("'{}' has no port", shown(t)),
            "give PORT, HOST:PORT or a Unix socket path",
        )),
    }
}

/// Splits `ID=value,ID=value` (items trimmed, empty items skipped), or returns `None`
/// when the text is a single unnamed value.
fn split_named(text: &str) -> Result<Option<Vec<(String, String)>>, Problem> {
    if !text.contains('=') {
        return Ok(None);
    }
    let mut items = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((id, v)) = item.split_once('=') else {
            return Err(problem(
                format!("item '{}' has no service id", shown(item)),
                "write every item as ID=VALUE, e.g. SSH1=5555,SSH2=6666",
            ));
        };
        let (id, v) = (id.trim(), v.trim());
        check_service_id(id).map_err(|(p, f)| (format!("the service id {p}"), f))?;
        items.push((id.to_string(), v.to_string()));
    }
    if items.is_empty() {
        return Err(problem("is empty", "give PORT or ID=PORT,..."));
    }
    Ok(Some(items))
}

/// Keeps the first of each service id, warning about the rest (as the reference).
fn dedup(
    items: Vec<(String, String)>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (id, v) in items {
        if out.iter().any(|(known, _)| *known == id) {
            warnings.push(format!(
                "{what}: service id {id} is given twice; the first one is used"
            ));
        } else {
            out.push((id, v));
        }
    }
    out
}

/// `-s`: `5555` or `SSH1=5555,SSH2=6666`.
pub fn parse_listen_mappings(
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Mapping>, Problem> {
    let single_fix = "give a port number; the listen address is set with -b";
    let items = match split_named(text)? {
        None => {
            let t: Vec<&str> = text
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            let one = match t.as_slice() {
                [] => return Err(problem("is empty", "give a port from 1 to 65535")),
                [one] => *one,
                _ => {
                    return Err(problem(
                        "several ports need service ids",
                        "write ID=PORT for each, e.g. SSH1=5555,SSH2=6666",
                    ))
                }
            };
            if one.contains(':') {
                return Err(problem(
                    format!("'{}' is not a port", shown(one)),
                    single_fix,
                ));
            }
            return Ok(vec![Mapping::Listen {
                service_id: String::new(),
                port: parse_port(one)?,
            }]);
        }
        Some(items) => dedup(items, "--source-listen-port", warnings),
    };
    let mut out: Vec<Mapping> = Vec::new();
    for (id, v) in items {
        let port = parse_port(&v).map_err(|(p, f)| (format!("{id}: {p}"), f))?;
        if let Some(other) = out
            .iter()
            .find(|m| matches!(m, Mapping::Listen { port: q, .. } if *q == port))
        {
            return Err(problem(
                format!(
                    "port {port} is given to both {} and {id}",
                    other.service_id()
                ),
                "give each service its own port",
            ));
        }
        out.push(Mapping::Listen {
            service_id: id,
            port,
        });
    }
    Ok(out)
}

/// `-d`: `22`, `host:22`, `/run/app.sock`, or `ID=target,...`.
pub fn parse_connect_mappings(
    text: &str,
    default_host: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Mapping>, Problem> {
    match split_named(text)? {
        None => Ok(vec![Mapping::Connect {
            service_id: String::new(),
            target: parse_target(text.trim(), default_host)?,
        }]),
        Some(items) => dedup(items, "--destination-app", warnings)
            .into_iter()
            .map(|(id, v)| {
                let target =
                    parse_target(&v, default_host).map_err(|(p, f)| (format!("{id}: {p}"), f))?;
                Ok(Mapping::Connect {
                    service_id: id,
                    target,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};

    const TOKEN: &str = "AQGAAXiYSECRETTOKENTEXT0123456789abcdef";
    const CLIENT: &str = "0123456789abcdef-0123456789abcdef";

    fn args(list: &[&str]) -> Args {
        match parse(list.iter().copied()) {
            Ok(Command::Run(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    /// Resolves and builds with the given file text and environment.
    fn build_with(
        cli: &[&str],
        file: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let a = args(cli);
        let env_fn = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        let src = file.map(|text| ConfigSource {
            name: "lp.conf",
            text,
        });
        resolve(&a, src, &env_fn)?.into_config(Settings::default(), Vec::new())
    }

    /// With a token in the environment, so each test names only what it is about.
    fn build(cli: &[&str]) -> Result<Config, ConfigError> {
        build_with(cli, None, &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)]).map(|(c, _)| c)
    }

    fn err(cli: &[&str]) -> String {
        let e = build(cli).unwrap_err().to_string();
        assert!(!e.contains(TOKEN) && !e.contains("SECRET"), "{e}");
        e
    }

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn minimal_source_and_destination() {
        let c = build(&["-r", "us-east-1", "-s", "5555"]).unwrap();
        assert_eq!(c.mode, Mode::Source);
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(
            c.endpoint,
            Endpoint {
                host: "data.tunneling.iot.us-east-1.amazonaws.com".into(),
                port: 443
            }
        );
        assert_eq!(
            c.mappings,
            vec![Mapping::Listen {
                service_id: String::new(),
                port: 5555
            }]
        );
        assert_eq!(c.verbosity, 4);
        assert_eq!(c.client_type, ClientType::V3);
        assert!(!c.no_ssl_host_verify);

        let c = build(&["-r", "us-east-1", "-d", "22"]).unwrap();
        assert_eq!(c.mode, Mode::Destination);
        assert_eq!(
            c.mappings,
            vec![Mapping::Connect {
                service_id: String::new(),
                target: tcp("127.0.0.1", 22)
            }]
        );
    }

    #[test]
    fn china_regions_use_their_override() {
        let c = build(&["-r", "cn-north-1", "-s", "1"]).unwrap();
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.cn-north-1.amazonaws.com.cn"
        );
        let c = build(&["-r", "cn-northwest-1", "-s", "1"]).unwrap();
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn endpoint_forms() {
        let ep = |e: &str| build(&["-e", e, "-s", "1"]).map(|c| c.endpoint);
        assert_eq!(
            ep("LocalHost").unwrap(),
            Endpoint {
                host: "localhost".into(),
                port: 443
            }
        );
        assert_eq!(
            ep("127.0.0.1:8443").unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 8443
            }
        );
        assert_eq!(
            ep("[::1]:9000").unwrap(),
            Endpoint {
                host: "::1".into(),
                port: 9000
            }
        );
        assert_eq!(
            ep("[::1]").unwrap(),
            Endpoint {
                host: "::1".into(),
                port: 443
            }
        );
        for bad in [
            "wss://x/",
            "https://x",
            "x/tunnel",
            "x:0",
            "x:99999",
            "x:",
            "::1",
            "[::1",
            "[x]:1",
            "a b",
            "",
        ] {
            assert!(ep(bad).is_err(), "{bad}");
        }
        assert_eq!(
            err(&["-e", "wss://x/", "-s", "1"]),
            "--proxy-endpoint: 'wss://x/' has a scheme or a path; give host[:port] without wss:// or a path"
        );
        assert!(err(&["-e", &"a".repeat(254), "-s", "1"]).contains("longer than 253"));
    }

    #[test]
    fn region_rule() {
        assert!(err(&["-r", "US-EAST-1", "-s", "1"])
            .starts_with("--region: 'US-EAST-1' is not a region name"));
        assert!(err(&["-r", &"a".repeat(65), "-s", "1"]).contains("not 1 to 64"));
        assert!(err(&["-r", "us_east_1", "-s", "1"]).contains("not a region name"));
    }

    #[test]
    fn endpoint_and_region_exclusive_and_required() {
        assert_eq!(
            err(&["-e", "x", "-r", "us-east-1", "-s", "1"]),
            "--proxy-endpoint and --region: both are given; give either the region (-r) or the endpoint (-e), not both"
        );
        assert!(
            err(&["-s", "1"]).starts_with("--region: neither a region nor an endpoint is given")
        );
    }

    #[test]
    fn access_token_rules() {
        let e = build_with(&["-r", "us-east-1", "-s", "5555"], None, &[]).unwrap_err();
        assert_eq!(e.subject, "--access-token");
        assert!(e.to_string().contains("AWSIOT_TUNNEL_ACCESS_TOKEN"));
        let long = "A".repeat(4097);
        let with = |t: &str| build_with(&["-r", "us-east-1", "-s", "1", "-t", t], None, &[]);
        assert!(with(&"A".repeat(4096)).is_ok());
        let e = with(&long).unwrap_err().to_string();
        assert!(e.starts_with("--access-token: is 4097 bytes long"), "{e}");
        assert!(!e.contains("AAAA"));
        let e = with("SECRET\nTOKEN").unwrap_err().to_string();
        assert!(e.contains("control"), "{e}");
        assert!(!e.contains("SECRET"));
        assert!(with("SECRET\u{7f}").is_err());
        assert!(with("SECRÉT").is_err());
        // An empty env var is "unset"; an empty -t is a mistake worth naming.
        let e = with("").unwrap_err().to_string();
        assert!(e.starts_with("--access-token: is empty"), "{e}");
        let e = build_with(
            &["-r", "x", "-s", "1"],
            None,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", "")],
        );
        assert_eq!(e.unwrap_err().subject, "--access-token");
    }

    #[test]
    fn token_on_cli_warns() {
        let (_, w) = build_with(&["-t", TOKEN, "-r", "us-east-1", "-s", "1"], None, &[]).unwrap();
        assert!(w
            .iter()
            .any(|w| w.contains("process listings") && w.contains("AWSIOT_TUNNEL_ACCESS_TOKEN")));
        assert!(!w.iter().any(|w| w.contains(TOKEN)));
        let (_, w) = build_with(
            &["-r", "us-east-1", "-s", "1"],
            None,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)],
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn client_token_rules() {
        let ok = build(&["-r", "us-east-1", "-s", "1", "-i", CLIENT]).unwrap();
        assert_eq!(ok.client_token.unwrap().expose(), CLIENT);
        assert!(build(&["-r", "us-east-1", "-s", "1", "-i", &"a".repeat(128)]).is_ok());
        assert_eq!(
            err(&["-r", "us-east-1", "-s", "1", "-i", "SECRETshort"]),
            "--client-token: is 11 characters long; give 32 to 128 characters of A-Z, a-z, 0-9 and '-' (a UUID works)"
        );
        assert!(
            err(&["-r", "us-east-1", "-s", "1", "-i", &"a".repeat(129)]).contains("129 characters")
        );
        let e = err(&[
            "-r",
            "us-east-1",
            "-s",
            "1",
            "-i",
            "SECRET_0123456789abcdef0123456789abcdef",
        ]);
        assert!(e.contains("a character other than"), "{e}");
    }

    #[test]
    fn port_rules() {
        assert_eq!(
            err(&["-r", "us-east-1", "-s", "0"]),
            "--source-listen-port: port 0 is out of range; give a port from 1 to 65535"
        );
        assert!(err(&["-r", "us-east-1", "-s", "65536"]).contains("out of range"));
        assert!(err(&["-r", "us-east-1", "-s", "-1"]).contains("not a port number"));
        assert!(err(&["-r", "us-east-1", "-s", "+22"]).contains("not a port number"));
        assert!(err(&["-r", "us-east-1", "-s", "localhost:22"]).contains("not a port"));
        assert!(build(&["-r", "us-east-1", "-s", "65535"]).is_ok());
        assert!(err(&["-r", "us-east-1", "-d", "0"]).contains("port 0 is out of range"));
        assert!(err(&["-r", "us-east-1", "-d", "host:0"]).contains("port 0 is out of range"));
    }

    #[test]
    fn listen_mappings() {
        let mut w = Vec::new();
        let l = |id: &str, port| Mapping::Listen {
            service_id: id.into(),
            port,
        };
        assert_eq!(
            parse_listen_mappings("5555", &mut w).unwrap(),
            vec![l("", 5555)]
        );
        assert_eq!(
            parse_listen_mappings(" 5555 ,", &mut w).unwrap(),
            vec![l("", 5555)]
        );
        assert_eq!(
            parse_listen_mappings("SSH1=5555,SSH2=6666", &mut w).unwrap(),
            vec![l("SSH1", 5555), l("SSH2", 6666)]
        );
        assert_eq!(
            parse_listen_mappings(" SSH1 = 5555 , , SSH2=6666, ", &mut w).unwrap(),
            vec![l("SSH1", 5555), l("SSH2", 6666)]
        );
        assert!(w.is_empty());
        assert_eq!(
            parse_listen_mappings("SSH1=5555,SSH1=7777", &mut w).unwrap(),
            vec![l("SSH1", 5555)]
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("SSH1 is given twice"));
        let bad = |t: &str| parse_listen_mappings(t, &mut Vec::new()).unwrap_err().0;
        assert!(bad("5555,6666").contains("several ports need service ids"));
        assert!(bad("SSH1=5555,6666").contains("has no service id"));
        assert!(bad("=5555").contains("service id is empty"));
        assert!(bad("SSH:1=5555").contains("not a service id"));
        assert!(bad(&format!("{}=1", "a".repeat(129))).contains("not a service id"));
        assert!(bad("SSH1=0").contains("SSH1: port 0 is out of range"));
        assert!(bad("A=5555,B=5555").contains("port 5555 is given to both A and B"));
        assert!(bad(",").contains("is empty"));
        assert!(parse_listen_mappings(&format!("{}=1", "a".repeat(128)), &mut w).is_ok());
        assert!(parse_listen_mappings("a_b-C9=1", &mut w).is_ok());
    }

    #[test]
    fn connect_mappings() {
        let mut w = Vec::new();
        let c = |id: &str, target| Mapping::Connect {
            service_id: id.into(),
            target,
        };
        let p = |t: &str| parse_connect_mappings(t, "127.0.0.1", &mut Vec::new());
        assert_eq!(p("22").unwrap(), vec![c("", tcp("127.0.0.1", 22))]);
        assert_eq!(p("host:22").unwrap(), vec![c("", tcp("host", 22))]);
        assert_eq!(p("10.0.0.1:80").unwrap(), vec![c("", tcp("10.0.0.1", 80))]);
        assert_eq!(p("[::1]:22").unwrap(), vec![c("", tcp("::1", 22))]);
        assert_eq!(
            p("/run/app.sock").unwrap(),
            vec![c("", Target::Unix("/run/app.sock".into()))]
        );
        assert_eq!(
            p("./app.sock").unwrap(),
            vec![c("", Target::Unix("./app.sock".into()))]
        );
        assert_eq!(
            p("SSH=host:22, WEB=80 ,SOCK=/run/a.sock").unwrap(),
            vec![
                c("SSH", tcp("host", 22)),
                c("WEB", tcp("127.0.0.1", 80)),
                c("SOCK", Target::Unix("/run/a.sock".into()))
            ]
        );
        assert_eq!(
            parse_connect_mappings("SSH=1,SSH=2", "h", &mut w).unwrap(),
            vec![c("SSH", tcp("h", 1))]
        );
        assert_eq!(w.len(), 1);
        assert!(p("host").unwrap_err().0.contains("has no port"));
        assert!(p("host:").unwrap_err().0.contains("not a port number"));
        assert!(p("a b:22").is_err());
        assert!(p("SSH=").is_err());
        assert!(p("SSH=host:x").unwrap_err().0.starts_with("SSH: "));
    }

    #[test]
    fn bind_address_is_default_host_for_bare_destination_port() {
        let c = build(&["-r", "us-east-1", "-d", "22", "-b", "192.168.1.5"]).unwrap();
        assert_eq!(
            c.mappings[0],
            Mapping::Connect {
                service_id: String::new(),
                target: tcp("192.168.1.5", 22)
            }
        );
        assert_eq!(c.default_target_host(), "192.168.1.5");
        let c = build(&["-r", "us-east-1", "-s", "22", "-b", "[::1]"]).unwrap();
        assert_eq!(c.bind_address.as_deref(), Some("::1"));
        assert!(build(&["-r", "us-east-1", "-s", "22", "-b", "::"]).is_ok());
        assert!(err(&["-r", "us-east-1", "-s", "22", "-b", "a b"])
            .starts_with("--local-bind-address: 'a b' is not a host name"));
        assert!(
            err(&["-r", "us-east-1", "-s", "22", "-b", "[]"]).starts_with("--local-bind-address:")
        );
        assert!(err(&["-r", "us-east-1", "-s", "22", "-b", &"a".repeat(254)]).contains("253"));
    }

    #[test]
    fn mode_rules() {
        assert_eq!(
            err(&["-r", "us-east-1", "-s", "5555", "-d", "22"]),
            "--source-listen-port and --destination-app: both are given; give -s on the source side (where the client runs) or -d on the destination side (the device), not both"
        );
        assert!(err(&["-r", "us-east-1", "-s", "5555", "-m", "dst"]).starts_with("--source-listen-port: a listen port is a source option but --mode says destination"));
        assert!(err(&["-r", "us-east-1", "-d", "22", "-m", "source"])
            .starts_with("--destination-app: a destination app is a destination option"));
        assert!(err(&["-r", "us-east-1"]).contains("no mode is given"));
        assert!(err(&["-r", "us-east-1", "-m", "sideways"])
            .starts_with("--mode: 'sideways' is not a mode; give src, source, dst or destination"));
        for (m, want) in [
            ("src", Mode::Source),
            ("source", Mode::Source),
            ("dst", Mode::Destination),
            ("destination", Mode::Destination),
            ("DST", Mode::Destination),
        ] {
            let c = build(&["-r", "us-east-1", "-m", m]).unwrap();
            assert_eq!(c.mode, want);
            assert!(c.mappings.is_empty());
        }
        assert_eq!(
            build(&["-r", "us-east-1", "-s", "1", "-m", "src"])
                .unwrap()
                .mode,
            Mode::Source
        );
        assert_eq!(
            build(&["-r", "us-east-1", "-d", "1", "-m", "dst"])
                .unwrap()
                .mode,
            Mode::Destination
        );
    }

    #[test]
    fn verbosity_and_client_type() {
        let v = |x: &str| build(&["-r", "us-east-1", "-s", "1", "-v", x]).map(|c| c.verbosity);
        assert_eq!(v("0").unwrap(), 0);
        assert_eq!(v("6").unwrap(), 6);
        assert_eq!(v("255").unwrap(), 255);
        assert_eq!(v("65535").unwrap(), 255);
        assert!(v("65536").is_err());
        assert!(v("-1").is_err());
        assert!(err(&["-r", "us-east-1", "-s", "1", "-v", "loud"])
            .starts_with("--verbose: 'loud' is not a log level"));

        let y = |x: &str, side: &str| {
            build_with(
                &["-r", "us-east-1", side, "1", "-y", x],
                None,
                &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)],
            )
            .unwrap()
        };
        assert_eq!(y("V1", "-s").0.client_type, ClientType::V1);
        assert_eq!(y("v2", "-s").0.client_type, ClientType::V2);
        let (c, w) = y("V9", "-s");
        assert_eq!(c.client_type, ClientType::V3);
        assert!(w[0].contains("'V9' is not V1 or V2; using V3"), "{w:?}");
        let (_, w) = y("V1", "-d");
        assert!(w[0].contains("ignored on the destination"), "{w:?}");
    }

    #[test]
    fn capath_and_k() {
        let (c, w) = build_with(
            &["-r", "us-east-1", "-s", "1", "-c", "/etc/ssl/certs", "-k"],
            None,
            &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)],
        )
        .unwrap();
        assert_eq!(c.capath, Some(PathBuf::from("/etc/ssl/certs")));
        assert!(c.no_ssl_host_verify);
        assert!(w
            .iter()
            .any(|w| w.contains("certificate verification is off")));
        assert!(err(&["-r", "us-east-1", "-s", "1", "-c", ""])
            .starts_with("--capath: is not a usable path"));
    }

    #[test]
    fn environment_variables() {
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_CLIENT_TOKEN", CLIENT),
            ("AWSIOT_TUNNEL_REGION", "eu-west-1"),
        ];
        let (c, _) = build_with(&["-s", "1"], None, &env).unwrap();
        assert_eq!(c.access_token.expose(), TOKEN);
        assert_eq!(c.client_token.unwrap().expose(), CLIENT);
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.eu-west-1.amazonaws.com"
        );
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_ENDPOINT", "Example.com:8443"),
        ];
        let (c, _) = build_with(&["-s", "1"], None, &env).unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint {
                host: "example.com".into(),
                port: 8443
            }
        );
        // Errors name the variable, so the user edits the right place.
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_ENDPOINT", "wss://x"),
        ];
        let e = build_with(&["-s", "1"], None, &env)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("AWSIOT_TUNNEL_ENDPOINT: "), "{e}");
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_CLIENT_TOKEN", "SECRET"),
        ];
        let e = build_with(&["-s", "1", "-r", "x"], None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("AWSIOT_TUNNEL_CLIENT_TOKEN: is 6 characters long"),
            "{e}"
        );
        // Both endpoint variables set: the same layer names both, which is an error.
        let env = [
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
            ("AWSIOT_TUNNEL_ENDPOINT", "x"),
            ("AWSIOT_TUNNEL_REGION", "y"),
        ];
        let e = build_with(&["-s", "1"], None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("AWSIOT_TUNNEL_ENDPOINT and AWSIOT_TUNNEL_REGION: both are given"),
            "{e}"
        );
    }

    const FILE_TOKEN: &str = "FILETOKEN0123456789";
    const ENV_TOKEN: &str = "ENVTOKEN0123456789";

    fn full_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AWSIOT_TUNNEL_ACCESS_TOKEN", ENV_TOKEN),
            (
                "AWSIOT_TUNNEL_CLIENT_TOKEN",
                "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            ),
            ("AWSIOT_TUNNEL_REGION", "eu-west-1"),
        ]
    }

    #[test]
    fn precedence_cli_over_file() {
        let file = "access-token = FILETOKEN0123456789\nregion = ap-south-1\nsource-listen-port = 7000\nverbose = 2\n";
        let (c, _) = build_with(
            &["-t", "CLITOKEN", "-r", "us-east-1", "-s", "5555", "-v", "5"],
            Some(file),
            &[],
        )
        .unwrap();
        assert_eq!(c.access_token.expose(), "CLITOKEN");
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.us-east-1.amazonaws.com"
        );
        assert_eq!(
            c.mappings,
            vec![Mapping::Listen {
                service_id: String::new(),
                port: 5555
            }]
        );
        assert_eq!(c.verbosity, 5);
        // -e on the CLI replaces the file's region as a whole (no "both given").
        let (c, _) = build_with(&["-e", "cli.example.com"], Some(file), &[]).unwrap();
        assert_eq!(c.endpoint.host, "cli.example.com");
        assert_eq!(c.access_token.expose(), FILE_TOKEN);
    }

    #[test]
    fn precedence_file_over_env() {
        let file = "access-token = FILETOKEN0123456789\nclient-token = ffffffffffffffffffffffffffffffffffff\nregion = ap-south-1\ns\
                    ource-listen-port = 7000\n";
        let (c, _) = build_with(&[], Some(file), &full_env()).unwrap();
        assert_eq!(c.access_token.expose(), FILE_TOKEN);
        assert_eq!(
            c.client_token.unwrap().expose(),
            "ffffffffffffffffffffffffffffffffffff"
        );
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.ap-south-1.amazonaws.com"
        );
        // The file's endpoint beats the environment's region.
        let (c, _) = build_with(
            &["-s", "1"],
            Some("proxy-endpoint = file.example.com"),
            &full_env(),
        )
        .unwrap();
        assert_eq!(c.endpoint.host, "file.example.com");
    }

    #[test]
    fn precedence_cli_over_env() {
        let (c, _) = build_with(
            &[
                "-t",
                "CLITOKEN",
                "-i",
                "cccccccccccccccccccccccccccccccccccc",
                "-r",
                "us-west-2",
                "-s",
                "1",
            ],
            None,
            &full_env(),
        )
        .unwrap();
        assert_eq!(c.access_token.expose(), "CLITOKEN");
        assert_eq!(
            c.client_token.unwrap().expose(),
            "cccccccccccccccccccccccccccccccccccc"
        );
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.us-west-2.amazonaws.com"
        );
        let mut env = full_env();
        env.push(("AWSIOT_TUNNEL_ENDPOINT", "env.example.com"));
        env.retain(|(k, _)| *k != "AWSIOT_TUNNEL_REGION");
        let (c, _) = build_with(&["-r", "us-west-2", "-s", "1"], None, &env).unwrap();
        assert_eq!(
            c.endpoint.host,
            "data.tunneling.iot.us-west-2.amazonaws.com"
        );
    }

    #[test]
    fn file_values_conflict_with_cli_values_of_other_keys() {
        let e = build_with(
            &["-d", "22"],
            Some("source-listen-port = 5555\nregion = x"),
            &full_env(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "lp.conf line 1: source-listen-port and --destination-app: both are given"
            ),
            "{e}"
        );
    }

    #[test]
    fn config_file_syntax() {
        let text = b"# comment\n\n  [section]\nregion = us-east-1   # trailing comment\n\
                     \tsource-listen-port=SSH=5555\nno-ssl-host-verify = true\nverbose = 6\n";
        let entries = parse_config_file("f", &text[..]).unwrap();
        let got: Vec<(&str, &str, usize)> = entries
            .iter()
            .map(|e| (e.spec.long, e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("region", "us-east-1", 4),
                ("source-listen-port", "SSH=5555", 5),
                ("no-ssl-host-verify", "true", 6),
                ("verbose", "6", 7)
            ]
        );
        let (c, _) =
            build_with(&[], Some(std::str::from_utf8(text).unwrap()), &full_env()).unwrap();
        assert!(c.no_ssl_host_verify);
        assert_eq!(c.verbosity, 6);
        assert_eq!(
            c.mappings,
            vec![Mapping::Listen {
                service_id: "SSH".into(),
                port: 5555
            }]
        );
        let (c, _) =
            build_with(&["-s", "1"], Some("no-ssl-host-verify = off"), &full_env()).unwrap();
        assert!(!c.no_ssl_host_verify);
    }

    #[test]
    fn config_file_errors() {
        let e = |text: &str| {
            parse_config_file("lp.conf", text.as_bytes())
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            e("region = x\n\nregoin = y\n").unwrap(),
            "lp.conf line 3: unknown key 'regoin'; use a long option name without dashes, e.g. region or access-token"
        );
        assert!(e("region\n")
            .unwrap()
            .starts_with("lp.conf line 1: is not a 'name = value' line"));
        assert!(e("help = true")
            .unwrap()
            .contains("'help' cannot be set in a config file"));
        assert!(e("config = other.conf")
            .unwrap()
            .contains("cannot be set in a config file"));
        assert!(e("check = 1").unwrap().contains("cannot be set"));
        assert!(e("region = a\nregion = b")
            .unwrap()
            .starts_with("lp.conf line 2: 'region' is given again (first on line 1)"));
        assert!(e("--region = a")
            .unwrap()
            .contains("unknown key '--region'"));
        // A pasted token line is not echoed.
        let line = format!("{TOKEN}+/xyz==");
        let msg = e(&line).unwrap();
        assert!(!msg.contains("SECRET"), "{msg}");
        assert!(parse_config_file("f", &b"region = \xff\n"[..])
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        // Values in the file are validated with the file's line in the message.
        let e = build_with(
            &[],
            Some("region = us-east-1\nsource-listen-port = 0"),
            &full_env(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "lp.conf line 2: source-listen-port: port 0 is out of range; give a port from 1 to 65535");
        let e = build_with(
            &["-s", "1", "-r", "x"],
            Some("no-ssl-host-verify = maybe"),
            &full_env(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'maybe' is not true or false"), "{e}");
    }

    #[test]
    fn mapping_files() {
        let m = parse_mapping_file(
            &b"# services\n[x]\nSSH1 = 3333\nWEB=10.0.0.1:80 # web\nSSH1 = 9\n"[..],
        )
        .unwrap();
        assert_eq!(
            m,
            vec![
                ("SSH1".into(), "3333".into()),
                ("WEB".into(), "10.0.0.1:80".into())
            ]
        );
        assert!(parse_mapping_file(&b"SSH1\n"[..])
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_mapping_file(&b"S:1 = 2\n"[..]).is_err());
        assert!(parse_mapping_file(&b"S = \n"[..]).is_err());
        assert!(parse_mapping_file(&b" = 2\n"[..]).is_err());
    }

    #[test]
    fn config_dir_mappings_are_checked_for_the_mode() {
        let a = args(&["-r", "us-east-1", "-m", "src"]);
        let env = |k: &str| (k == "AWSIOT_TUNNEL_ACCESS_TOKEN").then(|| TOKEN.to_string());
        let dir = vec![
            ("SSH".to_string(), "3333".to_string()),
            ("BAD".to_string(), "host:1".to_string()),
        ];
        let (c, w) = resolve(&a, None, &env)
            .unwrap()
            .into_config(Settings::default(), dir.clone())
            .unwrap();
        assert_eq!(
            c.config_dir_mappings,
            vec![("SSH".to_string(), "3333".to_string())]
        );
        assert!(w.iter().any(|w| w.contains("BAD ignored")), "{w:?}");
        assert_eq!(
            c.config_dir_mapping("SSH"),
            Some(Mapping::Listen {
                service_id: "SSH".into(),
                port: 3333
            })
        );
        assert_eq!(c.config_dir_mapping("NONE"), None);
        let a = args(&["-r", "us-east-1", "-m", "dst", "-b", "10.1.1.1"]);
        let (c, _) = resolve(&a, None, &env)
            .unwrap()
            .into_config(Settings::default(), dir)
            .unwrap();
        assert_eq!(
            c.config_dir_mapping("SSH"),
            Some(Mapping::Connect {
                service_id: "SSH".into(),
                target: tcp("10.1.1.1", 3333)
            })
        );
        assert_eq!(
            c.config_dir_mapping("BAD"),
            Some(Mapping::Connect {
                service_id: "BAD".into(),
                target: tcp("host", 1)
            })
        );
        // With -s/-d the directory is not consulted.
        let a = args(&["-r", "us-east-1", "-s", "1"]);
        let (c, _) = resolve(&a, None, &env)
            .unwrap()
            .into_config(Settings::default(), vec![("X".into(), "1".into())])
            .unwrap();
        assert!(c.config_dir_mappings.is_empty());
    }

    #[test]
    fn describe_masks_tokens() {
        let c = build(&["-r", "us-east-1", "-s", "SSH1=5555,SSH2=6666", "-i", CLIENT]).unwrap();
        let d = c.describe();
        assert!(!d.contains(TOKEN) && !d.contains(CLIENT), "{d}");
        assert!(
            d.contains(&format!("access-token = *** ({} chars)\n", TOKEN.len())),
            "{d}"
        );
        assert!(
            d.contains(&format!("client-token = *** ({} chars)\n", CLIENT.len())),
            "{d}"
        );
        assert!(d.contains("mode = source\n"));
        assert!(d.contains("proxy-endpoint = data.tunneling.iot.us-east-1.amazonaws.com:443\n"));
        assert!(d.contains("source-listen-port = SSH1=5555,SSH2=6666\n"));
        assert!(d.contains("local-bind-address = localhost (default)\n"));
        assert!(d.contains("verbose = 4 (info)\n"));
        assert!(d.contains("tunneling.proxy.websocket.ping_period_ms = 20000\n"));
        let d = build(&["-r", "us-east-1", "-d", "SSH=/run/s.sock,WEB=80"])
            .unwrap()
            .describe();
        assert!(
            d.contains("destination-app = SSH=/run/s.sock,WEB=127.0.0.1:80\n"),
            "{d}"
        );
        assert!(d.contains("client-token = (none)\n"));
    }

    #[test]
    fn load_reads_files_and_the_default_config_dir() {
        let base = std::env::temp_dir().join(format!("lp-config-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("config/sub")).unwrap();
        std::fs::write(base.join("config/a"), "SSH = 3333\n").unwrap();
        std::fs::write(base.join("config/sub/b"), "WEB = 8080\nSSH = 1\n").unwrap();
        std::fs::write(base.join("config/zz-bad"), "not a mapping\n").unwrap();
        std::fs::write(
            base.join("lp.conf"),
            format!(
                "region = us-east-1\nmode = src\nsettings-json = {}\naccess-token = FILETOKEN\n",
                base.join("s.json").display()
            ),
        )
        .unwrap();
        let conf = base.join("lp.conf");
        let mode = |m| {
            std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(m))
                .unwrap()
        };
        mode(0o644);
        std::fs::write(
            base.join("s.json"),
            r#"{"tunneling":{"proxy":{"tcp":{"max_active_connections":"7"},"x":"1"}}}"#,
        )
        .unwrap();
        let mut a = args(&[]);
        a.config = Some(base.join("lp.conf"));
        let env = |k: &str| (k == "AWSIOT_TUNNEL_ACCESS_TOKEN").then(|| TOKEN.to_string());
        let l = load(&a, &env, Some(&base)).unwrap();
        assert_eq!(l.config.settings.tcp_max_active_connections, 7);
        assert_eq!(
            l.config.config_dir_mappings,
            vec![
                ("SSH".to_string(), "3333".to_string()),
                ("WEB".to_string(), "8080".to_string())
            ]
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("zz-bad")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("SSH in")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("tunneling.proxy.x")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("chmod 600")),
            "{:?}",
            l.warnings
        );
        mode(0o600);
        let l = load(&a, &env, Some(&base)).unwrap();
        assert!(
            !l.warnings.iter().any(|w| w.contains("chmod")),
            "{:?}",
            l.warnings
        );
        // A missing file, a bad settings file, a missing capath: one clear error each.
        a.config = Some(base.join("missing.conf"));
        assert!(load(&a, &env, None)
            .unwrap_err()
            .to_string()
            .starts_with("--config: cannot read"));
        std::fs::write(base.join("s.json"), "{").unwrap();
        let mut a = args(&["-r", "x", "-s", "1"]);
        a.settings_json = Some(base.join("s.json").display().to_string());
        let e = load(&a, &env, None).unwrap_err().to_string();
        assert!(
            e.starts_with("--settings-json ") && e.contains("not valid JSON"),
            "{e}"
        );
        let a = args(&["-r", "x", "-s", "1", "-c", "/nonexistent-dir"]);
        assert!(load(&a, &env, None)
            .unwrap_err()
            .to_string()
            .contains("is not a directory"));
        let a = args(&["-r", "x", "-m", "src", "--config-dir", "/nonexistent-dir"]);
        assert!(load(&a, &env, None)
            .unwrap_err()
            .to_string()
            .starts_with("--config-dir: /nonexistent-dir is not a directory"));
        let _ = std::fs::remove_dir_all(&base);
    }
}
