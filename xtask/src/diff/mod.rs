//! `cargo xtask diff`: what a change of `spec/` does to the wire and to Rust users,
//! and which crate version it requires.
//!
//! Both sides are compiled, never compared as text: the protos become
//! `FileDescriptorSet`s (protox), `versions.toml` is parsed, `openapi.yaml` is
//! read as a document. Every difference becomes one [`Change`] with two
//! verdicts:
//! - `severity`, for peers on the wire (protos: `buf breaking` at its WIRE
//!   level; OpenAPI: oasdiff's breaking-change rules; versions: the table's
//!   promises);
//! - `rust`, for code that uses the generated types, as `cargo semver-checks`
//!   sees the generated code (prost and progenitor structs have only pub
//!   fields and are exhaustive, so a new field breaks struct literals; their
//!   enums are exhaustive, so a new variant breaks `match`).
//!
//! The version the crate needs follows from the worst of both (see [`Level`]
//! and [`required_version`]).
//!
//! The Rust column was checked against cargo-semver-checks 0.51 on the
//! generated code (one spec edit of each kind, `--baseline-rev` the commit
//! before): a new proto field or a new response property →
//! `constructible_struct_adds_field`; a new proto or OpenAPI enum value →
//! `enum_variant_added`; a new optional query parameter →
//! `method_parameter_count_changed`; a new newest API version →
//! `trait_added_supertrait` on `LatestClient` (the alias moved); a new RPC,
//! message or schema and a renumbered field → no lint (additive / none).

pub mod openapi;
pub mod proto;
pub mod versions;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The file, beside `Cargo.toml`, naming the commit of the last release.
pub const BASELINE_FILE: &str = ".release-baseline";

/// Which spec file a change comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// `spec/proto/*.proto`.
    Proto,
    /// `spec/versions.toml`.
    Versions,
    /// `spec/openapi.yaml`.
    Openapi,
}

/// What a change does to peers on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing observable (comments, descriptions).
    None,
    /// Same bytes, different names or an equivalent encoding.
    Compatible,
    /// Something new that old peers ignore.
    Additive,
    /// Old peers or old callers break.
    Breaking,
}

/// What a change does to Rust code using the generated API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rust {
    /// The generated API is unchanged.
    None,
    /// New items only (a minor change for cargo semver-checks).
    Additive,
    /// Some code that compiled before no longer compiles (a major change).
    Breaking,
}

/// For changelog sections: what happened to the element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A new element.
    Added,
    /// An element is gone.
    Removed,
    /// An element changed.
    Changed,
}

/// One classified difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The spec file.
    pub area: Area,
    /// On the wire.
    pub severity: Severity,
    /// For Rust users of the generated code.
    pub rust: Rust,
    /// The element, e.g. `coder.agent.v2.Manifest.motd_path`.
    pub path: String,
    /// What happened, e.g. `field removed`.
    pub detail: String,
    /// Changelog section.
    #[serde(skip)]
    pub kind: Kind,
}

impl Change {
    /// A change with its verdicts.
    pub fn new(
        area: Area,
        kind: Kind,
        severity: Severity,
        rust: Rust,
        path: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            area,
            severity,
            rust,
            path: path.into(),
            detail: detail.into(),
            kind,
        }
    }

    /// The version level this change needs: the worse of its two verdicts.
    pub fn level(&self) -> Level {
        let wire = match self.severity {
            Severity::None => Level::None,
            Severity::Compatible => Level::Patch,
            Severity::Additive => Level::Additive,
            Severity::Breaking => Level::Breaking,
        };
        let rust = match self.rust {
            Rust::None => Level::None,
            Rust::Additive => Level::Additive,
            Rust::Breaking => Level::Breaking,
        };
        wire.max(rust)
    }
}

/// How much a set of changes needs the version to move, in Cargo's semver terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No release needed.
    None,
    /// A fix-level change.
    Patch,
    /// Compatible additions.
    Additive,
    /// Incompatible changes.
    Breaking,
}

/// A `MAJOR.MINOR.PATCH[-PRE]` version (build metadata is dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release identifiers (empty for a release).
    pub pre: String,
}

