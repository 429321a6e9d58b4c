//! Mount resolution and release: bind sources through the volume plugins' hooks, named volumes
//! through their driver (`Mount`/`Unmount`), and the lookups of which containers use a volume or
//! an image.

use std::collections::BTreeMap;
use std::path::Path;

use berth_volumes::CreateVolume;

use crate::container::{ContainerConfig, MountKind, MountSpec, ResolvedMount};
use crate::engine::Engine;
use crate::error::EngineError;

impl Engine {
    /// Ids of containers whose mounts (`Mounts`, or `Binds` entries `name:/dest`) name volume
    /// `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter(|c| {
                c.config
                    .spec
                    .mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.source == name)
                    || c.config
                        .spec
                        .binds
                        .iter()
                        .any(|b| b.split(':').next() == Some(name))
            })
            .map(|c| c.id().to_owned())
            .collect()
    }

    /// Ids of containers created from image `image_id`.
    pub fn image_users(&self, image_id: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter(|c| c.config.image_id == image_id)
            .map(|c| c.id().to_owned())
            .collect()
    }

    /// The plugin host whose volume hooks see `config`'s bind mounts. System containers (the
    /// plugins themselves, `--system` agents) are not resolved through plugins: their binds are
    /// the engine's own (socket directories), and a plugin must be able to start while the
    /// others, or itself, are down.
    pub(crate) fn bind_hook_host(
        &self,
        config: &ContainerConfig,
    ) -> Option<&berth_plugin_host::PluginHost> {
        if config.spec.system {
            None
        } else {
            self.plugins().map(|h| h.as_ref())
        }
    }

    /// Resolves every mount to the host path that gets mounted (docs/architecture.md walks one `-v`): bind
    /// sources go through the volume plugins' `create`/`start` hooks (chained, in load order);
    /// named volumes are created on demand through their driver, and at start mounted through it
    /// (plugin drivers: `VolumeDriver.Mount`, counted per volume). Missing bind sources are
    /// created at start when `Binds` asked for them (Docker's `-v`). On failure everything done
    /// so far is given back (compensating `stop` hooks, `Unmount`s) before the error returns.
    pub(crate) async fn resolve_mounts(
        &self,
        config: &ContainerConfig,
        starting: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ResolvedMount>, EngineError> {
        use berth_volumes::hooks;
        let host = self.bind_hook_host(config);
        let binds: Vec<hooks::BindMount> = config
            .spec
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Bind)
            .map(|m| hooks::BindMount {
                source: m.source.clone(),
                host_path: m.source.clone(),
                destination: m.destination.clone(),
                read_only: m.read_only,
            })
            .collect();
        let event = if starting {
            berth_plugin_host::protocol::mvp::VolumeEvent::Start
        } else {
            berth_plugin_host::protocol::mvp::VolumeEvent::Create
        };
        let resolution = hooks::resolve_binds(host, &config.id, event, &binds).await?;
        warnings.extend(resolution.warnings);
        let mut resolved_binds = resolution.host_paths.into_iter();
        let mut out: Vec<ResolvedMount> = Vec::new();
        for m in &config.spec.mounts {
            let step = match m.kind {
                MountKind::Bind => {
                    let host_path = resolved_binds.next().unwrap_or_else(|| m.source.clone());
                    let p = Path::new(&host_path);
                    if starting && !p.exists() && m.create_source && host_path == m.source {
                        std::fs::create_dir_all(p)
                            .map_err(EngineError::io(format!("creating bind source {host_path}")))
                            .map(|()| (host_path, None))
                    } else {
                        Ok((host_path, None))
                    }
                }
                MountKind::Volume => self.resolve_volume(config, m, starting).await,
            };
            match step {
                Ok((host_path, driver)) => out.push(ResolvedMount {
                    spec: m.clone(),
                    host_path,
                    driver,
                }),
                Err(e) => {
                    // Binds not reached yet were resolved by the hooks too: release them all.
                    let mut done = out.clone();
                    done.extend(
                        config.spec.mounts[out.len()..]
                            .iter()
                            .filter(|x| x.kind == MountKind::Bind)
                            .map(|x| ResolvedMount {
                                spec: x.clone(),
                                host_path: x.source.clone(),
                                driver: None,
                            }),
                    );
                    self.release_mounts(config, &done).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// A named volume: created on demand through its driver; mounted through it at start.
    pub(crate) async fn resolve_volume(
        &self,
        config: &ContainerConfig,
        m: &MountSpec,
        starting: bool,
    ) -> Result<(String, Option<String>), EngineError> {
        let host = self.plugins().map(|h| h.as_ref());
        let (v, created) = self
            .volumes
            .create_with(
                host,
                CreateVolume {
                    name: Some(m.source.clone()),
                    driver: m.driver.clone(),
                    ..Default::default()
                },
            )
            .await?;
        if created {
            self.events.publish(
                "volume",
                "create",
                &v.name,
                BTreeMap::from([("driver".into(), v.driver.clone())]),
            );
        }
        let host_path = if starting {
            self.volumes.mount(host, &v.name, &config.id).await?
        } else {
            v.mountpoint.to_string_lossy().into_owned()
        };
        Ok((host_path, Some(v.driver)))
    }

    /// Gives back what [`Self::resolve_mounts`] took for `container_id`: plugin-driver volumes are
    /// unmounted (the last user sends `Unmount`) and bind plugins get the `stop` notification,
    /// all in reverse order. Failures are warnings (returned, and logged).
    pub(crate) async fn release_mounts(
        &self,
        config: &ContainerConfig,
        mounts: &[ResolvedMount],
    ) -> Vec<String> {
        let container_id = config.id.as_str();
        let host = self.plugins().map(|h| h.as_ref());
        let mut warnings = Vec::new();
        for m in mounts.iter().rev() {
            if m.spec.kind == MountKind::Volume
                && let Err(e) = self
                    .volumes
                    .unmount(host, &m.spec.source, container_id)
                    .await
            {
                warnings.push(e.to_string());
            }
        }
        warnings.extend(
            berth_volumes::hooks::notify_binds(
                self.bind_hook_host(config),
                container_id,
                berth_plugin_host::protocol::mvp::VolumeEvent::Stop,
                &bind_hook_mounts(mounts),
            )
            .await,
        );
        for w in &warnings {
            tracing::warn!(id = container_id, warning = %w, "releasing mounts");
        }
        warnings
    }
}

/// The bind mounts of `mounts` as the volume hooks see them (resolved host paths).
pub(crate) fn bind_hook_mounts(mounts: &[ResolvedMount]) -> Vec<berth_volumes::hooks::BindMount> {
    mounts
        .iter()
        .filter(|m| m.spec.kind == MountKind::Bind)
        .map(|m| berth_volumes::hooks::BindMount {
            source: m.spec.source.clone(),
            host_path: m.host_path.clone(),
            destination: m.spec.destination.clone(),
            read_only: m.spec.read_only,
        })
        .collect()
}
