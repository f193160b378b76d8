//! The client half of the DRPC runtime that generated clients call.
//!
//! Generated code (see `generated/drpc_*.rs`) encodes a request, hands bytes
//! to a [`Transport`] and decodes the reply. A transport knows how to carry one
//! call (for Coder: one yamux stream per call); it knows no message types.
//! This module knows no sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;

use super::error::RpcError;
use super::method::MethodDesc;

/// Carries calls to a DRPC server. Implemented by the RPC connection; tests
/// may implement it in memory.
pub trait Transport: Send + Sync + 'static {
    /// Runs one unary call: `request` is the encoded request message, the
    /// result the encoded reply message.
    fn unary(&self, method: &'static MethodDesc, request: Bytes) -> BoxFuture<'static, Result<Bytes, RpcError>>;

    /// Starts a streaming call and returns its two halves.
    fn open_stream(&self, method: &'static MethodDesc) -> BoxFuture<'static, Result<RawStream, RpcError>>;
}

/// A transport shared by every client built on one connection.
pub type SharedTransport = Arc<dyn Transport>;

/// What generated client traits need from the value they are implemented for.
pub trait DrpcClient {
    /// The transport calls go through.
    fn transport(&self) -> &SharedTransport;
}

/// Something a stream's sending half hands to the transport.
#[derive(Debug)]
pub enum Outbound {
    /// One encoded message.
    Message(Bytes),
    /// No more messages from this side (DRPC CloseSend).
    CloseSend,
}

/// An untyped streaming call: encoded messages out, encoded messages in.
///
/// Dropping both halves cancels the call; dropping only the sender closes the
/// sending direction.
#[derive(Debug)]
pub struct RawStream {
    /// Sends encoded messages.
    pub sender: RawSender,
    /// Receives encoded messages; ends after the peer's CloseSend.
    pub receiver: RawReceiver,
}

impl RawStream {
    /// Builds a stream from the channels a transport pumps.
    pub fn new(outbound: mpsc::Sender<Outbound>, inbound: mpsc::Receiver<Result<Bytes, RpcError>>) -> Self {
        RawStream {
            sender: RawSender { tx: Some(outbound) },
            receiver: RawReceiver {
                rx: inbound,
                map_error: None,
            },
        }
    }
}

/// Sending half of a [`RawStream`].
#[derive(Debug)]
pub struct RawSender {
    tx: Option<mpsc::Sender<Outbound>>,
}

impl RawSender {
    /// Sends one encoded message; waits while the transport is busy. A
    /// message over the 4 MiB limit is refused here, before anything is
    /// queued, and the stream stays usable.
    pub async fn send(&mut self, message: Bytes) -> Result<(), RpcError> {
        super::wire::check_message_size(message.len())?;
        let tx = self
            .tx
            .as_ref()
            .ok_or(RpcError::Protocol("send after close_send".to_owned()))?;
        tx.send(Outbound::Message(message))
            .await
            .map_err(|_| RpcError::ConnectionClosed)
    }

    /// Tells the peer no more messages will come (DRPC CloseSend). Idempotent.
    pub async fn close_send(&mut self) -> Result<(), RpcError> {
        match self.tx.take() {
            Some(tx) => tx
                .send(Outbound::CloseSend)
                .await
                .map_err(|_| RpcError::ConnectionClosed),
            None => Ok(()),
        }
    }
}

/// Receiving half of a [`RawStream`].
#[derive(Debug)]
pub struct RawReceiver {
    rx: mpsc::Receiver<Result<Bytes, RpcError>>,
    map_error: Option<fn(RpcError) -> RpcError>,
}

impl RawReceiver {
    /// Passes every error this receiver yields through `f` (a transport
    /// uses it to name its own failures, e.g. a dead peer).
    pub fn map_errors(&mut self, f: fn(RpcError) -> RpcError) {
        self.map_error = Some(f);
    }
}

impl Stream for RawReceiver {
    type Item = Result<Bytes, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.rx.poll_recv(cx));
        Poll::Ready(match (item, self.map_error) {
            (Some(Err(e)), Some(f)) => Some(Err(f(e))),
            (item, _) => item,
        })
    }
}

fn decode<T: Message + Default>(method: &'static MethodDesc, bytes: Bytes) -> Result<T, RpcError> {
    T::decode(bytes).map_err(|source| RpcError::Decode {
        type_name: method.output,
        source,
    })
}

