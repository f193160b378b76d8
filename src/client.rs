//! [`Client`]: the agent's handle on one coderd deployment. It holds the
//! base URL, the token provider and the HTTP client, and is what REST
//! calls, the reinit stream and RPC connections all start from, so they
//! share one source of tokens.
//!
//! The REST methods here are thin: each calls one operation of the
//! generated client (`generated/rest.rs`) through the hooks of the private `http` module
//! and adds the Go SDK's semantics (which status is success, which query
//! parameters are always sent, a 401 answered by one token refresh and
//! one retry).
//!
//! ```no_run
//! use coder_agentsdk::types::{ExternalAuthRequest, PatchAppStatus, PostLogSourceRequest, WorkspaceAppStatusState};
//! use coder_agentsdk::Client;
//!
//! # async fn demo() -> Result<(), coder_agentsdk::Error> {
//! let client = Client::builder("https://coder.example.com")
//!     .token(std::env::var("CODER_AGENT_TOKEN").unwrap_or_default())
//!     .timeout(std::time::Duration::from_secs(30)) // ordinary calls only
//!     .build()?;
//!
//! let key = client.git_ssh_key().await?; // Debug hides key.private_key
//! println!("git key type: {:?}", key.key_type());
//!
//! let source = client
//!     .post_log_source(&PostLogSourceRequest {
//!         id: uuid::uuid!("0fa2c9b6-7a9e-4a4c-9a8e-3f0b8c1d2e4f"), // fixed: one source across restarts
//!         display_name: "My agent".into(),
//!         icon: "/emojis/1f980.png".into(),
//!     })
//!     .await?; // 201 Created
//!
//! client
//!     .patch_app_status(&PatchAppStatus {
//!         app_slug: "code-server".into(),
//!         state: WorkspaceAppStatusState::Working,
//!         message: "indexing".into(),
//!         uri: String::new(),
//!         icon: String::new(),
//!         needs_user_attention: false,
//!     })
//!     .await?;
//!
//! // Waits (no client timeout) until the user has logged in to GitHub.
//! let auth = client
//!     .external_auth(&ExternalAuthRequest::by_match("https://github.com/coder/coder.git").listen())
//!     .await?;
//! println!("token for {} ({} chars), source {}", auth.type_, auth.access_token.len(), source.id);
//! # Ok(())
//! # }
//! ```
//!
//! On a cloud VM, the token comes from the instance identity instead:
//!
//! ```no_run
//! use coder_agentsdk::auth::{AwsInstanceIdentity, AuthMethod};
//! use coder_agentsdk::Client;
//!
//! # async fn demo() -> Result<(), coder_agentsdk::Error> {
//! let client = Client::builder("https://coder.example.com")
//!     .instance_identity(AwsInstanceIdentity::new().agent_name("main"))
//!     .build()?;
//! client.git_ssh_key().await?; // exchanges once, then reuses the token; a 401 refreshes it
//!
//! // Or as Coder's agent reads its environment:
//! let method: AuthMethod = std::env::var("CODER_AGENT_AUTH").unwrap_or_default().parse()?;
//! let client = Client::builder("https://coder.example.com")
//!     .auth_method(
//!         method,
//!         std::env::var("CODER_AGENT_TOKEN").ok().as_deref(),
//!         std::env::var("CODER_AGENT_METADATA_URL").ok().as_deref(),
//!     )?
//!     .build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! Prebuilt workspaces: wait for the claim and reinitialize.
//!
//! ```no_run
//! use futures::StreamExt;
//!
//! # async fn demo(client: coder_agentsdk::Client) {
//! let mut events = client.wait_for_reinit_loop(); // reconnects with backoff; drop it to stop
//! while let Some(event) = events.next().await {
//!     println!("workspace {} claimed ({}): reinitializing", event.workspace_id, event.reason);
//! }
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use progenitor_client::ResponseValue;
use reqwest::header::HeaderValue;
use url::Url;

