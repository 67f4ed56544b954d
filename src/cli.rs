//! The command line: one option table, a lexopt loop into a plain [`Args`] struct, and the
//! `--help` text generated from the same table.
//!
//! Nothing here reads a file, the environment or the clock, and nothing is validated
//! beyond "is this a known option, does it have its value, was it given once": values stay
//! strings until `config` resolves them against the `--config` file and the environment.
//! That keeps `--help`, `-V` and `--export-default-settings` answerable before any file is
//! touched, and lets every validation rule live in one place.
//!
//! Adding an option: a variant in [`OptId`], a row in [`OPTIONS`], a field in [`Args`] and
//! one arm in each of [`Args::value`] and [`Args::set`]. Options allowed in a `--config`
//! file are resolved generically by `config`.

use crate::config::error::ConfigError;
use crate::config::model::Secret;
use std::ffi::OsString;
use std::path::PathBuf;

/// Every option we know, CLI-only ones included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OptId {
    Help,
    Version,
    AccessToken,
    ClientToken,
    AccessTokenFile,
    ClientTokenFile,
    User,
    RequireNonRoot,
    NoSandbox,
    ProxyEndpoint,
    Region,
    SourceListenPort,
    DestinationApp,
    LocalBindAddress,
    Capath,
    NoSslHostVerify,
    Verbose,
    Mode,
    DestinationClientType,
    Config,
    ConfigDir,
    SettingsJson,
    ExportDefaultSettings,
    Check,
    Notification,
}

/// One row of the option table: how the option is spelled, where else it may come from,
/// and what `--help` says about it.
#[derive(Debug)]
pub(crate) struct OptSpec {
    pub id: OptId,
    pub short: Option<char>,
    /// Long name without dashes; also the key in a `--config` file.
    pub long: &'static str,
    /// Name of the value in `--help` (`None`: a flag without a value).
    pub value: Option<&'static str>,
    /// Environment variable consulted when neither the CLI nor the `--config` file has it.
    pub env: Option<&'static str>,
    /// Whether a `--config` file may set it.
    pub in_config_file: bool,
    /// `--help` text; `\n` starts a continuation line.
    pub help: &'static str,
}

const fn opt(
    id: OptId,
    short: Option<char>,
    long: &'static str,
    value: Option<&'static str>,
    env: Option<&'static str>,
    in_config_file: bool,
    help: &'static str,
) -> OptSpec {
    OptSpec {
        id,
        short,
        long,
        value,
        env,
        in_config_file,
        help,
    }
}

