//! `cargo xtask upstream --coder DIR` (in progress).
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

pub fn run(_args: impl Iterator<Item = String>, _root: &Path) -> Result<ExitCode> {
    anyhow::bail!("upstream: not implemented yet")
}
