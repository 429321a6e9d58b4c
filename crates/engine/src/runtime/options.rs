//! Interprets a container's [`SecurityOptions`] (Docker's `CapAdd`, `CapDrop`, `Privileged`,
//! `ReadonlyRootfs`, `SecurityOpt`, `Tmpfs`) into what the runtime applies: the capability set,
//! the seccomp profile, `no_new_privs`, masked paths on or off, tmpfs mounts. The same function
//! validates a create request (a 400 that names the option and the reason) and prepares a start.

use libc::c_ulong;

use super::seccomp::{self, Profile};
use crate::container::SecurityOptions;

/// Docker's default capability set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;

/// `CAP_SYS_PTRACE`'s number.
const CAP_SYS_PTRACE: u32 = 19;

/// Which seccomp filter a container gets.
#[derive(Debug, Clone)]
pub enum Seccomp {
    /// Docker's default profile (`seccomp/default.json`).
    Default,
    /// `seccomp=unconfined`, or `--privileged`.
    Unconfined,
    /// `seccomp=<json>`.
    Profile(Box<Profile>),
}

/// A `--tmpfs` mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub target: String,
    pub flags: c_ulong,
    /// Filesystem data (`size=...,mode=...`).
    pub data: String,
}

/// What the runtime applies.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub privileged: bool,
    /// Bounding, effective and permitted set (bit N = capability N).
    pub caps: u64,
    pub seccomp: Seccomp,
    pub no_new_privs: bool,
    /// Masked and read-only paths of `/proc` and `/sys` (off with `--privileged` or
    /// `systempaths=unconfined`).
    pub mask_paths: bool,
    pub readonly_rootfs: bool,
    pub tmpfs: Vec<Tmpfs>,
}

/// Interprets the options. `last_cap` is the highest capability the kernel knows. Errors name
/// the option and the reason, as Docker's do.
pub fn interpret(opts: &SecurityOptions, last_cap: u32) -> Result<Confinement, String> {
    let all = if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    };
    let add = cap_list(&opts.cap_add, "CapAdd")?;
    let drop = cap_list(&opts.cap_drop, "CapDrop")?;
    // Docker's rule: ALL in CapAdd = every capability but those dropped; ALL in CapDrop = only
    // those added; else the defaults minus the dropped plus the added.
    let caps = if opts.privileged {
        all
    } else if add.all {
        all & !drop.mask
    } else if drop.all {
        add.mask
    } else {
        (DEFAULT_CAPS & !drop.mask) | add.mask
    } & all;

    let mut seccomp = Seccomp::Default;
    let mut no_new_privs = false;
    let mut mask_paths = true;
    for opt in &opts.security_opt {
        let invalid = |reason: &str| format!("invalid --security-opt {:?}: {reason}", short(opt));
        let (key, value) = match opt.split_once('=') {
            Some(kv) => kv,
            None if opt == "no-new-privileges" => (opt.as_str(), "true"),
            // Docker's deprecated `key:value` form.
            None => opt
                .split_once(':')
                .ok_or_else(|| invalid("expected KEY=VALUE"))?,
        };
        match key {
            "seccomp" => seccomp = match value {
                "unconfined" => Seccomp::Unconfined,
                "builtin" | "" => Seccomp::Default,
                json => Seccomp::Profile(Box::new(seccomp::parse(json).map_err(|e| {
                    format!(
                        "invalid --security-opt seccomp: decoding the seccomp profile failed: {e}"
                    )
                })?)),
            },
            "no-new-privileges" => {
                no_new_privs = match value {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(invalid("the value must be true or false")),
                }
            }
            "systempaths" => match value {
                "unconfined" => mask_paths = false,
                _ => return Err(invalid("the only value is unconfined")),
            },
            // No AppArmor or SELinux in Berth: accepted and without effect, so that clients
            // which always send them work.
            "apparmor" | "label" => {}
            "writable-cgroups" => match value {
                "true" | "false" => {}
                _ => return Err(invalid("the value must be true or false")),
            },
            _ => {
                return Err(invalid(
                    "unknown option (use seccomp=, no-new-privileges, systempaths=, apparmor=, label=)",
                ));
            }
        }
    }
    if opts.privileged {
        seccomp = Seccomp::Unconfined;
        mask_paths = false;
    } else if opts.init && caps & (1 << CAP_SYS_PTRACE) != 0 {
        // The init is a fork of the runtime's shim, itself a fork of the engine: its memory
        // starts as a copy of the engine's, and CAP_SYS_PTRACE is what lets a process read
        // another's memory despite it not being dumpable. A privileged container is host root
        // anyway, so only the unprivileged combination is refused.
        return Err(
            "invalid HostConfig.Init (--init): not with CAP_SYS_PTRACE: the init is a \
                    copy of the engine's runtime process and the capability would let the \
                    container read its memory; drop --init or the capability"
                .to_string(),
        );
    }
    if let Seccomp::Profile(profile) = &seccomp {
        // Compile now, so that a profile the kernel format cannot express fails the request.
        seccomp::compile(profile, caps).map_err(|e| {
            format!("invalid --security-opt seccomp: cannot compile the seccomp profile: {e}")
        })?;
    }

    let mut tmpfs = Vec::with_capacity(opts.tmpfs.len());
    for (target, options) in &opts.tmpfs {
        tmpfs.push(parse_tmpfs(target, options)?);
    }
    Ok(Confinement {
        privileged: opts.privileged,
        caps,
        seccomp,
        no_new_privs,
        mask_paths,
        readonly_rootfs: opts.readonly_rootfs,
        tmpfs,
    })
}

