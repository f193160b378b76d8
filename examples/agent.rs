//! A small but real workspace agent.
//!
//! It negotiates the API version, fetches its Git SSH key and manifest,
//! registers its own log source, reports lifecycle created → starting →
//! ready, sends script output through the log sender, reports stats every
//! `report_interval`, posts app health, answers a reinit event, and on
//! Ctrl-C (or after `--duration`) reports shutting_down → off and exits.
//!
//! With no configuration it starts the embedded coderd on a loopback port
//! (and runs the demo manifest's startup script, which only echoes). With
//! `CODER_AGENT_URL` set it talks to that deployment instead, starts nothing
//! locally and runs no scripts: `CODER_AGENT_TOKEN` is the token, or
//! `CODER_AGENT_AUTH` names a cloud instance identity (`aws-instance-identity`,
//! `azure-instance-identity`, `google-instance-identity`), with
//! `CODER_AGENT_METADATA_URL` overriding the cloud metadata address.
//!
//! Against a dead or misbehaving server it exits non-zero with one line
//! saying why, within its timeouts: `--keepalive 30s` and
//! `--keepalive-timeout 10s` (yamux pings, as Go's agent; a peer that stops
//! answering ends the connection after about their sum), `--call-timeout`
//! (each RPC and REST call, default 30s), `--dial-timeout` (default 30s).
//!
//! TLS: the agent trusts the system's root certificates and, as Go's agent,
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`; `--ca-file FILE` (PEM) trusts a private
//! CA besides, for REST and RPC alike. An untrusted certificate ends the run
//! with one line naming the host and the way to trust its CA.
//!
//! ```text
//! cargo run --example agent -- --duration 3s        # embedded coderd
//! cargo run --example agent -- --json               # one JSON object per line on stdout
//! CODER_AGENT_URL=https://coder.example.com CODER_AGENT_TOKEN=... cargo run --example agent
//! CODER_AGENT_URL=https://coder.internal CODER_AGENT_TOKEN=... cargo run --example agent -- --ca-file ca.pem
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use coder_agentsdk::agent::{self as kit, AppHealth, LogLevel, LogSender};
use coder_agentsdk::auth::AuthMethod;
use coder_agentsdk::proto::agent;
use coder_agentsdk::rest::types::PostLogSourceRequest;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::RpcOptions;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::sse::ReinitializationEvent;
use coder_agentsdk::Client;
use futures::StreamExt;
use serde_json::json;

/// This demo's own log source (stable, so reruns reuse it).
const DEMO_LOG_SOURCE: uuid::Uuid = uuid::uuid!("5d0e6a52-27f1-4c43-9b52-2f6f0c1b7a10");

struct Options {
    duration: Option<Duration>,
    json: bool,
    keepalive: Duration,
    keepalive_timeout: Duration,
    call_timeout: Duration,
    dial_timeout: Duration,
    ca_file: Option<String>,
}

const USAGE: &str = "usage: agent [--duration 3s] [--json] [--keepalive 30s] [--keepalive-timeout 10s] \
                     [--call-timeout 30s] [--dial-timeout 30s] [--ca-file FILE]";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        duration: None,
        json: false,
        keepalive: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        call_timeout: Duration::from_secs(30),
        dial_timeout: Duration::from_secs(30),
        ca_file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value such as 3s or 500ms"))
                .and_then(|v| parse_duration(&v))
        };
        match arg.as_str() {
            "--ca-file" => options.ca_file = Some(args.next().ok_or("--ca-file needs a PEM file")?),
            "--json" => options.json = true,
            "--duration" => options.duration = Some(value("--duration")?),
            "--keepalive" => options.keepalive = value("--keepalive")?,
            "--keepalive-timeout" => options.keepalive_timeout = value("--keepalive-timeout")?,
            "--call-timeout" => options.call_timeout = value("--call-timeout")?,
            "--dial-timeout" => options.dial_timeout = value("--dial-timeout")?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(options)
}

