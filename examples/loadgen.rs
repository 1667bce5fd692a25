//! Load generator for STOMP-over-WebSocket brokers (stompede, RabbitMQ Web-STOMP, ...).
//!
//! ```text
//! cargo run --release --example loadgen -- fanout --url ws://127.0.0.1:8080/ws --subscribers 100
//! cargo run --release --example loadgen -- fanout --subscribers 1000 --rate 100 --seconds 20
//! cargo run --release --example loadgen -- idle --connections 10000 --pid <broker pid>
//! ```
//!
//! `fanout`: M publishers send 128-byte messages (by default) to one topic that N
//! subscribers read. Without `--rate` publishers go as fast as the broker delivers:
//! they keep at most `--window` messages per subscriber in flight, so the figure is
//! the sustained rate with zero loss. Every body carries its send time; subscribers
//! record publish-to-receive latency. Reports delivered msgs/s, loss and percentiles.
//!
//! `idle`: opens N WebSocket connections that CONNECT and SUBSCRIBE, then sit idle,
//! and reports the broker's RSS growth per connection (read from /proc/PID/status).
//!
//! `logins`: N WebSocket connections CONNECT with `--login`/`--passcode` all at
//! once (a reconnect storm); one refused with "retry" tries again after 100 ms.
//! Reports how long until all are in and the broker's RSS before, right after, and
//! after they sit idle for `--settle` seconds.
//!
//! Only loopback addresses are accepted; every run is bounded in time.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stompede::codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, clap::Args, Clone)]
struct Target {
    /// WebSocket URL of the broker (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// STOMP login, if the broker needs one (RabbitMQ: guest).
    #[arg(long)]
    login: Option<String>,
    /// STOMP passcode.
    #[arg(long)]
    passcode: Option<String>,
    /// STOMP host header (RabbitMQ takes it as the virtual host).
    #[arg(long, default_value = "/")]
    host: String,
    /// Label printed with the results.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Subscribers and idle connections connect without login (stompede lets
    /// anonymous clients read topics); only publishers use --login.
    #[arg(long)]
    anonymous_readers: bool,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Publishers to one topic, subscribers reading it.
    Fanout {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Body size in bytes (at least 40).
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// Messages per second per publisher; omit for as fast as delivered.
        #[arg(long)]
        rate: Option<u64>,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Messages per subscriber allowed in flight in max-rate mode.
        #[arg(long, default_value_t = 500)]
        window: u64,
        #[arg(long, default_value = "/topic/loadgen")]
        destination: String,
        /// What subscribers subscribe to (default: the destination itself), e.g. a
        /// wildcard pattern matching it, to measure pattern matching.
        #[arg(long)]
        subscribe_to: Option<String>,
        /// Comma-separated WebSocket URLs the subscribers spread over, round-robin
        /// (default: --url); publishers use --url. For a cluster's nodes.
        #[arg(long)]
        subscriber_urls: Option<String>,
    },
    /// Producers to one queue, competing consumers acking each message
    /// (client-individual); reports consumed msgs/s and checks none is lost.
    Queue(QueueArgs),
    /// A history replay: publishes `messages` to a `topics.history` destination,
    /// then one subscriber asks for them all (`x-stream-offset: first`); reports
    /// replayed messages per second and checks their order.
    Replay {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value = "/topic/loadgen.history")]
        destination: String,
    },
    /// A queue filled, then drained: SENDs `messages` to `--fill-via` (a queue, or
    /// an `/app` destination a route sends to the queue) with receipts, then
    /// one consumer reads them all from `--from`, acking each
    /// (client-individual); reports both rates. `--consumers 0` only fills (for
    /// a consumer in another language, benches/route_consumer.py).
    Drain {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value = "/queue/loadgen")]
        fill_via: String,
        #[arg(long, default_value = "/queue/loadgen")]
        from: String,
        #[arg(long, default_value_t = 100)]
        prefetch: u64,
        #[arg(long, default_value_t = 1)]
        consumers: u64,
    },
    /// A storm of password logins; reports time and broker RSS.
    Logins(LoginsArgs),
    /// Idle subscribed connections; reports broker RSS per connection.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// The broker's process id, to read its RSS.
        #[arg(long)]
        pid: u32,
        /// Seconds to hold the connections before measuring.
        #[arg(long, default_value_t = 5)]
        settle: u64,
    },
}

