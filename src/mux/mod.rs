//! Byte transport under DRPC: websocket byte stream and yamux session.

pub mod keepalive;
pub mod websocket;
pub mod yamux;