impl Version {
    /// Parses `x.y.z` or `x.y.z-pre` (`+build` is ignored).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = s.split_once('-').unwrap_or((s, ""));
        let parts: Vec<&str> = core.split('.').collect();
        let [a, b, c] = parts.as_slice() else {
            bail!("version {s:?} is not MAJOR.MINOR.PATCH");
        };
        let num = |p: &str| {
            p.parse::<u64>()
                .with_context(|| format!("version {s:?}: {p:?} is not a number"))
        };
        Ok(Self {
            major: num(a)?,
            minor: num(b)?,
            patch: num(c)?,
            pre: pre.to_owned(),
        })
    }

    fn release(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: String::new(),
        }
    }

    fn cmp_pre(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                // Semver precedence: dot-separated identifiers, numeric ones compared as numbers.
                let (a, b): (Vec<&str>, Vec<&str>) = (self.pre.split('.').collect(), other.pre.split('.').collect());
                for (x, y) in a.iter().zip(&b) {
                    let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                        (Ok(x), Ok(y)) => x.cmp(&y),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => x.cmp(y),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| self.cmp_pre(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

/// The smallest version after `base` that Cargo's semver rules allow for `level`:
/// for `x.y.z` with x ≥ 1, breaking → (x+1).0.0, additive → x.(y+1).0, patch → x.y.(z+1);
/// for `0.y.z` (y ≥ 1), breaking → 0.(y+1).0, additive or patch → 0.y.(z+1);
/// for `0.0.z` every change is breaking → 0.0.(z+1).
/// A pre-release `base` counts as its release (the pre-release was the base's preview).
pub fn required_version(base: &Version, level: Level) -> Version {
    let (x, y, z) = (base.major, base.minor, base.patch);
    match level {
        Level::None => base.clone(),
        _ if x == 0 && y == 0 => Version::release(0, 0, z + 1),
        Level::Patch => Version::release(x, y, z + 1),
        Level::Additive if x == 0 => Version::release(0, y, z + 1),
        Level::Additive => Version::release(x, y + 1, 0),
        Level::Breaking if x == 0 => Version::release(0, y + 1, 0),
        Level::Breaking => Version::release(x + 1, 0, 0),
    }
}

/// Which component of the version changes from `base` to `required`.
pub fn bump_name(base: &Version, required: &Version) -> &'static str {
    if required.major != base.major {
        "major"
    } else if required.minor != base.minor {
        "minor"
    } else if required.patch != base.patch {
        "patch"
    } else {
        "none"
    }
}

/// Every change between two spec directories, in a stable order.
pub fn diff_specs(base: &Path, current: &Path) -> Result<Vec<Change>> {
    let base_manifest = crate::versions::load(base).context("the base spec")?;
    let cur_manifest = crate::versions::load(current).context("the current spec")?;
    let base_fds = crate::protos::compile(base, &base_manifest).context("the base spec")?;
    let cur_fds = crate::protos::compile(current, &cur_manifest).context("the current spec")?;
    let mut changes = proto::diff(&base_fds, &cur_fds, proto::Options { comments: true });
    changes.extend(versions::diff(&base_manifest, &cur_manifest));
    let read = |dir: &Path| -> Result<String> {
        let path = dir.join(crate::rest::SPEC_FILE);
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    };
    changes.extend(openapi::diff(&read(base)?, &read(current)?)?);
    changes.sort_by(|a, b| (a.area, &a.path, &a.detail).cmp(&(b.area, &b.path, &b.detail)));
    changes.dedup();
    Ok(changes)
}

/// The result of `cargo xtask diff`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The base as given (or found): a ref or a commit.
    pub base: String,
    /// The base's commit.
    pub base_commit: String,
    /// `Cargo.toml`'s version at the base.
    pub base_version: String,
    /// `Cargo.toml`'s version in the working tree.
    pub current_version: String,
    /// The smallest version the changes allow.
    pub required_version: String,
    /// The component of the base version that must move: none, patch, minor, major.
    pub bump: &'static str,
    /// Every change, most severe area first.
    pub changes: Vec<Change>,
}

impl Report {
    /// Builds the report for `changes` between two versions.
    pub fn new(
        base: String,
        base_commit: String,
        base_version: &Version,
        current: &Version,
        changes: Vec<Change>,
    ) -> Self {
        let level = changes.iter().map(Change::level).max().unwrap_or(Level::None);
        let required = required_version(base_version, level);
        Self {
            base,
            base_commit,
            base_version: base_version.to_string(),
            current_version: current.to_string(),
            required_version: required.to_string(),
            bump: bump_name(base_version, &required),
            changes,
        }
    }

    /// Whether `Cargo.toml`'s version is at least the required one.
    pub fn version_ok(&self) -> bool {
        match (
            Version::parse(&self.current_version),
            Version::parse(&self.required_version),
        ) {
            (Ok(cur), Ok(req)) => cur >= req,
            _ => false,
        }
    }

    /// The changes that force the required version (those at the top level).
    pub fn deciding_changes(&self) -> Vec<&Change> {
        let top = self.changes.iter().map(Change::level).max().unwrap_or(Level::None);
        self.changes
            .iter()
            .filter(|c| c.level() == top && top > Level::None)
            .collect()
    }

    /// A table for a person reading a PR.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let short = &self.base_commit[..self.base_commit.len().min(12)];
        out.push_str(&format!("spec/ changes since {} ({short}):\n", self.base));
        if self.changes.is_empty() {
            out.push_str("  no changes\n");
        } else {
            let headers = ["WIRE", "RUST", "AREA", "ELEMENT", "CHANGE"];
            let rows: Vec<[String; 5]> = self
                .changes
                .iter()
                .map(|c| {
                    [
                        label(&c.severity),
                        label(&c.rust),
                        label(&c.area),
                        c.path.clone(),
                        c.detail.clone(),
                    ]
                })
                .collect();
            let mut widths = headers.map(str::len);
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; 5]| {
                let mut s = String::from(" ");
                for (i, cell) in cells.iter().enumerate() {
                    if i == 4 {
                        s.push_str(&format!(" {cell}"));
                    } else {
                        s.push_str(&format!(" {cell:<w$}", w = widths[i]));
                    }
                }
                s.trim_end().to_owned() + "\n"
            };
            out.push_str(&line(headers));
            for row in &rows {
                out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
            }
        }
        out.push_str(&format!(
            "version: base {}, Cargo.toml {}, required {} (bump: {})\n",
            self.base_version, self.current_version, self.required_version, self.bump
        ));
        out
    }

    /// A draft "Unreleased" section for CHANGELOG.md (Keep a Changelog form).
    pub fn changelog(&self) -> String {
        let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for c in &self.changes {
            if c.level() == Level::None {
                continue;
            }
            let section = match c.kind {
                Kind::Added => "Added",
                Kind::Removed => "Removed",
                Kind::Changed => "Changed",
            };
            let mut tags = Vec::new();
            if c.severity == Severity::Breaking {
                tags.push("breaking on the wire");
            }
            if c.rust == Rust::Breaking {
                tags.push("breaking for Rust code");
            }
            let tag = if tags.is_empty() {
                String::new()
            } else {
                format!(" (**{}**)", tags.join(", "))
            };
            sections
                .entry(section)
                .or_default()
                .push(format!("- `{}`: {}{tag}.", c.path, c.detail));
        }
        let mut out = String::from("## [Unreleased]\n\n");
        out.push_str(&format!(
            "Spec changes since {} (version {}); this release must be at least **{}**.\n",
            self.base, self.base_version, self.required_version
        ));
        for name in ["Added", "Changed", "Removed"] {
            if let Some(lines) = sections.get(name) {
                out.push_str(&format!("\n### {name}\n\n"));
                for l in lines {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        if sections.is_empty() {
            out.push_str("\nNo API changes.\n");
        }
        out
    }
}

fn label<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Runs git in `root` and returns its trimmed stdout.
pub fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .with_context(|| format!("run git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The default base: the newest `v*` tag, else the commit in `.release-baseline`.
pub fn default_base(root: &Path) -> Result<String> {
    let tags = git(root, &["tag", "--list", "v*", "--sort=-v:refname"]).unwrap_or_default();
    if let Some(tag) = tags.lines().map(str::trim).find(|t| !t.is_empty()) {
        return Ok(tag.to_owned());
    }
    let path = root.join(BASELINE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no v* tag and no {} to name the last release", path.display()))?;
    let commit = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match commit {
        Some(c) => Ok(c.to_owned()),
        None => bail!(
            "{} is empty; it must hold the commit of the last release",
            path.display()
        ),
    }
}

/// Resolves `base` to a commit, with a clear error when the clone lacks it.
pub fn resolve_commit(root: &Path, base: &str) -> Result<String> {
    match git(
        root,
        &["rev-parse", "--verify", "--quiet", &format!("{base}^{{commit}}")],
    ) {
        Ok(c) if !c.is_empty() => Ok(c),
        _ => {
            let shallow = git(root, &["rev-parse", "--is-shallow-repository"]).unwrap_or_default() == "true";
            if shallow {
                bail!(
                    "the base {base} is not in this clone, which is shallow: run `git fetch --unshallow` \
                     (.ci/run does) or pass --base REF"
                )
            }
            bail!("the base {base} is not a commit of this repository (pass --base REF, or fix {BASELINE_FILE})")
        }
    }
}

/// Writes `spec/` and `Cargo.toml` as they are at `commit` into a new temporary directory.
pub fn checkout_spec(root: &Path, commit: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir().context("temp dir for the base spec")?;
    let listing = git(root, &["ls-tree", "-r", "--name-only", commit, "--", "spec"])?;
    if listing.is_empty() {
        bail!("{commit} has no spec/ directory");
    }
    for name in listing.lines() {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["show", &format!("{commit}:{name}")])
            .output()
            .with_context(|| format!("git show {commit}:{name}"))?;
        if !out.status.success() {
            bail!(
                "git show {commit}:{name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let path = tmp.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a file in spec/"))?;
        std::fs::write(&path, out.stdout).with_context(|| format!("write {}", path.display()))?;
    }
    let spec = tmp.path().join("spec");
    Ok((tmp, spec))
}

/// `[package].version` of a Cargo.toml text.
pub fn package_version(cargo_toml: &str) -> Result<Version> {
    let doc: toml::Table = toml::from_str(cargo_toml).context("parse Cargo.toml")?;
    let v = doc
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .context("Cargo.toml has no [package] version")?;
    Version::parse(v)
}

/// Output format of `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The table.
    Text,
    /// One JSON object.
    Json,
}

/// `cargo xtask diff` options.
#[derive(Debug)]
pub struct Options {
    /// The repository (workspace) root.
    pub root: PathBuf,
    /// The base ref; `None` = the last release.
    pub base: Option<String>,
    /// Output format.
    pub format: Format,
    /// Exit 1 when Cargo.toml's version is below the required one.
    pub check_version: bool,
    /// Print a changelog draft instead of the table.
    pub changelog: bool,
}

/// Runs `cargo xtask diff`; returns whether the command succeeded.
pub fn run(opts: &Options) -> Result<bool> {
    let root = &opts.root;
    let base = match &opts.base {
        Some(b) => b.clone(),
        None => default_base(root)?,
    };
    let commit = resolve_commit(root, &base)?;
    let (_tmp, base_spec) = checkout_spec(root, &commit)?;
    let base_version = package_version(&git(root, &["show", &format!("{commit}:Cargo.toml")])?)
        .with_context(|| format!("Cargo.toml at {base}"))?;
    let cur_toml = root.join("Cargo.toml");
    let current_version =
        package_version(&std::fs::read_to_string(&cur_toml).with_context(|| format!("read {}", cur_toml.display()))?)?;
    let changes = diff_specs(&base_spec, &root.join("spec"))?;
    let report = Report::new(base, commit, &base_version, &current_version, changes);
    if opts.changelog {
        print!("{}", report.changelog());
    } else {
        match opts.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Text => print!("{}", report.text()),
        }
    }
    if opts.check_version && !report.version_ok() {
        eprintln!(
            "xtask diff: Cargo.toml says {} but the spec changes since {} require at least {}, because of:",
            report.current_version, report.base, report.required_version
        );
        for c in report.deciding_changes() {
            eprintln!(
                "  {} ({} on the wire, {} for Rust): {}",
                c.path,
                label(&c.severity),
                label(&c.rust),
                c.detail
            );
        }
        return Ok(false);
    }
    if opts.check_version {
        eprintln!(
            "xtask diff: Cargo.toml's version {} satisfies the required {}",
            report.current_version, report.required_version
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn zero_y_versions_bump_minor_for_breaking_and_patch_for_additions() {
        assert_eq!(required_version(&v("0.1.0"), Level::Breaking), v("0.2.0"));
        assert_eq!(required_version(&v("0.1.3"), Level::Breaking), v("0.2.0"));
        assert_eq!(required_version(&v("0.1.3"), Level::Additive), v("0.1.4"));
        assert_eq!(required_version(&v("0.1.3"), Level::Patch), v("0.1.4"));
        assert_eq!(required_version(&v("0.1.3"), Level::None), v("0.1.3"));
        assert_eq!(bump_name(&v("0.1.3"), &v("0.2.0")), "minor");
        assert_eq!(bump_name(&v("0.1.3"), &v("0.1.4")), "patch");
    }

    #[test]
    fn x_y_versions_bump_major_for_breaking_and_minor_for_additions() {
        assert_eq!(required_version(&v("1.4.2"), Level::Breaking), v("2.0.0"));
        assert_eq!(required_version(&v("1.4.2"), Level::Additive), v("1.5.0"));
        assert_eq!(required_version(&v("1.4.2"), Level::Patch), v("1.4.3"));
        assert_eq!(required_version(&v("1.4.2"), Level::None), v("1.4.2"));
        assert_eq!(bump_name(&v("1.4.2"), &v("2.0.0")), "major");
        assert_eq!(bump_name(&v("1.4.2"), &v("1.5.0")), "minor");
    }

    #[test]
    fn zero_zero_versions_bump_patch_for_any_change() {
        assert_eq!(required_version(&v("0.0.7"), Level::Breaking), v("0.0.8"));
        assert_eq!(required_version(&v("0.0.7"), Level::Additive), v("0.0.8"));
        assert_eq!(required_version(&v("0.0.7"), Level::None), v("0.0.7"));
    }

    #[test]
    fn versions_order_as_semver_including_pre_releases() {
        assert!(v("0.2.0") > v("0.1.9"));
        assert!(v("0.2.0-rc.1") < v("0.2.0"));
        assert!(v("0.2.0-rc.2") > v("0.2.0-rc.1"));
        assert!(v("0.2.0-rc.10") > v("0.2.0-rc.9"));
        assert!(v("1.0.0+build.5") == v("1.0.0"));
        assert!(Version::parse("1.0").is_err());
        assert!(Version::parse("1.x.0").is_err());
    }

    #[test]
    fn a_change_needs_the_worse_of_its_wire_and_rust_verdicts() {
        let c = |s, r| Change::new(Area::Proto, Kind::Changed, s, r, "p", "d");
        assert_eq!(c(Severity::Compatible, Rust::Breaking).level(), Level::Breaking);
        assert_eq!(c(Severity::Breaking, Rust::None).level(), Level::Breaking);
        assert_eq!(c(Severity::Additive, Rust::Additive).level(), Level::Additive);
        assert_eq!(c(Severity::Compatible, Rust::None).level(), Level::Patch);
        assert_eq!(c(Severity::None, Rust::None).level(), Level::None);
    }

    #[test]
    fn check_version_fails_below_the_required_version_and_passes_at_or_above_it() {
        let change = Change::new(
            Area::Proto,
            Kind::Removed,
            Severity::Breaking,
            Rust::Breaking,
            "x",
            "field removed",
        );
        let r = Report::new("b".into(), "c".into(), &v("0.1.0"), &v("0.1.0"), vec![change.clone()]);
        assert_eq!(r.required_version, "0.2.0");
        assert_eq!(r.bump, "minor");
        assert!(!r.version_ok());
        assert_eq!(r.deciding_changes().len(), 1);
        let r = Report::new("b".into(), "c".into(), &v("0.1.0"), &v("0.2.0"), vec![change.clone()]);
        assert!(r.version_ok());
        let r = Report::new("b".into(), "c".into(), &v("0.1.0"), &v("0.3.0"), vec![change]);
        assert!(r.version_ok());
        let r = Report::new("b".into(), "c".into(), &v("0.1.0"), &v("0.1.0"), vec![]);
        assert_eq!((r.required_version.as_str(), r.bump), ("0.1.0", "none"));
        assert!(r.version_ok());
    }

    #[test]
    fn changelog_draft_sorts_changes_into_keep_a_changelog_sections() {
        let changes = vec![
            Change::new(
                Area::Proto,
                Kind::Added,
                Severity::Additive,
                Rust::Additive,
                "coder.agent.v2.Agent.Teleport",
                "RPC added",
            ),
            Change::new(
                Area::Proto,
                Kind::Removed,
                Severity::Breaking,
                Rust::Breaking,
                "coder.agent.v2.Manifest.motd_path",
                "field removed",
            ),
            Change::new(
                Area::Proto,
                Kind::Changed,
                Severity::None,
                Rust::None,
                "coder.agent.v2.Manifest",
                "comment changed",
            ),
        ];
        let r = Report::new("v0.1.0".into(), "c".into(), &v("0.1.0"), &v("0.1.0"), changes);
        let text = r.changelog();
        assert!(text.starts_with("## [Unreleased]\n"), "{text}");
        let added = text.find("### Added").unwrap();
        let removed = text.find("### Removed").unwrap();
        assert!(added < removed);
        assert!(
            text.contains("- `coder.agent.v2.Agent.Teleport`: RPC added.\n"),
            "{text}"
        );
        assert!(
            text.contains("motd_path`: field removed (**breaking on the wire, breaking for Rust code**)"),
            "{text}"
        );
        assert!(
            !text.contains("comment changed"),
            "comment-only changes stay out: {text}"
        );
        assert!(text.contains("at least **0.2.0**"), "{text}");
    }
}
