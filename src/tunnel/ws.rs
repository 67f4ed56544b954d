//! WebSocket framing of the data phase, client side (RFC 6455 §5), over the decrypted
//! byte stream: frames we send are appended to a batch that the tunnel thread hands TLS
//! in one write; frames we receive are parsed from the read buffer as they arrive.
//!
//! The tunnel protocol is a byte stream that ignores frame boundaries (protocol.md
//! §1.7), so incoming binary frames and their continuations are not reassembled: their
//! payload is handed on as it arrives, in pieces if need be, and the read buffer never
//! has to hold a whole frame. Control frames (ping, pong, close; at most 125 bytes) are
//! handed on whole. Text frames are reported and their payload skipped.
//!
//! No I/O and no allocation here; the upgrade handshake is `upgrade.rs`.

use std::fmt;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Appends one whole client frame (FIN set) to `out`: `opcode`, and the payload `parts`
/// one after the other (a DATA message's header, then its bytes), masked with `key`
/// while they are copied.
pub(crate) fn push_frame(out: &mut Vec<u8>, opcode: u8, parts: &[&[u8]], key: [u8; 4]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let mut offset = 0;
    for p in parts {
        let start = out.len();
        out.extend_from_slice(p);
        apply_mask(&mut out[start..], key, offset);
        offset += p.len();
    }
}

/// XORs `buf` with the masking key, as if `buf` started `offset` bytes into the payload.
/// Eight bytes per step: this runs over every byte we send.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let r = offset % 4;
    let k = [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]];
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// What the service sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// Payload bytes of a binary message (part of a frame, or a whole one): the next
    /// bytes of the tunnel byte stream.
    Data(&'a [u8]),
    /// Payload bytes of a text message, which the service never sends: dropped. `first`
    /// on the message's first piece, so it is reported once.
    Text {
        first: bool,
    },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame: its code and reason, if it has them.
    Close(Option<(u16, String)>),
}

