//! `GET /containers/{id}/json`, and the presentation both inspect and the list share: a
//! container's mounts and networks in Docker's shapes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use berth_engine::ContainerView;
use berth_engine::container::{MountKind, Status};
use berth_engine::limits::Resources;

use crate::error::ApiResult;
use crate::models::container::{
    ContainerConfig, ContainerInspect, ContainerState, EndpointIpamConfig, EndpointSettings,
    HostConfig, HostMount, LogConfig, MountPoint, NetworkSettings, RestartPolicy,
};
use crate::routes::AppState;

pub(super) async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ContainerInspect>> {
    let c = s.engine.container(&id)?;
    Ok(Json(inspect_body(&s, &s.engine.view(&c))))
}

/// A list for inspect: `null` when empty, as Docker shows unset lists.
fn non_empty<T: Clone>(list: &[T]) -> Option<Vec<T>> {
    (!list.is_empty()).then(|| list.to_vec())
}

fn kind_str(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::Volume => "volume",
    }
}

/// The container's resolved mounts (`Mounts` of inspect and of the list).
pub(super) fn mount_points(v: &ContainerView) -> Vec<MountPoint> {
    v.state
        .mounts
        .iter()
        .map(|m| {
            let volume = m.spec.kind == MountKind::Volume;
            MountPoint {
                kind: kind_str(m.spec.kind),
                name: volume.then(|| m.spec.source.clone()),
                source: m.host_path.clone(),
                requested_source: (!volume && m.host_path != m.spec.source)
                    .then(|| m.spec.source.clone()),
                destination: m.spec.destination.clone(),
                driver: volume.then(|| m.driver.clone().unwrap_or_default()),
                mode: m.spec.mode.clone(),
                rw: !m.spec.read_only,
                propagation: if volume { "" } else { "rprivate" },
            }
        })
        .collect()
}

/// `NetworkSettings.Networks`: one entry per network the container is a member of, or, for
/// `host` / `none` (no membership record), the mode's network with empty addresses.
pub(super) fn networks(s: &AppState, v: &ContainerView) -> BTreeMap<String, EndpointSettings> {
    let members = s.engine.networks.container_networks(&v.config.id);
    if members.is_empty() {
        let network_id = s
            .engine
            .networks
            .get(&v.network)
            .map(|n| n.id)
            .unwrap_or_default();
        return BTreeMap::from([(
            v.network.clone(),
            EndpointSettings {
                network_id,
                ..EndpointSettings::default()
            },
        )]);
    }
    members
        .into_iter()
        .map(|(n, m)| {
            let ep = m.endpoint.as_ref();
            let cfg = &m.config;
            let asked = m.requested_ip.is_some()
                || !cfg.ipv6_address.is_empty()
                || !cfg.link_local_ips.is_empty();
            let settings = EndpointSettings {
                ipam_config: asked.then(|| EndpointIpamConfig {
                    ipv4_address: m.requested_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    ipv6_address: cfg.ipv6_address.clone(),
                    link_local_ips: cfg.link_local_ips.clone(),
                }),
                links: non_empty(&cfg.links),
                aliases: non_empty(&m.aliases),
                driver_opts: (!cfg.driver_opts.is_empty()).then(|| cfg.driver_opts.clone()),
                network_id: n.id,
                endpoint_id: ep.map(|e| e.id.clone()).unwrap_or_default(),
                gateway: ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
                ip_address: ep.map(|e| e.address.to_string()).unwrap_or_default(),
                ip_prefix_len: ep.map(|e| e.prefix).unwrap_or(0),
                // Until it runs, the address it asked for (as Docker shows it).
                mac_address: ep
                    .map(|e| e.mac.clone())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| cfg.mac_address.clone()),
                ..EndpointSettings::default()
            };
            (n.name, settings)
        })
        .collect()
}

