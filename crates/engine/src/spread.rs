//! Where container directories land on disk: spread over the filesystem's block groups.
//!
//! Every container gets a directory under `<root>/containers` that holds its records, its
//! `/etc` files and its overlay's upper and work directories: about 18 ext4 inodes created and
//! deleted per `run --rm` (the overlay makes half of them when it probes its work directory).
//! ext4 allocates a file's inode in its directory's block group, and a subdirectory's near its
//! parent, so without help every container's inodes come from the one block group holding
//! `containers/`. On ext4 *without a journal* the inode allocator also skips every free inode
//! deleted in the last minute (five when its inode block is still dirty), reading each one's
//! on-disk inode to know, starting from the group's first inode for every allocation. So each
//! inode a container creates paid for every inode the containers of the last minutes deleted in
//! that group: CPU per run grew from 7 to 23 ms over a few hundred runs, and faster the more
//! runs were in flight (a batch deletes at a much higher rate than runs one after the other).
//!
//! The fix is ext4's own "top of a directory hierarchy" flag (`FS_TOPDIR_FL`, `chattr +T`):
//! subdirectories of a directory carrying it are placed by the Orlov allocator like top-level
//! directories, in a lightly used block group picked from a random start, and each container's
//! files then follow its directory there. The recently deleted inodes are spread over the
//! groups instead of piling up in one, and each allocation scans a few of them instead of
//! thousands. The flag changes only where new directories go; it is set at every boot (a root
//! made by an older build gets it too) and is best effort: a filesystem without it (tmpfs,
//! xfs, btrfs) keeps its own placement.

use std::os::fd::AsRawFd;
use std::path::Path;

/// `FS_TOPDIR_FL` of `<linux/fs.h>` (not in the `libc` crate).
pub(crate) const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Sets [`FS_TOPDIR_FL`] on `dir` if its filesystem supports it; returns whether it is set.
/// Never fails: a filesystem without inode flags is logged at debug level.
pub(crate) fn spread_subdirectories(dir: &Path) -> bool {
    match set_topdir(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "no FS_TOPDIR_FL on the containers directory");
            false
        }
    }
}

fn set_topdir(dir: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(dir)?;
    let flags = get_flags(&f)?;
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    let new = flags | FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int (the kernel's size, whatever the request's encoded
    // type says) from a live local.
    if unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            libc::FS_IOC_SETFLAGS,
            &new as *const libc::c_int,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The inode flags of an open file (`FS_IOC_GETFLAGS`).
pub(crate) fn get_flags(f: &std::fs::File) -> std::io::Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int into a live local.
    if unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            libc::FS_IOC_GETFLAGS,
            &mut flags as *mut libc::c_int,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Rig;

    /// `statfs`'s magic of ext2/3/4.
    const EXT_SUPER_MAGIC: i64 = 0xEF53;

    fn fs_magic(path: &Path) -> i64 {
        nix::sys::statfs::statfs(path)
            .map(|s| s.filesystem_type().0)
            .unwrap_or_default()
    }

    fn containers_flags(rig: &Rig) -> std::io::Result<libc::c_int> {
        get_flags(&std::fs::File::open(
            rig.dir.path().join("root").join("containers"),
        )?)
    }

    /// On ext4 (this project's CI and bench machines keep their temp dirs on it) an opened
    /// engine's `containers/` carries the flag, set again on a reopen; elsewhere opening works
    /// without it.
    #[test]
    fn containers_dir_spreads_its_subdirectories_on_ext4() {
        let rig = Rig::new();
        let ext4 = fs_magic(rig.dir.path()) == EXT_SUPER_MAGIC;
        match containers_flags(&rig) {
            Ok(flags) => assert_eq!(
                flags & FS_TOPDIR_FL != 0,
                ext4,
                "FS_TOPDIR_FL on containers/ (ext4: {ext4}, flags {flags:#x})"
            ),
            Err(e) => assert!(!ext4, "ext4 without FS_IOC_GETFLAGS: {e}"),
        }
        if ext4 {
            // A root whose flag was cleared (made by an older build) gets it back at boot.
            let f = std::fs::File::open(rig.dir.path().join("root").join("containers"))
                .expect("open containers/");
            let cleared = get_flags(&f).expect("flags") & !FS_TOPDIR_FL;
            // SAFETY: FS_IOC_SETFLAGS reads one int from a live local.
            let rc = unsafe {
                libc::ioctl(
                    f.as_raw_fd(),
                    libc::FS_IOC_SETFLAGS,
                    &cleared as *const libc::c_int,
                )
            };
            assert_eq!(rc, 0, "clear the flag: {}", std::io::Error::last_os_error());
            assert_eq!(containers_flags(&rig).expect("flags") & FS_TOPDIR_FL, 0);
            let reopened = Rig::with_host(None, rig.dir);
            assert_ne!(
                containers_flags(&reopened).expect("flags") & FS_TOPDIR_FL,
                0,
                "the flag is set again at boot"
            );
        }
    }

    /// A filesystem without inode flags (tmpfs) is no error.
    #[test]
    fn no_inode_flags_is_not_an_error() {
        let dir = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir");
        assert!(
            !spread_subdirectories(dir.path()),
            "tmpfs has no FS_TOPDIR_FL"
        );
    }
}
