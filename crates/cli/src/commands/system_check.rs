//! `berth system check`: lists what a crash or a corrupt record left in a state root
//! (quarantined records with their reason, temporary files, directories without their record).
//! Works on the directory itself, so it also runs while the daemon is down; exits 1 when it finds
//! anything.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::commands::Exit;
use crate::commands::daemon::DEFAULT_ROOT;

/// `berth system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// List quarantined records (with the reason), temporary files and orphan directories.
    Check(CheckArgs),
}

/// Flags of `berth system check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// State root directory (the daemon's `--root`).
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
}

/// Runs `berth system check`.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    if !args.root.is_dir() {
        anyhow::bail!("{}: not a directory", args.root.display());
    }
    let found = berth_state::check::check(&args.root);
    if found.is_empty() {
        println!("{}: no problems found", args.root.display());
        return Ok(());
    }
    for f in &found {
        println!("{f}");
    }
    eprintln!(
        "{} problem(s) found in {}",
        found.len(),
        args.root.display()
    );
    Err(Exit(1).into())
}
