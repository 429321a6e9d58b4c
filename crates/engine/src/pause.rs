//! `pause` and `unpause`: every process of a running container frozen (and thawed) through the
//! freezer of its cgroup (cgroup v2 `cgroup.freeze`, v1 `freezer.state`). `State.Paused` is kept
//! in the container's state; an exit clears it. Stopping or killing a paused container thaws it
//! once the signal is sent (see [`Engine::thaw_after_signal`]), so the signal is acted on.

use std::sync::Arc;

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;

/// Docker's refusal of an exec into a paused container (its process would join the frozen
/// cgroup and hang until the unpause).
pub(crate) fn refuse_if_paused(c: &Container) -> Result<(), EngineError> {
    if c.state().paused {
        return Err(EngineError::Conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.id()
        )));
    }
    Ok(())
}

impl Engine {
    /// Freezes a running container.
    pub async fn pause(self: &Arc<Self>, reference: &str) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let st = c.state();
        if st.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id()
            )));
        }
        if st.paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is already paused",
                c.id()
            )));
        }
        self.set_frozen(&c, true).await?;
        if let Err(e) = c.update(|st| st.paused = true) {
            // Not recorded: do not leave the container frozen behind a state that says running.
            let _ = self.set_frozen(&c, false).await;
            return Err(e);
        }
        self.events
            .publish("container", "pause", c.id(), c.attributes());
        Ok(())
    }

    /// Thaws a paused container.
    pub async fn unpause(self: &Arc<Self>, reference: &str) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let st = c.state();
        if st.status != Status::Running || !st.paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is not paused",
                c.id()
            )));
        }
        self.set_frozen(&c, false).await?;
        c.update(|st| st.paused = false)?;
        self.events
            .publish("container", "unpause", c.id(), c.attributes());
        Ok(())
    }

    /// After a stop or kill signal was sent to a paused container: thaw it so the signal is
    /// delivered (a frozen task acts on nothing, not even SIGKILL under cgroup v1).
    pub(crate) async fn thaw_after_signal(&self, c: &Arc<Container>) {
        if !c.state().paused {
            return;
        }
        match self.set_frozen(c, false).await {
            Ok(()) => {
                let _ = c.update(|st| st.paused = false);
                self.events
                    .publish("container", "unpause", c.id(), c.attributes());
            }
            Err(e) => tracing::warn!(id = c.id(), error = %e, "thawing a paused container"),
        }
    }

    /// Freezes or thaws the container's cgroup, off the async threads.
    pub(crate) async fn set_frozen(&self, c: &Container, frozen: bool) -> Result<(), EngineError> {
        let (root, id) = (self.root.clone(), c.id().to_owned());
        tokio::task::spawn_blocking(move || crate::cgroups::freeze(&root, &id, frozen))
            .await
            .map_err(|e| EngineError::Io {
                context: "freezing the container's cgroup".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(EngineError::from)
    }
}
