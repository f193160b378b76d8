//! The manifest and what it carries: apps, scripts, metadata descriptions
//! and dev containers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    duration_from_nanos, duration_total_nanos, go_duration, nanos_from_duration, nil_uuid_as_none, null_as_default,
    proto_from_std_duration, std_duration_from_proto, uuid_bytes, uuid_from_bytes, AppHealth, ConvertError,
    SharingLevel,
};
use crate::agent::derp::DerpMap;
use crate::proto::agent;

/// Everything the agent needs to know at start-up (Go's `agentsdk.Manifest`).
///
/// The JSON form uses Go's keys. The protobuf form's `secrets` are
/// deliberately not carried here (Go keeps them off the SDK manifest too).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The parent agent of a sub-agent (API v2.5); `None` for a top-level
    /// agent. In JSON, `None` is the nil UUID, as Go writes it.
    #[serde(with = "nil_uuid_as_none", default)]
    pub parent_id: Option<Uuid>,
    /// The agent's id.
    pub agent_id: Uuid,
    /// The agent's name.
    #[serde(default)]
    pub agent_name: String,
    /// The workspace owner's user name (`owner_username` in protobuf).
    #[serde(default)]
    pub owner_name: String,
    /// The workspace id.
    pub workspace_id: Uuid,
    /// The workspace name.
    #[serde(default)]
    pub workspace_name: String,
    /// How many external-auth (Git) configurations the deployment has.
    #[serde(default)]
    pub git_auth_configs: u32,
    /// The VS Code port-proxy URI (`vs_code_port_proxy_uri` in protobuf).
    #[serde(default)]
    pub vscode_port_proxy_uri: String,
    /// The workspace apps.
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: Vec<WorkspaceApp>,
    /// The DERP map, if any.
    #[serde(default)]
    pub derpmap: Option<DerpMap>,
    /// Whether DERP connections must use websockets.
    #[serde(default)]
    pub derp_force_websockets: bool,
    /// Environment variables to set for sessions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub environment_variables: BTreeMap<String, String>,
    /// The working directory.
    #[serde(default)]
    pub directory: String,
    /// The message-of-the-day file (`motd_path` in protobuf).
    #[serde(default)]
    pub motd_file: String,
    /// Whether direct (peer-to-peer) connections are disabled.
    #[serde(default)]
    pub disable_direct_connections: bool,
    /// The metadata items to collect.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Vec<MetadataDescription>,
    /// The scripts to run.
    #[serde(default, deserialize_with = "null_as_default")]
    pub scripts: Vec<Script>,
    /// The dev containers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub devcontainers: Vec<Devcontainer>,
}

