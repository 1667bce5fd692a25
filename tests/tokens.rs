//! Token logins (JWT): in the passcode or an `Authorization: Bearer` header, signed
//! with a shared secret or a key pair, refused when anything about them is wrong,
//! and ended with an ERROR when they expire.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker, http_get, metric};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use stompede::codec::{Command, Frame};

const SECRET: &str = "a shared secret of the single sign-on";

fn now() -> u64 {
    stompede::auth::token::now_s()
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn jwt_broker(extra: &str) -> common::TestBroker {
    broker(&format!(
        "[auth.jwt]\nsecret = \"{SECRET}\"\nissuer = \"https://sso.example\"\naudience = \"stompede\"\nleeway_s = 0\n{extra}"
    ))
}

fn claims(sub: &str, roles: &[&str], exp: u64) -> serde_json::Value {
    json!({"sub": sub, "roles": roles, "exp": exp, "iss": "https://sso.example", "aud": "stompede"})
}

async fn connect_with(c: &mut Client, headers: &[(&str, &str)]) -> Frame {
    let mut f = Frame::new(Command::Connect).header("accept-version", "1.2");
    for (k, v) in headers {
        f = f.header(*k, *v);
    }
    c.send(f).await;
    c.next_frame().await.unwrap()
}

#[tokio::test]
async fn a_token_logs_in_with_its_login_and_roles() {
    let b = jwt_broker("");
    let token = hs256(claims("carol", &["trader"], now() + 600));
    // As the passcode (what stompjs sends from connectHeaders), over WebSocket.
    let mut carol = Client::ws(&b).await;
    let f = connect_with(&mut carol, &[("passcode", &token)]).await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    carol.subscribe("c", "/user/queue/trade-confirmation").await;
    // As a Bearer header, with a matching login header, over TCP.
    let mut again = Client::tcp(&b).await;
    let bearer = format!("Bearer {token}");
    let f = connect_with(
        &mut again,
        &[("login", "carol"), ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    // The token's roles decide: a trader trades, and the confirmation reaches
    // carol's own user queue.
    again
        .trade(r#"{"symbol":"AAPL","quantity":2,"orderType":"BUY"}"#)
        .await;
    let conf = carol.message_on("/user/queue/trade-confirmation").await;
    assert!(conf.contains("\"quantity\":2"), "{conf}");
    // Passwords still work beside tokens.
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    let (_, m) = http_get(b.http_addr, "/metrics").await;
    assert!(metric(&m, "stompede_logins_total{method=\"token\"}").unwrap() >= 2.0);
}

#[tokio::test]
async fn wrong_tokens_are_refused() {
    let b = jwt_broker("");
    let exp = now() + 600;
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims("carol", &["admin"], exp),
        &EncodingKey::from_secret(b"guessed"),
    )
    .unwrap();
    let mut wrong_iss = claims("carol", &[], exp);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = claims("carol", &[], exp);
    wrong_aud["aud"] = json!("someone-else");
    let expired = claims("carol", &[], now() - 5);
    let cases = [
        ("passcode", forged),
        ("passcode", hs256(wrong_iss)),
        ("passcode", hs256(wrong_aud)),
        ("passcode", hs256(expired)),
        // No issuer and no audience at all, where both are required.
        ("passcode", hs256(json!({"sub": "carol", "exp": exp}))),
        (
            "Authorization",
            format!("Bearer {}", hs256(json!({"sub": "x"}))),
        ),
    ];
    for (header, value) in &cases {
        let mut c = Client::tcp(&b).await;
        c.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header(*header, value.as_str()),
        )
        .await;
        c.expect_error("authentication failed").await;
    }
    // A login header that names someone else.
    let mut c = Client::tcp(&b).await;
    let token = hs256(claims("carol", &["trader"], exp));
    let f = connect_with(&mut c, &[("login", "alice"), ("passcode", &token)]).await;
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.headers.get("message"), Some("authentication failed"));
}

#[tokio::test]
async fn a_connection_ends_when_its_token_expires() {
    let b = jwt_broker("");
    let mut c = Client::tcp(&b).await;
    let token = hs256(claims("carol", &["trader"], now() + 2));
    let f = connect_with(&mut c, &[("passcode", &token)]).await;
    assert_eq!(f.command, Command::Connected);
    c.subscribe("s", "/topic/t").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/t", "before").await;
    assert_eq!(c.message_on("/topic/t").await, "before");
    // Within the 5 s bound of every read: ERROR token expired, then close.
    c.expect_error("token expired").await;
    let (_, m) = http_get(b.http_addr, "/metrics").await;
    assert!(metric(&m, "stompede_token_expiries_total").unwrap() >= 1.0);
    assert!(metric(&m, "stompede_errors_sent_total{reason=\"token_expired\"}").unwrap() >= 1.0);
}

#[tokio::test]
async fn tokens_signed_with_key_pairs() {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("public.pem");
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let (algorithm, key) = if std::ptr::eq(alg, &rcgen::PKCS_ED25519) {
            (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            )
        } else {
            (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            )
        };
        let b = broker(&format!(
            "[auth.jwt]\npublic_key_file = {:?}\n",
            public.display().to_string()
        ));
        let token = encode(
            &Header::new(algorithm),
            &json!({"sub": "dave", "roles": ["service"], "exp": now() + 600}),
            &key,
        )
        .unwrap();
        let mut c = Client::tcp(&b).await;
        let f = connect_with(&mut c, &[("passcode", &token)]).await;
        assert_eq!(f.command, Command::Connected, "{algorithm:?}: {f:?}");
        // A service may publish to topics.
        c.publish("/topic/by-service", "ok").await;
        // An HS256 token made with the public key as its secret is refused: the
        // key decides the algorithm.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "dave", "exp": now() + 600}),
            &EncodingKey::from_secret(pair.public_key_pem().as_bytes()),
        )
        .unwrap();
        let mut c = Client::tcp(&b).await;
        let f = connect_with(&mut c, &[("passcode", &confused)]).await;
        assert_eq!(f.command, Command::Error, "{algorithm:?}");
    }
}

