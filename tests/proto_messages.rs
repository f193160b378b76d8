//! Our generated messages against Go's deterministic protobuf encodings
//! (`tests/vectors/drpc/protobuf_messages.json`) and against themselves.

use coder_agentsdk::proto::{agent, tailnet};
use prost::Message;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/drpc/protobuf_messages.json");

/// Decodes `hex` as the named type and re-encodes it.
fn reencode(proto_type: &str, bytes: &[u8]) -> Vec<u8> {
    macro_rules! via {
        ($($name:literal => $ty:ty),* $(,)?) => {
            match proto_type {
                $($name => <$ty>::decode(bytes).unwrap_or_else(|e| panic!("{proto_type}: {e}")).encode_to_vec(),)*
                other => panic!("no Rust type registered for {other}"),
            }
        };
    }
    via! {
        "coder.agent.v2.BatchCreateLogsRequest" => agent::BatchCreateLogsRequest,
        "coder.agent.v2.BatchCreateLogsResponse" => agent::BatchCreateLogsResponse,
        "coder.agent.v2.BatchUpdateMetadataRequest" => agent::BatchUpdateMetadataRequest,
        "coder.agent.v2.GetAnnouncementBannersResponse" => agent::GetAnnouncementBannersResponse,
        "coder.agent.v2.GetManifestRequest" => agent::GetManifestRequest,
        "coder.agent.v2.Lifecycle" => agent::Lifecycle,
        "coder.agent.v2.Manifest" => agent::Manifest,
        "coder.agent.v2.UpdateLifecycleRequest" => agent::UpdateLifecycleRequest,
        "coder.agent.v2.UpdateStatsRequest" => agent::UpdateStatsRequest,
        "coder.agent.v2.UpdateStatsResponse" => agent::UpdateStatsResponse,
        "coder.tailnet.v2.CoordinateRequest" => tailnet::CoordinateRequest,
        "coder.tailnet.v2.CoordinateResponse" => tailnet::CoordinateResponse,
        "coder.tailnet.v2.DERPMap" => tailnet::DerpMap,
        "coder.tailnet.v2.RefreshResumeTokenResponse" => tailnet::RefreshResumeTokenResponse,
        "coder.tailnet.v2.StreamDERPMapsRequest" => tailnet::StreamDerpMapsRequest,
    }
}

#[test]
fn every_go_canonical_encoding_decodes_and_reencodes_byte_for_byte() {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let messages = doc["messages"].as_array().unwrap();
    assert!(messages.len() >= 20, "vector file lists {} messages", messages.len());
    for m in messages {
        let proto_type = m["proto_type"].as_str().unwrap();
        let want = hex::decode(m["canonical_hex"].as_str().unwrap()).unwrap();
        let got = reencode(proto_type, &want);
        assert_eq!(hex::encode(&got), hex::encode(&want), "{} ({proto_type})", m["name"]);
    }
}

#[test]
fn go_manifest_decodes_into_the_expected_fields() {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let m = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["proto_type"] == "coder.agent.v2.Manifest")
        .unwrap();
    let manifest =
        agent::Manifest::decode(hex::decode(m["canonical_hex"].as_str().unwrap()).unwrap().as_slice()).unwrap();
    assert_eq!(manifest.agent_name, "main");
    assert_eq!(manifest.owner_username, "alice");
    assert_eq!(manifest.workspace_name, "dev-box");
    assert_eq!(manifest.agent_id.len(), 16);
    assert_eq!(
        manifest.environment_variables.get("EDITOR").map(String::as_str),
        Some("vim")
    );
    assert_eq!(manifest.apps.len(), 2);
    assert_eq!(
        manifest.apps[0].healthcheck.as_ref().unwrap().interval.unwrap().seconds,
        5
    );
    assert_eq!(manifest.scripts[0].timeout.unwrap().seconds, 300);
    let derp = manifest.derp_map.as_ref().unwrap();
    assert!(derp.regions[&999].embedded_relay);
    assert_eq!(derp.regions[&999].nodes[0].stun_port, -1);
    assert_eq!(manifest.parent_id, None, "absent optional parent_id");
}

#[test]
fn populated_manifest_round_trips() {
    let manifest = agent::Manifest {
        agent_id: vec![1; 16],
        agent_name: "main".into(),
        owner_username: "alice".into(),
        workspace_id: vec![2; 16],
        workspace_name: "ws".into(),
        git_auth_configs: 3,
        environment_variables: [("A".to_owned(), "1".to_owned()), ("B".to_owned(), "2".to_owned())].into(),
        directory: "/home/coder".into(),
        vs_code_port_proxy_uri: "https://{{port}}.example".into(),
        motd_path: "/etc/motd".into(),
        disable_direct_connections: true,
        derp_force_websockets: true,
        parent_id: Some(vec![3; 16]),
        derp_map: Some(tailnet::DerpMap {
            home_params: Some(tailnet::derp_map::HomeParams {
                region_score: [(1, 0.5)].into(),
            }),
            regions: [(
                1,
                tailnet::derp_map::Region {
                    region_id: 1,
                    embedded_relay: true,
                    region_code: "coder".into(),
                    nodes: vec![tailnet::derp_map::region::Node {
                        name: "1a".into(),
                        derp_port: 443,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )]
            .into(),
        }),
        scripts: vec![agent::WorkspaceAgentScript {
            log_source_id: vec![4; 16],
            script: "echo hi".into(),
            run_on_start: true,
            timeout: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
            id: vec![5; 16],
            ..Default::default()
        }],
        apps: vec![agent::WorkspaceApp {
            id: vec![6; 16],
            slug: "code".into(),
            sharing_level: agent::workspace_app::SharingLevel::Organization as i32,
            health: agent::workspace_app::Health::Healthy as i32,
            healthcheck: Some(agent::workspace_app::Healthcheck {
                url: "http://localhost".into(),
                interval: Some(prost_types::Duration {
                    seconds: 55555666,
                    nanos: 0,
                }),
                threshold: 3,
            }),
            ..Default::default()
        }],
        metadata: vec![agent::workspace_agent_metadata::Description {
            key: "cpu".into(),
            interval: Some(prost_types::Duration { seconds: 0, nanos: 10 }),
            ..Default::default()
        }],
        devcontainers: vec![agent::WorkspaceAgentDevcontainer {
            id: vec![7; 16],
            subagent_id: Some(vec![8; 16]),
            ..Default::default()
        }],
        secrets: vec![agent::WorkspaceSecret {
            env_name: "TOKEN".into(),
            value: b"s3cret".to_vec(),
            ..Default::default()
        }],
    };
    let bytes = manifest.encode_to_vec();
    let back = agent::Manifest::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, manifest);
    assert_eq!(back.encode_to_vec(), bytes, "encoding is deterministic");
}

#[test]
fn messages_know_their_protobuf_names() {
    use prost::Name;
    assert_eq!(agent::Manifest::full_name(), "coder.agent.v2.Manifest");
    assert_eq!(tailnet::DerpMap::full_name(), "coder.tailnet.v2.DERPMap");
}
