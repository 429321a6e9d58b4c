//! The v2 `sync` message (`docs/protocol.md#v2-sync`): a v2 plugin that subscribed to `sync` is
//! sent the objects it handles after it shook hands: at `plugin load`, at daemon boot (once the
//! owed tear-downs went out), after its container was restarted by its restart policy, and after
//! `plugin upgrade`. What it handles comes from the engine, through
//! [`PluginLauncher::sync_objects`](crate::PluginLauncher::sync_objects).
//!
//! A sync never fails the operation that triggered it: it is bounded like every call (the
//! default family's deadline, the 16 MiB reply limit), counted under the `sync` hook, and a
//! failure is logged and kept as the plugin's last error (`plugin status`).

use std::sync::Arc;

use berth_plugin_protocol::Protocol;
use berth_plugin_protocol::sync::{SyncReason, V2_SYNC_PATH};

use crate::client::PluginError;
use crate::handshake;
use crate::plugin::LoadedPlugin;
use crate::record::PluginState;
use crate::registry::PluginHost;

/// The hook key syncs are counted under (`plugin status`).
pub const SYNC_HOOK: &str = "sync";

/// What became of one sync.
#[derive(Debug)]
pub enum SyncOutcome {
    /// Not sent: the plugin is not v2, did not subscribe to this reason, is not active, or the
    /// engine could not list its objects.
    NotSent,
    /// Sent and answered 200.
    Done,
    /// Sent and answered 404: the plugin does not implement it.
    NotImplemented,
    /// Sent and failed (logged, and the plugin's last error).
    Failed(PluginError),
}

impl PluginHost {
    /// Sends `p` a sync for `reason` if it wants one (see [`SyncOutcome`]).
    pub async fn sync_plugin(&self, p: &LoadedPlugin, reason: SyncReason) -> SyncOutcome {
        if p.protocol() != Protocol::V2
            || !p.subscriptions().wants_sync(reason)
            || p.state() != PluginState::Active
        {
            return SyncOutcome::NotSent;
        }
        let Some(mut req) = self
            .launcher
            .as_ref()
            .and_then(|l| l.sync_objects(p.name()))
        else {
            return SyncOutcome::NotSent;
        };
        req.reason = Some(reason);
        req.plugin = p.name().to_owned();
        match p
            .call::<_, serde::de::IgnoredAny>(SYNC_HOOK, V2_SYNC_PATH, &req)
            .await
        {
            Ok(_) => {
                tracing::debug!(plugin = p.name(), reason = reason.as_str(), "sync sent");
                SyncOutcome::Done
            }
            Err(e) if e.is_not_found() => SyncOutcome::NotImplemented,
            Err(e) => {
                tracing::warn!(plugin = p.name(), reason = reason.as_str(), error = %e, "sync failed");
                SyncOutcome::Failed(e)
            }
        }
    }

    /// Sends plugin `name` a sync for `reason` (see [`Self::sync_plugin`]).
    pub async fn sync(&self, name: &str, reason: SyncReason) -> SyncOutcome {
        match self.get(name) {
            Some(p) => self.sync_plugin(&p, reason).await,
            None => SyncOutcome::NotSent,
        }
    }

    /// Sends every plugin that wants one a sync for `reason`, all at once (daemon boot).
    pub async fn sync_all(&self, reason: SyncReason) {
        let plugins = self.snapshot();
        futures::future::join_all(plugins.iter().map(|p| self.sync_plugin(p, reason))).await;
    }

    /// The plugin whose container is `container_id`, if any.
    pub fn plugin_of_container(&self, container_id: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot()
            .iter()
            .find(|p| p.record().container_id.as_deref() == Some(container_id))
            .cloned()
    }

    /// After the restart policy started plugin container `container_id` again: waits until the
    /// plugin answers a handshake on its socket (bounded by its load deadline), then sends it a
    /// `restart` sync. Nothing happens for a container that is no plugin's.
    pub async fn resync_after_restart(&self, container_id: &str) -> SyncOutcome {
        let Some(p) = self.plugin_of_container(container_id) else {
            return SyncOutcome::NotSent;
        };
        if p.protocol() != Protocol::V2 || !p.subscriptions().wants_sync(SyncReason::Restart) {
            return SyncOutcome::NotSent;
        }
        // A fresh connection: the one kept alive went with the old process.
        p.client().close_idle();
        let deadline = self.load_deadline(&p.record().options);
        if let Err(e) = handshake::negotiate(p.client(), &self.offer(), deadline).await {
            let reason = format!("after a restart of its container: {e}");
            tracing::warn!(plugin = p.name(), "{reason}");
            p.set_last_error(&reason);
            return SyncOutcome::NotSent;
        }
        self.sync_plugin(&p, SyncReason::Restart).await
    }
}
