//! The code that runs in the container's processes before pid 1 `exec`s: the shim (the engine's
//! direct child) and the container's pid 1 (the shim's child, first process of the new pid
//! namespace).
//!
//! Both run in the engine's memory: the shim is started with `clone(CLONE_VM | CLONE_VFORK)` by
//! an engine thread that sleeps until it exits (`shim.rs`), pid 1 the same way by the shim
//! (except under `--init`, whose pid 1 stays and gets memory of its own: a plain fork). So only
//! async-signal-safe code may run: everything here is raw syscalls through `libc` on data
//! prepared by `plan.rs` beforehand and owned by the sleeping thread. No allocation, no locks,
//! no panics, no `std` I/O, and no glibc wrapper that keeps state in memory (`setresuid` and
//! friends are raw syscalls: glibc's would act on the engine's threads). A failure is written to
//! the error pipe as a fixed-size [`Record`] (step, index, errno) and the process `_exit`s.
//!
//! Process tree: engine → shim (new session; has unshared the mount, ipc [, uts, pid, net]
//! namespaces) → pid 1 (sets up the root filesystem, then `execve`s the command).
//! - The shim reports its pid on the started pipe (its fd table, a copy of the engine's, exists:
//!   the engine closes its own copies of the child's ends), puts its stdio on 0–2, closes every
//!   fd ≥ 3 but its own pipes (other containers' fds must not leak into this one), reports pid
//!   1's host pid on the report pipe, then waits for pid 1 and exits with its code (128+N when
//!   killed by signal N).
//! - Engine death: the shim polls a pipe whose only write end lives in the engine (see
//!   `engine_alive` in mod.rs) and SIGKILLs pid 1 when it hangs up, however the engine dies.
//!   (`PR_SET_PDEATHSIG` is tied to the engine *thread* that started the shim, which `shim.rs`
//!   keeps asleep for the shim's whole life; the pipe needs no such care.)
//! - Shim death: pid 1 has `PR_SET_PDEATHSIG(SIGKILL)` (the shim is single-threaded), checked
//!   against a pipe right after setting it, since `getppid()` is 0 across the pid namespace.
//!   Killing pid 1 of a pid namespace kills every process in it. (With `--pid host` there is no
//!   namespace of its own: what pid 1 leaves behind is killed through the cgroup, at its removal.)

use std::ffi::CStr;
use std::mem::size_of;
use std::ptr::null;

use libc::{c_char, c_int, c_long, c_ulong, c_void};

use super::plan::{InRoot, Plan};

mod init;
mod pid1;
mod report;

use pid1::pid1_main;
pub(super) use report::{Ctx, RECORD_LEN, Record, Step, errno};

/// The fds the shim starts with (raw numbers, all ≥ 3 and CLOEXEC, owned by the engine, which
/// closes its copies once the shim has reported on `started_w`).
pub(super) struct Fds {
    /// Write end of the started pipe: the shim writes its pid (4 bytes, native endian) first
    /// thing, once its fd table (a copy of the engine's) exists.
    pub(super) started_w: c_int,
    /// What becomes the shim's (and so pid 1's) stdin, stdout and stderr.
    pub(super) stdio: [c_int; 3],
    /// Write end of the report pipe: the shim writes pid 1's host pid (4 bytes, native endian).
    pub(super) report_w: c_int,
    /// Write end of the error pipe: a [`Record`] on failure; EOF when pid 1 has exec'd.
    pub(super) err_w: c_int,
    /// Read end of the engine's liveness pipe: hangs up when the engine dies.
    pub(super) alive_r: c_int,
    /// `/dev/null`, for the shim's own stdio once pid 1 has its copy.
    pub(super) devnull: c_int,
    /// A network namespace to join, or -1.
    pub(super) netns: c_int,
    /// `cgroup.procs` files to join (write `0`), -1 for unused slots.
    pub(super) cgroup_procs: [c_int; MAX_CGROUPS],
}

/// Slots in [`Fds::cgroup_procs`]: one per v1 hierarchy Berth uses, with room to spare.
pub(super) const MAX_CGROUPS: usize = 8;

