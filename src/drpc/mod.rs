//! storj.io/drpc, the RPC protocol coderd speaks on every yamux stream.
//!
//! Layers, bottom up: [`wire`] encodes frames and packets (pure, no I/O);
//! [`client`] and [`server`] are what generated code calls; [`method`]
//! describes each RPC; [`error`] is the one error type of a call.

pub mod client;
pub mod conn;
pub mod error;
pub mod method;
pub mod server;
pub mod wire;

pub use client::{BidiStreaming, DrpcClient, RequestSender, SharedTransport, Streaming, Transport};
pub use error::RpcError;
pub use method::{ApiVersion, MethodDesc, MethodKind};
pub use server::{RequestStream, ResponseSink, Router, Service};