use crate::auth::{
    AuthMethod, AwsInstanceIdentity, AzureInstanceIdentity, FixedToken, GoogleInstanceIdentity, InstanceIdentity,
    SessionToken, TokenExchanger, TokenProvider,
};
use crate::error::Error;
pub use crate::http::same_origin_redirect_policy;
use crate::http::{Call, Decoded, Rest};
use crate::net::proxy::ProxyChoice;
use crate::net::{tls, NetConfig};
use crate::rest;
use crate::rpc::RpcOptions;
use crate::sse::{Backoff, ReinitReceiver, ReinitializationEvent};
use crate::types::{
    ExternalAuthRequest, ExternalAuthResponse, GitSshKey, PatchAppStatus, PatchLogs, PostLogSourceRequest,
    RefreshChatContextResponse, WorkspaceAgentLogSource,
};

/// The user agent sent unless [`ClientBuilder::user_agent`] says otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("coder-agentsdk-rust/", env!("CARGO_PKG_VERSION"));

/// The first reconnect delay of [`Client::wait_for_reinit_loop`].
pub const REINIT_BACKOFF_FLOOR: Duration = Duration::from_millis(100);
/// The longest reconnect delay of [`Client::wait_for_reinit_loop`].
pub const REINIT_BACKOFF_CEILING: Duration = Duration::from_secs(10);

/// A `reqwest` client builder set up the way this crate needs: the process
/// crypto provider installed (reqwest is built without one),
/// [`same_origin_redirect_policy`], the default trust of a [`Client`]
/// (the system's root certificates, `SSL_CERT_FILE` and `SSL_CERT_DIR`, as
/// Go reads them), so that REST trusts what the RPC websocket trusts, and
/// the proxy decision Go makes from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
/// (made by this crate, the same one the RPC websocket dial makes, rather
/// than by reqwest's own reading of the environment). Start from it to give
/// [`ClientBuilder::http_client`] or [`InstanceIdentity::new`] a client with
/// settings of your own.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    NetConfig::default().http_client_builder()
}

/// A workspace agent's client of coderd. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    base_url: Url,
    tokens: Arc<dyn TokenProvider>,
    rest: Arc<Rest>,
    rpc: RpcOptions,
    net: NetConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Where the client's tokens will come from.
enum Tokens {
    Provider(Arc<dyn TokenProvider>),
    Identity(Arc<dyn TokenExchanger>, Duration),
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    base_url: Result<Url, Error>,
    tokens: Option<Tokens>,
    http: Option<reqwest::Client>,
    user_agent: Option<String>,
    timeout: Option<Duration>,
    rpc: RpcOptions,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    /// `None`: from the environment at build time.
    proxy: Option<Result<ProxyChoice, Error>>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Authenticates with a fixed session token (`CODER_AGENT_TOKEN`).
    pub fn token(mut self, token: impl Into<SessionToken>) -> Self {
        self.tokens = Some(Tokens::Provider(Arc::new(FixedToken::new(token))));
        self
    }

