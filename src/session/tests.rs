//! The session core driven without sockets: bytes in through a script, frames out
//! of the outbox, time paused so deadlines are exact and tests take no real time.
//!
//! Logins here are tokens (checked on the session's own task): a password check
//! runs on a thread the paused clock cannot see, so the clock would jump to the
//! connect deadline while it runs.

use super::*;
use crate::codec::Limits;
use crate::config::Config;
use crate::engine::Refused;
use crate::outbox::OutboxReceiver;
use connect::MAX_HEARTBEAT_MS;
use jsonwebtoken::{EncodingKey, Header};
use tokio::sync::mpsc;

const SECRET: &str = "session-core-test-secret-of-enough-length";

/// Bytes a test feeds to the session; a closed channel is the peer closing.
struct Script(mpsc::UnboundedReceiver<Vec<u8>>);

impl Source for Script {
    async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, ReadError> {
        match self.0.recv().await {
            Some(bytes) => {
                buf.extend_from_slice(&bytes);
                Ok(bytes.len())
            }
            None => Ok(0),
        }
    }

    fn progress(&self) -> Option<Arc<Progress>> {
        None
    }
}

/// What the session put in its outbox, as the client would read it.
#[derive(Debug, PartialEq)]
enum Out {
    Frame(Frame),
    HeartBeatEvery(Duration),
    Close,
}

/// One session on a broker of its own, with the client's end of it.
struct Client {
    to_session: mpsc::UnboundedSender<Vec<u8>>,
    outbox: OutboxReceiver,
    waiting: VecDeque<Outgoing>,
    decoder: Decoder,
    _broker: Arc<Broker>,
    _store: tempfile::TempDir,
}

/// An engine whose link is down: it publishes nothing and says so; everything
/// else goes to the local engine it stands in front of (as a cluster engine would),
/// but queues, when it has a handle to give instead (a queue that never answers).
#[derive(Debug)]
struct LinkDown(
    Arc<crate::engine::LocalEngine>,
    Option<crate::queue::QueueHandle>,
);

impl crate::engine::Engine for LinkDown {
    fn kept_matching(&self, pattern: &str) -> crate::engine::KeptSpan {
        self.0.kept_matching(pattern)
    }
    fn publish_topic(
        &self,
        _: &str,
        _: &crate::codec::Headers,
        _: bytes::Bytes,
    ) -> Result<usize, Refused> {
        Err(Refused::Unavailable("the NATS link is down".into()))
    }
    fn publish_user(
        &self,
        _: &str,
        _: &str,
        _: &crate::codec::Headers,
        _: bytes::Bytes,
    ) -> Result<usize, Refused> {
        Err(Refused::Unavailable("the NATS link is down".into()))
    }
    fn subscribe_topic(
        &self,
        pattern: &str,
        s: Arc<crate::registry::Subscriber>,
        from: crate::command::StreamOffset,
    ) -> Result<crate::engine::Subscribed, Refused> {
        self.0.subscribe_topic(pattern, s, from)
    }
    fn unsubscribe_topic(&self, pattern: &str, session: u64, id: &str) -> bool {
        self.0.unsubscribe_topic(pattern, session, id)
    }
    fn subscribe_user(
        &self,
        login: &str,
        queue: &str,
        s: Arc<crate::registry::Subscriber>,
    ) -> Result<crate::engine::Subscribed, Refused> {
        self.0.subscribe_user(login, queue, s)
    }
    fn unsubscribe_user(&self, login: &str, queue: &str, session: u64, id: &str) -> bool {
        self.0.unsubscribe_user(login, queue, session, id)
    }
    fn queue(&self, name: &str) -> Result<crate::queue::QueueHandle, QueueError> {
        match &self.1 {
            Some(stalled) => Ok(stalled.clone()),
            None => self.0.queue(name),
        }
    }
    fn ready(&self) -> Result<(), crate::engine::Unready> {
        Err(crate::engine::Unready::Cluster(
            "the NATS link is down".into(),
        ))
    }
    fn topic_subscribers(&self, destination: &str) -> usize {
        self.0.topic_subscribers(destination)
    }
    fn queue_count(&self) -> usize {
        self.0.queue_count()
    }
    fn set_retain(&self, patterns: Vec<String>) {
        self.0.set_retain(patterns)
    }
    fn set_history(&self, limits: crate::engine::history::HistoryLimits) {
        self.0.set_history(limits)
    }
    fn stats(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = crate::engine::EngineStats> + Send + '_>> {
        self.0.stats()
    }
    fn close(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.close()
    }
}

