//! The STOMP frame codec: pure, no I/O, no async.
//!
//! [`Decoder`] turns bytes into [`Frame`]s (STOMP 1.0, 1.1 and 1.2, both client and
//! server commands) in streaming fashion, enforcing [`Limits`] as it reads.
//! [`encode`] writes frames back; [`MessageTemplate`] encodes one published message
//! once and hands out cheap per-subscriber copies.

mod decode;
mod encode;
mod error;
mod escape;
mod frame;
mod limits;

pub use decode::{Decoded, Decoder, valid_header_name};
pub use encode::{EncodedMessage, MessageTemplate, SubscriptionHeader, encode, encode_heartbeat};
pub use error::CodecError;
pub use frame::{Command, Frame, Headers, Version};
pub use limits::{Limit, Limits};

#[cfg(test)]
mod tests;
