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
//!   against `spec/openapi.yaml`;
//! - `codersdk/agentsdk/agentsdk.go`, upstream's Go client (the SDK's
//!   reference): the agent routes it calls, found by a small tolerant scanner
//!   ([`parse_agentsdk_go`]), since coderd's swagger skips some of them. A
//!   route it calls that neither swagger.json nor `spec/` has is reported as
//!   added; a `spec/` endpoint swagger.json lacks but the client calls is no
//!   difference. A checkout without the file skips this with a note.
//!
//! Each difference is a [`Change`] read as "what adopting upstream does":
//! `added` = upstream has it and `spec/` lacks it, `removed` = `spec/` has it
//! and upstream does not, `changed` = both have it, differently (the JSON
//! output says so in `kind` and in words in `direction`).
//!
//! `spec/upstream.toml` ([`Config`]) says where swagger.json cannot be taken
//! literally: which schema an event-stream endpoint sends as its events
//! (swag documents the event type as a JSON body), and the reviewed list of
//! places where upstream's swagger annotations disagree with upstream's own
//! handlers. A difference matching a `[[known]]` entry is shown as known and
//! does not count; an entry that matches nothing is shown as stale and counts,
//! so the list cannot rot unnoticed. `[[out-of-scope]]` entries work the same
//! way for something upstream has that this SDK deliberately does not adopt
//! (swagger.json is right there; we just do not call it), and they match only
//! `added` differences.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
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
/// See [`AGENT_PROTO`]; optional (its comparison is skipped with a note when absent).
pub const AGENTSDK_GO: &str = "codersdk/agentsdk/agentsdk.go";

/// The file in `spec/` holding the [`Config`].
pub const CONFIG_FILE: &str = "upstream.toml";

/// `spec/upstream.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Event-stream endpoint ("GET /api/v2/...") → the schema in
    /// `components/schemas` of spec/openapi.yaml that its `data` events carry.
    /// Upstream's 200 schema for the endpoint is compared with it, as events.
    #[serde(default)]
    pub event_streams: BTreeMap<String, String>,
    /// Reviewed upstream-swagger inaccuracies.
    #[serde(default)]
    pub known: Vec<Known>,
    /// Upstream facts this SDK deliberately does not adopt (only `added`
    /// differences match), with the same fields and checks as `known`.
    #[serde(default)]
    pub out_of_scope: Vec<Known>,
}

/// One place where upstream's swagger.json disagrees with upstream's handlers
/// (a `[[known]]` entry), or one upstream fact deliberately not adopted (an
/// `[[out-of-scope]]` entry), named exactly as the report names the
/// difference it causes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// As in the JSON report: `proto`, `versions` or `openapi`.
    pub area: Area,
    /// As in the report, e.g. `GET /api/v2/workspaceagents/me/rpc query:role`.
    pub path: String,
    /// As in the report, e.g. `parameter not upstream`.
    pub detail: String,
    /// Why swagger.json is wrong here and spec/ is right (`known`), or why
    /// the SDK leaves this out (`out-of-scope`).
    pub why: String,
    /// Where the handler shows it: `file:line @ commit`, one or more.
    pub evidence: Vec<String>,
}

impl Known {
    fn matches(&self, c: &Change) -> bool {
        self.area == c.area && self.path == c.path && self.detail == c.detail
    }
}

/// Reads `spec/upstream.toml` (absent = empty) and checks every entry is reviewable.
pub fn load_config(spec: &Path) -> Result<Config> {
    let path = spec.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let config: Config = toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let mut seen = BTreeSet::new();
    let entries =
        (config.known.iter().map(|k| ("known", k))).chain(config.out_of_scope.iter().map(|k| ("out-of-scope", k)));
    for (list, k) in entries {
        let name = format!("{list} entry {:?} {:?}", k.path, k.detail);
        if !seen.insert((k.area, &k.path, &k.detail)) {
            bail!(
                "{}: {name} is listed twice (in [[known]] and [[out-of-scope]] together)",
                path.display()
            );
        }
        if k.why.trim().is_empty() {
            bail!("{}: {name} has no `why`", path.display());
        }
        if k.evidence.is_empty() {
            bail!("{}: {name} has no `evidence`", path.display());
        }
        for e in &k.evidence {
            if !is_evidence(e) {
                bail!(
                    "{}: {name}: evidence {e:?} is not `file:line @ commit` (line or lines a-b, a commit of 7+ hex digits)",
                    path.display()
                );
            }
        }
    }
    Ok(config)
}

