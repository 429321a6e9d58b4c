//! Bind-mount resolution through the `volume` extension point (`docs/architecture.md`, data flows 1–2).
//!
//! - [`resolve_binds`]: the "before" hooks `create` and `start`. For every bind mount, in order,
//!   each volume plugin in load order gets `{HostPath, ContainerID}` and may return a new
//!   `HostPath`; the next plugin sees it (chain). A 404 is "not interested". A rewritten path must
//!   be absolute and exist. Any failure aborts with the plugin's name, the hook and the reason,
//!   after the compensating `stop` went to every plugin that already succeeded, in reverse order.
//! - [`notify_binds`]: the "after" notifications `stop` and `remove` (v2 plugins subscribed to
//!   them), in reverse load order and reverse mount order; failures are warnings.

use std::path::Path;
use std::sync::Arc;

use berth_plugin_host::protocol::mvp::{VolumeEvent, VolumeMessage};
use berth_plugin_host::{LoadedPlugin, PluginHost, chain, hooks, teardown};

use crate::VolumeError;

/// One bind mount as the hooks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    /// The source as the user gave it (`/flocker/test`).
    pub source: String,
    /// The current host path: the source before resolution, the resolved path after.
    pub host_path: String,
    /// The destination inside the container.
    pub destination: String,
    pub read_only: bool,
}

/// The outcome of [`resolve_binds`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BindResolution {
    /// The resolved host path of each bind, in input order.
    pub host_paths: Vec<String>,
    /// Failures skipped under failure policy `ignore`.
    pub warnings: Vec<String>,
}

fn message(b: &BindMount, container_id: &str, host_path: String) -> VolumeMessage {
    let mut m = VolumeMessage::v1(host_path, container_id);
    m.container_path = Some(b.destination.clone());
    m.read_only = Some(b.read_only);
    m
}

fn volume_plugins(host: Option<&PluginHost>, event: VolumeEvent) -> Vec<Arc<LoadedPlugin>> {
    host.map(|h| h.subscribers(|p| p.subscriptions().wants_volume(event)))
        .unwrap_or_default()
}

/// Runs the `create` or `start` volume hook for every bind of `container_id` (see the module
/// doc). `binds[i].host_path` is the input of the chain (normally the user's source).
pub async fn resolve_binds(
    host: Option<&PluginHost>,
    container_id: &str,
    event: VolumeEvent,
    binds: &[BindMount],
) -> Result<BindResolution, VolumeError> {
    let plugins = volume_plugins(host, event);
    let mut out = BindResolution::default();
    if plugins.is_empty() {
        out.host_paths = binds.iter().map(|b| b.host_path.clone()).collect();
        return Ok(out);
    }
    let hook = hooks::volume_hook_name(event);
    // Binds fully resolved so far, for compensation.
    let mut done: Vec<BindMount> = Vec::new();
    for b in binds {
        let res = chain(&plugins, &hook, b.host_path.clone(), |p, hp| {
            let msg = message(b, container_id, hp);
            async move { hooks::volume(&p, event, &msg).await }
        })
        .await;
        match res {
            Ok(outcome) => {
                out.warnings.extend(outcome.warnings);
                let resolved = outcome.value;
                if resolved != b.host_path
                    && let Err(e) = check_resolved(&resolved)
                {
                    compensate(&plugins, container_id, &done, Some((b, &plugins[..]))).await;
                    return Err(e);
                }
                let mut r = b.clone();
                r.host_path = resolved.clone();
                done.push(r);
                out.host_paths.push(resolved);
            }
            Err(e) => {
                let succeeded: Vec<Arc<LoadedPlugin>> = plugins
                    .iter()
                    .filter(|p| e.succeeded.iter().any(|n| n == p.name()))
                    .cloned()
                    .collect();
                compensate(&plugins, container_id, &done, Some((b, &succeeded))).await;
                return Err(e.into());
            }
        }
    }
    Ok(out)
}

/// A path a plugin returned must be absolute and exist.
fn check_resolved(path: &str) -> Result<(), VolumeError> {
    let bad = |reason: &str| VolumeError::BadPath {
        what: "volume plugin resolved the bind source to".into(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !Path::new(path).is_absolute() {
        return Err(bad("which is not an absolute path"));
    }
    if !Path::new(path).exists() {
        return Err(bad("which does not exist"));
    }
    Ok(())
}

/// Compensation of an aborted resolution: `stop` to `partial.1` for the bind being resolved, then
/// to every plugin for each bind already resolved, all in reverse order. Failures are only logged
/// (the operation already failed with the first error).
async fn compensate(
    plugins: &[Arc<LoadedPlugin>],
    container_id: &str,
    done: &[BindMount],
    partial: Option<(&BindMount, &[Arc<LoadedPlugin>])>,
) {
    let mut warnings = Vec::new();
    if let Some((b, succeeded)) = partial {
        warnings.extend(stop_all(succeeded, container_id, VolumeEvent::Stop, b).await);
    }
    for b in done.iter().rev() {
        warnings.extend(stop_all(plugins, container_id, VolumeEvent::Stop, b).await);
    }
    for w in warnings {
        tracing::warn!(container = container_id, warning = %w, "volume hook compensation");
    }
}

async fn stop_all(
    plugins: &[Arc<LoadedPlugin>],
    container_id: &str,
    event: VolumeEvent,
    b: &BindMount,
) -> Vec<String> {
    let hook = hooks::volume_hook_name(event);
    let msg = message(b, container_id, b.host_path.clone());
    teardown(plugins, &hook, |p| {
        let msg = msg.clone();
        async move { hooks::volume(&p, event, &msg).await.map(|_| ()) }
    })
    .await
}

/// Sends the "after" notification `event` (`stop` or `remove`) for every bind (`host_path` = the
/// resolved path), in reverse mount order and reverse load order. Returns the failures as
/// warnings; each is also the plugin's last error.
pub async fn notify_binds(
    host: Option<&PluginHost>,
    container_id: &str,
    event: VolumeEvent,
    binds: &[BindMount],
) -> Vec<String> {
    let plugins = volume_plugins(host, event);
    let mut warnings = Vec::new();
    if plugins.is_empty() {
        return warnings;
    }
    for b in binds.iter().rev() {
        warnings.extend(stop_all(&plugins, container_id, event, b).await);
    }
    warnings
}

/// Sends the compensating `stop` for binds that were resolved by a successful `start` chain
/// when a later step of the start failed (driver mount, network, runtime).
pub async fn release_binds(host: Option<&PluginHost>, container_id: &str, binds: &[BindMount]) {
    for w in notify_binds(host, container_id, VolumeEvent::Stop, binds).await {
        tracing::warn!(container = container_id, warning = %w, "volume hook compensation");
    }
}
