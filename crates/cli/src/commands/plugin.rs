//! `berth plugin load|ls|status|upgrade|unload|enable|disable`: Berth's plugin management
//! endpoints (`/berth/plugins…`, and Docker's `/plugins/{name}/enable|disable`) through the raw
//! client. `load`, `upgrade` and `unload` read the engine's newline-delimited progress stream: a progress line on stderr while the engine waits for the
//! handshake, then the seed's lines ("Plugin flocker:v0.1 loaded and registered with extension
//! points: volume", "Plugin flocker activated.").

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::client::{Client, RawError, raw};
use crate::commands::Exit;
use crate::output::{self, Format, Table};
use crate::parse;

/// `berth plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin: run IMAGE as a hidden system container and shake hands with it.
    Load(LoadArgs),
    /// List plugins in load order.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show one plugin's details: container, socket, last error, calls per hook.
    Status(StatusArgs),
    /// Replace a plugin by a new container (same place in the load order, no failed calls).
    Upgrade(UpgradeArgs),
    /// Unload a plugin (refused while volumes depend on it, unless --force).
    #[command(alias = "rm")]
    Unload(UnloadArgs),
    /// Show a plugin's output (its container's stdout and stderr); for a plugin that failed to
    /// load, the output of that failed load.
    Logs(LogsArgs),
    /// Enable a disabled plugin, or start a failed one again (after a crash loop or a failed boot).
    Enable(NameArg),
    /// Disable a plugin: it keeps its place and container but receives no calls.
    Disable(DisableArgs),
    /// Check a plugin against the protocol rules (conformance kit; needs no daemon).
    Check(crate::commands::plugin_check::CheckArgs),
}

/// A plugin name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Plugin name.
    pub name: String,
}

/// Flags of `plugin disable`.
#[derive(Debug, Args)]
pub struct DisableArgs {
    /// Disable even while volumes or networks depend on it.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Plugin name.
    pub name: String,
}

/// Flags of `plugin logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output until the plugin's container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<u64>,
    /// Plugin name.
    pub name: String,
}

/// Flags of `plugin load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Register under this name (default: the name the plugin tells in its handshake).
    #[arg(long)]
    pub name: Option<String>,
    /// Give the plugin the engine API (a per-plugin socket at /var/run/docker.sock inside).
    #[arg(long)]
    pub privileged: bool,
    /// `host`: the plugin container shares the host's network namespace (a network driver that
    /// makes host links needs it); `none` (default): its own namespace, with only `lo`.
    #[arg(long, value_name = "host|none", conflicts_with_all = ["socket", "discover"])]
    pub network: Option<String>,
    /// Environment variable for the plugin container (`K=V`, repeatable).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Host path bind-mounted into the plugin container (`SRC:DST[:ro]`, repeatable): a volume
    /// plugin's storage, say. Kept across restarts and upgrades.
    #[arg(short = 'v', long = "volume", alias = "mount", value_name = "SRC:DST[:ro]",
          conflicts_with_all = ["socket", "discover"])]
    pub mounts: Vec<String>,
    /// Handshake (load) deadline, e.g. `30s`.
    #[arg(long, alias = "load-timeout", value_name = "DUR", value_parser = parse::duration)]
    pub timeout: Option<std::time::Duration>,
    /// Per-call deadline, e.g. `5s` (default: what the plugin asks for); the daemon's caps per call
    /// family (`--plugin-deadline-*`) bound it.
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub deadline: Option<std::time::Duration>,
    /// What a failing "before" hook does: `abort` the operation or `ignore` the plugin.
    #[arg(long = "on-failure", alias = "failure-policy", value_name = "abort|ignore",
          value_parser = ["abort", "ignore"])]
    pub on_failure: Option<String>,
    /// Load a plugin already running on this socket instead of an image.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["image", "discover", "privileged"])]
    pub socket: Option<String>,
    /// Load a plugin found by Docker-style discovery (`/run/docker/plugins/NAME.sock|.spec`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["image", "privileged"])]
    pub discover: Option<String>,
    /// Image of the plugin container.
    #[arg(required_unless_present_any = ["socket", "discover"])]
    pub image: Option<String>,
    /// Arguments of the plugin container (its command).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Flags of `plugin ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only print names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Flags of `plugin status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Plugin name.
    pub name: String,
    /// Output format: `table` (human) or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Flags of `plugin upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Time the old container gets between SIGTERM and SIGKILL (default 10s).
    #[arg(short = 't', long, value_name = "DUR", value_parser = parse::duration)]
    pub grace: Option<std::time::Duration>,
    /// Environment of the new container (`K=V`, repeatable; default: the old one's).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Switch to a plugin already running on this socket.
    #[arg(long, value_name = "PATH", conflicts_with = "image")]
    pub socket: Option<String>,
    /// Plugin name.
    pub name: String,
    /// New image.
    #[arg(required_unless_present = "socket")]
    pub image: Option<String>,
    /// New arguments (default: the old ones).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Flags of `plugin unload`.
