//! TLS end to end on loopback: an agent reaches a TLS embedded server over
//! REST and RPC when it trusts the server's CA (builder roots, a whole
//! rustls config, the test kit), and fails with the typed certificate error
//! naming the host when it does not. `SSL_CERT_FILE` / `SSL_CERT_DIR` are
//! in their own test binary (`tls_env.rs`): the environment is process-wide.

mod tls_support;

use std::sync::Arc;
use std::time::Duration;

use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::testkit::FakeCoderd;
use coder_agentsdk::{Client, Error};
use tls_support::{localhost_url, TestCa};
use tokio::io::AsyncReadExt;

/// Guards against hangs; a test that needs this long has failed anyway.
const GUARD: Duration = Duration::from_secs(20);

async fn tls_server(ca: &TestCa, names: &[&str]) -> EmbeddedServer {
    let cert = ca.server_cert(names);
    EmbeddedServer::builder()
        .tls(cert.chain, cert.key)
        .start()
        .await
        .unwrap()
}

/// One REST call and one RPC round trip.
async fn rest_and_rpc(client: &Client) -> Result<(), Error> {
    client.git_ssh_key().await?;
    let (agent, _tailnet) = client.connect_rpc28().await?;
    agent.get_manifest(agent::GetManifestRequest {}).await?;
    Ok(())
}

fn assert_untrusted(e: &Error, host: &str) {
    match e {
        Error::Tls { host: h, cause, .. } => {
            assert_eq!(h, host);
            assert_eq!(
                cause,
                &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            );
        }
        other => panic!("expected Error::Tls, got {other:?}"),
    }
    assert!(e.is_certificate_error());
    let text = e.to_string();
    assert!(
        text.contains(host) && text.contains("unknown authority") && text.contains("SSL_CERT_FILE"),
        "{text}"
    );
    assert!(!text.contains("IO error"), "{text}");
}

#[tokio::test]
async fn server_reports_an_https_url() {
    let ca = TestCa::new("test CA");
    let server = tls_server(&ca, &["localhost", "127.0.0.1"]).await;
    assert_eq!(server.url().scheme(), "https");
}