    /// Authenticates with any token provider.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.tokens = Some(Tokens::Provider(Arc::new(provider)));
        self
    }

    /// Authenticates by exchanging the machine's cloud identity
    /// ([`crate::auth::AwsInstanceIdentity`], [`crate::auth::AzureInstanceIdentity`],
    /// [`crate::auth::GoogleInstanceIdentity`]) for a session token, through
    /// an [`InstanceIdentity`] provider sharing this client's HTTP client.
    pub fn instance_identity(self, exchanger: impl TokenExchanger) -> Self {
        self.instance_identity_with_timeout(exchanger, crate::auth::DEFAULT_EXCHANGE_TIMEOUT)
    }

    /// Authenticates the way `CODER_AGENT_AUTH` says, as Coder's agent
    /// does: with `token` for [`AuthMethod::Token`] (an error when it is
    /// missing), else with the cloud's instance identity, reading the
    /// metadata service at `metadata_url` when given (`CODER_AGENT_METADATA_URL`).
    pub fn auth_method(
        self,
        method: AuthMethod,
        token: Option<&str>,
        metadata_url: Option<&str>,
    ) -> Result<Self, Error> {
        Ok(match method {
            AuthMethod::Token => {
                let token = token
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Error::Config("auth method \"token\" needs a session token".to_owned()))?;
                self.token(token)
            }
            AuthMethod::AwsInstanceIdentity => {
                let mut e = AwsInstanceIdentity::new();
                if let Some(url) = metadata_url {
                    e = e.metadata_url(url);
                }
                self.instance_identity(e)
            }
            AuthMethod::AzureInstanceIdentity => {
                let mut e = AzureInstanceIdentity::new();
                if let Some(url) = metadata_url {
                    e = e.metadata_url(url);
                }
                self.instance_identity(e)
            }
            AuthMethod::GoogleInstanceIdentity => {
                let mut e = GoogleInstanceIdentity::new();
                if let Some(url) = metadata_url {
                    e = e.metadata_url(url);
                }
                self.instance_identity(e)
            }
        })
    }

    /// Like [`ClientBuilder::instance_identity`], with a time limit for one
    /// whole exchange other than the default 10 s.
    pub fn instance_identity_with_timeout(mut self, exchanger: impl TokenExchanger, timeout: Duration) -> Self {
        self.tokens = Some(Tokens::Identity(Arc::new(exchanger), timeout));
        self
    }

    /// Trusts the certificates in `pem` (one or more `BEGIN CERTIFICATE`
    /// sections, e.g. a private CA's) besides the system's roots, for REST
    /// and RPC alike. Can be called more than once. Fails when `pem` holds
    /// no certificate or a malformed one. Not combined with
    /// [`ClientBuilder::tls_config`] (building fails if both are set).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), coder_agentsdk::Error> {
    /// let ca = std::fs::read("ca.pem").map_err(|e| coder_agentsdk::Error::Config(e.to_string()))?;
    /// let client = coder_agentsdk::Client::builder("https://coder.internal")
    ///     .token("...")
    ///     .add_root_certificates_pem(&ca)?
    ///     .build()?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let certs = tls::certificates_from_pem(pem).map_err(Error::Config)?;
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// Trusts `cert` (DER) besides the system's roots, as
    /// [`ClientBuilder::add_root_certificates_pem`] does; a certificate
    /// that is no usable root makes [`ClientBuilder::build`] fail.
    pub fn add_root_certificate(mut self, cert: rustls::pki_types::CertificateDer<'static>) -> Self {
        self.extra_roots.push(cert);
        self
    }

    /// Uses the caller's whole rustls configuration (roots, client
    /// certificate, ...) for every TLS connection, REST and RPC, instead of
    /// the system's roots. Its ALPN protocols are replaced by `http/1.1`
    /// (the websocket upgrade is HTTP/1.1, and the REST client speaks no
    /// HTTP/2). The crate's rustls is 0.23 with the ring provider.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Sends every request through the caller's HTTP client. Its settings
    /// apply to everything, the reinit stream included, so it should have
    /// no total timeout (use [`ClientBuilder::timeout`] instead) and it
    /// should use [`same_origin_redirect_policy`]: reqwest's default policy
    /// forwards the session token to any host a redirect names.
    ///
    /// Its TLS settings are its own and apply to REST calls (and instance
    /// identity exchanges) only: [`ClientBuilder::add_root_certificates_pem`]
    /// and [`ClientBuilder::tls_config`] then set the RPC websocket's trust
    /// alone. A client from [`http_client_builder`] trusts what a [`Client`]
    /// trusts by default; for extra roots, give it the same config with
    /// `tls_backend_preconfigured` (see [`Client::tls_config`]).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The `User-Agent` of every request (default [`DEFAULT_USER_AGENT`]).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// A total time limit for each ordinary REST call (default: none, as in
    /// Go). It never applies to [`Client::wait_for_reinit`] nor to a
    /// listening [`Client::external_auth`], which wait as long as it takes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How every RPC connection of the client behaves: yamux keepalive
    /// (default Go's: ping every 30 s, 10 s to answer), default deadline of
    /// unary calls (default none), dial timeout (default 30 s). A single
    /// connection can differ: [`Client::with_rpc_options`].
    pub fn rpc_options(mut self, options: RpcOptions) -> Self {
        self.rpc = options;
        self
    }

    /// Sends every connection, REST and RPC, through the HTTP proxy at
    /// `proxy` (`http://[user:password@]host:port`; `host:port` means
    /// `http://host:port`), coderd on loopback included, as Go's
    /// `http.ProxyURL` does. The RPC websocket goes through a `CONNECT`
    /// tunnel. Without this or [`ClientBuilder::no_proxy`], the client
    /// follows `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as Go's agent does
    /// ([`crate::net::proxy`]), read once by [`ClientBuilder::build`].
    /// A client given through [`ClientBuilder::http_client`] keeps its own
    /// proxy settings for REST.
    pub fn proxy(mut self, proxy: impl AsRef<str>) -> Self {
        self.proxy = Some(ProxyChoice::fixed(proxy.as_ref()));
        self
    }

    /// Connects directly, whatever the environment says.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = Some(Ok(ProxyChoice::Direct));
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        tls::install_crypto_provider();
        let base_url = self.base_url?;
        let tokens = self
            .tokens
            .ok_or_else(|| Error::Config("no token or token provider set".to_owned()))?;
        let proxy = match self.proxy {
            Some(choice) => choice?,
            None => ProxyChoice::from_env(),
        };
        // Go refuses every request to coderd when its CGI rule refuses
        // HTTP_PROXY; refusing the client says so once.
        proxy.proxy_for(&base_url)?;
        let tls = match (self.tls_config, self.extra_roots.is_empty()) {
            (Some(config), true) => tls::http1_only(config),
            (Some(_), false) => {
                return Err(Error::Config(
                    "tls_config and add_root_certificates_pem cannot be combined: put the roots in the config"
                        .to_owned(),
                ))
            }
            (None, true) => tls::default_client_config(),
            (None, false) => tls::client_config_with_extra_roots(&self.extra_roots).map_err(Error::Config)?,
        };
        let net = NetConfig { tls, proxy };
        let http = match self.http {
            Some(http) => http,
            None => net
                .http_client_builder()
                .build()
                .map_err(|e| Error::Config(e.to_string()))?,
        };
        let user_agent = self.user_agent.as_deref().unwrap_or(DEFAULT_USER_AGENT);
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| Error::Config(format!("user agent {user_agent:?} is not a valid header value")))?;
        let rest = Arc::new(Rest::new(&base_url, http, self.timeout, Some(user_agent)));
        let tokens: Arc<dyn TokenProvider> = match tokens {
            Tokens::Provider(p) => p,
            Tokens::Identity(exchanger, timeout) => {
                Arc::new(InstanceIdentity::with_rest(exchanger, rest.clone()).exchange_timeout(timeout))
            }
        };
        Ok(Client {
            inner: Arc::new(ClientInner {
                base_url,
                tokens,
                rest,
                rpc: self.rpc,
                net,
            }),
        })
    }
}

