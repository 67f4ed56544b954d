//! Fuzz target: the web proxy side of src/tunnel/proxy.rs. With byte 0 even, the rest
//! is a proxy's answer to CONNECT (any bytes; the stream then ends, or times out when
//! byte 0 & 2): no panic, nothing read past the head's blank line (those bytes belong to
//! TLS), success only for a 2xx, and the proxy password never in an error line the
//! answer did not put it in. With byte 0 odd, the rest is an `https_proxy` URL and a
//! `NO_PROXY` list (split at the first newline): no panic, and the URL as logged never
//! shows the password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::fuzzing::{no_proxy, web_proxy_connect, web_proxy_url};
use std::io::{self, Read, Write};

const PASSWORD: &str = "fuzzSECRETpw";

struct Proxy<'a> {
    answer: &'a [u8],
    delivered: usize,
    time_out: bool,
}

impl Write for Proxy<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Proxy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.answer[self.delivered..];
        if rest.is_empty() {
            return if self.time_out {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(0)
            };
        }
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.delivered += n;
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&how, rest)) = input.split_first() else {
        return;
    };
    if how & 1 == 0 {
        let mut p = Proxy {
            answer: rest,
            delivered: 0,
            time_out: how & 2 != 0,
        };
        let url = format!("http://user:{PASSWORD}@proxy.lan:3128");
        let result = web_proxy_connect(
            &mut p,
            &url,
            "data.tunneling.iot.eu-west-1.amazonaws.com",
            443,
        );
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        if let Some(end) = head_end {
            // Read up to the blank line and not one byte further (or gave up earlier
            // on an oversized head).
            assert!(
                p.delivered <= end,
                "read {} bytes past the head",
                p.delivered - end
            );
        }
        match result {
            Ok(()) => {
                let end = head_end.expect("success without a whole head");
                assert_eq!(p.delivered, end);
                let head = String::from_utf8_lossy(&rest[..end]);
                let code = head
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1));
                let code = code.and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
                assert!((200..300).contains(&code), "success on {head:?}");
            }
            Err(e) => {
                if !rest
                    .windows(PASSWORD.len())
                    .any(|w| w == PASSWORD.as_bytes())
                {
                    assert!(!e.contains(PASSWORD), "the password in an error line: {e}");
                }
            }
        }
    } else {
        let text = String::from_utf8_lossy(rest);
        let (url, list) = text.split_once('\n').unwrap_or((&text, ""));
        if let Ok((shown, password)) = web_proxy_url(url) {
            if let Some(pw) = password.filter(|pw| pw.len() >= 4) {
                // What is shown before the host must be the masked form, whatever the
                // password is (it may also start like the host: "@4444" before
                // "44444...", which a substring search of the whole line would take for
                // a leak).
                let host_port = shown.rsplit('@').next().unwrap_or_default();
                let before = &shown[..shown.len() - host_port.len()];
                assert!(
                    before == "http://***@" || before == "https://***@",
                    "{shown} shows the password"
                );
            }
            let host = shown.rsplit('@').next().unwrap_or_default();
            let _ = no_proxy(host, list);
        }
        let _ = no_proxy(url, list);
    }
});
