//! Per-object locks: one async mutex per key (a volume name, a network id, a container id),
//! made on first use and dropped when nobody holds or waits for it. The table itself is behind
//! a short synchronous lock taken only to look an entry up, insert or drop it — never while an
//! operation runs — so a slow operation on one object (a plugin call) never delays another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A table of async mutexes, one per key.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    table: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock of one key; dropping it releases the lock (and the table entry when nobody
/// else wants it).
#[derive(Debug)]
pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        crate::sync::lock(&self.table)
    }

    /// Waits for the lock of `key` (operations on other keys never wait for it).
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let entry = self.table().entry(key.to_owned()).or_default().clone();
        // Made before awaiting: if this future is dropped while waiting, the guard's drop
        // still sweeps the entry.
        let mut held = KeyedGuard {
            locks: self,
            key: key.to_owned(),
            guard: None,
        };
        held.guard = Some(entry.lock_owned().await);
        held
    }

    /// The lock of `key` if it is free now.
    pub fn try_lock(&self, key: &str) -> Option<KeyedGuard<'_>> {
        let entry = self.table().entry(key.to_owned()).or_default().clone();
        let mut held = KeyedGuard {
            locks: self,
            key: key.to_owned(),
            guard: None,
        };
        held.guard = Some(entry.try_lock_owned().ok()?);
        Some(held)
    }

    /// How many keys have an entry (held or waited for); the rest take no memory.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no key is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut table = self.locks.table();
        // Clones are made under the table lock, so a count of 1 (the table's own) means no
        // holder and no waiter: the entry can go.
        if table
            .get(&self.key)
            .is_some_and(|e| Arc::strong_count(e) == 1)
        {
            table.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_serialises_other_keys_do_not() {
        let locks = Arc::new(KeyedLocks::new());
        let a = locks.lock("a").await;
        // Another key is free while "a" is held.
        assert!(locks.try_lock("b").is_some());
        assert!(locks.try_lock("a").is_none());
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let l = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l.lock("a").await;
            let _ = tx.send(());
        });
        // The waiter cannot get "a" while it is held: it has not signalled by the time a
        // bounded wait ends (it would have, at once, were "a" free).
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut rx)
                .await
                .is_err()
        );
        drop(a);
        rx.await.unwrap();
        waiter.await.unwrap();
        assert!(locks.is_empty(), "entries are dropped when unused");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_no_entry() {
        let locks = KeyedLocks::new();
        let held = locks.lock("k").await;
        {
            let wait = locks.lock("k");
            let r = tokio::time::timeout(Duration::from_millis(10), wait).await;
            assert!(r.is_err());
        }
        assert_eq!(locks.len(), 1);
        drop(held);
        assert!(locks.is_empty());
    }
}
