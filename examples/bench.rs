//! Throughput, latency and memory of the agent RPC connection.
//!
//! ```text
//! cargo run --release --example bench                       # every case, embedded server
//! cargo run --release --example bench -- --url URL --token T
//! cargo run --release --example bench -- --case get_manifest -c 32 -n 50000
//! cargo run --release --example bench -- --tls --case rss_per_connection -n 1000   # over wss://
//! cargo run --release --example bench -- --url https://coder.internal --token T --ca-file ca.pem
//! ```
//!
//! Prints one JSON line per case. RPC cases (`get_manifest`, `update_stats`,
//! `batch_create_logs`) run on ONE connection with `concurrency` calls in
//! flight; each is paired with the floor measured in the same run: a bare
//! websocket round trip (tokio-tungstenite client and server on loopback)
//! with the same request and reply payload sizes and the same number of
//! messages in flight, and `ratio_to_floor` = RPC calls/s ÷ floor messages/s.
//! `rss_per_connection` opens 100 connections; `rss_after_calls` compares the
//! process RSS after `--first` (default 100,000) and after `-n` (default
//! 1,000,000; the issue's figure is `-n 10000000`) GetManifest calls on one
//! connection; `rss_cancel_streams` does the same for server streams
//! (StreamDerpMaps) opened, read once and cancelled (default 1,000,000).
//! The memory cases record no per-call figures (a latency per call would be
//! 16 bytes of the measurement's own growth). With the embedded server (the
//! default) RSS includes the server, which runs in this process: to measure
//! the client alone, run `cargo run --release --example server` and pass
//! `--url`/`--token`.
//! `rss_per_connection` also prints a `breakdown`: the same number of
//! connections built again layer by layer (TCP socket, websocket handshake,
//! yamux session, drpc connection and first call), with the RSS each layer
//! adds per connection (the crate forbids unsafe code, so no counting
//! allocator: RSS deltas over many connections instead); over `wss://` a
//! `tls_handshake` line stands between the TCP socket and the websocket.
//!
//! `--tls`: the embedded server serves HTTPS/wss:// with a certificate from a
//! CA made in this process, which the client trusts (through
//! `ClientBuilder::add_root_certificates_pem`); the floor's echo server then
//! speaks TLS too, so `ratio_to_floor` compares like with like. `--ca-file
//! FILE`: with `--url https://...`, trust the PEM certificates in FILE too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::agent::Agent28;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::{EmbeddedServer, Recorded};
use coder_agentsdk::Client;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str =
    "usage: bench [--url URL --token TOKEN [--ca-file PEM]] [--tls] [--case NAME] [-c CONCURRENCY] [-n CALLS]
             [--payload BYTES] [--no-floor]
cases: get_manifest update_stats batch_create_logs ws_echo rss_per_connection rss_after_calls rss_cancel_streams
       server_rss_after_calls (embedded server only; -n total calls, default 2,000,000)
memory cases: [--first N] calls/streams before the first RSS reading (default 100000)
soak (embedded server only, not in the default plan): [--duration 10m] [--restart-every 30s]";

/// Command line options.
#[derive(Debug, Default)]
struct Args {
    url: Option<String>,
    token: Option<String>,
    case: Option<String>,
    concurrency: Option<usize>,
    calls: Option<usize>,
    payload: Option<usize>,
    no_floor: bool,
    first: Option<usize>,
    duration: Option<Duration>,
    restart_every: Option<Duration>,
    tls: bool,
    ca_file: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = Some(value()?),
            "--token" => args.token = Some(value()?),
            "--case" => args.case = Some(value()?),
            "-c" | "--concurrency" => args.concurrency = Some(number(&value()?)?),
            "-n" | "--calls" => args.calls = Some(number(&value()?)?),
            "--payload" => args.payload = Some(number(&value()?)?),
            "--no-floor" => args.no_floor = true,
            "--tls" => args.tls = true,
            "--ca-file" => args.ca_file = Some(value()?),
            "--first" => args.first = Some(number(&value()?)?),
            "--duration" => args.duration = Some(duration(&value()?)?),
            "--restart-every" => args.restart_every = Some(duration(&value()?)?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.url.is_some() != args.token.is_some() {
        return Err("--url and --token go together".to_owned());
    }
    if args.tls && args.url.is_some() {
        return Err("--tls is for the embedded server; with --url give an https:// URL (and --ca-file)".to_owned());
    }
    Ok(args)
}

fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?}: use e.g. 10m, 30s or 500ms");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

fn number(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a positive number"))
}

/// Latencies and wall time of one measured run.
struct Run {
    calls: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_s(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_us(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i].as_secs_f64() * 1e6
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs `calls` calls of `call` with `concurrency` in flight at once.
async fn drive<F, Fut>(concurrency: usize, calls: usize, call: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let call = call.clone();
        let share = calls / concurrency + usize::from(w < calls % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            let mut errors = 0;
            for i in 0..share {
                let t = Instant::now();
                if !call(i).await {
                    errors += 1;
                }
                latencies.push(t.elapsed());
            }
            (latencies, errors)
        }));
    }
    let mut run = Run {
        calls,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(calls),
    };
    for t in tasks {
        let (l, e) = t.await.expect("worker panicked");
        run.latencies.extend(l);
        run.errors += e;
    }
    run.elapsed = start.elapsed();
    run
}

