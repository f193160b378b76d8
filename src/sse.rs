//! Server-sent events for the reinit channel (`GET /api/v2/workspaceagents/me/reinit`).
//!
//! This module owns the event-stream wire format in both directions: an
//! incremental parser that accepts everything the SSE standard allows
//! (multi-line `data:`, comments, `\r\n` and `\r` line ends, events split
//! across reads, a leading BOM) with a hard bound on line and event size;
//! the encoder that writes coderd's exact format (`event: data\ndata:
//! <compact JSON>\n\n`, `event: ping\n\n`); the [`ReinitializationEvent`]
//! JSON form, encoded and decoded as Go's `encoding/json` does; the
//! receiver ([`ReinitReceiver`]) and the server-side transmitter
//! ([`ReinitTransmitter`], with the `server` feature).
//!
//! It knows nothing about tokens, URLs or HTTP clients: the reinit request
//! itself is made by [`crate::Client::wait_for_reinit`], which hands the
//! response body to a [`ReinitReceiver`].

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::error::Error;

/// The largest line or event (data included) the parser accepts: 1 MiB.
/// coderd's reinit events are about 80 bytes; anything this large is
/// refused with [`SseError::EventTooLarge`] before more is buffered.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// How often coderd writes a `ping` event (Go's `ServerSentEventSender`: 15 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// The SSE event type coderd uses for a payload.
pub const EVENT_DATA: &str = "data";
/// The SSE event type coderd uses for its heartbeat.
pub const EVENT_PING: &str = "ping";
/// The SSE event type coderd uses to report a failure.
pub const EVENT_ERROR: &str = "error";

/// What can go wrong while reading a server-sent event stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line, or the data of one event, is larger than the parser's limit.
    #[error("server-sent event exceeds the {limit} byte limit")]
    EventTooLarge {
        /// The limit that was crossed.
        limit: usize,
    },
    /// The stream ended before a `data` event arrived (possibly in the
    /// middle of an event).
    #[error("server-sent event stream ended before a data event")]
    StreamEnded,
    /// The server sent an `error` event.
    #[error("unexpected server sent event type error: {data}")]
    ErrorEvent {
        /// The event's data, as sent.
        data: String,
    },
    /// The server sent an event type coderd never sends on this channel.
    #[error("unexpected server sent event type: {event}")]
    UnexpectedEvent {
        /// The event type.
        event: String,
    },
    /// A `data` event whose JSON is not a reinitialization event.
    #[error("unmarshal reinit response: {0}")]
    InvalidData(String),
    /// Reading the stream failed.
    #[error("read server-sent events: {0}")]
    Transport(String),
}

/// One dispatched server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type (`message` when the stream named none).
    pub event: String,
    /// The data lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the stream, if any.
    pub id: Option<String>,
    /// A reconnection time the server asked for, in milliseconds.
    pub retry: Option<u64>,
}

/// An incremental event-stream parser with a size bound.
///
/// Feed it bytes as they arrive with [`SseParser::feed`] and take complete
/// events with [`SseParser::next_event`]. Unlike the letter of the SSE
/// standard, an event that names a type but carries no data (coderd's
/// `event: ping\n\n`) is dispatched too, with empty data.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    line: Vec<u8>,
    after_cr: bool,
    first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
    ready: VecDeque<SseEvent>,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that refuses lines and events larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SseParser {
            limit,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event: None,
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
            ready: VecDeque::new(),
        }
    }

    /// Parses `chunk`, queueing every event it completes. After an error the
    /// parser must not be used again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.push_line_bytes(&rest[..end])?;
                    self.after_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line)?;
                    // Keep the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
                None => {
                    self.push_line_bytes(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// The next complete event, if one is queued.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(SseError::EventTooLarge { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, raw: &[u8]) -> Result<(), SseError> {
        let mut raw = raw;
        if self.first_line {
            self.first_line = false;
            raw = raw.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(raw);
        }
        if raw.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if raw[0] == b':' {
            return Ok(()); // a comment
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseError::EventTooLarge { limit: self.limit });
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {} // unknown fields are ignored
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        if !self.has_data && event.is_none() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        self.has_data = false;
        self.ready.push_back(SseEvent {
            event: event.filter(|e| !e.is_empty()).unwrap_or_else(|| "message".to_owned()),
            data,
            id: self.last_id.clone(),
            retry: self.retry,
        });
    }
}

