//! `berth create` and the flags it shares with `berth run`: turning docker's container flags
//! (`-e`, `-v`, `--mount`, `--restart`, `--net`/`--ip`, ...) into the Engine API's create body,
//! and sending it (with `?system=1` through the raw helper for `--system`).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerCreateResponse, EndpointIpamConfig, EndpointSettings, HostConfig,
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptions;
use clap::Args;
use http::Method;

use crate::client::{Client, describe_error, raw};
use crate::commands::Exit;
use crate::parse;

/// The container flags of `run` and `create`.
#[derive(Debug, Clone, Args, Default)]
pub struct ContainerFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (`K=V`, or `K` to copy it from this environment).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Bind mount or named volume: `SRC:DST[:ro|rw]`, or `DST` for an anonymous volume.
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:MODE]")]
    pub volumes: Vec<String>,
    /// Attach a mount: `type=bind|volume,source=...,target=...[,readonly][,volume-driver=D][,volume-opt=k=v]`.
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep STDIN open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Overwrite the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Restart policy: `no`, `always`, `on-failure[:N]`, `unless-stopped`.
    #[arg(long, value_parser = parse_restart)]
    pub restart: Option<RestartPolicy>,
    /// Connect the container to a network.
    #[arg(long = "net", alias = "network", value_name = "NAME")]
    pub network: Option<String>,
    /// Static IPv4 address on the `--net` network.
    #[arg(long)]
    pub ip: Option<String>,
    /// Set metadata on the container (`k=v`).
    #[arg(short = 'l', long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Volume driver for named volumes created on demand by `-v`.
    #[arg(long)]
    pub volume_driver: Option<String>,
    /// Create a hidden system container (not listed by `ps` unless `--system`); only on a
    /// privileged plugin's engine socket (`-H unix://…/.engine.sock`): elsewhere it is refused.
    #[arg(long)]
    pub system: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Memory limit (`32m`, `1g`, bytes without a unit; at least 6m).
    #[arg(short = 'm', long, value_parser = parse_bytes, value_name = "BYTES")]
    pub memory: Option<i64>,
    /// Memory plus swap limit (`-1` = unlimited swap; default twice `--memory`).
    #[arg(long, value_parser = parse_swap, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Number of CPUs (`1.5`).
    #[arg(long, value_parser = parse_cpus, value_name = "N")]
    pub cpus: Option<i64>,
    /// CPU shares (relative weight, default 1024).
    #[arg(long)]
    pub cpu_shares: Option<i64>,
    /// Tune the container's pids limit (`-1` = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// User and group: `NAME|UID[:GROUP|GID]`, resolved in the container's `/etc/passwd`.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Add Linux capabilities (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (`CHOWN`, `ALL`).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges: all capabilities and devices, no masked paths, no seccomp.
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Security options: `seccomp=unconfined`, `seccomp=PROFILE.json`, `no-new-privileges`.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Additional groups to join (name or number).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Mount a tmpfs: `PATH[:OPTIONS]`.
    #[arg(long = "tmpfs", value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Image to run.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Flags of `berth create`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// Parses `--restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match text.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (text, None),
    };
    let name_enum = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => return Err(format!("invalid restart policy {other:?}")),
    };
    let maximum_retry_count = match count {
        None => 0,
        Some(_) if name_enum != RestartPolicyNameEnum::ON_FAILURE => {
            return Err(format!(
                "invalid restart policy {text:?}: maximum retry count can only be used with 'on-failure'"
            ));
        }
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("invalid restart policy {text:?}: bad retry count {n:?}"))?,
    };
    Ok(RestartPolicy {
        name: Some(name_enum),
        maximum_retry_count: Some(maximum_retry_count),
    })
}

/// Parses a size as docker's `-m` does: a number with an optional `b`, `k`, `m` or `g` suffix
/// (binary units).
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|l| !l.is_empty())
        .unwrap_or(&lower);
    let (digits, unit) = match lower.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&lower[..i], c),
        _ => (lower, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => {
            return Err(format!(
                "invalid size {text:?}: use a number with b, k, m or g"
            ));
        }
    };
    let value: f64 = digits
        .parse()
        .ok()
        .filter(|v: &f64| *v >= 0.0)
        .ok_or_else(|| format!("invalid size {text:?}: use a number with b, k, m or g"))?;
    Ok((value * (1u64 << shift) as f64) as i64)
}

/// `--memory-swap`: a size, or `-1` for unlimited.
fn parse_swap(text: &str) -> Result<i64, String> {
    if text.trim() == "-1" {
        Ok(-1)
    } else {
        parse_bytes(text)
    }
}

