//! Network namespaces made ahead of `spawn` for [`NetMode::Isolated`](super::NetMode): the
//! engine asks for one while the container's volume drivers mount (`prepare_bundle`), and the
//! shim then joins it with `setns` instead of making its own with `unshare`.
//!
//! Why: a new network namespace is the dearest kernel step of a container start (the loopback
//! device and every per-namespace sysctl table are registered), and a start waiting on a volume
//! driver's `Mount` leaves the CPUs idle. Made during the wait, it no longer adds to the start.
//! The namespace is the same either way: made by a root task of the host's user namespace, empty
//! but for `lo` (the shim brings `lo` up after joining, as after its own `unshare`).
//!
//! A namespace is made on a short-lived thread of its own (`unshare(CLONE_NEWNET)` changes only
//! the calling thread, which then ends) and kept open by its fd, keyed by the container's bundle
//! directory, until `spawn` takes it. One that is never taken (a start that failed after the
//! mounts) is dropped by the container's next start or by `cleanup` at its removal; at most
//! [`MAX_PREPARED`] are kept.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Bound on namespaces made and not yet taken (beyond it, starts make their own).
pub(super) const MAX_PREPARED: usize = 256;

static PREPARED: Mutex<BTreeMap<PathBuf, OwnedFd>> = Mutex::new(BTreeMap::new());

fn prepared() -> MutexGuard<'static, BTreeMap<PathBuf, OwnedFd>> {
    PREPARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes a network namespace for the container whose bundle is `bundle` (blocking; a no-op when
/// one is already waiting or [`MAX_PREPARED`] are).
pub(super) fn prepare(bundle: &Path) -> io::Result<()> {
    {
        let map = prepared();
        if map.contains_key(bundle) || map.len() >= MAX_PREPARED {
            return Ok(());
        }
    }
    let fd = std::thread::Builder::new()
        .name("berth-netns".into())
        .stack_size(64 << 10)
        .spawn(make)?
        .join()
        .map_err(|_| io::Error::other("the network namespace thread panicked"))??;
    prepared().insert(bundle.to_owned(), fd);
    Ok(())
}

/// Takes the namespace made for `bundle`, if any.
pub(super) fn take(bundle: &Path) -> Option<OwnedFd> {
    prepared().remove(bundle)
}

/// Runs on its own thread, which ends right after: a new network namespace, as an fd ≥ 3.
fn make() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; it moves only this thread, which does nothing else.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
    super::above_stdio(OwnedFd::from(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn inode_of(fd: &OwnedFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .expect("readlink")
            .display()
            .to_string()
    }

    /// Needs root. A prepared namespace is a new one (not the engine's), made once per bundle,
    /// taken once; the calling thread stays in its own namespace.
    #[test]
    fn a_prepared_namespace_is_new_and_taken_once() {
        if !super::super::tests::needs_root() {
            return;
        }
        let own = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
        let bundle = PathBuf::from(format!("/nonexistent/netns-test-{}", std::process::id()));
        prepare(&bundle).expect("prepare");
        prepare(&bundle).expect("prepare again");
        let fd = take(&bundle).expect("prepared");
        assert!(take(&bundle).is_none(), "taken twice");
        assert!(inode_of(&fd).starts_with("net:["), "{}", inode_of(&fd));
        assert_ne!(
            inode_of(&fd),
            own.display().to_string(),
            "not a new namespace"
        );
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").expect("own netns"),
            own,
            "the caller moved"
        );
    }

    /// Needs root. A container with an isolated network started after `prepare` runs in the
    /// prepared namespace (its shim joined it instead of making one), with `lo` up, and the
    /// namespace was taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_shim_joins_the_prepared_namespace_with_lo_up() {
        use super::super::tests::{TempDir, kill_to_137, needs_root, spec};
        if !needs_root() {
            return;
        }
        let bundle = TempDir::new("netns-prepared");
        let mut spec = spec(&bundle, &["sleep", "100"]);
        spec.net = super::super::NetMode::Isolated;
        prepare(&spec.bundle).expect("prepare");
        let want = inode_of(prepared().get(&spec.bundle).expect("prepared"));
        let key = spec.bundle.clone();
        let spawned = super::super::spawn(spec).await.expect("spawn");
        let got = std::fs::read_link(format!("/proc/{}/ns/net", spawned.pid1)).expect("netns");
        assert_eq!(
            got.display().to_string(),
            want,
            "not the prepared namespace"
        );
        assert!(take(&key).is_none(), "the namespace was not taken");
        let flags = std::fs::read_to_string(format!(
            "/proc/{}/root/sys/class/net/lo/flags",
            spawned.pid1
        ))
        .expect("lo flags");
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).expect("hex");
        assert_eq!(flags & 1, 1, "lo is not up");
        kill_to_137(spawned.pid1, spawned.exit).await;
    }
}
