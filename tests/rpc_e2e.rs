//! Every RPC of the agent and tailnet APIs, end to end over a loopback
//! websocket to the embedded server: websocket → yamux → DRPC.

use std::time::Duration;

use coder_agentsdk::proto::{agent, tailnet};
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::{EmbeddedServer, Recorded};
use coder_agentsdk::Client;
use futures::StreamExt;

/// Guards against hangs; a test that needs this long has failed anyway.
const GUARD: Duration = Duration::from_secs(20);

async fn setup() -> (EmbeddedServer, Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = EmbeddedServer::start().await.unwrap();
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .build()
        .unwrap();
    (server, client)
}

fn uuid() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

#[tokio::test]
async fn every_agent_rpc_at_v28_round_trips() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let (agent, _tailnet) = client.connect_rpc28().await.unwrap();
        let manifest = agent.get_manifest(agent::GetManifestRequest {}).await.unwrap();
        assert_eq!(manifest, server.api().manifest());
        agent.get_service_banner(Default::default()).await.unwrap();
        let stats = agent
            .update_stats(agent::UpdateStatsRequest {
                stats: Some(agent::Stats {
                    connection_count: 3,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        assert_eq!(stats.report_interval.unwrap().seconds, 30);
        let lifecycle = agent::Lifecycle {
            state: agent::lifecycle::State::Ready as i32,
            changed_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
        };
        let echoed = agent
            .update_lifecycle(agent::UpdateLifecycleRequest {
                lifecycle: Some(lifecycle),
            })
            .await
            .unwrap();
        assert_eq!(echoed, lifecycle);
        agent
            .batch_update_app_healths(agent::BatchUpdateAppHealthRequest {
                updates: vec![agent::batch_update_app_health_request::HealthUpdate {
                    id: uuid(),
                    health: agent::AppHealth::Healthy as i32,
                }],
            })
            .await
            .unwrap();
        agent.update_startup(Default::default()).await.unwrap();
        agent.batch_update_metadata(Default::default()).await.unwrap();
        let logs = agent
            .batch_create_logs(agent::BatchCreateLogsRequest {
                log_source_id: uuid(),
                logs: vec![agent::Log {
                    output: "hello".into(),
                    level: agent::log::Level::Info as i32,
                    created_at: None,
                }],
            })
            .await
            .unwrap();
        assert!(!logs.log_limit_exceeded);
        agent.get_announcement_banners(Default::default()).await.unwrap();
        agent
            .script_completed(agent::WorkspaceAgentScriptCompletedRequest {
                timing: Some(agent::Timing {
                    script_id: uuid(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        agent
            .get_resources_monitoring_configuration(Default::default())
            .await
            .unwrap();
        agent.push_resources_monitoring_usage(Default::default()).await.unwrap();
        agent
            .report_connection(agent::ReportConnectionRequest {
                connection: Some(agent::Connection {
                    id: uuid(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let sub = agent
            .create_sub_agent(agent::CreateSubAgentRequest {
                name: "sub".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let listed = agent.list_sub_agents(Default::default()).await.unwrap();
        assert_eq!(listed.agents.len(), 1);
        agent
            .delete_sub_agent(agent::DeleteSubAgentRequest {
                id: sub.agent.unwrap().id,
            })
            .await
            .unwrap();
        agent.report_boundary_logs(Default::default()).await.unwrap();
        agent
            .update_app_status(agent::UpdateAppStatusRequest {
                slug: "code".into(),
                ..Default::default()
            })
            .await
            .unwrap();

        let recorded = server.api().recorded();
        assert!(recorded.contains(&Recorded::Lifecycle(lifecycle)));
        assert!(recorded
            .iter()
            .any(|r| matches!(r, Recorded::Logs { logs, .. } if logs[0].output == "hello")));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unimplemented_and_remote_errors_carry_code_and_text() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let conn = client.connect_rpc().await.unwrap();
        let agent = coder_agentsdk::rpc::agent::AgentLatest::new(conn.transport());
        let err = agent.push_context_state(Default::default()).await.unwrap_err();
        assert_eq!(err.code(), Some(12));
        assert_eq!(err.to_string(), "Unimplemented");
        let err = agent
            .batch_create_logs(agent::BatchCreateLogsRequest {
                log_source_id: vec![1, 2, 3],
                logs: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(0));
        assert!(err.to_string().contains("invalid UUID length: 3"), "{err}");
        drop(server);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tailnet_streams_unary_and_bidi_work() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let (_agent, tailnet) = client.connect_rpc28().await.unwrap();

        let mut maps = tailnet.stream_derp_maps(Default::default()).await.unwrap();
        let first = maps.next().await.unwrap().unwrap();
        assert_eq!(Some(&first), server.api().manifest().derp_map.as_ref());
        let mut second = first.clone();
        second.regions.get_mut(&999).unwrap().region_name = "moved".into();
        server.api().push_derp_map(second.clone());
        assert_eq!(maps.next().await.unwrap().unwrap(), second);
        drop(maps);

        tailnet.post_telemetry(Default::default()).await.unwrap();
        let token = tailnet.refresh_resume_token(Default::default()).await.unwrap();
        assert!(!token.token.is_empty());

        let mut updates = tailnet
            .workspace_updates(tailnet::WorkspaceUpdatesRequest {
                workspace_owner_id: uuid(),
            })
            .await
            .unwrap();
        let update = updates.next().await.unwrap().unwrap();
        assert_eq!(update.upserted_agents[0].name, "main");
        drop(updates);

        let mut coord = tailnet.coordinate().await.unwrap();
        for id in 1..=2 {
            coord
                .send(&tailnet::CoordinateRequest {
                    update_self: Some(tailnet::coordinate_request::UpdateSelf {
                        node: Some(tailnet::Node {
                            id,
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                })
                .await
                .unwrap();
            let reply = coord.next().await.unwrap().unwrap();
            assert_eq!(reply.peer_updates[0].node.as_ref().unwrap().id, id);
        }
        coord.close_send().await.unwrap();
        assert!(
            coord.next().await.is_none(),
            "server ends the stream after our CloseSend"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn each_pinned_version_connects() {
    tokio::time::timeout(GUARD, async {
        let (_server, client) = setup().await;
        client
            .connect_rpc20()
            .await
            .unwrap()
            .0
            .get_manifest(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc21()
            .await
            .unwrap()
            .0
            .get_announcement_banners(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc22()
            .await
            .unwrap()
            .1
            .post_telemetry(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc23()
            .await
            .unwrap()
            .1
            .refresh_resume_token(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc24()
            .await
            .unwrap()
            .0
            .get_resources_monitoring_configuration(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc25()
            .await
            .unwrap()
            .0
            .get_manifest(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc26()
            .await
            .unwrap()
            .0
            .list_sub_agents(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc27()
            .await
            .unwrap()
            .0
            .report_boundary_logs(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc28()
            .await
            .unwrap()
            .0
            .update_app_status(Default::default())
            .await
            .unwrap();
        client
            .connect_rpc28_with_role("agent")
            .await
            .unwrap()
            .0
            .get_manifest(Default::default())
            .await
            .unwrap();
    })
    .await
    .unwrap();
}