#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// Unload even while volumes depend on it.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Time the plugin's container gets between SIGTERM and SIGKILL (default 10s).
    #[arg(short = 't', long, value_name = "DUR", value_parser = parse::duration)]
    pub grace: Option<std::time::Duration>,
    /// Plugin name.
    pub name: String,
}

/// Runs a `plugin` subcommand.
pub async fn run(client: &Client, cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Load(a) => load(client, a).await,
        PluginCommand::Ls(a) => ls(client, a).await,
        PluginCommand::Status(a) => status(client, a).await,
        PluginCommand::Upgrade(a) => upgrade(client, a).await,
        PluginCommand::Unload(a) => unload(client, a).await,
        PluginCommand::Logs(a) => logs(client, a).await,
        PluginCommand::Enable(a) => enable(client, &a.name, "enable", &[]).await,
        PluginCommand::Disable(a) => {
            let force = [("force", if a.force { "1" } else { "0" })];
            enable(client, &a.name, "disable", &force).await
        }
        PluginCommand::Check(a) => crate::commands::plugin_check::run(a).await,
    }
}

/// The body of `POST /berth/plugins/load`.
pub fn load_body(a: &LoadArgs) -> Value {
    let mut body = json!({
        "Privileged": a.privileged,
        "Env": a.env,
        "Args": a.args,
    });
    let set = |body: &mut Value, k: &str, v: Value| {
        if let Some(o) = body.as_object_mut() {
            o.insert(k.to_owned(), v);
        }
    };
    if let Some(n) = &a.name {
        set(&mut body, "Name", json!(n));
    }
    if let Some(n) = &a.network {
        set(&mut body, "Network", json!(n));
    }
    if !a.mounts.is_empty() {
        set(&mut body, "Mounts", json!(a.mounts));
    }
    if let Some(i) = &a.image {
        set(&mut body, "Image", json!(i));
    }
    if let Some(s) = &a.socket {
        set(&mut body, "Socket", json!(s));
    }
    if let Some(d) = &a.discover {
        set(&mut body, "Discover", json!(d));
    }
    if let Some(t) = a.timeout {
        set(&mut body, "Timeout", json!(t.as_millis() as u64));
    }
    if let Some(t) = a.deadline {
        set(&mut body, "Deadline", json!(t.as_millis() as u64));
    }
    if let Some(p) = &a.on_failure {
        set(&mut body, "OnFailure", json!(p));
    }
    body
}

