//! Destination families are trust boundaries; wildcard matching costs time linear
//! in the destination whatever the pattern.

use crate::common::{Client, broker};
use stompede::codec::Command;

/// The next MESSAGE that is not one of the trading demo's quotes (catch-all
/// patterns rightly receive those too).
async fn next_non_quote(c: &mut Client) -> stompede::codec::Frame {
    loop {
        let m = c.expect(Command::Message).await;
        let d = m.headers.get("destination").unwrap_or_default();
        if !d.starts_with("/topic/stock-quotes") {
            return m;
        }
    }
}

/// Reads `n` MESSAGEs (quotes skipped) and returns their bodies.
async fn bodies(c: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = next_non_quote(c).await;
        out.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    out
}

#[tokio::test]
async fn no_topic_pattern_reaches_user_destinations() {
    let b = broker("");
    // Every way of writing a /topic pattern that once matched user destinations.
    let patterns = [
        "/topic/#",
        "/topic/*",
        "/topic/#.#",
        "/topic/*.#",
        "/topic//user/alice/queue/trade-confirmation.#",
        "/topic//user/alice/queue/trade-confirmation",
        "/topic//user/bob/queue/secret",
    ];
    let mut spy = Client::tcp(&b).await;
    spy.connect_anonymously().await;
    for (i, p) in patterns.iter().enumerate() {
        spy.subscribe(&format!("s{i}"), p).await;
    }
    let mut alice = Client::ws(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("c", "/user/queue/trade-confirmation").await;
    let mut bob = Client::tcp(&b).await;
    bob.connect_as("bob", "bob-pw").await;
    bob.subscribe("s", "/user/queue/secret").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    for round in 0..2 {
        svc.publish("/user/alice/queue/trade-confirmation", "alice's")
            .await;
        svc.publish("/user/bob/queue/secret", "bob's").await;
        svc.publish("/topic/marker", &format!("control {round}"))
            .await;
        assert_eq!(
            alice.message_on("/user/queue/trade-confirmation").await,
            "alice's"
        );
        assert_eq!(bob.message_on("/user/queue/secret").await, "bob's");
        // The four catch-all patterns each get the control message, and nothing
        // before it: deliveries reach an outbox in publish order.
        assert_eq!(
            bodies(&mut spy, 4).await,
            vec![format!("control {round}"); 4]
        );
    }
}

#[tokio::test]
async fn huge_wildcard_patterns_are_refused_naming_the_limit() {
    let b = broker("");
    let mut watcher = Client::ws(&b).await;
    watcher.connect_anonymously().await;
    watcher.subscribe("w", "/topic/news").await;
    for (pattern, limit) in [
        // 4,087 `#` words in one header line.
        (
            format!("/topic/{}#", "#.".repeat(4086)),
            "limits.max_topic_wildcards",
        ),
        // Within the word limit, too many wildcards.
        (
            format!("/topic/{}zz", "#.*.".repeat(9)),
            "limits.max_topic_wildcards",
        ),
        // Too many words, however few wildcards.
        (
            format!("/topic/{}#", "w.".repeat(1000)),
            "limits.max_topic_words",
        ),
    ] {
        let mut attacker = Client::tcp(&b).await;
        attacker.connect_anonymously().await;
        attacker
            .send(
                stompede::codec::Frame::new(Command::Subscribe)
                    .header("id", "x")
                    .header("destination", pattern),
            )
            .await;
        attacker.expect_error(limit).await;
    }
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/news", "still served").await;
    assert_eq!(watcher.message_on("/topic/news").await, "still served");
}

#[tokio::test]
async fn adversarial_patterns_within_the_limits_match_once_and_quickly() {
    let b = broker("");
    let mut attacker = Client::tcp(&b).await;
    attacker.connect_anonymously().await;
    // Each of these once cost exponential time (or gigabytes) per publish.
    let patterns = [
        "/topic/#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#".to_owned(),
        format!("/topic/{}#", "#.w.".repeat(7)),
        format!("/topic/{}w", "*.#.".repeat(5)),
    ];
    for (i, p) in patterns.iter().enumerate() {
        attacker.subscribe(&format!("a{i}"), p).await;
    }
    let mut watcher = Client::ws(&b).await;
    watcher.connect_anonymously().await;
    watcher.subscribe("w", "/topic/news").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    // 64 words (the limit), all `w`: every pattern matches, each in very many ways.
    let topic = format!("/topic/{}w", "w.".repeat(63));
    for n in 0..20 {
        svc.publish(&topic, &format!("m{n}")).await;
    }
    svc.publish("/topic/news", "after").await;
    // Each subscription gets each message exactly once, in order.
    let mut got: Vec<(String, String)> = Vec::new();
    for _ in 0..(20 * patterns.len()) {
        let m = next_non_quote(&mut attacker).await;
        got.push((
            m.headers.get("subscription").unwrap().to_owned(),
            String::from_utf8(m.body.to_vec()).unwrap(),
        ));
    }
    for (i, _) in patterns.iter().enumerate() {
        let mine: Vec<&str> = got
            .iter()
            .filter(|(s, _)| *s == format!("a{i}"))
            .map(|(_, b)| b.as_str())
            .collect();
        let want: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
        assert_eq!(mine, want, "subscription a{i}");
    }
    assert_eq!(watcher.message_on("/topic/news").await, "after");
    // A publish past the word limit is refused too.
    let long = format!("/topic/{}w", "w.".repeat(64));
    svc.send(
        stompede::codec::Frame::new(Command::Send)
            .header("destination", long)
            .body("x"),
    )
    .await;
    svc.expect_error("limits.max_topic_words").await;
}
