//! The parsers that read bytes from a peer or from a user, opened to the fuzz targets in
//! `tests/fuzz` through thin wrappers: the WebSocket frame reader (`tunnel/ws.rs`), the
//! upgrade answer (`tunnel/upgrade.rs`), the web proxy's CONNECT answer and proxy URLs
//! (`tunnel/proxy.rs`), the settings JSON, the `--config` and `--config-dir` files and
//! the `--notification` document (`config/`).
//!
//! Everything here calls the real code and adds nothing to it: no checks, no limits. It
//! exists so those modules stay `pub(crate)` and a refactor of one of them changes this
//! file, not the fuzz targets. The types here mirror the internal ones with owned,
//! public fields; errors are their one-line text. Not part of the proxy's API (hidden
//! from the docs); the `localproxy` binary does not use it.

use crate::cli::{self, Command, OptId};
use crate::config::files::{parse_config_file, parse_mapping_file, ConfigSource};
use crate::config::from_notification::{apply, finish};
use crate::config::notification;
use crate::config::precedence::resolve;
use crate::config::{Mode, Secret, Settings};
use crate::protocol::Version;
use crate::tunnel::{proxy, upgrade as up, ws};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// One event of the WebSocket frame reader (`ws::Incoming`).
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// Binary payload bytes (empty for a header alone).
    Data(&'a [u8]),
    /// A piece of a text message; `first` on its first piece.
    Text {
        first: bool,
    },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    Close(Option<(u16, String)>),
}

/// The service's side of the WebSocket, parsed as the tunnel thread parses it.
pub struct WsReader(ws::Reader);

impl WsReader {
    /// A reader that refuses frames over `max_frame` bytes (`websocket.max_frame_size`).
    pub fn new(max_frame: usize) -> WsReader {
        WsReader(ws::Reader::new(max_frame))
    }

