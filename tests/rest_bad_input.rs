//! What the REST calls do when coderd (or something in front of it) answers
//! badly: wrong JSON types, missing and unknown fields, empty bodies, the
//! wrong success status, HTML error pages, hangs, nobody listening. Always
//! a typed error (or Go's lenient decoding), never a panic or a hang.

mod rest_support;

use std::time::Duration;

use coder_agentsdk::types::{ExternalAuthRequest, PatchAppStatus, PostLogSourceRequest, WorkspaceAppStatusState};
use coder_agentsdk::{Client, Error};
use rest_support::*;

const JSON: Option<&str> = Some("application/json; charset=utf-8");

async fn client_for(status: u16, content_type: Option<&'static str>, body: &str) -> Client {
    init_tracing();
    let addr = canned(status, content_type, body.to_owned()).await;
    Client::builder(url(addr)).token("t").build().unwrap()
}

fn log_source_request() -> PostLogSourceRequest {
    PostLogSourceRequest {
        id: uuid::Uuid::new_v4(),
        display_name: "x".into(),
        icon: String::new(),
    }
}

fn app_status() -> PatchAppStatus {
    PatchAppStatus {
        app_slug: "a".into(),
        icon: String::new(),
        message: String::new(),
        needs_user_attention: false,
        state: WorkspaceAppStatusState::Idle,
        uri: String::new(),
    }
}

