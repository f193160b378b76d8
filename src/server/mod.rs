//! An embedded coderd for the agent APIs, built from the same pieces as the
//! client: a real HTTP server on a TCP port whose RPC endpoint speaks
//! websocket → yamux → DRPC exactly as coderd does, with coderd's token and
//! version checks and error bodies. Tests, the demo and the test kit run on
//! it; a Go agent can be pointed at it too (`cargo run --example server`).
//!
//! It is an honest peer: the same 4 MiB message limit, yamux windows and
//! error texts as coderd; it is never lenient to hide a client bug.

mod api;
mod listener;
mod recording;
pub mod rest;
mod rpc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Response, StatusCode, Uri};
use tokio_util::sync::CancellationToken;

pub use api::{AgentRecord, FakeApi, FakeApiHandle, Fault, Recorded};
pub use recording::DEFAULT_RECORD_LIMIT;
pub use rpc::validate_version;

use crate::drpc::{ApiVersion, Router};
use crate::error::Response as ErrorBody;
use crate::mux::yamux::Session;
use crate::proto::{agent, tailnet};
use crate::rpc::agent::AgentService;
use crate::rpc::tailnet::TailnetService;

/// The cookie and query parameter coderd also accepts the token from.
const SESSION_TOKEN_COOKIE: &str = "coder_session_token";

/// Configures and starts an [`EmbeddedServer`].
#[derive(Debug)]
pub struct ServerBuilder {
    token: String,
    max_version: ApiVersion,
    manifest: Option<agent::Manifest>,
    listen: SocketAddr,
    keepalive: Option<(Duration, Duration)>,
    limits: Limits,
    record_limit: usize,
    tokens: Vec<String>,
    keep_history: bool,
    reinit_shape: crate::sse::ReinitEventShape,
    prebuild: rest::PrebuildState,
    tls: Option<TlsSetting>,
}

/// The server's TLS config, or why it could not be built (reported by
/// [`ServerBuilder::start`]). Its Debug shows neither key nor certificates.
struct TlsSetting(Result<Arc<rustls::ServerConfig>, String>);

impl std::fmt::Debug for TlsSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_ok() {
            "TlsSetting(ok)"
        } else {
            "TlsSetting(error)"
        })
    }
}

/// Limits that protect the server from slow or hostile peers. Set through
/// [`ServerBuilder`]; the defaults suit tests and a demo coderd.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) handshake_timeout: Duration,
    pub(crate) first_stream_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_streams_per_connection: usize,
}

/// Default of [`ServerBuilder::handshake_timeout`]: 30 s (hyper's and
/// Go's common `ReadHeaderTimeout` order of magnitude).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`ServerBuilder::first_stream_timeout`]: 60 s.
pub const DEFAULT_FIRST_STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`ServerBuilder::max_connections`]: 4096 TCP connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of [`ServerBuilder::max_streams_per_connection`]: 1024.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            first_stream_timeout: DEFAULT_FIRST_STREAM_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }
}

/// How often the server pings each agent's websocket, as coderd does.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long an agent may leave pings unanswered before it is dropped.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            token: uuid::Uuid::new_v4().to_string(),
            max_version: crate::rpc::CURRENT_VERSION,
            manifest: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            keepalive: Some((DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT)),
            limits: Limits::default(),
            record_limit: DEFAULT_RECORD_LIMIT,
            tokens: Vec::new(),
            keep_history: true,
            reinit_shape: crate::sse::ReinitEventShape::Current,
            prebuild: rest::PrebuildState::Unclaimed,
            tls: None,
        }
    }
}

