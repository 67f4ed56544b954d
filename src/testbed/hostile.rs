//! The service double misbehaving on purpose, for tests/hostile.rs and for a person
//! (`testbed serve --hostile CASE`): the next peer of one mode that connects is admitted
//! like any other (token, subprotocol, SERVICE_IDS), and then, instead of relaying, the
//! double plays the case for a while and drops the connection. The proxy must survive it
//! with bounded memory and tunnel again on its next connection, which is served normally.
//!
//! Each case writes as fast as the proxy's socket takes and reads nothing, so a proxy
//! that answers every frame it reads (pongs, CONNECTION_RESETs) without bounding what
//! waits to go out would grow without limit. What the case managed to send, and how
//! often the proxy's socket was full, comes back as a [`Report`].

use super::pace::Paced;
use crate::protocol::codec;
use crate::protocol::{Message, Type};
use crate::sys::{Interest, PollSet};
use openssl::ssl::SslStream;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// A way to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// 125-byte pings as fast as the socket takes them, never reading a pong.
    PingFlood,
    /// A STREAM_START, then CONNECTION_STARTs on that stream (new connection ids, the
    /// first service) as fast as the socket takes them, never reading the
    /// CONNECTION_RESETs they cause once the destination's connection limit is reached.
    StartFlood,
    /// A ping frame and TLS's close_notify in one TCP send, the TCP connection left open:
    /// the proxy must act on the close at once, not at its next ping or dead-peer check.
    CloseNotify,
    /// SERVICE_IDS and, in the same send, a masked frame (a protocol error): the
    /// session was ready and failed in one read, which counts as ready for the backoff.
    ReadyThenGarbage,
    /// A frame with a reserved bit set.
    RsvBits,
    /// A frame with an opcode RFC 6455 does not define.
    UnknownOpcode,
    /// A ping of 126 bytes (control frames carry at most 125).
    LongControl,
    /// A ping without FIN (control frames cannot be fragmented).
    FragmentedControl,
    /// A continuation frame while no message is open.
    StrayContinuation,
    /// A binary frame that opens a fragmented message, then a new binary message.
    DataInFragment,
    /// A 64-bit frame length with the top bit set.
    TopBitLength,
    /// A frame announcing 2^40 bytes, then its payload one byte per 200 ms.
    TeraTrickle,
    /// Three 60,000-byte fragments of one message: each under websocket.max_frame_size,
    /// together over it.
    OverLimitFragments,
    /// 100,000 empty binary frames.
    EmptyFrames,
    /// A text frame.
    TextFrame,
    /// 10,000 pings in one go.
    TenThousandPings,
    /// A pong nobody asked for, with a non-numeric payload.
    UnsolicitedPong,
}

