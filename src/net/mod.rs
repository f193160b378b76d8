//! Transport below HTTP: how a client reaches coderd's host (proxies).
//! Knows no Coder types.

pub mod proxy;
