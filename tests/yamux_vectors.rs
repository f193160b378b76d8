//! Our yamux session against bytes recorded from Go's hashicorp/yamux v0.1.2
//! (tests/vectors/yamux). The Go side is played by a scripted peer that
//! parses what our client writes and answers with the recorded frames.

use std::time::Duration;

use coder_agentsdk::mux::websocket::{client_config, server_config, WsByteStream};
use coder_agentsdk::mux::yamux::{MuxError, Session, SessionConfig};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const T: Duration = Duration::from_secs(10);

/// Fails the test instead of hanging CI (a guard, not a timing assertion).
async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn vector(name: &str) -> Value {
    let path = format!("{}/tests/vectors/yamux/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("vector json")
}

// ---- a 12-byte yamux header parser, written from the README ----

const DATA: u8 = 0;
const WINDOW_UPDATE: u8 = 1;
const PING: u8 = 2;
const GO_AWAY: u8 = 3;
const SYN: u16 = 1;
const ACK: u16 = 2;
const FIN: u16 = 4;
const RST: u16 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hdr {
    version: u8,
    ty: u8,
    flags: u16,
    stream_id: u32,
    length: u32,
}

impl Hdr {
    fn parse(b: &[u8]) -> Hdr {
        assert!(b.len() >= 12, "short header");
        Hdr {
            version: b[0],
            ty: b[1],
            flags: u16::from_be_bytes([b[2], b[3]]),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = self.version;
        b[1] = self.ty;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    fn body_len(&self) -> usize {
        if self.ty == DATA {
            self.length as usize
        } else {
            0
        }
    }

    fn type_name(&self) -> &'static str {
        match self.ty {
            DATA => "Data",
            WINDOW_UPDATE => "WindowUpdate",
            PING => "Ping",
            GO_AWAY => "GoAway",
            _ => "?",
        }
    }

    fn flag_names(&self) -> Vec<&'static str> {
        [(SYN, "SYN"), (ACK, "ACK"), (FIN, "FIN"), (RST, "RST")]
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Splits a byte stream into (offset, header, body).
fn decode_all(bytes: &[u8]) -> Vec<(usize, Hdr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        let h = Hdr::parse(&bytes[off..off + 12]);
        let body = bytes[off + 12..off + 12 + h.body_len()].to_vec();
        out.push((off, h, body));
        off += 12 + h.body_len();
    }
    out
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> (Hdr, Vec<u8>) {
    let mut hb = [0u8; 12];
    r.read_exact(&mut hb).await.expect("read header");
    let h = Hdr::parse(&hb);
    let mut body = vec![0u8; h.body_len()];
    r.read_exact(&mut body).await.expect("read body");
    (h, body)
}

/// Reads the next non-Ping frame; Ping SYNs (yamux RTT probes of our client)
/// are answered like Go does: ACK with the same opaque id.
async fn next_non_ping<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> (Hdr, Vec<u8>) {
    loop {
        let (h, body) = read_frame(s).await;
        if h.ty == PING {
            assert_eq!(h.stream_id, 0);
            assert_eq!(h.flags, SYN, "our client only sends Ping SYN unasked");
            let ack = Hdr { flags: ACK, ..h };
            s.write_all(&ack.encode()).await.expect("write ping ack");
            continue;
        }
        return (h, body);
    }
}

fn write_bytes(w: &Value) -> Vec<u8> {
    hex::decode(w["hex"].as_str().expect("hex")).expect("hex")
}

/// The flow-control vector's elided bodies: byte i = i mod 251 over the
/// whole 300 KiB the server sends.
fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

/// Rebuilds everything one side wrote from its `*_writes` list.
fn rebuild_writes(writes: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut elided = 0;
    for w in writes {
        let len = w["len"].as_u64().expect("len") as usize;
        if w.get("hex").is_some() {
            let b = write_bytes(w);
            assert_eq!(b.len(), len);
            out.extend_from_slice(&b);
        } else {
            let body = pattern(elided, len);
            let first = hex::decode(w["first_bytes_hex"].as_str().expect("first")).expect("hex");
            assert_eq!(&body[..first.len()], &first[..], "generator matches recording");
            elided += len;
            out.extend_from_slice(&body);
        }
    }
    out
}

#[test]
fn recorded_frames_decode_as_documented() {
    for file in [
        "yamux_open_data_close_ping_goaway.json",
        "yamux_flow_control_window_update.json",
        "yamux_over_websocket_get_manifest.json",
    ] {
        let v = vector(file);
        for (side, dir) in [("client", "client_to_server_hex"), ("server", "server_to_client_hex")] {
            let writes = v[format!("{side}_writes")].as_array().expect("writes");
            let bytes = rebuild_writes(writes);
            if let Some(h) = v.get(dir) {
                let all = hex::decode(h.as_str().expect("hex")).expect("hex");
                assert_eq!(all, bytes, "{file}: {dir} = concatenated {side}_writes");
            }
            let frames = decode_all(&bytes);
            let want = v[format!("{side}_frames")].as_array().expect("frames");
            assert_eq!(frames.len(), want.len(), "{file}/{side}: frame count");
            for ((off, h, body), w) in frames.iter().zip(want) {
                let ctx = format!("{file}/{side} @{off}");
                assert_eq!(*off as u64, w["offset"].as_u64().unwrap(), "{ctx}");
                assert_eq!(hex::encode(h.encode()), w["header_hex"].as_str().unwrap(), "{ctx}");
                assert_eq!(h.version, 0, "{ctx}");
                assert_eq!(u64::from(h.version), w["version"].as_u64().unwrap(), "{ctx}");
                assert_eq!(u64::from(h.ty), w["type"].as_u64().unwrap(), "{ctx}");
                assert_eq!(h.type_name(), w["type_name"].as_str().unwrap(), "{ctx}");
                assert_eq!(u64::from(h.flags), w["flags"].as_u64().unwrap(), "{ctx}");
                let names: Vec<&str> = w["flag_names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
                    .collect();
                assert_eq!(h.flag_names(), names, "{ctx}");
                assert_eq!(u64::from(h.stream_id), w["stream_id"].as_u64().unwrap(), "{ctx}");
                assert_eq!(u64::from(h.length), w["length"].as_u64().unwrap(), "{ctx}");
                if let Some(b) = w.get("body_hex") {
                    assert_eq!(hex::encode(body), b.as_str().unwrap(), "{ctx}");
                }
                if h.ty == DATA {
                    assert_eq!(body.len(), h.length as usize, "{ctx}");
                }
                if side == "client" && h.ty == DATA {
                    assert_eq!(h.stream_id % 2, 1, "{ctx}: client streams are odd");
                }
            }
        }
    }
}

/// Go server script for yamux_open_data_close_ping_goaway.json against our
/// client: open stream 1 + "hello", recorded ACK + "world" + FIN, our FIN,
/// a Ping from the server, then the recorded GoAway.
#[tokio::test]
async fn go_server_script_open_data_close_ping_goaway() {
    let v = vector("yamux_open_data_close_ping_goaway.json");
    let sw: Vec<Vec<u8>> = v["server_writes"].as_array().unwrap().iter().map(write_bytes).collect();
    let cw: Vec<Vec<u8>> = v["client_writes"].as_array().unwrap().iter().map(write_bytes).collect();

    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let session = Session::client(ours, SessionConfig::default());
    let mut stream = guard("open", session.open_stream()).await.expect("open");
    assert_eq!(stream.id() % 2, 1, "client stream ids are odd");
    stream.write_all(b"hello").await.unwrap();
    stream.flush().await.unwrap();

    // Our client's first frame on the stream opens it: SYN, odd id, v0.
    let mut got = Vec::new();
    let mut first = true;
    while got.len() < 5 {
        let (h, body) = guard("client frames", next_non_ping(&mut peer)).await;
        assert_eq!(h.version, 0);
        assert_eq!(h.stream_id, stream.id());
        if first {
            assert!(h.ty == DATA || h.ty == WINDOW_UPDATE, "{h:?}");
            assert_ne!(h.flags & SYN, 0, "first frame carries SYN: {h:?}");
            first = false;
        } else {
            assert_eq!(h.flags & (SYN | FIN | RST), 0, "{h:?}");
        }
        got.extend_from_slice(&body);
    }
    assert_eq!(got, b"hello");

    // Go's answer, write by write: ACK, Data header, "world", FIN.
    for w in &sw[..4] {
        peer.write_all(w).await.unwrap();
    }
    let mut echo = Vec::new();
    guard("read world + EOF", stream.read_to_end(&mut echo)).await.unwrap();
    assert_eq!(echo, b"world");

    // Our half-close: a FIN on stream 1 (Data or WindowUpdate, length 0).
    stream.shutdown().await.unwrap();
    let (h, body) = guard("client FIN", next_non_ping(&mut peer)).await;
    assert_eq!((h.stream_id, h.flags & FIN, h.length), (1, FIN, 0), "{h:?}");
    assert!(body.is_empty());
    drop(stream); // closed both ways: nothing more on the wire

    // A Ping from the Go side: we must echo the opaque id with ACK.
    let ping = Hdr {
        version: 0,
        ty: PING,
        flags: SYN,
        stream_id: 0,
        length: 0xdead_beef,
    };
    peer.write_all(&ping.encode()).await.unwrap();
    let (h, _) = guard("ping ack", read_frame(&mut peer)).await;
    let h = if h.flags == SYN {
        // our own RTT probe raced ahead; answer it with the recorded ACK (id 0)
        assert_eq!(h.length, 0);
        peer.write_all(&sw[4]).await.unwrap();
        guard("ping ack", read_frame(&mut peer)).await.0
    } else {
        h
    };
    assert_eq!(h, Hdr { flags: ACK, ..ping });

    // The recorded GoAway (code 0) ends our session with a typed error.
    assert_eq!(Hdr::parse(&cw[5]).ty, GO_AWAY);
    peer.write_all(&cw[5]).await.unwrap();
    let reason = guard("closed", session.closed()).await;
    assert!(matches!(reason, MuxError::GoAway { code: 0 }), "{reason:?}");
    assert!(session.is_closed());
    assert!(matches!(session.open_stream().await, Err(MuxError::GoAway { code: 0 })));
    // The transport is dropped: the peer sees EOF.
    let mut rest = Vec::new();
    guard("peer EOF", peer.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(session.open_streams(), 0);
}

/// Go server script for yamux_flow_control_window_update.json: a 262144-byte
/// Data frame (a whole window in one frame), then the rest only after our
/// client has given credit back.
#[tokio::test]
async fn go_server_script_flow_control() {
    let v = vector("yamux_flow_control_window_update.json");
    let sw = v["server_writes"].as_array().unwrap();
    let ack = write_bytes(&sw[0]);
    let big_hdr = Hdr::parse(&write_bytes(&sw[1]));
    let rest_hdr = Hdr::parse(&write_bytes(&sw[3]));
    let fin = write_bytes(&sw[5]);
    assert_eq!(big_hdr.length, 262_144);
    assert_eq!(rest_hdr.length, 45_056);
    let total = (big_hdr.length + rest_hdr.length) as usize;

    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let session = Session::client(ours, SessionConfig::default());
    let mut stream = guard("open", session.open_stream()).await.expect("open");
    stream.write_all(b"go").await.unwrap();
    stream.flush().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.map(|_| (buf, stream))
    });

    let (h, body) = guard("SYN + go", next_non_ping(&mut peer)).await;
    assert_ne!(h.flags & SYN, 0);
    assert_eq!((h.ty, h.stream_id, body.as_slice()), (DATA, 1, &b"go"[..]));

    // Go's send window for the stream: 256 KiB.
    let mut window: u64 = 262_144;
    peer.write_all(&ack).await.unwrap();
    assert!(u64::from(big_hdr.length) <= window);
    peer.write_all(&big_hdr.encode()).await.unwrap();
    peer.write_all(&pattern(0, big_hdr.length as usize)).await.unwrap();
    window -= u64::from(big_hdr.length);

    // Wait for credit, as the Go sender blocks in Stream.Write.
    let mut updates = Vec::new();
    while window < u64::from(rest_hdr.length) {
        let (h, _) = guard("window update", next_non_ping(&mut peer)).await;
        assert_eq!((h.ty, h.stream_id), (WINDOW_UPDATE, 1), "{h:?}");
        assert_eq!(h.flags & (SYN | FIN | RST), 0, "{h:?}");
        updates.push(h.length);
        window += u64::from(h.length);
    }
    eprintln!("credit returned by our client: {updates:?}");
    assert!(
        updates.iter().all(|&d| d >= 131_072),
        "credit comes back in halves of the window or more: {updates:?}"
    );
    assert!(window <= 262_144, "never more credit than the 256 KiB window");

    assert!(u64::from(rest_hdr.length) <= window);
    peer.write_all(&rest_hdr.encode()).await.unwrap();
    peer.write_all(&pattern(big_hdr.length as usize, rest_hdr.length as usize))
        .await
        .unwrap();
    peer.write_all(&fin).await.unwrap();

    let (buf, mut stream) = guard("read all", reader).await.unwrap().unwrap();
    assert_eq!(buf.len(), total);
    assert!(buf == pattern(0, total), "payload intact");
    stream.shutdown().await.unwrap();
    loop {
        let (h, _) = guard("client FIN", next_non_ping(&mut peer)).await;
        if h.ty == WINDOW_UPDATE && h.flags == 0 {
            continue; // late credit for the rest
        }
        assert_eq!((h.stream_id, h.flags & FIN), (1, FIN), "{h:?}");
        break;
    }
    assert!(!session.is_closed(), "a whole-window frame is not fatal");
    drop(stream);
    session.close();
    assert!(matches!(
        guard("closed", session.closed()).await,
        MuxError::ClosedLocally
    ));
}

/// yamux_over_websocket_get_manifest.json: the server's recorded websocket
/// messages (12-byte headers and bodies in separate messages) reach our
/// client's websocket adapter exactly as recorded; the stream yields the
/// concatenated Data bodies.
#[tokio::test]
async fn go_server_messages_over_websocket() {
    let v = vector("yamux_over_websocket_get_manifest.json");
    let sw: Vec<Vec<u8>> = v["server_writes"].as_array().unwrap().iter().map(write_bytes).collect();
    let server_bodies: Vec<u8> = v["server_frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.get("body_hex"))
        .flat_map(|b| hex::decode(b.as_str().unwrap()).unwrap())
        .collect();
    let client_bodies: Vec<Vec<u8>> = v["client_frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.get("body_hex"))
        .map(|b| hex::decode(b.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(client_bodies.len(), 2);

    let (a, b) = tokio::io::duplex(64 * 1024);
    let client_ws = WebSocketStream::from_raw_socket(a, Role::Client, Some(client_config())).await;
    let mut server_ws = WebSocketStream::from_raw_socket(b, Role::Server, Some(server_config())).await;

    let session = Session::client(WsByteStream::new(client_ws), SessionConfig::default());
    let mut stream = guard("open", session.open_stream()).await.expect("open");
    stream.write_all(&client_bodies[0]).await.unwrap();
    stream.flush().await.unwrap();

    // Scripted coderd: reassemble our messages into frames.
    let mut inbox = Vec::<u8>::new();
    let mut got = Vec::new();
    let mut saw_syn = false;
    while got.len() < client_bodies[0].len() {
        let (h, body) = guard("ws frame", next_ws_frame(&mut server_ws, &mut inbox)).await;
        if h.ty == PING {
            continue;
        }
        assert_eq!((h.version, h.stream_id), (0, 1), "{h:?}");
        saw_syn |= h.flags & SYN != 0;
        got.extend_from_slice(&body);
    }
    assert!(saw_syn);
    assert_eq!(got, client_bodies[0]);

    // Go's messages, one websocket message per recorded Write: ACK, header,
    // 838-byte body, header, 4-byte body.
    for m in &sw[..5] {
        server_ws.send(Message::Binary(m.clone().into())).await.unwrap();
    }
    let mut resp = vec![0u8; server_bodies.len()];
    guard("read response", stream.read_exact(&mut resp)).await.unwrap();
    assert_eq!(resp, server_bodies);

    // Client's Close packet, then the recorded FIN from Go.
    stream.write_all(&client_bodies[1]).await.unwrap();
    stream.flush().await.unwrap();
    let mut got = Vec::new();
    while got.len() < client_bodies[1].len() {
        let (h, body) = guard("ws frame", next_ws_frame(&mut server_ws, &mut inbox)).await;
        if h.ty != PING {
            got.extend_from_slice(&body);
        }
    }
    assert_eq!(got, client_bodies[1]);
    server_ws.send(Message::Binary(sw[5].clone().into())).await.unwrap();
    let mut rest = Vec::new();
    guard("EOF", stream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    stream.shutdown().await.unwrap();
    let (h, _) = guard("FIN", next_non_ping_ws(&mut server_ws, &mut inbox)).await;
    assert_eq!((h.stream_id, h.flags & FIN), (1, FIN));
    drop(stream);

    // Local close: GoAway(0) (Go ignores code 0), then a websocket Close.
    session.close();
    let (h, _) = guard("GoAway", next_non_ping_ws(&mut server_ws, &mut inbox)).await;
    assert_eq!((h.ty, h.length), (GO_AWAY, 0));
    let close = guard("ws close", server_ws.next()).await;
    assert!(
        matches!(close, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000),
        "{close:?}"
    );
    assert!(matches!(
        guard("closed", session.closed()).await,
        MuxError::ClosedLocally
    ));
}

async fn next_non_ping_ws<S>(ws: &mut WebSocketStream<S>, inbox: &mut Vec<u8>) -> (Hdr, Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let (h, b) = next_ws_frame(ws, inbox).await;
        if h.ty != PING {
            return (h, b);
        }
    }
}

/// Next yamux frame from the concatenated binary messages; answers our
/// client's Ping SYNs with ACK like Go.
async fn next_ws_frame<S>(ws: &mut WebSocketStream<S>, inbox: &mut Vec<u8>) -> (Hdr, Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if inbox.len() >= 12 {
            let h = Hdr::parse(inbox);
            if inbox.len() >= 12 + h.body_len() {
                let body = inbox[12..12 + h.body_len()].to_vec();
                inbox.drain(..12 + h.body_len());
                if h.ty == PING && h.flags == SYN {
                    let ack = Hdr { flags: ACK, ..h };
                    ws.send(Message::Binary(ack.encode().to_vec().into())).await.unwrap();
                }
                return (h, body);
            }
        }
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => inbox.extend_from_slice(&b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("unexpected websocket message: {other:?}"),
        }
    }
}
