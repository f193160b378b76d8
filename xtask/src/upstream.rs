//! `cargo xtask upstream --coder DIR`: every wire fact that differs between a
//! Coder checkout and `spec/`, as a checklist for the maintainer.
//!
//! Read from the checkout (facts only; nothing is copied into the repository):
//! - `agent/proto/agent.proto`, `tailnet/proto/tailnet.proto`, compiled with
//!   protox and compared with our protos descriptor by descriptor (names,
//!   numbers, types, labels, oneofs, enum values, RPCs, services; comments are
//!   not compared: ours are our own words);
//! - `tailnet/proto/version.go`: the `API vX.Y:` history blocks (the release in
//!   "Shipped in Coder vA.B.C", the RPC names a block first mentions) and
//!   `CurrentMajor`/`CurrentMinor`, against `spec/versions.toml`;
//! - `coderd/apidoc/swagger.json` (Swagger 2.0): the agent endpoints (ours,
//!   plus upstream's under `/workspaceagents/me/` and the
//!   `/workspaceagents/*-instance-identity` exchanges): methods, parameters,
//!   success status codes, request and response property names and types,
//!   against `spec/openapi.yaml`.
//!
//! Each difference is a [`Change`] read as "what adopting upstream does":
//! `added` = upstream has it and `spec/` lacks it, `removed` = `spec/` has it
//! and upstream does not, `changed` = both have it, differently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::diff::{self, Area, Change, Kind, Rust, Severity};

/// Upstream's files, relative to the checkout.
pub const AGENT_PROTO: &str = "agent/proto/agent.proto";
/// See [`AGENT_PROTO`].
pub const TAILNET_PROTO: &str = "tailnet/proto/tailnet.proto";
/// See [`AGENT_PROTO`].
pub const VERSION_GO: &str = "tailnet/proto/version.go";
/// See [`AGENT_PROTO`].
pub const SWAGGER: &str = "coderd/apidoc/swagger.json";

/// `cargo xtask upstream` entry point: prints the checklist, exit 1 when anything differs.
pub fn run(mut args: impl Iterator<Item = String>) -> Result<ExitCode> {
    let mut coder: Option<PathBuf> = None;
    let mut spec = None;
    let mut format = diff::Format::Text;
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--coder" => coder = Some(PathBuf::from(value()?)),
            "--spec" => spec = Some(PathBuf::from(value()?)),
            "--format" => format = crate::parse_format(&value()?)?,
            _ => {
                bail!("unknown flag {flag}\nusage: cargo xtask upstream --coder DIR [--format text|json] [--spec DIR]")
            }
        }
    }
    let coder = coder.context("usage: cargo xtask upstream --coder DIR [--format text|json] [--spec DIR]")?;
    let spec = crate::or_in_workspace(spec, "spec")?;
    let changes = compare(&coder, &spec)?;
    match format {
        diff::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "coder": coder.display().to_string(),
                "changes": changes,
            }))?
        ),
        diff::Format::Text => print!("{}", checklist(&coder, &changes)),
    }
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The text checklist.
pub fn checklist(coder: &Path, changes: &[Change]) -> String {
    let mut out = format!("{} compared with spec/:\n", coder.display());
    if changes.is_empty() {
        out.push_str("  nothing differs\n");
        return out;
    }
    for c in changes {
        let verb = match c.kind {
            Kind::Added => "upstream has, spec/ lacks",
            Kind::Removed => "spec/ has, upstream lacks",
            Kind::Changed => "differs",
        };
        let area = match c.area {
            Area::Proto => "proto",
            Area::Versions => "versions",
            Area::Openapi => "rest",
        };
        out.push_str(&format!("- [ ] {area:<8} {}: {} ({verb})\n", c.path, c.detail));
    }
    out.push_str(&format!(
        "{} differences. Edit spec/ (our own words, no upstream text), `cargo xtask generate`, then `cargo xtask diff`.\n",
        changes.len()
    ));
    out
}

