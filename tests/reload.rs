//! Reloading the configuration while running (SIGHUP, `POST /api/reload`):
//! users and access rules change, open connections keep their login, a removed
//! user's sessions end with an ERROR, what needs a restart is named, and a bad
//! file changes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BrokerProcess, Client, basic, http_request, user_toml};
use stompede::codec::Command;

fn write_config(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("broker.toml"), text).unwrap();
}

#[tokio::test]
async fn sighup_applies_users_and_rules_ends_removed_users_and_survives_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\npath = {:?}\n",
        dir.path().join("data").display().to_string()
    );
    let b = BrokerProcess::start(dir.path(), &store, &[]);
    let mut alice = Client::tcp_at(b.stomp_addr).await;
    alice.connect_as("alice", "alice-pw").await;
    let mut bob = Client::tcp_at(b.stomp_addr).await;
    bob.connect_as("bob", "bob-pw").await;
    // Before: traders may not send to topics, and dave does not exist.
    let mut dave = Client::tcp_at(b.stomp_addr).await;
    dave.send(
        stompede::codec::Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("login", "dave")
            .header("passcode", "dave-pw"),
    )
    .await;
    dave.expect_error("authentication failed").await;

    // alice removed, dave added, a rule lets traders send to /topic/bulletins.
    let users: String = [
        user_toml("bob", "bob-pw", "trader"),
        user_toml("svc", "svc-pw", "service"),
        user_toml("root", "root-pw", "admin"),
        user_toml("dave", "dave-pw", "trader"),
    ]
    .concat();
    let rule = "[[auth.acl]]\nmatch = \"/topic/bulletins\"\nsend = [\"trader\"]\nsubscribe = [\"anonymous\", \"authenticated\"]\n";
    write_config(dir.path(), &format!("{store}{rule}{users}"));
    b.hangup();
    let line = b.log_line("configuration reloaded", 1).await;
    assert!(line.contains("alice"), "{line}");
    // alice's open session ends, saying why; bob's goes on with the new rule.
    alice
        .expect_error("login \"alice\" was removed from the configuration")
        .await;
    let mut reader = Client::tcp_at(b.stomp_addr).await;
    reader.connect_anonymously().await;
    reader.subscribe("b", "/topic/bulletins").await;
    bob.publish("/topic/bulletins", "from bob").await;
    assert_eq!(reader.message_on("/topic/bulletins").await, "from bob");
    let mut dave = Client::tcp_at(b.stomp_addr).await;
    dave.connect_as("dave", "dave-pw").await;

    // A bad file: nothing changes, and the log says why.
    write_config(
        dir.path(),
        &format!("{store}[limits]\nmax_frame_bytes = \"big\"\n{users}"),
    );
    b.hangup();
    let line = b.log_line("SIGHUP: nothing changed", 1).await;
    assert!(line.contains("max_frame_bytes"), "{line}");
    let mut dave_again = Client::tcp_at(b.stomp_addr).await;
    dave_again.connect_as("dave", "dave-pw").await;
    bob.publish("/topic/bulletins", "rule kept").await;
    assert_eq!(reader.message_on("/topic/bulletins").await, "rule kept");
}

#[tokio::test]
async fn post_api_reload_is_for_admins_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\npath = {:?}\n",
        dir.path().join("data").display().to_string()
    );
    let b = BrokerProcess::start(dir.path(), &store, &[]);
    let reload = |auth: String| {
        let addr = b.http_addr;
        async move {
            http_request(
                addr,
                "POST",
                "/api/reload",
                &[("Authorization", &auth)],
                b"",
            )
            .await
        }
    };
    let (status, _) = reload(basic("svc", "svc-pw")).await;
    assert_eq!(status, 403);
    let users = common::users_toml();
    write_config(
        dir.path(),
        &format!(
            "{store}[limits]\nmax_subscriptions = 2\nmax_connections = 5\n[queues]\nmax_depth = 9\n{users}"
        ),
    );
    let (status, text) = reload(basic("root", "root-pw")).await;
    assert_eq!(status, 200, "{text}");
    let done: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        done["need_restart"],
        serde_json::json!(["limits.max_connections", "queues"])
    );
    assert!(
        done["applied"]
            .as_array()
            .unwrap()
            .contains(&"limits".into())
    );
    // The new subscription limit holds for the next SUBSCRIBE.
    let mut c = Client::tcp_at(b.stomp_addr).await;
    c.connect_anonymously().await;
    c.subscribe("1", "/topic/a").await;
    c.subscribe("2", "/topic/b").await;
    c.send(
        stompede::codec::Frame::new(Command::Subscribe)
            .header("id", "3")
            .header("destination", "/topic/c"),
    )
    .await;
    c.expect_error("at most 2 per connection (limits.max_subscriptions)")
        .await;
    write_config(dir.path(), &format!("{store}[nosuch]\nx = 1\n{users}"));
    let (status, text) = reload(basic("root", "root-pw")).await;
    assert_eq!(status, 400, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"], "invalid_config");
    assert!(
        error["message"].as_str().unwrap().contains("nosuch"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reload_starts_keeping_history_for_new_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\npath = {:?}\n",
        dir.path().join("data").display().to_string()
    );
    let b = BrokerProcess::start(dir.path(), &store, &[]);
    let mut reader = Client::tcp_at(b.stomp_addr).await;
    reader.connect_anonymously().await;
    reader.subscribe("n", "/topic/news").await;
    let mut svc = Client::tcp_at(b.stomp_addr).await;
    svc.connect_as("svc", "svc-pw").await;
    svc.publish("/topic/news", "before").await;
    let m = reader.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"before");
    assert_eq!(m.headers.get("x-stream-offset"), None);

    let users: String = [
        user_toml("svc", "svc-pw", "service"),
        user_toml("root", "root-pw", "admin"),
    ]
    .concat();
    write_config(
        dir.path(),
        &format!("{store}[topics]\nhistory = [\"/topic/news\"]\n{users}"),
    );
    b.hangup();
    let line = b.log_line("configuration reloaded", 1).await;
    assert!(line.contains("topics.history"), "{line}");
    assert!(
        b.log
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains("takes effect only after a restart") || !l.contains("topics")),
        "history named as needing a restart"
    );
    svc.publish("/topic/news", "after").await;
    let m = reader.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"after");
    let offset: u64 = m.headers.get("x-stream-offset").unwrap().parse().unwrap();
    // And it is kept: a new subscriber replays it.
    let mut late = Client::tcp_at(b.stomp_addr).await;
    late.connect_anonymously().await;
    late.subscribe_with("l", "/topic/news", &[("x-stream-offset", "first")])
        .await;
    let m = late.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"after");
    assert_eq!(
        m.headers.get("x-stream-offset"),
        Some(offset.to_string().as_str())
    );
}

