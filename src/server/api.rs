//! The embedded server's implementation of the agent and tailnet APIs: an
//! in-memory coderd that answers like the real one and records what agents
//! report, with per-RPC fault injection for tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::recording::Recording;
use crate::drpc::{RequestStream, ResponseSink, RpcError};
use crate::proto::{agent, tailnet};
use crate::rpc::agent::AgentServer;
use crate::rpc::tailnet::TailnetServer;

/// Something an agent reported, in the order it arrived.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Recorded {
    /// `UpdateLifecycle`.
    Lifecycle(agent::Lifecycle),
    /// `UpdateStats`.
    Stats(agent::Stats),
    /// `UpdateStartup`.
    Startup(agent::Startup),
    /// `BatchCreateLogs`: the source id (16 bytes) and the logs.
    Logs {
        /// Log source id.
        source: Vec<u8>,
        /// The logs of the batch.
        logs: Vec<agent::Log>,
    },
    /// `BatchUpdateMetadata`.
    Metadata(Vec<agent::Metadata>),
    /// `BatchUpdateAppHealths`.
    AppHealth(Vec<agent::batch_update_app_health_request::HealthUpdate>),
    /// `UpdateAppStatus`.
    AppStatus(agent::UpdateAppStatusRequest),
    /// `ReportConnection`.
    Connection(agent::Connection),
    /// `ScriptCompleted`.
    ScriptCompleted(agent::Timing),
    /// `PushResourcesMonitoringUsage`.
    ResourcesUsage(agent::PushResourcesMonitoringUsageRequest),
    /// `ReportBoundaryLogs`.
    BoundaryLogs(agent::ReportBoundaryLogsRequest),
    /// `PostTelemetry`.
    Telemetry(tailnet::TelemetryRequest),
    /// A `Coordinate` request.
    Coordinate(tailnet::CoordinateRequest),
}

/// A fault to inject into one RPC.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Fault {
    /// Wait this long before handling the call.
    Delay(Duration),
    /// Fail the call with a DRPC error.
    Error {
        /// DRPC error code.
        code: u64,
        /// Error text.
        message: String,
    },
    /// Never answer (the call hangs until the client gives up).
    Hang,
    /// Drop every agent connection instead of answering.
    DropConnection,
}

/// The state behind the embedded server's RPCs.
#[derive(Debug)]
pub struct FakeApi {
    manifest: Mutex<agent::Manifest>,
    service_banner: Mutex<agent::ServiceBanner>,
    banners: Mutex<Vec<agent::BannerConfig>>,
    report_interval: Mutex<Duration>,
    derp_map: watch::Sender<tailnet::DerpMap>,
    recorded: Mutex<Recording<Recorded>>,
    record_events: broadcast::Sender<Recorded>,
    faults: Mutex<HashMap<String, Fault>>,
    log_limit_exceeded: Mutex<bool>,
    sub_agents: Mutex<Vec<agent::SubAgent>>,
    drop_connections: broadcast::Sender<()>,
    /// Whether [`FakeApi::recorded`] keeps every report (default true).
    keep_history: AtomicBool,
}

impl FakeApi {
    /// A server with the given manifest (its DERP map is what `StreamDERPMaps` sends first).
    pub fn new(manifest: agent::Manifest) -> Self {
        let derp = manifest.derp_map.clone().unwrap_or_default();
        let (record_events, _) = broadcast::channel(1024);
        FakeApi {
            manifest: Mutex::new(manifest),
            service_banner: Mutex::new(agent::ServiceBanner::default()),
            banners: Mutex::new(Vec::new()),
            report_interval: Mutex::new(Duration::from_secs(30)),
            derp_map: watch::channel(derp).0,
            recorded: Mutex::new(Recording::default()),
            record_events,
            faults: Mutex::new(HashMap::new()),
            log_limit_exceeded: Mutex::new(false),
            sub_agents: Mutex::new(Vec::new()),
            drop_connections: broadcast::channel(1).0,
            keep_history: AtomicBool::new(true),
        }
    }

