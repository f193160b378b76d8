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
    let root = workspace_root();
    match command.as_str() {
        "diff" => return run_diff(args, root),
        "upstream" => return upstream::run(args, &root),
        _ => {}
    }
    let mut spec = root.join("spec");
    let mut out = root.join("generated");
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--spec" => spec = PathBuf::from(value),
            "--out" => out = PathBuf::from(value),
            _ => anyhow::bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    match command.as_str() {
        "generate" => {
            let files = generate_all(&spec)?;
            write_all(&out, &files)?;
            println!("generated {} files in {}", files.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        "check" => {
            let drift = check(&spec, &out)?;
            if drift.is_empty() {
                println!("generated/ is up to date with spec/");
                Ok(ExitCode::SUCCESS)
            } else {
                for d in &drift {
                    eprintln!("{d}");
                }
                eprintln!("generated/ is stale: run `cargo xtask generate` and commit the result");
                Ok(ExitCode::FAILURE)
            }
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}

fn run_diff(mut args: impl Iterator<Item = String>, root: PathBuf) -> Result<ExitCode> {
    let mut opts = diff::Options {
        root,
        base: None,
        format: diff::Format::Text,
        check_version: false,
        changelog: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--base" => opts.base = Some(value()?),
            "--root" => opts.root = PathBuf::from(value()?),
            "--format" => opts.format = parse_format(&value()?)?,
            "--check-version" => opts.check_version = true,
            "--changelog" => opts.changelog = true,
            _ => anyhow::bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
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
        let root = workspace_root();
        let drift = check(&root.join("spec"), &root.join("generated")).unwrap();
        assert!(
            drift.is_empty(),
            "generated/ is stale; run `cargo xtask generate`:\n{}",
            drift.join("\n")
        );
    }

    #[test]
    fn generation_is_deterministic() {
        let spec = workspace_root().join("spec");
        assert_eq!(generate_all(&spec).unwrap(), generate_all(&spec).unwrap());
    }

    #[test]
    fn one_line_proto_edit_is_reported_as_drift() {
        let root = workspace_root();
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
        let root = workspace_root();
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
        let root = workspace_root();
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
