//! Unit tests of the session, message by message, for each protocol version and both
//! modes.

use super::*;

fn listen(id: &str, port: u16) -> Mapping {
    Mapping::Listen {
        service_id: id.into(),
        port,
    }
}

fn connect(id: &str, port: u16) -> Mapping {
    Mapping::Connect {
        service_id: id.into(),
        target: Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
    }
}

fn source(ct: ClientType, mappings: Vec<Mapping>) -> Session {
    Session::new(Mode::Source, ct, mappings, vec![], None, 128)
}

fn dest(mappings: Vec<Mapping>) -> Session {
    Session::new(
        Mode::Destination,
        ClientType::V3,
        mappings,
        vec![],
        None,
        128,
    )
}

fn accept(s: &mut Session, local: LocalId, service: usize) -> Vec<Output> {
    run(s, Input::Accepted { local, service })
}

fn listen_out(service: usize, id: &str, port: u16) -> Output {
    Output::Listen {
        service,
        service_id: id.into(),
        port,
    }
}

fn run(s: &mut Session, input: Input<'_, '_>) -> Vec<Output> {
    let mut out = Vec::new();
    s.handle(input, &mut out);
    out
}

fn msg<'a>(kind: Type, stream: i32, service: &'a str, conn: u32) -> Message<'a> {
    Message {
        kind,
        stream_id: stream,
        service_id: service,
        connection_id: conn,
        ..Message::default()
    }
}

fn ids<'a>(v: &[&'a str]) -> Message<'a> {
    Message {
        kind: Type::ServiceIds,
        available_service_ids: v.to_vec(),
        ..Message::default()
    }
}

fn send(kind: Type, stream: i32, service: &str, conn: u32) -> Output {
    Output::Send(Control {
        kind,
        stream_id: stream,
        service_id: service.into(),
        connection_id: conn,
    })
}

fn open(s: &mut Session, announced: &[&str]) -> Vec<Output> {
    run(s, Input::Opened(Version::V3));
    run(s, Input::Message(&ids(announced)))
}

const A1: LocalId = ACCEPTED_ID_BASE + 1;

#[test]
fn log_lines_number_accepted_connections_from_one() {
    assert_eq!(shown(A1), 1);
    assert_eq!(shown(ACCEPTED_ID_BASE + 42), 42);
    assert_eq!(shown(3), 3);
}

const A2: LocalId = ACCEPTED_ID_BASE + 2;
const A3: LocalId = ACCEPTED_ID_BASE + 3;

#[test]
fn nothing_happens_before_service_ids() {
    let mut s = source(ClientType::V3, vec![listen("A", 5555)]);
    assert!(run(&mut s, Input::Opened(Version::V3)).is_empty());
    assert!(!s.is_ready());
    let out = accept(&mut s, A1, 0);
    assert_eq!(out, vec![Output::Refuse { local: A1 }]);
}

#[test]
fn source_v3_listens_then_starts_stream_and_connections() {
    let mut s = source(ClientType::V3, vec![listen("A", 5555), listen("B", 6666)]);
    let out = open(&mut s, &["B", "A"]);
    assert_eq!(
        out,
        vec![listen_out(0, "A", 5555), listen_out(1, "B", 6666),]
    );
    assert_eq!(
        accept(&mut s, A1, 0),
        vec![send(Type::StreamStart, 1, "A", 1)]
    );
    assert_eq!(
        accept(&mut s, A2, 0),
        vec![send(Type::ConnectionStart, 1, "A", 2)]
    );
    assert_eq!(
        accept(&mut s, A3, 1),
        vec![send(Type::StreamStart, 2, "B", 1)]
    );
    assert_eq!(s.data_route(A2), Some((1, "A", 2)));
    // DATA for connection 2 of A goes to A2; a stale stream id is dropped.
    let d = msg(Type::Data, 1, "A", 2);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: A2 }]
    );
    let stale = msg(Type::Data, 7, "A", 2);
    assert!(run(&mut s, Input::Message(&stale)).is_empty());
    // A local close resets only that connection; the stream stays.
    assert_eq!(
        run(&mut s, Input::LocalClosed { local: A1 }),
        vec![send(Type::ConnectionReset, 1, "A", 1)]
    );
    assert_eq!(s.data_route(A2), Some((1, "A", 2)));
    // The peer resets connection 2.
    let r = msg(Type::ConnectionReset, 1, "A", 2);
    assert_eq!(
        run(&mut s, Input::Message(&r)),
        vec![Output::Close { local: A2 }]
    );
    // A STREAM_RESET closes every connection of B.
    let r = msg(Type::StreamReset, 2, "B", 0);
    assert_eq!(
        run(&mut s, Input::Message(&r)),
        vec![Output::Close { local: A3 }]
    );
    assert_eq!(s.data_route(A3), None);
}