    /// Replaces the manifest.
    pub fn set_manifest(&self, manifest: agent::Manifest) {
        *lock(&self.manifest) = manifest;
    }

    /// The current manifest.
    pub fn manifest(&self) -> agent::Manifest {
        lock(&self.manifest).clone()
    }

    /// Sets the announcement banners.
    pub fn set_banners(&self, banners: Vec<agent::BannerConfig>) {
        *lock(&self.banners) = banners;
    }

    /// Sets the service banner.
    pub fn set_service_banner(&self, banner: agent::ServiceBanner) {
        *lock(&self.service_banner) = banner;
    }

    /// Sets the stats interval `UpdateStats` answers with.
    pub fn set_report_interval(&self, interval: Duration) {
        *lock(&self.report_interval) = interval;
    }

    /// Pushes a new DERP map to every `StreamDERPMaps` subscriber.
    pub fn push_derp_map(&self, map: tailnet::DerpMap) {
        self.derp_map.send_replace(map);
    }

    /// Makes `BatchCreateLogs` answer `log_limit_exceeded`.
    pub fn set_log_limit_exceeded(&self, exceeded: bool) {
        *lock(&self.log_limit_exceeded) = exceeded;
    }

    /// Injects a fault into the RPC `name` (e.g. `"GetManifest"`); `None` clears it.
    pub fn set_fault(&self, name: &str, fault: Option<Fault>) {
        let mut faults = lock(&self.faults);
        match fault {
            Some(f) => faults.insert(name.to_owned(), f),
            None => faults.remove(name),
        };
    }

    /// Everything recorded so far, in order: the newest
    /// [`record_limit`](Self::set_record_limit) reports (default
    /// [`DEFAULT_RECORD_LIMIT`](super::DEFAULT_RECORD_LIMIT)); older ones are
    /// dropped and counted by [`recorded_dropped`](Self::recorded_dropped).
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.recorded).to_vec()
    }

    /// Reports dropped from [`recorded`](Self::recorded) to stay within the limit.
    pub fn recorded_dropped(&self) -> u64 {
        lock(&self.recorded).dropped()
    }

    /// How many reports [`recorded`](Self::recorded) keeps; older ones are
    /// dropped (and counted) from now on, and at once past a lower limit.
    pub fn set_record_limit(&self, limit: usize) {
        lock(&self.recorded).set_limit(limit);
    }

    /// A live feed of what is recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Recorded> {
        self.record_events.subscribe()
    }

    /// Whether [`recorded`](Self::recorded) keeps every report (default
    /// `true`). A server holding thousands of agents for a long time turns it
    /// off: per-agent counters ([`AgentRecord`]) and [`subscribe`](Self::subscribe)
    /// keep working, nothing grows per call.
    pub fn set_keep_history(&self, keep: bool) {
        self.keep_history.store(keep, Ordering::Relaxed);
    }

    fn record(&self, r: Recorded) {
        // Reports made on an agent's connection also count for that agent.
        let _ = CURRENT_AGENT.try_with(|agent| agent.note(&r));
        if self.record_events.receiver_count() > 0 {
            let _ = self.record_events.send(r.clone());
        }
        if self.keep_history.load(Ordering::Relaxed) {
            lock(&self.recorded).push(r);
        }
    }

    /// Applies the fault configured for `name`, if any.
    async fn enter(&self, name: &str) -> Result<(), RpcError> {
        let fault = lock(&self.faults).get(name).cloned();
        match fault {
            None => Ok(()),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Fault::Error { code, message }) => Err(RpcError::Remote { code, message }),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::DropConnection) => {
                let _ = self.drop_connections.send(());
                // The connection is going away; this call never answers.
                std::future::pending().await
            }
        }
    }

    /// Resolves when a [`Fault::DropConnection`] fires; connection tasks listen to it.
    pub(crate) fn connection_drop_requests(&self) -> broadcast::Receiver<()> {
        self.drop_connections.subscribe()
    }
}

tokio::task_local! {
    /// The agent whose connection the current RPC arrived on.
    pub(crate) static CURRENT_AGENT: Arc<AgentEntry>;
}

