//! Fuzz target bodies: one function per cargo-fuzz target, each taking the
//! raw fuzzer input.
//!
//! This file is compiled twice: by the nightly `fuzz/` crate (cargo-fuzz) and
//! by the stable test `tests/fuzz_corpus.rs`, which replays every committed
//! seed and regression input through these same functions. It therefore only
//! uses crates that the main crate also depends on.
//!
//! Every function panics (an `assert!`) when a property is broken; bad input
//! itself must only ever produce typed errors.
//!
//! Many targets take their first input byte as a `seed` that picks how the
//! rest is cut into chunks (see [`chunks`]), and check that the outcome does
//! not depend on the cut: a parser fed a byte stream must give the same
//! result however the transport happened to split it.

use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use coder_agentsdk::drpc::wire::{self, Kind, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Cuts `data` into chunks whose lengths follow a small PRNG seeded by
/// `seed`: seed 0 is one chunk (the whole input), seed 1 one byte per
/// chunk, other seeds lengths from 1 to `seed`.
pub fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let max = usize::from(seed);
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = (1 + state as usize % max).min(rest.len());
        let (head, tail) = rest.split_at(len);
        out.push(head);
        rest = tail;
    }
    out
}

/// An in-memory transport: reads return the chunks one at a time (a chunk
/// may be cut further by the reader's buffer), then end of stream; writes
/// are accepted and counted.
#[derive(Debug)]
struct ChunkIo {
    chunks: Vec<Bytes>,
    next: usize,
    written: usize,
}

impl ChunkIo {
    fn new(chunks: &[&[u8]]) -> Self {
        ChunkIo {
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            next: 0,
            written: 0,
        }
    }
}

impl AsyncRead for ChunkIo {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while let Some(chunk) = this.chunks.get_mut(this.next) {
            if chunk.is_empty() {
                this.next += 1;
                continue;
            }
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChunkIo {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bounded: the peer side never grows without limit in a fuzz run.
        this.written = this.written.saturating_add(buf.len());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The runtime the async targets run on (one per thread, reused).
fn with_runtime<T>(f: impl FnOnce(&tokio::runtime::Runtime) -> T) -> T {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("build a current-thread runtime");
    }
    RT.with(f)
}

// ---------------------------------------------------------------------------
// drpc: frames, packet assembly, the packet reader
// ---------------------------------------------------------------------------

/// Everything a [`PacketReader`](coder_agentsdk::drpc::conn::PacketReader)
/// yields from `chunks`, up to and including the first error or the end.
fn read_packets(chunks: &[&[u8]]) -> Vec<Result<Packet, String>> {
    let mut reader = coder_agentsdk::drpc::conn::PacketReader::new(ChunkIo::new(chunks));
    let mut out = Vec::new();
    // Each packet consumes at least one input byte, so this ends; the bound
    // is only a backstop.
    for _ in 0..100_000 {
        match futures::executor::block_on(reader.next_packet()) {
            Ok(Some(p)) => out.push(Ok(p)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e.to_string()));
                return out;
            }
        }
    }
    panic!("packet reader did not finish");
}

/// The drpc frame parser, packet assembler and packet reader.
///
/// Properties: the packets (and the error) do not depend on how the bytes
/// are chunked; no packet is over the 4 MiB limit; every packet of a known
/// kind re-encodes to frames that read back as the same packet; every frame
/// `parse_frame` finds re-encodes to a frame that parses back identically.
pub fn drpc_wire(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = read_packets(&[input]);
    let split = read_packets(&chunks(seed, input));
    assert_eq!(whole, split, "packets depend on the chunking");

    for packet in whole.iter().filter_map(|r| r.as_ref().ok()) {
        assert!(packet.data.len() <= wire::MAX_MESSAGE_SIZE);
        if !packet.kind.is_known() {
            // An ignored control packet: reported without data.
            assert!(packet.control && packet.data.is_empty());
            continue;
        }
        let split_size = 1 + usize::from(seed) % 7;
        let mut encoded = BytesMut::new();
        for frame in packet.frames_with_split(split_size) {
            frame.append_to(&mut encoded);
        }
        let again = read_packets(&[&encoded]);
        assert_eq!(again, vec![Ok(packet.clone())], "packet does not survive re-encoding");
    }

    // Frame by frame, without the assembler.
    let mut rest = input;
    while let Ok(Some((frame, used))) = wire::parse_frame(rest) {
        assert!(used >= wire::MIN_FRAME_LEN && used <= rest.len());
        let header = wire::parse_frame_header(rest)
            .expect("header of a parsed frame")
            .expect("complete header");
        assert_eq!(header.header_len + frame.data.len(), used);
        let owned = frame.to_frame();
        let encoded = owned.encode();
        assert_eq!(encoded.len(), owned.encoded_len());
        let (back, back_used) = wire::parse_frame(&encoded)
            .expect("re-encoded frame parses")
            .expect("re-encoded frame is complete");
        assert_eq!(back_used, encoded.len());
        // The kind is compared through its 6-bit value: an unknown kind
        // keeps its number.
        assert_eq!(back.kind.as_u8(), frame.kind.as_u8());
        assert_eq!(back, frame, "frame does not survive re-encoding");
        let mut buf = BytesMut::from(&encoded[..]);
        assert_eq!(wire::decode_frame(&mut buf), Ok(Some(owned)));
        assert!(buf.is_empty());
        rest = &rest[used..];
    }
}

