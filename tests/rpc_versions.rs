//! The generated versioned clients: each RPC sits on the trait of the version
//! that introduced it (spec/versions.toml), and calls reach the transport
//! with the right wire path.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use coder_agentsdk::drpc::client::{RawStream, Transport};
use coder_agentsdk::drpc::{ApiVersion, MethodDesc, MethodKind, RpcError, SharedTransport};
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::{agent, tailnet, CURRENT_VERSION, VERSIONS};
use futures::future::BoxFuture;

/// Records the path of every call and answers with an empty message.
#[derive(Default)]
struct Recorder(Mutex<Vec<&'static str>>);

impl Transport for Recorder {
    fn unary(&self, method: &'static MethodDesc, _request: Bytes) -> BoxFuture<'static, Result<Bytes, RpcError>> {
        self.0.lock().unwrap().push(method.path);
        Box::pin(async { Ok(Bytes::new()) })
    }
    fn open_stream(&self, method: &'static MethodDesc) -> BoxFuture<'static, Result<RawStream, RpcError>> {
        self.0.lock().unwrap().push(method.path);
        Box::pin(async { Err(RpcError::ConnectionClosed) })
    }
}

fn recorder() -> (Arc<Recorder>, SharedTransport) {
    let r = Arc::new(Recorder::default());
    (r.clone(), r)
}

#[test]
fn version_table_matches_the_issue_and_upstream() {
    let names = |v: &str| -> Vec<&str> {
        let v: ApiVersion = v.parse().unwrap();
        VERSIONS
            .iter()
            .find(|i| i.version == v)
            .unwrap()
            .adds
            .iter()
            .map(|m| m.name)
            .collect()
    };
    assert_eq!(
        names("2.0"),
        [
            "GetManifest",
            "GetServiceBanner",
            "UpdateStats",
            "UpdateLifecycle",
            "BatchUpdateAppHealths",
            "UpdateStartup",
            "BatchUpdateMetadata",
            "BatchCreateLogs",
            "StreamDERPMaps",
            "Coordinate"
        ]
    );
    assert_eq!(names("2.1"), ["GetAnnouncementBanners"]);
    assert_eq!(names("2.2"), ["PostTelemetry"]);
    assert_eq!(
        names("2.3"),
        ["ScriptCompleted", "RefreshResumeToken", "WorkspaceUpdates"]
    );
    assert_eq!(
        names("2.4"),
        [
            "GetResourcesMonitoringConfiguration",
            "PushResourcesMonitoringUsage",
            "ReportConnection"
        ]
    );
    assert!(names("2.5").is_empty());
    assert_eq!(names("2.6"), ["CreateSubAgent", "DeleteSubAgent", "ListSubAgents"]);
    assert_eq!(names("2.7"), ["ReportBoundaryLogs"]);
    assert_eq!(names("2.8"), ["UpdateAppStatus"]);
    assert!(names("2.9").is_empty());
    assert_eq!(names("2.10"), ["PushContextState"]);
    assert!(names("2.11").is_empty());
    assert!(names("2.12").is_empty());
    assert!(names("2.13").is_empty());
    assert_eq!(CURRENT_VERSION, ApiVersion::new(2, 13));
}

/// The first Coder tag whose tailnet/proto/version.go has CurrentMinor at
/// least the version's minor, checked tag by tag (v2.31.0 still has 7).
#[test]
fn release_table_names_the_first_tag_that_accepts_each_version() {
    let release = |v: &str| {
        let v: ApiVersion = v.parse().unwrap();
        VERSIONS.iter().find(|i| i.version == v).unwrap().release
    };
    let expected = [
        ("2.0", Some("v2.8.0")),
        ("2.1", Some("v2.12.0")),
        ("2.2", Some("v2.13.0")),
        ("2.3", Some("v2.18.0")),
        ("2.4", Some("v2.20.0")),
        ("2.5", Some("v2.23.0")),
        ("2.6", Some("v2.24.0")),
        ("2.7", Some("v2.30.0")),
        ("2.8", Some("v2.31.1")),
        ("2.9", Some("v2.34.0")),
        ("2.10", Some("v2.35.0")),
        ("2.11", None),
        ("2.12", None),
        ("2.13", None),
    ];
    assert_eq!(VERSIONS.len(), expected.len());
    for (v, r) in expected {
        assert_eq!(release(v), r, "release of {v}");
    }
}

#[test]
fn every_descriptor_has_its_wire_path_and_first_version() {
    let all: Vec<_> = coder_agentsdk::rpc::all_methods().collect();
    assert_eq!(all.len(), agent::methods::ALL.len() + tailnet::methods::ALL.len());
    for m in &all {
        assert_eq!(m.path, format!("/{}/{}", m.service, m.name));
        let introduced = VERSIONS
            .iter()
            .find(|v| v.adds.iter().any(|a| a.path == m.path))
            .unwrap();
        assert_eq!(introduced.version, m.since, "{}", m.path);
    }
    assert_eq!(agent::methods::GET_MANIFEST.path, "/coder.agent.v2.Agent/GetManifest");
    assert_eq!(tailnet::methods::STREAM_DERP_MAPS.kind, MethodKind::ServerStreaming);
    assert_eq!(tailnet::methods::WORKSPACE_UPDATES.kind, MethodKind::ServerStreaming);
    assert_eq!(tailnet::methods::COORDINATE.kind, MethodKind::Bidi);
    assert_eq!(agent::methods::REPORT_CONNECTION.output, "google.protobuf.Empty");
}

#[tokio::test]
async fn v20_client_calls_reach_the_v20_paths() {
    let (rec, t) = recorder();
    let c = agent::Agent20::new(t);
    c.get_manifest(Default::default()).await.unwrap();
    c.get_service_banner(Default::default()).await.unwrap();
    c.update_stats(Default::default()).await.unwrap();
    c.update_lifecycle(Default::default()).await.unwrap();
    c.batch_update_app_healths(Default::default()).await.unwrap();
    c.update_startup(Default::default()).await.unwrap();
    c.batch_update_metadata(Default::default()).await.unwrap();
    c.batch_create_logs(Default::default()).await.unwrap();
    let paths = rec.0.lock().unwrap().clone();
    assert_eq!(paths.len(), 8);
    for p in paths {
        assert_eq!(
            coder_agentsdk::rpc::method_by_path(p).unwrap().since,
            ApiVersion::new(2, 0),
            "{p}"
        );
    }
}

#[tokio::test]
async fn v28_client_has_every_agent_rpc_up_to_v28() {
    let (rec, t) = recorder();
    let c = agent::Agent28::new(t);
    c.get_manifest(Default::default()).await.unwrap();
    c.get_announcement_banners(Default::default()).await.unwrap();
    c.script_completed(Default::default()).await.unwrap();
    c.get_resources_monitoring_configuration(Default::default())
        .await
        .unwrap();
    c.push_resources_monitoring_usage(Default::default()).await.unwrap();
    let () = c.report_connection(Default::default()).await.unwrap();
    c.create_sub_agent(Default::default()).await.unwrap();
    c.delete_sub_agent(Default::default()).await.unwrap();
    c.list_sub_agents(Default::default()).await.unwrap();
    c.report_boundary_logs(Default::default()).await.unwrap();
    c.update_app_status(Default::default()).await.unwrap();
    let paths = rec.0.lock().unwrap().clone();
    assert_eq!(paths.last(), Some(&"/coder.agent.v2.Agent/UpdateAppStatus"));
    assert!(paths
        .iter()
        .all(|p| coder_agentsdk::rpc::method_by_path(p).unwrap().since <= ApiVersion::new(2, 8)));
}

#[tokio::test]
async fn tailnet_streaming_calls_go_through_open_stream() {
    let (rec, t) = recorder();
    let c = tailnet::Tailnet23::new(t);
    assert!(c.stream_derp_maps(Default::default()).await.is_err());
    assert!(c.coordinate().await.is_err());
    assert!(c.workspace_updates(Default::default()).await.is_err());
    c.post_telemetry(Default::default()).await.unwrap();
    c.refresh_resume_token(Default::default()).await.unwrap();
    assert_eq!(
        *rec.0.lock().unwrap(),
        [
            "/coder.tailnet.v2.Tailnet/StreamDERPMaps",
            "/coder.tailnet.v2.Tailnet/Coordinate",
            "/coder.tailnet.v2.Tailnet/WorkspaceUpdates",
            "/coder.tailnet.v2.Tailnet/PostTelemetry",
            "/coder.tailnet.v2.Tailnet/RefreshResumeToken",
        ]
    );
}

/// Generic code over a version trait accepts every newer client.
fn takes_v21<C: AgentClient21>(_: &C) {}

#[test]
fn newer_clients_satisfy_older_version_traits() {
    let (_, t) = recorder();
    takes_v21(&agent::Agent21::new(t.clone()));
    takes_v21(&agent::Agent28::new(t.clone()));
    takes_v21(&agent::AgentLatest::new(t));
}
