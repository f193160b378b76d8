//! The request and response types of the agent's REST calls.
//!
//! Most are the types generated from `spec/openapi.yaml`, re-exported
//! unchanged (their JSON names and types are the wire's). Responses that
//! carry secrets get types of our own whose `Debug` hides them: the Git SSH
//! key pair ([`GitSshKey`]) and external-auth credentials
//! ([`ExternalAuthResponse`]). [`ExternalAuthRequest`] is the query of the
//! external-auth call in Go's shape.
//!
//! Nothing here does I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::rest::types::{
    Log, LogLevel, PatchAppStatus, PatchLogs, PostLogSourceRequest, RefreshChatContextResponse,
    WorkspaceAgentLogSource, WorkspaceAppStatusState,
};
pub use crate::sse::{ReinitEventShape, ReinitializationEvent, ReinitializationReason};

/// The log source coderd uses when `PatchLogs.log_source_id` is the nil
/// UUID; the dashboard shows it as "External" (Go's `ExternalLogSourceID`).
pub const EXTERNAL_LOG_SOURCE_ID: uuid::Uuid = uuid::uuid!("3b579bf4-1ed8-4b99-87a8-e9a1e3410410");

/// A secret string: `Debug` shows only whether it is empty.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("REDACTED")
        }
    }
}

/// The workspace owner's Git SSH key pair (`GET /api/v2/workspaceagents/me/gitsshkey`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitSshKey {
    /// The public key in OpenSSH `authorized_keys` form.
    pub public_key: String,
    /// The private key (PEM); hidden from `Debug`.
    pub private_key: Secret,
}

impl GitSshKey {
    /// The key type, the first word of the public key (e.g. `ssh-ed25519`).
    pub fn key_type(&self) -> Option<&str> {
        self.public_key.split_whitespace().next()
    }
}

impl From<crate::rest::types::GitSshKey> for GitSshKey {
    fn from(k: crate::rest::types::GitSshKey) -> Self {
        GitSshKey {
            public_key: k.public_key,
            private_key: Secret(k.private_key),
        }
    }
}

/// Which external-auth provider to ask for a token, and how (Go's
/// `agentsdk.ExternalAuthRequest`). Name the provider by `id` or by
/// `match_`, not both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalAuthRequest {
    /// The provider's ID (query `id`, always sent, possibly empty).
    pub id: String,
    /// A string, usually a Git remote URL, matched against the providers'
    /// regexes (query `match`, always sent, possibly empty).
    pub match_: String,
    /// The current Git branch (query `git_branch`, sent when not empty).
    pub git_branch: String,
    /// The Git remote origin URL (query `git_remote_origin`, sent when not empty).
    pub git_remote_origin: String,
    /// The chat that started the Git operation, a UUID (query `chat_id`,
    /// sent when not empty; coderd ignores a value that is not a UUID).
    pub chat_id: String,
    /// Wait until the user has authenticated (query `listen=true`). No
    /// client-side timeout applies to such a call.
    pub listen: bool,
}

impl ExternalAuthRequest {
    /// Asks the provider with this ID.
    pub fn by_id(id: impl Into<String>) -> Self {
        ExternalAuthRequest {
            id: id.into(),
            ..Self::default()
        }
    }

    /// Asks the provider whose regex matches `url`.
    pub fn by_match(url: impl Into<String>) -> Self {
        ExternalAuthRequest {
            match_: url.into(),
            ..Self::default()
        }
    }

    /// Waits for the user to authenticate instead of answering at once.
    pub fn listen(mut self) -> Self {
        self.listen = true;
        self
    }

    /// Names the chat that started the Git operation (query `chat_id`).
    pub fn chat_id(mut self, chat_id: impl Into<String>) -> Self {
        self.chat_id = chat_id.into();
        self
    }
}

/// An external-auth access token, or the URL where the user must
/// authenticate first (`url`, with the credentials empty). `Debug` hides
/// the token, the password, the user name (some providers put the token
/// there) and the values of `token_extra`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalAuthResponse {
    /// The OAuth access token.
    #[serde(default)]
    pub access_token: String,
    /// Extra token fields the provider is configured to pass on, or `None`
    /// (JSON `null`).
    #[serde(default)]
    pub token_extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Where the user authenticates when there is no token yet.
    #[serde(default)]
    pub url: String,
    /// The provider type (`github`, `gitlab`, ...).
    #[serde(rename = "type", default)]
    pub type_: String,
    /// When the token expires (UTC), or `None` when coderd knows no expiry.
    /// On the wire coderd always writes the key and says "no expiry" with
    /// Go's zero time, `0001-01-01T00:00:00Z`; older coderd leaves the key
    /// out. Both read as `None`, and `None` is written as the zero time.
    #[serde(default, with = "go_time")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Git credential user name (legacy gitauth form).
    #[serde(default)]
    pub username: String,
    /// Git credential password (legacy gitauth form).
    #[serde(default)]
    pub password: String,
}