#[test]
fn source_v2_holds_a_second_connection_and_refuses_it_when_the_hold_expires() {
    let mut s = source(ClientType::V2, vec![listen("A", 5555)]);
    open(&mut s, &["A"]);
    assert_eq!(
        accept(&mut s, A1, 0),
        vec![send(Type::StreamStart, 1, "A", 0)]
    );
    assert_eq!(accept(&mut s, A2, 0), vec![Output::Hold { local: A2 }]);
    assert_eq!(s.data_route(A1), Some((1, "A", 0)));
    assert_eq!(s.data_route(A2), None, "a held client has no stream");
    assert_eq!(
        run(&mut s, Input::HoldExpired { local: A2 }),
        vec![Output::Refuse { local: A2 }]
    );
    assert!(run(&mut s, Input::HoldExpired { local: A2 }).is_empty());
    assert_eq!(
        run(&mut s, Input::LocalClosed { local: A1 }),
        vec![send(Type::StreamReset, 1, "A", 0)]
    );
    assert_eq!(
        accept(&mut s, A3, 0),
        vec![send(Type::StreamStart, 2, "A", 0)]
    );
}

#[test]
fn source_v2_starts_a_held_connection_when_the_active_one_ends() {
    // A client that closes and at once reconnects: the new connection can be accepted
    // before the old one's end is seen.
    let mut s = source(ClientType::V2, vec![listen("A", 5555)]);
    open(&mut s, &["A"]);
    accept(&mut s, A1, 0);
    assert_eq!(accept(&mut s, A2, 0), vec![Output::Hold { local: A2 }]);
    assert_eq!(accept(&mut s, A3, 0), vec![Output::Hold { local: A3 }]);
    assert_eq!(
        run(&mut s, Input::LocalClosed { local: A1 }),
        vec![
            send(Type::StreamReset, 1, "A", 0),
            send(Type::StreamStart, 2, "A", 0),
            Output::Release { local: A2 }
        ]
    );
    assert_eq!(s.data_route(A2), Some((2, "A", 0)));
    // The peer resets A2's stream: A3, held longest after it, gets the next turn.
    let r = msg(Type::StreamReset, 2, "A", 0);
    assert_eq!(
        run(&mut s, Input::Message(&r)),
        vec![
            Output::Close { local: A2 },
            send(Type::StreamStart, 3, "A", 0),
            Output::Release { local: A3 }
        ]
    );
    // A held client that gives up is forgotten; losing the tunnel refuses the held.
    assert_eq!(
        accept(&mut s, A1 + 10, 0),
        vec![Output::Hold { local: A1 + 10 }]
    );
    assert!(run(&mut s, Input::LocalClosed { local: A1 + 10 }).is_empty());
    assert_eq!(
        accept(&mut s, A1 + 11, 0),
        vec![Output::Hold { local: A1 + 11 }]
    );
    assert_eq!(
        run(&mut s, Input::Lost),
        vec![
            Output::Close { local: A3 },
            Output::Refuse { local: A1 + 11 }
        ]
    );
}

#[test]
fn source_v1_sends_no_service_or_connection_id() {
    let mut s = source(ClientType::V1, vec![listen("", 5555)]);
    assert_eq!(open(&mut s, &[]), vec![listen_out(0, "", 5555)]);
    assert_eq!(
        accept(&mut s, A1, 0),
        vec![send(Type::StreamStart, 1, "", 0)]
    );
    let d = msg(Type::Data, 1, "", 0);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: A1 }]
    );
    assert_eq!(s.data_route(A1), Some((1, "", 0)));
    assert_eq!(accept(&mut s, A2, 0), vec![Output::Hold { local: A2 }]);
}

#[test]
fn source_v1_on_a_named_tunnel_ignores_service_ids() {
    let mut s = source(ClientType::V1, vec![listen("", 5555)]);
    assert_eq!(open(&mut s, &["SSH"]), vec![listen_out(0, "SSH", 5555)]);
    assert_eq!(
        accept(&mut s, A1, 0),
        vec![send(Type::StreamStart, 1, "", 0)]
    );
    let d = msg(Type::Data, 1, "SSH", 0);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: A1 }]
    );
}

