//! Starting the shim without copying the engine: one small engine thread per container starts
//! the shim with `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own, sleeps in `clone` for as
//! long as the shim lives, then reaps it and reports its exit code.
//!
//! Why: the shim lives as long as its container and never execs. As a `fork` of the
//! multi-threaded engine it held a copy of the engine's page tables, so while containers ran,
//! every first write of the engine to a page after a fork was a copy-on-write fault with a TLB
//! shootdown, and the copy was torn down at the shim's exit. Sharing the engine's memory removes
//! all three. What makes that safe:
//! - the shim has its own fd table, cwd/root, signal handlers and namespaces (no
//!   `CLONE_FILES`, `CLONE_FS`, `CLONE_SIGHAND`, `CLONE_THREAD`), so its `dup2`s, `close`s,
//!   `unshare`s and `setns` affect it alone (`unshare` of mount, pid, net, uts, ipc and cgroup
//!   namespaces is allowed with a shared memory; only a user namespace would not be);
//! - it runs only the async-signal-safe code of `child.rs` (raw syscalls, no allocation, no
//!   lock) on data owned by the thread that sleeps in `clone`: the plan, the [`Fds`], the stack.
//!   `CLONE_VFORK` keeps that thread asleep until the shim exits, so the shim may use the
//!   thread's thread-local `errno`, and nothing it reads is freed or changed under it;
//! - the thread blocks every signal before the `clone`; the shim resets its handlers (a copy of
//!   the engine's) to the defaults before it unblocks them;
//! - the shim is a child of the engine process: only this thread reaps it (`waitpid(pid)`; the
//!   engine never waits for any child, tokio's process driver waits only for its own).
//!
//! The engine learns that the shim's fd table exists (so it may close its own copies of the
//! child's ends) from the started pipe: the shim writes its pid there first thing; the thread
//! writes `-errno` instead when the stack or the `clone` fails.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use libc::{c_int, c_void};
use tokio::sync::oneshot;

use super::child::{self, Fds, ShimStart, Stack};
use super::plan::Plan;

/// The shim's stack: its own frames only (pid 1 gets a stack of its own), touched as used,
/// above one guard page.
const SHIM_STACK: usize = 256 << 10;
/// The sleeping thread's own stack: one `clone` call and a `waitpid`.
const THREAD_STACK: usize = 128 << 10;

/// A running (or exited, not yet awaited) shim. Dropping it, or the future of [`Shim::exit`]
/// before it resolves, SIGKILLs the shim (and so pid 1, through its parent-death signal):
/// nothing runs unowned, even when `spawn` is cancelled half-way.
pub(super) struct Shim {
    guard: KillGuard,
    exit: oneshot::Receiver<i32>,
}

/// Whether the shim's pid may still be signalled: until its thread reaps it, it cannot be
/// reused.
#[derive(Default)]
struct State {
    pid: i32,
    reaped: bool,
}

/// SIGKILLs the shim unless it has been reaped.
struct KillGuard(Arc<Mutex<State>>);

impl KillGuard {
    fn kill(&self) {
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.pid > 0 && !state.reaped {
            // SAFETY: plain kill of a child that is not reaped yet (its pid is still ours).
            unsafe { libc::kill(state.pid, libc::SIGKILL) };
        }
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Shim {
    /// The shim's exit code (128+N when killed by signal N).
    pub(super) fn exit(self) -> impl std::future::Future<Output = i32> + Send + 'static {
        let Shim { guard, exit } = self;
        async move {
            let code = exit.await.unwrap_or(255);
            // Reaped by now: the guard's drop is a no-op.
            drop(guard);
            code
        }
    }

    /// SIGKILLs the shim and waits until it is reaped.
    pub(super) async fn kill_and_reap(self) {
        self.guard.kill();
        let _ = self.exit().await;
    }
}

/// Starts the shim on a thread of its own; returns once the shim runs with its own fd table
/// (the caller may then close its copies of the fds in `fds`). Blocking.
pub(super) fn spawn(plan: Box<Plan>, mut fds: Fds) -> io::Result<Shim> {
    let (started_r, started_w) = super::pipe()?;
    fds.started_w = started_w.as_raw_fd();
    let state = Arc::new(Mutex::new(State::default()));
    let (tx, exit) = oneshot::channel();
    let thread_state = state.clone();
    std::thread::Builder::new()
        .name("berth-shim-wait".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let code = run(&plan, &fds, &started_w, &thread_state);
            drop(started_w);
            drop(plan);
            if let Some(code) = code {
                let _ = tx.send(code);
            }
        })?;

