//! The agent's network and session statistics and its custom metrics, with
//! the JSON names of Go's `agentsdk.Stats`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::convert::{null_as_default, ConvertError};
use crate::proto::agent;

/// Network and session statistics reported periodically by the agent (Go's `agentsdk.Stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Connections by protocol.
    #[serde(default, deserialize_with = "null_as_default")]
    pub connections_by_proto: BTreeMap<String, i64>,
    /// Connections received.
    #[serde(default)]
    pub connection_count: i64,
    /// Median connection latency in milliseconds.
    #[serde(default)]
    pub connection_median_latency_ms: f64,
    /// Packets received.
    #[serde(default)]
    pub rx_packets: i64,
    /// Bytes received.
    #[serde(default)]
    pub rx_bytes: i64,
    /// Packets sent.
    #[serde(default)]
    pub tx_packets: i64,
    /// Bytes sent.
    #[serde(default)]
    pub tx_bytes: i64,
    /// Sessions from the VS Code extension.
    #[serde(default)]
    pub session_count_vscode: i64,
    /// Sessions from the JetBrains plugin.
    #[serde(default)]
    pub session_count_jetbrains: i64,
    /// Sessions from the reconnecting web terminal.
    #[serde(default)]
    pub session_count_reconnecting_pty: i64,
    /// Plain SSH sessions.
    #[serde(default)]
    pub session_count_ssh: i64,
    /// Custom metrics.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metrics: Vec<AgentMetric>,
}

impl Stats {
    /// The total of the four session counters.
    pub fn session_count(&self) -> i64 {
        self.session_count_vscode
            .saturating_add(self.session_count_jetbrains)
            .saturating_add(self.session_count_reconnecting_pty)
            .saturating_add(self.session_count_ssh)
    }
}

/// The kind of a custom metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AgentMetricType {
    /// A monotonically increasing count.
    #[serde(rename = "counter")]
    Counter,
    /// A value that goes up and down.
    #[serde(rename = "gauge")]
    Gauge,
}

/// A custom metric collected by the agent (Go's `agentsdk.AgentMetric`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentMetric {
    /// The metric name.
    pub name: String,
    /// Counter or gauge.
    #[serde(rename = "type")]
    pub metric_type: AgentMetricType,
    /// The value.
    pub value: f64,
    /// Labels, omitted from JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub labels: Vec<AgentMetricLabel>,
}

/// A label of a custom metric.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentMetricLabel {
    /// The label name.
    pub name: String,
    /// The label value.
    pub value: String,
}

impl From<AgentMetricType> for agent::stats::metric::Type {
    fn from(t: AgentMetricType) -> Self {
        match t {
            AgentMetricType::Counter => agent::stats::metric::Type::Counter,
            AgentMetricType::Gauge => agent::stats::metric::Type::Gauge,
        }
    }
}

impl TryFrom<agent::stats::metric::Type> for AgentMetricType {
    type Error = ConvertError;
    fn try_from(t: agent::stats::metric::Type) -> Result<Self, ConvertError> {
        match t {
            agent::stats::metric::Type::Counter => Ok(AgentMetricType::Counter),
            agent::stats::metric::Type::Gauge => Ok(AgentMetricType::Gauge),
            agent::stats::metric::Type::Unspecified => Err(ConvertError::unknown("metric type", t.as_str_name())),
        }
    }
}

impl From<AgentMetric> for agent::stats::Metric {
    fn from(m: AgentMetric) -> Self {
        agent::stats::Metric {
            name: m.name,
            r#type: agent::stats::metric::Type::from(m.metric_type) as i32,
            value: m.value,
            labels: m
                .labels
                .into_iter()
                .map(|l| agent::stats::metric::Label {
                    name: l.name,
                    value: l.value,
                })
                .collect(),
        }
    }
}

impl TryFrom<agent::stats::Metric> for AgentMetric {
    type Error = ConvertError;
    fn try_from(p: agent::stats::Metric) -> Result<Self, ConvertError> {
        let t = agent::stats::metric::Type::try_from(p.r#type)
            .map_err(|_| ConvertError::unknown("metric type", p.r#type.to_string()))?;
        Ok(AgentMetric {
            name: p.name,
            metric_type: t.try_into()?,
            value: p.value,
            labels: p
                .labels
                .into_iter()
                .map(|l| AgentMetricLabel {
                    name: l.name,
                    value: l.value,
                })
                .collect(),
        })
    }
}

// The four session counters are deprecated in the protobuf (API v2.11 adds
// `session_counts`), but they are what coderd reads up to v2.10.
#[allow(deprecated)]
impl From<Stats> for agent::Stats {
    fn from(s: Stats) -> Self {
        agent::Stats {
            connections_by_proto: s.connections_by_proto,
            connection_count: s.connection_count,
            connection_median_latency_ms: s.connection_median_latency_ms,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            session_count_vscode: s.session_count_vscode,
            session_count_jetbrains: s.session_count_jetbrains,
            session_count_reconnecting_pty: s.session_count_reconnecting_pty,
            session_count_ssh: s.session_count_ssh,
            metrics: s.metrics.into_iter().map(Into::into).collect(),
            session_counts: BTreeMap::new(),
        }
    }
}

/// The protobuf's `session_counts` map (API v2.11) has no place in Go's
/// `Stats` and is dropped.
#[allow(deprecated)]
impl TryFrom<agent::Stats> for Stats {
    type Error = ConvertError;
    fn try_from(p: agent::Stats) -> Result<Self, ConvertError> {
        Ok(Stats {
            connections_by_proto: p.connections_by_proto,
            connection_count: p.connection_count,
            connection_median_latency_ms: p.connection_median_latency_ms,
            rx_packets: p.rx_packets,
            rx_bytes: p.rx_bytes,
            tx_packets: p.tx_packets,
            tx_bytes: p.tx_bytes,
            session_count_vscode: p.session_count_vscode,
            session_count_jetbrains: p.session_count_jetbrains,
            session_count_reconnecting_pty: p.session_count_reconnecting_pty,
            session_count_ssh: p.session_count_ssh,
            metrics: p.metrics.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
        })
    }
}
