//! The client's yamux keepalive against an honest peer (the embedded
//! server, whose yamux answers pings): pings flow, answers are taken off the
//! wire without disturbing the session, and calls keep working.

use std::time::Duration;

use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::{CallExt, RpcOptions};
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;

const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn idle_connection_with_fast_keepalive_stays_up_against_an_answering_peer() {
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::builder().start().await.unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .rpc_options(RpcOptions::default().keepalive(Duration::from_millis(20), Duration::from_millis(200)))
            .build()
            .unwrap();
        let (agent, _) = client.connect_rpc28().await.unwrap();
        // About 40 ping rounds, and several answer timeouts, of idling and calling.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            agent
                .get_manifest(Default::default())
                .with_deadline(Duration::from_secs(5))
                .await
                .unwrap();
        }
        assert_eq!(server.connections(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn default_deadline_of_a_connection_ends_a_hanging_call_and_frees_its_stream() {
    use coder_agentsdk::drpc::RpcError;
    use coder_agentsdk::rpc::agent::Agent28;
    use coder_agentsdk::server::Fault;
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::builder().start().await.unwrap();
        server.api().set_fault("GetManifest", Some(Fault::Hang));
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let conn = client.connect_rpc_with_role("agent").await.unwrap();
        let deadline = Duration::from_millis(200);
        let agent = Agent28::new(conn.with_default_deadline(deadline).transport());
        let err = agent.get_manifest(Default::default()).await.unwrap_err();
        assert!(
            matches!(err, RpcError::DeadlineExceeded { deadline: d } if d == deadline),
            "{err:?}"
        );
        // A per-call deadline earlier than the default wins.
        let short = Duration::from_millis(50);
        let err = agent
            .get_manifest(Default::default())
            .with_deadline(short)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::DeadlineExceeded { deadline: d } if d == short),
            "{err:?}"
        );
        // The expired calls' streams were reset: nothing open on either side,
        // and the connection still serves other calls.
        while conn.open_streams() != 0 || server.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        agent.get_service_banner(Default::default()).await.unwrap();
        // The default applies to this client only; a client without it is not cut.
        assert_eq!(conn.default_deadline(), None);
    })
    .await
    .unwrap();
}

mod busy {
    /// Both sides ping every millisecond while the pipe is full both ways:
    /// the yamux crate alone stops reading while it owes a pong it cannot
    /// write, so two such sessions would stall until a keepalive fired; the
    /// tap answers pings itself and keeps reading.
    #[tokio::test]
    async fn both_sides_pinging_with_full_pipes_both_ways_do_not_stall() {
        tokio::time::timeout(super::GUARD, async {
            let (a, b) = tokio::io::duplex(1000);
            let config = || {
                let mut config = SessionConfig::default();
                config.keepalive = Some(KeepaliveConfig {
                    interval: Duration::from_millis(1),
                    timeout: Duration::from_secs(5),
                });
                config
            };
            let client = Session::client(a, config());
            let (server, incoming) = Session::server(b, config());
            echo_all(incoming);
            traffic(&client, &server).await;
            assert!(client.close_reason().is_none(), "{:?}", client.close_reason());
            assert!(server.close_reason().is_none(), "{:?}", server.close_reason());
        })
        .await
        .unwrap();
    }

    fn echo_all(mut incoming: coder_agentsdk::mux::yamux::Incoming) {
        tokio::spawn(async move {
            while let Some(s) = incoming.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(s);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
    }

    /// 32 streams each echo 256 KiB; every byte must come back intact.
    async fn traffic(client: &Session, server: &Session) {
        let mut tasks = Vec::new();
        for seed in 0..32 {
            let (client, server) = (client.clone(), server.clone());
            tasks.push(tokio::spawn(async move {
                let data = pattern(seed, 256 * 1024);
                let stream = client.open_stream().await.expect("open");
                let (mut r, mut w) = tokio::io::split(stream);
                let sent = data.clone();
                let writer = async move {
                    w.write_all(&sent).await.expect("write");
                    w.shutdown().await.expect("shutdown");
                    w
                };
                let reader = async move {
                    let mut out = Vec::new();
                    if let Err(e) = r.read_to_end(&mut out).await {
                        panic!(
                            "read: {e:?} client={:?} server={:?}",
                            client.close_reason(),
                            server.close_reason()
                        )
                    }
                    out
                };
                let (_w, out) = tokio::join!(writer, reader);
                assert!(out == data, "stream {seed} corrupted");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    use std::time::Duration;

    use coder_agentsdk::mux::keepalive::KeepaliveConfig;
    use coder_agentsdk::mux::yamux::{Session, SessionConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(seed: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + seed * 13) % 251) as u8).collect()
    }

    /// Pings are written only between yamux frames: with a ping due every
    /// millisecond, a tiny pipe (partial writes everywhere) and
    /// 32 streams each echoing 256 KiB, every byte comes back intact and
    /// both sessions stay up.
    #[tokio::test]
    async fn pings_interleaved_with_heavy_traffic_over_a_tiny_pipe_corrupt_nothing() {
        tokio::time::timeout(super::GUARD, async {
            let (a, b) = tokio::io::duplex(1000);
            let config = || {
                let mut config = SessionConfig::default();
                config.keepalive = Some(KeepaliveConfig {
                    interval: Duration::from_millis(1),
                    timeout: Duration::from_secs(5),
                });
                config
            };
            let client = Session::client(a, config());
            // The server does not ping: two yamux-crate sessions that both owe
            // a pong and both have a full pipe stop reading (rust-yamux issue
            // #227); a Go server never stops reading.
            let mut server_config = SessionConfig::default();
            server_config.keepalive = None;
            let (server, mut incoming) = Session::server(b, server_config);
            tokio::spawn(async move {
                while let Some(s) = incoming.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(s);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    });
                }
            });
            let mut tasks = Vec::new();
            for seed in 0..32 {
                let client = client.clone();
                let (c2, s2) = (client.clone(), server.clone());
                tasks.push(tokio::spawn(async move {
                    let data = pattern(seed, 256 * 1024);
                    let stream = client.open_stream().await.expect("open");
                    let (mut r, mut w) = tokio::io::split(stream);
                    let sent = data.clone();
                    let writer = async move {
                        w.write_all(&sent).await.expect("write");
                        w.shutdown().await.expect("shutdown");
                        w
                    };
                    let reader = async move {
                        let mut out = Vec::new();
                        if let Err(e) = r.read_to_end(&mut out).await {
                            panic!(
                                "read: {e:?} client={:?} server={:?}",
                                c2.close_reason(),
                                s2.close_reason()
                            )
                        }
                        out
                    };
                    let (_w, out) = tokio::join!(writer, reader);
                    assert!(out == data, "stream {seed} corrupted");
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert!(client.close_reason().is_none(), "{:?}", client.close_reason());
            assert!(server.close_reason().is_none(), "{:?}", server.close_reason());
        })
        .await
        .unwrap();
    }
}
