//! Session tokens: where the agent's `Coder-Session-Token` comes from.
//!
//! A [`TokenProvider`] hands out the current token and can be asked to
//! refresh it (after a 401, or before reconnecting). [`FixedToken`] is a
//! token given up front.

use std::fmt;

use futures::future::BoxFuture;

use crate::error::Error;

/// The header coderd reads the agent token from.
pub const SESSION_TOKEN_HEADER: &str = "Coder-Session-Token";

/// A session token. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps a token value.
    pub fn new(value: impl Into<String>) -> Self {
        SessionToken(value.into())
    }

    /// The secret value, for putting it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no token is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(REDACTED)")
    }
}

impl From<&str> for SessionToken {
    fn from(s: &str) -> Self {
        SessionToken::new(s)
    }
}

impl From<String> for SessionToken {
    fn from(s: String) -> Self {
        SessionToken::new(s)
    }
}

/// Supplies the agent's session token (Go's `RefreshableSessionTokenProvider`).
pub trait TokenProvider: Send + Sync + 'static {
    /// The current token, obtaining one first if there is none yet.
    fn token(&self) -> BoxFuture<'_, Result<SessionToken, Error>>;

    /// Obtains a fresh token (a no-op for fixed tokens).
    fn refresh(&self) -> BoxFuture<'_, Result<(), Error>>;
}

/// A token known in advance (`CODER_AGENT_TOKEN`).
#[derive(Clone, Debug)]
pub struct FixedToken(SessionToken);

impl FixedToken {
    /// Wraps a token.
    pub fn new(token: impl Into<SessionToken>) -> Self {
        FixedToken(token.into())
    }
}

impl TokenProvider for FixedToken {
    fn token(&self) -> BoxFuture<'_, Result<SessionToken, Error>> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_never_shows_the_secret() {
        let t = SessionToken::new("super-secret-token");
        assert!(!format!("{t:?}").contains("super-secret"));
        assert!(!format!("{:?}", FixedToken::new(t)).contains("super-secret"));
    }
}