/// `--cpus 1.5` → nano CPUs.
pub fn parse_cpus(text: &str) -> Result<i64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| (v * 1e9).round() as i64)
        .ok_or_else(|| format!("invalid --cpus {text:?}: use a number of CPUs, like 1.5"))
}

/// One `-v` flag, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeFlag {
    /// `SRC:DST[:MODE]`, sent verbatim in `HostConfig.Binds` (SRC starting with `/` is a host path,
    /// otherwise a named volume).
    Bind(String),
    /// `DST` alone: an anonymous volume, sent in `Volumes`.
    Anonymous(String),
}

/// Validates one `-v` value like docker does.
pub fn parse_volume(spec: &str) -> Result<VolumeFlag, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let check_dst = |dst: &str| {
        if dst.starts_with('/') {
            Ok(())
        } else {
            Err(format!(
                "invalid volume specification {spec:?}: destination {dst:?} is not an absolute path"
            ))
        }
    };
    match parts.as_slice() {
        [dst] if !dst.is_empty() => {
            check_dst(dst)?;
            Ok(VolumeFlag::Anonymous((*dst).to_string()))
        }
        [src, dst] | [src, dst, _] if !src.is_empty() && !dst.is_empty() => {
            check_dst(dst)?;
            if let [_, _, mode] = parts.as_slice() {
                for m in mode.split(',') {
                    if !matches!(
                        m,
                        "ro" | "rw"
                            | "z"
                            | "Z"
                            | "nocopy"
                            | "private"
                            | "rprivate"
                            | "shared"
                            | "rshared"
                            | "slave"
                            | "rslave"
                    ) {
                        return Err(format!(
                            "invalid mode {m:?} in volume specification {spec:?}"
                        ));
                    }
                }
            }
            Ok(VolumeFlag::Bind(spec.to_string()))
        }
        _ => Err(format!("invalid volume specification: {spec:?}")),
    }
}

/// Parses one `--mount` value (comma-separated `key=value` fields, docker's syntax).
pub fn parse_mount(spec: &str) -> Result<Mount, String> {
    let mut mount = Mount {
        typ: Some(MountType::VOLUME),
        ..Default::default()
    };
    let mut driver: Option<String> = None;
    let mut driver_opts: HashMap<String, String> = HashMap::new();
    let mut volume_labels: HashMap<String, String> = HashMap::new();
    let mut nocopy = None;
    let mut propagation = None;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), Some(v.to_string())),
            None => (field.trim().to_lowercase(), None),
        };
        let need = |v: Option<String>| {
            v.ok_or_else(|| format!("invalid field {field:?}: must be a key=value pair"))
        };
        let truthy = |v: Option<String>| -> Result<bool, String> {
            match v.as_deref() {
                None | Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(other) => Err(format!("invalid value {other:?} for {key}")),
            }
        };
        match key.as_str() {
            "type" => {
                mount.typ = Some(match need(value)?.as_str() {
                    "bind" => MountType::BIND,
                    "volume" => MountType::VOLUME,
                    "tmpfs" => MountType::TMPFS,
                    other => return Err(format!("unsupported mount type {other:?}")),
                })
            }
            "source" | "src" => mount.source = Some(need(value)?),
            "target" | "destination" | "dst" => mount.target = Some(need(value)?),
            "readonly" | "ro" => mount.read_only = Some(truthy(value)?),
            "volume-driver" => driver = Some(need(value)?),
            "volume-opt" => {
                let (k, v) = parse::key_value(&need(value)?);
                driver_opts.insert(k, v);
            }
            "volume-label" => {
                let (k, v) = parse::key_value(&need(value)?);
                volume_labels.insert(k, v);
            }
            "volume-nocopy" => nocopy = Some(truthy(value)?),
            "bind-propagation" => {
                propagation = Some(match need(value)?.as_str() {
                    "private" => MountBindOptionsPropagationEnum::PRIVATE,
                    "rprivate" => MountBindOptionsPropagationEnum::RPRIVATE,
                    "shared" => MountBindOptionsPropagationEnum::SHARED,
                    "rshared" => MountBindOptionsPropagationEnum::RSHARED,
                    "slave" => MountBindOptionsPropagationEnum::SLAVE,
                    "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
                    other => return Err(format!("invalid bind propagation {other:?}")),
                })
            }
            other => return Err(format!("unexpected key {other:?} in {spec:?}")),
        }
    }
    let Some(target) = mount.target.as_deref() else {
        return Err(format!("target is required in --mount {spec:?}"));
    };
    if !target.starts_with('/') {
        return Err(format!("target {target:?} is not an absolute path"));
    }
    if mount.typ == Some(MountType::BIND) {
        if mount.source.as_deref().is_none_or(str::is_empty) {
            return Err(format!("source is required for a bind mount in {spec:?}"));
        }
        if driver.is_some() || !driver_opts.is_empty() {
            return Err("volume options cannot be used with a bind mount".to_string());
        }
        if propagation.is_some() {
            mount.bind_options = Some(MountBindOptions {
                propagation,
                ..Default::default()
            });
        }
    }
    if mount.typ == Some(MountType::VOLUME)
        && (driver.is_some()
            || !driver_opts.is_empty()
            || !volume_labels.is_empty()
            || nocopy.is_some())
    {
        mount.volume_options = Some(MountVolumeOptions {
            no_copy: nocopy,
            labels: (!volume_labels.is_empty()).then_some(volume_labels),
            driver_config: (driver.is_some() || !driver_opts.is_empty()).then(|| {
                MountVolumeOptionsDriverConfig {
                    name: driver,
                    options: (!driver_opts.is_empty()).then_some(driver_opts),
                }
            }),
            ..Default::default()
        });
    }
    Ok(mount)
}

