//! Every tunnel shape with every source form: tunnel services {none, one, two} × source
//! form {V1, V2, V3} × {three connections back to back with no pause, three at once
//! (V3 only: V1 and V2 carry one connection per service)}.
//!
//! Two kinds of source face our destination in each cell:
//! - our own source proxy (`-y V1`, `-y V2`, or none for V3), with real TCP clients;
//! - a scripted source that sends, message for message, what the reference 3.3.1 sends
//!   in that cell (read from its TcpAdapterProxy.cpp): per-service stream ids from 1,
//!   V3 connection ids counted per service and never reused, DATA right behind the
//!   start, V1 with no service id, V2/V1 one STREAM_START per connection.
//!
//! Each cell checks the bytes both ways and the form the destination answered in, from
//! the testbed's recording: a service id exactly when the source sent one, a connection
//! id exactly when the source sent one. Each prints one table row.

mod common;

use common::*;
use localproxy::protocol::{Type, SUBPROTOCOL_V3};
use localproxy::testbed::scripted::{self, Received, Scripted};
use localproxy::testbed::{Mode, Recorded};
use std::collections::HashMap;
use std::net::TcpStream;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    NoServices,
    One,
    Two,
}

impl Shape {
    fn services(self) -> &'static [&'static str] {
        match self {
            Shape::NoServices => &[],
            Shape::One => &["SSH"],
            Shape::Two => &["A", "B"],
        }
    }

    /// The service ids as the proxies' mappings name them ("" for the unnamed one).
    fn ids(self) -> Vec<&'static str> {
        match self {
            Shape::NoServices => vec![""],
            s => s.services().to_vec(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::NoServices => "no services",
            Shape::One => "one (SSH)",
            Shape::Two => "two (A, B)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    V1,
    V2,
    V3,
}

impl Form {
    fn flag(self) -> Option<&'static str> {
        match self {
            Form::V1 => Some("V1"),
            Form::V2 => Some("V2"),
            Form::V3 => None,
        }
    }

    /// The service id this form puts on the wire for service `id`.
    fn wire_id(self, id: &str) -> &str {
        if self == Form::V1 {
            ""
        } else {
            id
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    BackToBack,
    AtOnce,
}

/// The cells of one shape: at once only where a stream carries several connections.
const CELLS: [(Form, Pattern); 4] = [
    (Form::V1, Pattern::BackToBack),
    (Form::V2, Pattern::BackToBack),
    (Form::V3, Pattern::BackToBack),
    (Form::V3, Pattern::AtOnce),
];

const PER_CELL: usize = 3;

fn payload(cell: u64, service: usize, conn: usize, len: usize) -> Vec<u8> {
    pattern(len, cell * 1000 + service as u64 * 10 + conn as u64)
}

/// What the destination answered with: (service id present, connection id present) of
/// every DATA and reset it sent, checked against the source's starts.
fn check_answers(src: &[Recorded], dst: &[Recorded], cell: &str) -> String {
    // The form of each (service id, stream id) as its source started it.
    let mut started: HashMap<(String, i32), bool> = HashMap::new();
    for m in src {
        if m.kind == Type::StreamStart.raw() || m.kind == Type::ConnectionStart.raw() {
            started.insert((m.service_id.clone(), m.stream_id), m.connection_id != 0);
        }
    }
    assert!(!started.is_empty(), "{cell}: the source started nothing");
    let mut seen = Vec::new();
    let answers = dst.iter().filter(|m| {
        m.kind == Type::Data.raw()
            || m.kind == Type::StreamReset.raw()
            || m.kind == Type::ConnectionReset.raw()
    });
    let mut n = 0;
    for m in answers {
        n += 1;
        let with_cid = started
            .get(&(m.service_id.clone(), m.stream_id))
            .unwrap_or_else(|| {
                panic!("{cell}: the destination answered on a stream its source never started, or with another service id: {m:?}; source sent {src:?}")
            });
        if *with_cid {
            assert_ne!(
                m.connection_id, 0,
                "{cell}: the source sent connection ids, the destination did not: {m:?}"
            );
        } else {
            assert_eq!(
                m.connection_id, 0,
                "{cell}: the source sent no connection ids, the destination did: {m:?}"
            );
        }
        let form = match (*with_cid, m.service_id.is_empty()) {
            (true, false) => "V3",
            (true, true) => "V3 (no service id)",
            (false, false) => "V2",
            (false, true) => "V1",
        };
        if !seen.contains(&form) {
            seen.push(form);
        }
    }
    assert!(n > 0, "{cell}: the destination answered nothing");
    seen.join(", ")
}

fn row(peer: &str, shape: Shape, form: Form, pattern: Pattern, result: &str) {
    eprintln!(
        "matrix | {peer:<20} | {:<12} | {:?} | {:<12} | {result}",
        shape.name(),
        form,
        format!("{pattern:?}")
    );
}

/// Our source and our destination.
fn ours(shape: Shape, form: Form, pattern: Pattern, cell: u64) {
    live(shape, form, pattern, cell, &Bin::Ours, &Bin::Ours);
}

/// Real proxies at both ends (`src_bin`, `dst_bin`) with real TCP clients and servers.
fn live(shape: Shape, form: Form, pattern: Pattern, cell: u64, src_bin: &Bin, dst_bin: &Bin) {
    let peers = format!("{} -> {}", src_bin.name(), dst_bin.name());
    let tag = format!("m{cell}");
    let rig = Rig::new(&tag, shape.services(), &[]);
    let ids = shape.ids();
    let echoes: Vec<Echo> = ids.iter().map(|_| echo_server()).collect();
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let join = |f: &dyn Fn(usize) -> String| {
        ids.iter()
            .enumerate()
            .map(|(i, _)| f(i))
            .collect::<Vec<_>>()
            .join(",")
    };
    // On the one-service tunnel, every other cell maps without naming the service
    // (`-s 5555`, `-d 22`: the unnamed mapping adopts the announced id).
    let unnamed = shape == Shape::One && cell % 2 == 1;
    let named = |i: usize, v: u16| {
        if ids[i].is_empty() || unnamed {
            v.to_string()
        } else {
            format!("{}={v}", ids[i])
        }
    };
    let dst_map = join(&|i| named(i, echoes[i].port));
    let src_map = join(&|i| named(i, ports[i]));
    if matches!(dst_bin, Bin::Peer(_)) && form == Form::V1 && shape == Shape::One {
        // The reference destination files V1 messages (no service id) under the
        // service "" and, on a named tunnel, has no such service: it logs "Receive
        // stream start before receiving service ids" and reconnects (seen with 3.3.1).
        row(
            &peers,
            shape,
            form,
            pattern,
            "not a cell: the reference destination takes V1 messages only on a tunnel without services",
        );
        return;
    }
    let _dst = rig.start_destination(dst_bin, &dst_map);
    let mut more: Vec<&str> = Vec::new();
    if let Some(f) = form.flag() {
        more.extend(["-y", f]);
    }
    if shape == Shape::Two && form == Form::V1 {
        // V1 messages name no service: two services cannot be told apart. The reference
        // starts and then serves only one of them; ours refuses with one line.
        if let Bin::Peer(_) = src_bin {
            row(
                &peers,
                shape,
                form,
                pattern,
                "not a cell: the reference's V1 source serves one of two services only",
            );
            return;
        }
        let mut m = vec!["-s", &src_map, "-b", "127.0.0.1"];
        m.extend_from_slice(&more);
        let mut src = rig.start(&m, &rig.t.source_token, &[]);
        src.wait_line("-y V1 cannot serve a tunnel with several services");
        assert_eq!(src.exit_code(), 2);
        row(
            &peers,
            shape,
            form,
            pattern,
            "refused at start, exit 2 (by design)",
        );
        return;
    }
    let src = rig.start_source(src_bin, &src_map, &more);
    let len = 100_000;
    let mut refusals = 0;
    let (mut done, mut waited) = (0, false);
    match pattern {
        Pattern::BackToBack => {
            for (si, &port) in ports.iter().enumerate() {
                for k in 0..PER_CELL {
                    if matches!(src_bin, Bin::Peer(_)) && form != Form::V3 {
                        // The reference closes and re-binds its listener after every
                        // V1/V2 connection, and drops a client that comes before that:
                        // wait for it to listen again (ours needs no wait).
                        done += 1;
                        if k > 0 {
                            src.wait_nth_line(
                                "Listening for new connection on port",
                                ids.len() + done - 1,
                            );
                            waited = true;
                        }
                    }
                    // Connect, echo, close, and at once the next: no pause.
                    let c = match src_bin {
                        Bin::Ours => TcpStream::connect(("127.0.0.1", port))
                            .expect("connect to the source proxy"),
                        Bin::Peer(_) => connect_counting_refusals(port, &mut refusals),
                    };
                    echo_on(&c, &payload(cell, si, k, len));
                    drop(c);
                }
            }
        }
        Pattern::AtOnce => {
            let mut conns: Vec<(TcpStream, usize, usize)> = Vec::new();
            for (si, &port) in ports.iter().enumerate() {
                for k in 0..PER_CELL {
                    let c = match src_bin {
                        Bin::Ours => TcpStream::connect(("127.0.0.1", port))
                            .expect("connect to the source proxy"),
                        Bin::Peer(_) => connect_counting_refusals(port, &mut refusals),
                    };
                    conns.push((c, si, k));
                }
            }
            let workers: Vec<_> = conns
                .into_iter()
                .map(|(c, si, k)| {
                    let data = payload(cell, si, k, len);
                    std::thread::spawn(move || {
                        echo_on(&c, &data);
                        c
                    })
                })
                .collect();
            for w in workers {
                drop(w.join().unwrap());
            }
        }
    }
    for (i, e) in echoes.iter().enumerate() {
        assert_eq!(
            e.accepted.load(std::sync::atomic::Ordering::SeqCst),
            PER_CELL,
            "service {:?}",
            ids[i]
        );
    }
    let cell_name = format!(
        "{peers} {shape:?} {form:?} {pattern:?}{}",
        if unnamed { " (unnamed mappings)" } else { "" }
    );
    let src_rec = rig.tb.recorded(&rig.t, Mode::Source);
    for (i, id) in ids.iter().enumerate() {
        let wire = form.wire_id(id);
        let starts: Vec<&Recorded> = src_rec
            .iter()
            .filter(|m| m.kind == Type::StreamStart.raw() || m.kind == Type::ConnectionStart.raw())
            .filter(|m| m.service_id == wire)
            .collect();
        assert_eq!(
            starts.len(),
            PER_CELL,
            "{cell_name}: service {i} starts: {starts:?}"
        );
        for m in &starts {
            assert_eq!(
                m.connection_id != 0,
                form == Form::V3,
                "{cell_name}: source start {m:?}"
            );
        }
    }
    // The destination's DATA may still be on its way for the last connection's reset:
    // the echo already proved the bytes; the recording shows the form.
    let dst_rec = rig.tb.recorded(&rig.t, Mode::Destination);
    let answered = check_answers(&src_rec, &dst_rec, &cell_name);
    let mut note = String::new();
    if refusals > 0 {
        note +=
            &format!(" ({refusals} connects refused: the reference logs \"Listening\" before it listens, and re-binds after each V1/V2 connection)");
    }
    if waited {
        note += " (each client waited for the source to listen again)";
    }
    row(
        &peers,
        shape,
        form,
        pattern,
        &format!("ok, destination answered {answered}{note}"),
    );
}

/// Connects to another build's source listener. The reference closes and re-binds its
/// listener after every V1/V2 connection, so a client that reconnects at once can be
/// refused: retry and count, so the table shows it.
fn connect_counting_refusals(port: u16, refusals: &mut usize) -> TcpStream {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => return c,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                *refusals += 1;
                assert!(
                    std::time::Instant::now() < deadline,
                    "the source never listened again"
                );
                std::thread::yield_now();
            }
            Err(e) => panic!("connect to the source proxy: {e}"),
        }
    }
}

