//! Unit tests of the codec: golden bytes for every type, every truncated prefix,
//! limits, garbage, and in-place DATA encoding.

use super::*;

fn enc(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out).expect("encode");
    out
}

fn dec(buf: &[u8]) -> (usize, Message<'_>) {
    decode(buf, &Limits::default())
        .expect("decode error")
        .expect("decode wants more")
}

fn msg<'a>(
    kind: Type,
    stream_id: i32,
    service_id: &'a str,
    connection_id: u32,
    payload: &'a [u8],
) -> Message<'a> {
    Message {
        kind,
        stream_id,
        service_id,
        connection_id,
        payload,
        ..Message::default()
    }
}

fn service_ids<'a>(ids: &[&'a str]) -> Message<'a> {
    Message {
        available_service_ids: ids.to_vec(),
        ..Message::new(Type::ServiceIds)
    }
}

/// (message, exact framed bytes). Byte vectors worked out by hand from the wire format
/// (protocol.md §1.8); the STREAM_START one is the guide's own example.
fn golden() -> Vec<(Message<'static>, Vec<u8>)> {
    vec![
        (
            msg(Type::StreamStart, 1, "SSH", 1, b""),
            vec![
                0x00, 0x0B, 0x08, 0x02, 0x10, 0x01, 0x2A, 0x03, 0x53, 0x53, 0x48, 0x38, 0x01,
            ],
        ),
        (
            msg(Type::StreamStart, 1, "", 0, b""),
            vec![0x00, 0x04, 0x08, 0x02, 0x10, 0x01],
        ),
        (
            msg(Type::Data, 1, "SSH", 1, b"hi"),
            vec![
                0x00, 0x0F, 0x08, 0x01, 0x10, 0x01, 0x22, 0x02, 0x68, 0x69, 0x2A, 0x03, 0x53, 0x53,
                0x48, 0x38, 0x01,
            ],
        ),
        (
            msg(Type::Data, 5, "", 0, b"abc"),
            vec![
                0x00, 0x09, 0x08, 0x01, 0x10, 0x05, 0x22, 0x03, 0x61, 0x62, 0x63,
            ],
        ),
        (
            msg(Type::StreamReset, 7, "HTTP", 0, b""),
            vec![
                0x00, 0x0A, 0x08, 0x03, 0x10, 0x07, 0x2A, 0x04, 0x48, 0x54, 0x54, 0x50,
            ],
        ),
        (
            Message::new(Type::SessionReset),
            vec![0x00, 0x02, 0x08, 0x04],
        ),
        (service_ids(&[]), vec![0x00, 0x02, 0x08, 0x05]),
        (
            service_ids(&["SSH"]),
            vec![0x00, 0x07, 0x08, 0x05, 0x32, 0x03, 0x53, 0x53, 0x48],
        ),
        (
            service_ids(&["a", "bb", "ccc"]),
            vec![
                0x00, 0x0E, 0x08, 0x05, 0x32, 0x01, 0x61, 0x32, 0x02, 0x62, 0x62, 0x32, 0x03, 0x63,
                0x63, 0x63,
            ],
        ),
        (
            msg(Type::ConnectionStart, 2, "SSH", 3, b""),
            vec![
                0x00, 0x0B, 0x08, 0x06, 0x10, 0x02, 0x2A, 0x03, 0x53, 0x53, 0x48, 0x38, 0x03,
            ],
        ),
        (
            // 300 = 0b10_0101100 → AC 02.
            msg(Type::ConnectionReset, 2, "SSH", 300, b""),
            vec![
                0x00, 0x0C, 0x08, 0x07, 0x10, 0x02, 0x2A, 0x03, 0x53, 0x53, 0x48, 0x38, 0xAC, 0x02,
            ],
        ),
        (
            Message {
                ignorable: true,
                ..Message::new(Type::Other(9))
            },
            vec![0x00, 0x04, 0x08, 0x09, 0x18, 0x01],
        ),
        (
            // Negative int32: sign-extended to a 10-byte varint, like C++.
            msg(Type::StreamReset, -1, "", 0, b""),
            vec![
                0x00, 0x0D, 0x08, 0x03, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                0x01,
            ],
        ),
        (
            msg(Type::ConnectionReset, 1, "", u32::MAX, b""),
            vec![
                0x00, 0x0A, 0x08, 0x07, 0x10, 0x01, 0x38, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F,
            ],
        ),
    ]
}

