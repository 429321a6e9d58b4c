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
use crate::launcher::PluginLauncher;
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
    /// Retires `old` in the foreground: waits (up to the drain grace) until nobody holds it any
    /// more — every dispatch snapshot that contained it is finished — then stops and removes its
    /// container, telling `progress` each step.
    async fn retire(
        &self,
        old: Arc<LoadedPlugin>,
        grace: Option<Duration>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) {
        retire_plugin(
            self.launcher.clone(),
            self.config.drain_grace,
            old,
            grace,
            progress,
        )
        .await;
    }

    /// Retires `old` in the background (see [`retire_plugin`]): the caller returns at once. The task is
    /// kept so a daemon shutdown finishes it ([`PluginHost::finish_retiring`]); if the daemon dies
    /// first, the boot sweep removes the container no record names any more.
    pub(crate) fn retire_in_background(&self, old: Arc<LoadedPlugin>, grace: Option<Duration>) {
        let (launcher, drain) = (self.launcher.clone(), self.config.drain_grace);
        let task = tokio::spawn(async move {
            let name = old.name().to_owned();
            retire_plugin(launcher, drain, old, grace, &|_| {}).await;
            tracing::info!(plugin = %name, "the old plugin container is stopped and removed");
        });
        let mut retiring = berth_state::lock(&self.retiring);
        retiring.retain(|t| !t.is_finished());
        retiring.push(task);
    }

    /// Waits until every old plugin container being retired in the background is stopped and
    /// removed (daemon shutdown). Bounded: each waits at most the drain grace, then its stop grace.
    pub async fn finish_retiring(&self) {
        let tasks = std::mem::take(&mut *berth_state::lock(&self.retiring));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::warn!("retiring an old plugin container: {e}");
            }
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
        self.unload_with_progress(name, grace, &|_| {}).await
    }

    /// [`PluginHost::unload_with_grace`], telling `progress` each step (waiting for calls in
    /// flight, stopping the container with its grace period, removing it).
    pub async fn unload_with_progress(
        &self,
        name: &str,
        grace: Option<Duration>,
        progress: &(dyn Fn(String) + Send + Sync),
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
        self.retire(old, grace, progress).await;
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
        if let Some(l) = &self.launcher {
            l.plugin_active(name).await;
        }
        self.sync_plugin(&new, SyncReason::Upgrade).await;
        if old.record.container_id.is_some() {
            let shown = shown_grace(self.launcher.as_deref(), grace);
            progress(format!(
                "the new {name} is serving; stopping the old container in the background once its calls in flight finish (SIGTERM{shown}, then SIGKILL)"
            ));
        }
        // The old container's stop (its calls in flight, then its grace period) does not hold the
        // upgrade: the new plugin already serves.
        self.retire_in_background(old, grace);
        Ok(new)
    }
}

/// `, 10s grace` for progress lines: `grace`, else the launcher's default, when known.
fn shown_grace(launcher: Option<&dyn PluginLauncher>, grace: Option<Duration>) -> String {
    grace
        .or_else(|| launcher.and_then(|l| l.stop_grace()))
        .map_or(String::new(), |g| {
            format!(", {} grace", crate::client::fmt_duration(g))
        })
}

/// Waits (up to `drain`) until nobody holds `old` any more — every dispatch snapshot that
/// contained it is finished — then stops its container (SIGTERM, `grace`, SIGKILL), removes it
/// and the plugin's socket dir, telling `progress` each step.
async fn retire_plugin(
    launcher: Option<Arc<dyn PluginLauncher>>,
    drain: Duration,
    old: Arc<LoadedPlugin>,
    grace: Option<Duration>,
    progress: &(dyn Fn(String) + Send + Sync),
) {
    let name = old.name().to_owned();
    if Arc::strong_count(&old) > 1 {
        progress(format!(
            "waiting for the calls in flight on {name} to finish (at most {})",
            crate::client::fmt_duration(drain)
        ));
    }
    let until = Instant::now() + drain;
    while Arc::strong_count(&old) > 1 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    old.client.close_idle();
    if let (Some(id), PluginSource::Container { socket_dir, .. }) =
        (&old.record.container_id, &old.record.source)
    {
        if let Some(l) = &launcher {
            let short: String = id.chars().take(12).collect();
            let shown = shown_grace(Some(l.as_ref()), grace);
            progress(format!(
                "stopping the {name} container {short} (SIGTERM{shown}, then SIGKILL)"
            ));
            let started = Instant::now();
            if let Err(e) = l.halt(id, grace).await {
                tracing::warn!("stopping plugin container {id}: {e}");
            }
            progress(format!(
                "the {name} container stopped after {}; removing the container",
                crate::client::fmt_duration(started.elapsed())
            ));
            if let Err(e) = l.stop_with_grace(id, grace).await {
                tracing::warn!("removing plugin container {id}: {e}");
            }
        }
        progress(format!(
            "removing the {name} socket directory {}",
            socket_dir.display()
        ));
        let _ = std::fs::remove_dir_all(socket_dir);
    }
}
