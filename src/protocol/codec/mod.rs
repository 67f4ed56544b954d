//! Framing codec: tunnel messages to bytes and back.
//!
//! A tunnel message on the wire is a 2-byte big-endian length followed by that many bytes
//! of the `Message` protobuf (`proto/Message.proto`). [`decode`] takes whatever has
//! accumulated from the WebSocket and returns one message borrowing from it, or `Ok(None)`
//! when more bytes are needed; [`encode`] appends one framed message to a buffer;
//! [`encode_data_in_place`] frames a DATA payload that already sits in a buffer, without
//! copying it. This module is pure: no sockets, no clock, no logging, no policy. It enforces
//! sizes and wire format only; whether a message makes sense (type 0, stream 0, who may send
//! what) is the session's call.
//!
//! The protobuf is read and written by hand rather than through the pb-rs output in
//! `message.rs` (regenerate that with `LOCALPROXY_REGENERATE_PROTO=1 cargo test --test
//! proto_sync`), for four reasons:
//! - the generated `From<i32>` for the type enum maps unknown numbers to UNKNOWN, and the
//!   `ignorable` rule needs the raw number (protocol.md §1.10);
//! - quick-protobuf's `BytesReader` computes `start + len` unchecked with a 32-bit length,
//!   which overflows `usize` on our 32-bit targets (armv7, mipsel) and panics in debug
//!   builds; a hostile length must be an error, never a panic;
//! - limits must be checked before anything is allocated, and the one allocation (the
//!   service-id list) is sized exactly after the frame has been validated;
//! - DATA has to be framed in place around a payload that is already in the read buffer,
//!   which no generated writer offers.
//!
//! Seven fields and three wire types make that a few dozen lines; the tests check it
//! against the generated code as an independent oracle.

use super::{
    Message, Type, DATA_HEADROOM, LENGTH_PREFIX, MAX_MESSAGE, MAX_PAYLOAD, MAX_SERVICE_ID,
};
use std::fmt;

/// Size limits applied by [`decode`]. Peers may agree on smaller payloads to save memory
/// (protocol.md §1.7), hence not just the constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest protobuf message accepted (the length prefix's value).
    pub max_message: usize,
    /// Largest DATA payload accepted.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: MAX_MESSAGE,
            max_payload: MAX_PAYLOAD,
        }
    }
}

/// Why bytes could not be decoded or a message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// Decode: a length prefix of 0. The reference treats it as a protocol error.
    ZeroLength,
    /// Decode: the length prefix announces more than `Limits::max_message`. Nothing after it
    /// can be trusted: we refuse to buffer that much, so we cannot find the next message.
    LengthOverLimit { len: usize, max: usize },
    /// Decode: a well-framed DATA message of `frame` bytes whose payload is over the limit.
    PayloadOverLimit {
        len: usize,
        max: usize,
        frame: usize,
    },
    /// Decode: a complete frame of `frame` bytes that is not a valid `Message` protobuf.
    Invalid { reason: &'static str, frame: usize },
    /// Encode: the message or its payload (`what`) is over the protocol limit.
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Encode in place: `payload_start` leaves less than `need` bytes in front of the payload
    /// (or lies past the end of the buffer, then `have` is the buffer length).
    Headroom { have: usize, need: usize },
    /// Encode in place: the service id is longer than the protocol allows, so the header
    /// might not fit the headroom every caller reserves.
    ServiceIdTooLong { len: usize, max: usize },
}

impl CodecError {
    /// Bytes the caller may drop from the front of its buffer to get past the offending
    /// message and carry on with the next one, when the framing itself is intact. `None`
    /// means the byte stream cannot be trusted any more (or the error came from encoding).
    pub fn skip(&self) -> Option<usize> {
        match *self {
            CodecError::ZeroLength => Some(LENGTH_PREFIX),
            CodecError::PayloadOverLimit { frame, .. } | CodecError::Invalid { frame, .. } => {
                Some(frame)
            }
            CodecError::LengthOverLimit { .. }
            | CodecError::TooLarge { .. }
            | CodecError::Headroom { .. }
            | CodecError::ServiceIdTooLong { .. } => None,
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CodecError::ZeroLength => f.write_str("zero-length tunnel message"),
            CodecError::LengthOverLimit { len, max } => {
                write!(f, "tunnel message too long: {len} bytes, limit {max}")
            }
            CodecError::PayloadOverLimit { len, max, .. } => {
                write!(f, "data payload too large: {len} bytes, limit {max}")
            }
            CodecError::Invalid { reason, frame } => {
                write!(
                    f,
                    "invalid tunnel message: {reason} (frame of {frame} bytes)"
                )
            }
            CodecError::TooLarge { what, len, max } => {
                write!(
                    f,
                    "cannot encode tunnel message: {what} is {len} bytes, limit {max}"
                )
            }
            CodecError::Headroom { have, need } => {
                write!(
                    f,
                    "no room for the data header: {have} bytes before the payload, need {need}"
                )
            }
            CodecError::ServiceIdTooLong { len, max } => {
                write!(f, "service id too long: {len} bytes, limit {max}")
            }
        }
    }
}

