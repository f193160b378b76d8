//! A client that cannot be hung (issue 10 §4): each test dials a real
//! `Client` over a real websocket to a raw, misbehaving server (tokio
//! `TcpListener` + tungstenite accept + hand-built yamux and DRPC bytes) and
//! proves that the call ends with its typed error within its deadline, never
//! a panic or a hang, and that nothing is left behind: no open yamux stream
//! and, once the connection is dropped, no task alive in the runtime.
//!
//! Every await on the peer is under [`guard`], a hang guard (not a timing
//! assertion).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use coder_agentsdk::drpc::wire::{Kind, Packet};
use coder_agentsdk::drpc::RpcError;
use coder_agentsdk::mux::keepalive::OWN_PING_BIT;
use coder_agentsdk::mux::websocket::server_config;
use coder_agentsdk::mux::yamux::MuxError;
use coder_agentsdk::rpc::agent::Agent28;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::{CallExt, Connection, RpcOptions};
use coder_agentsdk::Client;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Hang guard for every await that depends on the peer.
const GUARD: Duration = Duration::from_secs(15);

/// The deadline every call in these tests carries; the call must end with
/// its own typed error well before (except where the deadline is the point).
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// Short keepalive for the tests: ping 100 ms after each answer, 300 ms to answer.
fn options() -> RpcOptions {
    RpcOptions::default().keepalive(Duration::from_millis(100), Duration::from_millis(300))
}

async fn guard<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hung: {what}"),
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    guard(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

const DATA: u8 = 0;
const WINDOW_UPDATE: u8 = 1;
const PING: u8 = 2;
const GO_AWAY: u8 = 3;
const SYN: u16 = 1;
const ACK: u16 = 2;

fn header(kind: u8, flags: u16, stream: u32, length: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[1] = kind;
    h[2..4].copy_from_slice(&flags.to_be_bytes());
    h[4..8].copy_from_slice(&stream.to_be_bytes());
    h[8..12].copy_from_slice(&length.to_be_bytes());
    h
}

/// One yamux frame as the raw server read it.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u16,
    stream: u32,
    length: u32,
    body: Bytes,
}

/// The server side of one websocket, speaking yamux by hand.
struct RawPeer {
    ws: WebSocketStream<TcpStream>,
    buf: BytesMut,
    seen: Arc<Seen>,
}

/// What the raw server saw the client send.
#[derive(Debug, Default)]
struct Seen {
    /// Keepalive pings of ours (opaque id with the top bit set).
    own_pings: AtomicUsize,
    /// GoAway frames (the client ends a session it finds broken with one).
    go_aways: AtomicUsize,
}

impl RawPeer {
    async fn send(&mut self, bytes: Vec<u8>) {
        // The client may already be gone; that is the point of some tests.
        let _ = self.ws.send(Message::Binary(bytes.into())).await;
    }

    /// The next frame; `None` when the client has gone.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 12 {
                let h = &self.buf[..12];
                let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                let body_len = if h[1] == DATA { length as usize } else { 0 };
                if self.buf.len() >= 12 + body_len {
                    let h = self.buf.split_to(12);
                    let body = self.buf.split_to(body_len).freeze();
                    let frame = Frame {
                        kind: h[1],
                        flags: u16::from_be_bytes([h[2], h[3]]),
                        stream: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        length,
                        body,
                    };
                    if frame.kind == PING && frame.flags & SYN != 0 && frame.length & OWN_PING_BIT != 0 {
                        self.seen.own_pings.fetch_add(1, Ordering::SeqCst);
                    }
                    if frame.kind == GO_AWAY {
                        self.seen.go_aways.fetch_add(1, Ordering::SeqCst);
                    }
                    return Some(frame);
                }
            }
            match self.ws.next().await? {
                Ok(Message::Binary(b)) => self.buf.extend_from_slice(&b),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until the client's call arrives (its first Data frame on a new
    /// stream); answers pings on the way if `answer_pings`. Returns the
    /// yamux stream id and the DRPC bytes.
    async fn call(&mut self, answer_pings: bool) -> Option<(u32, Bytes)> {
        loop {
            let f = self.frame().await?;
            if f.kind == PING && f.flags & SYN != 0 && answer_pings {
                self.send(header(PING, ACK, 0, f.length).to_vec()).await;
            }
            if f.kind == DATA && f.stream % 2 == 1 && !f.body.is_empty() {
                return Some((f.stream, f.body));
            }
        }
    }

    /// Reads (and answers pings, if asked) until the client goes away.
    async fn drain(&mut self, answer_pings: bool) {
        while let Some(f) = self.frame().await {
            if f.kind == PING && f.flags & SYN != 0 && answer_pings {
                self.send(header(PING, ACK, 0, f.length).to_vec()).await;
            }
        }
    }

    /// Accepts the stream and sends `drpc` on it as one Data frame.
    async fn reply(&mut self, stream: u32, drpc: &[u8]) {
        let mut out = header(WINDOW_UPDATE, ACK, stream, 0).to_vec();
        out.extend_from_slice(&header(DATA, 0, stream, drpc.len() as u32));
        out.extend_from_slice(drpc);
        self.send(out).await;
    }
}

