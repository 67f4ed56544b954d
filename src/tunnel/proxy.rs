//! Web proxies: `https_proxy` / `HTTPS_PROXY` (lowercase wins), `NO_PROXY`, and the HTTP
//! CONNECT exchange that opens a tunnel through the proxy to the service.
//!
//! The proxy URL is `http://` or `https://` (TLS to the proxy, then TLS to the service
//! inside it), with optional percent-encoded `user:pass@` sent as basic authorisation
//! and port 3128 when none is given (like the reference). Only the WebSocket uses the
//! proxy; the service's name is resolved by the proxy. The password never reaches a log
//! line: [`WebProxy`]'s `Display` leaves it out.

use crate::config::Secret;
use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

/// The proxy port when the URL names none (the reference's choice).
pub const DEFAULT_PROXY_PORT: u16 = 3128;
/// Longest CONNECT response head we read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A parsed proxy URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WebProxy {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `user:pass`, percent-decoded.
    pub(crate) credentials: Option<Secret>,
}

impl fmt::Display for WebProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let user = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

/// Parses `http[s]://[user:pass@]host[:port][/...]`.
pub(crate) fn parse_url(url: &str) -> Result<WebProxy, String> {
    let url = url.trim();
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if url.contains("://") {
        return Err("only http:// and https:// proxies are supported".into());
    } else {
        return Err("the proxy URL has no scheme; write http://host:port".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let credentials = match userinfo {
        Some(u) => {
            let decoded = percent_decode(u)?;
            if !decoded.contains(':') {
                return Err("the proxy credentials must be user:password".into());
            }
            Some(Secret::new(decoded))
        }
        None => None,
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 proxy address needs a closing ]")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after the IPv6 proxy address".into()),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
    {
        return Err("the proxy URL has no valid host".into());
    }
    let port = match port {
        None => DEFAULT_PROXY_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the proxy port must be a number from 1 to 65535")?,
    };
    Ok(WebProxy {
        tls,
        host: host.to_ascii_lowercase(),
        port,
        credentials,
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("bad %-escape in the proxy credentials")?;
                if hex == 0 {
                    return Err("%00 is not allowed in the proxy credentials".into());
                }
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "the proxy credentials are not UTF-8".into())
}

/// Whether `host` is listed in a NO_PROXY value (`*`, exact names, domain suffixes with
/// or without a leading dot, IP addresses; ports are ignored).
pub(crate) fn bypassed(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_matches(['[', ']']);
        // Strip a :port, but not from a bare IPv6 address.
        let entry = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => entry,
        };
        let entry = entry.trim_start_matches('.').to_ascii_lowercase();
        !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
    })
}

