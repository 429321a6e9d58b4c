//! The readiness tracker behind the API gate: every loaded plugin is pending until it shook hands
//! or failed (with a stated reason). [`Readiness::wait_ready`] waits, bounded, and names the
//! plugins still pending on timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

/// A plugin's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyState {
    /// Not shaken hands yet.
    Pending,
    /// Handshake done.
    Ready,
    /// Failed, with the reason.
    Failed(String),
}

/// Tracks readiness of all plugins.
#[derive(Debug)]
pub struct Readiness {
    tx: watch::Sender<BTreeMap<String, ReadyState>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// An empty tracker (ready: nothing pending).
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(BTreeMap::new()),
        }
    }

    /// Sets `name`'s state.
    pub fn set(&self, name: &str, state: ReadyState) {
        self.tx.send_modify(|m| {
            m.insert(name.to_owned(), state);
        });
    }

    /// Forgets `name` (unloaded).
    pub fn remove(&self, name: &str) {
        self.tx.send_modify(|m| {
            m.remove(name);
        });
    }

    /// Names still pending.
    pub fn pending(&self) -> Vec<String> {
        self.tx
            .borrow()
            .iter()
            .filter(|(_, s)| **s == ReadyState::Pending)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `(name, reason)` of failed plugins.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.tx
            .borrow()
            .iter()
            .filter_map(|(n, s)| match s {
                ReadyState::Failed(r) => Some((n.clone(), r.clone())),
                _ => None,
            })
            .collect()
    }

    /// A plugin's state.
    pub fn state(&self, name: &str) -> Option<ReadyState> {
        self.tx.borrow().get(name).cloned()
    }

    /// Whether every plugin shook hands or failed.
    pub fn is_ready(&self) -> bool {
        self.pending().is_empty()
    }

    /// Waits until nothing is pending, at most `timeout`; on timeout returns the pending names.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Vec<String>> {
        let mut rx = self.tx.subscribe();
        let done = rx.wait_for(|m| m.values().all(|s| *s != ReadyState::Pending));
        match tokio::time::timeout(timeout, done).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.pending()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn wait_ready_names_pending_then_opens() {
        let r = Arc::new(Readiness::new());
        assert!(r.wait_ready(Duration::from_millis(1)).await.is_ok());
        r.set("a", ReadyState::Pending);
        r.set("b", ReadyState::Pending);
        r.set("c", ReadyState::Ready);
        assert_eq!(
            r.wait_ready(Duration::from_millis(20)).await,
            Err(vec!["a".to_owned(), "b".to_owned()])
        );
        let r2 = r.clone();
        let waiter = tokio::spawn(async move { r2.wait_ready(Duration::from_secs(5)).await });
        r.set("a", ReadyState::Ready);
        r.set("b", ReadyState::Failed("boom".into()));
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(r.failures(), vec![("b".to_owned(), "boom".to_owned())]);
    }
}
