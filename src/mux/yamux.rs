//! A yamux session (hashicorp/yamux v0.1.2 compatible) over any byte stream.
//!
//! This module owns one `yamux::Connection` (crate `yamux` 0.14.1) and the
//! task that drives it. The driver polls the connection all the time, idle
//! included: Go pings every 30 s and closes the whole session when the ACK is
//! not back within 10 s, and websocket pongs only go out while we read.
//! Callers get [`MuxStream`]s (tokio `AsyncRead + AsyncWrite`), opened with
//! [`Session::open_stream`] or accepted through [`Incoming`], and learn why
//! the session ended through a typed [`MuxError`].
//!
//! It knows nothing about DRPC, websockets or Coder types: it multiplexes
//! bytes. The wire contract (Go's `yamux.DefaultConfig()`: 256 KiB stream
//! windows, stream ids odd for the client, pings answered with the same opaque
//! id) is pinned by [`SessionConfig::yamux_config`] and checked by the tests
//! against recorded Go traffic.
//!
//! Things the `yamux` crate does not do for us, and this module does:
//! * `TooManyStreams` from `poll_new_outbound` kills every stream, so opens
//!   wait on our own semaphore, kept well below yamux's hard limit;
//! * streams may hang after a local close (rust-yamux issue #216), so a
//!   [`MuxStream`] watches the session and fails pending reads and writes
//!   with the session's [`MuxError`] once it is dead;
//! * any GoAway looks like a clean close in the crate; a tap on the read side
//!   of the byte stream recognises GoAway frames (and the transport's EOF and
//!   I/O errors) so [`MuxError`] can tell them apart.
//! * the crate cannot tell a dead peer from an idle one; the session pings
//!   it as Go's yamux does ([`SessionConfig::keepalive`], see
//!   [`super::keepalive`]) and ends with [`MuxError::PeerNotResponding`].

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::keepalive::{self, KeepaliveConfig, PingSlots, Pinger};

/// yamux's default (and hashicorp's maximum) per-stream window: 256 KiB.
const STREAM_WINDOW: usize = 256 * 1024;

/// Unacknowledged outbound streams after which the `yamux` crate stops
/// opening new ones (its `MAX_ACK_BACKLOG`).
const YAMUX_ACK_BACKLOG: usize = 256;

/// Why a yamux session ended, or why an operation on it failed.
///
/// The first cause observed wins: a session that received a GoAway reports
/// [`MuxError::GoAway`] even if the transport then reached EOF.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// [`Session::close`] was called or every [`Session`] handle was dropped.
    #[error("yamux session closed locally")]
    ClosedLocally,
    /// The peer sent a GoAway frame. Codes: 0 normal, 1 protocol error,
    /// 2 internal error.
    #[error("peer ended the yamux session with GoAway (code {code})")]
    GoAway {
        /// The GoAway reason code from the frame's length field.
        code: u32,
    },
    /// The transport reached end of stream (for a websocket: Close frame).
    /// Go's `Session.Close` ends a session this way, without a GoAway.
    #[error("peer closed the connection")]
    PeerClosed,
    /// Reading or writing the transport failed.
    #[error("yamux transport I/O error: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The peer sent bytes that are not a valid yamux frame (bad version or
    /// type, frame over 1 MiB, truncated frame, ...).
    #[error("yamux frame decode error: {0}")]
    Decode(String),
    /// Any other failure reported by the `yamux` crate (protocol violation,
    /// stream ids exhausted, ...).
    #[error("yamux error: {0}")]
    Other(String),
    /// A keepalive ping went unanswered for `timeout`: the peer (or the path
    /// to it) is dead. Go's yamux ends a session the same way
    /// (`ErrKeepAliveTimeout`). See [`SessionConfig::keepalive`].
    #[error("peer not responding: keepalive ping unanswered for {timeout:?}")]
    PeerNotResponding {
        /// How long the ping waited.
        timeout: Duration,
    },
}

impl MuxError {
    fn from_connection(e: yamux::ConnectionError) -> Self {
        match e {
            yamux::ConnectionError::Io(e) => MuxError::Io(Arc::new(e)),
            yamux::ConnectionError::Decode(yamux::FrameDecodeError::Io(e)) => {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    MuxError::Decode(format!("truncated frame: {e}"))
                } else {
                    MuxError::Io(Arc::new(e))
                }
            }
            yamux::ConnectionError::Decode(e) => MuxError::Decode(e.to_string()),
            yamux::ConnectionError::Closed => MuxError::PeerClosed,
            other => MuxError::Other(other.to_string()),
        }
    }

    /// This error as an `io::Error` (what stream reads and writes return).
    ///
    /// An [`MuxError::Io`] keeps the original error kind, every other case
    /// has kind [`io::ErrorKind::ConnectionAborted`], except
    /// [`MuxError::PeerNotResponding`]: [`io::ErrorKind::TimedOut`]. The `MuxError` itself is
    /// the inner error: `err.get_ref()` and `downcast_ref::<MuxError>()`.
    pub fn to_io_error(&self) -> io::Error {
        let kind = match self {
            MuxError::Io(e) => e.kind(),
            MuxError::PeerNotResponding { .. } => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, self.clone())
    }
}