/// Writes one event in coderd's format: `event: <type>\n`, then one
/// `data: ` line per line of `data` (none when `data` is `None`), then a
/// blank line.
pub fn encode_event(event: &str, data: Option<&str>) -> String {
    let mut out = format!("event: {event}\n");
    if let Some(data) = data {
        for line in data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// Why coderd asks the agent to reinitialize.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReinitializationReason {
    /// A prebuilt workspace was claimed by a user (`prebuild_claimed`).
    PrebuildClaimed,
    /// A reason this crate does not know (kept as sent, as Go keeps any string).
    Other(String),
}

impl ReinitializationReason {
    /// The reason as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ReinitializationReason::PrebuildClaimed => "prebuild_claimed",
            ReinitializationReason::Other(s) => s,
        }
    }
}

impl From<&str> for ReinitializationReason {
    fn from(s: &str) -> Self {
        match s {
            "prebuild_claimed" => ReinitializationReason::PrebuildClaimed,
            other => ReinitializationReason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ReinitializationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReinitializationReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReinitializationReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ReinitializationReason::from(s.as_str()))
    }
}

/// The data of a reinit `data` event (Go's `agentsdk.ReinitializationEvent`).
///
/// coderd has sent two JSON shapes ([`ReinitEventShape`]). Today's
/// (coder/coder#23108, April 2026) is
/// `{"workspace_id":"<uuid>","reason":"prebuild_claimed","owner_id":"<uuid>"}`,
/// with `owner_id` left out when it is the nil UUID (Go's `omitzero`).
/// Older coderd wrote `{"WorkspaceID":"<uuid>","reason":"prebuild_claimed"}`
/// (a Go field without a JSON tag). [`Serialize`] writes today's shape;
/// [`ReinitializationEvent::to_json`] writes either.
///
/// Decoded as Go's `encoding/json` does (keys match case-insensitively,
/// unknown keys are ignored, a missing or `null` value leaves the zero
/// value, a wrong JSON type is an error), with one addition: both
/// `workspace_id` and the older `WorkspaceID` are read, `workspace_id`
/// winning when both are present. Go's current client reads only
/// `workspace_id`, so against an older coderd it sees the nil UUID; this
/// crate sees the workspace either way.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReinitializationEvent {
    /// The workspace whose agent must reinitialize.
    pub workspace_id: Uuid,
    /// Why.
    pub reason: ReinitializationReason,
    /// The workspace's owner after the claim: `None` when coderd sent none
    /// (an older coderd, or the nil UUID, which Go leaves out). An agent
    /// can skip a second event for the owner it already reinitialized for,
    /// as Go's agent does.
    pub owner_id: Option<Uuid>,
}

/// Which JSON shape a [`ReinitializationEvent`] is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReinitEventShape {
    /// Today's coderd: `workspace_id`, `reason`, then `owner_id` unless nil.
    #[default]
    Current,
    /// coderd before coder/coder#23108: `WorkspaceID` and `reason`; no owner.
    Legacy,
}

impl ReinitializationEvent {
    /// A `prebuild_claimed` event for `workspace_id`, without an owner.
    pub fn prebuild_claimed(workspace_id: Uuid) -> Self {
        ReinitializationEvent {
            workspace_id,
            reason: ReinitializationReason::PrebuildClaimed,
            owner_id: None,
        }
    }

