//! The `stompede` binary: loads the configuration, starts the broker, reloads it
//! on SIGHUP, drains it on SIGTERM (or `POST /api/drain`) and stops it at once on
//! SIGINT.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stompede::config::{Config, LogFormat};

/// A STOMP message broker over WebSocket and TCP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: broker.toml in the current directory, if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Reads a password on stdin and prints its argon2id PHC string for broker.toml.
    HashPassword,
}

/// How long shutdown waits for connections to flush and close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long the runtime waits for blocking work (a store write, a password
/// check) when the process exits.
const RUNTIME_EXIT_WAIT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::HashPassword) = cli.command {
        return hash_password();
    }
    let (path, required) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("broker.toml"), false),
    };
    let config = match Config::load(&path, required) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stompede: {e}");
            return ExitCode::from(2);
        }
    };
    let log_filter = init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stompede: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reload = stompede::broker::ReloadWith {
        path,
        required,
        log_filter,
    };
    let code = runtime.block_on(serve(config, reload));
    // Whatever still runs (a blocking call into an unreachable NATS, say) must
    // not keep the process alive.
    runtime.shutdown_timeout(RUNTIME_EXIT_WAIT);
    code
}

fn hash_password() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input) {
        eprintln!("stompede: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    // One trailing newline is what `echo` or a terminal adds; anything else is kept.
    let password = input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .unwrap_or(&input);
    if password.is_empty() {
        eprintln!("stompede: empty password");
        return ExitCode::FAILURE;
    }
    match stompede::auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stompede: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the log subscriber; returns how to change its filter later (a reload
/// sets `log.filter` from the file, over `RUST_LOG`).
fn init_logging(config: &Config) -> stompede::broker::LogFilterSetter {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log.format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
    Box::new(move |new: &str| {
        let filter = EnvFilter::try_new(new).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

async fn serve(config: Config, reload: stompede::broker::ReloadWith) -> ExitCode {
    let running = match stompede::server::start_reloadable(config, Some(reload)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stompede: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = until_stopped(&running.broker).await;
    let finish = async {
        match stop {
            Stop::Drain => {
                tracing::info!("draining, then shutting down; a second signal exits at once");
                running.drain(SHUTDOWN_GRACE).await
            }
            Stop::Now => {
                tracing::info!("shutting down; a second signal exits at once");
                running.shutdown(SHUTDOWN_GRACE).await
            }
        }
    };
    tokio::select! {
        clean = finish => {
            if !clean {
                tracing::warn!("some connections did not close in time");
            }
            tracing::info!("stopped");
        }
        _ = next_signal() => tracing::warn!("second signal: exiting now"),
    }
    ExitCode::SUCCESS
}

/// How the process was asked to stop.
enum Stop {
    /// SIGTERM or `POST /api/drain`: drain first.
    Drain,
    /// SIGINT (Ctrl-C): at once.
    Now,
}

/// Reloads the configuration on every SIGHUP until a signal or a drain
/// request says to stop.
async fn until_stopped(broker: &stompede::broker::Broker) -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let hangup = signal(SignalKind::hangup());
    let terminate = signal(SignalKind::terminate());
    let (Ok(mut hangup), Ok(mut terminate)) = (hangup, terminate) else {
        tracing::warn!("no signal handlers: stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return Stop::Now;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Stop::Now,
            _ = terminate.recv() => return Stop::Drain,
            _ = broker.drain.begun() => return Stop::Drain,
            _ = hangup.recv() => {
                if let Err(e) = broker.reload() {
                    tracing::error!(error = %e, "SIGHUP: nothing changed");
                }
            }
        }
    }
}

/// The next SIGINT or SIGTERM.
async fn next_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
