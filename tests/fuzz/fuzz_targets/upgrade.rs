//! Fuzz target: the WebSocket upgrade (src/tunnel/upgrade.rs) against a fake service
//! that answers with any bytes, cut into any chunk sizes. `{accept}` in the input is
//! replaced by the accept value of the key the request carries, so a fuzzed answer can
//! pass the check. Checks: no panic; a success was a `101` whose head ends at the first
//! blank line, and its tail is exactly the bytes read after that head (they are the
//! first frames and must not be lost or invented); no error line shows a token the
//! answer did not itself contain.
//!
//! Input: byte 0 seeds the chunk sizes, byte 1 picks the offered subprotocol, the rest
//! is the service's answer and whatever follows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::fuzzing::{accept_key, upgrade};
use std::io::{self, Read, Write};

const TOKENS: [&str; 2] = ["AQGAAXfuzzaccesstoken", "0123456789abcdef0123456789abcdef"];

struct Service {
    answer: Vec<u8>,
    delivered: usize,
    request: Vec<u8>,
    answered: bool,
    state: u32,
}

impl Write for Service {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.request.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Service {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.answered {
            // The answer is made once the whole request is there, as a server would.
            self.answered = true;
            let text = String::from_utf8_lossy(&self.request).into_owned();
            assert!(
                text.ends_with("\r\n\r\n"),
                "read before the request was complete"
            );
            let key = text
                .split("\r\n")
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .expect("the request carries a key");
            let accept = accept_key(key);
            self.answer = replace(&self.answer, b"{accept}", accept.as_bytes());
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let size = match self.state % 4 {
            0 => 1 + (self.state >> 8) as usize % 8,
            1 => 1 + (self.state >> 8) as usize % 300,
            _ => 1 + (self.state >> 8) as usize % 20_000,
        };
        let n = size.min(buf.len()).min(self.answer.len() - self.delivered);
        buf[..n].copy_from_slice(&self.answer[self.delivered..self.delivered + n]);
        self.delivered += n;
        Ok(n)
    }
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let [seed, pick, answer @ ..] = input else {
        return;
    };
    let subprotocol = match pick % 3 {
        0 => "aws.iot.securetunneling-3.0",
        1 => "aws.iot.securetunneling-2.0",
        _ => "aws.iot.securetunneling-1.0",
    };
    let mut s = Service {
        answer: answer.to_vec(),
        delivered: 0,
        request: Vec::new(),
        answered: false,
        state: u32::from(*seed) | 0x100,
    };
    let result = upgrade(&mut s, subprotocol).expect("the fake service never fails a read");
    let answer = &s.answer;
    match result {
        Ok(u) => {
            let end = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4)
                .expect("a success had a whole head");
            assert!(end <= s.delivered, "the head was not all read");
            // The version is checked only as far as "HTTP/1." (the rest is not read).
            let line_end = answer.windows(2).position(|w| w == b"\r\n").unwrap_or(end);
            let status_line = &answer[..line_end];
            let code = status_line.split(|&b| b == b' ').nth(1);
            assert!(status_line.starts_with(b"HTTP/1.") && code == Some(b"101"));
            assert!(
                u.tail == answer[end..s.delivered],
                "tail {:?} is not the {} bytes read after the head",
                u.tail,
                s.delivered - end
            );
        }
        Err(e) => {
            // The answer's text as an error line may show it (control characters
            // dropped): a token the answer spells out itself is not a leak.
            let text: String = String::from_utf8_lossy(answer)
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            for t in TOKENS {
                if !text.contains(t) {
                    assert!(!e.contains(t), "a token in the error line: {e}");
                }
            }
        }
    }
});
