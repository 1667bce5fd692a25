//! The `stompede` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .unwrap_or_else(|| "broker.toml".to_owned());
    println!("stompede {} (config: {config})", env!("CARGO_PKG_VERSION"));
    println!("the server is not built yet; this build holds the STOMP codec only");
    ExitCode::SUCCESS
}