/// A storm of logins.
#[derive(Debug, clap::Args)]
struct LoginsArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// The broker's process id, to read its RSS.
    #[arg(long)]
    pid: u32,
    /// Seconds to hold the connections idle before measuring again.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Log in with a distinct HS256 JWT per connection (sub `user{i}`), signed
    /// with this secret, instead of --login/--passcode.
    #[arg(long)]
    token_secret: Option<String>,
    /// Log in as `user{i % N}` with password `pw-user{i % N}` instead of
    /// --login/--passcode (the broker must have these users).
    #[arg(long)]
    distinct_users: Option<usize>,
    /// Spread the connections over this many loopback addresses (127.0.0.1 up),
    /// as a storm of real clients comes from many addresses.
    #[arg(long, default_value_t = 1)]
    spread: usize,
    /// Milliseconds before a refused client tries again (stompjs's default
    /// reconnect delay is 5000).
    #[arg(long, default_value_t = 100)]
    retry_ms: u64,
}

/// Process start, for timestamps in diagnostics.
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn check_loopback(url: &str) {
    let rest = url.split("://").nth(1).expect("URL with scheme");
    let hostport = rest.split('/').next().unwrap();
    let all_loopback = hostport
        .to_socket_addrs()
        .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    assert!(
        all_loopback,
        "loadgen only targets loopback addresses, not {hostport}"
    );
}

fn frame_bytes(frame: &Frame) -> Message {
    let mut out = BytesMut::new();
    encode(frame, Version::V1_2, &mut out);
    match Utf8Bytes::try_from(out.clone().freeze()) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Binary(out.freeze()),
    }
}

/// A connected client: the WebSocket and a decoder for what it reads.
struct Conn {
    ws: Ws,
    decoder: Decoder,
    buf: BytesMut,
    last_beat: Instant,
}

impl Conn {
    async fn open_reader(t: &Target) -> Conn {
        if t.anonymous_readers {
            let anonymous = Target {
                login: None,
                passcode: None,
                ..t.clone()
            };
            Conn::open(&anonymous).await
        } else {
            Conn::open(t).await
        }
    }

    async fn open(t: &Target) -> Conn {
        try_login(t).await.expect("CONNECTED")
    }

    async fn send(&mut self, f: &Frame) {
        self.ws.send(frame_bytes(f)).await.expect("send");
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.decoder.decode(&mut self.buf).expect("valid frames") {
                Some(Decoded::Frame(f)) => return Some(f),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            // Readers also send a heart-beat EOL now and then, as real clients do:
            // servers such as RabbitMQ's Cowboy close connections that send nothing.
            if self.last_beat.elapsed() > Duration::from_secs(5) {
                self.last_beat = Instant::now();
                self.ws.send(Message::text("\n")).await.ok()?;
            }
            let next = tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await;
            let Ok(next) = next else { continue };
            match next? {
                Ok(Message::Text(t)) => self.buf.extend_from_slice(t.as_bytes()),
                Ok(Message::Binary(b)) => self.buf.extend_from_slice(&b),
                Ok(Message::Close(reason)) => {
                    eprintln!(
                        "connection closed by the broker after {:?}: {reason:?}",
                        START.get().map(|s| s.elapsed())
                    );
                    return None;
                }
                Err(e) => {
                    eprintln!("connection failed: {e}");
                    return None;
                }
                Ok(_) => {}
            }
        }
    }

    /// The next MESSAGE; `None` once `stop` is set and nothing more arrives.
    /// Panics if the broker closes the connection or sends anything else.
    async fn next_message(&mut self, stop: &AtomicBool) -> Option<Frame> {
        loop {
            let f = match tokio::time::timeout(Duration::from_secs(2), self.next()).await {
                Ok(Some(f)) => f,
                Ok(None) => panic!("connection closed by the broker"),
                Err(_) if stop.load(Ordering::Acquire) => return None,
                Err(_) => continue,
            };
            if f.command != Command::Message {
                panic!("unexpected {} {:?}", f.command, f.headers.get("message"));
            }
            return Some(f);
        }
    }

    async fn subscribe(&mut self, id: &str, destination: &str) {
        self.send(
            &Frame::new(Command::Subscribe)
                .header("id", id)
                .header("destination", destination)
                .header("ack", "auto")
                .header("receipt", id),
        )
        .await;
        let f = self.next().await.expect("RECEIPT");
        assert_eq!(f.command, Command::Receipt, "{f:?}");
    }
}