/// Settings of a [`Session`]. Construct with [`SessionConfig::default`] and
/// change fields as needed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Streams we may have open at once through [`Session::open_stream`]
    /// (further opens wait), and inbound streams a server session keeps
    /// (further ones are refused with RST). Default 256.
    pub max_open_streams: usize,
    /// Inbound streams waiting in [`Incoming`] before further ones are
    /// refused with RST, like Go's `AcceptBacklog`. Default 256.
    pub accept_backlog: usize,
    /// How long a local close may take to flush pending frames, the GoAway
    /// and the transport shutdown before the transport is simply dropped.
    /// Default 5 s.
    pub close_timeout: Duration,
    /// Keepalive pings: sent every `interval` after the previous answer;
    /// when one is not answered within `timeout` the session ends with
    /// [`MuxError::PeerNotResponding`]. `None` sends none. Default: on, as
    /// Go's `yamux.DefaultConfig()` (every 30 s, 10 s to answer).
    pub keepalive: Option<KeepaliveConfig>,
    /// How long a write to the transport may stay blocked (the peer reads
    /// nothing) before the session is ended with a [`MuxError::Io`] of kind
    /// `TimedOut`, like hashicorp/yamux's `ConnectionWriteTimeout`. Default 10 s.
    pub write_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_open_streams: 256,
            accept_backlog: 256,
            close_timeout: Duration::from_secs(5),
            keepalive: Some(KeepaliveConfig::default()),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// `yamux::Config`'s default stream limit.
const DEFAULT_YAMUX_MAX_STREAMS: usize = 512;

impl SessionConfig {
    /// The hard stream limit given to the `yamux` crate.
    ///
    /// Twice [`max_open_streams`](Self::max_open_streams) plus 512: streams
    /// the application has dropped stay in yamux's table until the driver has
    /// reaped them, and reaching the limit is fatal for the whole session in
    /// yamux 0.14.1 (`TooManyStreams`), so our semaphore stays far below it.
    pub fn yamux_max_num_streams(&self) -> usize {
        self.max_open_streams.max(1) * 2 + 2 * YAMUX_ACK_BACKLOG
    }

    /// The `yamux::Config` used for the session:
    /// * `set_max_num_streams(n)` with `n` = [`yamux_max_num_streams`](Self::yamux_max_num_streams),
    ///   set first because each setter asserts `window >= n * 256 KiB`;
    /// * `set_max_connection_receive_window(Some(n * 256 KiB))`: exactly the
    ///   guaranteed minimum, which disables window auto-tuning, so every
    ///   stream keeps the 256 KiB window of hashicorp's `DefaultConfig` and a
    ///   Go peer never sends a frame over the crate's fatal 1 MiB limit;
    /// * split send size (16 KiB frames) and read-after-close stay default.
    pub fn yamux_config(&self) -> yamux::Config {
        let n = self.yamux_max_num_streams();
        let mut cfg = yamux::Config::default();
        // Each setter asserts `window >= streams * 256 KiB` against the other's
        // current value (defaults: 512 streams, 1 GiB), so raise the window
        // enough for both the old and the new stream count first, then set the
        // stream count, then pin the window to exactly the minimum.
        cfg.set_max_connection_receive_window(Some(n.max(DEFAULT_YAMUX_MAX_STREAMS) * STREAM_WINDOW));
        cfg.set_max_num_streams(n);
        cfg.set_max_connection_receive_window(Some(n * STREAM_WINDOW));
        cfg
    }
}

/// State shared by the session handles, the driver, the transport tap and
/// every stream.
#[derive(Debug)]
struct SessionState {
    /// First cause of death.
    reason: OnceLock<MuxError>,
    /// Cancelled as soon as `reason` is set.
    dead: CancellationToken,
    /// Cancelled when the driver task has finished and dropped the transport.
    exited: CancellationToken,
    /// Live [`MuxStream`]s, both directions.
    open_streams: AtomicUsize,
    /// Live inbound [`MuxStream`]s (including those queued in `Incoming`).
    inbound_streams: AtomicUsize,
    /// Bumped each time the driver task is polled; the [`Tap`] defers
    /// transport flushes to the next poll (see there).
    driver_polls: AtomicU64,
    /// Keepalive pings between the driver's timer and the tap.
    pings: PingSlots,
}

