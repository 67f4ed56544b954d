//! Fine-grained settings: the reference's `--settings-json` keys with our defaults, and the
//! JSON reader and writer for them.
//!
//! `Settings::default()` holds the code defaults of the C++ reference (not the stale values
//! of its CONFIGURATION.md). [`Settings::from_json`] starts from those defaults and applies
//! what the file says (so, unlike the reference, a file without the China endpoint
//! overrides keeps them), then checks every value against the limits the engine relies on.
//! [`Settings::to_json`] writes every key, values as strings like the reference, so either
//! proxy reads the other's file. No file I/O here (the caller reads and writes the text),
//! and nothing about sockets or timers: applying settings is the engine's business.

use super::error::{quoted, ConfigError};
use super::rules::{check_host, check_region, json_depth, parse_bool};
use crate::protocol::{Version, DATA_HEADROOM, LENGTH_PREFIX, MAX_MESSAGE, MAX_PAYLOAD};
use tinyjson::JsonValue;

/// Prefix of every key in the JSON file.
pub(crate) const KEY_PREFIX: &str = "tunneling.proxy.";

/// Upper bound for every buffer size: far above any sane value, low enough that a typo
/// cannot make the proxy try to allocate gigabytes.
const MAX_BUFFER: usize = 16 << 20;
/// Upper bound for every delay and period: one day. Keeps `Instant + Duration` far from
/// overflow (which would panic) whatever the file says.
const MAX_MS: u64 = 86_400_000;
/// Bounds of websocket.connect_timeout_ms: a TLS handshake over a slow link needs a
/// second or more; ten minutes is far beyond any sane wait for one attempt.
const MIN_CONNECT_TIMEOUT_MS: u64 = 1000;
const MAX_CONNECT_TIMEOUT_MS: u64 = 600_000;