impl TryFrom<agent::Manifest> for Manifest {
    type Error = ConvertError;
    fn try_from(p: agent::Manifest) -> Result<Self, ConvertError> {
        let parent_id = match p.parent_id.as_deref() {
            None => None,
            Some(bytes) => Some(uuid_from_bytes("parent_id", bytes)?).filter(|id| !id.is_nil()),
        };
        Ok(Manifest {
            parent_id,
            agent_id: uuid_from_bytes("agent_id", &p.agent_id)?,
            agent_name: p.agent_name,
            owner_name: p.owner_username,
            workspace_id: uuid_from_bytes("workspace_id", &p.workspace_id)?,
            workspace_name: p.workspace_name,
            git_auth_configs: p.git_auth_configs,
            vscode_port_proxy_uri: p.vs_code_port_proxy_uri,
            apps: p
                .apps
                .into_iter()
                .enumerate()
                .map(|(i, a)| WorkspaceApp::from_proto(a, &format!("apps[{i}]")))
                .collect::<Result<_, _>>()?,
            derpmap: p.derp_map.map(DerpMap::from),
            derp_force_websockets: p.derp_force_websockets,
            environment_variables: p.environment_variables,
            directory: p.directory,
            motd_file: p.motd_path,
            disable_direct_connections: p.disable_direct_connections,
            metadata: p
                .metadata
                .into_iter()
                .enumerate()
                .map(|(i, m)| MetadataDescription::from_proto(m, &format!("metadata[{i}]")))
                .collect::<Result<_, _>>()?,
            scripts: p
                .scripts
                .into_iter()
                .enumerate()
                .map(|(i, s)| Script::from_proto(s, &format!("scripts[{i}]")))
                .collect::<Result<_, _>>()?,
            devcontainers: p
                .devcontainers
                .into_iter()
                .enumerate()
                .map(|(i, d)| Devcontainer::from_proto(d, &format!("devcontainers[{i}]")))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TryFrom<Manifest> for agent::Manifest {
    type Error = ConvertError;
    fn try_from(m: Manifest) -> Result<Self, ConvertError> {
        Ok(agent::Manifest {
            agent_id: uuid_bytes(&m.agent_id),
            agent_name: m.agent_name,
            owner_username: m.owner_name,
            workspace_id: uuid_bytes(&m.workspace_id),
            workspace_name: m.workspace_name,
            git_auth_configs: m.git_auth_configs,
            environment_variables: m.environment_variables,
            directory: m.directory,
            vs_code_port_proxy_uri: m.vscode_port_proxy_uri,
            motd_path: m.motd_file,
            disable_direct_connections: m.disable_direct_connections,
            derp_force_websockets: m.derp_force_websockets,
            parent_id: m.parent_id.filter(|id| !id.is_nil()).map(|id| uuid_bytes(&id)),
            derp_map: m.derpmap.map(Into::into),
            scripts: m
                .scripts
                .into_iter()
                .enumerate()
                .map(|(i, s)| s.into_proto(&format!("scripts[{i}]")))
                .collect::<Result<_, _>>()?,
            apps: m.apps.into_iter().map(Into::into).collect(),
            metadata: m.metadata.into_iter().map(Into::into).collect(),
            devcontainers: m.devcontainers.into_iter().map(Into::into).collect(),
            secrets: Vec::new(),
        })
    }
}

/// How the agent probes an app (codersdk `Healthcheck`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// The URL to probe.
    #[serde(default)]
    pub url: String,
    /// Seconds between probes (whole seconds; the protobuf `Duration` is
    /// truncated to seconds on the way in).
    #[serde(default)]
    pub interval: i32,
    /// Consecutive failures before the app is unhealthy.
    #[serde(default)]
    pub threshold: i32,
}

/// A workspace app (the fields of codersdk `WorkspaceApp` that the agent API carries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceApp {
    /// The app id.
    pub id: Uuid,
    /// The address proxied to inside the workspace (or opened on the client when external).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Whether the URL is opened on the client.
    #[serde(default)]
    pub external: bool,
    /// Unique within the agent.
    #[serde(default)]
    pub slug: String,
    /// A friendly name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The command to run, for terminal apps.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// An icon path or URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub icon: String,
    /// Whether the app is served on its own subdomain.
    #[serde(default)]
    pub subdomain: bool,
    /// The subdomain name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subdomain_name: String,
    /// Who may open the app.
    pub sharing_level: SharingLevel,
    /// How the app's health is probed.
    #[serde(default)]
    pub healthcheck: Healthcheck,
    /// The app's current health.
    pub health: AppHealth,
    /// Whether the app is hidden from the dashboard.
    #[serde(default)]
    pub hidden: bool,
}

impl WorkspaceApp {
    fn from_proto(p: agent::WorkspaceApp, at: &str) -> Result<Self, ConvertError> {
        let healthcheck = match p.healthcheck {
            None => Healthcheck::default(),
            Some(h) => {
                let secs = duration_total_nanos(h.interval.as_ref()) / 1_000_000_000;
                Healthcheck {
                    url: h.url,
                    interval: i32::try_from(secs)
                        .map_err(|_| ConvertError::out_of_range(format!("{at}.healthcheck.interval"), secs))?,
                    threshold: h.threshold,
                }
            }
        };
        Ok(WorkspaceApp {
            id: uuid_from_bytes(format!("{at}.id"), &p.id)?,
            url: p.url,
            external: p.external,
            slug: p.slug,
            display_name: p.display_name,
            command: p.command,
            icon: p.icon,
            subdomain: p.subdomain,
            subdomain_name: p.subdomain_name,
            sharing_level: SharingLevel::from_proto_i32(p.sharing_level)?,
            healthcheck,
            health: AppHealth::from_app_proto_i32(p.health)?,
            hidden: p.hidden,
        })
    }
}

impl TryFrom<agent::WorkspaceApp> for WorkspaceApp {
    type Error = ConvertError;
    fn try_from(p: agent::WorkspaceApp) -> Result<Self, ConvertError> {
        WorkspaceApp::from_proto(p, "app")
    }
}

impl From<WorkspaceApp> for agent::WorkspaceApp {
    fn from(a: WorkspaceApp) -> Self {
        agent::WorkspaceApp {
            id: uuid_bytes(&a.id),
            url: a.url,
            external: a.external,
            slug: a.slug,
            display_name: a.display_name,
            command: a.command,
            icon: a.icon,
            subdomain: a.subdomain,
            subdomain_name: a.subdomain_name,
            sharing_level: a.sharing_level.to_proto_i32(),
            healthcheck: Some(agent::workspace_app::Healthcheck {
                url: a.healthcheck.url,
                interval: Some(prost_types::Duration {
                    seconds: i64::from(a.healthcheck.interval),
                    nanos: 0,
                }),
                threshold: a.healthcheck.threshold,
            }),
            health: agent::workspace_app::Health::from(a.health) as i32,
            hidden: a.hidden,
        }
    }
}

/// A script the agent runs (codersdk `WorkspaceAgentScript`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// The script id.
    pub id: Uuid,
    /// The log source its output goes to.
    pub log_source_id: Uuid,
    /// Where its output is also written on disk.
    #[serde(default)]
    pub log_path: String,
    /// The script text.
    #[serde(default)]
    pub script: String,
    /// A cron schedule, if it runs periodically.
    #[serde(default)]
    pub cron: String,
    /// Whether it runs when the agent starts.
    #[serde(default)]
    pub run_on_start: bool,
    /// Whether it runs when the agent stops.
    #[serde(default)]
    pub run_on_stop: bool,
    /// Whether logins wait for it.
    #[serde(default)]
    pub start_blocks_login: bool,
    /// How long it may run; zero means no limit. JSON: Go `time.Duration` nanoseconds.
    #[serde(default, with = "go_duration")]
    pub timeout: Duration,
    /// A friendly name.
    #[serde(default)]
    pub display_name: String,
}

impl Script {
    fn from_proto(p: agent::WorkspaceAgentScript, at: &str) -> Result<Self, ConvertError> {
        Ok(Script {
            id: uuid_from_bytes(format!("{at}.id"), &p.id)?,
            log_source_id: uuid_from_bytes(format!("{at}.log_source_id"), &p.log_source_id)?,
            log_path: p.log_path,
            script: p.script,
            cron: p.cron,
            run_on_start: p.run_on_start,
            run_on_stop: p.run_on_stop,
            start_blocks_login: p.start_blocks_login,
            timeout: std_duration_from_proto(&format!("{at}.timeout"), p.timeout.as_ref())?,
            display_name: p.display_name,
        })
    }

