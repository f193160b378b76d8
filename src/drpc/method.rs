//! What the generated code knows about each RPC: its wire path, message
//! types, streaming shape and the API version that introduced it.
//!
//! These types are filled in by `cargo xtask generate` (see `generated/drpc_*.rs`)
//! and read by the transport and the server router; they carry no behaviour.

use std::fmt;
use std::str::FromStr;

/// A Coder agent API version, `major.minor` (the `version` query parameter of the RPC endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major version; 2 for every DRPC API.
    pub major: u16,
    /// Minor version; each minor adds RPCs or fields (see [`crate::rpc::versions`]).
    pub minor: u16,
}

impl ApiVersion {
    /// Builds a version from its two numbers.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a version string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid version string: {0:?}")]
pub struct ParseVersionError(pub String);

impl FromStr for ApiVersion {
    type Err = ParseVersionError;

    /// Parses exactly `MAJOR.MINOR` with decimal integers, as coderd's `apiversion` does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError(s.to_owned());
        let (major, minor) = s.split_once('.').ok_or_else(err)?;
        let num = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse::<u16>().map_err(|_| err())
        };
        Ok(Self::new(num(major)?, num(minor)?))
    }
}

/// The streaming shape of an RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses (`StreamDERPMaps`, `WorkspaceUpdates`).
    ServerStreaming,
    /// A stream of requests, one response (none in Coder's API today).
    ClientStreaming,
    /// Streams both ways (`Coordinate`).
    Bidi,
}

/// A description of one RPC, generated from `spec/proto` and `spec/versions.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MethodDesc {
    /// Fully qualified service name, e.g. `coder.agent.v2.Agent`.
    pub service: &'static str,
    /// Method name as in the proto, e.g. `GetManifest`.
    pub name: &'static str,
    /// The name carried by the DRPC Invoke packet: `/<service>/<name>`.
    pub path: &'static str,
    /// Fully qualified protobuf type of the request.
    pub input: &'static str,
    /// Fully qualified protobuf type of the response.
    pub output: &'static str,
    /// Unary or streaming.
    pub kind: MethodKind,
    /// The first API version that has this RPC.
    pub since: ApiVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses_only_major_dot_minor() {
        assert_eq!("2.8".parse::<ApiVersion>().unwrap(), ApiVersion::new(2, 8));
        assert_eq!("2.11".parse::<ApiVersion>().unwrap(), ApiVersion::new(2, 11));
        for bad in ["2", "2.", ".1", "2.1.0", "v2.1", "2.x", " 2.1", "2.-1", "99999.1"] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn versions_order_by_major_then_minor() {
        assert!(ApiVersion::new(2, 10) > ApiVersion::new(2, 9));
        assert!(ApiVersion::new(3, 0) > ApiVersion::new(2, 11));
        assert_eq!(ApiVersion::new(2, 10).to_string(), "2.10");
    }
}