impl SessionState {
    fn fail(&self, e: MuxError) {
        if self.reason.set(e).is_ok() {
            if let Some(r) = self.reason.get() {
                tracing::debug!(reason = %r, "yamux session ending");
            }
        }
        self.dead.cancel();
    }

    fn reason(&self) -> MuxError {
        self.reason.get().cloned().unwrap_or(MuxError::ClosedLocally)
    }
}

type OpenReply = oneshot::Sender<Result<yamux::Stream, MuxError>>;

/// A yamux session over one byte stream.
///
/// Cheap to clone; all clones drive the same session. The session ends when
/// [`close`](Self::close) is called, when the last clone is dropped, or when
/// the peer or the transport ends it; [`closed`](Self::closed) tells why.
///
/// Creating a session spawns its driver with `tokio::spawn`, so it must be
/// called inside a Tokio runtime.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

#[derive(Debug)]
struct SessionInner {
    state: Arc<SessionState>,
    open_tx: mpsc::Sender<OpenReply>,
    permits: Arc<Semaphore>,
    close_requested: CancellationToken,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        self.close_requested.cancel();
    }
}

/// Inbound streams of a server [`Session`], in the order the peer opened them.
///
/// A `Stream` of [`MuxStream`]; it ends when the session ends. At most
/// [`SessionConfig::accept_backlog`] streams wait here; the driver refuses
/// (RSTs) further ones instead of blocking, so the session stays responsive
/// even if nobody accepts. Dropping `Incoming` refuses every later stream.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<MuxStream>,
}

impl Incoming {
    /// Waits for the next inbound stream; `None` once the session has ended.
    pub async fn accept(&mut self) -> Option<MuxStream> {
        self.rx.recv().await
    }
}

impl Stream for Incoming {
    type Item = MuxStream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MuxStream>> {
        self.rx.poll_recv(cx)
    }
}

