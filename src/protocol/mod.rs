//! The Secure Tunneling wire protocol: message model, limits and subprotocol names.
//!
//! `codec` turns bytes into [`Message`] values and back; `message` is the pb-rs output
//! for `proto/Message.proto`, kept only as the schema's generated mirror (the codec's tests
//! use it as an independent oracle). Nothing here does I/O or knows about sockets or time.
//!
//! `message.rs` is committed unmodified and `tests/proto_sync.rs` fails when it no longer
//! matches the schema. After editing `proto/Message.proto`, regenerate it with
//! `LOCALPROXY_REGENERATE_PROTO=1 cargo test --test proto_sync` (pb-rs 0.10 as a library,
//! pinned by Cargo.lock; same output as the CLI `pb-rs --single-mod -o
//! src/protocol/message.rs proto/Message.proto`).

pub mod codec;
#[cfg(test)]
#[allow(clippy::all, non_snake_case, non_camel_case_types, unused_imports, dead_code)]
#[rustfmt::skip]
pub mod message;

// pb-rs 0.10 with `--single-mod` still spells the nested enum through the proto package
// (`com::amazonaws::iot::securedtunneling::mod_Message::Type`, and in one place without the
// leading `com::`), paths that do not exist where we mount the file. These private aliases
// reach `message` through its `use super::*;` so the generated file compiles unmodified.
// Only the codec's tests use the mirror, so neither is built into the proxy.
#[cfg(test)]
mod com {
    pub mod amazonaws {
        pub mod iot {
            pub mod securedtunneling {
                pub use crate::protocol::message::mod_Message;
            }
        }
    }
}
#[cfg(test)]
use com::amazonaws;

/// Size of the big-endian length prefix in front of every tunnel message.
pub(crate) const LENGTH_PREFIX: usize = 2;
/// Largest protobuf message the 2-byte prefix can describe.
pub(crate) const MAX_MESSAGE: usize = 65535;
/// Largest DATA payload both peers agree on (the reference's `max_payload_size`).
pub(crate) const MAX_PAYLOAD: usize = 64512;
/// Largest WebSocket frame payload the service sends or accepts: 2 × (65536 + 2).
/// The testbed's limit; the proxy's own is `websocket.max_frame_size`.
#[cfg(feature = "testbed")]
pub(crate) const MAX_WS_FRAME: usize = 131076;

/// Bytes a DATA header can take at most when the payload is written last:
/// type (2) + stream id (11) + service id (2 + 3 + 128) + connection id (6) + payload tag
/// and length (1 + 3), rounded up. Readers leave this much room in front of a payload so
/// the header can be written in place (see `codec::encode_data_in_place`).
pub(crate) const DATA_HEADROOM: usize = 2 + 160;

/// Longest service id the AWS API accepts (1–128 characters); `DATA_HEADROOM` relies on it.
pub(crate) const MAX_SERVICE_ID: usize = 128;

/// The three subprotocol versions, as offered in `Sec-WebSocket-Protocol`.
pub(crate) const SUBPROTOCOL_V1: &str = "aws.iot.securetunneling-1.0";
pub(crate) const SUBPROTOCOL_V2: &str = "aws.iot.securetunneling-2.0";
pub const SUBPROTOCOL_V3: &str = "aws.iot.securetunneling-3.0";

/// Protocol version of a WebSocket session or of a peer's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
}

impl Version {
    /// The version a subprotocol string names, if any.
    pub(crate) fn from_subprotocol(s: &str) -> Option<Version> {
        match s {
            SUBPROTOCOL_V1 => Some(Version::V1),
            SUBPROTOCOL_V2 => Some(Version::V2),
            SUBPROTOCOL_V3 => Some(Version::V3),
            _ => None,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "V1",
            Version::V2 => "V2",
            Version::V3 => "V3",
        })
    }
}

/// Message type. The raw number is kept for types this proxy does not know, so the
/// `ignorable` rule can tell "unknown" from UNKNOWN (0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Type {
    #[default]
    Unknown,
    Data,
    StreamStart,
    StreamReset,
    SessionReset,
    ServiceIds,
    ConnectionStart,
    ConnectionReset,
    /// A type number outside 0..=7.
    Other(i32),
}

impl Type {
    pub(crate) fn from_raw(n: i32) -> Type {
        match n {
            0 => Type::Unknown,
            1 => Type::Data,
            2 => Type::StreamStart,
            3 => Type::StreamReset,
            4 => Type::SessionReset,
            5 => Type::ServiceIds,
            6 => Type::ConnectionStart,
            7 => Type::ConnectionReset,
            n => Type::Other(n),
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            Type::Unknown => 0,
            Type::Data => 1,
            Type::StreamStart => 2,
            Type::StreamReset => 3,
            Type::SessionReset => 4,
            Type::ServiceIds => 5,
            Type::ConnectionStart => 6,
            Type::ConnectionReset => 7,
            Type::Other(n) => n,
        }
    }
}

/// One tunnel message, borrowing its payload and strings from the decode buffer.
/// proto3 rules: an empty `service_id` and a zero `connection_id` mean "absent".
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message<'a> {
    pub kind: Type,
    pub stream_id: i32,
    pub ignorable: bool,
    pub payload: &'a [u8],
    pub service_id: &'a str,
    pub available_service_ids: Vec<&'a str>,
    pub connection_id: u32,
}

impl<'a> Message<'a> {
    /// A message of `kind` with every other field absent.
    pub fn new(kind: Type) -> Message<'a> {
        Message {
            kind,
            ..Message::default()
        }
    }
}
