//! Settings of an agent RPC connection: keepalive, call deadline, dial
//! timeout; and [`CallExt`], a deadline for one call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::drpc::RpcError;
pub use crate::mux::keepalive::KeepaliveConfig;

/// Go's agent has no dial limit of its own (only its context's); ours is
/// bounded so that a server that accepts TCP and never answers the upgrade
/// cannot hold a dial forever.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How an RPC connection behaves. Set for every dial with
/// [`ClientBuilder::rpc_options`](crate::client::ClientBuilder::rpc_options),
/// or for some connections with [`Client::with_rpc_options`](crate::Client::with_rpc_options).
///
/// ```
/// use std::time::Duration;
/// use coder_agentsdk::rpc::RpcOptions;
/// let opts = RpcOptions::default()
///     .keepalive(Duration::from_secs(10), Duration::from_secs(5))
///     .default_deadline(Duration::from_secs(30));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcOptions {
    /// yamux keepalive; `None` sends no pings. Default: Go's (a ping every
    /// 30 s after the previous answer, 10 s to answer). A miss ends the
    /// connection and fails every call with [`RpcError::PeerNotResponding`].
    pub keepalive: Option<KeepaliveConfig>,
    /// The deadline of every unary call made on the connection, unless the
    /// call brings an earlier one ([`CallExt::with_deadline`]). Streaming
    /// calls are long-lived and do not get it. Default: none, as in Go.
    pub default_deadline: Option<Duration>,
    /// Time limit for the websocket dial and upgrade. Default 30 s.
    pub dial_timeout: Duration,
}

impl Default for RpcOptions {
    fn default() -> Self {
        RpcOptions {
            keepalive: Some(KeepaliveConfig::default()),
            default_deadline: None,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

impl RpcOptions {
    /// Pings every `interval`; a ping unanswered for `timeout` ends the connection.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some(KeepaliveConfig { interval, timeout });
        self
    }

    /// Sends no keepalive pings (a dead peer is then only noticed by deadlines).
    pub fn no_keepalive(mut self) -> Self {
        self.keepalive = None;
        self
    }

    /// The deadline of each unary call on the connection.
    pub fn default_deadline(mut self, deadline: Duration) -> Self {
        self.default_deadline = Some(deadline);
        self
    }

    /// The time limit of the websocket dial and upgrade.
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }
}

/// A deadline for one call, on any RPC future (the generated clients'
/// methods, or a stream's opening).
///
/// When the deadline passes the call's future is dropped, which cancels the
/// call as Go's context does (its yamux stream is reset), and the result is
/// [`RpcError::DeadlineExceeded`]. The connection stays usable.
///
/// ```no_run
/// use std::time::Duration;
/// use coder_agentsdk::rpc::prelude::*;
/// use coder_agentsdk::rpc::CallExt;
/// # async fn demo(agent: coder_agentsdk::rpc::agent::Agent28) -> Result<(), coder_agentsdk::drpc::RpcError> {
/// let manifest = agent
///     .get_manifest(Default::default())
///     .with_deadline(Duration::from_secs(5))
///     .await?;
/// # let _ = manifest; Ok(()) }
/// ```
pub trait CallExt<T>: Future<Output = Result<T, RpcError>> + Sized {
    /// Fails the call with [`RpcError::DeadlineExceeded`] if it has not
    /// finished `deadline` after this is called.
    fn with_deadline(self, deadline: Duration) -> WithDeadline<Self> {
        WithDeadline {
            inner: Box::pin(tokio::time::timeout(deadline, self)),
            deadline,
        }
    }
}

impl<T, F: Future<Output = Result<T, RpcError>>> CallExt<T> for F {}

/// The future of [`CallExt::with_deadline`]. Dropping it cancels the call.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct WithDeadline<F> {
    inner: Pin<Box<tokio::time::Timeout<F>>>,
    deadline: Duration,
}

impl<T, F: Future<Output = Result<T, RpcError>>> Future for WithDeadline<F> {
    type Output = Result<T, RpcError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let deadline = self.deadline;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(RpcError::DeadlineExceeded { deadline })),
            Poll::Pending => Poll::Pending,
        }
    }
}
