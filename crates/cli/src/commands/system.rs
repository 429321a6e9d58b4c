//! Engine-wide commands: `inspect` (docker's walk over object kinds), `events` (docker's line
//! format), `version` and `info`.

use std::collections::HashMap;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use chrono::{DateTime, Local, Offset, TimeZone};
use clap::Args;
use futures::StreamExt;
use serde_json::Value;

use crate::client::{Client, describe_error, is_not_found};
use crate::commands::Exit;
use crate::output::{self, Format};
use crate::parse;

/// Flags of `berth inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only look for this kind of object: container, image, network or volume.
    #[arg(long = "type", value_parser = ["container", "image", "network", "volume"])]
    pub kind: Option<String>,
    /// Names or ids.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Flags of `berth events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show events since this time (timestamp, RFC 3339, or relative like `10m`).
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this time, then exit.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter (`type=volume`, `event=create`, `container=c1`...).
    #[arg(short = 'f', long = "filter", value_name = "K=V")]
    pub filters: Vec<String>,
    /// Output format: `table` (docker's lines) or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Flags of `berth version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format: `table` or `json`.
    #[arg(short = 'f', long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Flags of `berth info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format: `table` or `json`.
    #[arg(short = 'f', long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// The API paths tried, in order, for one name (docker's inspect walk).
pub fn inspect_paths(name: &str, kind: Option<&str>) -> Vec<String> {
    let all = [
        ("container", format!("/containers/{name}/json")),
        ("image", format!("/images/{name}/json")),
        ("network", format!("/networks/{name}")),
        ("volume", format!("/volumes/{name}")),
    ];
    all.into_iter()
        .filter(|(k, _)| kind.is_none_or(|want| want == *k))
        .map(|(_, path)| path)
        .collect()
}

/// `berth inspect NAME...`: the raw JSON objects, as one array.
pub async fn inspect(client: &Client, args: InspectArgs) -> anyhow::Result<()> {
    let mut found: Vec<Value> = Vec::new();
    let mut errors = Vec::new();
    'names: for name in &args.names {
        for path in inspect_paths(name, args.kind.as_deref()) {
            match client.raw.get_value(&path).await {
                Ok(v) => {
                    found.push(v);
                    continue 'names;
                }
                Err(err) => {
                    let err = anyhow::Error::new(err);
                    if !is_not_found(&err) {
                        errors.push(describe_error(&err));
                        continue 'names;
                    }
                }
            }
        }
        errors.push(format!("Error: No such object: {name}"));
    }
    output::print_json_pretty(&found)?;
    for e in &errors {
        eprintln!("{e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}

/// Formats a timestamp like Go's `2006-01-02T15:04:05.000000000Z07:00` in `tz`.
pub fn fixed_nanos<Tz: TimeZone>(at: DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let base = at.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    if at.offset().fix().local_minus_utc() == 0 {
        format!("{base}Z")
    } else {
        format!("{base}{}", at.format("%:z"))
    }
}

/// One event in docker's line format:
/// `<time> <type> <action> <actor id> (k=v, k=v)` with attributes sorted.
pub fn event_line<Tz: TimeZone>(event: &EventMessage, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut line = String::new();
    let time = match (event.time_nano, event.time) {
        (Some(nanos), _) if nanos != 0 => Some(tz.timestamp_nanos(nanos)),
        (_, Some(secs)) if secs != 0 => tz.timestamp_opt(secs, 0).single(),
        _ => None,
    };
    if let Some(time) = time {
        line.push_str(&fixed_nanos(time));
        line.push(' ');
    }
    let kind = event.typ.map(|t| t.to_string()).unwrap_or_default();
    let action = event.action.clone().unwrap_or_default();
    let actor = event.actor.clone().unwrap_or_default();
    line.push_str(&format!("{kind} {action} {}", actor.id.unwrap_or_default()));
    let mut attrs: Vec<(String, String)> =
        actor.attributes.unwrap_or_default().into_iter().collect();
    if !attrs.is_empty() {
        attrs.sort();
        let joined: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" ({})", joined.join(", ")));
    }
    line
}

/// `berth events`.
pub async fn events(client: &Client, args: EventsArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now();
    let time = |v: &Option<String>| -> anyhow::Result<Option<String>> {
        v.as_deref()
            .map(|t| parse::timestamp(t, now).map_err(anyhow::Error::msg))
            .transpose()
    };
    let filters: HashMap<String, Vec<String>> =
        parse::filters(&args.filters).map_err(anyhow::Error::msg)?;
    let options = EventsOptions {
        since: time(&args.since)?,
        until: time(&args.until)?,
        filters: (!filters.is_empty()).then_some(filters),
    };
    let mut stream = client.docker.events(Some(options));
    while let Some(event) = stream.next().await {
        let event = event?;
        if args.format == Format::Json {
            println!("{}", serde_json::to_string(&event)?);
        } else {
            println!("{}", event_line(&event, &Local));
        }
    }
    Ok(())
}