/// drpc packet bodies: varints, Error bodies and InvokeMetadata bodies.
///
/// Properties: a decoded varint re-encodes minimally to the same value;
/// a decoded Error body re-encodes to the same bytes when its text is
/// UTF-8; decoded metadata re-encodes to a body that decodes to the same
/// entries (and to the same bytes when the input was canonical).
pub fn drpc_payloads(data: &[u8]) {
    // Varints.
    match wire::decode_varint(data) {
        Ok(Some((value, used))) => {
            assert!((1..=wire::MAX_VARINT_LEN).contains(&used));
            let mut buf = BytesMut::new();
            wire::put_varint(&mut buf, value);
            assert_eq!(buf.len(), wire::varint_len(value));
            assert!(buf.len() <= used);
            assert_eq!(wire::decode_varint(&buf), Ok(Some((value, buf.len()))));
        }
        Ok(None) => assert!(data.len() < wire::MAX_VARINT_LEN),
        Err(_) => assert!(data.len() >= wire::MAX_VARINT_LEN),
    }

    // Kinds.
    if let Some(&b) = data.first() {
        let raw = b & 0x3f;
        assert_eq!(Kind::from_u8(raw).as_u8(), raw);
    }

    // Error bodies.
    match wire::decode_error(data) {
        Ok((code, text)) => {
            assert!(data.len() >= 8);
            if std::str::from_utf8(&data[8..]).is_ok() {
                assert_eq!(&wire::encode_error(code, &text)[..], data);
            }
        }
        Err(e) => {
            assert!(data.len() < 8);
            assert!(matches!(e, wire::WireError::InvalidErrorData { .. }));
        }
    }

    // InvokeMetadata bodies.
    if let Ok(entries) = wire::decode_metadata(data) {
        let encoded = wire::encode_metadata(entries.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let again = wire::decode_metadata(&encoded).expect("re-encoded metadata decodes");
        assert_eq!(again, entries, "metadata does not survive re-encoding");
        if encoded.len() == data.len() && std::str::from_utf8(data).is_ok() {
            assert_eq!(&encoded[..], data);
        }
    } else {
        assert!(!data.is_empty(), "an empty body is no metadata, not an error");
    }
}

// ---------------------------------------------------------------------------
// Transport byte adapters: websocket messages -> bytes, yamux session
// ---------------------------------------------------------------------------

/// What a [`WsByteStream`](coder_agentsdk::mux::websocket::WsByteStream)
/// reader delivers from raw websocket bytes: the bytes, then how it ended.
fn ws_read_all(role_server: bool, chunks: &[&[u8]], read_size: usize) -> (Vec<u8>, Result<(), io::ErrorKind>) {
    use coder_agentsdk::mux::websocket::{self, WsByteStream};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    let input_len: usize = chunks.iter().map(|c| c.len()).sum();
    futures::executor::block_on(async {
        let (role, config) = if role_server {
            (Role::Server, websocket::server_config())
        } else {
            (Role::Client, websocket::client_config())
        };
        // The production limits, with a small read buffer (tungstenite's
        // default is 128 KiB): it only sets how much one transport read
        // asks for, which the chunking varies anyway, and keeps runs fast.
        let config = config.read_buffer_size(4096);
        let ws = WebSocketStream::from_raw_socket(ChunkIo::new(chunks), role, Some(config)).await;
        let mut stream = WsByteStream::new(ws);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        let end = loop {
            match stream.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    assert!(out.len() <= input_len, "more bytes out than in");
                }
                Err(e) => break Err(e.kind()),
            }
        };
        // A finished reader stays finished.
        match (&end, stream.read(&mut buf).await) {
            (Ok(()), Ok(0)) | (Err(_), Err(_)) => {}
            (end, again) => panic!("read after the end ({end:?}) gave {again:?}"),
        }
        // Writing and closing after any of this is an error or works: no panic.
        let _ = stream.write_all(b"after").await;
        let _ = stream.shutdown().await;
        (out, end)
    })
}

