//! The embedded server facing hostile peers (issue 10 §3): each test is named
//! after one attack, runs it against a server, checks how the server answers
//! (closing the connection where a Go server on hashicorp/yamux would end the
//! session at once) and then proves that the SAME server still serves a
//! fresh, well-behaved agent (`Client` + `connect_rpc28_with_role("agent")`
//! + `get_manifest`).
//!
//! Attackers are raw: a tokio `TcpStream`, a tokio-tungstenite client
//! handshake, then hand-made websocket messages and yamux frames (12-byte
//! header: version, type, flags u16 BE, stream id u32 BE, length u32 BE).
//! Every wait is bounded by [`guard`] (a hang guard, not a timing assertion).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::{EmbeddedServer, ServerBuilder};
use coder_agentsdk::Client;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Hang guard for every await that depends on the server.
const GUARD: Duration = Duration::from_secs(20);

async fn guard<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hung for {GUARD:?}: {what}"),
    }
}

// yamux frame types and flags.
const DATA: u8 = 0;
const WINDOW_UPDATE: u8 = 1;
const PING: u8 = 2;
const GO_AWAY: u8 = 3;
const SYN: u16 = 1;
const ACK: u16 = 2;
const FIN: u16 = 4;
const RST: u16 = 8;

/// One yamux frame header (and body) built by hand.
fn yamux_frame(version: u8, kind: u8, flags: u16, stream: u32, length: u32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(12 + body.len());
    f.push(version);
    f.push(kind);
    f.extend_from_slice(&flags.to_be_bytes());
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(&length.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Opens stream `id` the way Go does: a window update with SYN and no credit.
fn syn(id: u32) -> Vec<u8> {
    yamux_frame(0, WINDOW_UPDATE, SYN, id, 0, &[])
}

/// A data frame on stream `id`.
fn data(id: u32, flags: u16, body: &[u8]) -> Vec<u8> {
    yamux_frame(0, DATA, flags, id, body.len() as u32, body)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn server() -> EmbeddedServer {
    EmbeddedServer::start().await.expect("start the embedded server")
}

type Ws = WebSocketStream<TcpStream>;

/// A raw attacker: TCP connect plus a websocket client handshake with the
/// agent token, nothing else.
async fn attacker(server: &EmbeddedServer) -> Ws {
    let tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let url = format!(
        "ws://{}/api/v2/workspaceagents/me/rpc?version=2.8&role=agent",
        server.addr()
    );
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Coder-Session-Token", server.token().parse().expect("header value"));
    let (ws, response) = guard(
        "attacker handshake",
        tokio_tungstenite::client_async_with_config(request, tcp, None),
    )
    .await
    .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// Reads until the server ends the websocket (Close frame, EOF or reset).
/// Returns the binary payload bytes that arrived before that. Panics (via
/// the guard) if the server keeps the connection open.
async fn server_ends_connection(ws: &mut Ws, what: &str) -> Vec<u8> {
    guard(what, async {
        let mut bytes = Vec::new();
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return bytes,
                Some(Ok(Message::Binary(b))) => bytes.extend_from_slice(&b),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
}

/// The yamux frames in `bytes` as (type, flags, stream id, length).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u16, u32, u32)> {
    let mut out = Vec::new();
    while bytes.len() >= 12 {
        let kind = bytes[1];
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        let id = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let body = if kind == DATA { len as usize } else { 0 };
        out.push((kind, flags, id, len));
        bytes = &bytes[(12 + body).min(bytes.len())..];
    }
    out
}

/// Sends messages, ignoring a failure because the server closed first.
async fn send_all(ws: &mut Ws, messages: impl IntoIterator<Item = Message>) {
    for m in messages {
        if ws.feed(m).await.is_err() {
            return;
        }
    }
    let _ = ws.flush().await;
}

/// The proof after each attack: a fresh, well-behaved agent on the SAME
/// server connects and gets its manifest.
async fn fresh_agent_is_served(server: &EmbeddedServer) {
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .build()
        .expect("client");
    let manifest = guard("fresh agent", async {
        let (agent, _tailnet) = client.connect_rpc28_with_role("agent").await.expect("connect");
        agent.get_manifest(Default::default()).await.expect("get_manifest")
    })
    .await;
    assert_eq!(manifest.agent_name, "main");
}

/// Waits until the server has forgotten every attacker connection.
async fn server_forgets_connections(server: &EmbeddedServer) {
    guard("server drops the connection from its table", async {
        while server.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Websocket-level attacks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn random_binary_websocket_messages_end_the_session_and_close_the_connection() {
    let server = server().await;
    for seed in 1..=8u64 {
        let mut ws = attacker(&server).await;
        let junk: Vec<Message> = (0..64)
            .map(|i| Message::Binary(Bytes::from(random_bytes(seed * 1000 + i, 1 + (i as usize * 97) % 4096))))
            .collect();
        send_all(&mut ws, junk).await;
        server_ends_connection(&mut ws, "server closes after random bytes").await;
    }
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn random_bytes_behind_a_plausible_yamux_header_end_the_session_and_close_the_connection() {
    // Version 0 and a valid type in front of random bytes: the header parses,
    // so the session gets as far as yamux's protocol checks (stream ids,
    // windows, unexpected pongs) before the garbage ends it.
    let server = server().await;
    for seed in 1..=24u64 {
        let mut ws = attacker(&server).await;
        let mut first = random_bytes(seed, 4096);
        first[0] = 0;
        first[1] = (seed % 3) as u8;
        let mut junk = vec![Message::Binary(Bytes::from(first))];
        junk.extend((0..16).map(|i| Message::Binary(Bytes::from(random_bytes(seed * 7919 + i, 2048)))));
        send_all(&mut ws, junk).await;
        server_ends_connection(&mut ws, "server closes after random bytes behind a valid header").await;
    }
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn websocket_message_over_4_mib_ends_the_session_and_closes_the_connection() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    send_all(&mut ws, [Message::Binary(Bytes::from(vec![0u8; (4 << 20) + 1]))]).await;
    server_ends_connection(&mut ws, "server closes after an oversized message").await;
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn websocket_text_message_ends_the_session_and_closes_the_connection() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    send_all(&mut ws, [Message::text("hello coderd")]).await;
    server_ends_connection(&mut ws, "server closes after a text message").await;
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn websocket_ping_flood_from_a_reading_peer_gets_every_pong() {
    // A Go peer's `Conn.Ping` waits for the pong carrying its own payload;
    // a flood of 5,000 distinct pings from a peer that reads must get all
    // 5,000 pongs, or those pings would wait forever.
    let server = server().await;
    let ws = attacker(&server).await;
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 5_000 {
            match stream.next().await {
                Some(Ok(Message::Pong(p))) => {
                    seen.insert(String::from_utf8_lossy(&p).into_owned());
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
        seen.len()
    });
    guard("5,000 pings written", async {
        for i in 0..5_000u32 {
            sink.feed(Message::Ping(Bytes::from(format!("ping-{i}"))))
                .await
                .unwrap();
        }
        sink.flush().await.unwrap();
    })
    .await;
    assert_eq!(guard("every pong back", reader).await.unwrap(), 5_000);
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn websocket_ping_flood_is_survived_and_the_peer_is_not_stuck() {
    // 200,000 pings of 125 bytes (25 MB) written without reading a single
    // pong. The server keeps reading (tungstenite keeps one pong pending);
    // once its own writes have been blocked for the write timeout it ends
    // the session. Either way the attacker's writes never hang.
    let server = server().await;
    let mut ws = attacker(&server).await;
    let payload = Bytes::from(vec![7u8; 125]);
    tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..200_000 {
            if ws.feed(Message::Ping(payload.clone())).await.is_err() {
                break;
            }
        }
        let _ = ws.flush().await;
    })
    .await
    .expect("the attacker's writes are not stuck");
    fresh_agent_is_served(&server).await;
    drop(ws);
    server_forgets_connections(&server).await;
}

// ---------------------------------------------------------------------------
// yamux-level attacks
// ---------------------------------------------------------------------------

/// Sends `frames` (one websocket message each), expects the server to end
/// the session and close the connection, and returns what it sent first.
async fn yamux_attack_closes(frames: Vec<Vec<u8>>, what: &str) -> Vec<u8> {
    let server = server().await;
    let mut ws = attacker(&server).await;
    send_all(&mut ws, frames.into_iter().map(|f| Message::Binary(Bytes::from(f)))).await;
    let sent = server_ends_connection(&mut ws, what).await;
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
    sent
}

/// True if the server sent a GoAway with a protocol-error code (1).
fn sent_protocol_error(bytes: &[u8]) -> bool {
    frames(bytes)
        .iter()
        .any(|&(kind, _, _, code)| kind == GO_AWAY && code == 1)
}

#[tokio::test]
async fn yamux_bad_version_ends_the_session() {
    yamux_attack_closes(vec![yamux_frame(1, PING, SYN, 0, 1, &[])], "bad version").await;
}

#[tokio::test]
async fn yamux_bad_type_ends_the_session() {
    yamux_attack_closes(vec![yamux_frame(0, 9, SYN, 0, 1, &[])], "bad type").await;
}

#[tokio::test]
async fn yamux_length_0xffffffff_ends_the_session() {
    yamux_attack_closes(
        vec![yamux_frame(0, DATA, SYN, 1, u32::MAX, &[0; 64])],
        "data frame announcing 4 GiB",
    )
    .await;
}

#[tokio::test]
async fn yamux_duplicate_syn_ends_the_session_with_go_away_protocol_error() {
    let sent = yamux_attack_closes(vec![syn(1), syn(1)], "duplicate SYN").await;
    assert!(
        sent_protocol_error(&sent),
        "GoAway(1) before closing: {:?}",
        frames(&sent)
    );
}

#[tokio::test]
async fn yamux_even_stream_id_from_client_ends_the_session_with_go_away_protocol_error() {
    let sent = yamux_attack_closes(vec![syn(2)], "even stream id").await;
    assert!(
        sent_protocol_error(&sent),
        "GoAway(1) before closing: {:?}",
        frames(&sent)
    );
}

#[tokio::test]
async fn yamux_window_update_of_2_pow_32_minus_1_ends_the_session() {
    let sent = yamux_attack_closes(
        vec![syn(1), yamux_frame(0, WINDOW_UPDATE, 0, 1, u32::MAX, &[])],
        "window update overflowing the send window",
    )
    .await;
    assert!(
        sent_protocol_error(&sent),
        "GoAway(1) before closing: {:?}",
        frames(&sent)
    );
}

#[tokio::test]
async fn yamux_window_update_of_2_pow_32_minus_1_with_syn_ends_the_session() {
    let sent = yamux_attack_closes(
        vec![yamux_frame(0, WINDOW_UPDATE, SYN, 1, u32::MAX, &[])],
        "SYN with a credit overflowing the window",
    )
    .await;
    assert!(
        sent_protocol_error(&sent),
        "GoAway(1) before closing: {:?}",
        frames(&sent)
    );
}

#[tokio::test]
async fn yamux_data_beyond_the_stream_window_ends_the_session() {
    let sent = yamux_attack_closes(
        vec![data(1, SYN, &vec![0u8; 256 * 1024 + 1])],
        "first data frame over the 256 KiB window",
    )
    .await;
    assert!(
        sent_protocol_error(&sent),
        "GoAway(1) before closing: {:?}",
        frames(&sent)
    );
}

#[tokio::test]
async fn yamux_traffic_after_go_away_ends_the_session() {
    // The peer says GoAway (normal) and keeps talking; the server ends the
    // session at the GoAway, so the later frames reach nobody.
    yamux_attack_closes(
        vec![
            yamux_frame(0, GO_AWAY, 0, 0, 0, &[]),
            syn(1),
            data(1, 0, b"after goaway"),
        ],
        "traffic after GoAway",
    )
    .await;
}

#[tokio::test]
async fn yamux_data_on_a_stream_never_opened_is_ignored_and_the_session_lives_on() {
    // hashicorp/yamux only logs a frame for a missing stream; so do we. The
    // session must still answer a ping afterwards.
    let server = server().await;
    let mut ws = attacker(&server).await;
    send_all(
        &mut ws,
        [
            Message::Binary(Bytes::from(data(7, 0, b"who are you"))),
            Message::Binary(Bytes::from(yamux_frame(0, PING, SYN, 0, 0x5eed, &[]))),
        ],
    )
    .await;
    let pong = guard("ping answered after data on an unknown stream", async {
        let mut bytes = Vec::new();
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    bytes.extend_from_slice(&b);
                    if let Some(f) = frames(&bytes).into_iter().find(|f| f.0 == PING && f.1 & ACK != 0) {
                        return f;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(pong, (PING, ACK, 0, 0x5eed));
    drop(ws);
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn yamux_ping_flood_from_a_peer_that_never_reads_is_cut_after_the_write_timeout() {
    // Pings make the server write as much as the peer sends; a peer that
    // never reads fills both socket buffers, the server's writes block and
    // after the write timeout (10 s, hashicorp's ConnectionWriteTimeout) the
    // server ends the session, so the attacker's own writes fail.
    let server = server().await;
    let mut ws = attacker(&server).await;
    let batch: Vec<u8> = (0..1000u32)
        .flat_map(|i| yamux_frame(0, PING, SYN, 0, i, &[]))
        .collect();
    let batch = Bytes::from(batch);
    // The server may keep reading (it answers at most a bounded number of
    // pings while its writes are blocked and drops the rest), so the
    // attacker keeps sending until the write timeout ends the session.
    let cut = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if ws.send(Message::Binary(batch.clone())).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the server ended the session of a peer that never reads within 60 s"
    );
    drop(ws);
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn yamux_ten_thousand_idle_streams_are_refused_with_rst_past_the_cap() {
    // The attacker writes 10,000 SYNs without reading a byte, and is not
    // stuck: the server keeps reading. Streams past the default cap (1024)
    // are each refused with RST; the first 1024 stay open, idle.
    let server = server().await;
    let mut ws = attacker(&server).await;
    guard("10,000 SYNs written without reading", async {
        for i in 0..10_000u32 {
            ws.feed(Message::Binary(Bytes::from(syn(2 * i + 1))))
                .await
                .expect("server keeps reading");
        }
        ws.flush().await.expect("flushed");
    })
    .await;
    fresh_agent_is_served(&server).await;
    // Every stream is either open on the server (at most the cap) or was
    // refused with RST: past the cap, or past the accept backlog of 256 when
    // the burst outran the accept loop (hashicorp/yamux refuses those with
    // RST too).
    let cap = coder_agentsdk::server::DEFAULT_MAX_STREAMS_PER_CONNECTION;
    let mut refused = std::collections::BTreeSet::new();
    let mut acked = std::collections::BTreeSet::new();
    guard("every stream open or refused", async {
        let mut bytes = Vec::new();
        loop {
            let mut rest = &bytes[..];
            while rest.len() >= 12 {
                let f = frames(&rest[..12]);
                if let Some(&(_, flags, id, _)) = f.first() {
                    if flags & RST != 0 {
                        refused.insert(id);
                    }
                    if flags & ACK != 0 {
                        acked.insert(id);
                    }
                }
                let body = if rest[1] == DATA {
                    u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize
                } else {
                    0
                };
                if rest.len() < 12 + body {
                    break;
                }
                rest = &rest[12 + body..];
            }
            let consumed = bytes.len() - rest.len();
            bytes.drain(..consumed);
            if refused.len() + server.open_streams() == 10_000 && acked.len() >= server.open_streams() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => bytes.extend_from_slice(&b),
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await;
    let open = server.open_streams();
    assert!(open <= cap, "{open} streams open, cap {cap}");
    assert!(refused.len() >= 10_000 - cap, "{} refused", refused.len());
    assert!(
        refused.iter().all(|id| id % 2 == 1 && *id < 20_000),
        "RSTs only for the attacker's streams"
    );
    // Every stream got an answer at once, ACK or RST, as from hashicorp/yamux:
    // a Go client counts unanswered SYNs against its backlog of 256 and
    // would block on the 257th idle stream otherwise.
    let answered: std::collections::BTreeSet<u32> = acked.union(&refused).copied().collect();
    assert_eq!(answered.len(), 10_000, "{} streams answered", answered.len());
    drop(ws);
    server_forgets_connections(&server).await;
}

#[tokio::test]
async fn yamux_streams_past_a_configured_cap_of_8_are_each_refused_with_rst() {
    let server = ServerBuilder::default()
        .max_streams_per_connection(8)
        .start()
        .await
        .unwrap();
    let mut ws = attacker(&server).await;
    send_all(
        &mut ws,
        (0..20u32).map(|i| Message::Binary(Bytes::from(syn(2 * i + 1)))),
    )
    .await;
    let refused = guard("12 RSTs", async {
        let mut bytes = Vec::new();
        loop {
            let rst: Vec<u32> = frames(&bytes)
                .into_iter()
                .filter(|f| f.1 & RST != 0)
                .map(|f| f.2)
                .collect();
            if rst.len() >= 12 {
                return rst;
            }
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => bytes.extend_from_slice(&b),
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await;
    let expected: Vec<u32> = (8..20u32).map(|i| 2 * i + 1).collect();
    assert_eq!(refused, expected, "the streams past the cap, and only those");
    // The session lives on: the fresh agent is another connection, and this
    // one still answers a ping.
    fresh_agent_is_served(&server).await;
    send_all(
        &mut ws,
        [Message::Binary(Bytes::from(yamux_frame(0, PING, SYN, 0, 9, &[])))],
    )
    .await;
    guard("ping answered", async {
        let mut bytes = Vec::new();
        while !frames(&bytes).iter().any(|f| f.0 == PING && f.1 & ACK != 0 && f.3 == 9) {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => bytes.extend_from_slice(&b),
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------

/// Reads a raw TCP connection until the server closes it; returns what it sent.
async fn tcp_closed_by_server(tcp: &mut TcpStream, what: &str) -> Vec<u8> {
    guard(what, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

#[tokio::test]
async fn slowloris_upgrade_request_never_finished_is_closed_after_the_handshake_timeout() {
    let server = ServerBuilder::default()
        .handshake_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"GET /api/v2/workspaceagents/me/rpc?version=2.8 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    // ... and never the rest of the headers.
    tcp_closed_by_server(&mut tcp, "half-sent upgrade request closed").await;
    // A peer that connects and sends nothing at all is closed too.
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    tcp_closed_by_server(&mut silent, "silent connection closed").await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn slowloris_upgraded_peer_that_never_opens_a_stream_is_closed_after_the_idle_timeout() {
    let server = ServerBuilder::default()
        .first_stream_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let mut ws = attacker(&server).await;
    server_ends_connection(&mut ws, "idle upgraded connection closed").await;
    server_forgets_connections(&server).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn slowloris_connections_past_the_cap_are_closed_at_once_and_slots_come_back() {
    let server = ServerBuilder::default().max_connections(4).start().await.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    guard("4 connections held", async {
        while server.tcp_connections() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut fifth = TcpStream::connect(server.addr()).await.unwrap();
    let _ = fifth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = tcp_closed_by_server(&mut fifth, "fifth connection closed").await;
    assert!(
        answer.is_empty(),
        "closed without a response: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    guard("slots given back", async {
        while server.tcp_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    fresh_agent_is_served(&server).await;
}

// ---------------------------------------------------------------------------
// drpc abuse (one yamux stream per drpc connection, as coderd serves it)
// ---------------------------------------------------------------------------

use coder_agentsdk::drpc::wire::{self as drpc_wire, Kind, Packet};

/// What the server did on one attacked yamux stream.
#[derive(Debug, Default)]
struct StreamOutcome {
    /// drpc frames the server sent on the stream.
    frames: Vec<drpc_wire::Frame>,
    /// The server closed (FIN) or reset (RST) the stream.
    closed: bool,
}

impl StreamOutcome {
    fn error_text(&self) -> Option<String> {
        self.frames
            .iter()
            .find(|f| f.kind == Kind::Error)
            .map(|f| match drpc_wire::decode_error(&f.data) {
                Ok((_, text)) => text,
                Err(e) => e.to_string(),
            })
    }
}

/// Opens yamux stream `id` on the attacker's session with `drpc_bytes` as
/// its first data, then reads until the server closes/resets the stream or
/// sends a drpc Error or CloseSend packet on it (the call's end).
async fn attack_stream(ws: &mut Ws, id: u32, drpc_bytes: &[u8]) -> StreamOutcome {
    let mut chunks = drpc_bytes.chunks(16 * 1024);
    let first = chunks.next().unwrap_or_default();
    let mut messages = vec![Message::Binary(Bytes::from(data(id, SYN, first)))];
    messages.extend(chunks.map(|c| Message::Binary(Bytes::from(data(id, 0, c)))));
    send_all(ws, messages).await;
    guard("drpc stream answered or closed", async {
        let mut out = StreamOutcome::default();
        let mut raw = Vec::new();
        let mut drpc = bytes::BytesMut::new();
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => raw.extend_from_slice(&b),
                Some(Ok(_)) => continue,
                other => panic!("session ended: {other:?}"),
            }
            // Consume complete yamux frames.
            loop {
                if raw.len() < 12 {
                    break;
                }
                let flags = u16::from_be_bytes([raw[2], raw[3]]);
                let sid = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
                let len = u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize;
                let body = if raw[1] == DATA { len } else { 0 };
                if raw.len() < 12 + body {
                    break;
                }
                if sid == id {
                    drpc.extend_from_slice(&raw[12..12 + body]);
                    out.closed |= flags & (FIN | RST) != 0;
                }
                raw.drain(..12 + body);
            }
            while let Ok(Some(frame)) = drpc_wire::decode_frame(&mut drpc) {
                out.frames.push(frame);
            }
            if out.closed || out.error_text().is_some() || out.frames.iter().any(|f| f.kind == Kind::CloseSend) {
                return out;
            }
        }
    })
    .await
}

/// The session still works: a ping is answered.
async fn session_answers_ping(ws: &mut Ws, opaque: u32) {
    send_all(
        ws,
        [Message::Binary(Bytes::from(yamux_frame(0, PING, SYN, 0, opaque, &[])))],
    )
    .await;
    guard("ping answered", async {
        let mut bytes = Vec::new();
        while !frames(&bytes)
            .iter()
            .any(|f| f.0 == PING && f.1 & ACK != 0 && f.3 == opaque)
        {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => bytes.extend_from_slice(&b),
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await;
}

fn encoded(packets: &[Packet]) -> Vec<u8> {
    packets.iter().flat_map(|p| p.encode().to_vec()).collect()
}

const UPDATE_STATS: &str = "/coder.agent.v2.Agent/UpdateStats";

#[tokio::test]
async fn drpc_varint_of_11_bytes_closes_that_stream_and_the_session_lives_on() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    // Control byte of an Invoke, then a stream id varint of 11 bytes.
    let mut bytes = vec![drpc_wire::control_byte(Kind::Invoke, true, false)];
    bytes.extend_from_slice(&[0x80; 10]);
    bytes.push(0x01);
    bytes.extend_from_slice(&[1, 1, b'x']);
    let out = attack_stream(&mut ws, 1, &bytes).await;
    assert!(out.closed && out.frames.is_empty(), "{out:?}");
    session_answers_ping(&mut ws, 11).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn drpc_frame_announcing_1_gib_closes_that_stream_without_buffering_it() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    let mut bytes = vec![drpc_wire::control_byte(Kind::Message, true, false)];
    drpc_wire::put_varint(&mut bytes, 1); // stream
    drpc_wire::put_varint(&mut bytes, 1); // message
    drpc_wire::put_varint(&mut bytes, 1 << 30); // length: 1 GiB
    bytes.extend_from_slice(&[0u8; 1024]);
    let out = attack_stream(&mut ws, 1, &bytes).await;
    assert!(out.closed && out.frames.is_empty(), "{out:?}");
    session_answers_ping(&mut ws, 12).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn drpc_unknown_packet_kind_closes_that_stream_but_with_the_control_bit_is_ignored() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    // Kind 42 without the control bit: a protocol error for drpc.
    let bytes = Packet::new(Kind::from_u8(42), 1, 1, Bytes::from_static(b"??"))
        .encode()
        .to_vec();
    let out = attack_stream(&mut ws, 1, &bytes).await;
    assert!(out.closed && out.frames.is_empty(), "{out:?}");
    // With the control bit drpc skips it; the call after it is served.
    let unknown = drpc_wire::Frame {
        kind: Kind::from_u8(42),
        stream_id: 1,
        message_id: 1,
        done: true,
        control: true,
        data: Bytes::from_static(b"??"),
    }
    .encode()
    .to_vec();
    let mut bytes = unknown;
    bytes.extend(encoded(&[
        Packet::invoke(1, 2, UPDATE_STATS),
        Packet::message(1, 3, Bytes::new()),
        Packet::close_send(1, 4),
    ]));
    let out = attack_stream(&mut ws, 3, &bytes).await;
    assert!(!out.closed, "{out:?}");
    assert!(out.frames.iter().any(|f| f.kind == Kind::Message), "{out:?}");
    assert!(out.frames.iter().any(|f| f.kind == Kind::CloseSend), "{out:?}");
    session_answers_ping(&mut ws, 13).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn drpc_invoke_without_a_message_is_answered_with_an_error() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    let bytes = encoded(&[Packet::invoke(1, 1, UPDATE_STATS), Packet::close_send(1, 2)]);
    let out = attack_stream(&mut ws, 1, &bytes).await;
    assert!(out.error_text().is_some(), "{out:?}");
    session_answers_ping(&mut ws, 14).await;
    fresh_agent_is_served(&server).await;
}

#[tokio::test]
async fn drpc_valid_framing_with_random_protobuf_is_answered_with_an_error() {
    let server = server().await;
    let mut ws = attacker(&server).await;
    let mut answered = 0;
    for (i, seed) in (1..=8u64).enumerate() {
        let junk = random_bytes(seed, 64 + 31 * i);
        let bytes = encoded(&[Packet::invoke(1, 1, UPDATE_STATS), Packet::message(1, 2, junk)]);
        let out = attack_stream(&mut ws, 2 * i as u32 + 1, &bytes).await;
        // Random bytes almost never decode as an UpdateStatsRequest; when one
        // does, the call simply succeeds. Either way: an answer, no crash.
        if out.error_text().is_some() {
            answered += 1;
        }
        assert!(!out.closed || out.error_text().is_some(), "{out:?}");
    }
    assert!(answered > 0, "random protobuf got error replies");
    session_answers_ping(&mut ws, 15).await;
    fresh_agent_is_served(&server).await;
}