/// Symlinks created in the container's `/dev`: name, target.
pub(super) const DEV_LINKS: [(&CStr, &CStr); 6] = [
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
    (c"ptmx", c"pts/ptmx"),
    (c"core", c"/proc/kcore"),
];

#[repr(C)]
pub(super) struct MountAttr {
    pub(super) attr_set: u64,
    pub(super) attr_clr: u64,
    pub(super) propagation: u64,
    pub(super) userns_fd: u64,
}

/// Writes the whole buffer, retrying on EINTR; gives up on any other error.
///
/// # Safety
/// `fd` must be an open fd (or the write fails harmlessly with EBADF).
unsafe fn write_all(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// `/proc/self/fd/N` in a stack buffer: a path that designates exactly what fd N designates,
/// so a mount lands on the directory that was resolved safely inside the root.
pub(super) struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub(super) fn new(fd: c_int) -> FdPath {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 10];
        let mut n = fd.max(0) as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[PREFIX.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    pub(super) fn as_ptr(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }
}

/// `openat2(dirfd, path, how)`.
///
/// # Safety
/// Plain syscall; `path` is a valid C string.
pub(super) unsafe fn openat2(
    dirfd: c_int,
    path: &CStr,
    flags: c_int,
    mode: u32,
    resolve: u64,
) -> c_int {
    // SAFETY: open_how is plain data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = u64::from(mode);
    how.resolve = resolve;
    // SAFETY: `how` and `path` outlive the call; the size matches the struct passed.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        ) as c_int
    }
}

/// Creates `target` (and its missing parents) inside the root `root`, never following a
/// symlink out of it (`RESOLVE_IN_ROOT`), and returns an `O_PATH` fd on it. With `file`, the
/// last component is created as an empty regular file instead of a directory.
///
/// # Safety
/// Only async-signal-safe calls; `root` is an open directory fd.
unsafe fn make_in_root(ctx: &Ctx, root: c_int, target: &InRoot, file: bool, index: u32) -> c_int {
    let last = target.steps.len().saturating_sub(1);
    // SAFETY: raw syscalls on valid C strings and fds.
    unsafe {
        for (i, (parent, name)) in target.steps.iter().enumerate() {
            if file && i == last {
                break;
            }
            let pfd = if parent.is_empty() {
                root
            } else {
                ctx.check(
                    openat2(
                        root,
                        parent,
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                        0,
                        libc::RESOLVE_IN_ROOT,
                    ),
                    Step::Target,
                    index,
                )
            };
            let ret = libc::mkdirat(pfd, name.as_ptr(), 0o755);
            let err = errno();
            if pfd != root {
                libc::close(pfd);
            }
            if ret < 0 && err != libc::EEXIST {
                ctx.fail(Step::Target, index, err);
            }
        }
        if file {
            let mut fd = openat2(
                root,
                &target.full,
                libc::O_PATH | libc::O_CLOEXEC,
                0,
                libc::RESOLVE_IN_ROOT,
            );
            if fd < 0 && errno() == libc::ENOENT {
                let created = ctx.check(
                    openat2(
                        root,
                        &target.full,
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOCTTY
                            | libc::O_CLOEXEC,
                        0o644,
                        libc::RESOLVE_IN_ROOT,
                    ),
                    Step::Target,
                    index,
                );
                libc::close(created);
                fd = openat2(
                    root,
                    &target.full,
                    libc::O_PATH | libc::O_CLOEXEC,
                    0,
                    libc::RESOLVE_IN_ROOT,
                );
            }
            ctx.check(fd, Step::Target, index)
        } else {
            ctx.check(
                openat2(
                    root,
                    &target.full,
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    0,
                    libc::RESOLVE_IN_ROOT,
                ),
                Step::Target,
                index,
            )
        }
    }
}

