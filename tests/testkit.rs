//! The public test kit: recording, faults and coderd's checks, as a user sees them.

use std::time::Duration;

use coder_agentsdk::drpc::ApiVersion;
use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::testkit::FakeCoderd;

const GUARD: Duration = Duration::from_secs(20);

fn lifecycle(state: agent::lifecycle::State) -> agent::UpdateLifecycleRequest {
    agent::UpdateLifecycleRequest {
        lifecycle: Some(agent::Lifecycle {
            state: state as i32,
            changed_at: None,
        }),
    }
}

#[tokio::test]
async fn records_reports_in_order_and_by_kind() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::builder()
            .agent_name("dev")
            .report_interval(Duration::from_secs(7))
            .start()
            .await;
        let (agent, _) = coderd.client().connect_rpc28().await.unwrap();
        assert_eq!(agent.get_manifest(Default::default()).await.unwrap().agent_name, "dev");
        for s in [
            agent::lifecycle::State::Created,
            agent::lifecycle::State::Starting,
            agent::lifecycle::State::Ready,
        ] {
            agent.update_lifecycle(lifecycle(s)).await.unwrap();
        }
        let r = agent
            .update_stats(agent::UpdateStatsRequest {
                stats: Some(Default::default()),
            })
            .await
            .unwrap();
        assert_eq!(r.report_interval.unwrap().seconds, 7);
        let source = uuid::Uuid::new_v4();
        agent
            .batch_create_logs(agent::BatchCreateLogsRequest {
                log_source_id: source.as_bytes().to_vec(),
                logs: vec![
                    agent::Log {
                        output: "one".into(),
                        ..Default::default()
                    },
                    agent::Log {
                        output: "two".into(),
                        ..Default::default()
                    },
                ],
            })
            .await
            .unwrap();
        assert_eq!(
            coderd.lifecycle_states(),
            [
                agent::lifecycle::State::Created,
                agent::lifecycle::State::Starting,
                agent::lifecycle::State::Ready
            ]
        );
        assert_eq!(coderd.stats().len(), 1);
        assert_eq!(coderd.log_output(source), ["one", "two"]);
        assert_eq!(coderd.log_batches(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn injected_rpc_error_reaches_the_caller_with_code_and_text() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::start().await;
        coderd.fail_rpc("UpdateStats", 7, "stats are off today");
        let (agent, _) = coderd.client().connect_rpc28().await.unwrap();
        let err = agent.update_stats(Default::default()).await.unwrap_err();
        assert_eq!((err.code(), err.to_string().as_str()), (Some(7), "stats are off today"));
        coderd.clear_fault("UpdateStats");
        agent.update_stats(Default::default()).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn hung_rpc_is_ended_by_the_callers_timeout_and_connection_survives() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::start().await;
        coderd.hang_rpc("GetManifest");
        let (agent, _) = coderd.client().connect_rpc28().await.unwrap();
        let hung = tokio::time::timeout(Duration::from_millis(200), agent.get_manifest(Default::default())).await;
        assert!(hung.is_err(), "the call must still be pending when the caller gives up");
        agent.get_service_banner(Default::default()).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dropped_connection_fails_calls_and_a_new_dial_works() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::start().await;
        let client = coderd.client();
        let conn = client.connect_rpc().await.unwrap();
        coderd.drop_connections();
        let _ = conn.closed().await;
        let agent = coder_agentsdk::rpc::agent::Agent28::new(conn.transport());
        assert!(agent.get_manifest(Default::default()).await.is_err());
        let (agent, _) = client.connect_rpc28().await.unwrap();
        agent.get_manifest(Default::default()).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refused_upgrade_and_wrong_token_and_version_get_coderds_errors() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::builder().max_version(ApiVersion::new(2, 5)).start().await;
        let err = coderd.client().connect_rpc26().await.unwrap_err();
        assert_eq!(err.status(), Some(400));
        let wrong = coder_agentsdk::Client::builder(coderd.url().as_str())
            .token("not-the-token")
            .build()
            .unwrap();
        let err = wrong.connect_rpc20().await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert_eq!(err.api().unwrap().response.message, "Workspace agent not authorized.");
        coderd.refuse_upgrades(503, "maintenance");
        let err = coderd.client().connect_rpc20().await.unwrap_err();
        assert_eq!(
            (err.status(), err.api().unwrap().response.message.as_str()),
            (Some(503), "maintenance")
        );
        coderd.accept_upgrades();
        coderd.client().connect_rpc20().await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn wait_until_sees_reports_pushed_later() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::start().await;
        let (agent, _) = coderd.client().connect_rpc28().await.unwrap();
        let reporter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            agent
                .update_lifecycle(lifecycle(agent::lifecycle::State::Ready))
                .await
                .unwrap();
        });
        assert!(coderd.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await);
        reporter.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drop_connection_fault_ends_the_session_of_that_call() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::start().await;
        coderd.drop_connection_on("UpdateStats");
        let conn = coderd.client().connect_rpc().await.unwrap();
        let agent = coder_agentsdk::rpc::agent::Agent28::new(conn.transport());
        agent.get_manifest(Default::default()).await.unwrap();
        assert!(agent.update_stats(Default::default()).await.is_err());
        let _ = conn.closed().await;
        coderd.clear_fault("UpdateStats");
        let (agent, _) = coderd.client().connect_rpc28().await.unwrap();
        agent.update_stats(Default::default()).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reinit_event_reaches_a_waiting_agent_and_rest_reports_are_recorded() {
    tokio::time::timeout(GUARD, async {
        let coderd = FakeCoderd::start().await;
        let client = coderd.client();
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_reinit().await }
        });
        coderd.wait_for_reinit_listeners(1).await;
        let workspace = uuid::Uuid::new_v4();
        assert_eq!(
            coderd.send_reinit(coder_agentsdk::sse::ReinitializationEvent::prebuild_claimed(workspace)),
            1
        );
        assert_eq!(waiting.await.unwrap().unwrap().workspace_id, workspace);

        let source = client
            .post_log_source(&coder_agentsdk::types::PostLogSourceRequest {
                id: uuid::Uuid::new_v4(),
                display_name: "tool".into(),
                icon: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            coderd.log_sources().iter().map(|s| s.id).collect::<Vec<_>>(),
            [source.id]
        );
    })
    .await
    .unwrap();
}
