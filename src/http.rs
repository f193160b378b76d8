//! How every REST request leaves the crate and how every failure comes back.
//!
//! The progenitor client in `generated/rest.rs` builds the requests; this
//! module supplies its hooks (`ClientHooks` for the generated `Client`): the
//! session-token header from the caller (never from progenitor), a per-call
//! timeout, the user agent and `Accept`, removal of progenitor's
//! `api-version` header (Go does not send it), a tracing line per request
//! without secrets, and the capture of every 4xx/5xx body. [`Rest::execute`]
//! then turns any failure into the one SDK [`Error`], built the way
//! codersdk's `ReadBodyAsError` does. It also owns the redirect policy that
//! keeps the token on coderd's origin.
//!
//! It does not know where tokens come from (the caller passes one per
//! call) nor which operation means what.
//!
//! The per-call values reach the hooks through a tokio task-local set
//! around the generated call, because the generated client carries no
//! per-request state of its own.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use progenitor_client::{ClientHooks, ClientInfo, OperationInfo, ResponseValue};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use url::Url;

use crate::auth::{SessionToken, SESSION_TOKEN_HEADER};
use crate::error::{redact_url, ApiError, Error};
use crate::rest;

/// How much of an error body is read (codersdk reads it all; we stop at 1 MiB).
const MAX_ERROR_BODY: usize = 1 << 20;

/// The error type of every generated operation.
type GeneratedError = progenitor_client::Error<rest::types::Response>;

tokio::task_local! {
    static CALL: Arc<CallState>;
}

/// What one call tells the hooks, and what the hooks saw.
struct CallState {
    token: Option<HeaderValue>,
    timeout: Option<Duration>,
    user_agent: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Method and URL of the request as sent.
    request: Option<(String, Url)>,
    /// The body of a 4xx/5xx answer, read by the exec hook.
    failure: Option<Failure>,
}

struct Failure {
    status: u16,
    content_type: Option<String>,
    body: Bytes,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientHooks<()> for rest::Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        request.headers_mut().remove("api-version");
        let _ = CALL.try_with(|call| {
            let headers = request.headers_mut();
            if let Some(token) = &call.token {
                headers.insert(SESSION_TOKEN_HEADER, token.clone());
            }
            if let Some(ua) = &call.user_agent {
                headers.insert(USER_AGENT, ua.clone());
            }
            if let Some(accept) = &call.accept {
                headers.insert(ACCEPT, accept.clone());
            }
            *request.timeout_mut() = call.timeout;
        });
        Ok(())
    }

    async fn exec(&self, request: reqwest::Request, info: &OperationInfo) -> reqwest::Result<reqwest::Response> {
        let method = request.method().to_string();
        let url = request.url().clone();
        let shown = redact_url(&url);
        let _ = CALL.try_with(|call| lock(&call.seen).request = Some((method.clone(), url)));
        let response = match self.client().execute(request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(operation = info.operation_id, %method, url = %shown, error = %chain(&e), "coderd request failed");
                return Err(e);
            }
        };
        let status = response.status();
        tracing::debug!(operation = info.operation_id, %method, url = %shown, status = status.as_u16(), "coderd request");
        if !(status.is_client_error() || status.is_server_error()) {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let content_type = content_type(&headers);
        let body = read_bounded(response, MAX_ERROR_BODY).await?;
        let _ = CALL.try_with(|call| {
            lock(&call.seen).failure = Some(Failure {
                status: status.as_u16(),
                content_type,
                body: body.clone(),
            })
        });
        // Hand progenitor an equivalent response; its decoding of it is ignored.
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.headers_mut() = headers;
        Ok(reqwest::Response::from(rebuilt))
    }
}

fn content_type(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Reads at most `limit` bytes of a body (the rest is not read).
pub(crate) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> reqwest::Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    Ok(buf.freeze())
}

/// An error and its sources, joined with `: `.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A reqwest failure as the SDK error, with the URL redacted.
pub(crate) fn transport_error(e: reqwest::Error, method: Option<&str>, url: Option<&Url>) -> Error {
    if let Some(cause) = crate::net::tls::find_rustls_error(&e) {
        let host = url.or(e.url()).and_then(Url::host_str).unwrap_or_default();
        return Error::tls(host, cause.clone());
    }
    let timeout = e.is_timeout();
    let url = url.or(e.url()).map(redact_url);
    let text = chain(&e.without_url());
    let text = match (method, url) {
        (Some(m), Some(u)) => format!("{m} {u}: {text}"),
        (None, Some(u)) => format!("{u}: {text}"),
        _ => text,
    };
    if timeout {
        Error::Timeout(text)
    } else {
        Error::Http(text)
    }
}

/// A serde_json error without the string values it quotes (a value in the
/// wrong place could be a secret).
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("string \"") {
        let (head, tail) = rest.split_at(at + "string \"".len());
        out.push_str(head);
        // Skip to the closing quote of the Debug-escaped string.
        let mut escaped = false;
        let mut end = tail.len();
        for (i, c) in tail.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = i;
                break;
            }
        }
        out.push_str("...");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Keeps the session token on the origin it was meant for: redirects within
/// the same origin (scheme, host, port) are followed (at most 10), a
/// redirect to another origin fails the request before anything is sent
/// there. reqwest's default policy would follow it with every custom
/// header, `Coder-Session-Token` included (as Go's `net/http` does).
///
/// Clients built by [`crate::ClientBuilder`] use it; give it to your own
/// `reqwest::ClientBuilder::redirect` when you pass a client in.
pub fn same_origin_redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("stopped after 10 redirects");
        }
        let same_origin = attempt
            .previous()
            .first()
            .is_none_or(|first| first.origin() == attempt.url().origin());
        if same_origin {
            attempt.follow()
        } else {
            let to = redact_url(attempt.url());
            attempt.error(format!(
                "refusing to follow a redirect to another origin ({to}): the session token stays with coderd"
            ))
        }
    })
}

