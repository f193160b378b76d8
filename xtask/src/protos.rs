//! Messages: `spec/proto/*.proto` → protox (pure Rust, no protoc) → prost-build.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use prost_types::FileDescriptorSet;

use crate::versions::Manifest;

/// Messages whose `Debug` must not print a secret field.
const SECRET_MESSAGES: [&str; 2] = [".coder.agent.v2.SubAgent", ".coder.agent.v2.WorkspaceSecret"];

/// Compiles the protos the manifest names into descriptors.
pub fn compile(spec_dir: &Path, manifest: &Manifest) -> Result<FileDescriptorSet> {
    let include = spec_dir.join("proto");
    let files: Vec<_> = manifest.services.values().map(|s| s.proto.clone()).collect();
    protox::compile(&files, [&include]).with_context(|| format!("compile protos in {}", include.display()))
}

/// Runs prost-build; returns `proto_<service key>.rs` → Rust source.
pub fn generate(fds: &FileDescriptorSet, manifest: &Manifest) -> Result<BTreeMap<String, String>> {
    let out = tempfile::tempdir().context("temp dir for prost-build")?;
    let mut config = prost_build::Config::new();
    config.out_dir(out.path());
    // `prost::Name` gives every message its full protobuf name (used by tests and errors).
    config.enable_type_names();
    // Ordered maps encode in key order, as Go's deterministic marshalling does,
    // so encodings are reproducible and comparable with the golden vectors.
    config.btree_map(["."]);
    // Messages carrying secrets get a hand-written, redacting `Debug` (src/proto.rs).
    config.skip_debug(SECRET_MESSAGES);
    config.compile_fds(fds.clone()).context("prost-build")?;
    let mut files = BTreeMap::new();
    for (key, spec) in &manifest.services {
        let path = out.path().join(format!("{}.rs", spec.package));
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("prost-build wrote no {}", path.display()))?;
        files.insert(format!("proto_{key}.rs"), text);
    }
    Ok(files)
}
