//! The `berth` binary: `berth daemon` runs the engine, every other subcommand is a client of the
//! engine's UNIX socket with docker's verbs and flags. This file only parses the command line,
//! dispatches to `commands::*` and turns errors into docker-style messages and exit codes.

#![deny(clippy::undocumented_unsafe_blocks)]

mod client;
mod commands;
mod output;
mod parse;
mod terminal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{Client, describe_error};
use crate::commands::{
    Exit, container, daemon, image, network, plugin, system, system_check, volume,
};

/// Berth: a small container engine speaking the Docker Engine API, with the plugins MVP.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    /// Engine socket to talk to (`unix:///PATH`); default `$BERTH_HOST`, then `unix:///run/berth/berth.sock`.
    #[arg(short = 'H', long = "host", global = true, value_name = "unix:///PATH")]
    host: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine (serves the Docker Engine API on a UNIX socket).
    Daemon(daemon::DaemonArgs),
    /// Create and start a container.
    Run(container::run::RunArgs),
    /// Create a container without starting it.
    Create(container::create::CreateArgs),
    /// Run a command in a running container.
    Exec(container::exec::ExecArgs),
    /// Start stopped containers.
    Start(container::StartArgs),
    /// Stop running containers.
    Stop(container::StopArgs),
    /// Kill running containers.
    Kill(container::KillArgs),
    /// Restart containers.
    Restart(container::StopArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Fetch the logs of a container.
    Logs(container::LogsArgs),
    /// Wait until containers stop, then print their exit codes.
    Wait(container::WaitArgs),
    /// Print low-level information on containers, images, networks or volumes.
    Inspect(system::InspectArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage plugins (hidden system containers the engine calls in load order).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// List images.
    Images(image::LsArgs),
    /// Stream engine events.
    Events(system::EventsArgs),
    /// Show client and engine versions.
    Version(system::VersionArgs),
    /// Show engine-wide information.
    Info(system::InfoArgs),
    /// Check the state root for quarantined records and leftovers of a crash.
    #[command(subcommand)]
    System(system_check::SystemCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon(_)) {
        default_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("Error: starting the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Don't wait for blocking readers (stdin) that may still be parked.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Client commands die quietly on a closed stdout (`berth ps | head -1`) like other Unix tools,
/// instead of failing on EPIPE. The daemon keeps Rust's default (SIGPIPE ignored): it writes to
/// sockets whose peers may have gone.
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called once at start-up, before any other thread exists, installing the default
    // disposition (no handler code runs in signal context).
    if let Err(err) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("warning: cannot restore SIGPIPE: {err}");
    }
}

async fn dispatch(cli: Cli) -> u8 {
    let host = cli.host;
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(args, host).await,
        // Needs no daemon: checks a plugin's socket directly.
        Command::Plugin(plugin::PluginCommand::Check(args)) => {
            crate::commands::plugin_check::run(args).await
        }
        // Needs no daemon: reads the state root.
        Command::System(system_check::SystemCommand::Check(args)) => system_check::run(args),
        other => match Client::connect(host.as_deref()) {
            Ok(client) => run_client(&client, other).await,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => 0,
        Err(err) => match err.downcast_ref::<Exit>() {
            Some(Exit(code)) => *code,
            None => {
                eprintln!("{}", describe_error(&err));
                1
            }
        },
    }
}

async fn run_client(client: &Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Daemon(_) => Ok(()),
        Command::Run(args) => container::run::run(client, args).await,
        Command::Create(args) => container::create::create(client, args).await,
        Command::Exec(args) => container::exec::exec(client, args).await,
        Command::Start(args) => container::start(client, args).await,
        Command::Stop(args) => container::stop(client, args).await,
        Command::Kill(args) => container::kill(client, args).await,
        Command::Restart(args) => container::restart(client, args).await,
        Command::Rm(args) => container::rm(client, args).await,
        Command::Ps(args) => container::ps(client, args).await,
        Command::Logs(args) => container::logs(client, args).await,
        Command::Wait(args) => container::wait(client, args).await,
        Command::Inspect(args) => system::inspect(client, args).await,
        Command::Volume(cmd) => volume::run(client, cmd).await,
        Command::Network(cmd) => network::run(client, cmd).await,
        Command::Plugin(cmd) => plugin::run(client, cmd).await,
        Command::Image(cmd) => image::run(client, cmd).await,
        Command::Images(args) => image::ls(client, args).await,
        Command::Events(args) => system::events(client, args).await,
        Command::Version(args) => system::version(client, args).await,
        Command::Info(args) => system::info(client, args).await,
        Command::System(system_check::SystemCommand::Check(args)) => system_check::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_host_flag_after_subcommand() {
        let cli = Cli::try_parse_from(["berth", "ps", "-H", "unix:///tmp/x.sock", "-a"]).unwrap();
        assert_eq!(cli.host.as_deref(), Some("unix:///tmp/x.sock"));
    }
}