impl Case {
    pub const ALL: [Case; 17] = [
        Case::PingFlood,
        Case::StartFlood,
        Case::CloseNotify,
        Case::ReadyThenGarbage,
        Case::RsvBits,
        Case::UnknownOpcode,
        Case::LongControl,
        Case::FragmentedControl,
        Case::StrayContinuation,
        Case::DataInFragment,
        Case::TopBitLength,
        Case::TeraTrickle,
        Case::OverLimitFragments,
        Case::EmptyFrames,
        Case::TextFrame,
        Case::TenThousandPings,
        Case::UnsolicitedPong,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::PingFlood => "ping-flood",
            Case::StartFlood => "start-flood",
            Case::CloseNotify => "close-notify",
            Case::ReadyThenGarbage => "ready-then-garbage",
            Case::RsvBits => "rsv-bits",
            Case::UnknownOpcode => "unknown-opcode",
            Case::LongControl => "long-control",
            Case::FragmentedControl => "fragmented-control",
            Case::StrayContinuation => "stray-continuation",
            Case::DataInFragment => "data-in-fragment",
            Case::TopBitLength => "top-bit-length",
            Case::TeraTrickle => "tera-trickle",
            Case::OverLimitFragments => "over-limit-fragments",
            Case::EmptyFrames => "empty-frames",
            Case::TextFrame => "text-frame",
            Case::TenThousandPings => "ten-thousand-pings",
            Case::UnsolicitedPong => "unsolicited-pong",
        }
    }

    pub fn parse(s: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Whether the case's first bytes must leave in the same send as SERVICE_IDS (the
    /// testbed holds its writes until the case releases them).
    pub(crate) fn sends_with_service_ids(self) -> bool {
        self.frames().is_some()
    }

    /// The bytes of the cases that are a fixed run of frames (sent right behind
    /// SERVICE_IDS; then the connection is held open until the proxy closes it or the
    /// case's time is up).
    pub fn frames(self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        match self {
            Case::PingFlood | Case::StartFlood | Case::CloseNotify => return None,
            Case::ReadyThenGarbage => v.extend_from_slice(&[0x82, 0x84, 1, 2, 3, 4, 5, 6, 7, 8]),
            Case::RsvBits => v.extend_from_slice(&[0xC2, 0x00]),
            Case::UnknownOpcode => v.extend_from_slice(&[0x83, 0x00]),
            Case::LongControl => {
                v.extend_from_slice(&[0x89, 126, 0, 126]);
                v.extend_from_slice(&[b'p'; 126]);
            }
            Case::FragmentedControl => v.extend_from_slice(&[0x09, 0x00]),
            Case::StrayContinuation => v.extend_from_slice(&[0x80, 0x00]),
            Case::DataInFragment => v.extend_from_slice(&[0x02, 0x01, 0x00, 0x82, 0x00]),
            Case::TopBitLength => v.extend_from_slice(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]),
            Case::TeraTrickle => v.extend_from_slice(&[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]),
            Case::OverLimitFragments => {
                for b0 in [0x02, 0x00, 0x80] {
                    v.extend_from_slice(&[b0, 126]);
                    v.extend_from_slice(&60_000u16.to_be_bytes());
                    v.extend_from_slice(&[0; 60_000]);
                }
            }
            Case::EmptyFrames => {
                for _ in 0..100_000 {
                    v.extend_from_slice(&[0x82, 0x00]);
                }
            }
            Case::TextFrame => v.extend_from_slice(&[0x81, 5, b'h', b'e', b'l', b'l', b'o']),
            Case::TenThousandPings => {
                for _ in 0..10_000 {
                    v.extend_from_slice(&[0x89, 4, b'p', b'i', b'n', b'g']);
                }
            }
            Case::UnsolicitedPong => v.extend_from_slice(&[0x8A, 3, b'a', b'b', b'c']),
        }
        Some(v)
    }
}

/// A bad answer to a connection attempt, before any WebSocket exists: the TLS
/// handshake or the HTTP upgrade. Queued answers are given to the next connections in
/// turn, whatever their mode; later connections are served normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// TCP closed once the ClientHello arrived.
    TlsClose,
    /// Bytes that are not TLS instead of a ServerHello.
    TlsGarbage,
    /// A 101 without Sec-WebSocket-Accept.
    NoAccept,
    /// A 101 with an accept value for another key.
    WrongAccept,
    /// A 101 without Sec-WebSocket-Protocol.
    NoSubprotocol,
    /// A 101 naming a subprotocol the proxy did not offer.
    OtherSubprotocol,
    /// A 101 naming an extension the proxy did not ask for.
    Extension,
    /// `HTTP/1.0 200 OK`.
    Http10Ok,
    /// A 101 with a 1 MiB header line and no CRLF.
    LongHeader,
    /// A 101 with 10,000 header lines.
    ManyHeaders,
    /// A status line that is not HTTP.
    GarbageStatus,
    /// A good 101, one byte every 200 ms.
    TrickleHeader,
    /// 301 Moved Permanently, with a Location.
    Moved,
    /// 500 Internal Server Error.
    ServerError,
    /// 401 Unauthorized (a bad token: the proxy exits 3).
    Unauthorized,
    /// 408 Request Timeout.
    RequestTimeout,
    /// 429 Too Many Requests.
    TooManyRequests,
    /// A normal upgrade whose 101 and first frames (SERVICE_IDS) leave in one send.
    Coalesced101,
}

