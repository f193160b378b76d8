//! The RPC endpoint of the embedded server: coderd's token and version
//! checks, the websocket upgrade, a yamux server session, and one DRPC call
//! served per accepted yamux stream.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::{api_error, authenticate_agent, ServerState};
use crate::drpc::{conn, ApiVersion};
use crate::error::{Response as ErrorBody, ValidationError};
use crate::mux::websocket::WsByteStream;
use crate::mux::yamux::{Session, SessionConfig};

/// Query parameters of `GET /api/v2/workspaceagents/me/rpc`.
#[derive(Debug, Deserialize)]
pub(crate) struct RpcQuery {
    version: Option<String>,
    role: Option<String>,
}

/// Checks a requested version against the newest the server supports, with
/// the error texts of coderd's `apiversion` package.
///
/// Numbers are read as Go's `strconv.Atoi` reads them (64-bit, optional
/// sign), so the answers match coderd's: `-1.0` is "no longer supported",
/// `70000.0` is "behind requested major version", a number past 64 bits is
/// "invalid major version". coderd accepts a negative minor of the current
/// major (`2.-1`); so does this, as minor 0.
pub fn validate_version(requested: &str, supported: ApiVersion) -> Result<ApiVersion, String> {
    let parts: Vec<&str> = requested.split('.').collect();
    let [major, minor] = parts.as_slice() else {
        return Err(format!("invalid version string: {requested}"));
    };
    let major: i64 = major
        .parse()
        .map_err(|_| format!("invalid major version: {requested}"))?;
    let minor: i64 = minor
        .parse()
        .map_err(|_| format!("invalid minor version: {requested}"))?;
    if major > i64::from(supported.major) {
        return Err(format!(
            "server is at version {supported}, behind requested major version {requested}"
        ));
    }
    if major < i64::from(supported.major) {
        return Err(format!("version {requested} is no longer supported"));
    }
    if minor > i64::from(supported.minor) {
        return Err(format!(
            "server is at version {supported}, behind requested minor version {requested}"
        ));
    }
    // In range now: major equals the supported major, minor is at most the
    // supported minor.
    let minor = u16::try_from(minor).unwrap_or(0);
    Ok(ApiVersion::new(supported.major, minor))
}