/// All tunable values. Field comments name the JSON key under `tunneling.proxy.`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `default_bind_address`: source listen host when no `-b`.
    pub(crate) default_bind_address: String,
    /// `endpoint_format`: region → host, `%s` replaced by the region.
    pub(crate) endpoint_format: String,
    /// `region_endpoint_overrides.<region>`: per-region host.
    pub(crate) region_endpoint_overrides: Vec<(String, String)>,
    /// `message.data_length_size`: must be 2.
    pub(crate) data_length_size: usize,
    /// `message.data_frame_max_size`: exported for compatibility, unused.
    pub(crate) data_frame_max_size: usize,
    /// `message.max_payload_size`: DATA chunk size, ≤ 64512.
    pub(crate) max_payload_size: usize,
    /// `message.max_size`: largest protobuf message accepted.
    pub(crate) max_size: usize,
    /// `tcp.connection_retry_count`: destination connect retries, source bind retries; -1 = forever.
    pub(crate) tcp_connection_retry_count: i64,
    /// `tcp.connection_retry_delay_ms`.
    pub(crate) tcp_connection_retry_delay_ms: u64,
    /// `tcp.read_buffer_size`: largest read from a local socket, so the largest DATA
    /// payload we send (at most `message.max_payload_size`).
    pub(crate) tcp_read_buffer_size: usize,
    /// `tcp.write_buffer_size`: per-connection bound on bytes waiting for the local socket.
    pub(crate) tcp_write_buffer_size: usize,
    /// `tcp.max_active_connections`: per service.
    pub(crate) tcp_max_active_connections: usize,
    /// `websocket.ping_period_ms`.
    pub(crate) ws_ping_period_ms: u64,
    /// `websocket.retry_delay_ms`: first reconnect delay.
    pub(crate) ws_retry_delay_ms: u64,
    /// `websocket.retry_max_delay_ms` (ours): cap of the exponential backoff.
    pub(crate) ws_retry_max_delay_ms: u64,
    /// `websocket.connect_retry_count`: -1 = forever; 4xx is never retried.
    pub(crate) ws_connect_retry_count: i64,
    /// `websocket.connect_timeout_ms` (ours): bound of one whole connect attempt (name
    /// lookup, TCP, web proxy, TLS handshake, WebSocket upgrade); a timed-out attempt
    /// is retried like any other failure.
    pub(crate) ws_connect_timeout_ms: u64,
    /// `websocket.reconnect_on_data_error`: reconnect (true) or exit after a session error.
    pub(crate) ws_reconnect_on_data_error: bool,
    /// `websocket.subprotocol`: offered in `Sec-WebSocket-Protocol`.
    pub(crate) ws_subprotocol: String,
    /// `websocket.max_frame_size`: largest WebSocket frame (and message) accepted from the
    /// service; a larger one is a data error that ends the connection.
    pub(crate) ws_max_frame_size: usize,
    /// `websocket.write_buffer_size`: bound on bytes queued towards the tunnel.
    pub(crate) ws_write_buffer_size: usize,
    /// `websocket.read_buffer_size`: the decrypted bytes read from the WebSocket at once
    /// (allocated once; frames larger than it are handled in pieces).
    pub(crate) ws_read_buffer_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_bind_address: "localhost".into(),
            endpoint_format: "data.tunneling.iot.%s.amazonaws.com".into(),
            region_endpoint_overrides: vec![
                (
                    "cn-north-1".into(),
                    "data.tunneling.iot.cn-north-1.amazonaws.com.cn".into(),
                ),
                (
                    "cn-northwest-1".into(),
                    "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn".into(),
                ),
            ],
            data_length_size: 2,
            data_frame_max_size: 65538,
            max_payload_size: 64512,
            max_size: 65536,
            tcp_connection_retry_count: 5,
            tcp_connection_retry_delay_ms: 2500,
            tcp_read_buffer_size: 131076,
            tcp_write_buffer_size: 131076,
            tcp_max_active_connections: 128,
            ws_ping_period_ms: 20000,
            ws_retry_delay_ms: 2500,
            ws_retry_max_delay_ms: 60000,
            ws_connect_retry_count: -1,
            ws_connect_timeout_ms: 30000,
            ws_reconnect_on_data_error: true,
            ws_subprotocol: crate::protocol::SUBPROTOCOL_V3.into(),
            ws_max_frame_size: 131076,
            ws_write_buffer_size: 131076,
            ws_read_buffer_size: 131076,
        }
    }
}

