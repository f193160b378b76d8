//! Banners, lifecycle and startup reports, app health and status, logs and
//! metadata results.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    null_as_default, proto_timestamp, timestamp_from_proto, uuid_bytes, uuid_from_bytes, AppHealth, AppStatusState,
    ConvertError, LifecycleState, LogLevel, Subsystem,
};
use crate::drpc::RpcError;
use crate::proto::agent;
use crate::rpc::agent::AgentClient20;

/// A banner shown to workspace users (codersdk `BannerConfig`); the service
/// banner and the announcement banners share this shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBanner {
    /// Whether the banner is shown.
    #[serde(default)]
    pub enabled: bool,
    /// The message.
    #[serde(default)]
    pub message: String,
    /// A CSS colour.
    #[serde(default)]
    pub background_color: String,
}

impl From<agent::ServiceBanner> for ServiceBanner {
    fn from(p: agent::ServiceBanner) -> Self {
        ServiceBanner {
            enabled: p.enabled,
            message: p.message,
            background_color: p.background_color,
        }
    }
}

impl From<ServiceBanner> for agent::ServiceBanner {
    fn from(b: ServiceBanner) -> Self {
        agent::ServiceBanner {
            enabled: b.enabled,
            message: b.message,
            background_color: b.background_color,
        }
    }
}

impl From<agent::BannerConfig> for ServiceBanner {
    fn from(p: agent::BannerConfig) -> Self {
        ServiceBanner {
            enabled: p.enabled,
            message: p.message,
            background_color: p.background_color,
        }
    }
}

impl From<ServiceBanner> for agent::BannerConfig {
    fn from(b: ServiceBanner) -> Self {
        agent::BannerConfig {
            enabled: b.enabled,
            message: b.message,
            background_color: b.background_color,
        }
    }
}

/// A lifecycle report (Go's `PostLifecycleRequest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// The new state.
    pub state: LifecycleState,
    /// When the agent entered it.
    pub changed_at: DateTime<Utc>,
}

impl TryFrom<agent::Lifecycle> for Lifecycle {
    type Error = ConvertError;
    fn try_from(p: agent::Lifecycle) -> Result<Self, ConvertError> {
        Ok(Lifecycle {
            state: LifecycleState::from_proto_i32(p.state)?,
            changed_at: timestamp_from_proto("changed_at", p.changed_at.as_ref())?,
        })
    }
}

impl From<Lifecycle> for agent::Lifecycle {
    fn from(l: Lifecycle) -> Self {
        agent::Lifecycle {
            state: l.state.to_proto_i32(),
            changed_at: Some(proto_timestamp(&l.changed_at)),
        }
    }
}

/// The start-up report (Go's `PostStartupRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Startup {
    /// The agent's version.
    #[serde(default)]
    pub version: String,
    /// The working directory after expansion.
    #[serde(default)]
    pub expanded_directory: String,
    /// The subsystems, in the order reported.
    #[serde(default, deserialize_with = "null_as_default")]
    pub subsystems: Vec<Subsystem>,
}