/// The option table, in `--help` order. Names and letters are the C++ reference's.
#[rustfmt::skip]
pub(crate) const OPTIONS: &[OptSpec] = &[
    opt(OptId::Help, Some('h'), "help", None, None, false,
        "print this help and exit"),
    opt(OptId::Version, Some('V'), "version", None, None, false,
        "print the version and exit"),
    opt(OptId::AccessToken, Some('t'), "access-token", Some("TOKEN"),
        Some("AWSIOT_TUNNEL_ACCESS_TOKEN"), true,
        "client access token of this end of the tunnel (required);\nprefer the environment variable: -t is visible in process listings"),
    opt(OptId::ClientToken, Some('i'), "client-token", Some("TOKEN"),
        Some("AWSIOT_TUNNEL_CLIENT_TOKEN"), true,
        "32-128 characters of A-Z a-z 0-9 -, sent on every connection attempt\nso the access token can be reused after a reconnect (a UUID works)"),
    opt(OptId::AccessTokenFile, None, "access-token-file", Some("FILE"), None, true,
        "read the access token from FILE at every connection attempt; when the\nservice refuses it, wait for a new token in FILE instead of exiting"),
    opt(OptId::ClientTokenFile, None, "client-token-file", Some("FILE"), None, true,
        "reuse the client token stored in FILE, or make one and store it there\n(mode 0600), so a restarted process can reconnect with the same token"),
    opt(OptId::User, None, "user", Some("NAME[:GROUP]"), None, true,
        "drop to this user (and group) once the listeners are bound, so ports\nbelow 1024 work without staying root"),
    opt(OptId::RequireNonRoot, None, "require-non-root", None, None, true,
        "refuse to run as root unless --user is given"),
    opt(OptId::NoSandbox, None, "no-sandbox", None, None, true,
        "Linux: do not limit the system calls (seccomp) and files (Landlock)\nthe proxy may use once it has started; the sandbox is on by default"),
    opt(OptId::ProxyEndpoint, Some('e'), "proxy-endpoint", Some("HOST[:PORT]"),
        Some("AWSIOT_TUNNEL_ENDPOINT"), true,
        "service endpoint (port 443 unless given); no wss:// and no path;\nexclusive with -r"),
    opt(OptId::Region, Some('r'), "region", Some("REGION"),
        Some("AWSIOT_TUNNEL_REGION"), true,
        "AWS region of the tunnel, e.g. us-east-1 (endpoint\ndata.tunneling.iot.REGION.amazonaws.com); exclusive with -e"),
    opt(OptId::SourceListenPort, Some('s'), "source-listen-port", Some("PORT|ID=PORT,..."),
        None, true,
        "source mode: listen on PORT, or one port per service id\n(e.g. SSH1=5555,SSH2=6666)"),
    opt(OptId::DestinationApp, Some('d'), "destination-app", Some("TARGET|ID=TARGET,..."),
        None, true,
        "destination mode: connect to TARGET = PORT (on 127.0.0.1 or -b),\nHOST:PORT or a Unix socket path; or one target per service id"),
    opt(OptId::LocalBindAddress, Some('b'), "local-bind-address", Some("ADDRESS"), None, true,
        "source: address to listen on (default localhost);\ndestination: host for a bare port in -d (default 127.0.0.1)"),
    opt(OptId::Capath, Some('c'), "capath", Some("DIR"), None, true,
        "extra directory of trusted CA certificates (OpenSSL hashed format)"),
    opt(OptId::NoSslHostVerify, Some('k'), "no-ssl-host-verify", None, None, true,
        "do not verify the service's certificate (testing only)"),
    opt(OptId::Verbose, Some('v'), "verbose", Some("LEVEL"), None, true,
        "log level: 0 off, 1 fatal, 2 error, 3 warn, 4 info (default), 5 debug,\n6 or more trace; RUST_LOG overrides it"),
    opt(OptId::Mode, Some('m'), "mode", Some("MODE"), None, true,
        "src|source or dst|destination; needed only without -s and -d\n(the mapping then comes from --config-dir)"),
    opt(OptId::DestinationClientType, Some('y'), "destination-client-type", Some("V1|V2"),
        None, true,
        "source: speak the V1 or V2 message format to an older destination\n(Device Client, Greengrass, console SSH, localproxy 1.x need V1);\none connection per service at a time; V1 only on one service"),
    opt(OptId::Config, None, "config", Some("FILE"), None, false,
        "read options from FILE: 'name = value' lines, long option names"),
    opt(OptId::ConfigDir, None, "config-dir", Some("DIR"), None, true,
        "service id mappings ('ServiceID = value' lines in every file of DIR),\nused when neither -s nor -d is given (default ./config if it exists)"),
    opt(OptId::SettingsJson, None, "settings-json", Some("FILE"), None, true,
        "read fine-grained settings (buffer sizes, timers, retries) from FILE"),
    opt(OptId::ExportDefaultSettings, None, "export-default-settings", Some("FILE"), None, false,
        "write the default settings as JSON to FILE (- for stdout) and exit"),
    opt(OptId::Check, None, "check", None, None, false,
        "make the checks a run makes before it connects (files, --user, web\nproxy, CA files, listen ports), print the configuration (tokens\nmasked) and a verdict, exit 0 if valid, 2 if not; no network"),
    opt(OptId::Notification, None, "notification", Some("FILE"), None, false,
        "destination: take the access token, region and services from a tunnel\nnotification (the JSON published on $aws/things/THING/tunnels/notify);\n- reads it from stdin; -d maps its services; -e overrides the region"),
];

/// The row of an option.
pub(crate) fn spec(id: OptId) -> &'static OptSpec {
    // Every variant has a row; `find` cannot fail, but never panic on a table edit.
    OPTIONS.iter().find(|o| o.id == id).unwrap_or(&OPTIONS[0])
}

/// The row whose long name is exactly `name` (for `--config` keys).
pub(crate) fn find_long(name: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.long == name)
}

/// What the command line asks for.
// One value per process: boxing Args would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    Version,
    Run(Args),
}

