//! AWS: the instance identity document and its signature from IMDSv2,
//! exchanged at `POST /api/v2/workspaceagents/aws-instance-identity`.

use futures::future::BoxFuture;
use reqwest::Method;

use super::metadata::{metadata_builder_methods, text, MetadataSettings};
use super::{ExchangeContext, SessionToken, TokenExchanger};
use crate::error::Error;
use crate::rest::types::AwsInstanceIdentityToken;

/// Exchanges the EC2 instance identity for a session token
/// (`CODER_AGENT_AUTH=aws-instance-identity`).
///
/// IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds:
/// 21600` gives a metadata token; `GET
/// /latest/dynamic/instance-identity/signature` and `.../document` with
/// `X-aws-ec2-metadata-token` give the two strings posted to coderd as read.
#[derive(Clone, Debug)]
pub struct AwsInstanceIdentity {
    settings: MetadataSettings,
}

impl Default for AwsInstanceIdentity {
    fn default() -> Self {
        AwsInstanceIdentity {
            settings: MetadataSettings::new(Self::DEFAULT_METADATA_URL),
        }
    }
}

impl AwsInstanceIdentity {
    /// The instance metadata service.
    pub const DEFAULT_METADATA_URL: &'static str = "http://169.254.169.254";

    /// An exchanger for the standard metadata service.
    pub fn new() -> Self {
        Self::default()
    }

    metadata_builder_methods!();
}

impl TokenExchanger for AwsInstanceIdentity {
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>> {
        Box::pin(async move {
            let http = ctx.http();
            let imds_token = self
                .settings
                .fetch(
                    http,
                    "aws",
                    Method::PUT,
                    "/latest/api/token",
                    &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                )
                .await?;
            let imds_token = text(&imds_token);
            let header = [("X-aws-ec2-metadata-token", imds_token.as_str())];
            let signature = self
                .settings
                .fetch(
                    http,
                    "aws",
                    Method::GET,
                    "/latest/dynamic/instance-identity/signature",
                    &header,
                )
                .await?;
            let document = self
                .settings
                .fetch(
                    http,
                    "aws",
                    Method::GET,
                    "/latest/dynamic/instance-identity/document",
                    &header,
                )
                .await?;
            ctx.post_aws_identity(&AwsInstanceIdentityToken {
                agent_name: self.settings.agent_name.clone(),
                signature: text(&signature),
                document: text(&document),
            })
            .await
        })
    }
}
