//! Bad input and faults on the agent RPC connection (issue 4): each test
//! proves one behaviour and expects a typed error, no panic and no hang.
//!
//! Every await that could hang is guarded by [`guard`] (a hang guard, not a
//! timing assertion). Byte-level faults use a scripted raw peer: the DRPC
//! call state machines of `drpc::conn` over `tokio::io::duplex`, with the
//! test writing crafted frames; yamux faults use a raw yamux peer under a
//! real `Connection`; websocket and HTTP faults use real sockets.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use coder_agentsdk::drpc::client::RawStream;
use coder_agentsdk::drpc::conn::{client_stream, client_unary, serve_stream};
use coder_agentsdk::drpc::wire::{self, Frame, Kind, Packet, PacketAssembler, MAX_MESSAGE_SIZE};
use coder_agentsdk::drpc::{ApiVersion, Router, RpcError};
use coder_agentsdk::error::Error;
use coder_agentsdk::mux::websocket::{client_config, server_config, WsByteStream};
use coder_agentsdk::mux::yamux::{MuxError, Session, SessionConfig};
use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::agent::{methods, Agent28, AgentService};
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::tailnet::{methods as tailnet_methods, Tailnet28};
use coder_agentsdk::rpc::Connection;
use coder_agentsdk::server::{EmbeddedServer, FakeApi, FakeApiHandle, Fault};
use coder_agentsdk::Client;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Hang guard for every await that depends on the peer.
const GUARD: Duration = Duration::from_secs(10);

async fn guard<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hung: {what}"),
    }
}

/// Polls `cond` until it holds (guarded).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    guard(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn v28() -> ApiVersion {
    ApiVersion::new(2, 8)
}

// ---------------------------------------------------------------------------
// Raw DRPC peer helpers
// ---------------------------------------------------------------------------

/// One frame with every field chosen by the test.
fn frame(kind: u8, control: bool, done: bool, stream: u64, message: u64, data: &[u8]) -> Vec<u8> {
    Frame {
        kind: Kind::from_u8(kind),
        stream_id: stream,
        message_id: message,
        done,
        control,
        data: Bytes::copy_from_slice(data),
    }
    .encode()
    .to_vec()
}

/// A whole packet (split at 64 KiB like drpc).
fn packet(kind: Kind, stream: u64, message: u64, data: &[u8]) -> Vec<u8> {
    Packet::new(kind, stream, message, Bytes::copy_from_slice(data))
        .encode()
        .to_vec()
}

const MESSAGE: u8 = 2;
const CLOSE_SEND: u8 = 6;

/// Reads packets from a raw peer until one of kind `until` (or EOF).
async fn read_packets<R: AsyncRead + Unpin>(io: &mut R, until: Kind) -> Vec<Packet> {
    let mut asm = PacketAssembler::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    loop {
        while let Some(f) = wire::decode_frame(&mut buf).expect("peer sent a valid frame") {
            if let Some(p) = asm.push(f).expect("peer sent a valid packet") {
                let done = p.kind == until;
                out.push(p);
                if done {
                    return out;
                }
            }
        }
        if io.read_buf(&mut buf).await.expect("read") == 0 {
            return out;
        }
    }
}

/// Runs `client_unary(GetManifest)` against a raw server that reads the
/// request and then writes `reply` (and keeps the pipe open unless `hang_up`).
async fn unary_against(reply: Vec<u8>, hang_up: bool) -> Result<Bytes, RpcError> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let peer = tokio::spawn(async move {
        let request = read_packets(&mut server, Kind::CloseSend).await;
        assert_eq!(request.len(), 3, "Invoke, Message, CloseSend");
        server.write_all(&reply).await.expect("write reply");
        if hang_up {
            drop(server);
            return None;
        }
        Some(server)
    });
    let result = guard(
        "client_unary",
        client_unary(client, &methods::GET_MANIFEST, Bytes::new()),
    )
    .await;
    drop(peer);
    result
}