#[test]
fn source_v1_refuses_a_tunnel_with_several_services() {
    let mut s = source(ClientType::V1, vec![listen("A", 5555), listen("B", 5556)]);
    let out = open(&mut s, &["A", "B"]);
    assert_eq!(
        out,
        vec![Output::Fatal(SessionError::V1SeveralServices(vec![
            "A".into(),
            "B".into()
        ]))]
    );
    let line = match &out[0] {
        Output::Fatal(e) => e.to_string(),
        _ => unreachable!(),
    };
    assert!(line.contains("use -y V2"), "{line}");
}

#[test]
fn destination_answers_a_v3_peer_on_a_tunnel_without_services_with_connection_ids() {
    // What the reference 3.3.1 (and our source) send as V3 on a tunnel without
    // services: no service id, connection ids. The second connection must work.
    let mut s = dest(vec![connect("", 22)]);
    assert!(open(&mut s, &[]).is_empty());
    let l1 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 1, "", 1)),
    ));
    assert_eq!(s.data_route(l1), Some((1, "", 1)));
    assert_eq!(
        run(&mut s, Input::LocalClosed { local: l1 }),
        vec![send(Type::ConnectionReset, 1, "", 1)]
    );
    // Back to back: the stream stays, the next connection comes as CONNECTION_START.
    let l2 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::ConnectionStart, 1, "", 2)),
    ));
    assert_eq!(s.data_route(l2), Some((1, "", 2)));
    let d = msg(Type::Data, 1, "", 2);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l2 }]
    );
    // And at once: a third beside the second.
    let l3 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::ConnectionStart, 1, "", 3)),
    ));
    let d = msg(Type::Data, 1, "", 3);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l3 }]
    );
    let r = msg(Type::ConnectionReset, 1, "", 2);
    assert_eq!(
        run(&mut s, Input::Message(&r)),
        vec![Output::Close { local: l2 }]
    );
    assert_eq!(s.data_route(l3), Some((1, "", 3)));
}

#[test]
fn destination_answers_a_v3_peer_without_service_id_on_a_named_tunnel_in_kind() {
    let mut s = dest(vec![connect("", 22)]);
    open(&mut s, &["SSH"]);
    let l = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 5, "", 1)),
    ));
    assert_eq!(s.data_route(l), Some((5, "", 1)));
    let out = run(&mut s, Input::Message(&msg(Type::StreamStart, 6, "SSH", 1)));
    assert_eq!(
        out[0],
        Output::Close { local: l },
        "a new stream replaces the old"
    );
    let l = local_of(&out[1..]);
    assert_eq!(s.data_route(l), Some((6, "SSH", 1)));
}

#[test]
fn destination_refuses_starts_beyond_max_active_connections() {
    let mut s = Session::new(
        Mode::Destination,
        ClientType::V3,
        vec![connect("A", 22)],
        vec![],
        None,
        2,
    );
    open(&mut s, &["A"]);
    let l1 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 1, "A", 1)),
    ));
    local_of(&run(
        &mut s,
        Input::Message(&msg(Type::ConnectionStart, 1, "A", 2)),
    ));
    for cid in 3..600 {
        assert_eq!(
            run(
                &mut s,
                Input::Message(&msg(Type::ConnectionStart, 1, "A", cid))
            ),
            vec![send(Type::ConnectionReset, 1, "A", cid)],
            "connection {cid}"
        );
    }
    assert_eq!(s.connection_counts(), vec![2]);
    // The open ones go on, and a freed place is usable again.
    let d = msg(Type::Data, 1, "A", 1);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l1 }]
    );
    run(&mut s, Input::LocalClosed { local: l1 });
    local_of(&run(
        &mut s,
        Input::Message(&msg(Type::ConnectionStart, 1, "A", 700)),
    ));
}

#[test]
fn destination_refuses_a_connection_start_on_a_stream_without_connection_ids() {
    let mut s = dest(vec![connect("A", 22)]);
    open(&mut s, &["A"]);
    let l = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 4, "A", 0)),
    ));
    assert_eq!(
        run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 4, "A", 2))
        ),
        vec![send(Type::ConnectionReset, 4, "A", 2)]
    );
    assert_eq!(s.data_route(l), Some((4, "A", 0)), "the first one goes on");
}

