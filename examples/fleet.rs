//! Many workspace agents in one process, for scale tests (`coder_agentsdk::fleet`).
//!
//! ```text
//! cargo run --release --example fleet                                  # 100 agents, embedded coderd, 10 s
//! cargo run --release --example fleet -- --agents 1000 --duration 30s
//! cargo run --release --example fleet -- --agents 10000 --server-process   # server in its own process
//! cargo run --release --example fleet -- --agents 1000 --restart-every 20s --duration 60s
//! cargo run --release --example fleet -- --agents 1000 --server-process --tls   # over wss://
//! CODER_AGENT_URL=https://coder.example.com cargo run --release --example fleet -- --tokens tokens.txt
//! CODER_AGENT_URL=https://coder.internal cargo run --release --example fleet -- --tokens t.txt --ca-file ca.pem
//! fleet --tokens tokens.txt --urls http://a:3000,http://b:3000 --shard 2/10 --metrics-listen 0.0.0.0:9100
//! fleet merge shard-*.json                   # one summary from the shards' summaries
//! fleet tokens --shard 1/7 tokens.txt        # a share of a token list (what server 1 of 7 serves)
//! ```
//!
//! Modes:
//! * default: an embedded coderd in this process accepting N generated
//!   tokens, each a distinct agent (memory and CPU figures include the server);
//! * `--server-process`: the same server, run as the `server` example in a
//!   child process (it must be built: `cargo build --release --example
//!   server`), so the figures are the fleet's alone; the server's own RSS
//!   and CPU are reported as `server_*`;
//! * `CODER_AGENT_URL` + `--tokens FILE`: a real deployment, one agent token
//!   per line (`--agents` defaults to the number of tokens; a smaller N uses
//!   the first N). `--urls URL,URL,...` instead of `CODER_AGENT_URL`: the
//!   agent of the token at position g dials URL g mod len (so server j
//!   serves `fleet tokens --shard j/len`'s tokens).
//!
//! Shards (several fleet processes, one token list): `--shard I/N` runs the
//! tokens at positions g with g mod N = I (`coder_agentsdk::fleet::Shard`);
//! without it, `--shards N` takes I from `JOB_COMPLETION_INDEX` (a
//! Kubernetes Indexed Job's pod). The shard is in every log line and metric
//! and in the summary (`shard`). `--metrics-listen ADDR` serves Prometheus /
//! OpenMetrics metrics at `http://ADDR/metrics` while the fleet runs
//! (`coder_agentsdk::fleet::metrics`). SIGTERM or Ctrl-C ends the hold early
//! (the summary is still printed). `--keepalive-timeout D` waits D (Go's
//! default 10 s) for a keepalive pong before dropping a connection. `fleet merge FILE...` merges the shards'
//! summaries; `fleet tokens --shard I/N FILE` prints a share of a token list.
//!
//! Options: `--agents N` (default 100, or the number of tokens),
//! `--duration D` how long to hold once every agent is up or failed (default
//! 10s), `--restart-every D` (not with a real deployment) stops and restarts
//! the server every D while holding, `--dials N` dials in flight at most
//! (default 64), `--logs LINES_PER_S` with `--log-bytes N` (default 100),
//! `--metadata D`, `--app-health D`, `--tls` (embedded or `--server-process`
//! server: it serves HTTPS and wss:// with a certificate from a CA made in
//! this process, which the fleet trusts), `--ca-file FILE` (a real
//! deployment: trust the PEM certificates in FILE besides the system's).
//! The fleet shares one rustls config across all agents.
//!
//! Prints a progress line (rewritten in place on a terminal, one line a
//! second otherwise) on stderr and, at the end, one JSON summary on stdout:
//! `agents connected failed connect_wall_s rss_kib rss_per_agent_kib
//! cpu_s_idle_per_1000_agents reconnects calls_ok calls_failed`, plus
//! restart and server figures when they apply. RSS per agent is (RSS with
//! all agents connected − RSS before the first dial) / agents;
//! `cpu_s_idle_per_1000_agents` is the CPU time used while holding, in CPU
//! seconds per wall-clock second, per 1,000 agents (keepalives, pings and
//! stats included).

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use coder_agentsdk::fleet::metrics::prometheus_client::registry::Registry;
use coder_agentsdk::fleet::shard::JOB_COMPLETION_INDEX;
use coder_agentsdk::fleet::{metrics, Fleet, FleetCounters, Profile, Shard};
use coder_agentsdk::server::EmbeddedServer;
use serde_json::json;

