//! Conversions between the SDK's Rust types and the protobuf messages (Go's
//! convert.go rules), their JSON forms, the DERP rewrite, stats and the
//! app-health poster.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coder_agentsdk::agent::*;
use coder_agentsdk::proto::{agent, tailnet};
use proptest::prelude::*;
use prost::Message;
use uuid::Uuid;

// ---- strategies ----

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<[u8; 16]>().prop_map(Uuid::from_bytes)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

/// Floats that survive JSON exactly.
fn float() -> impl Strategy<Value = f64> {
    (-1_000_000i32..1_000_000).prop_map(|n| f64::from(n) / 8.0)
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).expect("in range"))
}

fn std_duration() -> impl Strategy<Value = Duration> {
    (0u64..9_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n))
}

fn app() -> impl Strategy<Value = WorkspaceApp> {
    (
        (uuid(), text(), any::<bool>(), text(), text(), text(), text()),
        (
            any::<bool>(),
            text(),
            prop::sample::select(SharingLevel::ALL),
            (text(), any::<i32>(), any::<i32>()),
            prop::sample::select(AppHealth::ALL),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (id, url, external, slug, display_name, command, icon),
                (subdomain, subdomain_name, sharing_level, (hc_url, interval, threshold), health, hidden),
            )| WorkspaceApp {
                id,
                url,
                external,
                slug,
                display_name,
                command,
                icon,
                subdomain,
                subdomain_name,
                sharing_level,
                healthcheck: Healthcheck {
                    url: hc_url,
                    interval,
                    threshold,
                },
                health,
                hidden,
            },
        )
}

fn script() -> impl Strategy<Value = Script> {
    (
        (uuid(), uuid(), text(), text(), text()),
        (any::<bool>(), any::<bool>(), any::<bool>(), std_duration(), text()),
    )
        .prop_map(
            |(
                (id, log_source_id, log_path, script, cron),
                (run_on_start, run_on_stop, start_blocks_login, timeout, display_name),
            )| {
                Script {
                    id,
                    log_source_id,
                    log_path,
                    script,
                    cron,
                    run_on_start,
                    run_on_stop,
                    start_blocks_login,
                    timeout,
                    display_name,
                }
            },
        )
}

fn metadata_description() -> impl Strategy<Value = MetadataDescription> {
    (text(), text(), text(), any::<i64>(), any::<i64>()).prop_map(|(display_name, key, script, interval, timeout)| {
        MetadataDescription {
            display_name,
            key,
            script,
            interval,
            timeout,
        }
    })
}

fn devcontainer() -> impl Strategy<Value = Devcontainer> {
    (uuid(), text(), text(), text(), proptest::option::of(uuid())).prop_map(
        |(id, name, workspace_folder, config_path, subagent_id)| Devcontainer {
            id,
            name,
            workspace_folder,
            config_path,
            subagent_id,
        },
    )
}

fn derp_node() -> impl Strategy<Value = DerpNode> {
    (
        (text(), any::<i64>(), text(), text(), text(), text(), any::<i32>()),
        (
            any::<bool>(),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            text(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (name, region_id, host_name, cert_name, ipv4, ipv6, stun_port),
                (stun_only, derp_port, insecure_for_tests, force_http, stun_test_ip, can_port_80),
            )| DerpNode {
                name,
                region_id,
                host_name,
                cert_name,
                ipv4,
                ipv6,
                stun_port,
                stun_only,
                derp_port,
                insecure_for_tests,
                force_http,
                stun_test_ip,
                can_port_80,
            },
        )
}

fn derp_map() -> impl Strategy<Value = DerpMap> {
    let region = (
        any::<bool>(),
        any::<i64>(),
        text(),
        text(),
        any::<bool>(),
        prop::collection::vec(derp_node(), 0..3),
    )
        .prop_map(
            |(embedded_relay, region_id, region_code, region_name, avoid, nodes)| DerpRegion {
                embedded_relay,
                region_id,
                region_code,
                region_name,
                avoid,
                nodes,
            },
        );
    (
        prop::collection::btree_map(any::<i64>(), float(), 0..3),
        prop::collection::btree_map(any::<i64>(), region, 0..3),
    )
        .prop_map(|(region_score, regions)| DerpMap {
            home_params: DerpHomeParams { region_score },
            regions,
        })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        (
            proptest::option::of(uuid().prop_filter("nil means none", |u| !u.is_nil())),
            uuid(),
            text(),
            text(),
            uuid(),
            text(),
            any::<u32>(),
            text(),
        ),
        (
            prop::collection::vec(app(), 0..3),
            proptest::option::of(derp_map()),
            any::<bool>(),
            prop::collection::btree_map(text(), text(), 0..3),
            text(),
            text(),
            any::<bool>(),
        ),
        (
            prop::collection::vec(metadata_description(), 0..3),
            prop::collection::vec(script(), 0..3),
            prop::collection::vec(devcontainer(), 0..3),
        ),
    )
        .prop_map(
            |(
                (parent_id, agent_id, agent_name, owner_name, workspace_id, workspace_name, git_auth_configs, vscode),
                (apps, derpmap, derp_force_websockets, environment_variables, directory, motd_file, disable_direct),
                (metadata, scripts, devcontainers),
            )| Manifest {
                parent_id,
                agent_id,
                agent_name,
                owner_name,
                workspace_id,
                workspace_name,
                git_auth_configs,
                vscode_port_proxy_uri: vscode,
                apps,
                derpmap,
                derp_force_websockets,
                environment_variables,
                directory,
                motd_file,
                disable_direct_connections: disable_direct,
                metadata,
                scripts,
                devcontainers,
            },
        )
}

