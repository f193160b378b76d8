//! The server half of the DRPC runtime that generated services plug into.
//!
//! A connection-level task (see `drpc::conn`) reads the Invoke packet, finds
//! the method with a [`Router`], and hands the handler a [`ServerCall`]: a
//! channel of request messages in, a channel of response messages out and a
//! slot for the final result. Generated code (`generated/drpc_*.rs`) turns
//! those into typed calls on the user's server trait. This module knows no
//! sockets and no Coder types.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::error::RpcError;
use super::method::MethodDesc;

/// A set of RPC handlers, one service of a proto file. Implemented by the
/// generated `*Service` wrappers around user server traits.
pub trait Service: Send + Sync + 'static {
    /// Every method this service registers (implemented or not).
    fn methods(&self) -> &'static [&'static MethodDesc];

    /// Runs one call of `method` (one of [`Service::methods`]) to completion.
    fn call(&self, method: &'static MethodDesc, call: ServerCall) -> BoxFuture<'static, ()>;
}

/// Finds the service and method for an Invoke's RPC path.
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<&'static str, (usize, &'static MethodDesc)>,
    services: Vec<Arc<dyn Service>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut paths: Vec<_> = self.routes.keys().collect();
        paths.sort();
        f.debug_struct("Router").field("paths", &paths).finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every method of `service`. A later registration of the same
    /// path replaces the earlier one.
    pub fn with_service(mut self, service: impl Service) -> Self {
        let index = self.services.len();
        for method in service.methods() {
            self.routes.insert(method.path, (index, method));
        }
        self.services.push(Arc::new(service));
        self
    }

    /// The method registered for an RPC path, if any.
    pub fn method(&self, path: &str) -> Option<&'static MethodDesc> {
        self.routes.get(path).map(|(_, m)| *m)
    }

    /// Starts the handler for `path`, or returns the error DRPC's mux answers
    /// for an unknown RPC (code 0, `protocol error: unknown rpc: "<path>"`).
    pub fn dispatch(&self, path: &str, call: ServerCall) -> Result<BoxFuture<'static, ()>, RpcError> {
        match self.routes.get(path) {
            Some((index, method)) => Ok(self.services[*index].call(method, call)),
            None => Err(unknown_rpc(path)),
        }
    }
}

/// The error storj drpc's mux sends for an RPC path it does not know.
pub fn unknown_rpc(path: &str) -> RpcError {
    RpcError::remote(format!("protocol error: unknown rpc: {path:?}"))
}

/// One incoming call as its handler sees it.
#[derive(Debug)]
pub struct ServerCall {
    requests: mpsc::Receiver<Result<Bytes, RpcError>>,
    responses: mpsc::Sender<Bytes>,
    result: oneshot::Sender<Result<(), RpcError>>,
}

/// The connection side of a [`ServerCall`]: what the connection task pumps.
#[derive(Debug)]
pub struct CallPump {
    /// Feed request messages here; drop it after the client's CloseSend.
    pub requests: mpsc::Sender<Result<Bytes, RpcError>>,
    /// Response messages the handler produced, to write as Message packets.
    pub responses: mpsc::Receiver<Bytes>,
    /// The handler's final result: Ok → CloseSend, Err → Error packet.
    pub result: oneshot::Receiver<Result<(), RpcError>>,
}

impl ServerCall {
    /// Creates a call and the pump that feeds it. `depth` bounds each queue.
    pub fn new(depth: usize) -> (ServerCall, CallPump) {
        let (req_tx, req_rx) = mpsc::channel(depth.max(1));
        let (resp_tx, resp_rx) = mpsc::channel(depth.max(1));
        let (res_tx, res_rx) = oneshot::channel();
        (
            ServerCall {
                requests: req_rx,
                responses: resp_tx,
                result: res_tx,
            },
            CallPump {
                requests: req_tx,
                responses: resp_rx,
                result: res_rx,
            },
        )
    }

    fn finish(self, result: Result<(), RpcError>) {
        // The pump may be gone (peer hung up); nothing is left to tell.
        let _ = self.result.send(result);
    }

    fn split<Req, Resp>(
        self,
        method: &'static MethodDesc,
    ) -> (
        RequestStream<Req>,
        ResponseSink<Resp>,
        oneshot::Sender<Result<(), RpcError>>,
    ) {
        (
            RequestStream {
                method,
                rx: self.requests,
                _marker: std::marker::PhantomData,
            },
            ResponseSink {
                tx: self.responses,
                _marker: std::marker::PhantomData,
            },
            self.result,
        )
    }