/// The server's per-agent state: one per accepted token.
#[derive(Debug)]
pub(crate) struct AgentEntry {
    /// The id reported in this agent's manifest.
    pub(crate) agent_id: uuid::Uuid,
    /// `Some(agent_id)` when the manifest's own id is replaced by it (every
    /// token of [`ServerBuilder::tokens`](super::ServerBuilder::tokens));
    /// `None` for the server's main token, which keeps the manifest's id.
    pub(crate) own_id: Option<uuid::Uuid>,
    pub(crate) connections_open: AtomicUsize,
    pub(crate) connections_total: AtomicU64,
    lifecycle_reports: AtomicU64,
    /// The last lifecycle state reported (`agent::lifecycle::State` as i32).
    last_lifecycle: std::sync::atomic::AtomicI32,
    stats_reports: AtomicU64,
    log_lines: AtomicU64,
    metadata_reports: AtomicU64,
    app_health_reports: AtomicU64,
    other_reports: AtomicU64,
}

impl AgentEntry {
    pub(crate) fn new(agent_id: uuid::Uuid, own_id: bool) -> Self {
        AgentEntry {
            agent_id,
            own_id: own_id.then_some(agent_id),
            connections_open: AtomicUsize::new(0),
            connections_total: AtomicU64::new(0),
            lifecycle_reports: AtomicU64::new(0),
            last_lifecycle: std::sync::atomic::AtomicI32::new(agent::lifecycle::State::Unspecified as i32),
            stats_reports: AtomicU64::new(0),
            log_lines: AtomicU64::new(0),
            metadata_reports: AtomicU64::new(0),
            app_health_reports: AtomicU64::new(0),
            other_reports: AtomicU64::new(0),
        }
    }

    fn note(&self, r: &Recorded) {
        let counter = match r {
            Recorded::Lifecycle(l) => {
                self.last_lifecycle.store(l.state, Ordering::Relaxed);
                &self.lifecycle_reports
            }
            Recorded::Stats(_) => &self.stats_reports,
            Recorded::Logs { logs, .. } => {
                self.log_lines.fetch_add(logs.len() as u64, Ordering::Relaxed);
                return;
            }
            Recorded::Metadata(_) => &self.metadata_reports,
            Recorded::AppHealth(_) => &self.app_health_reports,
            _ => &self.other_reports,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> AgentRecord {
        AgentRecord {
            agent_id: self.agent_id,
            connections_open: self.connections_open.load(Ordering::SeqCst),
            connections_total: self.connections_total.load(Ordering::SeqCst),
            lifecycle_reports: self.lifecycle_reports.load(Ordering::Relaxed),
            last_lifecycle: agent::lifecycle::State::try_from(self.last_lifecycle.load(Ordering::Relaxed))
                .ok()
                .filter(|s| *s != agent::lifecycle::State::Unspecified),
            stats_reports: self.stats_reports.load(Ordering::Relaxed),
            log_lines: self.log_lines.load(Ordering::Relaxed),
            metadata_reports: self.metadata_reports.load(Ordering::Relaxed),
            app_health_reports: self.app_health_reports.load(Ordering::Relaxed),
            other_reports: self.other_reports.load(Ordering::Relaxed),
        }
    }
}

/// What the embedded server recorded for one agent (one accepted token):
/// counters only, so that it stays small for thousands of agents.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentRecord {
    /// The agent id its manifest carries.
    pub agent_id: uuid::Uuid,
    /// Its RPC connections open right now.
    pub connections_open: usize,
    /// RPC connections it has opened since the server started.
    pub connections_total: u64,
    /// `UpdateLifecycle` reports.
    pub lifecycle_reports: u64,
    /// The last lifecycle state it reported.
    pub last_lifecycle: Option<agent::lifecycle::State>,
    /// `UpdateStats` reports carrying stats.
    pub stats_reports: u64,
    /// Log lines received through `BatchCreateLogs`.
    pub log_lines: u64,
    /// `BatchUpdateMetadata` reports.
    pub metadata_reports: u64,
    /// `BatchUpdateAppHealths` reports.
    pub app_health_reports: u64,
    /// Every other recorded report.
    pub other_reports: u64,
}

/// Locks a mutex, recovering from a panic in another holder (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_uuid(field: &str, bytes: &[u8]) -> Result<(), RpcError> {
    if bytes.len() != 16 {
        return Err(RpcError::remote(format!(
            "parse {field}: invalid UUID length: {}",
            bytes.len()
        )));
    }
    Ok(())
}