/// A security option for messages: a seccomp profile's JSON is cut short.
fn short(opt: &str) -> String {
    if opt.len() > 60 {
        let mut end = 60;
        while !opt.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &opt[..end])
    } else {
        opt.to_string()
    }
}

struct CapList {
    all: bool,
    mask: u64,
}

fn cap_list(names: &[String], field: &str) -> Result<CapList, String> {
    let mut list = CapList {
        all: false,
        mask: 0,
    };
    for name in names {
        if name.eq_ignore_ascii_case("ALL") || name.eq_ignore_ascii_case("CAP_ALL") {
            list.all = true;
            continue;
        }
        let n = seccomp::cap_number(name)
            .ok_or_else(|| format!("invalid {field}: unknown capability: {name:?}"))?;
        list.mask |= 1u64 << n;
    }
    Ok(list)
}

/// `--tmpfs PATH:OPTIONS`: Docker's defaults `noexec,nosuid,nodev`, mount flags from the
/// options, the rest (size, mode, uid, gid, nr_inodes, nr_blocks, mpol) as data. `nodev` stays
/// whatever the options say: a tmpfs is never a device mount.
fn parse_tmpfs(target: &str, options: &str) -> Result<Tmpfs, String> {
    let invalid = |reason: String| format!("invalid --tmpfs {target:?}: {reason}");
    if !target.starts_with('/') || target.trim_matches('/').is_empty() {
        return Err(invalid(
            "the path must be absolute and not the root".to_string(),
        ));
    }
    let mut flags = libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        let (set, clear) = match opt {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" | "dev" => (0, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => (0, 0),
            other => {
                let key = other.split_once('=').map_or(other, |(k, _)| k);
                match key {
                    "size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks" | "mpol"
                        if other.contains('=') =>
                    {
                        if other.contains([',', '\0']) {
                            return Err(invalid(format!("bad option {other:?}")));
                        }
                        data.push(other.to_string());
                        (0, 0)
                    }
                    _ => return Err(invalid(format!("unknown option {other:?}"))),
                }
            }
        };
        flags = (flags | set) & !clear;
    }
    Ok(Tmpfs {
        target: target.to_string(),
        flags: flags | libc::MS_NODEV,
        data: data.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(f: impl FnOnce(&mut SecurityOptions)) -> SecurityOptions {
        let mut o = SecurityOptions::default();
        f(&mut o);
        o
    }

    #[test]
    fn capabilities_as_docker_computes_them() {
        let c = interpret(&SecurityOptions::default(), 40).unwrap();
        assert_eq!(c.caps, DEFAULT_CAPS);
        assert!(matches!(c.seccomp, Seccomp::Default));
        assert!(c.mask_paths && !c.no_new_privs);
        let c = interpret(&opts(|o| o.cap_drop = vec!["ALL".into()]), 40).unwrap();
        assert_eq!(c.caps, 0);
        let c = interpret(
            &opts(|o| {
                o.cap_drop = vec!["all".into()];
                o.cap_add = vec!["net_admin".into()];
            }),
            40,
        )
        .unwrap();
        assert_eq!(c.caps, 1 << 12);
        let c = interpret(
            &opts(|o| {
                o.cap_drop = vec!["CAP_CHOWN".into()];
                o.cap_add = vec!["SYS_ADMIN".into()];
            }),
            40,
        )
        .unwrap();
        assert_eq!(c.caps, (DEFAULT_CAPS & !1) | (1 << 21));
        let c = interpret(&opts(|o| o.cap_add = vec!["ALL".into()]), 40).unwrap();
        assert_eq!(c.caps, (1 << 41) - 1);
        let c = interpret(&opts(|o| o.privileged = true), 40).unwrap();
        assert_eq!(c.caps, (1 << 41) - 1);
        assert!(matches!(c.seccomp, Seccomp::Unconfined));
        assert!(!c.mask_paths);
        let e = interpret(&opts(|o| o.cap_add = vec!["CAP_NOPE".into()]), 40).unwrap_err();
        assert_eq!(e, "invalid CapAdd: unknown capability: \"CAP_NOPE\"");
    }

    /// `--init` with `CAP_SYS_PTRACE` (added, or through `ALL`) is refused: the init's memory is a
    /// copy of the engine's. Without the capability, or privileged, it is accepted.
    #[test]
    fn init_is_refused_with_sys_ptrace() {
        for add in [["SYS_PTRACE"], ["ALL"]] {
            let e = interpret(
                &opts(|o| {
                    o.init = true;
                    o.cap_add = add.iter().map(|s| s.to_string()).collect();
                }),
                40,
            )
            .unwrap_err();
            assert!(e.starts_with("invalid HostConfig.Init (--init): not with CAP_SYS_PTRACE"));
        }
        assert!(interpret(&opts(|o| o.init = true), 40).is_ok());
        assert!(
            interpret(
                &opts(|o| {
                    o.init = true;
                    o.cap_add = vec!["ALL".into()];
                    o.cap_drop = vec!["SYS_PTRACE".into()];
                }),
                40
            )
            .is_ok()
        );
        assert!(
            interpret(
                &opts(|o| {
                    o.init = true;
                    o.privileged = true;
                }),
                40
            )
            .is_ok()
        );
    }

    #[test]
    fn security_opts() {
        let c = interpret(
            &opts(|o| {
                o.security_opt = vec![
                    "seccomp=unconfined".into(),
                    "no-new-privileges".into(),
                    "apparmor=unconfined".into(),
                ]
            }),
            40,
        )
        .unwrap();
        assert!(matches!(c.seccomp, Seccomp::Unconfined) && c.no_new_privs);
        let c = interpret(
            &opts(|o| o.security_opt = vec!["no-new-privileges:true".into()]),
            40,
        )
        .unwrap();
        assert!(c.no_new_privs);
        let c = interpret(
            &opts(|o| o.security_opt = vec![format!("seccomp={}", seccomp::DEFAULT_PROFILE)]),
            40,
        )
        .unwrap();
        assert!(matches!(c.seccomp, Seccomp::Profile(_)));
        let e = interpret(&opts(|o| o.security_opt = vec!["foo=bar".into()]), 40).unwrap_err();
        assert!(
            e.starts_with("invalid --security-opt \"foo=bar\": unknown option"),
            "{e}"
        );
        let e = interpret(&opts(|o| o.security_opt = vec!["seccomp={".into()]), 40).unwrap_err();
        assert!(e.contains("decoding the seccomp profile failed"), "{e}");
        let e = interpret(&opts(|o| o.security_opt = vec!["nonsense".into()]), 40).unwrap_err();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
    }

    #[test]
    fn tmpfs_options() {
        let t = parse_tmpfs("/run", "").unwrap();
        assert_eq!(t.flags, libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV);
        let t = parse_tmpfs("/run", "exec,size=64m,mode=1777,ro").unwrap();
        assert_eq!(t.flags, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY);
        assert_eq!(t.data, "size=64m,mode=1777");
        assert!(parse_tmpfs("run", "").is_err());
        assert!(parse_tmpfs("/", "").is_err());
        assert!(parse_tmpfs("/x", "bogus").is_err());
    }
}
