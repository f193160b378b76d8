//! Azure: the attested document from the instance metadata service,
//! exchanged at `POST /api/v2/workspaceagents/azure-instance-identity`.

use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;

use super::metadata::{metadata_builder_methods, MetadataSettings};
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
    settings: MetadataSettings,
}

impl Default for AzureInstanceIdentity {
    fn default() -> Self {
        AzureInstanceIdentity {
            settings: MetadataSettings::new(Self::DEFAULT_METADATA_URL),
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

    metadata_builder_methods!();
}

impl TokenExchanger for AzureInstanceIdentity {
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>> {
        Box::pin(async move {
            let body = self
                .settings
                .fetch(
                    ctx.http(),
                    "azure",
                    Method::GET,
                    "/metadata/attested/document?api-version=2020-09-01",
                    &[("Metadata", "true")],
                )
                .await?;
            let doc: AttestedDocument = serde_json::from_slice(&body).map_err(|e| {
                Error::Metadata(format!(
                    "azure: decode attested document: {}",
                    crate::http::describe_json_error(&e)
                ))
            })?;
            ctx.post_azure_identity(&AzureInstanceIdentityToken {
                agent_name: self.settings.agent_name.clone(),
                signature: doc.signature,
                encoding: doc.encoding,
            })
            .await
        })
    }
}