/// The proxy to use for `endpoint_host`, from an environment lookup.
pub(crate) fn from_env(
    endpoint_host: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<WebProxy>, String> {
    let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let Some((name, url)) = nonempty("https_proxy")
        .map(|v| ("https_proxy", v))
        .or_else(|| nonempty("HTTPS_PROXY").map(|v| ("HTTPS_PROXY", v)))
    else {
        return Ok(None);
    };
    let no_proxy = nonempty("no_proxy").or_else(|| nonempty("NO_PROXY"));
    if no_proxy.is_some_and(|n| bypassed(endpoint_host, &n)) {
        return Ok(None);
    }
    parse_url(&url)
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

/// Standard base64 of `input` with padding (RFC 4648 4): the basic authorisation header
/// here, the upgrade's key and accept value in `upgrade`.
pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends CONNECT for `host:port` on `stream` and reads the answer head. Any 2xx opens
/// the tunnel; anything else is an error that shows the status line.
pub(crate) fn connect_through<S: Read + Write>(
    stream: &mut S,
    proxy: &WebProxy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &proxy.credentials {
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&base64(c.expose().as_bytes()));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| format!("cannot send CONNECT to the proxy {proxy}: {e}"))?;
    // Read byte-wise up to the blank line so nothing of the TLS stream is consumed.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "the proxy {proxy} closed the connection after CONNECT"
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "the proxy {proxy} did not answer CONNECT within {} s",
                    timeout.as_secs()
                ))
            }
            Err(e) => return Err(format!("reading the proxy's answer: {e}")),
        }
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(format!(
                "the proxy {proxy} sent an oversized answer to CONNECT"
            ));
        }
    }
    let text = String::from_utf8_lossy(&head);
    // Shown escaped and cut: it is the proxy's text, bound for a console.
    let raw_status = text.lines().next().unwrap_or("").trim();
    let mut status_line: String = raw_status.chars().take(120).collect();
    if status_line.len() < raw_status.len() {
        status_line.push_str("...");
    }
    let status_line = status_line.escape_debug().to_string();
    // Three digits, as HTTP spells a status (u16::parse would take "+200").
    let code = raw_status
        .split_whitespace()
        .nth(1)
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    if !(200..300).contains(&code) {
        return Err(format!(
            "the proxy {proxy} refused CONNECT to {target}: {status_line}"
        ));
    }
    if code != 200 {
        log::warn!("the proxy {proxy} answered CONNECT with {status_line}; going on");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy's answer to read, and a sink for the request.
    struct Canned(std::io::Cursor<Vec<u8>>);

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_status_line_reaches_the_console_escaped_and_cut() {
        let p = parse_url("http://proxy:3128").unwrap();
        let answer = |head: &str| {
            let mut s = Canned(std::io::Cursor::new(head.as_bytes().to_vec()));
            connect_through(&mut s, &p, "example.invalid", 443, Duration::from_secs(1))
        };
        let e = answer("HTTP/1.1 403 \u{1b}[2JForbidden\r\n\r\n").unwrap_err();
        assert!(e.ends_with(r"403 \u{1b}[2JForbidden"), "{e}");
        let long = format!("HTTP/1.1 502 {}\r\n\r\n", "x".repeat(500));
        let e = answer(&long).unwrap_err();
        assert!(e.ends_with("x..."), "{e}");
        assert!(e.len() < 220, "{e}");
        assert!(answer("HTTP/1.1 200 Connection established\r\n\r\n").is_ok());
        assert!(answer("HTTP/1.1 +200 Connection established\r\n\r\n").is_err());
        assert!(answer("HTTP/1.1 2000 Connection established\r\n\r\n").is_err());
    }

    #[test]
    fn urls() {
        let p = parse_url("http://proxy.lan:8080").unwrap();
        assert_eq!((p.tls, p.host.as_str(), p.port), (false, "proxy.lan", 8080));
        assert!(p.credentials.is_none());
        let p = parse_url("https://us%3Aer:p%40ss+w@Proxy:443/path").unwrap();
        assert_eq!((p.tls, p.host.as_str(), p.port), (true, "proxy", 443));
        assert_eq!(p.credentials.as_ref().unwrap().expose(), "us:er:p@ss w");
        assert_eq!(p.to_string(), "https://***@proxy:443");
        assert_eq!(parse_url("http://[::1]:3129").unwrap().host, "::1");
        assert_eq!(parse_url("http://p").unwrap().port, DEFAULT_PROXY_PORT);
        for bad in [
            "proxy:3128",
            "socks5://p:1080",
            "http://",
            "http://p:0",
            "http://p:x",
            "http://u@p",
            "http://a:%00@p",
            "http://a:%zz@p",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_proxy_rules() {
        assert!(bypassed(
            "data.tunneling.iot.x.amazonaws.com",
            "amazonaws.com"
        ));
        assert!(bypassed(
            "data.tunneling.iot.x.amazonaws.com",
            "foo, .amazonaws.com"
        ));
        assert!(bypassed("localhost", "localhost:8443"));
        assert!(bypassed("anything", "*"));
        assert!(bypassed("::1", "[::1]"));
        assert!(!bypassed("notamazonaws.com", "amazonaws.com"));
        assert!(!bypassed("x.com", ""));
    }

    #[test]
    fn environment_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
        ]);
        assert_eq!(from_env("h", &both).unwrap().unwrap().host, "lower");
        let upper = env(&[("HTTPS_PROXY", "http://upper:2")]);
        assert_eq!(from_env("h", &upper).unwrap().unwrap().host, "upper");
        let skip = env(&[("HTTPS_PROXY", "http://upper:2"), ("NO_PROXY", "h")]);
        assert_eq!(from_env("h", &skip).unwrap(), None);
        let bad = env(&[("https_proxy", "upper:2")]);
        assert!(from_env("h", &bad)
            .unwrap_err()
            .starts_with("https_proxy: "));
        assert_eq!(from_env("h", &env(&[])).unwrap(), None);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn connect_exchange() {
        struct Fake {
            input: std::io::Cursor<Vec<u8>>,
            sent: Vec<u8>,
        }
        impl Read for Fake {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                self.input.read(b)
            }
        }
        impl Write for Fake {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.sent.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let proxy = parse_url("http://user:pw@p:1").unwrap();
        let mut f = Fake {
            input: std::io::Cursor::new(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nTLS".to_vec()),
            sent: Vec::new(),
        };
        connect_through(&mut f, &proxy, "svc", 443, Duration::from_secs(1)).unwrap();
        let sent = String::from_utf8(f.sent).unwrap();
        assert!(sent.starts_with("CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n"));
        assert!(sent.contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"));
        // The bytes after the head are left for TLS.
        let mut rest = String::new();
        f.input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "TLS");
        let mut f = Fake {
            input: std::io::Cursor::new(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n".to_vec(),
            ),
            sent: Vec::new(),
        };
        let e = connect_through(&mut f, &proxy, "svc", 443, Duration::from_secs(1)).unwrap_err();
        assert!(
            e.contains("407 Proxy Authentication Required") && !e.contains("pw"),
            "{e}"
        );
    }
}
