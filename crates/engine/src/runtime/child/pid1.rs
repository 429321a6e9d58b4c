//! Pid 1 between `fork` and `exec`: builds the container's root filesystem (overlay, `/proc`,
//! `/dev`, `/sys`, bind mounts), pivots into it, confines itself and `execve`s the command.
//! Async-signal-safe like the rest of `child`.

use std::ffi::CStr;
use std::ptr::null;

use libc::{c_int, c_ulong};

use super::{Ctx, DEV_LINKS, Step, errno, make_in_root, mount_on_fd, openat2};
use crate::runtime::harden::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY};
use crate::runtime::plan::{FIRST_BIND_TARGET, Plan, TARGET_DEV, TARGET_PROC, TARGET_SYS};

/// `close(fd)` of an fd this process opened.
fn close(fd: c_int) {
    // SAFETY: closing an fd owned by this process that the caller no longer uses.
    unsafe { libc::close(fd) };
}

/// Mounts `fstype` (also the source name) on the fd's path with `flags` and `data`.
fn mount_fs_on(ctx: &Ctx, fstype: &CStr, fd: c_int, flags: c_ulong, data: &CStr, step: Step) {
    // SAFETY: constant or prepared C strings; the target is an open fd's path.
    let ret = unsafe { mount_on_fd(fstype.as_ptr(), fd, fstype.as_ptr(), flags, data.as_ptr()) };
    ctx.check(ret, step, 0);
}

/// Pid 1: builds the root filesystem in the (shared with the shim) mount namespace, pivots
/// into it, confines itself and executes the command. Never returns.
///
/// # Safety
/// Must only be called in pid 1 as the shim starts it (`start_pid1`: a `CLONE_VM | CLONE_VFORK`
/// child on its own stack, async-signal-safe code only until the exec).
pub(super) unsafe fn pid1_main(plan: &Plan, ctx: &Ctx, shim_alive: c_int) -> ! {
    // SAFETY: plain prctl.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) };
    ctx.check(ret, Step::ParentDeath, 0);
    // The shim may have died before the prctl: then its end of the pipe is closed.
    let mut pfd = libc::pollfd {
        fd: shim_alive,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(137) };
    }
    close(shim_alive);

    // SAFETY: plain syscall.
    ctx.check(unsafe { libc::setsid() }, Step::Setsid, 1);
    if plan.tty {
        // SAFETY: TIOCSCTTY on stdin (the pty slave) takes an int argument.
        ctx.check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }, Step::Ctty, 0);
    }
    // Exact modes for what we create; the command gets Docker's 022 below.
    // SAFETY: plain syscall.
    unsafe { libc::umask(0) };

    let root = mount_root(plan, ctx);
    mount_system(plan, ctx, root);
    mount_binds(plan, ctx, root);
    let first_tmpfs = FIRST_BIND_TARGET + plan.binds.len() as u32;
    harden::mount_tmpfs(ctx, &plan.confine, |target, i| {
        // SAFETY: `root` is an open directory fd.
        unsafe { make_in_root(ctx, root, target, false, first_tmpfs + i) }
    });
    close(root);
    pivot(plan, ctx);
    if plan.confine.readonly_rootfs {
        harden::readonly_root(ctx);
    }

    // Nothing but stdio and the (CLOEXEC) error pipe crosses exec.
    // SAFETY: plain syscalls.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::umask(0o022);
    }
    if plan.init {
        // SAFETY: this pid 1 was forked (see `start_pid1`); the plan lives as long as it.
        unsafe { super::init::rename(&plan.init_cmdline) };
    }
    harden::finish(ctx, &plan.confine, plan.last_cap);
    if plan.init {
        // SAFETY: this pid 1 was forked (see `start_pid1`); returns only in the command's
        // process.
        unsafe { super::init::run(ctx, plan.tty) };
    }
    // SAFETY: still the forked child, right before execve.
    unsafe { exec(plan, ctx) }
}