/// `file:line @ commit` or `file:a-b @ commit`, optionally followed by a remark.
fn is_evidence(e: &str) -> bool {
    let Some((place, rest)) = e.split_once(" @ ") else {
        return false;
    };
    let commit: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    let Some((file, lines)) = place.rsplit_once(':') else {
        return false;
    };
    !file.is_empty()
        && !lines.is_empty()
        && lines.split('-').all(|n| n.parse::<u32>().is_ok())
        && commit.len() >= 7
        && rest[commit.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_hexdigit())
}

/// The differences, sorted into those to act on and those already explained.
#[derive(Debug, Default)]
pub struct Report {
    /// Differences to act on.
    pub real: Vec<Change>,
    /// Differences a `[[known]]` entry explains.
    pub known: Vec<(Change, Known)>,
    /// Differences an `[[out-of-scope]]` entry explains.
    pub out_of_scope: Vec<(Change, Known)>,
    /// `[[known]]` and `[[out-of-scope]]` entries that match no difference.
    pub stale: Vec<Known>,
    /// What was not compared, and why (e.g. a checkout without agentsdk.go).
    pub notes: Vec<String>,
}

impl Report {
    /// Sorts `changes` against the known and out-of-scope lists (an
    /// out-of-scope entry matches only an `added` difference).
    pub fn new(changes: Vec<Change>, known: &[Known], out_of_scope: &[Known]) -> Self {
        let mut report = Report::default();
        let mut used_known = vec![false; known.len()];
        let mut used_out = vec![false; out_of_scope.len()];
        for c in changes {
            if let Some(i) = known.iter().position(|k| k.matches(&c)) {
                used_known[i] = true;
                report.known.push((c, known[i].clone()));
            } else if let Some(i) = out_of_scope.iter().position(|k| c.kind == Kind::Added && k.matches(&c)) {
                used_out[i] = true;
                report.out_of_scope.push((c, out_of_scope[i].clone()));
            } else {
                report.real.push(c);
            }
        }
        let unused = |list: &[Known], used: Vec<bool>| -> Vec<Known> {
            list.iter()
                .zip(used)
                .filter(|(_, u)| !u)
                .map(|(k, _)| k.clone())
                .collect()
        };
        report.stale = unused(known, used_known);
        report.stale.extend(unused(out_of_scope, used_out));
        report
    }

    /// Nothing to act on: no real difference and no stale entry.
    pub fn is_clean(&self) -> bool {
        self.real.is_empty() && self.stale.is_empty()
    }

    /// The JSON report.
    pub fn json(&self, coder: &Path) -> Value {
        let item = |c: &Change, k: Option<&Known>| {
            let mut v = serde_json::to_value(c).expect("a Change serializes");
            let o = v.as_object_mut().expect("an object");
            o.insert("kind".into(), serde_json::to_value(c.kind).expect("a Kind serializes"));
            o.insert("direction".into(), direction(c.kind).into());
            if let Some(k) = k {
                o.insert("why".into(), k.why.clone().into());
                o.insert("evidence".into(), k.evidence.clone().into());
            }
            v
        };
        serde_json::json!({
            "coder": coder.display().to_string(),
            "changes": self.real.iter().map(|c| item(c, None)).collect::<Vec<_>>(),
            "known": self.known.iter().map(|(c, k)| item(c, Some(k))).collect::<Vec<_>>(),
            "out_of_scope": self.out_of_scope.iter().map(|(c, k)| item(c, Some(k))).collect::<Vec<_>>(),
            "stale": self.stale,
            "notes": self.notes,
            "counts": {
                "real": self.real.len(),
                "known": self.known.len(),
                "out_of_scope": self.out_of_scope.len(),
                "stale": self.stale.len(),
            },
        })
    }
}