/// The seed's lines for a loaded plugin.
pub fn loaded_lines(p: &Value) -> [String; 2] {
    let name = p["Name"].as_str().unwrap_or_default();
    let version = p["Version"].as_str().unwrap_or_default();
    let shown = if version.is_empty() {
        name.to_owned()
    } else {
        format!("{name}:{version}")
    };
    let points = list(&p["Interests"]);
    let points = if points.is_empty() {
        list(&p["Implements"])
    } else {
        points
    };
    [
        format!(
            "Plugin {shown} loaded and registered with extension points: {}",
            if points.is_empty() {
                "none".to_owned()
            } else {
                points
            }
        ),
        format!("Plugin {name} activated."),
    ]
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Sends `body` to a streaming endpoint; shows progress on stderr; returns the final plugin.
async fn streamed(client: &Client, path: &str, body: &Value) -> anyhow::Result<Value> {
    let bytes = serde_json::to_vec(body)?;
    let resp = client
        .raw
        .send(
            Method::POST,
            path,
            Some("application/json"),
            raw::full(bytes),
        )
        .await?;
    let tty = std::io::stderr().is_terminal();
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut progress_shown = false;
    let mut outcome: Option<Value> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the engine's answer")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let mut err = std::io::stderr();
            if let Some(s) = v["Status"].as_str() {
                let _ = writeln!(err, "{s}");
            } else if let Some(s) = v["Progress"].as_str() {
                if tty {
                    let _ = write!(err, "\r\x1b[2K{s}");
                } else {
                    let _ = writeln!(err, "{s}");
                }
                progress_shown = true;
            } else {
                outcome = Some(v);
            }
        }
    }
    if progress_shown && tty {
        eprintln!();
    }
    match outcome {
        Some(v) if v.get("Plugin").is_some() => Ok(v["Plugin"].clone()),
        Some(v) => Err(RawError::Daemon {
            status: v["Code"].as_u64().unwrap_or(500) as u16,
            message: v["Error"].as_str().unwrap_or("unknown error").to_owned(),
        }
        .into()),
        None => anyhow::bail!("the engine closed the stream before the plugin was loaded"),
    }
}

async fn load(client: &Client, a: LoadArgs) -> anyhow::Result<()> {
    let p = streamed(client, "/berth/plugins/load", &load_body(&a)).await?;
    for l in loaded_lines(&p) {
        println!("{l}");
    }
    Ok(())
}

async fn upgrade(client: &Client, a: UpgradeArgs) -> anyhow::Result<()> {
    let mut body = json!({});
    if let Some(o) = body.as_object_mut() {
        if let Some(i) = &a.image {
            o.insert("Image".into(), json!(i));
        }
        if let Some(s) = &a.socket {
            o.insert("Socket".into(), json!(s));
        }
        if let Some(g) = a.grace {
            o.insert(
                "Grace".into(),
                json!(u64::try_from(g.as_millis()).unwrap_or(u64::MAX)),
            );
        }
        if !a.args.is_empty() {
            o.insert("Args".into(), json!(a.args));
        }
        if !a.env.is_empty() {
            o.insert("Env".into(), json!(a.env));
        }
    }
    let path = format!("/berth/plugins/{}/upgrade", a.name);
    let p = streamed(client, &path, &body).await?;
    let [first, _] = loaded_lines(&p);
    println!("{}", first.replace("loaded", "upgraded"));
    println!("Plugin {} activated.", a.name);
    Ok(())
}

/// `restarting (3 restarts, last exit 1)` for a crash-looping plugin, `failed (5 restarts, last
/// exit 1)` for one given up on, else its state.
fn state_cell(p: &Value) -> String {
    let state = p["State"].as_str().unwrap_or_default();
    let restarted = p["Restarts"].as_u64().is_some_and(|n| n > 0);
    if state != "restarting" && !(state == "failed" && restarted) {
        return state.to_owned();
    }
    let exit = p["LastExitCode"]
        .as_i64()
        .map_or(String::new(), |c| format!(", last exit {c}"));
    format!("{state} ({} restarts{exit})", p["Restarts"])
}

