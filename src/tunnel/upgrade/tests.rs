//! Unit tests of the upgrade: the request's text, the key and accept value, and the
//! answer reader fed every kind of answer in every chunking. No sockets: the I/O loop
//! is driven through an in-memory peer.

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
fn the_accept_value_and_the_key_follow_the_rfc() {
    // base64 itself (RFC 4648's vectors) is tested where it lives, in proxy.rs.
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

/// RFC 6455's own example key; its accept value is in [`switch`].
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const V3: &str = "aws.iot.securetunneling-3.0";

/// A 101 for [`KEY`] with `extra` header lines (each ending in CRLF), then `after`.
fn switch(extra: &str, after: &[u8]) -> Vec<u8> {
    let mut a = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
    )
    .into_bytes();
    a.extend_from_slice(after);
    a
}

/// `answer` read in every chunking a test should survive: whole, byte by byte, 7 at
/// a time, and cut in two at every point; all must agree, and the outcome comes back.
fn read_all_ways(answer: &[u8]) -> Result<Upgraded, ConnectError> {
    let whole = parse_answer([answer], KEY, V3);
    let show = |r: &Result<Upgraded, ConnectError>| format!("{r:?}");
    let mut ways = vec![
        parse_answer(answer.chunks(1), KEY, V3),
        parse_answer(answer.chunks(7), KEY, V3),
    ];
    for cut in 0..=answer.len().min(600) {
        let (a, b) = answer.split_at(cut);
        ways.push(parse_answer([a, b], KEY, V3));
    }
    for w in &ways {
        assert_eq!(show(w), show(&whole), "chunking changed the outcome");
    }
    whole
}