    /// Serves a unary call: reads exactly one request, runs `handler`, sends its reply.
    pub async fn unary<Req, Resp, F, Fut>(self, method: &'static MethodDesc, handler: F)
    where
        Req: Message + Default,
        Resp: Message,
        F: FnOnce(Req) -> Fut,
        Fut: Future<Output = Result<Resp, RpcError>>,
    {
        let (mut requests, responses, result) = self.split::<Req, Resp>(method);
        let outcome = async {
            let request = match requests.message().await? {
                Some(request) => request,
                None => return Err(RpcError::Protocol("unary call ended before its request".to_owned())),
            };
            let reply = handler(request).await?;
            responses.send(&reply).await
        }
        .await;
        let _ = result.send(outcome);
    }

    /// Serves a server-streaming call: one request, then the handler sends replies.
    pub async fn server_streaming<Req, Resp, F, Fut>(self, method: &'static MethodDesc, handler: F)
    where
        Req: Message + Default,
        Resp: Message,
        F: FnOnce(Req, ResponseSink<Resp>) -> Fut,
        Fut: Future<Output = Result<(), RpcError>>,
    {
        let (mut requests, responses, result) = self.split::<Req, Resp>(method);
        let outcome = async {
            let request = match requests.message().await? {
                Some(request) => request,
                None => return Err(RpcError::Protocol("stream ended before its request".to_owned())),
            };
            handler(request, responses).await
        }
        .await;
        let _ = result.send(outcome);
    }

    /// Serves a bidirectional call: the handler gets both streams.
    pub async fn bidi<Req, Resp, F, Fut>(self, method: &'static MethodDesc, handler: F)
    where
        Req: Message + Default,
        Resp: Message,
        F: FnOnce(RequestStream<Req>, ResponseSink<Resp>) -> Fut,
        Fut: Future<Output = Result<(), RpcError>>,
    {
        let (requests, responses, result) = self.split::<Req, Resp>(method);
        let outcome = handler(requests, responses).await;
        let _ = result.send(outcome);
    }

    /// Serves a client-streaming call: the handler reads requests and returns one reply.
    pub async fn client_streaming<Req, Resp, F, Fut>(self, method: &'static MethodDesc, handler: F)
    where
        Req: Message + Default,
        Resp: Message,
        F: FnOnce(RequestStream<Req>) -> Fut,
        Fut: Future<Output = Result<Resp, RpcError>>,
    {
        let (requests, responses, result) = self.split::<Req, Resp>(method);
        let outcome = async {
            let reply = handler(requests).await?;
            responses.send(&reply).await
        }
        .await;
        let _ = result.send(outcome);
    }

    /// Answers the call with an error without running any handler.
    pub fn fail(self, error: RpcError) {
        self.finish(Err(error));
    }
}

/// Typed request messages of a streaming call, as a [`Stream`]; ends after the client's CloseSend.
#[derive(Debug)]
pub struct RequestStream<T> {
    method: &'static MethodDesc,
    rx: mpsc::Receiver<Result<Bytes, RpcError>>,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T: Message + Default> RequestStream<T> {
    /// The next request, `None` after the client's CloseSend.
    pub async fn message(&mut self) -> Result<Option<T>, RpcError> {
        match self.rx.recv().await {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(bytes)) => T::decode(bytes).map(Some).map_err(|source| RpcError::Decode {
                type_name: self.method.input,
                source,
            }),
        }
    }
}

impl<T: Message + Default> Stream for RequestStream<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let type_name = self.method.input;
        self.rx.poll_recv(cx).map(|item| {
            item.map(|r| r.and_then(|bytes| T::decode(bytes).map_err(|source| RpcError::Decode { type_name, source })))
        })
    }
}

/// Sends typed response messages of a call.
#[derive(Debug)]
pub struct ResponseSink<T> {
    tx: mpsc::Sender<Bytes>,
    _marker: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for ResponseSink<T> {
    fn clone(&self) -> Self {
        ResponseSink {
            tx: self.tx.clone(),
            _marker: std::marker::PhantomData,
        }
    }
}

impl<T: Message> ResponseSink<T> {
    /// Sends one response message; fails once the client is gone.
    pub async fn send(&self, message: &T) -> Result<(), RpcError> {
        self.tx
            .send(Bytes::from(message.encode_to_vec()))
            .await
            .map_err(|_| RpcError::Cancelled)
    }

    /// Resolves when the client has gone away (the call was cancelled).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}
