//! `coder_agentsdk::fleet` over TLS: agents reach a TLS embedded server over
//! RPC (wss://) and REST (log sources) when the fleet trusts the server's
//! private CA, and a fleet given unreadable trust does not start.

mod tls_support;

use std::time::Duration;

use coder_agentsdk::fleet::{Fleet, Profile};
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Error;
use tls_support::{localhost_url, TestCa};

/// Bounds on waits: the test fails instead of hanging (not timing asserts).
const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_trusting_a_private_ca_reaches_a_tls_server_over_wss_and_rest() {
    let ca = TestCa::new("fleet test CA");
    let cert = ca.server_cert(&["localhost"]);
    let tokens: Vec<String> = (0..20).map(|i| format!("fleet-tls-token-{i:02}")).collect();
    let server = EmbeddedServer::builder()
        .tokens(tokens.iter().cloned())
        .tls(cert.chain, cert.key)
        .start()
        .await
        .expect("start TLS server");
    server.api().set_report_interval(Duration::from_millis(100));
    let fleet = Fleet::builder(localhost_url(&server))
        .tokens(tokens.iter().cloned())
        // Logs register a log source over REST: the fleet's shared HTTP
        // client must trust the CA too, not only the websocket dial.
        .profile(Profile::default().logs(20.0, 50))
        .add_root_certificates_pem(ca.pem().as_bytes())
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .start()
        .expect("start fleet");
    assert!(fleet.wait_settled(SETTLE).await, "{:?}", fleet.counters());
    let c = fleet.counters();
    assert_eq!((c.ready, c.failed), (20, 0), "{c:?} {:?}", fleet.failures());
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !tokens.iter().all(|t| {
        let a = server.agent(t).expect("known token");
        a.stats_reports >= 1 && a.log_lines >= 1
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stats and logs from every agent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fleet.counters().calls_failed, 0);
    assert!(fleet.shutdown(SETTLE).await);
}

#[tokio::test]
async fn a_fleet_given_pem_without_a_certificate_does_not_start() {
    let result = Fleet::builder("https://localhost:1/")
        .tokens(["t"])
        .add_root_certificates_pem(b"not a certificate")
        .start();
    match result {
        Err(Error::Config(message)) => assert!(!message.is_empty()),
        other => panic!("expected a config error, got {other:?}"),
    }
}