impl Answer {
    pub const ALL: [Answer; 18] = [
        Answer::TlsClose,
        Answer::TlsGarbage,
        Answer::NoAccept,
        Answer::WrongAccept,
        Answer::NoSubprotocol,
        Answer::OtherSubprotocol,
        Answer::Extension,
        Answer::Http10Ok,
        Answer::LongHeader,
        Answer::ManyHeaders,
        Answer::GarbageStatus,
        Answer::TrickleHeader,
        Answer::Moved,
        Answer::ServerError,
        Answer::Unauthorized,
        Answer::RequestTimeout,
        Answer::TooManyRequests,
        Answer::Coalesced101,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Answer::TlsClose => "tls-close",
            Answer::TlsGarbage => "tls-garbage",
            Answer::NoAccept => "no-accept",
            Answer::WrongAccept => "wrong-accept",
            Answer::NoSubprotocol => "no-subprotocol",
            Answer::OtherSubprotocol => "other-subprotocol",
            Answer::Extension => "extension",
            Answer::Http10Ok => "http10-200",
            Answer::LongHeader => "long-header",
            Answer::ManyHeaders => "many-headers",
            Answer::GarbageStatus => "garbage-status",
            Answer::TrickleHeader => "trickle-header",
            Answer::Moved => "moved-301",
            Answer::ServerError => "error-500",
            Answer::Unauthorized => "unauthorized-401",
            Answer::RequestTimeout => "timeout-408",
            Answer::TooManyRequests => "too-many-429",
            Answer::Coalesced101 => "coalesced-101",
        }
    }

    pub fn parse(s: &str) -> Option<Answer> {
        Answer::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The HTTP answer's bytes, for the answers that are one (`accept` is the right
    /// accept value for the request's key, `proto` the first subprotocol it offered).
    pub(crate) fn http(self, accept: &str, proto: &str) -> Option<Vec<u8>> {
        let switch = |extra: &str| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
            )
        };
        let text = match self {
            Answer::TlsClose | Answer::TlsGarbage | Answer::Coalesced101 => return None,
            Answer::NoAccept => switch(&format!("Sec-WebSocket-Protocol: {proto}\r\n")),
            Answer::WrongAccept => switch(&format!(
                "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {proto}\r\n"
            )),
            Answer::NoSubprotocol => switch(&format!("Sec-WebSocket-Accept: {accept}\r\n")),
            Answer::OtherSubprotocol => switch(&format!(
                "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n"
            )),
            Answer::Extension => switch(&format!(
                "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {proto}\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate\r\n"
            )),
            Answer::Http10Ok => "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
            Answer::LongHeader => {
                let mut t = "HTTP/1.1 101 Switching Protocols\r\nX-Long: ".to_string();
                t.push_str(&"a".repeat(1 << 20));
                t
            }
            Answer::ManyHeaders => {
                let mut t = "HTTP/1.1 101 Switching Protocols\r\n".to_string();
                t.push_str(&"X-Filler: yes\r\n".repeat(10_000));
                t.push_str("\r\n");
                t
            }
            Answer::GarbageStatus => "SSH-2.0-OpenSSH_9.2\r\n\r\n".into(),
            Answer::TrickleHeader => switch(&format!(
                "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {proto}\r\n"
            )),
            Answer::Moved => "HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.invalid/tunnel\r\nContent-Length: 0\r\n\r\n".into(),
            Answer::ServerError => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".into(),
            Answer::Unauthorized => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".into(),
            Answer::RequestTimeout => "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n".into(),
            Answer::TooManyRequests => "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n".into(),
        };
        Some(text.into_bytes())
    }
}