impl std::error::Error for CodecError {}

// Field numbers and wire types of proto/Message.proto.
const F_TYPE: u32 = 1;
const F_STREAM_ID: u32 = 2;
const F_IGNORABLE: u32 = 3;
const F_PAYLOAD: u32 = 4;
const F_SERVICE_ID: u32 = 5;
const F_AVAILABLE_SERVICE_IDS: u32 = 6;
const F_CONNECTION_ID: u32 = 7;

const WT_VARINT: u32 = 0;
const WT_FIXED64: u32 = 1;
const WT_LEN: u32 = 2;
const WT_FIXED32: u32 = 5;

const fn tag(field: u32, wire: u32) -> u8 {
    // Every field we write has a number below 16, so its tag is one byte.
    ((field << 3) | wire) as u8
}

/// Decodes the first message in `buf`.
///
/// Returns `Ok(None)` when `buf` holds less than one complete frame, or
/// `Ok(Some((bytes_used, message)))` with the message borrowing its payload and strings from
/// `buf`. The length prefix is checked against `limits` as soon as its two bytes are there,
/// so an oversize message is refused before anyone buffers it. Unknown fields are skipped;
/// an unknown type number is kept as [`Type::Other`].
pub fn decode<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(usize, Message<'a>)>, CodecError> {
    let Some(&[hi, lo]) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 {
        return Err(CodecError::ZeroLength);
    }
    if len > limits.max_message {
        return Err(CodecError::LengthOverLimit {
            len,
            max: limits.max_message,
        });
    }
    let frame = LENGTH_PREFIX + len;
    let Some(body) = buf.get(LENGTH_PREFIX..frame) else {
        return Ok(None);
    };
    let invalid = |reason| CodecError::Invalid { reason, frame };

    // Pass 1 validates the whole frame and reads every scalar; it allocates nothing, so the
    // limits below are enforced before any allocation.
    let mut msg = Message::default();
    let mut service_ids = 0usize;
    walk(body, |field, value| {
        match (field, value) {
            (F_TYPE, Value::Varint(v)) => msg.kind = Type::from_raw(v as i32),
            (F_STREAM_ID, Value::Varint(v)) => msg.stream_id = v as i32,
            (F_IGNORABLE, Value::Varint(v)) => msg.ignorable = v != 0,
            (F_PAYLOAD, Value::Bytes(b)) => msg.payload = b,
            (F_SERVICE_ID, Value::Bytes(b)) => {
                msg.service_id = utf8(b).ok_or("invalid utf-8 in serviceId")?;
            }
            (F_AVAILABLE_SERVICE_IDS, Value::Bytes(b)) => {
                utf8(b).ok_or("invalid utf-8 in availableServiceIds")?;
                service_ids += 1;
            }
            (F_CONNECTION_ID, Value::Varint(v)) => msg.connection_id = v as u32,
            (F_TYPE..=F_CONNECTION_ID, _) => return Err("wire type does not match the field"),
            // Fields from a newer schema: skipped for forward compatibility.
            _ => {}
        }
        Ok(())
    })
    .map_err(invalid)?;

    if msg.kind == Type::Data && msg.payload.len() > limits.max_payload {
        return Err(CodecError::PayloadOverLimit {
            len: msg.payload.len(),
            max: limits.max_payload,
            frame,
        });
    }

    // Pass 2, only for SERVICE_IDS-like messages: collect the already validated ids into a
    // vector of exactly the right size (at most one entry per 2 bytes of a bounded frame).
    if service_ids > 0 {
        let mut ids = Vec::with_capacity(service_ids);
        walk(body, |field, value| {
            if let (F_AVAILABLE_SERVICE_IDS, Value::Bytes(b)) = (field, value) {
                ids.push(utf8(b).ok_or("invalid utf-8 in availableServiceIds")?);
            }
            Ok(())
        })
        .map_err(invalid)?;
        msg.available_service_ids = ids;
    }
    Ok(Some((frame, msg)))
}

