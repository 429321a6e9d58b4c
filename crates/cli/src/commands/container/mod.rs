//! Container commands: `run` and `create` (own modules), and `start`, `stop`, `kill`,
//! `restart`, `rm`, `ps`, `logs`, `wait`.

pub mod create;
pub mod exec;
pub mod run;

use std::io::Write;

use bollard::container::LogOutput;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RestartContainerOptions, StopContainerOptions,
};
use clap::Args;
use futures::StreamExt;
use http::Method;

use crate::client::{Client, describe_error, is_not_found, raw};
use crate::commands::{Exit, for_each_name};
use crate::output::{self, Format, Table};
use crate::parse;

/// Flags of `berth start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and exit with the container's exit code.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach stdin as well.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers to start.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `berth stop` and `berth restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time")]
    pub time: Option<i32>,
    /// Signal to send to stop the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `berth kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (engine default: SIGKILL).
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers to kill.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `berth rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes too.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Containers to remove.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Flags of `berth ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// List the hidden system containers (plugins, `--system` agents) instead of user ones.
    #[arg(long)]
    pub system: bool,
    /// Only print container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter (`name=c1`, `status=exited`, `label=k=v`...).
    #[arg(short = 'f', long = "filter", value_name = "K=V")]
    pub filters: Vec<String>,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
    /// Don't truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// Flags of `berth logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Number of lines from the end (`all` by default).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Only logs since this time (timestamp or relative, `10m`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only logs before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// The container.
    pub container: String,
}

