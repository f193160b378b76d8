//! `spec/openapi.yaml` compared with oasdiff's breaking-change rules.
//!
//! Wire verdicts depend on where a schema is used: a new required property
//! breaks old clients of a request body but not readers of a response, a
//! property that may now be absent breaks readers of a response but not
//! writers of a request, and so on. A schema reached from both directions (or
//! from none: the document also describes JSON forms the crate uses
//! elsewhere) gets the worse verdict of the two.
//!
//! Rust verdicts follow progenitor's output (`generated/rest.rs`): every
//! component schema is a struct with only pub fields (no `#[non_exhaustive]`)
//! or an exhaustive enum; every operation not marked `x-coder-websocket` is a
//! `Client` method whose query parameters are positional arguments; a
//! property is `Option<T>` unless it is required or has a default, or when it
//! is nullable.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Area, Change, Kind, Rust, Severity};
use crate::rest::WEBSOCKET_EXTENSION;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Where a schema is read or written.
#[derive(Clone, Copy, Debug, Default)]
struct Dir {
    request: bool,
    response: bool,
}

impl Dir {
    const BOTH: Dir = Dir {
        request: true,
        response: true,
    };

    /// The verdict for a change that is `req` for request bodies and `resp` for responses.
    fn pick(self, req: Severity, resp: Severity) -> Severity {
        match (self.request, self.response) {
            (true, false) => req,
            (false, true) => resp,
            _ => req.max(resp),
        }
    }
}

struct Doc {
    raw: Value,
    schemas: BTreeMap<String, Value>,
}

impl Doc {
    fn parse(yaml: &str) -> Result<Self> {
        let raw: Value = serde_yaml::from_str(yaml).context("the OpenAPI document is not valid YAML")?;
        let schemas = raw
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Self { raw, schemas })
    }

    /// (METHOD, path) → operation.
    fn operations(&self) -> BTreeMap<(String, String), &Value> {
        let mut ops = BTreeMap::new();
        if let Some(paths) = self.raw.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                for m in METHODS {
                    if let Some(op) = item.get(m) {
                        ops.insert((m.to_uppercase(), path.clone()), op);
                    }
                }
            }
        }
        ops
    }

    /// Resolves a `$ref` to components (parameters, responses, request bodies).
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.raw.pointer(pointer).unwrap_or(v),
            None => v,
        }
    }

    /// Which component schemas requests and responses reach.
    fn directions(&self) -> BTreeMap<String, Dir> {
        let mut req = BTreeSet::new();
        let mut resp = BTreeSet::new();
        for op in self.operations().values() {
            for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                collect_refs(self.deref(p), &mut req);
            }
            if let Some(body) = op.get("requestBody") {
                collect_refs(self.deref(body), &mut req);
            }
            if let Some(responses) = op.get("responses").and_then(Value::as_object) {
                for r in responses.values() {
                    collect_refs(self.deref(r), &mut resp);
                }
            }
        }
        let close = |set: &mut BTreeSet<String>| loop {
            let mut more = BTreeSet::new();
            for name in set.iter() {
                if let Some(s) = self.schemas.get(name) {
                    collect_refs(s, &mut more);
                }
            }
            let before = set.len();
            set.extend(more);
            if set.len() == before {
                break;
            }
        };
        close(&mut req);
        close(&mut resp);
        self.schemas
            .keys()
            .map(|k| {
                let d = Dir {
                    request: req.contains(k),
                    response: resp.contains(k),
                };
                (k.clone(), if d.request || d.response { d } else { Dir::BOTH })
            })
            .collect()
    }
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    out.insert(name.to_owned());
                }
            }
            for x in m.values() {
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Unwraps `allOf: [one]` (how generators attach a description to a `$ref`).
fn unwrap(s: &Value) -> &Value {
    match s.get("allOf").and_then(Value::as_array) {
        Some(list) if list.len() == 1 => &list[0],
        _ => s,
    }
}

/// The type of a schema, without nullability, defaults, enums or descriptions.
pub(crate) fn type_sig(s: &Value) -> String {
    let s = unwrap(s);
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("any");
    match ty {
        "array" => format!(
            "array<{}>",
            s.get("items").map(type_sig).unwrap_or_else(|| "any".into())
        ),
        "object" if s.get("properties").is_none() => match s.get("additionalProperties") {
            Some(Value::Object(m)) if !m.is_empty() => format!("map<{}>", type_sig(&Value::Object(m.clone()))),
            _ => "map<any>".to_owned(),
        },
        _ => match s.get("format").and_then(Value::as_str) {
            Some(f) => format!("{ty}({f})"),
            None => ty.to_owned(),
        },
    }
}

fn enum_values(s: &Value) -> Option<BTreeSet<String>> {
    unwrap(s).get("enum").and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    })
}

