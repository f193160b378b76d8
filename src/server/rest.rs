//! The REST endpoints of the embedded coderd: the Git SSH key, logs (PATCH),
//! app status, log sources, external auth (with `listen`), the reinit
//! event stream, the (experimental upstream) chat-context refresh and the
//! three cloud instance-identity exchanges, with
//! coderd's status codes, JSON bodies and error texts.
//!
//! [`RestState`] holds what the endpoints serve and records what agents
//! send, for tests to set and inspect through
//! [`super::EmbeddedServer::rest`]. Request bodies are decoded as Go's
//! `encoding/json` would (unknown keys ignored, missing keys zero) and
//! refused as coderd's `httpapi.Read` does. It never logs a token, key or
//! identity.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Response, StatusCode, Uri};
use axum::routing::{get, patch, post};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::recording::Recording;
use super::{api_error, authenticate, ServerState};
use crate::error::{Response as ErrorBody, ValidationError};
use crate::rest::types::{PatchAppStatus, WorkspaceAgentLogSource, WorkspaceAppStatusState};
use crate::sse::{ReinitEventShape, ReinitTransmitter, ReinitializationEvent, TransmitError, PING_INTERVAL};
use crate::types::{ExternalAuthResponse, EXTERNAL_LOG_SOURCE_ID};

/// The paths served here.
mod paths {
    pub const GIT_SSH_KEY: &str = "/api/v2/workspaceagents/me/gitsshkey";
    pub const LOGS: &str = "/api/v2/workspaceagents/me/logs";
    pub const APP_STATUS: &str = "/api/v2/workspaceagents/me/app-status";
    pub const LOG_SOURCE: &str = "/api/v2/workspaceagents/me/log-source";
    pub const EXTERNAL_AUTH: &str = "/api/v2/workspaceagents/me/external-auth";
    pub const REINIT: &str = "/api/v2/workspaceagents/me/reinit";
    pub const CHAT_CONTEXT_REFRESH: &str = "/api/v2/workspaceagents/me/experimental/chat-context/refresh";
    pub const AWS: &str = "/api/v2/workspaceagents/aws-instance-identity";
    pub const AZURE: &str = "/api/v2/workspaceagents/azure-instance-identity";
    pub const GOOGLE: &str = "/api/v2/workspaceagents/google-instance-identity";
}

/// One REST request as it arrived (the token's value is never kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    /// Every header name, lower case, in arrival order.
    pub header_names: Vec<String>,
    /// The `User-Agent`, if any.
    pub user_agent: Option<String>,
    /// The `Accept`, if any.
    pub accept: Option<String>,
    /// Whether a `Coder-Session-Token` header was present.
    pub had_token_header: bool,
}

/// One log line received by `PATCH /logs`, after coderd's defaults
/// (an empty level is `info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLog {
    /// `created_at` as sent (the zero time when absent).
    pub created_at: DateTime<Utc>,
    /// The output.
    pub output: String,
    /// The level.
    pub level: String,
}

/// One accepted `PATCH /logs` batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLogs {
    /// The log source (the "External" source when the agent sent the nil UUID).
    pub log_source_id: Uuid,
    /// The lines.
    pub logs: Vec<RecordedLog>,
}

/// An external-auth provider the server knows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExternalAuthProvider {
    /// Its ID (query `id`).
    pub id: String,
    /// The provider type (`github`, `gitlab`, `bitbucket-cloud`, ...).
    pub type_: String,
    /// A `match` query selects this provider when it contains this text
    /// (coderd uses a regex; containment is enough for tests). Empty never matches.
    pub match_contains: String,
    /// The user's access token, once they have authenticated.
    pub access_token: Option<String>,
    /// Extra token fields passed on as `token_extra`.
    pub token_extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// When the token expires (`expires_at`; `None` sends Go's zero time).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where the workspace stands in coderd's prebuild claim, which decides how
