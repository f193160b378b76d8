//! The reinit channel: transmitter → receiver through the embedded coderd,
//! the transmitter's bytes against coderd's format, the receiver against
//! hand-written byte streams (split, CRLF, comments, cut, oversized), and
//! the reconnecting loop.

mod rest_support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Response;
use coder_agentsdk::server::rest::PrebuildState;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::sse::{ReinitReceiver, ReinitTransmitter, SseError, TransmitError};
use coder_agentsdk::testkit::FakeCoderd;
use coder_agentsdk::types::{ReinitEventShape, ReinitializationEvent, ReinitializationReason};
use coder_agentsdk::{Client, Error};
use futures::StreamExt;
use rest_support::*;
use tokio::sync::mpsc;
use uuid::Uuid;

const WORKSPACE: Uuid = uuid::uuid!("a7c5f2a3-53ad-4b0b-8b46-6fd0f2d0a8c1");
const OWNER: Uuid = uuid::uuid!("0e6f1c9b-2d34-4a8e-9c1f-5b7a3d2e4f60");

async fn setup() -> (EmbeddedServer, Client) {
    init_tracing();
    let server = EmbeddedServer::start().await.unwrap();
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    (server, client)
}

/// A server whose reinit endpoint streams `chunks` and then ends.
async fn streaming(chunks: Vec<Vec<u8>>) -> Client {
    init_tracing();
    let app = axum::Router::new().fallback(move || {
        let chunks = chunks.clone();
        async move {
            let stream = futures::stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Bytes::from(c))));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    });
    let addr = serve(app).await;
    Client::builder(url(addr)).token("t").build().unwrap()
}

fn sse_error(err: Error) -> SseError {
    match err {
        Error::Sse(e) => e,
        other => panic!("expected an SSE error, got {other:?}"),
    }
}