/// Every difference between the checkout `coder` and `spec`.
pub fn compare(coder: &Path, spec: &Path) -> Result<Vec<Change>> {
    for f in [AGENT_PROTO, TAILNET_PROTO, VERSION_GO, SWAGGER] {
        if !coder.join(f).is_file() {
            bail!("{} is not a Coder checkout: {f} is missing", coder.display());
        }
    }
    let manifest = crate::versions::load(spec)?;
    let ours = crate::protos::compile(spec, &manifest)?;
    let theirs = protox::compile([AGENT_PROTO, TAILNET_PROTO], [coder])
        .with_context(|| format!("compile the protos of {}", coder.display()))?;
    let mut changes = diff::proto::diff(&ours, &theirs, diff::proto::Options { comments: false });

    let rpcs: BTreeSet<String> = theirs
        .file
        .iter()
        .flat_map(|f| f.service.iter())
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect();
    let go = std::fs::read_to_string(coder.join(VERSION_GO)).with_context(|| format!("read {VERSION_GO}"))?;
    changes.extend(compare_versions(&manifest, &parse_version_go(&go, &rpcs)?));

    let swagger_text = std::fs::read_to_string(coder.join(SWAGGER)).with_context(|| format!("read {SWAGGER}"))?;
    let swagger: Value = serde_json::from_str(&swagger_text).with_context(|| format!("parse {SWAGGER}"))?;
    let openapi_text = std::fs::read_to_string(spec.join(crate::rest::SPEC_FILE))?;
    let openapi: Value = serde_yaml::from_str(&openapi_text).context("parse spec/openapi.yaml")?;
    changes.extend(compare_rest(&openapi, &swagger)?);
    changes.sort_by(|a, b| (a.area, &a.path, &a.detail).cmp(&(b.area, &b.path, &b.detail)));
    Ok(changes)
}

/// One `API vX.Y:` block of version.go.
#[derive(Debug, Default, PartialEq)]
pub struct GoVersion {
    /// "2.3".
    pub version: String,
    /// "v2.18.0" from "Shipped in Coder v2.18.0".
    pub release: Option<String>,
    /// RPC names the history mentions here for the first time.
    pub first_mentions: BTreeSet<String>,
}

/// version.go's history and current version.
#[derive(Debug, PartialEq)]
pub struct GoVersions {
    /// Oldest first; `API v1` style blocks without a minor are left out.
    pub versions: Vec<GoVersion>,
    /// `CurrentMajor.CurrentMinor`.
    pub current: String,
}

/// Parses version.go: history blocks in comments and the `CurrentMajor`/`CurrentMinor` constants.
pub fn parse_version_go(text: &str, rpcs: &BTreeSet<String>) -> Result<GoVersions> {
    let mut versions: Vec<GoVersion> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut in_block = false;
    let (mut major, mut minor) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("//") {
            let c = c.trim();
            if let Some(v) = c.strip_prefix("API v").and_then(|r| r.strip_suffix(':')) {
                in_block = v
                    .split_once('.')
                    .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
                if in_block {
                    versions.push(GoVersion {
                        version: v.to_owned(),
                        ..Default::default()
                    });
                }
                continue;
            }
            if !in_block {
                continue;
            }
            let current = versions.last_mut().expect("in a block");
            if let Some(i) = c.find("Shipped in Coder v") {
                let rest = &c[i + "Shipped in Coder ".len()..];
                let release: String = rest
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '.')
                    .collect();
                current.release.get_or_insert(release.trim_end_matches('.').to_owned());
            }
            for word in c.split(|ch: char| !ch.is_ascii_alphanumeric()) {
                if rpcs.contains(word) && seen.insert(word.to_owned()) {
                    current.first_mentions.insert(word.to_owned());
                }
            }
        } else {
            in_block = false;
            let mut parts = t.split('=').map(str::trim);
            match (parts.next(), parts.next()) {
                (Some("CurrentMajor"), Some(v)) => major = Some(v.parse::<u32>().context("CurrentMajor")?),
                (Some("CurrentMinor"), Some(v)) => minor = Some(v.parse::<u32>().context("CurrentMinor")?),
                _ => {}
            }
        }
    }
    let (Some(major), Some(minor)) = (major, minor) else {
        bail!("{VERSION_GO}: no CurrentMajor/CurrentMinor constants");
    };
    Ok(GoVersions {
        versions,
        current: format!("{major}.{minor}"),
    })
}

