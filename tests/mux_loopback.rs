//! Websocket byte stream + yamux session on both ends of a real loopback
//! websocket (tokio-tungstenite client and server on 127.0.0.1:0).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coder_agentsdk::mux::websocket::{client_config, server_config, WsByteStream};
use coder_agentsdk::mux::yamux::{Incoming, MuxError, MuxStream, Session, SessionConfig};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const T: Duration = Duration::from_secs(20);

/// Fails the test instead of hanging CI (a guard, not a timing assertion).
async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(T, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

type ClientWs = WebSocketStream<MaybeTlsStream<TcpStream>>;
type ServerWs = WebSocketStream<TcpStream>;

async fn ws_pair() -> (ClientWs, ServerWs) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio_tungstenite::accept_async_with_config(tcp, Some(server_config()))
            .await
            .unwrap()
    });
    let url = format!("ws://{addr}/api/v2/workspaceagents/me/rpc?version=2.8&role=agent");
    let (client, _resp) = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true)
        .await
        .unwrap();
    (client, server.await.unwrap())
}

/// Both ends: our adapter + session.
async fn session_pair(client_cfg: SessionConfig) -> (Session, Session, Incoming) {
    let (c, s) = ws_pair().await;
    let client = Session::client(WsByteStream::new(c), client_cfg);
    let (server, incoming) = Session::server(WsByteStream::new(s), SessionConfig::default());
    (client, server, incoming)
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 251) as u8).collect()
}

async fn echo(stream: MuxStream) -> io::Result<u64> {
    let (mut r, mut w) = tokio::io::split(stream);
    let n = tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await?;
    Ok(n)
}

fn spawn_echo_server(mut incoming: Incoming) {
    tokio::spawn(async move {
        while let Some(s) = incoming.accept().await {
            tokio::spawn(echo(s));
        }
    });
}

/// Opens a stream, sends `data`, half-closes, reads the echo to EOF.
async fn echo_roundtrip(session: &Session, data: Vec<u8>) -> Vec<u8> {
    let stream = session.open_stream().await.expect("open");
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = async move {
        w.write_all(&data).await.expect("write");
        w.shutdown().await.expect("shutdown");
        w
    };
    let reader = async move {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("read");
        out
    };
    let (_w, out) = tokio::join!(writer, reader);
    out
}