/// Why the service's frames cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A frame over websocket.max_frame_size.
    TooLarge { len: u64, max: u64 },
    /// A fragmented message whose frames add up to more than websocket.max_frame_size.
    MessageTooLarge { max: u64 },
    /// Against RFC 6455: reserved bits, unknown opcode, a masked frame from a server, a
    /// fragmented or long control frame, a continuation outside a message.
    Protocol(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => write!(
                f,
                "the service sent an oversized frame ({len} bytes, more than websocket.max_frame_size = {max})"
            ),
            FrameError::MessageTooLarge { max } => write!(
                f,
                "the service sent an oversized message (fragments adding up to more than websocket.max_frame_size = {max})"
            ),
            FrameError::Protocol(what) => write!(f, "WebSocket protocol error: {what}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    None,
    Binary,
    Text,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Header,
    /// Inside a data frame's payload: bytes left, whether it is text, whether the
    /// frame ends its message.
    Payload {
        left: u64,
        text: bool,
        fin: bool,
    },
}

/// The incoming side: a parser that keeps its place between reads.
#[derive(Debug)]
pub(crate) struct Reader {
    max_frame: u64,
    state: State,
    message: Message,
    /// The current text message has been reported.
    text_reported: bool,
    /// Payload bytes of the current data message so far (its frames' lengths).
    message_len: u64,
}

impl Reader {
    pub(crate) fn new(max_frame: usize) -> Reader {
        Reader {
            max_frame: max_frame as u64,
            state: State::Header,
            message: Message::None,
            text_reported: false,
            message_len: 0,
        }
    }

    /// The next event at the start of `buf`, and the bytes it used; `Ok(None)` when `buf`
    /// holds too little to say (keep it and read more).
    pub(crate) fn next<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(usize, Incoming<'a>)>, FrameError> {
        match self.state {
            State::Payload { left, text, fin } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - n as u64;
                self.state = if left == 0 {
                    if fin {
                        self.message = Message::None;
                    }
                    State::Header
                } else {
                    State::Payload { left, text, fin }
                };
                Ok(Some((n, self.piece(&buf[..n], text))))
            }
            State::Header => self.header(buf),
        }
    }

    fn piece<'a>(&mut self, bytes: &'a [u8], text: bool) -> Incoming<'a> {
        if text {
            let first = !self.text_reported;
            self.text_reported = true;
            Incoming::Text { first }
        } else {
            Incoming::Data(bytes)
        }
    }

    fn header<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(usize, Incoming<'a>)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        if b1 & 0x80 != 0 {
            return Err(FrameError::Protocol("a masked frame from the server"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let (len, at) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(FrameError::Protocol("a fragmented or long control frame"));
                }
                let end = at + len as usize;
                if buf.len() < end {
                    return Ok(None);
                }
                let payload = &buf[at..end];
                let event = match opcode {
                    OP_PING => Incoming::Ping(payload),
                    OP_PONG => Incoming::Pong(payload),
                    _ => Incoming::Close(close_payload(payload)?),
                };
                Ok(Some((end, event)))
            }
            OP_BINARY | OP_TEXT | OP_CONTINUATION => {
                let text = match (opcode, self.message) {
                    (OP_CONTINUATION, Message::None) => {
                        return Err(FrameError::Protocol("a continuation outside a message"))
                    }
                    (OP_CONTINUATION, m) => m == Message::Text,
                    (_, Message::Binary | Message::Text) => {
                        return Err(FrameError::Protocol(
                            "a new message before the last one ended",
                        ))
                    }
                    (op, Message::None) => {
                        self.message = if op == OP_TEXT {
                            Message::Text
                        } else {
                            Message::Binary
                        };
                        self.text_reported = false;
                        op == OP_TEXT
                    }
                };
                if len > self.max_frame {
                    return Err(FrameError::TooLarge {
                        len,
                        max: self.max_frame,
                    });
                }
                self.message_len = if opcode == OP_CONTINUATION {
                    self.message_len.saturating_add(len)
                } else {
                    len
                };
                if self.message_len > self.max_frame {
                    return Err(FrameError::MessageTooLarge {
                        max: self.max_frame,
                    });
                }
                if len == 0 {
                    if fin {
                        self.message = Message::None;
                    }
                    return Ok(Some((at, self.piece(&[], text))));
                }
                self.state = State::Payload {
                    left: len,
                    text,
                    fin,
                };
                // The header alone; the payload comes with the next call.
                Ok(Some((at, Incoming::Data(&[]))))
            }
            _ => Err(FrameError::Protocol("an unknown opcode")),
        }
    }
}

/// A close frame's code and reason (RFC 6455 §5.5.1, §7.4): none at all, or a code a
/// peer may send and a UTF-8 reason. Anything else is a protocol error, so a malformed
/// close makes the proxy reconnect instead of passing for the end of the tunnel.
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close frame with a 1-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !sendable_close_code(code) {
                return Err(FrameError::Protocol(
                    "a close frame with a reserved or unknown close code",
                ));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| FrameError::Protocol("a close reason that is not UTF-8"))?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

