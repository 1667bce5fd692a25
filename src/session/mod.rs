//! One task per connection: reads frames, acts on them, owns the connection's
//! subscriptions. It never writes to the socket: it pushes encoded frames into the
//! connection's outbox, and the writer task does the writing.

mod connect;
mod error;
pub mod frame_watch;
pub(crate) mod send;
mod subscribe;
mod transaction;

#[cfg(test)]
mod tests;

pub use error::ProtocolError;

use crate::broker::{Broker, ConnectionGuard};
use crate::codec::{Command, Decoded, Decoder, Frame, Version, encode};
use crate::command::ClientCommand;
use crate::outbox::{Outbox, Outgoing, outbox};
use crate::queue::{Answer, QueueError};
use crate::transport::metered::Progress;
use crate::transport::{ReadError, Reader, Writer};
use crate::writer::{self, WriterConfig};
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use transaction::Enlisted;

/// Answers a session may wait for at once (queue SENDs and receipted ACKs in
/// flight); past this it waits for the oldest before reading more.
pub const MAX_PENDING: usize = 1024;

/// What to do after a frame.
enum Flow {
    Continue,
    /// DISCONNECT: close after what is queued.
    Close,
    /// The frame takes effect when this answers (a queue SEND or receipted ACK);
    /// its receipt, if any, waits for it.
    Pending(Answer),
}

/// A frame whose effect (and receipt) is still to come.
#[derive(Debug)]
struct Unsettled {
    answer: Answer,
    receipt: Option<String>,
}

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    id: u64,
    /// `id` as a string, for the CONNECTED `session` header.
    name: String,
    broker: Arc<Broker>,
    outbox: Outbox,
    decoder: Decoder,
    /// `None` until CONNECT succeeds.
    version: Option<Version>,
    /// Who the session is; anonymous until CONNECT says otherwise.
    identity: crate::auth::Identity,
    subscriptions: HashMap<String, subscribe::Owned>,
    /// Bytes of subscription ids and destinations, against
    /// `limits.max_subscription_bytes`.
    subscription_bytes: usize,
    /// Open transactions by id; dropped with the session, so a disconnect aborts them.
    transactions: HashMap<String, transaction::Held>,
    /// What the open transactions hold, against `limits.max_transaction_bytes`.
    transaction_bytes: usize,
    /// Silence allowed from the client once heart-beats are negotiated.
    read_timeout: Option<Duration>,
    /// Frames waiting for their answer, oldest first; receipts go out in this order.
    /// Bounded by [`MAX_PENDING`].
    pending: VecDeque<Unsettled>,
    /// The frame that has started and not finished: its deadline and memory.
    frame_watch: frame_watch::FrameWatch,
    /// The client's address (login throttling is per address).
    peer: SocketAddr,
    /// CONNECT, password check included, must be done by then.
    connect_deadline: Instant,
    /// When the session's token runs out (token logins only).
    token_deadline: Option<Instant>,
    /// Changes when a reload removes logins: a password session whose login is
    /// no longer configured then ends.
    revoked: tokio::sync::watch::Receiver<Arc<Vec<String>>>,
}

/// Where a session's bytes come from: the socket's read half ([`Reader`]) when
/// serving, a script in the session's unit tests. The session never writes: what
/// it answers goes into its outbox.
pub trait Source: Send {
    /// Waits for bytes and appends them to `buf`; `Ok(0)` when the peer closed.
    fn read(&mut self, buf: &mut BytesMut)
    -> impl Future<Output = Result<usize, ReadError>> + Send;

    /// Bytes the transport holds below whole messages (WebSocket), if it can say.
    fn progress(&self) -> Option<Arc<Progress>>;
}

impl Source for Reader {
    fn read(
        &mut self,
        buf: &mut BytesMut,
    ) -> impl Future<Output = Result<usize, ReadError>> + Send {
        Reader::read(self, buf)
    }

    fn progress(&self) -> Option<Arc<Progress>> {
        Reader::progress(self)
    }
}

