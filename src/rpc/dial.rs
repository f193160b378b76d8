//! Dialling the agent RPC endpoint: `GET /api/v2/workspaceagents/me/rpc`
//! upgraded to a websocket, then a yamux client session on it, as the Go
//! SDK's `connectRPCVersion` does. Also the versioned `connect_rpc*` methods.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::connection::Connection;
use super::{agent, tailnet, CURRENT_VERSION};
use crate::auth::{SessionToken, SESSION_TOKEN_HEADER};
use crate::client::Client;
use crate::drpc::ApiVersion;
use crate::error::{ApiError, Error};
use crate::mux::websocket::{self, WsByteStream};
use crate::mux::yamux::{Session, SessionConfig};
use crate::net::{self, tls, NetConfig};

/// The path of the agent RPC endpoint.
pub const RPC_PATH: &str = "/api/v2/workspaceagents/me/rpc";

/// The `role` query parameter value a real workspace agent sends.
pub const ROLE_AGENT: &str = "agent";

/// The websocket URL for `version` and `role`, with the query in Go's
/// (sorted) order: `role=agent&version=2.8`.
pub fn rpc_url(base: &url::Url, version: ApiVersion, role: Option<&str>) -> Result<url::Url, Error> {
    let mut url = base.join(RPC_PATH).map_err(|e| Error::InvalidUrl(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => return Err(Error::InvalidUrl(format!("scheme {other:?} is not http or https"))),
    };
    url.set_scheme(scheme)
        .map_err(|_| Error::InvalidUrl("cannot set websocket scheme".to_owned()))?;
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        if let Some(role) = role.filter(|r| !r.is_empty()) {
            q.append_pair("role", role);
        }
        q.append_pair("version", &version.to_string());
    }
    Ok(url)
}

impl Client {
    /// Dials the RPC endpoint at `version`, sending `role` if given, and
    /// returns the raw connection any generated client can be built on.
    pub async fn connect_rpc_version(&self, version: ApiVersion, role: Option<&str>) -> Result<Connection, Error> {
        let span = tracing::debug_span!("dial_rpc", %version, role = role.unwrap_or_default());
        self.dial_rpc(version, role).instrument(span).await
    }

    async fn dial_rpc(&self, version: ApiVersion, role: Option<&str>) -> Result<Connection, Error> {
        let url = rpc_url(self.base_url(), version, role)?;
        let options = *self.rpc_options();
        let mut refreshed = false;
        let ws = loop {
            let token = self.session_token().await?;
            let attempt = tokio::time::timeout(
                options.dial_timeout,
                upgrade(self.net(), &url, &token, options.dial_timeout),
            )
            .await;
            let attempt = attempt.unwrap_or_else(|_| {
                Err(Error::Timeout(format!(
                    "websocket dial of {} took over {:?}",
                    crate::error::redact_url(&url),
                    options.dial_timeout
                )))
            });
            match attempt {
                Ok(ws) => break ws,
                // A refused token is refreshed once (instance identity), then the dial is retried.
                Err(e) if e.status() == Some(401) && !refreshed && self.token_provider().refreshable() => {
                    tracing::debug!("rpc dial refused with 401; refreshing the session token and retrying once");
                    self.token_provider().refresh().await?;
                    refreshed = true;
                }
                Err(e) => return Err(e),
            }
        };
        let config = SessionConfig {
            keepalive: options.keepalive,
            ..Default::default()
        };
        let session = match ws {
            Upgraded::Plain(ws) => Session::client(WsByteStream::new(ws), config),
            Upgraded::Tls(ws) => Session::client(WsByteStream::new(ws), config),
        };
        tracing::debug!("agent rpc connected");
        let conn = Connection::new(session, version);
        Ok(match options.default_deadline {
            Some(deadline) => conn.with_default_deadline(deadline),
            None => conn,
        })
    }

    /// Connects at the newest version this crate knows, without a role.
    pub async fn connect_rpc(&self) -> Result<Connection, Error> {
        self.connect_rpc_version(CURRENT_VERSION, None).await
    }

    /// Connects at the newest version with an explicit role (`"agent"` for a
    /// workspace agent, which turns on coderd's connection monitoring).
    pub async fn connect_rpc_with_role(&self, role: &str) -> Result<Connection, Error> {
        self.connect_rpc_version(CURRENT_VERSION, Some(role)).await
    }

    /// Like [`Client::connect_rpc28`], sending `role`.
    pub async fn connect_rpc28_with_role(&self, role: &str) -> Result<(agent::Agent28, tailnet::Tailnet28), Error> {
        let conn = self.connect_rpc_version(ApiVersion::new(2, 8), Some(role)).await?;
        Ok((
            agent::Agent28::new(conn.transport()),
            tailnet::Tailnet28::new(conn.transport()),
        ))
    }
}