/// Close codes a peer may put in a close frame: the defined ones (1005, 1006 and 1015
/// are for reporting only, 1004 is reserved) and the ranges for libraries and
/// applications.
fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked).
    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else if payload.len() <= 0xFFFF {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    /// Feeds `bytes` to a reader `step` bytes at a time (keeping what it did not use, as
    /// the tunnel thread does) and collects the tunnel bytes and other events.
    fn feed(r: &mut Reader, bytes: &[u8], step: usize) -> (Vec<u8>, Vec<String>) {
        let (mut data, mut other) = (Vec::new(), Vec::new());
        let mut buf: Vec<u8> = Vec::new();
        for chunk in bytes.chunks(step) {
            buf.extend_from_slice(chunk);
            let mut pos = 0;
            while let Some((n, ev)) = r.next(&buf[pos..]).unwrap() {
                pos += n;
                match ev {
                    Incoming::Data(d) => data.extend_from_slice(d),
                    e => other.push(format!("{e:?}")),
                }
            }
            buf.drain(..pos);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        (data, other)
    }

    #[test]
    fn client_frames_are_masked_and_unmask_to_the_parts() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [0usize, 1, 7, 8, 125, 126, 65535, 65536, 70000] {
            let head: Vec<u8> = (0..5u8).collect();
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            push_frame(&mut out, OP_BINARY, &[&head, &body], key);
            let total = head.len() + body.len();
            assert_eq!(out[0], 0x82);
            let (hlen, plen) = match out[1] & 0x7F {
                126 => (4, u16::from_be_bytes([out[2], out[3]]) as usize),
                127 => (
                    10,
                    u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, n as usize),
            };
            assert_eq!(out[1] & 0x80, 0x80, "the mask bit");
            assert_eq!(plen, total);
            assert_eq!(&out[hlen..hlen + 4], &key);
            let mut payload = out[hlen + 4..].to_vec();
            assert_eq!(payload.len(), total);
            // Unmasking is masking again, byte by byte as the RFC writes it.
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
            let mut want = head.clone();
            want.extend_from_slice(&body);
            assert!(payload == want, "len {len}");
        }
    }

    #[test]
    fn the_mask_loop_matches_the_rfc_at_every_offset_and_length() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for offset in 0..8 {
            for len in 0..40 {
                let orig: Vec<u8> = (0..len as u8).collect();
                let mut fast = orig.clone();
                apply_mask(&mut fast, key, offset);
                let slow: Vec<u8> = orig
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn binary_frames_and_continuations_become_one_byte_stream_whatever_the_cut() {
        let mut bytes = Vec::new();
        bytes.extend(server_frame(0x82, b"hello "));
        bytes.extend(server_frame(0x02, b"frag"));
        bytes.extend(server_frame(0x89, b"p1")); // a ping between fragments
        bytes.extend(server_frame(0x80, b"mented "));
        let big: Vec<u8> = (0..70000u32).map(|i| (i % 250) as u8).collect();
        bytes.extend(server_frame(0x82, &big));
        bytes.extend(server_frame(0x82, b""));
        let mut want = b"hello fragmented ".to_vec();
        want.extend_from_slice(&big);
        for step in [1, 2, 3, 7, 100, 4096, 200_000] {
            let mut r = Reader::new(131076);
            let (data, other) = feed(&mut r, &bytes, step);
            assert!(data == want, "step {step}");
            assert_eq!(other, vec![r#"Ping([112, 49])"#], "step {step}");
        }
    }

    #[test]
    fn control_frames_text_and_close() {
        let mut bytes = Vec::new();
        bytes.extend(server_frame(0x81, b"text is dropped"));
        bytes.extend(server_frame(0x01, b"in two"));
        bytes.extend(server_frame(0x80, b" pieces"));
        bytes.extend(server_frame(0x8A, b"pong"));
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"Tunnel is closed");
        bytes.extend(server_frame(0x88, &close));
        bytes.extend(server_frame(0x88, b""));
        let mut r = Reader::new(131076);
        let (data, other) = feed(&mut r, &bytes, 3);
        assert!(data.is_empty());
        // Two text messages, each reported once however many pieces it comes in.
        let texts = &other[..other.len() - 3];
        assert_eq!(texts[0], "Text { first: true }");
        assert_eq!(
            texts
                .iter()
                .filter(|e| *e == "Text { first: true }")
                .count(),
            2
        );
        assert!(texts.iter().all(|e| e.starts_with("Text")));
        assert_eq!(
            &other[other.len() - 3..],
            &[
                "Pong([112, 111, 110, 103])".to_string(),
                r#"Close(Some((1000, "Tunnel is closed")))"#.to_string(),
                "Close(None)".to_string()
            ]
        );
    }

    #[test]
    fn broken_frames_are_errors() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![0xC2, 0x00], FrameError::Protocol("reserved bits set")),
            (
                vec![0x82, 0x81, 1, 2, 3, 4, 0],
                FrameError::Protocol("a masked frame from the server"),
            ),
            (vec![0x83, 0x00], FrameError::Protocol("an unknown opcode")),
            (
                vec![0x09, 0x00],
                FrameError::Protocol("a fragmented or long control frame"),
            ),
            (
                server_frame(0x89, &[0u8; 126]),
                FrameError::Protocol("a fragmented or long control frame"),
            ),
            (
                vec![0x80, 0x00],
                FrameError::Protocol("a continuation outside a message"),
            ),
            (
                [server_frame(0x02, b"a"), server_frame(0x82, b"b")].concat(),
                FrameError::Protocol("a new message before the last one ended"),
            ),
            (
                server_frame(0x82, &[0u8; 200]),
                FrameError::TooLarge { len: 200, max: 100 },
            ),
        ];
        for (bytes, want) in cases {
            let mut r = Reader::new(100);
            let mut pos = 0;
            let err = loop {
                match r.next(&bytes[pos..]) {
                    Ok(Some((n, _))) => pos += n,
                    Ok(None) => panic!("{bytes:?}: no error"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err, want, "{bytes:?}");
        }
        assert!(FrameError::TooLarge { len: 200, max: 100 }
            .to_string()
            .contains("oversized frame"));
    }

    #[test]
    fn malformed_close_frames_are_protocol_errors() {
        let cases: [(&[u8], &str); 6] = [
            (&[0x03], "a close frame with a 1-byte payload"),
            (
                &[0x03, 0xED],
                "a close frame with a reserved or unknown close code",
            ),
            (
                &[0x03, 0xEE],
                "a close frame with a reserved or unknown close code",
            ),
            (
                &[0x03, 0xE7],
                "a close frame with a reserved or unknown close code",
            ),
            (
                &[0x00, 0x00],
                "a close frame with a reserved or unknown close code",
            ),
            (
                &[0x03, 0xE8, 0xFF, 0xFE],
                "a close reason that is not UTF-8",
            ),
        ];
        for (payload, why) in cases {
            let mut r = Reader::new(1 << 20);
            let f = server_frame(0x88, payload);
            assert_eq!(r.next(&f), Err(FrameError::Protocol(why)), "{payload:?}");
        }
        // Well formed: no payload, a code alone, a code with a UTF-8 reason, app codes.
        for (payload, want) in [
            (&[][..], None),
            (&[0x03, 0xE9][..], Some((1001, String::new()))),
            (
                &[0x03, 0xF3, b'o', b'k'][..],
                Some((1011, "ok".to_string())),
            ),
            (&[0x0F, 0xA0][..], Some((4000, String::new()))),
        ] {
            let mut r = Reader::new(1 << 20);
            let f = server_frame(0x88, payload);
            assert_eq!(r.next(&f), Ok(Some((f.len(), Incoming::Close(want)))));
        }
    }

    #[test]
    fn fragments_adding_up_past_the_limit_are_an_oversized_message() {
        let mut r = Reader::new(100);
        let mut bytes = server_frame(0x02, &[1; 60]);
        bytes.extend(server_frame(0x00, &[2; 40]));
        // 100 bytes so far: at the limit, fine.
        let (data, _) = feed(&mut r, &bytes, bytes.len());
        assert_eq!(data.len(), 100);
        let more = server_frame(0x80, &[3; 1]);
        assert_eq!(r.next(&more), Err(FrameError::MessageTooLarge { max: 100 }));
        // A new message starts the count again.
        let mut r = Reader::new(100);
        let mut bytes = server_frame(0x82, &[1; 100]);
        bytes.extend(server_frame(0x82, &[2; 100]));
        let (data, _) = feed(&mut r, &bytes, 7);
        assert_eq!(data.len(), 200);
    }
}