#[test]
fn unnamed_mapping_adopts_the_single_announced_id() {
    let mut s = source(ClientType::V3, vec![listen("", 5555)]);
    let out = open(&mut s, &["SSH"]);
    assert_eq!(out, vec![listen_out(0, "SSH", 5555)]);
    assert_eq!(
        accept(&mut s, A1, 0),
        vec![send(Type::StreamStart, 1, "SSH", 1)]
    );
}

#[test]
fn mismatched_service_ids_are_fatal_and_name_both_sets() {
    let mut s = source(ClientType::V3, vec![listen("A", 1), listen("B", 2)]);
    let out = open(&mut s, &["A", "C"]);
    let [Output::Fatal(e)] = out.as_slice() else {
        panic!("expected a fatal error, got {out:?}");
    };
    let text = e.to_string();
    assert!(text.contains("A,C") && text.contains("A,B"), "{text}");
    let mut s = source(ClientType::V3, vec![listen("", 1)]);
    assert!(matches!(
        open(&mut s, &["A", "B"]).as_slice(),
        [Output::Fatal(_)]
    ));
}

#[test]
fn repeated_service_ids_mid_session_are_ignored() {
    let mut s = source(ClientType::V3, vec![listen("A", 1)]);
    open(&mut s, &["A"]);
    accept(&mut s, A1, 0);
    assert!(run(&mut s, Input::Message(&ids(&["X", "Y"]))).is_empty());
    assert_eq!(s.data_route(A1), Some((1, "A", 1)));
}

#[test]
fn reconnect_closes_everything_keeps_listeners_and_stream_ids_grow() {
    let mut s = source(ClientType::V3, vec![listen("A", 1)]);
    open(&mut s, &["A"]);
    accept(&mut s, A1, 0);
    accept(&mut s, A2, 0);
    assert_eq!(
        run(&mut s, Input::Lost),
        vec![Output::Close { local: A1 }, Output::Close { local: A2 }]
    );
    // Closing after the loss sends nothing: the stream died with the session.
    assert!(run(&mut s, Input::LocalClosed { local: A1 }).is_empty());
    // Second session: no second Listen, the next stream id is 2.
    assert!(open(&mut s, &["A"]).is_empty());
    assert_eq!(
        accept(&mut s, A3, 0),
        vec![send(Type::StreamStart, 2, "A", 1)]
    );
    // A reconnect to a tunnel with other services is fatal.
    run(&mut s, Input::Lost);
    assert!(matches!(
        open(&mut s, &["B"]).as_slice(),
        [Output::Fatal(_)]
    ));
}

#[test]
fn max_active_connections_is_enforced_with_a_refusal() {
    let mut s = Session::new(
        Mode::Source,
        ClientType::V3,
        vec![listen("A", 1)],
        vec![],
        None,
        2,
    );
    open(&mut s, &["A"]);
    accept(&mut s, A1, 0);
    accept(&mut s, A2, 0);
    assert_eq!(accept(&mut s, A3, 0), vec![Output::Refuse { local: A3 }]);
}

#[test]
fn source_drops_stream_start_and_unknown_types() {
    let mut s = source(ClientType::V3, vec![listen("A", 1)]);
    open(&mut s, &["A"]);
    for m in [
        msg(Type::StreamStart, 5, "A", 1),
        msg(Type::ConnectionStart, 5, "A", 2),
        msg(Type::Unknown, 0, "", 0),
        msg(Type::Other(42), 1, "A", 1),
        msg(Type::Data, 1, "nope", 1),
        msg(Type::Data, 0, "", 0),
    ] {
        assert!(run(&mut s, Input::Message(&m)).is_empty(), "{m:?}");
    }
}

fn local_of(out: &[Output]) -> LocalId {
    match out {
        [Output::Connect { local, .. }] => *local,
        other => panic!("expected one Connect, got {other:?}"),
    }
}

