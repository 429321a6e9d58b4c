//! Pid 1's confinement steps (between fork and exec, so raw syscalls only, on data prepared in
//! `confine.rs`): the device nodes of `/dev`, masked and read-only paths, `--tmpfs` mounts, the
//! read-only root, and the last steps before `execve`: `no_new_privs`, the seccomp programs, the
//! capability sets, the user and groups.

use std::mem::size_of;
use std::ptr::null;

use libc::{c_int, c_ulong};

use super::child::{Ctx, MountAttr, Step, errno, mount_on_fd, openat2};
use super::confine::{ConfinePlan, DEVICES, MASKED_PATHS, READONLY_PATHS};
use super::plan::InRoot;

pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(super) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(super) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(super) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const SECCOMP_SET_MODE_FILTER: c_ulong = 1;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const seccompiler::sock_filter,
}

/// Sets mount attributes on the mount at `fd` (and, with `recursive`, on every mount below it).
pub(super) fn set_mount_attr(fd: c_int, set: u64, recursive: bool) -> c_int {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `attr` outlives the call and its size is passed; the empty path is a valid C
    // string; an invalid fd fails with EBADF.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        ) as c_int
    }
}

fn close(fd: c_int) {
    // SAFETY: closes an fd this process opened and no longer uses.
    unsafe { libc::close(fd) };
}

