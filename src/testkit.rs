//! A fake coderd for testing agents written with this crate (feature `testkit`).
//!
//! [`FakeCoderd`] is the embedded server as a test fixture: it speaks the
//! real protocols on a loopback port with coderd's token and version checks,
//! records every report an agent makes, and injects faults per RPC.
//!
//! A user's test, in ten lines:
//!
//! ```
//! use coder_agentsdk::proto::agent;
//! use coder_agentsdk::rpc::prelude::*;
//! use coder_agentsdk::testkit::FakeCoderd;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let coderd = FakeCoderd::builder().agent_name("dev").start().await;
//! let (agent, _tailnet) = coderd.client().connect_rpc28().await.unwrap();
//! assert_eq!(agent.get_manifest(Default::default()).await.unwrap().agent_name, "dev");
//! let ready = agent::Lifecycle { state: agent::lifecycle::State::Ready as i32, changed_at: None };
//! agent.update_lifecycle(agent::UpdateLifecycleRequest { lifecycle: Some(ready) }).await.unwrap();
//! assert_eq!(coderd.lifecycle_states(), [agent::lifecycle::State::Ready]);
//! # }
//! ```

use std::time::Duration;

use crate::drpc::ApiVersion;
use crate::error::Response as ErrorBody;
use crate::proto::{agent, tailnet};
use crate::server::{demo_manifest, EmbeddedServer, Fault, Recorded, ServerBuilder};
use crate::Client;

/// Configures a [`FakeCoderd`].
#[derive(Debug, Default)]
pub struct FakeCoderdBuilder {
    server: ServerBuilder,
    manifest: Option<agent::Manifest>,
    agent_name: Option<String>,
    banners: Vec<agent::BannerConfig>,
    report_interval: Option<Duration>,
    trust: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl FakeCoderdBuilder {
    /// The agent token it accepts (default: a random UUID).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.server = self.server.token(token);
        self
    }

    /// The newest API version it accepts; newer dials get coderd's 400.
    pub fn max_version(mut self, version: ApiVersion) -> Self {
        self.server = self.server.max_version(version);
        self
    }

    /// The manifest `GetManifest` returns (default: a demo manifest).
    pub fn manifest(mut self, manifest: agent::Manifest) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Overrides the agent name of the manifest.
    pub fn agent_name(mut self, name: impl Into<String>) -> Self {
        self.agent_name = Some(name.into());
        self
    }

    /// The announcement banners `GetAnnouncementBanners` returns.
    pub fn banners(mut self, banners: Vec<agent::BannerConfig>) -> Self {
        self.banners = banners;
        self
    }

    /// The stats interval `UpdateStats` answers with (default 30 s).
    pub fn report_interval(mut self, interval: Duration) -> Self {
        self.report_interval = Some(interval);
        self
    }

    /// How many reports each recording keeps (default
    /// [`DEFAULT_RECORD_LIMIT`](crate::server::DEFAULT_RECORD_LIMIT)); older
    /// ones are dropped and counted ([`FakeCoderd::recorded_dropped`],
    /// [`FakeCoderd::rest_dropped`]).
    pub fn record_limit(mut self, limit: usize) -> Self {
        self.server = self.server.record_limit(limit);
        self
    }

    /// Serves HTTPS / `wss://` ([`ServerBuilder::tls`]) with `cert_chain`
    /// (which must name `127.0.0.1`) and `key`. [`FakeCoderd::client`]
    /// then trusts the chain's last certificate (the CA, or the
    /// certificate itself when it is self-signed).
    pub fn tls(
        mut self,
        cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        self.trust = cert_chain.last().cloned();
        self.server = self.server.tls(cert_chain, key);
        self
    }

    /// Starts the server on a free loopback port. Panics if it cannot bind,
    /// which in a test is the right outcome.
    pub async fn start(self) -> FakeCoderd {
        let server = self.server.start().await.expect("bind a loopback port for FakeCoderd");
        let mut manifest = self.manifest.unwrap_or_else(|| demo_manifest(server.url()));
        if let Some(name) = self.agent_name {
            manifest.agent_name = name;
        }
        server.api().set_manifest(manifest.clone());
        if let Some(derp) = manifest.derp_map {
            server.api().push_derp_map(derp);
        }
        server.api().set_banners(self.banners);
        if let Some(interval) = self.report_interval {
            server.api().set_report_interval(interval);
        }
        FakeCoderd {
            server,
            trust: self.trust,
        }
    }
}