pub(crate) async fn handle(
    State(state): State<ServerState>,
    Query(query): Query<RpcQuery>,
    mut request: Request<Body>,
) -> Response<Body> {
    let agent = match authenticate_agent(&state, request.headers(), request.uri()) {
        Ok(agent) => agent,
        Err(response) => return *response,
    };
    // coderd treats a missing or empty version as 2.0 (Go's `Query().Get`
    // cannot tell them apart).
    let requested = query.version.as_deref().filter(|v| !v.is_empty()).unwrap_or("2.0");
    let version = match validate_version(requested, state.max_version()) {
        Ok(v) => v,
        Err(detail) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    message: "Unknown or unsupported API version".to_owned(),
                    detail: String::new(),
                    validations: vec![ValidationError {
                        field: "version".to_owned(),
                        detail,
                    }],
                },
            )
        }
    };
    if let Some(response) = state.upgrade_refusal() {
        return response;
    }
    let Some(accept) = websocket_accept(request.headers()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            ErrorBody {
                message: "Expected a websocket upgrade request.".to_owned(),
                ..ErrorBody::default()
            },
        );
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorBody {
                message: "Connection cannot be upgraded.".to_owned(),
                ..ErrorBody::default()
            },
        );
    };
    let role = query.role.unwrap_or_default();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let config = state.websocket_config();
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        serve_session(state, ws, version, role, agent).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request.
fn websocket_accept(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

async fn serve_session<S>(
    state: ServerState,
    ws: WebSocketStream<S>,
    version: ApiVersion,
    role: String,
    agent: std::sync::Arc<super::api::AgentEntry>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Go's yamux server has no limit on open streams, only on un-accepted
    // ones (AcceptBacklog 256); ours keeps a configurable cap instead of
    // none, refusing streams past it with RST.
    let limits = state.limits();
    let config = SessionConfig {
        max_open_streams: limits.max_streams_per_connection,
        ..SessionConfig::default()
    };
    let mut bytes = WsByteStream::new(ws);
    // coderd monitors (pings) only agents: no role, or role "agent".
    let monitored = role.is_empty() || role == crate::rpc::ROLE_AGENT;
    if let Some((interval, timeout)) = state.keepalive().filter(|_| monitored) {
        bytes = bytes.with_keepalive(interval, timeout);
    }
    let (session, mut incoming) = Session::server(bytes, config);
    let connection = state.connection_opened(
        super::ConnectionInfo {
            version,
            role: role.clone(),
        },
        session.clone(),
    );
    agent.connections_open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    agent
        .connections_total
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tracing::debug!(%version, %role, agent = %agent.agent_id, "agent rpc session started");
    let router = state.router();
    let mut drop_requests = state.api().connection_drop_requests();
    // A peer that upgrades and then opens no stream is closed after this.
    let first_stream = tokio::time::sleep(limits.first_stream_timeout);
    tokio::pin!(first_stream);
    let mut streams_seen = false;
    loop {
        tokio::select! {
            stream = incoming.accept() => {
                let Some(stream) = stream else { break };
                streams_seen = true;
                let router = router.clone();
                // The call's reports are also counted for this agent.
                tokio::spawn(super::api::CURRENT_AGENT.scope(agent.clone(), async move {
                    let id = stream.id();
                    if let Err(e) = conn::serve_stream(stream, router).await {
                        tracing::debug!(stream = id, error = %e, "drpc stream ended with an error");
                    }
                }));
            }
            _ = drop_requests.recv() => {
                session.close();
                break;
            }
            _ = connection.kicked() => {
                session.close();
                break;
            }
            _ = &mut first_stream, if !streams_seen => {
                tracing::debug!(timeout = ?limits.first_stream_timeout, "no yamux stream opened in time; closing");
                session.close();
                break;
            }
        }
    }
    state.connection_closed(&connection);
    agent.connections_open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    tracing::debug!("agent rpc session ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_validation_texts_match_coderds_apiversion() {
        let v28 = ApiVersion::new(2, 8);
        assert_eq!(validate_version("2.8", v28), Ok(v28));
        assert_eq!(validate_version("2.0", v28), Ok(ApiVersion::new(2, 0)));
        assert_eq!(
            validate_version("2.9", v28).unwrap_err(),
            "server is at version 2.8, behind requested minor version 2.9"
        );
        assert_eq!(
            validate_version("3.0", v28).unwrap_err(),
            "server is at version 2.8, behind requested major version 3.0"
        );
        assert_eq!(
            validate_version("1.0", v28).unwrap_err(),
            "version 1.0 is no longer supported"
        );
        assert_eq!(
            validate_version("cats", v28).unwrap_err(),
            "invalid version string: cats"
        );
        assert_eq!(
            validate_version("cats.dogs", v28).unwrap_err(),
            "invalid major version: cats.dogs"
        );
        assert_eq!(
            validate_version("2.dogs", v28).unwrap_err(),
            "invalid minor version: 2.dogs"
        );
        // Go's strconv.Atoi semantics: 64-bit, signed.
        assert_eq!(
            validate_version("-1.0", v28).unwrap_err(),
            "version -1.0 is no longer supported"
        );
        assert_eq!(
            validate_version("70000.0", v28).unwrap_err(),
            "server is at version 2.8, behind requested major version 70000.0"
        );
        assert_eq!(
            validate_version("99999999999999999999.1", v28).unwrap_err(),
            "invalid major version: 99999999999999999999.1"
        );
        assert_eq!(
            validate_version("2.8.1", v28).unwrap_err(),
            "invalid version string: 2.8.1"
        );
        assert_eq!(validate_version("2.x", v28).unwrap_err(), "invalid minor version: 2.x");
        assert_eq!(validate_version("", v28).unwrap_err(), "invalid version string: ");
        assert_eq!(validate_version("+2.8", v28), Ok(v28));
        assert_eq!(validate_version("2.-1", v28), Ok(ApiVersion::new(2, 0)));
    }
}
