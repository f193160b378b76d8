//! Coder's log sender: queues log lines per log source and uploads them with
//! `BatchCreateLogs`, with Coder's batching, limits and fairness.
//!
//! - A source is sent when it was last sent at least [`FLUSH_INTERVAL`] ago
//!   (a new source at once) or when [`LogSender::flush`] asked for it; among
//!   the due sources the one sent longest ago goes first.
//! - A batch holds at most [`MAX_BYTES_PER_BATCH`] bytes, counting
//!   [`OVERHEAD_PER_LOG`] bytes per log on top of its output.
//! - At most [`MAX_BYTES_QUEUED`] bytes of output are queued in all. The
//!   check is made before each log is added, so the last log may overshoot.
//! - A single log too large for any batch is dropped with a warning.
//! - One batch is in flight at a time, across all send loops of a sender.
//! - When the upload fails, [`LogSender::send_loop`] returns the error and
//!   the logs stay queued for the next send loop (after a reconnect).
//! - When coderd answers that the agent's log limit is exceeded, every queue
//!   is dropped, later logs are ignored, and `send_loop` returns
//!   [`LogSenderError::LogLimitExceeded`] at once from then on.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::agent::convert::{proto_timestamp, Log, LogLevel};
use crate::drpc::RpcError;
use crate::proto::agent;
use crate::rpc::agent::AgentClient20;

/// How long a source's logs may wait before they are sent (Coder's `flushInterval`).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The most bytes one `BatchCreateLogs` request may carry, overhead included.
pub const MAX_BYTES_PER_BATCH: usize = 1 << 20;
/// The bytes counted per log on top of its output (protobuf framing, timestamp, level).
pub const OVERHEAD_PER_LOG: usize = 21;
/// The most bytes of output queued across all sources (coderd's `max_logs_length`).
pub const MAX_BYTES_QUEUED: usize = 1_048_576;
/// The output of the ERROR log that replaces a log that could not be converted.
pub const CONVERSION_FAILED_OUTPUT: &str = "**Coder Internal Error**: Failed to convert log";

/// Where a [`LogSender`] uploads logs: anything that can make a
/// `BatchCreateLogs` call.
///
/// Implemented for every versioned agent client ([`AgentClient20`] and up);
/// tests may implement it for a double.
pub trait LogDest: Sync {
    /// Makes one `BatchCreateLogs` call.
    fn upload_logs(
        &self,
        request: agent::BatchCreateLogsRequest,
    ) -> impl Future<Output = Result<agent::BatchCreateLogsResponse, RpcError>> + Send;
}

impl<T: AgentClient20 + Sync> LogDest for T {
    fn upload_logs(
        &self,
        request: agent::BatchCreateLogsRequest,
    ) -> impl Future<Output = Result<agent::BatchCreateLogsResponse, RpcError>> + Send {
        self.batch_create_logs(request)
    }
}

/// Why [`LogSender::send_loop`] returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogSenderError {
    /// coderd refused more logs for this agent; the sender has dropped its
    /// queues and ignores further logs.
    #[error("Log limit exceeded")]
    LogLimitExceeded,
    /// The `BatchCreateLogs` call failed; the logs stay queued.
    #[error("failed to upload logs: {0}")]
    Upload(#[source] RpcError),
}

/// Queues logs per source and uploads them over `BatchCreateLogs` (Coder's `LogSender`).
///
/// Cloning gives another handle to the same queues.
///
/// ```no_run
/// # async fn demo(agent: coder_agentsdk::rpc::agent::Agent28) {
/// use coder_agentsdk::agent::{Log, LogLevel, LogSender};
///
/// let sender = LogSender::new();
/// let source = uuid::Uuid::new_v4();
/// sender.enqueue(source, [Log::new(LogLevel::Info, "hello")]);
/// sender.flush(source);
/// let loop_sender = sender.clone();
/// let task = tokio::spawn(async move { loop_sender.send_loop(&agent).await });
/// sender.wait_until_empty().await;
/// task.abort();
/// # }
/// ```
#[derive(Clone)]
pub struct LogSender {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped on every change a waiter may care about.
    changes: watch::Sender<u64>,
    /// Held while a batch is chosen and sent: one batch in flight.
    in_flight: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    queues: HashMap<Uuid, Queue>,
    exceeded: bool,
    output_len: usize,
    next_seq: u64,
}

