//! Every REST call of the agent against the embedded coderd: what goes on
//! the wire (token, headers, query), what comes back, coderd's errors, the
//! redirect rule for the token, and that secrets stay out of logs and Debug.

mod rest_support;

use std::time::Duration;

use axum::http::{HeaderMap, Response, StatusCode};
use coder_agentsdk::server::rest::ExternalAuthProvider;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::types::{
    ExternalAuthRequest, Log, LogLevel, PatchAppStatus, PatchLogs, PostLogSourceRequest, WorkspaceAppStatusState,
    EXTERNAL_LOG_SOURCE_ID,
};
use coder_agentsdk::{Client, Error};
use rest_support::*;

async fn setup() -> (EmbeddedServer, Client) {
    init_tracing();
    let server = EmbeddedServer::start().await.unwrap();
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .build()
        .unwrap();
    (server, client)
}

fn log(output: &str, level: LogLevel) -> Log {
    Log {
        created_at: "2024-05-06T07:08:09.123456789Z".parse().unwrap(),
        level,
        output: output.to_owned(),
    }
}

#[tokio::test]
async fn git_ssh_key_returns_the_pair_and_debug_hides_the_private_key() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        server.rest().set_git_ssh_key(
            "ssh-ed25519 AAAAtest user@host",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretkey\n",
        );
        let key = client.git_ssh_key().await.unwrap();
        assert_eq!(key.public_key, "ssh-ed25519 AAAAtest user@host");
        assert_eq!(
            key.private_key.expose(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretkey\n"
        );
        assert_eq!(key.key_type(), Some("ssh-ed25519"));
        let shown = format!("{key:?}");
        assert!(!shown.contains("secretkey") && !shown.contains("PRIVATE"), "{shown}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn requests_carry_the_token_and_user_agent_but_no_api_version_header() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        client.git_ssh_key().await.unwrap();
        let custom = Client::builder(server.url().as_str())
            .token(server.token())
            .user_agent("my-agent/1.0")
            .build()
            .unwrap();
        custom.git_ssh_key().await.unwrap();
        let requests = server.rest().requests();
        assert_eq!(requests.len(), 2);
        for r in &requests {
            assert!(r.had_token_header);
            assert!(
                !r.header_names.iter().any(|h| h == "api-version"),
                "{:?}",
                r.header_names
            );
            assert_eq!(r.accept.as_deref(), Some("application/json"));
        }
        assert!(requests[0]
            .user_agent
            .as_deref()
            .unwrap()
            .starts_with("coder-agentsdk-rust/"));
        assert_eq!(requests[1].user_agent.as_deref(), Some("my-agent/1.0"));
    })
    .await
    .unwrap();
}

