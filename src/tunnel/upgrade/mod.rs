//! The WebSocket upgrade request (protocol.md §1.3) and the service's answer, over the
//! freshly opened TLS stream.
//!
//! Written here rather than left to tungstenite's client because the data phase does
//! its own framing (`ws.rs`): whatever the service sends right behind the `101`
//! (SERVICE_IDS, usually in the same TLS record) must come back to the caller, and
//! tungstenite keeps it inside its own WebSocket object. The key (16 random bytes) and
//! the accept value (RFC 6455's SHA-1) come from the OpenSSL the TLS already links, and
//! base64 is the few lines below, so the device binary needs no WebSocket crate. Tokens
//! go on the wire and nowhere else.
//!
//! It does not time anything out (the caller's socket carries the attempt's deadline)
//! nor decide what a failure means for the run (`error.rs` says whether to retry,
//! `reconnect.rs` decides). The tests are in `tests.rs`.

use super::error::ConnectError;
// RFC 4648 base64, the one the web proxy's basic authorisation uses too.
use super::proxy::base64;
use crate::config::{Mode, Secret};
use crate::protocol::Version;
use std::io::{Read, Write};

/// Largest response head we read (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines we take in a head (the service sends about ten).
const MAX_HEADERS: usize = 100;
/// Largest error body we keep for the log line.
const MAX_BODY: usize = 4096;

/// RFC 6455 4.2.2: the GUID the server appends to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fresh `Sec-WebSocket-Key`: 16 bytes from OpenSSL's CSPRNG, base64.
fn new_key() -> Result<String, ConnectError> {
    let mut nonce = [0u8; 16];
    openssl::rand::rand_bytes(&mut nonce).map_err(|_| {
        ConnectError::Handshake("OpenSSL's random generator gave no bytes for the key".into())
    })?;
    Ok(base64(&nonce))
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with: base64(SHA-1(key + GUID)).
pub(crate) fn accept_for(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + ACCEPT_GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(ACCEPT_GUID.as_bytes());
    base64(&openssl::sha::sha1(&input))
}

/// What the upgrade request says.
pub(crate) struct Request<'a> {
    /// Host as given (`[v6]` in brackets), and port.
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) mode: Mode,
    pub(crate) access_token: &'a Secret,
    pub(crate) client_token: Option<&'a Secret>,
    pub(crate) subprotocol: &'a str,
    pub(crate) user_agent: &'a str,
}

/// A successful upgrade.
#[derive(Debug)]
pub(crate) struct Upgraded {
    pub(crate) version: Version,
    pub(crate) channel_id: Option<String>,
    /// Bytes the service sent after its answer, already read: the first frames.
    pub(crate) tail: Vec<u8>,
}

/// The request text for `key`. Fails on a header value HTTP cannot carry.
pub(crate) fn request_text(r: &Request<'_>, key: &str) -> Result<String, ConnectError> {
    let host = if r.port == 443 {
        r.host.to_string()
    } else {
        format!("{}:{}", r.host, r.port)
    };
    let mut headers: Vec<(&str, &str)> = vec![
        ("Host", &host),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Protocol", r.subprotocol),
        ("access-token", r.access_token.expose()),
    ];
    if let Some(ct) = r.client_token {
        headers.push(("client-token", ct.expose()));
    }
    headers.push(("User-Agent", r.user_agent));
    let mut text = format!(
        "GET /tunnel?local-proxy-mode={} HTTP/1.1\r\n",
        r.mode.as_str()
    );
    for (name, value) in headers {
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7F) {
            return Err(ConnectError::Handshake(format!(
                "the {name} header would carry characters HTTP does not allow"
            )));
        }
        text.push_str(name);
        text.push_str(": ");
        text.push_str(value);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    Ok(text)
}

