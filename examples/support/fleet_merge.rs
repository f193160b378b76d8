//! `fleet merge`: one summary from the JSON summaries of a fleet's shards.
//!
//! Shared by `examples/fleet.rs` (the `merge` subcommand) and
//! `tests/fleet.rs` (which checks it), so it lives outside both.

use serde_json::{json, Map, Value};

/// Counts added up over the shards.
const SUMS: &[&str] = &[
    "agents",
    "connected",
    "failed",
    "reconnects",
    "calls_ok",
    "calls_failed",
    "bytes_sent",
    "bytes_received",
    "rss_kib",
    "server_rss_kib",
];

/// Per-agent figures: averaged over the shards weighted by their agents,
/// which is the total over all agents (e.g. the RSS growth of all shards
/// divided by all agents).
const PER_AGENT: &[&str] = &[
    "rss_per_agent_kib",
    "cpu_s_idle_per_1000_agents",
    "server_rss_per_session_kib",
    "server_cpu_s_idle_per_1000_agents",
];

/// Flags that hold for the whole only if they hold for every shard.
const ALL: &[&str] = &["settled", "shutdown_clean", "rss_includes_server"];

fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Merges the shards' summaries: sums of counts, the slowest shard's
/// `connect_wall_s`, per-agent figures over all agents, flags that hold for
/// all, `shards` = how many were merged and `shards_complete` = whether
/// their `shard` fields (`I/N`) are exactly 0..N once each. Restarts are
/// merged by position: all back when every shard's was, the slowest shard's
/// `all_back_s`, the sum of `lost`.
pub fn merge(summaries: &[Value]) -> Result<Value, String> {
    if summaries.is_empty() {
        return Err("no summaries to merge".to_owned());
    }
    for (i, s) in summaries.iter().enumerate() {
        if !s.is_object() || number(s, "agents").is_none() {
            return Err(format!("summary {i}: not a fleet summary (no \"agents\")"));
        }
    }
    let mut out = Map::new();
    for key in SUMS {
        let present: Vec<f64> = summaries.iter().filter_map(|s| number(s, key)).collect();
        if !present.is_empty() {
            out.insert((*key).to_owned(), json!(present.iter().sum::<f64>() as u64));
        }
    }
    for key in PER_AGENT {
        let weighted: Vec<(f64, f64)> = summaries
            .iter()
            .filter_map(|s| Some((number(s, key)?, number(s, "agents")?)))
            .collect();
        let weight: f64 = weighted.iter().map(|(_, a)| a).sum();
        if weight > 0.0 {
            let total: f64 = weighted.iter().map(|(v, a)| v * a).sum();
            out.insert((*key).to_owned(), json!(round(total / weight, 4)));
        }
    }
    for key in ALL {
        let flags: Vec<bool> = summaries.iter().filter_map(|s| s.get(*key)?.as_bool()).collect();
        if !flags.is_empty() {
            out.insert((*key).to_owned(), json!(flags.iter().all(|f| *f)));
        }
    }
    if let Some(wall) = summaries
        .iter()
        .filter_map(|s| number(s, "connect_wall_s"))
        .reduce(f64::max)
    {
        out.insert("connect_wall_s".to_owned(), json!(wall));
    }
    if let Some(window) = summaries
        .iter()
        .filter_map(|s| number(s, "idle_window_s"))
        .reduce(f64::min)
    {
        out.insert("idle_window_s".to_owned(), json!(window));
    }

    // Which shards: each "I/N" once, all with the same N, covering 0..N.
    let shards: Vec<Option<(usize, usize)>> = summaries
        .iter()
        .map(|s| {
            let (i, n) = s.get("shard")?.as_str()?.split_once('/')?;
            Some((i.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    let complete = match shards.iter().copied().collect::<Option<Vec<(usize, usize)>>>() {
        Some(list) => {
            let n = list[0].1;
            let mut seen = vec![false; n];
            list.iter()
                .all(|&(i, count)| count == n && i < n && !std::mem::replace(&mut seen[i], true))
                && seen.iter().all(|s| *s)
        }
        // Unsharded summaries: one is the whole.
        None => shards.iter().all(Option::is_none) && summaries.len() == 1,
    };
    out.insert("shards".to_owned(), json!(summaries.len()));
    out.insert("shards_complete".to_owned(), json!(complete));

    let rounds = summaries
        .iter()
        .filter_map(|s| s.get("restarts")?.as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    if rounds > 0 {
        let merged: Vec<Value> = (0..rounds)
            .map(|k| {
                let these: Vec<&Value> = summaries
                    .iter()
                    .filter_map(|s| s.get("restarts")?.as_array()?.get(k))
                    .collect();
                json!({
                    "all_back": these.len() == summaries.len()
                        && these.iter().all(|r| r.get("all_back").and_then(Value::as_bool) == Some(true)),
                    "all_back_s": these.iter().filter_map(|r| number(r, "all_back_s")).fold(0.0, f64::max),
                    "lost": these.iter().filter_map(|r| number(r, "lost")).sum::<f64>() as u64,
                })
            })
            .collect();
        out.insert("restarts".to_owned(), json!(merged));
    }
    Ok(Value::Object(out))
}
