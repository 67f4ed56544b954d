//! Fuzz target: the framing codec never panics on any byte stream, and whatever it
//! decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::protocol::codec::{decode, encode, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut pos = 0;
    while pos < data.len() {
        match decode(&data[pos..], &limits) {
            Ok(Some((n, m))) => {
                assert!(n > 0 && n <= data.len() - pos);
                let mut again = Vec::new();
                // A message whose every field is the default encodes to an empty frame,
                // which decode refuses on purpose (zero length is a protocol error).
                if encode(&m, &mut again).is_ok() && again.len() > 2 {
                    let (n2, m2) = decode(&again, &limits)
                        .expect("our own encoding decodes")
                        .expect("and is complete");
                    assert_eq!(n2, again.len());
                    assert_eq!(m, m2);
                }
                pos += n;
            }
            Ok(None) => break,
            Err(e) => match e.skip() {
                Some(n) => pos += n.max(1),
                None => break,
            },
        }
    }
});
