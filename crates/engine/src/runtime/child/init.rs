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

/// What the init inherited from the process it was forked from and must not show the
/// container: that process's command line and environment (the engine's, which may hold
/// secrets) are overwritten in place, its command line with `cmdline` (Docker's
/// `/sbin/docker-init -- CMD...`, truncated to the space there is), its name set to
/// `docker-init`. Best effort: without `/proc/self/stat` nothing is overwritten.
///
/// # Safety
/// Only in pid 1, forked (its memory is its own), before the command is forked.
pub(super) unsafe fn rename(cmdline: &[u8]) {
    // SAFETY: plain prctl with a constant C string.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"docker-init".as_ptr() as c_ulong,
            0,
            0,
            0,
        )
    };
    // SAFETY: reads into a local buffer.
    let Some([arg_start, arg_end, env_start, env_end]) = (unsafe { areas() }) else {
        return;
    };
    for (start, end) in [(arg_start, arg_end), (env_start, env_end)] {
        if start == 0 || end <= start {
            continue;
        }
        let len = (end - start) as usize;
        // SAFETY: the kernel's bounds of this process's own argument and environment strings,
        // mapped and writable (they lie on the initial stack); nothing reads them any more.
        unsafe {
            let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
            area.fill(0);
            if start == arg_start {
                // The last byte stays NUL: the kernel then shows exactly this area.
                let n = cmdline.len().min(len - 1);
                area[..n].copy_from_slice(&cmdline[..n]);
            }
        }
    }
}

/// `arg_start`, `arg_end`, `env_start`, `env_end` of this process (fields 48 to 51 of
/// `/proc/self/stat`).
///
/// # Safety
/// Async-signal-safe.
unsafe fn areas() -> Option<[u64; 4]> {
    let mut buf = [0u8; 1024];
    // SAFETY: open/read/close of a constant path into a local buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    // The fields after the command name, which is in parentheses and may hold anything.
    let close = text.iter().rposition(|b| *b == b')')?;
    let mut fields = text[close + 1..]
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty());
    // The first field after the name is field 3 (`state`); field 48 is 45 further.
    let mut out = [0u64; 4];
    let mut field = fields.nth(45)?;
    for (i, slot) in out.iter_mut().enumerate() {
        if i > 0 {
            field = fields.next()?;
        }
        let mut v: u64 = 0;
        for b in field.iter().take_while(|b| b.is_ascii_digit()) {
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        *slot = v;
    }
    Some(out)
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
        // The init's memory is a copy of the engine's: not dumpable, so no process of the
        // container without CAP_SYS_PTRACE reads it (/proc/1/mem, /proc/1/environ) or attaches
        // to it. The command's exec makes it dumpable again, as usual.
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as c_ulong, 0, 0, 0);
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