impl TryFrom<agent::Startup> for Startup {
    type Error = ConvertError;
    fn try_from(p: agent::Startup) -> Result<Self, ConvertError> {
        Ok(Startup {
            version: p.version,
            expanded_directory: p.expanded_directory,
            subsystems: p
                .subsystems
                .into_iter()
                .map(Subsystem::from_proto_i32)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<Startup> for agent::Startup {
    fn from(s: Startup) -> Self {
        agent::Startup {
            version: s.version,
            expanded_directory: s.expanded_directory,
            subsystems: s.subsystems.into_iter().map(Subsystem::to_proto_i32).collect(),
        }
    }
}

/// An app status report (Go's `PatchAppStatus` without its unused `icon`
/// and `needs_user_attention`; the protobuf form is `UpdateAppStatusRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The app's slug.
    #[serde(default)]
    pub app_slug: String,
    /// The state.
    pub state: AppStatusState,
    /// A message.
    #[serde(default)]
    pub message: String,
    /// The resource the status is about.
    #[serde(default)]
    pub uri: String,
}

impl TryFrom<agent::UpdateAppStatusRequest> for AppStatus {
    type Error = ConvertError;
    fn try_from(p: agent::UpdateAppStatusRequest) -> Result<Self, ConvertError> {
        Ok(AppStatus {
            app_slug: p.slug,
            state: AppStatusState::from_proto_i32(p.state)?,
            message: p.message,
            uri: p.uri,
        })
    }
}

impl From<AppStatus> for agent::UpdateAppStatusRequest {
    fn from(s: AppStatus) -> Self {
        agent::UpdateAppStatusRequest {
            slug: s.app_slug,
            state: s.state.to_proto_i32(),
            message: s.message,
            uri: s.uri,
        }
    }
}

/// The `BatchUpdateAppHealths` request for a map of app id to health, in id order.
pub fn proto_from_app_healths(healths: &HashMap<Uuid, AppHealth>) -> agent::BatchUpdateAppHealthRequest {
    let mut updates: Vec<_> = healths
        .iter()
        .map(|(id, health)| agent::batch_update_app_health_request::HealthUpdate {
            id: uuid_bytes(id),
            health: health.to_proto_i32(),
        })
        .collect();
    updates.sort_by(|a, b| a.id.cmp(&b.id));
    agent::BatchUpdateAppHealthRequest { updates }
}

/// The map of app id to health in a `BatchUpdateAppHealths` request.
pub fn app_healths_from_proto(
    request: &agent::BatchUpdateAppHealthRequest,
) -> Result<HashMap<Uuid, AppHealth>, ConvertError> {
    request
        .updates
        .iter()
        .enumerate()
        .map(|(i, u)| {
            Ok((
                uuid_from_bytes(format!("updates[{i}].id"), &u.id)?,
                AppHealth::from_proto_i32(u.health)?,
            ))
        })
        .collect()
}

/// Returns a function that posts app healths: each call makes one
/// `BatchUpdateAppHealths` call with every entry of the map (Go's
/// `AppHealthPoster`).
///
/// ```no_run
/// # async fn demo(agent: coder_agentsdk::rpc::agent::Agent28) -> Result<(), Box<dyn std::error::Error>> {
/// use std::collections::HashMap;
/// use coder_agentsdk::agent::{app_health_poster, AppHealth};
///
/// let post = app_health_poster(agent);
/// let app_id = uuid::Uuid::new_v4();
/// post(HashMap::from([(app_id, AppHealth::Healthy)])).await?;
/// # Ok(()) }
/// ```
pub fn app_health_poster<C>(
    client: C,
) -> impl Fn(HashMap<Uuid, AppHealth>) -> BoxFuture<'static, Result<(), RpcError>> + Clone + Send + Sync + 'static
where
    C: AgentClient20 + Clone + Send + Sync + 'static,
{
    move |healths: HashMap<Uuid, AppHealth>| {
        let client = client.clone();
        let request = proto_from_app_healths(&healths);
        Box::pin(async move {
            client.batch_update_app_healths(request).await?;
            Ok(())
        })
    }
}

/// One log line (Go's `agentsdk.Log`).
///
/// Converting to protobuf cleans the output as coderd expects (see
/// [`sanitize_log_output`]) and fails for a level the SDK does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// When the line was written.
    pub created_at: DateTime<Utc>,
    /// The text, without a trailing newline.
    #[serde(default)]
    pub output: String,
    /// The level.
    pub level: LogLevel,
}

impl Log {
    /// A log line written now.
    pub fn new(level: LogLevel, output: impl Into<String>) -> Self {
        Log {
            created_at: Utc::now(),
            output: output.into(),
            level,
        }
    }

    /// A log line written now from raw bytes: invalid UTF-8 sequences and NUL
    /// bytes each become "❌".
    pub fn from_bytes(level: LogLevel, output: &[u8]) -> Self {
        Log::new(level, sanitize_log_output_bytes(output))
    }
}

impl TryFrom<&Log> for agent::Log {
    type Error = ConvertError;
    fn try_from(l: &Log) -> Result<Self, ConvertError> {
        Ok(agent::Log {
            created_at: Some(proto_timestamp(&l.created_at)),
            output: sanitize_log_output(&l.output).into_owned(),
            level: agent::log::Level::try_from(&l.level)? as i32,
        })
    }
}

impl TryFrom<Log> for agent::Log {
    type Error = ConvertError;
    fn try_from(l: Log) -> Result<Self, ConvertError> {
        agent::Log::try_from(&l)
    }
}

impl TryFrom<agent::Log> for Log {
    type Error = ConvertError;
    fn try_from(p: agent::Log) -> Result<Self, ConvertError> {
        Ok(Log {
            created_at: timestamp_from_proto("created_at", p.created_at.as_ref())?,
            output: p.output,
            level: LogLevel::from_proto_i32(p.level)?,
        })
    }
}

/// The replacement coderd uses for invalid UTF-8 and NUL bytes in log output.
const REPLACEMENT: &str = "❌";

/// Cleans log output as coderd does: every NUL byte becomes "❌" (a `&str`
/// is already valid UTF-8). Borrows when there is nothing to change.
pub fn sanitize_log_output(output: &str) -> Cow<'_, str> {
    if output.contains('\0') {
        Cow::Owned(output.replace('\0', REPLACEMENT))
    } else {
        Cow::Borrowed(output)
    }
}

/// Cleans raw log output as coderd does: each run of bytes that is not valid
/// UTF-8 becomes one "❌" (Go's `strings.ToValidUTF8`), then every NUL byte
/// becomes "❌".
pub fn sanitize_log_output_bytes(output: &[u8]) -> String {
    let mut out = String::with_capacity(output.len());
    let mut in_invalid_run = false;
    for chunk in output.utf8_chunks() {
        let valid = chunk.valid();
        if !valid.is_empty() {
            out.push_str(valid);
            in_invalid_run = false;
        }
        if !chunk.invalid().is_empty() && !in_invalid_run {
            out.push_str(REPLACEMENT);
            in_invalid_run = true;
        }
    }
    match sanitize_log_output(&out) {
        Cow::Borrowed(_) => out,
        Cow::Owned(cleaned) => cleaned,
    }
}

/// A collected metadata value (codersdk `WorkspaceAgentMetadataResult`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataResult {
    /// When it was collected.
    pub collected_at: DateTime<Utc>,
    /// Seconds since it was collected (guards against clock skew).
    #[serde(default)]
    pub age: i64,
    /// The value.
    #[serde(default)]
    pub value: String,
    /// The collection error, if any.
    #[serde(default)]
    pub error: String,
}

