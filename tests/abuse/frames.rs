//! Hostile frames: header injection, heart-beat overflow, bad handshakes.

use crate::common::{Client, broker};
use stompede::codec::Command;

#[tokio::test]
async fn a_nul_in_a_header_is_refused_and_never_forwarded() {
    let b = broker("");
    let mut sub = Client::tcp(&b).await;
    sub.connect_anonymously().await;
    sub.subscribe("s", "/topic/inj").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    // A header value with a raw NUL and, escaped, the head of a forged MESSAGE.
    svc.send_raw(
        b"SEND\ndestination:/topic/inj\nx-evil:a\0\\nMESSAGE\\nsubscription\\cs\\nmessage-id\\cforged\\n\\nforged\nreceipt:r\n\nreal\0",
    )
    .await;
    let e = svc.expect_error("NUL").await;
    assert!(e.headers.get("message").unwrap().contains("header"));
    // A NUL in a header name is refused the same way.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.send_raw(b"SEND\ndestination:/topic/inj\nx\0y:1\n\nreal\0")
        .await;
    svc.expect_error("NUL").await;
    // Nothing reached the subscriber: its first MESSAGE is this control.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/inj", "control").await;
    let m = sub.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"control");
    assert!(m.headers.get("x-evil").is_none());
}