struct Queue {
    logs: VecDeque<agent::Log>,
    flush_requested: bool,
    /// `None` until the first successful send: due at once, and oldest.
    last_flush: Option<Instant>,
    /// Creation order, to break ties between never-sent queues.
    seq: u64,
}

struct Batch {
    source: Uuid,
    request: agent::BatchCreateLogsRequest,
    output_bytes: usize,
    was_requested: bool,
}

enum Next {
    Send(Batch),
    Wait(Option<Instant>),
}

impl State {
    fn next(&mut self, now: Instant) -> Next {
        let due = |q: &Queue| q.flush_requested || q.last_flush.is_none_or(|t| now.duration_since(t) >= FLUSH_INTERVAL);
        let pick = self
            .queues
            .iter()
            .filter(|(_, q)| due(q))
            .min_by_key(|(_, q)| (q.last_flush, q.seq))
            .map(|(id, _)| *id);
        let Some(source) = pick else {
            let deadline = self
                .queues
                .values()
                .filter_map(|q| q.last_flush)
                .min()
                .map(|t| t + FLUSH_INTERVAL);
            return Next::Wait(deadline);
        };
        let Some(queue) = self.queues.get_mut(&source) else {
            return Next::Wait(None);
        };
        let was_requested = std::mem::take(&mut queue.flush_requested);
        let mut total = 0;
        let mut output_bytes = 0;
        let mut logs = Vec::new();
        for log in &queue.logs {
            let size = log.output.len() + OVERHEAD_PER_LOG;
            if total + size > MAX_BYTES_PER_BATCH {
                break;
            }
            total += size;
            output_bytes += log.output.len();
            logs.push(log.clone());
        }
        Next::Send(Batch {
            source,
            request: agent::BatchCreateLogsRequest {
                log_source_id: source.as_bytes().to_vec(),
                logs,
            },
            output_bytes,
            was_requested,
        })
    }

    /// Removes a sent batch; true when its queue is now gone.
    fn sent(&mut self, batch: &Batch, now: Instant) -> bool {
        let Some(queue) = self.queues.get_mut(&batch.source) else {
            return false;
        };
        let n = batch.request.logs.len().min(queue.logs.len());
        queue.logs.drain(..n);
        self.output_len = self.output_len.saturating_sub(batch.output_bytes);
        if queue.logs.is_empty() {
            self.queues.remove(&batch.source);
            true
        } else {
            queue.last_flush = Some(now);
            false
        }
    }
}

impl Default for LogSender {
    fn default() -> Self {
        LogSender::new()
    }
}

impl std::fmt::Debug for LogSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("LogSender")
            .field("sources", &st.queues.len())
            .field("queued_bytes", &st.output_len)
            .field("log_limit_exceeded", &st.exceeded)
            .finish()
    }
}

