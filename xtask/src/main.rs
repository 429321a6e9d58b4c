//! Project tasks: `cargo xtask demo` (the seed's demo, end to end, on real engines) and
//! `cargo xtask bench` (criterion benches, table of medians and the fan-out plot).

#![deny(clippy::undocumented_unsafe_blocks)]

mod bench;
mod demo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Berth project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build Berth, start engines on temporary sockets and walk through the proposal's demo.
    Demo,
    /// Run the criterion benches, print the medians with their ratios, draw the fan-out plot.
    Bench(bench::Opts),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo => demo::run(),
        Task::Bench(opts) => bench::run(opts),
    }
}