#[test]
fn golden_vectors_encode_and_decode() {
    for (m, bytes) in golden() {
        assert_eq!(enc(&m), bytes, "encode {m:?}");
        assert_eq!(encoded_len(&m), bytes.len(), "encoded_len {m:?}");
        let (used, back) = dec(&bytes);
        assert_eq!(used, bytes.len());
        assert_eq!(back, m);
    }
}

#[test]
fn unknown_type_keeps_its_number() {
    let (_, m) = dec(&[0x00, 0x04, 0x08, 0x09, 0x18, 0x01]);
    assert_eq!(m.kind, Type::Other(9));
    assert!(m.ignorable);
    // Negative type numbers are also "other", not UNKNOWN.
    let bytes = enc(&Message::new(Type::Other(-3)));
    assert_eq!(dec(&bytes).1.kind, Type::Other(-3));
}

#[test]
fn all_defaults_is_an_empty_frame() {
    // Faithful encoding; the decoder (like the reference) rejects it.
    assert_eq!(enc(&Message::new(Type::Unknown)), [0, 0]);
    assert_eq!(
        decode(&[0, 0], &Limits::default()),
        Err(CodecError::ZeroLength)
    );
}

#[test]
fn round_trips() {
    let big = vec![0xA5u8; MAX_PAYLOAD];
    let long_id = "s".repeat(MAX_SERVICE_ID);
    let cases = [
        msg(Type::Data, i32::MAX, &long_id, u32::MAX, &big),
        msg(Type::Data, i32::MIN, "x", 1, b"\x00"),
        msg(Type::StreamStart, 42, "", 0, b""),
        Message {
            ignorable: true,
            ..msg(Type::Other(1_000_000), 3, "svc", 9, b"p")
        },
        service_ids(&["", "a:b_c-d", "ünïcode"]),
    ];
    for m in &cases {
        let bytes = enc(m);
        let (used, back) = dec(&bytes);
        assert_eq!(used, bytes.len());
        assert_eq!(&back, m);
    }
}

#[test]
fn fields_in_any_order_and_unknown_fields_decode() {
    // connectionId, serviceId, unknown field 15 (varint), payload, unknown field 9
    // (fixed32), unknown field 10 (fixed64), unknown field 11 (bytes), type, streamId.
    let body = [
        0x38, 0x01, 0x2A, 0x01, 0x41, 0x78, 0x96, 0x01, 0x22, 0x01, 0x7A, 0x4D, 1, 2, 3, 4, 0x51,
        1, 2, 3, 4, 5, 6, 7, 8, 0x5A, 0x02, 0xFF, 0xFF, 0x08, 0x01, 0x10, 0x02,
    ];
    let mut bytes = vec![0, body.len() as u8];
    bytes.extend_from_slice(&body);
    let (used, m) = dec(&bytes);
    assert_eq!(used, bytes.len());
    assert_eq!(m, msg(Type::Data, 2, "A", 1, b"z"));
}

#[test]
fn in_place_data_decodes_like_encode() {
    let cases: [(i32, &str, u32, &[u8]); 6] = [
        (1, "SSH", 1, b"hello"),
        (7, "", 0, b"v1 data"),
        (-5, "x", u32::MAX, b"neg"),
        (0, "", 0, b"no stream"),
        (3, "SSH", 2, b""),
        (i32::MAX, "", 0, &[0x5A; MAX_PAYLOAD]),
    ];
    for (stream, sid, conn, payload) in cases {
        let mut buf = vec![0xEEu8; DATA_HEADROOM];
        buf.extend_from_slice(payload);
        let start =
            encode_data_in_place(&mut buf, DATA_HEADROOM, stream, sid, conn).expect("in place");
        let framed = &buf[start..];
        let (used, m) = dec(framed);
        assert_eq!(used, framed.len());
        let expected = msg(Type::Data, stream, sid, conn, payload);
        assert_eq!(m, expected);
        assert_eq!(framed.len(), encoded_len(&expected));
        let normal = enc(&expected);
        assert_eq!(dec(&normal).1, m);
    }
    // The longest header still fits the documented headroom.
    let sid = "s".repeat(MAX_SERVICE_ID);
    let mut buf = vec![0u8; DATA_HEADROOM + MAX_PAYLOAD];
    let start = encode_data_in_place(&mut buf, DATA_HEADROOM, i32::MIN, &sid, u32::MAX)
        .expect("longest header");
    assert_eq!(dec(&buf[start..]).1.service_id, sid);
}

