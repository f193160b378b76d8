//! One DRPC call over one byte stream, both roles.
//!
//! Coder runs exactly one RPC per yamux stream (`drpcsdk.MultiplexedConn`),
//! so a "connection" here is a single call: the client writes Invoke, its
//! messages and CloseSend; the server answers with messages and CloseSend, or
//! one Error. This module owns the call state machines over any
//! `AsyncRead + AsyncWrite`; frames and packets come from [`super::wire`],
//! typed messages from the generated code. It knows nothing of yamux,
//! websockets or Coder types.
//!
//! Cancellation is Go's "hard cancel": no packet; the stream is dropped,
//! which resets it. A Cancel packet from the peer ends the call as
//! [`RpcError::Cancelled`].

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::client::{Outbound, RawStream};
use super::error::RpcError;
use super::method::MethodDesc;
use super::server::{Router, ServerCall};
use super::wire::{self, Kind, Packet, PacketAssembler, WireError};

/// The DRPC stream id of the single call on a Coder yamux stream.
const STREAM_ID: u64 = 1;

/// How many messages may queue in each direction of a streaming call before
/// the producer waits.
const QUEUE_DEPTH: usize = 16;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

impl From<WireError> for RpcError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::PacketTooLarge { size, limit } => RpcError::MessageTooLarge { size, limit },
            other => RpcError::Protocol(other.to_string()),
        }
    }
}

/// Reads packets from a byte stream. Cancel-safe: a dropped `next_packet`
/// future loses nothing; bytes and partial packets stay buffered.
#[derive(Debug)]
pub struct PacketReader<R> {
    io: R,
    buf: BytesMut,
    assembler: PacketAssembler,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    /// Wraps the read half of a stream, with the 4 MiB packet limit.
    pub fn new(io: R) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            assembler: PacketAssembler::new(),
        }
    }

    /// The next complete packet of a known kind; `Ok(None)` on a clean end of
    /// stream between frames. Unknown control packets are skipped.
    pub async fn next_packet(&mut self) -> Result<Option<Packet>, RpcError> {
        loop {
            if let Some(header) = wire::parse_frame_header(&self.buf)? {
                self.assembler.check_header(&header)?;
            }
            while let Some(frame) = wire::decode_frame(&mut self.buf)? {
                if let Some(packet) = self.assembler.push(frame)? {
                    if packet.kind.is_known() {
                        return Ok(Some(packet));
                    }
                }
            }
            self.buf.reserve(READ_CHUNK);
            let n = self.io.read_buf(&mut self.buf).await.map_err(RpcError::Transport)?;
            if n == 0 {
                if self.buf.is_empty() && !self.assembler.has_partial() {
                    return Ok(None);
                }
                return Err(RpcError::Transport(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stream ended inside a drpc packet",
                )));
            }
        }
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> R {
        self.io
    }
}

/// Numbers and encodes outgoing packets of one side of a call.
#[derive(Debug)]
pub struct PacketWriter {
    stream_id: u64,
    next_message_id: u64,
    buf: BytesMut,
}

impl PacketWriter {
    /// A writer for `stream_id`, message ids from 1.
    pub fn new(stream_id: u64) -> Self {
        Self {
            stream_id,
            next_message_id: 1,
            buf: BytesMut::new(),
        }
    }

    fn push(&mut self, kind: Kind, data: Bytes) {
        let packet = Packet::new(kind, self.stream_id, self.next_message_id, data);
        self.next_message_id += 1;
        packet.append_to(&mut self.buf);
    }

    /// Queues an Invoke naming the RPC path.
    pub fn invoke(&mut self, path: &str) {
        self.push(Kind::Invoke, Bytes::copy_from_slice(path.as_bytes()));
    }

    /// Queues a Message; refuses one over the 4 MiB limit before queueing anything.
    pub fn message(&mut self, data: Bytes) -> Result<(), RpcError> {
        wire::check_message_size(data.len())?;
        self.push(Kind::Message, data);
        Ok(())
    }

    /// Queues an Error packet.
    pub fn error(&mut self, code: u64, text: &str) {
        self.push(Kind::Error, wire::encode_error(code, text));
    }