/// The command line as given: every value still a string, absent options `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    pub access_token: Option<Secret>,
    pub client_token: Option<Secret>,
    pub access_token_file: Option<String>,
    pub client_token_file: Option<String>,
    pub user: Option<String>,
    pub require_non_root: bool,
    pub no_sandbox: bool,
    pub proxy_endpoint: Option<String>,
    pub region: Option<String>,
    pub source_listen_port: Option<String>,
    pub destination_app: Option<String>,
    pub local_bind_address: Option<String>,
    pub capath: Option<String>,
    pub no_ssl_host_verify: bool,
    pub verbose: Option<String>,
    pub mode: Option<String>,
    pub destination_client_type: Option<String>,
    pub config: Option<PathBuf>,
    pub config_dir: Option<String>,
    pub settings_json: Option<String>,
    pub export_default_settings: Option<PathBuf>,
    pub check: bool,
    pub notification: Option<String>,
}

impl Args {
    /// The value of an option given on the command line (`"true"` for a set flag).
    pub(crate) fn value(&self, id: OptId) -> Option<&str> {
        let flag = |b: bool| if b { Some("true") } else { None };
        match id {
            OptId::Help | OptId::Version => None,
            OptId::AccessToken => self.access_token.as_ref().map(Secret::expose),
            OptId::ClientToken => self.client_token.as_ref().map(Secret::expose),
            OptId::AccessTokenFile => self.access_token_file.as_deref(),
            OptId::ClientTokenFile => self.client_token_file.as_deref(),
            OptId::User => self.user.as_deref(),
            OptId::RequireNonRoot => flag(self.require_non_root),
            OptId::NoSandbox => flag(self.no_sandbox),
            OptId::ProxyEndpoint => self.proxy_endpoint.as_deref(),
            OptId::Region => self.region.as_deref(),
            OptId::SourceListenPort => self.source_listen_port.as_deref(),
            OptId::DestinationApp => self.destination_app.as_deref(),
            OptId::LocalBindAddress => self.local_bind_address.as_deref(),
            OptId::Capath => self.capath.as_deref(),
            OptId::NoSslHostVerify => flag(self.no_ssl_host_verify),
            OptId::Verbose => self.verbose.as_deref(),
            OptId::Mode => self.mode.as_deref(),
            OptId::DestinationClientType => self.destination_client_type.as_deref(),
            OptId::Config => self.config.as_deref().and_then(|p| p.to_str()),
            OptId::ConfigDir => self.config_dir.as_deref(),
            OptId::SettingsJson => self.settings_json.as_deref(),
            OptId::ExportDefaultSettings => self
                .export_default_settings
                .as_deref()
                .and_then(|p| p.to_str()),
            OptId::Check => flag(self.check),
            OptId::Notification => self.notification.as_deref(),
        }
    }

    /// Stores a value; `false` if the option was already given (the caller reports it).
    fn set(&mut self, id: OptId, v: String) -> bool {
        fn put<T>(slot: &mut Option<T>, v: T) -> bool {
            slot.replace(v).is_none()
        }
        fn flag(slot: &mut bool) -> bool {
            !std::mem::replace(slot, true)
        }
        match id {
            // Answered by `parse` before they reach here.
            OptId::Help | OptId::Version => true,
            OptId::AccessToken => put(&mut self.access_token, Secret::new(v)),
            OptId::ClientToken => put(&mut self.client_token, Secret::new(v)),
            OptId::AccessTokenFile => put(&mut self.access_token_file, v),
            OptId::ClientTokenFile => put(&mut self.client_token_file, v),
            OptId::User => put(&mut self.user, v),
            OptId::RequireNonRoot => flag(&mut self.require_non_root),
            OptId::NoSandbox => flag(&mut self.no_sandbox),
            OptId::ProxyEndpoint => put(&mut self.proxy_endpoint, v),
            OptId::Region => put(&mut self.region, v),
            OptId::SourceListenPort => put(&mut self.source_listen_port, v),
            OptId::DestinationApp => put(&mut self.destination_app, v),
            OptId::LocalBindAddress => put(&mut self.local_bind_address, v),
            OptId::Capath => put(&mut self.capath, v),
            OptId::NoSslHostVerify => flag(&mut self.no_ssl_host_verify),
            OptId::Verbose => put(&mut self.verbose, v),
            OptId::Mode => put(&mut self.mode, v),
            OptId::DestinationClientType => put(&mut self.destination_client_type, v),
            OptId::Config => put(&mut self.config, PathBuf::from(v)),
            OptId::ConfigDir => put(&mut self.config_dir, v),
            OptId::SettingsJson => put(&mut self.settings_json, v),
            OptId::ExportDefaultSettings => {
                put(&mut self.export_default_settings, PathBuf::from(v))
            }
            OptId::Check => flag(&mut self.check),
            OptId::Notification => put(&mut self.notification, v),
        }
    }
}

