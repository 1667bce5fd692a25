//! Embedding stompede in a Rust program, with an `/app` handler of its own: a
//! chat. Run it and open the page it prints, or connect any STOMP client:
//!
//!     cargo run --example embed
//!
//! A logged-in client SENDs a line of text to `/app/chat.ROOM`; everyone
//! subscribed to `/topic/chat.ROOM` gets `{"room", "from", "text"}` as JSON
//! (the sender's login comes from its session, never from the frame). An empty
//! or over-long line is answered on the sender's own `/user/queue/errors`,
//! carrying the SEND's `receipt` as `receipt-id`, as the trading app does. This is
//! Spring's `@MessageMapping("/chat.{room}")` with `@SendTo("/topic/chat.{room}")`.
//!
//! `tests/embed.rs` runs this very handler.

use std::sync::Arc;
use stompede::app::{AppContext, AppHandler, Sender};
use stompede::codec::Headers;
use stompede::command::Send;
use stompede::config::Config;
use stompede::engine::Engine;
use stompede::server::{Builder, RunningBroker, StartError};

/// The longest line the chat takes, in bytes.
pub const MAX_TEXT: usize = 1000;

/// The chat: `/app/chat.ROOM` to `/topic/chat.ROOM`.
#[derive(Debug)]
pub struct Chat {
    engine: Arc<dyn Engine>,
}

impl Chat {
    /// The chat, publishing through the broker's engine.
    pub fn handler(ctx: &AppContext) -> Arc<dyn AppHandler> {
        Arc::new(Chat {
            engine: ctx.engine(),
        })
    }

    /// Tells `login` what was wrong with its SEND.
    fn refuse(&self, login: &str, send: &Send, error: &str) {
        let mut body = serde_json::json!({ "error": error, "destination": send.destination });
        if let Some(receipt) = send.headers.get("receipt") {
            body["receipt-id"] = receipt.into();
        }
        let mut headers = json();
        if let Some(receipt) = send.headers.get("receipt") {
            headers.push("receipt-id", receipt);
        }
        let _ = self
            .engine
            .publish_user(login, "errors", &headers, body.to_string().into());
    }
}

fn json() -> Headers {
    let mut h = Headers::new();
    h.push("content-type", "application/json");
    h
}

impl AppHandler for Chat {
    fn handle(&self, sender: Sender<'_>, send: &Send) {
        // Registered for /app/chat.*: one word after the prefix.
        let room = send.destination.trim_start_matches("/app/chat.");
        let text = match std::str::from_utf8(&send.body) {
            Ok(t) if !t.trim().is_empty() && t.len() <= MAX_TEXT => t.trim(),
            _ => return self.refuse(sender.login, send, "EMPTY_OR_TOO_LONG"),
        };
        let message = serde_json::json!({ "room": room, "from": sender.login, "text": text });
        let destination = format!("/topic/chat.{room}");
        if let Err(e) = self
            .engine
            .publish_topic(&destination, &json(), message.to_string().into())
        {
            tracing::warn!(%destination, error = %e, "chat line not published");
        }
    }
}

/// A broker with `config` and the chat on `/app/chat.*`.
pub fn chat_broker(config: Config) -> Result<RunningBroker, StartError> {
    Builder::new(config)
        .app("/app/chat.*", Chat::handler)
        .start()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt::init();
    // broker.toml in the working directory if there is one (its demo accounts
    // can chat), else the defaults.
    let config = match Config::load(std::path::Path::new("broker.toml"), false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("embed: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let running = match chat_broker(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("embed: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    println!(
        "chat: SEND to /app/chat.ROOM, SUBSCRIBE to /topic/chat.ROOM at ws://{}/ws; Ctrl-C stops",
        running.http_addr
    );
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown(std::time::Duration::from_secs(10)).await;
    std::process::ExitCode::SUCCESS
}
