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
//!
//! # Packets for another stream id
//!
//! The call always runs on drpc stream id 1. What happens to packets carrying
//! another stream id follows drpc v0.0.34 (`drpcmanager.manageReader` and
//! `drpcwire.Reader`):
//!
//! * a lower stream id (0) breaks the reader's id monotonicity (ids start at
//!   stream 1, message 1): a protocol error that ends the call, as in Go;
//! * a higher stream id on the **client**: Go cancels the current call
//!   (`context.Canceled`) and waits for a stream that never comes; here the
//!   call ends at once with [`RpcError::Cancelled`] and the stream is
//!   dropped. This holds for every kind, including unknown control packets
//!   (Go's manager looks at the stream id before the stream ignores them);
//! * a higher stream id on the **server** while a handler runs: the handler
//!   is cancelled. An Invoke (or InvokeMetadata) starts the next call, as in
//!   Go; any other kind ends [`serve_stream`] (Go stops reading the
//!   transport for good; we close it instead of leaving it idle);
//! * between calls the server ignores everything but an Invoke (or
//!   InvokeMetadata) for a newer stream id: Go drops packets for a finished
//!   stream, a repeated Invoke included.
//!
//! # Ending a unary call
//!
//! After the reply the client puts a Close packet on the wire only if the
//! server's CloseSend has not already arrived (Go's `stream.Close`), then
//! half-closes the stream (FIN) and drops it. Both are best effort and never
//! wait: if they cannot be written at once (no send window left) the stream
//! is simply dropped, which resets it, so a finished call never hangs on its
//! epilogue.

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

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

/// Bytes read beyond the frame being received (or when no frame header is
/// buffered yet): room for small frames, such as a CloseSend after a reply.
const READ_SLACK: usize = 1024;

/// Largest single read: one yamux stream window.
const MAX_READ: usize = 256 * 1024;

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
            buf: BytesMut::new(),
            assembler: PacketAssembler::new(),
        }
    }

    /// The next complete packet; `Ok(None)` on a clean end of stream between
    /// frames.
    ///
    /// An unknown packet kind without the control bit is a protocol error.
    /// One with the control bit is returned as a [`Kind::Unknown`] packet
    /// with `control` set and no data: the caller ignores it, but its stream
    /// id still counts (see the [module documentation](self)).
    pub async fn next_packet(&mut self) -> Result<Option<Packet>, RpcError> {
        loop {
            if let Some(packet) = self.buffered_packet()? {
                return Ok(Some(packet));
            }
            // Read about what the frame in progress still needs: the tokio
            // adapter of a futures-io stream zeroes the whole read buffer on
            // every read, so a large spare capacity would cost a memset each time.
            let missing = match wire::parse_frame_header(&self.buf) {
                Ok(Some(h)) => (h.header_len as u64 + h.data_len).saturating_sub(self.buf.len() as u64),
                _ => 0,
            };
            let want = (missing as usize).saturating_add(READ_SLACK).min(MAX_READ);
            self.buf.reserve(want);
            let n = (&mut self.io)
                .take(want as u64)
                .read_buf(&mut self.buf)
                .await
                .map_err(RpcError::Transport)?;
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

    /// The next packet if it is complete in what has already been read;
    /// never reads.
    pub fn buffered_packet(&mut self) -> Result<Option<Packet>, RpcError> {
        if let Some(header) = wire::parse_frame_header(&self.buf)? {
            self.assembler.check_header(&header)?;
        }
        while let Some(frame) = wire::decode_frame(&mut self.buf)? {
            let (kind, id, done) = (frame.kind, frame.id(), frame.done);
            if let Some(packet) = self.assembler.push(frame)? {
                return Ok(Some(packet));
            }
            if done {
                // The assembler completed and dropped an unknown control packet.
                let mut packet = Packet::new(kind, id.stream, id.message, Bytes::new());
                packet.control = true;
                return Ok(Some(packet));
            }
            if let Some(header) = wire::parse_frame_header(&self.buf)? {
                self.assembler.check_header(&header)?;
            }
        }
        Ok(None)
    }

    /// The wrapped stream (to write on it when it is not split).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
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
        // drpc's manager cancels the call when a packet for a newer stream
        // arrives (lower ids never get here: the reader refuses them).
        return Some(Reply::Failed(RpcError::Cancelled));
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
        // An unknown control packet: ignored, for forward compatibility.
        Kind::Unknown(_) => return None,
    })
}

