//! [`Client`]: the agent's handle on one coderd deployment. It holds the
//! base URL and the token provider, and is what both REST calls and RPC
//! connections start from, so they share one source of tokens.

use std::sync::Arc;

use url::Url;

use crate::auth::{FixedToken, SessionToken, TokenProvider};
use crate::error::Error;

/// A workspace agent's client of coderd. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    base_url: Url,
    tokens: Arc<dyn TokenProvider>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    base_url: Result<Url, Error>,
    tokens: Option<Arc<dyn TokenProvider>>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Authenticates with a fixed session token.
    pub fn token(mut self, token: impl Into<SessionToken>) -> Self {
        self.tokens = Some(Arc::new(FixedToken::new(token)));
        self
    }

    /// Authenticates with any token provider.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.tokens = Some(Arc::new(provider));
        self
    }

    /// Uses the caller's HTTP client for REST calls (its timeouts apply).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        crate::tls::install_crypto_provider();
        let base_url = self.base_url?;
        let tokens = self
            .tokens
            .ok_or_else(|| Error::Config("no token or token provider set".to_owned()))?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| Error::Config(e.to_string()))?,
        };
        Ok(Client {
            inner: Arc::new(ClientInner { base_url, tokens, http }),
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
        }
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
        &self.inner.http
    }

    /// `path` (absolute, e.g. `/api/v2/...`) resolved against the base URL.
    #[allow(dead_code)]
    pub(crate) fn url(&self, path: &str) -> Result<Url, Error> {
        self.inner
            .base_url
            .join(path)
            .map_err(|e| Error::InvalidUrl(format!("{path}: {e}")))
    }
}
