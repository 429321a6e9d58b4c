//! The three `bpf(2)` commands the device program needs: `BPF_PROG_LOAD` (a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program from [`super::devices::program`]), `BPF_PROG_ATTACH`
//! (to a cgroup2 directory, `BPF_CGROUP_DEVICE` with `BPF_F_ALLOW_MULTI`) and `BPF_PROG_QUERY`
//! (the programs attached to a directory, for the tests and for diagnosis).
//!
//! A direct wrapper of `syscall(SYS_bpf)` with `#[repr(C)]` prefixes of the kernel's
//! `union bpf_attr`, rather than a crate: `libbpf-sys` builds libbpf from C and needs libelf and
//! zlib headers that the machines and CI do not have (and a C build per clean build), `libbpf-rs`
//! sits on top of it, and `aya` loads ELF objects, not a program made at run time. Three
//! commands with fixed layouts are a small, auditable surface; the kernel accepts an attribute
//! shorter than its own `bpf_attr` (the rest reads as zero).
//!
//! An attached program holds its own reference: it stays attached after the loading fd is
//! closed and goes away with the cgroup directory. The daemon loads the default program once
//! and keeps that fd (close-on-exec, as every bpf fd) to attach it to each container's cgroup.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::devices::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Size of the verifier's log, read only when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// Most program ids read from one query.
const MAX_QUERY: usize = 64;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C, align(8))]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    /// `relative_fd` on newer kernels: explicit, so no padding byte reaches the kernel.
    relative_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr`, up to `prog_cnt` and the reserved word after it.
#[repr(C, align(8))]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    /// Reserved by the kernel: explicit, so no padding byte reaches the kernel.
    reserved: u32,
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, and
    // the size passed is its own; every pointer inside it points at a buffer that outlives the
    // call (the callers' locals), with the length given beside it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A load the kernel refused, with what its verifier said.
#[derive(Debug)]
pub(super) struct LoadError {
    pub source: io::Error,
    pub log: String,
}

/// Loads `insns` as a `BPF_PROG_TYPE_CGROUP_DEVICE` program. On failure, loads again with the
/// verifier's log on, to say why.
pub(super) fn load_device_program(insns: &[Insn]) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_devcg\0");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returns a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(source) => {
            let mut log = vec![0u8; LOG_SIZE];
            attr.log_level = 1;
            attr.log_size = LOG_SIZE as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                // Loaded the second time (a transient failure): keep it.
                // SAFETY: as above.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]).trim().to_owned();
            Err(LoadError { source, log })
        }
    }
}

/// Opens a cgroup2 directory for the attach and query commands.
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `open` returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches `prog` to the cgroup2 directory `dir` as a device program, beside (never instead
/// of) the programs of its ancestors: `BPF_F_ALLOW_MULTI`, so a device the host's manager
/// denies on a parent stays denied.
pub(super) fn attach_device_program(dir: &Path, prog: BorrowedFd<'_>) -> io::Result<()> {
    let target = open_dir(dir)?;
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// The ids of the device programs attached to the cgroup2 directory `dir` itself (not those
/// inherited from its ancestors).
pub fn device_programs(dir: &Path) -> io::Result<Vec<u32>> {
    let target = open_dir(dir)?;
    let mut ids = [0u32; MAX_QUERY];
    let mut attr = QueryAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_QUERY as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = (attr.prog_cnt as usize).min(MAX_QUERY);
    Ok(ids[..n].to_vec())
}