/// the reinit endpoint answers an agent that sends `wait=true` (coderd's
/// durable claim check). Without `wait` every state just relays
/// [`RestState::send_reinit`] events, as coderd only relays claim events
/// then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrebuildState {
    /// A prebuild not claimed yet (or a claim whose build is still running):
    /// the stream waits for [`RestState::send_reinit`] events.
    #[default]
    Unclaimed,
    /// A regular workspace, never a prebuild: 409.
    Regular,
    /// A claimed prebuild whose claim build succeeded: this event at once,
    /// then the stream stays open (pings only).
    Claimed(ReinitializationEvent),
    /// A claim build that failed, with the job's error: 409.
    ClaimFailed(String),
    /// A claim already handled by a later, user-initiated build: 409.
    ClaimHandled,
}

/// Which cloud an identity exchange was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// `aws-instance-identity`.
    Aws,
    /// `azure-instance-identity`.
    Azure,
    /// `google-instance-identity`.
    Google,
}

/// One identity exchange as posted. `Debug` shows only the body's keys.
#[derive(Clone, PartialEq)]
pub struct IdentityExchange {
    /// The endpoint.
    pub cloud: Cloud,
    /// The JSON body exactly as posted.
    pub body: serde_json::Value,
    /// Whether a session token was handed out.
    pub accepted: bool,
    /// Whether a `Coder-Session-Token` header came with it (it must not).
    pub had_token_header: bool,
}

impl fmt::Debug for IdentityExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        f.debug_struct("IdentityExchange")
            .field("cloud", &self.cloud)
            .field("body_keys", &keys)
            .field("accepted", &self.accepted)
            .field("had_token_header", &self.had_token_header)
            .finish()
    }
}

#[derive(Default)]
struct Identities {
    aws: Option<(String, String)>,
    azure: Option<(String, String)>,
    google: Option<String>,
}

/// Records dropped by each bounded REST recording (see [`RestState::dropped`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestDropped {
    /// From [`RestState::requests`].
    pub requests: u64,
    /// From [`RestState::logs`].
    pub logs: u64,
    /// From [`RestState::app_statuses`].
    pub app_statuses: u64,
    /// From [`RestState::reinit_outcomes`].
    pub reinit_outcomes: u64,
    /// From [`RestState::identity_exchanges`].
    pub identity_exchanges: u64,
}

/// State behind the REST endpoints: what they serve and what they recorded.
pub struct RestState {
    git_ssh_key: Mutex<(String, String)>,
    requests: Mutex<Recording<RecordedRequest>>,
    log_sources: Mutex<Vec<WorkspaceAgentLogSource>>,
    logs: Mutex<Recording<RecordedLogs>>,
    app_statuses: Mutex<Recording<PatchAppStatus>>,
    providers: Mutex<Vec<ExternalAuthProvider>>,
    providers_changed: watch::Sender<u64>,
    reinit_streams: Mutex<Vec<mpsc::Sender<ReinitializationEvent>>>,
    reinit_changed: watch::Sender<u64>,
    reinit_outcomes: Mutex<Recording<TransmitError>>,
    reinit_shape: Mutex<ReinitEventShape>,
    prebuild: Mutex<PrebuildState>,
    ping_interval: Mutex<Duration>,
    chat_context_refreshed: Mutex<i64>,
    identities: Mutex<Identities>,
    exchanges: Mutex<Recording<IdentityExchange>>,
    exchange_tokens: Mutex<VecDeque<String>>,
}

impl fmt::Debug for RestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestState").finish_non_exhaustive()
    }
}