/// Plays an HTTP [`Answer`] on an accepted TLS stream (blocking, with the handshake's
/// timeouts): reads the upgrade request, writes the answer (byte by byte, 200 ms apart,
/// for [`Answer::TrickleHeader`]), then holds the connection until the proxy closes it
/// or 60 s pass.
pub(crate) fn answer_upgrade(answer: Answer, tls: &mut SslStream<Paced>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tls.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let header = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let key = header("sec-websocket-key").unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let proto = header("sec-websocket-protocol")
        .and_then(|p| p.split(',').next().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let Some(bytes) = answer.http(&accept, &proto) else {
        return;
    };
    if answer == Answer::TrickleHeader {
        for b in bytes {
            if tls.write_all(&[b]).and_then(|_| tls.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    } else if tls.write_all(&bytes).and_then(|_| tls.flush()).is_err() {
        return;
    }
    let until = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Plays a TLS-level [`Answer`] on the raw TCP connection (blocking, with the
/// handshake's timeouts).
pub(crate) fn answer_tls(answer: Answer, tcp: &mut TcpStream) {
    let mut hello = [0u8; 512];
    if tcp.read(&mut hello).is_err() {
        return;
    }
    if answer == Answer::TlsGarbage {
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not TLS\r\n");
    }
    let _ = tcp.shutdown(std::net::Shutdown::Both);
}

/// What a case did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// WebSocket frames written to the proxy.
    pub frames: u64,
    /// Tunnel messages inside them (StartFlood).
    pub messages: u64,
    /// Bytes handed to TLS.
    pub bytes: u64,
    /// Times the proxy's socket was full for a whole wait (it had stopped reading).
    pub stalls: u64,
}

/// How long one wait for room in the proxy's socket lasts before it counts as a stall.
const STALL: Duration = Duration::from_millis(100);
/// Bytes of frames built and written at a time.
const CHUNK: usize = 64 * 1024;

/// Plays `case` on `stream` (TLS over the non-blocking socket `fd`) until `until`.
pub(crate) fn play(
    case: Case,
    until: Instant,
    stream: &mut SslStream<Paced>,
    fd: RawFd,
    service_id: &str,
) -> Report {
    let mut report = Report::default();
    if let Some(frames) = case.frames() {
        let sent = stream.write_all(&frames).is_ok();
        if sent && stream.get_mut().release().is_ok() {
            report.frames = 1;
            report.bytes = frames.len() as u64;
            if case == Case::TeraTrickle {
                trickle(stream, fd, until);
            }
            if let Ok(tcp) = stream.get_ref().tcp().try_clone() {
                wait_for_close(tcp, fd, until);
            }
        }
        return report;
    }
    if case == Case::CloseNotify {
        stream.get_mut().hold();
        let sent = stream.write_all(&[0x89, 4, b'p', b'i', b'n', b'g']).is_ok();
        let _ = stream.shutdown();
        let tcp = stream.get_ref().tcp().try_clone();
        if sent && stream.get_mut().release().is_ok() {
            report.frames = 1;
            if let Ok(tcp) = tcp {
                wait_for_close(tcp, fd, until);
            }
        }
        return report;
    }
    let mut next_id: u32 = 1;
    let mut chunk = Vec::with_capacity(CHUNK + 256);
    while Instant::now() < until {
        chunk.clear();
        match case {
            Case::PingFlood => {
                let payload = [b'p'; 125];
                while chunk.len() + 127 <= CHUNK {
                    chunk.extend_from_slice(&[0x89, 125]);
                    chunk.extend_from_slice(&payload);
                    report.frames += 1;
                }
            }
            Case::StartFlood => {
                // One binary frame of many small messages.
                let mut body = Vec::with_capacity(CHUNK);
                while body.len() + 64 <= CHUNK - 10 {
                    let kind = if next_id == 1 {
                        Type::StreamStart
                    } else {
                        Type::ConnectionStart
                    };
                    let mut m = Message::new(kind);
                    m.stream_id = 1;
                    m.service_id = service_id;
                    m.connection_id = next_id;
                    next_id = next_id.wrapping_add(1).max(1);
                    if codec::encode(&m, &mut body).is_err() {
                        break;
                    }
                    report.messages += 1;
                }
                chunk.push(0x82);
                chunk.push(127);
                chunk.extend_from_slice(&(body.len() as u64).to_be_bytes());
                chunk.extend_from_slice(&body);
                report.frames += 1;
            }
            _ => return report,
        }
        if write_until(stream, fd, &chunk, until, &mut report).is_err() {
            break;
        }
    }
    report
}

/// The payload of [`Case::TeraTrickle`]'s frame, one byte per 200 ms, until the proxy
/// closes the connection or `until` passes.
fn trickle(stream: &mut SslStream<Paced>, fd: RawFd, until: Instant) {
    let mut set = PollSet::new();
    while Instant::now() < until {
        if stream.write_all(b"t").is_err() {
            return;
        }
        set.clear();
        set.push(fd, Interest::READ);
        // Readable means the proxy said something (it closed): stop trickling.
        match set.wait(Some(Duration::from_millis(200))) {
            Ok(0) => {}
            _ => return,
        }
    }
}

/// Keeps the connection open, reading and dropping what the proxy sends, until it
/// closes its side or `until` passes.
fn wait_for_close(mut tcp: TcpStream, fd: RawFd, until: Instant) {
    let mut set = PollSet::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        set.clear();
        set.push(fd, Interest::READ);
        if set.wait(Some(left)).is_err() {
            return;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Writes all of `buf` unless `until` passes or the connection fails; a wait of
/// [`STALL`] without room counts as a stall.
fn write_until<S: Write>(
    stream: &mut S,
    fd: RawFd,
    buf: &[u8],
    until: Instant,
    report: &mut Report,
) -> io::Result<()> {
    let mut at = 0;
    let mut set = PollSet::new();
    while at < buf.len() {
        match stream.write(&buf[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                at += n;
                report.bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= until {
                    return Ok(());
                }
                set.clear();
                set.push(fd, Interest::WRITE);
                if set.wait(Some(STALL))? == 0 {
                    report.stalls += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip() {
        for c in Case::ALL {
            assert_eq!(Case::parse(c.name()), Some(c));
        }
        assert_eq!(Case::parse("nonsense"), None);
    }
}
