//! Topic history on one node: SUBSCRIBE `x-stream-offset` replays what a client
//! missed, then live messages, with no gap and no duplicate at the seam.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use std::time::Duration;
use stompede::codec::{Command, Frame};

const HISTORY: &str =
    "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 50\nretain = [\"/topic/h.kept\"]";

async fn subscribe_from(c: &mut Client, id: &str, destination: &str, offset: &str) {
    c.subscribe_with(id, destination, &[("x-stream-offset", offset)])
        .await;
}

/// The next MESSAGE: (body, x-stream-offset, x-stream-gap present).
async fn next(c: &mut Client) -> (String, u64, bool) {
    let m = c.expect(Command::Message).await;
    (
        String::from_utf8(m.body.to_vec()).unwrap(),
        m.headers
            .get("x-stream-offset")
            .expect("an offset")
            .parse()
            .unwrap(),
        m.headers.get("x-stream-gap") == Some("true"),
    )
}

#[tokio::test]
async fn a_reconnecting_subscriber_gets_exactly_what_it_missed_then_live_messages() {
    let b = broker(HISTORY);
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    let mut sub = Client::tcp(&b).await;
    sub.connect_as("alice", "alice-pw").await;
    sub.subscribe("s", "/topic/h.news").await;
    publisher.publish("/topic/h.news", "m0").await;
    let (body, seen, _) = next(&mut sub).await;
    assert_eq!(body, "m0");
    drop(sub);
    for i in 1..=5 {
        publisher.publish("/topic/h.news", &format!("m{i}")).await;
    }
    let mut back = Client::tcp(&b).await;
    back.connect_as("alice", "alice-pw").await;
    subscribe_from(
        &mut back,
        "s",
        "/topic/h.news",
        &format!("offset={}", seen + 1),
    )
    .await;
    publisher.publish("/topic/h.news", "live").await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next(&mut back).await);
    }
    let want: Vec<(String, u64, bool)> = (1..=5)
        .map(|i| (format!("m{i}"), seen + i, false))
        .chain([("live".to_owned(), seen + 6, false)])
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_has_no_gap_and_no_duplicate_while_publishes_keep_coming() {
    let b = broker("[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 100000");
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    // Publishing all the time, numbered and paced (1 ms every 50 messages, so it
    // lasts a while); the subscriber joins in the middle.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = sent.clone();
    let writer = tokio::spawn(async move {
        for i in 0..3000 {
            publisher
                .send(
                    Frame::new(Command::Send)
                        .header("destination", "/topic/h.seq")
                        .body(i.to_string()),
                )
                .await;
            progress.store(i + 1, std::sync::atomic::Ordering::Release);
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        publisher.publish("/topic/h.seq", "end").await;
    });
    while sent.load(std::sync::atomic::Ordering::Acquire) < 500 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut sub = Client::tcp(&b).await;
    sub.connect_as("alice", "alice-pw").await;
    subscribe_from(&mut sub, "s", "/topic/h.seq", "first").await;
    let joined_at = sent.load(std::sync::atomic::Ordering::Acquire);
    assert!(
        joined_at < 3000,
        "the publisher finished before the subscriber joined"
    );
    let mut bodies = Vec::new();
    let mut offsets = Vec::new();
    loop {
        let (body, offset, gap) = next(&mut sub).await;
        assert!(!gap);
        offsets.push(offset);
        if body == "end" {
            break;
        }
        bodies.push(body.parse::<u32>().unwrap());
    }
    writer.await.unwrap();
    assert_eq!(bodies, (0..3000).collect::<Vec<_>>());
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "offsets not contiguous"
    );
}

