//! Session tokens: where the agent's `Coder-Session-Token` comes from.
//!
//! A [`TokenProvider`] hands out the current token and can be asked to
//! refresh it (after a 401, or before reconnecting). [`FixedToken`] is a
//! token given up front. [`InstanceIdentity`] obtains one by exchanging the
//! machine's cloud identity with coderd, through a [`TokenExchanger`]:
//! [`AwsInstanceIdentity`], [`AzureInstanceIdentity`] or
//! [`GoogleInstanceIdentity`].
//!
//! This module knows the cloud metadata services and the three exchange
//! endpoints; it does not know the other REST calls nor the RPC dial, which
//! only ask a provider for the current token.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::Error;
use crate::http::{Call, Decoded, Rest};

mod aws;
mod azure;
mod google;
mod identity;
mod metadata;

pub use aws::AwsInstanceIdentity;
pub use azure::AzureInstanceIdentity;
pub use google::{GoogleInstanceIdentity, GCE_METADATA_HOST_ENV};
pub use identity::{InstanceIdentity, DEFAULT_EXCHANGE_TIMEOUT};
pub use metadata::DEFAULT_METADATA_TIMEOUT;

/// The header coderd reads the agent token from.
pub const SESSION_TOKEN_HEADER: &str = "Coder-Session-Token";

/// A session token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps a token value.
    pub fn new(value: impl Into<String>) -> Self {
        SessionToken(value.into())
    }

    /// The secret value, for putting it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no token is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(REDACTED)")
    }
}

impl From<&str> for SessionToken {
    fn from(s: &str) -> Self {
        SessionToken::new(s)
    }
}

impl From<String> for SessionToken {
    fn from(s: String) -> Self {
        SessionToken::new(s)
    }
}

/// Supplies the agent's session token (Go's `RefreshableSessionTokenProvider`).
pub trait TokenProvider: Send + Sync + 'static {
    /// The current token, obtaining one first if there is none yet.
    fn token(&self) -> BoxFuture<'_, Result<SessionToken, Error>>;

    /// Obtains a fresh token (a no-op for fixed tokens).
    fn refresh(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Whether [`TokenProvider::refresh`] can yield a different token. When
    /// true, a REST call or RPC dial refused with 401 refreshes the token
    /// and tries once more.
    fn refreshable(&self) -> bool {
        true
    }
}

/// A token known in advance (`CODER_AGENT_TOKEN`).
#[derive(Clone, Debug)]
pub struct FixedToken(SessionToken);

impl FixedToken {
    /// Wraps a token.
    pub fn new(token: impl Into<SessionToken>) -> Self {
        FixedToken(token.into())
    }
}

impl TokenProvider for FixedToken {
    fn token(&self) -> BoxFuture<'_, Result<SessionToken, Error>> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn refreshable(&self) -> bool {
        false
    }
}

/// How an agent authenticates, named as Coder's agent names it in
/// `CODER_AGENT_AUTH` (`token`, the default, or one of the three cloud
/// instance identities).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// A fixed token (`CODER_AGENT_TOKEN`).
    #[default]
    Token,
    /// [`AwsInstanceIdentity`].
    AwsInstanceIdentity,
    /// [`AzureInstanceIdentity`].
    AzureInstanceIdentity,
    /// [`GoogleInstanceIdentity`].
    GoogleInstanceIdentity,
}

impl AuthMethod {
    /// The environment variable Coder's agent reads the method from.
    pub const ENV: &'static str = "CODER_AGENT_AUTH";