const USAGE: &str = "usage: fleet [--agents N] [--duration D] [--tokens FILE] [--server-process] [--restart-every D]
             [--dials N] [--logs LINES_PER_S] [--log-bytes N] [--metadata D] [--app-health D]
             [--tls] [--ca-file FILE]
             [--urls URL,...] [--shard I/N | --shards N] [--metrics-listen ADDR] [--keepalive-timeout D]
       fleet merge SUMMARY.json...
       fleet tokens --shard I/N FILE
  with CODER_AGENT_URL (or --urls) set, --tokens FILE is required and agents dial that deployment";

#[path = "support/fleet_merge.rs"]
mod merge;

#[derive(Debug, Default)]
struct Options {
    agents: Option<usize>,
    duration: Option<Duration>,
    tokens: Option<String>,
    server_process: bool,
    restart_every: Option<Duration>,
    dials: Option<usize>,
    logs: Option<f64>,
    log_bytes: Option<usize>,
    metadata: Option<Duration>,
    app_health: Option<Duration>,
    tls: bool,
    ca_file: Option<String>,
    urls: Vec<String>,
    shard: Option<Shard>,
    shards: Option<usize>,
    metrics_listen: Option<SocketAddr>,
    keepalive_timeout: Option<Duration>,
}

impl Options {
    /// `--shard I/N`, else `--shards N` with `JOB_COMPLETION_INDEX`.
    fn resolve_shard(&self) -> Result<Option<Shard>, String> {
        match (self.shard, self.shards) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(n)) => match Shard::from_env(n) {
                Ok(Some(s)) => Ok(Some(s)),
                Ok(None) => Err(format!(
                    "--shards {n} needs the shard index in {JOB_COMPLETION_INDEX} (or use --shard I/{n})"
                )),
                Err(e) => Err(e.to_string()),
            },
            (None, None) => Ok(None),
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?}: use e.g. 3s, 500ms or 2m");
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--server-process" {
            o.server_process = true;
            continue;
        }
        if flag == "--tls" {
            o.tls = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--agents" => o.agents = Some(number(&value)?),
            "--duration" => o.duration = Some(parse_duration(&value)?),
            "--tokens" => o.tokens = Some(value),
            "--restart-every" => o.restart_every = Some(parse_duration(&value)?),
            "--dials" => o.dials = Some(number(&value)?),
            "--logs" => o.logs = Some(value.parse().map_err(|_| format!("--logs: not a number: {value}"))?),
            "--log-bytes" => o.log_bytes = Some(number(&value)?),
            "--metadata" => o.metadata = Some(parse_duration(&value)?),
            "--app-health" => o.app_health = Some(parse_duration(&value)?),
            "--ca-file" => o.ca_file = Some(value),
            "--keepalive-timeout" => o.keepalive_timeout = Some(parse_duration(&value)?),
            "--urls" => {
                o.urls = value
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "--shard" => o.shard = Some(value.parse().map_err(|e| format!("--shard: {e}"))?),
            "--shards" => o.shards = Some(number(&value)?),
            "--metrics-listen" => {
                o.metrics_listen = Some(value.parse().map_err(|e| format!("--metrics-listen {value}: {e}"))?)
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------
// Process figures from /proc (0 where unavailable).
// ---------------------------------------------------------------------------

fn rss_kib_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime in seconds.
fn cpu_s_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux platform Rust targets.
    100.0
}

/// Raises the soft open-file limit to the hard limit; returns (soft, hard).
fn raise_nofile() -> (u64, u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("fleet: cannot raise the open-file limit: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile);
    (now.current.unwrap_or(u64::MAX), now.maximum.unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------
// TLS for the local server (`--tls`): a CA made here, which the fleet trusts.
// ---------------------------------------------------------------------------

/// The local server's certificate (for 127.0.0.1 and localhost), signed by
/// a CA made in this process; the PEM files are for `--server-process`.
struct TestTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    cert_file: String,
    key_file: String,
}

/// Set once by `--tls`; the server starts (and restarts) read it.
static TEST_TLS: std::sync::OnceLock<TestTls> = std::sync::OnceLock::new();

fn make_test_tls() -> Result<TestTls, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let e = |e: rcgen::Error| format!("certificate: {e}");
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fleet example CA");
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).map_err(e)?;
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    let dir = std::env::temp_dir();
    let cert_file = dir.join(format!("fleet-cert-{}.pem", std::process::id()));
    let key_file = dir.join(format!("fleet-key-{}.pem", std::process::id()));
    let tls = TestTls {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_file: cert_file.display().to_string(),
        key_file: key_file.display().to_string(),
    };
    std::fs::write(&cert_file, &tls.cert_pem).map_err(|e| format!("write {}: {e}", cert_file.display()))?;
    std::fs::write(&key_file, &tls.key_pem).map_err(|e| format!("write {}: {e}", key_file.display()))?;
    Ok(tls)
}

// ---------------------------------------------------------------------------
// The server: embedded, in a child process, or none (real deployment).
// ---------------------------------------------------------------------------

enum Server {
    Embedded(Option<EmbeddedServer>, Vec<String>),
    Process(Option<Child>, String, SocketAddr),
    Remote,
}

impl Server {
    async fn start_embedded(tokens: Vec<String>, addr: Option<SocketAddr>) -> Result<EmbeddedServer, String> {
        for _ in 0..200 {
            // One connection per agent, plus room for reconnects still being
            // torn down; the default cap (4096) protects a normal server.
            let mut b = EmbeddedServer::builder()
                .max_connections(tokens.len() + 1024)
                .tokens(tokens.iter().cloned())
                .keep_history(false);
            if let Some(addr) = addr {
                b = b.listen(addr);
            }
            if let Some(tls) = TEST_TLS.get() {
                b = b.tls_pem(tls.cert_pem.as_bytes(), tls.key_pem.as_bytes());
            }
            match b.start().await {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(format!("start the embedded server: {e}")),
            }
        }
        Err("the server's address stayed in use".to_owned())
    }

    fn spawn_process(tokens_file: &str, listen: &str) -> Result<(Child, SocketAddr), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let server = exe.with_file_name("server");
        // As in `start_embedded`: a connection per agent, plus reconnect room.
        let agents = std::fs::read_to_string(tokens_file).map_or(0, |t| t.lines().count());
        let max_connections = (agents + 1024).to_string();
        let mut command = Command::new(&server);
        if let Some(tls) = TEST_TLS.get() {
            command.args(["--tls-cert", &tls.cert_file, "--tls-key", &tls.key_file]);
        }
        let mut child = command
            .args([
                "--listen",
                listen,
                "--tokens-file",
                tokens_file,
                "--keep-history",
                "false",
                "--max-connections",
                &max_connections,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}); build it first: cargo build --release --example server",
                    server.display()
                )
            })?;
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        // Keep draining its output: a closed pipe would kill it at its next line.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|u| url::Url::parse(u).ok())
            .ok_or_else(|| format!("unexpected server output {line:?}"))?;
        let addr = url
            .socket_addrs(|| None)
            .ok()
            .and_then(|a| a.first().copied())
            .ok_or("server url has no address")?;
        Ok((child, addr))
    }

    fn pid(&self) -> Option<String> {
        match self {
            Server::Process(Some(child), ..) => Some(child.id().to_string()),
            _ => None,
        }
    }

    fn stop(&mut self) {
        match self {
            Server::Embedded(server, _) => drop(server.take()),
            Server::Process(child, ..) => {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Server::Remote => {}
        }
    }

    async fn restart(&mut self, addr: SocketAddr) -> Result<(), String> {
        self.stop();
        match self {
            Server::Embedded(server, tokens) => {
                *server = Some(Self::start_embedded(tokens.clone(), Some(addr)).await?);
            }
            Server::Process(child, tokens_file, _) => {
                let mut last = String::new();
                for _ in 0..200 {
                    match Self::spawn_process(tokens_file, &addr.to_string()) {
                        Ok((c, _)) => {
                            *child = Some(c);
                            return Ok(());
                        }
                        Err(e) => {
                            last = e;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                return Err(last);
            }
            Server::Remote => {}
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Progress and dial-rate sampling.
// ---------------------------------------------------------------------------

struct Progress {
    /// `shard I/N  ` for a sharded fleet, else empty.
    label: String,
    tty: bool,
    start: Instant,
    last_line: Instant,
    last_calls: u64,
    last_at: Instant,
    /// (time, dials) samples of the last second, for the peak dial rate.
    dial_samples: std::collections::VecDeque<(Instant, u64)>,
    peak_dials_per_s: f64,
}

impl Progress {
    fn new(label: String) -> Self {
        let now = Instant::now();
        Progress {
            label,
            tty: std::io::stderr().is_terminal(),
            start: now,
            last_line: now,
            last_calls: 0,
            last_at: now,
            dial_samples: Default::default(),
            peak_dials_per_s: 0.0,
        }
    }

    /// Samples the counters (call every 100 ms); prints when due.
    fn sample(&mut self, c: &FleetCounters, rss_kib: u64) {
        let now = Instant::now();
        self.dial_samples.push_back((now, c.dials));
        while let Some(&(t, _)) = self.dial_samples.front() {
            if now.duration_since(t) > Duration::from_secs(1) {
                self.dial_samples.pop_front();
            } else {
                break;
            }
        }
        if let (Some(&(t0, d0)), true) = (self.dial_samples.front(), self.dial_samples.len() > 5) {
            let dt = now.duration_since(t0).as_secs_f64();
            if dt > 0.5 {
                self.peak_dials_per_s = self.peak_dials_per_s.max((c.dials - d0) as f64 / dt);
            }
        }
        let due = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        if now.duration_since(self.last_line) < due {
            return;
        }
        let calls = c.calls_ok + c.calls_failed;
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let calls_per_s = (calls - self.last_calls) as f64 / dt;
        self.last_calls = calls;
        self.last_at = now;
        self.last_line = now;
        let line = format!(
            "{}{:7.1}s  agents {}  connected {}  ready {}  reconnecting {}  failed {}  calls/s {:.0}  rss {} MiB",
            self.label,
            now.duration_since(self.start).as_secs_f64(),
            c.agents,
            c.connected,
            c.ready,
            c.reconnecting,
            c.failed,
            calls_per_s,
            rss_kib / 1024
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Waits until `done`, sampling progress every 100 ms; returns whether it
/// held before `timeout`.
async fn watch(
    fleet: &Fleet,
    progress: &mut Progress,
    timeout: Duration,
    done: impl Fn(&FleetCounters) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let c = fleet.counters();
        progress.sample(&c, rss_kib_of("self"));
        if done(&c) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `fleet merge SUMMARY.json...`: prints one summary merged from the shards'.
fn run_merge(files: &[String]) -> ExitCode {
    if files.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut summaries = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("merge: {file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // A summary file may hold other lines (a redirected progress log):
        // take its last JSON object line.
        let Some(summary) = text.lines().rev().find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l.trim())
                .ok()
                .filter(|v| v.is_object())
        }) else {
            eprintln!("merge: {file}: no JSON summary line");
            return ExitCode::FAILURE;
        };
        summaries.push(summary);
    }
    match merge::merge(&summaries) {
        Ok(merged) => {
            println!("{merged}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("merge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `fleet tokens --shard I/N FILE`: prints the share of a token list.
fn run_tokens(args: &[String]) -> ExitCode {
    let [flag, shard, file] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let shard: Shard = match (flag.as_str(), shard.parse()) {
        ("--shard", Ok(s)) => s,
        (_, Err(e)) => {
            eprintln!("tokens: {e}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match read_tokens(file) {
        Ok(tokens) => {
            let mut out = std::io::stdout().lock();
            for t in shard.select(&tokens) {
                let _ = writeln!(out, "{t}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tokens: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One token per line; blank lines and `#` comments skipped (as
/// `FleetBuilder::tokens_file` and the `server` example read them).
fn read_tokens(file: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Waits for SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves the fleet's and this process's metrics on `addr` (labelled with
/// the shard, if any); the task ends when the returned guard is dropped.
async fn serve_metrics(fleet: &Fleet, shard: Option<Shard>, addr: SocketAddr) -> std::io::Result<AbortOnDrop> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut registry = Registry::default();
    fleet.register_metrics(&mut registry);
    match shard {
        Some(s) => {
            metrics::register_process(registry.sub_registry_with_label(("shard".into(), s.index().to_string().into())))
        }
        None => metrics::register_process(&mut registry),
    }
    let label = shard.map(|s| format!("shard {s}  ")).unwrap_or_default();
    eprintln!("fleet: {label}metrics on http://{}/metrics", listener.local_addr()?);
    let task = tokio::spawn(metrics::serve(listener, std::sync::Arc::new(registry)));
    Ok(AbortOnDrop(task))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("merge") => return run_merge(&args[1..]),
        Some("tokens") => return run_tokens(&args[1..]),
        _ => {}
    }
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let shard = match o.resolve_shard() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Log lines (the library's warnings: refused agents, ...) carry the
    // agent span: `fleet_agent{shard=I agent=G}`. The yamux crate warns
    // when a peer that already hung up cannot be sent its GoAway, which
    // every agent of a stopping fleet hits: only its errors are shown.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,yamux=error".into()),
        )
        .init();
    let (soft, hard) = raise_nofile();
    if o.tls {
        if o.ca_file.is_some() || !o.urls.is_empty() || std::env::var("CODER_AGENT_URL").is_ok_and(|u| !u.is_empty()) {
            eprintln!("--tls is for the local server; with a real deployment use --ca-file\n{USAGE}");
            return ExitCode::from(2);
        }
        match make_test_tls() {
            Ok(tls) => {
                let _ = TEST_TLS.set(tls);
            }
            Err(e) => {
                eprintln!("fleet: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    // Tokens and server.
    let remote_urls = if o.urls.is_empty() {
        std::env::var("CODER_AGENT_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(|u| vec![u])
    } else {
        Some(o.urls.clone())
    };
    if shard.is_some() && remote_urls.is_none() {
        eprintln!("--shard and --shards split a token list: they need --tokens FILE with --urls or CODER_AGENT_URL");
        return ExitCode::from(2);
    }
    let (tokens, mut server, url) = match &remote_urls {
        Some(urls) => {
            let Some(file) = &o.tokens else {
                eprintln!("CODER_AGENT_URL or --urls is set: --tokens FILE is required\n{USAGE}");
                return ExitCode::from(2);
            };
            if o.restart_every.is_some() || o.server_process {
                eprintln!(
                    "--restart-every and --server-process need the embedded server (no CODER_AGENT_URL or --urls)"
                );
                return ExitCode::from(2);
            }
            let mut tokens = match read_tokens(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("--tokens {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(n) = o.agents {
                if n > tokens.len() {
                    eprintln!("--agents {n}: the file has only {} tokens", tokens.len());
                    return ExitCode::from(2);
                }
                tokens.truncate(n);
            }
            (tokens, Server::Remote, urls[0].clone())
        }
        None => {
            let n = o.agents.unwrap_or(100);
            let tokens: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
            if o.server_process {
                let path = std::env::temp_dir().join(format!("fleet-tokens-{}.txt", std::process::id()));
                if let Err(e) = std::fs::write(&path, tokens.join("\n")) {
                    eprintln!("write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                let path = path.display().to_string();
                match Server::spawn_process(&path, "127.0.0.1:0") {
                    Ok((child, addr)) => (
                        tokens,
                        Server::Process(Some(child), path, addr),
                        format!("{}://{addr}/", if o.tls { "https" } else { "http" }),
                    ),
                    Err(e) => {
                        eprintln!("fleet: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                match Server::start_embedded(tokens.clone(), None).await {
                    Ok(s) => {
                        let url = s.url().to_string();
                        (tokens.clone(), Server::Embedded(Some(s), tokens), url)
                    }
                    Err(e) => {
                        eprintln!("fleet: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    };
    let agents = shard.map_or(tokens.len(), |s| s.len_of(tokens.len()));
    let label = shard.map(|s| format!("shard {s}  ")).unwrap_or_default();
    // Each agent holds one socket (two in embedded mode: the server's end too).
    let need = agents as u64 * if matches!(server, Server::Embedded(..)) { 2 } else { 1 } + 64;
    if soft < need {
        eprintln!(
            "fleet: {label}the open-file limit is {soft} (hard {hard}), too low for {agents} agents (about {need} needed); raise the hard limit (ulimit -Hn)"
        );
    } else {
        eprintln!("fleet: {label}open-file limit raised to {soft}");
    }
    let server_addr = match &server {
        Server::Embedded(Some(s), _) => Some(s.addr()),
        Server::Process(_, _, addr) => Some(*addr),
        _ => None,
    };
    let duration = o.duration.unwrap_or(Duration::from_secs(10));

    let mut profile = Profile::default();
    if let Some(lines) = o.logs {
        profile = profile.logs(lines, o.log_bytes.unwrap_or(100));
    }
    if let Some(d) = o.metadata {
        profile = profile.metadata(d);
    }
    if let Some(d) = o.app_health {
        profile = profile.app_health(d);
    }

    // Memory before the first dial, after the server (if embedded) is up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_kib_of("self");
    let server_rss_before = server.pid().map(|p| rss_kib_of(&p));
    let started = Instant::now();
    let mut builder = Fleet::builder(&url);
    if let Some(tls) = TEST_TLS.get() {
        builder = builder.add_root_certificates_pem(tls.ca_pem.as_bytes());
    }
    if let Some(file) = &o.ca_file {
        match std::fs::read(file) {
            Ok(pem) => builder = builder.add_root_certificates_pem(&pem),
            Err(e) => {
                eprintln!("--ca-file {file}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut builder = builder
        .tokens(tokens)
        .base_urls(remote_urls.unwrap_or_default())
        .profile(profile)
        .max_dials_in_flight(o.dials.unwrap_or(coder_agentsdk::fleet::DEFAULT_MAX_DIALS_IN_FLIGHT));
    if let Some(s) = shard {
        builder = builder.shard(s);
    }
    if let Some(timeout) = o.keepalive_timeout {
        // Pings stay at Go's 30 s; only the wait for a pong is longer (a
        // CPU-starved load generator otherwise drops live connections).
        let options = coder_agentsdk::rpc::RpcOptions::default()
            .keepalive(coder_agentsdk::mux::keepalive::DEFAULT_KEEPALIVE_INTERVAL, timeout);
        builder = builder.client_settings(move |_, b| b.rpc_options(options));
    }
    let fleet = match builder.start() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fleet: {label}{e}");
            return ExitCode::FAILURE;
        }
    };
    // Metrics: served until the end of main (the task is aborted on drop).
    let _metrics = match o.metrics_listen {
        Some(addr) => match serve_metrics(&fleet, shard, addr).await {
            Ok(task) => Some(task),
            Err(e) => {
                eprintln!("fleet: {label}--metrics-listen {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut progress = Progress::new(label.clone());
    // SIGTERM or Ctrl-C, from now on, ends the run with a summary (a pod
    // may be stopped while its agents are still coming up).
    let stop = terminated();
    tokio::pin!(stop);
    let mut stopped = false;
    // Up: every agent ready or failed (bounded: 10 minutes at most).
    let settled = tokio::select! {
        settled = watch(&fleet, &mut progress, Duration::from_secs(600), |c| {
            c.ready + c.failed == c.agents
        }) => settled,
        _ = &mut stop => {
            stopped = true;
            false
        }
    };
    let connect_wall = started.elapsed();
    let up_peak_dials_per_s = progress.peak_dials_per_s;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_up = rss_kib_of("self");
    let server_rss_up = server.pid().map(|p| rss_kib_of(&p));
    let connected_at_up = fleet.counters().connected;

    // Hold, measuring CPU; restart the server on schedule.
    let cpu_before = cpu_s_of("self");
    let server_cpu_before = server.pid().map(|p| cpu_s_of(&p));
    let hold_start = Instant::now();
    let mut restarts = Vec::new();
    // Idle CPU is measured until the first restart (or the end of the hold).
    let mut idle_window: Option<(f64, Option<f64>, f64)> = None;
    let mut next_restart = o.restart_every.map(|d| hold_start + d);
    while hold_start.elapsed() < duration && !stopped {
        if let (Some(at), Some(addr)) = (next_restart, server_addr) {
            if Instant::now() >= at {
                if idle_window.is_none() {
                    idle_window = Some((
                        cpu_s_of("self"),
                        server.pid().map(|p| cpu_s_of(&p)),
                        hold_start.elapsed().as_secs_f64(),
                    ));
                }
                let before = fleet.counters();
                progress.peak_dials_per_s = 0.0;
                let t = Instant::now();
                if let Err(e) = server.restart(addr).await {
                    eprintln!("fleet: restart failed: {e}");
                    break;
                }
                // Wait until the agents have noticed, then until all are back.
                watch(&fleet, &mut progress, Duration::from_secs(30), |c| {
                    c.ready < c.agents - c.failed
                })
                .await;
                let back = watch(&fleet, &mut progress, Duration::from_secs(600), |c| {
                    c.ready + c.failed == c.agents
                })
                .await;
                let after = fleet.counters();
                restarts.push(json!({
                    "all_back": back,
                    "all_back_s": (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                    "lost": after.failed - before.failed,
                    "peak_dials_per_s": progress.peak_dials_per_s.round(),
                }));
                next_restart = o.restart_every.map(|d| Instant::now() + d);
            }
        }
        let c = fleet.counters();
        progress.sample(&c, rss_kib_of("self"));
        tokio::select! {
            _ = &mut stop => stopped = true,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let (cpu_end, server_cpu_end, held) = idle_window.unwrap_or_else(|| {
        (
            cpu_s_of("self"),
            server.pid().map(|p| cpu_s_of(&p)),
            hold_start.elapsed().as_secs_f64(),
        )
    });
    let cpu_idle = cpu_end - cpu_before;
    let server_cpu_idle = server_cpu_end.zip(server_cpu_before).map(|(end, before)| end - before);
    progress.finish();
    let c = fleet.counters();
    for f in fleet.failures().iter().take(10) {
        eprintln!("{label}agent {} failed: {}", f.index, f.error);
    }
    let shut = fleet.shutdown(Duration::from_secs(30)).await;
    server.stop();
    if let Some(tls) = TEST_TLS.get() {
        let _ = std::fs::remove_file(&tls.cert_file);
        let _ = std::fs::remove_file(&tls.key_file);
    }

    let per_agent =
        |before: u64, after: u64| ((after.saturating_sub(before)) as f64 / agents.max(1) as f64 * 10.0).round() / 10.0;
    let per_1000 = |cpu: f64| (cpu / held.max(1e-3) / agents.max(1) as f64 * 1000.0 * 10_000.0).round() / 10_000.0;
    let mut summary = json!({
        "agents": agents,
        "connected": connected_at_up,
        "failed": c.failed,
        "settled": settled,
        "connect_wall_s": (connect_wall.as_secs_f64() * 1000.0).round() / 1000.0,
        "connect_peak_dials_per_s": up_peak_dials_per_s.round(),
        "rss_kib": rss_up,
        "rss_per_agent_kib": per_agent(rss_before, rss_up),
        "rss_includes_server": matches!(server, Server::Embedded(..)),
        "scheme": url.split(':').next().unwrap_or_default(),
        "cpu_s_idle_per_1000_agents": per_1000(cpu_idle),
        "cpu_idle_note": "CPU seconds per wall-clock second while holding (until the first restart), per 1,000 agents",
        "idle_window_s": (held * 10.0).round() / 10.0,
        "reconnects": c.reconnects,
        "calls_ok": c.calls_ok,
        "calls_failed": c.calls_failed,
        "bytes_sent": c.bytes_sent,
        "bytes_received": c.bytes_received,
        "shutdown_clean": shut,
    });
    if let Some(s) = shard {
        summary["shard"] = json!(s.to_string());
    }
    if !restarts.is_empty() {
        summary["restarts"] = json!(restarts);
    }
    if let (Some(before), Some(up)) = (server_rss_before, server_rss_up) {
        summary["server_rss_kib"] = json!(up);
        summary["server_rss_per_session_kib"] = json!(per_agent(before, up));
    }
    if let Some(cpu) = server_cpu_idle {
        summary["server_cpu_s_idle_per_1000_agents"] = json!(per_1000(cpu));
    }
    println!("{summary}");
    if c.failed > 0 || !settled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
