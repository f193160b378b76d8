//! The DERP (relay) map and the rewrite of coderd's embedded relay to the
//! URL the agent reached coderd at.
//!
//! The JSON form is tailscale's `tailcfg.DERPMap` as Coder's fork writes it
//! (Go field names, `omitempty` where Go has it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::agent::convert::null_as_default;
use crate::proto::tailnet;

/// The relay topology (tailcfg `DERPMap`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DerpMap {
    /// Home-region selection parameters. Always present, as Go's conversion
    /// from protobuf always sets it.
    #[serde(rename = "HomeParams", default)]
    pub home_params: DerpHomeParams,
    /// The regions by region id.
    #[serde(rename = "Regions", default, deserialize_with = "regions_skipping_null")]
    pub regions: BTreeMap<i64, DerpRegion>,
}

/// Home-region selection parameters (tailcfg `DERPHomeParams`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DerpHomeParams {
    /// Latency multipliers by region id; below 1 prefers a region, above 1 avoids it.
    #[serde(
        rename = "RegionScore",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub region_score: BTreeMap<i64, f64>,
}

/// A relay region (tailcfg `DERPRegion`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerpRegion {
    /// Served by coderd itself; [`rewrite_derp_map`] points its nodes at the access URL.
    #[serde(rename = "EmbeddedRelay", default)]
    pub embedded_relay: bool,
    /// The region id.
    #[serde(rename = "RegionID", default)]
    pub region_id: i64,
    /// A short code, e.g. `nyc`.
    #[serde(rename = "RegionCode", default)]
    pub region_code: String,
    /// A long name.
    #[serde(rename = "RegionName", default)]
    pub region_name: String,
    /// Whether clients should avoid it as their home region.
    #[serde(rename = "Avoid", default, skip_serializing_if = "is_false")]
    pub avoid: bool,
    /// The nodes, in priority order.
    #[serde(rename = "Nodes", default, deserialize_with = "null_as_default")]
    pub nodes: Vec<DerpNode>,
}

/// A relay node (tailcfg `DERPNode`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerpNode {
    /// A unique node name (not a host name).
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The region it runs in.
    #[serde(rename = "RegionID", default)]
    pub region_id: i64,
    /// Its host name.
    #[serde(rename = "HostName", default)]
    pub host_name: String,
    /// The expected TLS certificate name, if not the host name.
    #[serde(rename = "CertName", default, skip_serializing_if = "String::is_empty")]
    pub cert_name: String,
    /// A forced IPv4 address.
    #[serde(rename = "IPv4", default, skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    /// A forced IPv6 address.
    #[serde(rename = "IPv6", default, skip_serializing_if = "String::is_empty")]
    pub ipv6: String,
    /// The STUN port; 0 means 3478, -1 disables STUN.
    #[serde(rename = "STUNPort", default, skip_serializing_if = "is_zero")]
    pub stun_port: i32,
    /// Only a STUN server, not a relay.
    #[serde(rename = "STUNOnly", default, skip_serializing_if = "is_false")]
    pub stun_only: bool,
    /// The relay port; 0 means 443.
    #[serde(rename = "DERPPort", default, skip_serializing_if = "is_zero")]
    pub derp_port: i32,
    /// Skip TLS verification (tests only).
    #[serde(rename = "InsecureForTests", default, skip_serializing_if = "is_false")]
    pub insecure_for_tests: bool,
    /// Use plain HTTP.
    #[serde(rename = "ForceHTTP", default, skip_serializing_if = "is_false")]
    pub force_http: bool,
    /// A STUN address override (tests only).
    #[serde(rename = "STUNTestIP", default, skip_serializing_if = "String::is_empty")]
    pub stun_test_ip: String,
    /// Reachable over HTTP on port 80 (captive-portal checks).
    #[serde(rename = "CanPort80", default, skip_serializing_if = "is_false")]
    pub can_port_80: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Go's regions map holds pointers, so a region may be `null`; such entries are dropped.
fn regions_skipping_null<'de, D: serde::Deserializer<'de>>(de: D) -> Result<BTreeMap<i64, DerpRegion>, D::Error> {
    let raw: Option<BTreeMap<i64, Option<DerpRegion>>> = Option::deserialize(de)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, r)| r.map(|r| (id, r)))
        .collect())
}

impl From<tailnet::DerpMap> for DerpMap {
    fn from(p: tailnet::DerpMap) -> Self {
        DerpMap {
            home_params: DerpHomeParams {
                region_score: p.home_params.map(|h| h.region_score).unwrap_or_default(),
            },
            regions: p.regions.into_iter().map(|(id, r)| (id, r.into())).collect(),
        }
    }
}

