//! `coder_agentsdk::fleet` against the embedded server: many distinct agents,
//! a server restart, a refused token, and closing everything on drop.

use std::collections::HashSet;
use std::time::Duration;

use coder_agentsdk::fleet::{Fleet, LifecycleState};
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
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
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
