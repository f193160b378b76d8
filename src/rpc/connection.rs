//! [`Connection`]: one agent RPC connection (websocket → yamux session),
//! running each call on its own yamux stream as Coder's
//! `drpcsdk.MultiplexedConn` does. It is the [`Transport`] every generated
//! client is built on.
//!
//! How calls fail:
//! * a method newer than the negotiated version: [`RpcError::VersionTooOld`],
//!   nothing is sent;
//! * a unary request over 4 MiB: [`RpcError::MessageTooLarge`], refused
//!   before a yamux stream is even opened;
//! * the session already ended (closed locally, or by the peer without a
//!   GoAway): [`RpcError::ConnectionClosed`]; after a GoAway or a transport
//!   failure: [`RpcError::Transport`];
//! * the session ending while a call is in flight: [`RpcError::Transport`]
//!   whose inner error is the session's [`MuxError`] (`GoAway { code }`,
//!   `PeerClosed` for a websocket Close frame or EOF, `Io`, ...), reachable
//!   with `io_error.get_ref()` and `downcast_ref::<MuxError>()`;
//! * the peer not answering a keepalive ping in time (see
//!   [`RpcOptions::keepalive`](super::RpcOptions)): the connection ends and
//!   every call in flight, and every later one, fails with
//!   [`RpcError::PeerNotResponding`];
//! * a unary call running past its deadline (the connection's
//!   [`default deadline`](Connection::with_default_deadline) or the call's
//!   own, [`CallExt`](super::CallExt)): [`RpcError::DeadlineExceeded`], its
//!   stream reset, the connection still usable;
//! * the peer resetting the call's stream (yamux RST): [`RpcError::Transport`]
//!   of kind `UnexpectedEof`;
//! * everything the DRPC layer reports (see [`crate::drpc::conn`]).
//!
//! Dropping a call's future, or a stream's halves, cancels the call: its
//! yamux stream is reset and its slot freed ([`Connection::open_streams`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tracing::Instrument;

use super::CallExt;
use crate::drpc::client::{RawStream, Transport};
use crate::drpc::{conn, wire, ApiVersion, MethodDesc, RpcError, SharedTransport};
use crate::mux::yamux::{MuxError, Session};
use std::time::Duration;

/// An open agent RPC connection. Clones share it; it closes when the last
/// clone (and every client built on it) is dropped, or on [`Connection::close`].
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    version: ApiVersion,
    default_deadline: Option<Duration>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("version", &self.inner.version)
            .field("open_streams", &self.inner.session.open_streams())
            .field("closed", &self.inner.session.is_closed())
            .finish()
    }
}

impl Connection {
    /// Wraps an established yamux client session spoken at `version`.
    pub fn new(session: Session, version: ApiVersion) -> Self {
        Connection {
            inner: Arc::new(Inner {
                session,
                version,
                default_deadline: None,
            }),
        }
    }

    /// The same connection (same session, shared by both), whose unary
    /// calls get `deadline` unless they bring an earlier one. Clients built
    /// on its [`transport`](Self::transport) use it:
    /// `Agent28::new(conn.with_default_deadline(d).transport())`.
    pub fn with_default_deadline(&self, deadline: Duration) -> Connection {
        Connection {
            inner: Arc::new(Inner {
                session: self.inner.session.clone(),
                version: self.inner.version,
                default_deadline: Some(deadline),
            }),
        }
    }

    /// The deadline unary calls get by default, if any.
    pub fn default_deadline(&self) -> Option<Duration> {
        self.inner.default_deadline
    }

    /// The API version this connection was dialled with.
    pub fn version(&self) -> ApiVersion {
        self.inner.version
    }

    /// The transport to build generated clients on.
    pub fn transport(&self) -> SharedTransport {
        self.inner.clone()
    }

    /// Closes the connection; calls in flight fail.
    pub fn close(&self) {
        self.inner.session.close();
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.session.is_closed()
    }

    /// Resolves when the connection ends, with the reason.
    pub async fn closed(&self) -> MuxError {
        self.inner.session.closed().await
    }

    /// yamux streams currently open (one per call in flight).
    pub fn open_streams(&self) -> usize {
        self.inner.session.open_streams()
    }
}

fn mux_error(e: MuxError) -> RpcError {
    match e {
        MuxError::ClosedLocally | MuxError::PeerClosed => RpcError::ConnectionClosed,
        MuxError::PeerNotResponding { timeout } => RpcError::PeerNotResponding { timeout },
        other => RpcError::Transport(other.to_io_error()),
    }
}

/// A call's error, with a keepalive miss under it made explicit.
fn call_error(e: RpcError) -> RpcError {
    match e {
        RpcError::Transport(io) => match io.get_ref().and_then(|e| e.downcast_ref::<MuxError>()) {
            Some(MuxError::PeerNotResponding { timeout }) => RpcError::PeerNotResponding { timeout: *timeout },
            _ => RpcError::Transport(io),
        },
        other => other,
    }
}

impl Inner {
    fn check_version(&self, method: &'static MethodDesc) -> Result<(), RpcError> {
        if method.since > self.version {
            return Err(RpcError::VersionTooOld {
                method: method.path,
                required: method.since,
                negotiated: self.version,
            });
        }
        Ok(())
    }
}

impl Transport for Inner {
    fn unary(&self, method: &'static MethodDesc, request: Bytes) -> BoxFuture<'static, Result<Bytes, RpcError>> {
        let checked = self.check_version(method);
        let session = self.session.clone();
        let deadline = self.default_deadline;
        let span = tracing::debug_span!("rpc", rpc = method.path, stream = tracing::field::Empty);
        Box::pin(
            async move {
                checked?;
                // Refuse an oversized request before a yamux stream (whose
                // drop would put an RST on the wire) is even opened.
                wire::check_message_size(request.len())?;
                let call = async {
                    let stream = session.open_stream().await.map_err(mux_error)?;
                    tracing::Span::current().record("stream", stream.id());
                    conn::client_unary(stream, method, request).await.map_err(call_error)
                };
                let result = match deadline {
                    // On expiry the call is dropped: its stream is reset.
                    Some(deadline) => call.with_deadline(deadline).await,
                    None => call.await,
                };
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "rpc failed");
                }
                result
            }
            .instrument(span),
        )
    }

    fn open_stream(&self, method: &'static MethodDesc) -> BoxFuture<'static, Result<RawStream, RpcError>> {
        let checked = self.check_version(method);
        let session = self.session.clone();
        let span = tracing::debug_span!("rpc_stream", rpc = method.path, stream = tracing::field::Empty);
        Box::pin(
            async move {
                checked?;
                let stream = session.open_stream().await.map_err(mux_error)?;
                tracing::Span::current().record("stream", stream.id());
                let mut raw = conn::client_stream(stream, method);
                raw.receiver.map_errors(call_error);
                Ok(raw)
            }
            .instrument(span),
        )
    }
}