impl TryFrom<agent::workspace_agent_metadata::Result> for MetadataResult {
    type Error = ConvertError;
    fn try_from(p: agent::workspace_agent_metadata::Result) -> Result<Self, ConvertError> {
        Ok(MetadataResult {
            collected_at: timestamp_from_proto("collected_at", p.collected_at.as_ref())?,
            age: p.age,
            value: p.value,
            error: p.error,
        })
    }
}

impl From<MetadataResult> for agent::workspace_agent_metadata::Result {
    fn from(r: MetadataResult) -> Self {
        agent::workspace_agent_metadata::Result {
            collected_at: Some(proto_timestamp(&r.collected_at)),
            age: r.age,
            value: r.value,
            error: r.error,
        }
    }
}

/// A metadata value with its key (Go's `agentsdk.Metadata`; in JSON the
/// result's fields sit beside `key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The metadata key.
    #[serde(default)]
    pub key: String,
    /// The value.
    #[serde(flatten)]
    pub result: MetadataResult,
}

impl TryFrom<agent::Metadata> for Metadata {
    type Error = ConvertError;
    fn try_from(p: agent::Metadata) -> Result<Self, ConvertError> {
        Ok(Metadata {
            key: p.key,
            result: MetadataResult::try_from(p.result.unwrap_or_default())?,
        })
    }
}

impl From<Metadata> for agent::Metadata {
    fn from(m: Metadata) -> Self {
        agent::Metadata {
            key: m.key,
            result: Some(m.result.into()),
        }
    }
}