// ---------------------------------------------------------------------------
// The floor: a bare websocket round trip on loopback
// ---------------------------------------------------------------------------

/// A websocket server that answers each binary message with a message of the
/// size named by its first 4 bytes (big endian).
/// With `tls`, the echo server speaks TLS (wss://) with that config.
async fn start_echo_server(tls: Option<tokio_rustls::TlsAcceptor>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo server");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                match tls {
                    None => echo_session(tcp).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            echo_session(stream).await
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn echo_session<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut reply = bytes::Bytes::new();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(data) = msg else { continue };
        let want = data
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(0);
        if reply.len() != want {
            reply = bytes::Bytes::from(vec![7u8; want]);
        }
        if ws.send(Message::Binary(reply.clone())).await.is_err() {
            return;
        }
    }
}

/// `calls` round trips of `req_bytes` → `resp_bytes` on one websocket with
/// `concurrency` messages in flight (the echo preserves order).
async fn ws_round_trips(target: &Target, concurrency: usize, calls: usize, req_bytes: usize, resp_bytes: usize) -> Run {
    let addr = target.echo;
    let tcp = TcpStream::connect(addr).await.expect("connect echo");
    tcp.set_nodelay(true).expect("nodelay");
    match &target.echo_tls {
        None => {
            let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .expect("echo handshake");
            ws_round_trips_on(ws, concurrency, calls, req_bytes, resp_bytes).await
        }
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .expect("echo tls handshake");
            let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/"), stream)
                .await
                .expect("echo handshake");
            ws_round_trips_on(ws, concurrency, calls, req_bytes, resp_bytes).await
        }
    }
}

