//! HTTP abuse of the embedded server (issue 10 §3): bad version strings,
//! oversized headers, bodies that are not JSON, JSON of the wrong types,
//! 10 MiB of JSON and arrays nested 100,000 deep, on every endpoint that
//! reads a body. Each gets a 4xx with the codersdk JSON error body (never a
//! 5xx, a plain-text body or a crash), and afterwards the SAME server serves
//! a fresh, well-behaved agent.

use std::future::Future;
use std::time::Duration;

use coder_agentsdk::error::Response as ErrorBody;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;

const GUARD: Duration = Duration::from_secs(20);

async fn guard<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hung for {GUARD:?}: {what}"),
    }
}

async fn fresh_agent_is_served(server: &EmbeddedServer) {
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .build()
        .unwrap();
    let manifest = guard("fresh agent", async {
        let (agent, _tailnet) = client.connect_rpc28_with_role("agent").await.expect("connect");
        agent.get_manifest(Default::default()).await.expect("get_manifest")
    })
    .await;
    assert_eq!(manifest.agent_name, "main");
}

/// Asserts a codersdk JSON error with `status` and returns it.
async fn codersdk_error(response: reqwest::Response, status: u16, what: &str) -> ErrorBody {
    assert_eq!(response.status().as_u16(), status, "{what}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content type {content_type:?}"
    );
    let body = response.bytes().await.unwrap();
    let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{what}: not a codersdk error ({e}): {:?}",
            String::from_utf8_lossy(&body)
        )
    });
    assert!(!error.message.is_empty(), "{what}: empty message");
    error
}

fn http() -> reqwest::Client {
    coder_agentsdk::client::http_client_builder()
        .timeout(GUARD)
        .build()
        .unwrap()
}

