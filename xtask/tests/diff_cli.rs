//! `cargo xtask diff` end to end, on a throwaway git repository holding a copy
//! of this project's `spec/` and a `Cargo.toml` at 0.1.0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Read at run time, not compiled in: a test binary reused from a shared
/// target dir must still test the checkout it runs in.
fn xtask_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
}

fn workspace() -> PathBuf {
    xtask_dir().parent().unwrap().to_path_buf()
}

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

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn cargo_toml(version: &str) -> String {
    format!("[package]\nname = \"demo\"\nversion = \"{version}\"\nedition = \"2021\"\n")
}

/// A repository with one commit: spec/ as in this project, Cargo.toml at 0.1.0.
fn repo() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&workspace().join("spec"), &tmp.path().join("spec"));
    std::fs::write(tmp.path().join("Cargo.toml"), cargo_toml("0.1.0")).unwrap();
    git(tmp.path(), &["init", "-q"]);
    git(tmp.path(), &["add", "."]);
    git(tmp.path(), &["commit", "-qm", "0.1.0"]);
    tmp
}

fn xtask(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("diff")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn remove_motd_path(root: &Path) {
    let proto = root.join("spec/proto/agent.proto");
    let text = std::fs::read_to_string(&proto).unwrap();
    let edited: String = text
        .lines()
        .filter(|l| !l.contains("string motd_path = 6;"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        text.lines().count(),
        edited.lines().count() + 1,
        "exactly one line removed"
    );
    std::fs::write(&proto, edited).unwrap();
}

#[test]
fn clean_tree_reports_no_changes() {
    let repo = repo();
    let out = xtask(repo.path(), &["--base", "HEAD", "--format", "json", "--check-version"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(v["changes"], serde_json::json!([]));
    assert_eq!(v["bump"], "none");
    assert_eq!(v["required_version"], "0.1.0");
    assert_eq!(v["current_version"], "0.1.0");
    assert_eq!(v["base"], "HEAD");
}

#[test]
fn one_line_field_removal_is_breaking_and_requires_0_2_0_until_cargo_toml_says_so() {
    let repo = repo();
    remove_motd_path(repo.path());

    let out = xtask(repo.path(), &["--base", "HEAD", "--format", "json"]);
    assert!(
        out.status.success(),
        "without --check-version the report alone succeeds"
    );
    let v = json(&out);
    assert_eq!(v["required_version"], "0.2.0");
    assert_eq!(v["bump"], "minor");
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["area"], "proto");
    assert_eq!(changes[0]["severity"], "breaking");
    assert_eq!(changes[0]["rust"], "breaking");
    assert_eq!(changes[0]["path"], "coder.agent.v2.Manifest.motd_path");

    let out = xtask(repo.path(), &["--base", "HEAD", "--check-version"]);
    assert_eq!(out.status.code(), Some(1), "0.1.0 is too low");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("require at least 0.2.0"), "{stderr}");
    assert!(
        stderr.contains("coder.agent.v2.Manifest.motd_path"),
        "names the deciding change: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("breaking breaking proto coder.agent.v2.Manifest.motd_path"),
        "{stdout}"
    );

    std::fs::write(repo.path().join("Cargo.toml"), cargo_toml("0.1.1")).unwrap();
    assert_eq!(
        xtask(repo.path(), &["--base", "HEAD", "--check-version"]).status.code(),
        Some(1)
    );
    std::fs::write(repo.path().join("Cargo.toml"), cargo_toml("0.2.0")).unwrap();
    let out = xtask(repo.path(), &["--base", "HEAD", "--check-version"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn default_base_is_the_baseline_file_and_then_the_newest_v_tag() {
    let repo = repo();
    let first = git(repo.path(), &["rev-parse", "HEAD"]);
    // Without a tag or baseline file there is no default base.
    let out = xtask(repo.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".release-baseline"));

    std::fs::write(repo.path().join(".release-baseline"), format!("{first}\n")).unwrap();
    remove_motd_path(repo.path());
    git(repo.path(), &["commit", "-qam", "remove motd_path"]);
    let v = json(&xtask(repo.path(), &["--format", "json"]));
    assert_eq!(v["base"], first.as_str());
    assert_eq!(v["required_version"], "0.2.0");

    // A v* tag wins over the file: tag the second commit as the release.
    git(repo.path(), &["tag", "v0.1.0"]);
    let v = json(&xtask(repo.path(), &["--format", "json"]));
    assert_eq!(v["base"], "v0.1.0");
    assert_eq!(v["changes"], serde_json::json!([]));
}

#[test]
fn missing_base_commit_is_a_clear_error() {
    let repo = repo();
    std::fs::write(
        repo.path().join(".release-baseline"),
        "0123456789abcdef0123456789abcdef01234567\n",
    )
    .unwrap();
    let out = xtask(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0123456789abcdef0123456789abcdef01234567 is not a commit"),
        "{stderr}"
    );
}

#[test]
fn changelog_draft_lists_the_change() {
    let repo = repo();
    remove_motd_path(repo.path());
    let out = xtask(repo.path(), &["--base", "HEAD", "--changelog"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("## [Unreleased]"), "{text}");
    assert!(
        text.contains("### Removed\n\n- `coder.agent.v2.Manifest.motd_path`: field 6 removed"),
        "{text}"
    );
}
