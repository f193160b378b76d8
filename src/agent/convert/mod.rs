//! Rust-friendly twins of the agent API's protobuf messages, with `TryFrom`
//! both ways and serde for the JSON forms Go's `codersdk` uses.
//!
//! The rules follow Go's `agentsdk` conversions:
//!
//! - UUIDs travel as exactly 16 raw bytes; any other length is an error.
//! - Enums are matched by name; `*_UNSPECIFIED` and numbers the crate does
//!   not know are refused with an error naming the value.
//! - An app's health-check interval is whole seconds.
//! - A metadata description's `interval` and `timeout` are the raw
//!   nanosecond count of the protobuf `Duration` (coderd puts the database
//!   integer there unchanged), never converted to seconds.
//! - An absent `parent_id` is `None`.
//!
//! Conversions that cannot fail are `From` (so `TryFrom` with
//! [`Infallible`](std::convert::Infallible) too); the others are `TryFrom`
//! with [`ConvertError`].

mod enums;
mod manifest;
mod misc;

pub use enums::{AppHealth, AppStatusState, LifecycleState, LogLevel, SharingLevel, Subsystem};
pub use manifest::{Devcontainer, Healthcheck, Manifest, MetadataDescription, Script, WorkspaceApp};
pub use misc::{
    app_health_poster, app_healths_from_proto, proto_from_app_healths, sanitize_log_output, sanitize_log_output_bytes,
    AppStatus, Lifecycle, Log, Metadata, MetadataResult, ServiceBanner, Startup,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Why a value could not be converted between its protobuf and Rust forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A UUID field did not hold exactly 16 bytes.
    #[error("{field}: invalid UUID length {len}, want 16 bytes")]
    InvalidUuid {
        /// The field, e.g. `apps[0].id`.
        field: String,
        /// How many bytes it held.
        len: usize,
    },
    /// An enum value that is unspecified or unknown to the crate.
    #[error("unknown {kind}: {value}")]
    UnknownEnum {
        /// What the enum is, e.g. `app sharing level`.
        kind: &'static str,
        /// The value as received: its protobuf name, or its number when it has no name.
        value: String,
    },
    /// A number or duration that does not fit the target type.
    #[error("{field}: value {value} is out of range")]
    OutOfRange {
        /// The field.
        field: String,
        /// The value as received.
        value: String,
    },
}

impl ConvertError {
    pub(crate) fn unknown(kind: &'static str, value: impl Into<String>) -> Self {
        ConvertError::UnknownEnum {
            kind,
            value: value.into(),
        }
    }

    pub(crate) fn out_of_range(field: impl Into<String>, value: impl std::fmt::Display) -> Self {
        ConvertError::OutOfRange {
            field: field.into(),
            value: value.to_string(),
        }
    }
}

/// Reads a 16-byte UUID field.
pub(crate) fn uuid_from_bytes(field: impl Into<String>, bytes: &[u8]) -> Result<Uuid, ConvertError> {
    Uuid::from_slice(bytes).map_err(|_| ConvertError::InvalidUuid {
        field: field.into(),
        len: bytes.len(),
    })
}

/// The 16 raw bytes of a UUID.
pub(crate) fn uuid_bytes(id: &Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The total nanoseconds of a protobuf duration (absent is zero), tolerating
/// seconds and nanos of different signs as Go's `AsDuration` does.
pub(crate) fn duration_total_nanos(d: Option<&prost_types::Duration>) -> i128 {
    d.map_or(0, |d| i128::from(d.seconds) * NANOS_PER_SEC + i128::from(d.nanos))
}

/// A protobuf duration of exactly `nanos` nanoseconds.
pub(crate) fn duration_from_nanos(nanos: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: nanos / 1_000_000_000,
        // |nanos % 1e9| < 1e9, so it fits an i32.
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

/// A protobuf duration read as an `i64` nanosecond count.
pub(crate) fn nanos_from_duration(field: &str, d: Option<&prost_types::Duration>) -> Result<i64, ConvertError> {
    let total = duration_total_nanos(d);
    i64::try_from(total).map_err(|_| ConvertError::out_of_range(field, format!("{total}ns")))
}

/// A protobuf duration read as a non-negative [`std::time::Duration`].
pub(crate) fn std_duration_from_proto(
    field: &str,
    d: Option<&prost_types::Duration>,
) -> Result<std::time::Duration, ConvertError> {
    let total = duration_total_nanos(d);
    if total < 0 {
        return Err(ConvertError::out_of_range(field, format!("{total}ns")));
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| ConvertError::out_of_range(field, total))?;
    Ok(std::time::Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// A [`std::time::Duration`] as a protobuf duration; fails past `i64::MAX` seconds.
pub(crate) fn proto_from_std_duration(
    field: &str,
    d: std::time::Duration,
) -> Result<prost_types::Duration, ConvertError> {
    let seconds = i64::try_from(d.as_secs()).map_err(|_| ConvertError::out_of_range(field, format!("{d:?}")))?;
    Ok(prost_types::Duration {
        seconds,
        nanos: d.subsec_nanos() as i32,
    })
}

/// A time as a protobuf timestamp.
pub(crate) fn proto_timestamp(t: &DateTime<Utc>) -> prost_types::Timestamp {
    // chrono keeps a leap second as nanos >= 1e9; fold it into the next second.
    let nanos = t.timestamp_subsec_nanos();
    let (extra, nanos) = (i64::from(nanos / 1_000_000_000), nanos % 1_000_000_000);
    prost_types::Timestamp {
        seconds: t.timestamp() + extra,
        nanos: nanos as i32,
    }
}

/// A protobuf timestamp as a time; absent is the Unix epoch, as Go's `AsTime`.
pub(crate) fn timestamp_from_proto(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<DateTime<Utc>, ConvertError> {
    let Some(t) = t else {
        return Ok(DateTime::UNIX_EPOCH);
    };
    let total = i128::from(t.seconds) * NANOS_PER_SEC + i128::from(t.nanos);
    let secs = total.div_euclid(NANOS_PER_SEC);
    let nanos = total.rem_euclid(NANOS_PER_SEC) as u32;
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, nanos))
        .ok_or_else(|| ConvertError::out_of_range(field, format!("{}s {}ns", t.seconds, t.nanos)))
}

/// Serde helper: `null` decodes as the type's default, as Go's nil slices and maps.
pub(crate) fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Serde for a Go `time.Duration` (integer nanoseconds) held as [`std::time::Duration`].
pub(crate) mod go_duration {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        let nanos = i64::try_from(d.as_nanos())
            .map_err(|_| serde::ser::Error::custom(format!("duration {d:?} exceeds a Go time.Duration")))?;
        s.serialize_i64(nanos)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<std::time::Duration, D::Error> {
        let nanos = Option::<i64>::deserialize(de)?.unwrap_or(0);
        let nanos =
            u64::try_from(nanos).map_err(|_| serde::de::Error::custom(format!("negative duration {nanos}ns")))?;
        Ok(std::time::Duration::from_nanos(nanos))
    }
}

/// Serde for Go's `uuid.UUID` where the nil UUID means "none".
pub(crate) mod nil_uuid_as_none {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.unwrap_or(Uuid::nil()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Uuid>, D::Error> {
        Ok(Option::<Uuid>::deserialize(de)?.filter(|id| !id.is_nil()))
    }
}
