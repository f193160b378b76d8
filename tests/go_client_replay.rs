//! Our embedded server against the bytes a real Go agent sends: the client
//! side of `tests/vectors/yamux/yamux_over_websocket_get_manifest.json`
//! (hashicorp/yamux + storj drpc over coder/websocket) is replayed message by
//! message, and the server's answer must be a valid yamux + drpc reply.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use coder_agentsdk::drpc::wire::{self, Kind, PacketAssembler};
use coder_agentsdk::proto::agent;
use coder_agentsdk::server::EmbeddedServer;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/yamux/yamux_over_websocket_get_manifest.json"
);

/// A yamux frame header, decoded.
#[derive(Debug)]
struct Header {
    kind: u8,
    flags: u16,
    stream: u32,
    length: u32,
}

fn take_frame(buf: &mut BytesMut) -> Option<(Header, Vec<u8>)> {
    if buf.len() < 12 {
        return None;
    }
    assert_eq!(buf[0], 0, "yamux version");
    let h = Header {
        kind: buf[1],
        flags: u16::from_be_bytes([buf[2], buf[3]]),
        stream: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        length: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
    };
    let body_len = if h.kind == 0 { h.length as usize } else { 0 };
    if buf.len() < 12 + body_len {
        return None;
    }
    buf.advance(12);
    let body = buf.split_to(body_len).to_vec();
    Some((h, body))
}

#[tokio::test]
async fn go_agent_bytes_get_a_manifest_from_our_server() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let vector: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(VECTOR).unwrap()).unwrap();
        let writes: Vec<Vec<u8>> = vector["client_writes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| hex::decode(w["hex"].as_str().unwrap()).unwrap())
            .collect();
        // Writes 0..3 open stream 1 and carry Invoke + Message + CloseSend; 3.. are the
        // Close packet and the FIN sent after the reply.
        let (request, after_reply) = writes.split_at(3);

        let server = EmbeddedServer::start().await.unwrap();
        let url = format!(
            "ws://{}/api/v2/workspaceagents/me/rpc?role=agent&version=2.8",
            server.addr()
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Coder-Session-Token", server.token().parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        for w in request {
            ws.send(Message::binary(w.clone())).await.unwrap();
        }

        // Read the server's yamux frames until the drpc reply on stream 1 is complete.
        let mut buf = BytesMut::new();
        let mut drpc = BytesMut::new();
        let mut assembler = PacketAssembler::new();
        let mut acked = false;
        let mut manifest = None;
        let mut close_send = false;
        while manifest.is_none() || !close_send {
            let msg = ws.next().await.expect("server hung up").unwrap();
            let Message::Binary(data) = msg else { continue };
            buf.extend_from_slice(&data);
            while let Some((h, body)) = take_frame(&mut buf) {
                if h.kind == 2 {
                    continue; // our server's own RTT pings are answered by nobody here
                }
                assert_eq!(h.stream, 1, "{h:?}");
                acked |= h.flags & 0x2 != 0;
                drpc.extend_from_slice(&body);
                while let Some(frame) = wire::decode_frame(&mut drpc).unwrap() {
                    if let Some(packet) = assembler.push(frame).unwrap() {
                        match packet.kind {
                            Kind::Message => manifest = Some(agent::Manifest::decode(packet.data).unwrap()),
                            Kind::CloseSend => close_send = true,
                            other => panic!("unexpected {other} from the server"),
                        }
                    }
                }
            }
        }
        assert!(acked, "the server acknowledged stream 1 (ACK flag)");
        assert_eq!(manifest.unwrap(), server.api().manifest());

        // The Go client then sends Close and FINs the stream; the server FINs too and forgets it.
        for w in after_reply {
            ws.send(Message::binary(w.clone())).await.unwrap();
        }
        let mut fin = false;
        while !fin {
            let Message::Binary(data) = ws.next().await.expect("server hung up").unwrap() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some((h, _)) = take_frame(&mut buf) {
                fin |= h.stream == 1 && h.flags & 0x4 != 0;
            }
        }
        while server.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}