impl fmt::Debug for ExternalAuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |s: &str| Secret(s.to_owned());
        f.debug_struct("ExternalAuthResponse")
            .field("access_token", &hide(&self.access_token))
            .field(
                "token_extra",
                &self.token_extra.as_ref().map(|m| m.keys().collect::<Vec<_>>()),
            )
            .field("url", &self.url)
            .field("type", &self.type_)
            .field("expires_at", &self.expires_at)
            .field("username", &hide(&self.username))
            .field("password", &hide(&self.password))
            .finish()
    }
}

impl From<crate::rest::types::ExternalAuthResponse> for ExternalAuthResponse {
    fn from(r: crate::rest::types::ExternalAuthResponse) -> Self {
        ExternalAuthResponse {
            access_token: r.access_token,
            token_extra: r.token_extra,
            url: r.url,
            type_: r.type_,
            expires_at: r.expires_at.filter(|t| !go_time::is_zero(t)),
            username: r.username,
            password: r.password,
        }
    }
}

/// Go's `time.Time` where the zero time means "none": the zero time (and
/// `null` or a missing key) reads as `None`, `None` writes the zero time.
mod go_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Go's zero `time.Time` as encoding/json writes it.
    pub(super) const ZERO: &str = "0001-01-01T00:00:00Z";

    pub(super) fn is_zero(t: &DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(ZERO).is_ok_and(|zero| *t == zero)
    }

    pub(super) fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t.filter(|t| !is_zero(t)) {
            Some(t) => s.serialize_str(&rfc3339_nano(&t)),
            None => s.serialize_str(ZERO),
        }
    }

    /// Go's `time.RFC3339Nano` for a UTC time: the fraction loses its
    /// trailing zeros, and the dot too when nothing is left.
    pub(super) fn rfc3339_nano(t: &DateTime<Utc>) -> String {
        let full = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let body = full.trim_end_matches('Z');
        match body.split_once('.') {
            Some((whole, fraction)) => {
                let fraction = fraction.trim_end_matches('0');
                if fraction.is_empty() {
                    format!("{whole}Z")
                } else {
                    format!("{whole}.{fraction}Z")
                }
            }
            None => full,
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let t = Option::<DateTime<Utc>>::deserialize(d)?;
        Ok(t.filter(|t| !is_zero(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_private_key_and_external_auth_secrets() {
        let key = GitSshKey {
            public_key: "ssh-ed25519 AAAA".into(),
            private_key: Secret::new("-----BEGIN OPENSSH PRIVATE KEY-----"),
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert_eq!(key.key_type(), Some("ssh-ed25519"));
        let auth = ExternalAuthResponse {
            access_token: "gho_secret".into(),
            username: "gho_secret".into(),
            password: "pw_secret".into(),
            token_extra: Some(
                [("refresh".to_owned(), serde_json::json!("rt_secret"))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("refresh"), "{shown}");
    }

    #[test]
    fn external_auth_response_writes_null_token_extra_like_go() {
        let json = serde_json::to_value(ExternalAuthResponse::default()).unwrap();
        assert_eq!(json["token_extra"], serde_json::Value::Null);
    }

    #[test]
    fn external_auth_expires_at_parses_and_go_zero_time_means_none() {
        let with = r#"{"access_token":"t","token_extra":null,"url":"","type":"github",
            "expires_at":"2026-07-07T16:26:33.123456Z","username":"t","password":""}"#;
        let r: ExternalAuthResponse = serde_json::from_str(with).unwrap();
        let expected = DateTime::parse_from_rfc3339("2026-07-07T16:26:33.123456Z").unwrap();
        assert_eq!(r.expires_at, Some(expected.with_timezone(&Utc)));
        // Written back as Go writes it.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["expires_at"], "2026-07-07T16:26:33.123456Z");
        for (t, go) in [
            ("2026-07-07T16:26:33Z", "2026-07-07T16:26:33Z"),
            ("2026-07-07T16:26:33.500Z", "2026-07-07T16:26:33.5Z"),
            ("2026-07-07T18:26:33.000000001+02:00", "2026-07-07T16:26:33.000000001Z"),
        ] {
            let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
            assert_eq!(go_time::rfc3339_nano(&t), go);
        }
        for none in [
            r#"{"url":"http://x/external-auth/github","expires_at":"0001-01-01T00:00:00Z"}"#,
            r#"{"url":"http://x/external-auth/github","expires_at":null}"#,
            r#"{"url":"http://x/external-auth/github"}"#,
        ] {
            let r: ExternalAuthResponse = serde_json::from_str(none).unwrap();
            assert_eq!(r.expires_at, None, "{none}");
        }
        let json = serde_json::to_string(&ExternalAuthResponse::default()).unwrap();
        assert_eq!(
            json,
            r#"{"access_token":"","token_extra":null,"url":"","type":"","expires_at":"0001-01-01T00:00:00Z","username":"","password":""}"#,
            "Go's key order and zero time"
        );
        assert!(serde_json::from_str::<ExternalAuthResponse>(r#"{"expires_at":"tomorrow"}"#).is_err());
    }
}