/// Runs a typed unary call. The request is encoded before the future is
/// returned, so the future owns nothing borrowed.
pub fn unary<Req, Resp>(
    transport: &SharedTransport,
    method: &'static MethodDesc,
    request: Req,
) -> impl Future<Output = Result<Resp, RpcError>> + Send + 'static
where
    Req: Message,
    Resp: Message + Default,
{
    let transport = transport.clone();
    let request = Bytes::from(request.encode_to_vec());
    async move {
        let reply = transport.unary(method, request).await?;
        decode(method, reply)
    }
}

/// Starts a typed server-streaming call: sends `request`, then yields replies.
pub fn server_streaming<Req, Resp>(
    transport: &SharedTransport,
    method: &'static MethodDesc,
    request: Req,
) -> impl Future<Output = Result<Streaming<Resp>, RpcError>> + Send + 'static
where
    Req: Message,
    Resp: Message + Default,
{
    let transport = transport.clone();
    let request = Bytes::from(request.encode_to_vec());
    async move {
        let RawStream { mut sender, receiver } = transport.open_stream(method).await?;
        sender.send(request).await?;
        sender.close_send().await?;
        Ok(Streaming::new(method, receiver))
    }
}

/// Starts a typed bidirectional (or client-streaming) call.
pub fn bidi<Req, Resp>(
    transport: &SharedTransport,
    method: &'static MethodDesc,
) -> impl Future<Output = Result<BidiStreaming<Req, Resp>, RpcError>> + Send + 'static
where
    Req: Message,
    Resp: Message + Default,
{
    let transport = transport.clone();
    async move {
        let RawStream { sender, receiver } = transport.open_stream(method).await?;
        Ok(BidiStreaming {
            sender: RequestSender {
                raw: sender,
                _marker: std::marker::PhantomData,
            },
            responses: Streaming::new(method, receiver),
        })
    }
}

/// Typed messages of a streaming call, as a [`Stream`]. Ends after the
/// server's CloseSend; yields an error and ends if the call fails. Dropping
/// it (and the sender, for bidi calls) cancels the call.
#[derive(Debug)]
pub struct Streaming<T> {
    method: &'static MethodDesc,
    raw: RawReceiver,
    done: bool,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T> Streaming<T> {
    fn new(method: &'static MethodDesc, raw: RawReceiver) -> Self {
        Streaming {
            method,
            raw,
            done: false,
            _marker: std::marker::PhantomData,
        }
    }

    /// The RPC this stream belongs to.
    pub fn method(&self) -> &'static MethodDesc {
        self.method
    }
}

impl<T: Message + Default> Stream for Streaming<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let method = self.method;
        match Pin::new(&mut self.raw).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(bytes))) => {
                let item = decode(method, bytes);
                if item.is_err() {
                    self.done = true;
                }
                Poll::Ready(Some(item))
            }
        }
    }
}

/// Sends typed requests on a streaming call.
#[derive(Debug)]
pub struct RequestSender<T> {
    raw: RawSender,
    _marker: std::marker::PhantomData<fn(T)>,
}

impl<T: Message> RequestSender<T> {
    /// Sends one request message.
    pub async fn send(&mut self, request: &T) -> Result<(), RpcError> {
        self.raw.send(Bytes::from(request.encode_to_vec())).await
    }

    /// Ends the sending direction (DRPC CloseSend); the peer may keep sending.
    pub async fn close_send(&mut self) -> Result<(), RpcError> {
        self.raw.close_send().await
    }
}

/// A bidirectional call: a request sender and a response stream.
#[derive(Debug)]
pub struct BidiStreaming<Req, Resp> {
    sender: RequestSender<Req>,
    responses: Streaming<Resp>,
}

impl<Req: Message, Resp: Message + Default> BidiStreaming<Req, Resp> {
    /// Sends one request message.
    pub async fn send(&mut self, request: &Req) -> Result<(), RpcError> {
        self.sender.send(request).await
    }

    /// Ends the sending direction (DRPC CloseSend).
    pub async fn close_send(&mut self) -> Result<(), RpcError> {
        self.sender.close_send().await
    }

    /// Splits into a sender and a response stream, to use from two tasks.
    pub fn split(self) -> (RequestSender<Req>, Streaming<Resp>) {
        (self.sender, self.responses)
    }
}

impl<Req, Resp: Message + Default> Stream for BidiStreaming<Req, Resp> {
    type Item = Result<Resp, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.responses).poll_next(cx)
    }
}
