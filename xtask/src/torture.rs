//! `cargo xtask torture --rounds N`: the kill -9 torture test (`tests/tests/torture.rs`) with as
//! many rounds as asked (CI runs the default 20 inside the normal test command). Builds the
//! binaries the test drives (`berth`, the example plugins), then runs it with `BERTH_TORTURE_ROUNDS` (and `BERTH_TORTURE_SEED`
//! when `--seed` replays a run). Needs root.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

/// Options of `cargo xtask torture`.
#[derive(clap::Args)]
pub struct Opts {
    /// How many kill -9 rounds to run.
    #[arg(long, default_value_t = 200)]
    rounds: u64,
    /// Replay the run of this seed (printed by every run).
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs the task.
pub fn run(opts: Opts) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."));
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "-p",
            "berth-cli",
            "-p",
            "berth-example-plugins",
            "--bins",
        ])
        .status()?;
    if !status.success() {
        bail!("building berth and the example plugins failed");
    }
    let mut test = Command::new(env!("CARGO"));
    test.current_dir(root)
        .args([
            "test",
            "-p",
            "berth-tests",
            "--test",
            "torture",
            "--",
            "--nocapture",
        ])
        .env("BERTH_TORTURE_ROUNDS", opts.rounds.to_string());
    if let Some(seed) = opts.seed {
        test.env("BERTH_TORTURE_SEED", seed.to_string());
    }
    if !test.status()?.success() {
        bail!("the torture test failed (its seed is printed above)");
    }
    Ok(())
}
