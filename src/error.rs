//! The SDK's error type, with coderd's API errors inside.
//!
//! coderd answers failed requests with `{"message", "detail", "validations"}`;
//! [`ApiError`] carries that body together with the HTTP status, method and
//! URL, built and printed the way codersdk's `ReadBodyAsError` and
//! `Error.Error()` do.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::drpc::RpcError;

/// How much of a non-JSON body is kept as the error detail (codersdk: 2 KiB).
const NON_JSON_DETAIL_LIMIT: usize = 2048;
/// How much of a JSON body without a message is kept as detail (codersdk: 1 KiB).
const NO_MESSAGE_DETAIL_LIMIT: usize = 1024;

/// coderd's error body (`codersdk.Response`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// A sentence for humans.
    #[serde(default)]
    pub message: String,
    /// Further detail (often the underlying Go error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Per-field problems with the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<ValidationError>,
}

/// One field-level problem in a [`Response`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// The request field (for the RPC endpoint: `version`).
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
}

/// A non-success HTTP answer from coderd (or from a proxy in front of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Request method, when known.
    pub method: Option<String>,
    /// Request URL without query secrets, when known.
    pub url: Option<String>,
    /// The decoded (or synthesized) error body.
    pub response: Response,
    /// A hint for humans (401: log in again).
    pub helper: Option<String>,
}