/// The websocket byte adapter, reading arbitrary websocket bytes (frames
/// from a server for the client role, masked frames from a client for the
/// server role), with arbitrary chunking and read sizes.
///
/// Properties: never more payload bytes than input bytes; the bytes and
/// the way the stream ends do not depend on chunking or read size; a reader
/// that has ended keeps reporting its end.
pub fn ws_bytes(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let role_server = seed & 1 == 1;
    let whole = ws_read_all(role_server, &[input], 64 * 1024);
    let split = ws_read_all(role_server, &chunks(seed >> 1, input), 1 + usize::from(seed) % 13);
    assert_eq!(whole, split, "websocket bytes depend on the chunking");
}

/// GoAway codes at frame boundaries of a yamux byte stream, walking the
/// 12-byte headers and skipping Data bodies (an independent reading of the
/// format, to check the session's report against).
fn yamux_goaways(input: &[u8]) -> Vec<u32> {
    let mut codes = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = input.get(pos..pos + 12) {
        let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        match h[1] {
            0 => pos = pos.saturating_add(12).saturating_add(length as usize),
            3 => {
                codes.push(length);
                pos += 12;
            }
            _ => pos += 12,
        }
    }
    codes
}

/// A yamux client session (the `yamux` crate behind our session driver and
/// its read tap) fed arbitrary bytes from the "server", with one stream
/// opened and written by us.
///
/// Properties: the session always ends (bounded wait) once the input is
/// exhausted, with a typed reason; a reported GoAway code is one the input
/// really carries at a frame boundary, and a GoAway as the very first frame
/// is always reported as such; the opened stream's reads end too.
pub fn yamux_session(data: &[u8]) {
    use coder_agentsdk::mux::yamux::{MuxError, Session, SessionConfig};

    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let chunked = chunks(seed, input);
    let io = ChunkIo::new(&chunked);
    let goaways = yamux_goaways(input);
    let first_is_goaway = input.len() >= 12 && input[0] == 0 && input[1] == 3;

    let reason = with_runtime(|rt| {
        rt.block_on(async {
            let session = Session::client(io, SessionConfig::default());
            let reader = match session.open_stream().await {
                Ok(mut stream) => Some(tokio::spawn(async move {
                    let _ = stream.write_all(b"hello").await;
                    let mut sink = Vec::new();
                    let _ = (&mut stream).take(1 << 20).read_to_end(&mut sink).await;
                    sink.len()
                })),
                Err(_) => None,
            };
            let reason = tokio::time::timeout(Duration::from_secs(5), session.closed())
                .await
                .expect("yamux session did not end after its input ended");
            if let Some(reader) = reader {
                let got = tokio::time::timeout(Duration::from_secs(5), reader)
                    .await
                    .expect("stream read did not end after the session ended")
                    .expect("stream task panicked");
                assert!(got <= input.len());
            }
            drop(session);
            reason
        })
    });
    match &reason {
        MuxError::GoAway { code } => {
            assert!(goaways.contains(code), "GoAway {code} reported, input has {goaways:?}");
        }
        other => assert!(
            !first_is_goaway,
            "first frame is a GoAway but session reports {other:?}"
        ),
    }
    // The reason is printable and convertible.
    let _ = reason.to_string();
    let _ = reason.to_io_error();
}

// ---------------------------------------------------------------------------
// SSE
// ---------------------------------------------------------------------------

