//! `coder_agentsdk::fleet` against the embedded server: many distinct agents,
//! a server restart, a refused token, closing everything on drop; shards of
//! one token list, several servers, the metrics endpoint, merged summaries.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coder_agentsdk::fleet::metrics::{self, prometheus_client::registry::Registry};
use coder_agentsdk::fleet::{Fleet, LifecycleState, Shard};
use coder_agentsdk::server::EmbeddedServer;

/// Bounds on waits: the test fails instead of hanging (not timing asserts).
const SETTLE: Duration = Duration::from_secs(60);

fn tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("fleet-token-{i:04}")).collect()
}

async fn server_with(tokens: &[String], addr: Option<std::net::SocketAddr>) -> EmbeddedServer {
    let mut builder = EmbeddedServer::builder().tokens(tokens.iter().cloned());
    if let Some(addr) = addr {
        builder = builder.listen(addr);
    }
    // The old listener of a restarted server may take a moment to go away.
    for _ in 0..100 {
        match builder.start().await {
            Ok(server) => return server,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                builder = EmbeddedServer::builder().tokens(tokens.iter().cloned());
                if let Some(addr) = addr {
                    builder = builder.listen(addr);
                }
            }
            Err(e) => panic!("start server: {e}"),
        }
    }
    panic!("address {addr:?} stayed in use");
}

fn fleet_for(server: &EmbeddedServer, tokens: &[String]) -> Fleet {
    Fleet::builder(server.url().as_str())
        .tokens(tokens.iter().cloned())
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .max_dials_in_flight(32)
        .start()
        .expect("start fleet")
}