impl ServerBuilder {
    /// The agent token the server accepts (default: a random UUID).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// More agent tokens to accept, each a distinct agent: its manifest
    /// carries its own agent id and the server counts its connections and
    /// reports separately ([`EmbeddedServer::agents`]). The main
    /// [`token`](Self::token) stays accepted. Duplicates count once.
    pub fn tokens<I, T>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tokens.extend(tokens.into_iter().map(Into::into));
        self
    }

    /// Whether [`FakeApi::recorded`] keeps every report (default `true`);
    /// see [`FakeApi::set_keep_history`].
    pub fn keep_history(mut self, keep: bool) -> Self {
        self.keep_history = keep;
        self
    }

    /// The newest API version the server accepts (default: the crate's newest).
    pub fn max_version(mut self, version: ApiVersion) -> Self {
        self.max_version = version;
        self
    }

    /// The manifest `GetManifest` returns (default: [`demo_manifest`]).
    pub fn manifest(mut self, manifest: agent::Manifest) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Where to listen (default `127.0.0.1:0`, a free loopback port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Websocket pings to each agent every `interval`, dropping an agent
    /// that answered none for `timeout` (coderd's connection monitor);
    /// `None` turns them off. Default: every 15 s, 60 s timeout.
    pub fn websocket_keepalive(mut self, keepalive: Option<(Duration, Duration)>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// How long a client may take to send the headers of a request,
    /// including the websocket upgrade request of the RPC endpoint; a
    /// keep-alive connection idle for this long between requests is closed
    /// too. Slowloris protection. Default [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handshake_timeout = timeout;
        self
    }

    /// How long an upgraded RPC connection may stay without opening its
    /// first yamux stream before the server closes it. Default
    /// [`DEFAULT_FIRST_STREAM_TIMEOUT`].
    pub fn first_stream_timeout(mut self, timeout: Duration) -> Self {
        self.limits.first_stream_timeout = timeout;
        self
    }

    /// TCP connections served at once (REST and RPC together); further
    /// connections are accepted and closed at once, without a response.
    /// Default [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.max(1);
        self
    }

    /// yamux streams one RPC connection may have open at once; streams past
    /// the cap are refused with RST (the session lives on). Default
    /// [`DEFAULT_MAX_STREAMS_PER_CONNECTION`].
    pub fn max_streams_per_connection(mut self, max: usize) -> Self {
        self.limits.max_streams_per_connection = max.max(1);
        self
    }

    /// How many reports each recording keeps (the RPC reports of
    /// [`FakeApi::recorded`] and each REST recording of [`rest::RestState`]);
    /// older entries are dropped and counted ([`FakeApi::recorded_dropped`],
    /// [`rest::RestState::dropped`]). Default [`DEFAULT_RECORD_LIMIT`].
    pub fn record_limit(mut self, limit: usize) -> Self {
        self.record_limit = limit;
        self
    }

    /// The JSON shape of reinit events (default: today's coderd);
    /// [`ReinitEventShape::Legacy`](crate::sse::ReinitEventShape::Legacy)
    /// plays a coderd from before coder/coder#23108. Changeable later with
    /// [`rest::RestState::set_reinit_event_shape`].
    pub fn reinit_event_shape(mut self, shape: crate::sse::ReinitEventShape) -> Self {
        self.reinit_shape = shape;
        self
    }

    /// The workspace's prebuild claim state, which decides how reinit
    /// requests with `wait=true` are answered (default: unclaimed, so they
    /// wait for events). Changeable later with [`rest::RestState::set_prebuild_state`].
    pub fn prebuild_state(mut self, state: rest::PrebuildState) -> Self {
        self.prebuild = state;
        self
    }

    /// Serves HTTPS (and `wss://` for the RPC endpoint) with `cert_chain`
    /// (the server's certificate first, then any intermediates) and its
    /// private `key`, HTTP/1.1 only. The TLS handshake must finish within
    /// [`handshake_timeout`](Self::handshake_timeout) too (then the request
    /// headers get their own such deadline). [`EmbeddedServer::url`]
    /// then says `https://` with the listening IP address, so the
    /// certificate must name that IP (or reach the server by a name it
    /// carries). A chain and key that do not fit together make
    /// [`start`](Self::start) fail.
    pub fn tls(
        mut self,
        cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Self {
        let config =
            crate::net::tls::server_config(cert_chain, key).map_err(|e| format!("tls certificate and key: {e}"));
        self.tls = Some(TlsSetting(config));
        self
    }

    /// [`tls`](Self::tls) from PEM: every certificate of `cert_pem` (leaf
    /// first) and the first private key of `key_pem` (PKCS#8, PKCS#1 or
    /// SEC1). Unreadable PEM makes [`start`](Self::start) fail.
    pub fn tls_pem(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Self {
        let parsed = crate::net::tls::certificates_from_pem(cert_pem)
            .and_then(|chain| Ok((chain, crate::net::tls::private_key_from_pem(key_pem)?)));
        match parsed {
            Ok((chain, key)) => self.tls(chain, key),
            Err(e) => {
                self.tls = Some(TlsSetting(Err(e)));
                self
            }
        }
    }

    /// Binds and starts serving in the background. Fails if the address
    /// cannot be bound or the TLS settings are unusable.
    pub async fn start(self) -> std::io::Result<EmbeddedServer> {
        let tls = match self.tls {
            None => None,
            Some(TlsSetting(Ok(config))) => Some(tokio_rustls::TlsAcceptor::from(config)),
            Some(TlsSetting(Err(e))) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
        };
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = url::Url::parse(&format!("{scheme}://{addr}/")).map_err(std::io::Error::other)?;
        let api = Arc::new(FakeApi::new(self.manifest.unwrap_or_else(|| demo_manifest(&base_url))));
        api.set_record_limit(self.record_limit);
        api.set_keep_history(self.keep_history);
        let handle = FakeApiHandle(api.clone());
        let mut agents = HashMap::with_capacity(self.tokens.len() + 1);
        agents.insert(
            self.token.clone(),
            Arc::new(api::AgentEntry::new(uuid::Uuid::new_v4(), false)),
        );
        for token in self.tokens {
            agents
                .entry(token)
                .or_insert_with(|| Arc::new(api::AgentEntry::new(uuid::Uuid::new_v4(), true)));
        }
        let shutdown = CancellationToken::new();
        let state = ServerState {
            inner: Arc::new(StateInner {
                stopped: shutdown.clone(),
                agent_tokens: agents,
                token: self.token,
                keepalive: self.keepalive,
                limits: self.limits,
                tls: tls.is_some(),
                max_version: Mutex::new(self.max_version),
                upgrade_refusal: Mutex::new(None),
                router: Router::new()
                    .with_service(AgentService::new(handle.clone()))
                    .with_service(TailnetService::new(handle)),
                api,
                rest: {
                    let rest = rest::RestState::default();
                    rest.set_record_limit(self.record_limit);
                    rest.set_reinit_event_shape(self.reinit_shape);
                    rest.set_prebuild_state(self.prebuild);
                    rest
                },
                connections: Mutex::new(Vec::new()),
                open_tcp: Arc::default(),
            }),
        };
        let app = axum::Router::new()
            .route("/api/v2/workspaceagents/me/rpc", axum::routing::get(rpc::handle))
            .merge(rest::routes())
            .fallback(not_found)
            .with_state(state.clone());
        let task = tokio::spawn(listener::serve(
            listener,
            app,
            tls,
            self.limits,
            state.inner.open_tcp.clone(),
            shutdown.clone(),
        ));
        Ok(EmbeddedServer {
            addr,
            base_url,
            state,
            shutdown,
            _task: task,
        })
    }
}

/// A running embedded coderd. Dropping it stops the listener and ends every agent connection.
#[derive(Debug)]
pub struct EmbeddedServer {
    addr: SocketAddr,
    base_url: url::Url,
    state: ServerState,
    shutdown: CancellationToken,
    _task: tokio::task::JoinHandle<()>,
}

impl EmbeddedServer {
    /// A builder with defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Starts a server with defaults (random token, newest version, demo manifest).
    pub async fn start() -> std::io::Result<EmbeddedServer> {
        ServerBuilder::default().start().await
    }

    /// The server's base URL (`http://127.0.0.1:PORT/`, or `https://` with
    /// [`ServerBuilder::tls`]).
    pub fn url(&self) -> &url::Url {
        &self.base_url
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent token it accepts.
    pub fn token(&self) -> &str {
        &self.state.inner.token
    }

    /// What the server recorded per agent token (the main token first, then
    /// the others of [`ServerBuilder::tokens`] in no particular order).
    pub fn agents(&self) -> Vec<AgentRecord> {
        let inner = &self.state.inner;
        let main = inner.agent_tokens.get(&inner.token).map(|a| a.snapshot());
        main.into_iter()
            .chain(
                inner
                    .agent_tokens
                    .iter()
                    .filter(|(t, _)| **t != inner.token)
                    .map(|(_, a)| a.snapshot()),
            )
            .collect()
    }

    /// What the server recorded for the agent with this token.
    pub fn agent(&self, token: &str) -> Option<AgentRecord> {
        self.state.inner.agent_tokens.get(token).map(|a| a.snapshot())
    }

    /// The RPC state: manifest, recorded reports, fault injection.
    pub fn api(&self) -> &Arc<FakeApi> {
        &self.state.inner.api
    }

    /// The REST state (log sources, app statuses, reinit events ...).
    pub fn rest(&self) -> &rest::RestState {
        &self.state.inner.rest
    }

    /// Changes the newest API version accepted from now on.
    pub fn set_max_version(&self, version: ApiVersion) {
        *lock(&self.state.inner.max_version) = version;
    }

    /// Refuses websocket upgrades (after the token and version checks) with
    /// this status and body, until cleared with `None`.
    pub fn refuse_upgrades(&self, refusal: Option<(u16, ErrorBody)>) {
        *lock(&self.state.inner.upgrade_refusal) = refusal;
    }

    /// TCP connections currently held (REST and RPC, upgraded or not).
    pub fn tcp_connections(&self) -> usize {
        self.state.inner.open_tcp.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Agent RPC connections currently open.
    pub fn connections(&self) -> usize {
        lock(&self.state.inner.connections).len()
    }

    /// The version and role of every open agent RPC connection.
    pub fn connection_info(&self) -> Vec<ConnectionInfo> {
        lock(&self.state.inner.connections)
            .iter()
            .map(|c| c.info.clone())
            .collect()
    }

    /// yamux streams open on the server side, across all connections.
    pub fn open_streams(&self) -> usize {
        lock(&self.state.inner.connections)
            .iter()
            .map(|c| c.session.open_streams())
            .sum()
    }

    /// Drops every agent connection (the agent sees its session end).
    pub fn disconnect_all(&self) {
        for c in lock(&self.state.inner.connections).iter() {
            c.kick.cancel();
        }
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        self.disconnect_all();
        self.shutdown.cancel();
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Shared state of the HTTP handlers.
#[derive(Clone, Debug)]
pub(crate) struct ServerState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    /// Cancelled when the server stops. Every connection's kick token is a
    /// child of it, so a websocket upgraded while the server is stopping
    /// (its request already read when the listener stopped) ends too.
    stopped: CancellationToken,
    token: String,
    /// Every accepted token and its agent.
    agent_tokens: HashMap<String, Arc<api::AgentEntry>>,
    keepalive: Option<(Duration, Duration)>,
    limits: Limits,
    /// Serving TLS: websockets then take the smaller read buffer
    /// ([`crate::mux::websocket::server_config_tls`]).
    tls: bool,
    /// TCP connections held right now.
    open_tcp: Arc<std::sync::atomic::AtomicUsize>,
    max_version: Mutex<ApiVersion>,
    upgrade_refusal: Mutex<Option<(u16, ErrorBody)>>,
    router: Router,
    api: Arc<FakeApi>,
    rest: rest::RestState,
    connections: Mutex<Vec<Arc<ConnectionEntry>>>,
}

/// One open agent RPC connection.
#[derive(Debug)]
pub(crate) struct ConnectionEntry {
    session: Session,
    kick: CancellationToken,
    info: ConnectionInfo,
}

/// What an agent sent when it opened its RPC connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The API version it dialled (`2.0` when it sent none).
    pub version: ApiVersion,
    /// The `role` query parameter (empty when absent).
    pub role: String,
}

impl ConnectionEntry {
    pub(crate) async fn kicked(&self) {
        self.kick.cancelled().await
    }
}

impl ServerState {
    pub(crate) fn max_version(&self) -> ApiVersion {
        *lock(&self.inner.max_version)
    }

    pub(crate) fn keepalive(&self) -> Option<(Duration, Duration)> {
        self.inner.keepalive
    }

    /// The websocket settings of an upgraded RPC connection: over TLS the
    /// read buffer is smaller, since rustls already buffers the socket.
    pub(crate) fn websocket_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        if self.inner.tls {
            crate::mux::websocket::server_config_tls()
        } else {
            crate::mux::websocket::server_config()
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        self.inner.limits
    }

    pub(crate) fn router(&self) -> Router {
        self.inner.router.clone()
    }

    /// The REST endpoints' state.
    pub(crate) fn rest(&self) -> &rest::RestState {
        &self.inner.rest
    }

    /// The agent token the server accepts.
    pub(crate) fn token(&self) -> &str {
        &self.inner.token
    }

    /// The RPC state (for the agent id of the manifest).
    pub(crate) fn api(&self) -> &Arc<FakeApi> {
        &self.inner.api
    }

    pub(crate) fn upgrade_refusal(&self) -> Option<Response<Body>> {
        let refusal = lock(&self.inner.upgrade_refusal).clone()?;
        let status = StatusCode::from_u16(refusal.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Some(api_error(status, refusal.1))
    }

    pub(crate) fn connection_opened(&self, info: ConnectionInfo, session: Session) -> Arc<ConnectionEntry> {
        let entry = Arc::new(ConnectionEntry {
            session,
            kick: self.inner.stopped.child_token(),
            info,
        });
        lock(&self.inner.connections).push(entry.clone());
        entry
    }

    pub(crate) fn connection_closed(&self, entry: &Arc<ConnectionEntry>) {
        lock(&self.inner.connections).retain(|c| !Arc::ptr_eq(c, entry));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A coderd-style JSON error response.
pub(crate) fn api_error(status: StatusCode, body: ErrorBody) -> Response<Body> {
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"message\":\"internal error\"}".to_vec());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(json))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// coderd's workspace-agent authentication: the token from the cookie, the
/// query or the header; 401 with coderd's messages when missing or wrong.
pub(crate) fn authenticate(state: &ServerState, headers: &HeaderMap, uri: &Uri) -> Result<(), Box<Response<Body>>> {
    authenticate_agent(state, headers, uri).map(|_| ())
}

/// [`authenticate`], returning the agent the token belongs to.
pub(crate) fn authenticate_agent(
    state: &ServerState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Arc<api::AgentEntry>, Box<Response<Body>>> {
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_TOKEN_COOKIE)
        .map(|(_, v)| v.to_owned());
    let from_query = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == SESSION_TOKEN_COOKIE)
            .map(|(_, v)| v.into_owned())
    });
    let from_header = headers
        .get(crate::auth::SESSION_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = from_cookie.or(from_query).or(from_header).filter(|t| !t.is_empty());
    match token {
        None => Err(Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            ErrorBody {
                message: format!("Cookie \"{SESSION_TOKEN_COOKIE}\" must be provided."),
                ..ErrorBody::default()
            },
        ))),
        Some(t) if state.inner.agent_tokens.contains_key(&t) => Ok(state.inner.agent_tokens[&t].clone()),
        Some(_) => Err(Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            ErrorBody {
                message: "Workspace agent not authorized.".to_owned(),
                detail: "The agent cannot authenticate until the workspace provision job has been completed. If the job is no longer running, this agent is invalid.".to_owned(),
                ..ErrorBody::default()
            },
        ))),
    }
}