    let mut buf = [0u8; 4];
    let mut file = std::fs::File::from(started_r);
    io::Read::read_exact(&mut file, &mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::other("the shim's thread ended at once"),
        _ => e,
    })?;
    let pid = i32::from_ne_bytes(buf);
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(-pid));
    }
    {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.pid = pid;
    }
    Ok(Shim {
        guard: KillGuard(state),
        exit,
    })
}

/// The thread's body: maps the shim's stack, clones the shim, sleeps until it exits, reaps it.
/// Returns its exit code, or `None` when it never started (the error went to `started_w`).
fn run(plan: &Plan, fds: &Fds, started_w: &OwnedFd, state: &Mutex<State>) -> Option<i32> {
    let fail = |err: c_int| {
        let bytes = (-err).to_ne_bytes();
        // SAFETY: a write of a local buffer.
        unsafe { libc::write(started_w.as_raw_fd(), bytes.as_ptr().cast::<c_void>(), 4) };
        None
    };
    // SAFETY: a full signal mask for this thread, which does nothing else; the shim inherits it
    // and unblocks after resetting its handlers.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let stack = match Stack::map(SHIM_STACK) {
        Ok(stack) => stack,
        Err(err) => return fail(err),
    };
    let start = ShimStart { plan, fds };
    // SAFETY: `shim_entry` runs on its own stack and only reads `start`, which outlives it: with
    // CLONE_VFORK this call returns only once the shim has exited.
    let pid = unsafe {
        libc::clone(
            child::shim_entry,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&start as *const ShimStart<'_>).cast_mut().cast::<c_void>(),
        )
    };
    if pid < 0 {
        return fail(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EAGAIN),
        );
    }
    // The shim has exited (it released our memory); wait until it is a zombie without reaping,
    // so the kill guard never signals a reaped (maybe reused) pid.
    loop {
        // SAFETY: siginfo is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child.
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    state.lock().unwrap_or_else(|e| e.into_inner()).reaped = true;
    drop(stack);
    let mut status: c_int = 0;
    let code = loop {
        // SAFETY: reaps our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                255
            };
        }
        if ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            tracing::warn!(pid, "reaping the container shim failed");
            break 255;
        }
    };
    Some(code)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::AsyncReadExt;

    use super::super::spawn;
    use super::super::tests::{TIMEOUT, TempDir, kill_to_137, needs_root, spec};
    use super::SHIM_STACK;
    use super::child::GUARD;

    /// The host pid of `pid`'s parent.
    fn parent_of(pid: i32) -> i32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("PPid")
    }

    /// Needs root. The shim runs in the engine's memory, not in a copy of it: a value the engine
    /// writes after the shim started is what the shim's memory holds at that address (a forked
    /// shim would still hold the value from before, in its copy-on-write copy).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shim_shares_the_engine_memory() {
        if !needs_root() {
            return;
        }
        static MARK: AtomicU64 = AtomicU64::new(1);
        let bundle = TempDir::new("shimvm");
        let spawned = spawn(spec(&bundle, &["sleep", "100"]))
            .await
            .expect("spawn");
        let shim = parent_of(spawned.pid1);
        assert_ne!(
            shim,
            std::process::id() as i32,
            "pid 1's parent is the shim"
        );
        assert_eq!(
            parent_of(shim),
            std::process::id() as i32,
            "the shim is the engine's child"
        );
        MARK.store(0x5eed_0fbe_27c0_de11, Ordering::SeqCst);
        let mem = std::fs::File::open(format!("/proc/{shim}/mem")).expect("open shim memory");
        let mut buf = [0u8; 8];
        mem.read_exact_at(&mut buf, &MARK as *const AtomicU64 as u64)
            .expect("read shim memory");
        assert_eq!(
            u64::from_ne_bytes(buf),
            0x5eed_0fbe_27c0_de11,
            "the shim holds a copy of the engine's memory"
        );
        kill_to_137(spawned.pid1, spawned.exit).await;
        assert!(
            !std::path::Path::new(&format!("/proc/{shim}")).exists(),
            "the shim is reaped once exit resolves"
        );
    }

    /// Needs root. A shim whose start was cancelled half-way (`spawn`'s future dropped after the
    /// blocking part returned) does not run unowned: dropping it kills the container, whose
    /// stdout then reaches EOF.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_a_started_shim_kills_the_container() {
        if !needs_root() {
            return;
        }
        let bundle = TempDir::new("shimdrop");
        let spec = spec(&bundle, &["sleep", "100"]);
        let started = tokio::task::spawn_blocking(move || super::super::start(spec))
            .await
            .expect("join")
            .expect("start");
        let pipes = started.pipes.expect("stdio pipes");
        let mut stdout =
            tokio::net::unix::pipe::Receiver::from_owned_fd(pipes.stdout).expect("stdout pipe");
        // Until pid 1 has exec'd (EOF on the error pipe), it might still be setting up.
        let mut err =
            tokio::net::unix::pipe::Receiver::from_owned_fd(started.err_r).expect("error pipe");
        let mut buf = Vec::new();
        tokio::time::timeout(TIMEOUT, err.read_to_end(&mut buf))
            .await
            .expect("pid 1 never exec'd")
            .expect("read error pipe");
        assert!(buf.is_empty(), "pid 1 failed to start");
        drop(started.shim);
        let mut out = Vec::new();
        tokio::time::timeout(TIMEOUT, stdout.read_to_end(&mut out))
            .await
            .expect("the container still runs after its shim was dropped")
            .expect("read stdout");
    }

    /// Threads of this process named like the shim's thread.
    fn shim_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|t| t.ok())
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "berth-shim-wait")
            })
            .count()
    }

    /// Mappings of this process shaped like a shim's stack: `SHIM_STACK` read-write bytes right
    /// above a `GUARD`-sized inaccessible page.
    fn shim_stacks() -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let ranges: Vec<(u64, u64, bool)> = maps
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (lo, hi) = f.next()?.split_once('-')?;
                let perms = f.next()?;
                Some((
                    u64::from_str_radix(lo, 16).ok()?,
                    u64::from_str_radix(hi, 16).ok()?,
                    perms.starts_with("rw"),
                ))
            })
            .collect();
        ranges
            .windows(2)
            .filter(|w| {
                let ((glo, ghi, grw), (lo, hi, rw)) = (w[0], w[1]);
                !grw && ghi - glo == GUARD as u64 && ghi == lo && rw && hi - lo == SHIM_STACK as u64
            })
            .count()
    }

    /// Not a test on its own: the process of [`nothing_leaks_per_container`], run as a
    /// subprocess of the test binary so that no other test's containers are counted. Does
    /// nothing unless `BERTH_RT_LEAK_BUNDLE` is set.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn helper_leak_process() {
        let Some(bundle) = std::env::var_os("BERTH_RT_LEAK_BUNDLE") else {
            return;
        };
        for round in 0..5 {
            let spec =
                super::super::tests::spec_at(std::path::Path::new(&bundle), &["sleep", "100"]);
            let spawned = spawn(spec).await.expect("spawn");
            assert_eq!(
                shim_threads(),
                1,
                "round {round}: the running shim's thread"
            );
            assert_eq!(shim_stacks(), 1, "round {round}: the running shim's stack");
            kill_to_137(spawned.pid1, spawned.exit).await;
            assert_eq!(
                shim_stacks(),
                0,
                "round {round}: the shim's stack is unmapped"
            );
            // The thread sends the code just before it ends.
            let deadline = std::time::Instant::now() + TIMEOUT;
            while shim_threads() > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: the shim's thread outlived the shim"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            super::super::cleanup(std::path::Path::new(&bundle)).expect("cleanup");
        }
        println!("LEAKCHECK=ok");
    }

    /// Needs root. Nothing stays behind per container: once `exit` resolves, the shim's stack
    /// is unmapped and its thread ends (counted in a subprocess that runs nothing else).
    #[test]
    fn nothing_leaks_per_container() {
        if !needs_root() {
            return;
        }
        let bundle = TempDir::new("shimleak");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "runtime::shim::tests::helper_leak_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BERTH_RT_LEAK_BUNDLE", bundle.path())
            .output()
            .expect("run the helper");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("LEAKCHECK=ok"),
            "helper failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
