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

#[tokio::test]
async fn v212_and_v213_negotiate_and_the_pinned_connects_dial_them() {
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::start().await.unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        // The default server speaks the crate's newest version.
        let n = client.connect_rpc_negotiated().await.unwrap();
        assert_eq!(n.version(), ApiVersion::new(2, 13));
        let (agent, _tailnet) = client.connect_rpc213().await.unwrap();
        agent.get_manifest(Default::default()).await.unwrap();
        // A coderd at 2.12 refuses 2.13; negotiation steps down to 2.12.
        server.set_max_version(ApiVersion::new(2, 12));
        let n = client.connect_rpc_negotiated().await.unwrap();
        assert_eq!(n.version(), ApiVersion::new(2, 12));
        let (agent, tailnet) = client.connect_rpc212().await.unwrap();
        agent.get_manifest(Default::default()).await.unwrap();
        tailnet.post_telemetry(Default::default()).await.unwrap();
        let err = client.connect_rpc213().await.unwrap_err();
        assert_eq!(
            err.api().unwrap().validation("version").unwrap().detail,
            "server is at version 2.12, behind requested minor version 2.13"
        );
        // And a 2.11 coderd.
        server.set_max_version(ApiVersion::new(2, 11));
        let n = client.connect_rpc_negotiated().await.unwrap();
        assert_eq!(n.version(), ApiVersion::new(2, 11));
        assert!(client.connect_rpc212().await.is_err());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn v213_connection_report_carries_app_name_to_the_server() {
    tokio::time::timeout(GUARD, async {
        let kit = coder_agentsdk::testkit::FakeCoderd::builder().start().await;
        let (agent, _tailnet) = kit.client().connect_rpc213().await.unwrap();
        let connection = coder_agentsdk::proto::agent::Connection {
            id: uuid::Uuid::new_v4().as_bytes().to_vec(),
            action: coder_agentsdk::proto::agent::connection::Action::Connect as i32,
            app_name: "cursor".to_owned(),
            ip: "10.0.0.7".to_owned(),
            ..Default::default()
        };
        agent
            .report_connection(coder_agentsdk::proto::agent::ReportConnectionRequest {
                connection: Some(connection.clone()),
            })
            .await
            .unwrap();
        assert_eq!(kit.connections(), vec![connection]);
    })
    .await
    .unwrap();
}