/// Collects echoed DATA per (service id, connection id) until each has `len` bytes.
fn collect_echoes(
    sc: &mut Scripted,
    want: &[(String, u32, i32)],
    len: usize,
    form: Form,
    cell: &str,
) -> HashMap<(String, u32), Vec<u8>> {
    let mut got: HashMap<(String, u32), Vec<u8>> = HashMap::new();
    let done = |got: &HashMap<(String, u32), Vec<u8>>| {
        want.iter()
            .all(|(s, c, _)| got.get(&(s.clone(), *c)).is_some_and(|v| v.len() >= len))
    };
    while !done(&got) {
        let m: Received = sc.next(WAIT).unwrap_or_else(|e| {
            panic!(
                "{cell}: waiting for echoes: {e}; so far {:?}",
                got.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
            )
        });
        match m.kind {
            Type::Data => {
                let Some((_, _, stream)) = want
                    .iter()
                    .find(|(s, c, _)| *s == m.service_id && *c == m.connection_id)
                else {
                    panic!("{cell}: DATA in the wrong form or for an unknown connection: {m:?}; expected one of {want:?} ({form:?})");
                };
                assert_eq!(m.stream_id, *stream, "{cell}: {m:?}");
                got.entry((m.service_id.clone(), m.connection_id))
                    .or_default()
                    .extend_from_slice(&m.payload);
            }
            Type::StreamReset | Type::ConnectionReset => {
                panic!("{cell}: the destination reset a connection: {m:?}")
            }
            _ => {}
        }
    }
    got
}