    /// The same event naming `owner_id` as the new owner (the nil UUID means none).
    pub fn with_owner(mut self, owner_id: Uuid) -> Self {
        self.owner_id = Some(owner_id).filter(|id| !id.is_nil());
        self
    }

    /// The same event with another reason.
    pub fn with_reason(mut self, reason: ReinitializationReason) -> Self {
        self.reason = reason;
        self
    }

    /// The compact JSON coderd writes as the event's data line, in `shape`.
    pub fn to_json(&self, shape: ReinitEventShape) -> String {
        let json = match shape {
            ReinitEventShape::Current => serde_json::to_string(self),
            ReinitEventShape::Legacy => serde_json::to_string(&LegacyShape(self)),
        };
        // Uuids and strings always serialize.
        json.unwrap_or_else(|_| "null".to_owned())
    }
}

impl Serialize for ReinitializationEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let owner = self.owner_id.filter(|id| !id.is_nil());
        let mut st = s.serialize_struct("ReinitializationEvent", 2 + usize::from(owner.is_some()))?;
        st.serialize_field("workspace_id", &self.workspace_id)?;
        st.serialize_field("reason", &self.reason)?;
        if let Some(owner) = owner {
            st.serialize_field("owner_id", &owner)?;
        }
        st.end()
    }
}

/// The pre-#23108 shape: `{"WorkspaceID":...,"reason":...}`.
struct LegacyShape<'a>(&'a ReinitializationEvent);

impl Serialize for LegacyShape<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ReinitializationEvent", 2)?;
        st.serialize_field("WorkspaceID", &self.0.workspace_id)?;
        st.serialize_field("reason", &self.0.reason)?;
        st.end()
    }
}

/// Go's case folding for JSON keys: equal when every character pair is
/// equal under simple lower- or upper-case mapping (so `K` matches the
/// Kelvin sign and `s` matches `ſ`, as in `encoding/json`).
fn go_equal_fold(a: &str, b: &str) -> bool {
    let mut ai = a.chars();
    let mut bi = b.chars();
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                if x == y {
                    continue;
                }
                let lower = |c: char| c.to_lowercase().collect::<String>();
                let upper = |c: char| c.to_uppercase().collect::<String>();
                if lower(x) != lower(y) && upper(x) != upper(y) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

impl<'de> Deserialize<'de> for ReinitializationEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EventVisitor;
        impl<'de> Visitor<'de> for EventVisitor {
            type Value = ReinitializationEvent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a reinitialization event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut event = ReinitializationEvent {
                    workspace_id: Uuid::nil(),
                    reason: ReinitializationReason::Other(String::new()),
                    owner_id: None,
                };
                // The legacy key's value, used only when `workspace_id` is absent.
                let mut legacy_workspace_id = None;
                let mut saw_workspace_id = false;
                let uuid = |id: String| Uuid::parse_str(&id).map_err(de::Error::custom);
                while let Some(key) = map.next_key::<String>()? {
                    if go_equal_fold(&key, "workspace_id") {
                        saw_workspace_id = true;
                        // null leaves the zero value, as Go does.
                        if let Some(id) = map.next_value::<Option<String>>()? {
                            event.workspace_id = uuid(id)?;
                        }
                    } else if go_equal_fold(&key, "WorkspaceID") {
                        if let Some(id) = map.next_value::<Option<String>>()? {
                            legacy_workspace_id = Some(uuid(id)?);
                        }
                    } else if go_equal_fold(&key, "owner_id") {
                        if let Some(id) = map.next_value::<Option<String>>()? {
                            event.owner_id = Some(uuid(id)?).filter(|id| !id.is_nil());
                        }
                    } else if go_equal_fold(&key, "reason") {
                        if let Some(reason) = map.next_value::<Option<String>>()? {
                            event.reason = ReinitializationReason::from(reason.as_str());
                        }
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                if !saw_workspace_id {
                    if let Some(id) = legacy_workspace_id {
                        event.workspace_id = id;
                    }
                }
                Ok(event)
            }
        }
        d.deserialize_map(EventVisitor)
    }
}

