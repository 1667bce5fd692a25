//! Frames that start and never finish: bounded in time (`limits.frame_timeout_ms`)
//! and, across all connections, in memory (`limits.max_pending_frame_bytes`).

use crate::common::{Client, broker};
use stompede::codec::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

#[tokio::test]
async fn an_unfinished_frame_is_cut_off_after_the_frame_timeout() {
    let b = broker("[limits]\nframe_timeout_ms = 300");
    let mut watcher = Client::ws(&b).await;
    watcher.connect_anonymously().await;
    watcher.subscribe("w", "/topic/news").await;
    // TCP: a SEND whose body never ends (heart-beats 0,0: no other deadline).
    let mut tcp = Client::tcp(&b).await;
    tcp.connect().await;
    tcp.send_raw(b"SEND\ndestination:/topic/news\n\nnever finished")
        .await;
    // WebSocket: a STOMP frame split over WebSocket messages, never finished...
    let mut split = Client::ws(&b).await;
    split.connect().await;
    split
        .send_raw(b"SEND\ndestination:/topic/news\n\nhalf")
        .await;
    // ... and a WebSocket message whose final fragment never comes.
    let mut fragment = Client::ws(&b).await;
    fragment.connect().await;
    fragment
        .send_ws(Message::Frame(WsFrame::message(
            &b"SEND\ndestination:/topic/news\n\nfragment"[..],
            OpCode::Data(Data::Text),
            false,
        )))
        .await;
    for c in [&mut tcp, &mut split, &mut fragment] {
        c.expect_error("limits.frame_timeout_ms").await;
    }
    // Frames that keep finishing are never cut off, however long the connection
    // is busy; and the others were served all along.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    for n in 0..8 {
        svc.publish("/topic/news", &format!("n{n}")).await;
        assert_eq!(watcher.message_on("/topic/news").await, format!("n{n}"));
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    }
}

#[tokio::test]
async fn unfinished_frames_share_a_bounded_budget() {
    let b = broker(
        "[limits]\nmax_frame_bytes = 524288\nmax_pending_frame_bytes = 1048576\nframe_timeout_ms = 60000",
    );
    let partial = |n: usize| {
        let mut f = b"SEND\ndestination:/topic/big\n\n".to_vec();
        f.extend(std::iter::repeat_n(b'x', n));
        f
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::tcp(&b).await;
        c.connect().await;
        c.send_raw(&partial(400_000)).await;
        held.push(c);
    }
    // Let the broker read both before the third arrives.
    let mut probe = Client::tcp(&b).await;
    probe.connect().await;
    probe.publish("/topic/probe", "p").await;
    let mut third = Client::ws(&b).await;
    third.connect().await;
    third.send_raw(&partial(400_000)).await;
    third.expect_error("limits.max_pending_frame_bytes").await;
    // Small frames still pass, and once the holders go, so does a big one.
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    sub.subscribe("s", "/topic/big").await;
    probe.publish("/topic/big", "small").await;
    assert_eq!(sub.message_on("/topic/big").await, "small");
    drop(held);
    let mut big = partial(400_000);
    big.push(0);
    let deadline = tokio::time::Instant::now() + crate::common::TIMEOUT;
    loop {
        let mut c = Client::tcp(&b).await;
        c.connect().await;
        c.send_raw(&big).await;
        c.send_raw(b"SEND\ndestination:/topic/big\nreceipt:r\n\nafter\0")
            .await;
        let f = c.next_frame().await.unwrap();
        if f.command == Command::Receipt {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "budget not given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sub.expect(Command::Message).await.body.len(), 400_000);
}