fn is_nullable(s: &Value) -> bool {
    s.get("nullable").and_then(Value::as_bool).unwrap_or(false)
}

fn text(s: &Value, key: &str) -> String {
    s.get(key).map(|v| v.to_string()).unwrap_or_default()
}

struct Sink(Vec<Change>);

impl Sink {
    fn push(&mut self, kind: Kind, sev: Severity, rust: Rust, path: &str, detail: impl Into<String>) {
        self.0.push(Change::new(Area::Openapi, kind, sev, rust, path, detail));
    }
}

/// Compares one schema (a component, a property's schema, an inline object).
fn compare_schema(sink: &mut Sink, path: &str, b: &Value, c: &Value, dir: Dir) {
    let (bs, cs) = (type_sig(b), type_sig(c));
    if bs != cs {
        sink.push(
            Kind::Changed,
            Severity::Breaking,
            Rust::Breaking,
            path,
            format!("type {bs} → {cs}"),
        );
        return;
    }
    if let (Some(be), Some(ce)) = (enum_values(b), enum_values(c)) {
        for v in ce.difference(&be) {
            // oasdiff: a new request enum value is fine; in a response it is a warning (readers may not know it).
            sink.push(
                Kind::Added,
                Severity::Additive,
                Rust::Breaking,
                path,
                format!("enum value {v} added"),
            );
        }
        for v in be.difference(&ce) {
            let sev = dir.pick(Severity::Breaking, Severity::Compatible);
            sink.push(
                Kind::Removed,
                sev,
                Rust::Breaking,
                path,
                format!("enum value {v} removed"),
            );
        }
    } else if enum_values(b).is_some() != enum_values(c).is_some() {
        let narrowed = enum_values(c).is_some();
        let sev = if narrowed {
            dir.pick(Severity::Breaking, Severity::Compatible)
        } else {
            dir.pick(Severity::Compatible, Severity::Breaking)
        };
        let what = if narrowed {
            "restricted to an enum"
        } else {
            "no longer an enum"
        };
        sink.push(Kind::Changed, sev, Rust::Breaking, path, what);
    }
    let (b, c) = (unwrap(b), unwrap(c));
    if text(b, "description") != text(c, "description") && !path.contains(' ') {
        sink.push(Kind::Changed, Severity::None, Rust::None, path, "description changed");
    }
    let props = |s: &Value| -> BTreeMap<String, Value> {
        s.get("properties")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let required = |s: &Value| -> BTreeSet<String> {
        s.get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (bp, cp) = (props(b), props(c));
    let (br, cr) = (required(b), required(c));
    for (name, bprop) in &bp {
        let ppath = format!("{path}.{name}");
        let Some(cprop) = cp.get(name) else {
            sink.push(
                Kind::Removed,
                Severity::Breaking,
                Rust::Breaking,
                &ppath,
                "property removed",
            );
            continue;
        };
        compare_schema(sink, &ppath, bprop, cprop, dir);
        let (breq, creq) = (br.contains(name), cr.contains(name));
        let rust_optional = |p: &Value, req: bool| (!req && p.get("default").is_none()) || is_nullable(p);
        let rust = if rust_optional(bprop, breq) == rust_optional(cprop, creq) {
            Rust::None
        } else {
            Rust::Breaking
        };
        if breq != creq {
            let (sev, what) = if creq {
                (
                    dir.pick(Severity::Breaking, Severity::Compatible),
                    "property became required",
                )
            } else {
                (
                    dir.pick(Severity::Compatible, Severity::Breaking),
                    "property became optional",
                )
            };
            sink.push(Kind::Changed, sev, rust, &ppath, what);
        } else if is_nullable(bprop) != is_nullable(cprop) {
            let (sev, what) = if is_nullable(cprop) {
                (
                    dir.pick(Severity::Compatible, Severity::Breaking),
                    "property became nullable",
                )
            } else {
                (
                    dir.pick(Severity::Breaking, Severity::Compatible),
                    "property no longer nullable",
                )
            };
            sink.push(Kind::Changed, sev, rust, &ppath, what);
        } else if bprop.get("default") != cprop.get("default") {
            sink.push(
                Kind::Changed,
                Severity::Compatible,
                rust,
                &ppath,
                format!("default {} → {}", text(bprop, "default"), text(cprop, "default")),
            );
        }
    }
    for (name, cprop) in &cp {
        if bp.contains_key(name) {
            continue;
        }
        let req = cr.contains(name);
        let sev = dir.pick(
            if req { Severity::Breaking } else { Severity::Additive },
            Severity::Additive,
        );
        let what = if req {
            "required property added"
        } else {
            "optional property added"
        };
        sink.push(
            Kind::Added,
            sev,
            Rust::Breaking,
            &format!("{path}.{name}"),
            format!("{what} ({})", type_sig(cprop)),
        );
    }
}

fn params(doc: &Doc, op: &Value) -> BTreeMap<String, Value> {
    op.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| doc.deref(p))
        .map(|p| {
            (
                format!(
                    "{}:{}",
                    text(p, "in").trim_matches('"'),
                    p.get("name").and_then(Value::as_str).unwrap_or("")
                ),
                p.clone(),
            )
        })
        .collect()
}

fn is_success(status: &str) -> bool {
    matches!(status.as_bytes().first(), Some(b'1' | b'2' | b'3'))
}

/// The schema of a response or request body (JSON first, else the first media type).
fn body_schema<'a>(doc: &'a Doc, v: &'a Value) -> Option<&'a Value> {
    let content = doc.deref(v).get("content").and_then(Value::as_object)?;
    content
        .get("application/json")
        .or_else(|| content.values().next())
        .and_then(|m| m.get("schema"))
}

/// Every difference between two OpenAPI documents.
pub fn diff(base: &str, current: &str) -> Result<Vec<Change>> {
    let (b, c) = (
        Doc::parse(base).context("the base openapi.yaml")?,
        Doc::parse(current).context("the current openapi.yaml")?,
    );
    let mut sink = Sink(Vec::new());
    let (bops, cops) = (b.operations(), c.operations());
    let generated = |op: &Value| !op.get(WEBSOCKET_EXTENSION).and_then(Value::as_bool).unwrap_or(false);
    for (key, bop) in &bops {
        let path = format!("{} {}", key.0, key.1);
        let Some(cop) = cops.get(key) else {
            let rust = if generated(bop) { Rust::Breaking } else { Rust::None };
            sink.push(Kind::Removed, Severity::Breaking, rust, &path, "operation removed");
            continue;
        };
        let gen = generated(bop) && generated(cop);
        let rust_if = |r: Rust| if gen { r } else { Rust::None };
        if generated(bop) != generated(cop) {
            let r = if generated(bop) { Rust::Breaking } else { Rust::Additive };
            sink.push(
                Kind::Changed,
                Severity::None,
                r,
                &path,
                "client method generation changed (x-coder-websocket)",
            );
        }
        if bop.get("operationId") != cop.get("operationId") {
            sink.push(
                Kind::Changed,
                Severity::None,
                rust_if(Rust::Breaking),
                &path,
                format!(
                    "operationId {} → {} (the client method is renamed)",
                    text(bop, "operationId"),
                    text(cop, "operationId")
                ),
            );
        }
        for key in ["summary", "description", "deprecated"] {
            if bop.get(key) != cop.get(key) {
                sink.push(
                    Kind::Changed,
                    Severity::None,
                    Rust::None,
                    &path,
                    format!("{key} changed"),
                );
            }
        }
        // Parameters.
        let (bp, cp) = (params(&b, bop), params(&c, cop));
        for (name, bparam) in &bp {
            let ppath = format!("{path} {name}");
            let Some(cparam) = cp.get(name) else {
                sink.push(
                    Kind::Removed,
                    Severity::Breaking,
                    rust_if(Rust::Breaking),
                    &ppath,
                    "parameter removed",
                );
                continue;
            };
            let breq = bparam.get("required").and_then(Value::as_bool).unwrap_or(false);
            let creq = cparam.get("required").and_then(Value::as_bool).unwrap_or(false);
            if breq != creq {
                let sev = if creq { Severity::Breaking } else { Severity::Compatible };
                let what = if creq {
                    "parameter became required"
                } else {
                    "parameter became optional"
                };
                // Positional: Option<T> ↔ T.
                sink.push(Kind::Changed, sev, rust_if(Rust::Breaking), &ppath, what);
            }
            let (bs, cs) = (
                bparam.get("schema").cloned().unwrap_or_default(),
                cparam.get("schema").cloned().unwrap_or_default(),
            );
            let mut inner = Sink(Vec::new());
            compare_schema(
                &mut inner,
                &ppath,
                &bs,
                &cs,
                Dir {
                    request: true,
                    response: false,
                },
            );
            for mut ch in inner.0 {
                if !gen {
                    ch.rust = Rust::None;
                }
                sink.0.push(ch);
            }
        }
        for (name, cparam) in &cp {
            if bp.contains_key(name) {
                continue;
            }
            let req = cparam.get("required").and_then(Value::as_bool).unwrap_or(false);
            let (sev, what) = if req {
                (Severity::Breaking, "required parameter added")
            } else {
                (Severity::Additive, "optional parameter added")
            };
            // A new positional argument of the generated method.
            sink.push(
                Kind::Added,
                sev,
                rust_if(Rust::Breaking),
                &format!("{path} {name}"),
                what,
            );
        }
        // Request body.
        let (bb, cb) = (
            bop.get("requestBody").map(|v| b.deref(v)),
            cop.get("requestBody").map(|v| c.deref(v)),
        );
        match (bb, cb) {
            (None, None) => {}
            (Some(_), None) => sink.push(
                Kind::Removed,
                Severity::Breaking,
                rust_if(Rust::Breaking),
                &format!("{path} body"),
                "request body removed",
            ),
            (None, Some(body)) => {
                let req = body.get("required").and_then(Value::as_bool).unwrap_or(false);
                let sev = if req { Severity::Breaking } else { Severity::Additive };
                sink.push(
                    Kind::Added,
                    sev,
                    rust_if(Rust::Breaking),
                    &format!("{path} body"),
                    "request body added",
                );
            }
            (Some(bbody), Some(cbody)) => {
                let (bs, cs) = (
                    body_schema(&b, bbody).map(type_sig),
                    body_schema(&c, cbody).map(type_sig),
                );
                if bs != cs {
                    sink.push(
                        Kind::Changed,
                        Severity::Breaking,
                        rust_if(Rust::Breaking),
                        &format!("{path} body"),
                        format!("request body {} → {}", bs.unwrap_or_default(), cs.unwrap_or_default()),
                    );
                }
                let breq = bbody.get("required").and_then(Value::as_bool).unwrap_or(false);
                let creq = cbody.get("required").and_then(Value::as_bool).unwrap_or(false);
                if breq != creq {
                    let sev = if creq { Severity::Breaking } else { Severity::Compatible };
                    sink.push(
                        Kind::Changed,
                        sev,
                        Rust::None,
                        &format!("{path} body"),
                        format!("request body required {breq} → {creq}"),
                    );
                }
            }
        }
        // Responses.
        let responses = |op: &Value| -> BTreeMap<String, Value> {
            op.get("responses")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        };
        let (br, cr) = (responses(bop), responses(cop));
        let success =
            |m: &BTreeMap<String, Value>| m.keys().filter(|k| is_success(k)).cloned().collect::<BTreeSet<_>>();
        let (bsucc, csucc) = (success(&br), success(&cr));
        if bsucc != csucc {
            let show = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
            // The generated method's signature follows the body type, compared below.
            sink.push(
                Kind::Changed,
                Severity::Breaking,
                Rust::None,
                &path,
                format!("success status {} → {}", show(&bsucc), show(&csucc)),
            );
        }
        let (bsig, csig) = (
            bsucc.iter().find_map(|k| body_schema(&b, &br[k])).map(type_sig),
            csucc.iter().find_map(|k| body_schema(&c, &cr[k])).map(type_sig),
        );
        if bsig != csig {
            sink.push(
                Kind::Changed,
                Severity::Breaking,
                rust_if(Rust::Breaking),
                &format!("{path} response"),
                format!(
                    "response body {} → {}",
                    bsig.unwrap_or_else(|| "none".into()),
                    csig.unwrap_or_else(|| "none".into())
                ),
            );
        }
        for (status, bresp) in br.iter().filter(|(k, _)| !is_success(k)) {
            if let Some(cresp) = cr.get(status) {
                let (bs, cs) = (
                    body_schema(&b, bresp).map(type_sig),
                    body_schema(&c, cresp).map(type_sig),
                );
                if bs != cs {
                    sink.push(
                        Kind::Changed,
                        Severity::Breaking,
                        rust_if(Rust::Breaking),
                        &format!("{path} {status}"),
                        format!("error body {} → {}", bs.unwrap_or_default(), cs.unwrap_or_default()),
                    );
                }
            }
        }
    }
    for (key, cop) in &cops {
        if !bops.contains_key(key) {
            let rust = if generated(cop) { Rust::Additive } else { Rust::None };
            sink.push(
                Kind::Added,
                Severity::Additive,
                rust,
                &format!("{} {}", key.0, key.1),
                "operation added",
            );
        }
    }

    // Component schemas: the generated types.
    let (bdir, cdir) = (b.directions(), c.directions());
    for (name, bs) in &b.schemas {
        let path = format!("schemas.{name}");
        let Some(cs) = c.schemas.get(name) else {
            sink.push(
                Kind::Removed,
                Severity::Breaking,
                Rust::Breaking,
                &path,
                "schema removed",
            );
            continue;
        };
        let (bd, cd) = (
            bdir.get(name).copied().unwrap_or(Dir::BOTH),
            cdir.get(name).copied().unwrap_or(Dir::BOTH),
        );
        let dir = Dir {
            request: bd.request || cd.request,
            response: bd.response || cd.response,
        };
        compare_schema(&mut sink, &path, bs, cs, dir);
    }
    for name in c.schemas.keys().filter(|n| !b.schemas.contains_key(*n)) {
        sink.push(
            Kind::Added,
            Severity::Additive,
            Rust::Additive,
            &format!("schemas.{name}"),
            "schema added",
        );
    }
    Ok(sink.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> String {
        let root = crate::workspace_root().unwrap();
        std::fs::read_to_string(root.join("spec/openapi.yaml")).unwrap()
    }

    fn changes(edit: &str, with: &str) -> Vec<Change> {
        let base = spec();
        let edited = base.replacen(edit, with, 1);
        assert_ne!(edited, base, "the edit {edit:?} must apply");
        // The edited document must still generate (the rules are about real specs).
        crate::rest::generate_from_str(&edited).expect("the edited spec still generates");
        diff(&base, &edited).unwrap()
    }

    fn one(edit: &str, with: &str) -> Change {
        let c = changes(edit, with);
        assert_eq!(c.len(), 1, "one change expected: {c:#?}");
        c[0].clone()
    }

    #[test]
    fn unchanged_document_has_no_changes() {
        assert!(diff(&spec(), &spec()).unwrap().is_empty());
    }

    #[test]
    fn removed_operation_is_breaking() {
        let c = changes(
            "  /api/v2/workspaceagents/me/gitsshkey:\n    get:\n      operationId: get_git_ssh_key\n      summary: The Git SSH key pair of the workspace owner.\n      tags: [agents]\n      responses:\n        \"200\":\n          description: The key pair.\n          content:\n            application/json:\n              schema:\n                $ref: \"#/components/schemas/GitSSHKey\"\n        \"4XX\":\n          $ref: \"#/components/responses/Error\"\n        \"5XX\":\n          $ref: \"#/components/responses/Error\"\n",
            "",
        );
        let op = c
            .iter()
            .find(|c| c.path == "GET /api/v2/workspaceagents/me/gitsshkey")
            .unwrap();
        assert_eq!(
            (op.severity, op.rust, op.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "operation removed")
        );
    }

    #[test]
    fn new_operation_is_additive() {
        let c = one(
            "  /api/v2/workspaceagents/me/reinit:\n",
            "  /api/v2/workspaceagents/me/ping:\n    get:\n      operationId: get_ping\n      responses:\n        \"204\":\n          description: Pong.\n  /api/v2/workspaceagents/me/reinit:\n",
        );
        assert_eq!(
            (c.severity, c.rust, c.path.as_str()),
            (
                Severity::Additive,
                Rust::Additive,
                "GET /api/v2/workspaceagents/me/ping"
            )
        );
    }

    #[test]
    fn removed_parameter_is_breaking() {
        let c = one(
            "        - name: listen\n          in: query\n          required: false\n          description: Wait until a valid token exists instead of answering at once.\n          schema:\n            type: boolean\n",
            "",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "parameter removed")
        );
        assert_eq!(c.path, "GET /api/v2/workspaceagents/me/external-auth query:listen");
    }

    #[test]
    fn new_optional_parameter_is_additive_but_a_new_positional_argument() {
        let c = one(
            "        - name: listen\n",
            "        - name: wait_ms\n          in: query\n          required: false\n          schema:\n            type: integer\n        - name: listen\n",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Additive, Rust::Breaking, "optional parameter added")
        );
    }

    #[test]
    fn new_required_parameter_is_breaking() {
        let c = one(
            "        - name: listen\n",
            "        - name: wait_ms\n          in: query\n          required: true\n          schema:\n            type: integer\n        - name: listen\n",
        );
        assert_eq!(
            (c.severity, c.detail.as_str()),
            (Severity::Breaking, "required parameter added")
        );
    }

    #[test]
    fn parameter_on_a_websocket_operation_changes_no_rust() {
        let c = one(
            "        - name: role\n",
            "        - name: flavor\n          in: query\n          required: false\n          schema:\n            type: string\n        - name: role\n",
        );
        assert_eq!((c.severity, c.rust), (Severity::Additive, Rust::None));
    }

    #[test]
    fn response_property_removed_and_added() {
        let all = changes(
            "        display_name:\n          type: string\n          default: \"\"\n        icon:\n          type: string\n          default: \"\"\n    ExternalAuthResponse:",
            "        display_name:\n          type: string\n          default: \"\"\n        color:\n          type: string\n          default: \"\"\n    ExternalAuthResponse:",
        );
        let removed = all
            .iter()
            .find(|c| c.path == "schemas.WorkspaceAgentLogSource.icon")
            .unwrap();
        assert_eq!(
            (removed.severity, removed.rust, removed.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "property removed")
        );
        let added = all
            .iter()
            .find(|c| c.path == "schemas.WorkspaceAgentLogSource.color")
            .unwrap();
        // Response only: additive on the wire; a new pub field for Rust.
        assert_eq!((added.severity, added.rust), (Severity::Additive, Rust::Breaking));
        assert_eq!(all.len(), 2, "{all:#?}");
    }

    #[test]
    fn new_required_request_property_is_breaking_and_optional_one_additive() {
        let c = one(
            "    PostLogSourceRequest:\n      description: |\n        A log source to create. `id` is chosen by the agent, scoped to the\n        agent, so a fixed ID keeps one source across restarts.\n      type: object\n      required: [id]\n      properties:\n",
            "    PostLogSourceRequest:\n      description: |\n        A log source to create. `id` is chosen by the agent, scoped to the\n        agent, so a fixed ID keeps one source across restarts.\n      type: object\n      required: [id, color]\n      properties:\n        color:\n          type: string\n",
        );
        assert_eq!(
            (c.severity, c.rust, c.path.as_str()),
            (Severity::Breaking, Rust::Breaking, "schemas.PostLogSourceRequest.color")
        );
        let c = one(
            "      required: [id]\n      properties:\n        id:\n          type: string\n          format: uuid\n        display_name:\n          type: string\n          default: \"\"\n        icon:\n          type: string\n          default: \"\"\n    WorkspaceAgentLogSource:",
            "      required: [id]\n      properties:\n        id:\n          type: string\n          format: uuid\n        display_name:\n          type: string\n          default: \"\"\n        icon:\n          type: string\n          default: \"\"\n        color:\n          type: string\n    WorkspaceAgentLogSource:",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Additive, Rust::Breaking, "optional property added (string)")
        );
    }

    #[test]
    fn narrowed_type_is_breaking() {
        let c = one(
            "        report_interval:\n          description: When to send stats again, in nanoseconds (a Go time.Duration).\n          type: integer\n          format: int64\n",
            "        report_interval:\n          description: When to send stats again, in nanoseconds (a Go time.Duration).\n          type: integer\n          format: int32\n",
        );
        assert_eq!((c.severity, c.rust), (Severity::Breaking, Rust::Breaking));
        assert_eq!(c.detail, "type integer(int64) → integer(int32)");
    }

    #[test]
    fn narrowed_request_enum_is_breaking_and_widened_enum_is_additive() {
        // WorkspaceAppStatusState is sent (PatchAppStatus): a removed value breaks senders.
        let c = one(
            "enum: [working, idle, complete, failure]",
            "enum: [working, idle, complete]",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "enum value failure removed")
        );
        let c = one(
            "enum: [working, idle, complete, failure]",
            "enum: [working, idle, complete, failure, paused]",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Additive, Rust::Breaking, "enum value paused added")
        );
    }

    #[test]
    fn changed_success_status_is_breaking() {
        let c = one(
            "        \"201\":\n          description: The log source.",
            "        \"200\":\n          description: The log source.",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Breaking, Rust::None, "success status 201 → 200")
        );
    }

    #[test]
    fn response_property_becoming_optional_is_breaking_for_readers() {
        let c = one("      required: [session_token]\n", "");
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "property became optional")
        );
    }

    #[test]
    fn description_only_change_is_none() {
        let c = one(
            "description: The Git SSH key pair of the workspace owner.",
            "description: The owner's Git SSH key pair.",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::None, Rust::None, "description changed")
        );
    }

    #[test]
    fn new_schema_is_additive_and_removed_unused_schema_breaking() {
        let c = one(
            "    LogLevel:\n",
            "    Color:\n      type: string\n      enum: [red]\n    LogLevel:\n",
        );
        assert_eq!(
            (c.severity, c.rust, c.path.as_str()),
            (Severity::Additive, Rust::Additive, "schemas.Color")
        );
        // StatsResponse is used by no operation: its type still goes away.
        let c = one(
            "    StatsResponse:\n      type: object\n      properties:\n        report_interval:\n          description: When to send stats again, in nanoseconds (a Go time.Duration).\n          type: integer\n          format: int64\n          default: 0\n",
            "",
        );
        assert_eq!(
            (c.severity, c.rust, c.detail.as_str()),
            (Severity::Breaking, Rust::Breaking, "schema removed")
        );
    }
}