impl LogSender {
    /// An empty sender.
    pub fn new() -> Self {
        LogSender {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changes: watch::Sender::new(0),
                in_flight: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Queues logs for a source. Their output is cleaned (NUL bytes become
    /// "❌"); a log whose level cannot be converted is replaced by an ERROR
    /// log saying so; a log too large for any batch is dropped; once
    /// [`MAX_BYTES_QUEUED`] is passed the rest of the call is dropped; after
    /// the log limit was exceeded everything is dropped.
    pub fn enqueue(&self, source_id: Uuid, logs: impl IntoIterator<Item = Log>) {
        let mut logs = logs.into_iter().peekable();
        if logs.peek().is_none() {
            tracing::debug!(%source_id, "log sender: enqueue called with no logs");
            return;
        }
        let mut added = false;
        {
            let mut st = self.lock();
            if st.exceeded {
                tracing::warn!(%source_id, "log sender: log limit exceeded, dropping logs");
                return;
            }
            for log in logs {
                if st.output_len > MAX_BYTES_QUEUED {
                    tracing::warn!(%source_id, "log sender: log queue full; truncating new logs");
                    break;
                }
                let proto = match agent::Log::try_from(&log) {
                    Ok(p) => p,
                    Err(err) => {
                        tracing::error!(%source_id, %err, "log sender: failed to convert log");
                        agent::Log {
                            created_at: Some(proto_timestamp(&Utc::now())),
                            output: CONVERSION_FAILED_OUTPUT.to_owned(),
                            level: agent::log::Level::Error as i32,
                        }
                    }
                };
                let len = proto.output.len();
                if len + OVERHEAD_PER_LOG > MAX_BYTES_PER_BATCH {
                    tracing::warn!(%source_id, len, "log sender: dropping log line that exceeds our limit");
                    continue;
                }
                let seq = st.next_seq;
                let queue = st.queues.entry(source_id).or_insert_with(|| Queue {
                    logs: VecDeque::new(),
                    flush_requested: false,
                    last_flush: None,
                    seq,
                });
                queue.logs.push_back(proto);
                st.next_seq += 1;
                st.output_len += len;
                added = true;
            }
        }
        if added {
            self.changed();
        }
    }

    /// Asks for a source's queued logs to be sent now rather than when the
    /// flush interval has passed. Does nothing when the source has nothing queued.
    pub fn flush(&self, source_id: Uuid) {
        let found = match self.lock().queues.get_mut(&source_id) {
            Some(q) => {
                q.flush_requested = true;
                true
            }
            None => false,
        };
        if found {
            self.changed();
        }
    }

    /// Sends queued logs through `dest` until something stops it.
    ///
    /// Returns [`LogSenderError::Upload`] when a call fails (the logs stay
    /// queued: reconnect and call again), or
    /// [`LogSenderError::LogLimitExceeded`] when coderd refuses more logs
    /// (and at once on every later call). Dropping the future stops it; a
    /// batch whose call was interrupted stays queued.
    pub async fn send_loop<D: LogDest + ?Sized>(&self, dest: &D) -> Result<Infallible, LogSenderError> {
        let mut changes = self.inner.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let flight = self.inner.in_flight.lock().await;
            let next = {
                let mut st = self.lock();
                if st.exceeded {
                    return Err(LogSenderError::LogLimitExceeded);
                }
                st.next(Instant::now())
            };
            match next {
                Next::Send(batch) => {
                    let result = dest.upload_logs(batch.request.clone()).await;
                    let mut st = self.lock();
                    match result {
                        Err(err) => {
                            if batch.was_requested {
                                if let Some(q) = st.queues.get_mut(&batch.source) {
                                    q.flush_requested = true;
                                }
                            }
                            return Err(LogSenderError::Upload(err));
                        }
                        Ok(resp) if resp.log_limit_exceeded => {
                            tracing::warn!("log sender: coderd says the log limit is exceeded; dropping all logs");
                            st.exceeded = true;
                            st.queues.clear();
                            st.output_len = 0;
                            drop(st);
                            self.changed();
                            return Err(LogSenderError::LogLimitExceeded);
                        }
                        Ok(_) => {
                            let emptied = st.sent(&batch, Instant::now());
                            drop(st);
                            if emptied {
                                self.changed();
                            }
                        }
                    }
                    drop(flight);
                }
                Next::Wait(deadline) => {
                    drop(flight);
                    match deadline {
                        Some(at) => {
                            tokio::select! {
                                _ = changes.changed() => {}
                                _ = tokio::time::sleep_until(at) => {}
                            }
                        }
                        None => {
                            let _ = changes.changed().await;
                        }
                    }
                }
            }
        }
    }

    /// Waits until every queued log has been sent (or dropped because the
    /// log limit was exceeded). Wrap it in a timeout to bound the wait.
    pub async fn wait_until_empty(&self) {
        let mut changes = self.inner.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if self.lock().queues.is_empty() {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().queues.is_empty()
    }

    /// The bytes of output queued across all sources (overhead not counted).
    pub fn queued_bytes(&self) -> usize {
        self.lock().output_len
    }

    /// The number of logs queued across all sources.
    pub fn queued_logs(&self) -> usize {
        self.lock().queues.values().map(|q| q.logs.len()).sum()
    }

    /// True once coderd has answered that the log limit is exceeded.
    pub fn log_limit_exceeded(&self) -> bool {
        self.lock().exceeded
    }

    /// A logger bound to one source (Coder's `GetScriptLogger`).
    pub fn script_logger(&self, source_id: Uuid) -> ScriptLogger {
        ScriptLogger {
            sender: self.clone(),
            source_id,
        }
    }

    /// A line writer for one source at one level (Coder's `LogsWriter`).
    pub fn writer(&self, source_id: Uuid, level: LogLevel) -> LogWriter {
        LogWriter {
            sender: self.clone(),
            source_id,
            level,
            partial: Vec::new(),
            closed: false,
        }
    }
}

/// A [`LogSender`] bound to one log source (Coder's `ScriptLogger`).
#[derive(Clone, Debug)]
pub struct ScriptLogger {
    sender: LogSender,
    source_id: Uuid,
}

impl ScriptLogger {
    /// The source the logs go to.
    pub fn source_id(&self) -> Uuid {
        self.source_id
    }

    /// Queues logs (see [`LogSender::enqueue`]).
    pub fn send(&self, logs: impl IntoIterator<Item = Log>) {
        self.sender.enqueue(self.source_id, logs);
    }

    /// Asks for the queued logs to be sent now (see [`LogSender::flush`]).
    pub fn flush(&self) {
        self.sender.flush(self.source_id);
    }

    /// A line writer for this source at `level`.
    pub fn writer(&self, level: LogLevel) -> LogWriter {
        self.sender.writer(self.source_id, level)
    }
}

/// Turns written bytes into log lines of one source and level (Coder's
/// `LogsWriter`); implements both [`std::io::Write`] and
/// [`tokio::io::AsyncWrite`].
///
/// Lines end at `\n`, and one `\r` just before it is dropped. A partial line
/// is kept across writes and sent by [`LogWriter::close`], by
/// `AsyncWriteExt::shutdown`, or when the writer is dropped. Bytes that are
/// not valid UTF-8 and NUL bytes become "❌". `flush` does not send a
/// partial line. Writing after close fails with `BrokenPipe`.
///
/// ```
/// use std::io::Write;
/// use coder_agentsdk::agent::{LogLevel, LogSender};
///
/// let sender = LogSender::new();
/// let mut out = sender.writer(uuid::Uuid::new_v4(), LogLevel::Info);
/// out.write_all(b"line one\r\nline t").unwrap();
/// out.write_all(b"wo\npartial").unwrap();
/// assert_eq!(sender.queued_logs(), 2);
/// out.close();
/// assert_eq!(sender.queued_logs(), 3);
/// ```
#[derive(Debug)]
pub struct LogWriter {
    sender: LogSender,
    source_id: Uuid,
    level: LogLevel,
    partial: Vec<u8>,
    closed: bool,
}

impl LogWriter {
    fn line(&self, mut bytes: Vec<u8>) -> Log {
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Log::from_bytes(self.level.clone(), &bytes)
    }

    fn push(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "log writer is closed"));
        }
        let mut logs = Vec::new();
        let mut rest = buf;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            let line = std::mem::take(&mut self.partial);
            logs.push(self.line(line));
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
        if !logs.is_empty() {
            self.sender.enqueue(self.source_id, logs);
        }
        Ok(buf.len())
    }

    /// Sends the partial line, if any, and refuses further writes. Calling it
    /// again does nothing.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            let log = self.line(line);
            self.sender.enqueue(self.source_id, [log]);
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().push(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}