async fn ws_round_trips_on<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    concurrency: usize,
    calls: usize,
    req_bytes: usize,
    resp_bytes: usize,
) -> Run {
    let (mut sink, mut stream) = ws.split();
    let mut payload = vec![0u8; req_bytes.max(4)];
    payload[..4].copy_from_slice(&(resp_bytes as u32).to_be_bytes());
    let payload = bytes::Bytes::from(payload);
    let slots = Arc::new(Semaphore::new(concurrency));
    let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::new(Mutex::new(VecDeque::with_capacity(concurrency)));
    let start = Instant::now();
    let writer = {
        let slots = slots.clone();
        let sent = sent.clone();
        tokio::spawn(async move {
            for _ in 0..calls {
                slots.acquire().await.expect("semaphore").forget();
                sent.lock().expect("lock").push_back(Instant::now());
                if sink.send(Message::Binary(payload.clone())).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut latencies = Vec::with_capacity(calls);
    let mut errors = 0;
    while latencies.len() < calls {
        match stream.next().await {
            Some(Ok(Message::Binary(_))) => {
                let t = sent.lock().expect("lock").pop_front().unwrap_or_else(Instant::now);
                latencies.push(t.elapsed());
                slots.add_permits(1);
            }
            Some(Ok(_)) => {}
            _ => {
                errors = calls - latencies.len();
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    writer.abort();
    Run {
        calls,
        errors,
        elapsed,
        latencies,
    }
}

// ---------------------------------------------------------------------------
// RPC cases
// ---------------------------------------------------------------------------

/// What a case needs: a client on one connection and the payload sizes.
struct Target {
    client: Client,
    embedded: Option<EmbeddedServer>,
    echo: std::net::SocketAddr,
    /// The client config of the floor's TLS echo server (`--tls`).
    echo_tls: Option<Arc<rustls::ClientConfig>>,
    /// The PEM certificates the client trusts besides the system's.
    ca_pem: Option<Vec<u8>>,
    /// Skip the websocket floor (e.g. to count syscalls of the RPC alone).
    no_floor: bool,
}

impl Target {
    async fn agent(&self) -> Agent28 {
        self.client.connect_rpc28().await.expect("connect").0
    }

    async fn connection(&self) -> (coder_agentsdk::rpc::Connection, Agent28) {
        let conn = self
            .client
            .connect_rpc_version(coder_agentsdk::drpc::ApiVersion::new(2, 8), None)
            .await
            .expect("connect");
        let agent = Agent28::new(conn.transport());
        (conn, agent)
    }
}

fn stats_request() -> agent::UpdateStatsRequest {
    agent::UpdateStatsRequest {
        stats: Some(agent::Stats {
            connection_count: 3,
            rx_packets: 1_000,
            rx_bytes: 1_000_000,
            tx_packets: 2_000,
            tx_bytes: 2_000_000,
            connection_median_latency_ms: 1.5,
            ..Default::default()
        }),
    }
}

fn logs_request(source: &[u8]) -> agent::BatchCreateLogsRequest {
    agent::BatchCreateLogsRequest {
        log_source_id: source.to_vec(),
        logs: (0..100)
            .map(|i| agent::Log {
                created_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000 + i,
                    nanos: 0,
                }),
                output: format!("{i:03} {}", "x".repeat(96)),
                level: agent::log::Level::Info as i32,
            })
            .collect(),
    }
}

async fn rpc_case(target: &Target, case: &str, concurrency: usize, calls: usize) -> Value {
    let agent = target.agent().await;
    let source = uuid::Uuid::new_v4().as_bytes().to_vec();
    // Payload sizes for the floor, from one real call.
    let (req_bytes, resp_bytes) = match case {
        "get_manifest" => {
            let m = agent.get_manifest(Default::default()).await.expect("get_manifest");
            (0, m.encoded_len())
        }
        "update_stats" => {
            let r = agent.update_stats(stats_request()).await.expect("update_stats");
            (stats_request().encoded_len(), r.encoded_len())
        }
        _ => {
            let r = agent.batch_create_logs(logs_request(&source)).await;
            (
                logs_request(&source).encoded_len(),
                r.map(|r| r.encoded_len()).unwrap_or(0),
            )
        }
    };
    let run_once = |agent: Agent28, n: usize| {
        let case = case.to_owned();
        let source = source.clone();
        drive(concurrency, n, move |_| {
            let agent = agent.clone();
            let case = case.clone();
            let source = source.clone();
            async move {
                match case.as_str() {
                    "get_manifest" => agent.get_manifest(Default::default()).await.is_ok(),
                    "update_stats" => agent.update_stats(stats_request()).await.is_ok(),
                    _ => agent.batch_create_logs(logs_request(&source)).await.is_ok(),
                }
            }
        })
    };
    // Warm up (connection windows, allocator, task pool), then measure.
    run_once(agent.clone(), (calls / 10).clamp(concurrency, 2_000)).await;
    let mut run = run_once(agent, calls).await;
    let mut line = json!({
        "case": case,
        "concurrency": concurrency,
        "calls": calls,
        "errors": run.errors,
        "calls_per_s": round(run.per_s()),
        "p50_us": round(run.percentile_us(0.50)),
        "p99_us": round(run.percentile_us(0.99)),
        "req_bytes": req_bytes,
        "resp_bytes": resp_bytes,
    });
    if !target.no_floor {
        let mut floor = ws_round_trips(target, concurrency, calls, req_bytes, resp_bytes).await;
        line["floor_calls_per_s"] = json!(round(floor.per_s()));
        line["floor_p50_us"] = json!(round(floor.percentile_us(0.50)));
        line["floor_p99_us"] = json!(round(floor.percentile_us(0.99)));
        line["ratio_to_floor"] = json!((run.per_s() / floor.per_s() * 1000.0).round() / 1000.0);
        line["p50_ratio_to_floor"] =
            json!((run.percentile_us(0.50) / floor.percentile_us(0.50) * 100.0).round() / 100.0);
    }
    if case == "batch_create_logs" {
        line["logs_per_s"] = json!(round(run.per_s() * 100.0));
    }
    line
}

async fn echo_case(target: &Target, concurrency: usize, calls: usize, payload: usize) -> Value {
    let mut run = ws_round_trips(target, concurrency, calls, payload, payload).await;
    json!({
        "case": "ws_echo",
        "concurrency": concurrency,
        "calls": calls,
        "errors": run.errors,
        "calls_per_s": round(run.per_s()),
        "p50_us": round(run.percentile_us(0.50)),
        "p99_us": round(run.percentile_us(0.99)),
        "req_bytes": payload,
        "resp_bytes": payload,
    })
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// VmRSS of this process in KiB (0 where /proc is not available).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn rss_per_connection(target: &Target, connections: usize) -> Value {
    // One connection first, so one-time costs are not counted.
    let warm = target.agent().await;
    let _ = warm.get_manifest(Default::default()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The layer-by-layer pass first, its connections kept open, so that
    // neither pass reuses memory the other freed.
    let (breakdown, held) = memory_breakdown(target, connections).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        let agent = target.agent().await;
        let ok = agent.get_manifest(Default::default()).await.is_ok();
        open.push((agent, ok));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib();
    let errors = open.iter().filter(|(_, ok)| !ok).count();
    drop(open);
    drop(held);
    json!({
        "case": "rss_per_connection",
        "connections": connections,
        "errors": errors,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_connection_kib": round(after.saturating_sub(before) as f64 / connections as f64),
        "includes_embedded_server": target.embedded.is_some(),
        "breakdown": breakdown,
    })
}

/// Builds `n` connections again, layer by layer, and reports the RSS per
/// connection each layer adds (TCP socket, TLS handshake for https://,
/// websocket handshake, yamux session, drpc connection and first call).
/// The TLS layer is what the client's dial does: tokio-rustls with the
/// client's own (shared) rustls config.
async fn memory_breakdown(target: &Target, n: usize) -> (Value, Vec<Agent28>) {
    use coder_agentsdk::mux::yamux::{Session, SessionConfig};
    use coder_agentsdk::rpc::{rpc_url, Connection, CURRENT_VERSION};

    let base = target.client.base_url().clone();
    let tls = match base.scheme() {
        "http" => false,
        "https" => true,
        _ => return (json!({"skipped": "only for http:// and https:// servers"}), Vec::new()),
    };
    let Ok(url) = rpc_url(&base, CURRENT_VERSION, None) else {
        return (json!({"skipped": "bad url"}), Vec::new());
    };
    let token = match target.client.session_token().await {
        Ok(t) => t,
        Err(e) => return (json!({"skipped": e.to_string()}), Vec::new()),
    };
    let addr = match (base.host_str(), base.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => return (json!({"skipped": "no address"}), Vec::new()),
    };
    let live = || rss_kib() as i64 * 1024;
    let per = |before: i64, after: i64| round((after - before) as f64 / n as f64);
    let h0 = live();
    let mut tcps = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect(&addr).await {
            Ok(t) => {
                let _ = t.set_nodelay(true);
                tcps.push(t)
            }
            Err(e) => return (json!({"skipped": format!("connect: {e}")}), Vec::new()),
        }
    }
    let h1 = live();
    let mut tls_streams = Vec::new();
    if tls {
        let name = match base.host() {
            Some(url::Host::Domain(d)) => rustls::pki_types::ServerName::try_from(d.to_owned()).ok(),
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip).into()),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip).into()),
            None => None,
        };
        let Some(name) = name else {
            return (json!({"skipped": "no TLS server name"}), Vec::new());
        };
        let connector = tokio_rustls::TlsConnector::from(target.client.tls_config().clone());
        tls_streams.reserve(n);
        for tcp in std::mem::take(&mut tcps) {
            match connector.connect(name.clone(), tcp).await {
                Ok(s) => tls_streams.push(s),
                Err(e) => return (json!({"skipped": format!("tls handshake: {e}")}), Vec::new()),
            }
        }
    }
    let h_tls = live();
    use coder_agentsdk::mux::websocket::{client_config, client_config_tls};
    let sockets = if tls {
        ws_handshakes(tls_streams, &url, &token, client_config_tls())
            .await
            .map(sessions_of)
    } else {
        ws_handshakes(tcps, &url, &token, client_config())
            .await
            .map(sessions_of)
    };
    let sockets = match sockets {
        Ok(s) => s,
        Err(e) => return (json!({"skipped": e}), Vec::new()),
    };
    let h2 = live();
    let sessions: Vec<Session> = sockets.into_iter().map(|make| make(SessionConfig::default())).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h3 = live();
    let mut agents = Vec::with_capacity(n);
    let mut errors = 0;
    for session in sessions {
        let conn = Connection::new(session, CURRENT_VERSION);
        let agent = Agent28::new(conn.transport());
        errors += usize::from(agent.get_manifest(Default::default()).await.is_err());
        agents.push(agent);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let h4 = live();
    let mut layers = json!({"tcp_socket": per(h0, h1)});
    if tls {
        layers["tls_handshake"] = json!(per(h1, h_tls));
    }
    layers["websocket_handshake"] = json!(per(h_tls, h2));
    layers["yamux_session"] = json!(per(h2, h3));
    layers["drpc_connection_first_call"] = json!(per(h3, h4));
    layers["total"] = json!(per(h0, h4));
    let value = json!({
        "connections": n,
        "scheme": url.scheme(),
        "errors": errors,
        "rss_bytes_per_connection": layers,
        "websocket_read_buffer_bytes": if tls {
            coder_agentsdk::mux::websocket::TLS_READ_BUFFER_SIZE
        } else {
            coder_agentsdk::mux::websocket::READ_BUFFER_SIZE
        },
    });
    (value, agents)
}

/// A websocket waiting for its yamux session, started later so that the
/// session's cost is measured apart from the handshake's.
type SessionMaker = Box<dyn FnOnce(coder_agentsdk::mux::yamux::SessionConfig) -> coder_agentsdk::mux::yamux::Session>;

fn sessions_of<S>(sockets: Vec<tokio_tungstenite::WebSocketStream<S>>) -> Vec<SessionMaker>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use coder_agentsdk::mux::websocket::WsByteStream;
    use coder_agentsdk::mux::yamux::Session;
    sockets
        .into_iter()
        .map(|ws| Box::new(move |config| Session::client(WsByteStream::new(ws), config)) as SessionMaker)
        .collect()
}

/// The websocket upgrade of the RPC endpoint on each stream, with `config`
/// (the crate's client websocket settings, as the dial uses them).
async fn ws_handshakes<S>(
    streams: Vec<S>,
    url: &url::Url,
    token: &coder_agentsdk::auth::SessionToken,
    config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
) -> Result<Vec<tokio_tungstenite::WebSocketStream<S>>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut sockets = Vec::with_capacity(streams.len());
    for stream in streams {
        let mut request = url.as_str().into_client_request().map_err(|e| e.to_string())?;
        let value = token.expose().parse().map_err(|_| "token header".to_owned())?;
        request.headers_mut().insert("Coder-Session-Token", value);
        match coder_agentsdk::mux::websocket::client_handshake(request, stream, config).await {
            Ok((ws, _)) => sockets.push(ws),
            Err(e) => return Err(format!("handshake: {e}")),
        }
    }
    Ok(sockets)
}

