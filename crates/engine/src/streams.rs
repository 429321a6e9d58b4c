//! The streams a client reads from a container: `wait`, `attach`, `resize` and `logs`.

use std::path::Path;

use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Attached, WaitCondition, lock};
use crate::logs::{self, LogEntry, LogOptions};

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
                    // An exit ends the wait even when a restart policy starts the container
                    // again (it is `restarting`, still active), as Docker's waiters do.
                    WaitCondition::NotRunning => !o.status.is_active() || o.exits > start.exits,
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
            tty: c.config.spec.tty,
            output,
            stdin,
            container: c,
        })
    }

    /// Resizes the container's pty (no-op without one).
    pub fn resize(&self, reference: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        if let Some(pty) = lock(&c.pty).as_ref() {
            self.runtime.resize(pty, rows, cols)?;
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
        if !c.config.spec.log_config.keeps_logs() {
            return Err(EngineError::Invalid(
                "configured logging driver does not support reading".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let tty = c.config.spec.tty;
        tokio::spawn(async move {
            let path = logs::log_path(&c.dir, c.id());
            let mut seq = c.log_seq.subscribe();
            let mut observed = c.observed.subscribe();
            let mut active = observed.borrow_and_update().status.is_active();
            // `tail=N`: from the N-th last entry, found from the end of the file.
            let start = match opts.tail {
                None => Some(0),
                Some(n) => {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || logs::tail_offset(&path, n))
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
            };
            let Some(mut offset) = start else {
                return;
            };
            match send_entries(&path, offset, &opts, &tx).await {
                Some(next) => offset = next,
                None => return,
            }
            if !opts.follow {
                return;
            }
            loop {
                if !active {
                    // One last read after the container stopped: its output is complete.
                    send_entries(&path, offset, &opts, &tx).await;
                    return;
                }
                tokio::select! {
                    _ = seq.changed() => {}
                    r = observed.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
                seq.borrow_and_update();
                active = observed.borrow_and_update().status.is_active();
                match send_entries(&path, offset, &opts, &tx).await {
                    Some(next) => offset = next,
                    None => return,
                }
            }
        });
        Ok((tty, rx))
    }
}

/// Sends the wanted entries of the log from `offset` to its current end, in bounded batches;
/// returns the offset reached, or `None` when the client left or the file cannot be read.
async fn send_entries(
    path: &Path,
    mut offset: u64,
    opts: &LogOptions,
    tx: &mpsc::Sender<LogEntry>,
) -> Option<u64> {
    loop {
        let p = path.to_owned();
        let (entries, next) =
            tokio::task::spawn_blocking(move || logs::read_entries(&p, offset, logs::READ_BATCH))
                .await
                .ok()?
                .ok()?;
        let done = entries.len() < logs::READ_BATCH;
        offset = next;
        for e in entries.into_iter().filter(|e| opts.wants(e)) {
            tx.send(e).await.ok()?;
        }
        if done {
            return Some(offset);
        }
    }
}