/// Reads reinitialization events from an event-stream body (Go's
/// `SSEAgentReinitReceiver`). `ping` events are skipped; an `error` event,
/// any other event type, malformed data, an oversized event or the end of
/// the stream is an error.
pub struct ReinitReceiver<S> {
    body: S,
    parser: SseParser,
}

impl<S> fmt::Debug for ReinitReceiver<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReinitReceiver").finish_non_exhaustive()
    }
}

impl<S, B, E> ReinitReceiver<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: fmt::Display,
{
    /// Reads from `body` with the default size limit.
    pub fn new(body: S) -> Self {
        Self::with_limit(body, DEFAULT_MAX_EVENT_BYTES)
    }

    /// Reads from `body`, refusing lines and events larger than `limit` bytes.
    pub fn with_limit(body: S, limit: usize) -> Self {
        ReinitReceiver {
            body,
            parser: SseParser::new(limit),
        }
    }

    /// Waits for the next `data` event and decodes it.
    pub async fn receive(&mut self) -> Result<ReinitializationEvent, Error> {
        loop {
            while let Some(event) = self.parser.next_event() {
                match event.event.as_str() {
                    EVENT_PING => continue,
                    EVENT_DATA => {
                        return serde_json::from_str(&event.data)
                            .map_err(|e| SseError::InvalidData(crate::http::describe_json_error(&e)).into());
                    }
                    EVENT_ERROR => return Err(SseError::ErrorEvent { data: event.data }.into()),
                    other => {
                        return Err(SseError::UnexpectedEvent {
                            event: other.to_owned(),
                        }
                        .into())
                    }
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.parser.feed(chunk.as_ref())?,
                Some(Err(e)) => return Err(SseError::Transport(e.to_string()).into()),
                None => return Err(SseError::StreamEnded.into()),
            }
        }
    }
}

/// The reconnect delays of [`crate::Client::wait_for_reinit_loop`]: the first
/// try is immediate, then 100 ms growing by the golden ratio up to 10 s
/// (Go's `retry.New(100*time.Millisecond, 10*time.Second)`); [`Backoff::reset`]
/// after each event starts over.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    floor: Duration,
    ceiling: Duration,
    next: Option<Duration>,
}

/// φ, the growth rate of coder/retry.
const GOLDEN_RATIO: f64 = 1.618_033_988_749_895;

impl Backoff {
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Self {
        Backoff {
            floor,
            ceiling,
            next: None,
        }
    }

    /// How long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        match self.next {
            None => {
                self.next = Some(self.floor);
                Duration::ZERO
            }
            Some(d) => {
                self.next = Some(d.mul_f64(GOLDEN_RATIO).min(self.ceiling));
                d
            }
        }
    }

    /// Back to an immediate first attempt.
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use transmit::{ReinitTransmitter, TransmitDone, TransmitError};

#[cfg(feature = "server")]
mod transmit {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{header, Response, StatusCode};
    use bytes::Bytes;
    use futures::Stream;
    use tokio::sync::{mpsc, oneshot};

    use super::{encode_event, ReinitEventShape, ReinitializationEvent, EVENT_DATA, EVENT_PING, PING_INTERVAL};

    /// How a transmission ended (Go's `ErrTransmissionSourceClosed` and
    /// `ErrTransmissionTargetClosed`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
    pub enum TransmitError {
        /// The channel of events was closed; the response ended cleanly.
        #[error("transmission source closed")]
        SourceClosed,
        /// The receiver went away (the response body was dropped).
        #[error("transmission target closed")]
        TargetClosed,
    }

    /// Resolves to the reason a transmission ended.
    #[derive(Debug)]
    pub struct TransmitDone(oneshot::Receiver<TransmitError>);

    impl std::future::Future for TransmitDone {
        type Output = TransmitError;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TransmitError> {
            // A dropped body without an outcome means the target went away.
            Pin::new(&mut self.0)
                .poll(cx)
                .map(|r| r.unwrap_or(TransmitError::TargetClosed))
        }
    }

