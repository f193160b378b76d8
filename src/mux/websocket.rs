//! A websocket connection seen as one ordered byte stream.
//!
//! This module owns the translation between websocket messages and bytes, the
//! Rust counterpart of Go's `websocket.NetConn(ctx, conn, websocket.MessageBinary)`
//! (github.com/coder/websocket `netconn.go`), which coderd and the Go agent put
//! under yamux:
//!
//! * reading concatenates the payloads of binary messages; message boundaries
//!   carry no meaning (Go writes a yamux header and its body as two messages);
//! * Ping, Pong and raw frames are not data; tungstenite answers pings by
//!   itself, which works because the yamux driver keeps reading;
//! * an empty binary message is skipped (it is not end of stream);
//! * a Close frame, or the end of the websocket, is end of stream (EOF);
//! * a Text message is a protocol error: the read fails with
//!   [`io::ErrorKind::InvalidData`] (Go closes with `StatusUnsupportedData`);
//! * every write goes out as a binary message; bytes written between two
//!   flushes are coalesced into one message (at most [`MAX_WRITE_MESSAGE`]
//!   bytes), so one yamux frame normally travels as one message;
//! * shutting the writer down sends a Close frame with status 1000 (normal);
//! * optionally ([`WsByteStream::with_keepalive`]) it pings the peer as coderd
//!   does (payloads "1", "2", ..., coder/websocket's counter) and fails the
//!   stream when no pong has come back within a timeout.
//!
//! It knows nothing about yamux, DRPC or Coder. The websocket handshake and its
//! HTTP headers belong to the caller; [`client_config`] and [`server_config`]
//! give the message limits to use for it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Largest websocket message we accept: 4 MiB, the limit the Go agent sets
/// with `conn.SetReadLimit(1 << 22)` (coder `codersdk/agentsdk`).
///
/// yamux frames from Go are at most one stream window (256 KiB) plus a
/// 12-byte header, so real traffic stays far below it.
pub const MAX_MESSAGE_SIZE: usize = 4 << 20;

/// Largest binary message this adapter writes when it coalesces several
/// writes (64 KiB). A single write is never split across messages unless it
/// is longer than this.
pub const MAX_WRITE_MESSAGE: usize = 64 << 10;

/// tungstenite's read buffer per connection: 4 KiB (tungstenite's default is
/// 128 KiB).
///
/// tungstenite allocates this buffer at the handshake and zero-fills it
/// before every read, so all of it stays resident for the life of the
/// connection: at 128 KiB it was 95% of an idle agent connection's memory
/// (`bench --case rss_per_connection`: 135 KiB per connection, 11 KiB with
/// 4 KiB). It is also the most one `read(2)` fetches; agent RPC messages
/// are mostly far smaller, and a larger frame still arrives whole (the
/// buffer grows to the frame's length, reads stay 4 KiB each).
pub const READ_BUFFER_SIZE: usize = 4 << 10;

/// tungstenite's read buffer per connection over TLS: 1 KiB.
///
/// Under TLS the socket is read by rustls, into its own buffer (4 KiB while
/// no record is pending); tungstenite then only copies decrypted bytes out
/// of rustls, without a system call per read. A 4 KiB buffer of its own
/// would be a second resident 4 KiB per idle connection for nothing; 1 KiB
/// costs a few more memory copies for a large message, never more system
/// calls (`bench --tls --case rss_per_connection` shows the difference).
pub const TLS_READ_BUFFER_SIZE: usize = 1 << 10;

/// tungstenite's write threshold: 0, every queued message goes to the socket
/// at once. [`WsByteStream`] already coalesces the bytes written between two
/// flushes into one message, so a second buffer in tungstenite would only
/// hold memory; what tungstenite keeps is one message's worth.
pub const WRITE_BUFFER_SIZE: usize = 0;

/// Websocket settings for the agent side (client) of the RPC connection:
/// messages and frames are limited to [`MAX_MESSAGE_SIZE`] (4 MiB), as the Go
/// agent does, with a [`READ_BUFFER_SIZE`] read buffer and a
/// [`WRITE_BUFFER_SIZE`] write threshold, which keep an idle connection small.
///
/// Pass it to `tokio_tungstenite::connect_async_with_config`.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(WRITE_BUFFER_SIZE)
}

/// [`client_config`] for a websocket over TLS (`wss://`): the read buffer is
/// [`TLS_READ_BUFFER_SIZE`], since rustls already buffers the socket.
pub fn client_config_tls() -> WebSocketConfig {
    client_config().read_buffer_size(TLS_READ_BUFFER_SIZE)
}

/// [`server_config`] for a websocket over TLS: the read buffer is
/// [`TLS_READ_BUFFER_SIZE`], as in [`client_config_tls`].
pub fn server_config_tls() -> WebSocketConfig {
    server_config().read_buffer_size(TLS_READ_BUFFER_SIZE)
}

