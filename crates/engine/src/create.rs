//! `create`: validates a create request, reserves the name, writes the record and resolves the
//! mounts (volume plugins' `create` hooks, named volumes created on demand), then registers the
//! container with its network.

use std::path::Path;
use std::sync::Arc;

use berth_state::rollback::Rollback;
use chrono::Utc;

use crate::container::{
    ContainerConfig, ContainerSpec, ContainerState, MountKind, MountSpec, RestartPolicy,
    generated_name,
};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Container, lock};
use crate::images::Image;

/// What a client asks for in `POST /containers/create` (already parsed from the wire).
#[derive(Debug, Clone, Default)]
pub struct CreateContainer {
    pub name: Option<String>,
    /// `NetworkingConfig.EndpointsConfig.<net>.IPAMConfig.IPv4Address` (`--ip`); empty = none.
    pub ipv4_address: String,
    /// `NetworkingConfig.EndpointsConfig.<net>.Aliases` (`--network-alias`).
    pub aliases: Vec<String>,
    /// `HostConfig.Links`: `name[:alias]` of existing containers.
    pub links: Vec<String>,
    /// The other settings of `NetworkingConfig.EndpointsConfig.<net>` (links, MAC address,
    /// ...; `Config.MacAddress` lands here too).
    pub endpoint: berth_networks::EndpointConfig,
    /// The settings; `create` fills the empty ones from the image and the defaults.
    pub spec: ContainerSpec,
}

