//! A crash-looping plugin: its container restarts with the engine's back-off, and after
//! [`CrashLoopLimit::max_restarts`] restarts within [`CrashLoopLimit::window`] it is given up on:
//! the engine does not start it again, the plugin becomes Failed (calls to it fail closed, see
//! `docs/semantics.md`), and [`PluginHost::revive`] (`plugin enable`) or loading it again brings
//! it back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::HostError;
use crate::plugin::LoadedPlugin;
use crate::readiness::ReadyState;
use crate::record::PluginState;
use crate::registry::PluginHost;

/// When a crash-looping container plugin is given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoopLimit {
    /// Restarts allowed within [`Self::window`]; the exit after them makes the plugin Failed.
    pub max_restarts: u32,
    /// The sliding window the restarts are counted in.
    pub window: Duration,
}

impl Default for CrashLoopLimit {
    /// 5 restarts within 60 s (with the engine's back-off, 100 ms doubling, a plugin that crashes
    /// at once is given up on after about 3 s of restarts).
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// The unasked exits of one plugin's container within the crash-loop window (oldest first).
#[derive(Debug, Default)]
pub(crate) struct ExitWindow(VecDeque<Instant>);

impl ExitWindow {
    /// Records an exit at `now`, forgets the ones more than `window` before it, and returns how
    /// many are left (this one included).
    pub(crate) fn record(&mut self, now: Instant, window: Duration) -> usize {
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.0.pop_front();
        }
        self.0.push_back(now);
        self.0.len()
    }
}

impl PluginHost {
    /// Called by the engine when the container `container_id` exited unasked (not stopped or
    /// killed by a user) and its restart policy would start it again. Returns `true` when the
    /// plugin running in it is given up on: it crashed more than [`CrashLoopLimit::max_restarts`]
    /// times within the window. The plugin is then Failed with the reason, and the engine must
    /// not restart the container. A container no Active plugin runs in is none of the host's
    /// business (`false`): a load still waiting for its handshake watches the exit itself.
    pub fn container_exited(&self, container_id: &str, exit_code: i32) -> bool {
        let Some(p) = self
            .snapshot()
            .iter()
            .find(|p| p.record.container_id.as_deref() == Some(container_id))
            .cloned()
        else {
            return false;
        };
        if p.state() != PluginState::Active {
            return false;
        }
        let limit = self.config.crash_loop;
        let exits = p.record_exit(Instant::now(), limit.window);
        if exits <= usize::try_from(limit.max_restarts).unwrap_or(usize::MAX) {
            return false;
        }
        let name = p.name().to_owned();
        let reason = format!(
            "crash loop: its container was restarted {} times within {} and exited again \
             (code {exit_code}); it is not restarted any more. `berth plugin logs {name}` shows \
             why; after a fix, `berth plugin enable {name}` or loading it again starts it",
            exits - 1,
            crate::client::fmt_duration(limit.window),
        );
        tracing::warn!(plugin = %name, exit_code, "{reason}");
        p.set_last_error(&reason);
        p.set_state(PluginState::Failed);
        self.readiness.set(&name, ReadyState::Failed(reason));
        true
    }

    /// Brings a Failed container plugin back (`plugin enable`): its container is started again
    /// (or launched afresh when it is gone) and hand-shaken, and the plugin takes its place again,
    /// Active, with a fresh crash-loop window. A plugin that fails again stays Failed with the new
    /// reason.
    pub async fn revive(&self, name: &str) -> Result<Arc<LoadedPlugin>, HostError> {
        let old = self
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_owned()))?;
        if old.state() != PluginState::Failed {
            return Err(HostError::NotFailed {
                name: name.to_owned(),
                state: format!("{:?}", old.state()).to_lowercase(),
            });
        }
        // A container plugin's container is started again (or launched afresh); a plugin on a
        // socket is hand-shaken again.
        let record = match self.boot_one(old.clone()).await {
            Ok(r) => r,
            Err(e) => {
                old.set_last_error(&e.to_string());
                return Err(e);
            }
        };
        let new = Arc::new(LoadedPlugin::new(
            record,
            PluginState::Active,
            self.config.caps,
        ));
        {
            let _ops = self.ops.lock().await;
            let mut found = false;
            self.swap(|v| {
                if let Some(slot) = v.iter_mut().find(|p| Arc::ptr_eq(p, &old)) {
                    *slot = new.clone();
                    found = true;
                }
            });
            if !found {
                // Unloaded or replaced meanwhile: the new container is nobody's.
                if let Some(id) = &new.record.container_id {
                    self.stop_quietly(id).await;
                }
                return Err(HostError::NotFound(name.to_owned()));
            }
            if let Err(e) = self.persist() {
                tracing::warn!(plugin = %name, "persisting plugins after a revival: {e}");
            }
        }
        self.readiness.set(name, ReadyState::Ready);
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_counted_in_a_sliding_window() {
        let w = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut exits = ExitWindow::default();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(exits.record(at(0), w), 1);
        assert_eq!(exits.record(at(10), w), 2);
        assert_eq!(
            exits.record(at(60), w),
            3,
            "exactly the window: still counted"
        );
        assert_eq!(exits.record(at(61), w), 3, "the first one fell out");
        assert_eq!(
            exits.record(at(200), w),
            1,
            "a plugin that crashes rarely never adds up"
        );
    }

    #[test]
    fn the_default_limit_is_five_restarts_in_a_minute() {
        let l = CrashLoopLimit::default();
        assert_eq!((l.max_restarts, l.window), (5, Duration::from_secs(60)));
    }
}