/// Websocket settings for the coderd side (server) of the RPC connection.
///
/// Same limits and buffers as [`client_config`]: a Go agent sends yamux frames of at most
/// 256 KiB + 12 bytes per message, so 4 MiB leaves ample room while bounding
/// what a misbehaving peer can make us buffer. Pass it to
/// `tokio_tungstenite::accept_async_with_config` or
/// `WebSocketStream::from_raw_socket`.
pub fn server_config() -> WebSocketConfig {
    client_config()
}

/// A websocket connection used as one `AsyncRead + AsyncWrite` byte stream.
///
/// See the [module documentation](self) for the exact mapping. Works for both
/// roles and any transport `S` (e.g. `MaybeTlsStream<TcpStream>` on the
/// client, `TokioIo<Upgraded>` or a `TcpStream` on the server).
#[derive(Debug)]
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    /// Unread rest of the current binary message.
    read_buf: Bytes,
    /// The peer ended the websocket (Close frame or end of stream).
    read_eof: bool,
    /// A previous read failed; the stream is unusable for reading.
    read_failed: bool,
    /// Bytes written since the last message was queued.
    write_buf: BytesMut,
    /// Our Close frame has been queued.
    close_sent: bool,
    /// Pings we send and the pongs we expect, when enabled.
    keepalive: Option<Keepalive>,
}

/// coderd's websocket heartbeat: a Ping every `interval`; the connection is
/// dead when no Pong arrived within `timeout`.
#[derive(Debug)]
struct Keepalive {
    ticker: tokio::time::Interval,
    timeout: std::time::Duration,
    last_pong: tokio::time::Instant,
    sent: u64,
    /// A Ping is due but the sink was not ready yet.
    pending: bool,
}

impl<S> WsByteStream<S> {
    /// Wraps an established websocket (after the handshake).
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsByteStream {
            ws,
            read_buf: Bytes::new(),
            read_eof: false,
            read_failed: false,
            write_buf: BytesMut::new(),
            close_sent: false,
            keepalive: None,
        }
    }

    /// Also pings the peer every `interval` (payloads "1", "2", ..., as
    /// coder/websocket's `Conn.Ping` writes them) and fails reads with
    /// [`io::ErrorKind::TimedOut`] once no Pong has arrived for `timeout`,
    /// as coderd's agent connection monitor drops silent agents. Pings go
    /// out while the stream is being read, which the yamux driver does all
    /// the time. Must be called inside a Tokio runtime.
    pub fn with_keepalive(mut self, interval: std::time::Duration, timeout: std::time::Duration) -> Self {
        let start = tokio::time::Instant::now() + interval;
        let mut ticker = tokio::time::interval_at(start, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.keepalive = Some(Keepalive {
            ticker,
            timeout,
            last_pong: tokio::time::Instant::now(),
            sent: 0,
            pending: false,
        });
        self
    }

    /// The underlying websocket.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.ws
    }

    /// Gives the websocket back. Unread message bytes and written bytes not
    /// yet flushed are discarded.
    pub fn into_inner(self) -> WebSocketStream<S> {
        self.ws
    }
}

impl<S> From<WebSocketStream<S>> for WsByteStream<S> {
    fn from(ws: WebSocketStream<S>) -> Self {
        WsByteStream::new(ws)
    }
}

/// Maps a tungstenite error to the `io::Error` a byte stream would report.
fn ws_to_io(e: WsError) -> io::Error {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::Error::new(io::ErrorKind::BrokenPipe, e),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            io::Error::new(io::ErrorKind::ConnectionReset, e)
        }
        WsError::Capacity(_) | WsError::Protocol(_) | WsError::Utf8(_) => io::Error::new(io::ErrorKind::InvalidData, e),
        other => io::Error::other(other),
    }
}

impl<S> WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// Queues the coalesced write buffer as one binary message.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_to_io)?;
        let payload = self.write_buf.split().freeze();
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(payload))
            .map_err(ws_to_io)?;
        Poll::Ready(Ok(()))
    }
}

impl<S> WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// Sends a due Ping, and fails once the peer has stopped answering.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(k) = self.keepalive.as_mut() else {
            return Ok(());
        };
        while k.ticker.poll_tick(cx).is_ready() {
            if k.last_pong.elapsed() > k.timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("websocket peer answered no ping for {:?}", k.timeout),
                ));
            }
            k.pending = true;
        }
        if k.pending && !self.close_sent {
            if let Poll::Ready(ready) = Pin::new(&mut self.ws).poll_ready(cx) {
                ready.map_err(ws_to_io)?;
                k.sent += 1;
                k.pending = false;
                let payload = Bytes::from(k.sent.to_string());
                Pin::new(&mut self.ws)
                    .start_send(Message::Ping(payload))
                    .map_err(ws_to_io)?;
                // Best effort: the driver flushes on its next round anyway.
                let _ = Pin::new(&mut self.ws).poll_flush(cx);
            }
        }
        Ok(())
    }
}

