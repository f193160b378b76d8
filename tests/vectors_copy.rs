//! The repository's golden vectors (`tests/vectors/`) are the same files as the maintainers'
//! source copy (`../shared/vectors/`) when that source is present beside the checkout. A
//! plain clone has no source and the comparison is skipped (with a line on stderr); the
//! vector tests themselves only ever read `tests/vectors/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `root`, by path relative to `root`, with its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.insert(path.strip_prefix(root).expect("under root").to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn repository_vectors_equal_the_shared_source_when_present() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest.join("../shared/vectors");
    if !source.is_dir() {
        eprintln!("skipped: no {} beside this checkout", source.display());
        return;
    }
    for protocol in ["drpc", "yamux"] {
        let ours = files(&manifest.join("tests/vectors").join(protocol));
        let theirs = files(&source.join(protocol));
        let ours_names: Vec<_> = ours.keys().collect();
        let theirs_names: Vec<_> = theirs.keys().collect();
        assert_eq!(
            ours_names, theirs_names,
            "tests/vectors/{protocol} and ../shared/vectors/{protocol} hold different files: refresh (tests/vectors/README.md)"
        );
        for (name, bytes) in &ours {
            assert!(
                theirs[name] == *bytes,
                "tests/vectors/{protocol}/{} differs from the source copy: refresh (tests/vectors/README.md)",
                name.display()
            );
        }
    }
}

#[test]
fn every_recorded_protocol_folder_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for protocol in ["drpc", "yamux"] {
        let found = files(&root.join(protocol));
        assert!(
            found.keys().any(|p| p.extension().is_some_and(|e| e == "json")),
            "tests/vectors/{protocol} has no recorded vectors"
        );
        assert!(
            found.contains_key(Path::new("README.md")),
            "tests/vectors/{protocol}/README.md is missing"
        );
    }
}