/// The `-x, --long VALUE` label of an option, for error messages.
pub(crate) fn label(o: &OptSpec) -> String {
    format!("--{}", o.long)
}

/// How a stray word is named in the error: itself when it is a short word of lowercase
/// letters, digits and `-._:/=` (`help`, `start`, `22`), else only its length. Any
/// other stray word may be a token or password whose option letter was lost (tokens
/// are long and mixed-case), and those never reach the terminal.
fn stray_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.len() <= 16
        && w.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-._:/=".contains(&c));
    if plain {
        format!("'{w}'")
    } else {
        format!("a word of {} characters (not shown)", w.chars().count())
    }
}

fn usage_error(subject: String, problem: &str, fix: String) -> ConfigError {
    ConfigError::new(subject, problem, fix)
}

/// Looks up a long option: an exact name, or else an unambiguous prefix (as the
/// reference's Boost parser accepts, e.g. `--verb 5`).
fn lookup_long(name: &str) -> Result<&'static OptSpec, ConfigError> {
    if let Some(o) = find_long(name) {
        return Ok(o);
    }
    let matches: Vec<&OptSpec> = OPTIONS
        .iter()
        .filter(|o| !name.is_empty() && o.long.starts_with(name))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(usage_error(
            format!("--{}", shown_name(name)),
            "unknown option",
            "check the spelling".into(),
        )),
        many => Err(usage_error(
            format!("--{}", shown_name(name)),
            "ambiguous option",
            format!(
                "write it out: {}",
                many.iter()
                    .map(|o| format!("--{}", o.long))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )),
    }
}

/// An unknown name is echoed only if it looks like a name, so a mistyped line that is
/// really a token never reaches the terminal.
pub(crate) fn shown_name(name: &str) -> String {
    let looks_like_name = name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if looks_like_name {
        name.to_string()
    } else {
        "(name not shown)".to_string()
    }
}

/// Parses the arguments after the program name. `--help` and `--version` win as soon as
/// they are seen; everything else is only collected.
pub fn parse<I>(args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg;
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Args::default();
    loop {
        let arg = match parser.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return Err(from_lexopt(e)),
        };
        let o: &OptSpec = match arg {
            Arg::Short(c) => match OPTIONS.iter().find(|o| o.short == Some(c)) {
                Some(o) => o,
                None => {
                    let shown = if c.is_ascii_graphic() {
                        format!("-{c}")
                    } else {
                        "(a short option)".to_string()
                    };
                    return Err(usage_error(
                        shown,
                        "unknown option",
                        "check the spelling".into(),
                    ));
                }
            },
            Arg::Long(name) => lookup_long(name)?,
            Arg::Value(v) => {
                return Err(usage_error(
                    stray_word(&v.to_string_lossy()),
                    "is not an option nor an option's value",
                    "options start with -, each value follows its option (-r us-east-1)".into(),
                ));
            }
        };
        match o.id {
            OptId::Help => return Ok(Command::Help),
            OptId::Version => return Ok(Command::Version),
            _ => {}
        }
        let value = match o.value {
            None => String::new(),
            Some(name) => match parser.value() {
                Ok(v) => v.into_string().map_err(|_| {
                    usage_error(
                        label(o),
                        "the value is not valid UTF-8",
                        "give the value as plain text".into(),
                    )
                })?,
                Err(_) => {
                    return Err(usage_error(
                        label(o),
                        "the value is missing",
                        format!("write --{} {name}", o.long),
                    ))
                }
            },
        };
        if !out.set(o.id, value) {
            return Err(usage_error(
                label(o),
                "given more than once",
                "give it once".into(),
            ));
        }
    }
    Ok(Command::Run(out))
}

/// lexopt's own texts can quote values; these never do.
fn from_lexopt(e: lexopt::Error) -> ConfigError {
    use lexopt::Error as E;
    match e {
        E::UnexpectedValue { option, .. } => usage_error(
            shown_option(&option),
            "this option takes no value",
            format!("write {} alone", shown_option(&option)),
        ),
        E::MissingValue {
            option: Some(option),
        } => usage_error(
            shown_option(&option),
            "the value is missing",
            "give a value".into(),
        ),
        E::UnexpectedOption(option) => usage_error(
            shown_option(&option),
            "unknown option",
            "check the spelling".into(),
        ),
        _ => usage_error(
            "command line".into(),
            "cannot be parsed",
            "check the quoting and spelling of the options".into(),
        ),
    }
}