/// Which side has what, in words.
pub fn direction(kind: Kind) -> &'static str {
    match kind {
        Kind::Added => "upstream has, spec/ lacks",
        Kind::Removed => "spec/ has, upstream lacks",
        Kind::Changed => "both have it, differently",
    }
}

fn area_name(area: Area) -> &'static str {
    match area {
        Area::Proto => "proto",
        Area::Versions => "versions",
        Area::Openapi => "rest",
    }
}

/// `cargo xtask upstream` entry point: prints the checklist; exit 1 when
/// anything differs that `spec/upstream.toml` does not explain, or an entry
/// there is stale.
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
    let config = load_config(&spec)?;
    let compared = compare(&coder, &spec, &config)?;
    let mut report = Report::new(compared.changes, &config.known, &config.out_of_scope);
    report.notes = compared.notes;
    match format {
        diff::Format::Json => println!("{}", serde_json::to_string_pretty(&report.json(&coder))?),
        diff::Format::Text => print!("{}", checklist(&coder, &spec, &report)),
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The text checklist.
pub fn checklist(coder: &Path, spec: &Path, report: &Report) -> String {
    let mut out = format!("{} compared with {}:\n", coder.display(), spec.display());
    if report.real.is_empty() {
        out.push_str("  nothing differs\n");
    }
    for c in &report.real {
        out.push_str(&format!(
            "- [ ] {:<8} {}: {} ({})\n",
            area_name(c.area),
            c.path,
            c.detail,
            direction(c.kind)
        ));
    }
    let explained = [
        (
            &report.known,
            "Known inaccuracies of upstream's swagger.json",
            "[[known]]",
            "known",
        ),
        (
            &report.out_of_scope,
            "Upstream facts this SDK deliberately leaves out",
            "[[out-of-scope]]",
            "out-of-scope",
        ),
    ];
    for (list, title, table, label) in explained {
        if list.is_empty() {
            continue;
        }
        out.push_str(&format!("{title} (spec/{CONFIG_FILE} {table}), not counted:\n"));
        for (c, k) in list {
            out.push_str(&format!(
                "- {label} {:<8} {}: {} ({}); {} [{}]\n",
                area_name(c.area),
                c.path,
                c.detail,
                direction(c.kind),
                k.why.trim(),
                k.evidence.join("; ")
            ));
        }
    }
    for note in &report.notes {
        out.push_str(&format!("Note: {note}\n"));
    }
    if !report.stale.is_empty() {
        out.push_str(&format!(
            "Stale entries in spec/{CONFIG_FILE} (they match no difference: remove or update them):\n"
        ));
        for k in &report.stale {
            out.push_str(&format!(
                "- [ ] stale {:<8} {}: {}\n",
                area_name(k.area),
                k.path,
                k.detail
            ));
        }
    }
    out.push_str(&format!(
        "{} differences, {} known, {} out of scope, {} stale.",
        report.real.len(),
        report.known.len(),
        report.out_of_scope.len(),
        report.stale.len()
    ));
    if !report.is_clean() {
        out.push_str(" Edit spec/ (our own words, no upstream text), `cargo xtask generate`, then `cargo xtask diff`.");
    }
    out.push('\n');
    out
}

/// What [`compare`] found.
#[derive(Debug, Default)]
pub struct Compared {
    /// Every difference, sorted.
    pub changes: Vec<Change>,
    /// What could not be compared, and why.
    pub notes: Vec<String>,
}

/// Every difference between the checkout `coder` and `spec`.
pub fn compare(coder: &Path, spec: &Path, config: &Config) -> Result<Compared> {
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
    let mut notes = Vec::new();
    let client = match std::fs::read_to_string(coder.join(AGENTSDK_GO)) {
        Ok(text) => {
            let routes = parse_agentsdk_go(&text);
            if !routes.iter().any(|(_, p)| is_agent_endpoint(p)) {
                // More likely the client changed shape than lost every route.
                notes.push(format!(
                    "{AGENTSDK_GO}: the scanner found no agent route in it; its calls were not compared"
                ));
            }
            Some(routes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notes.push(format!(
                "{AGENTSDK_GO} is missing: the routes upstream's Go client calls were not compared"
            ));
            None
        }
        Err(e) => return Err(e).with_context(|| format!("read {AGENTSDK_GO}")),
    };
    changes.extend(compare_rest(
        &openapi,
        &swagger,
        &config.event_streams,
        client.as_ref(),
    )?);
    changes.sort_by(|a, b| (a.area, &a.path, &a.detail).cmp(&(b.area, &b.path, &b.detail)));
    Ok(Compared { changes, notes })
}

/// A rough Go token: enough to follow string literals into request calls.
#[derive(Debug, PartialEq)]
enum GoToken {
    /// An identifier or selector, dots included (`http.MethodGet`, `rpcURL.String`).
    Ident(String),
    /// An interpreted or raw string literal's contents (escapes left as written).
    Str(String),
    /// `:=`, `=`, `==`, `(`, `,`, ...
    Punct(String),
    /// A line break (statements end there, near enough).
    Newline,
}

/// Splits Go source into [`GoToken`]s, dropping comments; never fails (an
/// unterminated literal or comment runs to the end).
fn go_tokens(text: &str) -> Vec<GoToken> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push(GoToken::Newline),
            c if c.is_whitespace() => {}
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push(GoToken::Newline);
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' | '`' => {
                let mut s = String::new();
                while let Some(d) = chars.next() {
                    if d == c {
                        break;
                    }
                    if d == '\\' && c == '"' {
                        s.push(d);
                        if let Some(e) = chars.next() {
                            s.push(e);
                        }
                        continue;
                    }
                    s.push(d);
                }
                out.push(GoToken::Str(s));
            }
            '\'' => {
                // A rune literal: skip it so a '"' rune does not open a string.
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == '\'' && !escaped {
                        break;
                    }
                    escaped = d == '\\' && !escaped;
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut s = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' || d == '.' {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(GoToken::Ident(s));
            }
            c => {
                let mut s = String::from(c);
                if ":=!<>+-*/%&|^".contains(c) && chars.peek() == Some(&'=') {
                    s.push('=');
                    chars.next();
                }
                out.push(GoToken::Punct(s));
            }
        }
    }
    out
}

/// The `(METHOD, path)` of every `/api/v2/` route upstream's Go client calls
/// in agentsdk.go, query strings stripped. Not a Go parser: it follows
/// `http.MethodX, ARG` (as in `c.SDK.Request(ctx, http.MethodPost, "/api/v2/...", nil)`
/// or `http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)`) and
/// `websocket.Dial(ctx, ARG` (a GET), where ARG is a string literal or a
/// variable last assigned from a statement holding one
/// (`reqURL := "/api/v2/...?" + q.Encode()`, `u, err := c.SDK.URL.Parse("/api/v2/...")`).
pub fn parse_agentsdk_go(text: &str) -> BTreeSet<(String, String)> {
    let tokens = go_tokens(text);
    let route = |s: &str| -> Option<String> {
        s.starts_with("/api/v2/")
            .then(|| s.split(['?', '#']).next().unwrap_or(s).to_owned())
    };
    let mut bound: BTreeMap<String, String> = BTreeMap::new();
    let mut routes = BTreeSet::new();
    let mut line_start = 0;
    // The argument at `i` (newlines skipped): a literal or a bound variable.
    let arg = |i: usize, bound: &BTreeMap<String, String>| -> Option<String> {
        match tokens[i..].iter().find(|t| **t != GoToken::Newline)? {
            GoToken::Str(s) => route(s),
            GoToken::Ident(v) => bound.get(v.strip_suffix(".String").unwrap_or(v)).cloned(),
            _ => None,
        }
    };
    let next_after_comma = |i: usize| -> Option<usize> {
        let j = i + tokens[i..].iter().position(|t| *t != GoToken::Newline)?;
        (tokens[j] == GoToken::Punct(",".into())).then_some(j + 1)
    };
    for (i, t) in tokens.iter().enumerate() {
        match t {
            GoToken::Newline => line_start = i + 1,
            GoToken::Punct(p) if p == ":=" || p == "=" => {
                // NAME[, NAME...] := ... "/api/v2/..." ... on one line, and no
                // request call in between (that is a call, not a URL).
                let lhs = &tokens[line_start..i];
                let names_only = lhs.iter().enumerate().all(|(k, t)| match t {
                    GoToken::Ident(_) => k % 2 == 0,
                    GoToken::Punct(c) => k % 2 == 1 && c == ",",
                    _ => false,
                });
                let Some(GoToken::Ident(name)) = lhs.first().filter(|_| names_only) else {
                    continue;
                };
                let rhs = tokens[i + 1..].iter().take_while(|t| **t != GoToken::Newline);
                for t in rhs {
                    match t {
                        GoToken::Ident(m) if m.starts_with("http.Method") => break,
                        GoToken::Str(s) => {
                            if let Some(r) = route(s) {
                                bound.insert(name.clone(), r);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            GoToken::Ident(m) if m.starts_with("http.Method") && m.len() > "http.Method".len() => {
                let method = m["http.Method".len()..].to_uppercase();
                if let Some(r) = next_after_comma(i + 1).and_then(|j| arg(j, &bound)) {
                    routes.insert((method, r));
                }
            }
            GoToken::Ident(d) if d == "websocket.Dial" => {
                // websocket.Dial(ctx, URL, ...): the URL is the second argument.
                let comma = tokens[i + 1..]
                    .iter()
                    .take(4)
                    .position(|t| *t == GoToken::Punct(",".into()));
                if let Some(r) = comma.and_then(|k| arg(i + 2 + k, &bound)) {
                    routes.insert(("GET".to_owned(), r));
                }
            }
            _ => {}
        }
    }
    routes
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

impl RestDoc<'_> {
    /// An OpenAPI 3 operation whose success response is `text/event-stream`.
    fn is_event_stream(&self, op: &Value) -> bool {
        op.get("responses")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(code, _)| code.starts_with('2'))
            .any(|(_, r)| self.resolve(r).pointer("/content/text~1event-stream").is_some())
    }
}

fn is_agent_endpoint(path: &str) -> bool {
    path.starts_with("/api/v2/workspaceagents/me/")
        || (path.starts_with("/api/v2/workspaceagents/") && path.ends_with("-instance-identity"))
}

/// `client`: the routes upstream's Go client calls ([`parse_agentsdk_go`]),
/// `None` when the checkout has no agentsdk.go.
fn compare_rest(
    openapi: &Value,
    swagger: &Value,
    event_streams: &BTreeMap<String, String>,
    client: Option<&BTreeSet<(String, String)>>,
) -> Result<Vec<Change>> {
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
    for (op, schema) in event_streams {
        if !oops.keys().any(|(m, p)| format!("{m} {p}") == *op) {
            bail!("spec/{CONFIG_FILE}: event stream {op:?} is not an operation of spec/openapi.yaml");
        }
        if openapi.pointer(&format!("/components/schemas/{schema}")).is_none() {
            bail!("spec/{CONFIG_FILE}: event stream {op:?}: no schema {schema:?} in spec/openapi.yaml");
        }
    }
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
    // Routes swagger skips (`@x-apidocgen {"skip": true}`) but the Go client calls.
    let client_calls = |key: &(String, String)| client.is_some_and(|c| c.contains(key));
    for key in client.into_iter().flatten().filter(|k| is_agent_endpoint(&k.1)) {
        if !oops.contains_key(key) && !tops.contains_key(key) {
            push(
                Kind::Added,
                Severity::Additive,
                Rust::Additive,
                format!("{} {}", key.0, key.1),
                format!("endpoint missing from spec/openapi.yaml (called in {AGENTSDK_GO}; not in swagger.json)"),
            );
        }
    }
    for (key, oop) in &oops {
        let path = format!("{} {}", key.0, key.1);
        let Some(top) = tops.get(key) else {
            if client_calls(key) {
                // Upstream serves it (its own client calls it); swagger just skips it.
                continue;
            }
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
        if let Some(event) = event_streams.get(&path) {
            // swag documents an event stream's event type as if it were the
            // body; compare it with the schema our events carry.
            let ref_ = serde_json::json!({ "$ref": format!("#/components/schemas/{event}") });
            compare_props(
                "event",
                props(&ours, Some(&ref_), "event"),
                props(&theirs, tschema, "event"),
            );
        } else if ours.is_event_stream(oop) {
            push(
                Kind::Changed,
                Severity::None,
                Rust::None,
                path.clone(),
                format!("text/event-stream response with no event schema in spec/{CONFIG_FILE} [event-streams]; its events are not compared"),
            );
        } else {
            compare_props(
                "response",
                props(&ours, oschema, "response"),
                props(&theirs, tschema, "response"),
            );
        }
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
        let deprecated = |op: &Value| op.get("deprecated").and_then(Value::as_bool).unwrap_or(false);
        if deprecated(oop) != deprecated(top) {
            push(
                Kind::Changed,
                Severity::None,
                Rust::None,
                path.clone(),
                format!("deprecated: spec {}, upstream {}", deprecated(oop), deprecated(top)),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(entry: &str) -> Result<Config> {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(CONFIG_FILE), entry).unwrap();
        load_config(tmp.path())
    }

    const ENTRY: &str = "[[known]]\narea = \"openapi\"\npath = \"GET /x query:a\"\ndetail = \"parameter not upstream\"\nwhy = \"the handler reads it\"\n";

    #[test]
    fn known_entries_need_a_reason_and_file_line_at_commit_evidence() {
        let ok = format!("{ENTRY}evidence = [\"coderd/x.go:12-14 @ f96338110b61 (remark)\"]\n");
        assert_eq!(config_with(&ok).unwrap().known.len(), 1);
        for bad in [
            format!("{ENTRY}evidence = []\n"),
            format!("{ENTRY}evidence = [\"coderd/x.go @ f96338110b61\"]\n"),
            format!("{ENTRY}evidence = [\"coderd/x.go:12\"]\n"),
            format!("{ENTRY}evidence = [\"coderd/x.go:12 @ main\"]\n"),
            format!("{ok}{ok}"),
            ok.replace("the handler reads it", " "),
            ok.replace("area = \"openapi\"", "area = \"rest\""),
            format!("{ok}typo = 1\n"),
        ] {
            assert!(config_with(&bad).is_err(), "accepted:\n{bad}");
        }
        assert!(
            load_config(Path::new("/nonexistent")).unwrap().known.is_empty(),
            "no file, no entries"
        );
    }

    #[test]
    fn committed_upstream_toml_loads_and_names_event_streams_of_the_spec() {
        let spec = crate::workspace_root().unwrap().join("spec");
        let config = load_config(&spec).unwrap();
        assert!(!config.known.is_empty());
        let openapi: Value =
            serde_yaml::from_str(&std::fs::read_to_string(spec.join(crate::rest::SPEC_FILE)).unwrap()).unwrap();
        let empty = serde_json::json!({"swagger": "2.0", "paths": {}});
        compare_rest(&openapi, &empty, &config.event_streams, None).unwrap();
        let bad = BTreeMap::from([("GET /nowhere".to_owned(), "ReinitializationEvent".to_owned())]);
        assert!(compare_rest(&openapi, &empty, &bad, None).is_err());
    }

    #[test]
    fn report_sets_known_changes_apart_and_lists_unmatched_entries_as_stale() {
        let change = |path: &str| {
            Change::new(
                Area::Openapi,
                Kind::Removed,
                Severity::Breaking,
                Rust::Breaking,
                path,
                "parameter not upstream",
            )
        };
        let known = |path: &str| Known {
            area: Area::Openapi,
            path: path.into(),
            detail: "parameter not upstream".into(),
            why: "w".into(),
            evidence: vec!["f.go:1 @ abcdef0".into()],
        };
        let report = Report::new(vec![change("A"), change("B")], &[known("B"), known("C")], &[]);
        assert_eq!(report.real, [change("A")]);
        assert_eq!(report.known, [(change("B"), known("B"))]);
        assert_eq!(report.stale, [known("C")]);
        assert!(!report.is_clean());
        assert!(Report::new(vec![change("B")], &[known("B")], &[]).is_clean());
    }

    #[test]
    fn out_of_scope_entries_match_only_what_upstream_adds_and_go_stale_otherwise() {
        let change = |kind: Kind, path: &str| {
            Change::new(
                Area::Openapi,
                kind,
                Severity::Additive,
                Rust::Additive,
                path,
                "endpoint missing from spec/openapi.yaml",
            )
        };
        let entry = |path: &str| Known {
            area: Area::Openapi,
            path: path.into(),
            detail: "endpoint missing from spec/openapi.yaml".into(),
            why: "legacy alias".into(),
            evidence: vec!["f.go:1 @ abcdef0".into()],
        };
        let added = change(Kind::Added, "GET /old");
        let removed = change(Kind::Removed, "GET /ours");
        let report = Report::new(
            vec![added.clone(), removed.clone()],
            &[],
            &[entry("GET /old"), entry("GET /ours")],
        );
        assert_eq!(report.out_of_scope, [(added.clone(), entry("GET /old"))]);
        assert_eq!(report.real, [removed], "spec/ having more is never out of scope");
        assert_eq!(report.stale, [entry("GET /ours")]);
        assert!(Report::new(vec![added], &[], &[entry("GET /old")]).is_clean());
    }

    #[test]
    fn out_of_scope_entries_are_checked_like_known_ones_and_never_both() {
        let body = "area = \"openapi\"\npath = \"GET /old\"\ndetail = \"endpoint missing from spec/openapi.yaml\"\nwhy = \"legacy alias\"\nevidence = [\"coderd/x.go:5 @ f96338110b61\"]\n";
        let ok = format!("[[out-of-scope]]\n{body}");
        let config = config_with(&ok).unwrap();
        assert_eq!((config.known.len(), config.out_of_scope.len()), (0, 1));
        for bad in [
            ok.replace("why = \"legacy alias\"", "why = \"\""),
            ok.replace("coderd/x.go:5 @ f96338110b61", "coderd/x.go @ f96338110b61"),
            ok.replace("evidence = [\"coderd/x.go:5 @ f96338110b61\"]", "evidence = []"),
            format!("{ok}{ok}"),
            format!("{ok}[[known]]\n{body}"),
        ] {
            assert!(config_with(&bad).is_err(), "accepted:\n{bad}");
        }
    }

    #[test]
    fn agentsdk_go_scanner_follows_literals_and_url_variables_into_request_calls() {
        let go = r#"package agentsdk
// c.SDK.Request(ctx, http.MethodDelete, "/api/v2/workspaceagents/me/commented", nil)
func (c *Client) A(ctx context.Context) error {
	res, err := c.SDK.Request(ctx, http.MethodGet, "/api/v2/workspaceagents/me/direct", nil)
	/* c.SDK.Request(ctx, http.MethodPut, "/api/v2/workspaceagents/me/block", nil) */
	reqURL := "/api/v2/workspaceagents/me/query?" + q.Encode()
	res, err = c.SDK.Request(ctx, http.MethodGet, reqURL, nil)
	res, err = c.SDK.Request(ctx,
		http.MethodPost,
		"/api/v2/workspaceagents/me/wrapped",
		req,
	)
	u, err := c.SDK.URL.Parse("/api/v2/workspaceagents/me/ws")
	conn, res, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{})
	u, err = c.SDK.URL.Parse("/api/v2/workspaceagents/me/stream")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	q := '"'
	_, _ = c.SDK.Request(ctx, http.MethodPatch, fmt.Sprintf("/api/v2/x/%s", id), nil)
	_, _ = c.SDK.Request(ctx, http.MethodGet, "https://example.com/api/v2/other", nil)
	return nil
}
"#;
        let got: Vec<(String, String)> = parse_agentsdk_go(go).into_iter().collect();
        let want: Vec<(String, String)> = [
            ("GET", "/api/v2/workspaceagents/me/direct"),
            ("GET", "/api/v2/workspaceagents/me/query"),
            ("GET", "/api/v2/workspaceagents/me/stream"),
            ("GET", "/api/v2/workspaceagents/me/ws"),
            ("POST", "/api/v2/workspaceagents/me/wrapped"),
        ]
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
        assert_eq!(got, want, "comments, Sprintf paths and absolute URLs are not routes");
        assert!(parse_agentsdk_go("\"unterminated /api/v2/x").is_empty());
        assert!(parse_agentsdk_go("c.SDK.Request(ctx, http.MethodGet").is_empty());
    }

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
