//! A fleet: one process acting as many workspace agents, for scale tests
//! (the idea of Coder's `scaletest agentfake`).
//!
//! Each agent of a [`Fleet`] has its own token and [`Client`], and its own
//! RPC connection (version negotiated, role `"agent"`). It follows a
//! [`Profile`]: report a lifecycle sequence (default created → starting →
//! ready), send stats at the interval the server asks for, and optionally
//! stream logs through a [`LogSender`], update metadata and report app
//! health. When its connection drops it reconnects with exponential backoff
//! and full jitter, so thousands of agents do not come back in one burst; a
//! limit on dials in flight ramps the fleet up. A refused token (HTTP 4xx)
//! fails that agent alone, with the server's error, and the rest run on.
//!
//! Live [`FleetCounters`] can be read at any time; each agent runs in its
//! own `tracing` span (`fleet_agent`, field `agent` = its token's position,
//! and `shard` when the fleet is one [`Shard`] of several). Several
//! processes can split one token list ([`FleetBuilder::shard`]) and spread
//! agents over several servers ([`FleetBuilder::base_urls`]); with the
//! feature `metrics`, [`Fleet::register_metrics`] exposes the counters,
//! call and dial latencies to Prometheus ([`metrics`]). Dropping
//! the [`Fleet`] ends every agent and closes every connection;
//! [`Fleet::shutdown`] does the same and waits until the connections are
//! closed.
//!
//! It only uses the crate's client API ([`Client`], the negotiated RPC
//! clients, [`LogSender`]); it knows nothing about the server it talks to.
//!
//! ```no_run
//! use std::time::Duration;
//! use coder_agentsdk::fleet::{Fleet, Profile};
//!
//! # async fn demo() -> Result<(), coder_agentsdk::Error> {
//! let fleet = Fleet::builder("https://coder.example.com")
//!     .tokens_file("agent-tokens.txt")?
//!     .profile(Profile::default().logs(2.0, 120))
//!     .max_dials_in_flight(32)
//!     .start()?;
//! fleet.wait_settled(Duration::from_secs(300)).await;
//! let c = fleet.counters();
//! println!("{} of {} agents ready, {} failed", c.ready, c.agents, c.failed);
//! for failure in fleet.failures() {
//!     eprintln!("agent {}: {}", failure.index, failure.error);
//! }
//! drop(fleet); // every connection closes
//! # Ok(()) }
//! ```

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent::{LogDest, LogLevel, LogSender};
use crate::client::{Client, ClientBuilder};
use crate::drpc::RpcError;
use crate::error::Error;
use crate::proto::agent;
use crate::rpc::prelude::*;
use crate::rpc::Negotiated;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod shard;

pub use shard::Shard;

/// A lifecycle state an agent reports (`coder.agent.v2.Lifecycle.State`).
pub type LifecycleState = agent::lifecycle::State;

/// Default first reconnect delay bound: the first retry waits a random time
/// in `[0, 1 s)` (Coder's agentfake waits exactly 1 s).
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default largest reconnect delay bound.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default limit of dials (websocket upgrade and version negotiation) in
/// flight across the fleet.
pub const DEFAULT_MAX_DIALS_IN_FLIGHT: usize = 64;
/// Default time limit of one dial.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit of one RPC; a call that takes longer counts as failed
/// and the connection is redialled.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What each agent of a fleet does while connected.
///
/// Default: the lifecycle sequence created → starting → ready and stats at
/// the server's interval; no logs, metadata or app health.
#[derive(Clone, Debug)]
pub struct Profile {
    lifecycle: Vec<LifecycleState>,
    stats: bool,
    logs: Option<(f64, usize)>,
    metadata: Option<Duration>,
    app_health: Option<Duration>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            lifecycle: vec![LifecycleState::Created, LifecycleState::Starting, LifecycleState::Ready],
            stats: true,
            logs: None,
            metadata: None,
            app_health: None,
        }
    }
}

impl Profile {
    /// The lifecycle states reported, in order, on an agent's first
    /// connection; after a reconnect only the last one is reported again.
    /// The agent counts as ready once the last is acknowledged. Empty: no
    /// lifecycle reports, ready once connected.
    pub fn lifecycle(mut self, states: impl IntoIterator<Item = LifecycleState>) -> Self {
        self.lifecycle = states.into_iter().collect();
        self
    }

    /// Whether stats are sent (default on): a first empty `UpdateStats`
    /// learns the server's `report_interval`, then stats follow at that
    /// interval (the Go agent's stats reporter does the same).
    pub fn stats(mut self, on: bool) -> Self {
        self.stats = on;
        self
    }

    /// Streams `lines_per_s` log lines of `bytes_per_line` bytes through a
    /// [`LogSender`] into a log source the agent registers once
    /// (`POST /api/v2/workspaceagents/me/log-source`). Lines are generated
    /// once a second.
    pub fn logs(mut self, lines_per_s: f64, bytes_per_line: usize) -> Self {
        self.logs = (lines_per_s > 0.0).then_some((lines_per_s, bytes_per_line));
        self
    }

