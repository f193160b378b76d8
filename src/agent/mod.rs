//! The agent toolkit on top of the raw RPC clients: Coder's log sender,
//! Rust-friendly twins of the protobuf messages, app-health posting and the
//! DERP-map rewrite.
//!
//! - [`LogSender`] queues log lines per source and uploads them with
//!   `BatchCreateLogs`, with Coder's batching and limits; [`ScriptLogger`]
//!   and [`LogWriter`] feed it.
//! - [`Manifest`], [`WorkspaceApp`], [`Script`], [`Stats`], [`DerpMap`] and
//!   friends convert to and from the protobuf types with `TryFrom`, following
//!   Go's `agentsdk` rules, and (de)serialize with Go's JSON names.
//! - [`app_health_poster`] posts a map of app healths in one call.
//! - [`rewrite_derp_map`] points coderd's embedded relay at the access URL.
//!
//! ```no_run
//! use coder_agentsdk::agent::{rewrite_derp_map, Log, LogLevel, LogSender, Manifest};
//! use coder_agentsdk::rpc::prelude::*;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = coder_agentsdk::Client::builder("https://coder.example.com").token("agent-token").build()?;
//! let (agent, _tailnet) = client.connect_rpc28().await?;
//!
//! // The manifest, as Rust types.
//! let mut manifest = Manifest::try_from(agent.get_manifest(Default::default()).await?)?;
//! if let Some(map) = manifest.derpmap.as_mut() {
//!     rewrite_derp_map(map, client.base_url());
//! }
//!
//! // Script output through the log sender.
//! let sender = LogSender::new();
//! let loop_sender = sender.clone();
//! let loop_agent = agent.clone();
//! let uploads = tokio::spawn(async move { loop_sender.send_loop(&loop_agent).await });
//! for script in &manifest.scripts {
//!     let logger = sender.script_logger(script.log_source_id);
//!     logger.send([Log::new(LogLevel::Info, format!("running {}", script.display_name))]);
//!     logger.flush();
//! }
//! sender.wait_until_empty().await;
//! uploads.abort();
//! # Ok(()) }
//! ```

mod convert;
mod derp;
mod logs;
mod stats;

pub use convert::{
    app_health_poster, app_healths_from_proto, proto_from_app_healths, sanitize_log_output, sanitize_log_output_bytes,
    AppHealth, AppStatus, AppStatusState, ConvertError, Devcontainer, Healthcheck, Lifecycle, LifecycleState, Log,
    LogLevel, Manifest, Metadata, MetadataDescription, MetadataResult, Script, ServiceBanner, SharingLevel, Startup,
    Subsystem, WorkspaceApp,
};
pub use derp::{rewrite_derp_map, rewrite_proto_derp_map, DerpHomeParams, DerpMap, DerpNode, DerpRegion};
pub use logs::{
    LogDest, LogSender, LogSenderError, LogWriter, ScriptLogger, CONVERSION_FAILED_OUTPUT, FLUSH_INTERVAL,
    MAX_BYTES_PER_BATCH, MAX_BYTES_QUEUED, OVERHEAD_PER_LOG,
};
pub use stats::{AgentMetric, AgentMetricLabel, AgentMetricType, Stats};
