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

use super::error::ConnectError;
use crate::config::{Mode, Secret};
use crate::protocol::Version;
use std::io::{Read, Write};

/// Largest response head we read (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Largest error body we keep for the log line.
const MAX_BODY: usize = 4096;

/// RFC 6455 4.2.2: the GUID the server appends to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Standard base64 with padding (RFC 4648 4), the alphabet both upgrade headers use.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from OpenSSL's CSPRNG, base64.
fn new_key() -> Result<String, ConnectError> {
    let mut nonce = [0u8; 16];
    openssl::rand::rand_bytes(&mut nonce).map_err(|_| {
        ConnectError::Handshake("OpenSSL's random generator gave no bytes for the key".into())
    })?;
    Ok(base64(&nonce))
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with: base64(SHA-1(key + GUID)).
fn accept_for(key: &str) -> String {
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
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where the head ends (after its blank line) in `buf`, if it is all there.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a response head (status line and header lines, without the blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the answer is not text".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !proto.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!(
            "the answer is not HTTP/1.x ({:.40})",
            status_line.escape_debug()
        ));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("a bad status code ({code:.10})"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a bad header line ({:.40})", line.escape_debug()))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Head {
        status,
        reason,
        headers,
    })
}

/// Checks a `101` answer against the request's key.
pub(crate) fn check_switch(head: &Head, key: &str) -> Result<(Version, Option<String>), String> {
    let has_token = |name: &str, token: &str| {
        head.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err("the answer does not switch to WebSocket".into());
    }
    let accept = accept_for(key);
    if head.header("Sec-WebSocket-Accept") != Some(accept.as_str()) {
        return Err("the answer's Sec-WebSocket-Accept does not match the key".into());
    }
    let version = head
        .header("Sec-WebSocket-Protocol")
        .and_then(Version::from_subprotocol)
        .ok_or_else(|| "the service accepted no known subprotocol".to_string())?;
    let channel_id = head.header("channel-id").map(str::to_string);
    Ok((version, channel_id))
}