/// Writes what `writer` has queued, then half-closes `io`, only as far as
/// both can be done without waiting. Returns whether everything went out.
fn finish_without_waiting<W: AsyncWrite + Unpin>(writer: &mut PacketWriter, io: &mut W) -> bool {
    async {
        writer.flush(io).await?;
        io.shutdown().await.map_err(RpcError::Transport)
    }
    .now_or_never()
    .is_some_and(|r| r.is_ok())
}

/// Runs one unary call on `io`: Invoke, Message and CloseSend in one write,
/// then the first Message or Error from the server is the answer, whatever
/// follows it. A request over the 4 MiB limit is refused with
/// [`RpcError::MessageTooLarge`] before anything is written. After the
/// answer the call ends as Go's client ends it (see the
/// [module documentation](self)).
pub async fn client_unary<S>(io: S, method: &MethodDesc, request: Bytes) -> Result<Bytes, RpcError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut writer = PacketWriter::new(STREAM_ID);
    writer.invoke(method.path);
    writer.message(request)?;
    writer.close_send();
    let mut reader = PacketReader::new(io);
    writer.flush(reader.get_mut()).await?;

    let reply = loop {
        match reader.next_packet().await? {
            None => {
                return Err(RpcError::Transport(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stream closed before the reply",
                )))
            }
            Some(packet) => match client_interpret(packet) {
                None => continue,
                Some(Reply::Message(data)) => break data,
                Some(Reply::Failed(e)) => return Err(e),
                Some(Reply::End) => {
                    return Err(RpcError::Protocol("server closed the call without a reply".to_owned()))
                }
            },
        }
    };
    // Go sends Close only if the server's CloseSend has not been seen yet.
    let mut server_closed = false;
    while let Ok(Some(packet)) = reader.buffered_packet() {
        if packet.stream_id == STREAM_ID && matches!(packet.kind, Kind::CloseSend | Kind::Close) {
            server_closed = true;
            break;
        }
    }
    if !server_closed {
        writer.close();
    }
    finish_without_waiting(&mut writer, reader.get_mut());
    Ok(reply)
}

/// Starts a streaming call on `io` and returns its halves. A task pumps the
/// stream: messages out, replies in. Dropping the receiver cancels the call
/// (the stream is dropped, which resets it), even while a write waits for
/// the peer; dropping only the sender sends CloseSend. A message over the
/// 4 MiB limit is not written: the receiver yields
/// [`RpcError::MessageTooLarge`] and the call ends.
pub fn client_stream<S>(io: S, method: &'static MethodDesc) -> RawStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(QUEUE_DEPTH);
    let (in_tx, in_rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(pump_client_stream(io, method, out_rx, in_tx));
    RawStream::new(out_tx, in_rx)
}

/// Flushes `writer` unless the caller drops the receiver first.
/// `Ok(false)`: the call was cancelled.
async fn flush_or_cancel<W: AsyncWrite + Unpin>(
    writer: &mut PacketWriter,
    io: &mut W,
    inbound: &mpsc::Sender<Result<Bytes, RpcError>>,
) -> Result<bool, RpcError> {
    tokio::select! {
        biased;
        r = writer.flush(io) => r.map(|()| true),
        _ = inbound.closed() => Ok(false),
    }
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
    match flush_or_cancel(&mut writer, &mut write_half, &inbound).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            let _ = inbound.send(Err(e)).await;
            return;
        }
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
                    Ok(()) => flush_or_cancel(&mut writer, &mut write_half, &inbound).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        let _ = inbound.send(Err(e)).await;
                        return;
                    }
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
    // The server ended its side; finish ours like Go's client: Close, then
    // close the stream, without waiting for the peer.
    drop(inbound);
    writer.close();
    finish_without_waiting(&mut writer, &mut write_half);
}