impl Default for RestState {
    fn default() -> Self {
        RestState {
            git_ssh_key: Mutex::new((
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmbeddedCoderdTestKeyOnlyForTests embedded@coder".to_owned(),
                "-----BEGIN OPENSSH PRIVATE KEY-----\nembedded-coderd-test-key\n-----END OPENSSH PRIVATE KEY-----\n"
                    .to_owned(),
            )),
            requests: Mutex::new(Recording::default()),
            log_sources: Mutex::new(Vec::new()),
            logs: Mutex::new(Recording::default()),
            app_statuses: Mutex::new(Recording::default()),
            providers: Mutex::new(Vec::new()),
            providers_changed: watch::channel(0).0,
            reinit_streams: Mutex::new(Vec::new()),
            reinit_changed: watch::channel(0).0,
            reinit_outcomes: Mutex::new(Recording::default()),
            reinit_shape: Mutex::new(ReinitEventShape::Current),
            prebuild: Mutex::new(PrebuildState::Unclaimed),
            ping_interval: Mutex::new(PING_INTERVAL),
            chat_context_refreshed: Mutex::new(0),
            identities: Mutex::new(Identities::default()),
            exchanges: Mutex::new(Recording::default()),
            exchange_tokens: Mutex::new(VecDeque::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RestState {
    /// The key pair `gitsshkey` serves (public, private).
    pub fn set_git_ssh_key(&self, public_key: impl Into<String>, private_key: impl Into<String>) {
        *lock(&self.git_ssh_key) = (public_key.into(), private_key.into());
    }

    /// The key pair `gitsshkey` serves (public, private).
    pub fn git_ssh_key(&self) -> (String, String) {
        lock(&self.git_ssh_key).clone()
    }

    /// Every REST request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).to_vec()
    }

    /// The log sources created so far.
    pub fn log_sources(&self) -> Vec<WorkspaceAgentLogSource> {
        lock(&self.log_sources).clone()
    }

    /// The accepted `PATCH /logs` batches.
    pub fn logs(&self) -> Vec<RecordedLogs> {
        lock(&self.logs).to_vec()
    }

    /// The accepted app statuses.
    pub fn app_statuses(&self) -> Vec<PatchAppStatus> {
        lock(&self.app_statuses).to_vec()
    }

    /// Adds (or replaces, by ID) an external-auth provider.
    pub fn set_external_auth_provider(&self, provider: ExternalAuthProvider) {
        let mut providers = lock(&self.providers);
        providers.retain(|p| p.id != provider.id);
        providers.push(provider);
        drop(providers);
        self.providers_changed.send_modify(|n| *n += 1);
    }

    /// Records that the user authenticated with provider `id`: waiting
    /// `listen` calls answer now.
    pub fn set_external_auth_token(&self, id: &str, access_token: impl Into<String>) {
        let token = access_token.into();
        for p in lock(&self.providers).iter_mut().filter(|p| p.id == id) {
            p.access_token = Some(token.clone());
        }
        self.providers_changed.send_modify(|n| *n += 1);
    }

    /// The raw query strings of the external-auth requests, oldest first.
    pub fn external_auth_queries(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|r| {
                let (path, query) = r.uri.split_once('?').unwrap_or((&r.uri, ""));
                (path == paths::EXTERNAL_AUTH).then(|| query.to_owned())
            })
            .collect()
    }

    /// Sends a reinit event to every open reinit stream; returns how many got it.
    pub fn send_reinit(&self, event: ReinitializationEvent) -> usize {
        let mut streams = lock(&self.reinit_streams);
        streams.retain(|s| !s.is_closed());
        streams.iter().filter(|s| s.try_send(event.clone()).is_ok()).count()
    }

    /// Ends every open reinit stream the clean way (the transmitter sees
    /// its source close; the agent sees the stream end).
    pub fn close_reinit_streams(&self) {
        lock(&self.reinit_streams).clear();
    }

    /// How many reinit streams are open.
    pub fn reinit_streams(&self) -> usize {
        lock(&self.reinit_streams).iter().filter(|s| !s.is_closed()).count()
    }

    /// Waits until exactly `n` reinit streams are open.
    pub async fn wait_for_reinit_streams(&self, n: usize) {
        let mut changed = self.reinit_changed.subscribe();
        loop {
            if self.reinit_streams() == n {
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// How the finished reinit transmissions ended, oldest first.
    pub fn reinit_outcomes(&self) -> Vec<TransmitError> {
        lock(&self.reinit_outcomes).to_vec()
    }

    /// The JSON shape of reinit events on streams opened from now on:
    /// [`ReinitEventShape::Current`] (default) as today's coderd, or
    /// [`ReinitEventShape::Legacy`] to play a coderd from before
    /// coder/coder#23108 (`WorkspaceID`, no owner).
    pub fn set_reinit_event_shape(&self, shape: ReinitEventShape) {
        *lock(&self.reinit_shape) = shape;
    }

    /// The workspace's prebuild claim state, which decides how reinit
    /// requests with `wait=true` are answered (see [`PrebuildState`]).
    pub fn set_prebuild_state(&self, state: PrebuildState) {
        *lock(&self.prebuild) = state;
    }

    /// The heartbeat interval of reinit streams opened from now on (default 15 s).
    pub fn set_reinit_ping_interval(&self, interval: Duration) {
        *lock(&self.ping_interval) = interval;
    }

    /// The count `POST .../experimental/chat-context/refresh` answers with
    /// (default 0: what coderd answers when it runs without a chat daemon).
    pub fn set_chat_context_refreshed(&self, refreshed: i64) {
        *lock(&self.chat_context_refreshed) = refreshed;
    }

    /// The AWS identity the exchange accepts.
    pub fn expect_aws_identity(&self, signature: impl Into<String>, document: impl Into<String>) {
        lock(&self.identities).aws = Some((signature.into(), document.into()));
    }

    /// The Azure identity the exchange accepts.
    pub fn expect_azure_identity(&self, signature: impl Into<String>, encoding: impl Into<String>) {
        lock(&self.identities).azure = Some((signature.into(), encoding.into()));
    }

    /// The Google identity JWT the exchange accepts.
    pub fn expect_google_identity(&self, json_web_token: impl Into<String>) {
        lock(&self.identities).google = Some(json_web_token.into());
    }

    /// Hands out `token` from the next accepted exchange instead of the
    /// server's agent token (queued; e.g. a token the server will refuse,
    /// to test refresh after a 401).
    pub fn queue_exchange_token(&self, token: impl Into<String>) {
        lock(&self.exchange_tokens).push_back(token.into());
    }

    /// How many records each REST recording dropped to stay within its
    /// limit (see [`set_record_limit`](Self::set_record_limit)).
    pub fn dropped(&self) -> RestDropped {
        RestDropped {
            requests: lock(&self.requests).dropped(),
            logs: lock(&self.logs).dropped(),
            app_statuses: lock(&self.app_statuses).dropped(),
            reinit_outcomes: lock(&self.reinit_outcomes).dropped(),
            identity_exchanges: lock(&self.exchanges).dropped(),
        }
    }

    /// How many entries each REST recording (requests, log batches, app
    /// statuses, reinit outcomes, identity exchanges) keeps; older ones are
    /// dropped and counted. Default [`DEFAULT_RECORD_LIMIT`](super::DEFAULT_RECORD_LIMIT).
    pub fn set_record_limit(&self, limit: usize) {
        lock(&self.requests).set_limit(limit);
        lock(&self.logs).set_limit(limit);
        lock(&self.app_statuses).set_limit(limit);
        lock(&self.reinit_outcomes).set_limit(limit);
        lock(&self.exchanges).set_limit(limit);
    }

    /// Every identity exchange received, oldest first.
    pub fn identity_exchanges(&self) -> Vec<IdentityExchange> {
        lock(&self.exchanges).to_vec()
    }

    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap) {
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        lock(&self.requests).push(RecordedRequest {
            method: method.to_string(),
            uri: uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            header_names: headers.keys().map(|k| k.as_str().to_owned()).collect(),
            user_agent: text(header::USER_AGENT),
            accept: text(header::ACCEPT),
            had_token_header: headers.contains_key(crate::auth::SESSION_TOKEN_HEADER),
        });
    }
}

pub(crate) fn routes() -> axum::Router<ServerState> {
    axum::Router::new()
        .route(paths::GIT_SSH_KEY, get(git_ssh_key))
        .route(paths::LOGS, patch(patch_logs))
        .route(paths::APP_STATUS, patch(patch_app_status))
        .route(paths::LOG_SOURCE, post(post_log_source))
        .route(paths::EXTERNAL_AUTH, get(external_auth))
        .route(paths::REINIT, get(reinit))
        .route(paths::CHAT_CONTEXT_REFRESH, post(refresh_chat_context))
        .route(paths::AWS, post(aws_identity))
        .route(paths::AZURE, post(azure_identity))
        .route(paths::GOOGLE, post(google_identity))
}

/// An answer that ends a handler early.
type Reply = Box<Response<Body>>;

/// A request body not read yet: handlers check the token first, as coderd's
/// middleware does, so a refused agent gets its 401 before any body is
/// read. [`RawBody::read`] reads it whole (up to axum's default limit of
/// 2 MB). Unlike axum's `Bytes` extractor, whose refusals are plain text (a
/// body over the limit gets `413` with "length limit exceeded"), it refuses
/// with the codersdk JSON error every other failure carries.
struct RawBody(axum::extract::Request);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RawBody(req))
    }
}

impl RawBody {
    async fn read(self) -> Result<Bytes, Reply> {
        match <Bytes as axum::extract::FromRequest<()>>::from_request(self.0, &()).await {
            Ok(body) => Ok(body),
            Err(rejection) => {
                let status = rejection.status();
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "Request body is too large."
                } else {
                    "Failed to read the request body."
                };
                Err(Box::new(api_error(
                    status,
                    ErrorBody {
                        message: message.to_owned(),
                        detail: rejection.body_text(),
                        ..ErrorBody::default()
                    },
                )))
            }
        }
    }
}

