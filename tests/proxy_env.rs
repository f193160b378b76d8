//! The proxy from the environment (issue 15), in a test binary of its own
//! because it sets process variables: a hostname URL goes through
//! `HTTP_PROXY` for REST and RPC alike; loopback is never proxied; `NO_PROXY`
//! exempts a host. One test, so nothing else reads the variables meanwhile.

mod proxy_support;

use std::time::Duration;

use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;
use proxy_support::TestProxy;

async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("hung")
}

#[tokio::test]
async fn environment_proxy_serves_rest_and_rpc_except_loopback_and_no_proxy_hosts() {
    let server = EmbeddedServer::start().await.unwrap();
    let addr = format!("127.0.0.1:{}", server.url().port().unwrap()).parse().unwrap();
    let proxy = TestProxy::start(&[("coder.test", addr)], None).await;
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        std::env::remove_var(name);
    }
    // No scheme: http:// is meant.
    std::env::set_var("HTTP_PROXY", proxy.addr.to_string());
    std::env::set_var("NO_PROXY", "exempt.test");

    let build = |base: &str| Client::builder(base).token(server.token()).build().unwrap();

    // A host name: through the proxy, both ways.
    let client = build("http://coder.test/");
    guard(client.git_ssh_key()).await.expect("REST via HTTP_PROXY");
    guard(client.connect_rpc()).await.expect("RPC via HTTP_PROXY");
    let seen = proxy.seen();
    assert_eq!(seen.tunnels, ["coder.test:80"], "{seen:?}");
    assert_eq!(seen.forwarded.len(), 1, "{seen:?}");

    // Loopback: direct, both ways.
    let client = build(server.url().as_str());
    guard(client.git_ssh_key()).await.expect("REST direct");
    guard(client.connect_rpc()).await.expect("RPC direct");
    let after = proxy.seen();
    assert_eq!((after.tunnels.len(), after.forwarded.len()), (1, 1), "{after:?}");

    // NO_PROXY: direct, so the name only the proxy knows does not resolve.
    let client = build("http://exempt.test/");
    assert!(client.connect_rpc().await.is_err());
    let after = proxy.seen();
    assert_eq!((after.tunnels.len(), after.forwarded.len()), (1, 1), "{after:?}");
}