impl Settings {
    /// Every key (without [`KEY_PREFIX`]) and its value as the JSON file writes it, in file
    /// order. `--check` prints these too.
    pub(crate) fn entries(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            (
                "default_bind_address".into(),
                self.default_bind_address.clone(),
            ),
            ("endpoint_format".into(), self.endpoint_format.clone()),
        ];
        for (region, host) in &self.region_endpoint_overrides {
            v.push((format!("region_endpoint_overrides.{region}"), host.clone()));
        }
        let mut n = |k: &str, x: String| v.push((k.to_string(), x));
        n(
            "message.data_length_size",
            self.data_length_size.to_string(),
        );
        n(
            "message.data_frame_max_size",
            self.data_frame_max_size.to_string(),
        );
        n(
            "message.max_payload_size",
            self.max_payload_size.to_string(),
        );
        n("message.max_size", self.max_size.to_string());
        n(
            "tcp.connection_retry_count",
            self.tcp_connection_retry_count.to_string(),
        );
        n(
            "tcp.connection_retry_delay_ms",
            self.tcp_connection_retry_delay_ms.to_string(),
        );
        n(
            "tcp.read_buffer_size",
            self.tcp_read_buffer_size.to_string(),
        );
        n(
            "tcp.write_buffer_size",
            self.tcp_write_buffer_size.to_string(),
        );
        n(
            "tcp.max_active_connections",
            self.tcp_max_active_connections.to_string(),
        );
        n(
            "websocket.ping_period_ms",
            self.ws_ping_period_ms.to_string(),
        );
        n(
            "websocket.retry_delay_ms",
            self.ws_retry_delay_ms.to_string(),
        );
        n(
            "websocket.retry_max_delay_ms",
            self.ws_retry_max_delay_ms.to_string(),
        );
        n(
            "websocket.connect_retry_count",
            self.ws_connect_retry_count.to_string(),
        );
        n(
            "websocket.connect_timeout_ms",
            self.ws_connect_timeout_ms.to_string(),
        );
        n(
            "websocket.reconnect_on_data_error",
            self.ws_reconnect_on_data_error.to_string(),
        );
        n("websocket.subprotocol", self.ws_subprotocol.clone());
        n(
            "websocket.max_frame_size",
            self.ws_max_frame_size.to_string(),
        );
        n(
            "websocket.write_buffer_size",
            self.ws_write_buffer_size.to_string(),
        );
        n(
            "websocket.read_buffer_size",
            self.ws_read_buffer_size.to_string(),
        );
        v
    }

    /// The service host for a region: an override if one is set, else `endpoint_format`.
    pub(crate) fn endpoint_host(&self, region: &str) -> String {
        match self
            .region_endpoint_overrides
            .iter()
            .find(|(r, _)| r == region)
        {
            Some((_, host)) => host.clone(),
            None => self.endpoint_format.replacen("%s", region, 1),
        }
    }

    /// The settings file the reference writes: nested objects, every value a string.
    pub fn to_json(&self) -> String {
        let entries: Vec<(String, String)> = self
            .entries()
            .into_iter()
            .map(|(k, v)| (format!("{KEY_PREFIX}{k}"), v))
            .collect();
        nested_json(&entries)
    }

    /// Reads a settings file over the defaults. Returns the settings and warnings (unknown
    /// keys); an error names the key, the problem and the fix.
    pub(crate) fn from_json(text: &str) -> Result<(Settings, Vec<String>), ConfigError> {
        // The JSON parser recurses: refuse deep nesting before it can exhaust the stack.
        const MAX_DEPTH: usize = 32;
        if json_depth(text.as_bytes(), MAX_DEPTH) > MAX_DEPTH {
            return Err(ConfigError::new(
                "",
                format!("arrays or objects are nested more than {MAX_DEPTH} deep"),
                "start from the file --export-default-settings writes",
            ));
        }
        let root: JsonValue = text.parse().map_err(|e: tinyjson::JsonParseError| {
            ConfigError::new(
                format!("line {} column {}", e.line(), e.column()),
                "not valid JSON",
                "fix the syntax, or start again from --export-default-settings",
            )
        })?;
        if !root.is_object() {
            return Err(ConfigError::new(
                "",
                "the top level is not a JSON object",
                "start from the file --export-default-settings writes",
            ));
        }
        let mut leaves = Vec::new();
        flatten("", &root, &mut leaves);
        // HashMap order is random; sorted keys give stable warnings and "first error".
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        let mut s = Settings::default();
        let mut warnings = Vec::new();
        for (path, value) in leaves {
            let known = match path.strip_prefix(KEY_PREFIX) {
                Some(key) => s
                    .apply(key, value)
                    // A JSON key may hold any character: escaped, so the line stays one.
                    .map_err(|(problem, fix)| {
                        ConfigError::new(path.escape_debug().to_string(), problem, fix)
                    })?,
                None => false,
            };
            if !known {
                warnings.push(format!(
                    "settings key '{}' is unknown and ignored",
                    path.escape_debug()
                ));
            }
        }
        s.validate()?;
        Ok((s, warnings))
    }

    /// Sets one key (without prefix). `Ok(false)`: not a key we know.
    fn apply(&mut self, key: &str, value: &JsonValue) -> Result<bool, (String, String)> {
        let text = scalar_text(value)?;
        let t = text.as_str();
        if let Some(region) = key.strip_prefix("region_endpoint_overrides.") {
            match self
                .region_endpoint_overrides
                .iter_mut()
                .find(|(r, _)| r == region)
            {
                Some(slot) => slot.1 = t.to_string(),
                None => self
                    .region_endpoint_overrides
                    .push((region.to_string(), t.to_string())),
            }
            return Ok(true);
        }
        match key {
            "default_bind_address" => self.default_bind_address = t.to_string(),
            "endpoint_format" => self.endpoint_format = t.to_string(),
            "message.data_length_size" => self.data_length_size = unsigned(t)?,
            "message.data_frame_max_size" => self.data_frame_max_size = unsigned(t)?,
            "message.max_payload_size" => self.max_payload_size = unsigned(t)?,
            "message.max_size" => self.max_size = unsigned(t)?,
            "tcp.connection_retry_count" => self.tcp_connection_retry_count = count(t)?,
            "tcp.connection_retry_delay_ms" => self.tcp_connection_retry_delay_ms = unsigned(t)?,
            "tcp.read_buffer_size" => self.tcp_read_buffer_size = unsigned(t)?,
            "tcp.write_buffer_size" => self.tcp_write_buffer_size = unsigned(t)?,
            "tcp.max_active_connections" => self.tcp_max_active_connections = unsigned(t)?,
            "websocket.ping_period_ms" => self.ws_ping_period_ms = unsigned(t)?,
            "websocket.retry_delay_ms" => self.ws_retry_delay_ms = unsigned(t)?,
            "websocket.retry_max_delay_ms" => self.ws_retry_max_delay_ms = unsigned(t)?,
            "websocket.connect_retry_count" => self.ws_connect_retry_count = count(t)?,
            "websocket.connect_timeout_ms" => self.ws_connect_timeout_ms = unsigned(t)?,
            "websocket.reconnect_on_data_error" => self.ws_reconnect_on_data_error = boolean(t)?,
            "websocket.subprotocol" => self.ws_subprotocol = t.to_string(),
            "websocket.max_frame_size" => self.ws_max_frame_size = unsigned(t)?,
            "websocket.write_buffer_size" => self.ws_write_buffer_size = unsigned(t)?,
            "websocket.read_buffer_size" => self.ws_read_buffer_size = unsigned(t)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks every value against the limits the engine relies on.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, problem: String, fix: String| {
            // A region override's key is the file's text: escaped, so the line stays one.
            Err(ConfigError::new(
                format!("{KEY_PREFIX}{}", key.escape_debug()),
                problem,
                fix,
            ))
        };
        let range = |key: &str, v: u64, lo: u64, hi: u64| -> Result<(), ConfigError> {
            if v < lo || v > hi {
                return err(
                    key,
                    format!("{v} is out of range"),
                    format!("give a number from {lo} to {hi}"),
                );
            }
            Ok(())
        };
        let retries = |key: &str, v: i64| -> Result<(), ConfigError> {
            if v < -1 {
                return err(
                    key,
                    format!("{v} is out of range"),
                    "give -1 (forever) or a count from 0".into(),
                );
            }
            Ok(())
        };
        if let Err((problem, fix)) = check_host(&self.default_bind_address) {
            return err("default_bind_address", problem, fix);
        }
        if self.endpoint_format.matches("%s").count() != 1 {
            return err(
                "endpoint_format",
                "does not contain %s exactly once".into(),
                "write the host with %s where the region goes, e.g. data.tunneling.iot.%s.amazonaws.com".into(),
            );
        }
        if let Err((problem, fix)) = check_host(&self.endpoint_host("us-east-1")) {
            return err("endpoint_format", problem, fix);
        }
        for (region, host) in &self.region_endpoint_overrides {
            let key = format!("region_endpoint_overrides.{region}");
            if let Err((problem, fix)) = check_region(region) {
                return err(&key, format!("the region name {problem}"), fix);
            }
            if let Err((problem, fix)) = check_host(host) {
                return err(&key, problem, fix);
            }
        }
        if self.data_length_size != LENGTH_PREFIX {
            return err(
                "message.data_length_size",
                format!("{} is not supported", self.data_length_size),
                "give 2 (the protocol's length prefix is always 2 bytes)".into(),
            );
        }
        let usz = |v: usize| v as u64;
        range(
            "message.data_frame_max_size",
            usz(self.data_frame_max_size),
            1,
            usz(MAX_BUFFER),
        )?;
        range(
            "message.max_payload_size",
            usz(self.max_payload_size),
            1,
            usz(MAX_PAYLOAD),
        )?;
        range(
            "message.max_size",
            usz(self.max_size),
            usz(self.max_payload_size + DATA_HEADROOM),
            usz(MAX_MESSAGE + 1),
        )?;
        retries(
            "tcp.connection_retry_count",
            self.tcp_connection_retry_count,
        )?;
        range(
            "tcp.connection_retry_delay_ms",
            self.tcp_connection_retry_delay_ms,
            0,
            MAX_MS,
        )?;
        range(
            "tcp.read_buffer_size",
            usz(self.tcp_read_buffer_size),
            1,
            usz(MAX_BUFFER),
        )?;
        // A peer may send a full-size DATA payload whatever our own max_payload_size says.
        range(
            "tcp.write_buffer_size",
            usz(self.tcp_write_buffer_size),
            usz(MAX_PAYLOAD),
            usz(MAX_BUFFER),
        )?;
        range(
            "tcp.max_active_connections",
            usz(self.tcp_max_active_connections),
            1,
            65535,
        )?;
        range(
            "websocket.ping_period_ms",
            self.ws_ping_period_ms,
            1,
            MAX_MS,
        )?;
        range(
            "websocket.retry_delay_ms",
            self.ws_retry_delay_ms,
            0,
            MAX_MS,
        )?;
        range(
            "websocket.retry_max_delay_ms",
            self.ws_retry_max_delay_ms,
            self.ws_retry_delay_ms,
            MAX_MS,
        )?;
        retries("websocket.connect_retry_count", self.ws_connect_retry_count)?;
        range(
            "websocket.connect_timeout_ms",
            self.ws_connect_timeout_ms,
            MIN_CONNECT_TIMEOUT_MS,
            MAX_CONNECT_TIMEOUT_MS,
        )?;
        if Version::from_subprotocol(&self.ws_subprotocol).is_none() {
            return err(
                "websocket.subprotocol",
                "is not a subprotocol this proxy speaks".into(),
                "give aws.iot.securetunneling-3.0, -2.0 or -1.0".into(),
            );
        }
        // One whole tunnel message must fit in a frame and in the outgoing queue.
        let one_message = usz(self.max_size + LENGTH_PREFIX);
        range(
            "websocket.max_frame_size",
            usz(self.ws_max_frame_size),
            one_message,
            usz(MAX_BUFFER),
        )?;
        range(
            "websocket.write_buffer_size",
            usz(self.ws_write_buffer_size),
            one_message,
            usz(MAX_BUFFER),
        )?;
        range(
            "websocket.read_buffer_size",
            usz(self.ws_read_buffer_size),
            // The largest control frame (127 bytes) must fit, with room to spare.
            4096,
            usz(MAX_BUFFER),
        )?;
        Ok(())
    }
}