impl Client {
    /// Starts building a client for the deployment at `base_url`
    /// (e.g. `https://coder.example.com`).
    pub fn builder(base_url: impl AsRef<str>) -> ClientBuilder {
        let base_url =
            Url::parse(base_url.as_ref()).map_err(|e| Error::InvalidUrl(format!("{}: {e}", base_url.as_ref())));
        let base_url = base_url.and_then(|u| match u.scheme() {
            "http" | "https" => Ok(u),
            other => Err(Error::InvalidUrl(format!("scheme {other:?} is not http or https"))),
        });
        ClientBuilder {
            base_url,
            tokens: None,
            http: None,
            user_agent: None,
            timeout: None,
            rpc: RpcOptions::default(),
            extra_roots: Vec::new(),
            tls_config: None,
            proxy: None,
        }
    }

    /// The same client (same token, HTTP client) whose RPC connections
    /// dialled from now on use `options`, e.g. a shorter keepalive for one
    /// connection: `client.with_rpc_options(o).connect_rpc28().await`.
    pub fn with_rpc_options(&self, options: RpcOptions) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                base_url: self.inner.base_url.clone(),
                tokens: self.inner.tokens.clone(),
                rest: self.inner.rest.clone(),
                rpc: options,
                net: self.inner.net.clone(),
            }),
        }
    }

    /// How this client picks a proxy for each connection.
    pub fn proxy(&self) -> &ProxyChoice {
        &self.inner.net.proxy
    }

    /// The settings RPC connections of this client are dialled with.
    pub fn rpc_options(&self) -> &RpcOptions {
        &self.inner.rpc
    }

    /// The rustls configuration of the client's TLS connections: the RPC
    /// websocket always, REST calls too unless [`ClientBuilder::http_client`]
    /// gave another HTTP client. Give it to another reqwest client with
    /// `reqwest::ClientBuilder::tls_backend_preconfigured((*config).clone())`
    /// to make it trust the same roots.
    pub fn tls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.inner.net.tls
    }

    /// What the client's connections are made with.
    pub(crate) fn net(&self) -> &NetConfig {
        &self.inner.net
    }

    /// The deployment's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// The token provider shared by REST and RPC.
    pub fn token_provider(&self) -> &Arc<dyn TokenProvider> {
        &self.inner.tokens
    }

    /// The current session token.
    pub async fn session_token(&self) -> Result<SessionToken, Error> {
        self.inner.tokens.token().await
    }

    /// The HTTP client REST calls go through.
    pub fn http_client(&self) -> &reqwest::Client {
        self.inner.rest.http()
    }

    /// Runs one generated operation with the current token; a 401 from
    /// coderd refreshes the token once and runs it again.
    async fn authed<'a, T, F, Fut>(
        &'a self,
        timeout: Option<Duration>,
        accept: Option<&'static str>,
        op: F,
    ) -> Result<Decoded<T>, Error>
    where
        F: Fn(&'a rest::Client) -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, progenitor_client::Error<rest::types::Response>>>,
    {
        let call = |token| Call {
            token: Some(token),
            timeout,
            accept,
        };
        let token = self.session_token().await?;
        match self.inner.rest.execute(call(token), &op).await {
            Err(e) if e.status() == Some(401) && self.inner.tokens.refreshable() => {
                tracing::debug!("coderd answered 401; refreshing the session token and retrying once");
                self.inner.tokens.refresh().await?;
                let token = self.session_token().await?;
                self.inner.rest.execute(call(token), &op).await
            }
            other => other,
        }
    }

    /// The workspace owner's Git SSH key pair (`GET /api/v2/workspaceagents/me/gitsshkey`).
    pub async fn git_ssh_key(&self) -> Result<GitSshKey, Error> {
        match self
            .authed(self.inner.rest.timeout(), None, |c| c.get_git_ssh_key())
            .await?
        {
            Decoded::Value(key) => Ok(key.into()),
            Decoded::Undecodable(why) => Err(Error::InvalidResponse(why)),
        }
    }

    /// Appends log lines to a log source (`PATCH /api/v2/workspaceagents/me/logs`).
    /// coderd refuses an empty batch with 400 and answers 413 once the
    /// agent's log limit is reached; the body of a 200 is ignored, as in Go.
    #[deprecated(note = "use the BatchCreateLogs RPC (Agent20::batch_create_logs and later) instead")]
    pub async fn patch_logs(&self, request: &PatchLogs) -> Result<(), Error> {
        self.authed(self.inner.rest.timeout(), None, |c| c.patch_logs(request))
            .await
            .map(|_| ())
    }

    /// Reports the status of a workspace app (`PATCH /api/v2/workspaceagents/me/app-status`).
    /// The body of a 200 is ignored, as in Go.
    ///
    /// Deprecated upstream: Go's `PatchAppStatus` points to the
    /// `UpdateAppStatus` RPC of agent API v2.8 instead
    /// ([`Agent28::update_app_status`](crate::rpc::agent::Agent28) and later
    /// clients), which coderd serves on the agent's RPC connection.
    pub async fn patch_app_status(&self, request: &PatchAppStatus) -> Result<(), Error> {
        self.authed(self.inner.rest.timeout(), None, |c| c.patch_app_status(request))
            .await
            .map(|_| ())
    }

    /// Creates (or finds) a log source of this agent
    /// (`POST /api/v2/workspaceagents/me/log-source`; success is 201).
    pub async fn post_log_source(&self, request: &PostLogSourceRequest) -> Result<WorkspaceAgentLogSource, Error> {
        match self
            .authed(self.inner.rest.timeout(), None, |c| c.post_log_source(request))
            .await?
        {
            Decoded::Value(source) => Ok(source),
            Decoded::Undecodable(why) => Err(Error::InvalidResponse(why)),
        }
    }

    /// Re-pins the chats bound to this agent whose context has drifted to the
    /// agent's newest context snapshot, and says how many it re-pinned
    /// (`POST /api/v2/workspaceagents/me/experimental/chat-context/refresh`,
    /// no body). coderd answers 0 when it runs without a chat daemon.
    ///
    /// **Experimental upstream**: coderd serves it under `/experimental` and
    /// leaves it out of its API docs, so its path and shape may change
    /// between Coder releases, and this method with them.
    pub async fn refresh_chat_context(&self) -> Result<RefreshChatContextResponse, Error> {
        match self
            .authed(self.inner.rest.timeout(), None, |c| c.refresh_chat_context())
            .await?
        {
            Decoded::Value(response) => Ok(response),
            Decoded::Undecodable(why) => Err(Error::InvalidResponse(why)),
        }
    }

    /// An access token for an external auth provider
    /// (`GET /api/v2/workspaceagents/me/external-auth`). `id` and `match`
    /// are always sent, `listen=true` only when listening, the Git fields
    /// and `chat_id` only when not empty. A listening call waits without a client-side
    /// time limit until the user has authenticated.
    pub async fn external_auth(&self, request: &ExternalAuthRequest) -> Result<ExternalAuthResponse, Error> {
        let timeout = if request.listen {
            None
        } else {
            self.inner.rest.timeout()
        };
        let non_empty = |s: &str| Some(s).filter(|s| !s.is_empty()).map(str::to_owned);
        let git_branch = non_empty(&request.git_branch);
        let git_remote_origin = non_empty(&request.git_remote_origin);
        let chat_id = non_empty(&request.chat_id);
        let listen = request.listen.then_some(true);
        let outcome = self
            .authed(timeout, None, |c| {
                c.get_external_auth(
                    chat_id.as_deref(),
                    git_branch.as_deref(),
                    git_remote_origin.as_deref(),
                    Some(request.id.as_str()),
                    listen,
                    Some(request.match_.as_str()),
                )
            })
            .await?;
        match outcome {
            Decoded::Value(response) => Ok(response.into()),
            Decoded::Undecodable(why) => Err(Error::InvalidResponse(why)),
        }
    }

    /// Waits for coderd to say that this agent must reinitialize (a
    /// prebuilt workspace was claimed):
    /// `GET /api/v2/workspaceagents/me/reinit?wait=true` with
    /// `Accept: text/event-stream`, read until the first `data` event. As
    /// Go's client, it sends `wait=true`, so today's coderd answers at once
    /// for a claim it already recorded, and answers 409 (an
    /// [`Error::Api`] with status 409) when no reinit event will ever come:
    /// a regular workspace, a claim already handled, or a failed claim build.
    /// No time limit applies; drop the future to stop waiting.
    pub async fn wait_for_reinit(&self) -> Result<ReinitializationEvent, Error> {
        let body = match self
            .authed(None, Some("text/event-stream"), |c| c.get_reinit(Some(true)))
            .await?
        {
            Decoded::Value(body) => body,
            Decoded::Undecodable(why) => return Err(Error::InvalidResponse(why)),
        };
        ReinitReceiver::new(body.into_inner()).receive().await
    }

    /// Reinitialization events: [`Client::wait_for_reinit`] in a loop that
    /// reconnects after any failure, immediately the first time, then after
    /// 100 ms growing by the golden ratio up to 10 s, and immediately again
    /// after each event. Failures are logged (tracing, `warn`), not
    /// returned, except coderd's 409: as in Go's `WaitForReinitLoop`, that
    /// answer is terminal and ends the stream (logged at `info`). The stream
    /// owns no task: dropping it stops everything, an open request included.
    pub fn wait_for_reinit_loop(&self) -> BoxStream<'static, ReinitializationEvent> {
        let state = (self.clone(), Backoff::new(REINIT_BACKOFF_FLOOR, REINIT_BACKOFF_CEILING));
        Box::pin(futures::stream::unfold(state, |(client, mut backoff)| async move {
            loop {
                let delay = backoff.next_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                tracing::debug!("waiting for agent reinitialization instructions");
                match client.wait_for_reinit().await {
                    Ok(event) => {
                        backoff.reset();
                        return Some((event, (client, backoff)));
                    }
                    Err(e) if e.status() == Some(409) => {
                        tracing::info!(error = %e, "received terminal 409, stopping reinit polling");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to wait for agent reinitialization instructions");
                    }
                }
            }
        }))
    }
}
