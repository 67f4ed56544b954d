//! What the service double's threads share: the tunnels, tokens and recorded messages
//! under one lock, and how the accepting side reaches a connected peer's thread.

use crate::config::Mode;
use crate::sys;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A message a peer sent, as recorded for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub kind: i32,
    pub stream_id: i32,
    pub service_id: String,
    pub connection_id: u32,
    pub payload_len: usize,
    pub ignorable: bool,
}

/// Relay counters, per direction (index 0: from sources, 1: from destinations).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub messages: [u64; 2],
    pub bytes: [u64; 2],
    /// Messages dropped because the other peer was not connected.
    pub dropped: u64,
}

pub(crate) fn idx(m: Mode) -> usize {
    match m {
        Mode::Source => 0,
        Mode::Destination => 1,
    }
}

/// Commands for a peer thread that must not wait behind data.
pub(crate) enum Control {
    Close(u16, String),
    Abort,
    Freeze(bool),
    Raw(tungstenite::Message),
}

/// How to reach a connected peer's thread.
#[derive(Clone)]
pub(crate) struct PeerHandle {
    pub id: u64,
    pub data: sys::Sender<tungstenite::Bytes>,
    pub control: sys::Sender<Control>,
    /// Bytes queued for this peer and not yet written to its WebSocket.
    pub queued: Arc<AtomicUsize>,
    /// A sender that stopped reading because `queued` was over the bound.
    pub waiting: Arc<Mutex<Option<Arc<sys::Waker>>>>,
}

#[derive(Default)]
pub(crate) struct Slot {
    pub peer: Option<PeerHandle>,
    pub used: bool,
    pub client_token: Option<String>,
    pub recorded: Vec<Recorded>,
    pub connections: usize,
    pub close_frames: usize,
    pub subprotocol: Option<String>,
    pub client_token_seen: bool,
}

pub(crate) struct TunnelState {
    pub services: Vec<String>,
    pub closed: bool,
    pub slots: [Slot; 2],
    /// Streams seen in relayed STREAM_STARTs: (service id, stream id).
    pub streams: Vec<(String, i32)>,
}

pub(crate) struct State {
    pub tunnels: HashMap<u64, TunnelState>,
    pub tokens: HashMap<String, (u64, Mode)>,
    pub reject: Option<u16>,
    pub single_use: bool,
    pub recut: Option<(usize, usize)>,
    pub fragment: Option<usize>,
    pub delay: Duration,
    /// Bytes per second each peer's socket is read at (None: as fast as it comes).
    pub relay_rate: Option<f64>,
    pub record: bool,
    pub next_id: u64,
    pub stats: Stats,
    /// What the next peer of each mode plays instead of relaying (see `hostile`), and
    /// for how long; taken when it connects.
    pub hostile: [Option<(super::hostile::Case, Duration, u32)>; 2],
    /// What the last hostile case did.
    pub hostile_report: Option<super::hostile::Report>,
    /// Bad answers for the next connection attempts, in turn (see `hostile::Answer`).
    pub answers: std::collections::VecDeque<super::hostile::Answer>,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub cv: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
