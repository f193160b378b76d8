//! Cancellation at random points (issue 4): 10,000 calls on ONE connection,
//! each dropped somewhere in its life (unary futures after a random delay or
//! a random number of polls, server streams after 0–2 items, bidi streams
//! mid-way), then the yamux streams open on both ends must return to zero
//! and the connection must still serve calls.
//!
//! Deterministic: a fixed-seed xorshift PRNG per worker. Timing still varies
//! from run to run, which is the point (the cut lands in different places),
//! but the plan of calls does not.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coder_agentsdk::proto::{agent, tailnet};
use coder_agentsdk::rpc::agent::Agent28;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::tailnet::Tailnet28;
use coder_agentsdk::server::{EmbeddedServer, Fault};
use coder_agentsdk::Client;
use futures::StreamExt;

const CALLS: usize = 10_000;
const WORKERS: usize = 50;

/// Hang guard (not a timing assertion).
const GUARD: Duration = Duration::from_secs(60);

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Polls `fut` at most `polls` times (yielding in between), then drops it.
/// Returns whether it completed.
async fn poll_at_most<F: Future>(fut: F, polls: u64) -> bool {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        if futures::poll!(fut.as_mut()).is_ready() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

#[derive(Default)]
struct Tally {
    completed: AtomicUsize,
    cancelled: AtomicUsize,
}

impl Tally {
    fn record(&self, completed: bool) {
        if completed {
            self.completed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn node_update(id: i64) -> tailnet::CoordinateRequest {
    tailnet::CoordinateRequest {
        update_self: Some(tailnet::coordinate_request::UpdateSelf {
            node: Some(tailnet::Node {
                id,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// One call of a randomly chosen shape, cancelled at a random point.
async fn one_call(rng: &mut Rng, agent: &Agent28, tailnet: &Tailnet28, tally: &Tally) {
    match rng.below(10) {
        // Unary, slowed down by the server: dropped after a random delay.
        0..=2 => {
            let wait = Duration::from_micros(rng.below(3_000));
            let done = tokio::time::timeout(wait, agent.get_manifest(agent::GetManifestRequest {}))
                .await
                .is_ok();
            tally.record(done);
        }
        // Unary: dropped after a random number of polls (0 = never polled).
        3..=5 => {
            let polls = rng.below(12);
            let call = agent.update_stats(agent::UpdateStatsRequest::default());
            tally.record(poll_at_most(call, polls).await);
        }
        // Server stream: dropped after 0–2 items (the second never comes
        // unless a DERP map is pushed meanwhile, so it is bounded by a delay).
        6..=7 => {
            let items = rng.below(3);
            let wait = Duration::from_micros(500 + rng.below(2_000));
            let got = tokio::time::timeout(wait, async {
                let mut maps = tailnet.stream_derp_maps(Default::default()).await?;
                for _ in 0..items {
                    maps.next().await.transpose()?;
                }
                Ok::<_, coder_agentsdk::drpc::RpcError>(())
            })
            .await;
            tally.record(matches!(got, Ok(Ok(()))));
        }
        // Bidi: a few requests and replies, dropped mid-way.
        _ => {
            let sends = 1 + rng.below(3) as i64;
            let reads = rng.below(sends as u64 + 1);
            let wait = Duration::from_micros(rng.below(4_000));
            let got = tokio::time::timeout(wait, async {
                let mut coord = tailnet.coordinate().await?;
                for id in 0..sends {
                    coord.send(&node_update(id)).await?;
                }
                for _ in 0..reads {
                    coord.next().await.transpose()?;
                }
                Ok::<_, coder_agentsdk::drpc::RpcError>(())
            })
            .await;
            tally.record(matches!(got, Ok(Ok(()))));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_cancelled_at_random_points_leave_no_stream_open() {
    let server = EmbeddedServer::start().await.unwrap();
    // Keep calls in flight long enough to be cut in the middle.
    server
        .api()
        .set_fault("GetManifest", Some(Fault::Delay(Duration::from_millis(1))));
    server
        .api()
        .set_fault("Coordinate", Some(Fault::Delay(Duration::from_micros(500))));
    let client = Client::builder(server.url().as_str())
        .token(server.token())
        .build()
        .unwrap();
    let conn = client.connect_rpc().await.unwrap();
    let agent = Agent28::new(conn.transport());
    let tailnet = Tailnet28::new(conn.transport());
    let tally = Arc::new(Tally::default());

    let run = async {
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let (agent, tailnet, tally) = (agent.clone(), tailnet.clone(), tally.clone());
            workers.push(tokio::spawn(async move {
                let mut rng = Rng::new(w as u64 + 1);
                for _ in 0..CALLS / WORKERS {
                    one_call(&mut rng, &agent, &tailnet, &tally).await;
                }
            }));
        }
        for w in workers {
            w.await.expect("worker panicked");
        }
    };
    // Samples how many calls the server is serving, to prove that calls are
    // cut while in flight there, not only before they leave the client.
    let peak = async {
        let mut peak = 0;
        loop {
            peak = peak.max(server.open_streams());
            tokio::time::sleep(Duration::from_micros(200)).await;
            if tally.completed.load(Ordering::Relaxed) + tally.cancelled.load(Ordering::Relaxed) == CALLS {
                return peak;
            }
        }
    };
    let ((), peak) = tokio::time::timeout(GUARD, futures::future::join(run, peak))
        .await
        .expect("calls hung");

    let completed = tally.completed.load(Ordering::Relaxed);
    let cancelled = tally.cancelled.load(Ordering::Relaxed);
    eprintln!("completed {completed}, cancelled {cancelled}, peak streams at the server {peak}");
    assert!(peak >= 10, "calls were in flight at the server when cut: peak {peak}");
    assert_eq!(completed + cancelled, CALLS);
    assert!(cancelled >= CALLS / 4, "too few calls were cut: {cancelled}");
    assert!(!conn.is_closed(), "the connection survived");

    let drained = async {
        loop {
            let (ours, theirs) = (conn.open_streams(), server.open_streams());
            if ours == 0 && theirs == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(GUARD, drained).await.is_err() {
        panic!(
            "streams leaked: client {}, server {}",
            conn.open_streams(),
            server.open_streams()
        );
    }

    server.api().set_fault("GetManifest", None);
    let manifest = tokio::time::timeout(GUARD, agent.get_manifest(Default::default()))
        .await
        .expect("hung")
        .expect("a further call succeeds");
    assert_eq!(manifest, server.api().manifest());
    let mut maps = tailnet.stream_derp_maps(Default::default()).await.unwrap();
    assert!(matches!(
        tokio::time::timeout(GUARD, maps.next()).await,
        Ok(Some(Ok(_)))
    ));
    drop(maps);
    let quiet = async {
        while conn.open_streams() != 0 || server.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(GUARD, quiet)
        .await
        .expect("streams of the last calls closed");
}