/// The error for an answer other than `101`: 4xx refuses the token for good, anything
/// else may pass. `body` is what came with it (the service says why there).
pub(crate) fn refusal(head: &Head, body: &[u8]) -> ConnectError {
    let mut detail = String::new();
    if !head.reason.is_empty() {
        detail.push(' ');
        detail.push_str(&head.reason);
    }
    let body: String = String::from_utf8_lossy(body)
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if !body.is_empty() {
        detail.push_str(": ");
        detail.push_str(&body);
    }
    if (400..500).contains(&head.status) {
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

/// Sends the request on `s` and reads the answer. I/O errors come back as they are
/// (the caller knows whether the deadline passed).
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
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Err(ConnectError::Handshake(format!(
                "the answer's head is longer than {MAX_HEAD} bytes"
            ))));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(Err(ConnectError::Handshake(
                "the service closed the connection before it answered".into(),
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    log::trace!(
        "upgrade answer: {}",
        String::from_utf8_lossy(&buf[..end - 4]).escape_debug()
    );
    let head = match parse_head(&buf[..end - 4]) {
        Ok(h) => h,
        Err(e) => return Ok(Err(ConnectError::Handshake(e))),
    };
    let mut tail = buf.split_off(end);
    if head.status != 101 {
        // The body says why; read it when its length is announced (and small).
        let want = head
            .header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_BODY);
        while tail.len() < want {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => tail.extend_from_slice(&chunk[..n]),
            }
        }
        tail.truncate(MAX_BODY);
        return Ok(Err(refusal(&head, &tail)));
    }
    Ok(check_switch(&head, &key)
        .map(|(version, channel_id)| Upgraded {
            version,
            channel_id,
            tail,
        })
        .map_err(ConnectError::Handshake))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(token: &'a Secret, ct: Option<&'a Secret>) -> Request<'a> {
        Request {
            host: "data.tunneling.iot.eu-west-1.amazonaws.com",
            port: 443,
            mode: Mode::Destination,
            access_token: token,
            client_token: ct,
            subprotocol: "aws.iot.securetunneling-3.0",
            user_agent: "localproxy-rs/0.1.0 (linux; x86_64)",
        }
    }

    #[test]
    fn base64_and_the_accept_value_follow_the_rfcs() {
        // RFC 4648 section 10's test vectors.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
        // RFC 6455 section 1.3's example.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (a, b) = (new_key().unwrap(), new_key().unwrap());
        assert_eq!(a.len(), 24, "16 bytes in base64: {a}");
        assert!(a.ends_with("=="), "{a}");
        assert_ne!(a, b, "each key is fresh");
    }

    #[test]
    fn the_request_carries_what_the_service_expects() {
        let token = Secret::new("AQGAAXi-token");
        let ct = Secret::new("0123456789abcdef0123456789abcdef");
        let text = request_text(&req(&token, Some(&ct)), "dGhlIHNhbXBsZSBub25jZQ==").unwrap();
        assert_eq!(
            text,
            "GET /tunnel?local-proxy-mode=destination HTTP/1.1\r\n\
             Host: data.tunneling.iot.eu-west-1.amazonaws.com\r\n\
             Connection: Upgrade\r\n\
             Upgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n\
             access-token: AQGAAXi-token\r\n\
             client-token: 0123456789abcdef0123456789abcdef\r\n\
             User-Agent: localproxy-rs/0.1.0 (linux; x86_64)\r\n\r\n"
        );
        let mut r = req(&token, None);
        r.host = "[::1]";
        r.port = 8443;
        let text = request_text(&r, "k").unwrap();
        assert!(text.contains("Host: [::1]:8443\r\n"), "{text}");
        assert!(!text.contains("client-token"));
        let masked = masked(&text);
        assert!(masked.contains("access-token: ***\r\n"), "{masked}");
        assert!(!masked.contains("AQGAAXi-token"));
        let bad = Secret::new("a\r\nInjected: yes");
        let e = request_text(&req(&bad, None), "k").unwrap_err();
        assert!(e.to_string().contains("access-token header"), "{e}");
        assert!(!e.to_string().contains("Injected"), "no token in errors");
    }

    #[test]
    fn a_switch_is_checked_against_the_key_and_keeps_what_followed() {
        // RFC 6455's own example key and accept value.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n\
            Connection: upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
            sec-websocket-protocol: aws.iot.securetunneling-3.0\r\n\
            channel-id: 1234-abcd\r\n\r\n\x82\x05hello";
        let end = head_end(answer).unwrap();
        assert_eq!(&answer[end..], b"\x82\x05hello");
        let head = parse_head(&answer[..end - 4]).unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(
            check_switch(&head, key).unwrap(),
            (Version::V3, Some("1234-abcd".to_string()))
        );
        let e = check_switch(&head, "another key").unwrap_err();
        assert!(e.contains("Sec-WebSocket-Accept"), "{e}");
        let no_proto = parse_head(
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        )
        .unwrap();
        assert_eq!(
            check_switch(&no_proto, key).unwrap_err(),
            "the service accepted no known subprotocol"
        );
    }

    #[test]
    fn refusals_keep_status_reason_and_body() {
        let head = parse_head(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 10").unwrap();
        match refusal(&head, b"Invalid access token: previously used\n") {
            ConnectError::Rejected { status, detail } => {
                assert_eq!(status, 400);
                assert_eq!(
                    detail,
                    " Bad Request: Invalid access token: previously used"
                );
            }
            other => panic!("{other:?}"),
        }
        let head = parse_head(b"HTTP/1.1 503 Service Unavailable").unwrap();
        assert!(matches!(
            refusal(&head, b""),
            ConnectError::Status { status: 503, .. }
        ));
        assert!(parse_head(b"SSH-2.0-OpenSSH_9.2").is_err());
        assert!(parse_head(b"HTTP/1.1 10x Nope").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon here").is_err());
    }
}
