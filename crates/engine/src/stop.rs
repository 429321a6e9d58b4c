//! `stop`, `kill` and `restart`, and the parsing of signal names.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;

/// How long `kill` with SIGKILL waits for the container's exit to be recorded.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// Parses a signal as Docker accepts it: `KILL`, `SIGKILL`, `9`.
pub fn parse_signal(s: &str) -> Result<Signal, EngineError> {
    let bad = || EngineError::Invalid(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

impl Engine {
    /// Stops a container: `signal` (default SIGTERM), then SIGKILL after `timeout` seconds
    /// (default 10; negative waits forever).
    pub async fn stop(
        self: &Arc<Self>,
        reference: &str,
        timeout: Option<i64>,
        signal: Option<Signal>,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout, signal).await
    }

    pub(crate) async fn stop_locked(
        &self,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<Signal>,
    ) -> Result<(), EngineError> {
        let st = c.state();
        match st.status {
            Status::Restarting => {
                c.update(|st| {
                    st.manually_stopped = true;
                    st.status = Status::Exited;
                })?;
                return Ok(());
            }
            Status::Running => {}
            _ => return Err(EngineError::NotModified("container already stopped".into())),
        }
        // Stopping must work on a full disk: the intent is kept in memory even if not on disk.
        if let Err(e) = c.update(|st| st.manually_stopped = true) {
            tracing::warn!(id = c.id(), error = %e, "recording a manual stop");
        }
        let rx = c.observed.subscribe();
        let exits = rx.borrow().exits;
        let _ = self
            .runtime
            .signal(st.pid, signal.unwrap_or(Signal::SIGTERM));
        self.thaw_after_signal(c).await;
        let grace = timeout.or(c.config.spec.stop_timeout).unwrap_or(10);
        let waited = if grace < 0 {
            c.wait_exit_after(rx.clone(), exits).await;
            true
        } else {
            tokio::time::timeout(
                Duration::from_secs(grace as u64),
                c.wait_exit_after(rx.clone(), exits),
            )
            .await
            .is_ok()
        };
        if !waited {
            let _ = self.runtime.signal(st.pid, Signal::SIGKILL);
            c.wait_exit_after(rx, exits).await;
        }
        self.events
            .publish("container", "stop", c.id(), c.attributes());
        Ok(())
    }

    /// Sends a signal (default SIGKILL) to a running container.
    pub async fn kill(
        self: &Arc<Self>,
        reference: &str,
        signal: Option<Signal>,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let st = c.state();
        if st.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {reference}: container {} is not running",
                c.id()
            )));
        }
        let sig = signal.unwrap_or(Signal::SIGKILL);
        if sig == Signal::SIGKILL {
            // Recorded in memory even when the disk is full (the kill must still happen).
            if let Err(e) = c.update(|st| st.manually_stopped = true) {
                tracing::warn!(id = c.id(), error = %e, "recording a manual stop");
            }
        }
        let rx = c.observed.subscribe();
        let exits = rx.borrow().exits;
        self.runtime.signal(st.pid, sig)?;
        if sig == Signal::SIGKILL {
            self.thaw_after_signal(&c).await;
        }
        let mut attrs = c.attributes();
        attrs.insert("signal".into(), (sig as i32).to_string());
        self.events.publish("container", "kill", c.id(), attrs);
        if sig == Signal::SIGKILL {
            // As Docker does: a SIGKILL returns once the container no longer runs (its exit
            // recorded), so `kill; inspect` sees it exited. Bounded: a process stuck in the
            // kernel is reported, not waited for forever.
            let exited = tokio::time::timeout(KILL_WAIT, c.wait_exit_after(rx, exits)).await;
            if exited.is_err() {
                return Err(EngineError::Io {
                    context: format!(
                        "container {} did not exit within {}s of SIGKILL",
                        c.id(),
                        KILL_WAIT.as_secs()
                    ),
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
        }
        Ok(())
    }

    /// Stops (if running) and starts a container again.
    pub async fn restart(
        self: &Arc<Self>,
        reference: &str,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        match self.stop_locked(&c, timeout, None).await {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&c, false).await?;
        self.events
            .publish("container", "restart", c.id(), c.attributes());
        Ok(())
    }
}
