//! Protocol errors: each becomes an ERROR frame with a `message` header, after
//! which the connection is closed.

use crate::codec::{CodecError, Command};
use thiserror::Error;

/// Why a session is ending with an ERROR.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The bytes were not a valid frame, or broke a limit.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// A WebSocket message larger than the broker accepts.
    #[error("message too large: a WebSocket message exceeded the frame limit")]
    MessageTooLarge,
    /// The frame is not a valid command: a header is missing or malformed, or it
    /// is a server frame.
    #[error(transparent)]
    Command(#[from] crate::command::CommandError),
    /// A frame other than CONNECT/STOMP before the session is connected.
    #[error("expected CONNECT or STOMP, got {0}")]
    NotConnected(Command),
    /// A second CONNECT.
    #[error("already connected")]
    AlreadyConnected,
    /// A destination outside the known families, or one not valid for this frame.
    #[error("unknown destination {0:?}")]
    UnknownDestination(String),
    /// A SEND to an `/app/...` destination no application handles.
    #[error("no handler for {0}")]
    NoHandler(String),
    /// A SEND to a wildcard pattern.
    #[error("cannot send to wildcard destination {0:?}")]
    WildcardSend(String),
    /// SUBSCRIBE with an id already in use on this connection.
    #[error("subscription id {0:?} is already in use")]
    DuplicateSubscription(String),
    /// Too many subscriptions on one connection.
    #[error("subscription limit reached: at most {0} per connection (limits.max_subscriptions)")]
    TooManySubscriptions(usize),
    /// The connection's subscriptions would hold more bytes than allowed.
    #[error(
        "subscriptions of this connection would hold more than {0} bytes of ids and destinations (limits.max_subscription_bytes)"
    )]
    SubscriptionBytes(usize),
    /// The client did not CONNECT in time.
    #[error("CONNECT not completed within {0} ms (limits.connect_timeout_ms)")]
    ConnectTimeout(u64),
    /// CONNECT credentials were refused.
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The session's login has no right to this frame's destination.
    #[error("not allowed to {command} {destination}")]
    Forbidden {
        /// `SEND to` or `SUBSCRIBE to`.
        command: &'static str,
        /// The refused destination.
        destination: String,
    },
    /// A transaction error: unknown or duplicate id, or a limit.
    #[error("{0}")]
    Transaction(String),
    /// The connection's open transactions would hold more than the limit.
    #[error(
        "transactions of this connection would hold more than {0} bytes (limits.max_transaction_bytes)"
    )]
    TransactionTooLarge(usize),
    /// The engine could not take a message.
    #[error("{0}")]
    Engine(#[from] crate::engine::Refused),
    /// A queue refused a message.
    #[error("{0}")]
    Queue(#[from] crate::queue::QueueError),
    /// An application handler failed unexpectedly.
    #[error("internal error in the handler for {0}")]
    HandlerFailed(String),
    /// An ACK or NACK naming a queue delivery this session was not given.
    #[error("ACK or NACK for {0:?}: not delivered to this session")]
    UnknownAck(String),
    /// A topic destination or pattern past a size limit.
    #[error("{0}")]
    Topic(#[from] crate::destination::pattern::TopicError),
    /// A frame that started did not finish in time.
    #[error("frame not finished within {0} ms (limits.frame_timeout_ms)")]
    FrameTimeout(u64),
    /// Unfinished frames of all connections hold the whole budget.
    #[error(
        "the broker holds its limit of {0} bytes in unfinished frames (limits.max_pending_frame_bytes); send smaller frames or retry"
    )]
    PendingFramesFull(usize),
    /// This client address (or login) holds its share of that budget.
    #[error(
        "this client holds its share of {0} bytes in unfinished frames (an eighth of limits.max_pending_frame_bytes); send smaller frames or retry"
    )]
    PendingFramesShare(usize),
    /// A SUBSCRIBE with `x-stream-offset` whose pattern matches too many kept
    /// destinations.
    #[error(
        "a replay of {destination} would cover {destinations} kept destinations; at most {max} (topics.max_replay_destinations)"
    )]
    ReplayTooWide {
        /// The pattern.
        destination: String,
        /// Kept destinations it matches.
        destinations: usize,
        /// The limit.
        max: usize,
    },
    /// A reload turned anonymous access off.
    #[error("anonymous access was turned off (auth.anonymous)")]
    AnonymousRemoved,
    /// A reload removed the session's login from the configuration.
    #[error("login {0:?} was removed from the configuration")]
    LoginRemoved(String),
    /// The session's token reached its `exp` (plus the leeway).
    #[error("token expired")]
    TokenExpired,
    /// The node drains (a rolling restart): reconnect, to another node.
    #[error("node restarting: reconnect (this node drains for a restart)")]
    NodeRestarting,
    /// The client stopped sending heart-beats.
    #[error("no heart-beat or frame from client for {0} ms")]
    HeartBeatTimeout(u64),
}

impl ProtocolError {
    /// A short, bounded label for `stompede_errors_sent_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::Codec(e) => e.reason(),
            ProtocolError::MessageTooLarge => "frame_too_large",
            ProtocolError::Command(e) => e.reason(),
            ProtocolError::NotConnected(_) | ProtocolError::AlreadyConnected => "unexpected_frame",
            ProtocolError::UnknownDestination(_)
            | ProtocolError::WildcardSend(_)
            | ProtocolError::NoHandler(_) => "bad_destination",
            ProtocolError::DuplicateSubscription(_) => "duplicate_subscription",
            ProtocolError::TooManySubscriptions(_) | ProtocolError::SubscriptionBytes(_) => {
                "too_many_subscriptions"
            }
            ProtocolError::ReplayTooWide { .. } => "replay_too_wide",
            ProtocolError::ConnectTimeout(_) => "connect_timeout",
            ProtocolError::HeartBeatTimeout(_) => "heartbeat_timeout",
            ProtocolError::Auth(e) => e.reason(),
            ProtocolError::Forbidden { .. } => "forbidden",
            ProtocolError::HandlerFailed(_) => "handler_failed",
            ProtocolError::Queue(crate::queue::QueueError::Store(_)) => "store_failed",
            ProtocolError::Queue(_) => "queue_refused",
            ProtocolError::Engine(e) => e.reason(),
            ProtocolError::Transaction(_) => "transaction",
            ProtocolError::Topic(e) => e.reason(),
            ProtocolError::UnknownAck(_) => "unknown_ack",
            ProtocolError::TokenExpired => "token_expired",
            ProtocolError::NodeRestarting => "node_restarting",
            ProtocolError::LoginRemoved(_) | ProtocolError::AnonymousRemoved => "login_removed",
            ProtocolError::FrameTimeout(_) => "frame_timeout",
            ProtocolError::PendingFramesFull(_) | ProtocolError::PendingFramesShare(_) => {
                "pending_frames_full"
            }
            ProtocolError::TransactionTooLarge(_) => "transaction_too_large",
        }
    }
}
