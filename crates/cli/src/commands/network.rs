//! `berth network create|ls|inspect|rm|connect|disconnect`.

use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::ListNetworksOptions;
use clap::{Args, Subcommand};

use crate::client::{Client, describe_error};
use crate::commands::{Exit, for_each_name};
use crate::output::{self, Format, Table};
use crate::parse;

/// `berth network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show network details.
    Inspect(NamesArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

/// Flags of `network create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Network driver.
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway of the subnet.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container IPs from this sub-range.
    #[arg(long)]
    pub ip_range: Option<String>,
    /// IPAM driver.
    #[arg(long, default_value = "default")]
    pub ipam_driver: String,
    /// Driver option (`k=v`, repeatable).
    #[arg(short = 'o', long = "opt", value_name = "K=V")]
    pub opts: Vec<String>,
    /// Label (`k=v`, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Restrict external access.
    #[arg(long)]
    pub internal: bool,
    /// Network name.
    pub name: String,
}

/// Flags of `network ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Filter (`driver=bridge`, `name=x`).
    #[arg(short = 'f', long = "filter", value_name = "K=V")]
    pub filters: Vec<String>,
    /// Only print ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Network names.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Networks.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `network connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Static IPv4 address.
    #[arg(long)]
    pub ip: Option<String>,
    /// Network alias (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Network.
    pub network: String,
    /// Container.
    pub container: String,
}

/// Flags of `network disconnect`.
#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the disconnection.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Network.
    pub network: String,
    /// Container.
    pub container: String,
}

/// The create request for these flags (docker's shape: IPAM always present).
pub fn create_request(args: &CreateArgs) -> NetworkCreateRequest {
    let pool =
        (args.subnet.is_some() || args.gateway.is_some() || args.ip_range.is_some()).then(|| {
            IpamConfig {
                subnet: args.subnet.clone(),
                gateway: args.gateway.clone(),
                ip_range: args.ip_range.clone(),
                ..Default::default()
            }
        });
    NetworkCreateRequest {
        name: args.name.clone(),
        driver: Some(args.driver.clone()),
        internal: Some(args.internal),
        ipam: Some(Ipam {
            driver: Some(args.ipam_driver.clone()),
            config: Some(pool.into_iter().collect()),
            options: Some(Default::default()),
        }),
        options: Some(parse::key_values(&args.opts)),
        labels: Some(parse::key_values(&args.labels)),
        ..Default::default()
    }
}

/// The connect request (`--ip` becomes `IPAMConfig.IPv4Address`).
pub fn connect_request(args: &ConnectArgs) -> NetworkConnectRequest {
    NetworkConnectRequest {
        container: args.container.clone(),
        endpoint_config: Some(EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: args.ip.clone(),
                ..Default::default()
            }),
            aliases: Some(args.aliases.clone()),
            ..Default::default()
        }),
    }
}

/// Runs a network subcommand.
pub async fn run(client: &Client, command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create(args) => {
            let created = client.docker.create_network(create_request(&args)).await?;
            if !created.warning.is_empty() {
                eprintln!("WARNING: {}", created.warning);
            }
            println!("{}", created.id);
            Ok(())
        }
        NetworkCommand::Ls(args) => ls(client, args).await,
        NetworkCommand::Inspect(args) => {
            let mut found = Vec::new();
            let mut failed = false;
            for name in &args.names {
                match client.raw.get_value(&format!("/networks/{name}")).await {
                    Ok(v) => found.push(v),
                    Err(err) => {
                        failed = true;
                        eprintln!("{}", describe_error(&err.into()));
                    }
                }
            }
            output::print_json_pretty(&found)?;
            if failed { Err(Exit(1).into()) } else { Ok(()) }
        }
        NetworkCommand::Rm(args) => {
            for_each_name(&args.names, |name| async move {
                client.docker.remove_network(&name).await?;
                Ok(())
            })
            .await
        }
        NetworkCommand::Connect(args) => {
            client
                .docker
                .connect_network(&args.network, connect_request(&args))
                .await?;
            Ok(())
        }
        NetworkCommand::Disconnect(args) => {
            let request = NetworkDisconnectRequest {
                container: args.container.clone(),
                force: Some(args.force),
            };
            client
                .docker
                .disconnect_network(&args.network, request)
                .await?;
            Ok(())
        }
    }
}

/// `berth network ls`: sorted by name, ids cut to 12 characters.
async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let filters = parse::filters(&args.filters).map_err(anyhow::Error::msg)?;
    let options = ListNetworksOptions {
        filters: (!filters.is_empty()).then_some(filters),
    };
    let mut networks = client.docker.list_networks(Some(options)).await?;
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let id_of = |id: &Option<String>| {
        let id = id.clone().unwrap_or_default();
        if args.no_trunc {
            id
        } else {
            output::short_id(&id)
        }
    };
    if args.quiet {
        for n in &networks {
            println!("{}", id_of(&n.id));
        }
    } else if args.format == Format::Json {
        output::print_json_lines(&networks)?;
    } else {
        let mut table = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
        for n in &networks {
            table.row(vec![
                id_of(&n.id),
                n.name.clone().unwrap_or_default(),
                n.driver.clone().unwrap_or_default(),
                n.scope.clone().unwrap_or_default(),
            ]);
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
        cmd: NetworkCommand,
    }

    fn parse(args: &[&str]) -> NetworkCommand {
        let mut all = vec!["network"];
        all.extend_from_slice(args);
        Wrap::try_parse_from(all).unwrap().cmd
    }

    #[test]
    fn create_bodies() {
        let NetworkCommand::Create(args) = parse(&["create", "greatnet"]) else {
            panic!()
        };
        let body = serde_json::to_value(create_request(&args)).unwrap();
        assert_eq!(body["Name"], "greatnet");
        assert_eq!(body["Driver"], "bridge");
        assert_eq!(
            body["IPAM"],
            serde_json::json!({"Driver":"default","Config":[],"Options":{}})
        );
        let NetworkCommand::Create(args) = parse(&[
            "create",
            "-d",
            "weave",
            "--subnet",
            "10.1.0.0/16",
            "--gateway",
            "10.1.0.1",
            "--ip-range",
            "10.1.1.0/24",
            "-o",
            "mtu=1400",
            "w",
        ]) else {
            panic!()
        };
        let body = serde_json::to_value(create_request(&args)).unwrap();
        assert_eq!(body["Driver"], "weave");
        assert_eq!(
            body["IPAM"]["Config"],
            serde_json::json!([{"Subnet":"10.1.0.0/16","Gateway":"10.1.0.1","IPRange":"10.1.1.0/24"}])
        );
        assert_eq!(body["Options"], serde_json::json!({"mtu":"1400"}));
    }

    #[test]
    fn connect_and_disconnect() {
        let NetworkCommand::Connect(args) =
            parse(&["connect", "--ip", "10.0.0.5", "greatnet", "c1"])
        else {
            panic!()
        };
        let body = serde_json::to_value(connect_request(&args)).unwrap();
        assert_eq!(body["Container"], "c1");
        assert_eq!(
            body["EndpointConfig"]["IPAMConfig"]["IPv4Address"],
            "10.0.0.5"
        );
        let NetworkCommand::Disconnect(args) = parse(&["disconnect", "-f", "greatnet", "c1"])
        else {
            panic!()
        };
        assert!(args.force);
        assert_eq!(args.network, "greatnet");
    }
}