#[test]
fn in_place_golden_bytes() {
    let mut buf = vec![0u8; DATA_HEADROOM];
    buf.extend_from_slice(b"hi");
    let start = encode_data_in_place(&mut buf, DATA_HEADROOM, 1, "SSH", 1).unwrap();
    assert_eq!(
        &buf[start..],
        &[
            0x00, 0x0F, 0x08, 0x01, 0x10, 0x01, 0x2A, 0x03, 0x53, 0x53, 0x48, 0x38, 0x01, 0x22,
            0x02, 0x68, 0x69
        ]
    );
}

#[test]
fn in_place_errors() {
    let mut small = vec![0u8; DATA_HEADROOM - 1 + 4];
    let e = encode_data_in_place(&mut small, DATA_HEADROOM - 1, 1, "", 0).unwrap_err();
    assert!(matches!(e, CodecError::Headroom { .. }), "{e}");
    let mut buf = vec![0u8; DATA_HEADROOM];
    let e = encode_data_in_place(&mut buf, DATA_HEADROOM + 1, 1, "", 0).unwrap_err();
    assert!(matches!(e, CodecError::Headroom { .. }), "{e}");
    let mut big = vec![0u8; DATA_HEADROOM + MAX_PAYLOAD + 1];
    let e = encode_data_in_place(&mut big, DATA_HEADROOM, 1, "", 0).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::TooLarge {
                what: "payload",
                ..
            }
        ),
        "{e}"
    );
    let sid = "s".repeat(MAX_SERVICE_ID + 1);
    let e = encode_data_in_place(&mut buf, DATA_HEADROOM, 1, &sid, 0).unwrap_err();
    assert!(matches!(e, CodecError::ServiceIdTooLong { .. }), "{e}");
    assert_eq!(e.skip(), None);
    // Errors leave the buffer alone.
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn encode_refuses_oversize() {
    let big = vec![0u8; MAX_PAYLOAD + 1];
    let mut out = vec![1, 2, 3];
    let e = encode(&msg(Type::Data, 1, "", 0, &big), &mut out).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::TooLarge {
                what: "payload",
                ..
            }
        ),
        "{e}"
    );
    // A payload under the limit can still make the message too long.
    let ids: Vec<String> = (0..700).map(|i| format!("{i:0>100}")).collect();
    let m = Message {
        available_service_ids: ids.iter().map(String::as_str).collect(),
        ..Message::new(Type::ServiceIds)
    };
    let e = encode(&m, &mut out).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::TooLarge {
                what: "message",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.skip(), None);
    assert_eq!(out, [1, 2, 3], "nothing appended on error");
}

fn stream_of_messages() -> (Vec<Message<'static>>, Vec<u8>) {
    let msgs: Vec<_> = golden().into_iter().map(|(m, _)| m).collect();
    let mut buf = Vec::new();
    for m in &msgs {
        encode(m, &mut buf).unwrap();
    }
    (msgs, buf)
}

#[test]
fn several_messages_in_one_buffer() {
    let (msgs, buf) = stream_of_messages();
    let mut pos = 0;
    for expected in &msgs {
        let (used, m) = dec(&buf[pos..]);
        assert_eq!(used, encoded_len(expected));
        assert_eq!(&m, expected);
        pos += used;
    }
    assert_eq!(pos, buf.len());
    assert_eq!(decode(&buf[pos..], &Limits::default()), Ok(None));
}