async fn replay(t: Target, messages: u64, size: usize, destination: String) {
    let mut publisher = Conn::open(&t).await;
    // Receipts every 1,000 messages keep the publisher from running far ahead.
    for seq in 0..messages {
        let mut f = Frame::new(Command::Send)
            .header("destination", destination.as_str())
            .body(body(seq, size.max(40)));
        if seq % 1000 == 999 || seq + 1 == messages {
            f = f.header("receipt", "r");
        }
        publisher.send(&f).await;
        if f.headers.get("receipt").is_some() {
            let r = tokio::time::timeout(Duration::from_secs(60), publisher.next())
                .await
                .expect("a receipt within 60 s")
                .expect("RECEIPT");
            assert_eq!(r.command, Command::Receipt, "{r:?}");
        }
    }
    let mut reader = Conn::open_reader(&t).await;
    let started = Instant::now();
    reader
        .send(
            &Frame::new(Command::Subscribe)
                .header("id", "replay")
                .header("destination", destination.as_str())
                .header("x-stream-offset", "first"),
        )
        .await;
    let stop = AtomicBool::new(false);
    let mut last: Option<u64> = None;
    let mut got = 0u64;
    while got < messages {
        let deadline = tokio::time::timeout(Duration::from_secs(60), reader.next_message(&stop));
        let f = deadline
            .await
            .expect("the replay within 60 s")
            .expect("a MESSAGE");
        let (seq, _) = parse_body(&f.body).expect("a numbered body");
        assert!(
            last.is_none_or(|l| seq == l + 1),
            "replay out of order at {seq}"
        );
        last = Some(seq);
        got += 1;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{} replay messages={messages} size={size} : replayed {:.0} msg/s ({:.3} s)",
        t.label,
        messages as f64 / took,
        took
    );
}

