//! coder-agentsdk: act as a Coder workspace agent from Rust.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod drpc;
pub mod mux;
pub mod proto;
pub mod rest;
pub mod rpc;
