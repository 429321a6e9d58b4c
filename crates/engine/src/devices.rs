//! A container's own devices: `--device HOST[:CONTAINER[:PERMS]]` (`HostConfig.Devices`) and
//! `--device-cgroup-rule 'c 1:3 rwm'` (`HostConfig.DeviceCgroupRules`).
//!
//! Both become device rules added after Docker's defaults in the container's cgroup (the v1
//! `devices.allow` list and the BPF device program, `crate::cgroups`); a `--device` is also a
//! bind of the host node into the container's `/dev` (`runtime::confine`), the one kind of mount
//! without `nodev`. Checked at create (a missing host path, one that is not a device node, a
//! bad rule: 400 naming it), resolved again at each start (the host node may have changed).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::{ACC_MKNOD, ACC_READ, ACC_WRITE, DevType, DeviceRule};
use crate::container::SecurityOptions;
use crate::error::EngineError;

/// The most `--device` entries and `--device-cgroup-rule`s one container may have.
pub const MAX_DEVICES: usize = 128;

/// One `HostConfig.Devices` entry, as the client sent it (kept for inspect).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    /// Empty = the host path.
    pub path_in_container: String,
    /// A subset of `rwm`; empty = `rwm`.
    pub cgroup_permissions: String,
}

/// A `--device` resolved against the host: what to bind where, and its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNode {
    /// The host node (symbolic links resolved).
    pub host: PathBuf,
    /// The path in the container, relative to its `/dev` (`myzero`, `snd/pcm`).
    pub in_dev: String,
    pub rule: DeviceRule,
}

/// Names in the container's `/dev` that the runtime itself provides (links, directories, its
/// pty): a `--device` cannot take them.
const RESERVED: [&str; 9] = [
    "fd", "stdin", "stdout", "stderr", "ptmx", "core", "console", "pts", "shm",
];

/// Parses `CgroupPermissions` (`rwm`, `r`, `rw`, ...; empty = `rwm`).
fn permissions(perms: &str, what: &str) -> Result<u8, String> {
    if perms.is_empty() {
        return Ok(ACC_READ | ACC_WRITE | ACC_MKNOD);
    }
    let mut access = 0;
    for c in perms.chars() {
        let bit = match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(format!(
                    "invalid device permissions {perms:?} for {what}: expected a subset of \"rwm\""
                ));
            }
        };
        if access & bit != 0 {
            return Err(format!(
                "invalid device permissions {perms:?} for {what}: {c:?} given twice"
            ));
        }
        access |= bit;
    }
    Ok(access)
}

/// Resolves one `--device`: the host path must be a character or block device.
pub fn resolve(m: &DeviceMapping) -> Result<HostNode, String> {
    let host = &m.path_on_host;
    let gathering = |reason: String| {
        format!("error gathering device information while adding custom device {host:?}: {reason}")
    };
    if !host.starts_with('/') {
        return Err(gathering("the host path must be absolute".into()));
    }
    let meta = std::fs::metadata(host).map_err(|e| gathering(e.to_string()))?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        DevType::Char
    } else if ft.is_block_device() {
        DevType::Block
    } else {
        return Err(gathering("not a device node".into()));
    };
    let resolved = std::fs::canonicalize(host).map_err(|e| gathering(e.to_string()))?;
    let target = if m.path_in_container.is_empty() {
        host.as_str()
    } else {
        m.path_in_container.as_str()
    };
    let in_dev = in_dev(target).map_err(|reason| {
        format!("invalid device path in container {target:?} for {host:?}: {reason}")
    })?;
    let access = permissions(&m.cgroup_permissions, &format!("device {host:?}"))?;
    let rdev = meta.rdev();
    Ok(HostNode {
        host: resolved,
        in_dev,
        rule: DeviceRule {
            kind,
            major: Some(libc::major(rdev)),
            minor: Some(libc::minor(rdev)),
            access,
        },
    })
}

/// `/dev/x/y` → `x/y`: a clean path under `/dev` that is not one of the runtime's own entries.
fn in_dev(target: &str) -> Result<String, String> {
    let rel = Path::new(target)
        .strip_prefix("/dev")
        .map_err(|_| "it must be under /dev (Berth binds devices into /dev only)".to_string())?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .filter(|p| !p.contains('\0'))
                    .ok_or("it is not valid UTF-8")?
                    .to_owned(),
            ),
            _ => return Err("it must not contain '.' or '..'".into()),
        }
    }
    match parts.first() {
        None => Err("it names /dev itself".into()),
        Some(first) if RESERVED.contains(&first.as_str()) => {
            Err(format!("/dev/{first} is provided by the runtime"))
        }
        Some(_) => Ok(parts.join("/")),
    }
}

