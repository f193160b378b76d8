//! Throughput of the log sender to the embedded server over the real
//! connection (websocket → yamux → DRPC), in release mode:
//!
//! ```sh
//! cargo run --release --example log_bench
//! ```
//!
//! Two figures: lines flushed as fast as the sender allows (flush after
//! each batch), and a full queue (13,000 lines, under the 1 MiB queue limit)
//! without explicit flushes: Coder's design sends one batch (≤ 1 MiB) per
//! source per second, so that takes about a second.

use std::time::{Duration, Instant};

use coder_agentsdk::agent::{Log, LogLevel, LogSender};
use coder_agentsdk::server::{EmbeddedServer, Recorded};
use coder_agentsdk::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = EmbeddedServer::start().await?;
    let client = Client::builder(server.url().as_str()).token(server.token()).build()?;
    let (agent, _tailnet) = client.connect_rpc28().await?;

    let sender = LogSender::new();
    let loop_sender = sender.clone();
    let loop_agent = agent.clone();
    let uploads = tokio::spawn(async move { loop_sender.send_loop(&loop_agent).await });

    let line = "x".repeat(80);
    for (label, lines, flush) in [("flushed", 500_000usize, true), ("unflushed, 1 source", 13_000, false)] {
        let source = uuid::Uuid::new_v4();
        let start = Instant::now();
        let mut sent = 0;
        while sent < lines {
            // Flushed: about one batch at a time, as a busy script that flushes
            // would; unflushed: everything at once.
            let chunk = if flush { 10_000.min(lines - sent) } else { lines };
            sender.enqueue(source, (0..chunk).map(|_| Log::new(LogLevel::Info, line.as_str())));
            sent += chunk;
            if flush {
                sender.flush(source);
                sender.wait_until_empty().await;
            }
        }
        tokio::time::timeout(Duration::from_secs(120), sender.wait_until_empty()).await?;
        let secs = start.elapsed().as_secs_f64();
        let delivered: usize = server
            .api()
            .recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::Logs { source: s, logs } if s == source.as_bytes() => Some(logs.len()),
                _ => None,
            })
            .sum();
        assert_eq!(delivered, lines, "every line reached the server");
        println!(
            "{label}: {lines} lines of {} bytes in {secs:.2} s = {:.0} lines/s ({:.1} MiB/s of output)",
            line.len(),
            lines as f64 / secs,
            (lines * line.len()) as f64 / secs / (1 << 20) as f64
        );
    }
    uploads.abort();
    Ok(())
}