/// Collects `(dotted.path, leaf)` pairs; objects are walked, anything else is a leaf.
fn flatten<'a>(prefix: &str, v: &'a JsonValue, out: &mut Vec<(String, &'a JsonValue)>) {
    match v {
        JsonValue::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, child, out);
            }
        }
        _ => out.push((prefix.to_string(), v)),
    }
}

/// A leaf as text: strings as written (the reference's style), numbers and booleans too.
fn scalar_text(v: &JsonValue) -> Result<String, (String, String)> {
    match v {
        JsonValue::String(s) => Ok(s.trim().to_string()),
        JsonValue::Boolean(b) => Ok(b.to_string()),
        JsonValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            Ok(format!("{}", *n as i64))
        }
        JsonValue::Number(_) => Err(("is not a whole number".into(), "give a whole number".into())),
        _ => Err((
            "is not a string, number or boolean".into(),
            "give a value like \"2500\"".into(),
        )),
    }
}

fn unsigned<T: std::str::FromStr>(t: &str) -> Result<T, (String, String)> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            format!("'{}' is not a number", quoted(t)),
            "give digits only, e.g. \"2500\"".into(),
        ));
    }
    t.parse()
        .map_err(|_| (format!("{t} is too large"), "give a smaller number".into()))
}

fn count(t: &str) -> Result<i64, (String, String)> {
    match t.strip_prefix('-') {
        Some(rest) => unsigned::<i64>(rest).map(|n| -n),
        None => unsigned(t),
    }
    .map_err(|_| {
        (
            format!("'{}' is not a count", quoted(t)),
            "give -1 (forever) or a count from 0".into(),
        )
    })
}

