//! Dispatch of the project's MVP network messages (`/v1|v2/network/<event>`, one
//! [`NetworkMessage`] shape; see `docs/protocol.md` §3.2) to the plugins subscribed to them, per
//! the semantics of `docs/semantics.md`: `create` and `connect` are "before" hooks chained in load order (each
//! plugin sees the message merged with the previous replies; a failure under policy `abort` stops
//! the operation naming the plugin, and the plugins that already succeeded get the compensating
//! `delete`/`disconnect` in reverse order); `disconnect` and `delete` are "after" notifications in
//! reverse load order whose failures are warnings.

use std::sync::Arc;

use berth_plugin_host::protocol::mvp::{NetworkEvent, NetworkMessage};
use berth_plugin_host::{LoadedPlugin, PluginHost, chain, hooks, teardown};

use crate::{Network, NetworkError};

/// Active plugins subscribed to `event`, in load order.
pub fn subscribers(host: Option<&PluginHost>, event: NetworkEvent) -> Vec<Arc<LoadedPlugin>> {
    host.map(|h| h.subscribers(|p| p.subscriptions().wants_network(event)))
        .unwrap_or_default()
}

/// The message describing network `n` (no container fields).
pub fn network_message(n: &Network) -> NetworkMessage {
    NetworkMessage {
        network_id: Some(n.id.clone()),
        network_name: Some(n.name.clone()),
        driver: Some(n.driver.clone()),
        subnet: n.pool.map(|p| p.subnet.to_string()),
        gateway: n.pool.map(|p| p.gateway.to_string()),
        options: Some(n.options.clone()),
        ..Default::default()
    }
}

/// The compensating (tear-down) event of a set-up event.
fn undo_of(event: NetworkEvent) -> NetworkEvent {
    match event {
        NetworkEvent::Create | NetworkEvent::Delete => NetworkEvent::Delete,
        NetworkEvent::Connect | NetworkEvent::Disconnect => NetworkEvent::Disconnect,
    }
}

/// The result of a set-up chain.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The merged message after every plugin.
    pub message: NetworkMessage,
    /// Plugins that took part (they get the tear-down event if the operation fails later).
    pub called: Vec<String>,
    /// Failures skipped under policy `ignore`.
    pub warnings: Vec<String>,
}

/// Runs the "before" event `event` (`create` or `connect`) through every subscribed plugin in
/// load order. On an abort, the plugins that already succeeded get the compensating event.
pub async fn setup(
    host: Option<&PluginHost>,
    event: NetworkEvent,
    msg: NetworkMessage,
) -> Result<Setup, NetworkError> {
    let plugins = subscribers(host, event);
    if plugins.is_empty() {
        return Ok(Setup {
            message: msg,
            ..Default::default()
        });
    }
    let hook = format!("network.{}", event.as_str());
    let res = chain(&plugins, &hook, msg.clone(), |p, m| async move {
        let reply = hooks::network(&p, event, &m).await?;
        Ok(reply.map(|r| {
            let mut merged = m.clone();
            merged.apply_reply(r);
            merged
        }))
    })
    .await;
    match res {
        Ok(out) => Ok(Setup {
            message: out.value,
            called: out.succeeded,
            warnings: out.warnings,
        }),
        Err(e) => {
            let warnings = undo(host, event, &msg, &e.succeeded).await;
            for w in warnings {
                tracing::warn!(warning = %w, "network hook compensation");
            }
            Err(NetworkError::Hook(Box::new(e)))
        }
    }
}

/// Sends the compensating event of `event` to the plugins named in `only`, in reverse order.
pub async fn undo(
    host: Option<&PluginHost>,
    event: NetworkEvent,
    msg: &NetworkMessage,
    only: &[String],
) -> Vec<String> {
    let back = undo_of(event);
    let plugins: Vec<_> = subscribers(host, back)
        .into_iter()
        .filter(|p| only.iter().any(|n| n == p.name()))
        .collect();
    notify_plugins(&plugins, back, msg).await
}

/// Sends the "after" event `event` (`disconnect` or `delete`) to every subscribed plugin in
/// reverse load order; returns the failures as warnings (each is also the plugin's last error).
pub async fn notify(
    host: Option<&PluginHost>,
    event: NetworkEvent,
    msg: &NetworkMessage,
) -> Vec<String> {
    notify_plugins(&subscribers(host, event), event, msg).await
}

async fn notify_plugins(
    plugins: &[Arc<LoadedPlugin>],
    event: NetworkEvent,
    msg: &NetworkMessage,
) -> Vec<String> {
    if plugins.is_empty() {
        return Vec::new();
    }
    let hook = format!("network.{}", event.as_str());
    teardown(plugins, &hook, |p| {
        let msg = msg.clone();
        async move { hooks::network(&p, event, &msg).await.map(|_| ()) }
    })
    .await
}