#[tokio::test]
async fn asking_for_more_than_is_kept_starts_at_the_oldest_with_a_gap_flag() {
    let b = broker("[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 3");
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    let mut probe = Client::tcp(&b).await;
    probe.connect().await;
    probe.subscribe("p", "/topic/h.small").await;
    for i in 0..10 {
        publisher.publish("/topic/h.small", &format!("m{i}")).await;
    }
    let (_, first, _) = next(&mut probe).await;
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    subscribe_from(&mut sub, "s", "/topic/h.small", &format!("offset={first}")).await;
    let got = [
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ];
    assert_eq!(
        got,
        [
            ("m7".to_owned(), first + 7, true),
            ("m8".to_owned(), first + 8, false),
            ("m9".to_owned(), first + 9, false)
        ]
    );
    // last: the newest only; then nothing more until the next publish.
    subscribe_from(&mut sub, "l", "/topic/h.small", "last").await;
    assert_eq!(next(&mut sub).await, ("m9".to_owned(), first + 9, false));
    publisher.publish("/topic/h.small", "m10").await;
    assert_eq!(next(&mut sub).await, ("m10".to_owned(), first + 10, false));
    assert_eq!(next(&mut sub).await, ("m10".to_owned(), first + 10, false));
}

#[tokio::test]
async fn a_wildcard_replays_each_destination_with_its_own_offsets_and_replaces_the_retained_value()
{
    let b = broker(HISTORY);
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    for (d, body) in [("a", "a0"), ("kept", "k0"), ("a", "a1"), ("kept", "k1")] {
        publisher.publish(&format!("/topic/h.{d}"), body).await;
    }
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    subscribe_from(&mut sub, "s", "/topic/h.*", "first").await;
    let mut by_destination: std::collections::BTreeMap<String, Vec<(String, u64)>> =
        Default::default();
    for _ in 0..4 {
        let m = sub.expect(Command::Message).await;
        // A replayed retained destination comes once, from its history.
        assert_eq!(m.headers.get("retained"), None, "{m:?}");
        by_destination
            .entry(m.headers.get("destination").unwrap().to_owned())
            .or_default()
            .push((
                String::from_utf8(m.body.to_vec()).unwrap(),
                m.headers.get("x-stream-offset").unwrap().parse().unwrap(),
            ));
    }
    for (d, bodies) in [
        ("/topic/h.a", ["a0", "a1"]),
        ("/topic/h.kept", ["k0", "k1"]),
    ] {
        let got = &by_destination[d];
        assert_eq!(
            got.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(),
            bodies
        );
        assert_eq!(got[1].1, got[0].1 + 1, "{d}");
    }
    // Without x-stream-offset: the retained value, as before, and no replay.
    let mut plain = Client::tcp(&b).await;
    plain.connect().await;
    plain.subscribe("p", "/topic/h.*").await;
    let m = plain.expect(Command::Message).await;
    assert_eq!(m.headers.get("retained"), Some("true"));
    assert_eq!(&m.body[..], b"k1");
    publisher.publish("/topic/h.a", "a2").await;
    let m = plain.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"a2");
}

#[tokio::test]
async fn a_bad_offset_is_refused_and_a_sender_cannot_forge_offsets() {
    let b = broker(HISTORY);
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.subscribe("ok", "/topic/other").await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/other")
            .header("x-stream-offset", "42")
            .header("x-stream-gap", "true")
            .body("forged"),
    )
    .await;
    let m = c.expect(Command::Message).await;
    assert_eq!(m.headers.get("x-stream-offset"), None);
    assert_eq!(m.headers.get("x-stream-gap"), None);
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "bad")
            .header("destination", "/topic/h.x")
            .header("x-stream-offset", "offset=-1"),
    )
    .await;
    c.expect_error("invalid x-stream-offset \"offset=-1\"")
        .await;
}

#[tokio::test]
async fn a_restarted_broker_resumes_from_the_offset_a_client_saw() {
    let store = tempfile::tempdir().unwrap();
    let on_store = || {
        broker(&format!(
            "[store]\npath = {:?}\n{HISTORY}",
            store.path().display().to_string()
        ))
    };
    let b = on_store();
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    sub.subscribe("s", "/topic/h.deploy").await;
    publisher.publish("/topic/h.deploy", "before-0").await;
    let (_, seen, _) = next(&mut sub).await;
    for i in 1..=3 {
        publisher
            .publish("/topic/h.deploy", &format!("before-{i}"))
            .await;
    }
    drop((sub, publisher));
    assert!(b.shutdown(Duration::from_secs(5)).await);
    drop(b);
    // Back up: what the client missed before the restart, then what comes after,
    // numbered on.
    let b = on_store();
    let mut back = Client::tcp(&b).await;
    back.connect().await;
    subscribe_from(
        &mut back,
        "s",
        "/topic/h.deploy",
        &format!("offset={}", seen + 1),
    )
    .await;
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publisher.publish("/topic/h.deploy", "after").await;
    let got = [
        next(&mut back).await,
        next(&mut back).await,
        next(&mut back).await,
        next(&mut back).await,
    ];
    assert_eq!(
        got,
        [
            ("before-1".to_owned(), seen + 1, false),
            ("before-2".to_owned(), seen + 2, false),
            ("before-3".to_owned(), seen + 3, false),
            ("after".to_owned(), seen + 4, false),
        ]
    );
}