/// Parses one `--device-cgroup-rule` in the v1 `devices.allow` syntax: `TYPE MAJOR:MINOR PERMS`,
/// TYPE one of `a`, `b`, `c`, MAJOR and MINOR a number or `*`, PERMS a subset of `rwm`.
pub fn parse_rule(rule: &str) -> Result<DeviceRule, String> {
    let bad = |reason: &str| format!("invalid device cgroup rule {rule:?}: {reason}");
    let fields: Vec<&str> = rule.split(' ').collect();
    let [kind, numbers, perms] = fields.as_slice() else {
        return Err(bad("expected 'TYPE MAJOR:MINOR PERMS', e.g. 'c 1:3 rwm'"));
    };
    let kind = match *kind {
        "a" => DevType::Any,
        "b" => DevType::Block,
        "c" => DevType::Char,
        _ => return Err(bad("the type must be 'a', 'b' or 'c'")),
    };
    let (major, minor) = numbers
        .split_once(':')
        .ok_or_else(|| bad("expected MAJOR:MINOR"))?;
    let number = |n: &str| -> Result<Option<u32>, String> {
        if n == "*" {
            return Ok(None);
        }
        // Majors are 12 bits, minors 20: both fit the BPF program's immediates.
        match n.parse::<u32>() {
            Ok(v) if v < (1 << 20) && !n.starts_with('+') => Ok(Some(v)),
            _ => Err(bad("MAJOR and MINOR must be numbers below 2^20 or '*'")),
        }
    };
    let (major, minor) = (number(major)?, number(minor)?);
    if perms.is_empty() {
        return Err(bad("no permissions (a subset of \"rwm\")"));
    }
    let access = permissions(perms, &format!("rule {rule:?}")).map_err(|e| bad(&e))?;
    Ok(DeviceRule {
        kind,
        major,
        minor,
        access,
    })
}

/// The container's own rules (its devices', then its `--device-cgroup-rule`s), added after
/// Docker's defaults; and its devices, resolved against the host now.
pub fn resolve_all(opts: &SecurityOptions) -> Result<(Vec<HostNode>, Vec<DeviceRule>), String> {
    if opts.devices.len() > MAX_DEVICES || opts.device_cgroup_rules.len() > MAX_DEVICES {
        return Err(format!(
            "too many devices or device cgroup rules (at most {MAX_DEVICES} of each)"
        ));
    }
    let nodes = opts
        .devices
        .iter()
        .map(resolve)
        .collect::<Result<Vec<_>, _>>()?;
    let mut rules: Vec<DeviceRule> = nodes.iter().map(|n| n.rule).collect();
    for r in &opts.device_cgroup_rules {
        rules.push(parse_rule(r)?);
    }
    Ok((nodes, rules))
}

/// Checks the devices and rules at create: 400 naming the device or rule.
pub fn validate(opts: &SecurityOptions) -> Result<(), EngineError> {
    resolve_all(opts).map(|_| ()).map_err(EngineError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_as_the_kernel_writes_them() {
        for text in [
            "c 1:3 rwm",
            "b *:* m",
            "a *:* rwm",
            "c 136:* rw",
            "c 10:200 r",
        ] {
            assert_eq!(parse_rule(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "c 1:3",
            "x 1:3 rwm",
            "c 1-3 rwm",
            "c a:3 rwm",
            "c 1:3 rwx",
            "c 1:3 rr",
            "c  1:3 rwm",
            "c 1:3 ",
            "c -1:3 rwm",
            "c 1:2000000 rwm",
        ] {
            let e = parse_rule(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_device_is_a_host_node_bound_under_dev() {
        let n = resolve(&DeviceMapping {
            path_on_host: "/dev/zero".into(),
            path_in_container: "/dev/sub/myzero".into(),
            cgroup_permissions: "r".into(),
        })
        .unwrap();
        assert_eq!(n.in_dev, "sub/myzero");
        assert_eq!(n.rule.to_string(), "c 1:5 r");
        let same = resolve(&DeviceMapping {
            path_on_host: "/dev/null".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (same.in_dev.as_str(), same.rule.to_string()),
            ("null", "c 1:3 rwm".into())
        );
        for (host, target, want) in [
            ("/nonexistent-device", "", "No such file"),
            ("/etc/passwd", "", "not a device node"),
            ("dev/null", "", "absolute"),
            ("/dev/null", "/tmp/null", "under /dev"),
            ("/dev/null", "/dev/../etc/x", "'..'"),
            ("/dev/null", "/dev/pts/0", "provided by the runtime"),
            ("/dev/null", "/dev", "/dev itself"),
        ] {
            let e = resolve(&DeviceMapping {
                path_on_host: host.into(),
                path_in_container: target.into(),
                cgroup_permissions: String::new(),
            })
            .unwrap_err();
            assert!(e.contains(want) && e.contains(host), "{host} {target}: {e}");
        }
    }
}
