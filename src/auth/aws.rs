//! AWS: the instance identity document and its signature from IMDSv2,
//! exchanged at `POST /api/v2/workspaceagents/aws-instance-identity`.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;

use super::metadata::{fetch, join, text, DEFAULT_METADATA_TIMEOUT};
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
    metadata_url: String,
    agent_name: Option<String>,
    timeout: Duration,
}

impl Default for AwsInstanceIdentity {
    fn default() -> Self {
        AwsInstanceIdentity {
            metadata_url: Self::DEFAULT_METADATA_URL.to_owned(),
            agent_name: None,
            timeout: DEFAULT_METADATA_TIMEOUT,
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

    /// The time limit of each metadata request (default 5 s).
    pub fn metadata_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl TokenExchanger for AwsInstanceIdentity {
    fn exchange<'a>(&'a self, ctx: &'a ExchangeContext) -> BoxFuture<'a, Result<SessionToken, Error>> {
        Box::pin(async move {
            let http = ctx.http();
            let imds_token = fetch(
                http,
                "aws",
                Method::PUT,
                &join(&self.metadata_url, "/latest/api/token"),
                &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                self.timeout,
            )
            .await?;
            let imds_token = text(&imds_token);
            let header = [("X-aws-ec2-metadata-token", imds_token.as_str())];
            let signature = fetch(
                http,
                "aws",
                Method::GET,
                &join(&self.metadata_url, "/latest/dynamic/instance-identity/signature"),
                &header,
                self.timeout,
            )
            .await?;
            let document = fetch(
                http,
                "aws",
                Method::GET,
                &join(&self.metadata_url, "/latest/dynamic/instance-identity/document"),
                &header,
                self.timeout,
            )
            .await?;
            ctx.post_aws_identity(&AwsInstanceIdentityToken {
                agent_name: self.agent_name.clone(),
                signature: text(&signature),
                document: text(&document),
            })
            .await
        })
    }
}
