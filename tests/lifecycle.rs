//! Start-up and shutdown: graceful close of every connection, the real binary on
//! SIGINT, and refusal of bad configuration.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, TIMEOUT, broker, http_get};
use futures_util::{SinkExt, StreamExt};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};
use stompede::codec::{Command, Frame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn shutdown_flushes_and_closes_every_connection() {
    let b = broker("");
    let mut tcp = Client::tcp(&b).await;
    tcp.connect().await;
    tcp.subscribe("0", "/topic/bye").await;
    let req = format!("ws://{}/ws", b.http_addr)
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("CONNECT\naccept-version:1.2\n\n\0"))
        .await
        .unwrap();
    let _connected = tokio::time::timeout(TIMEOUT, ws.next()).await.unwrap();
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    publisher
        .send(
            Frame::new(Command::Send)
                .header("destination", "/topic/bye")
                .body("last"),
        )
        .await;
    assert_eq!(tcp.message_on("/topic/bye").await, "last");
    // A queue exists too: its task must stop with the broker.
    publisher.publish("/queue/at-shutdown", "waiting").await;

    let started = Instant::now();
    assert!(
        b.shutdown(Duration::from_secs(5)).await,
        "connections did not finish"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // WebSocket: a close frame saying the server is going away.
    let mut code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(TIMEOUT, ws.next()).await {
        match msg {
            Ok(Message::Close(Some(frame))) => code = Some(frame.code),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(CloseCode::Away));
    // TCP: the stream ends.
    tcp.expect_closed().await;
    assert_eq!(b.broker.connection_count(), 0);
}

/// Kills the broker process if a test fails before it exits by itself.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
/// SIGINT (Ctrl-C) stops at once; SIGTERM drains (tests/deployment/drain.rs).
async fn the_binary_serves_and_exits_cleanly_at_once_on_sigint() {
    let http = free_port();
    let stomp = free_port();
    let store = tempfile::tempdir().unwrap();
    let mut guard = KillOnDrop(
        Process::new(env!("CARGO_BIN_EXE_stompede"))
            .env("STOMPEDE__STORE__PATH", store.path())
            .env("STOMPEDE__SERVER__HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("STOMPEDE__SERVER__STOMP_ADDR", format!("127.0.0.1:{stomp}"))
            .env("STOMPEDE__LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let addr = format!("127.0.0.1:{http}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "broker did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let mut c = Client::ws_with(addr, Some("v12.stomp"), None)
        .await
        .unwrap();
    c.connect_anonymously().await;

    let status = Process::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    c.expect_closed().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "broker did not exit after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    // JSON logs were asked for: every line is a JSON object.
    assert!(log.lines().next().unwrap().starts_with('{'), "{log}");
    assert!(log.contains("shutting down"));
}

fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_stompede"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &[],
            &[("STOMPEDE__LIMITS__NO_SUCH_KEY", "1")],
            "no_such_key",
        ),
        (
            &[],
            &[("STOMPEDE__SERVER__STOMP_ADDR", "not-an-address")],
            "server.stomp_addr",
        ),
        (
            &[],
            &[("STOMPEDE__LIMITS__MAX_FRAME_BYTES", "lots")],
            "max_frame_bytes",
        ),
        (&["--config", "/nonexistent/broker.toml"], &[], "not found"),
    ];
    for (args, env, expected) in cases {
        let (code, stderr) = run_binary(args, env);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr:?} lacks {expected:?}");
    }
}

#[test]
fn hash_password_prints_an_argon2id_hash_of_stdin_minus_one_newline() {
    use argon2::password_hash::PasswordVerifier;
    use std::io::Write;
    let hash_of = |input: &[u8]| {
        let mut child = Process::new(env!("CARGO_BIN_EXE_stompede"))
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let verifies = |hash: &str, pw: &[u8]| {
        let parsed = argon2::password_hash::phc::PasswordHash::new(hash).unwrap();
        argon2::Argon2::default()
            .verify_password(pw, &parsed)
            .is_ok()
    };
    let h = hash_of(b"s3cret pass\n");
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert!(verifies(&h, b"s3cret pass"));
    assert!(!verifies(&h, b"s3cret pass\n"));
    // Only one trailing newline is dropped; a second one is part of the password.
    let h2 = hash_of(b"pw\n\n");
    assert!(verifies(&h2, b"pw\n") && !verifies(&h2, b"pw"));
    // The printed hash is accepted by the configuration.
    let toml =
        format!("[[auth.users]]\nlogin = \"x\"\npassword_hash = \"{h}\"\nroles = [\"trader\"]\n");
    assert!(stompede::config::Config::from_toml(&toml).is_ok());
}