/// Flags of `berth wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Containers to wait for.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth start`.
pub async fn start(client: &Client, args: StartArgs) -> anyhow::Result<()> {
    if args.attach || args.interactive {
        let [container] = args.containers.as_slice() else {
            eprintln!("Error: you cannot start and attach multiple containers at once");
            return Err(Exit(1).into());
        };
        let tty = match client
            .raw
            .get_value(&format!("/containers/{container}/json"))
            .await
        {
            Ok(v) => v["Config"]["Tty"].as_bool().unwrap_or(false),
            Err(err) => {
                eprintln!("{}", describe_error(&err.into()));
                return Err(Exit(1).into());
            }
        };
        let session = run::Session {
            interactive: args.interactive,
            tty,
            condition: "next-exit",
            verb: "start",
            fail_code: 1,
        };
        return run::attach_start_wait(client, container, &session).await;
    }
    let mut failed = Vec::new();
    for name in &args.containers {
        match client.docker.start_container(name, None).await {
            Ok(()) => println!("{name}"),
            Err(err) => {
                eprintln!("{}", describe_error(&err.into()));
                failed.push(name.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        eprintln!("Error: failed to start containers: {}", failed.join(", "));
        Err(Exit(1).into())
    }
}

/// `berth stop`.
pub async fn stop(client: &Client, args: StopArgs) -> anyhow::Result<()> {
    let options = StopContainerOptions {
        t: args.time,
        signal: args.signal.clone(),
    };
    for_each_name(&args.containers, |name| {
        let options = options.clone();
        async move {
            client.docker.stop_container(&name, Some(options)).await?;
            Ok(())
        }
    })
    .await
}

/// `berth restart`.
pub async fn restart(client: &Client, args: StopArgs) -> anyhow::Result<()> {
    let options = RestartContainerOptions {
        t: args.time,
        signal: args.signal.clone(),
    };
    for_each_name(&args.containers, |name| {
        let options = options.clone();
        async move {
            client
                .docker
                .restart_container(&name, Some(options))
                .await?;
            Ok(())
        }
    })
    .await
}

/// `berth kill`: without `-s` no signal is sent, so the engine's default applies.
pub async fn kill(client: &Client, args: KillArgs) -> anyhow::Result<()> {
    let signal = args.signal.clone();
    for_each_name(&args.containers, |name| {
        let signal = signal.clone();
        async move {
            match signal {
                Some(signal) => {
                    let options = KillContainerOptions { signal };
                    client.docker.kill_container(&name, Some(options)).await?;
                }
                None => {
                    let path = format!("/containers/{name}/kill");
                    client.raw.call::<()>(Method::POST, &path, None).await?;
                }
            }
            Ok(())
        }
    })
    .await
}

/// `berth rm`: with `-f`, a missing container is reported but does not fail (like docker).
pub async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<()> {
    let options = RemoveContainerOptions {
        force: args.force,
        v: args.volumes,
        link: false,
    };
    let mut failed = false;
    for name in &args.containers {
        match client
            .docker
            .remove_container(name, Some(options.clone()))
            .await
        {
            Ok(()) => println!("{name}"),
            Err(err) => {
                let err = anyhow::Error::new(err);
                eprintln!("{}", describe_error(&err));
                if !(args.force && is_not_found(&err)) {
                    failed = true;
                }
            }
        }
    }
    if failed { Err(Exit(1).into()) } else { Ok(()) }
}

/// Lists containers, through the raw helper when `system` (bollard has no such parameter).
pub async fn list_containers(
    client: &Client,
    all: bool,
    system: bool,
    filters: std::collections::HashMap<String, Vec<String>>,
) -> anyhow::Result<Vec<ContainerSummary>> {
    if system {
        let mut query: Vec<(&str, String)> = vec![("system", "1".to_string())];
        if all {
            query.push(("all", "1".to_string()));
        }
        if !filters.is_empty() {
            query.push(("filters", serde_json::to_string(&filters)?));
        }
        let path = raw::with_query("/containers/json", &query)?;
        return Ok(client.raw.json::<_, ()>(Method::GET, &path, None).await?);
    }
    let options = ListContainersOptions {
        all,
        filters: (!filters.is_empty()).then_some(filters),
        ..Default::default()
    };
    Ok(client.docker.list_containers(Some(options)).await?)
}

/// `berth ps`.
pub async fn ps(client: &Client, args: PsArgs) -> anyhow::Result<()> {
    let filters = parse::filters(&args.filters).map_err(anyhow::Error::msg)?;
    let containers = list_containers(client, args.all, args.system, filters).await?;
    if args.quiet {
        for c in &containers {
            let id = c.id.clone().unwrap_or_default();
            println!(
                "{}",
                if args.no_trunc {
                    id
                } else {
                    output::short_id(&id)
                }
            );
        }
        return Ok(());
    }
    if args.format == Format::Json {
        return output::print_json_lines(&containers);
    }
    ps_table(&containers, output::now_unix(), args.no_trunc).print();
    Ok(())
}

/// The `ps` table: CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, NAMES.
pub fn ps_table(containers: &[ContainerSummary], now: i64, no_trunc: bool) -> Table {
    let mut table = Table::new(&[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ]);
    for c in containers {
        let id = c.id.clone().unwrap_or_default();
        let command = c.command.clone().unwrap_or_default();
        let names: Vec<String> = c
            .names
            .iter()
            .flatten()
            .map(|n| n.strip_prefix('/').unwrap_or(n).to_string())
            .filter(|n| !n.contains('/'))
            .collect();
        table.row(vec![
            if no_trunc { id } else { output::short_id(&id) },
            c.image.clone().unwrap_or_else(|| "<no image>".to_string()),
            output::go_quote(&if no_trunc {
                command
            } else {
                output::ellipsis(&command, 20)
            }),
            c.created.map(|t| output::ago(t, now)).unwrap_or_default(),
            c.status.clone().unwrap_or_default(),
            names.join(","),
        ]);
    }
    table
}

/// `berth logs`.
pub async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now();
    let to_secs = |value: &Option<String>| -> anyhow::Result<i32> {
        match value {
            None => Ok(0),
            Some(text) => {
                let ts = parse::timestamp(text, now).map_err(anyhow::Error::msg)?;
                let secs = ts.split('.').next().unwrap_or("0");
                Ok(secs.parse::<i32>()?)
            }
        }
    };
    let options = LogsOptions {
        follow: args.follow,
        stdout: true,
        stderr: true,
        since: to_secs(&args.since)?,
        until: to_secs(&args.until)?,
        timestamps: args.timestamps,
        tail: args.tail.clone(),
    };
    let mut stream = client.docker.logs(&args.container, Some(options));
    while let Some(item) = stream.next().await {
        match item? {
            LogOutput::StdErr { message } => {
                let mut err = std::io::stderr().lock();
                err.write_all(&message)?;
                err.flush()?;
            }
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                let mut out = std::io::stdout().lock();
                out.write_all(&message)?;
                out.flush()?;
            }
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(())
}

/// `berth wait`: prints each container's exit code.
pub async fn wait(client: &Client, args: WaitArgs) -> anyhow::Result<()> {
    let mut failed = false;
    for name in &args.containers {
        let path = format!("/containers/{name}/wait");
        match client
            .raw
            .json::<serde_json::Value, ()>(Method::POST, &path, None)
            .await
        {
            Ok(answer) => println!("{}", answer["StatusCode"].as_i64().unwrap_or(0)),
            Err(err) => {
                eprintln!("{}", describe_error(&err.into()));
                failed = true;
            }
        }
    }
    if failed { Err(Exit(1).into()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_table_matches_docker() {
        let c: ContainerSummary = serde_json::from_value(serde_json::json!({
            "Id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Names": ["/c1"], "Image": "busybox", "Command": "sleep 1",
            "Created": 1000, "State": "running", "Status": "Up 2 minutes"
        }))
        .unwrap();
        let out = ps_table(&[c], 1150, false).render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "CONTAINER ID   IMAGE     COMMAND     CREATED         STATUS         NAMES"
        );
        assert_eq!(
            lines[1],
            "0123456789ab   busybox   \"sleep 1\"   2 minutes ago   Up 2 minutes   c1"
        );
    }
}