/// The request text with the token headers' values replaced, for a trace line.
fn masked(request: &str) -> String {
    request
        .split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((name, _))
                if name.eq_ignore_ascii_case("access-token")
                    || name.eq_ignore_ascii_case("client-token") =>
            {
                format!("{name}: ***")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A response head: status and headers (names as sent).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub(crate) minor: u8,
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name` (any case).
    pub(crate) fn header<'h>(&'h self, name: &'h str) -> Option<&'h str> {
        self.all(name).next()
    }

    /// Every header named `name` (any case), in order.
    fn all<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Text from the service for a log line: at most `max` characters, with control
/// characters (and the invisible ones that reorder text) escaped, so an answer cannot
/// move the cursor, clear or retitle a console, or forge a second log line.
pub(crate) fn shown_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        let hidden = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if hidden {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a response head (status line and header lines, without the blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the answer is not text".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let minor = match proto {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => {
            return Err(format!(
                "the answer is not HTTP/1.x ({})",
                shown_text(status_line, 40)
            ))
        }
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("a bad status code ({})", shown_text(code, 10)));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("a bad status code ({})", shown_text(code, 10)))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(format!(
                "the answer has more than {MAX_HEADERS} header lines"
            ));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a bad header line ({})", shown_text(line, 40)))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Head {
        minor,
        status,
        reason,
        headers,
    })
}

/// Checks a `101` answer against the request's key and the subprotocol we offered
/// (RFC 6455 4.1: a subprotocol or extension the client did not ask for fails).
pub(crate) fn check_switch(
    head: &Head,
    key: &str,
    offered: &str,
) -> Result<(Version, Option<String>), String> {
    if head.minor != 1 {
        return Err("the answer switches protocols over HTTP/1.0; WebSocket needs 1.1".into());
    }
    let has_token = |name: &str, token: &str| {
        head.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err("the answer does not switch to WebSocket".into());
    }
    if head.header("Sec-WebSocket-Accept") != Some(accept_for(key).as_str()) {
        return Err("the answer's Sec-WebSocket-Accept does not match the key".into());
    }
    if let Some(ext) = head.all("Sec-WebSocket-Extensions").find(|v| !v.is_empty()) {
        return Err(format!(
            "the answer turns on WebSocket extensions we did not ask for ({})",
            shown_text(ext, 60)
        ));
    }
    let mut chosen = head.all("Sec-WebSocket-Protocol");
    match (chosen.next(), chosen.next()) {
        (None, _) | (Some(""), None) => {
            return Err(format!(
                "the service chose no subprotocol (we offered {offered})"
            ))
        }
        (Some(p), None) if p == offered => {}
        (Some(p), None) => {
            return Err(format!(
                "the service chose subprotocol {}, which we did not offer (we offered {offered})",
                shown_text(p, 60)
            ))
        }
        (Some(_), Some(_)) => {
            return Err("the answer names more than one subprotocol".to_string());
        }
    }
    let version = Version::from_subprotocol(offered)
        .ok_or_else(|| format!("{offered} is not a tunnel subprotocol"))?;
    let channel_id = head.header("channel-id").map(|c| shown_text(c, 100));
    Ok((version, channel_id))
}

/// The error for an answer other than `101`. 4xx refuses the token for good (exit 3),
/// except 408 (request timeout) and 429 (too many requests), which say "later"; any
/// other status may pass too. `body` is what came with it (the service says why there).
pub(crate) fn refusal(head: &Head, body: &[u8]) -> ConnectError {
    let mut detail = String::new();
    if !head.reason.is_empty() {
        detail.push(' ');
        detail.push_str(&shown_text(&head.reason, 60));
    }
    let body = String::from_utf8_lossy(body);
    let body = body.trim();
    if !body.is_empty() {
        detail.push_str(": ");
        detail.push_str(&shown_text(body, 200));
    }
    match head.status {
        200..=299 => detail.push_str(", not a switch to WebSocket"),
        300..=399 => {
            if let Some(to) = head.header("Location") {
                detail.push_str(", redirecting to ");
                detail.push_str(&shown_text(to, 100));
            }
            detail.push_str("; check the endpoint (-e) or region (-r)");
        }
        _ => {}
    }
    if (400..500).contains(&head.status) && !matches!(head.status, 408 | 429) {
        ConnectError::Rejected {
            status: head.status,
            detail,
        }
    } else {
        ConnectError::Status {
            status: head.status,
            detail,
        }
    }
}

/// Reads the service's answer as its bytes arrive, in chunks of any size, with bounded
/// memory: at most [`MAX_HEAD`] bytes of head (plus one chunk) and [`MAX_BODY`] of an
/// error body. The I/O is the caller's, so this is what the tests and the fuzzer drive.
pub(crate) struct AnswerReader<'a> {
    key: &'a str,
    offered: &'a str,
    /// The head so far; after a refusing head, its body so far.
    buf: Vec<u8>,
    /// How far the search for the head's blank line has looked.
    scanned: usize,
    /// A head other than `101`, and how many body bytes it announced (up to MAX_BODY).
    refused: Option<(Head, usize)>,
}

impl<'a> AnswerReader<'a> {
    /// For the request that sent `key` and offered the subprotocol `offered`.
    pub(crate) fn new(key: &'a str, offered: &'a str) -> AnswerReader<'a> {
        AnswerReader {
            key,
            offered,
            buf: Vec::new(),
            scanned: 0,
            refused: None,
        }
    }

    /// Takes the next bytes; `Some` once the answer is decided (then feed no more).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Option<Result<Upgraded, ConnectError>> {
        if let Some((head, want)) = &self.refused {
            let room = MAX_BODY.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            return (self.buf.len() >= *want).then(|| Err(refusal(head, &self.buf)));
        }
        self.buf.extend_from_slice(bytes);
        let from = self.scanned.saturating_sub(3);
        let found = self.buf[from..].windows(4).position(|w| w == b"\r\n\r\n");
        let end = match found {
            Some(i) if from + i <= MAX_HEAD => from + i + 4,
            _ if self.buf.len() > MAX_HEAD => {
                return Some(Err(ConnectError::Handshake(format!(
                    "the answer's head is longer than {MAX_HEAD} bytes"
                ))))
            }
            _ => {
                self.scanned = self.buf.len();
                return None;
            }
        };
        log::trace!(
            "upgrade answer: {}",
            String::from_utf8_lossy(&self.buf[..end - 4]).escape_debug()
        );
        let head = match parse_head(&self.buf[..end - 4]) {
            Ok(h) => h,
            Err(e) => return Some(Err(ConnectError::Handshake(e))),
        };
        let rest = self.buf.split_off(end);
        if head.status == 101 {
            return Some(
                check_switch(&head, self.key, self.offered)
                    .map(|(version, channel_id)| Upgraded {
                        version,
                        channel_id,
                        tail: rest,
                    })
                    .map_err(ConnectError::Handshake),
            );
        }
        // The body says why; wait for it when its length is announced (and small).
        let want = head
            .header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_BODY);
        self.buf = rest;
        self.buf.truncate(MAX_BODY);
        if self.buf.len() >= want {
            return Some(Err(refusal(&head, &self.buf)));
        }
        self.refused = Some((head, want));
        None
    }

    /// Whether the head has been read (then a failed read still has an answer).
    pub(crate) fn has_head(&self) -> bool {
        self.refused.is_some()
    }

    /// The answer when no more bytes come: the service closed, or a read failed.
    pub(crate) fn finish(&self) -> Result<Upgraded, ConnectError> {
        Err(match &self.refused {
            Some((head, _)) => refusal(head, &self.buf),
            None if self.buf.is_empty() => ConnectError::Handshake(
                "the service closed the connection before it answered".into(),
            ),
            None => ConnectError::Handshake(format!(
                "the service closed the connection in the middle of its answer \
                 ({} bytes, no blank line)",
                self.buf.len()
            )),
        })
    }
}

/// The answer in `chunks`, as they would arrive, followed by the end of the stream: the
/// pure form of [`upgrade`]'s reading, for the unit tests and the `upgrade` fuzz target.
/// After a `101`, the tail holds every byte behind the head, read or not.
/// A `key` whose [`accept_for`] value the answer carries gets past the accept check.
#[cfg_attr(not(test), allow(dead_code))] // the tests' and the fuzz target's entry
pub(crate) fn parse_answer<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    key: &str,
    offered: &str,
) -> Result<Upgraded, ConnectError> {
    let mut reader = AnswerReader::new(key, offered);
    let mut chunks = chunks.into_iter();
    for chunk in chunks.by_ref() {
        if let Some(done) = reader.feed(chunk) {
            // The socket would still hold the chunks not read: they follow the tail.
            return done.map(|mut up| {
                chunks.for_each(|c| up.tail.extend_from_slice(c));
                up
            });
        }
    }
    reader.finish()
}

/// Sends the request on `s` and reads the answer. I/O errors before the answer's head
/// come back as they are (the caller knows whether the deadline passed).
pub(crate) fn upgrade<S: Read + Write>(
    s: &mut S,
    r: &Request<'_>,
) -> Result<Result<Upgraded, ConnectError>, std::io::Error> {
    let key = match new_key() {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    let text = match request_text(r, &key) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    if log::log_enabled!(log::Level::Trace) {
        log::trace!("upgrade request: {}", masked(&text).escape_debug());
    }
    s.write_all(text.as_bytes())?;
    s.flush()?;
    let mut reader = AnswerReader::new(&key, r.subprotocol);
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(reader.finish()),
            Ok(n) => {
                if let Some(done) = reader.feed(&chunk[..n]) {
                    return Ok(done);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The status is in: an answer is an answer, with what came of its body.
            Err(_) if reader.has_head() => return Ok(reader.finish()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