    fn into_proto(self, at: &str) -> Result<agent::WorkspaceAgentScript, ConvertError> {
        Ok(agent::WorkspaceAgentScript {
            log_source_id: uuid_bytes(&self.log_source_id),
            log_path: self.log_path,
            script: self.script,
            cron: self.cron,
            run_on_start: self.run_on_start,
            run_on_stop: self.run_on_stop,
            start_blocks_login: self.start_blocks_login,
            timeout: Some(proto_from_std_duration(&format!("{at}.timeout"), self.timeout)?),
            display_name: self.display_name,
            id: uuid_bytes(&self.id),
        })
    }
}

impl TryFrom<agent::WorkspaceAgentScript> for Script {
    type Error = ConvertError;
    fn try_from(p: agent::WorkspaceAgentScript) -> Result<Self, ConvertError> {
        Script::from_proto(p, "script")
    }
}

impl TryFrom<Script> for agent::WorkspaceAgentScript {
    type Error = ConvertError;
    fn try_from(s: Script) -> Result<Self, ConvertError> {
        s.into_proto("script")
    }
}

/// A metadata item the agent collects (codersdk `WorkspaceAgentMetadataDescription`).
///
/// `interval` and `timeout` are the raw nanosecond count of the protobuf
/// `Duration`. coderd fills that `Duration` with the database integer
/// unchanged, so the number here is whatever coderd stored; it is passed
/// through as is and not converted to seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataDescription {
    /// A friendly name.
    #[serde(default)]
    pub display_name: String,
    /// The metadata key.
    #[serde(default)]
    pub key: String,
    /// The script that collects it.
    #[serde(default)]
    pub script: String,
    /// The collection interval: the protobuf duration's total nanoseconds.
    #[serde(default)]
    pub interval: i64,
    /// The collection timeout: the protobuf duration's total nanoseconds.
    #[serde(default)]
    pub timeout: i64,
}

