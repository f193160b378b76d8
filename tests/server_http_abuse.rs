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

/// One request whose head says `Content-Length: 10 MiB`, sent with blocking
/// std sockets: the body is written by one thread while this one reads the
/// answer. Returns the status and body read, or why the answer was lost:
/// the read failed, or a write failed before the answer was all read (Go's
/// client returns whichever of the two comes first, so a reset that reaches
/// the writer first loses the answer: `write: connection reset`).
fn answer_while_still_writing(addr: std::net::SocketAddr, head: String) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(GUARD))?;
    stream.set_write_timeout(Some(GUARD))?;
    stream.write_all(head.as_bytes())?;
    let mut writer = stream.try_clone()?;
    let write_failed = Arc::new(AtomicBool::new(false));
    let body_writer = std::thread::spawn({
        let write_failed = write_failed.clone();
        move || {
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..(10 << 20) / chunk.len() {
                if let Err(e) = writer.write_all(&chunk) {
                    write_failed.store(true, Ordering::SeqCst);
                    return Some(e);
                }
            }
            None
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let result = loop {
        // Read until the head and as much body as it announces arrived.
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length {
                if answer.len() >= end + 4 + length {
                    if write_failed.load(Ordering::SeqCst) {
                        break Err(std::io::Error::other(format!(
                            "a write failed before the answer was read: {:?}",
                            String::from_utf8_lossy(&answer)
                        )));
                    }
                    // Go's server says it will close, as hyper would not by itself.
                    if !head.lines().any(|l| l == "connection: close") {
                        break Err(std::io::Error::other(format!("no `Connection: close`: {head:?}")));
                    }
                    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    break Ok((status, answer[end + 4..end + 4 + length].to_vec()));
                }
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                break Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed after {:?}", String::from_utf8_lossy(&answer)),
                ))
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = body_writer.join();
    result
}

fn head_with_ten_mib_body(server: &EmbeddedServer, token: &str) -> String {
    format!(
        "PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: {}\r\nCoder-Session-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.url().authority(),
        10 << 20
    )
}

fn addr_of(server: &EmbeddedServer) -> std::net::SocketAddr {
    format!("127.0.0.1:{}", server.url().port().unwrap()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_writing_ten_mib_reads_the_413_in_20_runs_of_20() {
    let server = EmbeddedServer::start().await.unwrap();
    let (addr, head) = (addr_of(&server), head_with_ten_mib_body(&server, server.token()));
    let outcomes = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|_| answer_while_still_writing(addr, head.clone()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (run, outcome) in outcomes.into_iter().enumerate() {
        let (status, body) = outcome.unwrap_or_else(|e| panic!("run {run}: no answer read: {e}"));
        assert_eq!(status, 413, "run {run}");
        let error: ErrorBody = serde_json::from_slice(&body).expect("codersdk error body");
        assert_eq!(error.message, "Request body is too large.", "run {run}");
    }
    fresh_agent_is_served(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_writing_ten_mib_with_a_wrong_token_reads_the_401() {
    let server = EmbeddedServer::start().await.unwrap();
    let (addr, head) = (addr_of(&server), head_with_ten_mib_body(&server, "not-the-token"));
    let outcomes = tokio::task::spawn_blocking(move || {
        (0..5)
            .map(|_| answer_while_still_writing(addr, head.clone()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (run, outcome) in outcomes.into_iter().enumerate() {
        let (status, body) = outcome.unwrap_or_else(|e| panic!("run {run}: no answer read: {e}"));
        assert_eq!(status, 401, "run {run}");
        serde_json::from_slice::<ErrorBody>(&body).expect("codersdk error body");
    }
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn reqwest_still_writing_ten_mib_reads_the_413_in_20_runs_of_20() {
    let server = EmbeddedServer::start().await.unwrap();
    let body = vec![b'a'; 10 << 20];
    for run in 0..20 {
        let response = send_body(&server, "PATCH", "api/v2/workspaceagents/me/logs", body.clone()).await;
        let error = codersdk_error(response, 413, &format!("run {run}")).await;
        assert_eq!(error.message, "Request body is too large.");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_stops_sending_is_cut_off_after_the_bounded_drain() {
    use std::io::Write;
    let server = EmbeddedServer::start().await.unwrap();
    let addr = addr_of(&server);
    let head = format!(
        "PATCH /api/v2/workspaceagents/me/logs HTTP/1.1\r\nHost: {}\r\nCoder-Session-Token: {}\r\n\
         Content-Length: {}\r\n\r\n",
        server.url().authority(),
        server.token(),
        1u64 << 40
    );
    let written = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_write_timeout(Some(GUARD)).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut written = 0usize;
        // Never reads the answer; writes until the server stops taking it.
        while written < 1 << 30 {
            if stream.write_all(&chunk).is_err() {
                return written;
            }
            written += chunk.len();
        }
        panic!("the server took 1 GiB of a body it had refused");
    })
    .await
    .unwrap();
    // The drain limit (16 MiB) plus what the kernel buffers on both sides.
    assert!(written < 64 << 20, "{written} bytes taken");
    fresh_agent_is_served(&server).await;
}
