//! Dispatch helpers implementing the semantics of `docs/semantics.md` for every extension point:
//!
//! - [`chain`]: set-up events and pre-hooks, in load order, each plugin seeing the previous one's
//!   output; a failure under policy `abort` stops the chain with a [`ChainError`] naming the plugin,
//!   the hook, the reason and the plugins that already succeeded (so the caller can send them the
//!   compensating tear-down); under `ignore` the plugin is skipped with a warning.
//! - [`teardown`]: tear-down events and post-hooks, in reverse load order; failures are warnings.
//! - [`notify_all`]: the same call to every plugin at once, collecting each plugin's result.

use std::future::Future;
use std::sync::Arc;

use berth_plugin_protocol::FailurePolicy;

use crate::client::PluginError;
use crate::plugin::LoadedPlugin;

/// A successful chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainOutcome<T> {
    /// The last plugin's output (the input if no plugin changed it).
    pub value: T,
    /// Plugins that answered, in order.
    pub succeeded: Vec<String>,
    /// Failures skipped under policy `ignore`.
    pub warnings: Vec<String>,
}

/// A chain aborted by a plugin whose failure policy is `abort`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{hook} aborted by plugin \"{plugin}\": {reason}")]
pub struct ChainError {
    /// The failing plugin.
    pub plugin: String,
    /// The hook.
    pub hook: String,
    /// The failure.
    pub reason: PluginError,
    /// Plugins that already succeeded for this operation, in order (compensate in reverse).
    pub succeeded: Vec<String>,
    /// Warnings collected before the abort.
    pub warnings: Vec<String>,
}

/// Runs `call` on each plugin in order, feeding each the previous output. `call` returns
/// `Ok(Some(out))` for a new value, `Ok(None)` for "unchanged / not interested".
pub async fn chain<T, F, Fut>(
    plugins: &[Arc<LoadedPlugin>],
    hook: &str,
    input: T,
    mut call: F,
) -> Result<ChainOutcome<T>, ChainError>
where
    T: Clone,
    F: FnMut(Arc<LoadedPlugin>, T) -> Fut,
    Fut: Future<Output = Result<Option<T>, PluginError>>,
{
    let mut value = input;
    let mut succeeded = Vec::new();
    let mut warnings = Vec::new();
    for p in plugins {
        match call(p.clone(), value.clone()).await {
            Ok(Some(out)) => {
                value = out;
                succeeded.push(p.name().to_owned());
            }
            Ok(None) => succeeded.push(p.name().to_owned()),
            Err(e) => match p.failure_policy() {
                FailurePolicy::Ignore => {
                    warnings.push(format!("{hook}: {e} (ignored: failure policy ignore)"));
                }
                FailurePolicy::Abort => {
                    return Err(ChainError {
                        plugin: p.name().to_owned(),
                        hook: hook.to_owned(),
                        reason: e,
                        succeeded,
                        warnings,
                    });
                }
            },
        }
    }
    Ok(ChainOutcome {
        value,
        succeeded,
        warnings,
    })
}

/// Runs `call` on each plugin in reverse order; every plugin is called, failures become warnings.
pub async fn teardown<F, Fut>(plugins: &[Arc<LoadedPlugin>], hook: &str, mut call: F) -> Vec<String>
where
    F: FnMut(Arc<LoadedPlugin>) -> Fut,
    Fut: Future<Output = Result<(), PluginError>>,
{
    let mut warnings = Vec::new();
    for p in plugins.iter().rev() {
        if let Err(e) = call(p.clone()).await
            && !e.is_not_found()
        {
            warnings.push(format!("{hook}: {e}"));
        }
    }
    warnings
}

/// Runs `call` on every plugin concurrently; results in load order.
pub async fn notify_all<R, F, Fut>(
    plugins: &[Arc<LoadedPlugin>],
    call: F,
) -> Vec<(String, Result<R, PluginError>)>
where
    F: Fn(Arc<LoadedPlugin>) -> Fut,
    Fut: Future<Output = Result<R, PluginError>>,
{
    let futs = plugins.iter().map(|p| {
        let name = p.name().to_owned();
        let fut = call(p.clone());
        async move { (name, fut.await) }
    });
    futures::future::join_all(futs).await
}