impl<S> AsyncRead for WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.read_failed && !this.read_eof {
            if let Err(e) = this.poll_keepalive(cx) {
                this.read_failed = true;
                return Poll::Ready(Err(e));
            }
        }
        loop {
            if !this.read_buf.is_empty() {
                let n = this.read_buf.len().min(buf.remaining());
                buf.put_slice(&this.read_buf[..n]);
                this.read_buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "websocket reader failed earlier",
                )));
            }
            if this.read_eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None => this.read_eof = true,
                Some(Err(e)) => {
                    this.read_failed = true;
                    return Poll::Ready(Err(ws_to_io(e)));
                }
                // Empty messages are skipped by the length check above.
                Some(Ok(Message::Binary(data))) => this.read_buf = data,
                Some(Ok(Message::Pong(_))) => {
                    if let Some(k) = this.keepalive.as_mut() {
                        k.last_pong = tokio::time::Instant::now();
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    tracing::trace!(?frame, "websocket close frame received");
                    this.read_eof = true;
                }
                Some(Ok(Message::Text(_))) => {
                    this.read_failed = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected websocket text message on a binary byte stream",
                    )));
                }
            }
        }
    }
}

impl<S> AsyncWrite for WsByteStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "websocket writer has been shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_buf.len() + buf.len() > MAX_WRITE_MESSAGE {
            ready!(this.poll_send_buffered(cx))?;
        }
        let n = buf.len().min(MAX_WRITE_MESSAGE - this.write_buf.len());
        this.write_buf.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(ws_to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(this.poll_send_buffered(cx))?;
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(ws_to_io)?;
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            this.close_sent = true;
            match Pin::new(&mut this.ws).start_send(Message::Close(Some(frame))) {
                Ok(()) => {}
                // The peer closed first: nothing left to say.
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(ws_to_io(e))),
            }
        }
        Pin::new(&mut this.ws).poll_close(cx).map_err(ws_to_io)
    }
}

/// The client side of the websocket handshake on `stream`, after which the
/// websocket's read buffer is exactly `config`'s `read_buffer_size`.
///
/// `tokio_tungstenite::client_async_with_config` hands the 4 KiB buffer it
/// read the HTTP response with on to the websocket, whatever the config
/// says, so each connection would keep 4 KiB there for its whole life
/// (under TLS, where [`TLS_READ_BUFFER_SIZE`] is 1 KiB, that is 3 KiB per
/// idle connection for nothing). Here the handshake reads through
/// [`ResponseHeadLimit`], which hands tungstenite no byte past the end of
/// the response head; the websocket is then rebuilt on the stream with the
/// bytes read after the head, if any, and the configured buffer.
pub async fn client_handshake<S>(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
    config: WebSocketConfig,
) -> Result<
    (
        WebSocketStream<S>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    WsError,
>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(request, ResponseHeadLimit::new(stream), Some(config)).await?;
    let (stream, after_head) = ws.into_inner().into_parts();
    let ws = WebSocketStream::from_partially_read(
        stream,
        after_head,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        Some(config),
    )
    .await;
    Ok((ws, response))
}

/// A stream that hands its reader no byte past the first `\r\n\r\n` (the
/// end of an HTTP response head) until [`into_parts`](Self::into_parts),
/// which gives back the stream and the bytes read past the head.
///
/// Only for a `101` response: after any other status it gets out of the
/// way (the bytes read with the head go along with it, then the stream
/// itself), so that a refused upgrade still reports the body that came
/// with its head.
#[derive(Debug)]
pub struct ResponseHeadLimit<S> {
    inner: S,
    /// Bytes read from `inner`, not handed out yet.
    pending: BytesMut,
    /// How much of `\r\n\r\n` the bytes handed out so far end with.
    matched: usize,
    /// The first bytes of the status line (`HTTP/1.1 101`).
    status_line: Vec<u8>,
    /// Not a `101`: reads pass through.
    passthrough: bool,
}

/// `HTTP/1.1 101`: the status code is at bytes 9..12 of the status line.
const STATUS_LINE_PREFIX: usize = 12;

/// The end of an HTTP message head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// Bytes read from the stream at once while looking for the head's end.
const HEAD_READ_CHUNK: usize = 512;