/// Serves calls arriving on one stream until the client closes it. Each
/// Invoke is routed through `router`; an unknown path is answered with
/// DRPC's "unknown rpc" error (code 0) and a registered method without an
/// implementation with "Unimplemented" (code 12). The client ending the
/// stream, or sending Close or Cancel, cancels a running handler; so does a
/// packet for a newer stream id (see the [module documentation](self)).
pub async fn serve_stream<S>(io: S, router: Router) -> Result<(), RpcError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (read_half, mut write_half) = tokio::io::split(io);
    let mut reader = PacketReader::new(read_half);
    // The stream id of the last call; Go ignores packets for it once it is done.
    let mut last_stream = 0;
    let mut carried: Option<Packet> = None;
    loop {
        // Wait for an Invoke on a new stream id (metadata before it is
        // checked and ignored).
        let (stream_id, path) = loop {
            let packet = match carried.take() {
                Some(p) => p,
                None => match reader.next_packet().await? {
                    Some(p) => p,
                    None => return Ok(()),
                },
            };
            match packet.kind {
                Kind::Invoke if packet.stream_id > last_stream => {
                    break (packet.stream_id, String::from_utf8_lossy(&packet.data).into_owned());
                }
                Kind::InvokeMetadata if packet.stream_id > last_stream => {
                    wire::decode_metadata(&packet.data)?;
                }
                // Leftovers of a finished call (its CloseSend, Close) are ignored.
                _ => {}
            }
        };
        last_stream = stream_id;
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
        let end = run_server_call(&mut reader, &mut write_half, &mut writer, stream_id, handler, pump)
            .instrument(span)
            .await?;
        match end {
            CallEnd::Finished => continue,
            CallEnd::Next(packet) => carried = Some(packet),
            CallEnd::StreamGone => return Ok(()),
        }
    }
}

enum CallEnd {
    /// The handler finished and its result was sent; more calls may follow.
    Finished,
    /// An Invoke for a newer stream cancelled the call; it starts the next one.
    Next(Packet),
    /// The client closed or cancelled; the stream is done.
    StreamGone,
}

fn write_error(writer: &mut PacketWriter, error: &RpcError) {
    match error {
        RpcError::Remote { code, message } => writer.error(*code, message),
        other => writer.error(0, &other.to_string()),
    }
}

/// Queues `first` and every reply already waiting in `responses` as Message
/// packets. A reply over the size limit is replaced by an Error packet and
/// `true` is returned: the call has failed, as Go's would.
fn queue_replies(writer: &mut PacketWriter, first: Option<Bytes>, responses: &mut mpsc::Receiver<Bytes>) -> bool {
    let mut next = first;
    loop {
        let data = match next.take() {
            Some(data) => data,
            None => match responses.try_recv() {
                Ok(data) => data,
                Err(_) => return false,
            },
        };
        if let Err(e) = writer.message(data) {
            write_error(writer, &e);
            return true;
        }
    }
}

/// Queues the end of a call: CloseSend after success, an Error otherwise.
/// `Err(())`: the handler went away without a result.
fn queue_outcome(writer: &mut PacketWriter, outcome: Result<Result<(), RpcError>, ()>) {
    match outcome {
        Ok(Ok(())) => writer.close_send(),
        Ok(Err(e)) => write_error(writer, &e),
        Err(()) => writer.error(0, "handler ended without a result"),
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
                match reply {
                    // The handler dropped its sink; its result follows.
                    None => responses_open = false,
                    Some(data) => {
                        // Coalesce: replies queued meanwhile and, when the
                        // handler has returned, its result go out in one write.
                        let done = match result.try_recv() {
                            Ok(outcome) => Some(Ok(outcome)),
                            Err(oneshot::error::TryRecvError::Closed) => Some(Err(())),
                            Err(oneshot::error::TryRecvError::Empty) => None,
                        };
                        let failed = queue_replies(writer, Some(data), &mut responses);
                        if failed || done.is_some() {
                            if !failed {
                                queue_outcome(writer, done.unwrap_or(Err(())));
                            }
                            writer.flush(write_half).await?;
                            return Ok(CallEnd::Finished);
                        }
                        writer.flush(write_half).await?;
                    }
                }
            }
            outcome = &mut result => {
                // Send replies the handler queued before it returned.
                if !queue_replies(writer, None, &mut responses) {
                    queue_outcome(writer, outcome.map_err(|_| ()));
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
                    // A newer stream cancels this call (older ones cannot get
                    // past the reader); an Invoke starts the next call.
                    Ok(Some(p)) if p.stream_id != stream_id => {
                        if matches!(p.kind, Kind::Invoke | Kind::InvokeMetadata) {
                            return Ok(CallEnd::Next(p));
                        }
                        return Ok(CallEnd::StreamGone);
                    }
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
