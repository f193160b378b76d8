//! Version negotiation, which Go's SDK does not have: dial the newest
//! version this crate knows and, when coderd refuses it, dial the newest
//! version coderd says it speaks.

use super::connection::Connection;
use super::{agent, tailnet, CURRENT_VERSION};
use crate::client::Client;
use crate::drpc::ApiVersion;
use crate::error::Error;

/// The oldest DRPC API version.
pub const OLDEST_VERSION: ApiVersion = ApiVersion::new(2, 0);

/// A connection at the version agreed with the server, with clients of the
/// newest API on it. Calls of RPCs newer than [`Negotiated::version`] fail
/// locally with [`RpcError::VersionTooOld`](crate::drpc::RpcError::VersionTooOld)
/// instead of reaching the server.
#[derive(Clone, Debug)]
pub struct Negotiated {
    /// The connection.
    pub connection: Connection,
    /// The agent API client.
    pub agent: agent::AgentLatest,
    /// The tailnet API client.
    pub tailnet: tailnet::TailnetLatest,
}

impl Negotiated {
    /// The version agreed with the server.
    pub fn version(&self) -> ApiVersion {
        self.connection.version()
    }
}

/// The version a refusal says the server speaks, from coderd's `version`
/// validation ("server is at version 2.8, behind requested minor version 11").
fn server_version(error: &Error) -> Option<Option<ApiVersion>> {
    let api = error.api()?;
    if api.status != 400 {
        return None;
    }
    let detail = &api.validation("version")?.detail;
    let parsed = detail
        .strip_prefix("server is at version ")
        .and_then(|rest| rest.split(|c: char| c == ',' || c.is_whitespace()).next())
        .and_then(|v| v.parse::<ApiVersion>().ok());
    Some(parsed)
}

/// The next version to try after `tried` was refused.
fn next_attempt(tried: ApiVersion, hint: Option<ApiVersion>) -> Option<ApiVersion> {
    match hint {
        // Trust the server's own version only if it moves us down.
        Some(v) if v < tried && v >= OLDEST_VERSION => Some(v),
        _ if tried.minor > 0 && tried > OLDEST_VERSION => Some(ApiVersion::new(tried.major, tried.minor - 1)),
        _ => None,
    }
}

impl Client {
    /// Connects at the newest version both sides speak: starts at the
    /// crate's newest and, on coderd's "Unknown or unsupported API version"
    /// refusal, dials the version the server names (or one minor lower),
    /// never below 2.0.
    pub async fn connect_rpc_negotiated(&self) -> Result<Negotiated, Error> {
        self.connect_rpc_negotiated_with_role(None).await
    }

    /// [`Client::connect_rpc_negotiated`] with a `role` query parameter (`"agent"` for a workspace agent).
    pub async fn connect_rpc_negotiated_with_role(&self, role: Option<&str>) -> Result<Negotiated, Error> {
        let mut version = CURRENT_VERSION;
        loop {
            match self.connect_rpc_version(version, role).await {
                Ok(connection) => {
                    tracing::debug!(%version, "negotiated agent API version");
                    return Ok(Negotiated {
                        agent: agent::AgentLatest::new(connection.transport()),
                        tailnet: tailnet::TailnetLatest::new(connection.transport()),
                        connection,
                    });
                }
                Err(e) => {
                    let Some(hint) = server_version(&e) else { return Err(e) };
                    match next_attempt(version, hint) {
                        Some(next) => {
                            tracing::debug!(refused = %version, next = %next, "server refused the API version");
                            version = next;
                        }
                        None => return Err(e),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_attempt_follows_the_server_hint_downwards_only() {
        let v = ApiVersion::new;
        assert_eq!(next_attempt(v(2, 11), Some(v(2, 8))), Some(v(2, 8)));
        assert_eq!(
            next_attempt(v(2, 11), Some(v(2, 12))),
            Some(v(2, 10)),
            "a hint upwards is ignored"
        );
        assert_eq!(next_attempt(v(2, 11), None), Some(v(2, 10)));
        assert_eq!(next_attempt(v(2, 0), None), None, "never below 2.0");
        assert_eq!(next_attempt(v(2, 3), Some(v(1, 9))), Some(v(2, 2)));
    }
}