/// `berth version`: the client block, then the engine's.
pub async fn version(client: &Client, args: VersionArgs) -> anyhow::Result<()> {
    let client_block = format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        bollard::API_DEFAULT_VERSION,
        std::env::consts::OS,
        go_arch(),
    );
    let server = client.raw.get_value("/version").await;
    if args.format == Format::Json {
        let server = server?;
        let out = serde_json::json!({
            "Client": {"Version": env!("CARGO_PKG_VERSION"), "ApiVersion": bollard::API_DEFAULT_VERSION.to_string(),
                       "Os": std::env::consts::OS, "Arch": go_arch()},
            "Server": server,
        });
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    print!("{client_block}");
    let server = server?;
    let s = |k: &str| server[k].as_str().unwrap_or("").to_string();
    let platform = server["Platform"]["Name"].as_str().unwrap_or("Berth");
    println!();
    println!("Server: {platform}");
    println!(" Engine:");
    println!("  Version:          {}", s("Version"));
    println!(
        "  API version:      {} (minimum version {})",
        s("ApiVersion"),
        s("MinAPIVersion")
    );
    println!("  Git commit:       {}", s("GitCommit"));
    println!("  Built:            {}", s("BuildTime"));
    println!("  OS/Arch:          {}/{}", s("Os"), s("Arch"));
    println!("  Kernel Version:   {}", s("KernelVersion"));
    Ok(())
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `berth info`.
pub async fn info(client: &Client, args: InfoArgs) -> anyhow::Result<()> {
    let info = client.raw.get_value("/info").await?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    print!("{}", info_text(&info));
    for warning in info["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = warning.as_str() {
            eprintln!("{w}");
        }
    }
    Ok(())
}

/// The human `info` text (the engine part of docker's layout).
pub fn info_text(info: &Value) -> String {
    let s = |k: &str| match &info[k] {
        Value::String(v) => v.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    };
    let n = |k: &str| info[k].as_i64().unwrap_or(0);
    let list = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    out.push_str("Server:\n");
    out.push_str(&format!(" Containers: {}\n", n("Containers")));
    out.push_str(&format!("  Running: {}\n", n("ContainersRunning")));
    out.push_str(&format!("  Paused: {}\n", n("ContainersPaused")));
    out.push_str(&format!("  Stopped: {}\n", n("ContainersStopped")));
    out.push_str(&format!(" Images: {}\n", n("Images")));
    out.push_str(&format!(" Server Version: {}\n", s("ServerVersion")));
    out.push_str(&format!(" Storage Driver: {}\n", s("Driver")));
    out.push_str(" Plugins:\n");
    out.push_str(&format!("  Volume: {}\n", list(&info["Plugins"]["Volume"])));
    out.push_str(&format!(
        "  Network: {}\n",
        list(&info["Plugins"]["Network"])
    ));
    out.push_str(&format!(
        "  Authorization: {}\n",
        list(&info["Plugins"]["Authorization"])
    ));
    out.push_str(&format!("  Log: {}\n", list(&info["Plugins"]["Log"])));
    let swarm = info["Swarm"]["LocalNodeState"]
        .as_str()
        .unwrap_or("inactive");
    out.push_str(&format!(" Swarm: {swarm}\n"));
    out.push_str(&format!(" Kernel Version: {}\n", s("KernelVersion")));
    out.push_str(&format!(" Operating System: {}\n", s("OperatingSystem")));
    out.push_str(&format!(" OSType: {}\n", s("OSType")));
    out.push_str(&format!(" Architecture: {}\n", s("Architecture")));
    out.push_str(&format!(" CPUs: {}\n", n("NCPU")));
    out.push_str(&format!(" Total Memory: {}\n", binary_size(n("MemTotal"))));
    out.push_str(&format!(" Name: {}\n", s("Name")));
    out.push_str(&format!(" ID: {}\n", s("ID")));
    out.push_str(&format!(" Docker Root Dir: {}\n", s("DockerRootDir")));
    out
}

/// Go's `units.BytesSize`: binary units with 4 significant digits (`23.43GiB`).
fn binary_size(bytes: i64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn events_in_docker_format() {
        let event: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "container", "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "c1", "image": "busybox"}},
            "time": 1700000000, "timeNano": 1700000000123456789i64
        }))
        .unwrap();
        assert_eq!(
            event_line(&event, &Utc),
            "2023-11-14T22:13:20.123456789Z container start abc (image=busybox, name=c1)"
        );
        let event: EventMessage = serde_json::from_value(serde_json::json!({
            "Type": "volume", "Action": "create", "Actor": {"ID": "v1"}
        }))
        .unwrap();
        assert_eq!(event_line(&event, &Utc), "volume create v1");
        let east = chrono::FixedOffset::east_opt(3600).unwrap();
        assert_eq!(
            fixed_nanos(east.timestamp_opt(0, 5).unwrap()),
            "1970-01-01T01:00:00.000000005+01:00"
        );
    }

    #[test]
    fn inspect_walk_order() {
        assert_eq!(
            inspect_paths("x", None),
            vec![
                "/containers/x/json",
                "/images/x/json",
                "/networks/x",
                "/volumes/x"
            ]
        );
        assert_eq!(inspect_paths("x", Some("volume")), vec!["/volumes/x"]);
    }

    #[test]
    fn info_layout() {
        let text = info_text(&serde_json::json!({
            "Containers": 2, "ContainersRunning": 1, "ContainersStopped": 1,
            "Plugins": {"Volume": ["local", "flocker"]}, "MemTotal": 25769803776i64,
            "Swarm": {"LocalNodeState": "inactive"}
        }));
        assert!(text.contains(" Containers: 2\n  Running: 1\n"));
        assert!(text.contains("  Volume: local flocker\n"));
        assert!(text.contains(" Total Memory: 24GiB\n"));
        assert!(text.contains(" Swarm: inactive\n"));
    }
}