#[tokio::test]
async fn wait_for_reinit_receives_the_event_the_server_transmits() {
    tokio::time::timeout(GUARD, async {
        // The client's 300 ms REST timeout must not apply to the stream.
        let (server, client) = setup().await;
        server.rest().set_reinit_ping_interval(Duration::from_millis(50));
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_reinit().await }
        });
        server.rest().wait_for_reinit_streams(1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            server
                .rest()
                .send_reinit(ReinitializationEvent::prebuild_claimed(WORKSPACE)),
            1
        );
        let event = waiting.await.unwrap().unwrap();
        assert_eq!(event, ReinitializationEvent::prebuild_claimed(WORKSPACE));
        let request = server.rest().requests().pop().unwrap();
        assert_eq!(request.uri, "/api/v2/workspaceagents/me/reinit?wait=true");
        assert_eq!(request.accept.as_deref(), Some("text/event-stream"));
        assert!(request.had_token_header);
        // The receiver hung up after its event: the transmitter sees the target close.
        server.rest().wait_for_reinit_streams(0).await;
        while server.rest().reinit_outcomes().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(server.rest().reinit_outcomes(), vec![TransmitError::TargetClosed]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_refused_reinit_request_is_the_typed_api_error() {
    tokio::time::timeout(GUARD, async {
        let (server, _client) = setup().await;
        let client = Client::builder(server.url().as_str()).token("nope").build().unwrap();
        let err = client.wait_for_reinit().await.unwrap_err();
        assert_eq!(err.status(), Some(401));
        assert!(err.to_string().contains("GET "), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_transmitter_writes_coderds_headers_and_bytes() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let (events_tx, events_rx) = mpsc::channel(4);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let slot = Arc::new(std::sync::Mutex::new(Some((events_rx, done_tx))));
        let app = axum::Router::new().fallback(move || {
            let slot = slot.clone();
            async move {
                let (rx, done_tx) = slot.lock().unwrap().take().unwrap();
                let (response, done) = ReinitTransmitter::new().ping_interval(Duration::from_millis(30)).transmit(rx);
                tokio::spawn(async move {
                    let _ = done_tx.send(done.await);
                });
                response
            }
        });
        let addr = serve(app).await;
        let http = coder_agentsdk::client::http_client_builder().build().unwrap();
        let mut response = http.get(url(addr)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");

        // At least one heartbeat first, then the event.
        let mut wire = Vec::new();
        while wire.len() < "event: ping\n\n".len() {
            wire.extend_from_slice(&response.chunk().await.unwrap().unwrap());
        }
        events_tx
            .send(ReinitializationEvent::prebuild_claimed(WORKSPACE))
            .await
            .unwrap();
        drop(events_tx);
        while let Some(chunk) = response.chunk().await.unwrap() {
            wire.extend_from_slice(&chunk);
        }
        let wire = String::from_utf8(wire).unwrap();
        let expected_event = "event: data\ndata: {\"workspace_id\":\"a7c5f2a3-53ad-4b0b-8b46-6fd0f2d0a8c1\",\"reason\":\"prebuild_claimed\"}\n\n";
        let pings = wire.strip_suffix(expected_event).unwrap_or_else(|| panic!("{wire:?}"));
        let extra = pings.replace("event: ping\n\n", "");
        assert!(extra.is_empty() && !pings.is_empty(), "{wire:?}");
        assert_eq!(done_rx.await.unwrap(), TransmitError::SourceClosed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_receiver_reads_coderds_exact_bytes() {
    let wire: &[u8] = b"event: ping\n\nevent: data\ndata: {\"WorkspaceID\":\"a7c5f2a3-53ad-4b0b-8b46-6fd0f2d0a8c1\",\"reason\":\"prebuild_claimed\"}\n\n";
    let body = futures::stream::iter([Ok::<_, Infallible>(wire)]);
    let event = ReinitReceiver::new(body).receive().await.unwrap();
    assert_eq!(event, ReinitializationEvent::prebuild_claimed(WORKSPACE));
}

#[tokio::test]
async fn the_receiver_accepts_split_reads_crlf_comments_and_multi_line_data() {
    let wire = b": keep-alive comment\r\n\r\nevent: ping\r\n\r\nid: 1\r\nevent: data\r\ndata: {\"workspaceid\":\r\ndata: \"a7c5f2a3-53ad-4b0b-8b46-6fd0f2d0a8c1\",\r\ndata: \"Reason\":\"prebuild_claimed\",\"unknown\":[1,2]}\r\n\r\n";
    let chunks: Vec<Result<Vec<u8>, Infallible>> = wire.chunks(3).map(|c| Ok(c.to_vec())).collect();
    let event = ReinitReceiver::new(futures::stream::iter(chunks))
        .receive()
        .await
        .unwrap();
    assert_eq!(event.workspace_id, WORKSPACE);
    assert_eq!(event.reason, ReinitializationReason::PrebuildClaimed);
}

#[tokio::test]
async fn a_stream_cut_mid_event_is_an_error() {
    tokio::time::timeout(GUARD, async {
        let client = streaming(vec![
            b"event: ping\n\n".to_vec(),
            b"event: data\ndata: {\"WorkspaceID\":\"a7c5".to_vec(),
        ])
        .await;
        let err = sse_error(client.wait_for_reinit().await.unwrap_err());
        assert_eq!(err, SseError::StreamEnded);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_ten_megabyte_event_line_is_refused_without_buffering_it() {
    tokio::time::timeout(GUARD, async {
        let mut chunks = vec![b"event: data\ndata: ".to_vec()];
        chunks.extend(std::iter::repeat_n(vec![b'x'; 64 * 1024], 160)); // 10 MiB, no newline
        let client = streaming(chunks).await;
        let err = sse_error(client.wait_for_reinit().await.unwrap_err());
        assert_eq!(
            err,
            SseError::EventTooLarge {
                limit: coder_agentsdk::sse::DEFAULT_MAX_EVENT_BYTES
            }
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn error_events_unknown_types_and_bad_data_are_errors() {
    tokio::time::timeout(GUARD, async {
        type Check = fn(&SseError) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (
                b"event: error\ndata: boom\n\n",
                |e| matches!(e, SseError::ErrorEvent { data } if data == "boom"),
            ),
            (
                b"event: surprise\n\n",
                |e| matches!(e, SseError::UnexpectedEvent { event } if event == "surprise"),
            ),
            (
                b"data: {}\n\n",
                |e| matches!(e, SseError::UnexpectedEvent { event } if event == "message"),
            ),
            (b"event: data\ndata: {\"WorkspaceID\":17}\n\n", |e| {
                matches!(e, SseError::InvalidData(_))
            }),
            (b"event: data\ndata: not json\n\n", |e| {
                matches!(e, SseError::InvalidData(_))
            }),
        ];
        for (wire, check) in cases {
            let client = streaming(vec![wire.to_vec()]).await;
            let err = sse_error(client.wait_for_reinit().await.unwrap_err());
            assert!(check(&err), "{:?} gave {err:?}", String::from_utf8_lossy(wire));
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_loop_reconnects_after_failures_and_yields_every_event() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    // Two failures, an event, a stream that ends, another event.
                    0 => Response::builder().status(500).body(Body::from("down")).unwrap(),
                    1 => Response::builder()
                        .status(502)
                        .header("content-type", "text/html")
                        .body(Body::from("<html>bad gateway</html>"))
                        .unwrap(),
                    3 => Response::new(Body::from("event: ping\n\n")),
                    _ => Response::new(Body::from(format!(
                        "event: data\ndata: {{\"WorkspaceID\":\"{WORKSPACE}\",\"reason\":\"prebuild_claimed\"}}\n\n"
                    ))),
                }
            }
        });
        let addr = serve(app).await;
        let client = Client::builder(url(addr)).token("t").build().unwrap();
        let mut events = client.wait_for_reinit_loop();
        assert_eq!(events.next().await.unwrap().workspace_id, WORKSPACE);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(events.next().await.unwrap().workspace_id, WORKSPACE);
        assert_eq!(hits.load(Ordering::SeqCst), 5);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dropping_the_loop_closes_its_connection() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        server.rest().set_reinit_ping_interval(Duration::from_millis(20));
        let mut events = client.wait_for_reinit_loop();
        let first = async {
            server.rest().wait_for_reinit_streams(1).await;
            server
                .rest()
                .send_reinit(ReinitializationEvent::prebuild_claimed(WORKSPACE));
        };
        let (event, ()) = tokio::join!(events.next(), first);
        assert_eq!(event.unwrap().workspace_id, WORKSPACE);
        // The first request ends once its event is read.
        server.rest().wait_for_reinit_streams(0).await;
        while server.rest().reinit_outcomes().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Polling again opens the next request; dropping the stream must close it.
        tokio::select! {
            _ = events.next() => panic!("no event was sent"),
            _ = server.rest().wait_for_reinit_streams(1) => {}
        }
        drop(events);
        server.rest().wait_for_reinit_streams(0).await;
        while server.rest().reinit_outcomes().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            server.rest().reinit_outcomes(),
            vec![TransmitError::TargetClosed, TransmitError::TargetClosed]
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn closing_the_source_ends_the_stream_and_the_receiver_sees_the_end() {
    tokio::time::timeout(GUARD, async {
        let (server, client) = setup().await;
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_reinit().await }
        });
        server.rest().wait_for_reinit_streams(1).await;
        server.rest().close_reinit_streams();
        let err = sse_error(waiting.await.unwrap().unwrap_err());
        assert_eq!(err, SseError::StreamEnded);
        while server.rest().reinit_outcomes().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(server.rest().reinit_outcomes(), vec![TransmitError::SourceClosed]);
    })
    .await
    .unwrap();
}

/// The event a claim sends today: workspace and new owner.
fn claimed() -> ReinitializationEvent {
    ReinitializationEvent::prebuild_claimed(WORKSPACE).with_owner(OWNER)
}

/// The raw body of one reinit stream up to its first data event, read with
/// a plain HTTP client (`query` is appended to the path).
async fn raw_first_data_event(kit: &FakeCoderd, query: &str) -> String {
    let http = coder_agentsdk::client::http_client_builder().build().unwrap();
    let mut response = http
        .get(format!("{}api/v2/workspaceagents/me/reinit{query}", kit.url()))
        .header("Coder-Session-Token", kit.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut wire = String::new();
    while !wire.contains("event: data\n") || !wire.ends_with("\n\n") {
        wire.push_str(std::str::from_utf8(&response.chunk().await.unwrap().unwrap()).unwrap());
    }
    wire
}

#[tokio::test]
async fn todays_coderd_sends_workspace_id_and_owner_id_and_both_receivers_get_them() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let kit = FakeCoderd::builder().start().await;
        // The bytes: today's shape.
        let raw = tokio::spawn({
            let url = kit.url().clone();
            let token = kit.token().to_owned();
            async move {
                let http = coder_agentsdk::client::http_client_builder().build().unwrap();
                let response = http
                    .get(format!("{url}api/v2/workspaceagents/me/reinit?wait=true"))
                    .header("Coder-Session-Token", token)
                    .send()
                    .await
                    .unwrap();
                let mut body = response.bytes_stream();
                let mut wire = Vec::new();
                while !String::from_utf8_lossy(&wire).contains("}\n\n") {
                    wire.extend_from_slice(&body.next().await.unwrap().unwrap());
                }
                String::from_utf8(wire).unwrap()
            }
        });
        kit.wait_for_reinit_listeners(1).await;
        assert_eq!(kit.send_reinit(claimed()), 1);
        assert_eq!(
            raw.await.unwrap(),
            format!("event: data\ndata: {{\"workspace_id\":\"{WORKSPACE}\",\"reason\":\"prebuild_claimed\",\"owner_id\":\"{OWNER}\"}}\n\n")
        );
        kit.wait_for_reinit_listeners(0).await;

        // wait_for_reinit.
        let client = kit.client();
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_reinit().await }
        });
        kit.wait_for_reinit_listeners(1).await;
        kit.send_reinit(claimed());
        let event = waiting.await.unwrap().unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, Some(OWNER)));
        kit.wait_for_reinit_listeners(0).await;

        // wait_for_reinit_loop.
        let mut events = client.wait_for_reinit_loop();
        let send = async {
            kit.wait_for_reinit_listeners(1).await;
            kit.send_reinit(claimed());
        };
        let (event, ()) = tokio::join!(events.next(), send);
        let event = event.unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, Some(OWNER)));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_older_coderds_workspace_id_key_still_names_the_workspace() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let kit = FakeCoderd::builder()
            .reinit_event_shape(ReinitEventShape::Legacy)
            .start()
            .await;
        // The bytes: the old shape, no owner even though the event has one.
        let raw = tokio::spawn({
            let kit_url = kit.url().clone();
            let token = kit.token().to_owned();
            async move {
                let http = coder_agentsdk::client::http_client_builder().build().unwrap();
                let mut response = http
                    .get(format!("{kit_url}api/v2/workspaceagents/me/reinit"))
                    .header("Coder-Session-Token", token)
                    .send()
                    .await
                    .unwrap();
                let mut wire = String::new();
                while !wire.contains("}\n\n") {
                    wire.push_str(std::str::from_utf8(&response.chunk().await.unwrap().unwrap()).unwrap());
                }
                wire
            }
        });
        kit.wait_for_reinit_listeners(1).await;
        kit.send_reinit(claimed());
        assert_eq!(
            raw.await.unwrap(),
            format!("event: data\ndata: {{\"WorkspaceID\":\"{WORKSPACE}\",\"reason\":\"prebuild_claimed\"}}\n\n")
        );
        kit.wait_for_reinit_listeners(0).await;

        let client = kit.client();
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.wait_for_reinit().await }
        });
        kit.wait_for_reinit_listeners(1).await;
        kit.send_reinit(claimed());
        let event = waiting.await.unwrap().unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, None));
        assert_eq!(event.reason, ReinitializationReason::PrebuildClaimed);
        kit.wait_for_reinit_listeners(0).await;

        let mut events = client.wait_for_reinit_loop();
        let send = async {
            kit.wait_for_reinit_listeners(1).await;
            kit.send_reinit(claimed());
        };
        let (event, ()) = tokio::join!(events.next(), send);
        let event = event.unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, None));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn with_wait_a_claim_already_recorded_is_sent_at_once_and_the_stream_stays_open() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let kit = FakeCoderd::builder()
            .prebuild_state(PrebuildState::Claimed(claimed()))
            .start()
            .await;
        kit.server().rest().set_reinit_ping_interval(Duration::from_millis(20));
        // No send_reinit: the durable check seeds the event.
        let event = kit.client().wait_for_reinit().await.unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, Some(OWNER)));
        let mut events = kit.client().wait_for_reinit_loop();
        let event = events.next().await.unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, Some(OWNER)));
        drop(events);
        // The seeded stream is not closed after its event: only pings follow.
        let wire = raw_first_data_event(&kit, "?wait=true").await;
        assert!(wire.starts_with("event: data\n"), "{wire:?}");
        let http = coder_agentsdk::client::http_client_builder().build().unwrap();
        let mut response = http
            .get(format!("{}api/v2/workspaceagents/me/reinit?wait=true", kit.url()))
            .header("Coder-Session-Token", kit.token())
            .send()
            .await
            .unwrap();
        let mut wire = String::new();
        while wire.matches("event: ping\n\n").count() < 2 {
            wire.push_str(std::str::from_utf8(&response.chunk().await.unwrap().unwrap()).unwrap());
        }
        assert_eq!(wire.matches("event: data\n").count(), 1, "{wire:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn coderds_409_is_the_typed_error_and_ends_the_loop_without_a_retry() {
    let cases = [
        (
            PrebuildState::Regular,
            "Workspace is not a prebuilt workspace waiting to be claimed.",
            "This endpoint is only for agents running in prebuilt workspaces.",
        ),
        (
            PrebuildState::ClaimHandled,
            "Workspace is not a prebuilt workspace waiting to be claimed.",
            "The prebuild claim for this workspace has already been handled by an earlier build.",
        ),
        (
            PrebuildState::ClaimFailed("terraform apply: exit status 1".into()),
            "Claim build failed permanently.",
            "terraform apply: exit status 1",
        ),
    ];
    for (state, message, detail) in cases {
        tokio::time::timeout(GUARD, async {
            init_tracing();
            let kit = FakeCoderd::builder().prebuild_state(state.clone()).start().await;
            let err = kit.client().wait_for_reinit().await.unwrap_err();
            assert_eq!(err.status(), Some(409), "{state:?}: {err}");
            let api = err.api().unwrap();
            assert_eq!(api.response.message, message);
            assert_eq!(api.response.detail, detail);
            let mut events = kit.client().wait_for_reinit_loop();
            assert!(events.next().await.is_none(), "{state:?}: the loop ends on 409");
            let reinit_requests = |kit: &FakeCoderd| {
                kit.server()
                    .rest()
                    .requests()
                    .iter()
                    .filter(|r| r.uri.starts_with("/api/v2/workspaceagents/me/reinit"))
                    .count()
            };
            assert_eq!(reinit_requests(&kit), 2, "one call, one loop attempt, no retry");
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_durable_check_needs_wait_parsed_as_go_parse_bool() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let kit = FakeCoderd::builder()
            .prebuild_state(PrebuildState::Regular)
            .start()
            .await;
        let http = coder_agentsdk::client::http_client_builder().build().unwrap();
        let status = |query: &'static str| {
            let http = http.clone();
            let url = format!("{}api/v2/workspaceagents/me/reinit{query}", kit.url());
            let token = kit.token().to_owned();
            async move {
                http.get(url)
                    .header("Coder-Session-Token", token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        // Without wait (an older agent) coderd only relays events: a stream.
        for query in ["", "?wait=false", "?wait=yes", "?wait=TrUe", "?wait="] {
            assert_eq!(status(query).await, 200, "{query}");
        }
        for query in [
            "?wait=true",
            "?wait=1",
            "?wait=t",
            "?wait=T",
            "?wait=TRUE",
            "?wait=True",
        ] {
            assert_eq!(status(query).await, 409, "{query}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_loop_retries_other_failures_and_stops_at_a_409() {
    tokio::time::timeout(GUARD, async {
        init_tracing();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Response::builder().status(503).body(Body::from("down")).unwrap(),
                    1 => Response::new(Body::from(format!(
                        "event: data\ndata: {{\"workspace_id\":\"{WORKSPACE}\",\"reason\":\"prebuild_claimed\",\"owner_id\":\"{OWNER}\"}}\n\n"
                    ))),
                    _ => Response::builder()
                        .status(409)
                        .header("content-type", "application/json")
                        .body(Body::from(r#"{"message":"Claim build failed permanently.","detail":"x"}"#))
                        .unwrap(),
                }
            }
        });
        let addr = serve(app).await;
        let client = Client::builder(url(addr)).token("t").build().unwrap();
        let mut events = client.wait_for_reinit_loop();
        let event = events.next().await.unwrap();
        assert_eq!((event.workspace_id, event.owner_id), (WORKSPACE, Some(OWNER)));
        assert!(events.next().await.is_none());
        assert_eq!(hits.load(Ordering::SeqCst), 3, "a 503 retried, an event, a 409 ends it");
    })
    .await
    .unwrap();
}
