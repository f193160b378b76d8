//! Serves the embedded coderd until killed, so that other agents (Coder's Go
//! agent SDK, say) can be pointed at it.
//!
//! ```text
//! cargo run --example server -- --listen 127.0.0.1:3000 --token 5f3c...
//! ```
//!
//! Options: `--listen ADDR` (default 127.0.0.1:0), `--token TOKEN` (default: a
//! random UUID, printed), `--max-version MAJOR.MINOR` (default: the newest),
//! and the limits that protect it from hostile or slow peers:
//! `--max-connections N`, `--max-streams N` (per RPC connection),
//! `--handshake-timeout SECS`, `--first-stream-timeout SECS` and
//! `--record-limit N` (reports kept per recording; older ones are dropped and
//! counted, so a long run keeps nothing per call).
//! Also `--tokens-file FILE` (more agent tokens, one per line, each a distinct
//! agent, as `examples/fleet.rs --server-process` uses), `--keep-history
//! false` (keep per-agent counters only, for long runs with many agents).

use std::net::SocketAddr;
use std::process::ExitCode;

use coder_agentsdk::drpc::ApiVersion;
use coder_agentsdk::server::EmbeddedServer;

fn usage() -> ExitCode {
    eprintln!(
        "usage: server [--listen ADDR] [--token TOKEN] [--max-version MAJOR.MINOR] [--max-connections N]
              [--max-streams N] [--handshake-timeout SECS] [--first-stream-timeout SECS] [--record-limit N]
              [--tokens-file FILE] [--keep-history true|false]"
    );
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut builder = EmbeddedServer::builder();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { return usage() };
        builder = match flag.as_str() {
            "--listen" => match value.parse::<SocketAddr>() {
                Ok(addr) => builder.listen(addr),
                Err(e) => {
                    eprintln!("--listen {value}: {e}");
                    return usage();
                }
            },
            "--token" => builder.token(value),
            "--max-connections" | "--max-streams" | "--record-limit" => {
                let Ok(n) = value.parse::<usize>() else {
                    eprintln!("{flag} {value}: not a number");
                    return usage();
                };
                match flag.as_str() {
                    "--max-connections" => builder.max_connections(n),
                    "--max-streams" => builder.max_streams_per_connection(n),
                    _ => builder.record_limit(n),
                }
            }
            "--handshake-timeout" | "--first-stream-timeout" => {
                let Ok(secs) = value.parse::<f64>() else {
                    eprintln!("{flag} {value}: not a number of seconds");
                    return usage();
                };
                let Ok(timeout) = std::time::Duration::try_from_secs_f64(secs) else {
                    eprintln!("{flag} {value}: not a valid duration");
                    return usage();
                };
                if flag == "--handshake-timeout" {
                    builder.handshake_timeout(timeout)
                } else {
                    builder.first_stream_timeout(timeout)
                }
            }
            "--tokens-file" => match std::fs::read_to_string(&value) {
                Ok(text) => builder.tokens(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                ),
                Err(e) => {
                    eprintln!("--tokens-file {value}: {e}");
                    return usage();
                }
            },
            "--keep-history" => match value.as_str() {
                "true" => builder.keep_history(true),
                "false" => builder.keep_history(false),
                _ => return usage(),
            },
            "--max-version" => match value.parse::<ApiVersion>() {
                Ok(v) => builder.max_version(v),
                Err(e) => {
                    eprintln!("--max-version: {e}");
                    return usage();
                }
            },
            _ => return usage(),
        };
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("coderd (embedded) listening on {}", server.url());
    println!("agent token: {}", server.token());
    println!(
        "try: CODER_AGENT_URL={} CODER_AGENT_TOKEN={} cargo run --example agent",
        server.url(),
        server.token()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("waiting for Ctrl-C failed: {e}");
    }
    println!("stopping");
    ExitCode::SUCCESS
}