impl From<DerpMap> for tailnet::DerpMap {
    fn from(m: DerpMap) -> Self {
        tailnet::DerpMap {
            home_params: Some(tailnet::derp_map::HomeParams {
                region_score: m.home_params.region_score,
            }),
            regions: m.regions.into_iter().map(|(id, r)| (id, r.into())).collect(),
        }
    }
}

impl From<tailnet::derp_map::Region> for DerpRegion {
    fn from(p: tailnet::derp_map::Region) -> Self {
        DerpRegion {
            embedded_relay: p.embedded_relay,
            region_id: p.region_id,
            region_code: p.region_code,
            region_name: p.region_name,
            avoid: p.avoid,
            nodes: p.nodes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<DerpRegion> for tailnet::derp_map::Region {
    fn from(r: DerpRegion) -> Self {
        tailnet::derp_map::Region {
            region_id: r.region_id,
            embedded_relay: r.embedded_relay,
            region_code: r.region_code,
            region_name: r.region_name,
            avoid: r.avoid,
            nodes: r.nodes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<tailnet::derp_map::region::Node> for DerpNode {
    fn from(p: tailnet::derp_map::region::Node) -> Self {
        DerpNode {
            name: p.name,
            region_id: p.region_id,
            host_name: p.host_name,
            cert_name: p.cert_name,
            ipv4: p.ipv4,
            ipv6: p.ipv6,
            stun_port: p.stun_port,
            stun_only: p.stun_only,
            derp_port: p.derp_port,
            insecure_for_tests: p.insecure_for_tests,
            force_http: p.force_http,
            stun_test_ip: p.stun_test_ip,
            can_port_80: p.can_port_80,
        }
    }
}

impl From<DerpNode> for tailnet::derp_map::region::Node {
    fn from(n: DerpNode) -> Self {
        tailnet::derp_map::region::Node {
            name: n.name,
            region_id: n.region_id,
            host_name: n.host_name,
            cert_name: n.cert_name,
            ipv4: n.ipv4,
            ipv6: n.ipv6,
            stun_port: n.stun_port,
            stun_only: n.stun_only,
            derp_port: n.derp_port,
            insecure_for_tests: n.insecure_for_tests,
            force_http: n.force_http,
            stun_test_ip: n.stun_test_ip,
            can_port_80: n.can_port_80,
        }
    }
}

/// Where the embedded relay is reached: host name, port and whether it is plain HTTP.
fn relay_target(base_url: &Url) -> (String, i32, bool) {
    let http = base_url.scheme() == "http";
    let default_port = if base_url.scheme() == "https" { 443 } else { 80 };
    let port = base_url.port().unwrap_or(default_port);
    // Go's URL.Hostname() drops the brackets around an IPv6 literal.
    let host = base_url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    (host, i32::from(port), http)
}

/// Points coderd's embedded relay at the URL the agent reached coderd at
/// (Go's `RewriteDERPMap`).
///
/// In every region with `embedded_relay`, each node that is not STUN-only
/// gets the base URL's host name, its port (the explicit port, else 443 for
/// `https` and 80 otherwise) and `force_http` when the scheme is `http`.
/// Other regions and STUN-only nodes are left alone.
///
/// ```
/// use coder_agentsdk::agent::{rewrite_derp_map, DerpMap, DerpNode, DerpRegion};
///
/// let mut map = DerpMap::default();
/// map.regions.insert(999, DerpRegion {
///     embedded_relay: true,
///     region_id: 999,
///     nodes: vec![DerpNode { name: "999a".into(), host_name: "localhost".into(), ..Default::default() }],
///     ..Default::default()
/// });
/// rewrite_derp_map(&mut map, &"https://coconuts.org:44558".parse().unwrap());
/// let node = &map.regions[&999].nodes[0];
/// assert_eq!((node.host_name.as_str(), node.derp_port, node.force_http), ("coconuts.org", 44558, false));
/// ```
pub fn rewrite_derp_map(map: &mut DerpMap, base_url: &Url) {
    let (host, port, http) = relay_target(base_url);
    for region in map.regions.values_mut().filter(|r| r.embedded_relay) {
        for node in region.nodes.iter_mut().filter(|n| !n.stun_only) {
            node.host_name.clone_from(&host);
            node.derp_port = port;
            node.force_http = http;
        }
    }
}

/// [`rewrite_derp_map`] on the protobuf DERP map (as streamed by `StreamDERPMaps`
/// or carried in the protobuf manifest).
pub fn rewrite_proto_derp_map(map: &mut tailnet::DerpMap, base_url: &Url) {
    let (host, port, http) = relay_target(base_url);
    for region in map.regions.values_mut().filter(|r| r.embedded_relay) {
        for node in region.nodes.iter_mut().filter(|n| !n.stun_only) {
            node.host_name.clone_from(&host);
            node.derp_port = port;
            node.force_http = http;
        }
    }
}
