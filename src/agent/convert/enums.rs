//! The small enums of the agent API: lifecycle states, subsystems, app
//! health, sharing levels, app status states and log levels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConvertError;
use crate::proto::agent;

/// Declares an SDK enum whose JSON form is a lower-case name, with its
/// mapping to a protobuf enum by name (the protobuf name upper-cased).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $kind:literal, $proto:ty {
            $( $(#[$vmeta:meta])* $var:ident = $json:literal => $pvar:ident, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $json)] $var, )+
        }

        impl $name {
            /// Every value, in protobuf order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The JSON (codersdk) name.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$var => $json, )+
                }
            }

            /// Reads a protobuf enum field, refusing unspecified and unknown numbers.
            pub(crate) fn from_proto_i32(value: i32) -> Result<Self, ConvertError> {
                let p = <$proto>::try_from(value).map_err(|_| ConvertError::unknown($kind, value.to_string()))?;
                Self::try_from(p)
            }

            /// The protobuf enum number.
            pub(crate) fn to_proto_i32(self) -> i32 {
                <$proto>::from(self) as i32
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ConvertError;
            fn from_str(s: &str) -> Result<Self, ConvertError> {
                match s {
                    $( $json => Ok($name::$var), )+
                    other => Err(ConvertError::unknown($kind, other)),
                }
            }
        }

        impl From<$name> for $proto {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$var => <$proto>::$pvar, )+
                }
            }
        }

        impl TryFrom<$proto> for $name {
            type Error = ConvertError;
            fn try_from(value: $proto) -> Result<Self, ConvertError> {
                #[allow(unreachable_patterns)]
                match value {
                    $( <$proto>::$pvar => Ok($name::$var), )+
                    other => Err(ConvertError::unknown($kind, other.as_str_name())),
                }
            }
        }
    };
}

named_enum! {
    /// The lifecycle state of a workspace agent (codersdk `WorkspaceAgentLifecycle`).
    pub enum LifecycleState: "lifecycle state", agent::lifecycle::State {
        /// The agent exists but has not started.
        Created = "created" => Created,
        /// The agent is running its start scripts.
        Starting = "starting" => Starting,
        /// Start scripts took too long.
        StartTimeout = "start_timeout" => StartTimeout,
        /// A start script failed.
        StartError = "start_error" => StartError,
        /// The agent is ready.
        Ready = "ready" => Ready,
        /// The agent is running its stop scripts.
        ShuttingDown = "shutting_down" => ShuttingDown,
        /// Stop scripts took too long.
        ShutdownTimeout = "shutdown_timeout" => ShutdownTimeout,
        /// A stop script failed.
        ShutdownError = "shutdown_error" => ShutdownError,
        /// The agent has stopped.
        Off = "off" => Off,
    }
}

named_enum! {
    /// A subsystem the agent runs inside or alongside (codersdk `AgentSubsystem`).
    pub enum Subsystem: "subsystem", agent::startup::Subsystem {
        /// envbox.
        Envbox = "envbox" => Envbox,
        /// envbuilder.
        Envbuilder = "envbuilder" => Envbuilder,
        /// exectrace.
        Exectrace = "exectrace" => Exectrace,
    }
}

named_enum! {
    /// The health of a workspace app (codersdk `WorkspaceAppHealth`).
    pub enum AppHealth: "app health", agent::AppHealth {
        /// No health check is configured.
        Disabled = "disabled" => Disabled,
        /// No check has passed yet.
        Initializing = "initializing" => Initializing,
        /// The last checks passed.
        Healthy = "healthy" => Healthy,
        /// The checks failed past the threshold.
        Unhealthy = "unhealthy" => Unhealthy,
    }
}

impl From<AppHealth> for agent::workspace_app::Health {
    fn from(value: AppHealth) -> Self {
        match value {
            AppHealth::Disabled => agent::workspace_app::Health::Disabled,
            AppHealth::Initializing => agent::workspace_app::Health::Initializing,
            AppHealth::Healthy => agent::workspace_app::Health::Healthy,
            AppHealth::Unhealthy => agent::workspace_app::Health::Unhealthy,
        }
    }
}