/// `-e K=V` passes through; `-e K` copies `K` from `lookup` (dropped when unset), like docker.
pub fn expand_env(items: &[String], lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| {
            if item.contains('=') {
                Some(item.clone())
            } else {
                lookup(item).map(|v| format!("{item}={v}"))
            }
        })
        .collect()
}

/// One `--security-opt`: `seccomp=FILE` becomes `seccomp=<the file's JSON>`, as the docker CLI
/// sends it (the engine never reads client files).
fn security_opt(opt: &str) -> Result<String, String> {
    let Some(path) = opt
        .strip_prefix("seccomp=")
        .or_else(|| opt.strip_prefix("seccomp:"))
    else {
        return Ok(opt.to_string());
    };
    if path == "unconfined" || path == "builtin" {
        return Ok(format!("seccomp={path}"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("opening seccomp profile ({path}) failed: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("compacting json for seccomp profile ({path}) failed: {e}"))?;
    Ok(format!("seccomp={json}"))
}

/// Builds the create body; `attached` says whether the client will attach to stdout/stderr.
pub fn build_body(flags: &ContainerFlags, attached: bool) -> Result<ContainerCreateBody, String> {
    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    for spec in &flags.volumes {
        match parse_volume(spec)? {
            VolumeFlag::Bind(b) => binds.push(b),
            VolumeFlag::Anonymous(dst) => anonymous.push(dst),
        }
    }
    let mounts = flags
        .mounts
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>, _>>()?;
    if flags.ip.is_some() && flags.network.is_none() {
        return Err(
            "user specified IP address is supported on user defined networks only: use --net NAME with --ip"
                .to_string(),
        );
    }
    let network_mode = flags
        .network
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let networking_config = flags.ip.as_ref().map(|ip| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network_mode.clone(),
            EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: Some(ip.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )])),
    });
    let env = expand_env(&flags.env, |k| std::env::var(k).ok());
    let entrypoint = flags.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            vec![String::new()]
        } else {
            vec![e.clone()]
        }
    });
    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode: Some(network_mode),
        restart_policy: Some(flags.restart.clone().unwrap_or(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: Some(0),
        })),
        auto_remove: Some(flags.rm),
        volume_driver: flags.volume_driver.clone(),
        memory: flags.memory,
        memory_swap: flags.memory_swap,
        nano_cpus: flags.cpus,
        cpu_shares: flags.cpu_shares,
        pids_limit: flags.pids_limit,
        cap_add: (!flags.cap_add.is_empty()).then(|| flags.cap_add.clone()),
        cap_drop: (!flags.cap_drop.is_empty()).then(|| flags.cap_drop.clone()),
        privileged: Some(flags.privileged),
        readonly_rootfs: Some(flags.read_only),
        security_opt: (!flags.security_opt.is_empty())
            .then(|| flags.security_opt.iter().map(|o| security_opt(o)).collect())
            .transpose()?,
        group_add: (!flags.group_add.is_empty()).then(|| flags.group_add.clone()),
        tmpfs: (!flags.tmpfs.is_empty()).then(|| {
            flags
                .tmpfs
                .iter()
                .map(|t| match t.split_once(':') {
                    Some((path, opts)) => (path.to_string(), opts.to_string()),
                    None => (t.clone(), String::new()),
                })
                .collect()
        }),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        hostname: flags.hostname.clone(),
        attach_stdin: Some(attached && flags.interactive),
        attach_stdout: Some(attached),
        attach_stderr: Some(attached),
        tty: Some(flags.tty),
        open_stdin: Some(flags.interactive),
        stdin_once: Some(attached && flags.interactive),
        env: (!env.is_empty()).then_some(env),
        cmd: (!flags.command.is_empty()).then(|| flags.command.clone()),
        image: Some(flags.image.clone()),
        volumes: (!anonymous.is_empty()).then_some(anonymous),
        working_dir: flags.workdir.clone(),
        user: flags.user.clone(),
        entrypoint,
        labels: Some(parse::key_values(&flags.labels)),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// Creates the container: bollard for user containers, the raw helper with `?system=1` for