/// Publishes `/topic/h.big` messages `n{from}`..`n{to - 1}` (each padded to 200
/// bytes), without receipts.
async fn publish_numbered(publisher: &mut Client, from: usize, to: usize) {
    for i in from..to {
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/h.big")
                    .body(format!("n{i:<199}")),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_bigger_than_the_outbox_is_paced_by_the_reader_with_no_gap_at_the_seam() {
    let b = broker(
        "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 5000\n[limits]\nmax_outbox_bytes = 65536",
    );
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publish_numbered(&mut publisher, 0, 2000).await;
    publisher.publish("/topic/h.big", "n-fence").await;
    // A client that asks for all of it and never reads: it holds its own outbox
    // and nothing else.
    let mut stalled = Client::tcp(&b).await;
    stalled.connect().await;
    stalled
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", "/topic/h.big")
                .header("x-stream-offset", "first"),
        )
        .await;
    // 400 KB asked at once by a client whose outbox holds 64 KB, while 500 more
    // are published during the replay.
    let mut reader = Client::tcp(&b).await;
    reader.connect().await;
    reader
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "r")
                .header("destination", "/topic/h.big")
                .header("x-stream-offset", "first"),
        )
        .await;
    let mut second = Client::tcp(&b).await;
    second.connect().await;
    let more = tokio::spawn(async move {
        publish_numbered(&mut second, 2000, 2500).await;
        second.publish("/topic/h.big", "n-end").await;
    });
    let mut got = Vec::new();
    loop {
        let f = reader.next_frame().await.expect("a frame");
        assert_eq!(f.command, Command::Message, "{f:?}");
        let body = String::from_utf8(f.body.to_vec()).unwrap();
        let offset: u64 = f.headers.get("x-stream-offset").unwrap().parse().unwrap();
        assert_eq!(f.headers.get("x-stream-gap"), None, "{offset}");
        let end = body == "n-end";
        got.push((offset, body.trim_end().to_owned()));
        if end {
            break;
        }
    }
    more.await.unwrap();
    let first = got[0].0;
    let mut expected: Vec<String> = (0..2000).map(|i| format!("n{i}")).collect();
    expected.push("n-fence".into());
    expected.extend((2000..2500).map(|i| format!("n{i}")));
    expected.push("n-end".into());
    let bodies: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, expected, "every message once, in order");
    let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (first..first + expected.len() as u64).collect::<Vec<_>>()
    );
    // Then live; and everyone else was never held up by the stalled client.
    publisher.publish("/topic/h.big", "after").await;
    assert_eq!(next(&mut reader).await.0, "after");
    let mut modest = Client::tcp(&b).await;
    modest.connect().await;
    subscribe_from(&mut modest, "m", "/topic/h.big", "last").await;
    assert_eq!(next(&mut modest).await.0, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_stops_a_replay_that_is_still_going() {
    let b = broker(
        "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 5000\n[limits]\nmax_outbox_bytes = 65536",
    );
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publish_numbered(&mut publisher, 0, 2000).await;
    publisher.publish("/topic/h.big", "n-fence").await;
    let mut reader = Client::tcp(&b).await;
    reader.connect().await;
    reader
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "r")
                .header("destination", "/topic/h.big")
                .header("x-stream-offset", "first"),
        )
        .await;
    // A few of the 400 KB, then UNSUBSCRIBE: what was queued before it still
    // comes, nothing after its RECEIPT.
    for _ in 0..10 {
        reader.expect(Command::Message).await;
    }
    reader
        .send(
            Frame::new(Command::Unsubscribe)
                .header("id", "r")
                .header("receipt", "gone"),
        )
        .await;
    let mut before = 10;
    loop {
        let f = reader.next_frame().await.expect("a frame");
        match f.command {
            Command::Receipt => break,
            Command::Message => before += 1,
            _ => panic!("{f:?}"),
        }
    }
    assert!(before < 2001, "the whole replay came: {before}");
    // The positive control: a live message of another subscription arrives,
    // and nothing of the stopped replay before it.
    reader.subscribe("t", "/topic/other").await;
    publisher.publish("/topic/other", "live").await;
    let f = reader.expect(Command::Message).await;
    assert_eq!(f.headers.get("subscription"), Some("t"));
    assert_eq!(f.body.as_ref(), b"live");
}