/// A JSON answer as coderd's `httpapi.Write` writes it (compact, newline).
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn bad_request(message: &str, detail: String) -> Response<Body> {
    api_error(
        StatusCode::BAD_REQUEST,
        ErrorBody {
            message: message.to_owned(),
            detail,
            validations: Vec::new(),
        },
    )
}

/// coderd's `httpapi.Read`: a body that is not valid JSON for the type is 400.
fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    if nesting_exceeds(body, MAX_JSON_DEPTH) {
        return Err(Box::new(bad_request(
            "Request body must be valid JSON.",
            format!("exceeded max depth of {MAX_JSON_DEPTH} nested arrays and objects"),
        )));
    }
    serde_json::from_slice(body).map_err(|e| Box::new(bad_request("Request body must be valid JSON.", e.to_string())))
}

/// Go's `encoding/json` refuses documents nested deeper than 10,000 arrays
/// and objects, wherever they are (unknown fields too). serde_json stops at
/// 128 levels in the values it builds but skips an unknown field's value
/// whatever its depth, so the limit is checked here first.
const MAX_JSON_DEPTH: usize = 10_000;

/// True if `body` opens more than `max` arrays and objects at once (bytes
/// inside strings do not count). A linear scan with no recursion.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// coderd's `validate:"required"` failures.
fn require(fields: &[(&str, &str)]) -> Result<(), Reply> {
    let missing: Vec<ValidationError> = fields
        .iter()
        .filter(|(_, value)| value.is_empty())
        .map(|(field, _)| ValidationError {
            field: (*field).to_owned(),
            detail: "Validation failed for tag \"required\" with value: \"\"".to_owned(),
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Box::new(api_error(
        StatusCode::BAD_REQUEST,
        ErrorBody {
            message: "Validation failed.".to_owned(),
            detail: String::new(),
            validations: missing,
        },
    )))
}

/// Records the request and checks the agent token.
fn admit(state: &ServerState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Reply> {
    state.rest().record(method, uri, headers);
    authenticate(state, headers, uri)
}

/// [`admit`], then the JSON body.
async fn admit_json<T: DeserializeOwned>(
    state: &ServerState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: RawBody,
) -> Result<T, Reply> {
    admit(state, method, uri, headers)?;
    read(&body.read().await?)
}

fn agent_id(state: &ServerState) -> Uuid {
    Uuid::from_slice(&state.api().manifest().agent_id).unwrap_or_default()
}

async fn git_ssh_key(State(state): State<ServerState>, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    if let Err(r) = admit(&state, &method, &uri, &headers) {
        return *r;
    }
    #[derive(Serialize)]
    struct GitSshKey {
        public_key: String,
        private_key: String,
    }
    let (public_key, private_key) = state.rest().git_ssh_key();
    json(
        StatusCode::OK,
        &GitSshKey {
            public_key,
            private_key,
        },
    )
}

/// coderd ignores any body here; so does this.
async fn refresh_chat_context(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    if let Err(r) = admit(&state, &method, &uri, &headers) {
        return *r;
    }
    let refreshed = *lock(&state.rest().chat_context_refreshed);
    json(
        StatusCode::OK,
        &crate::rest::types::RefreshChatContextResponse { refreshed },
    )
}

#[derive(Deserialize)]
struct PatchLogsBody {
    #[serde(default)]
    log_source_id: Option<Uuid>,
    #[serde(default)]
    logs: Option<Vec<LogBody>>,
}

#[derive(Deserialize)]
struct LogBody {
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    level: Option<String>,
}

async fn patch_logs(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: RawBody,
) -> Response<Body> {
    let req: PatchLogsBody = match admit_json(&state, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let logs = req.logs.unwrap_or_default();
    if logs.is_empty() {
        return bad_request("No logs provided.", String::new());
    }
    let mut recorded = Vec::with_capacity(logs.len());
    for log in logs {
        let level = log.level.filter(|l| !l.is_empty()).unwrap_or_else(|| "info".to_owned());
        if !matches!(level.as_str(), "trace" | "debug" | "info" | "warn" | "error") {
            return bad_request("Invalid log level provided.", format!("invalid log level: {level:?}"));
        }
        recorded.push(RecordedLog {
            created_at: log.created_at.unwrap_or_default(),
            output: log.output.unwrap_or_default(),
            level,
        });
    }
    let log_source_id = req
        .log_source_id
        .filter(|id| !id.is_nil())
        .unwrap_or(EXTERNAL_LOG_SOURCE_ID);
    lock(&state.rest().logs).push(RecordedLogs {
        log_source_id,
        logs: recorded,
    });
    json(StatusCode::OK, &serde_json::Value::Null)
}

#[derive(Deserialize)]
struct AppStatusBody {
    #[serde(default)]
    app_slug: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    icon: Option<String>,
    #[serde(default)]
    needs_user_attention: Option<bool>,
}

async fn patch_app_status(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: RawBody,
) -> Response<Body> {
    let req: AppStatusBody = match admit_json(&state, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let raw_state = req.state.unwrap_or_default();
    let Ok(app_state) = raw_state.parse::<WorkspaceAppStatusState>() else {
        return api_error(
            StatusCode::BAD_REQUEST,
            ErrorBody {
                message: "Invalid state provided.".to_owned(),
                detail: format!("invalid state: {raw_state:?}"),
                validations: vec![ValidationError {
                    field: "state".to_owned(),
                    detail: "State must be one of: complete, failure, working, idle.".to_owned(),
                }],
            },
        );
    };
    lock(&state.rest().app_statuses).push(PatchAppStatus {
        app_slug: req.app_slug.unwrap_or_default(),
        icon: req.icon.unwrap_or_default(),
        message: req.message.unwrap_or_default(),
        needs_user_attention: req.needs_user_attention.unwrap_or_default(),
        state: app_state,
        uri: req.uri.unwrap_or_default(),
    });
    json(StatusCode::OK, &serde_json::Value::Null)
}

#[derive(Deserialize)]
struct LogSourceBody {
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    icon: Option<String>,
}

async fn post_log_source(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: RawBody,
) -> Response<Body> {
    let req: LogSourceBody = match admit_json(&state, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let source = WorkspaceAgentLogSource {
        workspace_agent_id: agent_id(&state),
        id: req.id.unwrap_or_default(),
        created_at: Utc::now(),
        display_name: req.display_name.unwrap_or_default(),
        icon: req.icon.unwrap_or_default(),
    };
    let mut sources = lock(&state.rest().log_sources);
    // coderd answers 201 for an ID it already has too (a unique violation is not an error).
    if !sources.iter().any(|s| s.id == source.id) {
        sources.push(source.clone());
    }
    drop(sources);
    json(StatusCode::CREATED, &source)
}

async fn external_auth(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    if let Err(r) = admit(&state, &method, &uri, &headers) {
        return *r;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let first = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    // Legacy agents send `url` instead of `match`.
    let matched = first("match")
        .filter(|m| !m.is_empty())
        .or_else(|| first("url"))
        .unwrap_or_default();
    let id = first("id").unwrap_or_default();
    let listen = pairs.iter().any(|(k, _)| k == "listen");
    if matched.is_empty() && id.is_empty() {
        return bad_request("'url' or 'id' must be provided!", String::new());
    }
    if !matched.is_empty() && !id.is_empty() {
        return bad_request("'url' and 'id' cannot be provided together!", String::new());
    }
    let rest = state.rest();
    let find = || {
        lock(&rest.providers)
            .iter()
            .find(|p| {
                (!id.is_empty() && p.id == id)
                    || (!matched.is_empty() && !p.match_contains.is_empty() && matched.contains(&p.match_contains))
            })
            .cloned()
    };
    let Some(provider) = find() else {
        let providers = lock(&rest.providers).clone();
        let detail = if providers.is_empty() {
            "External auth provider not found.".to_owned()
        } else {
            let filters: Vec<String> = providers
                .iter()
                .map(|p| format!("{}={:?}", p.id, p.match_contains))
                .collect();
            format!(
                "The configured external auth provider have regex filters that do not match the url. Provider url regex: {}",
                filters.join(",")
            )
        };
        return api_error(
            StatusCode::NOT_FOUND,
            ErrorBody {
                message: format!("No matching external auth provider found in Coder for the url {matched:?}."),
                detail,
                validations: Vec::new(),
            },
        );
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let redirect = ExternalAuthResponse {
        url: format!("http://{host}/external-auth/{}", provider.id),
        ..ExternalAuthResponse::default()
    };
    let mut changed = rest.providers_changed.subscribe();
    let mut provider = provider;
    loop {
        if let Some(token) = &provider.access_token {
            return json(StatusCode::OK, &credentials(&provider, token));
        }
        if !listen {
            return json(StatusCode::OK, &redirect);
        }
        // Listening: wait until the user has authenticated (or the agent goes away).
        if changed.changed().await.is_err() {
            return json(StatusCode::OK, &redirect);
        }
        match find() {
            Some(p) => provider = p,
            None => return json(StatusCode::OK, &redirect),
        }
    }
}

/// coderd's `createExternalAuthResponse`: the Git credential form depends
/// on the provider type.
fn credentials(provider: &ExternalAuthProvider, token: &str) -> ExternalAuthResponse {
    let (username, password) = match provider.type_.as_str() {
        "gitlab" => ("oauth2".to_owned(), token.to_owned()),
        "bitbucket-cloud" | "bitbucket-server" | "bitbucket" => ("x-token-auth".to_owned(), token.to_owned()),
        _ => (token.to_owned(), String::new()),
    };
    ExternalAuthResponse {
        access_token: token.to_owned(),
        token_extra: provider.token_extra.clone(),
        url: String::new(),
        type_: provider.type_.clone(),
        expires_at: provider.expires_at,
        username,
        password,
    }
}

/// Go's `strconv.ParseBool`, with a parse error counting as false (coderd
/// ignores the error for `wait`).
fn go_parse_bool(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// coderd's reinit handler: with `wait=true` it first checks the durable
/// claim state (answering 409, or one event at once); then it streams.
async fn reinit(State(state): State<ServerState>, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    if let Err(r) = admit(&state, &method, &uri, &headers) {
        return *r;
    }
    let wait = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "wait")
        .is_some_and(|(_, v)| go_parse_bool(&v));
    let rest = state.rest();
    let prebuild = lock(&rest.prebuild).clone();
    let not_waiting = "Workspace is not a prebuilt workspace waiting to be claimed.";
    let conflict = |message: &str, detail: &str| {
        api_error(
            StatusCode::CONFLICT,
            ErrorBody {
                message: message.to_owned(),
                detail: detail.to_owned(),
                validations: Vec::new(),
            },
        )
    };
    let mut seeded = None;
    if wait {
        match prebuild {
            PrebuildState::Unclaimed => {}
            PrebuildState::Regular => {
                return conflict(
                    not_waiting,
                    "This endpoint is only for agents running in prebuilt workspaces.",
                )
            }
            PrebuildState::ClaimFailed(error) => return conflict("Claim build failed permanently.", &error),
            PrebuildState::ClaimHandled => {
                return conflict(
                    not_waiting,
                    "The prebuild claim for this workspace has already been handled by an earlier build.",
                )
            }
            PrebuildState::Claimed(event) => seeded = Some(event),
        }
    }
    let (tx, rx) = mpsc::channel(16);
    let interval = *lock(&rest.ping_interval);
    let shape = *lock(&rest.reinit_shape);
    let (response, done) = ReinitTransmitter::new()
        .ping_interval(interval)
        .event_shape(shape)
        .transmit(rx);
    // A seeded stream gets its one event and no later ones (coderd drops
    // the claim subscription); its sender lives until the stream ends so
    // that the stream stays open, as coderd's seeded channel is never closed.
    let held = match seeded {
        Some(event) => {
            let _ = tx.try_send(event);
            Some(tx)
        }
        None => {
            lock(&rest.reinit_streams).push(tx);
            None
        }
    };
    rest.reinit_changed.send_modify(|n| *n += 1);
    let state = state.clone();
    tokio::spawn(async move {
        let outcome = done.await;
        drop(held);
        tracing::debug!(%outcome, "reinit transmission ended");
        let rest = state.rest();
        lock(&rest.reinit_outcomes).push(outcome);
        lock(&rest.reinit_streams).retain(|s| !s.is_closed());
        rest.reinit_changed.send_modify(|n| *n += 1);
    });
    response
}

/// The fields of the three exchange bodies (missing ones empty, as Go decodes them).
#[derive(Deserialize, Default)]
struct IdentityBody {
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    document: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    json_web_token: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    agent_name: Option<String>,
}

async fn aws_identity(State(state): State<ServerState>, headers: HeaderMap, body: RawBody) -> Response<Body> {
    exchange(state, Cloud::Aws, headers, body).await
}

async fn azure_identity(State(state): State<ServerState>, headers: HeaderMap, body: RawBody) -> Response<Body> {
    exchange(state, Cloud::Azure, headers, body).await
}

async fn google_identity(State(state): State<ServerState>, headers: HeaderMap, body: RawBody) -> Response<Body> {
    exchange(state, Cloud::Google, headers, body).await
}

/// An identity exchange: no agent token needed; the token is handed out
/// when the posted identity is the one the test configured, else 401.
async fn exchange(state: ServerState, cloud: Cloud, headers: HeaderMap, body: RawBody) -> Response<Body> {
    let body = match body.read().await {
        Ok(body) => body,
        Err(r) => return *r,
    };
    let rest = state.rest();
    let path = match cloud {
        Cloud::Aws => paths::AWS,
        Cloud::Azure => paths::AZURE,
        Cloud::Google => paths::GOOGLE,
    };
    rest.record(&Method::POST, &Uri::from_static(path), &headers);
    let had_token_header = headers.contains_key(crate::auth::SESSION_TOKEN_HEADER);
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let record = |accepted: bool| {
        lock(&rest.exchanges).push(IdentityExchange {
            cloud,
            body: raw.clone(),
            accepted,
            had_token_header,
        })
    };
    let req: IdentityBody = match read(&body) {
        Ok(r) => r,
        Err(r) => {
            record(false);
            return *r;
        }
    };
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let (required, matches, label): (Vec<(&str, String)>, bool, &str) = {
        let ids = lock(&rest.identities);
        match cloud {
            Cloud::Aws => (
                vec![("signature", s(&req.signature)), ("document", s(&req.document))],
                ids.aws.as_ref() == Some(&(s(&req.signature), s(&req.document))),
                "AWS",
            ),
            Cloud::Azure => (
                vec![("signature", s(&req.signature)), ("encoding", s(&req.encoding))],
                ids.azure.as_ref() == Some(&(s(&req.signature), s(&req.encoding))),
                "Azure",
            ),
            Cloud::Google => (
                vec![("json_web_token", s(&req.json_web_token))],
                ids.google.as_ref() == Some(&s(&req.json_web_token)),
                "GCP",
            ),
        }
    };
    let fields: Vec<(&str, &str)> = required.iter().map(|(f, v)| (*f, v.as_str())).collect();
    if let Err(r) = require(&fields) {
        record(false);
        return *r;
    }
    if !matches {
        record(false);
        return api_error(
            StatusCode::UNAUTHORIZED,
            ErrorBody {
                message: format!("Invalid {label} identity."),
                detail: "the identity is not the one the embedded server was told to expect".to_owned(),
                validations: Vec::new(),
            },
        );
    }
    record(true);
    let token = lock(&rest.exchange_tokens)
        .pop_front()
        .unwrap_or_else(|| state.token().to_owned());
    json(StatusCode::OK, &serde_json::json!({ "session_token": token }))
}

#[cfg(test)]
mod depth_tests {
    use super::nesting_exceeds;

    #[test]
    fn nesting_depth_counts_arrays_and_objects_but_not_brackets_in_strings() {
        assert!(!nesting_exceeds(br#"{"a":[[1]]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[[[1]]]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(!nesting_exceeds(b"[][][][][]", 1));
        assert!(nesting_exceeds(&b"[".repeat(100_000), 10_000));
    }
}