fn utf8(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

/// A field's value as the wire format carries it.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// fixed32/fixed64: no field of ours uses them; only unknown fields get here.
    Fixed,
}

/// Calls `f` with every field of the protobuf `body`, in wire order. Stops at the first
/// malformed byte or at the first error from `f`.
fn walk<'a>(
    body: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut r = Reader { buf: body, pos: 0 };
    while r.pos < body.len() {
        let key = r.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        if field == 0 {
            return Err("field number 0");
        }
        let value = match (key & 7) as u32 {
            WT_VARINT => Value::Varint(r.varint()?),
            WT_LEN => {
                let len = r.varint()?;
                Value::Bytes(r.take(len)?)
            }
            WT_FIXED64 => {
                r.take(8)?;
                Value::Fixed
            }
            WT_FIXED32 => {
                r.take(4)?;
                Value::Fixed
            }
            // 3 and 4 are proto2 groups, which proto3 does not have; 6 and 7 do not exist.
            _ => return Err("unsupported wire type"),
        };
        f(field, value)?;
    }
    Ok(())
}

/// A cursor over one frame's protobuf bytes. Every step is bounds-checked against the frame,
/// never against the larger buffer it sits in.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        // At most 10 bytes: 9 × 7 bits + 1. Bits past 64 in the tenth byte are dropped, as
        // the C++ parser does.
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("truncated varint");
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], &'static str> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = match usize::try_from(len) {
            Ok(len) if len <= rest.len() => len,
            _ => return Err("field runs past the end of the message"),
        };
        self.pos += len;
        Ok(&rest[..len])
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

// proto int32 is sign-extended to 64 bits on the wire, so a negative value takes 10 bytes.
fn int32_wire(v: i32) -> u64 {
    i64::from(v) as u64
}

fn len_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Size of the protobuf body alone (no length prefix). Saturates rather than overflows, so a
/// nonsensical message is caught by the size check instead of wrapping.
fn body_len(msg: &Message) -> usize {
    let mut n = 0usize;
    if msg.kind != Type::Unknown {
        n += 1 + varint_len(int32_wire(msg.kind.raw()));
    }
    if msg.stream_id != 0 {
        n += 1 + varint_len(int32_wire(msg.stream_id));
    }
    if msg.ignorable {
        n += 2;
    }
    if !msg.payload.is_empty() {
        n = n.saturating_add(len_field_len(msg.payload.len()));
    }
    if !msg.service_id.is_empty() {
        n = n.saturating_add(len_field_len(msg.service_id.len()));
    }
    for id in &msg.available_service_ids {
        n = n.saturating_add(len_field_len(id.len()));
    }
    if msg.connection_id != 0 {
        n += 1 + varint_len(u64::from(msg.connection_id));
    }
    n
}

#[cfg(test)]
/// Bytes [`encode`] appends for `msg`: length prefix plus protobuf.
pub(crate) fn encoded_len(msg: &Message) -> usize {
    LENGTH_PREFIX.saturating_add(body_len(msg))
}