/// `mount(source, /proc/self/fd/<fd>, fstype, flags, data)`.
///
/// # Safety
/// Plain syscall; pointers are valid C strings or null.
pub(super) unsafe fn mount_on_fd(
    source: *const c_char,
    fd: c_int,
    fstype: *const c_char,
    flags: c_ulong,
    data: *const c_char,
) -> c_int {
    let target = FdPath::new(fd);
    // SAFETY: all pointers are valid for the call.
    unsafe {
        libc::mount(
            source,
            target.as_ptr(),
            fstype,
            flags,
            data.cast::<c_void>(),
        )
    }
}

/// Closes every fd ≥ 3 except those in `keep` (sorted in place).
///
/// # Safety
/// Async-signal-safe; the caller no longer uses the fds being closed.
unsafe fn close_fds_except(keep: &mut [c_int]) {
    // Insertion sort: no allocation.
    for i in 1..keep.len() {
        let mut j = i;
        while j > 0 && keep[j - 1] > keep[j] {
            keep.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut next: c_int = 3;
    for &fd in keep.iter() {
        if fd < next {
            continue;
        }
        if fd > next {
            // SAFETY: closing fds this process no longer uses.
            unsafe { close_range(next as u32, (fd - 1) as u32) };
        }
        next = fd + 1;
    }
    // SAFETY: as above.
    unsafe { close_range(next as u32, u32::MAX) };
}

/// # Safety
/// Closes fds; falls back to a bounded loop when `close_range` is missing (Linux < 5.9).
unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: plain syscalls.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, last, 0) < 0 {
            for fd in first..=last.min(65_535) {
                libc::close(fd as c_int);
            }
        }
    }
}

/// Resets every signal disposition to the default: the engine's handlers (tokio's SIGCHLD
/// handler writes to a self-pipe whose fd number this process may have reused) must not run
/// here, and the container must not inherit ignored signals.
///
/// # Safety
/// Async-signal-safe.
unsafe fn reset_signals() {
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; errors (SIGKILL, SIGSTOP, glibc's
    // internal signals) are ignored on purpose.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Sets the `IFF_UP` flag of `lo` in the current network namespace.
///
/// # Safety
/// Async-signal-safe.
unsafe fn loopback_up(ctx: &Ctx) {
    // SAFETY: plain syscalls; `ifreq` is zero-initialised and named "lo".
    unsafe {
        let sock = ctx.check(
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0),
            Step::Loopback,
            0,
        );
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as c_char;
        ifr.ifr_name[1] = b'o' as c_char;
        ctx.check(
            libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr),
            Step::Loopback,
            1,
        );
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        ctx.check(
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr),
            Step::Loopback,
            2,
        );
        libc::close(sock);
    }
}

/// What the shim starts with: the plan and its fds, owned by the engine thread that sleeps in
/// `clone` while the shim runs.
pub(super) struct ShimStart<'a> {
    pub(super) plan: &'a Plan,
    pub(super) fds: &'a Fds,
}

/// The shim's first frame on its own stack, started with `clone(CLONE_VM | CLONE_VFORK)` by the
/// engine thread that owns `arg` (see `shim.rs`).
///
/// # Safety
/// `arg` is a `ShimStart` that outlives the shim (its thread sleeps in `clone` until the shim
/// exits).
pub(super) extern "C" fn shim_entry(arg: *mut c_void) -> c_int {
    // SAFETY: as documented; `shim_main` never returns.
    unsafe {
        let start = &*arg.cast::<ShimStart<'_>>();
        shim_main(start.plan, start.fds)
    }
}