impl ApiError {
    /// Builds the error from a response's parts, as codersdk's
    /// `ReadBodyAsError` does: JSON bodies are decoded; anything else
    /// becomes `unexpected non-JSON response "<content type>"` with the
    /// body (cut at 2 KiB) as detail.
    pub fn from_response_parts(
        status: u16,
        method: Option<&str>,
        url: Option<&url::Url>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> ApiError {
        let media_type = content_type
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let response = if media_type != "application/json" {
            Response {
                message: format!("unexpected non-JSON response {:?}", content_type.unwrap_or("")),
                detail: if body.is_empty() {
                    "no response body".to_owned()
                } else {
                    truncate_lossy(body, NON_JSON_DETAIL_LIMIT)
                },
                validations: Vec::new(),
            }
        } else if body.iter().all(u8::is_ascii_whitespace) {
            Response {
                message: "empty response body".to_owned(),
                ..Response::default()
            }
        } else {
            match serde_json::from_slice::<Response>(body) {
                Ok(mut r) => {
                    if r.message.is_empty() {
                        r.message = format!("unexpected status code {status}, response has no message");
                        r.detail = truncate_lossy(body, NO_MESSAGE_DETAIL_LIMIT);
                    }
                    r
                }
                Err(e) => Response {
                    message: format!("decode body: {e}"),
                    detail: truncate_lossy(body, NO_MESSAGE_DETAIL_LIMIT),
                    validations: Vec::new(),
                },
            }
        };
        ApiError {
            status,
            method: method.map(str::to_owned),
            url: url.map(redact_url),
            response,
            helper: (status == 401).then(|| "Try logging in using 'coder login'.".to_owned()),
        }
    }

    /// The validation for `field`, if the server sent one.
    pub fn validation(&self, field: &str) -> Option<&ValidationError> {
        self.response.validations.iter().find(|v| v.field == field)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(method), Some(url)) = (&self.method, &self.url) {
            write!(f, "{method} {url}: ")?;
        }
        write!(f, "unexpected status code {}: {}", self.status, self.response.message)?;
        if let Some(helper) = &self.helper {
            write!(f, ": {helper}")?;
        }
        if !self.response.detail.is_empty() {
            write!(f, "\n\tError: {}", self.response.detail)?;
        }
        for v in &self.response.validations {
            write!(f, "\n\t{}: {}", v.field, v.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Cuts `body` to `limit` bytes (adding `...` when cut) and makes it text.
fn truncate_lossy(body: &[u8], limit: usize) -> String {
    if body.len() > limit {
        format!("{}...", String::from_utf8_lossy(&body[..limit]))
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// The URL without user info and without query values that could be secrets.
pub(crate) fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = k.to_ascii_lowercase().contains("token");
                (
                    k.into_owned(),
                    if secret { "REDACTED".to_owned() } else { v.into_owned() },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Any failure of an SDK call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// coderd (or a proxy) answered with an error status.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// An RPC failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The websocket of the RPC connection could not be opened.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// A TLS handshake with coderd failed, for REST and RPC alike: most
    /// often its certificate is not signed by a trusted authority (a
    /// private CA). `reason` says why in words, `cause` is rustls' error
    /// (e.g. `InvalidCertificate(UnknownIssuer)`). A certificate problem's
    /// text says how to trust another root: `SSL_CERT_FILE` / `SSL_CERT_DIR`,
    /// or [`crate::ClientBuilder::add_root_certificates_pem`].
    #[error("tls: handshake with {host} failed: {reason}{}", tls_hint(cause))]
    Tls {
        /// The host the certificate was checked for.
        host: String,
        /// Why the handshake failed, in words.
        reason: String,
        /// The rustls error.
        cause: rustls::Error,
    },
    /// An HTTP request could not be made or its body not read.
    #[error("http: {0}")]
    Http(String),
    /// A URL could not be built from the base URL.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// A response body was not what the API promises.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The caller's configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A server-sent event stream (the reinit channel) failed or said
    /// something other than what coderd sends.
    #[error(transparent)]
    Sse(#[from] crate::sse::SseError),
    /// A cloud metadata service (AWS IMDS, Azure IMDS, the GCE metadata
    /// server) could not be reached or answered with an error.
    #[error("cloud metadata service: {0}")]
    Metadata(String),
    /// An operation did not finish within its time limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A proxy between the client and coderd refused or broke the tunnel
    /// (`CONNECT` answered with other than 200, e.g. 407 for missing or
    /// wrong credentials; an answer that is malformed or too long), cannot
    /// be used (an unsupported scheme), or Go's CGI rule refused `HTTP_PROXY`.
    #[error("proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy's URL without credentials.
        proxy: String,
        /// The proxy's HTTP status, when it answered with one.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// Obtaining a session token (an instance-identity exchange) failed.
    /// Every caller that waited on the same exchange sees the same cause.
    #[error("obtain session token: {0}")]
    TokenExchange(#[source] Arc<Error>),
}

/// How to trust another root, for certificate failures only.
fn tls_hint(cause: &rustls::Error) -> &'static str {
    match cause {
        rustls::Error::InvalidCertificate(_) => {
            "; if the server's certificate is signed by a private CA, trust that CA: set SSL_CERT_FILE \
             (or SSL_CERT_DIR), or use ClientBuilder::add_root_certificates_pem (the agent example: --ca-file)"
        }
        _ => "",
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

impl Error {
    /// A failed TLS handshake with `host`.
    pub(crate) fn tls(host: &str, cause: rustls::Error) -> Error {
        let reason = match &cause {
            // Go's words for the most common case (a private CA).
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                "certificate signed by unknown authority".to_owned()
            }
            other => other.to_string(),
        };
        Error::Tls {
            host: host.to_owned(),
            reason,
            cause,
        }
    }

    /// Whether this is a TLS failure because the server's certificate was
    /// not accepted (untrusted issuer, wrong name, expired, ...).
    pub fn is_certificate_error(&self) -> bool {
        match self {
            Error::Tls { cause, .. } => matches!(cause, rustls::Error::InvalidCertificate(_)),
            Error::TokenExchange(e) => e.is_certificate_error(),
            _ => false,
        }
    }

    /// The coderd error, if this is one (looking through a failed token exchange).
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            Error::TokenExchange(e) => e.api(),
            _ => None,
        }
    }

    /// The HTTP status, for errors that came with one (looking through a
    /// failed token exchange).
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_body_is_decoded_and_printed_like_codersdk() {
        let body = br#"{"message":"Unknown or unsupported API version","validations":[{"field":"version","detail":"server is at version 2.8, behind requested minor version 11"}]}"#;
        let url = url::Url::parse("https://coder.example/api/v2/workspaceagents/me/rpc?version=2.11").unwrap();
        let e = ApiError::from_response_parts(
            400,
            Some("GET"),
            Some(&url),
            Some("application/json; charset=utf-8"),
            body,
        );
        assert_eq!(
            e.validation("version").unwrap().detail,
            "server is at version 2.8, behind requested minor version 11"
        );
        assert_eq!(
            e.to_string(),
            "GET https://coder.example/api/v2/workspaceagents/me/rpc?version=2.11: unexpected status code 400: \
             Unknown or unsupported API version\n\tversion: server is at version 2.8, behind requested minor version 11"
        );
    }

    #[test]
    fn html_body_becomes_non_json_message_with_truncated_detail() {
        let body = format!("<html>{}</html>", "x".repeat(5000));
        let e = ApiError::from_response_parts(502, None, None, Some("text/html"), body.as_bytes());
        assert_eq!(e.response.message, "unexpected non-JSON response \"text/html\"");
        assert_eq!(e.response.detail.len(), 2048 + 3);
        assert!(e.response.detail.ends_with("..."));
    }

    #[test]
    fn empty_non_json_body_says_so() {
        let e = ApiError::from_response_parts(500, None, None, None, b"");
        assert_eq!(e.response.detail, "no response body");
    }

    #[test]
    fn json_without_message_gets_a_synthesized_one() {
        let e = ApiError::from_response_parts(418, None, None, Some("application/json"), br#"{"detail":"x"}"#);
        assert_eq!(
            e.response.message,
            "unexpected status code 418, response has no message"
        );
    }

    #[test]
    fn unauthorized_adds_the_login_hint() {
        let e = ApiError::from_response_parts(401, None, None, Some("application/json"), br#"{"message":"nope"}"#);
        assert_eq!(
            e.to_string(),
            "unexpected status code 401: nope: Try logging in using 'coder login'."
        );
    }

    #[test]
    fn untrusted_certificate_names_host_reason_and_the_way_to_add_a_root() {
        let e = Error::tls(
            "coder.test",
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let text = e.to_string();
        assert!(e.is_certificate_error());
        assert!(
            text.starts_with("tls: handshake with coder.test failed: certificate signed by unknown authority; "),
            "{text}"
        );
        assert!(
            text.contains("SSL_CERT_FILE") && text.contains("add_root_certificates_pem"),
            "{text}"
        );
        let other = Error::tls("coder.test", rustls::Error::General("x".into()));
        assert!(!other.is_certificate_error());
        assert!(!other.to_string().contains("SSL_CERT_FILE"));
    }

    #[test]
    fn token_query_values_are_redacted() {
        let url = url::Url::parse("https://u:p@h/x?coder_session_token=abc&version=2.0").unwrap();
        let s = redact_url(&url);
        assert!(!s.contains("abc") && !s.contains("u:p"), "{s}");
        assert!(s.contains("version=2.0"));
    }
}
