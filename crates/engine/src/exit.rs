//! Exit handling: what happens when a container's process ends (mounts released, network
//! detached, state recorded, `die` published) and the restart policies that may start it again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::container::Status;
use crate::engine::Engine;
use crate::handle::{Container, StdinSlot, lock};

impl Engine {
    pub(crate) async fn on_exit(self: &Arc<Self>, c: &Arc<Container>, code: i32) {
        // The process is gone: unmount driver volumes and send `stop` to bind plugins before
        // the state says Exited, so a returning `stop` or `wait` sees them released.
        self.release_mounts(&c.config, &c.state().mounts).await;
        self.unpublish_ports(c.id()).await;
        self.networks.detach(c.id()).await;
        *lock(&c.pty) = None;
        *c.stdin() = StdinSlot::fresh(c.config.spec.open_stdin);
        let oom_killed = self.runtime.cgroup_exited(&self.root, c.id()).await;
        // A plugin container that crash-loops past the plugin host's limit is not started again:
        // its plugin is Failed (docs/plugins.md, "If the plugin crashes").
        let given_up = !c.state().manually_stopped && self.plugin_gives_up(c, code);
        let mut restart = false;
        let updated = c.update(|st| {
            st.status = Status::Exited;
            st.exit_code = code;
            st.oom_killed = oom_killed;
            st.pid = 0;
            st.finished_at = Some(Utc::now());
            st.paused = false;
            restart = !given_up
                && crate::update::restart_policy(&c.config, st).should_restart(
                    code,
                    st.restart_count,
                    st.manually_stopped,
                );
            if restart {
                st.status = Status::Restarting;
            }
        });
        if let Err(e) = updated {
            tracing::error!(id = c.id(), error = %e, "recording container exit");
        }
        c.observed.send_modify(|o| o.exits += 1);
        let mut attrs = c.attributes();
        attrs.insert("exitCode".into(), code.to_string());
        self.events.publish("container", "die", c.id(), attrs);
        if restart {
            let engine = self.clone();
            let container = c.clone();
            tokio::spawn(async move { engine.restart_by_policy(container).await });
        } else if c.config.spec.auto_remove {
            let engine = self.clone();
            let container = c.clone();
            tokio::spawn(async move {
                let _op = container.op.lock().await;
                if let Err(e) = engine.remove_locked(&container, true, true).await {
                    tracing::warn!(id = container.id(), error = %e, "auto-remove");
                }
            });
        }
    }

    /// Whether the plugin host gives up on the plugin running in `c` (a plugin container) after
    /// this exit: it crash-looped past its limit.
    fn plugin_gives_up(&self, c: &Container, code: i32) -> bool {
        let spec = &c.config.spec;
        let is_plugin = spec.system && spec.labels.contains_key(crate::plugins::LABEL_PLUGIN);
        is_plugin
            && spec
                .restart_policy
                .should_restart(code, c.state().restart_count, false)
            && self
                .plugins()
                .is_some_and(|h| h.container_exited(c.id(), code))
    }

    pub(crate) async fn restart_by_policy(self: Arc<Self>, c: Arc<Container>) {
        let count = c.state().restart_count;
        // Docker's back-off: 100 ms doubling, capped.
        let delay = Duration::from_millis(100u64.saturating_mul(1 << count.min(9)));
        tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
        let _op = c.op.lock().await;
        let st = c.state();
        if st.status != Status::Restarting || st.manually_stopped || c.observed.borrow().removed {
            return;
        }
        if let Err(e) = c.update(|st| st.restart_count += 1) {
            tracing::warn!(id = c.id(), error = %e, "recording restart");
        }
        if let Err(e) = self.start_locked(&c, true).await {
            tracing::warn!(id = c.id(), error = %e, "restart by policy failed");
            let _ = c.update(|st| {
                st.status = Status::Exited;
                st.finished_at = Some(Utc::now());
            });
            return;
        }
        // A plugin's container came back: once it answers, it gets a `restart` sync (v2
        // plugins that subscribed), off this container's lock.
        if c.config.spec.system
            && let Some(host) = self.plugins().cloned()
            && host.plugin_of_container(c.id()).is_some()
        {
            let id = c.id().to_owned();
            tokio::spawn(async move {
                host.resync_after_restart(&id).await;
            });
        }
    }
}