#[tokio::test]
async fn a_flood_of_big_messages_is_bounded_by_history_max_bytes_and_robs_no_other_destination() {
    let b = broker(
        "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 1000\nhistory_max_bytes = 200000",
    );
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    for i in 0..5 {
        publisher.publish("/topic/h.calm", &format!("c{i}")).await;
    }
    // The flood's first offset, read back with `last`.
    publisher.publish("/topic/h.flood", "f-start").await;
    let mut probe = Client::tcp(&b).await;
    probe.connect().await;
    subscribe_from(&mut probe, "p", "/topic/h.flood", "last").await;
    let (start, flood_start, _) = next(&mut probe).await;
    assert_eq!(start, "f-start");
    // 300 x 4 KiB = 1.2 MB at a history bounded to 200 KB.
    let big = "x".repeat(4096);
    for i in 0..300 {
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/h.flood")
                    .body(format!("f{i:03}{big}")),
            )
            .await;
    }
    publisher.publish("/topic/h.flood", "f-last").await;
    let mut reader = Client::tcp(&b).await;
    reader.connect().await;
    subscribe_from(&mut reader, "calm", "/topic/h.calm", "first").await;
    let calm: Vec<(String, bool)> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let (body, _, gap) = next(&mut reader).await;
            v.push((body, gap));
        }
        v
    };
    let expected: Vec<(String, bool)> = (0..5).map(|i| (format!("c{i}"), false)).collect();
    assert_eq!(
        calm, expected,
        "the quiet destination keeps all of its history"
    );
    let from_start = format!("offset={flood_start}");
    subscribe_from(&mut reader, "flood", "/topic/h.flood", &from_start).await;
    let (first, _, gap) = next(&mut reader).await;
    assert!(gap, "the flood's oldest are gone and the replay says so");
    let mut kept = 1;
    let mut bytes = first.len();
    loop {
        let (body, _, gap) = next(&mut reader).await;
        assert!(!gap);
        if body == "f-last" {
            break;
        }
        kept += 1;
        bytes += body.len();
    }
    assert!(bytes <= 200_000, "{kept} messages, {bytes} bytes kept");
    assert!(kept >= 30, "only {kept} kept");
}