/// Runs a connection until it ends: spawns its writer, drives the session with
/// the reader, then removes its subscriptions and waits for the writer.
pub async fn run(
    broker: Arc<Broker>,
    mut reader: Reader,
    writer: Writer,
    guard: ConnectionGuard,
    peer: SocketAddr,
) {
    let (outbox, rx) = outbox(broker.limits().max_outbox_bytes);
    let writer_done = CancellationToken::new();
    let writer_task = broker.tasks.spawn(writer::run(
        writer,
        rx,
        broker.metrics.clone(),
        WriterConfig {
            write_timeout: broker.limits().write_timeout(),
            max_outbox_bytes: broker.limits().max_outbox_bytes,
        },
        broker.shutdown.clone(),
        writer_done.clone(),
    ));
    let mut session = Session::new(broker, outbox, peer);
    let id = session.id;
    tracing::debug!(session = id, %peer, transport = guard.transport().as_str(), "connection opened");
    session.drive(&mut reader, &writer_done).await;
    session.finish();
    drop(session);
    let end = writer_task.await;
    tracing::debug!(session = id, ?end, "connection closed");
    drop(guard);
}

impl Session {
    /// A session for a new connection from `peer` whose answers go to `outbox`;
    /// its connect deadline starts now.
    pub(crate) fn new(broker: Arc<Broker>, outbox: Outbox, peer: SocketAddr) -> Session {
        let id = broker.next_session_id();
        Session {
            id,
            name: format!("session-{id}"),
            decoder: Decoder::new(broker.limits().codec()),
            frame_watch: frame_watch::FrameWatch::new(broker.clone(), peer.ip()),
            peer,
            connect_deadline: far_future(broker.limits().connect_timeout()),
            token_deadline: None,
            revoked: broker.revoked(),
            broker,
            outbox,
            version: None,
            identity: crate::auth::Identity::anonymous(),
            subscriptions: HashMap::new(),
            subscription_bytes: 0,
            transactions: HashMap::new(),
            transaction_bytes: 0,
            read_timeout: None,
            pending: VecDeque::new(),
        }
    }

    /// Ends the session: drops its pending answers and subscriptions, and tells
    /// the writer to close after what is queued.
    pub(crate) fn finish(&mut self) {
        self.close_subscriptions();
        let _ = self.outbox.push(Outgoing::Close);
    }
}