/// `--system` (bollard's query type has no such field).
pub async fn create_container(
    client: &Client,
    name: Option<&str>,
    body: ContainerCreateBody,
    system: bool,
) -> anyhow::Result<ContainerCreateResponse> {
    if system {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(name) = name {
            query.push(("name", name));
        }
        query.push(("system", "1"));
        let path = raw::with_query("/containers/create", &query)?;
        Ok(client.raw.json(Method::POST, &path, Some(&body)).await?)
    } else {
        let options = CreateContainerOptions {
            name: name.map(str::to_string),
            ..Default::default()
        };
        Ok(client.docker.create_container(Some(options), body).await?)
    }
}

/// Prints a run/create failure like docker (`berth: Error response from daemon: ...`) and
/// returns exit 125.
pub fn fail_125(verb: &str, err: &anyhow::Error) -> anyhow::Error {
    eprintln!(
        "berth: {}\n\nRun 'berth {verb} --help' for more information",
        describe_error(err)
    );
    Exit(125).into()
}

/// Builds the body and creates the container, printing warnings; errors already exit 125.
pub async fn create_from_flags(
    client: &Client,
    flags: &ContainerFlags,
    attached: bool,
    verb: &str,
) -> anyhow::Result<String> {
    let body = match build_body(flags, attached) {
        Ok(mut body) => {
            if flags.tty
                && let (Some(hc), Some((rows, cols))) =
                    (body.host_config.as_mut(), crate::terminal::terminal_size())
            {
                hc.console_size = Some(vec![usize::from(rows), usize::from(cols)]);
            }
            body
        }
        Err(message) => {
            eprintln!("berth: {message}\n\nRun 'berth {verb} --help' for more information");
            return Err(Exit(125).into());
        }
    };
    match create_container(client, flags.name.as_deref(), body, flags.system).await {
        Ok(created) => {
            for warning in created.warnings.iter().filter(|w| !w.is_empty()) {
                eprintln!("WARNING: {warning}");
            }
            Ok(created.id)
        }
        Err(err) => Err(fail_125(verb, &err)),
    }
}

