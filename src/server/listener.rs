//! The embedded server's accept loop: hyper's HTTP/1 connection with
//! upgrades (for the websocket), plus the limits coderd gets from Go's
//! `net/http` and a reverse proxy in front of it, and which `axum::serve`
//! does not offer:
//!
//! * a deadline for each request's headers, including the websocket upgrade
//!   request, and for the idle time between keep-alive requests (hyper's
//!   `header_read_timeout`, which needs a timer that `axum::serve` never
//!   sets), so a slowloris peer cannot hold a connection forever;
//! * a cap on TCP connections held at once: past it, new connections are
//!   accepted and closed at once, so they neither queue in the kernel nor
//!   cost a task. The cap's permit travels with the connection into the
//!   websocket after an upgrade and is given back when it closes;
//! * early answers a client still sending can read, as Go's `net/http`
//!   gives them: an answer sent before the request body was read whole
//!   (413 for a body over the limit, 401 for a wrong token) says
//!   `Connection: close`, and the connection is then half-closed and its
//!   input read and discarded for a while ([`DRAIN_TIME`], at most
//!   [`DRAIN_LIMIT`] bytes) before it is closed. Closing at once, with the
//!   body still arriving, makes the kernel answer with a reset, and a client
//!   whose write fails first never reads the answer (Go's client ends with
//!   `write: connection reset`). Go's server waits `rstAvoidanceDelay`
//!   (500 ms) after half-closing, unread data left in the kernel; reading
//!   it keeps the client's writes going until it has read the answer.
//!
//! With TLS ([`super::ServerBuilder::tls`]), the handshake runs in the
//! connection's task under the same handshake deadline, so a peer that
//! connects and says nothing holds its slot no longer than a slowloris one.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Limits;

/// How long open connections get to finish after the server is stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a connection closed with its request body unread keeps
/// reading (and discarding) before it is closed: Go's `rstAvoidanceDelay`.
pub const DRAIN_TIME: Duration = Duration::from_millis(500);

/// The most a connection closed with its request body unread reads (and
/// discards) before it is closed: more than the 10 MiB a careless agent
/// might send, so that such an agent reads its 413.
pub const DRAIN_LIMIT: usize = 16 << 20;

/// Accepts and serves connections until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    open: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning (axum::serve does the same).
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection limit reached; closing a new connection");
            drop(tcp);
            continue;
        };
        // Small DRPC replies must not wait for Nagle's algorithm (coderd's Go
        // net/http sets TCP_NODELAY on accepted connections too).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let drain = Arc::new(AtomicBool::new(false));
        let io = Held::new(tcp, permit, open.clone(), drain.clone());
        let app = app.clone();
        let stop = shutdown.clone();
        let Some(tls) = tls.clone() else {
            tokio::spawn(serve_connection(io, peer, app, drain, limits, stop));
            continue;
        };
        tokio::spawn(async move {
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(limits.handshake_timeout, tls.accept(io)) => handshake,
                _ = stop.cancelled() => return,
            };
            match handshake {
                Ok(Ok(io)) => serve_connection(io, peer, app, drain, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake not finished in time; closed"),
            }
        });
    }
}

/// Serves HTTP/1 (with upgrades) on one accepted connection until it ends,
/// or until shortly after `stop`. Sets `drain` when the connection should
/// drain before it closes (see the module documentation).
async fn serve_connection<I>(
    io: I,
    peer: std::net::SocketAddr,
    app: axum::Router,
    drain: Arc<AtomicBool>,
    limits: Limits,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = TowerToHyperService::new(app);
    let service = {
        let drain = drain.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (parts, body) = request.into_parts();
            let announced = !body.is_end_stream();
            let (body, ended) = Tracked::new(body);
            let answer = router.call(hyper::Request::from_parts(parts, body));
            let drain = drain.clone();
            async move {
                let mut response = answer.await?;
                if announced && !ended.load(Ordering::SeqCst) {
                    // Answered before the body was read whole: say so, and
                    // let the connection drain when hyper closes it.
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                    drain.store(true, Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
                // hyper's own early answers (431 for oversized headers and
                // the like) end here: drain those too.
                drain.store(true, Ordering::SeqCst);
            }
            return;
        }
        _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, conn).await.is_err() {
        tracing::debug!(%peer, "http connection did not finish after shutdown; dropped");
    }
}

/// A request body that records when it has been read to its end.
struct Tracked {
    inner: Incoming,
    ended: Arc<AtomicBool>,
}

impl Tracked {
    fn new(inner: Incoming) -> (Self, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (
            Tracked {
                inner,
                ended: ended.clone(),
            },
            ended,
        )
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's slot under the connection cap, given back on drop.
#[derive(Debug)]
struct Slot {
    open: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted TCP connection holding its slot under the connection cap.
/// When it is dropped with `drain` set, it half-closes and drains (holding
/// its slot) before closing; see the module documentation.
#[derive(Debug)]
struct Held {
    /// `None` only once dropped.
    tcp: Option<TcpStream>,
    slot: Option<Slot>,
    drain: Arc<AtomicBool>,
}

impl Held {
    fn new(tcp: TcpStream, permit: OwnedSemaphorePermit, open: Arc<AtomicUsize>, drain: Arc<AtomicBool>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Held {
            tcp: Some(tcp),
            slot: Some(Slot { open, _permit: permit }),
            drain,
        }
    }

    fn tcp(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        match self.get_mut().tcp.as_mut() {
            Some(tcp) => Ok(Pin::new(tcp)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (Some(tcp), Some(slot)) = (self.tcp.take(), self.slot.take()) else {
            return;
        };
        if !self.drain.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain_and_close(tcp, slot));
        }
    }
}

/// Half-closes `tcp`, then reads and discards until the peer closes,
/// [`DRAIN_LIMIT`] bytes were read or [`DRAIN_TIME`] passed.
async fn drain_and_close(mut tcp: TcpStream, slot: Slot) {
    let _ = tcp.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = DRAIN_LIMIT;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    drop(tcp);
    drop(slot);
}

impl AsyncRead for Held {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Held {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tcp() {
            Ok(tcp) => tcp.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