/// A recording, fault-injecting fake coderd. Stops when dropped.
#[derive(Debug)]
pub struct FakeCoderd {
    server: EmbeddedServer,
    trust: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl FakeCoderd {
    /// A builder with defaults.
    pub fn builder() -> FakeCoderdBuilder {
        FakeCoderdBuilder::default()
    }

    /// Starts one with defaults.
    pub async fn start() -> FakeCoderd {
        FakeCoderdBuilder::default().start().await
    }

    /// Its base URL.
    pub fn url(&self) -> &url::Url {
        self.server.url()
    }

    /// The agent token it accepts.
    pub fn token(&self) -> &str {
        self.server.token()
    }

    /// A [`Client`] pointed at it with the right token (trusting its
    /// certificate when it serves TLS).
    pub fn client(&self) -> Client {
        self.client_builder()
            .build()
            .expect("a loopback URL, a token and the server's own root make a valid client")
    }

    /// A [`crate::ClientBuilder`] for it with the right token (and root),
    /// to set more before building.
    pub fn client_builder(&self) -> crate::ClientBuilder {
        let builder = Client::builder(self.url().as_str()).token(self.token());
        match &self.trust {
            Some(root) => builder.add_root_certificate(root.clone()),
            None => builder,
        }
    }

    /// The underlying embedded server, for everything not wrapped here.
    pub fn server(&self) -> &EmbeddedServer {
        &self.server
    }

    // ----- what the agent reported -----

    /// RPC reports dropped from [`recorded`](Self::recorded) (and so from
    /// every accessor built on it) to stay within the record limit
    /// ([`FakeCoderdBuilder::record_limit`]).
    pub fn recorded_dropped(&self) -> u64 {
        self.server.api().recorded_dropped()
    }

    /// Entries dropped by each REST recording to stay within the record limit.
    pub fn rest_dropped(&self) -> crate::server::rest::RestDropped {
        self.server.rest().dropped()
    }

    /// Every RPC report, in arrival order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.server.api().recorded()
    }

    fn collect<T>(&self, pick: impl Fn(Recorded) -> Option<T>) -> Vec<T> {
        self.recorded().into_iter().filter_map(pick).collect()
    }

    /// Lifecycle states reported, in order (unknown values are skipped).
    pub fn lifecycle_states(&self) -> Vec<agent::lifecycle::State> {
        self.collect(|r| match r {
            Recorded::Lifecycle(l) => agent::lifecycle::State::try_from(l.state).ok(),
            _ => None,
        })
    }

    /// Stats reports, in order.
    pub fn stats(&self) -> Vec<agent::Stats> {
        self.collect(|r| match r {
            Recorded::Stats(s) => Some(s),
            _ => None,
        })
    }

    /// Every log line with its source id, in order.
    pub fn logs(&self) -> Vec<(uuid::Uuid, agent::Log)> {
        self.recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::Logs { source, logs } => {
                    let source = uuid::Uuid::from_slice(&source).ok()?;
                    Some(logs.into_iter().map(move |l| (source, l)))
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The output of every log line of one source, in order.
    pub fn log_output(&self, source: uuid::Uuid) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|(s, _)| *s == source)
            .map(|(_, l)| l.output)
            .collect()
    }

    /// Number of `BatchCreateLogs` calls that were accepted.
    pub fn log_batches(&self) -> usize {
        self.collect(|r| matches!(r, Recorded::Logs { .. }).then_some(())).len()
    }