impl<S> ResponseHeadLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ResponseHeadLimit {
            inner,
            pending: BytesMut::new(),
            matched: 0,
            status_line: Vec::with_capacity(STATUS_LINE_PREFIX),
            passthrough: false,
        }
    }

    /// Whether the head handed out so far is a `101 Switching Protocols`.
    fn is_switching(&self) -> bool {
        self.status_line.get(9..STATUS_LINE_PREFIX) == Some(b"101".as_slice())
    }

    /// The stream and the bytes read from it but not handed out (those
    /// after the head).
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.inner, self.pending.to_vec())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ResponseHeadLimit<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.passthrough {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.matched == HEAD_END.len() || buf.remaining() == 0 {
            // The head has been handed out: nothing more until into_parts.
            return Poll::Ready(Ok(()));
        }
        if this.pending.is_empty() {
            let mut chunk = [0u8; HEAD_READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.pending.extend_from_slice(read.filled());
        }
        let mut n = 0;
        while n < this.pending.len() && n < buf.remaining() && this.matched < HEAD_END.len() {
            let b = this.pending[n];
            this.matched = if b == HEAD_END[this.matched] {
                this.matched + 1
            } else if b == HEAD_END[0] {
                1
            } else {
                0
            };
            n += 1;
        }
        let head = this.pending.split_to(n);
        let want = STATUS_LINE_PREFIX
            .saturating_sub(this.status_line.len())
            .min(head.len());
        this.status_line.extend_from_slice(&head[..want]);
        buf.put_slice(&head);
        if this.matched == HEAD_END.len() && !this.is_switching() {
            // A refusal: what came with the head goes along with it, as it
            // would without this wrapper.
            this.passthrough = true;
            let m = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending.split_to(m));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ResponseHeadLimit<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    /// A peer that answers the upgrade and, in the same write, sends a
    /// binary message: the bytes after the response head must reach the
    /// websocket, not vanish with the handshake's buffer.
    #[tokio::test]
    async fn client_handshake_keeps_a_message_sent_with_the_response() {
        let (client_io, mut server_io) = tokio::io::duplex(64 << 10);
        let server = tokio::spawn(async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(server_io.read_u8().await.expect("request byte"));
            }
            let head = String::from_utf8(head).expect("utf-8 request");
            let key = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Sec-WebSocket-Key: ")
                        .or(l.strip_prefix("sec-websocket-key: "))
                })
                .expect("key header");
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            // One unmasked binary frame, "hello" (server to client).
            out.extend_from_slice(&[0x82, 5]);
            out.extend_from_slice(b"hello");
            server_io.write_all(&out).await.expect("write response");
            server_io
        });
        let request = "ws://example.test/rpc".into_client_request().expect("request");
        let (mut ws, response) = client_handshake(request, client_io, client_config_tls())
            .await
            .expect("handshake");
        assert_eq!(response.status(), 101);
        assert_eq!(ws.get_config().read_buffer_size, TLS_READ_BUFFER_SIZE);
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(msg, Message::Binary(Bytes::from_static(b"hello")));
        drop(server.await);
    }

    /// A refused upgrade keeps the body that came with its head, as
    /// tokio-tungstenite reports it without the wrapper.
    #[tokio::test]
    async fn client_handshake_reports_a_refusal_with_its_body() {
        let (client_io, mut server_io) = tokio::io::duplex(64 << 10);
        let server = tokio::spawn(async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(server_io.read_u8().await.expect("request byte"));
            }
            let body = r#"{"message":"Workspace agent not authorized."}"#;
            let out = format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            server_io.write_all(out.as_bytes()).await.expect("write response");
            server_io
        });
        let request = "ws://example.test/rpc".into_client_request().expect("request");
        match client_handshake(request, client_io, client_config()).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body = response.body().as_deref().unwrap_or_default();
                assert!(
                    String::from_utf8_lossy(body).contains("Workspace agent not authorized"),
                    "body: {body:?}"
                );
            }
            other => panic!("expected the refusal, got {:?}", other.map(|(_, r)| r.status())),
        }
        drop(server.await);
    }

    /// The head's end is found across reads of any size, and a `\r` that
    /// breaks a partial match still counts toward a new one.
    #[tokio::test]
    async fn response_head_limit_stops_exactly_after_the_head() {
        let text: &[u8] = b"HTTP/1.1 101 OK\r\nA: b\r\r\n\r\nREST";
        let (mut w, r) = tokio::io::duplex(1024);
        w.write_all(text).await.expect("write");
        let mut limited = ResponseHeadLimit::new(r);
        let mut got = Vec::new();
        let mut one = [0u8; 3];
        loop {
            let n = limited.read(&mut one).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&one[..n]);
        }
        assert_eq!(got, &text[..text.len() - 4]);
        let (_, rest) = limited.into_parts();
        assert_eq!(rest, b"REST");
    }
}
