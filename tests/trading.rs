//! The stock-trading application and what it stands on: authentication, rights,
//! user destinations, retained quotes, the quote scheduler and /app/trade.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use serde_json::Value;
use std::time::{Duration, Instant};
use stompede::codec::{Command, Frame};

fn json(f: &Frame) -> Value {
    serde_json::from_slice(&f.body).unwrap()
}

async fn trader(b: &stompede::server::RunningBroker, login: &str) -> Client {
    let mut c = Client::ws(b).await;
    c.connect_as(login, &format!("{login}-pw")).await;
    c.subscribe("conf", "/user/queue/trade-confirmation").await;
    c.subscribe("err", "/user/queue/errors").await;
    c
}

/// The next MESSAGE on `subscription`, skipping others (e.g. quotes); at most 5 s.
async fn next_on(c: &mut Client, subscription: &str) -> Frame {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing on {subscription} within 5 s"
        );
        let f = c.expect(Command::Message).await;
        if f.headers.get("subscription") == Some(subscription) {
            return f;
        }
    }
}

// ---- authentication and rights ------------------------------------------------

#[tokio::test]
async fn wrong_credentials_get_authentication_failed() {
    let b = broker("");
    for (login, pass) in [("alice", "wrong"), ("nobody", "alice-pw"), ("alice", "")] {
        let mut c = Client::tcp(&b).await;
        c.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("login", login)
                .header("passcode", pass),
        )
        .await;
        c.expect_error("authentication failed").await;
    }
    let mut ok = Client::tcp(&b).await;
    assert_eq!(
        ok.connect_as("alice", "alice-pw")
            .await
            .headers
            .get("version"),
        Some("1.2")
    );
}