#[tokio::test]
async fn wrong_json_types_are_invalid_response_errors_that_quote_no_values() {
    tokio::time::timeout(GUARD, async {
        let client = client_for(200, JSON, r#"{"public_key":17,"private_key":"-----BEGIN secret"}"#).await;
        let err = client.git_ssh_key().await.unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        let client = client_for(200, JSON, r#"{"public_key":"ok","private_key":["-----BEGIN secret"]}"#).await;
        let err = client.git_ssh_key().await.unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let client = client_for(200, JSON, r#"{"access_token":"x","token_extra":"not an object"}"#).await;
        let err = client
            .external_auth(&ExternalAuthRequest::by_id("gh"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        assert!(!err.to_string().contains("not an object"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn missing_fields_take_go_zero_values_unless_the_spec_requires_them() {
    tokio::time::timeout(GUARD, async {
        let key = client_for(200, JSON, "{}").await.git_ssh_key().await.unwrap();
        assert!(key.public_key.is_empty() && key.private_key.is_empty());
        let auth = client_for(200, JSON, r#"{"url":"https://coder/external-auth/gh"}"#)
            .await
            .external_auth(&ExternalAuthRequest::by_id("gh"))
            .await
            .unwrap();
        assert_eq!(auth.url, "https://coder/external-auth/gh");
        assert!(auth.access_token.is_empty() && auth.token_extra.is_none());
        // A log source without its id, agent id and creation time is not a log source.
        let err = client_for(201, JSON, r#"{"display_name":"x"}"#)
            .await
            .post_log_source(&log_source_request())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unknown_extra_fields_are_accepted_as_go_does() {
    tokio::time::timeout(GUARD, async {
        let key = client_for(
            200,
            JSON,
            r#"{"public_key":"ssh-ed25519 A","private_key":"k","created_at":"2024-01-01T00:00:00Z","extra":{"a":[1]}}"#,
        )
        .await
        .git_ssh_key()
        .await
        .unwrap();
        assert_eq!(key.public_key, "ssh-ed25519 A");
        let source = client_for(
            201,
            JSON,
            r#"{"workspace_agent_id":"6a1e9c2f-5b8d-4e3a-9f7c-aaaabbbbcccc","id":"3b579bf4-1ed8-4b99-87a8-e9a1e3410410","created_at":"2024-01-01T00:00:00.5Z","display_name":"d","icon":"","new_field":true}"#,
        )
        .await
        .post_log_source(&log_source_request())
        .await
        .unwrap();
        assert_eq!(source.display_name, "d");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_empty_200_is_an_error_except_where_go_ignores_the_body() {
    tokio::time::timeout(GUARD, async {
        let err = client_for(200, JSON, "").await.git_ssh_key().await.unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        let err = client_for(200, None, "")
            .await
            .external_auth(&ExternalAuthRequest::by_id("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        // PATCH app-status and PATCH logs only look at the status, as in Go.
        client_for(200, None, "")
            .await
            .patch_app_status(&app_status())
            .await
            .unwrap();
        client_for(200, JSON, "null\n")
            .await
            .patch_app_status(&app_status())
            .await
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_200_where_201_is_expected_is_an_api_error_without_the_body() {
    tokio::time::timeout(GUARD, async {
        let body = r#"{"workspace_agent_id":"6a1e9c2f-5b8d-4e3a-9f7c-aaaabbbbcccc","id":"3b579bf4-1ed8-4b99-87a8-e9a1e3410410","created_at":"2024-01-01T00:00:00Z"}"#;
        let err = client_for(200, JSON, body)
            .await
            .post_log_source(&log_source_request())
            .await
            .unwrap_err();
        let api = err.api().unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(api.status, 200);
        assert_eq!(api.response.message, "unexpected status code 200, response has no message");
        assert_eq!(api.response.detail, format!("{} byte response body not shown", body.len()));
        assert_eq!(api.method.as_deref(), Some("POST"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_html_error_page_is_a_non_json_error_with_the_body_cut_at_2_kib() {
    tokio::time::timeout(GUARD, async {
        let page = format!("<html><body>{}</body></html>", "bad gateway ".repeat(500));
        let addr = canned(502, Some("text/html; charset=utf-8"), page.clone()).await;
        let client = Client::builder(url(addr)).token("t").build().unwrap();
        let err = client.git_ssh_key().await.unwrap_err();
        let api = err.api().unwrap();
        assert_eq!(api.status, 502);
        assert_eq!(
            api.response.message,
            "unexpected non-JSON response \"text/html; charset=utf-8\""
        );
        assert_eq!(api.response.detail, format!("{}...", &page[..2048]));
        assert!(err.to_string().starts_with(&format!(
            "GET http://{addr}/api/v2/workspaceagents/me/gitsshkey: unexpected status code 502: unexpected non-JSON response"
        )));
        let err = client_for(503, Some("text/plain"), "").await.git_ssh_key().await.unwrap_err();
        assert_eq!(err.api().unwrap().response.detail, "no response body");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_json_error_with_validations_reads_like_codersdk() {
    tokio::time::timeout(GUARD, async {
        let body = r#"{"message":"Invalid state provided.","detail":"invalid state: \"bogus\"","validations":[{"field":"state","detail":"State must be one of: complete, failure, working, idle."}]}"#;
        let addr = canned(400, JSON, body).await;
        let client = Client::builder(url(addr)).token("t").build().unwrap();
        let err = client.patch_app_status(&app_status()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "PATCH http://{addr}/api/v2/workspaceagents/me/app-status: unexpected status code 400: Invalid state provided.\n\tError: invalid state: \"bogus\"\n\tstate: State must be one of: complete, failure, working, idle."
            )
        );
        let err = client_for(500, JSON, r#"{"detail":"db down"}"#).await.git_ssh_key().await.unwrap_err();
        assert_eq!(err.api().unwrap().response.message, "unexpected status code 500, response has no message");
        let err = client_for(500, JSON, "").await.git_ssh_key().await.unwrap_err();
        assert_eq!(err.api().unwrap().response.message, "empty response body");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_ordinary_call_that_hangs_hits_the_client_timeout() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let addr = serve(axum::Router::new().fallback(std::future::pending::<&'static str>)).await;
        let client = Client::builder(url(addr))
            .token("t")
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let err = client.git_ssh_key().await.unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert!(
            err.to_string().contains("/api/v2/workspaceagents/me/gitsshkey"),
            "{err}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn nobody_listening_is_an_http_error() {
    tokio::time::timeout(GUARD, async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::builder(url(addr)).token("t").build().unwrap();
        let err = client.git_ssh_key().await.unwrap_err();
        assert!(matches!(err, Error::Http(_)), "{err:?}");
    })
    .await
    .unwrap();
}

#[test]
fn a_base_url_that_is_not_http_is_refused() {
    let err = Client::builder("ftp://coder.example.com")
        .token("t")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUrl(_)), "{err:?}");
    let err = Client::builder("http://coder.example.com").build().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}