/// The `plugin ls` table.
pub fn ls_table(plugins: &[Value]) -> Table {
    let mut t = Table::new(&["ORDER", "NAME", "IMAGE", "PROTOCOL", "INTERESTS", "STATE"]);
    for p in plugins {
        let image = match p["Source"].as_str() {
            Some("container") => p["Image"].as_str().unwrap_or_default().to_owned(),
            _ => format!("socket:{}", p["Socket"].as_str().unwrap_or_default()),
        };
        let interests = match list(&p["Interests"]) {
            s if s.is_empty() => list(&p["Implements"]),
            s => s,
        };
        t.row(vec![
            p["Position"]
                .as_u64()
                .map(|n| n + 1)
                .unwrap_or(0)
                .to_string(),
            p["Name"].as_str().unwrap_or_default().to_owned(),
            image,
            p["Protocol"].as_str().unwrap_or_default().to_owned(),
            interests,
            state_cell(p),
        ]);
    }
    t
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<()> {
    let plugins: Vec<Value> = client
        .raw
        .json::<_, ()>(Method::GET, "/berth/plugins", None)
        .await?;
    if a.quiet {
        for p in &plugins {
            println!("{}", p["Name"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match a.format {
        Format::Json => output::print_json_lines(&plugins),
        Format::Table => {
            ls_table(&plugins).print();
            Ok(())
        }
    }
}

async fn status(client: &Client, a: StatusArgs) -> anyhow::Result<()> {
    let p = client
        .raw
        .get_value(&format!("/berth/plugins/{}", a.name))
        .await?;
    if a.format == Format::Json {
        return output::print_json_pretty(&p);
    }
    let s = |k: &str| match &p[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    println!("Name:           {}", s("Name"));
    println!(
        "Order:          {}",
        p["Position"].as_u64().map(|n| n + 1).unwrap_or(0)
    );
    println!("State:          {}", state_cell(&p));
    println!("Source:         {}", s("Source"));
    println!("Image:          {}", s("Image"));
    println!("Args:           {}", list(&p["Args"]));
    println!("Mounts:         {}", list(&p["Mounts"]));
    println!("Container:      {}", s("ContainerID"));
    println!("Socket:         {}", s("Socket"));
    println!("Protocol:       {}", s("Protocol"));
    println!("Interests:      {}", list(&p["Interests"]));
    println!("Implements:     {}", list(&p["Implements"]));
    if p["Protocol"] == "v2" {
        println!("Subscriptions:  {}", p["Subscriptions"]);
    }
    println!("Warnings:       {}", list(&p["Warnings"]));
    println!("Privileged:     {}", s("Privileged"));
    println!("Network:        {}", s("Network"));
    let d = &p["Deadlines"];
    println!(
        "Deadlines:      api {}ms, volume {}ms, other {}ms (requested: {})",
        d["Api"],
        d["Volume"],
        d["Default"],
        p["RequestedDeadlineMs"]
            .as_u64()
            .map_or("none".to_owned(), |ms| format!("{ms}ms"))
    );
    println!("Failure policy: {}", s("FailurePolicy"));
    println!("Version:        {}", s("Version"));
    println!("Author:         {}", s("Author"));
    println!("Last error:     {}", s("LastError"));
    let mut t = Table::new(&["HOOK", "CALLS", "FAILURES", "AVG LATENCY", "MAX LATENCY"]);
    if let Some(hooks) = p["Hooks"].as_object() {
        for (k, h) in hooks {
            t.row(vec![
                k.clone(),
                h["Calls"].to_string(),
                h["Failures"].to_string(),
                format!("{}µs", h["AvgLatencyUs"]),
                format!("{}µs", h["MaxLatencyUs"]),
            ]);
        }
    }
    println!("Hooks:");
    t.print();
    Ok(())
}

async fn logs(client: &Client, a: LogsArgs) -> anyhow::Result<()> {
    let mut q = vec![(
        "follow",
        if a.follow {
            "1".to_owned()
        } else {
            "0".to_owned()
        },
    )];
    if let Some(n) = a.tail {
        q.push(("tail", n.to_string()));
    }
    let path = raw::with_query(&format!("/berth/plugins/{}/logs", a.name), &q)?;
    let resp = client
        .raw
        .send(Method::GET, &path, None, raw::empty())
        .await?;
    let mut body = resp.into_body();
    let mut out = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the plugin's output")?;
        if let Some(data) = frame.data_ref() {
            out.write_all(data)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// `plugin unload`: streams the steps (the stop with its grace period, the removal) on stderr.
async fn unload(client: &Client, a: UnloadArgs) -> anyhow::Result<()> {
    let force = if a.force { "1" } else { "0" };
    let grace = a
        .grace
        .map_or(String::new(), |g| format!("{}ms", g.as_millis()));
    let path = raw::with_query(
        &format!("/berth/plugins/{}/unload", a.name),
        &[("force", force), ("grace", grace.as_str())],
    )?;
    match streamed(client, &path, &json!({})).await {
        Ok(_) => {
            println!("{}", a.name);
            Ok(())
        }
        Err(e) => {
            eprintln!("{}", crate::client::describe_error(&e));
            Err(Exit(1).into())
        }
    }
}

/// `plugin enable|disable` (Docker's endpoints): `action` is `enable` or `disable`.
async fn enable(
    client: &Client,
    name: &str,
    action: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<()> {
    let path = raw::with_query(&format!("/plugins/{name}/{action}"), query)?;
    match client.raw.call::<()>(Method::POST, &path, None).await {
        Ok(_) => {
            println!("{name}");
            Ok(())
        }
        Err(e) => {
            eprintln!("{}", crate::client::describe_error(&e.into()));
            Err(Exit(1).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: PluginCommand,
    }

    #[test]
    fn load_flags_become_the_body() {
        let t = T::try_parse_from([
            "t",
            "load",
            "--name",
            "fl",
            "--privileged",
            "-e",
            "A=1",
            "-v",
            "/srv:/srv:ro",
            "--timeout",
            "5s",
            "--on-failure",
            "ignore",
            "host",
            "/bin/x",
            "--flag",
            "v",
        ])
        .unwrap();
        let PluginCommand::Load(a) = t.cmd else {
            panic!()
        };
        let b = load_body(&a);
        assert_eq!(b["Name"], "fl");
        assert_eq!(b["Image"], "host");
        assert_eq!(b["Args"], json!(["/bin/x", "--flag", "v"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["Mounts"], json!(["/srv:/srv:ro"]));
        assert_eq!(b["Timeout"], 5000);
        assert_eq!(b["OnFailure"], "ignore");
        assert_eq!(b["Privileged"], true);
        assert!(T::try_parse_from(["t", "load", "--on-failure", "maybe", "host"]).is_err());
        assert!(T::try_parse_from(["t", "load"]).is_err());
        assert!(T::try_parse_from(["t", "load", "--socket", "/s.sock"]).is_ok());
        assert!(
            T::try_parse_from(["t", "load", "-v", "/a:/b", "--socket", "/s.sock"]).is_err(),
            "mounts are for container plugins"
        );
    }

    #[test]
    fn seed_lines() {
        let p = json!({"Name": "flocker", "Version": "v0.1", "Interests": ["volume"]});
        assert_eq!(
            loaded_lines(&p),
            [
                "Plugin flocker:v0.1 loaded and registered with extension points: volume"
                    .to_owned(),
                "Plugin flocker activated.".to_owned()
            ]
        );
    }

    #[test]
    fn ls_columns() {
        let p = json!({"Position": 0, "Name": "a", "Source": "container", "Image": "host",
                       "Protocol": "v1", "Interests": ["volume", "network"], "State": "active"});
        let out = ls_table(&[p]).render();
        assert!(out.starts_with("ORDER"), "{out}");
        assert!(out.contains("volume, network"), "{out}");
    }
}