fn broker(extra: &str) -> (Arc<Broker>, tempfile::TempDir) {
    broker_with(extra, |local| local)
}

fn broker_with(
    extra: &str,
    engine: impl FnOnce(Arc<crate::engine::LocalEngine>) -> Arc<dyn crate::engine::Engine>,
) -> (Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let toml = format!(
        "[store]\npath = {:?}\n[trading]\nenabled = false\n[auth.jwt]\nsecret = {SECRET:?}\nleeway_s = 0\n{extra}",
        dir.path().display().to_string()
    );
    let config = Config::from_toml(&toml).expect("test config");
    (
        Broker::start_with(config, engine, Default::default()).expect("broker"),
        dir,
    )
}

/// A token for `login` with `roles`, valid for `valid_s` seconds.
fn token(login: &str, roles: &[&str], valid_s: u64) -> String {
    let claims = serde_json::json!({
        "sub": login,
        "roles": roles,
        "exp": crate::auth::token::now_s() + valid_s,
    });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

impl Client {
    /// Starts a session on a new broker configured with `extra` TOML.
    fn start(extra: &str) -> Client {
        Client::on(broker(extra))
    }

    /// Starts a session on `broker`.
    fn on((broker, store): (Arc<Broker>, tempfile::TempDir)) -> Client {
        let (outbox, rx) = outbox(broker.limits().max_outbox_bytes);
        let (to_session, script) = mpsc::unbounded_channel();
        let b = broker.clone();
        tokio::spawn(async move {
            let mut session = Session::new(b, outbox, "127.0.0.1:9".parse().expect("addr"));
            session
                .drive(&mut Script(script), &CancellationToken::new())
                .await;
            session.finish();
        });
        Client {
            to_session,
            outbox: rx,
            waiting: VecDeque::new(),
            decoder: Decoder::new(Limits::default()),
            _broker: broker,
            _store: store,
        }
    }

    fn send_bytes(&self, bytes: &[u8]) {
        let _ = self.to_session.send(bytes.to_vec());
    }

    fn send(&self, frame: Frame) {
        self.send_together(&[frame]);
    }

    /// Sends frames in one read, so the session handles them in one go.
    fn send_together(&self, frames: &[Frame]) {
        let mut out = BytesMut::new();
        for frame in frames {
            encode_frame(frame, &mut out);
        }
        self.send_bytes(&out);
    }

    /// The next item of the outbox (waiting as long as it takes: time is paused).
    async fn next(&mut self) -> Out {
        loop {
            if let Some(item) = self.waiting.pop_front() {
                let bytes = match item {
                    Outgoing::Frame { bytes, .. } => bytes.to_vec(),
                    Outgoing::Message { message, .. } => message.chunks().concat(),
                    Outgoing::HeartBeatEvery(d) => return Out::HeartBeatEvery(d),
                    Outgoing::Close | Outgoing::Restart => return Out::Close,
                };
                let mut buf = BytesMut::from(&bytes[..]);
                match self.decoder.decode(&mut buf) {
                    Ok(Some(Decoded::Frame(f))) => return Out::Frame(f),
                    other => panic!("not one frame: {other:?}"),
                }
            }
            self.waiting = self.outbox.recv_all().await;
        }
    }

    /// The next frame, which must be a `command`.
    async fn expect(&mut self, command: Command) -> Frame {
        match self.next().await {
            Out::Frame(f) if f.command == command => f,
            other => panic!("expected {command}, got {other:?}"),
        }
    }

    /// An ERROR whose message is `message`, then the close.
    async fn expect_error(&mut self, message: &str) -> Frame {
        let f = self.expect(Command::Error).await;
        assert_eq!(f.headers.get("message"), Some(message));
        assert_eq!(self.next().await, Out::Close);
        f
    }

    async fn connect(&mut self, headers: &[(&str, &str)]) -> Frame {
        self.send(with(Frame::new(Command::Connect), headers));
        self.expect(Command::Connected).await
    }

    async fn connect_as(&mut self, login: &str, roles: &[&str]) -> Frame {
        let bearer = format!("Bearer {}", token(login, roles, 3600));
        self.connect(&[("accept-version", "1.2"), ("Authorization", &bearer)])
            .await
    }
}

fn with(frame: Frame, headers: &[(&str, &str)]) -> Frame {
    headers.iter().fold(frame, |f, (k, v)| f.header(*k, *v))
}

fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    encode(frame, Version::V1_2, out);
}

fn body(f: &Frame) -> &str {
    std::str::from_utf8(&f.body).expect("utf-8 body")
}