fn compare_versions(manifest: &crate::versions::Manifest, go: &GoVersions) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |kind, sev, rust, path: String, detail: String| {
        out.push(Change::new(Area::Versions, kind, sev, rust, path, detail));
    };
    let ours: BTreeMap<&str, _> = manifest.versions.iter().map(|v| (v.version.as_str(), v)).collect();
    let theirs: BTreeMap<&str, _> = go.versions.iter().map(|v| (v.version.as_str(), v)).collect();
    for (ver, gv) in &theirs {
        let path = format!("versions.{ver}");
        match ours.get(ver) {
            None => push(
                Kind::Added,
                Severity::Additive,
                Rust::Breaking,
                path,
                match &gv.release {
                    Some(r) => format!("version missing from spec/versions.toml (shipped in {r})"),
                    None => "version missing from spec/versions.toml".to_owned(),
                },
            ),
            Some(ov) => match (&ov.release, &gv.release) {
                (Some(a), Some(b)) if a != b => push(
                    Kind::Changed,
                    Severity::Breaking,
                    Rust::None,
                    path,
                    format!("release: spec {a}, upstream {b}"),
                ),
                (None, Some(b)) => push(
                    Kind::Added,
                    Severity::Additive,
                    Rust::None,
                    path,
                    format!("release {b} not recorded"),
                ),
                _ => {}
            },
        }
    }
    for ver in ours.keys().filter(|v| !theirs.contains_key(*v)) {
        push(
            Kind::Removed,
            Severity::Breaking,
            Rust::Breaking,
            format!("versions.{ver}"),
            "version not in upstream's history".into(),
        );
    }
    let newest = manifest.versions.last().map(|v| v.version.clone()).unwrap_or_default();
    if newest != go.current {
        push(
            Kind::Changed,
            Severity::Additive,
            Rust::Breaking,
            "versions.current".into(),
            format!("newest version: spec {newest}, upstream CurrentVersion {}", go.current),
        );
    }
    let since: BTreeMap<&str, (&str, &str)> = manifest
        .versions
        .iter()
        .flat_map(|v| {
            v.adds.iter().flat_map(move |(svc, rpcs)| {
                rpcs.iter()
                    .map(move |r| (r.as_str(), (svc.as_str(), v.version.as_str())))
            })
        })
        .collect();
    for gv in &go.versions {
        for rpc in &gv.first_mentions {
            match since.get(rpc.as_str()) {
                Some((svc, ver)) if *ver != gv.version => push(
                    Kind::Changed,
                    Severity::Breaking,
                    Rust::Breaking,
                    format!("versions.{svc}.{rpc}"),
                    format!(
                        "upstream's history first names it under v{}, spec/versions.toml lists it in v{ver}",
                        gv.version
                    ),
                ),
                Some(_) => {}
                None => push(
                    Kind::Added,
                    Severity::Additive,
                    Rust::Additive,
                    format!("versions.{rpc}"),
                    format!(
                        "upstream's history adds it in v{}; spec/versions.toml does not list it",
                        gv.version
                    ),
                ),
            }
        }
    }
    out
}

/// A property or parameter type: the JSON type (with the item type of arrays) and its format.
#[derive(Clone, Debug, PartialEq)]
struct Ty {
    base: String,
    format: Option<String>,
}

impl Ty {
    /// Same type; formats only count when both documents state one.
    fn matches(&self, other: &Ty) -> bool {
        self.base == other.base && (self.format.is_none() || other.format.is_none() || self.format == other.format)
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.format {
            Some(x) => write!(f, "{}({x})", self.base),
            None => f.write_str(&self.base),
        }
    }
}

/// One of the two documents, with its `$ref` prefix.
struct RestDoc<'a> {
    raw: &'a Value,
    base_path: String,
}

