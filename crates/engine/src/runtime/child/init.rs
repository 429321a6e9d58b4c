//! `--init` (`HostConfig.Init`): pid 1 stays in the container as a minimal init instead of
//! becoming the command. It forks the command as its only child, forwards to that child every
//! signal it is sent, reaps every process that ends up its child (orphans are re-parented to
//! the pid namespace's init) and exits with the command's status: its exit code, or 128+N when
//! a signal N killed it (what Docker's `docker-init`, tini, does).
//!
//! The init is this code, not a binary: nothing has to exist in the image, and it runs as
//! confined as the command (same user, capabilities and seccomp filter: it is forked after
//! `harden::finish`). Pid 1 is then a copy of the shim's memory rather than a sibling of its
//! address space (`start_pid1` forks instead of `CLONE_VM | CLONE_VFORK` when the plan asks for
//! an init, since this pid 1 never execs). Async-signal-safe like the rest of `child`.

use libc::{c_int, c_ulong};

use super::{Ctx, Step, errno};

/// Synchronous signals the init leaves unblocked: they are about the init's own faults, and
/// blocking them would turn a fault into an endless loop.
const SYNCHRONOUS: [c_int; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Names the init as Docker's shows in `ps` (`docker-init`, command line `cmdline`) instead of
/// the engine's name and arguments. Needs `CAP_SYS_RESOURCE`: called before the capabilities
/// are dropped; best effort (a kernel that refuses leaves the shim's names).
///
/// # Safety
/// Only in pid 1, forked; `cmdline` outlives the process (the plan is never freed in it).
pub(super) unsafe fn rename(cmdline: &[u8]) {
    if cmdline.is_empty() {
        return;
    }
    let start = cmdline.as_ptr() as c_ulong;
    let end = start + cmdline.len() as c_ulong;
    // SAFETY: plain prctls on this process's own memory, which stays mapped. The start is set
    // first: the heap lies below the old arguments (on the stack), so start < end holds at
    // every step.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"docker-init".as_ptr() as c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_ARG_START as c_ulong,
            start,
            0,
            0,
        );
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_ARG_END as c_ulong,
            end,
            0,
            0,
        );
    }
}

/// Runs the init: forks the command; returns only in the child (the caller then execs the
/// command), never in pid 1.
///
/// # Safety
/// Only in pid 1, forked (not sharing the shim's memory), single-threaded, right before the
/// exec of the command; async-signal-safe code only.
pub(super) unsafe fn run(ctx: &Ctx, tty: bool) {
    // SAFETY: plain syscalls on local, initialised signal sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        for sig in SYNCHRONOUS {
            libc::sigdelset(&mut all, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        // Blocked before the fork: a signal sent meanwhile stays pending and is forwarded
        // (pid 1 of a pid namespace never gets a signal it neither handles nor blocks).
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        // With `--pid host` the init is no namespace's init: still the reaper of its
        // command's orphans.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as c_ulong, 0, 0, 0);
        // fork(2) as a raw clone: libc's fork runs atfork handlers, not async-signal-safe.
        let child = libc::syscall(libc::SYS_clone, libc::SIGCHLD as c_ulong, 0, 0, 0, 0);
        if child < 0 {
            ctx.fail(Step::Fork, 3, errno());
        }
        if child == 0 {
            // The command: a process group of its own, the terminal's foreground one with a
            // tty (as tini does; SIGTTOU is still blocked here, so tcsetpgrp works), then its
            // signals unblocked again for the exec.
            libc::setpgid(0, 0);
            if tty {
                libc::tcsetpgrp(0, libc::getpid());
            }
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return;
        }
        // Pid 1's copy of the error pipe: the engine sees EOF once the command has exec'd.
        libc::close(ctx.err_w);
        libc::_exit(supervise(child as libc::pid_t, &all))
    }
}

/// Forwards signals to `child` and reaps every child until `child` itself has exited;
/// returns its status as an exit code.
///
/// # Safety
/// Async-signal-safe; `waited` is the blocked set.
unsafe fn supervise(child: libc::pid_t, waited: &libc::sigset_t) -> c_int {
    loop {
        // Reap first: the command may be gone already, its SIGCHLD pending.
        loop {
            let mut status: c_int = 0;
            // SAFETY: `status` is a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                if libc::WIFEXITED(status) {
                    return libc::WEXITSTATUS(status);
                }
                if libc::WIFSIGNALED(status) {
                    return 128 + libc::WTERMSIG(status);
                }
            }
        }
        // SAFETY: a zeroed siginfo is a valid out buffer; `waited` is initialised.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(waited, &mut info)
        };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: plain syscall; the child is not reaped yet, so its pid is still its own.
            unsafe { libc::kill(child, sig) };
        }
    }
}