impl TryFrom<agent::workspace_app::Health> for AppHealth {
    type Error = ConvertError;
    fn try_from(value: agent::workspace_app::Health) -> Result<Self, ConvertError> {
        use agent::workspace_app::Health;
        match value {
            Health::Disabled => Ok(AppHealth::Disabled),
            Health::Initializing => Ok(AppHealth::Initializing),
            Health::Healthy => Ok(AppHealth::Healthy),
            Health::Unhealthy => Ok(AppHealth::Unhealthy),
            Health::Unspecified => Err(ConvertError::unknown("app health", value.as_str_name())),
        }
    }
}

impl AppHealth {
    /// Reads the `health` field of a protobuf `WorkspaceApp`.
    pub(crate) fn from_app_proto_i32(value: i32) -> Result<Self, ConvertError> {
        let p = agent::workspace_app::Health::try_from(value)
            .map_err(|_| ConvertError::unknown("app health", value.to_string()))?;
        Self::try_from(p)
    }
}

named_enum! {
    /// Who may open a workspace app (codersdk `WorkspaceAppSharingLevel`).
    pub enum SharingLevel: "app sharing level", agent::workspace_app::SharingLevel {
        /// Only the workspace owner.
        Owner = "owner" => Owner,
        /// Any signed-in user.
        Authenticated = "authenticated" => Authenticated,
        /// Anyone.
        Public = "public" => Public,
        /// Members of the workspace's organization (API v2.6).
        Organization = "organization" => Organization,
    }
}

named_enum! {
    /// The state of an app status report (codersdk `WorkspaceAppStatusState`).
    pub enum AppStatusState: "app status state", agent::update_app_status_request::AppStatusState {
        /// The app is working.
        Working = "working" => Working,
        /// The app is idle.
        Idle = "idle" => Idle,
        /// The app's task is complete.
        Complete = "complete" => Complete,
        /// The app's task failed.
        Failure = "failure" => Failure,
    }
}

/// The level of a log line (codersdk `LogLevel`).
///
/// Go's level is a free string, so a level the SDK does not know is kept as
/// [`LogLevel::Other`]; converting such a log to protobuf fails (the log
/// sender then sends an ERROR line saying so instead).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// Any other string.
    Other(String),
}

impl LogLevel {
    /// The five known levels, in protobuf order.
    pub const KNOWN: [LogLevel; 5] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The JSON name.
    pub fn as_str(&self) -> &str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Other(s) => s,
        }
    }

    /// The level of a name; names other than the five known ones become [`LogLevel::Other`].
    pub fn parse(s: &str) -> LogLevel {
        match s {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            other => LogLevel::Other(other.to_owned()),
        }
    }

    pub(crate) fn from_proto_i32(value: i32) -> Result<Self, ConvertError> {
        let p =
            agent::log::Level::try_from(value).map_err(|_| ConvertError::unknown("log level", value.to_string()))?;
        Self::try_from(p)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        Ok(LogLevel::parse(&s))
    }
}

impl TryFrom<LogLevel> for agent::log::Level {
    type Error = ConvertError;
    fn try_from(value: LogLevel) -> Result<Self, ConvertError> {
        agent::log::Level::try_from(&value)
    }
}

impl TryFrom<&LogLevel> for agent::log::Level {
    type Error = ConvertError;
    fn try_from(value: &LogLevel) -> Result<Self, ConvertError> {
        use agent::log::Level;
        match value {
            LogLevel::Trace => Ok(Level::Trace),
            LogLevel::Debug => Ok(Level::Debug),
            LogLevel::Info => Ok(Level::Info),
            LogLevel::Warn => Ok(Level::Warn),
            LogLevel::Error => Ok(Level::Error),
            LogLevel::Other(s) => Err(ConvertError::unknown("log level", s.clone())),
        }
    }
}

impl TryFrom<agent::log::Level> for LogLevel {
    type Error = ConvertError;
    fn try_from(value: agent::log::Level) -> Result<Self, ConvertError> {
        use agent::log::Level;
        match value {
            Level::Trace => Ok(LogLevel::Trace),
            Level::Debug => Ok(LogLevel::Debug),
            Level::Info => Ok(LogLevel::Info),
            Level::Warn => Ok(LogLevel::Warn),
            Level::Error => Ok(LogLevel::Error),
            Level::Unspecified => Err(ConvertError::unknown("log level", value.as_str_name())),
        }
    }
}