#[test]
fn destination_v3_connects_per_connection_and_resets_failures() {
    let mut s = dest(vec![connect("A", 22), connect("B", 80)]);
    assert!(open(&mut s, &["A", "B"]).is_empty());
    let l1 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 9, "A", 1)),
    ));
    let l2 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::ConnectionStart, 9, "A", 2)),
    ));
    assert_ne!(l1, l2);
    assert_eq!(s.data_route(l2), Some((9, "A", 2)));
    let d = msg(Type::Data, 9, "A", 2);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l2 }]
    );
    // Connection id 0 in a V3 stream means connection 1.
    let d = msg(Type::Data, 9, "A", 0);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l1 }]
    );
    assert_eq!(
        run(&mut s, Input::ConnectFailed { local: l2 }),
        vec![send(Type::ConnectionReset, 9, "A", 2)]
    );
    assert_eq!(
        run(&mut s, Input::LocalClosed { local: l1 }),
        vec![send(Type::ConnectionReset, 9, "A", 1)]
    );
    // CONNECTION_START on an open id resets it.
    let l3 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::ConnectionStart, 9, "A", 3)),
    ));
    assert_eq!(
        run(
            &mut s,
            Input::Message(&msg(Type::ConnectionStart, 9, "A", 3))
        ),
        vec![
            Output::Close { local: l3 },
            send(Type::ConnectionReset, 9, "A", 3)
        ]
    );
}

#[test]
fn destination_answers_a_v2_peer_in_v2_form() {
    let mut s = dest(vec![connect("A", 22)]);
    open(&mut s, &["A"]);
    let l = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 4, "A", 0)),
    ));
    assert_eq!(s.data_route(l), Some((4, "A", 0)));
    assert_eq!(
        run(&mut s, Input::LocalClosed { local: l }),
        vec![send(Type::StreamReset, 4, "A", 0)]
    );
}

#[test]
fn destination_maps_a_v1_peer_to_the_single_service() {
    let mut s = dest(vec![connect("", 22)]);
    open(&mut s, &["SSH"]);
    let l = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 3, "", 0)),
    ));
    assert_eq!(s.data_route(l), Some((3, "", 0)));
    let d = msg(Type::Data, 3, "", 0);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l }]
    );
    assert_eq!(
        run(&mut s, Input::ConnectFailed { local: l }),
        vec![send(Type::StreamReset, 3, "", 0)]
    );
}

#[test]
fn destination_new_stream_start_replaces_the_active_stream() {
    let mut s = dest(vec![connect("A", 22)]);
    open(&mut s, &["A"]);
    let l1 = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 1, "A", 0)),
    ));
    let out = run(&mut s, Input::Message(&msg(Type::StreamStart, 2, "A", 0)));
    assert_eq!(out[0], Output::Close { local: l1 });
    let l2 = local_of(&out[1..]);
    // The new stream's DATA is delivered (the reference drops it, lp#170).
    let d = msg(Type::Data, 2, "A", 0);
    assert_eq!(
        run(&mut s, Input::Message(&d)),
        vec![Output::Deliver { local: l2 }]
    );
    let d = msg(Type::Data, 1, "A", 0);
    assert!(run(&mut s, Input::Message(&d)).is_empty());
}

#[test]
fn destination_config_dir_and_missing_targets() {
    let mut s = Session::new(
        Mode::Destination,
        ClientType::V3,
        vec![],
        vec![
            ("SSH".into(), "2222".into()),
            ("WEB".into(), "localhost:8080".into()),
        ],
        None,
        128,
    );
    assert!(open(&mut s, &["SSH", "WEB"]).is_empty());
    let out = run(&mut s, Input::Message(&msg(Type::StreamStart, 1, "WEB", 1)));
    assert!(matches!(
        out.as_slice(),
        [Output::Connect { target: Target::Tcp { host, port: 8080 }, .. }] if host == "localhost"
    ));
    let mut s = dest(vec![]);
    assert_eq!(
        open(&mut s, &["X"]),
        vec![Output::Fatal(SessionError::MissingTarget("X".into()))]
    );
}

#[test]
fn session_reset_closes_everything_and_keeps_going() {
    let mut s = dest(vec![connect("A", 22)]);
    open(&mut s, &["A"]);
    let l = local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 1, "A", 1)),
    ));
    let r = Message::new(Type::SessionReset);
    assert_eq!(
        run(&mut s, Input::Message(&r)),
        vec![Output::Close { local: l }]
    );
    local_of(&run(
        &mut s,
        Input::Message(&msg(Type::StreamStart, 2, "A", 1)),
    ));
}

#[test]
fn v1_session_needs_no_service_ids() {
    let mut s = source(ClientType::V1, vec![listen("", 5555)]);
    assert_eq!(
        run(&mut s, Input::Opened(Version::V1)),
        vec![listen_out(0, "", 5555)]
    );
    assert!(s.is_ready());
}