    /// Sends `BatchUpdateMetadata` for every metadata key of the manifest
    /// every `interval`.
    pub fn metadata(mut self, interval: Duration) -> Self {
        self.metadata = Some(interval.max(Duration::from_millis(10)));
        self
    }

    /// Reports every app of the manifest that has a health check as healthy
    /// (`BatchUpdateAppHealths`) every `interval`.
    pub fn app_health(mut self, interval: Duration) -> Self {
        self.app_health = Some(interval.max(Duration::from_millis(10)));
        self
    }
}

/// A snapshot of a fleet's live counters.
///
/// Gauges (`connected`, `ready`, `reconnecting`, `failed`, `dialing`) count
/// agents right now; the rest are totals since the fleet started. Bytes are
/// the protobuf payloads of the fleet's own calls, without framing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetCounters {
    /// Agents in the fleet.
    pub agents: usize,
    /// Agents with an open RPC connection (ready ones included).
    pub connected: usize,
    /// Connected agents that have reported their last lifecycle state.
    pub ready: usize,
    /// Agents that lost their connection (or whose dial failed) and are
    /// waiting to dial again or dialling again.
    pub reconnecting: usize,
    /// Agents that gave up for good (their token or request was refused).
    pub failed: usize,
    /// Dials in flight right now.
    pub dialing: usize,
    /// Dials started.
    pub dials: u64,
    /// Successful dials after an agent's first connection.
    pub reconnects: u64,
    /// RPCs that succeeded.
    pub calls_ok: u64,
    /// RPCs that failed (including timeouts).
    pub calls_failed: u64,
    /// Request payload bytes sent.
    pub bytes_sent: u64,
    /// Response payload bytes received.
    pub bytes_received: u64,
}

/// Why an agent of the fleet gave up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AgentFailure {
    /// The agent's index (its token's position).
    pub index: usize,
    /// The error, as the server or the transport reported it.
    pub error: String,
}

/// Where tokens come from.
enum TokenSource {
    List(Vec<String>),
    Generated(usize, Arc<dyn Fn(usize) -> String + Send + Sync>),
}

type ClientSettings = Arc<dyn Fn(usize, ClientBuilder) -> ClientBuilder + Send + Sync>;

/// The rustls config a client built with `settings` uses, made once for the
/// whole fleet: the client builder knows how to combine the system's roots
/// with extra ones and to narrow ALPN to HTTP/1.1, so a throwaway client
/// yields the config every agent then shares.
fn shared_tls_config(
    base_url: &str,
    settings: impl FnOnce(ClientBuilder) -> Result<ClientBuilder, Error>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let client = settings(Client::builder(base_url).token("fleet-tls-config"))?.build()?;
    Ok(client.tls_config().clone())
}

/// Configures and starts a [`Fleet`].
pub struct FleetBuilder {
    base_url: String,
    /// Set by [`FleetBuilder::base_urls`]: agents spread over these instead.
    spread_urls: Vec<String>,
    shard: Option<Shard>,
    tokens: TokenSource,
    limit: Option<usize>,
    client_settings: Option<ClientSettings>,
    profile: Profile,
    max_dials_in_flight: usize,
    backoff: (Duration, Duration),
    dial_timeout: Duration,
    call_timeout: Duration,
    tls: Option<Result<Arc<rustls::ClientConfig>, Error>>,
}