#[test]
fn every_truncated_prefix_needs_more() {
    let (msgs, buf) = stream_of_messages();
    let ends: Vec<usize> = msgs
        .iter()
        .scan(0, |end, m| {
            *end += encoded_len(m);
            Some(*end)
        })
        .collect();
    for cut in 0..buf.len() {
        // Decode as a reader would, from the start of what has arrived so far.
        let prefix = &buf[..cut];
        let mut pos = 0;
        let mut n = 0;
        loop {
            match decode(&prefix[pos..], &Limits::default()) {
                Ok(Some((used, m))) => {
                    assert_eq!(m, msgs[n]);
                    pos += used;
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => panic!("prefix of {cut} bytes: {e}"),
            }
        }
        // Exactly the messages wholly inside the prefix were returned.
        assert_eq!(
            n,
            ends.iter().filter(|&&end| end <= cut).count(),
            "cut {cut}"
        );
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn decode_err(bytes: &[u8], limits: &Limits) -> CodecError {
    match decode(bytes, limits) {
        Err(e) => e,
        other => panic!("expected an error for {bytes:02X?}, got {other:?}"),
    }
}

#[test]
fn bad_input_errors_and_skip() {
    let l = Limits::default();

    let e = decode_err(&[0, 0, 0x08, 0x01], &l);
    assert_eq!(e, CodecError::ZeroLength);
    assert_eq!(e.skip(), Some(2));

    // Over the limit: refused from the prefix alone, before the body has arrived.
    let small = Limits {
        max_message: 100,
        max_payload: 50,
    };
    let e = decode_err(&[0, 101], &small);
    assert_eq!(e, CodecError::LengthOverLimit { len: 101, max: 100 });
    assert_eq!(e.skip(), None);
    assert!(matches!(decode(&[0, 100], &small), Ok(None)));

    // DATA payload over max_payload inside a well-framed message: skippable.
    let data = enc(&msg(Type::Data, 1, "", 0, &[7u8; 51]));
    let e = decode_err(&data, &small);
    assert!(
        matches!(
            e,
            CodecError::PayloadOverLimit {
                len: 51,
                max: 50,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.skip(), Some(data.len()));
    // The same payload on a non-DATA type is only bounded by the frame.
    let other = enc(&msg(Type::StreamReset, 1, "", 0, &[7u8; 51]));
    assert!(decode(&other, &small).unwrap().is_some());
    // And the type may come after the payload.
    let mut body = vec![0x22, 51];
    body.extend_from_slice(&[7u8; 51]);
    body.extend_from_slice(&[0x08, 0x01]);
    let late = frame(&body);
    let e = decode_err(&late, &small);
    assert!(matches!(e, CodecError::PayloadOverLimit { .. }), "{e}");

    let invalid: &[(&str, &[u8])] = &[
        (
            "bad utf-8 in serviceId",
            &[0x08, 0x02, 0x2A, 0x02, 0xC3, 0x28],
        ),
        (
            "bad utf-8 in availableServiceIds",
            &[0x08, 0x05, 0x32, 0x01, 0xFF],
        ),
        ("truncated varint", &[0x08, 0x02, 0x10, 0x81]),
        ("truncated tag", &[0x08, 0x02, 0x80]),
        (
            "11-byte varint",
            &[
                0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
            ],
        ),
        ("length past the frame", &[0x08, 0x01, 0x22, 0x05, 0x61]),
        ("huge length", &[0x22, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ("wire type of type field", &[0x0A, 0x01, 0x00]),
        ("wire type of payload field", &[0x08, 0x01, 0x20, 0x01]),
        ("wire type of service ids", &[0x08, 0x05, 0x30, 0x01]),
        ("field number 0", &[0x00, 0x01]),
        ("group", &[0x0B, 0x0C]),
        ("wire type 7", &[0x0F]),
        ("truncated fixed64", &[0x09, 1, 2, 3]),
        ("truncated fixed32", &[0x0D, 1, 2]),
        (
            "field number over u32",
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
    ];
    for (what, body) in invalid {
        let bytes = frame(body);
        let e = decode_err(&bytes, &l);
        assert!(matches!(e, CodecError::Invalid { .. }), "{what}: {e}");
        assert_eq!(e.skip(), Some(bytes.len()), "{what}");
        // A following good message is reachable after skipping.
        let mut two = bytes.clone();
        two.extend_from_slice(&enc(&Message::new(Type::SessionReset)));
        let skip = decode_err(&two, &l).skip().unwrap();
        assert_eq!(dec(&two[skip..]).1.kind, Type::SessionReset, "{what}");
    }
}

#[test]
fn errors_display_one_lowercase_line() {
    let errors = [
        CodecError::ZeroLength,
        CodecError::LengthOverLimit { len: 9, max: 8 },
        CodecError::PayloadOverLimit {
            len: 9,
            max: 8,
            frame: 20,
        },
        CodecError::Invalid {
            reason: "truncated varint",
            frame: 4,
        },
        CodecError::TooLarge {
            what: "payload",
            len: 9,
            max: 8,
        },
        CodecError::Headroom { have: 1, need: 2 },
        CodecError::ServiceIdTooLong { len: 129, max: 128 },
    ];
    for e in errors {
        let s = e.to_string();
        assert!(
            !s.contains('\n') && s.starts_with(|c: char| c.is_lowercase()),
            "{s}"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    // xorshift64, fixed seed: reproducible without a new crate.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let limits = [
        Limits::default(),
        Limits {
            max_message: 16,
            max_payload: 4,
        },
    ];
    // Half the rounds mutate a valid stream (a few bytes flipped, then cut anywhere), so
    // the parser sees mostly plausible input; the other half are raw noise.
    let (_, valid) = stream_of_messages();
    let mut decoded = 0usize;
    let mut buf = Vec::new();
    for round in 0..20_000 {
        if round % 4 == 1 {
            buf.clear();
            buf.extend_from_slice(&valid);
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % buf.len();
                buf[i] = next() as u8;
            }
            buf.truncate((next() as usize) % (valid.len() + 1));
            run_decoder(&buf, &limits, &mut decoded);
            continue;
        }
        buf.clear();
        let len = (next() % 96) as usize;
        buf.extend((0..len).map(|_| next() as u8));
        if round % 2 == 0 && len >= 2 {
            // Make the prefix plausible so the protobuf parser gets exercised too.
            let body = ((len - 2) as u16).saturating_sub((next() % 3) as u16);
            buf[..2].copy_from_slice(&body.to_be_bytes());
        }
        run_decoder(&buf, &limits, &mut decoded);
    }
    assert!(
        decoded > 1000,
        "the mutated rounds should decode often: {decoded}"
    );
}

/// Decodes `buf` as a reader would, skipping what `skip()` allows.
fn run_decoder(buf: &[u8], limits: &[Limits], decoded: &mut usize) {
    for l in limits {
        let mut pos = 0;
        while pos < buf.len() {
            match decode(&buf[pos..], l) {
                Ok(Some((used, m))) => {
                    assert!(used > 0 && pos + used <= buf.len());
                    // Whatever decodes re-encodes and decodes to the same message
                    // (unless only unknown fields were there: then nothing is left).
                    if m != Message::default() {
                        assert_eq!(dec(&enc(&m)).1, m);
                    }
                    *decoded += 1;
                    pos += used;
                }
                Ok(None) => break,
                Err(e) => match e.skip() {
                    Some(n) => {
                        assert!(n > 0);
                        pos += n;
                    }
                    None => break,
                },
            }
        }
    }
}

/// The generated code in `message.rs` is an independent reading of the same schema:
/// whatever it writes we must decode identically, and for known types our bytes must be
/// exactly its bytes.
#[test]
fn agrees_with_generated_code() {
    use super::super::message::{mod_Message, Message as Pb};
    use quick_protobuf::{BytesReader, MessageRead, MessageWrite, Writer};
    use std::borrow::Cow;

    for (m, bytes) in golden() {
        if let Type::Other(_) = m.kind {
            continue; // the generated enum cannot represent it
        }
        let pb = Pb {
            type_pb: mod_Message::Type::from(m.kind.raw()),
            streamId: m.stream_id,
            ignorable: m.ignorable,
            payload: Cow::Borrowed(m.payload),
            serviceId: Cow::Borrowed(m.service_id),
            availableServiceIds: m
                .available_service_ids
                .iter()
                .map(|s| Cow::Borrowed(*s))
                .collect(),
            connectionId: m.connection_id,
        };
        let mut theirs = Vec::new();
        pb.write_message(&mut Writer::new(&mut theirs)).unwrap();
        // Both write fields in number order, so the bytes match exactly.
        assert_eq!(&bytes[2..], &theirs[..], "{m:?}");
        let body = &bytes[2..];
        let read = Pb::from_reader(&mut BytesReader::from_bytes(body), body).unwrap();
        assert_eq!(read, pb);
    }
}