impl RestDoc<'_> {
    fn resolve<'b>(&'b self, v: &'b Value) -> &'b Value {
        let mut v = v;
        for _ in 0..8 {
            let v2 = match v.get("allOf").and_then(Value::as_array) {
                Some(list) if list.len() == 1 => &list[0],
                _ => v,
            };
            match v2.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
                Some(pointer) => match self.raw.pointer(pointer) {
                    Some(t) => v = t,
                    None => return v2,
                },
                None => return v2,
            }
        }
        v
    }

    fn ty(&self, s: &Value) -> Ty {
        let s = self.resolve(s);
        let base = match s.get("type").and_then(Value::as_str) {
            Some("array") => format!(
                "array<{}>",
                s.get("items").map(|i| self.ty(i).base).unwrap_or_else(|| "any".into())
            ),
            Some("object") if s.get("properties").is_none() => "map".to_owned(),
            Some(t) => t.to_owned(),
            None if s.get("properties").is_some() => "object".to_owned(),
            None => "any".to_owned(),
        };
        Ty {
            base,
            format: s.get("format").and_then(Value::as_str).map(str::to_owned),
        }
    }

    /// Property path → type, recursively through objects and arrays of objects.
    fn properties(&self, s: &Value, prefix: &str, depth: usize, out: &mut BTreeMap<String, Ty>) {
        if depth > 6 {
            return;
        }
        let s = self.resolve(s);
        let s = match s.get("type").and_then(Value::as_str) {
            Some("array") => match s.get("items") {
                Some(items) => self.resolve(items),
                None => return,
            },
            _ => s,
        };
        let Some(props) = s.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, p) in props {
            let path = format!("{prefix}.{name}");
            out.insert(path.clone(), self.ty(p));
            self.properties(p, &path, depth + 1, out);
        }
    }

    /// (METHOD, full path) → operation, for the agent endpoints.
    fn operations(&self) -> BTreeMap<(String, String), &Value> {
        let mut ops = BTreeMap::new();
        for (path, item) in self.raw.get("paths").and_then(Value::as_object).into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                    ops.insert((method.to_uppercase(), format!("{}{path}", self.base_path)), op);
                }
            }
        }
        ops
    }

    /// Non-body parameters: "in:name" → (required, type).
    fn params(&self, op: &Value) -> BTreeMap<String, (bool, Ty)> {
        let mut out = BTreeMap::new();
        for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let p = self.resolve(p);
            let place = p.get("in").and_then(Value::as_str).unwrap_or("");
            if place == "body" {
                continue;
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            // OpenAPI 3 keeps the type in `schema`; Swagger 2.0 on the parameter itself.
            let ty = match p.get("schema") {
                Some(s) => self.ty(s),
                None => self.ty(p),
            };
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            out.insert(format!("{place}:{name}"), (required, ty));
        }
        out
    }

    /// The request body schema: OpenAPI 3 `requestBody`, or Swagger 2.0's `in: body` parameter.
    fn request_schema<'b>(&'b self, op: &'b Value) -> Option<&'b Value> {
        if let Some(body) = op.get("requestBody") {
            let body = self.resolve(body);
            let content = body.get("content")?.as_object()?;
            return content
                .get("application/json")
                .or_else(|| content.values().next())?
                .get("schema");
        }
        op.get("parameters")?
            .as_array()?
            .iter()
            .map(|p| self.resolve(p))
            .find(|p| p.get("in").and_then(Value::as_str) == Some("body"))?
            .get("schema")
    }

    /// Success status codes and the body schema of the first one that has a body.
    fn success<'b>(&'b self, op: &'b Value) -> (BTreeSet<String>, Option<&'b Value>) {
        let mut codes = BTreeSet::new();
        let mut schema = None;
        for (code, resp) in op.get("responses").and_then(Value::as_object).into_iter().flatten() {
            if !matches!(code.as_bytes().first(), Some(b'1' | b'2' | b'3')) {
                continue;
            }
            codes.insert(code.clone());
            let resp = self.resolve(resp);
            let s = resp.get("schema").or_else(|| {
                let content = resp.get("content")?.as_object()?;
                content.get("application/json")?.get("schema")
            });
            if schema.is_none() {
                schema = s;
            }
        }
        (codes, schema)
    }
}

fn is_agent_endpoint(path: &str) -> bool {
    path.starts_with("/api/v2/workspaceagents/me/")
        || (path.starts_with("/api/v2/workspaceagents/") && path.ends_with("-instance-identity"))
}