/// The handle the generated server traits are implemented on.
#[derive(Clone, Debug)]
pub struct FakeApiHandle(pub Arc<FakeApi>);

impl AgentServer for FakeApiHandle {
    async fn get_manifest(&self, _: agent::GetManifestRequest) -> Result<agent::Manifest, RpcError> {
        self.0.enter("GetManifest").await?;
        let mut manifest = self.0.manifest();
        // Each token is its own agent: its id replaces the manifest's.
        if let Ok(Some(id)) = CURRENT_AGENT.try_with(|agent| agent.own_id) {
            manifest.agent_id = id.as_bytes().to_vec();
        }
        Ok(manifest)
    }

    async fn get_service_banner(&self, _: agent::GetServiceBannerRequest) -> Result<agent::ServiceBanner, RpcError> {
        self.0.enter("GetServiceBanner").await?;
        Ok(lock(&self.0.service_banner).clone())
    }

    async fn update_stats(&self, request: agent::UpdateStatsRequest) -> Result<agent::UpdateStatsResponse, RpcError> {
        self.0.enter("UpdateStats").await?;
        if let Some(stats) = request.stats {
            self.0.record(Recorded::Stats(stats));
        }
        let interval = *lock(&self.0.report_interval);
        Ok(agent::UpdateStatsResponse {
            report_interval: Some(prost_types::Duration {
                seconds: interval.as_secs() as i64,
                nanos: interval.subsec_nanos() as i32,
            }),
        })
    }

    async fn update_lifecycle(&self, request: agent::UpdateLifecycleRequest) -> Result<agent::Lifecycle, RpcError> {
        self.0.enter("UpdateLifecycle").await?;
        let lifecycle = request.lifecycle.unwrap_or_default();
        if lifecycle.state == agent::lifecycle::State::Unspecified as i32 {
            return Err(RpcError::remote("unknown lifecycle state STATE_UNSPECIFIED"));
        }
        self.0.record(Recorded::Lifecycle(lifecycle));
        Ok(lifecycle)
    }

    async fn batch_update_app_healths(
        &self,
        request: agent::BatchUpdateAppHealthRequest,
    ) -> Result<agent::BatchUpdateAppHealthResponse, RpcError> {
        self.0.enter("BatchUpdateAppHealths").await?;
        for u in &request.updates {
            check_uuid("app id", &u.id)?;
        }
        self.0.record(Recorded::AppHealth(request.updates));
        Ok(agent::BatchUpdateAppHealthResponse {})
    }

    async fn update_startup(&self, request: agent::UpdateStartupRequest) -> Result<agent::Startup, RpcError> {
        self.0.enter("UpdateStartup").await?;
        let startup = request.startup.unwrap_or_default();
        self.0.record(Recorded::Startup(startup.clone()));
        Ok(startup)
    }

    async fn batch_update_metadata(
        &self,
        request: agent::BatchUpdateMetadataRequest,
    ) -> Result<agent::BatchUpdateMetadataResponse, RpcError> {
        self.0.enter("BatchUpdateMetadata").await?;
        self.0.record(Recorded::Metadata(request.metadata));
        Ok(agent::BatchUpdateMetadataResponse {})
    }

    async fn batch_create_logs(
        &self,
        request: agent::BatchCreateLogsRequest,
    ) -> Result<agent::BatchCreateLogsResponse, RpcError> {
        self.0.enter("BatchCreateLogs").await?;
        check_uuid("log source id", &request.log_source_id)?;
        if *lock(&self.0.log_limit_exceeded) {
            return Ok(agent::BatchCreateLogsResponse {
                log_limit_exceeded: true,
            });
        }
        self.0.record(Recorded::Logs {
            source: request.log_source_id,
            logs: request.logs,
        });
        Ok(agent::BatchCreateLogsResponse::default())
    }