/// `history` of `GET /api/stats`.
async fn history_stats(b: &common::TestBroker) -> serde_json::Value {
    let auth = common::basic("root", "root-pw");
    let (status, text) = common::http_request(
        b.http_addr,
        "GET",
        "/api/stats",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["history"].clone()
}

#[tokio::test]
async fn an_idle_destination_s_history_expires_without_being_touched() {
    let b = broker("[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_age_s = 1");
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    for i in 0..3 {
        publisher.publish("/topic/h.idle", &format!("i{i}")).await;
    }
    // The positive control: kept, and counted.
    let kept = history_stats(&b).await;
    assert_eq!(kept["destinations"], 1, "{kept}");
    assert_eq!(kept["messages"], 3, "{kept}");
    assert!(kept["bytes"].as_u64().unwrap() > 6, "{kept}");
    let mut reader = Client::tcp(&b).await;
    reader.connect().await;
    subscribe_from(&mut reader, "l", "/topic/h.idle", "last").await;
    let (body, last, _) = next(&mut reader).await;
    assert_eq!(body, "i2");
    // Nobody publishes or subscribes again: they go anyway, soon after 1 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    loop {
        let now = history_stats(&b).await;
        if now["messages"] == 0 {
            assert_eq!(now["bytes"], 0, "{now}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still kept: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Offsets go on from where they were.
    publisher.publish("/topic/h.idle", "after").await;
    assert_eq!(
        next(&mut reader).await,
        ("after".to_owned(), last + 1, false)
    );
}

#[tokio::test]
async fn a_resume_after_everything_expired_flags_the_gap_on_the_next_message() {
    let b = broker("[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_age_s = 1");
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publisher.publish("/topic/h.gone", "i0").await;
    publisher.publish("/topic/h.gone", "i1").await;
    let mut probe = Client::tcp(&b).await;
    probe.connect().await;
    subscribe_from(&mut probe, "p", "/topic/h.gone", "first").await;
    let (body, first, _) = next(&mut probe).await;
    assert_eq!(body, "i0");
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while history_stats(&b).await["messages"] != 0 {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One client saw i0 only, one saw both; nothing is kept now.
    let mut behind = Client::tcp(&b).await;
    behind.connect().await;
    subscribe_from(
        &mut behind,
        "b",
        "/topic/h.gone",
        &format!("offset={}", first + 1),
    )
    .await;
    let mut current = Client::tcp(&b).await;
    current.connect().await;
    subscribe_from(
        &mut current,
        "c",
        "/topic/h.gone",
        &format!("offset={}", first + 2),
    )
    .await;
    publisher.publish("/topic/h.gone", "after").await;
    assert_eq!(
        next(&mut current).await,
        ("after".to_owned(), first + 2, false)
    );
    assert_eq!(
        next(&mut behind).await,
        ("after".to_owned(), first + 2, true),
        "i1 expired before it was read"
    );
    publisher.publish("/topic/h.gone", "again").await;
    assert_eq!(
        next(&mut behind).await,
        ("again".to_owned(), first + 3, false)
    );
}

/// A client on a socket with a small receive buffer, so that what it does not
/// read soon waits in the broker's outbox rather than in the kernel.
async fn small_window_client(b: &common::TestBroker) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(b.stomp_addr.unwrap()).await.unwrap();
    Client::from_tcp(stream)
}

/// Publishes `/topic/h.slow` messages `s{from}`..`s{to - 1}`, each 1 KiB, then
/// waits for one receipt (so all of them are routed).
async fn publish_kilobytes(publisher: &mut Client, from: usize, to: usize) {
    for i in from..to {
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/h.slow")
                    .body(format!("s{i:<1023}")),
            )
            .await;
    }
    publisher.publish("/topic/h.slow", "s-end").await;
}

/// A broker keeping at most `kept` messages of `/topic/h.#` with 64 KiB outboxes,
/// a subscriber of `/topic/h.slow` that does not read while a publisher sends it
/// 20 MB, and that publisher: (broker, what the subscriber then reads, publisher).
async fn twenty_megabytes_to_a_stalled_reader(
    kept: usize,
) -> (common::TestBroker, Client, Vec<(String, u64, bool)>, Client) {
    let b = broker(&format!(
        "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = {kept}\n[limits]\nmax_outbox_bytes = 65536"
    ));
    let mut reader = small_window_client(&b).await;
    reader.connect().await;
    reader.subscribe("r", "/topic/h.slow").await;
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publish_kilobytes(&mut publisher, 0, 20_000).await;
    let got = read_to_end(&mut reader).await;
    (b, reader, got, publisher)
}

/// Reads MESSAGEs up to the one whose body is `s-end`: (trimmed body, offset, gap).
async fn read_to_end(c: &mut Client) -> Vec<(String, u64, bool)> {
    let mut got = Vec::new();
    loop {
        let f = c.next_frame().await.expect("a frame, not a close");
        assert_eq!(f.command, Command::Message, "{f:?}");
        let body = String::from_utf8(f.body.to_vec()).unwrap();
        let offset: u64 = f.headers.get("x-stream-offset").unwrap().parse().unwrap();
        let gap = f.headers.get("x-stream-gap") == Some("true");
        let end = body == "s-end";
        got.push((body.trim_end().to_owned(), offset, gap));
        if end {
            return got;
        }
    }
}

// The log is the buffer: a live subscriber of a kept destination that stops
// reading (20 MB while its outbox holds 64 KiB) is not cut off as a slow consumer;
// once it reads, it gets every message once, in order, with no gap, then live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_subscriber_that_falls_behind_reads_the_log_instead_of_being_cut_off() {
    let (b, mut reader, got, mut publisher) = twenty_megabytes_to_a_stalled_reader(30_000).await;
    let bodies: Vec<&str> = got.iter().map(|(b, _, _)| b.as_str()).collect();
    let mut want: Vec<String> = (0..20_000).map(|i| format!("s{i}")).collect();
    want.push("s-end".into());
    assert_eq!(bodies, want, "every message once, in order");
    let first = got[0].1;
    let offsets: Vec<u64> = got.iter().map(|(_, o, _)| *o).collect();
    assert_eq!(offsets, (first..first + 20_001).collect::<Vec<_>>());
    assert!(got.iter().all(|(_, _, gap)| !gap), "no gap flagged");
    // Caught up: live messages come straight through again.
    publisher.publish("/topic/h.slow", "after").await;
    assert_eq!(next(&mut reader).await.0, "after");
    let stats = history_stats(&b).await;
    assert!(stats["messages"].as_u64().unwrap() > 20_000, "{stats}");
}

// Only a subscriber that falls off the end of the log loses messages: it is not
// cut off, the first message after the hole says `x-stream-gap: true`, and from
// there it gets the rest in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_subscriber_that_falls_off_the_log_resumes_after_a_flagged_gap() {
    let (_b, _reader, got, _publisher) = twenty_megabytes_to_a_stalled_reader(1000).await;
    let gaps: Vec<usize> = (0..got.len()).filter(|&i| got[i].2).collect();
    assert_eq!(gaps.len(), 1, "one flagged resume point: {gaps:?}");
    let at = gaps[0];
    assert!(
        at > 0 && got[at].1 > got[at - 1].1 + 1,
        "the flag is on the hole"
    );
    for w in got.windows(2) {
        assert!(w[1].1 > w[0].1, "offsets only grow");
    }
    // From the resume point on, nothing is missing (the log held the last 1000).
    let tail: Vec<u64> = got[at..].iter().map(|(_, o, _)| *o).collect();
    let start = tail[0];
    assert_eq!(tail, (start..start + tail.len() as u64).collect::<Vec<_>>());
    assert!(tail.len() >= 1000, "{}", tail.len());
    assert_eq!(got.last().unwrap().0, "s-end");
    // Before the hole, what it got was in order from the start.
    let head: Vec<&str> = got[..at].iter().map(|(b, _, _)| b.as_str()).collect();
    let want: Vec<String> = (0..at).map(|i| format!("s{i}")).collect();
    assert_eq!(head, want);
}