/// `connect_rpcNN` for each version of `spec/versions.toml`, returning the
/// agent and tailnet clients of that version on one connection (Go's
/// `ConnectRPCNNWithTailnet`). The rows, release notes included, come from
/// the generated table ([`super::versions`]), so no hand list can drift.
macro_rules! pinned_connects {
    ($($name:ident => ($major:literal, $minor:literal, $agent:ident, $tailnet:ident, $doc:literal)),* $(,)?) => {
        impl Client {
            $(
                #[doc = $doc]
                pub async fn $name(&self) -> Result<(agent::$agent, tailnet::$tailnet), Error> {
                    let conn = self.connect_rpc_version(ApiVersion::new($major, $minor), None).await?;
                    Ok((agent::$agent::new(conn.transport()), tailnet::$tailnet::new(conn.transport())))
                }
            )*
        }
    };
}

super::versions::pinned_versions!(pinned_connects);

/// An upgraded websocket. A plain (`ws://`) one sits directly on its TCP
/// stream, with no room for TLS state: tokio-tungstenite's `MaybeTlsStream`
/// reserves room for a whole rustls connection (1,104 bytes against 32 for
/// the TCP stream), which every idle agent connection would carry for nothing.
// Only handed from the dial to the session driver, never stored: boxing the
// large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Upgraded {
    Plain(WebSocketStream<tokio::net::TcpStream>),
    Tls(WebSocketStream<tls::ClientStream>),
}

/// One websocket upgrade of `url` with the token header: TCP connect
/// (direct or through a proxy's `CONNECT` tunnel), for `wss://` a TLS
/// handshake with the client's trust (inside the tunnel), then the upgrade.
async fn upgrade(
    net: &NetConfig,
    url: &url::Url,
    token: &SessionToken,
    timeout: std::time::Duration,
) -> Result<Upgraded, Error> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::WebSocket(e.to_string()))?;
    let mut value = http::HeaderValue::from_str(token.expose())
        .map_err(|_| Error::Config("session token is not a valid header value".to_owned()))?;
    // Keeps the token out of any Debug print of the request.
    value.set_sensitive(true);
    request.headers_mut().insert(SESSION_TOKEN_HEADER, value);
    let host = url
        .host()
        .ok_or_else(|| Error::InvalidUrl(format!("{}: no host", crate::error::redact_url(url))))?;
    // Checked before connecting: a host that cannot be a TLS server name
    // fails the same way whether or not it resolves.
    let tls_name = match url.scheme() {
        "wss" => Some(tls::server_name(host.clone()).map_err(|e| Error::InvalidUrl(e.to_string()))?),
        _ => None,
    };
    let tcp = net::connect_tcp(net, url, timeout).await?;
    let Some(tls_name) = tls_name else {
        let (ws, _response) = websocket::client_handshake(request, tcp, websocket::client_config())
            .await
            .map_err(|e| upgrade_error(e, url))?;
        return Ok(Upgraded::Plain(ws));
    };
    let stream = tls::connect(&net.tls, tls_name, tcp)
        .await
        .map_err(|e| match tls::find_rustls_error(&e) {
            Some(cause) => Error::tls(&host.to_string(), cause.clone()),
            None => Error::WebSocket(format!("tls handshake with {host}: {e}")),
        })?;
    // rustls buffers the socket: tungstenite's own read buffer stays small.
    let config = websocket::client_config_tls();
    let (ws, _response) = websocket::client_handshake(request, stream, config)
        .await
        .map_err(|e| upgrade_error(e, url))?;
    Ok(Upgraded::Tls(ws))
}

/// Maps a failed websocket dial to the SDK error; a refused upgrade keeps
/// coderd's status and error body (best effort: only the body bytes that
/// arrived with the headers are available).
fn upgrade_error(e: tungstenite::Error, url: &url::Url) -> Error {
    match e {
        tungstenite::Error::Http(response) => {
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.body().as_deref().unwrap_or_default();
            Error::from(ApiError::from_response_parts(
                response.status().as_u16(),
                Some("GET"),
                Some(url),
                content_type.as_deref(),
                body,
            ))
        }
        other => Error::WebSocket(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_url_matches_go_query_order_and_scheme() {
        let base = url::Url::parse("https://coder.example.com/some/prefix").unwrap();
        let u = rpc_url(&base, ApiVersion::new(2, 8), Some("agent")).unwrap();
        assert_eq!(
            u.as_str(),
            "wss://coder.example.com/api/v2/workspaceagents/me/rpc?role=agent&version=2.8"
        );
        let base = url::Url::parse("http://127.0.0.1:3000").unwrap();
        let u = rpc_url(&base, ApiVersion::new(2, 0), None).unwrap();
        assert_eq!(
            u.as_str(),
            "ws://127.0.0.1:3000/api/v2/workspaceagents/me/rpc?version=2.0"
        );
    }
}
