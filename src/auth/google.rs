//! Google Cloud: the instance identity JWT from the GCE metadata server,
//! exchanged at `POST /api/v2/workspaceagents/google-instance-identity`.

use futures::future::BoxFuture;
use reqwest::Method;

use super::metadata::{metadata_builder_methods, text, MetadataSettings};
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
    settings: MetadataSettings,
    service_account: String,
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
            settings: MetadataSettings::new(metadata_url),
            service_account: "default".to_owned(),
        }
    }

    metadata_builder_methods!();

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
}

impl TokenExchanger for GoogleInstanceIdentity {
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>> {
        Box::pin(async move {
            let path = format!(
                "/computeMetadata/v1/instance/service-accounts/{}/identity?audience=coder&format=full",
                self.service_account
            );
            let jwt = self
                .settings
                .fetch(
                    ctx.http(),
                    "google",
                    Method::GET,
                    &path,
                    &[("Metadata-Flavor", "Google")],
                )
                .await?;
            ctx.post_google_identity(&GoogleInstanceIdentityToken {
                agent_name: self.settings.agent_name.clone(),
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
            GoogleInstanceIdentity::with_metadata_host(None).settings.url,
            "http://169.254.169.254"
        );
        assert_eq!(
            GoogleInstanceIdentity::with_metadata_host(Some("127.0.0.1:8089".into()))
                .settings
                .url,
            "http://127.0.0.1:8089"
        );
        let explicit = GoogleInstanceIdentity::with_metadata_host(Some("ignored:1".into())).metadata_url("http://x:2");
        assert_eq!(explicit.settings.url, "http://x:2");
        assert_eq!(
            GoogleInstanceIdentity::new().service_account("").service_account,
            "default"
        );
    }
}