impl Options {
    fn rpc(&self) -> RpcOptions {
        RpcOptions::default()
            .keepalive(self.keepalive, self.keepalive_timeout)
            .default_deadline(self.call_timeout)
            .dial_timeout(self.dial_timeout)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?}: use e.g. 3s, 500ms or 2m");
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Progress output: readable lines on stderr, or JSON objects on stdout.
struct Out {
    json: bool,
    start: Instant,
}

impl Out {
    fn event(&self, step: &str, latency: Option<Duration>, detail: impl Into<String>) {
        let detail = detail.into();
        if self.json {
            let line = json!({
                "t_ms": self.start.elapsed().as_millis() as u64,
                "step": step,
                "latency_us": latency.map(|l| l.as_micros() as u64),
                "detail": detail,
            });
            println!("{line}");
        } else {
            let latency = latency.map(format_latency).unwrap_or_default();
            eprintln!("{latency:>9}  {step:<22} {detail}");
        }
    }

    /// Runs `call`, then reports it with its latency and a summary.
    async fn step<T, E: std::fmt::Display>(
        &self,
        step: &str,
        call: impl Future<Output = Result<T, E>>,
        summary: impl FnOnce(&T) -> String,
    ) -> Result<T, String> {
        let started = Instant::now();
        let result = call.await;
        let latency = started.elapsed();
        match result {
            Ok(value) => {
                self.event(step, Some(latency), summary(&value));
                Ok(value)
            }
            Err(e) => Err(format!("{step}: {e}")),
        }
    }
}

fn format_latency(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let out = Out {
        json: options.json,
        start: Instant::now(),
    };
    match run(&options, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the error's own formatting.
            let e: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            eprintln!("agent failed: {}", e.join("; "));
            ExitCode::FAILURE
        }
    }
}

/// Where the agent connects, and the embedded server when it is local.
struct Target {
    client: Client,
    embedded: Option<EmbeddedServer>,
}

async fn target(options: &Options, out: &Out) -> Result<Target, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(url) = env("CODER_AGENT_URL") {
        let method: AuthMethod = env(AuthMethod::ENV)
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut builder = Client::builder(&url)
            .auth_method(
                method,
                env("CODER_AGENT_TOKEN").as_deref(),
                env("CODER_AGENT_METADATA_URL").as_deref(),
            )
            .map_err(|e| e.to_string())?;
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("--ca-file {path}: {e}"))?;
            builder = builder
                .add_root_certificates_pem(&pem)
                .map_err(|e| format!("--ca-file {path}: {e}"))?;
        }
        let client = builder
            .rpc_options(options.rpc())
            .timeout(options.call_timeout)
            .build()
            .map_err(|e| e.to_string())?;
        out.event("deployment", None, format!("{url} (auth: {})", method.as_str()));
        return Ok(Target { client, embedded: None });
    }
    if env("CODER_AGENT_TOKEN").is_some() {
        return Err("CODER_AGENT_TOKEN is set but CODER_AGENT_URL is not".to_owned());
    }
    if options.ca_file.is_some() {
        return Err(
            "--ca-file is for a deployment's CODER_AGENT_URL; the embedded coderd serves plain HTTP".to_owned(),
        );
    }
    let server = EmbeddedServer::start()
        .await
        .map_err(|e| format!("start the embedded coderd: {e}"))?;
    // A short stats interval and a Git key, so a short run shows both.
    server.api().set_report_interval(Duration::from_secs(1));
    server.rest().set_git_ssh_key(
        demo_public_key(),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n(demo)\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    out.event("embedded coderd", None, format!("listening on {}", server.url()));
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .rpc_options(options.rpc())
        .timeout(options.call_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Target {
        client,
        embedded: Some(server),
    })
}

