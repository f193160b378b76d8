//! `SSL_CERT_FILE` and `SSL_CERT_DIR`, as Go's agent honours them: a client
//! built with no roots of its own trusts the CA in the file and the CA in
//! the directory, over REST and RPC. Its own test binary with one test: the
//! environment is process-wide and the system's roots are read once.

mod tls_support;

use std::time::Duration;

use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;
use tls_support::{localhost_url, TestCa};

#[tokio::test]
async fn agent_trusts_the_cas_of_ssl_cert_file_and_ssl_cert_dir_over_rest_and_rpc() {
    let file_ca = TestCa::new("CA in SSL_CERT_FILE");
    let dir_ca = TestCa::new("CA in SSL_CERT_DIR");
    let unknown_ca = TestCa::new("CA nowhere");
    let dir = std::env::temp_dir().join(format!("agentsdk-tls-env-{}", std::process::id()));
    let cert_dir = dir.join("certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    let file = dir.join("ca.pem");
    std::fs::write(&file, file_ca.pem()).unwrap();
    std::fs::write(cert_dir.join("dir-ca.pem"), dir_ca.pem()).unwrap();
    // Before any client exists: the roots are read once, at the first.
    std::env::set_var("SSL_CERT_FILE", &file);
    std::env::set_var("SSL_CERT_DIR", &cert_dir);

    tokio::time::timeout(Duration::from_secs(20), async {
        for (ca, trusted) in [(&file_ca, true), (&dir_ca, true), (&unknown_ca, false)] {
            let cert = ca.server_cert(&["localhost"]);
            let server = EmbeddedServer::builder()
                .tls(cert.chain, cert.key)
                .start()
                .await
                .unwrap();
            let client = Client::builder(localhost_url(&server))
                .token(server.token())
                .build()
                .unwrap();
            let rest = client.git_ssh_key().await;
            let rpc = match client.connect_rpc28().await {
                Ok((agent, _tailnet)) => agent
                    .get_manifest(agent::GetManifestRequest {})
                    .await
                    .map(|_| ())
                    .map_err(coder_agentsdk::Error::from),
                Err(e) => Err(e),
            };
            if trusted {
                rest.unwrap();
                rpc.unwrap();
            } else {
                for e in [rest.map(|_| ()).unwrap_err(), rpc.unwrap_err()] {
                    assert!(e.is_certificate_error(), "{e:?}");
                    assert!(e.to_string().contains("localhost"), "{e}");
                }
            }
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
