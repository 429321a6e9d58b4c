//! Upgrading and unloading a plugin: the new plugin is swapped in at the same position; the old
//! one is retired once the calls in flight on it finished.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    async fn retire(&self, old: Arc<LoadedPlugin>) {
        let until = Instant::now() + self.config.drain_grace;
        while Arc::strong_count(&old) > 1 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        old.client.close_idle();
        if let (Some(id), PluginSource::Container { socket_dir, .. }) =
            (&old.record.container_id, &old.record.source)
        {
            self.stop_quietly(id).await;
            let _ = std::fs::remove_dir_all(socket_dir);
        }
    }

    /// Removes `name` from the order, persists, then (after calls in flight finish) stops its
    /// container.
    pub async fn unload(&self, name: &str) -> Result<PluginRecord, HostError> {
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
        self.retire(old).await;
        Ok(record)
    }

    /// Upgrades `name`: starts the new plugin, hand-shakes it, swaps it in at the same position,
    /// persists, then retires the old one once its calls in flight finished. If any step fails,
    /// the steps taken are undone newest first (one [`Rollback`]): the old plugin is swapped back
    /// in, the new container stopped and its socket dir removed; the old one stays.
    pub async fn upgrade(&self, name: &str, to: UpgradeTo) -> Result<Arc<LoadedPlugin>, HostError> {
        self.check_unlocked(name, "upgraded")?;
        let old = self
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        let mut opts = old.record.options.clone();
        opts.name = Some(name.to_owned());
        let mut undo = Rollback::new("plugin upgrade");
        let record = match to {
            UpgradeTo::Container { image, args, env } => {
                self.launch_and_negotiate(&image, args, env, &opts, &mut undo)
                    .await?
            }
            UpgradeTo::Socket(socket) => {
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
        self.retire(old).await;
        Ok(new)
    }
}
