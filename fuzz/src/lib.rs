//! The bodies of the cargo-fuzz targets. `targets.rs` is also compiled into
//! the crate's stable test `tests/fuzz_corpus.rs`, which replays the
//! committed seeds and regressions through the same functions.

pub mod targets;
