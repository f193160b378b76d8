//! Two checkouts sharing one `CARGO_TARGET_DIR` (as CI caches and
//! side-by-side clones do) share one xtask binary: cargo reuses the binary
//! built in one checkout for the other when the xtask sources there look no
//! newer. Each `cargo xtask check` must still judge, and each
//! `cargo xtask generate` write, the checkout it runs in.
//!
//! Cost: the copies share this build's target dir, so cargo rebuilds only the
//! xtask package once (the copies' sources are newer than the binary) and then
//! reuses it; no dependency is rebuilt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    let xtask = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"));
    xtask.parent().unwrap().to_path_buf()
}

/// The target dir this test binary was built in: `<target>/debug/xtask` → `<target>`.
fn shared_target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_xtask"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

/// Copies the working tree (not git's HEAD: the copy must build the xtask this
/// test belongs to), leaving out build output and the fuzz crate (not a member).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".git", "target", "fuzz"].iter().any(|n| name == *n) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{}: {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// `cargo xtask <verb>` in `dir`, through the workspace's alias, with the shared target dir.
fn cargo_xtask(dir: &Path, verb: &str) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["xtask", verb])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target_dir())
        // What cargo test gave this process must not stand in for what cargo run gives xtask.
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    eprintln!(
        "cargo xtask {verb} in {}: {}\n{}{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        last_lines(&String::from_utf8_lossy(&out.stderr), 3),
    );
    out
}

/// The xtask binary run directly from `dir` (no cargo run, so no CARGO_MANIFEST_DIR).
fn xtask_binary(dir: &Path, verb: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg(verb)
        .current_dir(dir)
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap()
}

/// The first test rebuilds the shared binary; the other must not run it meanwhile.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

#[test]
fn each_checkout_sharing_a_target_dir_checks_and_generates_its_own_tree() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    copy_tree(&workspace(), &a);
    copy_tree(&workspace(), &b);

    // A builds the binary (its sources are newer than the last build); both trees are clean.
    let out = cargo_xtask(&a, "check");
    assert_eq!(out.status.code(), Some(0), "a clean copy is up to date");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&a.join("generated").display().to_string()),
        "check names the tree it compared"
    );

    // A spec edit in B: B's check fails, although cargo now reuses A's binary.
    edit(
        &b.join("spec/proto/agent.proto"),
        "string agent_name = 15;",
        "string agent_name = 25;",
    );
    let out = cargo_xtask(&b, "check");
    assert_eq!(out.status.code(), Some(1), "B's spec edit is drift in B");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tag = \"25\""));

    // generate in B writes B's generated/ and leaves A's alone.
    let a_before = snapshot(&a.join("generated"));
    let b_before = snapshot(&b.join("generated"));
    assert_eq!(cargo_xtask(&b, "generate").status.code(), Some(0));
    assert_eq!(snapshot(&a.join("generated")), a_before, "A's generated/ untouched");
    let b_after = snapshot(&b.join("generated"));
    assert_ne!(b_after, b_before, "B's generated/ regenerated");
    assert!(b_after["proto_agent.rs"].contains("tag = \"25\""));
    assert_eq!(cargo_xtask(&b, "check").status.code(), Some(0));

    // And the other way round: a spec edit in A fails A's check, B stays clean.
    edit(
        &a.join("spec/proto/agent.proto"),
        "string workspace_name = 16;",
        "string workspace_name = 26;",
    );
    assert_eq!(
        cargo_xtask(&a, "check").status.code(),
        Some(1),
        "A's edit is drift in A"
    );
    assert_eq!(cargo_xtask(&b, "check").status.code(), Some(0), "B is not judged by A");

    // Without cargo run, the binary asks cargo which workspace the current directory is in.
    assert_eq!(xtask_binary(&a.join("src"), "check").status.code(), Some(1));
    assert_eq!(xtask_binary(&b.join("src"), "check").status.code(), Some(0));
}

#[test]
fn outside_any_checkout_the_binary_says_it_cannot_tell_which() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let out = xtask_binary(tmp.path(), "check");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot tell which checkout"), "{err}");
}