/// An ed25519 public key in `authorized_keys` form (random, for the demo).
fn demo_public_key() -> String {
    let mut blob = Vec::new();
    for part in [
        b"ssh-ed25519".as_slice(),
        uuid::Uuid::new_v4().as_bytes().repeat(2).as_slice(),
    ] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {} demo@coder-agentsdk",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// `SHA256:<base64>` of the key blob, as `ssh-keygen -l` prints it.
fn fingerprint(public_key: &str) -> Option<String> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(public_key.split_whitespace().nth(1)?)
        .ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
    ))
}

fn timestamp() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

async fn run(options: &Options, out: &Out) -> Result<(), String> {
    let Target { client, embedded } = target(options, out).await?;

    let rpc = out
        .step(
            "connect (negotiated)",
            client.connect_rpc_negotiated_with_role(Some("agent")),
            |n| format!("API v{} over websocket + yamux", n.version()),
        )
        .await?;
    let agent = rpc.agent.clone();

    out.step("git SSH key", client.git_ssh_key(), |k| {
        let kind = k.key_type().unwrap_or("none");
        format!(
            "{kind} {}",
            fingerprint(&k.public_key).unwrap_or_else(|| "(no fingerprint)".to_owned())
        )
    })
    .await?;

    let manifest = out
        .step("GetManifest", agent.get_manifest(agent::GetManifestRequest {}), |m| {
            format!("agent {:?} of {}/{}", m.agent_name, m.owner_username, m.workspace_name)
        })
        .await?;
    let mut manifest = kit::Manifest::try_from(manifest).map_err(|e| format!("manifest: {e}"))?;
    if let Some(map) = manifest.derpmap.as_mut() {
        kit::rewrite_derp_map(map, client.base_url());
    }
    out.event(
        "manifest",
        None,
        format!(
            "{} app(s), {} script(s), {} metadata item(s), {} DERP region(s)",
            manifest.apps.len(),
            manifest.scripts.len(),
            manifest.metadata.len(),
            manifest.derpmap.as_ref().map_or(0, |m| m.regions.len())
        ),
    );

    let request = PostLogSourceRequest {
        id: DEMO_LOG_SOURCE,
        display_name: "coder-agentsdk demo".to_owned(),
        icon: "/emojis/1f980.png".to_owned(),
    };
    out.step("post log source", client.post_log_source(&request), |s| {
        format!("{:?} ({})", s.display_name, s.id)
    })
    .await?;

    lifecycle(out, &agent, agent::lifecycle::State::Created).await?;
    lifecycle(out, &agent, agent::lifecycle::State::Starting).await?;

    // Logs go through the log sender; its loop returns if the connection fails.
    let logs = LogSender::new();
    let uploads = tokio::spawn({
        let (logs, agent) = (logs.clone(), agent.clone());
        async move { logs.send_loop(&agent).await }
    });
    let own = logs.script_logger(DEMO_LOG_SOURCE);
    own.send([kit::Log::new(
        LogLevel::Info,
        format!("agent started, API v{}", rpc.version()),
    )]);
    for script in manifest.scripts.iter().filter(|s| s.run_on_start) {
        let logger = logs.script_logger(script.log_source_id);
        let mut writer = logger.writer(LogLevel::Info);
        if embedded.is_some() {
            // Only the embedded demo manifest's scripts run (they just echo).
            let output = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&script.script)
                .output()
                .await;
            match output {
                Ok(o) => {
                    tokio::io::AsyncWriteExt::write_all(&mut writer, &o.stdout)
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::io::AsyncWriteExt::write_all(&mut writer, &o.stderr)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => own.send([kit::Log::new(LogLevel::Error, format!("{}: {e}", script.display_name))]),
            }
        } else {
            own.send([kit::Log::new(
                LogLevel::Info,
                format!("not running {:?} (demo)", script.display_name),
            )]);
        }
        writer.close();
        logger.flush();
    }
    own.flush();
    let started = Instant::now();
    logs.wait_until_empty().await;
    out.event(
        "logs",
        Some(started.elapsed()),
        format!("{} script(s) logged through the log sender", manifest.scripts.len()),
    );

    lifecycle(out, &agent, agent::lifecycle::State::Ready).await?;

    let post_health = kit::app_health_poster(agent.clone());
    let healths: HashMap<uuid::Uuid, AppHealth> = manifest.apps.iter().map(|a| (a.id, AppHealth::Healthy)).collect();
    let count = healths.len();
    out.step("app health", post_health(healths), |_| {
        format!("{count} app(s) healthy")
    })
    .await?;

    // Reinit events (prebuilt workspaces being claimed); the embedded coderd sends one.
    let mut reinit = client.wait_for_reinit_loop();
    let workspace_id = manifest.workspace_id;
    let claim = async {
        match &embedded {
            Some(server) => {
                server.rest().wait_for_reinit_streams(1).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                server
                    .rest()
                    .send_reinit(ReinitializationEvent::prebuild_claimed(workspace_id));
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(claim);
    let mut claimed = false;
    let mut uploads = uploads;

    let deadline = options.duration.map(|d| tokio::time::Instant::now() + d);
    let mut next_stats = tokio::time::Instant::now();
    let mut reports = 0u64;
    let stop = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break "interrupted",
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => break "duration reached",
            _ = tokio::time::sleep_until(next_stats) => {
                reports += 1;
                let stats = kit::Stats {
                    connection_count: 1,
                    connections_by_proto: [("ssh".to_owned(), 1)].into(),
                    rx_bytes: 1024 * reports as i64,
                    tx_bytes: 2048 * reports as i64,
                    ..Default::default()
                };
                let response = out
                    .step("UpdateStats", agent.update_stats(agent::UpdateStatsRequest { stats: Some(stats.into()) }), |r| {
                        format!("report {reports}; next in {}s", r.report_interval.unwrap_or_default().seconds)
                    })
                    .await?;
                let interval = response.report_interval.and_then(|d| Duration::try_from(d).ok()).unwrap_or(Duration::from_secs(30));
                next_stats = tokio::time::Instant::now() + interval.max(Duration::from_millis(100));
            }
            event = reinit.next() => {
                let Some(event) = event else { break "reinit stream ended" };
                out.event("reinit", None, format!("workspace {} {}: fetching the manifest again", event.workspace_id, event.reason.as_str()));
                out.step("GetManifest", agent.get_manifest(Default::default()), |m| format!("agent {:?}", m.agent_name)).await?;
            }
            _ = &mut claim, if !claimed => claimed = true,
            reason = rpc.connection.closed() => return Err(format!("rpc connection lost: {reason}")),
            ended = &mut uploads => {
                let why = match ended {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(never)) => match never {},
                    Err(e) => e.to_string(),
                };
                return Err(format!("log uploads stopped: {why}"));
            }
        }
    };
    out.event("stopping", None, stop);

    lifecycle(out, &agent, agent::lifecycle::State::ShuttingDown).await?;
    own.send([kit::Log::new(LogLevel::Info, "agent shutting down")]);
    own.flush();
    if tokio::time::timeout(Duration::from_secs(5), logs.wait_until_empty())
        .await
        .is_err()
    {
        out.event("logs", None, "some logs were not sent before shutdown");
    }
    uploads.abort();
    lifecycle(out, &agent, agent::lifecycle::State::Off).await?;
    rpc.connection.close();
    out.event("done", None, format!("{reports} stats report(s)"));
    Ok(())
}

async fn lifecycle(out: &Out, client: &impl AgentClient20, state: agent::lifecycle::State) -> Result<(), String> {
    let request = agent::UpdateLifecycleRequest {
        lifecycle: Some(agent::Lifecycle {
            state: state as i32,
            changed_at: Some(timestamp()),
        }),
    };
    let name = state.as_str_name().to_ascii_lowercase();
    out.step("UpdateLifecycle", client.update_lifecycle(request), |_| {
        format!("state {name}")
    })
    .await
    .map(|_| ())
}