/// One call's settings.
#[derive(Debug, Default)]
pub(crate) struct Call {
    /// The token to send, or none (the identity exchanges).
    pub token: Option<SessionToken>,
    /// A total time limit for the request and its body, or none.
    pub timeout: Option<Duration>,
    /// An `Accept` header replacing the generated one.
    pub accept: Option<&'static str>,
}

/// The outcome of a call that got the success status it expected.
#[derive(Debug)]
pub(crate) enum Decoded<T> {
    /// The body, decoded.
    Value(T),
    /// The status was right but the body did not decode; the message says why.
    Undecodable(String),
}

/// The generated client plus the settings every call shares.
#[derive(Debug)]
pub(crate) struct Rest {
    api: rest::Client,
    timeout: Option<Duration>,
    user_agent: Option<HeaderValue>,
}

impl Rest {
    /// REST calls go to the origin of `base_url`: like Go's
    /// `URL.Parse("/api/v2/...")`, any path in the base URL is replaced.
    pub(crate) fn new(
        base_url: &Url,
        http: reqwest::Client,
        timeout: Option<Duration>,
        user_agent: Option<HeaderValue>,
    ) -> Rest {
        let origin = base_url.origin().ascii_serialization();
        Rest {
            api: rest::Client::new_with_client(&origin, http),
            timeout,
            user_agent,
        }
    }

    /// The HTTP client every request goes through.
    pub(crate) fn http(&self) -> &reqwest::Client {
        self.api.client()
    }

    /// The time limit of ordinary calls.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Runs one generated operation with `call`'s settings and maps every
    /// failure to [`Error`].
    pub(crate) async fn execute<'a, T, F, Fut>(&'a self, call: Call, op: F) -> Result<Decoded<T>, Error>
    where
        F: FnOnce(&'a rest::Client) -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, GeneratedError>>,
    {
        let token = match &call.token {
            Some(t) => {
                let mut v = HeaderValue::from_str(t.expose())
                    .map_err(|_| Error::Config("session token is not a valid header value".to_owned()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let state = Arc::new(CallState {
            token,
            timeout: call.timeout,
            user_agent: self.user_agent.clone(),
            accept: call.accept.map(HeaderValue::from_static),
            seen: Mutex::new(Seen::default()),
        });
        let result = CALL.scope(state.clone(), op(&self.api)).await;
        match result {
            Ok(value) => Ok(Decoded::Value(value.into_inner())),
            Err(e) => {
                let seen = std::mem::take(&mut *lock(&state.seen));
                map_error(e, seen).await
            }
        }
    }
}

async fn map_error<T>(e: GeneratedError, seen: Seen) -> Result<Decoded<T>, Error> {
    let (method, url) = match seen.request {
        Some((m, u)) => (Some(m), Some(u)),
        None => (None, None),
    };
    if let Some(f) = seen.failure {
        return Err(ApiError::from_response_parts(
            f.status,
            method.as_deref(),
            url.as_ref(),
            f.content_type.as_deref(),
            &f.body,
        )
        .into());
    }
    match e {
        progenitor_client::Error::InvalidResponsePayload(_, json) => Ok(Decoded::Undecodable(format!(
            "decode body: {}",
            describe_json_error(&json)
        ))),
        progenitor_client::Error::UnexpectedResponse(response) => {
            let status = response.status().as_u16();
            let content_type = content_type(response.headers());
            let body = read_bounded(response, MAX_ERROR_BODY)
                .await
                .map_err(|e| transport_error(e, method.as_deref(), url.as_ref()))?;
            let mut err =
                ApiError::from_response_parts(status, method.as_deref(), url.as_ref(), content_type.as_deref(), &body);
            if status < 400 {
                // A success body may hold secrets (an SSH key, a token): never show it.
                err.response.detail = format!("{} byte response body not shown", body.len());
            }
            Err(err.into())
        }
        progenitor_client::Error::CommunicationError(e)
        | progenitor_client::Error::ResponseBodyError(e)
        | progenitor_client::Error::InvalidUpgrade(e) => Err(transport_error(e, method.as_deref(), url.as_ref())),
        progenitor_client::Error::ErrorResponse(rv) => {
            let status = rv.status().as_u16();
            let body = rv.into_inner();
            let mut err = ApiError::from_response_parts(status, method.as_deref(), url.as_ref(), None, b"");
            err.response = crate::error::Response {
                message: body.message,
                detail: body.detail.unwrap_or_default(),
                validations: body
                    .validations
                    .into_iter()
                    .map(|v| crate::error::ValidationError {
                        field: v.field,
                        detail: v.detail,
                    })
                    .collect(),
            };
            Err(err.into())
        }
        progenitor_client::Error::InvalidRequest(s) => Err(Error::Config(format!("invalid request: {s}"))),
        progenitor_client::Error::Custom(s) => Err(Error::Http(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_do_not_quote_string_values() {
        let e = serde_json::from_str::<u64>(r#""-----BEGIN OPENSSH PRIVATE KEY----- \" secret""#).unwrap_err();
        let text = describe_json_error(&e);
        assert!(!text.contains("PRIVATE") && !text.contains("secret"), "{text}");
        assert!(text.contains("invalid type: string"), "{text}");
    }

    #[test]
    fn rest_calls_go_to_the_origin_of_the_base_url() {
        let base = Url::parse("https://coder.example.com:8443/some/prefix/").unwrap();
        let rest = Rest::new(&base, crate::client::http_client_builder().build().unwrap(), None, None);
        assert_eq!(rest.api.baseurl(), "https://coder.example.com:8443");
    }
}
