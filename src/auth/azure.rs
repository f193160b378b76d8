//! Azure: the attested document from the instance metadata service,
//! exchanged at `POST /api/v2/workspaceagents/azure-instance-identity`.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;

use super::metadata::{fetch, join, DEFAULT_METADATA_TIMEOUT};
use super::{ExchangeContext, SessionToken, TokenExchanger};
use crate::error::Error;
use crate::rest::types::AzureInstanceIdentityToken;

/// Exchanges the Azure attested document for a session token
/// (`CODER_AGENT_AUTH=azure-instance-identity`).
///
/// `GET /metadata/attested/document?api-version=2020-09-01` with `Metadata:
/// true`; the `signature` and `encoding` of its JSON are posted to coderd.
#[derive(Clone, Debug)]
pub struct AzureInstanceIdentity {
    metadata_url: String,
    agent_name: Option<String>,
    timeout: Duration,
}

impl Default for AzureInstanceIdentity {
    fn default() -> Self {
        AzureInstanceIdentity {
            metadata_url: Self::DEFAULT_METADATA_URL.to_owned(),
            agent_name: None,
            timeout: DEFAULT_METADATA_TIMEOUT,
        }
    }
}

/// The fields of the attested document coderd needs (others are ignored,
/// missing ones are empty, as Go decodes them).
#[derive(Deserialize)]
struct AttestedDocument {
    #[serde(default)]
    signature: String,
    #[serde(default)]
    encoding: String,
}

impl AzureInstanceIdentity {
    /// The instance metadata service.
    pub const DEFAULT_METADATA_URL: &'static str = "http://169.254.169.254";

    /// An exchanger for the standard metadata service.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses another metadata base URL (a fake in tests, an unusual network).
    pub fn metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = url.into();
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

impl TokenExchanger for AzureInstanceIdentity {
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>> {
        Box::pin(async move {
            let body = fetch(
                ctx.http(),
                "azure",
                Method::GET,
                &join(&self.metadata_url, "/metadata/attested/document?api-version=2020-09-01"),
                &[("Metadata", "true")],
                self.timeout,
            )
            .await?;
            let doc: AttestedDocument = serde_json::from_slice(&body).map_err(|e| {
                Error::Metadata(format!(
                    "azure: decode attested document: {}",
                    crate::http::describe_json_error(&e)
                ))
            })?;
            ctx.post_azure_identity(&AzureInstanceIdentityToken {
                agent_name: self.agent_name.clone(),
                signature: doc.signature,
                encoding: doc.encoding,
            })
            .await
        })
    }
}