/// Creates the device nodes of a fresh `/dev` tmpfs (`dev` is an fd on it): binds of the host's
/// default nodes, or with `--privileged` (a tmpfs without `nodev`) every host device node; then
/// the binds of the `--device` nodes.
pub(super) fn populate_dev(ctx: &Ctx, dev: c_int, confine: &ConfinePlan) {
    default_nodes(ctx, dev, confine);
    for (i, d) in confine.devices.iter().enumerate() {
        // Described as `DevNode` past the default nodes (`plan::Describe`).
        let i = (DEVICES.len() + i) as u32;
        for dir in &d.dirs {
            // SAFETY: mkdirat on an open directory fd and a prepared C string.
            if unsafe { libc::mkdirat(dev, dir.as_ptr(), 0o755) } < 0 && errno() != libc::EEXIST {
                ctx.fail(Step::DevNode, i, errno());
            }
        }
        // An empty file to bind onto, unless the name is taken (`--device /dev/null` binds
        // over the default node).
        // SAFETY: openat on an open directory fd and a prepared C string.
        let fd = unsafe {
            libc::openat(
                dev,
                d.name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o666,
            )
        };
        if fd < 0 && errno() != libc::EEXIST {
            ctx.fail(Step::DevNode, i, errno());
        }
        if fd >= 0 {
            close(fd);
        }
        // SAFETY: as above.
        let fd = ctx.check(
            unsafe {
                libc::openat(
                    dev,
                    d.name.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            },
            Step::DevNode,
            i,
        );
        // SAFETY: a prepared C string; the target is the fd just opened. A bind keeps the
        // flags of the host's `/dev` mount (no `nodev`): the node opens.
        ctx.check(
            unsafe { mount_on_fd(d.host.as_ptr(), fd, null(), libc::MS_BIND, null()) },
            Step::DevNode,
            i,
        );
        close(fd);
    }
}

/// Docker's default nodes, or every host node with `--privileged`.
fn default_nodes(ctx: &Ctx, dev: c_int, confine: &ConfinePlan) {
    if confine.privileged {
        for (i, d) in confine.host_devices.iter().enumerate() {
            // SAFETY: mkdirat/mknodat on an open directory fd and a valid C string.
            let ret = unsafe {
                if d.dir {
                    libc::mkdirat(dev, d.path.as_ptr(), 0o755)
                } else {
                    libc::mknodat(dev, d.path.as_ptr(), d.mode, d.rdev)
                }
            };
            if ret < 0 && errno() != libc::EEXIST {
                ctx.fail(Step::HostDevice, i as u32, errno());
            }
        }
        return;
    }
    for (i, (name, host, _, _)) in DEVICES.iter().enumerate() {
        let i = i as u32;
        // SAFETY: openat on an open directory fd and a constant C string.
        let fd = ctx.check(
            unsafe {
                libc::openat(
                    dev,
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o666,
                )
            },
            Step::DevNode,
            i,
        );
        close(fd);
        // SAFETY: as above.
        let fd = ctx.check(
            unsafe {
                libc::openat(
                    dev,
                    name.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            },
            Step::DevNode,
            i,
        );
        // SAFETY: `host` is a constant C string; the target is the fd just opened.
        ctx.check(
            unsafe { mount_on_fd(host.as_ptr(), fd, null(), libc::MS_BIND, null()) },
            Step::DevNode,
            i,
        );
        close(fd);
    }
}

/// Opens `path` (relative to `root`, no symlinks) as `O_PATH`; `None` if it does not exist.
fn open_system_path(
    ctx: &Ctx,
    root: c_int,
    path: &std::ffi::CStr,
    step: Step,
    i: u32,
) -> Option<c_int> {
    // SAFETY: openat2 on an open directory fd and a constant C string.
    let fd = unsafe {
        openat2(
            root,
            path,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
        )
    };
    if fd < 0 {
        if errno() == libc::ENOENT {
            return None;
        }
        ctx.fail(step, i, errno());
    }
    Some(fd)
}

/// Docker's masked paths (a file gets `/dev/null` bound on it, a directory an empty read-only
/// tmpfs) and read-only paths (bound on themselves, then read-only, `nosuid,nodev,noexec`).
/// `/proc` and `/sys` must be mounted in `root`.
pub(super) fn mask_paths(ctx: &Ctx, root: c_int) {
    for (i, path) in MASKED_PATHS.iter().enumerate() {
        let i = i as u32;
        let Some(fd) = open_system_path(ctx, root, path, Step::MaskPath, i) else {
            continue;
        };
        // SAFETY: an all-zero stat is valid; fstat fills it for an open fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid out pointer.
        ctx.check(unsafe { libc::fstat(fd, &mut st) }, Step::MaskPath, i);
        let ret = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // SAFETY: constant C strings; the target is the fd just opened.
            unsafe {
                mount_on_fd(
                    c"tmpfs".as_ptr(),
                    fd,
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"size=0k,mode=755".as_ptr(),
                )
            }
        } else {
            // SAFETY: as above.
            unsafe { mount_on_fd(c"/dev/null".as_ptr(), fd, null(), libc::MS_BIND, null()) }
        };
        ctx.check(ret, Step::MaskPath, i);
        close(fd);
    }
    for (i, path) in READONLY_PATHS.iter().enumerate() {
        let i = i as u32;
        let Some(fd) = open_system_path(ctx, root, path, Step::ReadonlyPath, i) else {
            continue;
        };
        let source = super::child::FdPath::new(fd);
        // SAFETY: the source is a `/proc/self/fd/N` path in a stack buffer; the target is the
        // same fd: the path is bound onto itself.
        ctx.check(
            unsafe {
                mount_on_fd(
                    source.as_ptr(),
                    fd,
                    null(),
                    libc::MS_BIND | libc::MS_REC,
                    null(),
                )
            },
            Step::ReadonlyPath,
            i,
        );
        close(fd);
        // Re-resolved: now the top of the new mount.
        let Some(fd) = open_system_path(ctx, root, path, Step::ReadonlyPath, i) else {
            ctx.fail(Step::ReadonlyPath, i, libc::ENOENT);
        };
        ctx.check(
            set_mount_attr(
                fd,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                true,
            ),
            Step::ReadonlyPath,
            i,
        );
        close(fd);
    }
}

/// Mounts the `--tmpfs` mounts; `make_dir` creates a target inside the root and returns an
/// `O_PATH` fd on it.
pub(super) fn mount_tmpfs(
    ctx: &Ctx,
    confine: &ConfinePlan,
    make_dir: impl Fn(&InRoot, u32) -> c_int,
) {
    for (i, t) in confine.tmpfs.iter().enumerate() {
        let i = i as u32;
        let fd = make_dir(&t.target, i);
        // SAFETY: constant and prepared C strings; the target is the fd just made.
        ctx.check(
            unsafe {
                mount_on_fd(
                    c"tmpfs".as_ptr(),
                    fd,
                    c"tmpfs".as_ptr(),
                    t.flags,
                    t.data.as_ptr(),
                )
            },
            Step::Tmpfs,
            i,
        );
        close(fd);
    }
}

/// `--read-only`: the root mount (only it) becomes read-only. Call after `pivot_root`.
pub(super) fn readonly_root(ctx: &Ctx) {
    // SAFETY: open of a constant path; checked.
    let fd = ctx.check(
        unsafe {
            libc::open(
                c"/".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        },
        Step::ReadonlyRoot,
        0,
    );
    ctx.check(
        set_mount_attr(fd, MOUNT_ATTR_RDONLY, false),
        Step::ReadonlyRoot,
        1,
    );
    close(fd);
}

/// The last steps before `execve`: `no_new_privs` (if asked), the seccomp programs (while pid 1
/// still has CAP_SYS_ADMIN, unless `no_new_privs` lets them go last), the bounding set, the
/// user and groups (keeping the permitted set across the uid change), then the effective,
/// permitted and (empty) inheritable sets. A non-root user loses them at `execve`, as in Docker.
pub(super) fn finish(ctx: &Ctx, confine: &ConfinePlan, last_cap: u32) {
    if confine.no_new_privs {
        // SAFETY: plain prctl.
        ctx.check(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0) },
            Step::NoNewPrivs,
            0,
        );
    } else {
        install_seccomp(ctx, confine);
    }
    for cap in 0..=last_cap.min(63) {
        if confine.caps & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: plain prctl.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) };
        if ret < 0 && errno() != libc::EINVAL {
            ctx.fail(Step::Capabilities, cap, errno());
        }
    }
    // SAFETY: plain prctl; EINVAL on kernels without ambient capabilities: nothing to clear.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0,
            0,
            0,
        )
    };
    // SAFETY: plain prctl: keep the permitted set across setresuid.
    ctx.check(
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1 as c_ulong, 0, 0, 0) },
        Step::SetUser,
        0,
    );
    // Raw syscalls, not glibc's wrappers: this process shares the engine's memory (see
    // `child.rs`), where glibc believes it is multi-threaded and would "broadcast" the change to
    // the engine's threads through its own locks and thread list.
    // SAFETY: `groups` is a valid array of its length.
    ctx.check(
        unsafe {
            libc::syscall(
                libc::SYS_setgroups,
                confine.groups.len(),
                confine.groups.as_ptr(),
            )
        },
        Step::SetUser,
        1,
    );
    // SAFETY: plain syscalls.
    ctx.check(
        unsafe { libc::syscall(libc::SYS_setresgid, confine.gid, confine.gid, confine.gid) },
        Step::SetUser,
        2,
    );
    // SAFETY: plain syscalls.
    ctx.check(
        unsafe { libc::syscall(libc::SYS_setresuid, confine.uid, confine.uid, confine.uid) },
        Step::SetUser,
        3,
    );
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: confine.caps as u32,
            permitted: confine.caps as u32,
            inheritable: 0,
        },
        CapData {
            effective: (confine.caps >> 32) as u32,
            permitted: (confine.caps >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: header and data are valid for capset's v3 layout (two CapData).
    ctx.check(
        unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) },
        Step::Capabilities,
        64,
    );
    if confine.no_new_privs {
        install_seccomp(ctx, confine);
    }
}

fn install_seccomp(ctx: &Ctx, confine: &ConfinePlan) {
    let Some(filters) = &confine.seccomp else {
        return;
    };
    for (i, program) in filters.programs.iter().enumerate() {
        let prog = SockFprog {
            len: program.len() as u16,
            filter: program.as_ptr(),
        };
        // SAFETY: `prog` points to a BPF program built before the fork, alive in the plan.
        ctx.check(
            unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    SECCOMP_SET_MODE_FILTER,
                    0 as c_ulong,
                    &prog as *const SockFprog,
                )
            },
            Step::Seccomp,
            i as u32,
        );
    }
}
