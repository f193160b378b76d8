//! Throughput, latency and memory of the agent RPC connection.
//!
//! ```text
//! cargo run --release --example bench                       # every case, embedded server
//! cargo run --release --example bench -- --url URL --token T
//! cargo run --release --example bench -- --case get_manifest -c 32 -n 50000
//! ```
//!
//! Prints one JSON line per case. RPC cases (`get_manifest`, `update_stats`,
//! `batch_create_logs`) run on ONE connection with `concurrency` calls in
//! flight; each is paired with the floor measured in the same run: a bare
//! websocket round trip (tokio-tungstenite client and server on loopback)
//! with the same request and reply payload sizes and the same number of
//! messages in flight, and `ratio_to_floor` = RPC calls/s ÷ floor messages/s.
//! `rss_per_connection` opens 100 connections; `rss_after_calls` compares the
//! process RSS after 1,000 and after 100,000 calls on one connection.
//! `rss_per_connection` also prints a `breakdown`: the same number of
//! connections built again layer by layer (TCP socket, websocket handshake,
//! yamux session, drpc connection and first call), with the RSS each layer
//! adds per connection (the crate forbids unsafe code, so no counting
//! allocator: RSS deltas over many connections instead). With
//! the embedded server (the default) RSS includes the server, which runs in
//! this process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::agent::Agent28;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str =
    "usage: bench [--url URL --token TOKEN] [--case NAME] [-c CONCURRENCY] [-n CALLS] [--payload BYTES] [--no-floor]
cases: get_manifest update_stats batch_create_logs ws_echo rss_per_connection rss_after_calls";

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
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.url.is_some() != args.token.is_some() {
        return Err("--url and --token go together".to_owned());
    }
    Ok(args)
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
async fn start_echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo server");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
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
            });
        }
    });
    addr
}

/// `calls` round trips of `req_bytes` → `resp_bytes` on one websocket with
/// `concurrency` messages in flight (the echo preserves order).
async fn ws_round_trips(
    addr: std::net::SocketAddr,
    concurrency: usize,
    calls: usize,
    req_bytes: usize,
    resp_bytes: usize,
) -> Run {
    let tcp = TcpStream::connect(addr).await.expect("connect echo");
    tcp.set_nodelay(true).expect("nodelay");
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("echo handshake");
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
    /// Skip the websocket floor (e.g. to count syscalls of the RPC alone).
    no_floor: bool,
}

impl Target {
    async fn agent(&self) -> Agent28 {
        self.client.connect_rpc28().await.expect("connect").0
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
        let mut floor = ws_round_trips(target.echo, concurrency, calls, req_bytes, resp_bytes).await;
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
    let mut run = ws_round_trips(target.echo, concurrency, calls, payload, payload).await;
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

/// Builds `n` connections again, layer by layer, and reports the live heap
/// bytes per connection each layer adds, and the RSS they cost in all.
async fn memory_breakdown(target: &Target, n: usize) -> (Value, Vec<Agent28>) {
    use coder_agentsdk::mux::websocket::{client_config, WsByteStream};
    use coder_agentsdk::mux::yamux::{Session, SessionConfig};
    use coder_agentsdk::rpc::{rpc_url, Connection, CURRENT_VERSION};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let base = target.client.base_url().clone();
    if base.scheme() != "http" {
        return (json!({"skipped": "only for http:// servers"}), Vec::new());
    }
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
    let mut sockets = Vec::with_capacity(n);
    for tcp in tcps {
        let mut request = url.as_str().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Coder-Session-Token", token.expose().parse().expect("token header"));
        match tokio_tungstenite::client_async_with_config(request, tcp, Some(client_config())).await {
            Ok((ws, _)) => sockets.push(ws),
            Err(e) => return (json!({"skipped": format!("handshake: {e}")}), Vec::new()),
        }
    }
    let h2 = live();
    let sessions: Vec<Session> = sockets
        .into_iter()
        .map(|ws| Session::client(WsByteStream::new(ws), SessionConfig::default()))
        .collect();
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
    let value = json!({
        "connections": n,
        "errors": errors,
        "rss_bytes_per_connection": {
            "tcp_socket": per(h0, h1),
            "websocket_handshake": per(h1, h2),
            "yamux_session": per(h2, h3),
            "drpc_connection_first_call": per(h3, h4),
            "total": per(h0, h4),
        },
        "websocket_read_buffer_bytes": coder_agentsdk::mux::websocket::READ_BUFFER_SIZE,
    });
    (value, agents)
}

async fn rss_after_calls(target: &Target, first: usize, total: usize) -> Value {
    let agent = target.agent().await;
    let call = |agent: Agent28| {
        move |_| {
            let agent = agent.clone();
            async move { agent.get_manifest(Default::default()).await.is_ok() }
        }
    };
    let a = drive(32, first, call(agent.clone())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_first = rss_kib();
    let b = drive(32, total - first, call(agent.clone())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_total = rss_kib();
    json!({
        "case": "rss_after_calls",
        "concurrency": 32,
        "calls": total,
        "errors": a.errors + b.errors,
        "rss_after_first_kib": rss_first,
        "first_calls": first,
        "rss_after_all_kib": rss_total,
        "growth_kib": rss_total as i64 - rss_first as i64,
        "includes_embedded_server": target.embedded.is_some(),
    })
}

// ---------------------------------------------------------------------------

/// The default plan: (case, concurrency, calls). Memory first, so that what
/// the embedded server records (stats, logs) does not blur it.
const PLAN: &[(&str, usize, usize)] = &[
    ("rss_per_connection", 1, 100),
    ("rss_after_calls", 32, 100_000),
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
) -> Result<Value, String> {
    Ok(match case {
        "get_manifest" | "update_stats" | "batch_create_logs" => rpc_case(target, case, concurrency, calls).await,
        "ws_echo" => echo_case(target, concurrency, calls, payload).await,
        "rss_per_connection" => rss_per_connection(target, calls).await,
        "rss_after_calls" => rss_after_calls(target, 1_000.min(calls), calls).await,
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
    let (embedded, url, token) = match (&args.url, &args.token) {
        (Some(url), Some(token)) => (None, url.clone(), token.clone()),
        _ => {
            let server = EmbeddedServer::start().await.expect("start embedded server");
            let (url, token) = (server.url().to_string(), server.token().to_owned());
            (Some(server), url, token)
        }
    };
    let client = match Client::builder(&url).token(token).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    let target = Target {
        client,
        embedded,
        echo: start_echo_server().await,
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
        match run_case(&target, &case, concurrency, calls, payload).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }
}
