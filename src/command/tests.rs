use super::*;

fn frame(command: Command, headers: &[(&str, &str)]) -> Frame {
    headers
        .iter()
        .fold(Frame::new(command), |f, (k, v)| f.header(*k, *v))
}

fn parse(
    command: Command,
    headers: &[(&str, &str)],
    v: Version,
) -> Result<ClientCommand, CommandError> {
    ClientCommand::from_frame(frame(command, headers), v)
}

fn missing(command: Command, header: &'static str) -> CommandError {
    CommandError::MissingHeader { command, header }
}

#[test]
fn connect_negotiates_the_version_and_reads_credentials() {
    let c = parse(
        Command::Stomp,
        &[
            ("accept-version", "1.0,1.1"),
            ("heart-beat", "100,200"),
            ("login", "alice"),
            ("passcode", "pw"),
            ("Authorization", "Bearer t.o.k"),
        ],
        Version::V1_2,
    );
    let Ok(ClientCommand::Connect(c)) = c else {
        panic!("{c:?}")
    };
    assert_eq!(c.version, Version::V1_1);
    assert_eq!(c.heart_beat, (100, 200));
    assert_eq!(c.login.as_deref(), Some("alice"));
    assert_eq!(c.passcode.as_deref(), Some("pw"));
    assert_eq!(c.bearer.as_deref(), Some("t.o.k"));
    assert_eq!(
        parse(
            Command::Connect,
            &[("accept-version", "2.0")],
            Version::V1_2
        )
        .unwrap_err(),
        CommandError::UnsupportedVersion
    );
    // The version is checked before the heart-beat.
    assert_eq!(
        parse(
            Command::Connect,
            &[("accept-version", "9"), ("heart-beat", "x")],
            Version::V1_2
        )
        .unwrap_err(),
        CommandError::UnsupportedVersion
    );
}

#[test]
fn send_needs_a_destination_and_keeps_its_headers() {
    assert_eq!(
        parse(Command::Send, &[], Version::V1_2).unwrap_err(),
        missing(Command::Send, "destination")
    );
    let s = ClientCommand::from_frame(
        frame(
            Command::Send,
            &[
                ("destination", "/topic/a"),
                ("transaction", "t1"),
                ("x", "y"),
            ],
        )
        .body("hi"),
        Version::V1_2,
    );
    let Ok(ClientCommand::Send(s)) = s else {
        panic!("{s:?}")
    };
    assert_eq!(s.destination, "/topic/a");
    assert_eq!(s.transaction.as_deref(), Some("t1"));
    assert_eq!(s.headers.get("x"), Some("y"));
    assert_eq!(&s.body[..], b"hi");
    let held = s.held();
    assert_eq!(held.transaction, None);
    assert_eq!(held.headers.get("transaction"), None);
}