impl MetadataDescription {
    fn from_proto(p: agent::workspace_agent_metadata::Description, at: &str) -> Result<Self, ConvertError> {
        Ok(MetadataDescription {
            display_name: p.display_name,
            key: p.key,
            script: p.script,
            interval: nanos_from_duration(&format!("{at}.interval"), p.interval.as_ref())?,
            timeout: nanos_from_duration(&format!("{at}.timeout"), p.timeout.as_ref())?,
        })
    }
}

impl TryFrom<agent::workspace_agent_metadata::Description> for MetadataDescription {
    type Error = ConvertError;
    fn try_from(p: agent::workspace_agent_metadata::Description) -> Result<Self, ConvertError> {
        MetadataDescription::from_proto(p, "metadata")
    }
}

impl From<MetadataDescription> for agent::workspace_agent_metadata::Description {
    fn from(m: MetadataDescription) -> Self {
        agent::workspace_agent_metadata::Description {
            display_name: m.display_name,
            key: m.key,
            script: m.script,
            interval: Some(duration_from_nanos(m.interval)),
            timeout: Some(duration_from_nanos(m.timeout)),
        }
    }
}

/// A dev container configuration in the workspace (codersdk `WorkspaceAgentDevcontainer`,
/// the fields the manifest carries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devcontainer {
    /// The dev container id.
    pub id: Uuid,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// The folder it is built from.
    #[serde(default)]
    pub workspace_folder: String,
    /// The path of its `devcontainer.json`, if not the default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_path: String,
    /// The sub-agent pre-created for it (API v2.8), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subagent_id: Option<Uuid>,
}

impl Devcontainer {
    fn from_proto(p: agent::WorkspaceAgentDevcontainer, at: &str) -> Result<Self, ConvertError> {
        Ok(Devcontainer {
            id: uuid_from_bytes(format!("{at}.id"), &p.id)?,
            name: p.name,
            workspace_folder: p.workspace_folder,
            config_path: p.config_path,
            subagent_id: p
                .subagent_id
                .as_deref()
                .map(|b| uuid_from_bytes(format!("{at}.subagent_id"), b))
                .transpose()?,
        })
    }
}

impl TryFrom<agent::WorkspaceAgentDevcontainer> for Devcontainer {
    type Error = ConvertError;
    fn try_from(p: agent::WorkspaceAgentDevcontainer) -> Result<Self, ConvertError> {
        Devcontainer::from_proto(p, "devcontainer")
    }
}

impl From<Devcontainer> for agent::WorkspaceAgentDevcontainer {
    fn from(d: Devcontainer) -> Self {
        agent::WorkspaceAgentDevcontainer {
            id: uuid_bytes(&d.id),
            workspace_folder: d.workspace_folder,
            config_path: d.config_path,
            name: d.name,
            subagent_id: d.subagent_id.map(|id| uuid_bytes(&id)),
        }
    }
}