impl Session {
    /// Starts the client side (the Coder agent): opens odd stream ids 1, 3, 5…
    /// Inbound streams are not expected (coderd never opens any) and are
    /// refused with RST.
    pub fn client<T>(io: T, config: SessionConfig) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, config, yamux::Mode::Client, None)
    }

    /// Starts the server side (coderd): inbound streams are delivered by the
    /// returned [`Incoming`]. The server may also open (even-numbered)
    /// streams with [`open_stream`](Self::open_stream).
    pub fn server<T>(io: T, config: SessionConfig) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(config.accept_backlog.max(1));
        let session = Self::start(io, config, yamux::Mode::Server, Some(tx));
        (session, Incoming { rx })
    }

    fn start<T>(
        io: T,
        config: SessionConfig,
        mode: yamux::Mode,
        incoming_tx: Option<mpsc::Sender<MuxStream>>,
    ) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let state = Arc::new(SessionState {
            reason: OnceLock::new(),
            dead: CancellationToken::new(),
            exited: CancellationToken::new(),
            open_streams: AtomicUsize::new(0),
            inbound_streams: AtomicUsize::new(0),
            driver_polls: AtomicU64::new(0),
            pings: PingSlots::default(),
        });
        let tap = TokioAsyncReadCompatExt::compat(Tap::new(io, state.clone(), config.write_timeout));
        let conn = yamux::Connection::new(tap, config.yamux_config(), mode);
        let (open_tx, open_rx) = mpsc::channel(64);
        let close_requested = CancellationToken::new();
        let driver = Driver {
            conn,
            state: state.clone(),
            open_rx,
            pending_open: None,
            incoming_tx,
            max_inbound: config.max_open_streams.max(1),
            close: Box::pin(close_requested.clone().cancelled_owned()),
            close_timeout: config.close_timeout,
            pinger: config.keepalive.map(Pinger::new),
        };
        // Boxed: an async fn's state machine would hold its argument twice
        // (rustc #62958), and the driver is the largest state of a session.
        tokio::spawn(Box::new(driver).run());
        Session {
            inner: Arc::new(SessionInner {
                state,
                open_tx,
                permits: Arc::new(Semaphore::new(config.max_open_streams.max(1))),
                close_requested,
            }),
        }
    }

    /// Opens a new outbound stream.
    ///
    /// Waits while [`SessionConfig::max_open_streams`] of our streams are
    /// open, and while the `yamux` crate has 256 streams not yet acknowledged
    /// by the peer. Fails with the session's [`MuxError`] once it has ended.
    ///
    /// The peer learns about the stream with its first frame (SYN rides on
    /// the first write), so write before expecting anything from it.
    /// Cancel-safe: dropping the future before it resolves opens nothing
    /// visible to the peer.
    pub async fn open_stream(&self) -> Result<MuxStream, MuxError> {
        let state = &self.inner.state;
        if let Some(r) = state.reason.get() {
            return Err(r.clone());
        }
        let permit = tokio::select! {
            biased;
            _ = state.dead.cancelled() => return Err(state.reason()),
            p = self.inner.permits.clone().acquire_owned() => {
                p.map_err(|_| state.reason())?
            }
        };
        let (tx, rx) = oneshot::channel();
        tokio::select! {
            biased;
            _ = state.dead.cancelled() => return Err(state.reason()),
            r = self.inner.open_tx.send(tx) => r.map_err(|_| state.reason())?,
        }
        let stream = tokio::select! {
            biased;
            r = rx => match r {
                Ok(r) => r?,
                Err(_) => return Err(state.reason()),
            },
            _ = state.dead.cancelled() => return Err(state.reason()),
        };
        Ok(MuxStream::new(stream, state.clone(), Some(permit), false))
    }

    /// Starts closing the session without waiting: the driver sends any
    /// queued frames and a GoAway (code 0, which Go ignores), shuts the
    /// transport down (for a websocket: a Close frame) and drops it.
    /// Pending and later opens, and every stream's pending or later reads and
    /// writes, fail with [`MuxError::ClosedLocally`] (unless the session had
    /// already ended for another reason). Idempotent.
    pub fn close(&self) {
        if self.inner.state.reason.get().is_none() {
            self.inner.state.fail(MuxError::ClosedLocally);
        }
        self.inner.close_requested.cancel();
    }

    /// True once the session has ended or is ending; opens fail from then on.
    pub fn is_closed(&self) -> bool {
        self.inner.state.dead.is_cancelled()
    }

    /// Waits until the driver has finished (transport dropped) and returns
    /// why the session ended.
    pub async fn closed(&self) -> MuxError {
        self.inner.state.exited.cancelled().await;
        self.inner.state.reason()
    }

    /// Why the session ended, or `None` while it is alive.
    pub fn close_reason(&self) -> Option<MuxError> {
        self.inner.state.reason.get().cloned()
    }

    /// Number of [`MuxStream`]s alive right now, outbound and inbound
    /// (including inbound streams still waiting in [`Incoming`]). It drops as
    /// soon as a `MuxStream` is dropped.
    pub fn open_streams(&self) -> usize {
        self.inner.state.open_streams.load(Ordering::SeqCst)
    }
}

/// The task that owns the `yamux::Connection`.
struct Driver<T> {
    conn: yamux::Connection<Compat<Tap<T>>>,
    state: Arc<SessionState>,
    open_rx: mpsc::Receiver<OpenReply>,
    pending_open: Option<OpenReply>,
    incoming_tx: Option<mpsc::Sender<MuxStream>>,
    max_inbound: usize,
    close: Pin<Box<WaitForCancellationFutureOwned>>,
    close_timeout: Duration,
    pinger: Option<Pinger>,
}