/// The shim: runs in the engine's memory (a `CLONE_VM` child with its own fd table, signal
/// handlers and stack) until the container exits; never returns.
///
/// # Safety
/// Only from [`shim_entry`], with fds as described in [`Fds`] and all signals blocked.
unsafe fn shim_main(plan: &Plan, fds: &Fds) -> ! {
    let ctx = Ctx { err_w: fds.err_w };
    // SAFETY: only async-signal-safe syscalls follow, on data the sleeping engine thread owns.
    unsafe {
        // The engine's handlers (copied, not shared: no CLONE_SIGHAND) must not run here; the
        // signals were blocked by the cloning thread until now.
        reset_signals();
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // The fd table exists: the engine may close its copies of the fds above.
        let me = libc::syscall(libc::SYS_getpid) as libc::pid_t;
        write_all(fds.started_w, &me.to_ne_bytes());
        libc::close(fds.started_w);
        for (target, fd) in fds.stdio.iter().enumerate() {
            ctx.check(libc::dup2(*fd, target as c_int), Step::Stdio, target as u32);
        }
        // Shows as "berth-shim" in ps/top instead of the starting engine thread's name.
        libc::prctl(
            libc::PR_SET_NAME,
            c"berth-shim".as_ptr() as c_ulong,
            0,
            0,
            0,
        );
        // Into the container's cgroups first: pid 1, started below, starts inside them.
        for (i, fd) in fds.cgroup_procs.iter().enumerate() {
            if *fd >= 0 {
                let n = libc::write(*fd, c"0".as_ptr().cast::<c_void>(), 1);
                ctx.check(n as c_long, Step::JoinCgroup, i as u32);
                libc::close(*fd);
            }
        }
        // A session of its own: terminal signals aimed at the engine's group don't reach it.
        ctx.check(libc::setsid(), Step::Setsid, 0);
        if fds.netns >= 0 {
            ctx.check(
                libc::setns(fds.netns, libc::CLONE_NEWNET),
                Step::JoinNetns,
                0,
            );
        }
        ctx.check(libc::unshare(plan.ns_flags), Step::Unshare, 0);
        // Before anything is mounted: nothing mounted in here may propagate to the host.
        ctx.check(
            libc::mount(
                null(),
                c"/".as_ptr(),
                null(),
                libc::MS_REC | libc::MS_PRIVATE,
                null(),
            ),
            Step::MakePrivate,
            0,
        );
        if let Some(hostname) = &plan.hostname {
            ctx.check(
                libc::sethostname(hostname.as_ptr(), hostname.as_bytes().len()),
                Step::Hostname,
                0,
            );
        }
        if plan.loopback_up {
            loopback_up(&ctx);
        }
        let mut keep = [fds.report_w, fds.err_w, fds.alive_r, fds.devnull];
        close_fds_except(&mut keep);

        let mut alive = [-1 as c_int; 2];
        ctx.check(
            libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC),
            Step::Pipe,
            0,
        );
        let start = Pid1Start {
            plan,
            ctx: &ctx,
            shim_alive: alive[0],
            close: [fds.report_w, fds.alive_r, fds.devnull, alive[1]],
        };
        let pid = start_pid1(&start, &ctx);
        libc::close(alive[0]);
        write_all(fds.report_w, &pid.to_ne_bytes());
        libc::close(fds.report_w);
        libc::close(fds.err_w);
        // The container's stdio belongs to the container: the engine sees EOF when it is done.
        for fd in 0..3 {
            libc::dup2(fds.devnull, fd);
        }
        libc::close(fds.devnull);
        let code = supervise(pid, fds.alive_r);
        libc::_exit(code)
    }
}

/// Waits for pid 1 and returns its exit code (128+N if killed by signal N); kills it if the
/// engine goes away first.
///
/// # Safety
/// Async-signal-safe.
unsafe fn supervise(pid: libc::pid_t, engine_alive: c_int) -> c_int {
    // SAFETY: plain syscalls.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as c_int;
        if pidfd < 0 {
            // Linux < 5.3: no engine-death detection, just wait.
            return wait_code(pid);
        }
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: engine_alive,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let n = libc::poll(fds.as_mut_ptr(), 2, -1);
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return wait_code(pid);
            }
            if fds[1].revents != 0 {
                return wait_code(pid);
            }
            if fds[0].revents != 0 {
                libc::kill(pid, libc::SIGKILL);
                return wait_code(pid);
            }
        }
    }
}

/// What pid 1 starts with: the plan, the error context, its end of the shim's liveness pipe and
/// the shim's fds it must not keep.
struct Pid1Start<'a> {
    plan: &'a Plan,
    ctx: &'a Ctx,
    shim_alive: c_int,
    close: [c_int; 4],
}

/// Stack of pid 1 until it execs (its frames, `harden.rs` included, use far less; the pages are
/// only touched as used), above one guard page.
const PID1_STACK: usize = 1 << 20;
/// The inaccessible page below every stack made here.
pub(super) const GUARD: usize = 4096;

