// Automatically generated rust module for 'Message.proto' file

#![allow(non_snake_case)]
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(unused_imports)]
#![allow(unknown_lints)]
#![allow(clippy::all)]
#![cfg_attr(rustfmt, rustfmt_skip)]


use std::borrow::Cow;
use quick_protobuf::{MessageInfo, MessageRead, MessageWrite, BytesReader, Writer, WriterBackend, Result};
use quick_protobuf::sizeofs::*;
use super::*;

#[allow(clippy::derive_partial_eq_without_eq)]
#[derive(Debug, Default, PartialEq, Clone)]
pub struct Message<'a> {
    pub type_pb: amazonaws::iot::securedtunneling::mod_Message::Type,
    pub streamId: i32,
    pub ignorable: bool,
    pub payload: Cow<'a, [u8]>,
    pub serviceId: Cow<'a, str>,
    pub availableServiceIds: Vec<Cow<'a, str>>,
    pub connectionId: u32,
}

impl<'a> MessageRead<'a> for Message<'a> {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> Result<Self> {
        let mut msg = Self::default();
        while !r.is_eof() {
            match r.next_tag(bytes) {
                Ok(8) => msg.type_pb = r.read_enum(bytes)?,
                Ok(16) => msg.streamId = r.read_int32(bytes)?,
                Ok(24) => msg.ignorable = r.read_bool(bytes)?,
                Ok(34) => msg.payload = r.read_bytes(bytes).map(Cow::Borrowed)?,
                Ok(42) => msg.serviceId = r.read_string(bytes).map(Cow::Borrowed)?,
                Ok(50) => msg.availableServiceIds.push(r.read_string(bytes).map(Cow::Borrowed)?),
                Ok(56) => msg.connectionId = r.read_uint32(bytes)?,
                Ok(t) => { r.read_unknown(bytes, t)?; }
                Err(e) => return Err(e),
            }
        }
        Ok(msg)
    }
}

impl<'a> MessageWrite for Message<'a> {
    fn get_size(&self) -> usize {
        0
        + if self.type_pb == com::amazonaws::iot::securedtunneling::mod_Message::Type::UNKNOWN { 0 } else { 1 + sizeof_varint(*(&self.type_pb) as u64) }
        + if self.streamId == 0i32 { 0 } else { 1 + sizeof_varint(*(&self.streamId) as u64) }
        + if self.ignorable == false { 0 } else { 1 + sizeof_varint(*(&self.ignorable) as u64) }
        + if self.payload == Cow::Borrowed(b"") { 0 } else { 1 + sizeof_len((&self.payload).len()) }
        + if self.serviceId == "" { 0 } else { 1 + sizeof_len((&self.serviceId).len()) }
        + self.availableServiceIds.iter().map(|s| 1 + sizeof_len((s).len())).sum::<usize>()
        + if self.connectionId == 0u32 { 0 } else { 1 + sizeof_varint(*(&self.connectionId) as u64) }
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> Result<()> {
        if self.type_pb != com::amazonaws::iot::securedtunneling::mod_Message::Type::UNKNOWN { w.write_with_tag(8, |w| w.write_enum(*&self.type_pb as i32))?; }
        if self.streamId != 0i32 { w.write_with_tag(16, |w| w.write_int32(*&self.streamId))?; }
        if self.ignorable != false { w.write_with_tag(24, |w| w.write_bool(*&self.ignorable))?; }
        if self.payload != Cow::Borrowed(b"") { w.write_with_tag(34, |w| w.write_bytes(&**&self.payload))?; }
        if self.serviceId != "" { w.write_with_tag(42, |w| w.write_string(&**&self.serviceId))?; }
        for s in &self.availableServiceIds { w.write_with_tag(50, |w| w.write_string(&**s))?; }
        if self.connectionId != 0u32 { w.write_with_tag(56, |w| w.write_uint32(*&self.connectionId))?; }
        Ok(())
    }
}

pub mod mod_Message {


#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Type {
    UNKNOWN = 0,
    DATA = 1,
    STREAM_START = 2,
    STREAM_RESET = 3,
    SESSION_RESET = 4,
    SERVICE_IDS = 5,
    CONNECTION_START = 6,
    CONNECTION_RESET = 7,
}

impl Default for Type {
    fn default() -> Self {
        Type::UNKNOWN
    }
}

impl From<i32> for Type {
    fn from(i: i32) -> Self {
        match i {
            0 => Type::UNKNOWN,
            1 => Type::DATA,
            2 => Type::STREAM_START,
            3 => Type::STREAM_RESET,
            4 => Type::SESSION_RESET,
            5 => Type::SERVICE_IDS,
            6 => Type::CONNECTION_START,
            7 => Type::CONNECTION_RESET,
            _ => Self::default(),
        }
    }
}

impl<'a> From<&'a str> for Type {
    fn from(s: &'a str) -> Self {
        match s {
            "UNKNOWN" => Type::UNKNOWN,
            "DATA" => Type::DATA,
            "STREAM_START" => Type::STREAM_START,
            "STREAM_RESET" => Type::STREAM_RESET,
            "SESSION_RESET" => Type::SESSION_RESET,
            "SERVICE_IDS" => Type::SERVICE_IDS,
            "CONNECTION_START" => Type::CONNECTION_START,
            "CONNECTION_RESET" => Type::CONNECTION_RESET,
            _ => Self::default(),
        }
    }
}

}