    /// Queues a CloseSend.
    pub fn close_send(&mut self) {
        self.push(Kind::CloseSend, Bytes::new());
    }

    /// Queues a Close.
    pub fn close(&mut self) {
        self.push(Kind::Close, Bytes::new());
    }

    /// Writes everything queued and flushes.
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> Result<(), RpcError> {
        if !self.buf.is_empty() {
            let bytes = self.buf.split().freeze();
            io.write_all(&bytes).await.map_err(RpcError::Transport)?;
        }
        io.flush().await.map_err(RpcError::Transport)
    }
}

/// The error an Error packet carries.
fn remote_error(data: &[u8]) -> RpcError {
    match wire::decode_error(data) {
        Ok((code, message)) => RpcError::Remote { code, message },
        // drpc hands the caller the raw body with a note; keep the same text.
        Err(_) => RpcError::Remote {
            code: 0,
            message: format!("{} (drpcwire note: invalid error data)", String::from_utf8_lossy(data)),
        },
    }
}

/// What a server packet means to a client waiting for replies.
enum Reply {
    Message(Bytes),
    /// The server's CloseSend or Close: no more messages.
    End,
    Failed(RpcError),
}

fn client_interpret(packet: Packet) -> Option<Reply> {
    if packet.stream_id != STREAM_ID {
        // Not this call's stream: drpc drops packets for other streams.
        return None;
    }
    Some(match packet.kind {
        Kind::Message => Reply::Message(packet.data),
        Kind::Error => Reply::Failed(remote_error(&packet.data)),
        Kind::CloseSend | Kind::Close => Reply::End,
        Kind::Cancel => Reply::Failed(RpcError::Cancelled),
        Kind::Invoke | Kind::InvokeMetadata => Reply::Failed(RpcError::Protocol(format!(
            "server sent an unexpected {} packet",
            packet.kind
        ))),
        Kind::Unknown(_) => return None,
    })
}

/// Runs one unary call on `io`: Invoke, Message and CloseSend in one write,
/// then the first Message or Error from the server is the answer, whatever
/// follows it. After the answer a Close is sent and the stream shut down,
/// as Go's client does.
pub async fn client_unary<S>(mut io: S, method: &MethodDesc, request: Bytes) -> Result<Bytes, RpcError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut writer = PacketWriter::new(STREAM_ID);
    writer.invoke(method.path);
    writer.message(request)?;
    writer.close_send();
    writer.flush(&mut io).await?;

    let (read_half, mut write_half) = tokio::io::split(io);
    let mut reader = PacketReader::new(read_half);
    let outcome = loop {
        match reader.next_packet().await? {
            None => {
                break Err(RpcError::Transport(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stream closed before the reply",
                )))
            }
            Some(packet) => match client_interpret(packet) {
                None => continue,
                Some(Reply::Message(data)) => break Ok(data),
                Some(Reply::Failed(e)) => break Err(e),
                Some(Reply::End) => break Err(RpcError::Protocol("server closed the call without a reply".to_owned())),
            },
        }
    };
    if outcome.is_ok() {
        // Best effort: the reply is what matters; the stream is closed either way.
        writer.close();
        if writer.flush(&mut write_half).await.is_ok() {
            let _ = write_half.shutdown().await;
        }
    }
    outcome
}