#[tokio::test(start_paused = true)]
async fn connect_must_come_within_the_connect_timeout_exactly() {
    let mut c = Client::start("[limits]\nconnect_timeout_ms = 4000");
    let start = Instant::now();
    c.expect_error("CONNECT not completed within 4000 ms (limits.connect_timeout_ms)")
        .await;
    assert_eq!(start.elapsed(), Duration::from_millis(4000));
}

#[tokio::test(start_paused = true)]
async fn heart_beats_are_negotiated_and_silence_ends_the_session_on_time() {
    let mut c = Client::start("[heartbeat]\nserver_ms = 1000\ngrace_ms = 500");
    let connected = c
        .connect(&[("accept-version", "1.2"), ("heart-beat", "2000,3000")])
        .await;
    assert_eq!(connected.headers.get("heart-beat"), Some("1000,1000"));
    // The broker sends every 3 s (the client's wish is the larger), and expects
    // the client every 2 s, plus the grace.
    assert_eq!(c.next().await, Out::HeartBeatEvery(Duration::from_secs(3)));
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(2400)).await;
    c.send_bytes(b"\n");
    // A heart-beat 2.4 s in restarts the 2.5 s window.
    c.expect_error("no heart-beat or frame from client for 2500 ms")
        .await;
    assert_eq!(start.elapsed(), Duration::from_millis(2400 + 2500));
}

