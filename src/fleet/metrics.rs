//! Prometheus / OpenMetrics metrics of a fleet (feature `metrics`).
//!
//! [`Fleet::register_metrics`](super::Fleet::register_metrics) adds the
//! fleet's metrics to a [`prometheus_client`] registry; [`register_process`]
//! adds the process's memory, CPU and open files; [`serve`] answers
//! `GET /metrics` with the registry in the OpenMetrics text format.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `coder_fleet_agents` | gauge | `state` = `connected`, `ready`, `reconnecting`, `failed`, `dialing` |
//! | `coder_fleet_agents_configured` | gauge | |
//! | `coder_fleet_dials_total` | counter | |
//! | `coder_fleet_reconnects_total` | counter | |
//! | `coder_fleet_calls_total` | counter | `rpc`, `outcome` = `ok`, `remote_error`, `transport_error`, `timeout` |
//! | `coder_fleet_call_duration_seconds` | histogram | `rpc` |
//! | `coder_fleet_dial_duration_seconds` | histogram | `outcome` = `ok`, `error` |
//! | `coder_fleet_sent_bytes_total`, `coder_fleet_received_bytes_total` | counter | |
//! | `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds` | gauge, counter, gauge | (from [`register_process`]) |
//!
//! States overlap as [`FleetCounters`](super::FleetCounters) do: a ready
//! agent is also connected. `rpc` is the DRPC method name (`GetManifest`,
//! `UpdateStats`, ...) or `PostLogSource` (the one REST call); every label
//! takes a fixed, small set of values, none per agent. Bytes are the
//! protobuf payloads of the fleet's calls, counted anyway for
//! [`FleetCounters`](super::FleetCounters) (no framing, no TLS). A sharded
//! fleet labels each of its metrics `shard="I"`.
//!
//! The instruments are plain atomics and one histogram per label value,
//! updated on each call and read at scrape time; without this feature none
//! of it is compiled.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Outcome, Rpc, Shared};

/// The `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~33 s, doubling: a loopback call to a real coderd's timeout.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// A fleet's call and dial instruments, updated by the agents.
pub(super) struct Instruments {
    calls: [[AtomicU64; Outcome::ALL.len()]; Rpc::ALL.len()],
    call_seconds: [Histogram; Rpc::ALL.len()],
    /// Index 0: successful dials, 1: failed ones.
    dial_seconds: [Histogram; 2],
}

impl Default for Instruments {
    fn default() -> Self {
        Instruments {
            calls: Default::default(),
            call_seconds: std::array::from_fn(|_| latency_histogram()),
            dial_seconds: std::array::from_fn(|_| latency_histogram()),
        }
    }
}

impl Instruments {
    pub(super) fn call(&self, rpc: Rpc, outcome: Outcome, took: Duration) {
        self.calls[rpc as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.call_seconds[rpc as usize].observe(took.as_secs_f64());
    }

    pub(super) fn dial(&self, ok: bool, took: Duration) {
        self.dial_seconds[usize::from(!ok)].observe(took.as_secs_f64());
    }
}

/// Reads a fleet's counters and instruments at scrape time.
pub(super) struct FleetCollector(pub(super) Arc<Shared>);

impl std::fmt::Debug for FleetCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCollector").finish_non_exhaustive()
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.0.counters();
        let m = &self.0.instruments;

