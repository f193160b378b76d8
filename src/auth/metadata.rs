//! One request to a cloud metadata service: its own short timeout, a
//! status check (Go uses whatever body comes back; we refuse non-2xx), a
//! bounded body, and errors that never include the body (it may be a
//! token or a signed identity).

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;

use crate::error::{redact_url, Error};
use crate::http::{chain, read_bounded};

/// The time limit of each metadata request unless an exchanger is told
/// otherwise: the services are link-local and answer in milliseconds.
pub const DEFAULT_METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Identity documents are a few KiB; more than this is refused.
const MAX_METADATA_BODY: usize = 1 << 20;

/// Where an exchanger's metadata service is, how long one request may
/// take, and the agent name it sends to coderd.
#[derive(Clone, Debug)]
pub(crate) struct MetadataSettings {
    pub(crate) url: String,
    pub(crate) agent_name: Option<String>,
    pub(crate) timeout: Duration,
}

impl MetadataSettings {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        MetadataSettings {
            url: url.into(),
            agent_name: None,
            timeout: DEFAULT_METADATA_TIMEOUT,
        }
    }

    /// One request to `path_and_query` on the metadata service.
    pub(crate) async fn fetch(
        &self,
        http: &reqwest::Client,
        service: &'static str,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Bytes, Error> {
        fetch(
            http,
            service,
            method,
            &join(&self.url, path_and_query),
            headers,
            self.timeout,
        )
        .await
    }
}

/// The builder methods every instance-identity exchanger shares; the type
/// keeps its [`MetadataSettings`] in a field named `settings`.
macro_rules! metadata_builder_methods {
    () => {
        /// Uses another metadata base URL (a fake in tests, an unusual network).
        pub fn metadata_url(mut self, url: impl Into<String>) -> Self {
            self.settings.url = url.into();
            self
        }

        /// Names the agent when several agents share this instance (sent as
        /// `agent_name`; omitted when unset or empty).
        pub fn agent_name(mut self, name: impl Into<String>) -> Self {
            self.settings.agent_name = Some(name.into()).filter(|n| !n.is_empty());
            self
        }

        /// The time limit of each metadata request (default 5 s).
        pub fn metadata_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.timeout = timeout;
            self
        }
    };
}
pub(crate) use metadata_builder_methods;

/// Joins a configured base URL (any path kept) and an absolute path.
pub(crate) fn join(base: &str, path_and_query: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path_and_query)
}

/// Sends one metadata request and returns its body.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    service: &'static str,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Bytes, Error> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Config(format!("{service} metadata URL {url:?}: {e}")))?;
    let shown = format!("{service}: {method} {}", redact_url(&parsed));
    let mut request = http.request(method, parsed).timeout(timeout);
    for (name, value) in headers {
        let mut value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| Error::Metadata(format!("{shown}: header {name} is not a valid header value")))?;
        value.set_sensitive(true);
        request = request.header(*name, value);
    }
    tracing::debug!(request = %shown, "cloud metadata request");
    let response = request.send().await.map_err(|e| failure(&shown, e, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Metadata(format!(
            "{shown}: unexpected status code {}",
            status.as_u16()
        )));
    }
    if response.content_length().is_some_and(|n| n > MAX_METADATA_BODY as u64) {
        return Err(Error::Metadata(format!(
            "{shown}: response body over {MAX_METADATA_BODY} bytes"
        )));
    }
    let body = read_bounded(response, MAX_METADATA_BODY + 1)
        .await
        .map_err(|e| failure(&shown, e, timeout))?;
    if body.len() > MAX_METADATA_BODY {
        return Err(Error::Metadata(format!(
            "{shown}: response body over {MAX_METADATA_BODY} bytes"
        )));
    }
    Ok(body)
}

fn failure(shown: &str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        Error::Metadata(format!("{shown}: timed out after {timeout:?}"))
    } else {
        Error::Metadata(format!("{shown}: {}", chain(&e.without_url())))
    }
}

/// A metadata body as text; invalid UTF-8 becomes U+FFFD, as Go's JSON
/// encoder does when the string is posted.
pub(crate) fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}
