//! Failure reporting between `fork` and `exec`: the [`Step`] that failed, the fixed-size
//! [`Record`] written to the error pipe (and decoded by the engine), and [`Ctx`], which writes it
//! and `_exit`s. Async-signal-safe like the rest of `child`.

use libc::{c_int, c_long};

use super::write_all;

/// What failed, in a [`Record`]. The index in the record says which instance (bind mount,
/// device node, ...).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::runtime) enum Step {
    Setsid = 1,
    JoinNetns,
    Unshare,
    MakePrivate,
    Hostname,
    Loopback,
    Pipe,
    Fork,
    ParentDeath,
    Ctty,
    MountOverlay,
    OpenRootfs,
    Target,
    MountProc,
    MountDev,
    DevNode,
    DevLink,
    MountDevpts,
    MountShm,
    Console,
    MountSys,
    Bind,
    BindReadonly,
    PivotRoot,
    DetachOldRoot,
    Cwd,
    Capabilities,
    NoNewPrivs,
    Exec,
    ExecSearch,
    MaskPath,
    ReadonlyPath,
    HostDevice,
    Tmpfs,
    ReadonlyRoot,
    SetUser,
    Seccomp,
    JoinCgroup,
    Stdio,
}

impl Step {
    const ALL: [Step; 39] = [
        Step::Setsid,
        Step::JoinNetns,
        Step::Unshare,
        Step::MakePrivate,
        Step::Hostname,
        Step::Loopback,
        Step::Pipe,
        Step::Fork,
        Step::ParentDeath,
        Step::Ctty,
        Step::MountOverlay,
        Step::OpenRootfs,
        Step::Target,
        Step::MountProc,
        Step::MountDev,
        Step::DevNode,
        Step::DevLink,
        Step::MountDevpts,
        Step::MountShm,
        Step::Console,
        Step::MountSys,
        Step::Bind,
        Step::BindReadonly,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::Cwd,
        Step::Capabilities,
        Step::NoNewPrivs,
        Step::Exec,
        Step::ExecSearch,
        Step::MaskPath,
        Step::ReadonlyPath,
        Step::HostDevice,
        Step::Tmpfs,
        Step::ReadonlyRoot,
        Step::SetUser,
        Step::Seccomp,
        Step::JoinCgroup,
        Step::Stdio,
    ];

    pub(in crate::runtime) fn from_u32(value: u32) -> Option<Step> {
        Self::ALL.into_iter().find(|s| *s as u32 == value)
    }
}

/// A failure report on the error pipe: written with one `write` (atomic, < `PIPE_BUF`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::runtime) struct Record {
    pub(in crate::runtime) step: u32,
    pub(in crate::runtime) index: u32,
    pub(in crate::runtime) errno: i32,
}

pub(in crate::runtime) const RECORD_LEN: usize = 12;

impl Record {
    fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&self.step.to_ne_bytes());
        out[4..8].copy_from_slice(&self.index.to_ne_bytes());
        out[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    pub(in crate::runtime) fn from_bytes(b: &[u8; RECORD_LEN]) -> Record {
        Record {
            step: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            index: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            errno: i32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// Reports failures: holds the error pipe.
pub(in crate::runtime) struct Ctx {
    pub(super) err_w: c_int,
}

impl Ctx {
    /// A context reporting on the error pipe's write end `err_w`.
    pub(in crate::runtime) fn new(err_w: c_int) -> Ctx {
        Ctx { err_w }
    }

    /// Writes a failure record and exits with 127.
    pub(in crate::runtime) fn fail(&self, step: Step, index: u32, errno: i32) -> ! {
        let bytes = Record {
            step: step as u32,
            index,
            errno,
        }
        .to_bytes();
        // SAFETY: write and _exit are async-signal-safe; `bytes` is a valid buffer.
        unsafe {
            write_all(self.err_w, &bytes);
            libc::_exit(127)
        }
    }

    /// Fails with the current errno when `ret` is negative; returns `ret` otherwise.
    pub(in crate::runtime) fn check<T: Into<c_long> + Copy>(
        &self,
        ret: T,
        step: Step,
        index: u32,
    ) -> T {
        if ret.into() < 0 {
            self.fail(step, index, errno());
        }
        ret
    }
}

pub(in crate::runtime) fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}
