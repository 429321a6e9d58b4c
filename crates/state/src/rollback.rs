//! The one rollback primitive: a multi-step operation records, after each step that succeeded,
//! the step that undoes it; on failure the undo steps run in reverse order (the last step taken
//! is the first one undone), on success they are dropped.
//!
//! ```
//! # use berth_state::rollback::Rollback;
//! # futures::executor::block_on(async {
//! let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let mut undo = Rollback::new("create");
//! for step in ["a", "b"] {
//!     let log = log.clone();
//!     undo.push(step, move || async move { log.lock().unwrap().push(step) });
//! }
//! let failed: Result<(), &str> = Err("c failed");
//! assert!(undo.check(failed).await.is_err());
//! assert_eq!(*log.lock().unwrap(), ["b", "a"]);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;

type UndoFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type UndoStep<'a> = Box<dyn FnOnce() -> UndoFuture<'a> + Send + 'a>;

/// Undo steps of one operation, run in reverse on failure. Dropping a `Rollback` that still holds
/// steps (neither [`Rollback::commit`] nor [`Rollback::unwind`] was called, e.g. because the
/// caller's future was cancelled) runs nothing: it logs the steps it abandons to stderr in debug
/// builds, since undo work is async and cannot run in `Drop`.
pub struct Rollback<'a> {
    operation: &'static str,
    steps: Vec<(String, UndoStep<'a>)>,
}

impl fmt::Debug for Rollback<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rollback")
            .field("operation", &self.operation)
            .field("steps", &self.labels())
            .finish()
    }
}

impl<'a> Rollback<'a> {
    /// An empty rollback for `operation` (used in diagnostics only).
    pub fn new(operation: &'static str) -> Self {
        Rollback {
            operation,
            steps: Vec::new(),
        }
    }

    /// Records the undo of a step that just succeeded.
    pub fn push<F, Fut>(&mut self, label: impl Into<String>, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = ()> + Send + 'a,
    {
        self.steps.push((
            label.into(),
            Box::new(move || Box::pin(undo()) as UndoFuture<'a>),
        ));
    }

    /// Records a synchronous undo step.
    pub fn push_sync<F>(&mut self, label: impl Into<String>, undo: F)
    where
        F: FnOnce() + Send + 'a,
    {
        self.push(label, move || {
            undo();
            std::future::ready(())
        });
    }

    /// The labels of the recorded steps, oldest first.
    pub fn labels(&self) -> Vec<&str> {
        self.steps.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// How many undo steps are recorded.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no undo step is recorded.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The operation succeeded: forget every undo step.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// The operation failed: run every undo step, newest first. Undo steps report their own
    /// failures (they cannot fail the rollback).
    pub async fn unwind(mut self) {
        self.unwind_in_place().await;
    }

    /// Passes `result` through; on `Err`, first runs every undo step (newest first) and leaves the
    /// rollback empty, so `undo.check(step().await).await?` undoes and returns in one line.
    pub async fn check<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.unwind_in_place().await;
        }
        result
    }

    async fn unwind_in_place(&mut self) {
        while let Some((_, undo)) = self.steps.pop() {
            undo().await;
        }
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.steps.is_empty() && cfg!(debug_assertions) {
            eprintln!(
                "berth: rollback of {} dropped with {} undo step(s) not run: {:?}",
                self.operation,
                self.steps.len(),
                self.labels()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (
        Arc<Mutex<Vec<String>>>,
        impl Fn(&str) + Clone + Send + 'static,
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (log, move |s: &str| crate::lock(&l).push(s.to_string()))
    }

    #[test]
    fn unwind_runs_newest_first() {
        let (log, rec) = recorder();
        let mut undo = Rollback::new("t");
        for s in ["1", "2", "3"] {
            let rec = rec.clone();
            undo.push(s, move || async move { rec(s) });
        }
        assert_eq!(undo.labels(), ["1", "2", "3"]);
        futures::executor::block_on(undo.unwind());
        assert_eq!(*crate::lock(&log), ["3", "2", "1"]);
    }

    #[test]
    fn commit_runs_nothing() {
        let (log, rec) = recorder();
        let mut undo = Rollback::new("t");
        undo.push_sync("1", move || rec("1"));
        undo.commit();
        assert!(crate::lock(&log).is_empty());
    }

    #[test]
    fn check_unwinds_only_on_err_and_empties() {
        let (log, rec) = recorder();
        let mut undo = Rollback::new("t");
        let r1 = rec.clone();
        undo.push_sync("a", move || r1("a"));
        let ok: Result<u8, ()> = futures::executor::block_on(undo.check(Ok(7)));
        assert_eq!(ok, Ok(7));
        assert!(crate::lock(&log).is_empty());
        let r2 = rec.clone();
        undo.push_sync("b", move || r2("b"));
        let err: Result<u8, &str> = futures::executor::block_on(undo.check(Err("x")));
        assert_eq!(err, Err("x"));
        assert_eq!(*crate::lock(&log), ["b", "a"]);
        assert!(undo.is_empty());
    }
}
