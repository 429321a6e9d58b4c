//! Daemon boot and shutdown: every persisted plugin is brought up again (all at once, order
//! kept) while the readiness tracker gates the API; at shutdown container plugins stop in reverse
//! load order.

use std::sync::Arc;

use crate::client::PluginClient;
use crate::discovery;
use crate::error::HostError;
use crate::handshake;
use crate::launcher::LaunchSpec;
use crate::plugin::LoadedPlugin;
use crate::readiness::ReadyState;
use crate::record::{PluginRecord, PluginSource, PluginState};
use crate::registry::PluginHost;

impl PluginHost {
    /// Brings every persisted plugin up (daemon boot), all at once: container plugins are
    /// restarted (or launched afresh), then hand-shaken; each ends `Active` (and ready) or `Failed`
    /// with its reason. Returns the failures. The order is kept.
    pub async fn start_all(&self) -> Vec<(String, String)> {
        let plugins = self.snapshot();
        let results =
            futures::future::join_all(plugins.iter().map(|p| self.boot_one(p.clone()))).await;
        let mut failures = Vec::new();
        {
            let _ops = self.ops.lock().await;
            for (old, res) in plugins.iter().zip(results) {
                match res {
                    Ok(mut record) => {
                        let state = old.carried_state();
                        record.disabled = state == PluginState::Disabled;
                        let new = Arc::new(LoadedPlugin::new(record, state, self.config.caps));
                        self.swap(|v| {
                            if let Some(slot) = v.iter_mut().find(|p| Arc::ptr_eq(p, old)) {
                                *slot = new.clone();
                            }
                        });
                        self.readiness.set(old.name(), ReadyState::Ready);
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        old.set_last_error(&reason);
                        old.set_state(PluginState::Failed);
                        self.readiness
                            .set(old.name(), ReadyState::Failed(reason.clone()));
                        failures.push((old.name().to_owned(), reason));
                    }
                }
            }
            if let Err(e) = self.persist() {
                tracing::warn!("persisting plugins after boot: {e}");
            }
        }
        failures
    }

    pub(crate) async fn boot_one(&self, p: Arc<LoadedPlugin>) -> Result<PluginRecord, HostError> {
        let rec = p.record.clone();
        let mut opts = rec.options.clone();
        opts.name = Some(rec.name.clone());
        match &rec.source {
            PluginSource::Container {
                image,
                args,
                env,
                socket_dir,
            } => {
                let launcher = self.launcher()?;
                let restarted = match &rec.container_id {
                    Some(id) => launcher.restart(id).await.is_ok(),
                    None => false,
                };
                let container_id = if restarted {
                    rec.container_id.clone()
                } else {
                    let spec = LaunchSpec {
                        name: Some(rec.name.clone()),
                        image: image.clone(),
                        args: args.clone(),
                        env: env.clone(),
                        mounts: rec.options.mounts.clone(),
                        privileged: rec.privileged,
                        host_network: rec.options.host_network(),
                        socket_dir: socket_dir.clone(),
                    };
                    std::fs::create_dir_all(socket_dir).map_err(|source| HostError::Io {
                        path: socket_dir.clone(),
                        source,
                    })?;
                    let l = launcher.launch(spec).await.map_err(|e| HostError::Launch {
                        image: image.clone(),
                        reason: e.0,
                    })?;
                    Some(l.container_id)
                };
                let n =
                    handshake::negotiate(&p.client, &self.offer(), self.load_deadline(&opts)).await;
                match n {
                    Ok(n) => self.build_record(
                        n,
                        None,
                        rec.source.clone(),
                        rec.socket.clone(),
                        container_id,
                        &opts,
                    ),
                    Err(e) => {
                        if let Some(id) = &container_id {
                            self.stop_quietly(id).await;
                        }
                        Err(e.into())
                    }
                }
            }
            PluginSource::Socket | PluginSource::Discovered { .. } => {
                let socket = match &rec.source {
                    PluginSource::Discovered { name } => {
                        discovery::discover(name, &self.config.discovery_dirs)
                            .unwrap_or_else(|_| rec.socket.clone())
                    }
                    _ => rec.socket.clone(),
                };
                let client = PluginClient::new(rec.name.clone(), socket.clone());
                let n =
                    handshake::negotiate(&client, &self.offer(), self.load_deadline(&opts)).await?;
                self.build_record(n, Some(&rec.name), rec.source.clone(), socket, None, &opts)
            }
        }
    }

    /// Stops every container plugin, in reverse load order (daemon shutdown). The registry is kept.
    pub async fn shutdown(&self) {
        self.finish_retiring().await;
        for p in self.snapshot().iter().rev() {
            p.client.close_idle();
            if let Some(id) = &p.record.container_id {
                self.stop_quietly(id).await;
            }
        }
    }
}