async fn wait_for_zero(what: &str, s: &Session) {
    guard(what, async {
        while s.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A coderd-like server websocket that pings every `period` (payloads "1",
/// "2", …, like coder/websocket `Conn.Ping`) and relays binary messages to
/// and from a duplex pipe for the server session.
struct Pinger {
    sent: Arc<AtomicU64>,
    pongs: Arc<Mutex<Vec<String>>>,
}

fn ping_bridge(ws: ServerWs, period: Duration) -> (DuplexStream, Pinger) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    let sent = Arc::new(AtomicU64::new(0));
    let pongs = Arc::new(Mutex::new(Vec::new()));
    let p = pongs.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let go_on = match m {
                Message::Binary(b) => wr.write_all(&b).await.is_ok(),
                Message::Pong(b) => {
                    let pong = String::from_utf8_lossy(&b).into_owned();
                    p.lock().unwrap().push(pong);
                    true
                }
                Message::Close(_) => false,
                _ => true,
            };
            if !go_on {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let s = sent.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                            break;
                        }
                    }
                },
                _ = tick.tick() => {
                    let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                    if sink.send(Message::Ping(n.to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    (ours, Pinger { sent, pongs })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_300_streams_echo_100k_while_server_pings() {
    let (c, s) = ws_pair().await;
    let (server_io, pinger) = ping_bridge(s, Duration::from_millis(50));
    let mut cfg = SessionConfig::default();
    cfg.max_open_streams = 400;
    let client = Session::client(WsByteStream::new(c), cfg.clone());
    let (server, incoming) = Session::server(server_io, cfg);
    spawn_echo_server(incoming);

    let mut tasks = Vec::new();
    for i in 0..300 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(i, 100 * 1024);
            let back = echo_roundtrip(&client, data.clone()).await;
            assert!(back == data, "stream {i}: echo differs");
        }));
    }
    guard("300 echoes", async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;

    // Pings went out during the traffic; wait until "1", "2", "3" have come
    // back as pongs (tungstenite answers them while our adapter reads).
    guard("pongs", async {
        loop {
            let p = pinger.pongs.lock().unwrap().clone();
            if p.len() >= 3 {
                assert_eq!(&p[..3], ["1", "2", "3"]);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(pinger.sent.load(Ordering::SeqCst) >= 3);
    assert!(!client.is_closed() && !server.is_closed());
    let back = guard("after pings", echo_roundtrip(&client, b"still alive".to_vec())).await;
    assert_eq!(back, b"still alive");
    wait_for_zero("client streams", &client).await;
    wait_for_zero("server streams", &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_3_mib_on_one_stream() {
    let (client, server, incoming) = session_pair(SessionConfig::default()).await;
    spawn_echo_server(incoming);
    let data = pattern(3, 3 << 20);
    let back = guard("3 MiB echo", echo_roundtrip(&client, data.clone())).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    assert!(client.close_reason().is_none(), "{:?}", client.close_reason());
    wait_for_zero("server streams", &server).await;
}

#[tokio::test]
async fn text_message_is_a_protocol_error() {
    let (c, mut s) = ws_pair().await;
    let mut rd = WsByteStream::new(c);
    s.send(Message::Binary(b"ab".to_vec().into())).await.unwrap();
    s.send(Message::Text("hi".into())).await.unwrap();
    let mut buf = [0u8; 8];
    let n = guard("read", rd.read(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"ab");
    let e = guard("read text", rd.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let e = guard("read again", rd.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);

    // Under a session: the session dies with an I/O error.
    let (c, mut s) = ws_pair().await;
    let client = Session::client(WsByteStream::new(c), SessionConfig::default());
    s.send(Message::Text("hi".into())).await.unwrap();
    match guard("closed", client.closed()).await {
        MuxError::Io(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn close_frame_is_eof_and_empty_messages_are_skipped() {
    let (c, mut s) = ws_pair().await;
    let mut rd = WsByteStream::new(c);
    for m in [
        Message::Binary(Vec::new().into()),
        Message::Ping(b"x".to_vec().into()),
        Message::Binary(b"abc".to_vec().into()),
        Message::Binary(Vec::new().into()),
        Message::Pong(b"y".to_vec().into()),
        Message::Binary(b"def".to_vec().into()),
    ] {
        s.send(m).await.unwrap();
    }
    s.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    let mut all = Vec::new();
    guard("read to EOF", rd.read_to_end(&mut all)).await.unwrap();
    assert_eq!(all, b"abcdef");
    // The ping was answered while we read.
    let m = guard("pong", s.next()).await;
    assert!(matches!(m, Some(Ok(Message::Pong(ref p))) if &p[..] == b"x"), "{m:?}");

    // Our shutdown sends a Close frame with status 1000.
    let (c, mut s) = ws_pair().await;
    let mut w = WsByteStream::new(c);
    w.write_all(b"bye").await.unwrap();
    guard("shutdown", w.shutdown()).await.unwrap();
    let m = guard("data", s.next()).await;
    assert!(
        matches!(m, Some(Ok(Message::Binary(ref b))) if &b[..] == b"bye"),
        "{m:?}"
    );
    let m = guard("close", s.next()).await;
    assert!(
        matches!(m, Some(Ok(Message::Close(Some(ref f)))) if f.code == CloseCode::Normal),
        "{m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_mid_transfer_resets_it() {
    let (client, server, mut incoming) = session_pair(SessionConfig::default()).await;
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let srv = tokio::spawn(async move {
        let mut s = incoming.accept().await.expect("inbound");
        let mut buf = vec![0u8; 64 * 1024];
        s.read_exact(&mut buf).await.expect("first 64 KiB");
        let _ = got_tx.send(());
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest).await;
        let write = s.write_all(b"late reply").await;
        (read, write, incoming)
    });

    let mut stream = guard("open", client.open_stream()).await.unwrap();
    stream.write_all(&pattern(1, 64 * 1024)).await.unwrap();
    stream.flush().await.unwrap();
    guard("server got data", got_rx).await.unwrap();
    assert_eq!(client.open_streams(), 1);
    drop(stream); // not closed: RST
    assert_eq!(client.open_streams(), 0);

    let (read, write, _incoming) = guard("server side", srv).await.unwrap();
    // RST: the read ends, and unlike after a FIN the stream cannot write.
    assert!(read.is_ok(), "{read:?}");
    assert!(write.is_err(), "write after RST must fail");
    wait_for_zero("server streams", &server).await;
    assert!(!client.is_closed() && !server.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_close_fails_pending_reads() {
    let (client, server, mut incoming) = session_pair(SessionConfig::default()).await;
    let mut stream = guard("open", client.open_stream()).await.unwrap();
    stream.write_all(b"?").await.unwrap();
    stream.flush().await.unwrap();
    let mut inbound = guard("accept", incoming.accept()).await.unwrap();
    let mut one = [0u8; 1];
    inbound.read_exact(&mut one).await.unwrap();

    let pending = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        let r = stream.read(&mut buf).await;
        (r, stream)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pending.is_finished());

    client.close();
    let (r, stream) = guard("pending read fails", pending).await.unwrap();
    let e = r.expect_err("read after close must fail");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    let inner = e.get_ref().and_then(|e| e.downcast_ref::<MuxError>());
    assert!(matches!(inner, Some(MuxError::ClosedLocally)), "{e:?}");
    assert!(client.is_closed());
    assert!(matches!(client.open_stream().await, Err(MuxError::ClosedLocally)));
    assert!(matches!(
        guard("closed", client.closed()).await,
        MuxError::ClosedLocally
    ));
    drop(stream);
    assert_eq!(client.open_streams(), 0);

    // The server hears our GoAway(0); its streams fail too.
    let reason = guard("server closed", server.closed()).await;
    assert!(matches!(reason, MuxError::GoAway { code: 0 }), "{reason:?}");
    let mut buf = [0u8; 4];
    assert!(guard("server read", inbound.read(&mut buf)).await.is_err());
    drop(inbound);
    assert_eq!(server.open_streams(), 0);
    assert!(guard("incoming ends", incoming.accept()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_session_fails_streams() {
    let (client, _server, incoming) = session_pair(SessionConfig::default()).await;
    spawn_echo_server(incoming);
    let mut stream = guard("open", client.open_stream()).await.unwrap();
    drop(client);
    let mut buf = [0u8; 4];
    let e = guard("read", stream.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    assert!(stream.write_all(b"x").await.is_err());
}

#[tokio::test]
async fn peer_goaway_ends_the_session_with_a_typed_error() {
    let (c, mut s) = ws_pair().await;
    let client = Session::client(WsByteStream::new(c), SessionConfig::default());
    let mut stream = guard("open", client.open_stream()).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4];
        stream.read(&mut buf).await
    });
    // GoAway, internal error (2): version 0, type 3, flags 0, stream 0.
    let goaway = [0u8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    s.send(Message::Binary(goaway.to_vec().into())).await.unwrap();
    let reason = guard("closed", client.closed()).await;
    assert!(matches!(reason, MuxError::GoAway { code: 2 }), "{reason:?}");
    let e = guard("reader", reader).await.unwrap().unwrap_err();
    let inner = e.get_ref().and_then(|e| e.downcast_ref::<MuxError>());
    assert!(matches!(inner, Some(MuxError::GoAway { code: 2 })), "{e:?}");
    assert!(matches!(client.open_stream().await, Err(MuxError::GoAway { code: 2 })));
    assert_eq!(client.open_streams(), 0);
}

#[tokio::test]
async fn peer_disconnect_is_reported() {
    let (c, s) = ws_pair().await;
    let client = Session::client(WsByteStream::new(c), SessionConfig::default());
    drop(s); // TCP closed without a websocket Close frame
    let reason = guard("closed", client.closed()).await;
    assert!(matches!(reason, MuxError::Io(_) | MuxError::PeerClosed), "{reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_accept_backlog_refuses_streams_without_killing_the_session() {
    let (c, s) = ws_pair().await;
    let client = Session::client(WsByteStream::new(c), SessionConfig::default());
    let mut cfg = SessionConfig::default();
    cfg.accept_backlog = 2;
    let (server, mut incoming) = Session::server(WsByteStream::new(s), cfg);

    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut st = guard("open", client.open_stream()).await.unwrap();
        st.write_all(b"hi").await.unwrap();
        st.flush().await.unwrap();
        streams.push(st);
    }
    // The third one is refused with RST: its read ends at once.
    let mut buf = [0u8; 4];
    let n = guard("refused read", streams[2].read(&mut buf)).await.unwrap();
    assert_eq!(n, 0);
    for _ in 0..2 {
        let mut st = guard("accept", incoming.accept()).await.unwrap();
        let mut two = [0u8; 2];
        st.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"hi");
    }
    assert!(!client.is_closed() && !server.is_closed());
}