    async fn get_announcement_banners(
        &self,
        _: agent::GetAnnouncementBannersRequest,
    ) -> Result<agent::GetAnnouncementBannersResponse, RpcError> {
        self.0.enter("GetAnnouncementBanners").await?;
        Ok(agent::GetAnnouncementBannersResponse {
            announcement_banners: lock(&self.0.banners).clone(),
        })
    }

    async fn script_completed(
        &self,
        request: agent::WorkspaceAgentScriptCompletedRequest,
    ) -> Result<agent::WorkspaceAgentScriptCompletedResponse, RpcError> {
        self.0.enter("ScriptCompleted").await?;
        if let Some(timing) = request.timing {
            check_uuid("script id", &timing.script_id)?;
            self.0.record(Recorded::ScriptCompleted(timing));
        }
        Ok(agent::WorkspaceAgentScriptCompletedResponse {})
    }

    async fn get_resources_monitoring_configuration(
        &self,
        _: agent::GetResourcesMonitoringConfigurationRequest,
    ) -> Result<agent::GetResourcesMonitoringConfigurationResponse, RpcError> {
        self.0.enter("GetResourcesMonitoringConfiguration").await?;
        Ok(agent::GetResourcesMonitoringConfigurationResponse {
            config: Some(agent::get_resources_monitoring_configuration_response::Config {
                num_datapoints: 20,
                collection_interval_seconds: 10,
            }),
            memory: None,
            volumes: Vec::new(),
        })
    }

    async fn push_resources_monitoring_usage(
        &self,
        request: agent::PushResourcesMonitoringUsageRequest,
    ) -> Result<agent::PushResourcesMonitoringUsageResponse, RpcError> {
        self.0.enter("PushResourcesMonitoringUsage").await?;
        self.0.record(Recorded::ResourcesUsage(request));
        Ok(agent::PushResourcesMonitoringUsageResponse {})
    }

    async fn report_connection(&self, request: agent::ReportConnectionRequest) -> Result<(), RpcError> {
        self.0.enter("ReportConnection").await?;
        let connection = request.connection.unwrap_or_default();
        check_uuid("connection id", &connection.id)?;
        self.0.record(Recorded::Connection(connection));
        Ok(())
    }

    async fn create_sub_agent(
        &self,
        request: agent::CreateSubAgentRequest,
    ) -> Result<agent::CreateSubAgentResponse, RpcError> {
        self.0.enter("CreateSubAgent").await?;
        let id = match request.id {
            Some(id) => {
                check_uuid("id", &id)?;
                id
            }
            None => uuid::Uuid::new_v4().as_bytes().to_vec(),
        };
        let sub = agent::SubAgent {
            name: request.name,
            id,
            auth_token: uuid::Uuid::new_v4().as_bytes().to_vec(),
        };
        lock(&self.0.sub_agents).push(sub.clone());
        Ok(agent::CreateSubAgentResponse {
            agent: Some(sub),
            app_creation_errors: Vec::new(),
        })
    }

    async fn delete_sub_agent(
        &self,
        request: agent::DeleteSubAgentRequest,
    ) -> Result<agent::DeleteSubAgentResponse, RpcError> {
        self.0.enter("DeleteSubAgent").await?;
        check_uuid("id", &request.id)?;
        lock(&self.0.sub_agents).retain(|a| a.id != request.id);
        Ok(agent::DeleteSubAgentResponse {})
    }

    async fn list_sub_agents(&self, _: agent::ListSubAgentsRequest) -> Result<agent::ListSubAgentsResponse, RpcError> {
        self.0.enter("ListSubAgents").await?;
        Ok(agent::ListSubAgentsResponse {
            agents: lock(&self.0.sub_agents).clone(),
        })
    }

    async fn report_boundary_logs(
        &self,
        request: agent::ReportBoundaryLogsRequest,
    ) -> Result<agent::ReportBoundaryLogsResponse, RpcError> {
        self.0.enter("ReportBoundaryLogs").await?;
        self.0.record(Recorded::BoundaryLogs(request));
        Ok(agent::ReportBoundaryLogsResponse {})
    }

