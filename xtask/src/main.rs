//! Project tasks: `cargo xtask demo` (the seed's demo, end to end, on real engines),
//! `cargo xtask test` (prerequisites, build, the whole test suite) and `cargo xtask bench`
//! (criterion benches, table of medians and the fan-out plot), `cargo xtask torture --rounds N`
//! (the kill -9 torture test, long).

#![deny(clippy::undocumented_unsafe_blocks)]

mod bench;
mod demo;
mod test;
mod torture;

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
    /// Install missing test prerequisites, build every binary, run `cargo test --workspace`.
    Test(test::Opts),
    /// Run the criterion benches, print the medians with their ratios, draw the fan-out plot.
    Bench(bench::Opts),
    /// Run the kill -9 torture test for `--rounds N` rounds (needs root).
    Torture(torture::Opts),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo => demo::run(),
        Task::Test(opts) => test::run(opts),
        Task::Bench(opts) => bench::run(opts),
        Task::Torture(opts) => torture::run(opts),
    }
}
