//! `berth volume create|ls|inspect|rm|prune|snapshot`. `create --metadata k=v,…` (the seed's
//! flag) sets the volume's labels and passes the same pairs to the driver as options (`-o` wins
//! on a clash), because Docker's `VolumeDriver.Create` only carries `Opts`.

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, PruneVolumesOptions, RemoveVolumeOptions};
use clap::{Args, Subcommand};

use crate::client::{Client, describe_error};
use crate::commands::{Exit, for_each_name};
use crate::output::{self, Format, Table};
use crate::parse;

/// `berth volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volume details.
    Inspect(NamesArgs),
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused volumes.
    Prune(PruneArgs),
    /// Snapshot a volume (drivers that support `VolumeDriver.Snapshot`).
    Snapshot(SnapshotArgs),
}

/// Arguments of `volume snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Volume.
    pub name: String,
    /// Snapshot name.
    pub snapshot: String,
}

/// Flags of `volume create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume driver.
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Driver option (`k=v`, repeatable).
    #[arg(short = 'o', long = "opt", value_name = "K=V")]
    pub opts: Vec<String>,
    /// Label (`k=v`, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Metadata (`k=v,k=v`, repeatable): labels, also sent to the driver as options.
    #[arg(long = "metadata", value_name = "K=V,...", value_delimiter = ',')]
    pub metadata: Vec<String>,
    /// Volume name (the engine picks one when omitted).
    #[arg(long = "name", hide = true)]
    pub name_flag: Option<String>,
    /// Volume name.
    pub name: Option<String>,
}

/// Flags of `volume ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Filter (`driver=local`, `name=x`, `dangling=true`, `label=k`).
    #[arg(short = 'f', long = "filter", value_name = "K=V")]
    pub filters: Vec<String>,
    /// Only print names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Volume names.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `volume rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force removal (a missing volume is not an error).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `volume prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Don't ask for confirmation (berth never asks).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter (`label=k=v`).
    #[arg(long = "filter", value_name = "K=V")]
    pub filters: Vec<String>,
}

/// The create request for these flags (`Driver` always sent, default `local`, like docker).
pub fn create_request(args: &CreateArgs) -> VolumeCreateRequest {
    let metadata: Vec<String> = args
        .metadata
        .iter()
        .filter(|m| !m.is_empty())
        .cloned()
        .collect();
    let mut opts = parse::key_values(&metadata);
    opts.extend(parse::key_values(&args.opts));
    let mut labels = parse::key_values(&metadata);
    labels.extend(parse::key_values(&args.labels));
    VolumeCreateRequest {
        name: args.name.clone().or_else(|| args.name_flag.clone()),
        driver: Some(args.driver.clone()),
        driver_opts: (!opts.is_empty()).then_some(opts),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
    }
}

/// Runs a volume subcommand.
pub async fn run(client: &Client, command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create(args) => {
            let volume = client.docker.create_volume(create_request(&args)).await?;
            println!("{}", volume.name);
            Ok(())
        }
        VolumeCommand::Ls(args) => ls(client, args).await,
        VolumeCommand::Snapshot(args) => {
            let path = crate::client::raw::with_query(
                &format!("/volumes/{}/snapshot", args.name),
                &[("snapshot", args.snapshot.as_str())],
            )?;
            client
                .raw
                .call::<()>(hyper::Method::POST, &path, None)
                .await?;
            println!("{}", args.snapshot);
            Ok(())
        }
        VolumeCommand::Inspect(args) => {
            let mut found = Vec::new();
            let mut failed = false;
            for name in &args.names {
                match client.raw.get_value(&format!("/volumes/{name}")).await {
                    Ok(v) => found.push(v),
                    Err(err) => {
                        failed = true;
                        found.push(serde_json::Value::Null);
                        eprintln!("{}", describe_error(&err.into()));
                    }
                }
            }
            found.retain(|v| !v.is_null());
            output::print_json_pretty(&found)?;
            if failed { Err(Exit(1).into()) } else { Ok(()) }
        }
        VolumeCommand::Rm(args) => {
            let options = RemoveVolumeOptions { force: args.force };
            for_each_name(&args.names, |name| {
                let options = options.clone();
                async move {
                    client.docker.remove_volume(&name, Some(options)).await?;
                    Ok(())
                }
            })
            .await
        }
        VolumeCommand::Prune(args) => {
            let mut filters = parse::filters(&args.filters).map_err(anyhow::Error::msg)?;
            if args.all {
                filters.insert("all".to_string(), vec!["true".to_string()]);
            }
            let options = PruneVolumesOptions {
                filters: (!filters.is_empty()).then_some(filters),
            };
            let pruned = client.docker.prune_volumes(Some(options)).await?;
            let deleted = pruned.volumes_deleted.unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for name in &deleted {
                    println!("{name}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                output::human_size(pruned.space_reclaimed.unwrap_or(0))
            );
            Ok(())
        }
    }
}

/// `berth volume ls`: sorted by name, like docker.
async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let filters = parse::filters(&args.filters).map_err(anyhow::Error::msg)?;
    let options = ListVolumesOptions {
        filters: (!filters.is_empty()).then_some(filters),
    };
    let listed = client.docker.list_volumes(Some(options)).await?;
    for warning in listed.warnings.iter().flatten() {
        eprintln!("{warning}");
    }
    let mut volumes = listed.volumes.unwrap_or_default();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    if args.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
    } else if args.format == Format::Json {
        output::print_json_lines(&volumes)?;
    } else {
        let mut table = Table::new(&["DRIVER", "VOLUME NAME"]);
        for v in &volumes {
            table.row(vec![v.driver.clone(), v.name.clone()]);
        }
        table.print();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(subcommand)]
        cmd: VolumeCommand,
    }

    #[test]
    fn create_body_like_docker() {
        let w = Wrap::try_parse_from([
            "volume", "create", "-d", "flocker", "-o", "size=50G", "--label", "a=b", "nicevol",
        ])
        .unwrap();
        let VolumeCommand::Create(args) = w.cmd else {
            panic!("not create")
        };
        let body = serde_json::to_value(create_request(&args)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Name":"nicevol","Driver":"flocker",
                "DriverOpts":{"size":"50G"},"Labels":{"a":"b"}})
        );
        let w = Wrap::try_parse_from([
            "volume",
            "create",
            "-d",
            "flocker",
            "--metadata",
            "size=50G,tier=ssd",
            "-o",
            "tier=hdd",
            "nicevol",
        ])
        .unwrap();
        let VolumeCommand::Create(args) = w.cmd else {
            panic!("not create")
        };
        assert_eq!(
            serde_json::to_value(create_request(&args)).unwrap(),
            serde_json::json!({"Name":"nicevol","Driver":"flocker",
                "DriverOpts":{"size":"50G","tier":"hdd"},
                "Labels":{"size":"50G","tier":"ssd"}})
        );
        let w = Wrap::try_parse_from(["volume", "create"]).unwrap();
        let VolumeCommand::Create(args) = w.cmd else {
            panic!("not create")
        };
        assert_eq!(
            serde_json::to_value(create_request(&args)).unwrap(),
            serde_json::json!({"Driver":"local"})
        );
    }
}