fn boolean(t: &str) -> Result<bool, (String, String)> {
    parse_bool(t).ok_or_else(|| {
        (
            format!("'{}' is not true or false", quoted(t)),
            "give \"true\" or \"false\"".into(),
        )
    })
}

/// Writes ordered `(dotted.path, value)` pairs as nested objects with string values.
/// Entries of one object must be adjacent (they are: [`Settings::entries`] groups them).
fn nested_json(entries: &[(String, String)]) -> String {
    fn quote(s: &str) -> String {
        // tinyjson escapes exactly what JSON needs; a string always stringifies.
        JsonValue::String(s.to_string())
            .stringify()
            .unwrap_or_else(|_| "\"\"".into())
    }
    fn indent(out: &mut String, depth: usize) {
        for _ in 0..depth {
            out.push_str("    ");
        }
    }
    fn next_item(out: &mut String, first: &mut [bool]) {
        if let Some(f) = first.last_mut() {
            if !*f {
                out.push(',');
            }
            *f = false;
        }
        out.push('\n');
    }
    let mut out = String::from("{");
    let mut open: Vec<&str> = Vec::new();
    let mut first = vec![true];
    for (path, value) in entries {
        let segs: Vec<&str> = path.split('.').collect();
        let Some((leaf, parents)) = segs.split_last() else {
            continue;
        };
        let common = open
            .iter()
            .zip(parents.iter())
            .take_while(|(a, b)| a == b)
            .count();
        while open.len() > common {
            open.pop();
            first.pop();
            out.push('\n');
            indent(&mut out, open.len() + 1);
            out.push('}');
        }
        for p in &parents[common..] {
            next_item(&mut out, &mut first);
            indent(&mut out, open.len() + 1);
            out.push_str(&format!("{}: {{", quote(p)));
            open.push(p);
            first.push(true);
        }
        next_item(&mut out, &mut first);
        indent(&mut out, open.len() + 1);
        out.push_str(&format!("{}: {}", quote(leaf), quote(value)));
    }
    while !open.is_empty() {
        open.pop();
        out.push('\n');
        indent(&mut out, open.len() + 1);
        out.push('}');
    }
    out.push_str("\n}\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn deep_nesting_is_refused_without_a_crash() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let e = super::Settings::from_json(&deep).unwrap_err().to_string();
        assert!(e.contains("nested more than"), "{e}");
    }

    use super::*;

    fn err(json: &str) -> String {
        Settings::from_json(json).unwrap_err().to_string()
    }

    fn proxy(inner: &str) -> String {
        format!(r#"{{"tunneling": {{"proxy": {{ {inner} }} }} }}"#)
    }

    /// Found by the settings_json fuzz target: a key with a newline (`\n` in JSON) made
    /// the error, and the unknown-key warning, two lines on the console.
    #[test]
    fn keys_with_control_characters_stay_on_one_line() {
        let e = err(&proxy(
            r#""region_endpoint_overrides": {"\n-north-0": "data.tunneling.iot.cn-nor2"}"#,
        ));
        assert!(
            e.starts_with(r"tunneling.proxy.region_endpoint_overrides.\n-north-0: "),
            "{e}"
        );
        // Only a region override's key is free text among the known keys; any other
        // key with such characters is unknown, and its warning is escaped likewise.
        let (_, warnings) =
            Settings::from_json(&proxy(r#""x\r\ny": 1, "tcp\u001b[2J": 2"#)).unwrap();
        assert_eq!(
            warnings,
            vec![
                r"settings key 'tunneling.proxy.tcp\u{1b}[2J' is unknown and ignored".to_string(),
                r"settings key 'tunneling.proxy.x\r\ny' is unknown and ignored".to_string(),
            ]
        );
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn export_then_import_gives_defaults() {
        let json = Settings::default().to_json();
        let (s, warnings) = Settings::from_json(&json).unwrap();
        assert_eq!(s, Settings::default());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(json.contains(r#""ping_period_ms": "20000""#), "{json}");
        assert!(json.contains(r#""cn-north-1": "data.tunneling.iot.cn-north-1.amazonaws.com.cn""#));
        assert!(
            json.starts_with("{\n    \"tunneling\": {\n        \"proxy\": {\n"),
            "{json}"
        );
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        let s = Settings {
            default_bind_address: "0.0.0.0".into(),
            endpoint_format: "tunnel.%s.example.com".into(),
            region_endpoint_overrides: vec![("xx-test-1".into(), "x.example.com".into())],
            data_length_size: 2,
            data_frame_max_size: 1000,
            max_payload_size: 16384,
            max_size: 20000,
            tcp_connection_retry_count: -1,
            tcp_connection_retry_delay_ms: 1,
            tcp_read_buffer_size: 4096,
            tcp_write_buffer_size: 70000,
            tcp_max_active_connections: 3,
            ws_ping_period_ms: 1000,
            ws_retry_delay_ms: 100,
            ws_retry_max_delay_ms: 200,
            ws_connect_retry_count: 7,
            ws_connect_timeout_ms: 5000,
            ws_reconnect_on_data_error: false,
            ws_subprotocol: crate::protocol::SUBPROTOCOL_V2.into(),
            ws_max_frame_size: 30000,
            ws_write_buffer_size: 30000,
            ws_read_buffer_size: 5000,
        };
        s.validate().unwrap();
        let (back, _) = Settings::from_json(&s.to_json()).unwrap();
        // Reading starts from defaults, so the China overrides come back too.
        let mut expected = s.clone();
        expected.region_endpoint_overrides = Settings::default().region_endpoint_overrides;
        expected
            .region_endpoint_overrides
            .push(("xx-test-1".into(), "x.example.com".into()));
        assert_eq!(back, expected);
    }

    #[test]
    fn file_without_china_overrides_keeps_them() {
        let (s, _) =
            Settings::from_json(&proxy(r#""message": {"max_payload_size": "1000"}"#)).unwrap();
        assert_eq!(s.max_payload_size, 1000);
        assert_eq!(
            s.endpoint_host("cn-north-1"),
            "data.tunneling.iot.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            s.endpoint_host("eu-west-1"),
            "data.tunneling.iot.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn numbers_and_booleans_accepted_too() {
        let (s, _) = Settings::from_json(&proxy(
            r#""websocket": {"ping_period_ms": 5000, "reconnect_on_data_error": false,
                "connect_retry_count": -1}, "tcp": {"connection_retry_count": "-1"}"#,
        ))
        .unwrap();
        assert_eq!(s.ws_ping_period_ms, 5000);
        assert!(!s.ws_reconnect_on_data_error);
        assert_eq!(s.tcp_connection_retry_count, -1);
    }

    #[test]
    fn unknown_keys_warn() {
        let (s, w) = Settings::from_json(
            r#"{"tunneling": {"proxy": {"message": {"may_payload_size": "1"}}}, "other": 1}"#,
        )
        .unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("'other'"));
        assert!(w[1].contains("tunneling.proxy.message.may_payload_size"));
    }

    #[test]
    fn malformed_json_is_an_error_with_position() {
        let e = err(r#"{"tunneling": "#);
        assert!(e.starts_with("line 1 column"), "{e}");
        assert!(e.contains("not valid JSON"), "{e}");
        assert!(err("[1]").contains("not a JSON object"));
    }

    #[test]
    fn limits() {
        let cases = [
            (
                r#""message": {"max_payload_size": "64513"}"#,
                "message.max_payload_size: 64513 is out of range; give a number from 1 to 64512",
            ),
            (
                r#""message": {"max_payload_size": "0"}"#,
                "max_payload_size: 0 is out of range",
            ),
            (
                r#""message": {"data_length_size": "4"}"#,
                "data_length_size: 4 is not supported",
            ),
            (
                r#""message": {"max_size": "100"}"#,
                "max_size: 100 is out of range",
            ),
            (
                r#""websocket": {"ping_period_ms": "0"}"#,
                "ping_period_ms: 0 is out of range",
            ),
            (
                r#""websocket": {"ping_period_ms": "1e3x"}"#,
                "ping_period_ms: '1e3x' is not a number",
            ),
            (
                r#""websocket": {"ping_period_ms": 1.5}"#,
                "not a whole number",
            ),
            (
                r#""websocket": {"ping_period_ms": null}"#,
                "not a string, number or boolean",
            ),
            (
                r#""websocket": {"retry_max_delay_ms": "100"}"#,
                "retry_max_delay_ms: 100 is out of range; give a number from 2500",
            ),
            (
                r#""websocket": {"retry_delay_ms": "99999999999"}"#,
                "retry_delay_ms: 99999999999 is out of range",
            ),
            (
                r#""websocket": {"connect_retry_count": "-2"}"#,
                "connect_retry_count: -2 is out of range",
            ),
            (
                r#""websocket": {"connect_timeout_ms": "0"}"#,
                "connect_timeout_ms: 0 is out of range; give a number from 1000 to 600000",
            ),
            (
                r#""websocket": {"connect_timeout_ms": "86400000"}"#,
                "connect_timeout_ms: 86400000 is out of range",
            ),
            (
                r#""tcp": {"read_buffer_size": "0"}"#,
                "tcp.read_buffer_size: 0 is out of range; give a number from 1 to",
            ),
            (
                r#""websocket": {"read_buffer_size": "100"}"#,
                "websocket.read_buffer_size: 100 is out of range; give a number from 4096 to",
            ),
            (
                r#""websocket": {"max_frame_size": "0"}"#,
                "websocket.max_frame_size: 0 is out of range; give a number from 65538 to",
            ),
            (
                r#""websocket": {"reconnect_on_data_error": "maybe"}"#,
                "'maybe' is not true or false",
            ),
            (
                r#""websocket": {"subprotocol": "chat"}"#,
                "subprotocol: is not a subprotocol",
            ),
            (
                r#""websocket": {"max_frame_size": "100"}"#,
                "max_frame_size: 100 is out of range",
            ),
            (
                r#""tcp": {"write_buffer_size": "1000"}"#,
                "tcp.write_buffer_size: 1000 is out of range",
            ),
            (
                r#""tcp": {"max_active_connections": "0"}"#,
                "max_active_connections: 0 is out of range",
            ),
            (
                r#""tcp": {"read_buffer_size": "999999999999"}"#,
                "read_buffer_size: 999999999999 is out of range",
            ),
            (
                r#""endpoint_format": "no-region.example.com""#,
                "endpoint_format: does not contain %s",
            ),
            (r#""endpoint_format": "wss://%s/""#, "endpoint_format:"),
            (r#""default_bind_address": "a b""#, "default_bind_address:"),
            (
                r#""region_endpoint_overrides": {"BAD": "x.com"}"#,
                "region_endpoint_overrides.BAD: the region name",
            ),
        ];
        for (inner, want) in cases {
            let e = err(&proxy(inner));
            assert!(e.contains(want), "{inner}: got {e}");
            assert!(e.starts_with("tunneling.proxy."), "{e}");
        }
    }
}
