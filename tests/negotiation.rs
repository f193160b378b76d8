//! Version negotiation against the embedded server stopped at each version.

use std::time::Duration;

use coder_agentsdk::drpc::{ApiVersion, RpcError};
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::VERSIONS;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;

const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn negotiation_agrees_on_each_server_version_and_gates_newer_rpcs_locally() {
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::start().await.unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        for info in VERSIONS.iter().filter(|v| v.version <= ApiVersion::new(2, 8)) {
            server.set_max_version(info.version);
            let n = client.connect_rpc_negotiated_with_role(Some("agent")).await.unwrap();
            assert_eq!(n.version(), info.version);
            n.agent.get_manifest(Default::default()).await.unwrap();
            // UpdateAppStatus arrived in 2.8: below that it fails locally.
            let result = n.agent.update_app_status(Default::default()).await;
            if info.version >= ApiVersion::new(2, 8) {
                result.unwrap();
            } else {
                match result.unwrap_err() {
                    RpcError::VersionTooOld {
                        required, negotiated, ..
                    } => {
                        assert_eq!(required, ApiVersion::new(2, 8));
                        assert_eq!(negotiated, info.version);
                    }
                    other => panic!("expected VersionTooOld, got {other}"),
                }
            }
        }
        let recorded_app_statuses = server
            .api()
            .recorded()
            .iter()
            .filter(|r| matches!(r, coder_agentsdk::server::Recorded::AppStatus(_)))
            .count();
        assert_eq!(recorded_app_statuses, 1, "only the v2.8 call reached the server");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn version_too_old_error_names_both_versions() {
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::builder()
            .max_version(ApiVersion::new(2, 3))
            .start()
            .await
            .unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let n = client.connect_rpc_negotiated().await.unwrap();
        let err = n.agent.create_sub_agent(Default::default()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "/coder.agent.v2.Agent/CreateSubAgent requires API v2.6, server speaks v2.3"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unsupported_version_refusal_is_coderds_400_with_version_validation() {
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::builder()
            .max_version(ApiVersion::new(2, 4))
            .start()
            .await
            .unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let err = client.connect_rpc28().await.unwrap_err();
        let api = err.api().expect("an API error");
        assert_eq!(api.status, 400);
        assert_eq!(api.response.message, "Unknown or unsupported API version");
        assert_eq!(
            api.validation("version").unwrap().detail,
            "server is at version 2.4, behind requested minor version 2.8"
        );
    })
    .await
    .unwrap();
}
