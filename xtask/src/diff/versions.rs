//! `spec/versions.toml` compared: services, versions, releases and which
//! version adds each RPC.
//!
//! Rust shape (see `xtask/src/drpc.rs`): every version is a client trait
//! `<Service>Client<MajorMinor>` extending the one before and a client struct
//! `<Service><MajorMinor>`; `<Service>Latest`, `LatestClient` and
//! `CURRENT_VERSION` name the newest. So a new version adds a trait and a
//! struct but also re-points those three names at it: code that names
//! `AgentLatest` as a type, or implements `LatestClient`, stops compiling
//! (a type alias and a re-export changed target), which is breaking for Rust.
//! A moved RPC leaves one trait for another; a removed version removes its
//! trait and struct.

use std::collections::BTreeMap;

use super::{Area, Change, Kind, Rust, Severity};
use crate::versions::Manifest;

/// Every difference from `base` to `current`.
pub fn diff(base: &Manifest, current: &Manifest) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |kind, sev, rust, path: String, detail: String| {
        out.push(Change::new(Area::Versions, kind, sev, rust, path, detail));
    };
    use Kind::*;

    for (key, bs) in &base.services {
        let path = format!("services.{key}");
        match current.services.get(key) {
            None => push(
                Removed,
                Severity::Breaking,
                Rust::Breaking,
                path,
                "service removed from the table".into(),
            ),
            Some(cs) => {
                for (what, b, c) in [
                    ("package", &bs.package, &cs.package),
                    ("service", &bs.service, &cs.service),
                    ("proto", &bs.proto, &cs.proto),
                ] {
                    if b != c {
                        // The package and service are the wire path; all three name the generated modules.
                        let sev = if what == "proto" {
                            Severity::Compatible
                        } else {
                            Severity::Breaking
                        };
                        let rust = if what == "proto" { Rust::None } else { Rust::Breaking };
                        push(Changed, sev, rust, path.clone(), format!("{what} {b} → {c}"));
                    }
                }
            }
        }
    }
    for key in current.services.keys().filter(|k| !base.services.contains_key(*k)) {
        push(
            Added,
            Severity::Additive,
            Rust::Additive,
            format!("services.{key}"),
            "service added to the table".into(),
        );
    }

    let base_versions: BTreeMap<&str, _> = base.versions.iter().map(|v| (v.version.as_str(), v)).collect();
    let cur_versions: BTreeMap<&str, _> = current.versions.iter().map(|v| (v.version.as_str(), v)).collect();
    let newest = |m: &Manifest| m.versions.last().map(|v| v.version.clone()).unwrap_or_default();
    for (ver, bv) in &base_versions {
        let path = format!("versions.{ver}");
        let Some(cv) = cur_versions.get(ver) else {
            push(
                Removed,
                Severity::Breaking,
                Rust::Breaking,
                path,
                "version removed".into(),
            );
            continue;
        };
        match (&bv.release, &cv.release) {
            (a, b) if a == b => {}
            (None, Some(r)) => push(
                Added,
                Severity::Additive,
                Rust::None,
                path.clone(),
                format!("release {r} recorded"),
            ),
            (Some(a), Some(b)) => push(
                Changed,
                Severity::Breaking,
                Rust::None,
                path.clone(),
                format!("release {a} → {b}"),
            ),
            (Some(a), None) => push(
                Removed,
                Severity::Breaking,
                Rust::None,
                path.clone(),
                format!("release {a} removed"),
            ),
            (None, None) => unreachable!("equal"),
        }
        if bv.summary != cv.summary {
            push(Changed, Severity::None, Rust::None, path, "summary changed".into());
        }
    }
    for ver in cur_versions.keys().filter(|v| !base_versions.contains_key(*v)) {
        let moves_latest = newest(current) == *ver && newest(base) != *ver;
        let (rust, detail) = if moves_latest {
            (
                Rust::Breaking,
                "version added (new client traits and structs; the *Latest aliases, LatestClient and CURRENT_VERSION now name it)",
            )
        } else {
            (Rust::Additive, "version added (new client traits and structs)")
        };
        push(
            Added,
            Severity::Additive,
            rust,
            format!("versions.{ver}"),
            detail.into(),
        );
    }

    // RPCs listed under another version than before. Additions and removals are
    // the protos' business (generation refuses a table that disagrees with them).
    let since = |m: &Manifest| -> BTreeMap<(String, String), String> {
        let mut map = BTreeMap::new();
        for v in &m.versions {
            for (service, rpcs) in &v.adds {
                for rpc in rpcs {
                    map.insert((service.clone(), rpc.clone()), v.version.clone());
                }
            }
        }
        map
    };
    let (bs, cs) = (since(base), since(current));
    for ((service, rpc), bver) in &bs {
        if let Some(cver) = cs.get(&(service.clone(), rpc.clone())) {
            if cver != bver {
                push(
                    Changed,
                    Severity::Breaking,
                    Rust::Breaking,
                    format!("versions.{service}.{rpc}"),
                    format!("RPC moved from v{bver} to v{cver}"),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[services.agent]
package = "coder.agent.v2"
service = "Agent"
proto = "agent.proto"

[[versions]]
version = "2.0"
release = "v2.8.0"
summary = "First."
agent = ["GetManifest", "UpdateStats"]

[[versions]]
version = "2.1"
release = "v2.12.0"
summary = "Banners."
agent = ["GetAnnouncementBanners"]

[[versions]]
version = "2.2"
summary = "Nothing yet known."
agent = []
"#;

    fn manifest(text: &str) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("versions.toml"), text).unwrap();
        crate::versions::load(dir.path()).unwrap()
    }

    fn one(edit: &str, with: &str) -> Change {
        let edited = BASE.replacen(edit, with, 1);
        assert_ne!(edited, BASE, "the edit {edit:?} must apply");
        let c = diff(&manifest(BASE), &manifest(&edited));
        assert_eq!(c.len(), 1, "{c:#?}");
        c[0].clone()
    }

    #[test]
    fn unchanged_table_has_no_changes() {
        assert!(diff(&manifest(BASE), &manifest(BASE)).is_empty());
    }

    #[test]
    fn new_newest_version_is_additive_on_the_wire_and_moves_the_latest_names() {
        let c = one(
            "agent = []\n",
            "agent = []\n\n[[versions]]\nversion = \"2.3\"\nsummary = \"Teleport.\"\nagent = []\n",
        );
        assert_eq!(
            (c.severity, c.rust, c.path.as_str()),
            (Severity::Additive, Rust::Breaking, "versions.2.3")
        );
        assert!(c.detail.contains("Latest"), "{}", c.detail);
    }

    #[test]
    fn rpc_moved_to_another_version_is_breaking() {
        let edited = BASE
            .replacen("agent = [\"GetAnnouncementBanners\"]", "agent = []", 1)
            .replacen(
                "summary = \"Nothing yet known.\"\nagent = []",
                "summary = \"Nothing yet known.\"\nagent = [\"GetAnnouncementBanners\"]",
                1,
            );
        let c = diff(&manifest(BASE), &manifest(&edited));
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!((c[0].severity, c[0].rust), (Severity::Breaking, Rust::Breaking));
        assert_eq!(c[0].path, "versions.agent.GetAnnouncementBanners");
        assert_eq!(c[0].detail, "RPC moved from v2.1 to v2.2");
    }

    #[test]
    fn removed_version_is_breaking() {
        let c = one(
            "\n[[versions]]\nversion = \"2.2\"\nsummary = \"Nothing yet known.\"\nagent = []\n",
            "\n",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "version removed")
        );
    }

    #[test]
    fn changed_release_is_breaking_and_a_first_known_release_is_additive() {
        let c = one("release = \"v2.12.0\"", "release = \"v2.13.0\"");
        assert_eq!((c.severity, c.rust), (Severity::Breaking, Rust::None));
        assert_eq!(c.detail, "release v2.12.0 → v2.13.0");
        let c = one("release = \"v2.12.0\"\n", "");
        assert_eq!(c.severity, Severity::Breaking);
        let c = one("version = \"2.2\"\n", "version = \"2.2\"\nrelease = \"v2.14.0\"\n");
        assert_eq!(
            (c.severity, c.rust, c.kind),
            (Severity::Additive, Rust::None, Kind::Added)
        );
    }

    #[test]
    fn summary_only_change_is_none() {
        let c = one("summary = \"Banners.\"", "summary = \"Several banners.\"");
        assert_eq!((c.severity, c.rust), (Severity::None, Rust::None));
    }

    #[test]
    fn services_added_removed_and_renamed() {
        let tailnet =
            "\n[services.tailnet]\npackage = \"coder.tailnet.v2\"\nservice = \"Tailnet\"\nproto = \"tailnet.proto\"\n";
        let c = one(
            "proto = \"agent.proto\"\n",
            &format!("proto = \"agent.proto\"\n{tailnet}"),
        );
        assert_eq!(
            (c.severity, c.rust, c.path.as_str()),
            (Severity::Additive, Rust::Additive, "services.tailnet")
        );
        let c = one("service = \"Agent\"", "service = \"Agents\"");
        assert_eq!((c.severity, c.rust), (Severity::Breaking, Rust::Breaking));
        let with = BASE.replacen(
            "proto = \"agent.proto\"\n",
            &format!("proto = \"agent.proto\"\n{tailnet}"),
            1,
        );
        let c = diff(&manifest(&with), &manifest(BASE));
        assert_eq!(
            (c[0].severity, c[0].detail.as_str()),
            (Severity::Breaking, "service removed from the table")
        );
    }
}