    async fn update_app_status(
        &self,
        request: agent::UpdateAppStatusRequest,
    ) -> Result<agent::UpdateAppStatusResponse, RpcError> {
        self.0.enter("UpdateAppStatus").await?;
        self.0.record(Recorded::AppStatus(request));
        Ok(agent::UpdateAppStatusResponse {})
    }

    // PushContextState keeps the default: coderd itself answers Unimplemented.
}

impl TailnetServer for FakeApiHandle {
    async fn post_telemetry(&self, request: tailnet::TelemetryRequest) -> Result<tailnet::TelemetryResponse, RpcError> {
        self.0.enter("PostTelemetry").await?;
        self.0.record(Recorded::Telemetry(request));
        Ok(tailnet::TelemetryResponse {})
    }

    async fn stream_derp_maps(
        &self,
        _: tailnet::StreamDerpMapsRequest,
        responses: ResponseSink<tailnet::DerpMap>,
    ) -> Result<(), RpcError> {
        self.0.enter("StreamDERPMaps").await?;
        let mut maps = self.0.derp_map.subscribe();
        loop {
            let map = maps.borrow_and_update().clone();
            responses.send(&map).await?;
            tokio::select! {
                changed = maps.changed() => if changed.is_err() { return Ok(()) },
                _ = responses.closed() => return Ok(()),
            }
        }
    }

    async fn refresh_resume_token(
        &self,
        _: tailnet::RefreshResumeTokenRequest,
    ) -> Result<tailnet::RefreshResumeTokenResponse, RpcError> {
        self.0.enter("RefreshResumeToken").await?;
        let now = std::time::SystemTime::now();
        let expires = prost_types::Timestamp::from(now + Duration::from_secs(3600));
        Ok(tailnet::RefreshResumeTokenResponse {
            token: uuid::Uuid::new_v4().to_string(),
            refresh_in: Some(prost_types::Duration {
                seconds: 1800,
                nanos: 0,
            }),
            expires_at: Some(expires),
        })
    }

    async fn coordinate(
        &self,
        mut requests: RequestStream<tailnet::CoordinateRequest>,
        responses: ResponseSink<tailnet::CoordinateResponse>,
    ) -> Result<(), RpcError> {
        self.0.enter("Coordinate").await?;
        // A coordinator with no other peers: each node update is acknowledged
        // by echoing it back as a peer update, so agents see their own node.
        while let Some(request) = requests.message().await? {
            self.0.record(Recorded::Coordinate(request.clone()));
            if request.disconnect.is_some() {
                break;
            }
            if let Some(update) = request.update_self {
                let node = update.node.unwrap_or_default();
                responses
                    .send(&tailnet::CoordinateResponse {
                        peer_updates: vec![tailnet::coordinate_response::PeerUpdate {
                            id: node.id.to_be_bytes().repeat(2),
                            node: Some(node),
                            kind: tailnet::coordinate_response::peer_update::Kind::Node as i32,
                            reason: "self".to_owned(),
                        }],
                        error: String::new(),
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn workspace_updates(
        &self,
        request: tailnet::WorkspaceUpdatesRequest,
        responses: ResponseSink<tailnet::WorkspaceUpdate>,
    ) -> Result<(), RpcError> {
        self.0.enter("WorkspaceUpdates").await?;
        check_uuid("workspace owner id", &request.workspace_owner_id)?;
        let manifest = self.0.manifest();
        responses
            .send(&tailnet::WorkspaceUpdate {
                upserted_workspaces: vec![tailnet::Workspace {
                    id: manifest.workspace_id.clone(),
                    name: manifest.workspace_name.clone(),
                    status: tailnet::workspace::Status::Running as i32,
                }],
                upserted_agents: vec![tailnet::Agent {
                    id: manifest.agent_id.clone(),
                    name: manifest.agent_name.clone(),
                    workspace_id: manifest.workspace_id,
                }],
                ..Default::default()
            })
            .await?;
        responses.closed().await;
        Ok(())
    }
}