    /// The method's name in `CODER_AGENT_AUTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::AwsInstanceIdentity => "aws-instance-identity",
            AuthMethod::AzureInstanceIdentity => "azure-instance-identity",
            AuthMethod::GoogleInstanceIdentity => "google-instance-identity",
        }
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "" | "token" => Ok(AuthMethod::Token),
            "aws-instance-identity" => Ok(AuthMethod::AwsInstanceIdentity),
            "azure-instance-identity" => Ok(AuthMethod::AzureInstanceIdentity),
            "google-instance-identity" => Ok(AuthMethod::GoogleInstanceIdentity),
            other => Err(Error::Config(format!(
                "unknown auth method {other:?}: want token, aws-instance-identity, azure-instance-identity or google-instance-identity"
            ))),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exchanges this machine's cloud identity for a session token (one
/// implementation per cloud). Used through [`InstanceIdentity`], which
/// caches the token and makes sure only one exchange runs at a time.
pub trait TokenExchanger: fmt::Debug + Send + Sync + 'static {
    /// Reads the identity from the metadata service and posts it to coderd.
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>>;
}

/// What an exchanger needs: an HTTP client for the metadata service and
/// coderd's three exchange endpoints, called without a session token.
#[derive(Clone, Debug)]
pub struct ExchangeContext {
    rest: Arc<Rest>,
}

impl ExchangeContext {
    pub(crate) fn new(rest: Arc<Rest>) -> Self {
        ExchangeContext { rest }
    }

    /// The HTTP client for metadata requests (the client's own, so that
    /// its proxy and TLS settings apply).
    pub fn http(&self) -> &reqwest::Client {
        self.rest.http()
    }

    /// `POST /api/v2/workspaceagents/aws-instance-identity`.
    pub async fn post_aws_identity(
        &self,
        body: &crate::rest::types::AwsInstanceIdentityToken,
    ) -> Result<SessionToken, Error> {
        let outcome = self
            .rest
            .execute(self.call(), |c| c.post_aws_instance_identity(body))
            .await?;
        session_token(outcome)
    }

    /// `POST /api/v2/workspaceagents/azure-instance-identity`.
    pub async fn post_azure_identity(
        &self,
        body: &crate::rest::types::AzureInstanceIdentityToken,
    ) -> Result<SessionToken, Error> {
        let outcome = self
            .rest
            .execute(self.call(), |c| c.post_azure_instance_identity(body))
            .await?;
        session_token(outcome)
    }

    /// `POST /api/v2/workspaceagents/google-instance-identity`.
    pub async fn post_google_identity(
        &self,
        body: &crate::rest::types::GoogleInstanceIdentityToken,
    ) -> Result<SessionToken, Error> {
        let outcome = self
            .rest
            .execute(self.call(), |c| c.post_google_instance_identity(body))
            .await?;
        session_token(outcome)
    }

    /// No token header: the exchange is what obtains the token.
    fn call(&self) -> Call {
        Call {
            token: None,
            timeout: self.rest.timeout(),
            accept: None,
        }
    }
}

fn session_token(outcome: Decoded<crate::rest::types::AuthenticateResponse>) -> Result<SessionToken, Error> {
    match outcome {
        Decoded::Value(r) if !r.session_token.is_empty() => Ok(SessionToken::new(r.session_token)),
        Decoded::Value(_) => Err(Error::InvalidResponse(
            "coderd returned an empty session token".to_owned(),
        )),
        Decoded::Undecodable(why) => Err(Error::InvalidResponse(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_methods_parse_coders_names() {
        for m in [
            AuthMethod::Token,
            AuthMethod::AwsInstanceIdentity,
            AuthMethod::AzureInstanceIdentity,
            AuthMethod::GoogleInstanceIdentity,
        ] {
            assert_eq!(m.as_str().parse::<AuthMethod>().unwrap(), m);
        }
        assert_eq!("".parse::<AuthMethod>().unwrap(), AuthMethod::Token);
        assert!("kerberos".parse::<AuthMethod>().is_err());
    }

    #[test]
    fn token_debug_never_shows_the_secret() {
        let t = SessionToken::new("super-secret-token");
        assert!(!format!("{t:?}").contains("super-secret"));
        assert!(!format!("{:?}", FixedToken::new(t)).contains("super-secret"));
    }
}