fn shown_option(option: &str) -> String {
    let name = option.trim_start_matches('-');
    let dashes = &option[..option.len() - name.len()];
    format!("{dashes}{}", shown_name(name))
}

/// The `--help` text (stdout, exit 0).
/// What `--help` prints first: the name, version and the two ways to run it. Also what
/// a run without any argument prints (with exit 2).
pub fn usage_summary() -> String {
    format!(
        "localproxy {} - local proxy for AWS IoT Secure Tunneling\n\n\
         Usage: localproxy -r REGION -s PORT          (source: where you run ssh)\n\
         \x20      localproxy -r REGION -d [HOST:]PORT   (destination: the device)\n\
         The access token comes from AWSIOT_TUNNEL_ACCESS_TOKEN (preferred), a --config\n\
         file or -t. Precedence: command line > --config file > environment.\n",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn help_text() -> String {
    let mut s = usage_summary();
    s.push_str("\nOptions:\n");
    for o in OPTIONS {
        let mut head = match o.short {
            Some(c) => format!("  -{c}, --{}", o.long),
            None => format!("      --{}", o.long),
        };
        if let Some(v) = o.value {
            head.push(' ');
            head.push_str(v);
        }
        s.push_str(&head);
        s.push('\n');
        for line in o.help.split('\n') {
            s.push_str("          ");
            s.push_str(line);
            s.push('\n');
        }
        if let Some(env) = o.env {
            s.push_str(&format!("          [env: {env}]\n"));
        }
    }
    s.push_str(
        "\nOther environment variables:\n\
         \x20 RUST_LOG                   log filter, overrides -v (debug, localproxy=trace)\n\
         \x20 LOCALPROXY_LOG_TIMESTAMPS  0 drops the timestamp from log lines (for syslog)\n\
         \x20 https_proxy, HTTPS_PROXY   web proxy: http[s]://[user:pass@]host[:port]\n\
         \x20 no_proxy, NO_PROXY         hosts and domains reached without the web proxy\n\
         \nSignals:\n\
         \x20 SIGTERM, SIGINT, SIGHUP  close the tunnel and local connections, exit 0;\n\
         \x20                          SIGINT and SIGHUP ignored at start (nohup, cmd &)\n\
         \x20                          stay ignored\n\
         \x20 SIGUSR1                  log one status line\n\
         \nExit codes:\n\
         \x20 0  tunnel closed by the service, SIGTERM/SIGINT, --help, --version, --check ok\n\
         \x20 1  internal error (a bug, or an OS failure the proxy cannot work around)\n\
         \x20 2  usage or configuration error (one line on stderr says what to fix)\n\
         \x20 3  rejected by the service (bad, used or wrong-mode token; 408, 429 retried)\n\
         \x20 4  gave up after retries (service unreachable, local port cannot bind)\n\
         \nSee README.md for the config file, settings JSON and examples.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Args {
        match parse(args.iter().copied()) {
            Ok(Command::Run(a)) => a,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => e.to_string(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn table_is_consistent() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert_ne!(a.long, b.long);
                assert_ne!(a.id, b.id);
                if a.short.is_some() {
                    assert_ne!(a.short, b.short);
                }
            }
            assert_eq!(spec(a.id).long, a.long);
        }
    }

    #[test]
    fn every_option_long_and_short() {
        let a = run(&[
            "-t",
            "tok",
            "-i",
            "ct",
            "-e",
            "host:1",
            "-r",
            "us-east-1",
            "-s",
            "5555",
            "-d",
            "22",
            "-b",
            "::1",
            "-c",
            "/ca",
            "-k",
            "-v",
            "5",
            "-m",
            "src",
            "-y",
            "V1",
            "--config",
            "f",
            "--config-dir",
            "dir",
            "--settings-json",
            "s.json",
            "--export-default-settings",
            "out.json",
            "--check",
        ]);
        assert_eq!(a.access_token.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(a.client_token.as_ref().map(Secret::expose), Some("ct"));
        assert_eq!(a.proxy_endpoint.as_deref(), Some("host:1"));
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(a.source_listen_port.as_deref(), Some("5555"));
        assert_eq!(a.destination_app.as_deref(), Some("22"));
        assert_eq!(a.local_bind_address.as_deref(), Some("::1"));
        assert_eq!(a.capath.as_deref(), Some("/ca"));
        assert!(a.no_ssl_host_verify);
        assert_eq!(a.verbose.as_deref(), Some("5"));
        assert_eq!(a.mode.as_deref(), Some("src"));
        assert_eq!(a.destination_client_type.as_deref(), Some("V1"));
        assert_eq!(a.config, Some(PathBuf::from("f")));
        assert_eq!(a.config_dir.as_deref(), Some("dir"));
        assert_eq!(a.settings_json.as_deref(), Some("s.json"));
        assert_eq!(a.export_default_settings, Some(PathBuf::from("out.json")));
        assert!(a.check);

        let b = run(&[
            "--access-token=tok",
            "--region",
            "eu-west-1",
            "--source-listen-port=SSH1=5555,SSH2=6666",
            "--no-ssl-host-verify",
            "--verbose=6",
        ]);
        assert_eq!(b.access_token.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert_eq!(b.source_listen_port.as_deref(), Some("SSH1=5555,SSH2=6666"));
        assert!(b.no_ssl_host_verify);
        assert_eq!(b.verbose.as_deref(), Some("6"));
    }

    #[test]
    fn attached_short_values_and_clusters() {
        let a = run(&["-v5", "-kr", "us-east-1", "-s=5555"]);
        assert_eq!(a.verbose.as_deref(), Some("5"));
        assert!(a.no_ssl_host_verify);
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(a.source_listen_port.as_deref(), Some("5555"));
    }

    #[test]
    fn unambiguous_prefix_accepted_ambiguous_rejected() {
        let a = run(&["--verb", "3", "--reg", "us-east-1"]);
        assert_eq!(a.verbose.as_deref(), Some("3"));
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        // --config is exact even though --config-dir shares the prefix.
        assert_eq!(run(&["--config", "f"]).config, Some(PathBuf::from("f")));
        let e = err(&["--con", "x"]);
        assert!(e.contains("ambiguous") && e.contains("--config-dir"), "{e}");
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse(["-h"]), Ok(Command::Help));
        assert_eq!(parse(["-r", "x", "--help"]), Ok(Command::Help));
        assert_eq!(parse(["-V"]), Ok(Command::Version));
        assert_eq!(parse(["--version"]), Ok(Command::Version));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(err(&["-Z"]), "-Z: unknown option; check the spelling");
        assert!(err(&["--bogus"]).starts_with("--bogus: unknown option"));
        assert!(err(&["-v"]).starts_with("--verbose: the value is missing"));
        assert!(err(&["--verbose"]).starts_with("--verbose: the value is missing"));
        assert!(err(&["-r", "a", "-r", "b"]).starts_with("--region: given more than once"));
        assert!(err(&["-k", "-k"]).starts_with("--no-ssl-host-verify: given more than once"));
        assert!(err(&["--no-ssl-host-verify=yes"]).contains("takes no value"));
    }

    #[test]
    fn stray_values_and_bad_names_are_never_echoed() {
        let e = err(&["-k", "SECRET-TOKEN-TEXT"]);
        assert!(
            e.starts_with("a word of 17 characters (not shown): is not an option"),
            "{e}"
        );
        assert!(!e.contains("SECRET"));
        assert!(!err(&["-k", "secret-but-longer-than-16"]).contains("secret"));
        // A plain short word is named, so `localproxy help` says what it did not get.
        assert!(err(&["help"]).starts_with("'help': is not an option"));
        let e = err(&["--no-ssl-host-verify=SECRET"]);
        assert!(!e.contains("SECRET"), "{e}");
        let e = err(&["--AQoDYXdzEJr+/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=x"]);
        assert!(!e.contains("AQoD"), "{e}");
        let e = err(&["-t", "SECRET", "-t", "SECRET2"]);
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn token_is_masked_in_debug() {
        let a = run(&["-t", "SECRET"]);
        assert!(!format!("{a:?}").contains("SECRET"));
    }

    #[test]
    fn help_lists_every_option_and_env_var() {
        let h = help_text();
        for o in OPTIONS {
            assert!(h.contains(&format!("--{}", o.long)), "{}", o.long);
            if let Some(c) = o.short {
                assert!(h.contains(&format!("-{c},")), "{c}");
            }
            if let Some(env) = o.env {
                assert!(h.contains(env));
            }
        }
        assert!(h.contains("README"));
        assert!(h.contains("Exit codes"));
    }
}