impl std::fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: only their number is shown.
        f.debug_struct("FleetBuilder")
            .field("base_url", &self.base_url)
            .field("base_urls", &self.spread_urls)
            .field("shard", &self.shard)
            .field("tokens", &self.token_count())
            .field("profile", &self.profile)
            .field("max_dials_in_flight", &self.max_dials_in_flight)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// One agent per token, in order.
    pub fn tokens<I, T>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tokens = TokenSource::List(tokens.into_iter().map(Into::into).collect());
        self
    }

    /// One agent per line of a file (surrounding whitespace trimmed; empty
    /// lines and lines starting with `#` skipped).
    pub fn tokens_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("tokens file {}: {e}", path.display())))?;
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Ok(self.tokens(tokens))
    }

    /// `count` agents, agent `i` with the token `token(i)`.
    pub fn token_fn(mut self, count: usize, token: impl Fn(usize) -> String + Send + Sync + 'static) -> Self {
        self.tokens = TokenSource::Generated(count, Arc::new(token));
        self
    }

    /// Runs only the first `n` agents of the token source (with a
    /// [`shard`](Self::shard), its share of those first `n`).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Runs only this shard's share of the tokens: those at positions `g`
    /// (in the whole list, after [`limit`](Self::limit)) with
    /// `g % count == index` (see [`shard`](mod@shard) for why modulo). Agent
    /// indices (spans, [`AgentFailure::index`]) stay positions in the whole
    /// list, and a shard's metrics carry the label `shard`.
    pub fn shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Spreads the agents over several deployments (or replicas): the agent
    /// of the token at position `g` dials `urls[g % urls.len()]`, so server
    /// `j` sees exactly the tokens of shard `j` of `urls.len()`. Replaces
    /// the URL given to [`Fleet::builder`]; an empty list keeps it.
    pub fn base_urls<I, T>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.spread_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Adjusts each agent's [`ClientBuilder`] (agent index, builder with the
    /// URL, the token and a reqwest client shared by the fleet already set).
    pub fn client_settings(
        mut self,
        f: impl Fn(usize, ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        self.client_settings = Some(Arc::new(f));
        self
    }

    /// Every agent's TLS connections (RPC websocket and REST) use `config`:
    /// ONE rustls config shared by the whole fleet (its session cache
    /// included), not one per agent. See [`ClientBuilder::tls_config`].
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(shared_tls_config(&self.base_url, |b| Ok(b.tls_config(config))));
        self
    }

    /// Trusts the certificates in `pem` (e.g. a private CA's) besides the
    /// system's roots, with one rustls config built here and shared by every
    /// agent. See [`ClientBuilder::add_root_certificates_pem`]; bad PEM makes
    /// [`start`](Self::start) fail.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        self.tls = Some(shared_tls_config(&self.base_url, |b| b.add_root_certificates_pem(pem)));
        self
    }

    /// What each agent does (default [`Profile::default`]).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Dials in flight at most, fleet-wide (default
    /// [`DEFAULT_MAX_DIALS_IN_FLIGHT`]); at least 1.
    pub fn max_dials_in_flight(mut self, n: usize) -> Self {
        self.max_dials_in_flight = n.max(1);
        self
    }

    /// Reconnect backoff: attempt `k` (from 0) waits a uniformly random time
    /// in `[0, min(max, initial * 2^k))` ("full jitter"). Defaults
    /// [`DEFAULT_BACKOFF_INITIAL`], [`DEFAULT_BACKOFF_MAX`].
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = (initial, max.max(initial));
        self
    }

    /// Time limit of one dial (default [`DEFAULT_DIAL_TIMEOUT`]).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Time limit of one RPC (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Tokens in the whole source (after the limit), all shards together.
    fn total_tokens(&self) -> usize {
        let n = match &self.tokens {
            TokenSource::List(v) => v.len(),
            TokenSource::Generated(n, _) => *n,
        };
        self.limit.map_or(n, |l| l.min(n))
    }

    /// Agents this fleet runs (its shard's share).
    fn token_count(&self) -> usize {
        let total = self.total_tokens();
        self.shard.map_or(total, |s| s.len_of(total))
    }

    /// Builds every agent's client and starts the agents (inside a Tokio
    /// runtime). Fails if there is no token, or a client cannot be built
    /// (bad URL, a token that is not a valid header value, ...).
    pub fn start(self) -> Result<Fleet, Error> {
        let count = self.token_count();
        if count == 0 {
            return Err(Error::Config("a fleet needs at least one agent token".to_owned()));
        }
        let tls = self.tls.transpose()?;
        // REST calls (log sources, ...) trust what the websocket trusts and
        // take the same proxy decision: one network configuration.
        let net = match &tls {
            Some(config) => crate::net::NetConfig {
                tls: config.clone(),
                proxy: crate::net::proxy::ProxyChoice::from_env(),
            },
            None => crate::net::NetConfig::default(),
        };
        let http = net
            .http_client_builder()
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        let shard = self.shard.unwrap_or_else(Shard::whole);
        let mut clients = Vec::with_capacity(count);
        for local in 0..count {
            // Agents are known by their token's position in the whole list.
            let i = shard.position(local);
            let token = match &self.tokens {
                TokenSource::List(v) => v[i].clone(),
                TokenSource::Generated(_, f) => f(i),
            };
            if token.is_empty() {
                return Err(Error::Config(format!("agent {i}: empty token")));
            }
            let url = match shard::spread(i, self.spread_urls.len()) {
                Some(j) => &self.spread_urls[j],
                None => &self.base_url,
            };
            let mut builder = Client::builder(url).token(token).http_client(http.clone());
            if let Some(config) = &tls {
                builder = builder.tls_config(config.clone());
            }
            if let Some(settings) = &self.client_settings {
                builder = settings(i, builder);
            }
            clients.push((
                i,
                builder.build().map_err(|e| match e {
                    Error::Config(m) => Error::Config(format!("agent {i}: {m}")),
                    other => other,
                })?,
            ));
        }
        let shared = Arc::new(Shared {
            agents: count,
            shard: self.shard,
            #[cfg(feature = "metrics")]
            instruments: Default::default(),
            gauges: Default::default(),
            totals: Default::default(),
            failures: Mutex::new(Vec::new()),
            changed: Notify::new(),
            dials: Semaphore::new(self.max_dials_in_flight),
            profile: self.profile,
            backoff: self.backoff,
            dial_timeout: self.dial_timeout,
            call_timeout: self.call_timeout,
            stop: CancellationToken::new(),
        });
        let tasks = clients
            .into_iter()
            .map(|(index, client)| {
                let span = tracing::info_span!("fleet_agent", shard = tracing::field::Empty, agent = index);
                if let Some(s) = self.shard {
                    span.record("shard", s.index());
                }
                tokio::spawn(run_agent(shared.clone(), index, client).instrument(span))
            })
            .collect();
        Ok(Fleet { shared, tasks })
    }
}

/// Many agents in one process. See the [module documentation](self).
///
/// Dropping it stops every agent and closes every connection (without
/// waiting); [`Fleet::shutdown`] waits until they are closed.
pub struct Fleet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("counters", &self.counters()).finish()
    }
}

