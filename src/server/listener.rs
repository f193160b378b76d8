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
//!   websocket after an upgrade and is given back when it closes.
//!
//! With TLS ([`super::ServerBuilder::tls`]), the handshake runs in the
//! connection's task under the same handshake deadline, so a peer that
//! connects and says nothing holds its slot no longer than a slowloris one.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Limits;

/// How long open connections get to finish after the server is stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
        let io = Held::new(tcp, permit, open.clone());
        let app = app.clone();
        let stop = shutdown.clone();
        let Some(tls) = tls.clone() else {
            tokio::spawn(serve_connection(io, peer, app, limits, stop));
            continue;
        };
        tokio::spawn(async move {
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(limits.handshake_timeout, tls.accept(io)) => handshake,
                _ = stop.cancelled() => return,
            };
            match handshake {
                Ok(Ok(io)) => serve_connection(io, peer, app, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake not finished in time; closed"),
            }
        });
    }
}

/// Serves HTTP/1 (with upgrades) on one accepted connection until it ends,
/// or until shortly after `stop`.
async fn serve_connection<I>(
    io: I,
    peer: std::net::SocketAddr,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
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
            }
            return;
        }
        _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, conn).await.is_err() {
        tracing::debug!(%peer, "http connection did not finish after shutdown; dropped");
    }
}

/// An accepted TCP connection holding its slot under the connection cap.
#[derive(Debug)]
struct Held {
    tcp: TcpStream,
    open: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    fn new(tcp: TcpStream, permit: OwnedSemaphorePermit, open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Held {
            tcp,
            open,
            _permit: permit,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Held {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