/// Runs `calls` calls of `call` with `concurrency` in flight, keeping no
/// per-call record; returns the number of failed calls.
async fn drive_counting<F, Fut>(concurrency: usize, calls: usize, call: F) -> usize
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let call = call.clone();
        let share = calls / concurrency + usize::from(w < calls % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            for _ in 0..share {
                if !call().await {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.expect("worker panicked");
    }
    errors
}

/// RSS after `first` and after `total` runs of `call` on one connection.
async fn rss_between<F, Fut>(
    case: &str,
    target: &Target,
    concurrency: usize,
    first: usize,
    total: usize,
    call: F,
) -> Value
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let first = first.min(total);
    let start = Instant::now();
    let errors_first = drive_counting(concurrency, first, call.clone()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_first = rss_kib();
    let errors_rest = drive_counting(concurrency, total - first, call).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_total = rss_kib();
    let growth = rss_total as i64 - rss_first as i64;
    json!({
        "case": case,
        "concurrency": concurrency,
        "calls": total,
        "errors": errors_first + errors_rest,
        "first_calls": first,
        "rss_after_first_kib": rss_first,
        "rss_after_all_kib": rss_total,
        "growth_kib": growth,
        "growth_bytes_per_call_after_first": round(growth as f64 * 1024.0 / (total - first).max(1) as f64),
        "within_1_mib": growth <= 1024,
        "calls_per_s": round(total as f64 / start.elapsed().as_secs_f64()),
        "includes_embedded_server": target.embedded.is_some(),
    })
}

/// `server_rss_after_calls`: does the embedded server keep anything per call?
///
/// Method: the server runs in this process and the calling agent in a child
/// process (this same binary with `--url/--token --case update_stats -c 32
/// --no-floor`), so the RSS read here is the server's; the rest of this
/// process (the bench's own idle connection and the idle echo server) does not
/// change during the run. The first child makes `first` UpdateStats calls
/// (plus its warm-up) on one connection; RSS is read; a second child makes the
/// remaining `total - first` on a new connection; RSS is read again. Both
/// connections are closed when their child exits. `growth_kib` is the second
/// figure minus the first (target: within 2 MiB).
async fn server_rss_after_calls(target: &Target, first: usize, total: usize) -> Value {
    let Some(server) = &target.embedded else {
        return json!({"case": "server_rss_after_calls", "error": "needs the embedded server (run without --url)"});
    };
    let (url, token) = (server.url().to_string(), server.token().to_owned());
    // Over TLS the child trusts the same CA, from a file.
    let ca_file = target.ca_pem.as_ref().map(|pem| {
        let path = std::env::temp_dir().join(format!("bench-ca-{}.pem", std::process::id()));
        std::fs::write(&path, pem).expect("write the CA file");
        path.display().to_string()
    });
    let child = |calls: usize| {
        let (url, token, ca_file) = (url.clone(), token.clone(), ca_file.clone());
        async move {
            let exe = std::env::current_exe().expect("own executable");
            let mut command = tokio::process::Command::new(exe);
            if let Some(file) = &ca_file {
                command.args(["--ca-file", file]);
            }
            let out = command
                .args(["--url", &url, "--token", &token, "--case", "update_stats", "-c", "32"])
                .args(["-n", &calls.to_string(), "--no-floor"])
                .output()
                .await
                .expect("run the client child");
            let line: Value = String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| json!({"errors": calls, "stderr": String::from_utf8_lossy(&out.stderr)}));
            line
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_start = rss_kib();
    let a = child(first).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_first = rss_kib();
    let b = child(total.saturating_sub(first)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_total = rss_kib();
    if let Some(file) = &ca_file {
        let _ = std::fs::remove_file(file);
    }
    json!({
        "case": "server_rss_after_calls",
        "rpc": "UpdateStats",
        "concurrency": 32,
        "calls": total,
        "first_calls": first,
        "errors": a["errors"].as_u64().unwrap_or(0) + b["errors"].as_u64().unwrap_or(0),
        "calls_per_s": [a["calls_per_s"].clone(), b["calls_per_s"].clone()],
        "server_rss_start_kib": rss_start,
        "server_rss_after_first_kib": rss_first,
        "server_rss_after_all_kib": rss_total,
        "growth_kib": rss_total as i64 - rss_first as i64,
        "recorded_kept": server.api().recorded().len(),
        "recorded_dropped": server.api().recorded_dropped(),
        "open_connections": server.connections(),
        "method": "server in this process, client in a child process",
    })
}

async fn rss_after_calls(target: &Target, concurrency: usize, first: usize, total: usize) -> Value {
    let (conn, agent) = target.connection().await;
    let call = move || {
        let agent = agent.clone();
        async move { agent.get_manifest(Default::default()).await.is_ok() }
    };
    let mut line = rss_between("rss_after_calls", target, concurrency, first, total, call).await;
    line["open_streams_after"] = json!(conn.open_streams());
    line
}

/// Opens StreamDerpMaps, reads the first map and drops the stream (a hard
/// cancel: the stream is reset), `total` times on one connection.
async fn rss_cancel_streams(target: &Target, concurrency: usize, first: usize, total: usize) -> Value {
    let (conn, _) = target.connection().await;
    let tailnet = coder_agentsdk::rpc::tailnet::Tailnet28::new(conn.transport());
    let call = move || {
        let tailnet = tailnet.clone();
        async move {
            match tailnet.stream_derp_maps(Default::default()).await {
                Ok(mut maps) => matches!(maps.next().await, Some(Ok(_))),
                Err(_) => false,
            }
        }
    };
    let mut line = rss_between("rss_cancel_streams", target, concurrency, first, total, call).await;
    // Cancelled streams are reaped asynchronously; give them a moment.
    for _ in 0..100 {
        if conn.open_streams() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    line["open_streams_after"] = json!(conn.open_streams());
    line
}

// ---------------------------------------------------------------------------
// Soak: one agent's traffic against a server restarted every 30 s
// ---------------------------------------------------------------------------

/// Bits of a sequence number's flags: which kind of report carried it.
const STATS: u8 = 1;
const LOGS: u8 = 2;
const METADATA: u8 = 4;
/// Log lines per batch.
const LINES: usize = 5;

/// One flag byte per sequence number (a few per second): what the agent
/// had acknowledged, kept small so the tally itself does not blur RSS.
#[derive(Debug, Default)]
struct Flags(Vec<u8>);

impl Flags {
    fn set(&mut self, seq: usize, bit: u8) {
        if self.0.len() <= seq {
            self.0.resize(seq + 1, 0);
        }
        self.0[seq] |= bit;
    }

    fn has(&self, seq: usize, bit: u8) -> bool {
        self.0.get(seq).is_some_and(|f| f & bit != 0)
    }

    fn count(&self, bit: u8) -> usize {
        self.0.iter().filter(|f| *f & bit != 0).count()
    }
}

/// What the agent had acknowledged and what it did.
#[derive(Debug, Default)]
struct SoakAgent {
    acked: Flags,
    lifecycle: usize,
    manifests: u64,
    cancelled_calls: u64,
    cancelled_streams: u64,
    call_errors: u64,
    connects: u64,
    connect_failures: u64,
}

/// What the servers recorded, over every restart.
#[derive(Debug, Default)]
struct SoakServer {
    recorded: Flags,
    /// Log lines recorded per sequence number (a batch counts when all arrived).
    lines: Vec<u8>,
    lifecycle: usize,
}

impl SoakServer {
    fn absorb(&mut self, recorded: Vec<Recorded>) {
        for r in recorded {
            match r {
                Recorded::Stats(s) => self.recorded.set(s.rx_bytes as usize, STATS),
                Recorded::Logs { logs, .. } => {
                    for line in logs {
                        let seq = line
                            .output
                            .split_whitespace()
                            .nth(2)
                            .and_then(|n| n.parse::<usize>().ok());
                        if let Some(seq) = seq {
                            if self.lines.len() <= seq {
                                self.lines.resize(seq + 1, 0);
                            }
                            self.lines[seq] += 1;
                            if self.lines[seq] as usize == LINES {
                                self.recorded.set(seq, LOGS);
                            }
                        }
                    }
                }
                Recorded::Metadata(m) => {
                    for m in m {
                        if let Some(seq) = m.result.and_then(|r| r.value.parse::<usize>().ok()) {
                            self.recorded.set(seq, METADATA);
                        }
                    }
                }
                Recorded::Lifecycle(_) => self.lifecycle += 1,
                _ => {}
            }
        }
    }
}

/// A small xorshift: random cancel points without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const SOAK_TOKEN: &str = "soak-token";

async fn start_soak_server(addr: Option<std::net::SocketAddr>) -> EmbeddedServer {
    // The port of a stopped server may take a moment to be free again.
    for _ in 0..100 {
        let mut builder = EmbeddedServer::builder().token(SOAK_TOKEN);
        if let Some(addr) = addr {
            builder = builder.listen(addr);
        }
        if let Ok(server) = builder.start().await {
            server.api().set_report_interval(Duration::from_millis(500));
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot restart the embedded server on {addr:?}");
}

/// One connection's traffic until the connection fails or `end`.
async fn soak_session(
    rpc: &coder_agentsdk::rpc::Negotiated,
    end: tokio::time::Instant,
    seq: &mut i64,
    rng: &mut Rng,
    acked: &mut SoakAgent,
) {
    let agent = rpc.agent.clone();
    let tailnet = coder_agentsdk::rpc::tailnet::Tailnet28::new(rpc.connection.transport());
    let source = uuid::Uuid::new_v4().as_bytes().to_vec();
    let ready = agent::UpdateLifecycleRequest {
        lifecycle: Some(agent::Lifecycle {
            state: agent::lifecycle::State::Ready as i32,
            changed_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        }),
    };
    match agent.update_lifecycle(ready).await {
        Ok(_) => acked.lifecycle += 1,
        Err(_) => return,
    }
    let mut stats = tokio::time::interval(Duration::from_millis(500));
    let mut logs = tokio::time::interval(Duration::from_millis(100));
    let mut metadata = tokio::time::interval(Duration::from_secs(1));
    let mut cancels = tokio::time::interval(Duration::from_millis(10));
    // A failed call is counted; a failed connection ends the session.
    let failed = |_: coder_agentsdk::drpc::RpcError, acked: &mut SoakAgent| {
        acked.call_errors += 1;
        rpc.connection.is_closed()
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => return,
            reason = rpc.connection.closed() => { let _ = reason; return }
            _ = stats.tick() => {
                *seq += 1;
                let id = *seq;
                let request = agent::UpdateStatsRequest {
                    stats: Some(agent::Stats { connection_count: 1, rx_bytes: id, ..Default::default() }),
                };
                match agent.update_stats(request).await {
                    Ok(_) => acked.acked.set(id as usize, STATS),
                    Err(e) => if failed(e, acked) { return },
                }
            }
            _ = logs.tick() => {
                *seq += 1;
                let id = *seq;
                let request = agent::BatchCreateLogsRequest {
                    log_source_id: source.clone(),
                    logs: (0..LINES)
                        .map(|i| agent::Log { created_at: None, output: format!("soak log {id} #{i}"), level: agent::log::Level::Info as i32 })
                        .collect(),
                };
                match agent.batch_create_logs(request).await {
                    Ok(_) => acked.acked.set(id as usize, LOGS),
                    Err(e) => if failed(e, acked) { return },
                }
            }
            _ = metadata.tick() => {
                *seq += 1;
                let id = *seq;
                let request = agent::BatchUpdateMetadataRequest {
                    metadata: vec![agent::Metadata {
                        key: "soak".to_owned(),
                        result: Some(agent::workspace_agent_metadata::Result { value: id.to_string(), ..Default::default() }),
                    }],
                };
                match agent.batch_update_metadata(request).await {
                    Ok(_) => acked.acked.set(id as usize, METADATA),
                    Err(e) => if failed(e, acked) { return },
                }
            }
            _ = cancels.tick() => {
                // A unary call or a server stream, dropped at a random point
                // (0 to 2 ms in: before sending, while waiting, or never).
                let wait = Duration::from_micros(rng.below(2_000));
                if rng.below(2) == 0 {
                    match tokio::time::timeout(wait, agent.get_manifest(Default::default())).await {
                        Ok(Ok(_)) => acked.manifests += 1,
                        Ok(Err(e)) => if failed(e, acked) { return },
                        Err(_) => acked.cancelled_calls += 1,
                    }
                } else {
                    let open = async {
                        let mut maps = tailnet.stream_derp_maps(Default::default()).await?;
                        maps.next().await.transpose()
                    };
                    match tokio::time::timeout(wait, open).await {
                        Ok(Ok(_)) | Err(_) => acked.cancelled_streams += 1,
                        Ok(Err(e)) => if failed(e, acked) { return },
                    }
                }
            }
        }
    }
}

async fn soak(duration: Duration, restart_every: Duration) -> Value {
    let started = Instant::now();
    let end = tokio::time::Instant::now() + duration;
    let first = start_soak_server(None).await;
    let addr = first.addr();
    let url = first.url().to_string();
    let server_task = tokio::spawn(async move {
        let mut server = first;
        let mut recorded = SoakServer::default();
        let mut restarts = 0u64;
        let mut rss = vec![rss_kib()];
        loop {
            let stop_at = (tokio::time::Instant::now() + restart_every).min(end);
            tokio::time::sleep_until(stop_at).await;
            let api = server.api().clone();
            server.shutdown();
            drop(server);
            // Handlers cut by the shutdown finish or are dropped now.
            tokio::time::sleep(Duration::from_millis(100)).await;
            recorded.absorb(api.recorded());
            drop(api);
            if tokio::time::Instant::now() >= end {
                rss.push(rss_kib());
                return (recorded, restarts, rss);
            }
            server = start_soak_server(Some(addr)).await;
            restarts += 1;
            rss.push(rss_kib());
        }
    });

    let client = Client::builder(&url)
        .token(SOAK_TOKEN)
        .rpc_options(
            coder_agentsdk::rpc::RpcOptions::default()
                .keepalive(Duration::from_secs(1), Duration::from_secs(1))
                .default_deadline(Duration::from_secs(5))
                .dial_timeout(Duration::from_secs(2)),
        )
        .build()
        .expect("client");
    let mut acked = SoakAgent::default();
    let mut seq = 0i64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (floor, ceiling) = (Duration::from_millis(50), Duration::from_secs(2));
    let mut backoff = floor;
    let mut open_streams_after = 0;
    while tokio::time::Instant::now() < end {
        match client.connect_rpc_negotiated_with_role(Some("agent")).await {
            Ok(rpc) => {
                backoff = floor;
                acked.connects += 1;
                soak_session(&rpc, end, &mut seq, &mut rng, &mut acked).await;
                if tokio::time::Instant::now() >= end {
                    for _ in 0..200 {
                        if rpc.connection.open_streams() == 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    open_streams_after = rpc.connection.open_streams();
                }
                rpc.connection.close();
            }
            Err(_) => {
                acked.connect_failures += 1;
                tokio::time::sleep(backoff.min(end.saturating_duration_since(tokio::time::Instant::now()))).await;
                backoff = (backoff * 2).min(ceiling);
            }
        }
    }
    let (recorded, restarts, rss) = server_task.await.expect("server task");
    let lost = |bit: u8| {
        (0..acked.acked.0.len())
            .filter(|&seq| acked.acked.has(seq, bit) && !recorded.recorded.has(seq, bit))
            .count()
    };
    let (lost_stats, lost_logs, lost_metadata) = (lost(STATS), lost(LOGS), lost(METADATA));
    // RSS from the first restart on (after warm-up) to the end.
    let warm = rss.get(1).copied().unwrap_or(rss[0]);
    let last = rss.last().copied().unwrap_or(0);
    json!({
        "case": "soak",
        "duration_s": round(started.elapsed().as_secs_f64()),
        "restart_every_s": restart_every.as_secs_f64(),
        "server_restarts": restarts,
        "connects": acked.connects,
        "connect_failures": acked.connect_failures,
        "acked": {
            "stats": acked.acked.count(STATS),
            "log_batches": acked.acked.count(LOGS),
            "metadata": acked.acked.count(METADATA),
            "lifecycle": acked.lifecycle,
            "manifests": acked.manifests,
        },
        "recorded": {
            "stats": recorded.recorded.count(STATS),
            "log_batches": recorded.recorded.count(LOGS),
            "metadata": recorded.recorded.count(METADATA),
            "lifecycle": recorded.lifecycle,
        },
        "lost_acked": {
            "stats": lost_stats,
            "log_batches": lost_logs,
            "metadata": lost_metadata,
            "lifecycle": acked.lifecycle.saturating_sub(recorded.lifecycle),
        },
        "cancelled_calls": acked.cancelled_calls,
        "cancelled_streams": acked.cancelled_streams,
        "call_errors": acked.call_errors,
        "open_streams_after": open_streams_after,
        "rss_kib_at_restarts": rss,
        "rss_growth_kib_after_warmup": last as i64 - warm as i64,
        "includes_embedded_server": true,
    })
}

// ---------------------------------------------------------------------------

/// The embedded server's certificate (`--tls`), for 127.0.0.1 and
/// localhost, signed by a CA made here, which the client trusts.
struct TestTls {
    ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn make_test_tls() -> Result<TestTls, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "bench CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(TestTls {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    })
}

/// The default plan: (case, concurrency, calls). Memory first, so that what
/// the embedded server records (stats, logs) does not blur it.
const PLAN: &[(&str, usize, usize)] = &[
    ("rss_per_connection", 1, 100),
    ("rss_after_calls", 32, 1_000_000),
    ("rss_cancel_streams", 32, 1_000_000),
    ("ws_echo", 1, 20_000),
    ("ws_echo", 32, 100_000),
    ("get_manifest", 1, 10_000),
    ("get_manifest", 32, 60_000),
    ("update_stats", 1, 10_000),
    ("update_stats", 32, 60_000),
    ("batch_create_logs", 1, 3_000),
    ("batch_create_logs", 8, 10_000),
];

async fn run_case(
    target: &Target,
    case: &str,
    concurrency: usize,
    calls: usize,
    payload: usize,
    first: usize,
) -> Result<Value, String> {
    Ok(match case {
        "get_manifest" | "update_stats" | "batch_create_logs" => rpc_case(target, case, concurrency, calls).await,
        "ws_echo" => echo_case(target, concurrency, calls, payload).await,
        "rss_per_connection" => rss_per_connection(target, calls).await,
        "server_rss_after_calls" => server_rss_after_calls(target, first.min(calls), calls).await,
        "rss_after_calls" => rss_after_calls(target, concurrency, first, calls).await,
        "rss_cancel_streams" => rss_cancel_streams(target, concurrency, first, calls).await,
        other => return Err(format!("unknown case {other:?}\n{USAGE}")),
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.case.as_deref() == Some("soak") {
        if args.url.is_some() {
            eprintln!("soak restarts the embedded server: it takes no --url");
            std::process::exit(2);
        }
        let duration = args.duration.unwrap_or(Duration::from_secs(600));
        let restart_every = args.restart_every.unwrap_or(Duration::from_secs(30));
        println!("{}", soak(duration, restart_every).await);
        return;
    }
    let test_tls = args
        .tls
        .then(|| make_test_tls().expect("make a test CA and certificate"));
    let (embedded, url, token) = match (&args.url, &args.token) {
        (Some(url), Some(token)) => (None, url.clone(), token.clone()),
        _ => {
            let mut builder = EmbeddedServer::builder();
            if let Some(tls) = &test_tls {
                builder = builder.tls(vec![tls.cert.clone()], tls.key.clone_key());
            }
            let server = builder.start().await.expect("start embedded server");
            let (url, token) = (server.url().to_string(), server.token().to_owned());
            (Some(server), url, token)
        }
    };
    let ca_pem = match (&args.ca_file, &test_tls) {
        (Some(file), _) => Some(std::fs::read(file).unwrap_or_else(|e| {
            eprintln!("--ca-file {file}: {e}");
            std::process::exit(2);
        })),
        (None, Some(tls)) => Some(tls.ca_pem.clone().into_bytes()),
        (None, None) => None,
    };
    let mut builder = Client::builder(&url).token(token);
    if let Some(pem) = &ca_pem {
        builder = builder.add_root_certificates_pem(pem).unwrap_or_else(|e| {
            eprintln!("bench: {e}");
            std::process::exit(2);
        });
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    // The floor's echo server presents the same certificate.
    let echo_acceptor = test_tls.as_ref().map(|tls| {
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![tls.cert.clone()], tls.key.clone_key())
            .expect("echo server TLS config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let target = Target {
        echo_tls: test_tls.as_ref().map(|_| client.tls_config().clone()),
        ca_pem,
        client,
        embedded,
        echo: start_echo_server(echo_acceptor).await,
        no_floor: args.no_floor,
    };
    if let Err(e) = target.client.connect_rpc28().await {
        eprintln!("bench: cannot connect to {url}: {e}");
        std::process::exit(1);
    }
    let payload = args.payload.unwrap_or(1024);
    let plan: Vec<(String, usize, usize)> = match &args.case {
        Some(case) => {
            let default = PLAN
                .iter()
                .find(|(c, conc, _)| c == case && args.concurrency.is_none_or(|want| want == *conc))
                .or_else(|| PLAN.iter().find(|(c, _, _)| c == case));
            let concurrency = args.concurrency.or(default.map(|d| d.1)).unwrap_or(1);
            let calls = args.calls.or(default.map(|d| d.2)).unwrap_or(10_000);
            vec![(case.clone(), concurrency, calls)]
        }
        None => PLAN
            .iter()
            .map(|(c, conc, n)| {
                (
                    c.to_string(),
                    args.concurrency.unwrap_or(*conc),
                    args.calls.unwrap_or(*n),
                )
            })
            .collect(),
    };
    for (case, concurrency, calls) in plan {
        let first = args.first.unwrap_or(100_000);
        match run_case(&target, &case, concurrency, calls, payload, first).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }
}
