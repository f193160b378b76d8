//! `spec/versions.toml`: which RPCs each API version adds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The parsed manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Service key (`agent`, `tailnet`) → where it lives.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Versions, oldest first.
    pub versions: Vec<Version>,
}

/// One service of the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub package: String,
    pub service: String,
    pub proto: String,
}

/// One API version. Keys other than the three below name a service of
/// `[services]` and list the RPCs this version adds to it.
#[derive(Debug, Deserialize)]
pub struct Version {
    pub version: String,
    #[serde(default)]
    pub release: Option<String>,
    pub summary: String,
    #[serde(flatten)]
    pub adds: BTreeMap<String, Vec<String>>,
}

impl Version {
    /// (major, minor), validated by [`load`].
    pub fn numbers(&self) -> (u16, u16) {
        parse_version(&self.version).expect("validated by load")
    }

    /// RPC names this version adds to `service`.
    pub fn adds_to(&self, service: &str) -> &[String] {
        self.adds.get(service).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn parse_version(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Reads and checks the manifest: versions strictly increasing, every
/// listed service declared, no RPC listed twice.
pub fn load(spec_dir: &Path) -> Result<Manifest> {
    let path = spec_dir.join("versions.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let manifest: Manifest = toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let mut last = None;
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for v in &manifest.versions {
        let n = parse_version(&v.version).with_context(|| format!("versions.toml: bad version {:?}", v.version))?;
        if last.is_some_and(|l| l >= n) {
            bail!(
                "versions.toml: version {} is not newer than the one before it",
                v.version
            );
        }
        last = Some(n);
        for (service, rpcs) in &v.adds {
            if !manifest.services.contains_key(service) {
                bail!("versions.toml: version {} lists unknown service {service:?}", v.version);
            }
            for rpc in rpcs {
                if !seen.insert((service.clone(), rpc.clone())) {
                    bail!("versions.toml: {service}.{rpc} is listed twice");
                }
            }
        }
    }
    if manifest.versions.is_empty() {
        bail!("versions.toml: no versions");
    }
    Ok(manifest)
}