/// Mounts the overlay on the root's mount point and returns an `O_PATH` fd on it.
fn mount_root(plan: &Plan, ctx: &Ctx) -> c_int {
    let flags = if plan.confine.privileged {
        0
    } else {
        libc::MS_NODEV
    };
    // SAFETY: prepared C strings.
    let ret = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            plan.rootfs.as_ptr(),
            c"overlay".as_ptr(),
            flags,
            plan.overlay_opts.as_ptr().cast(),
        )
    };
    ctx.check(ret, Step::MountOverlay, 0);
    // SAFETY: open of a prepared C string.
    let root = unsafe {
        libc::open(
            plan.rootfs.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    ctx.check(root, Step::OpenRootfs, 0)
}

/// `/proc`, `/dev` and `/sys`, then the masked and read-only paths.
fn mount_system(plan: &Plan, ctx: &Ctx, root: c_int) {
    let privileged = plan.confine.privileged;
    // /proc, for the new pid namespace (must be mounted from inside it).
    // SAFETY: `root` is an open directory fd (so below).
    let fd = unsafe { make_in_root(ctx, root, &plan.proc_dir, false, TARGET_PROC) };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount_fs_on(ctx, c"proc", fd, flags, c"", Step::MountProc);
    close(fd);

    // /dev: a tmpfs with the default nodes, links, /dev/pts and /dev/shm.
    // SAFETY: as above.
    let fd = unsafe { make_in_root(ctx, root, &plan.dev_dir, false, TARGET_DEV) };
    let nodev = if privileged { 0 } else { libc::MS_NODEV };
    let flags = libc::MS_NOSUID | libc::MS_STRICTATIME | nodev;
    mount_fs_on(
        ctx,
        c"tmpfs",
        fd,
        flags,
        c"mode=755,size=65536k",
        Step::MountDev,
    );
    close(fd);
    // Re-resolved after the mount: now the tmpfs root.
    // SAFETY: as above.
    let dev = unsafe { make_in_root(ctx, root, &plan.dev_dir, false, TARGET_DEV) };
    harden::populate_dev(ctx, dev, &plan.confine);
    // SAFETY: `dev` is an fd on the fresh tmpfs.
    unsafe { setup_dev(ctx, dev, plan.console.as_deref()) };
    close(dev);

    // SAFETY: as above.
    let fd = unsafe { make_in_root(ctx, root, &plan.sys_dir, false, TARGET_SYS) };
    let readonly = if privileged { 0 } else { libc::MS_RDONLY };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | readonly;
    mount_fs_on(ctx, c"sysfs", fd, flags, c"", Step::MountSys);
    close(fd);
    if plan.confine.mask_paths {
        harden::mask_paths(ctx, root);
    }
}

/// The bind mounts, each `nodev` (but with `--privileged`) and read-only if asked, recursively.
fn mount_binds(plan: &Plan, ctx: &Ctx, root: c_int) {
    for (i, bind) in plan.binds.iter().enumerate() {
        let i = i as u32;
        // SAFETY: `root` is an open directory fd.
        let fd = unsafe { make_in_root(ctx, root, &bind.target, bind.file, FIRST_BIND_TARGET + i) };
        let flags = libc::MS_BIND | libc::MS_REC;
        // SAFETY: a prepared source path; the target is the fd just made.
        let ret = unsafe { mount_on_fd(bind.source.as_ptr(), fd, null(), flags, null()) };
        ctx.check(ret, Step::Bind, i);
        close(fd);
        let readonly = if bind.readonly { MOUNT_ATTR_RDONLY } else { 0 };
        let nodev = if plan.confine.privileged {
            0
        } else {
            MOUNT_ATTR_NODEV
        };
        if readonly | nodev == 0 {
            continue;
        }
        // Re-resolved: the path now leads to the top of the new mount.
        // SAFETY: openat2 on an open directory fd and a prepared C string.
        let fd = unsafe {
            openat2(
                root,
                &bind.target.full,
                libc::O_PATH | libc::O_CLOEXEC,
                0,
                libc::RESOLVE_IN_ROOT,
            )
        };
        let fd = ctx.check(fd, Step::BindReadonly, i);
        let ret = harden::set_mount_attr(fd, readonly | nodev, true);
        ctx.check(ret, Step::BindReadonly, i);
        close(fd);
    }
}

/// `pivot_root` into the new root, detach the old one, enter the working directory (created
/// if missing, as Docker does).
fn pivot(plan: &Plan, ctx: &Ctx) {
    // SAFETY: chdir and pivot_root on prepared or constant C strings.
    unsafe {
        // pivot_root(".", ".") stacks the old root under the new one; detach it.
        ctx.check(libc::chdir(plan.rootfs.as_ptr()), Step::PivotRoot, 0);
        let ret = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
        ctx.check(ret, Step::PivotRoot, 1);
        let ret = libc::umount2(c".".as_ptr(), libc::MNT_DETACH);
        ctx.check(ret, Step::DetachOldRoot, 0);
        ctx.check(libc::chdir(c"/".as_ptr()), Step::PivotRoot, 2);
    }
    for dir in &plan.cwd_steps {
        // SAFETY: mkdir of a prepared C string.
        if unsafe { libc::mkdir(dir.as_ptr(), 0o755) } < 0 && errno() != libc::EEXIST {
            ctx.fail(Step::Cwd, 0, errno());
        }
    }
    // SAFETY: chdir of a prepared C string.
    ctx.check(unsafe { libc::chdir(plan.cwd.as_ptr()) }, Step::Cwd, 1);
}

/// Fills the fresh `/dev` tmpfs.
///
/// # Safety
/// Async-signal-safe; `dev` is an fd on the tmpfs root.
unsafe fn setup_dev(ctx: &Ctx, dev: c_int, console: Option<&CStr>) {
    // SAFETY: raw syscalls on constant C strings and valid fds.
    unsafe {
        for (i, (name, target)) in DEV_LINKS.iter().enumerate() {
            ctx.check(
                libc::symlinkat(target.as_ptr(), dev, name.as_ptr()),
                Step::DevLink,
                i as u32,
            );
        }

        ctx.check(
            libc::mkdirat(dev, c"pts".as_ptr(), 0o755),
            Step::MountDevpts,
            0,
        );
        let fd = ctx.check(
            libc::openat(
                dev,
                c"pts".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            ),
            Step::MountDevpts,
            1,
        );
        ctx.check(
            mount_on_fd(
                c"devpts".as_ptr(),
                fd,
                c"devpts".as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"newinstance,ptmxmode=0666,mode=0620,gid=5".as_ptr(),
            ),
            Step::MountDevpts,
            2,
        );
        libc::close(fd);

        ctx.check(
            libc::mkdirat(dev, c"shm".as_ptr(), 0o1777),
            Step::MountShm,
            0,
        );
        let fd = ctx.check(
            libc::openat(
                dev,
                c"shm".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            ),
            Step::MountShm,
            1,
        );
        ctx.check(
            mount_on_fd(
                c"shm".as_ptr(),
                fd,
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=1777,size=65536k".as_ptr(),
            ),
            Step::MountShm,
            2,
        );
        libc::close(fd);

        if let Some(console) = console {
            // As runc does: the container's /dev/console is its pty slave.
            let fd = ctx.check(
                libc::openat(
                    dev,
                    c"console".as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o620,
                ),
                Step::Console,
                0,
            );
            libc::close(fd);
            let fd = ctx.check(
                libc::openat(
                    dev,
                    c"console".as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                ),
                Step::Console,
                1,
            );
            ctx.check(
                mount_on_fd(console.as_ptr(), fd, null(), libc::MS_BIND, null()),
                Step::Console,
                2,
            );
            libc::close(fd);
        }
    }
}

/// `execve` of the command: `argv[0]` as given when it has a `/`, else searched in `PATH`
/// like `execvp` (ENOENT/ENOTDIR go on to the next entry, EACCES is remembered).
///
/// # Safety
/// Async-signal-safe.
unsafe fn exec(plan: &Plan, ctx: &Ctx) -> ! {
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings.
    unsafe {
        if !plan.exec_search {
            if let Some(path) = plan.exec_paths.first() {
                libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            }
            ctx.fail(Step::Exec, 0, errno());
        }
        let mut denied = false;
        for path in &plan.exec_paths {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                other => ctx.fail(Step::Exec, 0, other),
            }
        }
        ctx.fail(
            Step::ExecSearch,
            0,
            if denied { libc::EACCES } else { libc::ENOENT },
        )
    }
}