async fn wait_server(server: &EmbeddedServer, what: &str, done: impl Fn(&EmbeddedServer) -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !done(server) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what} (the server has {} sessions)",
            server.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_reach_ready_as_distinct_agents_and_come_back_after_a_restart() {
    let tokens = tokens(200);
    let server = server_with(&tokens, None).await;
    let addr = server.addr();
    let fleet = fleet_for(&server, &tokens);

    assert!(fleet.wait_settled(SETTLE).await, "not settled: {:?}", fleet.counters());
    let c = fleet.counters();
    assert_eq!((c.agents, c.connected, c.ready, c.failed), (200, 200, 200, 0), "{c:?}");
    assert!(fleet.failures().is_empty());

    // The server saw 200 distinct agents, each connected once and READY.
    let agents: Vec<_> = tokens.iter().map(|t| server.agent(t).expect("known token")).collect();
    let ids: HashSet<_> = agents.iter().map(|a| a.agent_id).collect();
    assert_eq!(ids.len(), 200, "every token is its own agent");
    for a in &agents {
        assert_eq!(a.connections_total, 1, "{a:?}");
        assert_eq!(a.last_lifecycle, Some(LifecycleState::Ready), "{a:?}");
        assert_eq!(a.lifecycle_reports, 3, "created, starting, ready: {a:?}");
    }
    // The main token of the server was not used by the fleet.
    assert_eq!(server.agents().len(), 201);
    wait_server(&server, "200 sessions", |s| s.connections() == 200).await;

    // Restart: stop the server, start a new one with the same tokens on the same port.
    drop(server);
    let (c, lost) = fleet.wait_for(SETTLE, |c| c.ready == 0).await;
    assert!(lost, "agents noticed the restart: {c:?}");
    let server = server_with(&tokens, Some(addr)).await;
    let (c, back) = fleet.wait_for(SETTLE, |c| c.ready == 200).await;
    assert!(back, "all back after the restart: {c:?}");
    assert_eq!(c.failed, 0, "{c:?}");
    assert!(c.reconnects >= 200, "{c:?}");
    wait_server(&server, "200 sessions after restart", |s| s.connections() == 200).await;
    for t in &tokens {
        let a = server.agent(t).expect("known token");
        assert_eq!(a.connections_open, 1, "{a:?}");
        // After a reconnect only the last state is reported again.
        assert_eq!(a.lifecycle_reports, 1, "{a:?}");
        assert_eq!(a.last_lifecycle, Some(LifecycleState::Ready), "{a:?}");
    }

    // Dropping the fleet closes every connection.
    drop(fleet);
    wait_server(&server, "0 sessions after dropping the fleet", |s| s.connections() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_fails_that_agent_alone_with_the_servers_error() {
    let mut tokens = tokens(10);
    let server = server_with(&tokens, None).await;
    tokens[3] = "not-a-known-token".to_owned();
    let fleet = fleet_for(&server, &tokens);

    assert!(fleet.wait_settled(SETTLE).await, "not settled: {:?}", fleet.counters());
    let c = fleet.counters();
    assert_eq!((c.ready, c.failed, c.reconnecting), (9, 1, 0), "{c:?}");
    let failures = fleet.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 3);
    assert!(
        failures[0].error.contains("401") && failures[0].error.contains("Workspace agent not authorized"),
        "clear error: {}",
        failures[0].error
    );
    // The refused agent is not retried.
    let dials = c.dials;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.counters().dials, dials);
    wait_server(&server, "9 sessions", |s| s.connections() == 9).await;
    assert!(fleet.shutdown(SETTLE).await, "shutdown closes every connection");
    wait_server(&server, "0 sessions after shutdown", |s| s.connections() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_the_servers_interval_and_optional_reports_arrive() {
    let tokens = tokens(3);
    let server = server_with(&tokens, None).await;
    server.api().set_report_interval(Duration::from_millis(100));
    let fleet = Fleet::builder(server.url().as_str())
        .tokens(tokens.iter().cloned())
        .profile(
            coder_agentsdk::fleet::Profile::default()
                .logs(20.0, 50)
                .metadata(Duration::from_millis(100))
                .app_health(Duration::from_millis(100)),
        )
        .start()
        .expect("start fleet");
    assert!(fleet.wait_settled(SETTLE).await);
    wait_server(&server, "stats, logs, metadata and app health from every agent", |s| {
        tokens.iter().all(|t| {
            let a = s.agent(t).expect("known token");
            a.stats_reports >= 3 && a.log_lines >= 20 && a.metadata_reports >= 2 && a.app_health_reports >= 2
        })
    })
    .await;
    let c = fleet.counters();
    assert_eq!(c.calls_failed, 0, "{c:?}");
    assert!(c.bytes_sent > 3 * 20 * 50, "{c:?}");
}

// ---------------------------------------------------------------------------
// Shards, several servers, metrics, merged summaries.
// ---------------------------------------------------------------------------

fn shard_fleet(url: &str, tokens: &[String], shard: Shard) -> Fleet {
    Fleet::builder(url)
        .tokens(tokens.iter().cloned())
        .shard(shard)
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .max_dials_in_flight(16)
        .start()
        .expect("start shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_of_one_token_list_use_each_token_once_and_a_restarted_shard_keeps_its_tokens() {
    let tokens = tokens(42);
    let server = server_with(&tokens, None).await;
    let url = server.url().to_string();
    let mut fleets: Vec<Option<Fleet>> = (0..4)
        .map(|i| Some(shard_fleet(&url, &tokens, Shard::new(i, 4).unwrap())))
        .collect();
    for f in fleets.iter().flatten() {
        assert!(f.wait_settled(SETTLE).await, "not settled: {:?}", f.counters());
    }
    // 42 tokens over 4 shards: 11, 11, 10, 10.
    let sizes: Vec<usize> = fleets.iter().flatten().map(Fleet::len).collect();
    assert_eq!(sizes, [11, 11, 10, 10]);
    wait_server(&server, "42 sessions", |s| s.connections() == 42).await;
    // The server saw 42 distinct agents, each connected exactly once; the
    // server's own main token was not used.
    let records = server.agents();
    assert_eq!(records.len(), 43);
    assert_eq!(records[0].connections_total, 0, "main token unused: {:?}", records[0]);
    let ids: HashSet<_> = records[1..].iter().map(|a| a.agent_id).collect();
    assert_eq!(ids.len(), 42);
    for t in &tokens {
        let a = server.agent(t).expect("known token");
        assert_eq!((a.connections_total, a.connections_open), (1, 1), "{t}: {a:?}");
    }

    // Shard 2 stops and starts again: it takes the same tokens (positions
    // 2, 6, 10, ...), each its second connection; nobody else's changes.
    drop(fleets[2].take());
    wait_server(&server, "32 sessions without shard 2", |s| s.connections() == 32).await;
    let again = shard_fleet(&url, &tokens, Shard::new(2, 4).unwrap());
    assert!(again.wait_settled(SETTLE).await, "{:?}", again.counters());
    wait_server(&server, "42 sessions again", |s| s.connections() == 42).await;
    for (g, t) in tokens.iter().enumerate() {
        let a = server.agent(t).expect("known token");
        let expected = if g % 4 == 2 { 2 } else { 1 };
        assert_eq!(
            (a.connections_total, a.connections_open),
            (expected, 1),
            "token {g}: {a:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_urls_spread_agents_so_each_server_serves_its_own_share() {
    let tokens = tokens(30);
    let mut servers = Vec::new();
    for j in 0..3 {
        servers.push(server_with(&Shard::new(j, 3).unwrap().select(&tokens), None).await);
    }
    // One fleet, two shards of it: every agent goes to the server whose
    // share holds its token (a wrong one would refuse it with 401).
    let urls: Vec<String> = servers.iter().map(|s| s.url().to_string()).collect();
    let mut fleets = Vec::new();
    for i in 0..2 {
        let f = Fleet::builder("http://unused.invalid/")
            .tokens(tokens.iter().cloned())
            .base_urls(urls.clone())
            .shard(Shard::new(i, 2).unwrap())
            .start()
            .expect("start");
        assert!(f.wait_settled(SETTLE).await);
        assert_eq!(f.counters().failed, 0, "{:?}", f.failures());
        fleets.push(f);
    }
    for s in &servers {
        wait_server(s, "10 sessions on each server", |s| s.connections() == 10).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_openmetrics_whose_gauges_match_the_fleet_counters() {
    let tokens = tokens(20);
    let server = server_with(&tokens, None).await;
    let fleet = shard_fleet(server.url().as_str(), &tokens, Shard::new(1, 2).unwrap());
    assert!(fleet.wait_settled(SETTLE).await);
    let mut registry = Registry::default();
    fleet.register_metrics(&mut registry);
    metrics::register_process(&mut registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(metrics::serve(listener, Arc::new(registry)));

    let (status, head, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let families = parse_openmetrics(&body).unwrap_or_else(|e| panic!("not OpenMetrics: {e}\n{body}"));
    let c = fleet.counters();
    assert_eq!((c.agents, c.connected, c.ready), (10, 10, 10), "{c:?}");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let samples = families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect::<Vec<_>>();
        assert_eq!(samples.len(), 1, "one sample {name}{labels:?}: {samples:?}");
        samples[0].value
    };
    assert_eq!(
        value("coder_fleet_agents", &[("shard", "1"), ("state", "connected")]),
        c.connected as f64
    );
    assert_eq!(
        value("coder_fleet_agents", &[("shard", "1"), ("state", "ready")]),
        c.ready as f64
    );
    assert_eq!(value("coder_fleet_agents", &[("state", "failed")]), 0.0);
    assert_eq!(value("coder_fleet_agents_configured", &[]), 10.0);
    assert_eq!(value("coder_fleet_dials_total", &[("shard", "1")]), c.dials as f64);
    // GetManifest once per agent; its latency histogram counted them all.
    assert_eq!(
        value("coder_fleet_calls_total", &[("rpc", "GetManifest"), ("outcome", "ok")]),
        10.0
    );
    assert_eq!(
        value("coder_fleet_call_duration_seconds_count", &[("rpc", "GetManifest")]),
        10.0
    );
    assert_eq!(
        value("coder_fleet_dial_duration_seconds_count", &[("outcome", "ok")]),
        10.0
    );
    assert!(value("process_resident_memory_bytes", &[]) > 0.0);
    // Every fleet metric carries the shard label; nothing carries a token.
    for f in families.iter().filter(|f| f.name.starts_with("coder_fleet_")) {
        for s in &f.samples {
            assert_eq!(s.labels.get("shard").map(String::as_str), Some("1"), "{s:?}");
        }
    }
    assert!(tokens.iter().all(|t| !body.contains(t.as_str())));

    // After a server stop the gauge follows the counters down.
    drop(server);
    let (c, _) = fleet.wait_for(SETTLE, |c| c.connected == 0).await;
    let (_, _, body) = http_get(addr, "/metrics").await;
    let families = parse_openmetrics(&body).unwrap();
    let connected = families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| s.name == "coder_fleet_agents" && s.labels.get("state").map(String::as_str) == Some("connected"))
        .map(|s| s.value);
    assert_eq!(connected, Some(c.connected as f64));

    // Other paths and methods are refused.
    assert_eq!(http_get(addr, "/other").await.0, 404);
    serving.abort();
}

#[test]
fn merging_four_shard_summaries_gives_their_sums_the_slowest_wall_and_per_agent_figures_over_all_agents() {
    let shard = |i: usize, agents: u64, wall: f64, rss_per_agent: f64| {
        serde_json::json!({
            "shard": format!("{i}/4"),
            "agents": agents, "connected": agents, "failed": i as u64,
            "settled": true, "shutdown_clean": i != 3,
            "connect_wall_s": wall,
            "rss_kib": 1000 + agents, "rss_per_agent_kib": rss_per_agent,
            "cpu_s_idle_per_1000_agents": 0.01 * (i + 1) as f64,
            "reconnects": 10 * i as u64, "calls_ok": 100, "calls_failed": 1,
            "bytes_sent": 1000, "bytes_received": 2000,
            "restarts": [{"all_back": true, "all_back_s": wall, "lost": i as u64}],
        })
    };
    let all = [
        shard(0, 100, 1.5, 10.0),
        shard(1, 300, 4.0, 20.0),
        shard(2, 100, 2.5, 10.0),
        shard(3, 500, 3.0, 14.0),
    ];
    let m = merge::merge(&all).unwrap();
    assert_eq!(m["agents"], 1000);
    assert_eq!(m["connected"], 1000);
    assert_eq!(m["failed"], 6);
    assert_eq!(m["reconnects"], 60);
    assert_eq!(m["calls_ok"], 400);
    assert_eq!(m["calls_failed"], 4);
    assert_eq!(m["bytes_sent"], 4000);
    assert_eq!(m["bytes_received"], 8000);
    assert_eq!(m["rss_kib"], 5000);
    assert_eq!(m["connect_wall_s"], 4.0, "the slowest shard");
    // (100*10 + 300*20 + 100*10 + 500*14) / 1000 = 15
    assert_eq!(m["rss_per_agent_kib"], 15.0);
    // (100*.01 + 300*.02 + 100*.03 + 500*.04) / 1000 = 0.03
    assert_eq!(m["cpu_s_idle_per_1000_agents"], 0.03);
    assert_eq!(m["settled"], true);
    assert_eq!(m["shutdown_clean"], false, "one shard was not");
    assert_eq!(m["shards"], 4);
    assert_eq!(m["shards_complete"], true);
    assert_eq!(m["restarts"][0]["all_back_s"], 4.0);
    assert_eq!(m["restarts"][0]["lost"], 6);

    // A shard missing or twice is reported; garbage is an error.
    let m = merge::merge(&[all[0].clone(), all[1].clone(), all[1].clone(), all[3].clone()]).unwrap();
    assert_eq!(m["shards_complete"], false);
    let m = merge::merge(&all[..3]).unwrap();
    assert_eq!(m["shards_complete"], false);
    assert!(merge::merge(&[]).is_err());
    assert!(merge::merge(&[serde_json::json!({"not": "a summary"})]).is_err());
}

#[path = "../examples/support/fleet_merge.rs"]
mod merge;

/// One GET over a fresh connection: (status, head, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(SETTLE, fetch)
        .await
        .expect("metrics answer in time");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

#[derive(Debug)]
struct Family {
    name: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: std::collections::HashMap<String, String>,
    value: f64,
}

/// A minimal OpenMetrics text parser: `# TYPE`/`# HELP`/`# UNIT` lines,
/// samples `name{k="v",...} value` belonging to the family declared last
/// (by name or name plus a type's suffix), and `# EOF` last of all.
fn parse_openmetrics(text: &str) -> Result<Vec<Family>, String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: Vec<(Family, String)> = Vec::new();
    let lines = text.lines();
    let mut eof = false;
    for line in lines {
        if eof {
            return Err(format!("text after # EOF: {line:?}"));
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, arg) = (parts.next(), parts.next(), parts.next());
            let name = name
                .filter(|n| valid_name(n))
                .ok_or(format!("bad descriptor {line:?}"))?;
            match kind {
                Some("TYPE") => {
                    let t = arg.ok_or(format!("no type: {line:?}"))?;
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "info",
                        "unknown",
                        "stateset",
                        "summary",
                        "gaugehistogram",
                    ]
                    .contains(&t)
                    {
                        return Err(format!("unknown type {t:?}"));
                    }
                    if families.iter().any(|(f, _)| f.name == name) {
                        return Err(format!("family {name} declared twice"));
                    }
                    families.push((
                        Family {
                            name: name.to_owned(),
                            samples: Vec::new(),
                        },
                        t.to_owned(),
                    ));
                }
                Some("HELP") | Some("UNIT") => {}
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').ok_or(format!("no value: {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').ok_or(format!("unclosed labels: {line:?}"))?),
            None => (name_labels, ""),
        };
        if !valid_name(name) {
            return Err(format!("bad metric name in {line:?}"));
        }
        let mut map = std::collections::HashMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(format!("bad label in {line:?}"))?;
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or(format!("unquoted label value in {line:?}"))?;
            if !valid_name(k) || map.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(format!("bad or repeated label {k:?} in {line:?}"));
            }
        }
        let (family, kind) = families.last_mut().ok_or(format!("sample before any TYPE: {line:?}"))?;
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        if !suffixes.iter().any(|s| format!("{}{s}", family.name) == name) {
            return Err(format!("sample {name} outside its family {}", family.name));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels: map,
            value,
        });
    }
    if !eof {
        return Err("no # EOF".to_owned());
    }
    Ok(families.into_iter().map(|(f, _)| f).collect())
}
