//! A short agent session, step by step, with the latency of each call.
//!
//! With no configuration it starts the embedded coderd on a loopback port and
//! talks to it. With `CODER_AGENT_URL` and `CODER_AGENT_TOKEN` set it talks to
//! that deployment instead (and starts nothing locally).
//!
//! ```text
//! cargo run --example agent
//! CODER_AGENT_URL=https://coder.example.com CODER_AGENT_TOKEN=... cargo run --example agent
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;
use futures::StreamExt;

/// The "External" log source every coderd knows (agentsdk's ExternalLogSourceID).
const EXTERNAL_LOG_SOURCE: uuid::Uuid = uuid::uuid!("3b579bf4-1ed8-4b99-87a8-e9a1e3410410");

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `call`, printing `what`, the outcome summary and the latency.
async fn step<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
    summary: impl FnOnce(&T) -> String,
) -> Result<T, String> {
    let start = Instant::now();
    let result = call.await;
    let elapsed = start.elapsed();
    match result {
        Ok(value) => {
            println!("{:>9}  {what:<24} {}", format_latency(elapsed), summary(&value));
            Ok(value)
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn format_latency(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

async fn run() -> Result<(), String> {
    let (url, token, _server) = match (std::env::var("CODER_AGENT_URL"), std::env::var("CODER_AGENT_TOKEN")) {
        (Ok(url), Ok(token)) => (url, token, None),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            return Err("set both CODER_AGENT_URL and CODER_AGENT_TOKEN, or neither".to_owned());
        }
        (Err(_), Err(_)) => {
            let server = EmbeddedServer::start()
                .await
                .map_err(|e| format!("start embedded server: {e}"))?;
            println!("embedded coderd listening on {}", server.url());
            (server.url().to_string(), server.token().to_owned(), Some(server))
        }
    };
    let client = Client::builder(&url).token(token).build().map_err(|e| e.to_string())?;

    let (agent, tailnet) = step("connect (v2.8, agent)", client.connect_rpc28_with_role("agent"), |_| {
        format!("websocket + yamux to {url}")
    })
    .await?;

    let manifest = step("GetManifest", agent.get_manifest(agent::GetManifestRequest {}), |m| {
        format!(
            "agent {:?} of {}/{}, {} app(s), {} script(s), {} metadata item(s)",
            m.agent_name,
            m.owner_username,
            m.workspace_name,
            m.apps.len(),
            m.scripts.len(),
            m.metadata.len()
        )
    })
    .await?;

    for state in [agent::lifecycle::State::Created, agent::lifecycle::State::Starting] {
        lifecycle(&agent, state).await?;
    }

    let source = manifest
        .scripts
        .first()
        .map(|s| s.log_source_id.clone())
        .unwrap_or_else(|| EXTERNAL_LOG_SOURCE.as_bytes().to_vec());
    let logs: Vec<agent::Log> = (1..=5)
        .map(|i| agent::Log {
            created_at: Some(now()),
            output: format!("demo log line {i} of 5"),
            level: agent::log::Level::Info as i32,
        })
        .collect();
    let count = logs.len();
    step(
        "BatchCreateLogs",
        agent.batch_create_logs(agent::BatchCreateLogsRequest {
            log_source_id: source,
            logs,
        }),
        |r| format!("{count} lines sent, log limit exceeded: {}", r.log_limit_exceeded),
    )
    .await?;

    lifecycle(&agent, agent::lifecycle::State::Ready).await?;

    let stats = agent::Stats {
        connections_by_proto: [("ssh".to_owned(), 1)].into(),
        connection_count: 1,
        connection_median_latency_ms: 1.5,
        rx_packets: 10,
        rx_bytes: 1024,
        tx_packets: 12,
        tx_bytes: 2048,
        ..Default::default()
    };
    step(
        "UpdateStats",
        agent.update_stats(agent::UpdateStatsRequest { stats: Some(stats) }),
        |r| {
            let interval = r.report_interval.unwrap_or_default();
            format!("next report in {}s", interval.seconds)
        },
    )
    .await?;

    let mut maps = step(
        "StreamDERPMaps (open)",
        tailnet.stream_derp_maps(Default::default()),
        |_| String::new(),
    )
    .await?;
    step(
        "StreamDERPMaps (first)",
        async {
            maps.next()
                .await
                .unwrap_or(Err(coder_agentsdk::drpc::RpcError::ConnectionClosed))
        },
        |m| {
            let regions: Vec<String> = m
                .regions
                .values()
                .map(|r| format!("{} ({} node(s))", r.region_code, r.nodes.len()))
                .collect();
            format!("{} region(s): {}", m.regions.len(), regions.join(", "))
        },
    )
    .await?;
    drop(maps);

    for state in [agent::lifecycle::State::ShuttingDown, agent::lifecycle::State::Off] {
        lifecycle(&agent, state).await?;
    }
    println!("done");
    Ok(())
}

async fn lifecycle(client: &impl AgentClient20, state: agent::lifecycle::State) -> Result<(), String> {
    let request = agent::UpdateLifecycleRequest {
        lifecycle: Some(agent::Lifecycle {
            state: state as i32,
            changed_at: Some(now()),
        }),
    };
    step("UpdateLifecycle", client.update_lifecycle(request), |_| {
        format!("state {}", state.as_str_name().to_ascii_lowercase())
    })
    .await
    .map(|_| ())
}