#[tokio::test(start_paused = true)]
async fn a_token_session_ends_when_its_token_does() {
    let mut c = Client::start("");
    let bearer = format!("Bearer {}", token("alice", &["trader"], 60));
    let start = Instant::now();
    c.connect(&[("accept-version", "1.2"), ("Authorization", &bearer)])
        .await;
    c.expect_error("token expired").await;
    // `exp` is in whole seconds: the session ends within the second before it.
    let lived = start.elapsed();
    assert!(
        lived > Duration::from_secs(59) && lived <= Duration::from_secs(60),
        "{lived:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn receipts_come_in_frame_order_behind_pending_queue_sends() {
    let mut c = Client::start("");
    c.connect_as("svc", &["service"]).await;
    let send = |dest: &str, receipt: &str| {
        with(
            Frame::new(Command::Send),
            &[("destination", dest), ("receipt", receipt)],
        )
        .body("x")
    };
    // A queue SEND waits for the queue's answer; the frames after it (read in the
    // same go, before the queue can answer) are done at once, but their receipts
    // wait behind it.
    c.send_together(&[
        send("/queue/jobs", "r1"),
        send("/topic/news", "r2"),
        with(
            Frame::new(Command::Subscribe),
            &[("id", "s"), ("destination", "/topic/x"), ("receipt", "r3")],
        ),
        send("/queue/jobs", "r4"),
        with(Frame::new(Command::Disconnect), &[("receipt", "bye")]),
    ]);
    for r in ["r1", "r2", "r3", "r4", "bye"] {
        assert_eq!(
            c.expect(Command::Receipt).await.headers.get("receipt-id"),
            Some(r)
        );
    }
    assert_eq!(c.next().await, Out::Close);
}

#[tokio::test(start_paused = true)]
async fn transactions_apply_at_commit_and_nothing_of_an_aborted_one() {
    let mut c = Client::start("");
    c.connect_as("svc", &["service"]).await;
    c.send(with(
        Frame::new(Command::Subscribe),
        &[("id", "s"), ("destination", "/topic/t")],
    ));
    let send = |text: &str, tx: Option<&str>| {
        let f = Frame::new(Command::Send)
            .header("destination", "/topic/t")
            .body(text.to_owned());
        match tx {
            Some(t) => f.header("transaction", t),
            None => f,
        }
    };
    c.send(with(Frame::new(Command::Begin), &[("transaction", "a")]));
    c.send(send("held", Some("a")).header("receipt", "enlisted"));
    // The receipt says it joined the transaction; nothing was published.
    let r = c.expect(Command::Receipt).await;
    assert_eq!(r.headers.get("receipt-id"), Some("enlisted"));
    c.send(with(
        Frame::new(Command::Commit),
        &[("transaction", "a"), ("receipt", "committed")],
    ));
    assert_eq!(body(&c.expect(Command::Message).await), "held");
    let r = c.expect(Command::Receipt).await;
    assert_eq!(r.headers.get("receipt-id"), Some("committed"));
    c.send(with(Frame::new(Command::Begin), &[("transaction", "b")]));
    c.send(send("dropped", Some("b")));
    c.send(with(Frame::new(Command::Abort), &[("transaction", "b")]));
    c.send(send("after", None));
    // The positive control arrives first: the aborted SEND never did.
    assert_eq!(body(&c.expect(Command::Message).await), "after");
    c.send(with(Frame::new(Command::Commit), &[("transaction", "b")]));
    c.expect_error("unknown transaction \"b\"").await;
}

#[tokio::test(start_paused = true)]
async fn ack_headers_follow_the_negotiated_version() {
    for (version, ack, missing) in [
        ("1.2", ("message-id", "m"), "id"),
        ("1.1", ("id", "m"), "message-id"),
        ("1.0", ("id", "m"), "message-id"),
    ] {
        let mut c = Client::start("");
        c.connect(&[("accept-version", version)]).await;
        c.send(with(
            Frame::new(Command::Ack),
            &[ack, ("subscription", "s")],
        ));
        c.expect_error(&format!("missing required header '{missing}' in ACK"))
            .await;
    }
    // 1.1 also needs the subscription.
    let mut c = Client::start("");
    c.connect(&[("accept-version", "1.1")]).await;
    c.send(with(Frame::new(Command::Ack), &[("message-id", "m")]));
    c.expect_error("missing required header 'subscription' in ACK")
        .await;
}

#[tokio::test(start_paused = true)]
async fn an_ack_for_a_queue_this_session_does_not_consume_is_refused() {
    let mut c = Client::start("");
    c.connect_as("svc", &["service"]).await;
    c.send(with(
        Frame::new(Command::Ack),
        &[("id", "q1@payroll"), ("receipt", "r")],
    ));
    let e = c
        .expect_error("ACK or NACK for \"q1@payroll\": not delivered to this session")
        .await;
    assert_eq!(e.headers.get("receipt-id"), Some("r"));
}

#[tokio::test(start_paused = true)]
async fn rights_are_checked_per_family_and_refusals_name_the_destination() {
    let cases: [(&[&str], Frame, &str); 5] = [
        (
            &[],
            with(Frame::new(Command::Send), &[("destination", "/topic/x")]),
            "not allowed to SEND to /topic/x",
        ),
        (
            &[],
            with(
                Frame::new(Command::Subscribe),
                &[("id", "1"), ("destination", "/user/queue/x")],
            ),
            "not allowed to SUBSCRIBE to /user/queue/x",
        ),
        (
            &["trader"],
            with(
                Frame::new(Command::Send),
                &[("destination", "/user/bob/queue/x")],
            ),
            "not allowed to SEND to /user/bob/queue/x",
        ),
        (
            &["trader"],
            with(
                Frame::new(Command::Subscribe),
                &[("id", "1"), ("destination", "/app/trade")],
            ),
            "not allowed to SUBSCRIBE to /app/trade",
        ),
        (
            &["service"],
            with(Frame::new(Command::Send), &[("destination", "/app/trade")]),
            "no handler for /app/trade",
        ),
    ];
    for (roles, frame, message) in cases {
        let mut c = Client::start("");
        match roles {
            [] => c.connect(&[("accept-version", "1.2")]).await,
            roles => c.connect_as("alice", roles).await,
        };
        c.send(frame.header("receipt", "r"));
        let e = c.expect_error(message).await;
        assert_eq!(e.headers.get("receipt-id"), Some("r"), "{message}");
    }
}

#[tokio::test(start_paused = true)]
async fn frames_before_connect_and_a_second_connect_are_refused() {
    let mut c = Client::start("");
    c.send(with(
        Frame::new(Command::Send),
        &[("destination", "/topic/a")],
    ));
    c.expect_error("expected CONNECT or STOMP, got SEND").await;
    let mut c = Client::start("");
    c.connect(&[("accept-version", "1.2")]).await;
    c.send(Frame::new(Command::Stomp));
    c.expect_error("already connected").await;
    let mut c = Client::start("");
    c.connect(&[("accept-version", "1.2")]).await;
    c.send(Frame::new(Command::Message));
    c.expect_error("MESSAGE frames are sent by servers, not clients")
        .await;
}

#[tokio::test(start_paused = true)]
async fn huge_heart_beats_never_cut_a_session_off_early() {
    let mut c = Client::start("");
    let connected = c
        .connect(&[
            ("accept-version", "1.2"),
            ("heart-beat", "18446744073709546616,18446744073709546616"),
        ])
        .await;
    assert_eq!(connected.headers.get("heart-beat"), Some("10000,10000"));
    // A day is the longest interval agreed; the broker beats that often.
    assert_eq!(
        c.next().await,
        Out::HeartBeatEvery(Duration::from_millis(MAX_HEARTBEAT_MS))
    );
    // Twelve hours of silence (a wrapped deadline once fired at once)...
    tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
    c.send(with(
        Frame::new(Command::Disconnect),
        &[("receipt", "still-here")],
    ));
    let r = c.expect(Command::Receipt).await;
    assert_eq!(r.headers.get("receipt-id"), Some("still-here"));
}

#[tokio::test(start_paused = true)]
async fn a_commit_while_the_link_is_down_applies_nothing() {
    let mut c = Client::on(broker_with("", |local| Arc::new(LinkDown(local, None))));
    c.connect_as("svc", &["service"]).await;
    c.send(with(Frame::new(Command::Begin), &[("transaction", "t")]));
    // A queue SEND the local queue could take, then a topic SEND the link cannot.
    for destination in ["/queue/jobs", "/topic/news"] {
        c.send(with(
            Frame::new(Command::Send),
            &[("destination", destination), ("transaction", "t")],
        ));
    }
    c.send(with(
        Frame::new(Command::Commit),
        &[("transaction", "t"), ("receipt", "c")],
    ));
    let e = c
        .expect_error("the broker cannot take messages right now: the NATS link is down")
        .await;
    assert_eq!(e.headers.get("receipt-id"), Some("c"));
    let stats = c._broker.engine.stats().await;
    assert!(
        stats.queues.iter().all(|q| q.depth == 0),
        "a part of the transaction was applied: {:?}",
        stats.queues
    );
}

#[tokio::test(start_paused = true)]
async fn a_send_the_engine_cannot_take_gets_an_error_never_a_receipt() {
    for destination in ["/topic/news", "/user/bob/queue/x"] {
        let mut c = Client::on(broker_with("", |local| Arc::new(LinkDown(local, None))));
        c.connect_as("svc", &["service"]).await;
        // Subscribing works: only publishing needs the link.
        c.send(with(
            Frame::new(Command::Subscribe),
            &[
                ("id", "s"),
                ("destination", "/topic/news"),
                ("receipt", "sub"),
            ],
        ));
        let r = c.expect(Command::Receipt).await;
        assert_eq!(r.headers.get("receipt-id"), Some("sub"));
        c.send(with(
            Frame::new(Command::Send),
            &[("destination", destination), ("receipt", "r")],
        ));
        let e = c
            .expect_error("the broker cannot take messages right now: the NATS link is down")
            .await;
        assert_eq!(e.headers.get("receipt-id"), Some("r"), "{destination}");
    }
}

// A session waits for at most MAX_PENDING answers (queue SENDs here): past them
// it stops reading until the oldest is answered, so a queue that is slow to
// answer holds a bounded number of each session's frames.
#[tokio::test(start_paused = true)]
async fn a_session_stops_reading_past_its_pending_answers() {
    let (tx, mut rx) = mpsc::channel(4 * MAX_PENDING);
    let stalled = crate::queue::QueueHandle::new("stalled", tx);
    let mut c = Client::on(broker_with("", |local| {
        Arc::new(LinkDown(local, Some(stalled)))
    }));
    c.connect_as("svc", &["service"]).await;
    let frames: Vec<Frame> = (0..2 * MAX_PENDING)
        .map(|i| {
            with(
                Frame::new(Command::Send),
                &[
                    ("destination", "/queue/stalled"),
                    ("receipt", &format!("r{i}")),
                ],
            )
            .body("x")
        })
        .collect();
    c.send_together(&frames);
    // The queue takes what the session hands it, and answers nothing yet.
    let mut replies = Vec::new();
    while let Ok(Some(cmd)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        if let crate::queue::Cmd::Send { reply, .. } = cmd {
            replies.push(reply);
        }
    }
    assert_eq!(replies.len(), MAX_PENDING + 1, "then it stopped reading");
    // Answered, it goes on: every SEND reaches the queue, receipts in order.
    let mut next = 0;
    loop {
        for reply in replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
        if next == 2 * MAX_PENDING {
            break;
        }
        let f = c.expect(Command::Receipt).await;
        assert_eq!(
            f.headers.get("receipt-id"),
            Some(format!("r{next}").as_str())
        );
        next += 1;
        while let Ok(Some(cmd)) = tokio::time::timeout(Duration::from_millis(1), rx.recv()).await {
            if let crate::queue::Cmd::Send { reply, .. } = cmd {
                replies.push(reply);
            }
        }
    }
}