/// A scripted source that sends what the reference 3.3.1 sends, against our destination.
fn reference_source(shape: Shape, form: Form, pattern: Pattern, cell: u64) {
    let tag = format!("r{cell}");
    let rig = Rig::new(&tag, shape.services(), &[]);
    let ids = shape.ids();
    if shape == Shape::Two && form == Form::V1 {
        row(
            "reference-scripted",
            shape,
            form,
            pattern,
            "not a cell: the reference's V1 source serves one of two services only",
        );
        return;
    }
    let echoes: Vec<Echo> = ids.iter().map(|_| echo_server()).collect();
    let dst_map = ids
        .iter()
        .zip(&echoes)
        .map(|(id, e)| {
            if id.is_empty() {
                e.port.to_string()
            } else {
                format!("{id}={}", e.port)
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let _dst = rig.destination(&dst_map, &[]);
    let cell_name = format!("reference {shape:?} {form:?} {pattern:?}");
    // The reference offers 3.0 whatever -y says.
    let mut sc = Scripted::connect(&rig.tb, &rig.t.source_token, Mode::Source, SUBPROTOCOL_V3)
        .expect("connect the scripted source");
    let announced = sc.service_ids(WAIT).unwrap();
    assert_eq!(announced, shape.services().to_vec());
    let len = 50_000;
    // Per service: the reference's stream counter and V3 connection counter.
    let mut stream: Vec<i32> = vec![0; ids.len()];
    let mut conn: Vec<u32> = vec![0; ids.len()];
    match pattern {
        Pattern::BackToBack => {
            for (si, id) in ids.iter().enumerate() {
                let wire = form.wire_id(id).to_string();
                for k in 0..PER_CELL {
                    let (kind, cid) = match form {
                        Form::V3 => {
                            conn[si] += 1;
                            if stream[si] == 0 {
                                stream[si] = 1;
                                (Type::StreamStart, conn[si])
                            } else {
                                (Type::ConnectionStart, conn[si])
                            }
                        }
                        _ => {
                            stream[si] += 1;
                            (Type::StreamStart, 0)
                        }
                    };
                    let sid = stream[si];
                    let data = payload(cell, si, k, len);
                    // The reference sends DATA right behind the start, before the
                    // destination can have connected.
                    sc.queue(&scripted::message(kind, sid, &wire, cid)).unwrap();
                    for chunk in data.chunks(16 * 1024) {
                        sc.queue(&scripted::data(sid, &wire, cid, chunk)).unwrap();
                    }
                    sc.flush().unwrap();
                    let got =
                        collect_echoes(&mut sc, &[(wire.clone(), cid, sid)], len, form, &cell_name);
                    assert!(
                        got[&(wire.clone(), cid)] == data,
                        "{cell_name}: echo differs"
                    );
                    let reset = if form == Form::V3 {
                        Type::ConnectionReset
                    } else {
                        Type::StreamReset
                    };
                    sc.send(&scripted::message(reset, sid, &wire, cid)).unwrap();
                }
            }
        }
        Pattern::AtOnce => {
            let mut want = Vec::new();
            let mut sent: HashMap<(String, u32), Vec<u8>> = HashMap::new();
            for (si, id) in ids.iter().enumerate() {
                let wire = form.wire_id(id).to_string();
                stream[si] = 1;
                for k in 0..PER_CELL {
                    conn[si] += 1;
                    let cid = conn[si];
                    let kind = if k == 0 {
                        Type::StreamStart
                    } else {
                        Type::ConnectionStart
                    };
                    sc.send(&scripted::message(kind, 1, &wire, cid)).unwrap();
                    want.push((wire.clone(), cid, 1));
                    sent.insert((wire.clone(), cid), payload(cell, si, k, len));
                }
            }
            // Interleave the connections' DATA, as simultaneous clients would.
            for off in (0..len).step_by(8 * 1024) {
                for (wire, cid, sid) in &want {
                    let d = &sent[&(wire.clone(), *cid)];
                    let end = (off + 8 * 1024).min(len);
                    sc.queue(&scripted::data(*sid, wire, *cid, &d[off..end]))
                        .unwrap();
                }
                sc.flush().unwrap();
            }
            let got = collect_echoes(&mut sc, &want, len, form, &cell_name);
            for (k, v) in &sent {
                assert!(got[k] == *v, "{cell_name}: echo of {k:?} differs");
            }
            for (wire, cid, sid) in &want {
                sc.send(&scripted::message(Type::ConnectionReset, *sid, wire, *cid))
                    .unwrap();
            }
        }
    }
    for (i, e) in echoes.iter().enumerate() {
        assert_eq!(
            e.accepted.load(std::sync::atomic::Ordering::SeqCst),
            PER_CELL,
            "{cell_name}: service {:?}",
            ids[i]
        );
    }
    let src_rec = rig.tb.recorded(&rig.t, Mode::Source);
    let dst_rec = rig.tb.recorded(&rig.t, Mode::Destination);
    let answered = check_answers(&src_rec, &dst_rec, &cell_name);
    sc.close();
    row(
        "reference-scripted",
        shape,
        form,
        pattern,
        &format!("ok, destination answered {answered}"),
    );
}

fn run_shape(shape: Shape, base: u64) {
    for (n, (form, pattern)) in CELLS.into_iter().enumerate() {
        ours(shape, form, pattern, base + n as u64);
        reference_source(shape, form, pattern, base + 50 + n as u64);
        if let Some(p) = peer_bin() {
            live(shape, form, pattern, base + 20 + n as u64, &p, &Bin::Ours);
            live(shape, form, pattern, base + 30 + n as u64, &Bin::Ours, &p);
        }
    }
}

#[test]
fn tunnel_without_services() {
    watchdog(LIMIT, || run_shape(Shape::NoServices, 100));
}

#[test]
fn tunnel_with_one_service() {
    watchdog(LIMIT, || run_shape(Shape::One, 200));
}

#[test]
fn tunnel_with_two_services() {
    watchdog(LIMIT, || run_shape(Shape::Two, 300));
}