fn metric() -> impl Strategy<Value = AgentMetric> {
    (
        text(),
        prop_oneof![Just(AgentMetricType::Counter), Just(AgentMetricType::Gauge)],
        float(),
        prop::collection::vec((text(), text()), 0..3),
    )
        .prop_map(|(name, metric_type, value, labels)| AgentMetric {
            name,
            metric_type,
            value,
            labels: labels
                .into_iter()
                .map(|(name, value)| AgentMetricLabel { name, value })
                .collect(),
        })
}

fn stats() -> impl Strategy<Value = Stats> {
    (
        (
            prop::collection::btree_map(text(), any::<i64>(), 0..3),
            any::<i64>(),
            float(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        ),
        (
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            prop::collection::vec(metric(), 0..3),
        ),
    )
        .prop_map(
            |((by_proto, count, latency, rxp, rxb, txp, txb), (vscode, jetbrains, pty, ssh, metrics))| Stats {
                connections_by_proto: by_proto,
                connection_count: count,
                connection_median_latency_ms: latency,
                rx_packets: rxp,
                rx_bytes: rxb,
                tx_packets: txp,
                tx_bytes: txb,
                session_count_vscode: vscode,
                session_count_jetbrains: jetbrains,
                session_count_reconnecting_pty: pty,
                session_count_ssh: ssh,
                metrics,
            },
        )
}

fn log_level() -> impl Strategy<Value = LogLevel> {
    prop::sample::select(LogLevel::KNOWN.to_vec())
}

/// JSON round trip helper.
fn json_round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

// ---- round trips: domain → proto → domain is the identity ----

proptest! {
    #[test]
    fn manifest_round_trips(m in manifest()) {
        let p = agent::Manifest::try_from(m.clone()).unwrap();
        // Through the wire bytes too.
        let p = agent::Manifest::decode(p.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(Manifest::try_from(p).unwrap(), m.clone());
        prop_assert_eq!(json_round_trip(&m), m);
    }

    #[test]
    fn app_round_trips(a in app()) {
        prop_assert_eq!(WorkspaceApp::try_from(agent::WorkspaceApp::from(a.clone())).unwrap(), a.clone());
        prop_assert_eq!(json_round_trip(&a), a);
    }

    #[test]
    fn script_round_trips(s in script()) {
        prop_assert_eq!(Script::try_from(agent::WorkspaceAgentScript::try_from(s.clone()).unwrap()).unwrap(), s.clone());
        prop_assert_eq!(json_round_trip(&s), s);
    }

    #[test]
    fn metadata_description_round_trips(m in metadata_description()) {
        let p = agent::workspace_agent_metadata::Description::from(m.clone());
        prop_assert_eq!(MetadataDescription::try_from(p).unwrap(), m.clone());
        prop_assert_eq!(json_round_trip(&m), m);
    }

    #[test]
    fn devcontainer_round_trips(d in devcontainer()) {
        prop_assert_eq!(Devcontainer::try_from(agent::WorkspaceAgentDevcontainer::from(d.clone())).unwrap(), d.clone());
        prop_assert_eq!(json_round_trip(&d), d);
    }

    #[test]
    fn derp_map_round_trips(m in derp_map()) {
        let p = tailnet::DerpMap::from(m.clone());
        let p = tailnet::DerpMap::decode(p.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(DerpMap::from(p), m.clone());
        prop_assert_eq!(json_round_trip(&m), m);
    }

    #[test]
    fn banner_round_trips(enabled in any::<bool>(), message in text(), background_color in text()) {
        let b = ServiceBanner { enabled, message, background_color };
        prop_assert_eq!(ServiceBanner::from(agent::ServiceBanner::from(b.clone())), b.clone());
        prop_assert_eq!(ServiceBanner::from(agent::BannerConfig::from(b.clone())), b.clone());
        prop_assert_eq!(json_round_trip(&b), b);
    }

    #[test]
    fn lifecycle_round_trips(state in prop::sample::select(LifecycleState::ALL), changed_at in time()) {
        let l = Lifecycle { state, changed_at };
        prop_assert_eq!(Lifecycle::try_from(agent::Lifecycle::from(l)).unwrap(), l);
        prop_assert_eq!(LifecycleState::try_from(agent::lifecycle::State::from(state)).unwrap(), state);
        prop_assert_eq!(json_round_trip(&l), l);
    }

    #[test]
    fn startup_round_trips_keeping_subsystem_order(
        version in text(),
        expanded_directory in text(),
        subsystems in prop::collection::vec(prop::sample::select(Subsystem::ALL), 0..5),
    ) {
        let s = Startup { version, expanded_directory, subsystems };
        prop_assert_eq!(Startup::try_from(agent::Startup::from(s.clone())).unwrap(), s.clone());
        prop_assert_eq!(json_round_trip(&s), s);
    }

    #[test]
    fn app_status_round_trips(app_slug in text(), state in prop::sample::select(AppStatusState::ALL), message in text(), uri in text()) {
        let s = AppStatus { app_slug, state, message, uri };
        prop_assert_eq!(AppStatus::try_from(agent::UpdateAppStatusRequest::from(s.clone())).unwrap(), s.clone());
        prop_assert_eq!(json_round_trip(&s), s);
    }

    #[test]
    fn app_healths_round_trip(healths in prop::collection::hash_map(uuid(), prop::sample::select(AppHealth::ALL), 0..5)) {
        let p = proto_from_app_healths(&healths);
        prop_assert_eq!(p.updates.len(), healths.len());
        prop_assert_eq!(app_healths_from_proto(&p).unwrap(), healths);
        for h in AppHealth::ALL {
            prop_assert_eq!(AppHealth::try_from(agent::AppHealth::from(*h)).unwrap(), *h);
            prop_assert_eq!(AppHealth::try_from(agent::workspace_app::Health::from(*h)).unwrap(), *h);
        }
    }

    #[test]
    fn stats_round_trip(s in stats()) {
        prop_assert_eq!(Stats::try_from(agent::Stats::from(s.clone())).unwrap(), s.clone());
        prop_assert_eq!(json_round_trip(&s), s);
    }

    #[test]
    fn metric_round_trips(m in metric()) {
        prop_assert_eq!(AgentMetric::try_from(agent::stats::Metric::from(m.clone())).unwrap(), m.clone());
        prop_assert_eq!(json_round_trip(&m), m);
    }

    #[test]
    fn log_round_trips(created_at in time(), output in "[^\u{0}]{0,20}", level in log_level()) {
        let l = Log { created_at, output, level };
        prop_assert_eq!(Log::try_from(agent::Log::try_from(l.clone()).unwrap()).unwrap(), l.clone());
        prop_assert_eq!(json_round_trip(&l), l);
    }

    #[test]
    fn metadata_round_trips(key in text(), collected_at in time(), age in any::<i64>(), value in text(), error in text()) {
        let m = Metadata { key, result: MetadataResult { collected_at, age, value, error } };
        prop_assert_eq!(Metadata::try_from(agent::Metadata::from(m.clone())).unwrap(), m.clone());
        prop_assert_eq!(json_round_trip(&m), m);
    }

    /// Bad input is an error, never a panic.
    #[test]
    fn arbitrary_protobuf_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = agent::Manifest::decode(bytes.as_slice()) {
            let _ = Manifest::try_from(p);
        }
        if let Ok(p) = agent::Stats::decode(bytes.as_slice()) {
            let _ = Stats::try_from(p);
        }
        if let Ok(p) = agent::Log::decode(bytes.as_slice()) {
            let _ = Log::try_from(p);
        }
    }

    #[test]
    fn odd_app_fields_never_panic(
        id_len in 0usize..40,
        sharing in any::<i32>(),
        health in any::<i32>(),
        seconds in any::<i64>(),
        nanos in any::<i32>(),
    ) {
        let p = agent::WorkspaceApp {
            id: vec![7; id_len],
            sharing_level: sharing,
            health,
            healthcheck: Some(agent::workspace_app::Healthcheck {
                interval: Some(prost_types::Duration { seconds, nanos }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = WorkspaceApp::try_from(p);
        let d = agent::workspace_agent_metadata::Description {
            interval: Some(prost_types::Duration { seconds, nanos }),
            ..Default::default()
        };
        let _ = MetadataDescription::try_from(d);
        let l = agent::Lifecycle { state: sharing, changed_at: Some(prost_types::Timestamp { seconds, nanos }) };
        let _ = Lifecycle::try_from(l);
    }
}

// ---- Go's rules ----

fn proto_manifest() -> agent::Manifest {
    agent::Manifest {
        agent_id: Uuid::new_v4().as_bytes().to_vec(),
        workspace_id: Uuid::new_v4().as_bytes().to_vec(),
        ..Default::default()
    }
}

#[test]
fn ids_must_be_exactly_16_bytes() {
    let mut p = proto_manifest();
    p.agent_id = vec![1; 15];
    assert_eq!(
        Manifest::try_from(p).unwrap_err(),
        ConvertError::InvalidUuid {
            field: "agent_id".into(),
            len: 15
        }
    );
    let mut p = proto_manifest();
    p.workspace_id.clear();
    assert!(matches!(
        Manifest::try_from(p),
        Err(ConvertError::InvalidUuid { len: 0, .. })
    ));
    let mut p = proto_manifest();
    p.apps.push(agent::WorkspaceApp {
        id: vec![1; 17],
        sharing_level: 1,
        health: 1,
        ..Default::default()
    });
    let err = Manifest::try_from(p).unwrap_err();
    assert_eq!(err.to_string(), "apps[0].id: invalid UUID length 17, want 16 bytes");
    let mut p = proto_manifest();
    p.scripts.push(agent::WorkspaceAgentScript {
        id: Uuid::new_v4().as_bytes().to_vec(),
        log_source_id: vec![],
        ..Default::default()
    });
    assert!(Manifest::try_from(p)
        .unwrap_err()
        .to_string()
        .starts_with("scripts[0].log_source_id"));
}

#[test]
fn parent_id_absent_is_none() {
    let p = proto_manifest();
    assert_eq!(Manifest::try_from(p.clone()).unwrap().parent_id, None);
    let parent = Uuid::new_v4();
    let mut with = p.clone();
    with.parent_id = Some(parent.as_bytes().to_vec());
    assert_eq!(Manifest::try_from(with).unwrap().parent_id, Some(parent));
    // Go's ProtoFromManifest sends 16 zero bytes for "no parent".
    let mut zeros = p.clone();
    zeros.parent_id = Some(vec![0; 16]);
    assert_eq!(Manifest::try_from(zeros).unwrap().parent_id, None);
    let mut short = p;
    short.parent_id = Some(vec![1, 2, 3]);
    assert!(Manifest::try_from(short).is_err());
    // And None goes out as absent.
    let m = Manifest::try_from(proto_manifest()).unwrap();
    assert_eq!(agent::Manifest::try_from(m).unwrap().parent_id, None);
}

#[test]
fn unknown_and_unspecified_enums_are_refused_by_name() {
    let app = |sharing_level, health| agent::WorkspaceApp {
        id: Uuid::new_v4().as_bytes().to_vec(),
        sharing_level,
        health,
        ..Default::default()
    };
    let err = |r: Result<WorkspaceApp, ConvertError>| r.unwrap_err().to_string();
    assert_eq!(
        err(app(0, 1).try_into()),
        "unknown app sharing level: SHARING_LEVEL_UNSPECIFIED"
    );
    assert_eq!(err(app(42, 1).try_into()), "unknown app sharing level: 42");
    assert_eq!(err(app(1, 0).try_into()), "unknown app health: HEALTH_UNSPECIFIED");
    assert_eq!(err(app(1, -3).try_into()), "unknown app health: -3");
    assert_eq!(
        Lifecycle::try_from(agent::Lifecycle::default())
            .unwrap_err()
            .to_string(),
        "unknown lifecycle state: STATE_UNSPECIFIED"
    );
    let startup = agent::Startup {
        subsystems: vec![1, 0],
        ..Default::default()
    };
    assert_eq!(
        Startup::try_from(startup).unwrap_err().to_string(),
        "unknown subsystem: SUBSYSTEM_UNSPECIFIED"
    );
    let status = agent::UpdateAppStatusRequest {
        state: 9,
        ..Default::default()
    };
    assert_eq!(
        AppStatus::try_from(status).unwrap_err().to_string(),
        "unknown app status state: 9"
    );
    let metric = agent::stats::Metric::default();
    assert_eq!(
        AgentMetric::try_from(metric).unwrap_err().to_string(),
        "unknown metric type: TYPE_UNSPECIFIED"
    );
    assert_eq!(
        Log::try_from(agent::Log::default()).unwrap_err().to_string(),
        "unknown log level: LEVEL_UNSPECIFIED"
    );
    let healths = agent::BatchUpdateAppHealthRequest {
        updates: vec![agent::batch_update_app_health_request::HealthUpdate {
            id: Uuid::new_v4().as_bytes().to_vec(),
            health: 0,
        }],
    };
    assert_eq!(
        app_healths_from_proto(&healths).unwrap_err().to_string(),
        "unknown app health: APP_HEALTH_UNSPECIFIED"
    );
    assert!(agent::log::Level::try_from(LogLevel::Other("fatal".into())).is_err());
    assert!("bogus".parse::<LifecycleState>().is_err());
}

#[test]
fn enums_map_by_protobuf_name() {
    for s in LifecycleState::ALL {
        assert_eq!(
            agent::lifecycle::State::from(*s).as_str_name().to_lowercase(),
            s.as_str()
        );
        assert_eq!(s.as_str().parse::<LifecycleState>().unwrap(), *s);
        assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
    }
    for s in Subsystem::ALL {
        assert_eq!(
            agent::startup::Subsystem::from(*s).as_str_name().to_lowercase(),
            s.as_str()
        );
    }
    for h in AppHealth::ALL {
        assert_eq!(agent::AppHealth::from(*h).as_str_name().to_lowercase(), h.as_str());
        assert_eq!(
            agent::workspace_app::Health::from(*h).as_str_name().to_lowercase(),
            h.as_str()
        );
    }
    for l in SharingLevel::ALL {
        assert_eq!(
            agent::workspace_app::SharingLevel::from(*l)
                .as_str_name()
                .to_lowercase(),
            l.as_str()
        );
    }
    for s in AppStatusState::ALL {
        let p = agent::update_app_status_request::AppStatusState::from(*s);
        assert_eq!(p.as_str_name().to_lowercase(), s.as_str());
    }
    for l in LogLevel::KNOWN {
        assert_eq!(
            agent::log::Level::try_from(&l).unwrap().as_str_name().to_lowercase(),
            l.as_str()
        );
    }
    let levels: Vec<i32> = LogLevel::KNOWN
        .iter()
        .map(|l| agent::log::Level::try_from(l).unwrap() as i32)
        .collect();
    assert_eq!(levels, [1, 2, 3, 4, 5]);
    let json: Vec<_> = LifecycleState::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        json,
        [
            "created",
            "starting",
            "start_timeout",
            "start_error",
            "ready",
            "shutting_down",
            "shutdown_timeout",
            "shutdown_error",
            "off"
        ]
    );
}

#[test]
fn health_check_interval_is_whole_seconds() {
    let p = agent::WorkspaceApp {
        id: Uuid::new_v4().as_bytes().to_vec(),
        sharing_level: 1,
        health: 3,
        healthcheck: Some(agent::workspace_app::Healthcheck {
            url: "http://localhost:8080/healthz".into(),
            interval: Some(prost_types::Duration {
                seconds: 55_555_666,
                nanos: 999_999_999,
            }),
            threshold: 3,
        }),
        ..Default::default()
    };
    let app = WorkspaceApp::try_from(p.clone()).unwrap();
    assert_eq!(app.healthcheck.interval, 55_555_666);
    let back = agent::WorkspaceApp::from(app);
    assert_eq!(
        back.healthcheck.unwrap().interval,
        Some(prost_types::Duration {
            seconds: 55_555_666,
            nanos: 0
        })
    );
    // Absent health check: zeros, no panic (Go dereferences it blindly).
    let mut none = p.clone();
    none.healthcheck = None;
    assert_eq!(
        WorkspaceApp::try_from(none).unwrap().healthcheck,
        Healthcheck::default()
    );
    // Past i32 seconds: an error, not a wrap.
    let mut huge = p;
    huge.healthcheck.as_mut().unwrap().interval = Some(prost_types::Duration {
        seconds: i64::from(i32::MAX) + 1,
        nanos: 0,
    });
    assert!(matches!(
        WorkspaceApp::try_from(huge),
        Err(ConvertError::OutOfRange { .. })
    ));
}

#[test]
fn metadata_interval_and_timeout_are_raw_nanoseconds() {
    // coderd builds durationpb.New(time.Duration(dbInterval)): 10 becomes 10ns.
    let p = agent::workspace_agent_metadata::Description {
        key: "load".into(),
        interval: Some(prost_types::Duration { seconds: 0, nanos: 10 }),
        timeout: Some(prost_types::Duration { seconds: 2, nanos: 5 }),
        ..Default::default()
    };
    let m = MetadataDescription::try_from(p.clone()).unwrap();
    assert_eq!((m.interval, m.timeout), (10, 2_000_000_005));
    assert_eq!(agent::workspace_agent_metadata::Description::from(m), p);
    let past_i64 = agent::workspace_agent_metadata::Description {
        interval: Some(prost_types::Duration {
            seconds: i64::MAX,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert!(MetadataDescription::try_from(past_i64).is_err());
}

#[test]
fn script_timeout_is_a_duration_and_negative_is_refused() {
    let mut p = agent::WorkspaceAgentScript {
        id: Uuid::new_v4().as_bytes().to_vec(),
        log_source_id: Uuid::new_v4().as_bytes().to_vec(),
        timeout: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
        ..Default::default()
    };
    let s = Script::try_from(p.clone()).unwrap();
    assert_eq!(s.timeout, Duration::from_secs(300));
    assert_eq!(serde_json::to_value(&s).unwrap()["timeout"], 300_000_000_000i64);
    p.timeout = Some(prost_types::Duration { seconds: -1, nanos: 0 });
    assert!(Script::try_from(p).is_err());
}

// ---- JSON forms ----

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut k: Vec<_> = list.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

#[test]
fn manifest_json_has_go_keys() {
    let m = Manifest::try_from(proto_manifest()).unwrap();
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(
        keys(&v),
        sorted(&[
            "parent_id",
            "agent_id",
            "agent_name",
            "owner_name",
            "workspace_id",
            "workspace_name",
            "git_auth_configs",
            "vscode_port_proxy_uri",
            "apps",
            "derpmap",
            "derp_force_websockets",
            "environment_variables",
            "directory",
            "motd_file",
            "disable_direct_connections",
            "metadata",
            "scripts",
            "devcontainers",
        ])
    );
    assert_eq!(v["parent_id"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(v["derpmap"], serde_json::Value::Null);
}

#[test]
fn go_shaped_manifest_json_decodes() {
    let json = r#"{
        "parent_id": "00000000-0000-0000-0000-000000000000",
        "agent_id": "6f2ad4c4-7b0c-4fd2-9f35-1c1a3a5b4c10",
        "agent_name": "main",
        "owner_name": "alice",
        "workspace_id": "0d9e4c6e-9b1a-4c7e-8f2d-2a1b3c4d5e6f",
        "workspace_name": "dev",
        "git_auth_configs": 2,
        "vscode_port_proxy_uri": "https://{{port}}--proxy.example.com",
        "apps": [{
            "id": "1e1e1e1e-1e1e-4e1e-8e1e-1e1e1e1e1e1e",
            "external": false,
            "slug": "code",
            "subdomain": false,
            "sharing_level": "owner",
            "healthcheck": {"url": "http://localhost:13337/healthz", "interval": 5, "threshold": 6},
            "health": "initializing",
            "hidden": false,
            "open_in": "slim-window",
            "statuses": null
        }],
        "derpmap": {
            "HomeParams": {},
            "Regions": {"999": {"EmbeddedRelay": true, "RegionID": 999, "RegionCode": "coder",
                "RegionName": "Coder", "Nodes": [{"Name": "999a", "RegionID": 999, "HostName": "localhost",
                "DERPPort": 3000, "ForceHTTP": true}]}, "2": null}
        },
        "derp_force_websockets": false,
        "environment_variables": null,
        "directory": "/home/coder",
        "motd_file": "/etc/motd",
        "disable_direct_connections": false,
        "metadata": [{"display_name": "Load", "key": "load", "script": "uptime", "interval": 10, "timeout": 3}],
        "scripts": null,
        "devcontainers": null
    }"#;
    let m: Manifest = serde_json::from_str(json).unwrap();
    assert_eq!(m.parent_id, None);
    assert_eq!(m.apps[0].health, AppHealth::Initializing);
    assert_eq!(m.apps[0].healthcheck.interval, 5);
    assert!(m.environment_variables.is_empty() && m.scripts.is_empty());
    let derp = m.derpmap.as_ref().unwrap();
    assert_eq!(derp.regions.len(), 1, "null regions are dropped");
    assert_eq!(derp.regions[&999].nodes[0].derp_port, 3000);
    assert_eq!(m.metadata[0].interval, 10);
    // And it survives the protobuf.
    let back = Manifest::try_from(agent::Manifest::try_from(m.clone()).unwrap()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn derp_json_uses_tailcfg_names_and_omits_empty() {
    let mut map = DerpMap::default();
    map.home_params.region_score.insert(1, 0.5);
    map.regions.insert(
        1,
        DerpRegion {
            region_id: 1,
            nodes: vec![DerpNode {
                name: "1a".into(),
                region_id: 1,
                host_name: "relay.example.com".into(),
                stun_port: -1,
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let v = serde_json::to_value(&map).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "HomeParams": {"RegionScore": {"1": 0.5}},
            "Regions": {"1": {"EmbeddedRelay": false, "RegionID": 1, "RegionCode": "", "RegionName": "",
                "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "relay.example.com", "STUNPort": -1}]}}
        })
    );
}

#[test]
fn stats_and_metric_json_have_go_keys() {
    let s = Stats {
        metrics: vec![
            AgentMetric {
                name: "cpu".into(),
                metric_type: AgentMetricType::Gauge,
                value: 0.25,
                labels: vec![],
            },
            AgentMetric {
                name: "reqs".into(),
                metric_type: AgentMetricType::Counter,
                value: 3.0,
                labels: vec![AgentMetricLabel {
                    name: "path".into(),
                    value: "/".into(),
                }],
            },
        ],
        ..Default::default()
    };
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        keys(&v),
        sorted(&[
            "connections_by_proto",
            "connection_count",
            "connection_median_latency_ms",
            "rx_packets",
            "rx_bytes",
            "tx_packets",
            "tx_bytes",
            "session_count_vscode",
            "session_count_jetbrains",
            "session_count_reconnecting_pty",
            "session_count_ssh",
            "metrics",
        ])
    );
    assert_eq!(
        v["metrics"][0],
        serde_json::json!({"name": "cpu", "type": "gauge", "value": 0.25})
    );
    assert_eq!(
        v["metrics"][1],
        serde_json::json!({"name": "reqs", "type": "counter", "value": 3.0, "labels": [{"name": "path", "value": "/"}]})
    );
    let go: Stats = serde_json::from_str(r#"{"connections_by_proto": null, "metrics": null, "rx_bytes": 7}"#).unwrap();
    assert_eq!(go.rx_bytes, 7);
}

#[test]
fn other_json_forms() {
    let l = Lifecycle {
        state: LifecycleState::ShuttingDown,
        changed_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    };
    assert_eq!(
        serde_json::to_value(l).unwrap(),
        serde_json::json!({"state": "shutting_down", "changed_at": "2023-11-14T22:13:20Z"})
    );
    let log: Log =
        serde_json::from_str(r#"{"created_at":"2024-01-01T00:00:00Z","output":"x","level":"fatal"}"#).unwrap();
    assert_eq!(log.level, LogLevel::Other("fatal".into()));
    let m: Metadata = serde_json::from_str(
        r#"{"key":"load","collected_at":"2024-01-01T00:00:00Z","age":3,"value":"0.5","error":""}"#,
    )
    .unwrap();
    assert_eq!((m.key.as_str(), m.result.age), ("load", 3));
    let status = AppStatus {
        app_slug: "code".into(),
        state: AppStatusState::Working,
        message: "busy".into(),
        uri: String::new(),
    };
    assert_eq!(
        serde_json::to_value(status).unwrap(),
        serde_json::json!({"app_slug": "code", "state": "working", "message": "busy", "uri": ""})
    );
}

// ---- helpers ----

#[test]
fn session_count_sums_the_four_counters() {
    let s = Stats {
        session_count_vscode: 1,
        session_count_jetbrains: 2,
        session_count_reconnecting_pty: 3,
        session_count_ssh: 4,
        connection_count: 100,
        ..Default::default()
    };
    assert_eq!(s.session_count(), 10);
    let huge = Stats {
        session_count_vscode: i64::MAX,
        session_count_ssh: 1,
        ..Default::default()
    };
    assert_eq!(huge.session_count(), i64::MAX);
}

fn relay_map() -> DerpMap {
    let node = |name: &str, stun_only: bool| DerpNode {
        name: name.into(),
        region_id: 999,
        host_name: "localhost".into(),
        derp_port: 3000,
        stun_only,
        stun_port: if stun_only { 3478 } else { -1 },
        ..Default::default()
    };
    let mut map = DerpMap::default();
    map.regions.insert(
        999,
        DerpRegion {
            embedded_relay: true,
            region_id: 999,
            nodes: vec![node("999a", false), node("999stun", true)],
            ..Default::default()
        },
    );
    map.regions.insert(
        1,
        DerpRegion {
            embedded_relay: false,
            region_id: 1,
            nodes: vec![node("1a", false)],
            ..Default::default()
        },
    );
    map
}

#[test]
fn rewrite_derp_map_points_the_embedded_relay_at_the_access_url() {
    let mut map = relay_map();
    rewrite_derp_map(&mut map, &"https://coconuts.org:44558".parse().unwrap());
    let relay = &map.regions[&999].nodes[0];
    assert_eq!(relay.host_name, "coconuts.org");
    assert_eq!(relay.derp_port, 44558);
    assert!(!relay.force_http);
    // STUN-only nodes and other regions are left alone.
    assert_eq!(map.regions[&999].nodes[1], relay_map().regions[&999].nodes[1]);
    assert_eq!(map.regions[&1], relay_map().regions[&1]);

    let mut map = relay_map();
    rewrite_derp_map(&mut map, &"http://coder.internal".parse().unwrap());
    let relay = &map.regions[&999].nodes[0];
    assert_eq!(
        (relay.host_name.as_str(), relay.derp_port, relay.force_http),
        ("coder.internal", 80, true)
    );

    let mut map = relay_map();
    rewrite_derp_map(&mut map, &"https://coder.example.com/".parse().unwrap());
    let relay = &map.regions[&999].nodes[0];
    assert_eq!(
        (relay.host_name.as_str(), relay.derp_port, relay.force_http),
        ("coder.example.com", 443, false)
    );

    let mut map = relay_map();
    rewrite_derp_map(&mut map, &"http://[::1]:8080".parse().unwrap());
    assert_eq!(map.regions[&999].nodes[0].host_name, "::1");
}

#[test]
fn rewrite_proto_derp_map_does_the_same_on_the_protobuf() {
    let mut p = tailnet::DerpMap::from(relay_map());
    rewrite_proto_derp_map(&mut p, &"https://coconuts.org:44558".parse().unwrap());
    let mut expect = relay_map();
    rewrite_derp_map(&mut expect, &"https://coconuts.org:44558".parse().unwrap());
    assert_eq!(DerpMap::from(p), expect);
}

#[tokio::test]
async fn app_health_poster_makes_one_call_to_the_embedded_server() {
    use coder_agentsdk::server::{EmbeddedServer, Recorded};
    tokio::time::timeout(Duration::from_secs(20), async {
        let server = EmbeddedServer::start().await.unwrap();
        let client = coder_agentsdk::Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let (agent, _tailnet) = client.connect_rpc28().await.unwrap();
        let post = app_health_poster(agent);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let healths = HashMap::from([(a, AppHealth::Healthy), (b, AppHealth::Unhealthy)]);
        post(healths.clone()).await.unwrap();
        let calls: Vec<_> = server
            .api()
            .recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::AppHealth(updates) => Some(updates),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 1);
        let got = app_healths_from_proto(&agent::BatchUpdateAppHealthRequest {
            updates: calls[0].clone(),
        })
        .unwrap();
        assert_eq!(got, healths);
    })
    .await
    .unwrap();
}
