//! Project tasks: `cargo xtask demo` (the seed's demo, end to end, on real engines).

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo => demo::run(),
    }
}