/// A server that accepts one websocket and runs `script` on it.
async fn hostile_server<F, Fut>(script: F) -> (url::Url, Arc<Seen>, tokio::task::JoinHandle<()>)
where
    F: FnOnce(RawPeer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(server_config()))
            .await
            .unwrap();
        script(RawPeer {
            ws,
            buf: BytesMut::new(),
            seen: seen2,
        })
        .await;
    });
    (url, seen, task)
}

async fn connect(url: &url::Url, options: RpcOptions) -> (Connection, Agent28) {
    let client = Client::builder(url.as_str())
        .token("test-token")
        .rpc_options(options)
        .build()
        .unwrap();
    let conn = guard(
        "dial",
        client.connect_rpc_version(coder_agentsdk::drpc::ApiVersion::new(2, 8), Some("agent")),
    )
    .await
    .unwrap();
    let agent = Agent28::new(conn.transport());
    (conn, agent)
}

/// One GetManifest with [`CALL_DEADLINE`]; returns its error (it must fail).
async fn failing_call(agent: &Agent28) -> RpcError {
    let result = guard(
        "call",
        agent.get_manifest(Default::default()).with_deadline(CALL_DEADLINE),
    )
    .await;
    result.expect_err("the hostile server cannot make the call succeed")
}

/// The session cause under a call's transport error.
fn mux_cause(e: &RpcError) -> Option<&MuxError> {
    match e {
        RpcError::Transport(io) => io.get_ref()?.downcast_ref::<MuxError>(),
        _ => None,
    }
}

/// Nothing left behind: no stream open, and once the connection and the
/// peer are gone, no task alive in the runtime (the session driver and any
/// stream pumps have ended).
async fn nothing_left(conn: Connection, agent: Agent28, peer: tokio::task::JoinHandle<()>) {
    eventually("streams freed", || conn.open_streams() == 0).await;
    drop(agent);
    drop(conn);
    peer.abort();
    let _ = peer.await;
    let metrics = tokio::runtime::Handle::current().metrics();
    eventually("every task ended", || metrics.num_alive_tasks() == 0).await;
}

/// A DRPC packet on drpc stream 1, message 1.
fn drpc(kind: Kind, stream: u64, data: &[u8]) -> Vec<u8> {
    Packet::new(kind, stream, 1, Bytes::copy_from_slice(data))
        .encode()
        .to_vec()
}

