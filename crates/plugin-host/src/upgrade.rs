//! Upgrading and unloading a plugin: the new plugin is swapped in at the same position; the old
//! one is retired once the calls in flight on it finished.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_plugin_protocol::sync::SyncReason;
use berth_state::rollback::Rollback;

use crate::client::PluginClient;
use crate::error::HostError;
use crate::handshake;
use crate::plugin::LoadedPlugin;
use crate::readiness::ReadyState;
use crate::record::{PluginRecord, PluginSource, PluginState};
use crate::registry::PluginHost;

/// What an upgrade switches to.
#[derive(Debug, Clone)]
pub enum UpgradeTo {
    /// A new container from this image.
    Container {
        /// Image.
        image: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment.
        env: Vec<String>,
    },
    /// A plugin already running on this socket.
    Socket(PathBuf),
}

impl PluginHost {
    /// Waits (up to the drain grace) until nobody holds `old` any more — every dispatch snapshot
    /// that contained it is finished — then stops its container.
    async fn retire(&self, old: Arc<LoadedPlugin>, grace: Option<Duration>) {
        let until = Instant::now() + self.config.drain_grace;
        while Arc::strong_count(&old) > 1 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        old.client.close_idle();
        if let (Some(id), PluginSource::Container { socket_dir, .. }) =
            (&old.record.container_id, &old.record.source)
        {
            if let Some(l) = &self.launcher
                && let Err(e) = l.stop_with_grace(id, grace).await
            {
                tracing::warn!("stopping plugin container {id}: {e}");
            }
            let _ = std::fs::remove_dir_all(socket_dir);
        }
    }

    /// Removes `name` from the order, persists, then (after calls in flight finish) stops its
    /// container.
    pub async fn unload(&self, name: &str) -> Result<PluginRecord, HostError> {
        self.unload_with_grace(name, None).await
    }

    /// [`PluginHost::unload`], giving the container `grace` between SIGTERM and SIGKILL (`None`:
    /// the launcher's default, 10 s).
    pub async fn unload_with_grace(
        &self,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<PluginRecord, HostError> {
        self.check_unlocked(name, "unloaded")?;
        let old = {
            let _ops = self.ops.lock().await;
            let old = self
                .get(name)
                .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
            self.swap(|v| v.retain(|p| p.name() != name));
            self.persist()?;
            self.readiness.remove(name);
            old
        };
        let record = old.current_record();
        self.retire(old, grace).await;
        Ok(record)
    }

    /// Upgrades `name`: starts the new plugin, hand-shakes it, swaps it in at the same position,
    /// persists, then retires the old one once its calls in flight finished. If any step fails,
    /// the steps taken are undone newest first (one [`Rollback`]): the old plugin is swapped back
    /// in, the new container stopped and its socket dir removed; the old one stays.
    pub async fn upgrade(&self, name: &str, to: UpgradeTo) -> Result<Arc<LoadedPlugin>, HostError> {
        self.upgrade_with_progress(name, to, None, &|_| {}).await
    }

    /// [`PluginHost::upgrade`], telling `progress` what it is doing at each step (starting the
    /// new plugin, its answer, stopping the old container and its grace period).
    pub async fn upgrade_with_progress(
        &self,
        name: &str,
        to: UpgradeTo,
        grace: Option<Duration>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Arc<LoadedPlugin>, HostError> {
        self.check_unlocked(name, "upgraded")?;
        let started = Instant::now();
        let old = self
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        let mut opts = old.record.options.clone();
        opts.name = Some(name.to_owned());
        let mut undo = Rollback::new("plugin upgrade");
        let record = match to {
            UpgradeTo::Container { image, args, env } => {
                progress(format!(
                    "starting the new {name} container from image {image} and waiting for it to shake hands"
                ));
                self.launch_and_negotiate(&image, args, env, &opts, &mut undo)
                    .await?
            }
            UpgradeTo::Socket(socket) => {
                progress(format!(
                    "waiting for the new {name} on {} to shake hands",
                    socket.display()
                ));
                let client = PluginClient::new(name.to_owned(), socket.clone());
                let n =
                    handshake::negotiate(&client, &self.offer(), self.load_deadline(&opts)).await?;
                if !n.name.is_empty() && n.name != name && old.record.options.name.is_none() {
                    return Err(HostError::NameMismatch {
                        old: name.to_owned(),
                        new: n.name,
                    });
                }
                self.build_record(n, Some(name), PluginSource::Socket, socket, None, &opts)?
            }
        };
        progress(format!(
            "the new {name} answered after {}; swapping it in at the same place in the load order",
            crate::client::fmt_duration(started.elapsed())
        ));
        let state = old.carried_state();
        let record = PluginRecord {
            disabled: state == PluginState::Disabled,
            ..record
        };
        let new = Arc::new(LoadedPlugin::new(record, state, self.config.caps));
        {
            let _ops = self.ops.lock().await;
            let mut displaced = None;
            self.swap(|v| {
                if let Some(slot) = v.iter_mut().find(|p| p.name() == name) {
                    displaced = Some(std::mem::replace(slot, new.clone()));
                }
            });
            let displaced = displaced.ok_or_else(|| HostError::NotFound(name.to_owned()));
            let displaced = undo.check(displaced).await?;
            let swapped_in = new.clone();
            undo.push_sync(format!("swap plugin {name} back"), move || {
                self.swap(|v| {
                    if let Some(slot) = v.iter_mut().find(|p| Arc::ptr_eq(p, &swapped_in)) {
                        *slot = displaced;
                    }
                });
            });
            undo.check(self.persist()).await?;
        }
        undo.commit();
        self.readiness.set(name, ReadyState::Ready);
        // The new plugin catches up before the old one is retired (never fails the upgrade).
        self.sync_plugin(&new, SyncReason::Upgrade).await;
        if old.record.container_id.is_some() {
            let shown = grace
                .or_else(|| self.launcher.as_ref().and_then(|l| l.stop_grace()))
                .map_or(String::new(), |g| {
                    format!(", {} grace", crate::client::fmt_duration(g))
                });
            progress(format!(
                "the new {name} is serving; stopping the old container once its calls in flight finish (SIGTERM{shown}, then SIGKILL)"
            ));
        }
        self.retire(old, grace).await;
        Ok(new)
    }
}