        let mut e = encoder.encode_descriptor(
            "coder_fleet_agents",
            "Agents of the fleet in each state now (a ready agent is also connected).",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("connected", c.connected),
            ("ready", c.ready),
            ("reconnecting", c.reconnecting),
            ("failed", c.failed),
            ("dialing", c.dialing),
        ] {
            ConstGauge::new(to_i64(n)).encode(e.encode_family(&[("state", state)])?)?;
        }
        let e = encoder.encode_descriptor(
            "coder_fleet_agents_configured",
            "Agents in the fleet (tokens of this shard).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(to_i64(c.agents)).encode(e)?;

        for (name, help, value, unit) in [
            ("coder_fleet_dials", "Dials started.", c.dials, None),
            (
                "coder_fleet_reconnects",
                "Successful dials after an agent's first connection.",
                c.reconnects,
                None,
            ),
            (
                "coder_fleet_sent",
                "Request payload bytes sent (protobuf, without framing).",
                c.bytes_sent,
                Some(Unit::Bytes),
            ),
            (
                "coder_fleet_received",
                "Response payload bytes received (protobuf, without framing).",
                c.bytes_received,
                Some(Unit::Bytes),
            ),
        ] {
            let e = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            ConstCounter::new(value).encode(e)?;
        }

        let mut e = encoder.encode_descriptor(
            "coder_fleet_calls",
            "Calls the agents made, by RPC and outcome.",
            None,
            MetricType::Counter,
        )?;
        for rpc in Rpc::ALL {
            for outcome in Outcome::ALL {
                let n = m.calls[rpc as usize][outcome as usize].load(Ordering::Relaxed);
                ConstCounter::new(n).encode(e.encode_family(&[("rpc", rpc.name()), ("outcome", outcome.name())])?)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "coder_fleet_call_duration",
            "Time from request to response (or failure) of the agents' calls, by RPC.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for rpc in Rpc::ALL {
            m.call_seconds[rpc as usize].encode(e.encode_family(&[("rpc", rpc.name())])?)?;
        }
        let mut e = encoder.encode_descriptor(
            "coder_fleet_dial_duration",
            "Time of an RPC dial (websocket upgrade and version negotiation), by outcome.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (i, outcome) in ["ok", "error"].into_iter().enumerate() {
            m.dial_seconds[i].encode(e.encode_family(&[("outcome", outcome)])?)?;
        }
        Ok(())
    }
}

/// Adds `process_resident_memory_bytes`, `process_cpu_seconds_total` and
/// `process_open_fds` of this process, read from `/proc/self` at scrape
/// time (Linux; on other systems, or when `/proc` is not mounted, they are
/// left out).
pub fn register_process(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}

#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = process_stats();
        if let Some(rss) = p.rss_bytes {
            let e = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size.",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(rss).unwrap_or(i64::MAX)).encode(e)?;
        }
        if let Some(cpu) = p.cpu_seconds {
            let e = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(e)?;
        }
        if let Some(fds) = p.open_fds {
            let e = encoder.encode_descriptor("process_open_fds", "Open file descriptors.", None, MetricType::Gauge)?;
            ConstGauge::new(to_i64(fds)).encode(e)?;
        }
        Ok(())
    }
}

/// This process's resident memory, CPU time and open files, where `/proc`
/// tells them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub rss_bytes: Option<u64>,
    /// User + system CPU time in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<usize>,
}

/// Reads [`ProcessStats`] of this process from `/proc/self`.
pub fn process_stats() -> ProcessStats {
    // Linux's page size and USER_HZ on every platform Rust targets with /proc
    // laid out this way: 4 KiB pages, 100 ticks a second.
    const PAGE: u64 = 4096;
    const TICKS: f64 = 100.0;
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * PAGE);
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        // Fields after the command name (which may hold spaces) follow ") ";
        // utime and stime are fields 14 and 15, so 12 and 13 after it.
        let rest = s.rsplit_once(") ")?.1;
        let mut f = rest.split_whitespace().skip(11);
        let utime: f64 = f.next()?.parse().ok()?;
        let stime: f64 = f.next()?.parse().ok()?;
        Some((utime + stime) / TICKS)
    });
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count());
    ProcessStats {
        rss_bytes,
        cpu_seconds,
        open_fds,
    }
}

/// The registry in the OpenMetrics text format (ends with `# EOF`).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; a collector's error would leave a
    // partial text, which a scraper rejects for lack of `# EOF`.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The largest request head [`serve`] reads.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The time one scrape may take, from accept to the last byte written.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes answered at once; more connections wait in the listen backlog.
const MAX_SCRAPES_IN_FLIGHT: usize = 8;

/// Answers `GET /metrics` (and `GET /`) on `listener` with the registry in
/// the OpenMetrics text format, one response per connection, until the
/// future is dropped. Anything else gets 404 (an unknown path) or 405 (a
/// method other than GET).
///
/// A tiny HTTP/1.1 responder on Tokio's TCP (no HTTP framework: the
/// client's default features carry none, and a scrape needs one request
/// line). Each connection is bounded in time (10 s) and head
/// size (8 KiB); at most 8 are answered at once.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES_IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of files, say: wait a little rather than spin.
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream, &registry)).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", b"").await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics" | "/") => {
            let body = encode(registry);
            respond(&mut stream, "200 OK", OPENMETRICS_CONTENT_TYPE, body.as_bytes()).await
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b"").await,
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// The constant label of a sharded fleet's metrics.
pub(super) fn shard_label(shard: super::Shard) -> (Cow<'static, str>, Cow<'static, str>) {
    (Cow::Borrowed("shard"), Cow::Owned(shard.index().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read_on_linux() {
        if !std::path::Path::new("/proc/self/statm").exists() {
            return;
        }
        let p = process_stats();
        assert!(p.rss_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.cpu_seconds.is_some(), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
    }
}
