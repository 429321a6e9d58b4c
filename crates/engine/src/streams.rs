//! The streams a client reads from a container: `wait`, `attach`, `resize` and `logs`.

use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Attached, WaitCondition, lock};
use crate::logs::{self, LogEntry, LogOptions};
use crate::runtime::{self};

impl Engine {
    /// Resolves a wait: the future completes with the exit code once `condition` holds.
    pub fn wait(
        &self,
        reference: &str,
        condition: WaitCondition,
    ) -> Result<impl std::future::Future<Output = i32> + Send + 'static, EngineError> {
        let c = self.container(reference)?;
        let mut rx = c.observed.subscribe();
        let start = *rx.borrow();
        Ok(async move {
            let _keep = c;
            loop {
                let o = *rx.borrow_and_update();
                let done = match condition {
                    WaitCondition::NotRunning => !o.status.is_active(),
                    WaitCondition::NextExit => o.exits > start.exits || o.removed,
                    WaitCondition::Removed => o.removed,
                };
                if done {
                    return o.exit_code;
                }
                if rx.changed().await.is_err() {
                    return o.exit_code;
                }
            }
        })
    }

    /// Attaches to a container's output (and stdin if `stdin` and the container has one).
    pub fn attach(&self, reference: &str, stdin: bool) -> Result<Attached, EngineError> {
        let c = self.container(reference)?;
        let output = c.output.subscribe();
        let stdin = if stdin { c.stdin().tx.clone() } else { None };
        Ok(Attached {
            tty: c.config.tty,
            output,
            stdin,
            container: c,
        })
    }

    /// Resizes the container's pty (no-op without one).
    pub fn resize(&self, reference: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        if let Some(pty) = lock(&c.pty).as_ref() {
            runtime::resize(pty, rows, cols)?;
        }
        Ok(())
    }

    /// Streams a container's log entries per `opts` (following until the container stops when
    /// `opts.follow`). Returns whether the container has a tty, and the receiver of entries.
    pub fn logs(
        &self,
        reference: &str,
        opts: LogOptions,
    ) -> Result<(bool, mpsc::Receiver<LogEntry>), EngineError> {
        let c = self.container(reference)?;
        let (tx, rx) = mpsc::channel(256);
        let tty = c.config.tty;
        tokio::spawn(async move {
            let path = logs::log_path(&c.dir, c.id());
            let mut seq = c.log_seq.subscribe();
            let mut observed = c.observed.subscribe();
            let read = |offset: u64| {
                let path = path.clone();
                async move {
                    tokio::task::spawn_blocking(move || logs::read_entries(&path, offset))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                }
            };
            let mut active = observed.borrow_and_update().status.is_active();
            let Ok((entries, mut offset)) = read(0).await else {
                return;
            };
            let mut wanted: Vec<_> = entries.into_iter().filter(|e| opts.wants(e)).collect();
            if let Some(n) = opts.tail {
                let skip = wanted.len().saturating_sub(n);
                wanted.drain(..skip);
            }
            for e in wanted {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if !opts.follow {
                return;
            }
            loop {
                if !active {
                    // One last read after the container stopped: its output is complete.
                    if let Ok((entries, _)) = read(offset).await {
                        for e in entries.into_iter().filter(|e| opts.wants(e)) {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                    }
                    return;
                }
                tokio::select! {
                    _ = seq.changed() => {}
                    r = observed.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
                seq.borrow_and_update();
                active = observed.borrow_and_update().status.is_active();
                let Ok((entries, next)) = read(offset).await else {
                    return;
                };
                offset = next;
                for e in entries.into_iter().filter(|e| opts.wants(e)) {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok((tty, rx))
    }
}
