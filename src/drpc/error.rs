//! The one error type of an RPC call, client or server side.

use super::method::ApiVersion;

/// DRPC's error code for "this method is registered but not implemented".
pub const CODE_UNIMPLEMENTED: u64 = 12;

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer answered with a DRPC Error packet. `code` is 0 when the peer
    /// gave none; 12 is "Unimplemented".
    #[error("{message}")]
    Remote {
        /// The 64-bit error code (drpcerr.Code).
        code: u64,
        /// The error text exactly as sent.
        message: String,
    },
    /// The call was cancelled: dropped locally, or a Cancel packet from the peer.
    #[error("rpc cancelled")]
    Cancelled,
    /// A message is larger than the DRPC limit (4 MiB, Coder's `drpcsdk.MaxMessageSize`).
    #[error("message of {size} bytes exceeds the {limit} byte limit")]
    MessageTooLarge {
        /// Encoded size of the message.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// A message did not decode as the protobuf type the method declares.
    #[error("decode {type_name}: {source}")]
    Decode {
        /// Fully qualified protobuf type.
        type_name: &'static str,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// The peer broke the DRPC protocol (bad frame, ids going backwards, ...).
    #[error("drpc protocol error: {0}")]
    Protocol(String),
    /// The stream or connection underneath failed or ended before the call did.
    #[error("transport: {0}")]
    Transport(#[source] std::io::Error),
    /// The connection is closed; no further calls can be made on it.
    #[error("connection closed")]
    ConnectionClosed,
    /// The peer stopped answering keepalive pings for `timeout`, so the
    /// connection was ended and every call on it failed (Go's yamux
    /// `ErrKeepAliveTimeout`). Reconnect.
    #[error("peer not responding: keepalive ping unanswered for {timeout:?}")]
    PeerNotResponding {
        /// How long the ping waited for its answer.
        timeout: std::time::Duration,
    },
    /// The call did not finish within its deadline; it was cancelled (its
    /// stream reset). The connection stays usable.
    #[error("rpc deadline of {deadline:?} exceeded")]
    DeadlineExceeded {
        /// The time the call was given.
        deadline: std::time::Duration,
    },
    /// The method is newer than the API version agreed with the server, so
    /// the call was refused locally without reaching the server.
    #[error("{method} requires API v{required}, server speaks v{negotiated}")]
    VersionTooOld {
        /// The RPC path.
        method: &'static str,
        /// The version that introduced the method.
        required: ApiVersion,
        /// The version agreed with the server.
        negotiated: ApiVersion,
    },
}

impl RpcError {
    /// The error a server answers for a registered method without an implementation.
    pub fn unimplemented() -> Self {
        RpcError::Remote {
            code: CODE_UNIMPLEMENTED,
            message: "Unimplemented".to_owned(),
        }
    }

    /// A remote error with code 0 and the given text, as a Go handler's plain error.
    pub fn remote(message: impl Into<String>) -> Self {
        RpcError::Remote {
            code: 0,
            message: message.into(),
        }
    }

    /// The DRPC error code, for errors that came from the peer.
    pub fn code(&self) -> Option<u64> {
        match self {
            RpcError::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for the peer's "Unimplemented" (code 12).
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(CODE_UNIMPLEMENTED)
    }
}