#[tokio::test]
async fn anonymous_access_can_be_switched_off() {
    let b = broker("[auth]\nanonymous = false");
    let mut c = Client::tcp(&b).await;
    c.send(Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await;
    c.expect_error("authentication required").await;
}

#[tokio::test]
async fn rights_are_enforced_per_role_and_refusals_name_the_destination() {
    let b = broker("[quotes]\ninterval_ms = 60000");
    // (login, frame, expected ERROR text); None login = anonymous.
    let cases: Vec<(Option<&str>, Frame, &str)> = vec![
        (
            None,
            Frame::new(Command::Send).header("destination", "/topic/x"),
            "not allowed to SEND to /topic/x",
        ),
        (
            None,
            Frame::new(Command::Send)
                .header("destination", "/app/trade")
                .body("{}"),
            "not allowed to SEND to /app/trade",
        ),
        (
            None,
            Frame::new(Command::Subscribe)
                .header("id", "1")
                .header("destination", "/user/queue/x"),
            "not allowed to SUBSCRIBE to /user/queue/x",
        ),
        (
            Some("alice"),
            Frame::new(Command::Send).header("destination", "/topic/x"),
            "not allowed to SEND to /topic/x",
        ),
        (
            Some("alice"),
            Frame::new(Command::Send).header("destination", "/user/bob/queue/x"),
            "not allowed to SEND to /user/bob/queue/x",
        ),
        (
            Some("alice"),
            Frame::new(Command::Subscribe)
                .header("id", "1")
                .header("destination", "/user/bob/queue/trade-confirmation"),
            "not allowed to SUBSCRIBE to /user/bob/queue/trade-confirmation",
        ),
        (
            Some("alice"),
            Frame::new(Command::Send).header("destination", "/app/nothing-here"),
            "no handler for /app/nothing-here",
        ),
    ];
    for (login, frame, expected) in cases {
        let mut c = Client::tcp(&b).await;
        match login {
            Some(l) => c.connect_as(l, &format!("{l}-pw")).await,
            None => c.connect_anonymously().await,
        };
        c.send(frame).await;
        c.expect_error(expected).await;
    }
    // What is allowed: anonymous reads topics; a trader reads its own user queue.
    let mut anon = Client::tcp(&b).await;
    anon.connect_anonymously().await;
    anon.subscribe("q", "/topic/stock-quotes").await;
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice
        .subscribe("mine", "/user/queue/trade-confirmation")
        .await;
}

// ---- user destinations ---------------------------------------------------------

#[tokio::test]
async fn user_destinations_reach_every_session_of_that_user_and_nobody_else() {
    let b = broker("[quotes]\ninterval_ms = 60000");
    let mut alice1 = Client::ws(&b).await;
    alice1.connect_as("alice", "alice-pw").await;
    alice1.subscribe("n", "/user/queue/notes").await;
    let mut alice2 = Client::tcp(&b).await;
    alice2.connect_as("alice", "alice-pw").await;
    alice2.subscribe("n", "/user/queue/notes").await;
    let mut bob = Client::ws(&b).await;
    bob.connect_as("bob", "bob-pw").await;
    bob.subscribe("n", "/user/queue/notes").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/user/alice/queue/notes", "for alice").await;
    svc.publish("/user/bob/queue/notes", "for bob").await;
    for a in [&mut alice1, &mut alice2] {
        let m = a.expect(Command::Message).await;
        assert_eq!(m.headers.get("destination"), Some("/user/queue/notes"));
        assert_eq!(&m.body[..], b"for alice");
    }
    // Bob's first message is his own: alice's never reached him.
    assert_eq!(&bob.expect(Command::Message).await.body[..], b"for bob");
}

// ---- quotes ----------------------------------------------------------------------

#[tokio::test]
async fn quotes_tick_on_schedule_with_the_contract_shape() {
    let b = broker("[quotes]\ninterval_ms = 100");
    let mut c = Client::ws(&b).await;
    c.connect_anonymously().await;
    c.subscribe("all", "/topic/stock-quotes").await;
    c.subscribe("one", "/topic/stock-quotes.AAPL").await;
    // Ticks on schedule to the millisecond are tested with paused time in the
    // market's unit tests; here, that quotes keep coming with the contract shape.
    let mut arrivals = 0;
    let mut last_all = None;
    while arrivals < 8 {
        let m = c.expect(Command::Message).await;
        if m.headers.get("subscription") == Some("one") {
            let q = json(&m);
            assert_eq!(q["symbol"], "AAPL");
            continue;
        }
        if m.headers.get("retained") != Some("true") {
            arrivals += 1;
        }
        last_all = Some(json(&m));
    }
    let quotes = last_all.unwrap();
    let quotes = quotes.as_array().unwrap();
    let symbols: Vec<&str> = quotes
        .iter()
        .map(|q| q["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA"]);
    for q in quotes {
        for field in ["price", "change", "changePercent"] {
            let v = q[field].as_f64().unwrap();
            assert!(
                ((v * 100.0).round() - v * 100.0).abs() < 1e-6,
                "{field} {v} not rounded to cents"
            );
        }
        assert!(q["price"].as_f64().unwrap() >= 0.01);
        assert!(q["volume"].is_u64());
        let ts = q["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "{ts}"
        );
        assert!(ts.ends_with('Z'));
    }
}

#[tokio::test]
async fn a_new_subscriber_gets_the_latest_quote_at_once_marked_retained() {
    // One tick happens at start; the next is a minute away.
    let b = broker("[quotes]\ninterval_ms = 60000");
    // A first subscriber sees the first tick happen (or its retained copy).
    let mut first = Client::ws(&b).await;
    first.connect_anonymously().await;
    first.subscribe("all", "/topic/stock-quotes").await;
    first.expect(Command::Message).await;
    // The next tick is a minute away: what a new subscriber gets at once, within
    // the usual bound, is the retained quote.
    let mut c = Client::ws(&b).await;
    c.connect_anonymously().await;
    c.subscribe("all", "/topic/stock-quotes").await;
    let m = c.expect(Command::Message).await;
    assert_eq!(m.headers.get("retained"), Some("true"));
    assert_eq!(json(&m).as_array().unwrap().len(), 6);
    // A wildcard subscription gets every matching retained destination.
    c.subscribe("each", "/topic/stock-quotes.*").await;
    let mut symbols = Vec::new();
    for _ in 0..6 {
        let m = c.expect(Command::Message).await;
        assert_eq!(m.headers.get("retained"), Some("true"));
        symbols.push(json(&m)["symbol"].as_str().unwrap().to_owned());
    }
    symbols.sort();
    assert_eq!(symbols, ["AAPL", "AMZN", "GOOGL", "MSFT", "NVDA", "TSLA"]);
    // Retention is general: any configured topic, published by a service.
    let b = broker("[topics]\nretain = [\"/topic/news\"]\n[quotes]\ninterval_ms = 60000");
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/news", "headline").await;
    svc.publish("/topic/other", "not kept").await;
    let mut late = Client::tcp(&b).await;
    late.connect_anonymously().await;
    late.subscribe("n", "/topic/news").await;
    let m = late.expect(Command::Message).await;
    assert_eq!(
        (m.headers.get("retained"), &m.body[..]),
        (Some("true"), &b"headline"[..])
    );
}

// ---- trading ---------------------------------------------------------------------

#[tokio::test]
async fn market_orders_execute_at_the_quote_and_are_private_to_the_trader() {
    let b = broker("[quotes]\ninterval_ms = 60000");
    let mut tape = Client::ws(&b).await;
    tape.connect_anonymously().await;
    tape.subscribe("tape", "/topic/market-activity").await;
    tape.subscribe("aapl", "/topic/stock-quotes.AAPL").await;
    let quote = json(&tape.expect(Command::Message).await);
    let price = quote["price"].as_f64().unwrap();
    let mut alice = trader(&b, "alice").await;
    let mut alice_tab2 = trader(&b, "alice").await;
    let mut bob = trader(&b, "bob").await;

    alice
        .trade(r#"{"symbol":"AAPL","quantity":10,"orderType":"BUY","user":"bob"}"#)
        .await;
    for c in [&mut alice, &mut alice_tab2] {
        let conf = json(&next_on(c, "conf").await);
        assert_eq!(conf["status"], "EXECUTED");
        assert_eq!(conf["symbol"], "AAPL");
        assert_eq!(conf["quantity"], 10);
        assert_eq!(conf["orderType"], "BUY");
        assert_eq!(conf["executedPrice"].as_f64(), Some(price));
        assert!(
            conf["tradeId"].is_string()
                && conf["executionTime"].is_string()
                && conf["message"].is_string()
        );
    }
    let t = json(&next_on(&mut tape, "tape").await);
    assert_eq!(
        (
            t["symbol"].as_str(),
            t["price"].as_f64(),
            t["quantity"].as_u64(),
            t["side"].as_str()
        ),
        (Some("AAPL"), Some(price), Some(10), Some("BUY"))
    );
    assert!(t.get("user").is_none() && !t.to_string().contains("alice"));

    // Bob's first confirmation is his own SELL: alice's never reached him.
    bob.trade(r#"{"symbol":"MSFT","quantity":3,"orderType":"SELL"}"#)
        .await;
    let conf = json(&next_on(&mut bob, "conf").await);
    assert_eq!(
        (conf["symbol"].as_str(), conf["orderType"].as_str()),
        (Some("MSFT"), Some("SELL"))
    );
}

#[tokio::test]
async fn a_limit_order_goes_pending_then_executes_when_the_price_crosses() {
    // ACME falls 5% a tick with no noise: a limit BUY 10% down fills in 2-3 ticks.
    let b = broker(
        "[quotes]\ninterval_ms = 100\n[[quotes.symbols]]\nsymbol = \"ACME\"\nprice = 100.0\nvolatility = 0.0\ndrift = -0.05",
    );
    let mut alice = trader(&b, "alice").await;
    alice.subscribe("q", "/topic/stock-quotes.ACME").await;
    let now = json(&next_on(&mut alice, "q").await)["price"]
        .as_f64()
        .unwrap();
    let limit = (now * 0.9 * 100.0).round() / 100.0;
    alice
        .trade(&format!(
            r#"{{"symbol":"ACME","quantity":5,"orderType":"BUY","limitPrice":{limit}}}"#
        ))
        .await;
    let pending = json(&next_on(&mut alice, "conf").await);
    assert_eq!(pending["status"], "PENDING");
    assert!(pending["executedPrice"].is_null());
    let done = json(&next_on(&mut alice, "conf").await);
    assert_eq!(done["status"], "EXECUTED");
    assert_eq!(done["tradeId"], pending["tradeId"]);
    assert!(done["executedPrice"].as_f64().unwrap() <= limit);
}

#[tokio::test]
async fn an_unfillable_limit_order_expires() {
    let b = broker(
        "[quotes]\ninterval_ms = 60000\n[trading]\nlimit_order_ttl_ms = 300\nmax_pending_per_user = 1",
    );
    let mut alice = trader(&b, "alice").await;
    alice
        .trade(r#"{"symbol":"AAPL","quantity":1,"orderType":"BUY","limitPrice":0.01}"#)
        .await;
    let pending = json(&next_on(&mut alice, "conf").await);
    assert_eq!(pending["status"], "PENDING");
    // The per-user pending limit holds while it waits.
    alice
        .trade(r#"{"symbol":"AAPL","quantity":1,"orderType":"SELL","limitPrice":99999}"#)
        .await;
    assert_eq!(
        json(&next_on(&mut alice, "err").await)["error"],
        "TOO_MANY_PENDING"
    );
    let expired = json(&next_on(&mut alice, "conf").await);
    assert_eq!(
        (expired["status"].as_str(), &expired["tradeId"]),
        (Some("EXPIRED"), &pending["tradeId"])
    );
}

#[tokio::test]
async fn every_refusal_is_a_json_error_and_the_connection_stays_open() {
    let b = broker("[quotes]\ninterval_ms = 60000");
    let mut alice = trader(&b, "alice").await;
    for (body, code) in [
        ("not json", "INVALID_JSON"),
        (
            r#"{"symbol":"XYZ","quantity":1,"orderType":"BUY"}"#,
            "UNKNOWN_SYMBOL",
        ),
        (
            r#"{"symbol":"AAPL","quantity":0,"orderType":"BUY"}"#,
            "INVALID_QUANTITY",
        ),
        (
            r#"{"symbol":"AAPL","quantity":-3,"orderType":"BUY"}"#,
            "INVALID_QUANTITY",
        ),
        (
            r#"{"symbol":"AAPL","quantity":1.5,"orderType":"BUY"}"#,
            "INVALID_QUANTITY",
        ),
        (
            r#"{"symbol":"AAPL","quantity":99999999,"orderType":"BUY"}"#,
            "INVALID_QUANTITY",
        ),
        (
            r#"{"symbol":"AAPL","quantity":1,"orderType":"HOLD"}"#,
            "INVALID_ORDER_TYPE",
        ),
        (
            r#"{"symbol":"AAPL","quantity":1,"orderType":"BUY","limitPrice":-1}"#,
            "INVALID_LIMIT_PRICE",
        ),
    ] {
        alice.trade(body).await;
        let e = json(&next_on(&mut alice, "err").await);
        assert_eq!(e["error"], code, "{body}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still connected and trading.
    alice
        .trade(r#"{"symbol":"AAPL","quantity":1,"orderType":"SELL"}"#)
        .await;
    assert_eq!(
        json(&next_on(&mut alice, "conf").await)["status"],
        "EXECUTED"
    );
}

// ---- the application can be turned off ----------------------------------------

#[tokio::test]
async fn with_trading_off_nothing_publishes_quotes_and_app_trade_has_no_handler() {
    // Quotes every 20 ms if the scheduler ran.
    let b = broker("[trading]\nenabled = false\n[quotes]\ninterval_ms = 20");
    let mut watcher = Client::tcp(&b).await;
    watcher.connect_anonymously().await;
    watcher.subscribe("all", "/topic/stock-quotes").await;
    watcher.subscribe("one", "/topic/stock-quotes.*").await;
    // Ten ticks' worth of time in which a running scheduler would have published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut svc = Client::tcp(&b).await;
    svc.connect_as("svc", "svc-pw").await;
    svc.publish("/topic/stock-quotes", "control").await;
    // The positive control is the first and only thing the watcher got.
    assert_eq!(watcher.message_on("/topic/stock-quotes").await, "control");
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice
        .trade(r#"{"symbol":"AAPL","quantity":1,"side":"BUY"}"#)
        .await;
    let e = alice.expect_error("no handler for /app/trade").await;
    assert_eq!(e.headers.get("message"), Some("no handler for /app/trade"));
}