// A wildcard subscriber that falls behind on more kept destinations than one
// replay may cover (`topics.max_replay_destinations`) is cut off as a slow
// consumer instead of holding them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_behind_on_too_many_kept_destinations_is_cut_off() {
    let b = broker(
        "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 30000\nmax_replay_destinations = 4\n[limits]\nmax_outbox_bytes = 65536",
    );
    let mut reader = small_window_client(&b).await;
    reader.connect().await;
    reader.subscribe("r", "/topic/h.#").await;
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publisher.publish("/topic/h.d0", "first").await;
    assert_eq!(next(&mut reader).await.0, "first");
    for i in 0..20_000 {
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", format!("/topic/h.d{}", i % 10))
                    .body(format!("s{i:<1023}")),
            )
            .await;
    }
    publisher.publish("/topic/h.d0", "s-end").await;
    // Cut off: an ERROR (or, if it came in the middle of a write, a plain close),
    // never the last message.
    while let Some(f) = reader.next_frame().await {
        if f.command == Command::Error {
            let message = f.headers.get("message").unwrap_or_default();
            assert!(message.starts_with("slow consumer"), "{f:?}");
            break;
        }
        assert_eq!(f.command, Command::Message);
        assert_ne!(&f.body[..], b"s-end", "it was never cut off");
    }
}