    /// Metadata results reported, in order.
    pub fn metadata(&self) -> Vec<agent::Metadata> {
        self.collect(|r| match r {
            Recorded::Metadata(m) => Some(m),
            _ => None,
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// App health updates reported, in order.
    pub fn app_health(&self) -> Vec<agent::batch_update_app_health_request::HealthUpdate> {
        self.collect(|r| match r {
            Recorded::AppHealth(u) => Some(u),
            _ => None,
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// App status updates sent over RPC, in order.
    pub fn app_statuses(&self) -> Vec<agent::UpdateAppStatusRequest> {
        self.collect(|r| match r {
            Recorded::AppStatus(s) => Some(s),
            _ => None,
        })
    }

    /// Connections reported for auditing, in order.
    pub fn connections(&self) -> Vec<agent::Connection> {
        self.collect(|r| match r {
            Recorded::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// Waits until `done` holds for the reports so far, or `timeout` passes
    /// (then returns false). Reports are pushed, not polled.
    pub async fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Recorded]) -> bool) -> bool {
        let mut events = self.server.api().subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.recorded()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return false,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return done(&self.recorded()),
                Ok(_) => {}
            }
        }
    }

    // ----- faults -----

    /// Makes the RPC `name` (e.g. `"UpdateStats"`) fail with a DRPC error.
    pub fn fail_rpc(&self, name: &str, code: u64, message: impl Into<String>) {
        self.server.api().set_fault(
            name,
            Some(Fault::Error {
                code,
                message: message.into(),
            }),
        );
    }

    /// Delays every call of the RPC `name`.
    pub fn delay_rpc(&self, name: &str, delay: Duration) {
        self.server.api().set_fault(name, Some(Fault::Delay(delay)));
    }

    /// Makes the RPC `name` never answer.
    pub fn hang_rpc(&self, name: &str) {
        self.server.api().set_fault(name, Some(Fault::Hang));
    }

    /// Makes a call of the RPC `name` drop every agent connection (one agent: its connection).
    pub fn drop_connection_on(&self, name: &str) {
        self.server.api().set_fault(name, Some(Fault::DropConnection));
    }

    /// Removes the fault of the RPC `name`.
    pub fn clear_fault(&self, name: &str) {
        self.server.api().set_fault(name, None);
    }

    /// Drops every agent connection now (the agent sees its session end).
    pub fn drop_connections(&self) {
        self.server.disconnect_all();
    }

    /// Refuses websocket upgrades with `status` and a coderd JSON error, until [`FakeCoderd::accept_upgrades`].
    pub fn refuse_upgrades(&self, status: u16, message: impl Into<String>) {
        self.server.refuse_upgrades(Some((
            status,
            ErrorBody {
                message: message.into(),
                ..ErrorBody::default()
            },
        )));
    }

    /// Accepts websocket upgrades again.
    pub fn accept_upgrades(&self) {
        self.server.refuse_upgrades(None);
    }

    /// Sends a new DERP map to every `StreamDERPMaps` subscriber.
    pub fn push_derp_map(&self, map: tailnet::DerpMap) {
        self.server.api().push_derp_map(map);
    }

    /// Sends a reinit event (a prebuilt workspace was claimed) to every agent
    /// waiting in `wait_for_reinit`; returns how many received it.
    pub fn send_reinit(&self, event: crate::sse::ReinitializationEvent) -> usize {
        self.server.rest().send_reinit(event)
    }

    /// Waits until `n` agents are listening for reinit events.
    pub async fn wait_for_reinit_listeners(&self, n: usize) {
        self.server.rest().wait_for_reinit_streams(n).await
    }

    /// Log sources the agent registered with `post_log_source`.
    pub fn log_sources(&self) -> Vec<crate::types::WorkspaceAgentLogSource> {
        self.server.rest().log_sources()
    }

    /// App statuses the agent sent with `patch_app_status` (REST).
    pub fn rest_app_statuses(&self) -> Vec<crate::types::PatchAppStatus> {
        self.server.rest().app_statuses()
    }

    /// Makes `BatchCreateLogs` answer `log_limit_exceeded`.
    pub fn set_log_limit_exceeded(&self, exceeded: bool) {
        self.server.api().set_log_limit_exceeded(exceeded);
    }

    /// Changes the newest accepted API version from now on.
    pub fn set_max_version(&self, version: ApiVersion) {
        self.server.set_max_version(version);
    }
}