#[tokio::test]
async fn agent_trusting_the_ca_by_builder_reaches_the_tls_server_over_rest_and_rpc() {
    tokio::time::timeout(GUARD, async {
        let ca = TestCa::new("test CA");
        let server = tls_server(&ca, &["localhost", "127.0.0.1"]).await;
        // By IP address (the server's own URL) and by DNS name.
        for url in [server.url().to_string(), localhost_url(&server)] {
            let client = Client::builder(&url)
                .token(server.token())
                .add_root_certificates_pem(ca.pem().as_bytes())
                .unwrap()
                .build()
                .unwrap();
            rest_and_rpc(&client).await.unwrap();
        }
        assert!(server.agents()[0].connections_total > 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn agent_with_a_whole_rustls_config_reaches_the_tls_server() {
    tokio::time::timeout(GUARD, async {
        let ca = TestCa::new("test CA");
        let server = tls_server(&ca, &["localhost"]).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.server_cert(&["x"]).chain[1].clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Narrowed to http/1.1 by the builder: a server may not pick h2.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let client = Client::builder(localhost_url(&server))
            .token(server.token())
            .tls_config(Arc::new(config))
            .build()
            .unwrap();
        assert_eq!(client.tls_config().alpn_protocols, vec![b"http/1.1".to_vec()]);
        rest_and_rpc(&client).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rest_to_an_untrusted_server_fails_with_the_certificate_error_naming_the_host() {
    tokio::time::timeout(GUARD, async {
        let server = tls_server(&TestCa::new("unknown CA"), &["localhost"]).await;
        let client = Client::builder(localhost_url(&server))
            .token(server.token())
            .build()
            .unwrap();
        let e = client.git_ssh_key().await.unwrap_err();
        assert_untrusted(&e, "localhost");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rpc_to_an_untrusted_server_fails_with_the_certificate_error_naming_the_host() {
    tokio::time::timeout(GUARD, async {
        let server = tls_server(&TestCa::new("unknown CA"), &["localhost"]).await;
        // Another CA than the server's: extra roots do not make it trusted.
        let client = Client::builder(localhost_url(&server))
            .token(server.token())
            .add_root_certificates_pem(TestCa::new("other CA").pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let e = client.connect_rpc28().await.unwrap_err();
        assert_untrusted(&e, "localhost");
        assert_eq!(server.agents()[0].connections_total, 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn certificate_for_another_name_is_refused_even_from_a_trusted_ca() {
    tokio::time::timeout(GUARD, async {
        let ca = TestCa::new("test CA");
        let server = tls_server(&ca, &["coder.internal"]).await;
        let client = Client::builder(localhost_url(&server))
            .token(server.token())
            .add_root_certificates_pem(ca.pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        for e in [
            client.git_ssh_key().await.unwrap_err(),
            client.connect_rpc28().await.map(|_| ()).unwrap_err(),
        ] {
            assert!(e.is_certificate_error(), "{e:?}");
            assert!(
                matches!(&e, Error::Tls { host, cause: rustls::Error::InvalidCertificate(c), .. }
                    if host == "localhost" && matches!(c, rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. })),
                "{e:?}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plain_http_client_on_a_tls_server_is_not_served() {
    tokio::time::timeout(GUARD, async {
        let server = tls_server(&TestCa::new("test CA"), &["localhost"]).await;
        let url = format!("http://127.0.0.1:{}/", server.addr().port());
        let client = Client::builder(url).token(server.token()).build().unwrap();
        assert!(client.git_ssh_key().await.is_err());
        assert!(client.connect_rpc28().await.is_err());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn builder_refuses_pem_without_certificates_and_roots_with_a_whole_config() {
    let e = Client::builder("https://coder.test")
        .add_root_certificates_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    let ca = TestCa::new("test CA");
    let config = (**Client::builder("https://coder.test")
        .token("t")
        .build()
        .unwrap()
        .tls_config())
    .clone();
    let e = Client::builder("https://coder.test")
        .token("t")
        .add_root_certificates_pem(ca.pem().as_bytes())
        .unwrap()
        .tls_config(Arc::new(config))
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

#[tokio::test]
async fn callers_http_client_keeps_its_own_trust_for_rest_while_rpc_uses_the_builders() {
    tokio::time::timeout(GUARD, async {
        let ca = TestCa::new("test CA");
        let server = tls_server(&ca, &["localhost"]).await;
        let client = Client::builder(localhost_url(&server))
            .token(server.token())
            .add_root_certificates_pem(ca.pem().as_bytes())
            .unwrap()
            .http_client(coder_agentsdk::client::http_client_builder().build().unwrap())
            .build()
            .unwrap();
        let (agent, _tailnet) = client.connect_rpc28().await.unwrap();
        agent.get_manifest(agent::GetManifestRequest {}).await.unwrap();
        assert_untrusted(&client.git_ssh_key().await.unwrap_err(), "localhost");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn test_kit_serves_tls_and_its_client_trusts_it() {
    tokio::time::timeout(GUARD, async {
        let ca = TestCa::new("test CA");
        let cert = ca.server_cert(&["127.0.0.1"]);
        let coderd = FakeCoderd::builder()
            .agent_name("tls")
            .tls(cert.chain, cert.key)
            .start()
            .await;
        assert_eq!(coderd.url().scheme(), "https");
        let (agent, _tailnet) = coderd.client().connect_rpc28().await.unwrap();
        let manifest = agent.get_manifest(agent::GetManifestRequest {}).await.unwrap();
        assert_eq!(manifest.agent_name, "tls");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn server_refuses_a_key_that_does_not_match_the_certificate() {
    let ca = TestCa::new("test CA");
    let cert = ca.server_cert(&["localhost"]);
    let other = ca.server_cert(&["localhost"]);
    let e = EmbeddedServer::builder()
        .tls(cert.chain, other.key)
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    let e = EmbeddedServer::builder()
        .tls_pem(b"no pem", b"no pem")
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
}

#[tokio::test]
async fn silent_peer_is_closed_after_the_handshake_timeout_and_frees_its_slot() {
    tokio::time::timeout(GUARD, async {
        let ca = TestCa::new("test CA");
        let cert = ca.server_cert(&["localhost"]);
        let server = EmbeddedServer::builder()
            .tls(cert.chain, cert.key)
            .handshake_timeout(Duration::from_millis(300))
            .max_connections(1)
            .start()
            .await
            .unwrap();
        // Connects and never starts the TLS handshake.
        let mut silent = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let mut buf = [0u8; 16];
        // The server closes it (end of stream or reset), bounded by GUARD.
        assert!(matches!(silent.read(&mut buf).await, Ok(0) | Err(_)));
        // Its slot is free again: an agent gets through under a cap of one.
        let client = Client::builder(localhost_url(&server))
            .token(server.token())
            .add_root_certificates_pem(ca.pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        client.git_ssh_key().await.unwrap();
    })
    .await
    .unwrap();
}
