//! `rm`: kills a running container when forced, detaches its networks, removes its files and
//! record, and sends the volume plugins their `remove` notification.

use std::sync::Arc;

use nix::sys::signal::Signal;

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Container, lock};
use crate::mounts::bind_hook_mounts;

impl Engine {
    /// Removes a container (`force` kills a running one first).
    pub async fn remove(self: &Arc<Self>, reference: &str, force: bool) -> Result<(), EngineError> {
        self.remove_with_volumes(reference, force, false).await
    }

    /// `rm [-f] [-v]`: removes a container and, with `volumes`, its anonymous volumes
    /// (`Config.Volumes`) once it is gone; a volume another container still uses stays.
    pub async fn remove_with_volumes(
        self: &Arc<Self>,
        reference: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        self.remove_locked(&c, force, volumes).await
    }

    pub(crate) async fn remove_locked(
        &self,
        c: &Arc<Container>,
        force: bool,
        volumes: bool,
    ) -> Result<(), EngineError> {
        if c.observed.borrow().removed {
            return Ok(());
        }
        let st = c.state();
        if st.status.is_active() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.name()
                )));
            }
            // Removal must work on a full disk: nothing is written before the files go (the
            // state is updated in memory; the directory is removed below).
            if let Err(e) = c.update(|st| st.manually_stopped = true) {
                tracing::warn!(id = c.id(), error = %e, "recording a manual stop before removal");
            }
            if st.status == Status::Running {
                let rx = c.observed.subscribe();
                let exits = rx.borrow().exits;
                let _ = self.runtime.signal(st.pid, Signal::SIGKILL);
                self.thaw_after_signal(c).await;
                c.wait_exit_after(rx, exits).await;
            }
        }
        // In memory only: it refuses a start, a copy or a second removal meanwhile, and a
        // removal a crash cuts leaves the container as last recorded (exited), so it can be
        // removed again; a durable `removing` record would cost a write and two fsyncs per
        // `rm` (and per `run --rm`) that no boot reads (docs/semantics.md, "Durability").
        c.update_in_memory(|st| st.status = Status::Removing);
        self.unpublish_ports(c.id()).await;
        self.networks.detach(c.id()).await;
        self.networks.unregister(c.id());
        {
            let mut table = lock(&self.table);
            table.by_id.remove(c.id());
            let name = c.name();
            if table.names.get(&name).map(String::as_str) == Some(c.id()) {
                table.names.remove(&name);
            }
        }
        let (dir, root, id) = (c.dir.clone(), self.root.clone(), c.id().to_owned());
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
            runtime.cleanup(&dir)?;
            runtime.remove_cgroup(&root, &id)?;
            berth_state::remove_dir_durable(&dir)?;
            Ok(())
        })
        .await
        .map_err(|e| EngineError::Io {
            context: "removing the container's files".into(),
            source: std::io::Error::other(e),
        })??;
        c.observed.send_modify(|o| o.removed = true);
        self.events
            .publish("container", "destroy", c.id(), c.attributes());
        // After the fact: the `remove` volume notification (v2 subscribers, reverse order).
        let warnings = berth_volumes::hooks::notify_binds(
            self.bind_hook_host(&c.config),
            c.id(),
            berth_plugin_host::protocol::mvp::VolumeEvent::Remove,
            &bind_hook_mounts(&st.mounts),
        )
        .await;
        for w in warnings {
            tracing::warn!(id = c.id(), warning = %w, "volume remove notification");
        }
        if volumes {
            self.remove_anonymous_volumes(c).await;
        }
        Ok(())
    }

    /// Removes the removed container's anonymous volumes; failures (a volume another container
    /// took with `--volumes-from`, a driver's error) are logged, as Docker logs them.
    async fn remove_anonymous_volumes(&self, c: &Container) {
        let anonymous = c
            .config
            .spec
            .mounts
            .iter()
            .filter(|m| m.anonymous && m.kind == crate::container::MountKind::Volume);
        for m in anonymous {
            if let Err(e) = self.remove_volume(&m.source).await {
                tracing::warn!(id = c.id(), volume = m.source, error = %e, "removing an anonymous volume");
            }
        }
    }
}
