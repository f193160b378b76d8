//! [`InstanceIdentity`]: a [`TokenProvider`] that obtains its token from a
//! [`TokenExchanger`], caches it, and runs at most one exchange at a time.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use url::Url;

use super::{ExchangeContext, SessionToken, TokenExchanger, TokenProvider};
use crate::error::Error;
use crate::http::Rest;

/// The time limit of one whole exchange, metadata requests and the POST to
/// coderd together (Go's `GetSessionToken` uses 10 s).
pub const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

type Flight = Shared<BoxFuture<'static, Result<SessionToken, Arc<Error>>>>;

/// A session token exchanged for the machine's cloud identity (Go's
/// `InstanceIdentitySessionTokenProvider`), with three improvements:
///
/// - single flight: however many callers need a token at the same moment,
///   one exchange runs and they all get its result;
/// - a failed exchange is an error the caller sees (Go logs it and sends an
///   empty token); nothing is cached, so the next call tries again;
/// - [`TokenProvider::refresh`] always exchanges (joining an exchange that is
///   already running) and keeps the old token if the exchange fails.
///
/// Usually made by [`crate::ClientBuilder::instance_identity`]; cheap to clone.
#[derive(Clone)]
pub struct InstanceIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    exchanger: Arc<dyn TokenExchanger>,
    ctx: ExchangeContext,
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<SessionToken>,
    flight: Option<(u64, Flight)>,
    next_flight: u64,
}

impl std::fmt::Debug for InstanceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceIdentity")
            .field("exchanger", &self.inner.exchanger)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl InstanceIdentity {
    /// A provider that exchanges with the coderd at `coderd_url`, sending
    /// the metadata and exchange requests through `http` (best made from
    /// [`crate::client::http_client_builder`], which installs the crypto
    /// provider reqwest needs and keeps redirects on one origin).
    pub fn new(exchanger: impl TokenExchanger, coderd_url: &Url, http: reqwest::Client) -> Self {
        let rest = Arc::new(Rest::new(coderd_url, http, None, None));
        Self::with_rest(Arc::new(exchanger), rest)
    }

    pub(crate) fn with_rest(exchanger: Arc<dyn TokenExchanger>, rest: Arc<Rest>) -> Self {
        InstanceIdentity {
            inner: Arc::new(Inner {
                exchanger,
                ctx: ExchangeContext::new(rest),
                timeout: DEFAULT_EXCHANGE_TIMEOUT,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Changes the time limit of one whole exchange (default 10 s). Call it
    /// before the provider is shared.
    pub fn exchange_timeout(self, timeout: Duration) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.timeout = timeout;
                InstanceIdentity { inner: Arc::new(inner) }
            }
            Err(inner) => InstanceIdentity { inner },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running exchange, or a new one.
    fn flight(&self) -> Flight {
        let mut state = self.lock();
        if let Some((_, flight)) = &state.flight {
            return flight.clone();
        }
        let id = state.next_flight;
        state.next_flight += 1;
        let exchanger = self.inner.exchanger.clone();
        let ctx = self.inner.ctx.clone();
        let timeout = self.inner.timeout;
        // Weak: a flight nobody polls any more must not keep the provider alive.
        let owner: Weak<Inner> = Arc::downgrade(&self.inner);
        let flight = async move {
            tracing::debug!(exchanger = ?exchanger, "exchanging instance identity for a session token");
            let result = match tokio::time::timeout(timeout, exchanger.exchange(&ctx)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(format!(
                    "instance identity exchange did not finish within {timeout:?}"
                ))),
            };
            if let Some(inner) = owner.upgrade() {
                let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.flight.as_ref().is_some_and(|(current, _)| *current == id) {
                    state.flight = None;
                }
                if let Ok(token) = &result {
                    state.token = Some(token.clone());
                }
            }
            match &result {
                Ok(_) => tracing::debug!("instance identity exchanged"),
                Err(e) => tracing::warn!(error = %e, "instance identity exchange failed"),
            }
            result.map_err(Arc::new)
        }
        .boxed()
        .shared();
        state.flight = Some((id, flight.clone()));
        flight
    }
}

impl TokenProvider for InstanceIdentity {
    fn token(&self) -> BoxFuture<'_, Result<SessionToken, Error>> {
        Box::pin(async move {
            if let Some(token) = self.lock().token.clone() {
                return Ok(token);
            }
            self.flight().await.map_err(Error::TokenExchange)
        })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.flight().await.map(|_| ()).map_err(Error::TokenExchange) })
    }
}
