//! Google Cloud: the instance identity JWT from the GCE metadata server,
//! exchanged at `POST /api/v2/workspaceagents/google-instance-identity`.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;

use super::metadata::{fetch, join, text, DEFAULT_METADATA_TIMEOUT};
use super::{ExchangeContext, SessionToken, TokenExchanger};
use crate::error::Error;
use crate::rest::types::GoogleInstanceIdentityToken;

/// The environment variable Google's client libraries read the metadata
/// server's `host[:port]` from.
pub const GCE_METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";

/// Exchanges the GCE instance identity token for a session token
/// (`CODER_AGENT_AUTH=google-instance-identity`).
///
/// `GET /computeMetadata/v1/instance/service-accounts/<account>/identity?audience=coder&format=full`
/// with `Metadata-Flavor: Google`; the body (a JWT) is posted to coderd as
/// `json_web_token`. The metadata server is `http://169.254.169.254`
/// (the address of `metadata.google.internal`, which Go's metadata client
/// also uses to avoid a DNS lookup), or `http://$GCE_METADATA_HOST` when
/// that variable is set, or the URL given to [`Self::metadata_url`].
#[derive(Clone, Debug)]
pub struct GoogleInstanceIdentity {
    metadata_url: String,
    service_account: String,
    agent_name: Option<String>,
    timeout: Duration,
}

impl Default for GoogleInstanceIdentity {
    fn default() -> Self {
        Self::with_metadata_host(std::env::var(GCE_METADATA_HOST_ENV).ok())
    }
}

impl GoogleInstanceIdentity {
    /// The metadata server when `GCE_METADATA_HOST` is not set.
    pub const DEFAULT_METADATA_URL: &'static str = "http://169.254.169.254";

    /// An exchanger for the `default` service account, honouring
    /// `GCE_METADATA_HOST`.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_metadata_host(host: Option<String>) -> Self {
        let metadata_url = match host.filter(|h| !h.trim().is_empty()) {
            Some(host) => format!("http://{}", host.trim()),
            None => Self::DEFAULT_METADATA_URL.to_owned(),
        };
        GoogleInstanceIdentity {
            metadata_url,
            service_account: "default".to_owned(),
            agent_name: None,
            timeout: DEFAULT_METADATA_TIMEOUT,
        }
    }

    /// Uses another metadata base URL (overrides `GCE_METADATA_HOST`).
    pub fn metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = url.into();
        self
    }

    /// The service account whose identity is used (`default` when empty).
    pub fn service_account(mut self, account: impl Into<String>) -> Self {
        let account = account.into();
        self.service_account = if account.is_empty() {
            "default".to_owned()
        } else {
            account
        };
        self
    }

    /// Names the agent when several agents share this instance (sent as
    /// `agent_name`; omitted when unset or empty).
    pub fn agent_name(mut self, name: impl Into<String>) -> Self {
        self.agent_name = Some(name.into()).filter(|n| !n.is_empty());
        self
    }

    /// The time limit of the metadata request (default 5 s).
    pub fn metadata_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl TokenExchanger for GoogleInstanceIdentity {
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>> {
        Box::pin(async move {
            let path = format!(
                "/computeMetadata/v1/instance/service-accounts/{}/identity?audience=coder&format=full",
                self.service_account
            );
            let jwt = fetch(
                ctx.http(),
                "google",
                Method::GET,
                &join(&self.metadata_url, &path),
                &[("Metadata-Flavor", "Google")],
                self.timeout,
            )
            .await?;
            ctx.post_google_identity(&GoogleInstanceIdentityToken {
                agent_name: self.agent_name.clone(),
                json_web_token: text(&jwt),
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gce_metadata_host_sets_the_metadata_server_and_an_explicit_url_wins() {
        assert_eq!(
            GoogleInstanceIdentity::with_metadata_host(None).metadata_url,
            "http://169.254.169.254"
        );
        assert_eq!(
            GoogleInstanceIdentity::with_metadata_host(Some("127.0.0.1:8089".into())).metadata_url,
            "http://127.0.0.1:8089"
        );
        let explicit = GoogleInstanceIdentity::with_metadata_host(Some("ignored:1".into())).metadata_url("http://x:2");
        assert_eq!(explicit.metadata_url, "http://x:2");
        assert_eq!(
            GoogleInstanceIdentity::new().service_account("").service_account,
            "default"
        );
    }
}