/// Events (and the error, if any) an [`SseParser`](coder_agentsdk::sse::SseParser) with `limit`
/// gets from `chunks`.
fn sse_parse(limit: usize, chunks: &[&[u8]]) -> (Vec<coder_agentsdk::sse::SseEvent>, Option<String>) {
    let mut parser = coder_agentsdk::sse::SseParser::new(limit);
    let mut events = Vec::new();
    let mut error = None;
    for chunk in chunks {
        let fed = parser.feed(chunk);
        while let Some(event) = parser.next_event() {
            events.push(event);
        }
        if let Err(e) = fed {
            error = Some(e.to_string());
            break;
        }
    }
    (events, error)
}

/// The SSE parser (reinit events) with arbitrary chunk splits, and the
/// decoding of each event's data as a reinitialization event.
///
/// Properties: events and error do not depend on chunking; no event holds
/// more data than the limit; a decoded reinitialization event re-encodes to
/// JSON that decodes to the same event.
pub fn sse(data: &[u8]) {
    use coder_agentsdk::sse::{ReinitializationEvent, DEFAULT_MAX_EVENT_BYTES};

    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limit = [16, 200, DEFAULT_MAX_EVENT_BYTES][usize::from(seed) % 3];
    let whole = sse_parse(limit, &[input]);
    let split = sse_parse(limit, &chunks(seed / 3, input));
    assert_eq!(whole, split, "SSE events depend on the chunking");
    for event in &whole.0 {
        assert!(event.data.len() <= limit, "event data over the limit");
        if let Ok(reinit) = serde_json::from_str::<ReinitializationEvent>(&event.data) {
            let json = serde_json::to_string(&reinit).expect("encode a reinit event");
            let back: ReinitializationEvent = serde_json::from_str(&json).expect("re-encoded reinit event decodes");
            assert_eq!(back, reinit);
        }
    }
}

// ---------------------------------------------------------------------------
// codersdk error bodies
// ---------------------------------------------------------------------------

/// codersdk error bodies: `ApiError::from_response_parts` with an arbitrary
/// status, content type and body.
///
/// Properties: the status is kept; there is always a message; the shown URL
/// never carries the password or query secrets of the request URL; the
/// 401 hint appears exactly for 401; a body that decodes as a `Response`
/// re-encodes to JSON that decodes to the same value.
pub fn api_error(data: &[u8]) {
    use coder_agentsdk::error::{ApiError, Response};
    use coder_agentsdk::Error;

    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]);
    let mut body = &data[3..];
    let owned_ct;
    let content_type = match data[2] {
        0 => None,
        1 => Some("application/json"),
        2 => Some("application/json; charset=utf-8"),
        3 => Some("text/plain"),
        4 => Some(" Application/JSON ;x=y"),
        n => {
            let take = usize::from(n % 32).min(body.len());
            owned_ct = String::from_utf8_lossy(&body[..take]).into_owned();
            body = &body[take..];
            Some(owned_ct.as_str())
        }
    };
    let url = url::Url::parse("https://agent:hunter2pw@coder.example.com/api/v2/x?coder_session_token=s3cr3tvalue&q=1")
        .expect("static URL");
    let err = ApiError::from_response_parts(status, Some("POST"), Some(&url), content_type, body);
    assert_eq!(err.status, status);
    assert!(!err.response.message.is_empty());
    assert_eq!(err.helper.is_some(), status == 401);
    let shown = err.url.as_deref().unwrap_or_default();
    assert!(
        !shown.contains("hunter2pw") && !shown.contains("s3cr3tvalue"),
        "secret in {shown}"
    );
    let _ = err.to_string();
    let _ = err.validation("version");
    let wrapped = Error::from(err);
    assert_eq!(wrapped.status(), Some(status));
    let _ = wrapped.to_string();

    if let Ok(r) = serde_json::from_slice::<Response>(body) {
        let json = serde_json::to_vec(&r).expect("encode a Response");
        let back: Response = serde_json::from_slice(&json).expect("re-encoded Response decodes");
        assert_eq!(back, r);
    }
}

// ---------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------