/// Appends `msg` to `out` as one framed tunnel message.
///
/// Fields go in field-number order, as the C++ encoder writes them, and proto3 defaults
/// (0, false, empty) are left out. Validity (a non-zero type, a stream id) is the caller's
/// business: a message of only defaults encodes to a zero-length frame, which the testbed may
/// want to send on purpose. On error nothing is appended.
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if msg.payload.len() > MAX_PAYLOAD {
        return Err(CodecError::TooLarge {
            what: "payload",
            len: msg.payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let len = body_len(msg);
    let Ok(prefix) = u16::try_from(len) else {
        return Err(CodecError::TooLarge {
            what: "message",
            len,
            max: MAX_MESSAGE,
        });
    };
    out.reserve(LENGTH_PREFIX + len);
    out.extend_from_slice(&prefix.to_be_bytes());
    if msg.kind != Type::Unknown {
        out.push(tag(F_TYPE, WT_VARINT));
        put_varint(out, int32_wire(msg.kind.raw()));
    }
    if msg.stream_id != 0 {
        out.push(tag(F_STREAM_ID, WT_VARINT));
        put_varint(out, int32_wire(msg.stream_id));
    }
    if msg.ignorable {
        out.extend_from_slice(&[tag(F_IGNORABLE, WT_VARINT), 1]);
    }
    put_len_field(out, F_PAYLOAD, msg.payload);
    put_len_field(out, F_SERVICE_ID, msg.service_id.as_bytes());
    for id in &msg.available_service_ids {
        // Repeated: an empty id is still an entry and must be written.
        out.push(tag(F_AVAILABLE_SERVICE_IDS, WT_LEN));
        put_varint(out, id.len() as u64);
        out.extend_from_slice(id.as_bytes());
    }
    if msg.connection_id != 0 {
        out.push(tag(F_CONNECTION_ID, WT_VARINT));
        put_varint(out, u64::from(msg.connection_id));
    }
    Ok(())
}

fn put_len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        out.push(tag(field, WT_LEN));
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

/// Frames a DATA message around a payload already in `buf[payload_start..]`, writing the
/// length prefix and header into the bytes just before it, and returns where the framed
/// message starts: the caller sends `buf[start..]` without copying the payload.
///
/// The header holds type, streamId, serviceId and connectionId (each left out when zero or
/// empty, as in [`encode`]), then the payload's tag and length; the payload comes last,
/// which is valid protobuf since fields may arrive in any order. `payload_start` must be at
/// least [`DATA_HEADROOM`], enough for any header, so a caller that reserves too little finds
/// out on the first message rather than on the first long service id.
pub(crate) fn encode_data_in_place(
    buf: &mut [u8],
    payload_start: usize,
    stream_id: i32,
    service_id: &str,
    connection_id: u32,
) -> Result<usize, CodecError> {
    if payload_start < DATA_HEADROOM || payload_start > buf.len() {
        return Err(CodecError::Headroom {
            have: payload_start.min(buf.len()),
            need: DATA_HEADROOM,
        });
    }
    let payload_len = buf.len() - payload_start;
    if payload_len > MAX_PAYLOAD {
        return Err(CodecError::TooLarge {
            what: "payload",
            len: payload_len,
            max: MAX_PAYLOAD,
        });
    }
    if service_id.len() > MAX_SERVICE_ID {
        return Err(CodecError::ServiceIdTooLong {
            len: service_id.len(),
            max: MAX_SERVICE_ID,
        });
    }

    // Build the header in a small stack buffer, then copy it in front of the payload. The
    // bounds above make it at most 2 + 2 + 11 + 131 + 6 + 4 = 156 bytes ≤ DATA_HEADROOM.
    let mut header = [0u8; DATA_HEADROOM];
    let mut w = SliceWriter {
        buf: &mut header,
        pos: LENGTH_PREFIX,
    };
    w.put(&[tag(F_TYPE, WT_VARINT), Type::Data.raw() as u8]);
    if stream_id != 0 {
        w.put(&[tag(F_STREAM_ID, WT_VARINT)]);
        w.varint(int32_wire(stream_id));
    }
    if !service_id.is_empty() {
        w.put(&[tag(F_SERVICE_ID, WT_LEN)]);
        w.varint(service_id.len() as u64);
        w.put(service_id.as_bytes());
    }
    if connection_id != 0 {
        w.put(&[tag(F_CONNECTION_ID, WT_VARINT)]);
        w.varint(u64::from(connection_id));
    }
    if payload_len > 0 {
        w.put(&[tag(F_PAYLOAD, WT_LEN)]);
        w.varint(payload_len as u64);
    }
    let header_len = w.pos;
    let body_len = header_len - LENGTH_PREFIX + payload_len;
    let Ok(prefix) = u16::try_from(body_len) else {
        // Unreachable with the limits above; kept so a future limit change errs, not wraps.
        return Err(CodecError::TooLarge {
            what: "message",
            len: body_len,
            max: MAX_MESSAGE,
        });
    };
    let Some(header) = header.get_mut(..header_len) else {
        return Err(CodecError::Headroom {
            have: payload_start,
            need: header_len,
        });
    };
    header[..LENGTH_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    let start = payload_start - header_len;
    buf[start..payload_start].copy_from_slice(header);
    Ok(start)
}

/// Writes into a fixed slice; bytes that would not fit are dropped, and the caller's size
/// bounds guarantee that never happens (it cannot panic either way).
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len()).min(self.buf.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(&bytes[..end - self.pos]);
        }
        self.pos = end;
    }

    fn varint(&mut self, mut v: u64) {
        let mut tmp = [0u8; 10];
        let mut n = 0;
        while v >= 0x80 && n < 9 {
            tmp[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        tmp[n] = v as u8;
        self.put(&tmp[..=n]);
    }
}

#[cfg(test)]
mod tests;