#[tokio::test]
async fn bad_version_strings_get_400_with_the_codersdk_body() {
    let server = EmbeddedServer::start().await.unwrap();
    let http = http();
    for version in [
        "2.x",
        "99999999999999999999.1",
        "-1.0",
        "2.8.1",
        "3.0",
        "1.9",
        "2.99",
        ".",
        "2..8",
        " 2.8",
    ] {
        let mut url = server.url().join("api/v2/workspaceagents/me/rpc").unwrap();
        url.query_pairs_mut().append_pair("version", version);
        let response = guard(
            version,
            http.get(url).header("Coder-Session-Token", server.token()).send(),
        )
        .await
        .unwrap();
        let error = codersdk_error(response, 400, version).await;
        assert_eq!(error.message, "Unknown or unsupported API version", "{version}");
        assert_eq!(error.validations.len(), 1, "{version}");
        assert_eq!(error.validations[0].field, "version", "{version}");
    }
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn empty_version_string_is_version_2_0_as_coderd_reads_it() {
    // coderd reads the version with Go's `Query().Get`, which gives "" for an
    // empty value as for a missing one, and treats both as 2.0.
    let server = EmbeddedServer::start().await.unwrap();
    let url = format!("ws://{}/api/v2/workspaceagents/me/rpc?version=", server.addr());
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("Coder-Session-Token", server.token().parse().unwrap());
    let (ws, response) = guard("upgrade", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    guard("registered", async {
        while server.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(server.connection_info()[0].version.to_string(), "2.0");
    drop(ws);
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn token_header_of_64_kib_gets_401_with_the_codersdk_body() {
    let server = EmbeddedServer::start().await.unwrap();
    let http = http();
    let huge = "t".repeat(64 * 1024);
    let url = server.url().join("api/v2/workspaceagents/me/gitsshkey").unwrap();
    let response = guard(
        "64 KiB token",
        http.get(url.clone()).header("Coder-Session-Token", &huge).send(),
    )
    .await
    .unwrap();
    codersdk_error(response, 401, "64 KiB token header").await;
    let mut rpc = server.url().join("api/v2/workspaceagents/me/rpc").unwrap();
    rpc.set_query(Some("version=2.8"));
    let response = guard(
        "64 KiB token on rpc",
        http.get(rpc).header("Coder-Session-Token", &huge).send(),
    )
    .await
    .unwrap();
    codersdk_error(response, 401, "64 KiB token header on the rpc endpoint").await;
    // Headers far past any sane size (1 MiB) are refused by the HTTP layer
    // with a 4xx or a closed connection, never a 5xx.
    let giant = "t".repeat(1 << 20);
    match guard(
        "1 MiB header",
        http.get(url).header("Coder-Session-Token", &giant).send(),
    )
    .await
    {
        Ok(response) => assert!(response.status().is_client_error(), "{}", response.status()),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    fresh_agent_is_served(&server).await;
}

/// Every endpoint that reads a JSON body: (method, path).
const BODY_ENDPOINTS: &[(&str, &str)] = &[
    ("PATCH", "api/v2/workspaceagents/me/logs"),
    ("PATCH", "api/v2/workspaceagents/me/app-status"),
    ("POST", "api/v2/workspaceagents/me/log-source"),
    ("POST", "api/v2/workspaceagents/aws-instance-identity"),
    ("POST", "api/v2/workspaceagents/azure-instance-identity"),
    ("POST", "api/v2/workspaceagents/google-instance-identity"),
];

async fn send_body(server: &EmbeddedServer, method: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
    let url = server.url().join(path).unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    guard(
        path,
        http()
            .request(method, url)
            .header("Coder-Session-Token", server.token())
            .header("Content-Type", "application/json")
            .body(body)
            .send(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn bodies_that_are_not_json_get_400_with_the_codersdk_body() {
    let server = EmbeddedServer::start().await.unwrap();
    for &(method, path) in BODY_ENDPOINTS {
        for body in [&b"not json"[..], b"", b"{", b"\xff\xfe", b"{\"a\":1}}"] {
            let response = send_body(&server, method, path, body.to_vec()).await;
            codersdk_error(response, 400, &format!("{method} {path} {body:?}")).await;
        }
    }
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn json_of_the_wrong_types_gets_400_with_the_codersdk_body() {
    let server = EmbeddedServer::start().await.unwrap();
    let wrong: &[(&str, &str)] = &[
        ("api/v2/workspaceagents/me/logs", r#"{"logs":"not a list"}"#),
        ("api/v2/workspaceagents/me/logs", r#"{"log_source_id":17,"logs":[]}"#),
        (
            "api/v2/workspaceagents/me/app-status",
            r#"{"app_slug":["x"],"state":"idle"}"#,
        ),
        (
            "api/v2/workspaceagents/me/log-source",
            r#"{"id":true,"display_name":"x"}"#,
        ),
        (
            "api/v2/workspaceagents/aws-instance-identity",
            r#"{"signature":1,"document":2}"#,
        ),
        ("api/v2/workspaceagents/azure-instance-identity", r#"[1,2,3]"#),
        (
            "api/v2/workspaceagents/google-instance-identity",
            r#"{"json_web_token":{}}"#,
        ),
    ];
    for (path, body) in wrong {
        let method = BODY_ENDPOINTS.iter().find(|(_, p)| p == path).unwrap().0;
        let response = send_body(&server, method, path, body.as_bytes().to_vec()).await;
        codersdk_error(response, 400, &format!("{path} {body}")).await;
    }
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn ten_mib_of_json_gets_413_with_the_codersdk_body() {
    let server = EmbeddedServer::start().await.unwrap();
    // A valid JSON document of 10 MiB: one long string.
    let mut body = b"{\"output\":\"".to_vec();
    body.resize(10 << 20, b'a');
    body.extend_from_slice(b"\"}");
    for &(method, path) in BODY_ENDPOINTS {
        let response = send_body(&server, method, path, body.clone()).await;
        let error = codersdk_error(response, 413, &format!("{method} {path}")).await;
        assert_eq!(error.message, "Request body is too large.");
    }
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn arrays_nested_100000_deep_get_400_without_a_stack_overflow() {
    let server = EmbeddedServer::start().await.unwrap();
    let depth = 100_000;
    let mut arrays = "[".repeat(depth).into_bytes();
    arrays.extend_from_slice("]".repeat(depth).as_bytes());
    let mut in_object = b"{\"logs\":".to_vec();
    in_object.extend_from_slice(&arrays);
    in_object.push(b'}');
    for &(method, path) in BODY_ENDPOINTS {
        for body in [&arrays, &in_object] {
            let response = send_body(&server, method, path, body.clone()).await;
            codersdk_error(response, 400, &format!("{method} {path} nested")).await;
        }
    }
    fresh_agent_is_served(&server).await;
}