/// A stack for a `clone`d child: a private mapping of `size` bytes above one guard page, unmapped
/// on drop. Async-signal-safe (two or three plain syscalls), so the shim uses it too.
pub(super) struct Stack {
    base: *mut c_void,
    size: usize,
}

impl Stack {
    /// Maps a stack of `size` bytes (pages are only touched as used); the error is the errno.
    pub(super) fn map(size: usize) -> Result<Stack, c_int> {
        // SAFETY: a fresh anonymous mapping, owned by the returned value.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                size + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(errno());
            }
            let stack = Stack { base, size };
            if libc::mprotect(base, GUARD, libc::PROT_NONE) < 0 {
                return Err(errno());
            }
            Ok(stack)
        }
    }

    /// The initial stack pointer: the stack grows down from the end (page aligned, so 16-byte
    /// aligned).
    pub(super) fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping.
        unsafe { self.base.cast::<u8>().add(self.size + GUARD).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer used by the child it was for.
        unsafe { libc::munmap(self.base, self.size + GUARD) };
    }
}

/// Starts pid 1 with `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own, the way
/// `posix_spawn` starts a child: pid 1 runs in the shim's memory (the engine's) and the shim
/// sleeps until pid 1 has exec'd (or died), so no page table is copied for a process that
/// replaces its memory at once, and none is torn down at its exec.
/// Pid 1 has its own fd table, signal handlers, credentials and seccomp filter (no
/// `CLONE_FILES`, `CLONE_SIGHAND` or `CLONE_THREAD`); what it writes to memory before the exec
/// is its own stack and the shim's `errno`, which the sleeping shim does not read. While pid 1
/// sets up, the shim does not watch the engine's pipe; a SIGKILL of the shim (dropped `exit`)
/// still ends pid 1 through its `PDEATHSIG`, and an engine death is acted on once the shim
/// wakes. Returns pid 1's pid (in the shim's pid namespace view: its host pid).
///
/// # Safety
/// Only in the shim (single-threaded: its own thread group), after it has started.
unsafe fn start_pid1(start: &Pid1Start<'_>, ctx: &Ctx) -> libc::pid_t {
    let stack = match Stack::map(PID1_STACK) {
        Ok(stack) => stack,
        Err(err) => ctx.fail(Step::Fork, 1, err),
    };
    // SAFETY: plain syscalls; `start` outlives pid 1's use of it (the shim sleeps in clone).
    unsafe {
        // A pid 1 that stays as the container's init (`--init`) never execs: it gets memory of
        // its own instead (a plain fork; the shim goes on at once).
        let flags = if start.plan.init {
            libc::SIGCHLD
        } else {
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD
        };
        let pid = libc::clone(
            pid1_entry,
            stack.top(),
            flags,
            (start as *const Pid1Start<'_>).cast_mut().cast::<c_void>(),
        );
        let err = errno();
        // Pid 1 has exec'd or exited: its stack is free again.
        drop(stack);
        if pid < 0 {
            ctx.fail(Step::Fork, 0, err);
        }
        pid
    }
}

/// Pid 1's first frame on its own stack (see [`start_pid1`]).
extern "C" fn pid1_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Pid1Start` of `start_pid1`, alive while the shim sleeps in clone.
    unsafe {
        let start = &*arg.cast::<Pid1Start<'_>>();
        for fd in start.close {
            libc::close(fd);
        }
        pid1_main(start.plan, start.ctx, start.shim_alive)
    }
}

/// Reaps `pid` and returns its exit code (128+N if killed by signal N).
///
/// # Safety
/// Async-signal-safe.
unsafe fn wait_code(pid: libc::pid_t) -> c_int {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid out pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            if libc::WIFEXITED(status) {
                return libc::WEXITSTATUS(status);
            }
            if libc::WIFSIGNALED(status) {
                return 128 + libc::WTERMSIG(status);
            }
        } else if ret < 0 && errno() != libc::EINTR {
            return 255;
        }
    }
}