    /// The next event at the start of `buf` and the bytes it used; `Ok(None)`: more
    /// bytes needed. The error is the line the tunnel thread would log.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(usize, WsEvent<'a>)>, String> {
        match self.0.next(buf) {
            Ok(Some((n, e))) => Ok(Some((
                n,
                match e {
                    ws::Incoming::Data(d) => WsEvent::Data(d),
                    ws::Incoming::Text { first } => WsEvent::Text { first },
                    ws::Incoming::Ping(p) => WsEvent::Ping(p),
                    ws::Incoming::Pong(p) => WsEvent::Pong(p),
                    ws::Incoming::Close(c) => WsEvent::Close(c),
                },
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A successful upgrade (`upgrade::Upgraded`).
#[derive(Debug)]
pub struct Upgraded {
    pub version: Version,
    pub channel_id: Option<String>,
    /// What the service sent behind its answer, already read.
    pub tail: Vec<u8>,
}

/// The RFC 6455 accept value for a request's `Sec-WebSocket-Key`, so a fuzz target's
/// fake service can answer the random key the request carries.
pub fn accept_key(key: &str) -> String {
    up::accept_for(key)
}

/// Runs the whole upgrade on `s` as a destination offering `subprotocol`: writes the
/// request, reads and checks the answer. The outer error is the stream's; the inner
/// one the line the tunnel thread would log.
pub fn upgrade<S: Read + Write>(
    s: &mut S,
    subprotocol: &str,
) -> io::Result<Result<Upgraded, String>> {
    let token = Secret::new("AQGAAXfuzzaccesstoken");
    let client = Secret::new("0123456789abcdef0123456789abcdef");
    let request = up::Request {
        host: "data.tunneling.iot.eu-west-1.amazonaws.com",
        port: 443,
        mode: Mode::Destination,
        access_token: &token,
        client_token: Some(&client),
        subprotocol,
        user_agent: "localproxy-fuzz",
    };
    Ok(up::upgrade(s, &request)?
        .map(|u| Upgraded {
            version: u.version,
            channel_id: u.channel_id,
            tail: u.tail,
        })
        .map_err(|e| e.to_string()))
}

/// Sends CONNECT for `host:port` through the proxy `proxy_url` (`https_proxy`'s
/// form) on `s` and reads its answer. `Err` for a URL that does not parse, too.
pub fn web_proxy_connect<S: Read + Write>(
    s: &mut S,
    proxy_url: &str,
    host: &str,
    port: u16,
) -> Result<(), String> {
    let p = proxy::parse_url(proxy_url)?;
    proxy::connect_through(s, &p, host, port, Duration::from_secs(1))
}

/// A parsed proxy URL: how it is shown in log lines, and its password, if any.
pub fn web_proxy_url(url: &str) -> Result<(String, Option<String>), String> {
    let p = proxy::parse_url(url)?;
    let password = p
        .credentials
        .as_ref()
        .and_then(|c| c.expose().split_once(':').map(|(_, pw)| pw.to_string()));
    Ok((p.to_string(), password))
}

/// Whether `host` is listed in the `NO_PROXY` value `no_proxy`.
pub fn no_proxy(host: &str, no_proxy: &str) -> bool {
    proxy::bypassed(host, no_proxy)
}

/// A `--settings-json` text read over the defaults: the settings and the warnings.
pub fn settings_json(text: &str) -> Result<(Settings, Vec<String>), String> {
    Settings::from_json(text).map_err(|e| e.to_string())
}

/// What a configuration input led to.
#[derive(Debug)]
pub struct Checked {
    /// The access token the input holds, as the proxy would use it, if it got that far.
    pub access_token: Option<String>,
    /// `--check`'s text for a valid configuration, else the error line.
    pub result: Result<String, String>,
    pub warnings: Vec<String>,
}

/// The arguments of a run, as `main` would have them.
fn args(list: &[&str]) -> Result<cli::Args, String> {
    match cli::parse(list.iter().copied()) {
        Ok(Command::Run(a)) => Ok(a),
        Ok(_) => Err("not a run".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn no_token_file(p: &Path) -> Result<String, String> {
    Err(format!("cannot read {}", p.display()))
}

/// A `--config` file's text through the whole validation, as `localproxy --config FILE
/// --check` runs it with no other option and an empty environment. The same text is
/// also read as a `--config-dir` file, whose mappings join the configuration.
pub fn config_file(text: &str) -> Checked {
    let mut access_token = None;
    if let Ok(entries) = parse_config_file("fuzz.conf", text.as_bytes()) {
        access_token = entries
            .iter()
            .find(|e| e.spec.id == OptId::AccessToken)
            .map(|e| e.value.clone());
    }
    let dir_mappings = parse_mapping_file(text.as_bytes()).unwrap_or_default();
    let result = args(&[]).and_then(|a| {
        let source = ConfigSource {
            name: "fuzz.conf",
            text,
        };
        resolve(&a, Some(source), &|_| None)
            .and_then(|r| r.into_config(Settings::default(), dir_mappings, &no_token_file))
            .map_err(|e| e.to_string())
    });
    match result {
        Ok((c, warnings)) => Checked {
            access_token,
            result: Ok(c.describe()),
            warnings,
        },
        Err(e) => Checked {
            access_token,
            result: Err(e),
            warnings: Vec::new(),
        },
    }
}

/// A `--notification` document through the whole validation, as the device agent's
/// `localproxy --notification FILE --check <cli>` runs it (empty environment).
pub fn notification(doc: &[u8], cli: &[&str]) -> Checked {
    let path = "fuzz.json";
    let n = match notification::parse(doc) {
        Ok(n) => n,
        Err(e) => {
            return Checked {
                access_token: None,
                result: Err(e.within(&notification::label(path)).to_string()),
                warnings: Vec::new(),
            }
        }
    };
    let access_token = Some(n.access_token.expose().to_string());
    let result = args(cli).and_then(|a| {
        let mut r = resolve(&a, None, &|_| None).map_err(|e| e.to_string())?;
        apply(&mut r, &n, path).map_err(|e| e.to_string())?;
        let (mut c, mut warnings) = r
            .into_config(Settings::default(), Vec::new(), &no_token_file)
            .map_err(|e| e.to_string())?;
        finish(&mut c, &n, path, &mut warnings).map_err(|e| e.to_string())?;
        Ok((c.describe(), warnings))
    });
    match result {
        Ok((describe, warnings)) => Checked {
            access_token,
            result: Ok(describe),
            warnings,
        },
        Err(e) => Checked {
            access_token,
            result: Err(e),
            warnings: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wrappers reach the real parsers: one good input each.
    #[test]
    fn each_wrapper_reaches_its_parser() {
        let mut r = WsReader::new(100);
        assert_eq!(
            r.next(b"\x89\x02hi").unwrap(),
            Some((4, WsEvent::Ping(b"hi")))
        );
        let (s, w) = settings_json(&Settings::default().to_json()).unwrap();
        assert!(w.is_empty() && s == Settings::default());
        let c = config_file("region = eu-west-1\ndestination-app = 22\naccess-token = AQGAAXtok\n");
        assert_eq!(c.access_token.as_deref(), Some("AQGAAXtok"));
        assert!(c.result.unwrap().contains("mode = destination"));
        let n = notification(
            br#"{"clientAccessToken":"AQGAAXtok","clientMode":"destination","region":"eu-west-1","services":["SSH"]}"#,
            &["-d", "SSH=22"],
        );
        assert_eq!(n.access_token.as_deref(), Some("AQGAAXtok"));
        assert!(n.result.is_ok(), "{n:?}");
        assert_eq!(
            web_proxy_url("http://u:pw@p:1").unwrap(),
            ("http://***@p:1".to_string(), Some("pw".to_string()))
        );
        assert!(no_proxy("a.lan", ".lan"));
    }
}