/// Starts a streaming call on `io` and returns its halves. A task pumps the
/// stream: messages out, replies in. Dropping the receiver cancels the call
/// (the stream is dropped, which resets it); dropping only the sender sends
/// CloseSend.
pub fn client_stream<S>(io: S, method: &'static MethodDesc) -> RawStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(QUEUE_DEPTH);
    let (in_tx, in_rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(pump_client_stream(io, method, out_rx, in_tx));
    RawStream::new(out_tx, in_rx)
}

async fn pump_client_stream<S>(
    io: S,
    method: &'static MethodDesc,
    mut outbound: mpsc::Receiver<Outbound>,
    inbound: mpsc::Sender<Result<Bytes, RpcError>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read_half, mut write_half) = tokio::io::split(io);
    let mut reader = PacketReader::new(read_half);
    let mut writer = PacketWriter::new(STREAM_ID);
    writer.invoke(method.path);
    if let Err(e) = writer.flush(&mut write_half).await {
        let _ = inbound.send(Err(e)).await;
        return;
    }
    let mut sending = true;
    loop {
        tokio::select! {
            // The caller dropped the receiver: hard cancel (drop the stream).
            _ = inbound.closed() => return,
            out = outbound.recv(), if sending => {
                let result = match out {
                    Some(Outbound::Message(data)) => writer.message(data),
                    Some(Outbound::CloseSend) | None => {
                        sending = false;
                        writer.close_send();
                        Ok(())
                    }
                };
                let result = match result {
                    Ok(()) => writer.flush(&mut write_half).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    let _ = inbound.send(Err(e)).await;
                    return;
                }
            }
            packet = reader.next_packet() => {
                let reply = match packet {
                    Ok(Some(packet)) => match client_interpret(packet) {
                        Some(reply) => reply,
                        None => continue,
                    },
                    Ok(None) => Reply::Failed(RpcError::Transport(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stream closed before the server ended the call",
                    ))),
                    Err(e) => Reply::Failed(e),
                };
                match reply {
                    Reply::Message(data) => {
                        if inbound.send(Ok(data)).await.is_err() {
                            return;
                        }
                    }
                    Reply::End => break,
                    Reply::Failed(e) => {
                        let _ = inbound.send(Err(e)).await;
                        return;
                    }
                }
            }
        }
    }
    // The server ended its side; finish ours like Go's client: Close, then close the stream.
    drop(inbound);
    writer.close();
    if writer.flush(&mut write_half).await.is_ok() {
        let _ = write_half.shutdown().await;
    }
}

/// Serves calls arriving on one stream until the client closes it. Each
/// Invoke is routed through `router`; an unknown path is answered with
/// DRPC's "unknown rpc" error (code 0) and a registered method without an
/// implementation with "Unimplemented" (code 12). The client ending the
/// stream, or sending Close or Cancel, cancels a running handler.
pub async fn serve_stream<S>(io: S, router: Router) -> Result<(), RpcError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (read_half, mut write_half) = tokio::io::split(io);
    let mut reader = PacketReader::new(read_half);
    loop {
        // Wait for an Invoke (metadata before it is accepted and ignored).
        let (stream_id, path) = loop {
            match reader.next_packet().await? {
                None => return Ok(()),
                Some(p) if p.kind == Kind::Invoke => {
                    break (p.stream_id, String::from_utf8_lossy(&p.data).into_owned());
                }
                Some(p) if p.kind == Kind::InvokeMetadata => {
                    wire::decode_metadata(&p.data)?;
                }
                // Leftovers of a finished call (its CloseSend, Close) are ignored.
                Some(_) => {}
            }
        };
        let mut writer = PacketWriter::new(stream_id);
        let (call, pump) = ServerCall::new(QUEUE_DEPTH);
        let handler = match router.dispatch(&path, call) {
            Ok(handler) => handler,
            Err(e) => {
                tracing::debug!(rpc = %path, "unknown rpc");
                write_error(&mut writer, &e);
                writer.flush(&mut write_half).await?;
                continue;
            }
        };
        let span = tracing::debug_span!("drpc_serve", rpc = %path);
        let _entered = span.enter();
        drop(_entered);
        match run_server_call(&mut reader, &mut write_half, &mut writer, stream_id, handler, pump).await? {
            CallEnd::Finished => continue,
            CallEnd::StreamGone => return Ok(()),
        }
    }
}

enum CallEnd {
    /// The handler finished and its result was sent; more calls may follow.
    Finished,
    /// The client closed or cancelled; the stream is done.
    StreamGone,
}

fn write_error(writer: &mut PacketWriter, error: &RpcError) {
    match error {
        RpcError::Remote { code, message } => writer.error(*code, message),
        other => writer.error(0, &other.to_string()),
    }
}