impl Session {
    /// The driver: reads from `reader` and acts on frames, answers and deadlines
    /// (connect, heart-beat, token, unfinished frame) until the connection must
    /// end, the writer is done or the broker shuts down.
    pub(crate) async fn drive<S: Source>(
        &mut self,
        reader: &mut S,
        writer_done: &CancellationToken,
    ) {
        let mut buf = BytesMut::new();
        let connect_timeout = self.broker.limits().connect_timeout();
        let mut deadline = self.connect_deadline;
        // Bytes the transport holds below whole messages (WebSocket).
        let transport = reader.progress();
        // When a drain closes this connection: its own moment in the spread.
        let mut drain = self.broker.drain.watch();
        let mut drain_at = drain.borrow_and_update().map(|plan| plan.close_at(self.id));
        loop {
            let buffered = buf.len();
            tokio::select! {
                biased;
                _ = writer_done.cancelled() => return,
                _ = self.broker.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    let error = match self.version {
                        None => ProtocolError::ConnectTimeout(connect_timeout.as_millis() as u64),
                        Some(_) => ProtocolError::HeartBeatTimeout(
                            self.read_timeout.map(|d| d.as_millis() as u64).unwrap_or_default(),
                        ),
                    };
                    self.send_error(&error, None);
                    return;
                }
                _ = sleep_until_some(drain_at), if drain_at.is_some() => {
                    self.broker.metrics.drain_closed.increment(1);
                    self.send_error(&ProtocolError::NodeRestarting, None);
                    let _ = self.outbox.push(Outgoing::Restart);
                    return;
                }
                changed = drain.changed(), if drain_at.is_none() => {
                    // The broker holds the sender as long as this session runs.
                    if changed.is_err() {
                        return;
                    }
                    drain_at = drain.borrow_and_update().map(|plan| plan.close_at(self.id));
                }
                _ = sleep_until_some(self.token_deadline), if self.token_deadline.is_some() => {
                    self.broker.metrics.token_expired();
                    self.send_error(&ProtocolError::TokenExpired, None);
                    return;
                }
                changed = self.revoked.changed() => {
                    // The broker holds the sender as long as this session runs.
                    if changed.is_err() {
                        return;
                    }
                    self.revoked.borrow_and_update();
                    // Checked against the configuration in force, not the last
                    // change alone, so two reloads in quick succession cannot hide
                    // a removal. A token login is not in the table and stays.
                    if let Err(e) = self.recheck_access() {
                        self.send_error(&e, None);
                        return;
                    }
                }
                answer = oldest(&mut self.pending), if !self.pending.is_empty() => {
                    if !self.settle(answer) {
                        return;
                    }
                }
                read = reader.read(&mut buf) => {
                    let n = match read {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(ReadError::MessageTooLarge) => {
                            self.send_error(&ProtocolError::MessageTooLarge, None);
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(session = self.id, error = %e, "read failed");
                            return;
                        }
                    };
                    self.broker.metrics.bytes_in.increment(n as u64);
                    if !self.handle_bytes(&mut buf).await {
                        return;
                    }
                    if let Some(t) = self.read_timeout {
                        deadline = far_future(t);
                    } else if self.version.is_some() {
                        // Connected without client heart-beats: no read deadline.
                        deadline = far_future(Duration::MAX);
                    }
                    if buf.is_empty() {
                        // An idle connection keeps no read buffer.
                        buf = BytesMut::new();
                    }
                }
                // After the read: a wake-up by bytes that finished no message is seen here.
                error = std::future::poll_fn(|cx| {
                    let held = transport.as_ref().map_or(0, |t| t.unconsumed());
                    self.frame_watch.poll_check(cx, buffered + held)
                }) => {
                    self.send_error(&error, None);
                    return;
                }
            }
        }
    }

    /// Decodes and handles every complete frame in `buf`; false when the connection
    /// must end.
    async fn handle_bytes(&mut self, buf: &mut BytesMut) -> bool {
        loop {
            match self.decoder.decode(buf) {
                Ok(None) => return true,
                Ok(Some(Decoded::HeartBeat)) => continue,
                Ok(Some(Decoded::Frame(frame))) => {
                    self.frame_watch.frame_done();
                    let receipt = frame.headers.get("receipt").map(str::to_owned);
                    match self.handle_frame(frame).await {
                        Ok(Flow::Pending(answer)) => {
                            self.pending.push_back(Unsettled { answer, receipt });
                            if self.pending.len() > MAX_PENDING && !self.settle_oldest().await {
                                return false;
                            }
                        }
                        Ok(Flow::Continue) => match receipt {
                            Some(receipt) if !self.pending.is_empty() => {
                                // Keeps receipts in frame order behind pending ones.
                                let (tx, answer) = tokio::sync::oneshot::channel();
                                let _ = tx.send(Ok(()));
                                self.pending.push_back(Unsettled {
                                    answer,
                                    receipt: Some(receipt),
                                });
                            }
                            Some(receipt) => self.send_receipt(receipt),
                            None => {}
                        },
                        Ok(Flow::Close) => {
                            // DISCONNECT's receipt says everything before it took effect.
                            while !self.pending.is_empty() {
                                if !self.settle_oldest().await {
                                    return false;
                                }
                            }
                            if let Some(receipt) = receipt {
                                self.send_receipt(receipt);
                            }
                            return false;
                        }
                        Err(e) => {
                            self.send_error(&e, receipt.as_deref());
                            return false;
                        }
                    }
                }
                Err(e) => {
                    self.send_error(&ProtocolError::Codec(e), None);
                    return false;
                }
            }
        }
    }

    /// Waits for the oldest pending answer and acts on it; false when the
    /// connection must end.
    async fn settle_oldest(&mut self) -> bool {
        let answer = oldest(&mut self.pending).await;
        self.settle(answer)
    }

    /// Acts on the oldest pending frame's answer (sends its receipt or an ERROR);
    /// false when the connection must end.
    fn settle(&mut self, answer: Result<(), QueueError>) -> bool {
        let Some(done) = self.pending.pop_front() else {
            return true;
        };
        match answer {
            Ok(()) => {
                if let Some(receipt) = done.receipt {
                    self.send_receipt(receipt);
                }
                true
            }
            // A route's backend failed and the sender has been told: no
            // RECEIPT, and the session goes on.
            Err(QueueError::SenderTold(_)) => true,
            Err(e) => {
                self.send_error(&ProtocolError::Queue(e), done.receipt.as_deref());
                false
            }
        }
    }

    fn send_receipt(&self, receipt: String) {
        self.send_frame(&Frame::new(Command::Receipt).header("receipt-id", receipt));
    }

    /// Checks a frame against the session's state, turns it into a command, and
    /// executes it.
    async fn handle_frame(&mut self, frame: Frame) -> Result<Flow, ProtocolError> {
        self.broker.metrics.frame_received(frame.command);
        let connected = self.version.is_some();
        match frame.command {
            Command::Connect | Command::Stomp if connected => {
                return Err(ProtocolError::AlreadyConnected);
            }
            Command::Connect | Command::Stomp => {}
            other if !connected => return Err(ProtocolError::NotConnected(other)),
            _ => {}
        }
        let command = ClientCommand::from_frame(frame, self.version.unwrap_or(Version::V1_2))?;
        self.execute(command).await
    }

    /// Executes one command; a SEND, ACK or NACK naming a transaction is held by it.
    async fn execute(&mut self, command: ClientCommand) -> Result<Flow, ProtocolError> {
        let done = match command {
            ClientCommand::Connect(c) => self.connect(c).await,
            ClientCommand::Send(s) => match s.transaction.clone() {
                Some(t) => self.enlist(Enlisted::Send(s), &t),
                None => return self.send(s).await,
            },
            ClientCommand::Ack(a) => match a.transaction.clone() {
                Some(t) => self.enlist(Enlisted::Ack(a), &t),
                None => return self.ack(&a).await,
            },
            ClientCommand::Subscribe(s) => return self.subscribe(s).await,
            ClientCommand::Unsubscribe(u) => self.unsubscribe(u),
            ClientCommand::Begin(t) => self.begin(t),
            ClientCommand::Commit(t) => self.commit(t).await,
            ClientCommand::Abort(t) => self.abort(t),
            ClientCommand::Disconnect => return Ok(Flow::Close),
        };
        done.map(|_| Flow::Continue)
    }

    /// Encodes a frame for this session's version and queues it.
    fn send_frame(&self, frame: &Frame) {
        let mut out = BytesMut::new();
        encode(frame, self.version.unwrap_or(Version::V1_2), &mut out);
        // A full outbox means the writer is cutting the connection off already.
        let _ = self.outbox.push(Outgoing::Frame {
            bytes: out.freeze(),
            command: frame.command,
        });
    }

    /// Queues an ERROR frame for `error` (the connection is closed after it).
    fn send_error(&self, error: &ProtocolError, receipt: Option<&str>) {
        tracing::info!(session = self.id, login = self.login(), peer = %self.peer, reason = error.reason(), %error, "closing with ERROR");
        self.broker.metrics.error_sent(error.reason());
        let mut frame = Frame::new(Command::Error)
            .header("message", error.to_string())
            .header("content-type", "text/plain");
        if let Some(r) = receipt {
            frame = frame.header("receipt-id", r);
        }
        self.send_frame(&frame.body(error.to_string()));
    }

    /// The login for logs ("" when anonymous).
    fn login(&self) -> &str {
        self.identity.login.as_deref().unwrap_or("")
    }

    /// Drops pending answers (their effects still happen; only receipts are lost)
    /// and subscriptions.
    fn close_subscriptions(&mut self) {
        self.pending.clear();
        for (_, owned) in std::mem::take(&mut self.subscriptions) {
            self.drop_subscription(owned);
        }
    }
}

/// Sleeps until `at`; never wakes for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `now + after`, or a century from now if that would overflow.
fn far_future(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The answer of the oldest pending frame (`Ok` if there is none).
async fn oldest(pending: &mut VecDeque<Unsettled>) -> Result<(), QueueError> {
    match pending.front_mut() {
        Some(p) => crate::queue::answered(&mut p.answer).await,
        None => Ok(()),
    }
}