impl Fleet {
    /// A builder for agents of the deployment at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> FleetBuilder {
        FleetBuilder {
            base_url: base_url.into(),
            spread_urls: Vec::new(),
            shard: None,
            tokens: TokenSource::List(Vec::new()),
            limit: None,
            client_settings: None,
            profile: Profile::default(),
            max_dials_in_flight: DEFAULT_MAX_DIALS_IN_FLIGHT,
            backoff: (DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX),
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            tls: None,
        }
    }

    /// The number of agents.
    pub fn len(&self) -> usize {
        self.shared.agents
    }

    /// Always false: a fleet has at least one agent.
    pub fn is_empty(&self) -> bool {
        self.shared.agents == 0
    }

    /// The live counters, now.
    pub fn counters(&self) -> FleetCounters {
        self.shared.counters()
    }

    /// The shard this fleet runs, if it was given one.
    pub fn shard(&self) -> Option<Shard> {
        self.shared.shard
    }

    /// Adds this fleet's metrics to `registry` (see [`metrics`] for the
    /// list), read live at each scrape; a sharded fleet's carry the label
    /// `shard`. The registry keeps the fleet's counters alive, not its
    /// agents: after the fleet is dropped they show its last values.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let collector = Box::new(metrics::FleetCollector(self.shared.clone()));
        match self.shared.shard {
            Some(s) => registry
                .sub_registry_with_label(metrics::shard_label(s))
                .register_collector(collector),
            None => registry.register_collector(collector),
        }
    }

    /// Agents that gave up, and why, in the order they failed.
    pub fn failures(&self) -> Vec<AgentFailure> {
        lock(&self.shared.failures).clone()
    }

    /// Waits until `done(counters)` holds or `timeout` passes; returns the
    /// last counters and whether `done` held.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&FleetCounters) -> bool) -> (FleetCounters, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let c = self.counters();
            if done(&c) {
                return (c, true);
            }
            // Counters also move without notification (calls, bytes): look
            // again at least every 100 ms.
            let wake = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let c = self.counters();
                let ok = done(&c);
                return (c, ok);
            }
        }
    }

    /// Waits (at most `timeout`) until every agent is ready or has failed;
    /// returns whether that happened.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |c| c.ready + c.failed == c.agents).await.1
    }

    /// Stops every agent and waits (at most `timeout`) until their
    /// connections are closed; returns whether all closed in time.
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
        self.shared.stop.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let all = futures::future::join_all(tasks);
        let done = tokio::time::timeout(timeout, all).await.is_ok();
        if done {
            // Each agent closed its connection; wait for the session drivers.
            let closing = self.shared.totals.closing_wait(timeout);
            closing.await
        } else {
            false
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Agents in each state right now.
#[derive(Default)]
struct Gauges {
    connected: AtomicUsize,
    ready: AtomicUsize,
    reconnecting: AtomicUsize,
    failed: AtomicUsize,
    dialing: AtomicUsize,
}

#[derive(Default)]
struct Totals {
    dials: AtomicU64,
    reconnects: AtomicU64,
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// Connections closed by the fleet whose session has not ended yet.
    closing: AtomicUsize,
    closed: Notify,
}

impl Totals {
    async fn closing_wait(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closing.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.closing.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

struct Shared {
    agents: usize,
    shard: Option<Shard>,
    #[cfg(feature = "metrics")]
    instruments: metrics::Instruments,
    gauges: Gauges,
    totals: Totals,
    failures: Mutex<Vec<AgentFailure>>,
    changed: Notify,
    dials: Semaphore,
    profile: Profile,
    backoff: (Duration, Duration),
    dial_timeout: Duration,
    call_timeout: Duration,
    stop: CancellationToken,
}

impl Shared {
    /// Records one call's outcome and time (for the metrics; nothing
    /// without the feature).
    fn observe_call(&self, rpc: Rpc, outcome: Outcome, took: Duration) {
        match outcome {
            Outcome::Ok => self.totals.calls_ok.fetch_add(1, Ordering::Relaxed),
            _ => self.totals.calls_failed.fetch_add(1, Ordering::Relaxed),
        };
        #[cfg(feature = "metrics")]
        self.instruments.call(rpc, outcome, took);
        #[cfg(not(feature = "metrics"))]
        let _ = (rpc, took);
    }

    fn counters(&self) -> FleetCounters {
        let g = &self.gauges;
        let t = &self.totals;
        FleetCounters {
            agents: self.agents,
            connected: g.connected.load(Ordering::Relaxed),
            ready: g.ready.load(Ordering::Relaxed),
            reconnecting: g.reconnecting.load(Ordering::Relaxed),
            failed: g.failed.load(Ordering::Relaxed),
            dialing: g.dialing.load(Ordering::Relaxed),
            dials: t.dials.load(Ordering::Relaxed),
            reconnects: t.reconnects.load(Ordering::Relaxed),
            calls_ok: t.calls_ok.load(Ordering::Relaxed),
            calls_failed: t.calls_failed.load(Ordering::Relaxed),
            bytes_sent: t.bytes_sent.load(Ordering::Relaxed),
            bytes_received: t.bytes_received.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One agent's place in the gauges; moving it keeps the gauges exact, and
/// dropping it (the agent task ends or is aborted) takes it out of them.
struct Place<'a> {
    shared: &'a Shared,
    connected: bool,
    ready: bool,
    reconnecting: bool,
    failed: bool,
}

impl<'a> Place<'a> {
    fn new(shared: &'a Shared) -> Self {
        Place {
            shared,
            connected: false,
            ready: false,
            reconnecting: false,
            failed: false,
        }
    }

    fn set(&mut self, connected: bool, ready: bool, reconnecting: bool, failed: bool) {
        let g = &self.shared.gauges;
        let flip = |gauge: &AtomicUsize, old: &mut bool, new: bool| {
            if *old != new {
                if new {
                    gauge.fetch_add(1, Ordering::Relaxed);
                } else {
                    gauge.fetch_sub(1, Ordering::Relaxed);
                }
                *old = new;
            }
        };
        flip(&g.connected, &mut self.connected, connected);
        flip(&g.ready, &mut self.ready, ready);
        flip(&g.reconnecting, &mut self.reconnecting, reconnecting);
        flip(&g.failed, &mut self.failed, failed);
        self.shared.changed.notify_waiters();
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        // A failed agent stays counted as failed.
        let failed = self.failed;
        self.set(false, false, false, failed);
    }
}

/// Full-jitter exponential backoff with a small private random generator.
struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration, seed: usize) -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(seed);
        Backoff {
            initial,
            max,
            attempt: 0,
            rng: h.finish() | 1,
        }
    }

    fn next(&mut self) -> Duration {
        let bound = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        bound.mul_f64(unit)
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A refusal that no retry can fix: the server answered 4xx (bad token,
/// agent unknown, no version both sides speak), except 408 and 429.
fn is_permanent(e: &Error) -> bool {
    matches!(e.status(), Some(s) if (400..500).contains(&s) && s != 408 && s != 429)
}

/// The calls an agent makes, for per-call metrics (label `rpc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    GetManifest,
    UpdateLifecycle,
    UpdateStats,
    BatchUpdateMetadata,
    BatchUpdateAppHealths,
    BatchCreateLogs,
    PostLogSource,
}

impl Rpc {
    #[cfg(feature = "metrics")]
    const ALL: [Rpc; 7] = [
        Rpc::GetManifest,
        Rpc::UpdateLifecycle,
        Rpc::UpdateStats,
        Rpc::BatchUpdateMetadata,
        Rpc::BatchUpdateAppHealths,
        Rpc::BatchCreateLogs,
        Rpc::PostLogSource,
    ];

    /// The DRPC method's name (the REST call's, for the log source).
    #[cfg(feature = "metrics")]
    fn name(self) -> &'static str {
        match self {
            Rpc::GetManifest => "GetManifest",
            Rpc::UpdateLifecycle => "UpdateLifecycle",
            Rpc::UpdateStats => "UpdateStats",
            Rpc::BatchUpdateMetadata => "BatchUpdateMetadata",
            Rpc::BatchUpdateAppHealths => "BatchUpdateAppHealths",
            Rpc::BatchCreateLogs => "BatchCreateLogs",
            Rpc::PostLogSource => "PostLogSource",
        }
    }
}

/// How a call ended (label `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// The server answered with an error.
    RemoteError,
    /// The connection failed under the call.
    TransportError,
    /// No answer within the call timeout.
    Timeout,
}

impl Outcome {
    #[cfg(feature = "metrics")]
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::RemoteError,
        Outcome::TransportError,
        Outcome::Timeout,
    ];

    #[cfg(feature = "metrics")]
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RemoteError => "remote_error",
            Outcome::TransportError => "transport_error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// How a connected session ended.
enum SessionEnd {
    /// The fleet is stopping.
    Stop,
    /// The connection broke (or a call timed out); dial again.
    Lost(String),
}

async fn run_agent(owner: Arc<Shared>, index: usize, client: Client) {
    let shared = &*owner;
    let mut place = Place::new(shared);
    let mut backoff = Backoff::new(shared.backoff.0, shared.backoff.1, index);
    let mut first = true;
    let mut log_source: Option<uuid::Uuid> = None;
    loop {
        let dialled = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return,
            // Boxed here and below: an idle agent's task then holds only its
            // waiting state, not the largest future it ever awaits.
            r = Box::pin(dial(shared, &client)) => r,
        };
        let rpc = match dialled {
            Ok(rpc) => rpc,
            Err(e) if is_permanent(&e) => {
                tracing::warn!(error = %e, "agent refused; giving up");
                lock(&shared.failures).push(AgentFailure {
                    index,
                    error: e.to_string(),
                });
                place.set(false, false, false, true);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "dial failed; retrying");
                place.set(false, false, true, false);
                let wait = backoff.next();
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if !first {
            shared.totals.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        place.set(true, false, false, false);
        tracing::debug!(version = %rpc.version(), "agent connected");
        let end = {
            let session = Session {
                shared,
                rpc: &rpc,
                client: &client,
                first,
                log_source: &mut log_source,
            };
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => SessionEnd::Stop,
                reason = rpc.connection.closed() => SessionEnd::Lost(reason.to_string()),
                end = Box::pin(session.run(&mut place)) => end,
            }
        };
        // Close now; the session driver finishes the close in its own task.
        rpc.connection.close();
        track_close(&owner, rpc.connection.clone());
        drop(rpc);
        first = false;
        match end {
            SessionEnd::Stop => return,
            SessionEnd::Lost(reason) => {
                tracing::debug!(%reason, "connection lost; reconnecting");
                place.set(false, false, true, false);
                backoff.reset();
                let wait = backoff.next();
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Counts a connection the agent closed as closing until its session
/// driver has finished (websocket closed, transport dropped).
fn track_close(shared: &Arc<Shared>, connection: crate::rpc::Connection) {
    shared.totals.closing.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    tokio::spawn(async move {
        // Bounded: the driver gives a close at most its close timeout.
        let _ = connection.closed().await;
        shared.totals.closing.fetch_sub(1, Ordering::SeqCst);
        shared.totals.closed.notify_waiters();
    });
}

async fn dial(shared: &Shared, client: &Client) -> Result<Negotiated, Error> {
    let _permit = shared
        .dials
        .acquire()
        .await
        .map_err(|_| Error::Config("fleet stopped".to_owned()))?;
    shared.totals.dials.fetch_add(1, Ordering::Relaxed);
    shared.gauges.dialing.fetch_add(1, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(
        shared.dial_timeout,
        client.connect_rpc_negotiated_with_role(Some(crate::rpc::ROLE_AGENT)),
    )
    .await;
    shared.gauges.dialing.fetch_sub(1, Ordering::Relaxed);
    let r = r.unwrap_or_else(|_| Err(Error::Timeout(format!("rpc dial after {:?}", shared.dial_timeout))));
    #[cfg(feature = "metrics")]
    shared.instruments.dial(r.is_ok(), started.elapsed());
    #[cfg(not(feature = "metrics"))]
    let _ = started;
    r
}

/// One connected period of an agent.
struct Session<'a> {
    shared: &'a Shared,
    rpc: &'a Negotiated,
    client: &'a Client,
    first: bool,
    log_source: &'a mut Option<uuid::Uuid>,
}

impl Session<'_> {
    /// Makes one counted call with the fleet's time limit. A transport
    /// failure or a timeout ends the session (`Err`); a remote error is only
    /// counted (`Ok(None)`).
    async fn call<Req, Resp, F, Fut>(&self, rpc: Rpc, request: Req, f: F) -> Result<Option<Resp>, SessionEnd>
    where
        Req: Message + Clone,
        Resp: Message,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, RpcError>>,
    {
        let totals = &self.shared.totals;
        totals
            .bytes_sent
            .fetch_add(request.encoded_len() as u64, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let r = tokio::time::timeout(self.shared.call_timeout, Box::pin(f(request))).await;
        let took = started.elapsed();
        match r {
            Ok(Ok(resp)) => {
                self.shared.observe_call(rpc, Outcome::Ok, took);
                totals
                    .bytes_received
                    .fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
                Ok(Some(resp))
            }
            Ok(Err(e @ RpcError::Remote { .. })) => {
                self.shared.observe_call(rpc, Outcome::RemoteError, took);
                tracing::debug!(error = %e, "rpc refused");
                Ok(None)
            }
            Ok(Err(e)) => {
                self.shared.observe_call(rpc, Outcome::TransportError, took);
                Err(SessionEnd::Lost(e.to_string()))
            }
            Err(_) => {
                self.shared.observe_call(rpc, Outcome::Timeout, took);
                Err(SessionEnd::Lost(format!(
                    "rpc timed out after {:?}",
                    self.shared.call_timeout
                )))
            }
        }
    }

    async fn run(mut self, place: &mut Place<'_>) -> SessionEnd {
        match self.run_inner(place).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn run_inner(&mut self, place: &mut Place<'_>) -> Result<std::convert::Infallible, SessionEnd> {
        let agent = self.rpc.agent.clone();
        let profile = &self.shared.profile;
        // Keep only what the profile uses; the rest of the manifest (the
        // DERP map above all) is freed at the end of this block.
        let (metadata_keys, app_ids) = {
            let manifest = Box::pin(self.call(Rpc::GetManifest, agent::GetManifestRequest {}, |r| {
                agent.get_manifest(r)
            }))
            .await?
            .unwrap_or_default();
            let metadata_keys: Vec<String> = match profile.metadata {
                Some(_) => manifest.metadata.iter().map(|d| d.key.clone()).collect(),
                None => Vec::new(),
            };
            let app_ids: Vec<Vec<u8>> = match profile.app_health {
                Some(_) => manifest
                    .apps
                    .iter()
                    .filter(|a| a.healthcheck.as_ref().is_some_and(|h| !h.url.is_empty()))
                    .map(|a| a.id.clone())
                    .collect(),
                None => Vec::new(),
            };
            (metadata_keys, app_ids)
        };
        let states: &[LifecycleState] = if self.first {
            &profile.lifecycle
        } else {
            profile.lifecycle.last().map(std::slice::from_ref).unwrap_or(&[])
        };
        for state in states {
            let request = agent::UpdateLifecycleRequest {
                lifecycle: Some(agent::Lifecycle {
                    state: *state as i32,
                    changed_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                }),
            };
            self.call(Rpc::UpdateLifecycle, request, |r| agent.update_lifecycle(r))
                .await?;
        }
        place.set(true, true, false, false);

        // Stats: a first empty report learns the interval.
        let mut stats_every = None;
        if profile.stats {
            let resp = self
                .call(Rpc::UpdateStats, agent::UpdateStatsRequest { stats: None }, |r| {
                    agent.update_stats(r)
                })
                .await?;
            stats_every = Some(report_interval(resp.as_ref()));
        }
        let mut stats_tick = ticker(stats_every);
        let mut metadata_tick = ticker(profile.metadata);
        let mut health_tick = ticker(profile.app_health);

        // Logs: a source registered once per agent, a sender per connection.
        let logs = match profile.logs {
            Some((lines_per_s, bytes)) => Box::pin(self.start_logs(lines_per_s, bytes)).await,
            None => None,
        };
        let mut log_tick = ticker(logs.as_ref().map(|_| Duration::from_secs(1)));
        let dest = CountingDest {
            agent: agent.clone(),
            shared: self.shared,
        };
        let mut log_loop = Box::pin(async {
            match &logs {
                Some(l) => match l.sender.send_loop(&dest).await {
                    Err(e) => e.to_string(),
                    Ok(never) => match never {},
                },
                None => std::future::pending().await,
            }
        });
        let mut log_carry = 0.0f64;
        let mut log_loop_done = false;
        let mut sent_stats = Stats::default();
        loop {
            tokio::select! {
                _ = tick(&mut stats_tick) => {
                    sent_stats.advance();
                    let resp = self
                        .call(Rpc::UpdateStats, agent::UpdateStatsRequest { stats: Some(sent_stats.to_proto()) }, |r| agent.update_stats(r))
                        .await?;
                    let every = report_interval(resp.as_ref());
                    if stats_tick.as_ref().is_some_and(|t| t.period() != every) {
                        stats_tick = ticker(Some(every));
                    }
                }
                _ = tick(&mut metadata_tick) => {
                    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
                    let metadata = metadata_keys
                        .iter()
                        .map(|key| agent::Metadata {
                            key: key.clone(),
                            result: Some(agent::workspace_agent_metadata::Result {
                                collected_at: Some(now),
                                age: 0,
                                value: "fleet".to_owned(),
                                error: String::new(),
                            }),
                        })
                        .collect();
                    self.call(Rpc::BatchUpdateMetadata, agent::BatchUpdateMetadataRequest { metadata }, |r| agent.batch_update_metadata(r)).await?;
                }
                _ = tick(&mut health_tick) => {
                    let updates = app_ids
                        .iter()
                        .map(|id| agent::batch_update_app_health_request::HealthUpdate {
                            id: id.clone(),
                            health: agent::AppHealth::Healthy as i32,
                        })
                        .collect::<Vec<_>>();
                    if !updates.is_empty() {
                        self.call(Rpc::BatchUpdateAppHealths, agent::BatchUpdateAppHealthRequest { updates }, |r| agent.batch_update_app_healths(r)).await?;
                    }
                }
                _ = tick(&mut log_tick) => {
                    if let Some(l) = &logs {
                        log_carry += l.lines_per_s;
                        let n = log_carry.floor() as usize;
                        log_carry -= n as f64;
                        let line = "x".repeat(l.bytes_per_line);
                        l.sender.enqueue(
                            l.source,
                            (0..n).map(|_| crate::agent::Log::new(LogLevel::Info, line.clone())),
                        );
                        l.sender.flush(l.source);
                    }
                }
                reason = &mut log_loop, if !log_loop_done => {
                    // The log limit was reached, or an upload failed (the
                    // connection is going): stop logging on this connection.
                    tracing::debug!(%reason, "log sender stopped");
                    log_loop_done = true;
                    log_tick = None;
                }
            }
        }
    }

    async fn start_logs(&mut self, lines_per_s: f64, bytes_per_line: usize) -> Option<Logs> {
        let source = match *self.log_source {
            Some(s) => s,
            None => {
                let request = crate::rest::types::PostLogSourceRequest {
                    id: uuid::Uuid::new_v4(),
                    display_name: "fleet".into(),
                    icon: "/emojis/1f69a.png".into(),
                };
                let started = tokio::time::Instant::now();
                let r = tokio::time::timeout(self.shared.call_timeout, self.client.post_log_source(&request)).await;
                let outcome = match &r {
                    Ok(Ok(_)) => Outcome::Ok,
                    Ok(Err(e)) if e.status().is_some() => Outcome::RemoteError,
                    Ok(Err(_)) => Outcome::TransportError,
                    Err(_) => Outcome::Timeout,
                };
                self.shared.observe_call(Rpc::PostLogSource, outcome, started.elapsed());
                match r {
                    Ok(Ok(_)) => {
                        *self.log_source = Some(request.id);
                        request.id
                    }
                    other => {
                        let error = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".to_owned(),
                        };
                        tracing::warn!(%error, "log source not registered; no logs on this connection");
                        return None;
                    }
                }
            }
        };
        Some(Logs {
            sender: LogSender::new(),
            source,
            lines_per_s,
            bytes_per_line,
        })
    }
}

struct Logs {
    sender: LogSender,
    source: uuid::Uuid,
    lines_per_s: f64,
    bytes_per_line: usize,
}

/// The log sender's destination: the agent client, with the fleet's counters.
struct CountingDest<'a> {
    agent: crate::rpc::agent::AgentLatest,
    shared: &'a Shared,
}

impl LogDest for CountingDest<'_> {
    fn upload_logs(
        &self,
        request: agent::BatchCreateLogsRequest,
    ) -> impl Future<Output = Result<agent::BatchCreateLogsResponse, RpcError>> + Send {
        let sent = request.encoded_len() as u64;
        let call = self.agent.batch_create_logs(request);
        let shared = self.shared;
        async move {
            shared.totals.bytes_sent.fetch_add(sent, Ordering::Relaxed);
            let started = tokio::time::Instant::now();
            let r = call.await;
            let outcome = match &r {
                Ok(resp) => {
                    shared
                        .totals
                        .bytes_received
                        .fetch_add(resp.encoded_len() as u64, Ordering::Relaxed);
                    Outcome::Ok
                }
                Err(RpcError::Remote { .. }) => Outcome::RemoteError,
                Err(_) => Outcome::TransportError,
            };
            shared.observe_call(Rpc::BatchCreateLogs, outcome, started.elapsed());
            r
        }
    }
}

/// The `report_interval` of an `UpdateStats` answer (30 s when missing or
/// not positive, as the Go agent falls back to).
fn report_interval(resp: Option<&agent::UpdateStatsResponse>) -> Duration {
    resp.and_then(|r| r.report_interval)
        .and_then(|d| {
            let secs = u64::try_from(d.seconds).ok()?;
            let nanos = u32::try_from(d.nanos).ok()?;
            Some(Duration::new(secs, nanos))
        })
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30))
}

fn ticker(every: Option<Duration>) -> Option<tokio::time::Interval> {
    every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Plausible, slowly growing network stats.
#[derive(Default)]
struct Stats {
    reports: i64,
}

impl Stats {
    fn advance(&mut self) {
        self.reports += 1;
    }

    fn to_proto(&self) -> agent::Stats {
        agent::Stats {
            connection_count: 1,
            connection_median_latency_ms: 1.0,
            rx_packets: self.reports * 10,
            rx_bytes: self.reports * 1_000,
            tx_packets: self.reports * 10,
            tx_bytes: self.reports * 1_000,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_bound_capped_at_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
        let bounds = [100, 200, 400, 800, 1000, 1000, 1000];
        let mut draws = Vec::new();
        for bound in bounds {
            let d = b.next();
            assert!(d < Duration::from_millis(bound), "{d:?} >= {bound} ms");
            draws.push(d);
        }
        // Random, not a fixed schedule: the draws are not all equal.
        assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
        b.reset();
        assert!(b.next() < Duration::from_millis(100));
        // Over many agents the first delays spread over the whole window.
        let firsts: Vec<Duration> = (0..1000)
            .map(|i| Backoff::new(Duration::from_secs(1), Duration::from_secs(30), i).next())
            .collect();
        let early = firsts.iter().filter(|d| **d < Duration::from_millis(500)).count();
        assert!((300..700).contains(&early), "{early} of 1000 in the first half");
    }

    #[test]
    fn tokens_file_skips_blank_and_comment_lines_and_limit_takes_the_first() {
        let path = std::env::temp_dir().join(format!("fleet-tokens-test-{}.txt", std::process::id()));
        std::fs::write(&path, "# agents\n  tok-a  \n\ntok-b\n#tok-x\ntok-c\n").unwrap();
        let b = Fleet::builder("http://127.0.0.1:1").tokens_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        match &b.tokens {
            TokenSource::List(v) => assert_eq!(v, &["tok-a", "tok-b", "tok-c"]),
            TokenSource::Generated(..) => panic!("a file gives a list"),
        }
        assert_eq!(b.limit(2).token_count(), 2);
        let missing = Fleet::builder("http://127.0.0.1:1").tokens_file("/nonexistent/tokens.txt");
        assert!(matches!(missing, Err(Error::Config(m)) if m.contains("/nonexistent/tokens.txt")));
    }

    #[test]
    fn builder_debug_shows_no_token() {
        let b = Fleet::builder("http://127.0.0.1:1").tokens(["secret-token-value"]);
        let shown = format!("{b:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(shown.contains("tokens: 1"), "{shown}");
    }

    #[test]
    fn a_4xx_refusal_is_permanent_but_timeouts_and_rate_limits_are_not() {
        let api = |status| {
            Error::from(crate::error::ApiError::from_response_parts(
                status, None, None, None, b"",
            ))
        };
        assert!(is_permanent(&api(401)));
        assert!(is_permanent(&api(400)));
        assert!(!is_permanent(&api(429)));
        assert!(!is_permanent(&api(408)));
        assert!(!is_permanent(&api(502)));
        assert!(!is_permanent(&Error::WebSocket("IO error: Connection refused".into())));
    }
}
