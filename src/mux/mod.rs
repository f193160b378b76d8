//! Byte transport under DRPC: websocket byte stream and yamux session.

pub mod websocket;
pub mod yamux;
