//! The versioned DRPC clients and servers of the agent and tailnet APIs.
//!
//! Generated from `spec/proto` and `spec/versions.toml`. For each service
//! there is one client trait per API version, each extending the previous
//! one (`AgentClient20` ⊂ `AgentClient21` ⊂ … as Go's `DRPCAgentClient20` …),
//! a concrete client per version (`Agent20`, `Agent28`, …) that has exactly
//! the RPCs of its version, a server trait (`AgentServer`) whose methods
//! answer Unimplemented unless overridden, and method descriptors.
//!
//! A v2.0 client has no method of a later version:
//!
//! ```compile_fail
//! use coder_agentsdk::rpc::agent::{Agent20, AgentClient28};
//! fn call(client: Agent20) {
//!     let _ = client.update_app_status(Default::default());
//! }
//! ```
//!
//! while a v2.8 client has them all:
//!
//! ```
//! use coder_agentsdk::rpc::prelude::*;
//! fn call(client: coder_agentsdk::rpc::agent::Agent28) {
//!     let _ = client.update_app_status(Default::default());
//!     let _ = client.get_manifest(Default::default());
//! }
//! ```

use crate::drpc::{ApiVersion, MethodDesc};

mod connection;
mod dial;
mod negotiate;
mod options;

pub use connection::Connection;
pub use dial::{rpc_url, ROLE_AGENT, RPC_PATH};
pub use negotiate::{Negotiated, OLDEST_VERSION};
pub use options::{CallExt, KeepaliveConfig, RpcOptions, WithDeadline, DEFAULT_DIAL_TIMEOUT};

/// The `coder.agent.v2.Agent` service.
#[allow(clippy::all)]
pub mod agent {
    include!("../../generated/drpc_agent.rs");
}

/// The `coder.tailnet.v2.Tailnet` service.
#[allow(clippy::all)]
pub mod tailnet {
    include!("../../generated/drpc_tailnet.rs");
}

/// The API version history from `spec/versions.toml`.
pub mod versions {
    include!("../../generated/versions.rs");
}

pub use versions::{prelude, CURRENT_VERSION, VERSIONS};

/// One API version and what it added.
#[derive(Clone, Copy, Debug)]
pub struct VersionInfo {
    /// The version.
    pub version: ApiVersion,
    /// The first Coder release that accepts it, where known.
    pub release: Option<&'static str>,
    /// What changed, in one line.
    pub summary: &'static str,
    /// The RPCs it adds, across services.
    pub adds: &'static [&'static MethodDesc],
}

/// Every method descriptor of every service.
pub fn all_methods() -> impl Iterator<Item = &'static MethodDesc> {
    agent::methods::ALL.iter().chain(tailnet::methods::ALL.iter()).copied()
}

/// The API version that introduced an RPC path, if the crate knows the path.
pub fn method_by_path(path: &str) -> Option<&'static MethodDesc> {
    all_methods().find(|m| m.path == path)
}