#[test]
fn headers_count_in_the_held_cost() {
    let send = |body: usize, headers: usize| {
        let mut f = frame(Command::Send, &[("destination", "/queue/a")]).body(vec![0u8; body]);
        for h in 0..headers {
            f = f.header(format!("x-{h}"), "v".repeat(8000));
        }
        match ClientCommand::from_frame(f, Version::V1_2) {
            Ok(ClientCommand::Send(s)) => s.held_cost(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(send(1000, 0) - send(0, 0), 1000);
    assert!(send(0, 61) > 61 * 8000);
}

#[test]
fn subscribe_ids_are_required_from_1_1_on() {
    let h = [("destination", "/topic/a")];
    assert_eq!(
        parse(Command::Subscribe, &h, Version::V1_2).unwrap_err(),
        missing(Command::Subscribe, "id")
    );
    let Ok(ClientCommand::Subscribe(s)) = parse(Command::Subscribe, &h, Version::V1_0) else {
        panic!()
    };
    assert_eq!(
        (s.id.as_str(), s.ack, s.prefetch),
        ("/topic/a", AckMode::Auto, None)
    );
    assert_eq!(
        parse(Command::Subscribe, &[("id", "1")], Version::V1_0).unwrap_err(),
        missing(Command::Subscribe, "destination")
    );
}

#[test]
fn subscribe_checks_ack_mode_and_prefetch() {
    let sub = |extra: (&str, &str)| {
        parse(
            Command::Subscribe,
            &[("id", "1"), ("destination", "/queue/a"), extra],
            Version::V1_2,
        )
    };
    let Ok(ClientCommand::Subscribe(s)) = sub(("ack", "client-individual")) else {
        panic!()
    };
    assert_eq!(s.ack, AckMode::ClientIndividual);
    assert_eq!(
        sub(("ack", "sometimes")).unwrap_err(),
        CommandError::BadAckMode("sometimes".into())
    );
    let Ok(ClientCommand::Subscribe(s)) = sub(("prefetch-count", "5")) else {
        panic!()
    };
    assert_eq!(s.prefetch, Some(5));
    for bad in ["0", "-1", "many", ""] {
        assert_eq!(
            sub(("prefetch-count", bad)).unwrap_err(),
            CommandError::BadPrefetch(bad.into())
        );
    }
}

#[test]
fn subscribe_reads_the_stream_offset() {
    let sub = |v: &str| {
        parse(
            Command::Subscribe,
            &[
                ("id", "1"),
                ("destination", "/topic/a"),
                ("x-stream-offset", v),
            ],
            Version::V1_2,
        )
    };
    for (v, want) in [
        ("next", StreamOffset::Next),
        ("last", StreamOffset::Last),
        ("first", StreamOffset::First),
        ("offset=42", StreamOffset::Offset(42)),
        (
            "timestamp=1764547200",
            StreamOffset::Timestamp(1_764_547_200),
        ),
    ] {
        let Ok(ClientCommand::Subscribe(s)) = sub(v) else {
            panic!("{v}")
        };
        assert_eq!(s.offset, want, "{v}");
    }
    for bad in [
        "",
        "offset=",
        "offset=-1",
        "offset=1x",
        "stamp=5",
        "LAST",
        "offset=99999999999999999999",
    ] {
        assert_eq!(
            sub(bad).unwrap_err(),
            CommandError::BadStreamOffset(bad.into())
        );
    }
    let Ok(ClientCommand::Subscribe(s)) = parse(
        Command::Subscribe,
        &[("id", "1"), ("destination", "/topic/a")],
        Version::V1_2,
    ) else {
        panic!()
    };
    assert_eq!(s.offset, StreamOffset::Next);
}

#[test]
fn unsubscribe_by_destination_only_in_1_0() {
    let h = [("destination", "/topic/a")];
    let Ok(ClientCommand::Unsubscribe(u)) = parse(Command::Unsubscribe, &h, Version::V1_0) else {
        panic!()
    };
    assert_eq!(u.id, "/topic/a");
    assert_eq!(
        parse(Command::Unsubscribe, &h, Version::V1_1).unwrap_err(),
        missing(Command::Unsubscribe, "id")
    );
}

#[test]
fn ack_headers_follow_the_version() {
    // 1.2: `id`.
    assert_eq!(
        parse(Command::Ack, &[("message-id", "m")], Version::V1_2).unwrap_err(),
        missing(Command::Ack, "id")
    );
    let Ok(ClientCommand::Ack(a)) = parse(
        Command::Nack,
        &[("id", "q1@jobs"), ("receipt", "r")],
        Version::V1_2,
    ) else {
        panic!()
    };
    assert_eq!(
        (a.ack_id.as_str(), a.nack, a.receipted),
        ("q1@jobs", true, true)
    );
    assert!(!a.held().receipted);
    // 1.1: `message-id` and `subscription`.
    assert_eq!(
        parse(Command::Ack, &[("message-id", "m")], Version::V1_1).unwrap_err(),
        missing(Command::Ack, "subscription")
    );
    assert_eq!(
        parse(
            Command::Ack,
            &[("id", "m"), ("subscription", "s")],
            Version::V1_1
        )
        .unwrap_err(),
        missing(Command::Ack, "message-id")
    );
    // 1.0: `message-id` only.
    let Ok(ClientCommand::Ack(a)) = parse(Command::Ack, &[("message-id", "m")], Version::V1_0)
    else {
        panic!()
    };
    assert_eq!((a.ack_id.as_str(), a.nack), ("m", false));
}

#[test]
fn transactions_need_their_id_and_server_frames_are_refused() {
    for c in [Command::Begin, Command::Commit, Command::Abort] {
        assert_eq!(
            parse(c, &[], Version::V1_2).unwrap_err(),
            missing(c, "transaction")
        );
    }
    let Ok(ClientCommand::Commit(t)) =
        parse(Command::Commit, &[("transaction", "t")], Version::V1_2)
    else {
        panic!()
    };
    assert_eq!(t.id, "t");
    for c in [
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ] {
        assert_eq!(
            parse(c, &[], Version::V1_2).unwrap_err(),
            CommandError::ServerFrame(c)
        );
    }
    assert!(matches!(
        parse(Command::Disconnect, &[], Version::V1_2),
        Ok(ClientCommand::Disconnect)
    ));
}
