//! Fuzz target: the session state machine, fed an arbitrary sequence of tunnel messages
//! and local events in either mode and message format, never panics, and only ever
//! asks to deliver to or close connections it knows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localproxy::config::{ClientType, Mapping, Mode, Target};
use localproxy::protocol::codec::{decode, Limits};
use localproxy::protocol::Version;
use localproxy::session::{Input, LocalId, Output, Session, ACCEPTED_ID_BASE};

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let mode = if head & 1 == 0 { Mode::Source } else { Mode::Destination };
    let client_type = match (head >> 1) & 3 {
        0 => ClientType::V1,
        1 => ClientType::V2,
        _ => ClientType::V3,
    };
    let mappings = match (mode, head >> 3 & 1) {
        (Mode::Source, 0) => vec![Mapping::Listen { service_id: String::new(), port: 5555 }],
        (Mode::Source, _) => vec![
            Mapping::Listen { service_id: "A".into(), port: 1 },
            Mapping::Listen { service_id: "B".into(), port: 2 },
        ],
        (Mode::Destination, 0) => vec![Mapping::Connect {
            service_id: String::new(),
            target: Target::Tcp { host: "127.0.0.1".into(), port: 22 },
        }],
        (Mode::Destination, _) => vec![
            Mapping::Connect { service_id: "A".into(), target: Target::Tcp { host: "h".into(), port: 1 } },
            Mapping::Connect { service_id: "B".into(), target: Target::Tcp { host: "h".into(), port: 2 } },
        ],
    };
    let mut s = Session::new(mode, client_type, mappings, vec![], None, 4);
    let mut known: Vec<LocalId> = Vec::new();
    let mut next_accept = ACCEPTED_ID_BASE;
    let mut out = Vec::new();
    let limits = Limits::default();
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        out.clear();
        let pick = |known: &[LocalId]| -> LocalId {
            known.get(op as usize % known.len().max(1)).copied().unwrap_or(12345)
        };
        match op % 8 {
            0 => s.handle(Input::Opened(match op >> 3 & 3 { 0 => Version::V1, 1 => Version::V2, _ => Version::V3 }), &mut out),
            1 => s.handle(Input::Lost, &mut out),
            2 => {
                next_accept += 1;
                known.push(next_accept);
                s.handle(Input::Accepted { local: next_accept, service: (op >> 3) as usize % 3 }, &mut out);
            }
            3 => s.handle(Input::LocalClosed { local: pick(&known) }, &mut out),
            4 => s.handle(Input::Connected { local: pick(&known) }, &mut out),
            5 if op & 0x80 != 0 => s.handle(Input::HoldExpired { local: pick(&known) }, &mut out),
            5 => s.handle(Input::ConnectFailed { local: pick(&known) }, &mut out),
            _ => match decode(rest, &limits) {
                Ok(Some((n, m))) => {
                    s.handle(Input::Message(&m), &mut out);
                    rest = &rest[n..];
                }
                Ok(None) => return,
                Err(e) => match e.skip() {
                    Some(n) if n <= rest.len() => rest = &rest[n..],
                    _ => return,
                },
            },
        }
        for o in &out {
            match o {
                Output::Connect { local, .. } => known.push(*local),
                Output::Deliver { local }
                | Output::Close { local }
                | Output::Refuse { local }
                | Output::Hold { local }
                | Output::Release { local } => {
                    assert!(known.contains(local), "unknown local id {local} in {o:?}");
                }
                _ => {}
            }
        }
        for l in known.clone() {
            let _ = s.data_route(l);
        }
    }
});