fn rfc3339(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// `MemorySwap` as `HostConfig` shows it, resolved as Docker does.
fn memory_swap(r: &Resources) -> i64 {
    if r.memory > 0 {
        r.memory_swap_limit().unwrap_or(-1)
    } else {
        r.memory_swap
    }
}

fn inspect_body(s: &AppState, v: &ContainerView) -> ContainerInspect {
    let st = &v.state;
    let c = &v.config;
    let sec = &c.spec.security;
    let r = &c.spec.resources;
    // `--mount`s: the mounts no `Binds` entry produced.
    let host_mounts = c
        .spec
        .mounts
        .iter()
        .filter(|m| {
            !c.spec
                .binds
                .iter()
                .any(|b| b.starts_with(&format!("{}:", m.source)))
        })
        .map(|m| HostMount {
            kind: kind_str(m.kind),
            source: m.source.clone(),
            target: m.destination.clone(),
            read_only: m.read_only,
        })
        .collect();
    let host_config = HostConfig {
        binds: Some(c.spec.binds.clone()),
        port_bindings: crate::routes::ports::host_config(&c.spec.port_bindings),
        network_mode: c.spec.network_mode.clone(),
        auto_remove: c.spec.auto_remove,
        log_config: LogConfig {
            kind: c.spec.log_config.kind.clone(),
            config: c.spec.log_config.config.clone(),
        },
        links: non_empty(&s.engine.link_names(&c.name, &st.links)),
        restart_policy: RestartPolicy {
            name: c.spec.restart_policy.name(),
            maximum_retry_count: c.spec.restart_policy.max_retries().into(),
        },
        volume_driver: c.spec.volume_driver.clone(),
        privileged: sec.privileged,
        cap_add: non_empty(&sec.cap_add),
        cap_drop: non_empty(&sec.cap_drop),
        readonly_rootfs: sec.readonly_rootfs,
        security_opt: non_empty(&sec.security_opt),
        group_add: non_empty(&sec.group_add),
        tmpfs: (!sec.tmpfs.is_empty()).then(|| sec.tmpfs.clone()),
        devices: sec
            .devices
            .iter()
            .map(|d| bollard_stubs::models::DeviceMapping {
                path_on_host: Some(d.path_on_host.clone()),
                path_in_container: Some(d.path_in_container.clone()),
                cgroup_permissions: Some(d.cgroup_permissions.clone()),
            })
            .collect(),
        device_cgroup_rules: non_empty(&sec.device_cgroup_rules),
        mounts: host_mounts,
        memory: r.memory,
        memory_swap: memory_swap(r),
        nano_cpus: r.nano_cpus,
        cpu_quota: r.cpu_quota,
        cpu_period: r.cpu_period,
        cpu_shares: r.cpu_shares,
        pids_limit: r.pids(),
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        cgroupns_mode: if sec.cgroupns_mode == "private" {
            "private"
        } else {
            "host"
        },
        isolation: c.spec.isolation.clone(),
        uts_mode: sec.uts_mode.clone(),
        pid_mode: sec.pid_mode.clone(),
        init: sec.init.then_some(true),
        volumes_from: (!c.spec.volumes_from.is_empty()).then(|| c.spec.volumes_from.clone()),
        ..HostConfig::default()
    };
    ContainerInspect {
        id: c.id.clone(),
        created: rfc3339(Some(c.created)),
        path: c.path.clone(),
        args: c.args.clone(),
        state: ContainerState {
            status: st.status_name(),
            running: st.status == Status::Running,
            paused: st.paused,
            restarting: st.status == Status::Restarting,
            oom_killed: st.oom_killed,
            dead: false,
            pid: st.pid.into(),
            exit_code: st.exit_code.into(),
            error: st.error.clone(),
            started_at: rfc3339(st.started_at),
            finished_at: rfc3339(st.finished_at),
            health: st.health.clone(),
        },
        image: c.image_id.clone(),
        resolv_conf_path: String::new(),
        hostname_path: String::new(),
        hosts_path: String::new(),
        log_path: v.log_path.to_string_lossy().into_owned(),
        name: format!("/{}", c.name),
        restart_count: st.restart_count,
        driver: "overlay",
        platform: "linux",
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        host_config,
        mounts: mount_points(v),
        config: ContainerConfig {
            hostname: c.spec.hostname.clone(),
            domainname: String::new(),
            user: c.spec.user.clone(),
            attach_stdin: c.spec.attach_stdin,
            attach_stdout: c.spec.attach_stdout,
            attach_stderr: c.spec.attach_stderr,
            tty: c.spec.tty,
            open_stdin: c.spec.open_stdin,
            stdin_once: c.spec.stdin_once,
            env: c.spec.env.clone(),
            cmd: c.spec.cmd.clone(),
            image: c.spec.image.clone(),
            volumes: None,
            working_dir: c.spec.working_dir.clone(),
            entrypoint: c.spec.entrypoint.clone(),
            labels: c.spec.labels.clone(),
            on_build: None,
            healthcheck: c.spec.healthcheck.clone(),
            stop_timeout: c.spec.stop_timeout,
        },
        network_settings: {
            let networks = networks(s, v);
            // Docker repeats the default bridge's endpoint at the top level.
            let bridge = networks.get("bridge").cloned().unwrap_or_default();
            NetworkSettings {
                bridge: String::new(),
                sandbox_id: String::new(),
                ports: crate::routes::ports::settings(s, v),
                sandbox_key: String::new(),
                ip_address: bridge.ip_address,
                ip_prefix_len: bridge.ip_prefix_len,
                gateway: bridge.gateway,
                mac_address: bridge.mac_address,
                networks,
            }
        },
        berth_system: c.spec.system,
    }
}
