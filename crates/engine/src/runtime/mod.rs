//! The container runtime: turns a [`RunSpec`] into a real process tree in new namespaces
//! (mount, pid, uts, ipc, and net unless the host network is used), with its root filesystem
//! mounted inside its own mount namespace, and reports the exit code through a per-container shim.
//!
//! CONTRACT (owned by the runtime helper; the lifecycle code in `crate::lifecycle` relies on it):
//! - `spawn(spec)` returns once pid 1 of the container has been created (or fails with a
//!   `RuntimeError` that says which step failed: e.g. "mount overlay on ...: No such file").
//! - `Spawned::pid1` is pid 1's pid in the host pid namespace; signals go there via `signal()`.
//! - `Spawned::exit` resolves with the exit code of pid 1 (128+signal when killed).
//! - `Spawned::io` carries the stdio the engine reads and writes (pipes, or a pty master when `tty`).
//! - when the daemon dies, every container dies with it (PDEATHSIG chain), so nothing runs unowned.
//! - `cleanup(bundle)` removes what `spawn` created under the bundle dir (overlay upper/work).