impl<T> Driver<T>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    async fn run(mut self: Box<Self>) {
        // Also runs if the task is dropped (runtime shutdown): nobody waits
        // forever on a session whose driver is gone.
        let _exit = ExitGuard(self.state.clone());
        let end = poll_fn(|cx| self.poll_drive(cx)).await;
        match end {
            None => {
                self.state.fail(MuxError::ClosedLocally);
                self.fail_pending_opens();
                let conn = &mut self.conn;
                let state = &self.state;
                let close = poll_fn(|cx| {
                    state.driver_polls.fetch_add(1, Ordering::Relaxed);
                    conn.poll_close(cx)
                });
                match tokio::time::timeout(self.close_timeout, close).await {
                    Ok(Ok(())) => tracing::debug!("yamux session closed"),
                    Ok(Err(e)) => tracing::debug!(error = %e, "yamux close failed"),
                    Err(_) => tracing::debug!("yamux close timed out; dropping transport"),
                }
            }
            Some(e) => {
                self.state.fail(e);
                self.fail_pending_opens();
            }
        }
        let Driver { conn, incoming_tx, .. } = *self;
        drop(incoming_tx);
        drop(conn);
    }

    fn fail_pending_opens(&mut self) {
        self.pending_open = None;
        self.open_rx.close();
        while self.open_rx.try_recv().is_ok() {}
    }

    /// Drives the connection. `Ready(None)`: local close requested;
    /// `Ready(Some(e))`: the session died.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Option<MuxError>> {
        self.state.driver_polls.fetch_add(1, Ordering::Relaxed);
        loop {
            if self.close.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            // I/O: reads frames, answers pings, writes stream frames, reaps
            // dropped streams. Must run even when nobody uses the session.
            loop {
                match self.conn.poll_next_inbound(cx) {
                    Poll::Ready(Some(Ok(stream))) => self.on_inbound(stream, cx),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(MuxError::from_connection(e))),
                    Poll::Ready(None) => return Poll::Ready(Some(MuxError::PeerClosed)),
                    Poll::Pending => break,
                }
            }
            // After the reads: the tap has recorded any pong by now.
            if let Some(pinger) = &mut self.pinger {
                if pinger.poll(cx, &self.state.pings).is_ready() {
                    return Poll::Ready(Some(MuxError::PeerNotResponding {
                        timeout: pinger.timeout(),
                    }));
                }
            }
            // Opens. A newly created stream must be followed by another
            // `poll_next_inbound` so the connection registers for its frames.
            let mut opened = false;
            loop {
                if self.pending_open.is_none() {
                    match self.open_rx.poll_recv(cx) {
                        Poll::Ready(Some(reply)) => {
                            if !reply.is_closed() {
                                self.pending_open = Some(reply);
                            }
                            continue;
                        }
                        Poll::Ready(None) | Poll::Pending => break,
                    }
                }
                match self.conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        opened = true;
                        if let Some(reply) = self.pending_open.take() {
                            // A requester that gave up drops the stream: yamux
                            // RSTs an id the peer has never seen, which Go
                            // ignores.
                            let _ = reply.send(Ok(stream));
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(MuxError::from_connection(e))),
                    Poll::Pending => break,
                }
            }
            if !opened {
                return Poll::Pending;
            }
        }
    }

    fn on_inbound(&mut self, mut stream: yamux::Stream, cx: &mut Context<'_>) {
        let id = stream.id().val();
        let Some(tx) = &self.incoming_tx else {
            tracing::debug!(stream = id, "refusing inbound yamux stream on a client session");
            return; // dropping an open stream sends RST
        };
        if self.state.inbound_streams.load(Ordering::SeqCst) >= self.max_inbound {
            tracing::warn!(stream = id, "too many inbound yamux streams; refusing");
            return;
        }
        if tx.capacity() == 0 {
            tracing::warn!(stream = id, "yamux accept backlog full; refusing stream");
            return;
        }
        // Acknowledge at once, as hashicorp/yamux does when a stream is
        // accepted. The `yamux` crate would put the ACK on our first write
        // only, and a Go client counts streams not yet acknowledged against
        // its AcceptBacklog (256): past that, its OpenStream blocks, so idle
        // streams would hang the peer. An empty write makes the crate send a
        // zero-length Data frame carrying the ACK (Go reads it as an ACK and
        // no data); if the stream's queue is not ready, the ACK rides on the
        // first write as before.
        let _ = futures::AsyncWrite::poll_write(Pin::new(&mut stream), cx, &[]);
        let stream = MuxStream::new(stream, self.state.clone(), None, true);
        match tx.try_send(stream) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(stream = id, "yamux accept backlog full; refusing stream");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(stream = id, "nobody accepts yamux streams; refusing");
            }
        }
    }
}

/// Marks the session dead and the driver exited when the driver goes away.
struct ExitGuard(Arc<SessionState>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.fail(MuxError::ClosedLocally);
        self.0.exited.cancel();
    }
}