async fn run_server_call<R, W>(
    reader: &mut PacketReader<R>,
    write_half: &mut W,
    writer: &mut PacketWriter,
    stream_id: u64,
    mut handler: BoxFuture<'static, ()>,
    pump: super::server::CallPump,
) -> Result<CallEnd, RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let super::server::CallPump {
        requests,
        mut responses,
        mut result,
    } = pump;
    let mut requests = Some(requests);
    // Requests read from the wire but not yet taken by the handler. Reading
    // pauses while it is full, so a slow handler back-pressures the client
    // without ever blocking this loop (which also drives the handler).
    let mut pending: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
    let mut handler_done = false;
    let mut close_send_seen = false;
    let mut responses_open = true;
    loop {
        if close_send_seen && pending.is_empty() {
            requests = None;
        }
        let can_read = pending.len() < QUEUE_DEPTH;
        let deliver = requests.clone().filter(|_| !pending.is_empty());
        let has_delivery = deliver.is_some();
        let reserve = async move {
            match deliver {
                Some(tx) => tx.reserve_owned().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            reply = responses.recv(), if responses_open => {
                if reply.is_none() {
                    // The handler dropped its sink; its result follows.
                    responses_open = false;
                }
                if let Some(data) = reply {
                    if let Err(e) = writer.message(data) {
                        // Too large to send: the call fails, as Go's would.
                        write_error(writer, &e);
                        writer.flush(write_half).await?;
                        return Ok(CallEnd::Finished);
                    }
                    writer.flush(write_half).await?;
                }
            }
            outcome = &mut result => {
                // Send replies the handler queued before it returned.
                while let Ok(data) = responses.try_recv() {
                    if let Err(e) = writer.message(data) {
                        write_error(writer, &e);
                        writer.flush(write_half).await?;
                        return Ok(CallEnd::Finished);
                    }
                }
                match outcome {
                    Ok(Ok(())) => writer.close_send(),
                    Ok(Err(e)) => write_error(writer, &e),
                    Err(_) => writer.error(0, "handler ended without a result"),
                }
                writer.flush(write_half).await?;
                return Ok(CallEnd::Finished);
            }
            permit = reserve, if has_delivery => {
                match permit {
                    Ok(permit) => {
                        if let Some(data) = pending.pop_front() {
                            permit.send(Ok(data));
                        }
                    }
                    // The handler stopped reading requests; drop the rest.
                    Err(_) => {
                        requests = None;
                        pending.clear();
                    }
                }
            }
            _ = &mut handler, if !handler_done => handler_done = true,
            packet = reader.next_packet(), if can_read => {
                match packet {
                    Ok(Some(p)) if p.stream_id != stream_id => {}
                    Ok(Some(p)) => match p.kind {
                        Kind::Message => {
                            if requests.is_some() {
                                pending.push_back(p.data);
                            }
                        }
                        // End of requests: the handler sees it after the pending ones.
                        Kind::CloseSend => {
                            if pending.is_empty() {
                                requests = None;
                            } else {
                                close_send_seen = true;
                            }
                        }
                        Kind::Close | Kind::Cancel => return Ok(CallEnd::StreamGone),
                        Kind::Error => return Ok(CallEnd::StreamGone),
                        Kind::Invoke | Kind::InvokeMetadata => {
                            return Err(RpcError::Protocol("invoke while a call is running".to_owned()));
                        }
                        Kind::Unknown(_) => {}
                    },
                    // The client hung up: Go cancels the handler (dropping it here does).
                    Ok(None) => return Ok(CallEnd::StreamGone),
                    Err(e) => {
                        if let Some(tx) = requests.take() {
                            let _ = tx.try_send(Err(RpcError::Protocol(e.to_string())));
                        }
                        return Err(e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::agent::{methods, AgentServer, AgentService};

    struct Nothing;
    impl AgentServer for Nothing {}

    #[tokio::test]
    async fn unimplemented_method_answers_code_12_over_a_pipe() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let router = Router::new().with_service(AgentService::new(Nothing));
        let server = tokio::spawn(serve_stream(b, router));
        let err = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client_unary(a, &methods::PUSH_CONTEXT_STATE, Bytes::new()),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        assert_eq!(err.code(), Some(12));
        let _ = server.await;
    }
}