fn handshake_error(answer: &[u8]) -> String {
    match read_all_ways(answer) {
        Err(e @ ConnectError::Handshake(_)) => {
            assert!(e.retryable());
            e.to_string()
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_switch_is_checked_against_the_key_and_keeps_the_frames_that_followed() {
    let answer = switch(
        "sec-websocket-protocol: aws.iot.securetunneling-3.0\r\nchannel-id: 1234-abcd\r\n",
        b"\x82\x05hello\x82\x01!",
    );
    let up = read_all_ways(&answer).unwrap();
    assert_eq!(up.version, Version::V3);
    assert_eq!(up.channel_id.as_deref(), Some("1234-abcd"));
    assert_eq!(
        up.tail, b"\x82\x05hello\x82\x01!",
        "the first frames are kept"
    );
    let e = parse_answer([&answer[..]], "another key", V3).unwrap_err();
    assert!(e.to_string().contains("Sec-WebSocket-Accept"), "{e}");
    let v1 = switch(
        "Sec-WebSocket-Protocol: aws.iot.securetunneling-1.0\r\n",
        b"",
    );
    let up = parse_answer([&v1[..]], KEY, "aws.iot.securetunneling-1.0").unwrap();
    assert_eq!((up.version, up.tail.len()), (Version::V1, 0));
}

#[test]
fn a_subprotocol_we_did_not_offer_or_none_fails() {
    let other = switch(
        "Sec-WebSocket-Protocol: aws.iot.securetunneling-2.0\r\n",
        b"",
    );
    let e = handshake_error(&other);
    assert!(
        e.contains("chose subprotocol aws.iot.securetunneling-2.0, which we did not offer"),
        "{e}"
    );
    let unknown = switch("Sec-WebSocket-Protocol: chat\x1b[2J\r\n", b"");
    let e = handshake_error(&unknown);
    assert!(e.contains("chat\\u{1b}[2J"), "escaped: {e}");
    let e = handshake_error(&switch("", b""));
    assert!(
        e.contains("chose no subprotocol (we offered aws.iot"),
        "{e}"
    );
    let e = handshake_error(&switch("Sec-WebSocket-Protocol:\r\n", b""));
    assert!(e.contains("chose no subprotocol"), "{e}");
    let two = switch(
        "Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n\
         Sec-WebSocket-Protocol: aws.iot.securetunneling-2.0\r\n",
        b"",
    );
    assert!(handshake_error(&two).contains("more than one subprotocol"));
}

#[test]
fn an_extension_we_did_not_ask_for_fails() {
    let answer = switch(
        "Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n",
        b"",
    );
    let e = handshake_error(&answer);
    assert!(
        e.contains("extensions we did not ask for (permessage-deflate)"),
        "{e}"
    );
}

#[test]
fn the_upgrade_over_http_1_0_or_without_the_upgrade_headers_fails() {
    let answer = switch(
        "Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n",
        b"",
    );
    let old = [b"HTTP/1.0".as_slice(), &answer[8..]].concat();
    assert!(handshake_error(&old).contains("HTTP/1.0"));
    let plain = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n";
    assert!(handshake_error(plain).contains("does not switch to WebSocket"));
}

#[test]
fn refusals_keep_status_reason_and_body_and_map_to_the_right_outcome() {
    let answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 38\r\n\r\n\
                   Invalid access token: previously used\n";
    match read_all_ways(answer) {
        Err(ConnectError::Rejected { status, detail }) => {
            assert_eq!(status, 400);
            assert_eq!(
                detail,
                " Bad Request: Invalid access token: previously used"
            );
        }
        other => panic!("{other:?}"),
    }
    // 401 and 403 refuse the token for good (exit 3); 408 and 429 say "later".
    for (status, refused) in [(401, true), (403, true), (408, false), (429, false)] {
        let answer = format!("HTTP/1.1 {status} Whatever\r\n\r\n");
        let e = read_all_ways(answer.as_bytes()).unwrap_err();
        assert_eq!(e.retryable(), !refused, "{status}: {e:?}");
        // A refusal shows the service's last word (error.rs keeps it short).
        let shown = if refused {
            format!("HTTP {status}: Whatever")
        } else {
            format!("HTTP {status} Whatever")
        };
        assert!(e.to_string().contains(&shown), "{e}");
    }
    // A body that does not come in full is shown as far as it came.
    let short = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nmode mismatch";
    let e = read_all_ways(short).unwrap_err();
    assert!(e.to_string().contains("HTTP 403: mode mismatch"), "{e}");
}

#[test]
fn other_answers_give_one_clear_line_and_a_retry() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "the service answered HTTP 200 OK: hello, not a switch to WebSocket",
        ),
        (
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com/\r\n\r\n",
            "HTTP 301 Moved Permanently, redirecting to https://example.com/; check the \
             endpoint (-e) or region (-r)",
        ),
        (
            b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
            "the service answered HTTP 500 Internal Server Error",
        ),
        (
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "WebSocket upgrade failed: the answer is not HTTP/1.x (SSH-2.0-OpenSSH_9.2)",
        ),
        (
            b"HTTP/1.1 +12 Nope\r\n\r\n",
            "WebSocket upgrade failed: a bad status code (+12)",
        ),
    ];
    for (answer, line) in cases {
        let e = read_all_ways(answer).unwrap_err();
        assert!(e.retryable(), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(line), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
    let e = parse_answer(
        [b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n".as_slice()],
        KEY,
        V3,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("a bad header line (no colon here)"),
        "{e}"
    );
    let e = parse_answer([b"HTTP/1.1 101 \xff\xfe\r\n\r\n".as_slice()], KEY, V3).unwrap_err();
    assert!(e.to_string().contains("not text"), "{e}");
}

#[test]
fn control_characters_from_the_service_are_escaped_in_the_log_line() {
    let answer = b"HTTP/1.1 403 Forbidden\x1b[2J\x07\r\nContent-Length: 33\r\n\r\n\
                   token\r\n2026 INFO forged\x1b]0;x\x07\xe2\x80\xae";
    let e = read_all_ways(answer).unwrap_err().to_string();
    assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
    // The reason phrase too, where the line shows it (a status worth a retry).
    let status = b"HTTP/1.1 500 Oops\x1b[2J\x07\r\n\r\n";
    let shown = read_all_ways(status).unwrap_err().to_string();
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    assert!(shown.contains("Oops\\u{1b}[2J\\u{7}"), "{shown}");
    assert!(
        e.contains("token\\r\\n2026 INFO forged\\u{1b}]0;x\\u{7}\\u{202e}"),
        "{e}"
    );
    let long = format!("HTTP/1.1 500 {}\r\n\r\n", "x".repeat(5000));
    let e = read_all_ways(long.as_bytes()).unwrap_err().to_string();
    assert!(e.len() < 120 && e.ends_with("..."), "bounded: {e}");
}

#[test]
fn an_endless_header_line_or_too_many_lines_stop_with_bounded_memory() {
    // 1 MiB without a line end, as a socket delivers it: the reader gives up after
    // MAX_HEAD bytes and one chunk, never holding the rest.
    let endless = [
        b"HTTP/1.1 101 Switching Protocols\r\nX: ".as_slice(),
        &[b'a'; 1 << 20],
    ]
    .concat();
    let mut reader = AnswerReader::new(KEY, V3);
    let mut fed = 0;
    let outcome = endless.chunks(4096).find_map(|c| {
        fed += c.len();
        reader.feed(c)
    });
    let e = outcome.expect("decided before the end").unwrap_err();
    assert!(fed <= MAX_HEAD + 4096, "{fed} bytes read");
    assert_eq!(
        e.to_string(),
        format!("WebSocket upgrade failed: the answer's head is longer than {MAX_HEAD} bytes")
    );
    assert!(matches!(
        parse_answer(endless.chunks(1), KEY, V3),
        Err(ConnectError::Handshake(_))
    ));
    // 10,000 header lines: over the head limit.
    let many = format!("HTTP/1.1 101 OK\r\n{}\r\n", "X-A: b\r\n".repeat(10_000));
    assert!(handshake_error_quick(many.as_bytes()).contains("longer than"));
    // Short lines that fit in the limit still have a count.
    let many = format!(
        "HTTP/1.1 101 OK\r\n{}\r\n",
        "a:\r\n".repeat(MAX_HEADERS + 1)
    );
    let e = handshake_error_quick(many.as_bytes());
    assert!(
        e.contains(&format!("more than {MAX_HEADERS} header lines")),
        "{e}"
    );
    // Exactly at the limit, a head ending in the last allowed byte is read.
    let fill = MAX_HEAD - "HTTP/1.1 500 Er\r\nX: \r\n".len();
    let edge = format!("HTTP/1.1 500 Er\r\nX: {}\r\n\r\n", "y".repeat(fill));
    assert!(matches!(
        parse_answer([edge.as_bytes()], KEY, V3),
        Err(ConnectError::Status { status: 500, .. })
    ));
}

/// Like [`handshake_error`] for answers too long to cut at every point.
fn handshake_error_quick(answer: &[u8]) -> String {
    let whole = parse_answer([answer], KEY, V3).unwrap_err();
    let chunked = parse_answer(answer.chunks(4096), KEY, V3).unwrap_err();
    assert_eq!(whole.to_string(), chunked.to_string());
    assert!(matches!(whole, ConnectError::Handshake(_)), "{whole:?}");
    whole.to_string()
}

#[test]
fn a_closed_connection_before_or_inside_the_head_says_which() {
    let e = parse_answer([], KEY, V3).unwrap_err().to_string();
    assert!(
        e.contains("closed the connection before it answered"),
        "{e}"
    );
    let e = parse_answer([b"HTTP/1.1 101 Swi".as_slice()], KEY, V3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("in the middle of its answer (16 bytes"), "{e}");
}

/// A service on the other end of [`upgrade`]'s stream: reads the request, answers
/// with `answer(key)` in 3-byte reads, then ends (EOF) or fails (a timeout).
struct Peer {
    answer: fn(&str) -> Vec<u8>,
    fail_at_end: bool,
    request: Vec<u8>,
    out: Option<Vec<u8>>,
    at: usize,
}

impl Peer {
    fn new(answer: fn(&str) -> Vec<u8>, fail_at_end: bool) -> Peer {
        Peer {
            answer,
            fail_at_end,
            request: Vec::new(),
            out: None,
            at: 0,
        }
    }
}

impl Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let out = self.out.get_or_insert_with(|| {
            let text = String::from_utf8_lossy(&self.request);
            let key = text
                .split("\r\n")
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or_default();
            (self.answer)(key)
        });
        let n = buf.len().min(3).min(out.len() - self.at);
        buf[..n].copy_from_slice(&out[self.at..self.at + n]);
        self.at += n;
        match n {
            0 if self.fail_at_end => Err(std::io::ErrorKind::TimedOut.into()),
            n => Ok(n),
        }
    }
}

impl Write for Peer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.request.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_io_loop_reads_the_answer_and_keeps_what_followed_it() {
    let token = Secret::new("AQGAAXi-token");
    let r = req(&token, None);
    let mut good = Peer::new(
        |key| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\
                 Sec-WebSocket-Protocol: aws.iot.securetunneling-3.0\r\n\r\n",
                accept_for(key)
            )
            .into_bytes()
            .into_iter()
            .chain(*b"\x82\x02hi")
            .collect()
        },
        false,
    );
    let up = upgrade(&mut good, &r).unwrap().unwrap();
    assert_eq!(up.version, Version::V3);
    // Read 3 bytes at a time, the head's last read holds the frame's first byte; the
    // rest stays in the stream for the frame reader.
    let rest = &good.out.as_ref().unwrap()[good.at..];
    assert_eq!([&up.tail[..], rest].concat(), b"\x82\x02hi");
    // A 429 whose body never arrives in full, then the read fails: still the answer.
    let mut refusing = Peer::new(
        |_| b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 99\r\n\r\nslow".to_vec(),
        true,
    );
    match upgrade(&mut refusing, &r).unwrap() {
        Err(e @ ConnectError::Status { status: 429, .. }) => {
            assert!(e.to_string().contains("Too Many Requests: slow"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A read failing before any answer is the caller's to judge (deadline or not).
    let mut silent = Peer::new(|_| Vec::new(), true);
    assert_eq!(
        upgrade(&mut silent, &r).unwrap_err().kind(),
        std::io::ErrorKind::TimedOut
    );
    let mut closing = Peer::new(|_| Vec::new(), false);
    let e = upgrade(&mut closing, &r).unwrap().unwrap_err();
    assert!(e.to_string().contains("before it answered"), "{e}");
}