#[tokio::test]
async fn tokens_signed_with_rsa_keys() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand_core_06::OsRng, 2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public.pem");
    std::fs::write(
        &public,
        private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let key = EncodingKey::from_rsa_pem(private.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes())
        .unwrap();
    let b = broker(&format!(
        "[auth.jwt]\npublic_key_file = {:?}\n",
        public.display().to_string()
    ));
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "erin", "roles": ["trader"], "exp": now() + 600}),
        &key,
    )
    .unwrap();
    let mut c = Client::tcp(&b).await;
    let f = connect_with(&mut c, &[("passcode", &token)]).await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    // A trader may not publish to topics: the token's roles apply.
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/x")
            .body("no"),
    )
    .await;
    c.expect_error("not allowed to SEND to /topic/x").await;
}

#[test]
fn a_bad_key_file_stops_start_up_naming_the_key() {
    let e = stompede::config::Config::from_toml(
        "[auth.jwt]\npublic_key_file = \"/nonexistent/k.pem\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("auth.jwt"), "{e}");
    let e = stompede::config::Config::from_toml(
        "[auth.jwt]\nsecret = \"s\"\npublic_key_file = \"/nonexistent/k.pem\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("either secret or public_key_file"), "{e}");
}

// A token whose `nbf` is ten minutes ahead is refused over STOMP and over HTTP;
// the same token without it is taken (the positive control).
#[tokio::test]
async fn a_token_not_valid_yet_is_refused_over_stomp_and_http() {
    let b = jwt_broker("");
    let mut early = claims("carol", &["service"], now() + 3600);
    early["nbf"] = json!(now() + 600);
    let early = hs256(early);
    let good = hs256(claims("carol", &["service"], now() + 3600));
    let mut c = Client::tcp(&b).await;
    let f = connect_with(&mut c, &[("passcode", &early)]).await;
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert_eq!(f.headers.get("message"), Some("authentication failed"));
    let mut c = Client::tcp(&b).await;
    let f = connect_with(&mut c, &[("passcode", &good)]).await;
    assert_eq!(f.command, Command::Connected, "{f:?}");
    let addr = b.http_addr;
    let publish = |token: String| async move {
        common::http_post(
            addr,
            "/api/publish?destination=/topic/t",
            &[("Authorization", &format!("Bearer {token}"))],
            b"x",
        )
        .await
        .0
    };
    assert_eq!(publish(early).await, 401);
    assert_eq!(publish(good).await, 202);
}

// A token login `bob/queue/a` would share bob's user destination keys
// (`/user/bob/queue/a/queue/b`): it is refused like such a file login, and bob
// alone gets what a service sends him there.
#[tokio::test]
async fn a_token_login_cannot_reach_into_another_user_s_destinations() {
    let b = jwt_broker("");
    let mut intruder = Client::tcp(&b).await;
    let token = hs256(claims("bob/queue/a", &["trader"], now() + 600));
    let f = connect_with(&mut intruder, &[("passcode", &token)]).await;
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert_eq!(f.headers.get("message"), Some("authentication failed"));
    for login in ["bob b", "bob:x", "bob\u{1}"] {
        let mut c = Client::tcp(&b).await;
        let token = hs256(claims(login, &["trader"], now() + 600));
        let f = connect_with(&mut c, &[("passcode", &token)]).await;
        assert_eq!(f.command, Command::Error, "{login:?}");
    }
    let mut bob = Client::tcp(&b).await;
    bob.connect_as("bob", "bob-pw").await;
    bob.subscribe("b", "/user/queue/a/queue/b").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect_as("svc", "svc-pw").await;
    svc.publish("/user/bob/queue/a/queue/b", "for bob").await;
    assert_eq!(bob.message_on("/user/queue/a/queue/b").await, "for bob");
}

// A correctly signed token that never expires (`exp` = 2^63) logs in and works;
// it used to panic the session task on the deadline's arithmetic.
#[tokio::test]
async fn a_token_with_the_largest_exp_logs_in_without_a_panic() {
    let b = jwt_broker("");
    for exp in [1u64 << 63, u64::MAX] {
        let mut c = Client::tcp(&b).await;
        let token = hs256(claims("carol", &["trader"], exp));
        let f = connect_with(&mut c, &[("passcode", &token)]).await;
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c.subscribe("s", "/topic/forever").await;
        let mut svc = Client::tcp(&b).await;
        svc.connect_as("svc", "svc-pw").await;
        svc.publish("/topic/forever", "still here").await;
        assert_eq!(c.message_on("/topic/forever").await, "still here");
    }
}
