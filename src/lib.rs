#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod auth;
pub mod client;
pub mod drpc;
pub mod error;
pub mod fleet;
mod http;
pub mod mux;
pub mod net;
pub mod proto;
pub mod rest;
pub mod rpc;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod sse;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod types;

pub use client::{Client, ClientBuilder};
pub use error::{ApiError, Error};