    /// Turns a channel of reinit events into a coderd-format SSE response
    /// (the server half of the reinit channel; Go's `SSEAgentReinitTransmitter`).
    ///
    /// Each event is written as `event: data\ndata: <compact JSON>\n\n`
    /// (today's JSON shape unless [`ReinitTransmitter::event_shape`] says
    /// otherwise) and a `event: ping\n\n` heartbeat is written every ping
    /// interval (15 s by default), each as its own body chunk so hyper
    /// flushes it.
    #[derive(Clone, Debug)]
    pub struct ReinitTransmitter {
        ping_interval: Duration,
        shape: ReinitEventShape,
    }

    impl Default for ReinitTransmitter {
        fn default() -> Self {
            ReinitTransmitter {
                ping_interval: PING_INTERVAL,
                shape: ReinitEventShape::Current,
            }
        }
    }

    impl ReinitTransmitter {
        /// A transmitter with coderd's 15 s heartbeat.
        pub fn new() -> Self {
            Self::default()
        }

        /// Changes the heartbeat interval (zero is treated as 1 ms).
        pub fn ping_interval(mut self, interval: Duration) -> Self {
            self.ping_interval = interval.max(Duration::from_millis(1));
            self
        }

        /// The JSON shape events are written in: [`ReinitEventShape::Legacy`]
        /// plays a coderd from before coder/coder#23108.
        pub fn event_shape(mut self, shape: ReinitEventShape) -> Self {
            self.shape = shape;
            self
        }

        /// The response to return from a handler, and a future that
        /// resolves once the transmission has ended and says why.
        pub fn transmit(self, events: mpsc::Receiver<ReinitializationEvent>) -> (Response<Body>, TransmitDone) {
            let (tx, rx) = oneshot::channel();
            let start = tokio::time::Instant::now() + self.ping_interval;
            let mut ping = tokio::time::interval_at(start, self.ping_interval);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let body = SseBody {
                events,
                shape: self.shape,
                ping,
                outcome: Some(tx),
            };
            let response = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .header("X-Accel-Buffering", "no")
                .body(Body::from_stream(body))
                .unwrap_or_else(|_| Response::new(Body::empty()));
            (response, TransmitDone(rx))
        }
    }

    /// The response body: events and pings until the source closes; reports
    /// the outcome when it ends or is dropped.
    struct SseBody {
        events: mpsc::Receiver<ReinitializationEvent>,
        shape: ReinitEventShape,
        ping: tokio::time::Interval,
        outcome: Option<oneshot::Sender<TransmitError>>,
    }

    impl SseBody {
        fn finish(&mut self, outcome: TransmitError) {
            if let Some(tx) = self.outcome.take() {
                let _ = tx.send(outcome);
            }
        }
    }