#[tokio::test]
#[allow(deprecated)]
async fn patch_logs_is_recorded_and_an_empty_batch_is_refused_with_400() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let source = uuid::Uuid::new_v4();
        client
            .patch_logs(&PatchLogs {
                log_source_id: source,
                logs: vec![log("hello", LogLevel::Info), log("oops", LogLevel::Error)],
            })
            .await
            .unwrap();
        client
            .patch_logs(&PatchLogs {
                log_source_id: uuid::Uuid::nil(),
                logs: vec![log("external", LogLevel::Debug)],
            })
            .await
            .unwrap();
        let batches = server.rest().logs();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].log_source_id, source);
        assert_eq!(batches[0].logs[1].output, "oops");
        assert_eq!(batches[0].logs[1].level, "error");
        assert_eq!(
            batches[0].logs[0].created_at,
            "2024-05-06T07:08:09.123456789Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        assert_eq!(batches[1].log_source_id, EXTERNAL_LOG_SOURCE_ID);

        let err = client
            .patch_logs(&PatchLogs {
                log_source_id: source,
                logs: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.api().unwrap().response.message, "No logs provided.");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn patch_logs_with_an_invalid_level_is_refused_by_the_server_with_400() {
    tokio::time::timeout(GUARD, async {
        let (server, _client) = setup().await;
        let response = coder_agentsdk::client::http_client_builder()
            .build()
            .unwrap()
            .patch(server.url().join("/api/v2/workspaceagents/me/logs").unwrap())
            .header("Coder-Session-Token", server.token())
            .body(r#"{"log_source_id":"00000000-0000-0000-0000-000000000000","logs":[{"output":"x","level":"loud"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["message"], "Invalid log level provided.");
        assert_eq!(body["detail"], "invalid log level: \"loud\"");
        assert!(server.rest().logs().is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn patch_app_status_is_recorded_and_the_null_body_of_200_is_ignored() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let status = PatchAppStatus {
            app_slug: "code-server".into(),
            icon: String::new(),
            message: "building".into(),
            needs_user_attention: false,
            state: WorkspaceAppStatusState::Working,
            uri: "https://example.com/build/1".into(),
        };
        client.patch_app_status(&status).await.unwrap();
        assert_eq!(server.rest().app_statuses(), vec![status]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn post_log_source_returns_the_created_source_with_201() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let id = uuid::Uuid::new_v4();
        let source = client
            .post_log_source(&PostLogSourceRequest {
                id,
                display_name: "Rust agent".into(),
                icon: "/emojis/1f980.png".into(),
            })
            .await
            .unwrap();
        assert_eq!(source.id, id);
        assert_eq!(source.display_name, "Rust agent");
        assert_eq!(source.icon, "/emojis/1f980.png");
        let agent_id = uuid::Uuid::from_slice(&server.api().manifest().agent_id).unwrap();
        assert_eq!(source.workspace_agent_id, agent_id);
        assert_eq!(server.rest().log_sources(), vec![source]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn external_auth_always_sends_id_and_match_and_the_rest_only_when_set() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        server.rest().set_external_auth_provider(ExternalAuthProvider {
            id: "github".into(),
            type_: "github".into(),
            match_contains: "github.com".into(),
            ..Default::default()
        });
        client.external_auth(&ExternalAuthRequest::by_id("github")).await.unwrap();
        client
            .external_auth(&ExternalAuthRequest {
                match_: "https://github.com/coder/coder.git".into(),
                git_branch: "main".into(),
                git_remote_origin: "https://github.com/coder/coder.git".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        client
            .external_auth(&ExternalAuthRequest::by_id("github").chat_id("5d0c7b1e-8f3a-4c2d-9e6b-1a2b3c4d5e6f"))
            .await
            .unwrap();
        assert_eq!(
            server.rest().external_auth_queries(),
            vec![
                "id=github&match=".to_owned(),
                "git_branch=main&git_remote_origin=https%3A%2F%2Fgithub.com%2Fcoder%2Fcoder.git&id=&match=https%3A%2F%2Fgithub.com%2Fcoder%2Fcoder.git".to_owned(),
                "chat_id=5d0c7b1e-8f3a-4c2d-9e6b-1a2b3c4d5e6f&id=github&match=".to_owned(),
            ]
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn external_auth_answers_the_login_url_then_the_token_and_listen_waits_for_it() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        server.rest().set_external_auth_provider(ExternalAuthProvider {
            id: "gitlab".into(),
            type_: "gitlab".into(),
            ..Default::default()
        });
        let before = client
            .external_auth(&ExternalAuthRequest::by_id("gitlab"))
            .await
            .unwrap();
        assert!(before.access_token.is_empty());
        assert_eq!(before.url, format!("http://{}/external-auth/gitlab", server.addr()));
        assert_eq!(before.token_extra, None);

        // A client timeout must not cut a listening call short.
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let listening = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .external_auth(&ExternalAuthRequest::by_id("gitlab").listen())
                    .await
            }
        });
        while server.rest().external_auth_queries().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.rest().set_external_auth_token("gitlab", "glpat-secret-token");
        let after = listening.await.unwrap().unwrap();
        assert_eq!(after.access_token, "glpat-secret-token");
        assert_eq!(after.username, "oauth2");
        assert_eq!(after.password, "glpat-secret-token");
        assert_eq!(after.type_, "gitlab");
        assert_eq!(server.rest().external_auth_queries()[1], "id=gitlab&listen=true&match=");
        assert!(!format!("{after:?}").contains("glpat"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn external_auth_for_an_unknown_provider_is_coderds_404() {
    tokio::time::timeout(GUARD, async {
        let (_server, client) = setup().await;
        let err = client
            .external_auth(&ExternalAuthRequest::by_match("https://example.com/repo.git"))
            .await
            .unwrap_err();
        let api = err.api().unwrap();
        assert_eq!(api.status, 404);
        assert_eq!(
            api.response.message,
            "No matching external auth provider found in Coder for the url \"https://example.com/repo.git\"."
        );
        assert_eq!(api.response.detail, "External auth provider not found.");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_wrong_fixed_token_is_a_401_with_the_login_hint_and_no_retry() {
    tokio::time::timeout(GUARD, async {
        let (server, _client) = setup().await;
        let client = Client::builder(server.url().as_str())
            .token("0d6f3c1e-0000-4000-8000-000000000000")
            .build()
            .unwrap();
        let err = client.git_ssh_key().await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "GET http://{}/api/v2/workspaceagents/me/gitsshkey: unexpected status code 401: Workspace agent not authorized.: Try logging in using 'coder login'.\n\tError: ",
                server.addr()
            )),
            "{text}"
        );
        assert!(!text.contains("0d6f3c1e"));
        // A fixed token cannot change, so there is nothing to retry.
        assert_eq!(server.rest().requests().len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refresh_chat_context_posts_no_body_and_returns_the_count_coderd_answers() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        // coderd without a chat daemon answers 0, as the embedded server does by default.
        assert_eq!(client.refresh_chat_context().await.unwrap().refreshed, 0);
        server.rest().set_chat_context_refreshed(3);
        assert_eq!(client.refresh_chat_context().await.unwrap().refreshed, 3);
        let requests = server.rest().requests();
        assert_eq!(requests.len(), 2);
        for r in &requests {
            assert_eq!(r.method, "POST");
            assert_eq!(r.uri, "/api/v2/workspaceagents/me/experimental/chat-context/refresh");
            assert!(r.had_token_header);
            assert!(!r.header_names.iter().any(|h| h == "content-type"), "no body: {r:?}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refresh_chat_context_with_a_wrong_token_is_a_401_before_any_answer() {
    tokio::time::timeout(GUARD, async {
        let (server, _client) = setup().await;
        server.rest().set_chat_context_refreshed(3);
        let client = Client::builder(server.url().as_str())
            .token("0d6f3c1e-0000-4000-8000-000000000000")
            .build()
            .unwrap();
        let err = client.refresh_chat_context().await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "POST http://{}/api/v2/workspaceagents/me/experimental/chat-context/refresh: unexpected status code 401: Workspace agent not authorized.",
                server.addr()
            )),
            "{text}"
        );
        assert!(!text.contains("0d6f3c1e"));
    })
    .await
    .unwrap();
}

/// A server on another port that records whether the token reached it.
async fn token_sink() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<bool>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let addr = serve(axum::Router::new().fallback(move |headers: HeaderMap| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(headers.contains_key("coder-session-token"));
            axum::Json(serde_json::json!({"public_key":"stolen","private_key":"stolen"}))
        }
    }))
    .await;
    (addr, seen)
}

#[tokio::test]
async fn a_redirect_to_another_port_is_refused_and_the_token_never_leaves() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let (sink, seen) = token_sink().await;
        let redirector = serve(axum::Router::new().fallback(move || async move {
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header("location", format!("http://{sink}/api/v2/workspaceagents/me/gitsshkey"))
                .body(axum::body::Body::empty())
                .unwrap()
        }))
        .await;
        let client = Client::builder(url(redirector))
            .token("secret-token-value")
            .build()
            .unwrap();
        let err = client.git_ssh_key().await.unwrap_err();
        assert!(matches!(err, Error::Http(_)), "{err:?}");
        assert!(err.to_string().contains("another origin"), "{err}");
        assert!(seen.lock().unwrap().is_empty(), "the other origin was contacted");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_redirect_within_the_same_origin_is_followed_with_the_token() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::get(move |headers: HeaderMap| {
                    let s = s.clone();
                    async move {
                        s.lock().unwrap().push(headers.contains_key("coder-session-token"));
                        axum::Json(serde_json::json!({"public_key":"pk","private_key":"sk"}))
                    }
                }),
            )
            .fallback(|| async {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", "/moved")
                    .body(axum::body::Body::empty())
                    .unwrap()
            });
        let addr = serve(app).await;
        let client = Client::builder(url(addr)).token("t").build().unwrap();
        let key = client.git_ssh_key().await.unwrap();
        assert_eq!(key.public_key, "pk");
        assert_eq!(*seen.lock().unwrap(), vec![true]);
    })
    .await
    .unwrap();
}

#[test]
fn logs_and_debug_output_never_contain_the_token_key_or_identity() {
    // A current-thread runtime, so the subscriber set for this thread sees
    // the client, the embedded server and the fake metadata service.
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut debug_output = String::new();
    runtime.block_on(async {
        tokio::time::timeout(GUARD, async {
            let metadata = FakeMetadata::start().await;
            let server = EmbeddedServer::builder()
                .token("6a1e9c2f-5b8d-4e3a-9f7c-aaaabbbbcccc")
                .start()
                .await
                .unwrap();
            server
                .rest()
                .set_git_ssh_key("ssh-ed25519 AAAApublic", "PRIVATE-KEY-MATERIAL-xyz");
            server.rest().expect_aws_identity(AWS_SIGNATURE, AWS_DOCUMENT);
            server.rest().set_external_auth_provider(ExternalAuthProvider {
                id: "github".into(),
                type_: "github".into(),
                access_token: Some("gho_ACCESS_TOKEN_abc".into()),
                ..Default::default()
            });
            let client = Client::builder(server.url().as_str())
                .instance_identity(coder_agentsdk::auth::AwsInstanceIdentity::new().metadata_url(metadata.url()))
                .build()
                .unwrap();
            let key = client.git_ssh_key().await.unwrap();
            let auth = client
                .external_auth(&ExternalAuthRequest::by_id("github"))
                .await
                .unwrap();
            let token = client.session_token().await.unwrap();
            let bad = Client::builder(server.url().as_str())
                .token("6a1e9c2f-5b8d-4e3a-9f7c-aaaabbbbcccc-wrong")
                .build()
                .unwrap();
            let err = bad.git_ssh_key().await.unwrap_err();
            debug_output = format!(
                "{key:?}{auth:?}{token:?}{client:?}{err:?}{err}{:?}{:?}",
                client.token_provider().refreshable(),
                server.rest().identity_exchanges()
            );
        })
        .await
        .unwrap();
    });
    let logs = captured.text();
    assert!(logs.contains("coderd request"), "tracing was not captured: {logs}");
    for secret in [
        "6a1e9c2f-5b8d-4e3a-9f7c-aaaabbbbcccc",
        "PRIVATE-KEY-MATERIAL",
        "gho_ACCESS_TOKEN",
        IMDS_TOKEN,
        "aws-signature-MIAG",
        "i-secret-document",
    ] {
        assert!(!logs.contains(secret), "logs contain {secret:?}:\n{logs}");
        assert!(
            !debug_output.contains(secret),
            "Debug output contains {secret:?}:\n{debug_output}"
        );
    }
}

#[tokio::test]
async fn external_auth_expires_at_arrives_parsed_and_no_expiry_is_gos_zero_time() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let expiry = chrono::DateTime::parse_from_rfc3339("2026-07-07T16:26:33.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        server.rest().set_external_auth_provider(ExternalAuthProvider {
            id: "github".into(),
            type_: "github".into(),
            access_token: Some("gho_token".into()),
            expires_at: Some(expiry),
            ..Default::default()
        });
        server.rest().set_external_auth_provider(ExternalAuthProvider {
            id: "gitlab".into(),
            type_: "gitlab".into(),
            ..Default::default()
        });
        let auth = client
            .external_auth(&ExternalAuthRequest::by_id("github"))
            .await
            .unwrap();
        assert_eq!(auth.expires_at, Some(expiry));
        let login = client
            .external_auth(&ExternalAuthRequest::by_id("gitlab"))
            .await
            .unwrap();
        assert_eq!(login.expires_at, None);
        // On the wire coderd always writes the key; "no expiry" is Go's zero time.
        let http = coder_agentsdk::client::http_client_builder().build().unwrap();
        let raw: serde_json::Value = http
            .get(format!(
                "{}api/v2/workspaceagents/me/external-auth?id=gitlab&match=",
                server.url()
            ))
            .header("Coder-Session-Token", server.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(raw["expires_at"], "0001-01-01T00:00:00Z");
        let raw: serde_json::Value = http
            .get(format!(
                "{}api/v2/workspaceagents/me/external-auth?id=github&match=",
                server.url()
            ))
            .header("Coder-Session-Token", server.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            raw["expires_at"], "2026-07-07T16:26:33.5Z",
            "Go's RFC 3339 with trimmed fraction"
        );
    })
    .await
    .unwrap();
}