impl Engine {
    /// Creates a container. Everything is validated before anything touches the disk; a failure
    /// leaves no record and no directory.
    pub async fn create(
        self: &Arc<Self>,
        mut req: CreateContainer,
    ) -> Result<(String, Vec<String>), EngineError> {
        let name = match &req.name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n).to_owned();
                berth_state::validate_name("container", &n)?;
                Some(n)
            }
            _ => None,
        };
        crate::security::validate(&req.spec.security)?;
        crate::devices::validate(&req.spec.security)?;
        crate::security::validate_user(&req.spec.user)?;
        if let Some(h) = &req.spec.healthcheck {
            h.validate()?;
        }
        req.spec.log_config = std::mem::take(&mut req.spec.log_config).validated()?;
        if req.spec.security.uts_mode == "host" && !req.spec.hostname.is_empty() {
            return Err(EngineError::Invalid(
                "Conflicting options: hostname and the UTS mode".into(),
            ));
        }
        if !matches!(req.spec.isolation.as_str(), "" | "default") {
            return Err(EngineError::Invalid(format!(
                "invalid isolation {:?}: Linux only supports \"default\"",
                req.spec.isolation
            )));
        }
        let links = self.resolve_links(&req.links, &req.spec.network_mode)?;
        req.endpoint.validate()?;
        let image = self.images.get(&req.spec.image)?;
        let entrypoint = req.spec.entrypoint.clone().filter(|e| !e.is_empty());
        let cmd = match (&req.spec.cmd, &entrypoint) {
            (Some(c), _) if !c.is_empty() => Some(c.clone()),
            (_, Some(_)) => None,
            _ => image.config.cmd.clone(),
        };
        let entry = entrypoint
            .clone()
            .or_else(|| image.config.entrypoint.clone())
            .unwrap_or_default();
        let argv: Vec<String> = entry
            .into_iter()
            .chain(cmd.clone().unwrap_or_default())
            .collect();
        let Some((path, args)) = argv.split_first() else {
            return Err(EngineError::Invalid(
                "no command specified: give a command or use an image with a CMD".into(),
            ));
        };
        let mut env = image.config.env.clone();
        for kv in &req.spec.env {
            let key = kv.split('=').next().unwrap_or_default();
            if key.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "invalid environment variable: {kv:?}"
                )));
            }
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        let mut mounts = Vec::new();
        for m in &req.spec.mounts {
            if !m.destination.starts_with('/') {
                return Err(EngineError::Invalid(format!(
                    "invalid mount config: the target {:?} must be an absolute path",
                    m.destination
                )));
            }
            match m.kind {
                // `Binds` (`-v`) sources are created at start when missing; `Mounts` must exist.
                MountKind::Bind if !m.create_source && !Path::new(&m.source).exists() => {
                    return Err(EngineError::Invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                MountKind::Volume => berth_state::validate_name("volume", &m.source)?,
                MountKind::Bind => {}
            }
            mounts.push(m.clone());
        }
        let inherited = self.volumes_from(&req.spec.volumes_from, &mounts)?;
        mounts.extend(inherited);
        image_volumes(&image.config.volumes, &req.spec.volume_driver, &mut mounts);
        for (i, m) in mounts.iter().enumerate() {
            if mounts[..i].iter().any(|o| o.destination == m.destination) {
                return Err(EngineError::Invalid(format!(
                    "duplicate mount point: {}",
                    m.destination
                )));
            }
        }
        if req.spec.auto_remove && req.spec.restart_policy != RestartPolicy::No {
            return Err(EngineError::Invalid(
                "conflicting options: cannot combine AutoRemove with a restart policy".into(),
            ));
        }
        self.networks
            .check_attach(&req.spec.network_mode, &req.ipv4_address)?;
        req.spec.resources.validate()?;

        let id = berth_state::new_id();
        // Reserve the name (or generate one) atomically.
        let name = {
            let mut table = lock(&self.table);
            let name = match name {
                Some(n) => {
                    if let Some(other) = table.names.get(&n) {
                        return Err(EngineError::Conflict(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    n
                }
                None => (0..)
                    .map(|i| generated_name(&id, i))
                    .find(|n| !table.names.contains_key(n))
                    .unwrap_or_else(|| id[..12].to_owned()),
            };
            table.names.insert(name.clone(), id.clone());
            name
        };
        let config = Self::build_config(
            &id, &name, &req, &image, path, args, cmd, entrypoint, env, mounts,
        );
        // Each step that succeeds records its undo; a failing step unwinds them newest first,
        // so a failure leaves no name, no directory, and no plugin holding a mount.
        let mut undo = Rollback::new("create");
        let reserved = name.clone();
        undo.push_sync("reserve the name", move || {
            lock(&self.table).names.remove(&reserved);
        });
        let dir = self.containers_dir.join(&id);
        undo.check(
            std::fs::create_dir_all(&dir)
                .and_then(|()| {
                    // Private: the config holds the environment, the upper dir the files.
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(EngineError::io(format!("creating {}", dir.display()))),
        )
        .await?;
        let made = dir.clone();
        undo.push_sync("create the container directory", move || {
            let _ = berth_state::remove_dir_durable(&made);
        });
        let mut warnings = Vec::new();
        // The volume plugins' `create` hooks (resolve_mounts gives back its own partial work).
        let resolved = undo
            .check(self.resolve_mounts(&config, false, &mut warnings).await)
            .await?;
        let (held_config, held) = (config.clone(), resolved.clone());
        undo.push("resolve the mounts", move || async move {
            self.release_mounts(&held_config, &held).await;
        });
        let mut state = ContainerState::new();
        state.mounts = resolved;
        state.links = links;
        let stored = berth_state::store_json(&dir.join("state.json"), &state)
            // config.json last: its presence marks a complete record.
            .and_then(|()| berth_state::store_json(&dir.join("config.json"), &config));
        undo.check(stored.map_err(EngineError::from)).await?;
        let registered = self.networks.register_with(
            &id,
            &name,
            &req.spec.network_mode,
            &req.ipv4_address,
            &req.aliases,
            req.endpoint.clone(),
        );
        undo.check(registered.map_err(EngineError::from)).await?;
        undo.commit();
        let c = Container::new(config, state, dir);
        lock(&self.table).by_id.insert(id.clone(), c.clone());
        self.events
            .publish("container", "create", &id, c.attributes());
        Ok((id, warnings))
    }

    /// The container's record as `create` writes it.
    #[allow(clippy::too_many_arguments)]
    fn build_config(
        id: &str,
        name: &str,
        req: &CreateContainer,
        image: &Image,
        path: &str,
        args: &[String],
        cmd: Option<Vec<String>>,
        entrypoint: Option<Vec<String>>,
        env: Vec<String>,
        mounts: Vec<MountSpec>,
    ) -> ContainerConfig {
        let spec = &req.spec;
        ContainerConfig {
            id: id.to_owned(),
            name: name.to_owned(),
            created: Utc::now(),
            image_id: image.id.clone(),
            path: path.to_owned(),
            args: args.to_vec(),
            spec: ContainerSpec {
                cmd,
                entrypoint,
                env,
                working_dir: if spec.working_dir.is_empty() {
                    image.config.working_dir.clone()
                } else {
                    spec.working_dir.clone()
                },
                hostname: if spec.hostname.is_empty() {
                    id[..12].to_owned()
                } else {
                    spec.hostname.clone()
                },
                mounts,
                network_mode: if spec.network_mode.is_empty() {
                    "default".into()
                } else {
                    spec.network_mode.clone()
                },
                exposed_ports: exposed_ports(spec, &image.config.exposed_ports),
                healthcheck: crate::health::HealthConfig::merged(
                    spec.healthcheck.clone(),
                    image.config.healthcheck.as_ref(),
                ),
                ..spec.clone()
            },
        }
    }
}

/// The image's `Config.Volumes`: each absolute path no mount of the container already covers gets an
/// anonymous volume (a random name, the container's volume driver), as Docker does; removed
/// with the container by `rm -v` and `--rm`.
fn image_volumes(paths: &[String], volume_driver: &str, mounts: &mut Vec<MountSpec>) {
    let clean = |p: &str| p.trim_end_matches('/').to_owned();
    for path in paths {
        if !path.starts_with('/') || mounts.iter().any(|m| clean(&m.destination) == clean(path)) {
            continue;
        }
        mounts.push(MountSpec {
            anonymous: true,
            kind: MountKind::Volume,
            source: berth_state::new_id(),
            destination: path.clone(),
            read_only: false,
            mode: String::new(),
            driver: (!volume_driver.is_empty()).then(|| volume_driver.to_owned()),
            create_source: false,
        });
    }
}

/// The container's exposed ports: its own, the image's and the published ones, each once, in
/// that order; a port without a protocol is `tcp`.
fn exposed_ports(spec: &ContainerSpec, image: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let published = spec.port_bindings.iter().map(|b| b.key());
    for p in spec
        .exposed_ports
        .iter()
        .chain(image)
        .cloned()
        .chain(published)
    {
        let p = if p.contains('/') {
            p
        } else {
            format!("{p}/tcp")
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}