    impl Stream for SseBody {
        type Item = Result<Bytes, std::convert::Infallible>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.outcome.is_none() {
                return Poll::Ready(None);
            }
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    let json = event.to_json(self.shape);
                    return Poll::Ready(Some(Ok(Bytes::from(encode_event(EVENT_DATA, Some(&json))))));
                }
                Poll::Ready(None) => {
                    self.finish(TransmitError::SourceClosed);
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            match self.ping.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from(encode_event(EVENT_PING, None))))),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl Drop for SseBody {
        fn drop(&mut self) {
            self.finish(TransmitError::TargetClosed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c)?;
            while let Some(e) = p.next_event() {
                out.push(e);
            }
        }
        Ok(out)
    }

    #[test]
    fn coderd_ping_and_data_events_parse() {
        let events = parse_all(&[b"event: ping\n\nevent: data\ndata: {\"a\":1}\n\n"]).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "ping");
        assert_eq!(events[0].data, "");
        assert_eq!(events[1].event, "data");
        assert_eq!(events[1].data, "{\"a\":1}");
    }

    #[test]
    fn multi_line_data_comments_crlf_and_cr_are_accepted() {
        let events = parse_all(&[b": hello\r\nevent: data\r\ndata: one\rdata:two\r\n\r\n"]).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "one\ntwo");
    }

    #[test]
    fn events_split_at_every_byte_parse_the_same() {
        let wire = b"\xEF\xBB\xBFevent: data\r\ndata: {\"x\":\"\xC3\xA9\"}\r\n\r\nevent: ping\r\n\r\n";
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        let events = parse_all(&chunks).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "data");
        assert_eq!(events[0].data, "{\"x\":\"é\"}");
        assert_eq!(events[1].event, "ping");
    }

    #[test]
    fn data_without_event_type_is_a_message_and_blank_blocks_are_skipped() {
        let events = parse_all(&[b"\n\n\ndata: x\nid: 7\nretry: 30\nbogus\n\n"]).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].retry, Some(30));
    }

    #[test]
    fn a_line_over_the_limit_is_refused_before_it_ends() {
        let mut p = SseParser::new(64);
        p.feed(b"data: ").unwrap();
        let err = p.feed(&[b'x'; 100]).unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit: 64 });
    }

    #[test]
    fn many_data_lines_over_the_limit_are_refused() {
        let mut p = SseParser::new(64);
        let line = b"data: 0123456789\n";
        let err = (0..10).find_map(|_| p.feed(line).err()).unwrap();
        assert_eq!(err, SseError::EventTooLarge { limit: 64 });
    }

    #[test]
    fn encode_matches_coderd_bytes() {
        assert_eq!(encode_event("ping", None), "event: ping\n\n");
        assert_eq!(encode_event("data", Some("{}")), "event: data\ndata: {}\n\n");
    }

    const WS: &str = "a7c5f2a3-53ad-4b0b-8b46-6fd0f2d0a8c1";
    const OWNER: &str = "0e6f1c9b-2d34-4a8e-9c1f-5b7a3d2e4f60";

    #[test]
    fn reinit_event_encodes_like_todays_go_and_omits_a_nil_owner() {
        let id = Uuid::parse_str(WS).unwrap();
        let owner = Uuid::parse_str(OWNER).unwrap();
        let claimed = ReinitializationEvent::prebuild_claimed(id);
        assert_eq!(
            serde_json::to_string(&claimed).unwrap(),
            format!(r#"{{"workspace_id":"{WS}","reason":"prebuild_claimed"}}"#)
        );
        assert_eq!(
            claimed.clone().with_owner(owner).to_json(ReinitEventShape::Current),
            format!(r#"{{"workspace_id":"{WS}","reason":"prebuild_claimed","owner_id":"{OWNER}"}}"#)
        );
        // Go's omitzero: the nil UUID is left out, and with_owner(nil) means no owner.
        assert_eq!(claimed.clone().with_owner(Uuid::nil()).owner_id, None);
        let forced_nil = ReinitializationEvent {
            owner_id: Some(Uuid::nil()),
            ..claimed.clone()
        };
        assert_eq!(
            forced_nil.to_json(ReinitEventShape::Current),
            claimed.to_json(ReinitEventShape::Current)
        );
    }

    #[test]
    fn reinit_event_legacy_shape_is_the_old_coderds_bytes() {
        let id = Uuid::parse_str(WS).unwrap();
        let event = ReinitializationEvent::prebuild_claimed(id).with_owner(Uuid::parse_str(OWNER).unwrap());
        assert_eq!(
            event.to_json(ReinitEventShape::Legacy),
            format!(r#"{{"WorkspaceID":"{WS}","reason":"prebuild_claimed"}}"#)
        );
    }

    #[test]
    fn reinit_event_reads_both_shapes_case_insensitively_and_ignores_unknown_keys() {
        for json in [
            format!(r#"{{"workspace_id":"{WS}","reason":"prebuild_claimed","owner_id":"{OWNER}"}}"#),
            format!(r#"{{"Workspace_ID":"{WS}","REASON":"prebuild_claimed","Owner_Id":"{OWNER}","x":1}}"#),
        ] {
            let e: ReinitializationEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(e.workspace_id.to_string(), WS, "{json}");
            assert_eq!(e.owner_id.map(|o| o.to_string()).as_deref(), Some(OWNER), "{json}");
            assert_eq!(e.reason, ReinitializationReason::PrebuildClaimed);
        }
        for json in [
            format!(r#"{{"WorkspaceID":"{WS}","reason":"prebuild_claimed"}}"#),
            format!(r#"{{"workspaceid":"{WS}","REASON":"prebuild_claimed","UserID":"x"}}"#),
            format!(r#"{{"workspaceId":"{WS}","Reason":"prebuild_claimed","extra":{{"a":[1]}}}}"#),
        ] {
            let e: ReinitializationEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(e.workspace_id.to_string(), WS, "{json}");
            assert_eq!(e.owner_id, None);
            assert_eq!(e.reason, ReinitializationReason::PrebuildClaimed);
        }
    }

    #[test]
    fn reinit_event_current_key_wins_over_the_legacy_key_in_either_order() {
        let other = "11111111-2222-4333-8444-555555555555";
        for json in [
            format!(r#"{{"WorkspaceID":"{other}","workspace_id":"{WS}"}}"#),
            format!(r#"{{"workspace_id":"{WS}","WorkspaceID":"{other}"}}"#),
        ] {
            let e: ReinitializationEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(e.workspace_id.to_string(), WS, "{json}");
        }
    }

    #[test]
    fn reinit_event_missing_or_null_fields_take_go_zero_values() {
        for json in [
            r#"{"WorkspaceID":null}"#,
            r#"{"workspace_id":null,"owner_id":null}"#,
            r#"{"owner_id":"00000000-0000-0000-0000-000000000000"}"#,
        ] {
            let e: ReinitializationEvent = serde_json::from_str(json).unwrap();
            assert_eq!(e.workspace_id, Uuid::nil(), "{json}");
            assert_eq!(e.owner_id, None, "{json}");
            assert_eq!(e.reason.as_str(), "");
        }
        let e: ReinitializationEvent = serde_json::from_str(r#"{"reason":"something_new"}"#).unwrap();
        assert_eq!(e.reason, ReinitializationReason::Other("something_new".into()));
    }

    #[test]
    fn reinit_event_wrong_types_are_errors() {
        assert!(serde_json::from_str::<ReinitializationEvent>(r#"{"WorkspaceID":42}"#).is_err());
        assert!(serde_json::from_str::<ReinitializationEvent>(r#"{"reason":true}"#).is_err());
        assert!(serde_json::from_str::<ReinitializationEvent>(r#"{"WorkspaceID":"not-a-uuid"}"#).is_err());
        assert!(serde_json::from_str::<ReinitializationEvent>(r#"{"workspace_id":7}"#).is_err());
        assert!(serde_json::from_str::<ReinitializationEvent>(r#"{"owner_id":"not-a-uuid"}"#).is_err());
        assert!(serde_json::from_str::<ReinitializationEvent>("[]").is_err());
    }

    #[test]
    fn go_case_folding_matches_kelvin_and_long_s() {
        assert!(go_equal_fold("\u{212A}ey", "key"));
        assert!(go_equal_fold("rea\u{17F}on", "reason"));
        assert!(!go_equal_fold("reasons", "reason"));
    }

    #[test]
    fn backoff_is_immediate_then_grows_by_phi_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let third = b.next_delay();
        assert!(
            third > Duration::from_millis(161) && third < Duration::from_millis(162),
            "{third:?}"
        );
        let mut last = third;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= last && d <= Duration::from_secs(10));
            last = d;
        }
        assert_eq!(last, Duration::from_secs(10));
        b.reset();
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