/// API version strings: `ApiVersion::from_str` (client side) and the
/// server's `validate_version`.
///
/// Properties: a parsed version prints back to a string that parses to it;
/// the server accepts only versions of its major and at most its minor; a
/// strictly formed version the server can serve is accepted.
pub fn version(data: &[u8]) {
    use coder_agentsdk::drpc::ApiVersion;
    use coder_agentsdk::server::validate_version;

    let Some((&minor, input)) = data.split_first() else {
        return;
    };
    let s = String::from_utf8_lossy(input);
    let supported = ApiVersion::new(2, u16::from(minor % 16));
    let parsed = ApiVersion::from_str(&s);
    if let Ok(v) = parsed {
        assert_eq!(ApiVersion::from_str(&v.to_string()), Ok(v));
    }
    match validate_version(&s, supported) {
        Ok(v) => {
            assert_eq!(v.major, supported.major);
            assert!(v <= supported);
        }
        Err(detail) => {
            assert!(!detail.is_empty());
            if let Ok(v) = parsed {
                assert!(v.major != supported.major || v > supported, "{s:?} refused: {detail}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CODER_AGENT_* settings
// ---------------------------------------------------------------------------

/// The `CODER_AGENT_*` settings as the demo agent reads them: `CODER_AGENT_URL`,
/// `CODER_AGENT_AUTH`, `CODER_AGENT_TOKEN`, `CODER_AGENT_METADATA_URL`, plus
/// the RPC role and version, from fields of the input separated by 0xFF.
///
/// Properties: a parsed auth method prints back to its own name; a built
/// client's RPC URL is ws/wss at the RPC path with the version; the token
/// never appears in the client's `Debug` output.
pub fn settings(data: &[u8]) {
    use coder_agentsdk::auth::AuthMethod;
    use coder_agentsdk::drpc::ApiVersion;
    use coder_agentsdk::rpc::{rpc_url, RPC_PATH};
    use coder_agentsdk::Client;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();

    let fields: Vec<String> = data
        .split(|&b| b == 0xff)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let field = |i: usize| fields.get(i).map(String::as_str);
    let (url, auth, token, metadata_url, role) = (
        field(0).unwrap_or_default(),
        field(1).unwrap_or_default(),
        field(2),
        field(3),
        field(4),
    );
    let minor = field(5).map_or(0, |f| {
        f.bytes()
            .fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(u16::from(b)))
    });

    let method = match AuthMethod::from_str(auth) {
        Ok(m) => {
            assert_eq!(AuthMethod::from_str(m.as_str()).ok(), Some(m));
            assert_eq!(m.to_string(), m.as_str());
            m
        }
        Err(e) => {
            let _ = e.to_string();
            AuthMethod::Token
        }
    };
    let http = HTTP
        .get_or_init(|| {
            coder_agentsdk::client::http_client_builder()
                .build()
                .expect("build the shared HTTP client")
        })
        .clone();
    let built = Client::builder(url)
        .http_client(http.clone())
        .auth_method(method, token, metadata_url)
        .and_then(|b| b.build());
    let client = match built {
        Ok(client) => client,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Some(token) = token.filter(|t| t.len() >= 12 && !url.contains(*t)) {
        let shown = format!("{client:?}");
        if shown.contains(token) {
            // The token's text may also come from elsewhere (the URL after
            // normalisation, the Debug format itself): it is a leak only if
            // the same client with another token does not show that text.
            let other = Client::builder(url)
                .http_client(http)
                .auth_method(method, Some("\u{1}other-token\u{1}"), metadata_url)
                .and_then(|b| b.build());
            if let Ok(other) = other {
                assert!(format!("{other:?}").contains(token), "token in Debug output: {shown}");
            }
        }
    }
    match rpc_url(client.base_url(), ApiVersion::new(2, minor), role) {
        Ok(u) => {
            assert!(matches!(u.scheme(), "ws" | "wss"), "scheme {}", u.scheme());
            assert!(u.path().ends_with(RPC_PATH.trim_start_matches('/')) || u.path() == RPC_PATH);
            let version = format!("2.{minor}");
            assert!(u.query_pairs().any(|(k, v)| k == "version" && v == version));
            let _ = u.as_str().into_client_request();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

// ---------------------------------------------------------------------------
// Protobuf -> Rust conversions
// ---------------------------------------------------------------------------

/// Decodes `bytes` as `P`; if that works and `R: TryFrom<P>` accepts it,
/// converts back and checks that the second trip gives the same protobuf
/// bytes (conversions are idempotent after the first, lossy, trip).
fn convert_roundtrip<P, R>(bytes: &[u8])
where
    P: prost::Message + Default + TryFrom<R>,
    R: TryFrom<P> + Clone + std::fmt::Debug,
    <R as TryFrom<P>>::Error: std::fmt::Display,
    <P as TryFrom<R>>::Error: std::fmt::Debug,
{
    let Ok(proto) = P::decode(bytes) else {
        return;
    };
    let rust = match R::try_from(proto) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let proto2 = P::try_from(rust.clone()).unwrap_or_else(|e| panic!("{rust:?} does not convert back: {e:?}"));
    let bytes2 = proto2.encode_to_vec();
    let rust2 = R::try_from(P::decode(&bytes2[..]).expect("re-encoded message decodes"))
        .unwrap_or_else(|e| panic!("converted-back {rust:?} is refused: {e}"));
    let bytes3 = P::try_from(rust2.clone())
        .unwrap_or_else(|e| panic!("{rust2:?} does not convert back: {e:?}"))
        .encode_to_vec();
    assert_eq!(bytes2, bytes3, "conversion is not stable: {rust:?} then {rust2:?}");
}

/// A [`convert_roundtrip`] for the app health batch, which converts
/// through functions rather than `TryFrom`.
fn convert_app_healths(bytes: &[u8]) {
    use coder_agentsdk::agent::{app_healths_from_proto, proto_from_app_healths};
    use coder_agentsdk::proto::agent::BatchUpdateAppHealthRequest;
    use prost::Message;

    let Ok(proto) = BatchUpdateAppHealthRequest::decode(bytes) else {
        return;
    };
    let Ok(healths) = app_healths_from_proto(&proto) else {
        return;
    };
    let back = proto_from_app_healths(&healths);
    assert_eq!(app_healths_from_proto(&back), Ok(healths));
}

/// Every protobuf -> Rust conversion of the agent API: the first input byte
/// picks the message type, the rest is decoded as that message.
pub fn convert(data: &[u8]) {
    use coder_agentsdk::agent as a;
    use coder_agentsdk::proto::{agent as p, tailnet as t};

    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 18 {
        0 => convert_roundtrip::<p::Manifest, a::Manifest>(bytes),
        1 => convert_roundtrip::<p::WorkspaceApp, a::WorkspaceApp>(bytes),
        2 => convert_roundtrip::<p::WorkspaceAgentScript, a::Script>(bytes),
        3 => convert_roundtrip::<p::workspace_agent_metadata::Description, a::MetadataDescription>(bytes),
        4 => convert_roundtrip::<p::WorkspaceAgentDevcontainer, a::Devcontainer>(bytes),
        5 => convert_roundtrip::<p::Lifecycle, a::Lifecycle>(bytes),
        6 => convert_roundtrip::<p::Startup, a::Startup>(bytes),
        7 => convert_roundtrip::<p::UpdateAppStatusRequest, a::AppStatus>(bytes),
        8 => convert_roundtrip::<p::Log, a::Log>(bytes),
        9 => convert_roundtrip::<p::workspace_agent_metadata::Result, a::MetadataResult>(bytes),
        10 => convert_roundtrip::<p::Metadata, a::Metadata>(bytes),
        11 => convert_roundtrip::<p::ServiceBanner, a::ServiceBanner>(bytes),
        12 => convert_roundtrip::<p::BannerConfig, a::ServiceBanner>(bytes),
        13 => convert_roundtrip::<t::DerpMap, a::DerpMap>(bytes),
        14 => convert_roundtrip::<p::Stats, a::Stats>(bytes),
        15 => convert_roundtrip::<p::stats::Metric, a::AgentMetric>(bytes),
        16 => convert_app_healths(bytes),
        _ => {
            // Log output as it arrives from a process: any bytes.
            let s = a::sanitize_log_output_bytes(bytes);
            assert!(!s.contains('\0'));
            assert_eq!(a::sanitize_log_output(&s), s.as_str());
        }
    }
}

/// One fuzz entry point: it takes the input and panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by name (the corpus replay test walks this table).
pub const TARGETS: &[(&str, Target)] = &[
    ("drpc_wire", drpc_wire),
    ("drpc_payloads", drpc_payloads),
    ("ws_bytes", ws_bytes),
    ("yamux_session", yamux_session),
    ("sse", sse),
    ("api_error", api_error),
    ("version", version),
    ("settings", settings),
    ("convert", convert),
];