fn protocol_error(r: Result<Bytes, RpcError>) -> String {
    match r {
        Err(RpcError::Protocol(text)) => text,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Frames and packets received by the client
// ---------------------------------------------------------------------------

#[tokio::test]
async fn truncated_frame_then_end_of_stream_is_an_unexpected_eof() {
    let mut reply = packet(Kind::Message, 1, 1, b"0123456789");
    reply.truncate(7);
    match unary_against(reply, true).await {
        Err(RpcError::Transport(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn truncated_packet_then_end_of_stream_is_an_unexpected_eof() {
    // A complete first frame of a two-frame packet, then nothing.
    let reply = frame(MESSAGE, false, false, 1, 1, b"part one");
    match unary_against(reply, true).await {
        Err(RpcError::Transport(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn varint_longer_than_ten_bytes_is_a_protocol_error() {
    let mut reply = vec![0x05];
    reply.extend([0xff; 11]);
    let text = protocol_error(unary_against(reply, false).await);
    assert!(text.contains("varint too long"), "{text}");
}

#[tokio::test]
async fn varint_overflowing_64_bits_is_a_protocol_error() {
    // Ten bytes; the tenth carries bit 64.
    let mut reply = vec![0x05, 0x01];
    reply.extend([0xff; 9]);
    reply.push(0x02);
    let text = protocol_error(unary_against(reply, false).await);
    assert!(text.contains("overflows 64 bits"), "{text}");
}

#[tokio::test]
async fn unknown_packet_kind_with_the_control_bit_is_ignored() {
    let mut reply = frame(42, true, true, 1, 1, b"from the future");
    reply.extend(packet(Kind::Message, 1, 2, b"\x0a\x04main"));
    let reply = unary_against(reply, false)
        .await
        .expect("the unknown control packet is skipped");
    assert_eq!(&reply[..], b"\x0a\x04main");
}

#[tokio::test]
async fn unknown_packet_kind_without_the_control_bit_is_a_protocol_error() {
    let mut reply = frame(42, false, true, 1, 1, b"from the future");
    reply.extend(packet(Kind::Message, 1, 2, b"never read"));
    let text = protocol_error(unary_against(reply, false).await);
    assert!(text.contains("unknown packet kind 42"), "{text}");
}

#[tokio::test]
async fn received_frame_declaring_more_than_4_mib_is_refused_before_buffering() {
    // Only the header is sent: the length alone is enough to refuse it.
    let mut reply = vec![0x05, 0x01, 0x01];
    wire::put_varint(&mut reply, MAX_MESSAGE_SIZE as u64 + 1);
    match unary_against(reply, false).await {
        Err(RpcError::MessageTooLarge { size, limit }) => {
            assert_eq!((size, limit), (MAX_MESSAGE_SIZE + 1, MAX_MESSAGE_SIZE));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn received_message_assembled_over_4_mib_is_a_typed_error() {
    // 65 frames of 64 KiB: every frame is small, the packet is not.
    let chunk = vec![7u8; wire::SPLIT_SIZE];
    let mut reply = Vec::new();
    for i in 0..65 {
        reply.extend(frame(MESSAGE, false, i == 64, 1, 1, &chunk));
    }
    match unary_against(reply, false).await {
        Err(RpcError::MessageTooLarge { size, limit }) => {
            assert!(size > MAX_MESSAGE_SIZE, "{size}");
            assert_eq!(limit, MAX_MESSAGE_SIZE);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn received_message_of_exactly_4_mib_is_accepted() {
    let body = vec![1u8; MAX_MESSAGE_SIZE];
    let reply = packet(Kind::Message, 1, 1, &body);
    let got = unary_against(reply, false)
        .await
        .expect("4 MiB is the limit, not over it");
    assert_eq!(got.len(), MAX_MESSAGE_SIZE);
}

#[tokio::test]
async fn message_over_4_mib_is_refused_before_anything_is_written() {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let request = Bytes::from(vec![0u8; MAX_MESSAGE_SIZE + 1]);
    let result = guard("unary", client_unary(client, &methods::BATCH_CREATE_LOGS, request)).await;
    match result {
        Err(RpcError::MessageTooLarge { size, limit }) => {
            assert_eq!((size, limit), (MAX_MESSAGE_SIZE + 1, MAX_MESSAGE_SIZE));
        }
        other => panic!("{other:?}"),
    }
    // The client side is gone; the peer got not a single byte.
    let mut seen = Vec::new();
    guard("peer read", server.read_to_end(&mut seen)).await.unwrap();
    assert!(seen.is_empty(), "{} bytes reached the peer", seen.len());
}

#[tokio::test]
async fn streaming_message_over_4_mib_is_refused_by_send_and_the_stream_stays_usable() {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let RawStream { mut sender, receiver } = client_stream(client, &tailnet_methods::COORDINATE);
    match sender.send(Bytes::from(vec![0u8; MAX_MESSAGE_SIZE + 1])).await {
        Err(RpcError::MessageTooLarge { size, limit }) => {
            assert_eq!((size, limit), (MAX_MESSAGE_SIZE + 1, MAX_MESSAGE_SIZE))
        }
        other => panic!("{other:?}"),
    }
    sender.send(Bytes::from_static(b"ok")).await.unwrap();
    drop(sender);
    // The Invoke, the small message and the CloseSend reached the peer; the big one never did.
    let seen = guard("peer read", read_packets(&mut server, Kind::CloseSend)).await;
    let kinds: Vec<Kind> = seen.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [Kind::Invoke, Kind::Message, Kind::CloseSend], "{seen:?}");
    assert_eq!(&seen[1].data[..], b"ok");
    drop(receiver);
}

#[tokio::test]
async fn frame_ids_going_backwards_are_a_protocol_error() {
    // An ignorable control packet at message 2, then a reply at message 1.
    let mut reply = frame(42, true, true, 1, 2, b"");
    reply.extend(packet(Kind::Message, 1, 1, b"late"));
    let text = protocol_error(unary_against(reply, false).await);
    assert!(text.contains("id monotonicity violation"), "{text}");
}

#[tokio::test]
async fn repeated_message_id_on_a_stream_is_a_protocol_error() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let RawStream { sender, mut receiver } = client_stream(client, &tailnet_methods::STREAM_DERP_MAPS);
    let peer = tokio::spawn(async move {
        read_packets(&mut server, Kind::Invoke).await;
        let mut out = packet(Kind::Message, 1, 1, b"one");
        out.extend(packet(Kind::Message, 1, 1, b"one again"));
        server.write_all(&out).await.unwrap();
        server
    });
    assert_eq!(&guard("first", receiver.next()).await.unwrap().unwrap()[..], b"one");
    match guard("second", receiver.next()).await {
        Some(Err(RpcError::Protocol(text))) => assert!(text.contains("monotonicity"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert!(guard("end", receiver.next()).await.is_none());
    drop((sender, peer));
}

// ---------------------------------------------------------------------------
// Packets for another stream id (drpc v0.0.34 manageReader rules)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn packet_for_a_newer_stream_cancels_the_call_like_go() {
    let reply = packet(Kind::Message, 2, 1, b"not yours");
    match unary_against(reply, false).await {
        Err(RpcError::Cancelled) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_control_packet_for_a_newer_stream_also_cancels_the_call() {
    let reply = frame(42, true, true, 3, 1, b"");
    match unary_against(reply, false).await {
        Err(RpcError::Cancelled) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn packet_for_an_older_stream_breaks_id_monotonicity() {
    let reply = packet(Kind::Message, 0, 5, b"stream zero");
    let text = protocol_error(unary_against(reply, false).await);
    assert!(text.contains("id monotonicity violation"), "{text}");
}

#[tokio::test]
async fn server_stream_is_cancelled_by_a_packet_for_a_newer_stream() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let RawStream { sender, mut receiver } = client_stream(client, &tailnet_methods::STREAM_DERP_MAPS);
    let peer = tokio::spawn(async move {
        read_packets(&mut server, Kind::Invoke).await;
        let mut out = packet(Kind::Message, 1, 1, b"map");
        out.extend(packet(Kind::CloseSend, 2, 1, b""));
        server.write_all(&out).await.unwrap();
        server
    });
    assert_eq!(&guard("first", receiver.next()).await.unwrap().unwrap()[..], b"map");
    assert!(matches!(
        guard("second", receiver.next()).await,
        Some(Err(RpcError::Cancelled))
    ));
    drop((sender, peer));
}

/// A router whose `GetManifest` hangs forever and `UpdateStats` answers.
fn hanging_router() -> Router {
    let api = std::sync::Arc::new(FakeApi::new(agent::Manifest {
        agent_name: "raw".into(),
        ..Default::default()
    }));
    api.set_fault("GetManifest", Some(Fault::Hang));
    Router::new().with_service(AgentService::new(FakeApiHandle(api)))
}

#[tokio::test]
async fn server_cancels_a_running_call_when_a_newer_stream_invokes() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let serving = tokio::spawn(serve_stream(server, hanging_router()));
    // Stream 1 hangs in its handler; stream 2 is a new call on the same transport.
    let mut out = packet(Kind::Invoke, 1, 1, methods::GET_MANIFEST.path.as_bytes());
    out.extend(packet(Kind::Message, 1, 2, b""));
    out.extend(packet(Kind::CloseSend, 1, 3, b""));
    out.extend(packet(Kind::Invoke, 2, 1, methods::UPDATE_STATS.path.as_bytes()));
    out.extend(packet(Kind::Message, 2, 2, b""));
    out.extend(packet(Kind::CloseSend, 2, 3, b""));
    client.write_all(&out).await.unwrap();
    let replies = guard("replies", read_packets(&mut client, Kind::CloseSend)).await;
    assert!(replies.iter().all(|p| p.stream_id == 2), "{replies:?}");
    assert_eq!(replies[0].kind, Kind::Message);
    let stats = agent::UpdateStatsResponse::decode(replies[0].data.clone()).unwrap();
    assert_eq!(stats.report_interval.unwrap().seconds, 30);
    drop(client);
    guard("serve_stream ends", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_ignores_a_repeated_invoke_on_a_finished_stream_id() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let serving = tokio::spawn(serve_stream(server, hanging_router()));
    let call = |stream: u64, first: u64| {
        let mut out = packet(Kind::Invoke, stream, first, methods::UPDATE_STATS.path.as_bytes());
        out.extend(packet(Kind::Message, stream, first + 1, b""));
        out.extend(packet(Kind::CloseSend, stream, first + 2, b""));
        out
    };
    client.write_all(&call(1, 1)).await.unwrap();
    let first = guard("first call", read_packets(&mut client, Kind::CloseSend)).await;
    assert!(first.iter().all(|p| p.stream_id == 1));
    // Stream 1 is finished: a second Invoke on it is dropped, stream 2 is served.
    let mut out = call(1, 4);
    out.extend(call(2, 1));
    client.write_all(&out).await.unwrap();
    let second = guard("second call", read_packets(&mut client, Kind::CloseSend)).await;
    assert!(second.iter().all(|p| p.stream_id == 2), "{second:?}");
    drop(client);
    guard("serve_stream ends", serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_ends_the_stream_when_a_non_invoke_packet_names_a_newer_stream() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let serving = tokio::spawn(serve_stream(server, hanging_router()));
    let mut out = packet(Kind::Invoke, 1, 1, methods::GET_MANIFEST.path.as_bytes());
    out.extend(packet(Kind::Message, 1, 2, b""));
    out.extend(packet(Kind::Message, 2, 1, b"stray"));
    client.write_all(&out).await.unwrap();
    // The hanging handler is cancelled and the stream closed, without a reply.
    guard("serve_stream ends", serving).await.unwrap().unwrap();
    let mut rest = Vec::new();
    guard("client reads to EOF", client.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

// ---------------------------------------------------------------------------
// Bad input received by the server
// ---------------------------------------------------------------------------

async fn serve_bytes(bytes: Vec<u8>) -> Result<(), RpcError> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let serving = tokio::spawn(serve_stream(server, hanging_router()));
    client.write_all(&bytes).await.unwrap();
    client.shutdown().await.unwrap();
    let result = guard("serve_stream", serving).await.unwrap();
    drop(client);
    result
}

#[tokio::test]
async fn server_reports_bad_frames_as_typed_errors() {
    let invoke = packet(Kind::Invoke, 1, 1, methods::GET_MANIFEST.path.as_bytes());
    let mut truncated = invoke.clone();
    truncated.truncate(invoke.len() - 3);
    match serve_bytes(truncated).await {
        Err(RpcError::Transport(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("truncated: {other:?}"),
    }
    let mut long_varint = vec![0x03];
    long_varint.extend([0x80; 11]);
    assert!(matches!(serve_bytes(long_varint).await, Err(RpcError::Protocol(t)) if t.contains("varint")));
    let unknown = frame(42, false, true, 1, 1, b"");
    assert!(matches!(serve_bytes(unknown).await, Err(RpcError::Protocol(t)) if t.contains("unknown packet kind")));
    let mut huge = vec![0x03, 0x01, 0x01];
    wire::put_varint(&mut huge, 1 << 40);
    assert!(matches!(serve_bytes(huge).await, Err(RpcError::MessageTooLarge { .. })));
    let mut backwards = invoke.clone();
    backwards.extend(packet(Kind::Message, 1, 3, b""));
    backwards.extend(packet(Kind::CloseSend, 1, 2, b""));
    assert!(matches!(serve_bytes(backwards).await, Err(RpcError::Protocol(t)) if t.contains("monotonicity")));
}

#[tokio::test]
async fn server_ignores_unknown_control_packets() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let serving = tokio::spawn(serve_stream(server, hanging_router()));
    let mut out = frame(42, true, true, 1, 1, b"ignore me");
    out.extend(packet(Kind::Invoke, 1, 2, methods::UPDATE_STATS.path.as_bytes()));
    out.extend(frame(42, true, true, 1, 3, b"and me"));
    out.extend(packet(Kind::Message, 1, 4, b""));
    out.extend(packet(Kind::CloseSend, 1, 5, b""));
    client.write_all(&out).await.unwrap();
    let replies = guard("replies", read_packets(&mut client, Kind::CloseSend)).await;
    assert_eq!(
        replies.iter().map(|p| p.kind).collect::<Vec<_>>(),
        [Kind::Message, Kind::CloseSend]
    );
    drop(client);
    guard("serve_stream ends", serving).await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------
// Peer hang-ups and silence
// ---------------------------------------------------------------------------

#[tokio::test]
async fn raw_peer_hanging_up_before_the_reply_is_an_unexpected_eof() {
    match unary_against(Vec::new(), true).await {
        Err(RpcError::Transport(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn raw_peer_hanging_up_mid_stream_ends_the_stream_with_an_error() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let RawStream { sender, mut receiver } = client_stream(client, &tailnet_methods::STREAM_DERP_MAPS);
    let peer = tokio::spawn(async move {
        read_packets(&mut server, Kind::Invoke).await;
        server.write_all(&packet(Kind::Message, 1, 1, b"map")).await.unwrap();
    });
    assert!(guard("first", receiver.next()).await.unwrap().is_ok());
    guard("peer", peer).await.unwrap();
    match guard("second", receiver.next()).await {
        Some(Err(RpcError::Transport(e))) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    assert!(guard("end", receiver.next()).await.is_none());
    drop(sender);
}

#[tokio::test]
async fn raw_peer_cancel_packet_ends_the_call_as_cancelled() {
    let reply = frame(Kind::Cancel.as_u8(), true, true, 1, 1, b"");
    assert!(matches!(unary_against(reply, false).await, Err(RpcError::Cancelled)));
}

#[tokio::test]
async fn raw_peer_close_send_without_a_reply_is_a_protocol_error() {
    let reply = frame(CLOSE_SEND, false, true, 1, 1, b"");
    let text = protocol_error(unary_against(reply, false).await);
    assert!(text.contains("without a reply"), "{text}");
}

/// The client's bytes for one unary call (Invoke, Message, CloseSend).
fn unary_request_len(path: &str, body: usize) -> usize {
    packet(Kind::Invoke, 1, 1, path.as_bytes()).len()
        + packet(Kind::Message, 1, 2, &vec![0u8; body]).len()
        + packet(Kind::CloseSend, 1, 3, b"").len()
}

#[tokio::test]
async fn reply_is_returned_even_when_the_close_cannot_be_written() {
    // The pipe holds exactly the request: the peer never reads, so the
    // trailing Close cannot be written. The call must still return its reply.
    let (client, mut server) = tokio::io::duplex(unary_request_len(methods::GET_MANIFEST.path, 0));
    let peer = tokio::spawn(async move {
        server.write_all(&packet(Kind::Message, 1, 1, b"reply")).await.unwrap();
        server
    });
    let reply = guard("unary", client_unary(client, &methods::GET_MANIFEST, Bytes::new())).await;
    assert_eq!(&reply.unwrap()[..], b"reply");
    drop(peer);
}

#[tokio::test]
async fn client_sends_close_only_if_the_servers_close_send_has_not_arrived() {
    for with_close_send in [false, true] {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let peer = tokio::spawn(async move {
            read_packets(&mut server, Kind::CloseSend).await;
            let mut reply = packet(Kind::Message, 1, 1, b"reply");
            if with_close_send {
                reply.extend(packet(Kind::CloseSend, 1, 2, b""));
            }
            server.write_all(&reply).await.unwrap();
            // Everything the client sends after the reply, up to its FIN.
            read_packets(&mut server, Kind::Unknown(63)).await
        });
        guard("unary", client_unary(client, &methods::GET_MANIFEST, Bytes::new()))
            .await
            .unwrap();
        let after: Vec<Kind> = guard("peer", peer).await.unwrap().iter().map(|p| p.kind).collect();
        if with_close_send {
            assert!(after.is_empty(), "{after:?}");
        } else {
            assert_eq!(after, [Kind::Close]);
        }
    }
}

#[tokio::test]
async fn dropping_a_stream_while_its_write_waits_for_the_peer_ends_the_pump() {
    // A tiny pipe nobody reads: the pump blocks writing; dropping the
    // receiver must still end it (the peer then sees the pipe close).
    let (client, mut server) = tokio::io::duplex(64);
    let RawStream { mut sender, receiver } = client_stream(client, &tailnet_methods::COORDINATE);
    sender.send(Bytes::from(vec![1u8; 4096])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(receiver);
    let mut sink = Vec::new();
    guard("pipe closes", server.read_to_end(&mut sink)).await.unwrap();
    assert!(sink.len() < 4096, "the blocked message was abandoned");
    assert!(matches!(
        sender.send(Bytes::new()).await,
        Err(RpcError::ConnectionClosed)
    ));
}

// ---------------------------------------------------------------------------
// Full stack: embedded server and client
// ---------------------------------------------------------------------------

async fn setup() -> (EmbeddedServer, Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = EmbeddedServer::start().await.unwrap();
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .build()
        .unwrap();
    (server, client)
}

async fn clients(client: &Client) -> (Connection, Agent28, Tailnet28) {
    let conn = guard("connect", client.connect_rpc()).await.unwrap();
    (
        conn.clone(),
        Agent28::new(conn.transport()),
        Tailnet28::new(conn.transport()),
    )
}

/// The `MuxError` inside a transport error, if any.
fn mux_cause(e: &RpcError) -> Option<&MuxError> {
    match e {
        RpcError::Transport(io) => io.get_ref().and_then(|e| e.downcast_ref::<MuxError>()),
        _ => None,
    }
}

#[tokio::test]
async fn request_over_4_mib_is_refused_without_opening_a_stream() {
    let (server, client) = setup().await;
    let (conn, agent, _) = clients(&client).await;
    let huge = agent::BatchCreateLogsRequest {
        log_source_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
        logs: vec![agent::Log {
            output: "x".repeat(MAX_MESSAGE_SIZE),
            ..Default::default()
        }],
    };
    match guard("call", agent.batch_create_logs(huge)).await {
        Err(RpcError::MessageTooLarge { size, limit }) => {
            assert!(size > MAX_MESSAGE_SIZE);
            assert_eq!(limit, MAX_MESSAGE_SIZE);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.open_streams(), 0);
    assert_eq!(server.open_streams(), 0);
    assert!(server.api().recorded().is_empty(), "nothing reached the server");
    guard("next call", agent.get_manifest(Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn reply_over_4_mib_is_refused_by_the_server_with_an_error_packet() {
    let (server, client) = setup().await;
    let mut manifest = server.api().manifest();
    manifest.motd_path = "m".repeat(MAX_MESSAGE_SIZE);
    server.api().set_manifest(manifest);
    let (_conn, agent, _) = clients(&client).await;
    match guard("call", agent.get_manifest(Default::default())).await {
        Err(RpcError::Remote { code: 0, message }) => {
            assert!(message.contains("exceeds the 4194304 byte limit"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_that_never_answers_ends_with_a_caller_timeout_and_frees_the_stream() {
    let (server, client) = setup().await;
    server.api().set_fault("GetManifest", Some(Fault::Hang));
    let (conn, agent, _) = clients(&client).await;
    let call = agent.get_manifest(Default::default());
    assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err());
    eventually("client stream freed", || conn.open_streams() == 0).await;
    eventually("server stream freed", || server.open_streams() == 0).await;
    // Dropping the future without a timeout is the same cancellation.
    let mut call = Box::pin(agent.get_manifest(Default::default()));
    tokio::select! {
        r = &mut call => panic!("a hanging call returned {r:?}"),
        _ = eventually("call reached the server", || server.open_streams() == 1) => {}
    }
    drop(call);
    eventually("client stream freed", || conn.open_streams() == 0).await;
    eventually("server stream freed", || server.open_streams() == 0).await;
    server.api().set_fault("GetManifest", None);
    guard("next call", agent.get_manifest(Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_dropping_the_connection_mid_unary_call_is_a_typed_error() {
    let (server, client) = setup().await;
    server.api().set_fault("GetManifest", Some(Fault::Hang));
    let (conn, agent, _) = clients(&client).await;
    let call = tokio::spawn(async move { agent.get_manifest(Default::default()).await });
    eventually("call in flight", || server.open_streams() == 1).await;
    server.disconnect_all();
    let err = guard("call", call).await.unwrap().unwrap_err();
    assert!(mux_cause(&err).is_some(), "{err:?}");
    let reason = guard("closed", conn.closed()).await;
    assert!(
        matches!(reason, MuxError::GoAway { code: 0 } | MuxError::PeerClosed),
        "{reason:?}"
    );
    assert_eq!(conn.open_streams(), 0);
    let agent = Agent28::new(conn.transport());
    assert!(guard("after", agent.get_manifest(Default::default())).await.is_err());
}

#[tokio::test]
async fn server_dropping_the_connection_mid_stream_ends_the_stream_with_an_error() {
    let (server, client) = setup().await;
    let (conn, _, tailnet) = clients(&client).await;
    let mut maps = guard("open", tailnet.stream_derp_maps(Default::default()))
        .await
        .unwrap();
    guard("first", maps.next()).await.unwrap().unwrap();
    server.disconnect_all();
    let err = guard("second", maps.next()).await.unwrap().unwrap_err();
    assert!(mux_cause(&err).is_some(), "{err:?}");
    assert!(guard("end", maps.next()).await.is_none());
    eventually("stream freed", || conn.open_streams() == 0).await;
}

/// A TCP forwarder the test can cut: both sockets are dropped at once, so
/// the client sees the transport end without a websocket Close or a GoAway.
async fn cuttable_proxy(target: std::net::SocketAddr) -> (url::Url, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut cut = cut_rx.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.wait_for(|c| *c) => {}
                }
            });
        }
    });
    (url::Url::parse(&format!("http://{addr}/")).unwrap(), cut_tx)
}

#[tokio::test]
async fn transport_cut_mid_call_and_mid_stream_is_a_typed_error() {
    let (server, _) = setup().await;
    server.api().set_fault("GetManifest", Some(Fault::Hang));
    let (url, cut) = cuttable_proxy(server.addr()).await;
    let client = Client::builder(url.as_str()).token(server.token()).build().unwrap();
    let (conn, agent, tailnet) = clients(&client).await;
    let mut maps = guard("open", tailnet.stream_derp_maps(Default::default()))
        .await
        .unwrap();
    guard("first map", maps.next()).await.unwrap().unwrap();
    let call = tokio::spawn(async move { agent.get_manifest(Default::default()).await });
    eventually("both in flight", || server.open_streams() == 2).await;
    cut.send(true).unwrap();
    let err = guard("unary", call).await.unwrap().unwrap_err();
    assert!(mux_cause(&err).is_some(), "{err:?}");
    let err = guard("stream", maps.next()).await.unwrap().unwrap_err();
    assert!(mux_cause(&err).is_some(), "{err:?}");
    let reason = guard("closed", conn.closed()).await;
    assert!(matches!(reason, MuxError::PeerClosed | MuxError::Io(_)), "{reason:?}");
    eventually("client streams freed", || conn.open_streams() == 0).await;
    eventually("server streams freed", || server.open_streams() == 0).await;
}

// ---------------------------------------------------------------------------
// yamux faults from a raw peer
// ---------------------------------------------------------------------------

const YAMUX_DATA: u8 = 0;
const YAMUX_WINDOW_UPDATE: u8 = 1;
const YAMUX_GO_AWAY: u8 = 3;
const SYN: u16 = 1;
const ACK: u16 = 2;
const RST: u16 = 8;

fn yamux_header(kind: u8, flags: u16, stream: u32, length: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[1] = kind;
    h[2..4].copy_from_slice(&flags.to_be_bytes());
    h[4..8].copy_from_slice(&stream.to_be_bytes());
    h[8..12].copy_from_slice(&length.to_be_bytes());
    h
}

/// Reads yamux frames until a stream is opened (SYN) and carries data;
/// returns its id.
async fn await_syn<R: AsyncRead + Unpin>(io: &mut R) -> u32 {
    let mut opened = None;
    loop {
        let mut h = [0u8; 12];
        io.read_exact(&mut h).await.expect("yamux header");
        let flags = u16::from_be_bytes([h[2], h[3]]);
        let stream = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        if flags & SYN != 0 {
            opened = Some(stream);
        }
        if h[1] == YAMUX_DATA {
            let mut body = vec![0u8; length as usize];
            io.read_exact(&mut body).await.expect("yamux body");
            if length > 0 && opened == Some(stream) {
                return stream;
            }
        }
    }
}

/// A `Connection` whose peer is the test, speaking raw yamux over a pipe.
fn raw_yamux_connection() -> (Connection, DuplexStream) {
    let (client, peer) = tokio::io::duplex(1 << 20);
    let session = Session::client(client, SessionConfig::default());
    (Connection::new(session, v28()), peer)
}

#[tokio::test]
async fn yamux_rst_from_the_peer_ends_the_call_and_frees_the_stream() {
    let (conn, mut peer) = raw_yamux_connection();
    let agent = Agent28::new(conn.transport());
    let call = tokio::spawn({
        let agent = agent.clone();
        async move { agent.get_manifest(Default::default()).await }
    });
    let id = guard("syn", await_syn(&mut peer)).await;
    peer.write_all(&yamux_header(YAMUX_WINDOW_UPDATE, ACK | RST, id, 0))
        .await
        .unwrap();
    match guard("call", call).await.unwrap() {
        Err(RpcError::Transport(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("{other:?}"),
    }
    eventually("stream freed", || conn.open_streams() == 0).await;
    assert!(!conn.is_closed(), "an RST ends one stream, not the session");
}

#[tokio::test]
async fn yamux_rst_mid_stream_ends_the_stream_with_an_error() {
    let (conn, mut peer) = raw_yamux_connection();
    let tailnet = Tailnet28::new(conn.transport());
    let opening = tokio::spawn(async move { tailnet.stream_derp_maps(Default::default()).await });
    let id = guard("syn", await_syn(&mut peer)).await;
    let mut maps = guard("open", opening).await.unwrap().unwrap();
    let map = coder_agentsdk::proto::tailnet::DerpMap::default().encode_to_vec();
    let drpc = packet(Kind::Message, 1, 1, &map);
    peer.write_all(&yamux_header(YAMUX_DATA, ACK, id, drpc.len() as u32))
        .await
        .unwrap();
    peer.write_all(&drpc).await.unwrap();
    guard("first", maps.next()).await.unwrap().unwrap();
    peer.write_all(&yamux_header(YAMUX_DATA, RST, id, 0)).await.unwrap();
    match guard("second", maps.next()).await {
        Some(Err(RpcError::Transport(e))) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    assert!(guard("end", maps.next()).await.is_none());
    eventually("stream freed", || conn.open_streams() == 0).await;
}

#[tokio::test]
async fn yamux_go_away_from_the_peer_fails_calls_with_its_code() {
    let (conn, mut peer) = raw_yamux_connection();
    let agent = Agent28::new(conn.transport());
    let call = tokio::spawn({
        let agent = agent.clone();
        async move { agent.get_manifest(Default::default()).await }
    });
    guard("syn", await_syn(&mut peer)).await;
    // GoAway, protocol error (1).
    peer.write_all(&yamux_header(YAMUX_GO_AWAY, 0, 0, 1)).await.unwrap();
    let err = guard("call", call).await.unwrap().unwrap_err();
    assert!(matches!(mux_cause(&err), Some(MuxError::GoAway { code: 1 })), "{err:?}");
    assert!(matches!(
        guard("closed", conn.closed()).await,
        MuxError::GoAway { code: 1 }
    ));
    let err = guard("later call", agent.get_manifest(Default::default()))
        .await
        .unwrap_err();
    assert!(matches!(mux_cause(&err), Some(MuxError::GoAway { code: 1 })), "{err:?}");
    assert_eq!(conn.open_streams(), 0);
}

// ---------------------------------------------------------------------------
// Websocket faults
// ---------------------------------------------------------------------------

#[tokio::test]
async fn websocket_close_frame_ends_the_connection_and_fails_the_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(server_config()))
            .await
            .unwrap();
        // Wait for the call's stream to open (a yamux frame with SYN), then
        // close the websocket.
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                if b.len() >= 12 && u16::from_be_bytes([b[2], b[3]]) & SYN != 0 {
                    break;
                }
            }
        }
        ws.send(Message::Close(None)).await.unwrap();
        // Drain until the client answers the close.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let url = format!("ws://{addr}/api/v2/workspaceagents/me/rpc?version=2.8");
    let (ws, _) = guard(
        "ws connect",
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true),
    )
    .await
    .unwrap();
    let conn = Connection::new(Session::client(WsByteStream::new(ws), SessionConfig::default()), v28());
    let agent = Agent28::new(conn.transport());
    let err = guard("call", agent.get_manifest(Default::default())).await.unwrap_err();
    assert!(matches!(mux_cause(&err), Some(MuxError::PeerClosed)), "{err:?}");
    assert!(matches!(guard("closed", conn.closed()).await, MuxError::PeerClosed));
    assert_eq!(conn.open_streams(), 0);
    guard("peer", peer).await.unwrap();
}

// ---------------------------------------------------------------------------
// Refused upgrades
// ---------------------------------------------------------------------------

fn api_error(r: Result<Connection, Error>) -> coder_agentsdk::ApiError {
    match r {
        Err(Error::Api(e)) => *e,
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

#[tokio::test]
async fn upgrade_without_a_token_is_refused_with_401_and_coderds_body() {
    let (server, _) = setup().await;
    let client = Client::builder(server.url().as_str()).token("").build().unwrap();
    let e = api_error(guard("connect", client.connect_rpc()).await);
    assert_eq!(e.status, 401);
    assert_eq!(e.response.message, "Cookie \"coder_session_token\" must be provided.");
}

#[tokio::test]
async fn upgrade_with_a_wrong_token_is_refused_with_401_and_coderds_body() {
    let (server, _) = setup().await;
    let client = Client::builder(server.url().as_str()).token("wrong").build().unwrap();
    let e = api_error(guard("connect", client.connect_rpc()).await);
    assert_eq!(e.status, 401);
    assert_eq!(e.response.message, "Workspace agent not authorized.");
    assert!(e.response.detail.contains("provision job"), "{:?}", e.response);
}

#[tokio::test]
async fn upgrade_at_an_unsupported_version_is_refused_with_400_and_a_version_validation() {
    let (server, client) = setup().await;
    let e = api_error(guard("connect", client.connect_rpc_version(ApiVersion::new(2, 99), None)).await);
    assert_eq!(e.status, 400);
    assert_eq!(e.response.message, "Unknown or unsupported API version");
    assert_eq!(e.response.validations.len(), 1);
    assert_eq!(e.response.validations[0].field, "version");
    assert!(
        e.response.validations[0]
            .detail
            .contains("behind requested minor version"),
        "{:?}",
        e.response
    );
    let e = api_error(guard("connect", client.connect_rpc_version(ApiVersion::new(3, 0), None)).await);
    assert_eq!(e.status, 400);
    assert_eq!(e.response.validations[0].field, "version");
    drop(server);
}

#[tokio::test]
async fn upgrade_refused_with_an_html_body_keeps_status_and_text() {
    use axum::http::{header, StatusCode};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = format!("<html><body><h1>502 Bad Gateway</h1>{}</body></html>", "x".repeat(4000));
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move {
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page,
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder(format!("http://{addr}/")).token("t").build().unwrap();
    let e = api_error(guard("connect", client.connect_rpc()).await);
    assert_eq!(e.status, 502);
    assert_eq!(
        e.response.message,
        "unexpected non-JSON response \"text/html; charset=utf-8\""
    );
    assert!(
        e.response.detail.starts_with("<html><body><h1>502"),
        "{:?}",
        e.response.detail
    );
    assert!(
        e.response.detail.len() <= 2048 + 16,
        "truncated: {}",
        e.response.detail.len()
    );
}

#[tokio::test]
async fn upgrade_refused_with_a_json_server_error_keeps_the_body() {
    let (server, client) = setup().await;
    server.refuse_upgrades(Some((
        503,
        coder_agentsdk::error::Response {
            message: "Agent is shutting down.".into(),
            detail: "try again".into(),
            validations: Vec::new(),
        },
    )));
    let e = api_error(guard("connect", client.connect_rpc()).await);
    assert_eq!(e.status, 503);
    assert_eq!(e.response.message, "Agent is shutting down.");
    assert_eq!(e.response.detail, "try again");
}
