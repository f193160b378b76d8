//! The embedded server's recordings are bounded (issue 10 §1): each keeps
//! the newest entries up to a limit (a builder setting), and what it drops
//! is counted and visible through the test kit.

use coder_agentsdk::proto::agent;
use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::DEFAULT_RECORD_LIMIT;
use coder_agentsdk::testkit::FakeCoderd;

fn stats(n: i64) -> agent::UpdateStatsRequest {
    agent::UpdateStatsRequest {
        stats: Some(agent::Stats {
            rx_packets: n,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn rpc_recording_keeps_the_newest_reports_up_to_the_limit_and_counts_the_dropped() {
    let coderd = FakeCoderd::builder().record_limit(5).start().await;
    let (agent, _tailnet) = coderd.client().connect_rpc28().await.unwrap();
    for n in 0..12 {
        agent.update_stats(stats(n)).await.unwrap();
    }
    let kept: Vec<i64> = coderd.stats().iter().map(|s| s.rx_packets).collect();
    assert_eq!(kept, [7, 8, 9, 10, 11]);
    assert_eq!(coderd.recorded_dropped(), 7);
}

#[tokio::test]
async fn rest_request_recording_is_bounded_and_counts_the_dropped() {
    let coderd = FakeCoderd::builder().record_limit(3).start().await;
    let client = coderd.client();
    for _ in 0..8 {
        client.git_ssh_key().await.unwrap();
    }
    assert_eq!(coderd.server().rest().requests().len(), 3);
    let dropped = coderd.rest_dropped();
    assert_eq!(dropped.requests, 5);
    assert_eq!(dropped.logs, 0);
}

#[tokio::test]
async fn default_limit_drops_nothing_in_a_short_run() {
    let coderd = FakeCoderd::start().await;
    let (agent, _tailnet) = coderd.client().connect_rpc28().await.unwrap();
    for n in 0..20 {
        agent.update_stats(stats(n)).await.unwrap();
    }
    assert_eq!(coderd.stats().len(), 20);
    assert_eq!(coderd.recorded_dropped(), 0);
    const { assert!(DEFAULT_RECORD_LIMIT >= 1_000) };
}

#[tokio::test]
async fn lowering_the_limit_at_run_time_drops_and_counts_at_once() {
    let coderd = FakeCoderd::start().await;
    let (agent, _tailnet) = coderd.client().connect_rpc28().await.unwrap();
    for n in 0..10 {
        agent.update_stats(stats(n)).await.unwrap();
    }
    coderd.server().api().set_record_limit(2);
    assert_eq!(coderd.recorded_dropped(), 8);
    let kept: Vec<i64> = coderd.stats().iter().map(|s| s.rx_packets).collect();
    assert_eq!(kept, [8, 9]);
}
