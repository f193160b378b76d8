//! The cloud instance-identity token providers against a fake metadata
//! service and the embedded coderd: the exact metadata requests, the
//! exchange bodies, single flight, failures and the 401 → refresh → retry
//! rule for REST calls and the RPC dial.

mod rest_support;

use std::time::Duration;

use coder_agentsdk::auth::{
    AwsInstanceIdentity, AzureInstanceIdentity, GoogleInstanceIdentity, InstanceIdentity, TokenExchanger, TokenProvider,
};
use coder_agentsdk::server::rest::Cloud;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::{Client, Error};
use rest_support::*;

async fn setup() -> (EmbeddedServer, FakeMetadata) {
    init_tracing();
    let server = EmbeddedServer::start().await.unwrap();
    server.rest().expect_aws_identity(AWS_SIGNATURE, AWS_DOCUMENT);
    server.rest().expect_azure_identity(AZURE_SIGNATURE, "pkcs7");
    server.rest().expect_google_identity(GOOGLE_JWT);
    (server, FakeMetadata::start().await)
}

fn client(server: &EmbeddedServer, exchanger: impl TokenExchanger) -> Client {
    Client::builder(server.url().as_str())
        .instance_identity(exchanger)
        .build()
        .unwrap()
}

fn header<'a>(r: &'a MetaRequest, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn aws_exchange_uses_imdsv2_and_posts_signature_and_document_as_read() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        let client = client(&server, AwsInstanceIdentity::new().metadata_url(metadata.url()));
        client.git_ssh_key().await.unwrap();

        let requests = metadata.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(
            (requests[0].method.as_str(), requests[0].path.as_str()),
            ("PUT", "/latest/api/token")
        );
        assert_eq!(
            header(&requests[0], "x-aws-ec2-metadata-token-ttl-seconds"),
            Some("21600")
        );
        assert_eq!(requests[1].path, "/latest/dynamic/instance-identity/signature");
        assert_eq!(requests[2].path, "/latest/dynamic/instance-identity/document");
        for r in &requests[1..] {
            assert_eq!(r.method, "GET");
            assert_eq!(header(r, "x-aws-ec2-metadata-token"), Some(IMDS_TOKEN));
        }
        let exchanges = server.rest().identity_exchanges();
        assert_eq!(exchanges.len(), 1);
        assert_eq!(exchanges[0].cloud, Cloud::Aws);
        assert!(exchanges[0].accepted && !exchanges[0].had_token_header);
        assert_eq!(
            exchanges[0].body,
            serde_json::json!({ "signature": AWS_SIGNATURE, "document": AWS_DOCUMENT })
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn azure_exchange_reads_the_attested_document_and_posts_signature_and_encoding() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        let client = client(&server, AzureInstanceIdentity::new().metadata_url(metadata.url()));
        client.git_ssh_key().await.unwrap();
        let requests = metadata.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path, "/metadata/attested/document");
        assert_eq!(requests[0].query, "api-version=2020-09-01");
        assert_eq!(header(&requests[0], "metadata"), Some("true"));
        let exchanges = server.rest().identity_exchanges();
        assert_eq!(
            exchanges[0].body,
            serde_json::json!({ "signature": AZURE_SIGNATURE, "encoding": "pkcs7" })
        );
        assert!(exchanges[0].accepted && !exchanges[0].had_token_header);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn google_exchange_asks_for_a_full_coder_audience_jwt_of_the_service_account() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        let client = client(&server, GoogleInstanceIdentity::new().metadata_url(metadata.url()));
        client.git_ssh_key().await.unwrap();
        let other = Client::builder(server.url().as_str())
            .instance_identity(
                GoogleInstanceIdentity::new()
                    .metadata_url(metadata.url())
                    .service_account("agent@project.iam.gserviceaccount.com"),
            )
            .build()
            .unwrap();
        other.session_token().await.unwrap();
        let requests = metadata.requests();
        assert_eq!(
            requests[0].path,
            "/computeMetadata/v1/instance/service-accounts/default/identity"
        );
        assert_eq!(requests[0].query, "audience=coder&format=full");
        assert_eq!(header(&requests[0], "metadata-flavor"), Some("Google"));
        assert_eq!(
            requests[1].path,
            "/computeMetadata/v1/instance/service-accounts/agent@project.iam.gserviceaccount.com/identity"
        );
        let exchanges = server.rest().identity_exchanges();
        assert_eq!(exchanges[0].body, serde_json::json!({ "json_web_token": GOOGLE_JWT }));
        assert!(exchanges[0].accepted && !exchanges[0].had_token_header);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn agent_name_is_posted_only_when_set() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        let m = metadata.url();
        let exchangers: Vec<Box<dyn Fn() -> Client>> = vec![
            Box::new(|| client(&server, AwsInstanceIdentity::new().metadata_url(&m).agent_name("alpha"))),
            Box::new(|| {
                client(
                    &server,
                    AzureInstanceIdentity::new().metadata_url(&m).agent_name("alpha"),
                )
            }),
            Box::new(|| {
                client(
                    &server,
                    GoogleInstanceIdentity::new().metadata_url(&m).agent_name("alpha"),
                )
            }),
            Box::new(|| client(&server, AwsInstanceIdentity::new().metadata_url(&m).agent_name(""))),
        ];
        for make in &exchangers {
            make().session_token().await.unwrap();
        }
        let exchanges = server.rest().identity_exchanges();
        assert_eq!(exchanges.len(), 4);
        for e in &exchanges[..3] {
            assert_eq!(e.body["agent_name"], "alpha", "{e:?}");
        }
        assert!(exchanges[3].body.get("agent_name").is_none());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn concurrent_token_requests_share_one_exchange() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        metadata.set_mode(Mode::Gated);
        let provider = InstanceIdentity::new(
            AwsInstanceIdentity::new().metadata_url(metadata.url()),
            server.url(),
            coder_agentsdk::client::http_client_builder().build().unwrap(),
        );
        let calls = futures::future::join_all((0..32).map(|_| provider.token()));
        let opener = async {
            metadata.wait_for_requests(1).await;
            metadata.open_gate();
        };
        let (tokens, ()) = tokio::join!(calls, opener);
        for t in tokens {
            assert_eq!(t.unwrap().expose(), server.token());
        }
        assert_eq!(server.rest().identity_exchanges().len(), 1);
        assert_eq!(metadata.requests().len(), 3);
        // Cached afterwards.
        provider.token().await.unwrap();
        assert_eq!(server.rest().identity_exchanges().len(), 1);
        // refresh() always exchanges.
        provider.refresh().await.unwrap();
        assert_eq!(server.rest().identity_exchanges().len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_failed_exchange_is_an_error_and_the_next_call_tries_again() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        metadata.set_mode(Mode::FailTimes(500, 1));
        let client = client(&server, AwsInstanceIdentity::new().metadata_url(metadata.url()));
        let err = client.git_ssh_key().await.unwrap_err();
        let Error::TokenExchange(cause) = &err else {
            panic!("{err:?}")
        };
        assert!(matches!(**cause, Error::Metadata(_)), "{cause:?}");
        assert!(err.to_string().contains("unexpected status code 500"), "{err}");
        assert!(server.rest().identity_exchanges().is_empty());
        assert!(server.rest().requests().iter().all(|r| !r.uri.contains("gitsshkey")));
        client.git_ssh_key().await.unwrap();
        assert_eq!(server.rest().identity_exchanges().len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_hanging_metadata_service_times_out_with_a_typed_error() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        metadata.set_mode(Mode::Hang);
        let client = client(
            &server,
            AzureInstanceIdentity::new()
                .metadata_url(metadata.url())
                .metadata_timeout(Duration::from_millis(200)),
        );
        let err = client.session_token().await.unwrap_err();
        let Error::TokenExchange(cause) = &err else {
            panic!("{err:?}")
        };
        let Error::Metadata(text) = &**cause else {
            panic!("{cause:?}")
        };
        assert!(text.contains("timed out"), "{text}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_whole_exchange_that_hangs_hits_the_exchange_timeout() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        metadata.set_mode(Mode::Hang);
        let client = Client::builder(server.url().as_str())
            .instance_identity_with_timeout(
                GoogleInstanceIdentity::new().metadata_url(metadata.url()),
                Duration::from_millis(200),
            )
            .build()
            .unwrap();
        let err = client.session_token().await.unwrap_err();
        let Error::TokenExchange(cause) = &err else {
            panic!("{err:?}")
        };
        assert!(matches!(**cause, Error::Timeout(_)), "{cause:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn azure_metadata_with_wrong_json_types_is_a_metadata_error() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        metadata.set_mode(Mode::AzureBody(r#"{"signature":"s3cr3t-sig","encoding":7}"#));
        let client = client(&server, AzureInstanceIdentity::new().metadata_url(metadata.url()));
        let err = client.session_token().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("decode attested document"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(server.rest().identity_exchanges().is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_identity_coderd_refuses_is_its_401_error() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        server.rest().expect_aws_identity("another-signature", AWS_DOCUMENT);
        let client = client(&server, AwsInstanceIdentity::new().metadata_url(metadata.url()));
        let err = client.git_ssh_key().await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        let api = err.api().unwrap();
        assert_eq!(api.response.message, "Invalid AWS identity.");
        assert!(api
            .url
            .as_deref()
            .unwrap()
            .ends_with("/api/v2/workspaceagents/aws-instance-identity"));
        assert!(!err.to_string().contains("aws-signature"), "{err}");
        let exchanges = server.rest().identity_exchanges();
        assert_eq!(exchanges.len(), 1);
        assert!(!exchanges[0].accepted);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_the_call() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        server
            .rest()
            .queue_exchange_token("2b5e0d8a-0000-4000-8000-00000000dead");
        let client = client(&server, AwsInstanceIdentity::new().metadata_url(metadata.url()));
        client.git_ssh_key().await.unwrap();
        assert_eq!(server.rest().identity_exchanges().len(), 2);
        let calls: Vec<_> = server
            .rest()
            .requests()
            .into_iter()
            .filter(|r| r.uri.ends_with("/gitsshkey"))
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(client.session_token().await.unwrap().expose(), server.token());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_returned() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        server
            .rest()
            .queue_exchange_token("2b5e0d8a-0000-4000-8000-00000000dead");
        server
            .rest()
            .queue_exchange_token("2b5e0d8a-0000-4000-8000-00000000beef");
        let client = client(&server, AwsInstanceIdentity::new().metadata_url(metadata.url()));
        let err = client.git_ssh_key().await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert_eq!(server.rest().identity_exchanges().len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_rpc_dial_refused_with_401_refreshes_once_and_connects() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        server
            .rest()
            .queue_exchange_token("2b5e0d8a-0000-4000-8000-00000000dead");
        let client = client(&server, GoogleInstanceIdentity::new().metadata_url(metadata.url()));
        let _conn = client.connect_rpc().await.unwrap();
        assert_eq!(server.rest().identity_exchanges().len(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_provider_shared_by_two_clients_is_one_source_of_tokens() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        let provider = InstanceIdentity::new(
            AwsInstanceIdentity::new().metadata_url(metadata.url()),
            server.url(),
            coder_agentsdk::client::http_client_builder().build().unwrap(),
        );
        let a = Client::builder(server.url().as_str())
            .token_provider(provider.clone())
            .build()
            .unwrap();
        let b = Client::builder(server.url().as_str())
            .token_provider(provider)
            .build()
            .unwrap();
        a.git_ssh_key().await.unwrap();
        b.git_ssh_key().await.unwrap();
        assert_eq!(server.rest().identity_exchanges().len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn auth_method_configures_the_client_like_coders_agent_environment() {
    tokio::time::timeout(GUARD, async {
        let (server, metadata) = setup().await;
        let method: coder_agentsdk::auth::AuthMethod = "azure-instance-identity".parse().unwrap();
        let client = Client::builder(server.url().as_str())
            .auth_method(method, None, Some(&metadata.url()))
            .unwrap()
            .build()
            .unwrap();
        client.git_ssh_key().await.unwrap();
        assert_eq!(server.rest().identity_exchanges()[0].cloud, Cloud::Azure);
        let err = Client::builder(server.url().as_str())
            .auth_method(Default::default(), None, None)
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    })
    .await
    .unwrap();
}
