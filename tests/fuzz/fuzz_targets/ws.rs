//! Fuzz target: the WebSocket frame reader (src/tunnel/ws.rs), fed any bytes in any
//! chunk sizes the way the tunnel thread feeds it (unused bytes kept for the next
//! call), with frame limits up to `usize::MAX` so 64-bit lengths that no 32-bit usize
//! holds are taken. Checks what the caller relies on: every event uses at least one
//! byte and no more than it was given, data is the start of what was given (the caller
//! copies `buf[..len]`), control payloads are inside the frame and at most 125 bytes,
//! and the events, the byte stream and the error do not depend on the chunking.
//!
//! Input: byte 0 picks the frame limit, byte 1 seeds the chunk sizes, the rest is what
//! the service sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::fuzzing::{WsEvent, WsReader};

/// What a run saw: the events other than data (a text message once), the tunnel
/// bytes, and how it ended (`None`: waiting for more bytes).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    events: Vec<String>,
    data: Vec<u8>,
    end: Option<String>,
}

/// Calls `next` on `buf` until it wants more or fails, checking each event. Returns
/// the bytes used, and the error if it failed.
fn drain(r: &mut WsReader, buf: &[u8], seen: &mut Seen) -> (usize, Option<String>) {
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        match r.next(rest) {
            Ok(Some((n, ev))) => {
                assert!(n > 0, "an event that uses no byte loops the caller: {ev:?}");
                assert!(n <= rest.len(), "used {n} of {} bytes", rest.len());
                let inside = |p: &[u8]| {
                    let (start, end) = (rest.as_ptr() as usize, rest.as_ptr() as usize + n);
                    let at = p.as_ptr() as usize;
                    p.is_empty() || (at >= start && at + p.len() <= end)
                };
                match ev {
                    WsEvent::Data(d) => {
                        // The tunnel thread takes rbuf[at..at + len]: data must be the
                        // first bytes of what was given.
                        if !d.is_empty() {
                            assert_eq!(d.as_ptr(), rest.as_ptr(), "data not at the start");
                            assert_eq!(d.len(), n, "data and bytes used differ");
                        }
                        seen.data.extend_from_slice(d);
                    }
                    WsEvent::Ping(p) | WsEvent::Pong(p) => {
                        assert!(
                            inside(p) && p.len() <= 125,
                            "{} byte control payload",
                            p.len()
                        );
                        seen.events.push(format!("{ev:?}"));
                    }
                    WsEvent::Text { first } => {
                        // Later pieces of a text message depend on the cut.
                        if first {
                            seen.events.push(format!("{ev:?}"));
                        }
                    }
                    WsEvent::Close(ref c) => {
                        assert!(c.as_ref().is_none_or(|(_, r)| r.len() <= 123 * 3));
                        seen.events.push(format!("{ev:?}"));
                    }
                }
                pos += n;
            }
            Ok(None) => return (pos, None),
            Err(e) => {
                assert!(!e.contains('\n'), "a two-line error: {e:?}");
                return (pos, Some(e));
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [pick, seed, bytes @ ..] = input else {
        return;
    };
    let max_frame = match pick % 6 {
        0 => 131076, // the default websocket.max_frame_size
        1 => 125,
        2 => 0,
        3 => u32::MAX as usize,
        4 => (u32::MAX as usize).saturating_add(2),
        _ => usize::MAX,
    };

    // All at once.
    let mut whole = Seen {
        events: Vec::new(),
        data: Vec::new(),
        end: None,
    };
    let mut r = WsReader::new(max_frame);
    let (_, err) = drain(&mut r, bytes, &mut whole);
    whole.end = err;

    // In chunks, keeping what was not used, as serve.rs does with its read buffer.
    let mut cut = Seen {
        events: Vec::new(),
        data: Vec::new(),
        end: None,
    };
    let mut r = WsReader::new(max_frame);
    let mut pending: Vec<u8> = Vec::new();
    let mut state = u32::from(*seed) | 0x100;
    let mut at = 0;
    while at < bytes.len() {
        // xorshift: chunk sizes 1..=64, many of them small.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = ((1 + state % 64) >> (state >> 29)).max(1) as usize;
        let end = (at + size).min(bytes.len());
        pending.extend_from_slice(&bytes[at..end]);
        at = end;
        let (used, err) = drain(&mut r, &pending, &mut cut);
        if err.is_some() {
            cut.end = err;
            break;
        }
        pending.drain(..used);
    }
    assert_eq!(whole, cut, "the chunking changed what was read");
});
