//! `cargo xtask generate` turns `spec/` into `generated/`;
//! `cargo xtask check` fails, with a diff, when `generated/` is stale;
//! `cargo xtask diff` classifies the spec changes since the last release and
//! says which version they require; `cargo xtask upstream` lists what `spec/`
//! lacks compared with a Coder checkout.

mod diff;
mod drpc;
mod protos;
mod rest;
mod upstream;
mod versions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

const USAGE: &str = "usage:
  cargo xtask generate [--spec DIR] [--out DIR]
  cargo xtask check [--spec DIR] [--out DIR]
  cargo xtask diff [--base REF] [--format text|json] [--check-version] [--changelog] [--root DIR]
  cargo xtask upstream --coder DIR [--format text|json] [--spec DIR]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    match command.as_str() {
        "diff" => return run_diff(args),
        "upstream" => return upstream::run(args),
        "generate" | "check" => {}
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    let (mut spec, mut out) = (None, None);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--spec" => spec = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            _ => anyhow::bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    let spec = or_in_workspace(spec, "spec")?;
    let out = or_in_workspace(out, "generated")?;
    if command == "generate" {
        let files = generate_all(&spec)?;
        write_all(&out, &files)?;
        println!("generated {} files in {}", files.len(), out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let drift = check(&spec, &out)?;
    if drift.is_empty() {
        println!("{} is up to date with {}", out.display(), spec.display());
        Ok(ExitCode::SUCCESS)
    } else {
        for d in &drift {
            eprintln!("{d}");
        }
        eprintln!(
            "{} is stale: run `cargo xtask generate` and commit the result",
            out.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `dir` when given, else `name` in the workspace this run is about.
pub fn or_in_workspace(dir: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => Ok(workspace_root()?.join(name)),
    }
}

fn run_diff(mut args: impl Iterator<Item = String>) -> Result<ExitCode> {
    let mut root = None;
    let mut opts = diff::Options {
        root: PathBuf::new(),
        base: None,
        format: diff::Format::Text,
        check_version: false,
        changelog: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--base" => opts.base = Some(value()?),
            "--root" => root = Some(PathBuf::from(value()?)),
            "--format" => opts.format = parse_format(&value()?)?,
            "--check-version" => opts.check_version = true,
            "--changelog" => opts.changelog = true,
            _ => anyhow::bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    opts.root = match root {
        Some(r) => r,
        None => workspace_root()?,
    };
    Ok(if diff::run(&opts)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `text` or `json`.
pub fn parse_format(s: &str) -> Result<diff::Format> {
    match s {
        "text" => Ok(diff::Format::Text),
        "json" => Ok(diff::Format::Json),
        _ => anyhow::bail!("--format must be text or json, not {s:?}"),
    }
}

/// The checkout this run is about, found at run time.
///
/// Never a path compiled into the binary: checkouts that share one
/// `CARGO_TARGET_DIR` share this binary too (cargo reuses it when the xtask
/// sources look unchanged), so a compiled-in path would make `check` in one
/// checkout judge another and `generate` write into another.
///
/// In order: `CARGO_MANIFEST_DIR` as `cargo run` (so `cargo xtask`) sets it for
/// the process, when it names this xtask package; else the workspace cargo
/// finds from the current directory (`cargo locate-project --workspace`).
/// Either way the directory must hold `xtask/Cargo.toml` of package `xtask`.
pub fn workspace_root() -> Result<PathBuf> {
    let mut tried = Vec::new();
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            match dir.parent() {
                Some(root) if is_our_workspace(root) => return Ok(root.to_path_buf()),
                _ => tried.push(format!(
                    "CARGO_MANIFEST_DIR={} is not the xtask package of a workspace",
                    dir.display()
                )),
            }
        }
        None => tried.push("CARGO_MANIFEST_DIR is not set (not run by `cargo run`)".to_owned()),
    }
    match locate_workspace() {
        Ok(root) if is_our_workspace(&root) => return Ok(root),
        Ok(root) => tried.push(format!(
            "cargo locate-project --workspace found {}, which has no xtask package",
            root.display()
        )),
        Err(e) => tried.push(format!("cargo locate-project --workspace: {e:#}")),
    }
    anyhow::bail!(
        "cannot tell which checkout to work on; run `cargo xtask ...` inside one (or pass the directories as flags):\n  {}",
        tried.join("\n  ")
    )
}

/// The workspace root cargo finds from the current directory.
fn locate_workspace() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .stdin(std::process::Stdio::null())
        .output()
        .context("run cargo")?;
    if !out.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let manifest = PathBuf::from(String::from_utf8(out.stdout).context("non-UTF-8 path")?.trim());
    manifest
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent", manifest.display()))
}

/// `root/xtask/Cargo.toml` is the manifest of package `xtask`.
fn is_our_workspace(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(root.join("xtask/Cargo.toml")) else {
        return false;
    };
    toml::from_str::<toml::Table>(&text).is_ok_and(|t| {
        t.get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            == Some("xtask")
    })
}

/// Everything `generate` would write: file name → contents.
pub fn generate_all(spec_dir: &Path) -> Result<BTreeMap<String, String>> {
    let manifest = versions::load(spec_dir)?;
    let fds = protos::compile(spec_dir, &manifest)?;
    let proto_sources: Vec<String> = manifest
        .services
        .values()
        .map(|s| format!("spec/proto/{}", s.proto))
        .collect();

    let mut files = BTreeMap::new();
    for (name, text) in protos::generate(&fds, &manifest)? {
        files.insert(name, with_header(&text, &proto_sources.join(", ")));
    }
    for (key, spec) in &manifest.services {
        let tokens = drpc::generate_service(&fds, &manifest, key)?;
        let sources = format!("spec/proto/{}, spec/versions.toml", spec.proto);
        files.insert(format!("drpc_{key}.rs"), with_header(&format_tokens(tokens)?, &sources));
    }
    files.insert(
        "versions.rs".to_owned(),
        with_header(
            &format_tokens(drpc::generate_versions(&manifest)?)?,
            "spec/versions.toml",
        ),
    );
    files.insert(
        "rest.rs".to_owned(),
        with_header(&rest::generate(spec_dir)?, "spec/openapi.yaml"),
    );
    Ok(files)
}

fn format_tokens(tokens: proc_macro2::TokenStream) -> Result<String> {
    let file: syn::File = syn::parse2(tokens).context("generated code does not parse")?;
    Ok(prettyplease::unparse(&file))
}

fn with_header(body: &str, sources: &str) -> String {
    format!(
        "// @generated by `cargo xtask generate` from {sources}.\n\
         // Do not edit: change spec/ and run `cargo xtask generate` (`cargo xtask check` fails while this is stale).\n\n{body}"
    )
}

fn write_all(out: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    for name in stale_files(out, files)? {
        std::fs::remove_file(out.join(&name)).with_context(|| format!("remove stale {name}"))?;
    }
    for (name, text) in files {
        let path = out.join(name);
        // Leave untouched files alone so their mtime does not trigger rebuilds.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        }
    }
    Ok(())
}

/// `.rs` files in `out` that generation would not produce.
fn stale_files(out: &Path, files: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(stale);
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") && !files.contains_key(&name) {
            stale.push(name);
        }
    }
    stale.sort();
    Ok(stale)
}

/// Regenerates in memory and describes every difference from `out`.
pub fn check(spec_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let files = generate_all(spec_dir)?;
    let mut drift = Vec::new();
    for (name, want) in &files {
        let path = out.join(name);
        match std::fs::read_to_string(&path) {
            Err(_) => drift.push(format!("missing: generated/{name}")),
            Ok(have) if &have != want => {
                let diff = similar::TextDiff::from_lines(&have, want);
                let text = diff
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("generated/{name}"), &format!("spec → {name}"))
                    .to_string();
                drift.push(format!("stale: generated/{name}\n{text}"));
            }
            Ok(_) => {}
        }
    }
    for name in stale_files(out, &files)? {
        drift.push(format!("not produced by spec/: generated/{name}"));
    }
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn committed_generated_code_matches_spec() {
        let root = workspace_root().unwrap();
        let drift = check(&root.join("spec"), &root.join("generated")).unwrap();
        assert!(
            drift.is_empty(),
            "generated/ is stale; run `cargo xtask generate`:\n{}",
            drift.join("\n")
        );
    }

    #[test]
    fn generation_is_deterministic() {
        let spec = workspace_root().unwrap().join("spec");
        assert_eq!(generate_all(&spec).unwrap(), generate_all(&spec).unwrap());
    }

    #[test]
    fn one_line_proto_edit_is_reported_as_drift() {
        let root = workspace_root().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&root.join("spec"), tmp.path());
        let proto = tmp.path().join("proto/agent.proto");
        let text = std::fs::read_to_string(&proto).unwrap();
        let edited = text.replacen("string agent_name = 15;", "string agent_name = 20;", 1);
        assert_ne!(text, edited, "the edit must apply");
        std::fs::write(&proto, edited).unwrap();
        let drift = check(tmp.path(), &root.join("generated")).unwrap();
        assert!(
            drift.iter().any(|d| d.starts_with("stale: generated/proto_agent.rs")),
            "{drift:?}"
        );
        assert!(
            drift.iter().any(|d| d.contains("tag = \"20\"")),
            "the diff shows the change"
        );
    }

    #[test]
    fn rpc_missing_from_version_manifest_is_refused() {
        let root = workspace_root().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&root.join("spec"), tmp.path());
        let manifest = tmp.path().join("versions.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            text.replacen("agent = [\"UpdateAppStatus\"]", "agent = []", 1),
        )
        .unwrap();
        let err = generate_all(tmp.path()).unwrap_err();
        assert!(format!("{err:#}").contains("UpdateAppStatus"), "{err:#}");
    }

    #[test]
    fn rpc_listed_but_not_in_proto_is_refused() {
        let root = workspace_root().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&root.join("spec"), tmp.path());
        let manifest = tmp.path().join("versions.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            text.replacen(
                "agent = [\"UpdateAppStatus\"]",
                "agent = [\"UpdateAppStatus\", \"Teleport\"]",
                1,
            ),
        )
        .unwrap();
        let err = generate_all(tmp.path()).unwrap_err();
        assert!(format!("{err:#}").contains("Teleport"), "{err:#}");
    }
}
