//! `--user` and `--group-add`: resolves `NAME|UID[:GROUP|GID]` and extra groups against the
//! container's own `/etc/passwd` and `/etc/group` (its writable layer first, then the image),
//! as runc does: a numeric id needs no entry; without an explicit group the user's primary
//! group and the groups listing it as a member apply; `HOME` comes from the entry.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExecUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// Supplementary groups (setgroups).
    pub(super) groups: Vec<u32>,
    /// The home directory from the passwd entry (`/` without one, `/root` for root).
    pub(super) home: String,
}

/// The most of `/etc/passwd` or `/etc/group` read.
const MAX_FILE: u64 = 4 << 20;

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user` and `group_add` in the root made of `layers` (top first).
pub(super) fn resolve(
    user: &str,
    group_add: &[String],
    layers: &[&Path],
) -> Result<ExecUser, String> {
    let passwd = read_in_layers(layers, c"etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let group = read_in_layers(layers, c"etc/group")?
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        Err(_) => Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            format!("unable to find user {user_part}: no matching entries in passwd file")
        })?),
    };
    let uid = match user_part.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry.map_or(0, |e| e.uid),
    };
    let mut gid = entry.map_or(0, |e| e.gid);
    let mut groups = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?,
            };
        }
        _ => {
            if let Some(entry) = entry {
                groups.extend(
                    group
                        .iter()
                        .filter(|g| g.members.contains(&entry.name))
                        .map(|g| g.gid),
                );
            }
        }
    }
    for g in group_add {
        let gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .iter()
                .find(|e| e.name == *g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
        groups.push(gid);
    }
    groups.sort_unstable();
    groups.dedup();
    if groups.len() > 65_536 {
        return Err("too many supplementary groups".into());
    }
    let home = match entry {
        Some(e) if !e.home.is_empty() => e.home.clone(),
        _ if uid == 0 => "/root".into(),
        _ => "/".into(),
    };
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

/// Reads `rel` from the first layer that has it, resolving symlinks inside that layer only.
fn read_in_layers(layers: &[&Path], rel: &std::ffi::CStr) -> Result<Option<String>, String> {
    for layer in layers {
        let dir = CString::new(layer.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: open of a valid C string; the result is checked and owned right away.
        let dirfd = unsafe {
            libc::open(
                dir.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if dirfd < 0 {
            continue;
        }
        // SAFETY: `dirfd` is a new fd that nothing else owns.
        let dirfd = unsafe { OwnedFd::from_raw_fd(dirfd) };
        // SAFETY: open_how is plain data; all-zero is valid.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: `how` and `rel` outlive the call; the size matches the struct passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                std::os::fd::AsRawFd::as_raw_fd(&dirfd),
                rel.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        } as libc::c_int;
        if fd < 0 {
            continue;
        }
        // SAFETY: `fd` is a new fd that nothing else owns.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            continue;
        }
        let mut text = String::new();
        file.take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(|e| format!("read {}: {e}", rel.to_string_lossy()))?;
        return Ok(Some(text));
    }
    Ok(None)
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    #[test]
    fn users_and_groups_resolve_like_runc() {
        let root = root_with(
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\n",
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,bob\naudio:x:29:\n",
        );
        let layers = [root.path()];
        let r = |u: &str, g: &[&str]| {
            resolve(
                u,
                &g.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &layers,
            )
        };
        let u = r("", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = r("www", &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups.clone(), u.home.as_str()),
            (33, 33, vec![50], "/var/www")
        );
        let u = r("65534:65534", &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups.clone(), u.home.as_str()),
            (65534, 65534, vec![], "/")
        );
        let u = r("1000", &["audio", "7"]).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (1000, 0, vec![7, 29]));
        let u = r("www:audio", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (33, 29, vec![]));
        assert!(
            r("nobody", &[])
                .unwrap_err()
                .contains("unable to find user nobody")
        );
        assert!(
            r("0:nogroup", &[])
                .unwrap_err()
                .contains("unable to find group nogroup")
        );
        assert!(r("", &["nogroup"]).is_err());
    }
}