#[tokio::test]
async fn garbage_after_the_upgrade_ends_the_call_with_a_decode_error() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        p.call(false).await;
        // Version 0x47 ('G'), not a yamux frame.
        p.send(b"GET / HTTP/1.1\r\nthis is not yamux\r\n".to_vec()).await;
        p.drain(false).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let err = failing_call(&agent).await;
    assert!(matches!(mux_cause(&err), Some(MuxError::Decode(_))), "{err:?}");
    assert!(matches!(guard("closed", conn.closed()).await, MuxError::Decode(_)));
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn go_away_at_once_fails_the_call_with_its_code() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        p.send(header(GO_AWAY, 0, 0, 2).to_vec()).await;
        p.drain(false).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let reason = guard("closed", conn.closed()).await;
    assert!(matches!(reason, MuxError::GoAway { code: 2 }), "{reason:?}");
    let err = failing_call(&agent).await;
    assert!(matches!(mux_cause(&err), Some(MuxError::GoAway { code: 2 })), "{err:?}");
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn close_in_the_middle_of_a_reply_frame_ends_the_call() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        let Some((stream, _)) = p.call(true).await else { return };
        let reply = drpc(Kind::Message, 1, &[0u8; 64]);
        let mut out = header(WINDOW_UPDATE, ACK, stream, 0).to_vec();
        // The yamux frame announces the whole reply; half of it is sent.
        out.extend_from_slice(&header(DATA, 0, stream, reply.len() as u32));
        out.extend_from_slice(&reply[..reply.len() / 2]);
        p.send(out).await;
        let _ = p.ws.close(None).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let err = failing_call(&agent).await;
    assert!(
        matches!(mux_cause(&err), Some(MuxError::PeerClosed | MuxError::Decode(_)))
            || matches!(err, RpcError::ConnectionClosed),
        "{err:?}"
    );
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn call_never_answered_while_pings_are_answered_ends_at_its_deadline() {
    let (url, seen, peer) = hostile_server(|mut p| async move {
        p.call(true).await;
        p.drain(true).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let deadline = Duration::from_millis(1500);
    let result = guard("call", agent.get_manifest(Default::default()).with_deadline(deadline)).await;
    assert!(
        matches!(result, Err(RpcError::DeadlineExceeded { deadline: d }) if d == deadline),
        "{result:?}"
    );
    // Our pings went out as hashicorp frames and their answers were taken
    // off the wire before yamux (which would end the session on an ACK it
    // did not ask for): the connection is alive and usable.
    assert!(seen.own_pings.load(Ordering::SeqCst) >= 3, "{seen:?}");
    assert_eq!(seen.go_aways.load(Ordering::SeqCst), 0, "{seen:?}");
    assert!(!conn.is_closed());
    eventually("stream reset and freed", || conn.open_streams() == 0).await;
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn call_never_answered_and_pings_ignored_ends_with_peer_not_responding() {
    let (url, seen, peer) = hostile_server(|mut p| async move {
        // Reads everything (the path is "black-holed"), answers nothing.
        p.drain(false).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let call = tokio::spawn({
        let agent = agent.clone();
        // No call deadline: only the keepalive can end this call.
        async move { agent.get_manifest(Default::default()).await }
    });
    let err = guard("call", call).await.unwrap().unwrap_err();
    assert!(
        matches!(err, RpcError::PeerNotResponding { timeout } if timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(seen.own_pings.load(Ordering::SeqCst) >= 1);
    assert!(matches!(
        guard("closed", conn.closed()).await,
        MuxError::PeerNotResponding { .. }
    ));
    // Later calls fail the same way, at once.
    let err = failing_call(&agent).await;
    assert!(matches!(err, RpcError::PeerNotResponding { .. }), "{err:?}");
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn idle_connection_to_a_silent_peer_ends_with_peer_not_responding() {
    let (url, _, peer) = hostile_server(|mut p| async move { p.drain(false).await }).await;
    let (conn, agent) = connect(&url, options()).await;
    let reason = guard("closed", conn.closed()).await;
    assert!(matches!(reason, MuxError::PeerNotResponding { .. }), "{reason:?}");
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn reply_over_4_mib_is_refused_and_the_connection_stays_usable() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        let Some((stream, _)) = p.call(true).await else { return };
        // A DRPC frame announcing 5 MiB, with the first bytes of it.
        let mut frame = vec![0x05, 0x01, 0x01];
        let mut len = 5u64 << 20;
        while len >= 0x80 {
            frame.push((len as u8) | 0x80);
            len >>= 7;
        }
        frame.push(len as u8);
        frame.extend_from_slice(&[0u8; 1000]);
        p.reply(stream, &frame).await;
        // The next call gets a proper answer.
        let Some((stream, _)) = p.call(true).await else { return };
        let mut ok = drpc(Kind::Message, 1, &[]);
        ok.extend(Packet::new(Kind::CloseSend, 1, 2, Bytes::new()).encode());
        p.reply(stream, &ok).await;
        p.drain(true).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let err = failing_call(&agent).await;
    assert!(matches!(err, RpcError::MessageTooLarge { .. }), "{err:?}");
    eventually("stream freed", || conn.open_streams() == 0).await;
    guard("second call", agent.get_manifest(Default::default()))
        .await
        .expect("the connection survives one bad reply");
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn reply_that_is_not_the_replys_protobuf_is_a_decode_error() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        let Some((stream, _)) = p.call(true).await else { return };
        // Field 1 as a length-delimited value running past the end.
        p.reply(stream, &drpc(Kind::Message, 1, &[0x0a, 0xff, 0x01, 0x00]))
            .await;
        p.drain(true).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let err = failing_call(&agent).await;
    assert!(
        matches!(err, RpcError::Decode { type_name, .. } if type_name.ends_with("Manifest")),
        "{err:?}"
    );
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn reply_on_another_drpc_stream_id_cancels_the_call_like_go() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        let Some((stream, _)) = p.call(true).await else { return };
        p.reply(stream, &drpc(Kind::Message, 7, &[])).await;
        p.drain(true).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let err = failing_call(&agent).await;
    assert!(matches!(err, RpcError::Cancelled), "{err:?}");
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn websocket_text_message_ends_the_connection_with_a_typed_error() {
    let (url, _, peer) = hostile_server(|mut p| async move {
        if p.call(true).await.is_none() {
            return;
        }
        let _ = p.ws.send(Message::Text("hello".into())).await;
        p.drain(true).await;
    })
    .await;
    let (conn, agent) = connect(&url, options()).await;
    let err = failing_call(&agent).await;
    match mux_cause(&err) {
        Some(MuxError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}"),
        _ => panic!("{err:?}"),
    }
    nothing_left(conn, agent, peer).await;
}

#[tokio::test]
async fn server_that_never_finishes_the_upgrade_fails_the_dial_at_its_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // Accepts TCP, reads nothing, answers nothing.
        tokio::time::sleep(GUARD).await;
        drop(tcp);
    });
    let client = Client::builder(url.as_str())
        .token("test-token")
        .rpc_options(options().dial_timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    let err = guard("dial", client.connect_rpc()).await.unwrap_err();
    assert!(matches!(err, coder_agentsdk::Error::Timeout(_)), "{err:?}");
    peer.abort();
}