// A reload takes away what it removes, from sessions already open: a
// subscription the new rules close ends (the ERROR names it), a wildcard stops
// reading what they close while it goes on with the rest, a demoted admin's next
// SEND has a trader's rights, and anonymous sessions end when anonymous access is
// turned off. An admin's subscription to the closed topic goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_away_what_it_removes_from_open_sessions() {
    use stompede::codec::Frame;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\npath = {:?}\n",
        dir.path().join("data").display().to_string()
    );
    let carol = user_toml("carol", "carol-pw", "admin");
    let b = BrokerProcess::start(dir.path(), &format!("{store}{carol}"), &[]);
    let session = |login: &'static str| async move {
        let mut c = Client::tcp_at(b.stomp_addr).await;
        c.connect_as(login, &format!("{login}-pw")).await;
        c
    };
    let mut alice = session("alice").await;
    alice.subscribe("s", "/topic/x.secret.#").await;
    let mut bob = session("bob").await;
    bob.subscribe("all", "/topic/x.#").await;
    let mut root = session("root").await;
    root.subscribe("s", "/topic/x.secret.#").await;
    let mut carol = session("carol").await;
    let mut anon = Client::tcp_at(b.stomp_addr).await;
    anon.connect_anonymously().await;
    anon.subscribe("p", "/topic/x.public").await;
    let mut svc = session("svc").await;
    // Before: everyone reads what they subscribed to, carol may send anywhere.
    svc.publish("/topic/x.secret.a", "s1").await;
    assert_eq!(alice.message_on("/topic/x.secret.a").await, "s1");
    assert_eq!(bob.message_on("/topic/x.secret.a").await, "s1");
    assert_eq!(root.message_on("/topic/x.secret.a").await, "s1");
    carol.publish("/topic/x.public", "from admin carol").await;
    assert_eq!(anon.message_on("/topic/x.public").await, "from admin carol");
    assert_eq!(bob.message_on("/topic/x.public").await, "from admin carol");

    let users: String = [
        user_toml("alice", "alice-pw", "trader"),
        user_toml("bob", "bob-pw", "trader"),
        user_toml("svc", "svc-pw", "service"),
        user_toml("root", "root-pw", "admin"),
        user_toml("carol", "carol-pw", "trader"),
    ]
    .concat();
    let rule = "[[auth.acl]]\nmatch = \"/topic/x.secret.#\"\nsend = [\"service\"]\nsubscribe = [\"admin\"]\n";
    let anonymous = "[auth]\nanonymous = false\n";
    write_config(dir.path(), &format!("{store}{anonymous}{rule}{users}"));
    b.hangup();
    b.log_line("configuration reloaded", 1).await;
    alice.expect_error("/topic/x.secret.#").await;
    anon.expect_error("anonymous access was turned off").await;
    carol
        .send(
            Frame::new(Command::Send)
                .header("destination", "/topic/x.public")
                .body("as admin?"),
        )
        .await;
    carol
        .expect_error("not allowed to SEND to /topic/x.public")
        .await;
    svc.publish("/topic/x.secret.b", "s2").await;
    svc.publish("/topic/x.public", "p2").await;
    assert_eq!(root.message_on("/topic/x.secret.b").await, "s2");
    // Bob's wildcard skips the closed topic and goes on with the rest.
    assert_eq!(bob.message_on("/topic/x.public").await, "p2");
}
