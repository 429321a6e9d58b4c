//! `berth plugin check`: the plugin conformance kit (`berth-plugin-check`), run against a plugin
//! given by socket, by Docker-style discovery name, or as an image and command started the way
//! `plugin load` would start it. Needs no daemon. Exit status: 0 when every required check
//! passed, 1 when one failed, 2 when the plugin could not be reached or started.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_plugin_check::launch::{Launched, launch};
use berth_plugin_check::{Group, Options};
use clap::Args;

use crate::commands::Exit;
use crate::output::{self, Format};
use crate::parse;

/// Flags of `plugin check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin's socket.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["name", "image"])]
    pub socket: Option<PathBuf>,
    /// Find the plugin the Docker way (`/run/docker/plugins/NAME.sock`, spec files).
    #[arg(long, value_name = "NAME", conflicts_with = "image")]
    pub name: Option<String>,
    /// Discovery directory for --name (repeatable; default: Docker's).
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Start CMD (after `--`) as a host process the way `plugin load IMAGE` runs it
    /// (socket at $PLUGIN_SOCKET in a fresh directory), check it, stop it.
    #[arg(long, value_name = "IMAGE", required_unless_present_any = ["socket", "name"])]
    pub image: Option<String>,
    /// Only these groups: handshake, volume, volume-hook, network, api, robustness.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,…")]
    pub only: Vec<String>,
    /// Skip these groups.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,…")]
    pub skip: Vec<String>,
    /// Per-call deadline.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub deadline: Duration,
    /// With --image: how long the command may take to serve its socket.
    #[arg(long, default_value = "30s", value_parser = parse::duration)]
    pub start_timeout: Duration,
    /// Bind source sent to the MVP volume hook.
    #[arg(long, default_value = "/berth-check/data")]
    pub hook_path: String,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
    /// With --image: the plugin command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

fn groups(names: &[String]) -> anyhow::Result<BTreeSet<Group>> {
    names
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| Group::parse(n).map_err(anyhow::Error::from))
        .collect()
}

/// Runs `plugin check`.
pub async fn run(a: CheckArgs) -> anyhow::Result<()> {
    let opts = Options {
        deadline: a.deadline,
        only: groups(&a.only)?,
        skip: groups(&a.skip)?,
        hook_path: a.hook_path.clone(),
        ..Options::default()
    };
    let mut launched: Option<Launched> = None;
    let socket = match (&a.socket, &a.name, &a.image) {
        (Some(s), _, _) => s.clone(),
        (None, Some(n), _) => {
            let dirs = if a.plugin_dirs.is_empty() {
                berth_plugin_host::discovery::default_dirs()
            } else {
                a.plugin_dirs.clone()
            };
            match berth_plugin_host::discovery::discover(n, &dirs) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return Err(Exit(2).into());
                }
            }
        }
        (None, None, Some(image)) => match launch(image, &a.cmd, a.start_timeout).await {
            Ok(l) => {
                let s = l.socket.clone();
                launched = Some(l);
                s
            }
            Err(e) => {
                eprintln!("Error: {e}");
                return Err(Exit(2).into());
            }
        },
        (None, None, None) => anyhow::bail!("give the plugin with --socket, --name or --image"),
    };
    if launched.is_none() && tokio::net::UnixStream::connect(&socket).await.is_err() {
        eprintln!(
            "Error: plugin socket {}: nothing accepts connections there",
            socket.display()
        );
        return Err(Exit(2).into());
    }
    let report = berth_plugin_check::run(&socket, &opts).await;
    if let Some(l) = launched {
        l.stop().await;
    }
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        ),
        Format::Table => print!("{}", report.table()),
    }
    if report.passed {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}