/// `berth create`: prints the new container's id.
pub async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let id = create_from_flags(client, &args.flags, false, "create").await?;
    println!("{id}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct Wrap {
        #[command(flatten)]
        flags: ContainerFlags,
    }

    fn flags(args: &[&str]) -> ContainerFlags {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        Wrap::try_parse_from(all).unwrap().flags
    }

    #[test]
    fn resource_flags() {
        assert_eq!(parse_bytes("32m"), Ok(32 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("512kb"), Ok(512 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        let f = flags(&[
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "10",
            "--cpu-shares",
            "512",
            "img",
        ]);
        assert_eq!(
            (f.memory, f.cpus, f.pids_limit, f.cpu_shares),
            (Some(64 << 20), Some(500_000_000), Some(10), Some(512))
        );
    }

    #[test]
    fn restart_policies() {
        let p = parse_restart("always").unwrap();
        assert_eq!(p.name, Some(RestartPolicyNameEnum::ALWAYS));
        let p = parse_restart("on-failure:3").unwrap();
        assert_eq!(p.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(p.maximum_retry_count, Some(3));
        assert_eq!(
            parse_restart("on-failure").unwrap().maximum_retry_count,
            Some(0)
        );
        assert_eq!(
            parse_restart("unless-stopped").unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            parse_restart("no").unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("on-failure:x").is_err());
        assert!(parse_restart("on-failure:-1").is_err());
    }

    #[test]
    fn volume_flags() {
        assert_eq!(
            parse_volume("/flocker/test:/data").unwrap(),
            VolumeFlag::Bind("/flocker/test:/data".into())
        );
        assert_eq!(
            parse_volume("nicevol:/data:ro").unwrap(),
            VolumeFlag::Bind("nicevol:/data:ro".into())
        );
        assert_eq!(
            parse_volume("/data").unwrap(),
            VolumeFlag::Anonymous("/data".into())
        );
        assert!(parse_volume("a:b").is_err());
        assert!(parse_volume("/a:/b:bogus").is_err());
        assert!(parse_volume("data").is_err());
        assert!(parse_volume(":/b").is_err());
        assert!(parse_volume("/a:/b:ro:x").is_err());
    }

    #[test]
    fn mount_flags() {
        let m = parse_mount(
            "type=volume,source=vd2,target=/d2,volume-driver=flocker,volume-opt=size=10G",
        )
        .unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Type":"volume","Source":"vd2","Target":"/d2",
                "VolumeOptions":{"DriverConfig":{"Name":"flocker","Options":{"size":"10G"}}}})
        );
        let m = parse_mount("type=bind,src=/a,dst=/b,readonly").unwrap();
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert!(parse_mount("type=bind,target=/b").is_err());
        assert!(parse_mount("source=x").is_err());
        assert!(parse_mount("type=weird,target=/x").is_err());
        assert!(parse_mount("target=/x,colour=red").is_err());
    }

    #[test]
    fn env_expansion() {
        let env = expand_env(&["A=1".into(), "HOME".into(), "NOPE".into()], |k| {
            (k == "HOME").then(|| "/root".to_string())
        });
        assert_eq!(env, vec!["A=1", "HOME=/root"]);
    }

    #[test]
    fn body_for_a_full_command_line() {
        let f = flags(&[
            "--name",
            "c2",
            "-e",
            "A=1",
            "-v",
            "nicevol:/data",
            "-v",
            "/anon",
            "-w",
            "/tmp",
            "--restart",
            "on-failure:2",
            "--net",
            "greatnet",
            "--ip",
            "1.2.3.4",
            "-l",
            "k=v",
            "-h",
            "box",
            "--volume-driver",
            "flocker",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            "host",
            "-c",
            "echo hi",
        ]);
        assert_eq!(f.name.as_deref(), Some("c2"));
        assert_eq!(f.command, vec!["-c", "echo hi"]);
        let body = serde_json::to_value(build_body(&f, true).unwrap()).unwrap();
        assert_eq!(body["Image"], "host");
        assert_eq!(body["Cmd"], serde_json::json!(["-c", "echo hi"]));
        assert_eq!(body["Entrypoint"], serde_json::json!(["/bin/sh"]));
        assert_eq!(body["Env"], serde_json::json!(["A=1"]));
        assert_eq!(body["Hostname"], "box");
        assert_eq!(body["WorkingDir"], "/tmp");
        assert_eq!(body["Labels"], serde_json::json!({"k":"v"}));
        assert_eq!(body["Volumes"], serde_json::json!({"/anon":{}}));
        assert_eq!(body["AttachStdout"], true);
        assert_eq!(body["AttachStdin"], false);
        let hc = &body["HostConfig"];
        assert_eq!(hc["Binds"], serde_json::json!(["nicevol:/data"]));
        assert_eq!(hc["NetworkMode"], "greatnet");
        assert_eq!(hc["AutoRemove"], true);
        assert_eq!(hc["VolumeDriver"], "flocker");
        assert_eq!(
            hc["RestartPolicy"],
            serde_json::json!({"Name":"on-failure","MaximumRetryCount":2})
        );
        assert_eq!(
            body["NetworkingConfig"]["EndpointsConfig"]["greatnet"]["IPAMConfig"]["IPv4Address"],
            "1.2.3.4"
        );
    }

    #[test]
    fn body_defaults_and_errors() {
        let body = serde_json::to_value(build_body(&flags(&["host"]), false).unwrap()).unwrap();
        assert_eq!(body["HostConfig"]["NetworkMode"], "default");
        assert_eq!(
            body["HostConfig"]["RestartPolicy"],
            serde_json::json!({"Name":"no","MaximumRetryCount":0})
        );
        assert_eq!(body["AttachStdout"], false);
        assert!(body.get("Cmd").is_none());
        assert!(body.get("NetworkingConfig").is_none());
        assert!(build_body(&flags(&["--ip", "1.2.3.4", "host"]), false).is_err());
        assert!(build_body(&flags(&["-v", "rel:/x:zz", "host"]), false).is_err());
        let f = flags(&["-it", "host", "sh"]);
        assert!(f.tty && f.interactive);
        let body = serde_json::to_value(build_body(&f, true).unwrap()).unwrap();
        assert_eq!(body["AttachStdin"], true);
        assert_eq!(body["OpenStdin"], true);
        assert_eq!(body["StdinOnce"], true);
    }
}