/// Waits (bounded: at most about 2 s) while `too_much_in_flight` holds, or until `stop`.
async fn wait_while(stop: &AtomicBool, too_much_in_flight: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if stop.load(Ordering::Acquire) || !too_much_in_flight() {
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `seq:sent_ns:` then padding to `size` bytes.
fn body(seq: u64, size: usize) -> String {
    let mut b = format!("{seq}:{}:", now_ns());
    while b.len() < size {
        b.push('x');
    }
    b
}

fn parse_body(b: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let mut it = s.split(':');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[allow(clippy::too_many_arguments)]
async fn fanout(
    t: Target,
    publishers: usize,
    subscribers: usize,
    size: usize,
    rate: Option<u64>,
    seconds: u64,
    window: u64,
    (destination, subscribe_to): (String, String),
    subscriber_urls: Vec<String>,
) {
    let size = size.max(40);
    // Messages a subscriber saw twice, or before one it had seen (per publisher).
    let disordered = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Each subscriber reads (and so heart-beats) as soon as it is subscribed; opening
    // goes a few at a time so the handshakes do not pile up.
    let ready = Arc::new(tokio::sync::Semaphore::new(50));
    let subscribed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..subscribers {
        let mut t = t.clone();
        if !subscriber_urls.is_empty() {
            t.url = subscriber_urls[i % subscriber_urls.len()].clone();
        }
        let disordered = disordered.clone();
        let d = subscribe_to.clone();
        let delivered = delivered.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let ready = ready.clone();
        let subscribed = subscribed.clone();
        readers.push(tokio::spawn(async move {
            let permit = ready.acquire_owned().await.unwrap();
            let mut c = Conn::open_reader(&t).await;
            c.subscribe(&format!("s{i}"), &d).await;
            drop(permit);
            subscribed.fetch_add(1, Ordering::Release);
            let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
            let mut counted = 0u64;
            let mut last: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
            loop {
                let Some(f) = c.next_message(&stop).await else {
                    break;
                };
                delivered.fetch_add(1, Ordering::Relaxed);
                if let Some((seq, _)) = parse_body(&f.body) {
                    let (publisher, n) = (seq >> 40, seq & ((1 << 40) - 1));
                    match last.insert(publisher, n) {
                        Some(before) if before >= n => {
                            disordered.fetch_add(1, Ordering::Relaxed);
                            last.insert(publisher, before);
                        }
                        _ => {}
                    }
                }
                if let Some((_, sent)) =
                    parse_body(&f.body).filter(|_| measuring.load(Ordering::Relaxed))
                {
                    let _ = hist.record(now_ns().saturating_sub(sent).max(1_000));
                    counted += 1;
                }
            }
            (hist, counted)
        }));
    }
    let setup_deadline = Instant::now() + Duration::from_secs(300);
    while subscribed.load(Ordering::Acquire) < subscribers as u64 {
        assert!(
            Instant::now() < setup_deadline,
            "subscribers not ready in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{} subscribers ready after {:?}",
        subscribers,
        START.get().map(|s| s.elapsed())
    );
    let published = Arc::new(AtomicU64::new(0));
    let mut pubs = Vec::new();
    for publisher in 0..publishers as u64 {
        let t = t.clone();
        let d = destination.clone();
        let published = published.clone();
        let delivered = delivered.clone();
        let stop = stop.clone();
        let n_subs = subscribers as u64;
        pubs.push(tokio::spawn(async move {
            let mut c = Conn::open(&t).await;
            // The publisher in the high bits: subscribers check order per publisher.
            let mut seq = publisher << 40;
            let mut tick =
                rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r as f64)));
            while !stop.load(Ordering::Acquire) {
                match &mut tick {
                    Some(tick) => {
                        tick.tick().await;
                    }
                    None => {
                        // Zero-loss max rate: wait while too much is in flight.
                        wait_while(&stop, || {
                            published.load(Ordering::Relaxed) * n_subs
                                > delivered.load(Ordering::Relaxed) + window * n_subs
                        })
                        .await;
                    }
                }
                let f = Frame::new(Command::Send)
                    .header("destination", d.as_str())
                    .header("content-type", "text/plain")
                    .body(body(seq, size));
                c.send(&f).await;
                published.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
            c.send(&Frame::new(Command::Disconnect).header("receipt", "bye"))
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p0 = published.load(Ordering::Relaxed);
    let d0 = delivered.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Release);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let p1 = published.load(Ordering::Relaxed);
    let d1 = delivered.load(Ordering::Relaxed);
    measuring.store(false, Ordering::Release);
    stop.store(true, Ordering::Release);
    for p in pubs {
        p.await.unwrap();
    }
    // Let everything in flight arrive, then count loss over the whole run.
    let total_published = published.load(Ordering::Relaxed);
    let expected = total_published * subscribers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).unwrap();
    let mut samples = 0;
    for r in readers {
        let (h, n) = r.await.unwrap();
        hist.add(&h).unwrap();
        samples += n;
    }
    let got = delivered.load(Ordering::Relaxed);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e6;
    println!(
        "{} fanout pubs={publishers} subs={subscribers} size={size} rate={} : published {:.0} msg/s, delivered {:.0} msg/s, lost {} of {}, duplicated or out of order {}, latency ms p50={:.3} p99={:.3} p99.9={:.3} max={:.3} (n={samples})",
        t.label,
        rate.map(|r| r.to_string()).unwrap_or_else(|| "max".into()),
        (p1 - p0) as f64 / elapsed,
        (d1 - d0) as f64 / elapsed,
        expected.saturating_sub(got),
        expected,
        disordered.load(Ordering::Relaxed),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1e6,
    );
}

/// The `queue` mode's options.
#[derive(clap::Args, Debug)]
struct QueueArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 4)]
    producers: usize,
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    #[arg(long, default_value_t = 128)]
    size: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages in flight (published, not yet consumed) at most.
    #[arg(long, default_value_t = 2000)]
    window: u64,
    /// prefetch-count of each consumer.
    #[arg(long, default_value_t = 100)]
    prefetch: u64,
    #[arg(long, default_value = "/queue/loadgen")]
    destination: String,
    /// Send every message with `persistent: true` (stored by the broker).
    #[arg(long)]
    persistent: bool,
    /// Ask for a receipt on every SEND, with at most this many unanswered per
    /// producer (0: no receipts).
    #[arg(long, default_value_t = 0)]
    receipts: u64,
}

async fn queue(args: QueueArgs) {
    let QueueArgs {
        target: t,
        producers,
        consumers,
        size,
        seconds,
        window,
        prefetch,
        destination,
        persistent,
        receipts,
    } = args;
    let receipted = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for i in 0..consumers {
        let t = t.clone();
        let d = destination.clone();
        let consumed = consumed.clone();
        let stop = stop.clone();
        let mut c = Conn::open(&t).await;
        c.send(
            &Frame::new(Command::Subscribe)
                .header("id", format!("c{i}"))
                .header("destination", d.as_str())
                .header("ack", "client-individual")
                .header("prefetch-count", prefetch.to_string())
                .header("receipt", "sub"),
        )
        .await;
        let f = c.next().await.expect("RECEIPT");
        assert_eq!(f.command, Command::Receipt, "{f:?}");
        readers.push(tokio::spawn(async move {
            loop {
                let Some(f) = c.next_message(&stop).await else {
                    break;
                };
                let ack = f.headers.get("ack").expect("ack header").to_owned();
                c.send(&Frame::new(Command::Ack).header("id", ack)).await;
                consumed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut pubs = Vec::new();
    for _ in 0..producers {
        let t = t.clone();
        let d = destination.clone();
        let (published, consumed, stop) = (published.clone(), consumed.clone(), stop.clone());
        let receipted = receipted.clone();
        pubs.push(tokio::spawn(async move {
            let mut c = Conn::open(&t).await;
            let mut seq = 0u64;
            let mut unanswered = 0;
            let await_receipt = async |c: &mut Conn| {
                let f = c.next().await.expect("RECEIPT");
                assert_eq!(f.command, Command::Receipt, "{f:?}");
                receipted.fetch_add(1, Ordering::Relaxed);
            };
            while !stop.load(Ordering::Acquire) {
                wait_while(&stop, || {
                    published.load(Ordering::Relaxed) > consumed.load(Ordering::Relaxed) + window
                })
                .await;
                let mut f = Frame::new(Command::Send)
                    .header("destination", d.as_str())
                    .body(body(seq, size.max(40)));
                if persistent {
                    f = f.header("persistent", "true");
                }
                if receipts > 0 {
                    f = f.header("receipt", seq.to_string());
                    unanswered += 1;
                }
                c.send(&f).await;
                published.fetch_add(1, Ordering::Relaxed);
                seq += 1;
                while receipts > 0 && unanswered >= receipts {
                    await_receipt(&mut c).await;
                    unanswered -= 1;
                }
            }
            for _ in 0..unanswered {
                await_receipt(&mut c).await;
            }
            c.send(&Frame::new(Command::Disconnect).header("receipt", "bye"))
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c0 = consumed.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let rate = (consumed.load(Ordering::Relaxed) - c0) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    for p in pubs {
        p.await.unwrap();
    }
    let total = published.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumed.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.await.unwrap();
    }
    let got = consumed.load(Ordering::Relaxed);
    let receipts = match receipts {
        0 => "none".to_owned(),
        n => format!("every SEND ({n} in flight)"),
    };
    println!(
        "{} queue producers={producers} consumers={consumers} size={size} prefetch={prefetch} ack=client-individual persistent={persistent} receipts={receipts} : consumed {rate:.0} msg/s, lost {} of {total}, extra {}, receipted {}",
        t.label,
        total.saturating_sub(got),
        got.saturating_sub(total),
        receipted.load(Ordering::Relaxed),
    );
}

/// The `drain` mode: fills, then consumes.
async fn drain(
    t: Target,
    messages: u64,
    size: usize,
    (fill_via, from): (String, String),
    prefetch: u64,
    consumers: u64,
) {
    let mut c = Conn::open(&t).await;
    let began = Instant::now();
    // Receipts pipelined, at most 1000 unanswered.
    let mut unanswered = 0u64;
    for seq in 0..messages {
        c.send(
            &Frame::new(Command::Send)
                .header("destination", fill_via.as_str())
                .header("receipt", seq.to_string())
                .body(body(seq, size.max(40))),
        )
        .await;
        unanswered += 1;
        while unanswered >= 1000 {
            let f = c.next().await.expect("RECEIPT");
            assert_eq!(f.command, Command::Receipt, "{f:?}");
            unanswered -= 1;
        }
    }
    while unanswered > 0 {
        let f = c.next().await.expect("RECEIPT");
        assert_eq!(f.command, Command::Receipt, "{f:?}");
        unanswered -= 1;
    }
    let filled = began.elapsed().as_secs_f64();
    println!(
        "{} fill via {fill_via}: {messages} receipted in {filled:.2} s, {:.0} msg/s",
        t.label,
        messages as f64 / filled
    );
    if consumers == 0 {
        return;
    }
    c.send(
        &Frame::new(Command::Subscribe)
            .header("id", "drain")
            .header("destination", from.as_str())
            .header("ack", "client-individual")
            .header("prefetch-count", prefetch.to_string()),
    )
    .await;
    let began = Instant::now();
    let stop = AtomicBool::new(false);
    let mut got = 0u64;
    while got < messages {
        let f = tokio::time::timeout(Duration::from_secs(30), c.next_message(&stop))
            .await
            .expect("the queue ran dry before every message came")
            .expect("MESSAGE");
        let ack = f.headers.get("ack").expect("ack header").to_owned();
        c.send(&Frame::new(Command::Ack).header("id", ack)).await;
        got += 1;
    }
    let drained = began.elapsed().as_secs_f64();
    println!(
        "{} drain of {from} (Rust consumer, prefetch {prefetch}, an ACK each): {got} in {drained:.2} s, {:.0} msg/s",
        t.label,
        got as f64 / drained
    );
}

/// Opens a WebSocket and CONNECTs with the target's credentials: the connection, or
/// the ERROR message.
async fn try_login(t: &Target) -> Result<Conn, String> {
    try_login_from(t, None, t.login.as_deref(), t.passcode.as_deref()).await
}

/// [`try_login`] from loopback address `local` (if given) with these credentials.
async fn try_login_from(
    t: &Target,
    local: Option<std::net::IpAddr>,
    login: Option<&str>,
    passcode: Option<&str>,
) -> Result<Conn, String> {
    let mut req = t.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    let ws = match local {
        None => tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws),
        Some(ip) => {
            let hostport = t
                .url
                .split("://")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap();
            let addr = hostport.to_socket_addrs().unwrap().next().unwrap();
            let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| e.to_string())?;
            let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
            tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .map(|(ws, _)| ws)
        }
    }
    .map_err(|e| e.to_string())?;
    let mut c = Conn {
        ws,
        decoder: Decoder::new(Limits::default()),
        buf: BytesMut::new(),
        last_beat: Instant::now(),
    };
    let mut connect = Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("host", t.host.as_str())
        .header("heart-beat", "0,0");
    if let Some(l) = login {
        connect = connect.header("login", l);
    }
    if let Some(p) = passcode {
        connect = connect.header("passcode", p);
    }
    c.send(&connect).await;
    match c.next().await {
        Some(f) if f.command == Command::Connected => Ok(c),
        Some(f) => Err(f.headers.get("message").unwrap_or("ERROR").to_owned()),
        None => Err("closed".to_owned()),
    }
}

/// An HS256 JWT for `sub`, valid for an hour.
fn token_for(secret: &str, sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "roles": ["trader"], "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn logins(a: LoginsArgs) {
    let (t, connections, pid) = (a.target.clone(), a.connections, a.pid);
    let before = rss_kib(pid);
    // Tokens are made before the clock starts: an identity provider made them.
    let credentials: Vec<(Option<String>, Option<String>)> = (0..connections)
        .map(|i| match (&a.token_secret, a.distinct_users) {
            (Some(secret), _) => (None, Some(token_for(secret, &format!("user{i}")))),
            (None, Some(n)) => (
                Some(format!("user{}", i % n)),
                Some(format!("pw-user{}", i % n)),
            ),
            (None, None) => (t.login.clone(), t.passcode.clone()),
        })
        .collect();
    let started = Instant::now();
    let retries = Arc::new(AtomicU64::new(0));
    let mut opening = Vec::with_capacity(connections);
    for (i, (login, passcode)) in credentials.into_iter().enumerate() {
        let t = t.clone();
        let retries = retries.clone();
        let retry = Duration::from_millis(a.retry_ms);
        let local =
            (a.spread > 1).then(|| std::net::IpAddr::from([127, 0, 0, (1 + i % a.spread) as u8]));
        opening.push(tokio::spawn(async move {
            loop {
                // A refusal that says "retry", or a connect timeout while the
                // broker works through the storm, is retried as stompjs would.
                match try_login_from(&t, local, login.as_deref(), passcode.as_deref()).await {
                    Ok(mut c) => {
                        c.subscribe(&format!("s{i}"), "/topic/storm").await;
                        return c;
                    }
                    Err(e)
                        if (e.contains("retry")
                            || e.contains("not completed")
                            || e.contains("closed")
                            || e.contains("503"))
                            && started.elapsed() < Duration::from_secs(900) =>
                    {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(retry).await;
                    }
                    Err(e) => panic!("login refused: {e}"),
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(connections);
    for o in opening {
        conns.push(o.await.unwrap());
    }
    let took = started.elapsed();
    let peak = peak_rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(a.settle)).await;
    let after = rss_kib(pid);
    let how = match (&a.token_secret, a.distinct_users) {
        (Some(_), _) => "distinct JWTs".to_owned(),
        (None, Some(n)) => format!("passwords of {n} users"),
        (None, None) => "one user's password".to_owned(),
    };
    println!(
        "{} logins={connections} ({how}, from {} addresses): all subscribed after {:.2} s ({} retries); broker RSS {} MiB before, peak {} MiB, {} MiB after {} s idle ({:.1} KiB per connection)",
        t.label,
        a.spread,
        took.as_secs_f64(),
        retries.load(Ordering::Relaxed),
        before / 1024,
        peak / 1024,
        after / 1024,
        a.settle,
        after.saturating_sub(before) as f64 / connections as f64,
    );
    drop(conns);
}

/// The process's peak resident set (VmHWM) in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("broker pid");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("broker pid");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn idle(t: Target, connections: usize, pid: u32, settle: u64) {
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(connections);
    for chunk in (0..connections).collect::<Vec<_>>().chunks(200) {
        let mut opening = Vec::new();
        for &i in chunk {
            let t = t.clone();
            opening.push(tokio::spawn(async move {
                let mut c = Conn::open_reader(&t).await;
                c.subscribe(&format!("idle{i}"), "/topic/idle").await;
                c
            }));
        }
        for o in opening {
            conns.push(o.await.unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "opening took too long"
        );
    }
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / connections as f64;
    println!(
        "{} idle connections={connections}: broker RSS {before} KiB -> {after} KiB, {per:.1} KiB per connection (opened in {:.1} s)",
        t.label,
        started.elapsed().as_secs_f64() - settle as f64
    );
    drop(conns);
}

fn main() {
    let _ = START.set(Instant::now());
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match cli.mode {
            Mode::Fanout {
                target,
                publishers,
                subscribers,
                size,
                rate,
                seconds,
                window,
                destination,
                subscribe_to,
                subscriber_urls,
            } => {
                check_loopback(&target.url);
                let subscriber_urls: Vec<String> = subscriber_urls
                    .iter()
                    .flat_map(|u| u.split(','))
                    .map(str::to_owned)
                    .collect();
                subscriber_urls.iter().for_each(|u| check_loopback(u));
                assert!(seconds <= 600, "runs are bounded: at most 600 s");
                fanout(
                    target,
                    publishers,
                    subscribers,
                    size,
                    rate,
                    seconds,
                    window,
                    (destination.clone(), subscribe_to.unwrap_or(destination)),
                    subscriber_urls,
                )
                .await
            }
            Mode::Logins(args) => {
                check_loopback(&args.target.url);
                assert!(args.spread <= 250, "at most 250 loopback addresses");
                logins(args).await
            }
            Mode::Queue(args) => {
                check_loopback(&args.target.url);
                assert!(args.seconds <= 600, "runs are bounded: at most 600 s");
                queue(args).await
            }
            Mode::Replay {
                target,
                messages,
                size,
                destination,
            } => {
                check_loopback(&target.url);
                assert!(
                    messages <= 1_000_000,
                    "runs are bounded: at most 10^6 messages"
                );
                replay(target, messages, size, destination).await
            }
            Mode::Drain {
                target,
                messages,
                size,
                fill_via,
                from,
                prefetch,
                consumers,
            } => {
                check_loopback(&target.url);
                assert!(
                    messages <= 1_000_000 && consumers <= 1,
                    "runs are bounded: at most 10^6 messages, one consumer"
                );
                drain(
                    target,
                    messages,
                    size,
                    (fill_via, from),
                    prefetch,
                    consumers,
                )
                .await
            }
            Mode::Idle {
                target,
                connections,
                pid,
                settle,
            } => {
                check_loopback(&target.url);
                idle(target, connections, pid, settle).await
            }
        }
    });
}