fn compare_rest(openapi: &Value, swagger: &Value) -> Result<Vec<Change>> {
    if swagger.get("swagger").and_then(Value::as_str) != Some("2.0") {
        bail!("{SWAGGER}: not a Swagger 2.0 document");
    }
    let ours = RestDoc {
        raw: openapi,
        base_path: String::new(),
    };
    let theirs = RestDoc {
        raw: swagger,
        base_path: swagger
            .get("basePath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned(),
    };
    let (oops, tops) = (ours.operations(), theirs.operations());
    let mut out = Vec::new();
    let mut push = |kind, sev, rust, path: String, detail: String| {
        out.push(Change::new(Area::Openapi, kind, sev, rust, path, detail));
    };
    for (key, top) in tops.iter().filter(|(k, _)| is_agent_endpoint(&k.1)) {
        if !oops.contains_key(key) {
            let _ = top;
            push(
                Kind::Added,
                Severity::Additive,
                Rust::Additive,
                format!("{} {}", key.0, key.1),
                "endpoint missing from spec/openapi.yaml".into(),
            );
        }
    }
    for (key, oop) in &oops {
        let path = format!("{} {}", key.0, key.1);
        let Some(top) = tops.get(key) else {
            push(
                Kind::Removed,
                Severity::Breaking,
                Rust::Breaking,
                path,
                "endpoint not in upstream's swagger.json".into(),
            );
            continue;
        };
        let (op, tp) = (ours.params(oop), theirs.params(top));
        for (name, (treq, tty)) in &tp {
            let ppath = format!("{path} {name}");
            match op.get(name) {
                None => push(
                    Kind::Added,
                    if *treq { Severity::Breaking } else { Severity::Additive },
                    Rust::Breaking,
                    ppath,
                    format!(
                        "{} parameter ({tty}) missing from spec",
                        if *treq { "required" } else { "optional" }
                    ),
                ),
                Some((oreq, oty)) => {
                    if oreq != treq {
                        push(
                            Kind::Changed,
                            Severity::Breaking,
                            Rust::Breaking,
                            ppath.clone(),
                            format!("required: spec {oreq}, upstream {treq}"),
                        );
                    }
                    if !oty.matches(tty) {
                        push(
                            Kind::Changed,
                            Severity::Breaking,
                            Rust::Breaking,
                            ppath,
                            format!("type: spec {oty}, upstream {tty}"),
                        );
                    }
                }
            }
        }
        for name in op.keys().filter(|n| !tp.contains_key(*n)) {
            push(
                Kind::Removed,
                Severity::Breaking,
                Rust::Breaking,
                format!("{path} {name}"),
                "parameter not upstream".into(),
            );
        }
        let props = |doc: &RestDoc, s: Option<&Value>, prefix: &str| {
            let mut m = BTreeMap::new();
            if let Some(s) = s {
                m.insert(prefix.to_owned(), doc.ty(s));
                doc.properties(s, prefix, 0, &mut m);
            }
            m
        };
        let mut compare_props = |what: &str, o: BTreeMap<String, Ty>, t: BTreeMap<String, Ty>| {
            for (p, tty) in &t {
                match o.get(p) {
                    None => push(
                        Kind::Added,
                        Severity::Additive,
                        Rust::Breaking,
                        format!("{path} {p}"),
                        format!("{what} property ({tty}) missing from spec"),
                    ),
                    Some(oty) if !oty.matches(tty) => push(
                        Kind::Changed,
                        Severity::Breaking,
                        Rust::Breaking,
                        format!("{path} {p}"),
                        format!("type: spec {oty}, upstream {tty}"),
                    ),
                    Some(_) => {}
                }
            }
            for p in o.keys().filter(|p| !t.contains_key(*p)) {
                push(
                    Kind::Removed,
                    Severity::Breaking,
                    Rust::Breaking,
                    format!("{path} {p}"),
                    format!("{what} property not upstream"),
                );
            }
        };
        compare_props(
            "request",
            props(&ours, ours.request_schema(oop), "request"),
            props(&theirs, theirs.request_schema(top), "request"),
        );
        let ((ocodes, oschema), (tcodes, tschema)) = (ours.success(oop), theirs.success(top));
        compare_props(
            "response",
            props(&ours, oschema, "response"),
            props(&theirs, tschema, "response"),
        );
        if ocodes != tcodes {
            let show = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
            push(
                Kind::Changed,
                Severity::Breaking,
                Rust::None,
                path.clone(),
                format!("success status: spec {}, upstream {}", show(&ocodes), show(&tcodes)),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_go_history_gives_releases_first_mentions_and_current() {
        let rpcs: BTreeSet<String> = ["GetManifest", "GetAnnouncementBanners", "PostTelemetry"]
            .map(String::from)
            .into();
        let text = "package proto\n\n// Version history:\n//\n// API v1:\n//   - GetManifest was not there\n//\n\
                    // API v2.0:\n//   - Shipped in Coder v2.8.0\n//   - the first one\n//\n\
                    // API v2.1:\n//   - Shipped in Coder v2.12.0.\n//   - Added GetAnnouncementBanners to the\n//     Agent API.\n//\n\
                    // API v2.2:\n//   - PostTelemetry (and GetAnnouncementBanners again)\nconst (\n\tCurrentMajor = 2\n\tCurrentMinor = 2\n)\n";
        let go = parse_version_go(text, &rpcs).unwrap();
        assert_eq!(go.current, "2.2");
        let summary: Vec<(&str, Option<&str>, Vec<&str>)> = go
            .versions
            .iter()
            .map(|v| {
                (
                    v.version.as_str(),
                    v.release.as_deref(),
                    v.first_mentions.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("2.0", Some("v2.8.0"), vec![]),
                ("2.1", Some("v2.12.0"), vec!["GetAnnouncementBanners"]),
                ("2.2", None, vec!["PostTelemetry"]),
            ],
            "v1 blocks are skipped (the GetManifest mention there does not count)"
        );
        assert!(
            parse_version_go("package proto\n", &rpcs).is_err(),
            "no CurrentMinor is an error"
        );
    }
}
