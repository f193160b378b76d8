//! Replays the committed fuzz inputs on stable: every file under
//! `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` goes through the
//! same function as the cargo-fuzz target `<target>` (the bodies live in
//! `fuzz/src/targets.rs` and are compiled in here). A regression input that
//! once crashed a target fails this test if the bug comes back.

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

/// The input files of `dir/<target>/`, sorted by name (none if absent).
fn inputs(dir: &Path, target: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every committed input of every target (seeds, then regressions);
/// returns how many ran.
fn replay_all() -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, run) in targets::TARGETS {
        let seeds = inputs(&root.join("seeds"), name);
        assert!(!seeds.is_empty(), "fuzz target {name} has no seed inputs");
        for file in seeds.iter().chain(&inputs(&root.join("regressions"), name)) {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name}: input {} fails", file.display());
            total += 1;
        }
    }
    total
}

/// Every seed and every regression input (an input that once broke a
/// target) still passes its target's checks.
#[test]
fn committed_fuzz_inputs_pass_every_target() {
    let n = replay_all();
    println!("replayed {n} fuzz inputs");
}

#[test]
fn chunking_helper_covers_the_input_exactly() {
    let data: Vec<u8> = (0..=255).collect();
    for seed in 0..=255u8 {
        let parts = targets::chunks(seed, &data);
        assert_eq!(parts.concat(), data, "seed {seed}");
        assert!(parts.iter().all(|p| !p.is_empty()));
        if seed > 0 {
            assert!(parts.iter().all(|p| p.len() <= usize::from(seed)), "seed {seed}");
        }
    }
}
