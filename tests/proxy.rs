//! REST and the RPC websocket through an HTTP proxy (issue 15): one decision
//! for both, `CONNECT` tunnels for the websocket, basic credentials, and the
//! typed error when the proxy refuses. The server is reached by a host name
//! only the proxy knows (`coder.test`), so a call that succeeds went
//! through the proxy.

mod proxy_support;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::time::Duration;

use base64::Engine as _;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::RpcOptions;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::{Client, Error};
use proxy_support::TestProxy;
use tls_support::TestCa;

const GUARD: Duration = Duration::from_secs(20);

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung for {GUARD:?}: {what}"))
}

fn server_addr(server: &EmbeddedServer) -> std::net::SocketAddr {
    let url = server.url();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap()
}

fn client(server: &EmbeddedServer, proxy: &str) -> Client {
    Client::builder("http://coder.test/")
        .token(server.token())
        .proxy(proxy)
        .rpc_options(RpcOptions::default().dial_timeout(Duration::from_secs(5)))
        .build()
        .unwrap()
}

fn basic(user_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

#[tokio::test]
async fn rest_and_rpc_reach_a_host_only_the_proxy_knows() {
    let server = EmbeddedServer::start().await.unwrap();
    let proxy = TestProxy::start(&[("coder.test", server_addr(&server))], None).await;
    let client = client(&server, &proxy.url());

    guard("rest", client.git_ssh_key())
        .await
        .expect("REST through the proxy");
    let manifest = guard("rpc", async {
        let (agent, _tailnet) = client
            .connect_rpc28_with_role("agent")
            .await
            .expect("RPC through the proxy");
        agent.get_manifest(Default::default()).await.expect("get_manifest")
    })
    .await;
    assert_eq!(manifest.agent_name, "main");

    let seen = proxy.seen();
    assert_eq!(seen.tunnels, ["coder.test:80"], "the websocket is tunnelled");
    assert!(
        seen.forwarded
            .iter()
            .any(|l| l.starts_with("GET http://coder.test/api/v2/workspaceagents/me/gitsshkey")),
        "REST is forwarded: {seen:?}"
    );
    assert!(seen.auth.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn proxy_credentials_from_the_url_are_sent_to_the_proxy_for_rest_and_rpc() {
    let server = EmbeddedServer::start().await.unwrap();
    let want = basic("agent:p@ss word");
    let proxy = TestProxy::start(&[("coder.test", server_addr(&server))], Some(want.clone())).await;
    let url = format!("http://agent:p%40ss%20word@{}", proxy.addr);
    let client = client(&server, &url);

    guard("rest", client.git_ssh_key())
        .await
        .expect("REST with credentials");
    guard("rpc", client.connect_rpc()).await.expect("RPC with credentials");

    let seen = proxy.seen();
    assert_eq!(seen.refused, 0, "{seen:?}");
    assert_eq!(seen.tunnels.len(), 1, "{seen:?}");
    assert!(seen.auth.len() >= 2 && seen.auth.iter().all(|a| *a == want), "{seen:?}");
    // The password never shows in the client's Debug.
    let shown = format!("{client:?} {:?}", client.proxy());
    assert!(!shown.contains("p%40ss") && !shown.contains("p@ss"), "{shown}");
}

#[tokio::test]
async fn a_proxy_refusing_with_407_is_a_typed_error_without_the_password() {
    let server = EmbeddedServer::start().await.unwrap();
    let proxy = TestProxy::start(&[("coder.test", server_addr(&server))], Some(basic("agent:right"))).await;
    for url in [proxy.url(), format!("http://agent:wrong@{}", proxy.addr)] {
        let client = client(&server, &url);
        let err = guard("rpc", client.connect_rpc()).await.expect_err("refused tunnel");
        match &err {
            Error::Proxy {
                proxy: shown, status, ..
            } => {
                assert_eq!(*status, Some(407), "{err}");
                assert!(!shown.contains("wrong"), "{shown}");
            }
            other => panic!("want Error::Proxy, got {other:?}"),
        }
        assert!(!err.to_string().contains("wrong"), "{err}");
        // REST gets the proxy's answer as an HTTP error with its status.
        let err = guard("rest", client.git_ssh_key()).await.expect_err("refused request");
        assert_eq!(err.status(), Some(407), "{err}");
    }
    assert_eq!(proxy.seen().tunnels.len(), 0);
    assert!(proxy.seen().refused >= 4);
}

#[tokio::test]
async fn a_proxy_that_is_not_listening_is_a_proxy_error() {
    let server = EmbeddedServer::start().await.unwrap();
    // Bound then dropped: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client(&server, &format!("http://{closed}"));
    let err = guard("rpc", client.connect_rpc()).await.expect_err("no proxy");
    assert!(matches!(err, Error::Proxy { status: None, .. }), "{err:?}");
}

#[tokio::test]
async fn socks5_proxies_are_refused_for_the_websocket_with_a_clear_error() {
    let server = EmbeddedServer::start().await.unwrap();
    let client = client(&server, "socks5://127.0.0.1:1080");
    let err = guard("rpc", client.connect_rpc()).await.expect_err("socks5");
    match err {
        Error::Proxy {
            status: None, reason, ..
        } => assert!(reason.contains("not supported"), "{reason}"),
        other => panic!("want Error::Proxy, got {other:?}"),
    }
}

#[tokio::test]
async fn no_proxy_connects_directly() {
    let server = EmbeddedServer::start().await.unwrap();
    let proxy = TestProxy::start(&[], None).await;
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .proxy(proxy.url())
        .no_proxy()
        .build()
        .unwrap();
    guard("rest", client.git_ssh_key()).await.unwrap();
    guard("rpc", client.connect_rpc()).await.unwrap();
    let seen = proxy.seen();
    assert!(seen.tunnels.is_empty() && seen.forwarded.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn https_rest_and_wss_rpc_are_tunnelled_with_tls_to_coderd_inside() {
    let ca = TestCa::new("proxy test CA");
    let cert = ca.server_cert(&["coder.test"]);
    let server = EmbeddedServer::builder()
        .tls(cert.chain, cert.key)
        .start()
        .await
        .unwrap();
    let proxy = TestProxy::start(&[("coder.test", server.addr())], None).await;
    let client = Client::builder("https://coder.test/")
        .token(server.token())
        .add_root_certificates_pem(ca.pem().as_bytes())
        .unwrap()
        .proxy(proxy.url())
        .build()
        .unwrap();
    guard("rest", client.git_ssh_key())
        .await
        .expect("REST over TLS through the tunnel");
    let manifest = guard("rpc", async {
        let (agent, _tailnet) = client.connect_rpc28().await.expect("RPC over TLS through the tunnel");
        agent.get_manifest(Default::default()).await.expect("get_manifest")
    })
    .await;
    assert_eq!(manifest.agent_name, "main");
    // One tunnel for REST (reqwest's), one for the websocket (ours); the
    // certificate was checked for coder.test, the name only the proxy knows.
    assert_eq!(proxy.seen().tunnels, ["coder.test:443", "coder.test:443"]);
}