/// One yamux stream, as a tokio `AsyncRead + AsyncWrite`.
///
/// * [`shutdown`](tokio::io::AsyncWriteExt::shutdown) half-closes it (FIN);
///   reading continues until the peer's FIN (EOF).
/// * **Dropping it before it is closed in both directions resets it (RST)**:
///   the `yamux` crate sends RST for a stream dropped while open, and FIN if
///   the peer had already half-closed. That is how an RPC is cancelled.
///   Dropping also releases its slot in [`Session::open_streams`] and, for
///   outbound streams, its open permit.
/// * Once the session has ended, pending and later reads and writes fail with
///   the session's [`MuxError`] (see [`MuxError::to_io_error`]), and an end of
///   stream observed after that is reported as that error too. Data already
///   received stays readable first. Shutdown of a stream of a dead session
///   succeeds without doing anything.
#[derive(Debug)]
pub struct MuxStream {
    io: Compat<yamux::Stream>,
    id: u32,
    state: Arc<SessionState>,
    inbound: bool,
    dead_read: Pin<Box<WaitForCancellationFutureOwned>>,
    dead_write: Pin<Box<WaitForCancellationFutureOwned>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl MuxStream {
    fn new(
        stream: yamux::Stream,
        state: Arc<SessionState>,
        permit: Option<OwnedSemaphorePermit>,
        inbound: bool,
    ) -> Self {
        state.open_streams.fetch_add(1, Ordering::SeqCst);
        if inbound {
            state.inbound_streams.fetch_add(1, Ordering::SeqCst);
        }
        MuxStream {
            id: stream.id().val(),
            io: FuturesAsyncReadCompatExt::compat(stream),
            dead_read: Box::pin(state.dead.clone().cancelled_owned()),
            dead_write: Box::pin(state.dead.clone().cancelled_owned()),
            state,
            inbound,
            _permit: permit,
        }
    }

    /// The yamux stream id (odd when opened by the client, even by the server).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The session's error if it has ended.
    fn session_error(&self) -> Option<io::Error> {
        self.state.reason.get().map(MuxError::to_io_error)
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        self.state.open_streams.fetch_sub(1, Ordering::SeqCst);
        if self.inbound {
            self.state.inbound_streams.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() == before && buf.remaining() > 0 {
                    if let Some(e) = this.session_error() {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.session_error().unwrap_or(e))),
            Poll::Pending => {
                if this.dead_read.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(this.state.reason().to_io_error()));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.session_error() {
            return Poll::Ready(Err(e));
        }
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r.map_err(|e| this.session_error().unwrap_or(e))),
            Poll::Pending => {
                ready!(this.dead_write.as_mut().poll(cx));
                Poll::Ready(Err(this.state.reason().to_io_error()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.session_error() {
            return Poll::Ready(Err(e));
        }
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(|e| this.session_error().unwrap_or(e))),
            Poll::Pending => {
                ready!(this.dead_write.as_mut().poll(cx));
                Poll::Ready(Err(this.state.reason().to_io_error()))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.reason.get().is_some() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(match r {
                Err(_) if this.state.reason.get().is_some() => Ok(()),
                other => other,
            }),
            Poll::Pending => {
                ready!(this.dead_write.as_mut().poll(cx));
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Wraps the transport and watches the bytes yamux reads, so the session can
/// report *why* it ended: the `yamux` crate maps a received GoAway and a
/// transport EOF both to `ConnectionError::Closed`.
///
/// It follows the 12-byte frame headers (passing Data bodies straight
/// through) and records the first GoAway code, the transport's EOF or read
/// error as the session's reason. These all end the yamux connection, and the
/// tap sees them before yamux acts on them, so streams woken by the
/// connection's cleanup already find the precise reason.
///
/// It carries the keepalive (see [`super::keepalive`]): a header is handed to
/// yamux only once all 12 bytes are in, so a Ping(ACK) answering one of our
/// keepalive pings can be removed before yamux sees it; and it follows the
/// frame boundaries of what yamux writes, so a Ping(SYN) goes out between two
/// of yamux's frames, never inside one. It answers the peer's pings itself
/// the same way (see [`super::keepalive`] for why).
///
/// It also coalesces writes: the `yamux` crate flushes the transport after
/// every frame, which for a websocket means one message and one syscall per
/// frame. The tap defers a flush to the next poll of the driver task (it
/// wakes the task so that poll comes at once), so every frame queued while
/// the driver runs leaves in one websocket message. Bytes never wait longer
/// than one driver poll; a shutdown flushes at once.
///
/// Two defences against hostile peers live here too, because the `yamux`
/// crate has neither:
/// * when yamux answers a protocol violation (duplicate SYN, stream id of
///   the wrong parity, window overflow, too many streams, ...) it queues a
///   GoAway with code 1 or 2 but keeps the session running. The tap sees
///   that GoAway go out, flushes it and then fails every read, which ends
///   the session and closes the transport, as hashicorp/yamux does;
/// * a write that stays blocked for [`SessionConfig::write_timeout`] (the
///   peer reads nothing) fails, and so does every later read and write.
struct Tap<T> {
    io: T,
    state: Arc<SessionState>,
    /// Inbound header being collected (`rhdr_len < 12`) or handed to yamux
    /// (`rhdr_len == 12`, `rhdr_out` bytes given so far).
    rhdr: [u8; 12],
    rhdr_len: usize,
    rhdr_out: usize,
    /// Inbound Data body bytes still to pass through.
    rskip: u64,
    /// Outbound frame tracking: header bytes seen, body bytes still to come.
    whdr: [u8; 12],
    whdr_len: usize,
    wskip: u64,
    /// A ping or pong of ours being written; `ping_pos == 12` when none.
    ping: [u8; 12],
    ping_pos: usize,
    /// Opaque ids of the peer's pings still to be answered.
    pongs: VecDeque<u32>,
    /// Bytes written since the last flush of `io`.
    dirty: bool,
    /// The driver poll during which a flush was deferred.
    deferred_at: Option<u64>,
    /// We sent a GoAway with this non-zero code: flush, then end.
    terminating: Option<u32>,
    /// The transport is unusable (write timeout, or terminated).
    broken: Option<(io::ErrorKind, String)>,
    write_timeout: Duration,
    /// Running while a write or flush is blocked.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Tap<T> {
    fn new(io: T, state: Arc<SessionState>, write_timeout: Duration) -> Self {
        Tap {
            io,
            state,
            rhdr: [0; 12],
            rhdr_len: 0,
            rhdr_out: 0,
            rskip: 0,
            whdr: [0; 12],
            whdr_len: 0,
            wskip: 0,
            ping: [0; 12],
            ping_pos: 12,
            pongs: VecDeque::new(),
            dirty: false,
            deferred_at: None,
            terminating: None,
            broken: None,
            write_timeout,
            write_stall: None,
        }
    }

    /// Follows the frames yamux writes, to know where a ping may go.
    fn observe_written(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.wskip > 0 {
                let k = self.wskip.min(data.len() as u64) as usize;
                self.wskip -= k as u64;
                data = &data[k..];
                continue;
            }
            let k = (12 - self.whdr_len).min(data.len());
            self.whdr[self.whdr_len..self.whdr_len + k].copy_from_slice(&data[..k]);
            self.whdr_len += k;
            data = &data[k..];
            if self.whdr_len == 12 {
                self.whdr_len = 0;
                let h = &self.whdr;
                let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                match h[1] {
                    0 => self.wskip = u64::from(length),
                    3 if length != 0 => self.on_go_away_sent(length),
                    _ => {}
                }
            }
        }
    }

    /// yamux answered a protocol violation with GoAway(`code`): end the
    /// session once that frame is out.
    fn on_go_away_sent(&mut self, code: u32) {
        if self.terminating.is_none() {
            tracing::debug!(code, "yamux protocol violation by the peer; ending the session");
            self.terminating = Some(code);
            self.state.fail(MuxError::Other(format!(
                "peer violated the yamux protocol; session ended with GoAway (code {code})"
            )));
        }
    }

    fn broken_error(&self) -> Option<io::Error> {
        self.broken
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    /// Tracks a blocked write: fails once it has been blocked for the write
    /// timeout, and resets when a write makes progress.
    fn on_write_poll<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(r) => {
                self.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stall.as_mut().poll(cx).is_ready() {
                    let message = format!("peer has read nothing for {timeout:?}; write timed out");
                    tracing::debug!("{message}");
                    self.state.fail(MuxError::Io(Arc::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        message.clone(),
                    ))));
                    self.broken = Some((io::ErrorKind::TimedOut, message));
                    return Poll::Ready(Err(self.broken_error().expect("just set")));
                }
                Poll::Pending
            }
        }
    }

    /// A complete inbound header: `false` if it is swallowed.
    fn on_header(&mut self) -> bool {
        if let Some(id) = keepalive::own_pong_id(&self.rhdr) {
            self.state.pings.pong(id);
            return false;
        }
        if let Some(id) = keepalive::peer_ping_id(&self.rhdr) {
            if self.pongs.len() < keepalive::MAX_PENDING_PONGS {
                self.pongs.push_back(id);
            } else {
                tracing::debug!(id, "yamux ping flood: not answering");
            }
            return false;
        }
        let h = &self.rhdr;
        let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        match h[1] {
            0 => self.rskip = u64::from(length),
            3 => self.state.fail(MuxError::GoAway { code: length }),
            _ => {}
        }
        true
    }
}

impl<T: AsyncWrite + Unpin> Tap<T> {
    /// Whether a ping or pong of ours is due or half-written.
    fn control_due(&self) -> bool {
        self.ping_pos < 12 || !self.pongs.is_empty() || self.state.pings.ping_waiting()
    }

    /// Finishes writing a ping or pong of ours, and writes the due ones
    /// while yamux is between frames. `Ready(Ok)` once nothing of ours is
    /// left half-written.
    fn poll_ping(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.ping_pos < 12 {
                let written = Pin::new(&mut self.io).poll_write(cx, &self.ping[self.ping_pos..]);
                let n = ready!(self.on_write_poll(cx, written))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.ping_pos += n;
                self.dirty = true;
            }
            if self.whdr_len != 0 || self.wskip != 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(id) = self.state.pings.take_ping() {
                self.ping = keepalive::ping_frame(id);
            } else if let Some(id) = self.pongs.pop_front() {
                self.ping = keepalive::pong_frame(id);
            } else {
                return Poll::Ready(Ok(()));
            }
            self.ping_pos = 0;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tap<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.broken_error() {
            return Poll::Ready(Err(e));
        }
        if let Some(code) = this.terminating {
            // Our GoAway goes out before the transport does (bounded by the
            // write timeout), then the session ends.
            let flushed = Pin::new(&mut this.io).poll_flush(cx);
            match this.on_write_poll(cx, flushed) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => tracing::debug!(error = %e, "the GoAway could not be flushed"),
                Poll::Ready(Ok(())) => {}
            }
            this.broken = Some((
                io::ErrorKind::ConnectionAborted,
                format!("yamux session ended after a protocol violation (GoAway code {code})"),
            ));
            return Poll::Ready(Err(this.broken_error().expect("just set")));
        }
        // The driver always reads, idle or not: the place to send a due ping
        // or pong.
        if this.control_due() {
            if let Poll::Ready(Ok(())) = this.poll_ping(cx) {
                if this.dirty && Pin::new(&mut this.io).poll_flush(cx).is_ready() {
                    this.dirty = false;
                    this.deferred_at = None;
                }
            }
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.rhdr_len == 12 {
                let k = (12 - this.rhdr_out).min(buf.remaining());
                buf.put_slice(&this.rhdr[this.rhdr_out..this.rhdr_out + k]);
                this.rhdr_out += k;
                if this.rhdr_out == 12 {
                    this.rhdr_len = 0;
                    this.rhdr_out = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let result = if this.rskip > 0 && this.rhdr_len == 0 {
                // A Data body: straight into yamux's buffer.
                let n = this.rskip.min(buf.remaining() as u64) as usize;
                let mut sub = ReadBuf::new(buf.initialize_unfilled_to(n));
                let r = ready!(Pin::new(&mut this.io).poll_read(cx, &mut sub));
                let k = sub.filled().len();
                buf.advance(k);
                this.rskip -= k as u64;
                r.map(|()| k)
            } else {
                let mut sub = ReadBuf::new(&mut this.rhdr[this.rhdr_len..]);
                let r = ready!(Pin::new(&mut this.io).poll_read(cx, &mut sub));
                let k = sub.filled().len();
                this.rhdr_len += k;
                r.map(|()| k)
            };
            match result {
                Ok(0) => {
                    this.state.fail(MuxError::PeerClosed);
                    return Poll::Ready(Ok(()));
                }
                Ok(_) if this.rhdr_len == 0 => return Poll::Ready(Ok(())),
                Ok(_) => {
                    if this.rhdr_len == 12 && !this.on_header() {
                        this.rhdr_len = 0;
                        if !this.pongs.is_empty() {
                            // Come back to write the answer even if no more
                            // bytes arrive.
                            cx.waker().wake_by_ref();
                        }
                    }
                }
                Err(e) => {
                    this.state
                        .fail(MuxError::Io(Arc::new(io::Error::new(e.kind(), e.to_string()))));
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.broken_error() {
            return Poll::Ready(Err(e));
        }
        ready!(this.poll_ping(cx))?;
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        let n = ready!(this.on_write_poll(cx, written))?;
        this.observe_written(&buf[..n]);
        this.dirty |= n > 0;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.broken_error() {
            return Poll::Ready(Err(e));
        }
        ready!(this.poll_ping(cx))?;
        if this.dirty && this.terminating.is_none() {
            let poll = this.state.driver_polls.load(Ordering::Relaxed);
            match this.deferred_at {
                None => {
                    // First flush of this batch: let the driver finish its
                    // round (more frames may follow), then flush on the next.
                    this.deferred_at = Some(poll);
                    cx.waker().wake_by_ref();
                    return Poll::Ready(Ok(()));
                }
                Some(at) if at == poll => return Poll::Ready(Ok(())),
                Some(_) => {}
            }
        }
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        ready!(this.on_write_poll(cx, flushed))?;
        this.dirty = false;
        this.deferred_at = None;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.broken_error() {
            return Poll::Ready(Err(e));
        }
        let shut = Pin::new(&mut this.io).poll_shutdown(cx);
        this.on_write_poll(cx, shut)
    }
}

#[cfg(test)]
mod config_tests {
    #[test]
    fn yamux_config_accepts_small_and_large_stream_limits() {
        for max_open_streams in [1, 16, 256, 4096, 100_000] {
            let config = super::SessionConfig {
                max_open_streams,
                ..Default::default()
            };
            let _ = config.yamux_config();
        }
    }
}