async fn not_found() -> Response<Body> {
    api_error(
        StatusCode::NOT_FOUND,
        ErrorBody {
            message: "Route not found.".to_owned(),
            ..ErrorBody::default()
        },
    )
}

/// A plausible manifest for demos: one app, one startup script, one
/// metadata item and an embedded DERP relay at `base_url`.
pub fn demo_manifest(base_url: &url::Url) -> agent::Manifest {
    let id = |n: u8| {
        let mut b = uuid::Uuid::new_v4().into_bytes();
        b[15] = n;
        b.to_vec()
    };
    let log_source = id(1);
    agent::Manifest {
        agent_id: id(2),
        agent_name: "main".to_owned(),
        owner_username: "demo".to_owned(),
        workspace_id: id(3),
        workspace_name: "embedded".to_owned(),
        git_auth_configs: 0,
        environment_variables: [("CODER".to_owned(), "true".to_owned())].into(),
        directory: "~".to_owned(),
        vs_code_port_proxy_uri: format!("{}{{{{port}}}}", base_url),
        motd_path: "/etc/motd".to_owned(),
        disable_direct_connections: false,
        derp_force_websockets: false,
        parent_id: None,
        derp_map: Some(tailnet::DerpMap {
            home_params: Some(tailnet::derp_map::HomeParams {
                region_score: [(999, 1.0)].into(),
            }),
            regions: [(
                999,
                tailnet::derp_map::Region {
                    region_id: 999,
                    embedded_relay: true,
                    region_code: "coder".to_owned(),
                    region_name: "Coder Embedded Relay".to_owned(),
                    avoid: false,
                    nodes: vec![tailnet::derp_map::region::Node {
                        name: "999a".to_owned(),
                        region_id: 999,
                        host_name: base_url.host_str().unwrap_or("127.0.0.1").to_owned(),
                        derp_port: base_url.port_or_known_default().map(i32::from).unwrap_or(80),
                        stun_port: -1,
                        force_http: base_url.scheme() == "http",
                        ..Default::default()
                    }],
                },
            )]
            .into(),
        }),
        scripts: vec![agent::WorkspaceAgentScript {
            log_source_id: log_source,
            log_path: "coder-startup-script.log".to_owned(),
            script: "echo hello from the startup script".to_owned(),
            run_on_start: true,
            start_blocks_login: true,
            timeout: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
            display_name: "Startup Script".to_owned(),
            id: id(4),
            ..Default::default()
        }],
        apps: vec![agent::WorkspaceApp {
            id: id(5),
            url: "http://localhost:8080".to_owned(),
            slug: "code-server".to_owned(),
            display_name: "code-server".to_owned(),
            sharing_level: agent::workspace_app::SharingLevel::Owner as i32,
            healthcheck: Some(agent::workspace_app::Healthcheck {
                url: "http://localhost:8080/healthz".to_owned(),
                interval: Some(prost_types::Duration { seconds: 5, nanos: 0 }),
                threshold: 6,
            }),
            health: agent::workspace_app::Health::Initializing as i32,
            ..Default::default()
        }],
        metadata: vec![agent::workspace_agent_metadata::Description {
            display_name: "Load".to_owned(),
            key: "load".to_owned(),
            script: "cat /proc/loadavg".to_owned(),
            interval: Some(prost_types::Duration { seconds: 0, nanos: 10 }),
            timeout: Some(prost_types::Duration { seconds: 0, nanos: 1 }),
        }],
        devcontainers: Vec::new(),
        secrets: Vec::new(),
    }
}

#[cfg(test)]
mod stop_tests {
    use super::*;

    /// A websocket upgraded after `shutdown()` (its request was already read
    /// when the listener stopped) is registered with its kick already
    /// fired, so it ends at once instead of outliving the server: the race
    /// that left one agent of a restarted fleet on a stopped server.
    #[tokio::test]
    async fn a_connection_registered_after_shutdown_is_kicked_at_once() {
        let server = ServerBuilder::default()
            .listen("127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        let (io, _peer) = tokio::io::duplex(1024);
        let (session, _incoming) = crate::mux::yamux::Session::server(io, Default::default());
        let info = ConnectionInfo {
            version: crate::drpc::ApiVersion::new(2, 0),
            role: String::new(),
        };
        let before = server.state.connection_opened(info.clone(), session.clone());
        assert!(
            !before.kick.is_cancelled(),
            "a live server does not kick new connections"
        );
        server.shutdown();
        assert!(before.kick.is_cancelled(), "shutdown kicks the connections it knows");
        let after = server.state.connection_opened(info, session);
        tokio::time::timeout(std::time::Duration::from_secs(5), after.kicked())
            .await
            .expect("a connection registered after shutdown is kicked at once");
    }
}
