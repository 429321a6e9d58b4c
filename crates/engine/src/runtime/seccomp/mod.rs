//! Seccomp filters from profiles in Docker's format (`defaultAction`, `syscalls[]` with
//! `names`, `action`, `errnoRet`, `args`, `includes`/`excludes` on capabilities, architectures
//! and kernel version), compiled to BPF with `seccompiler` before the fork and installed by pid 1
//! (`child.rs`) with one raw `seccomp(2)` per program.
//!
//! One parser serves both the default profile and `--security-opt seccomp=<json>` (the docker CLI
//! reads the file and sends its JSON content). `default.json` is Berth's transcription of the
//! facts of Docker's default profile (moby's `profiles/seccomp/default.json`, Apache-2.0 data):
//! the same allow-list, argument rules and capability-dependent rules. The default profile is
//! parsed once and its BPF is cached per capability set, so a container start costs a map
//! look-up.
//!
//! A profile with several actions becomes several programs: the first says "allow" for every
//! syscall that some rule names (and the default action for the rest), each further one applies
//! one non-default action to its rules and allows the rest. The kernel runs every program and
//! keeps the most restrictive answer (for equal actions, the one installed last), which gives the
//! rules' actions exactly. The default profile needs two (its `clone3` rule returns ENOSYS).
//!
//! Limits: only the native architecture's syscalls are allowed (32-bit x86 binaries on x86_64
//! are killed by the architecture check); `SCMP_ACT_NOTIFY` and listener paths are refused.

mod syscalls;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;

/// The default profile, in Docker's format.
pub const DEFAULT_PROFILE: &str = include_str!("default.json");

/// A profile in Docker's seccomp format (unknown fields are ignored, as Docker does).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<SyscallEntry>,
    #[serde(default)]
    listener_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallEntry {
    #[serde(default)]
    names: Vec<String>,
    /// The old single-name form.
    #[serde(default)]
    name: String,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: String,
}

/// The BPF programs of one profile for one capability set, in installation order.
#[derive(Debug)]
pub struct Filters {
    pub(crate) programs: Vec<BpfProgram>,
}

/// Parses a profile and checks every action, operator and argument index in it.
pub fn parse(json: &str) -> Result<Profile, String> {
    let profile: Profile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if !profile.listener_path.is_empty() {
        return Err("listenerPath (SCMP_ACT_NOTIFY) is not supported".into());
    }
    action(&profile.default_action, profile.default_errno_ret)?;
    for entry in &profile.syscalls {
        action(&entry.action, entry.errno_ret)?;
        for arg in &entry.args {
            condition(arg)?;
        }
    }
    Ok(profile)
}

/// The default profile's programs for a container with capability set `caps` (bit N = cap N),
/// built once per capability set.
pub(crate) fn default_filters(caps: u64) -> Result<Arc<Filters>, String> {
    static PROFILE: OnceLock<Result<Profile, String>> = OnceLock::new();
    static CACHE: Mutex<BTreeMap<u64, Arc<Filters>>> = Mutex::new(BTreeMap::new());
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&caps) {
        return Ok(hit.clone());
    }
    let profile = PROFILE
        .get_or_init(|| parse(DEFAULT_PROFILE))
        .as_ref()
        .map_err(|e| format!("default seccomp profile: {e}"))?;
    let filters = Arc::new(compile(profile, caps)?);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: at most a few capability sets are in use at once in practice; a full cache just
    // starts over.
    if cache.len() >= 64 {
        cache.clear();
    }
    cache.insert(caps, filters.clone());
    Ok(filters)
}

/// Compiles a profile for a container with capability set `caps`.
pub fn compile(profile: &Profile, caps: u64) -> Result<Filters, String> {
    let arch = target_arch()?;
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let kernel = kernel_version();
    // Rules by action; `None` = the syscall matches whatever its arguments.
    type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;
    let mut by_action: Vec<(SeccompAction, Rules)> = Vec::new();
    for entry in &profile.syscalls {
        if !applies(entry, caps, kernel) {
            continue;
        }
        let act = action(&entry.action, entry.errno_ret)?;
        if act == default {
            continue;
        }
        let rules = match by_action.iter_mut().find(|(a, _)| *a == act) {
            Some((_, rules)) => rules,
            None => {
                by_action.push((act, Rules::new()));
                &mut by_action.last_mut().ok_or("empty action list")?.1
            }
        };
        let new_rules = entry_rules(&entry.args)?;
        let names = entry
            .names
            .iter()
            .chain(std::iter::once(&entry.name).filter(|n| !n.is_empty()));
        for name in names {
            // A name this architecture lacks is skipped, as libseccomp and runc do.
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let slot = rules.entry(nr).or_insert_with(|| Some(Vec::new()));
            match (slot.as_mut(), &new_rules) {
                (Some(existing), Some(more)) => existing.extend(more.iter().cloned()),
                (_, None) => *slot = None,
                (None, Some(_)) => {}
            }
        }
    }
    let to_map = |rules: &Rules| -> BTreeMap<i64, Vec<SeccompRule>> {
        rules
            .iter()
            .map(|(nr, r)| (*nr, r.clone().unwrap_or_default()))
            .collect()
    };
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        // Every syscall that some rule names passes this one; the others get the default.
        let mut all = Rules::new();
        for (_, rules) in &by_action {
            for (nr, r) in rules {
                let slot = all.entry(*nr).or_insert_with(|| Some(Vec::new()));
                match (slot.as_mut(), r) {
                    (Some(existing), Some(more)) => existing.extend(more.iter().cloned()),
                    (_, None) => *slot = None,
                    (None, Some(_)) => {}
                }
            }
        }
        programs.push(build(
            to_map(&all),
            default.clone(),
            SeccompAction::Allow,
            arch,
        )?);
    }
    for (act, rules) in &by_action {
        if *act != SeccompAction::Allow {
            programs.push(build(
                to_map(rules),
                SeccompAction::Allow,
                act.clone(),
                arch,
            )?);
        }
    }
    Ok(Filters { programs })
}

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch).map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// Docker's rule: all of `includes` must hold and none of `excludes`.
fn applies(entry: &SyscallEntry, caps: u64, kernel: (u32, u32)) -> bool {
    let has_cap = |name: &String| cap_number(name).is_some_and(|n| caps & (1u64 << n) != 0);
    let arch = docker_arch();
    if !entry.includes.caps.iter().all(has_cap) || entry.excludes.caps.iter().any(has_cap) {
        return false;
    }
    if !entry.includes.arches.is_empty() && !entry.includes.arches.iter().any(|a| a == arch) {
        return false;
    }
    if entry.excludes.arches.iter().any(|a| a == arch) {
        return false;
    }
    if !entry.includes.min_kernel.is_empty() && kernel < parse_version(&entry.includes.min_kernel) {
        return false;
    }
    true
}

/// One rule with every condition (AND), or, when an argument index repeats, one rule per
/// condition (OR), as runc does. `None` for an entry without arguments.
fn entry_rules(args: &[Arg]) -> Result<Option<Vec<SeccompRule>>, String> {
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    let mut indexes: Vec<u8> = args.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    let rules = if indexes.len() == args.len() {
        vec![SeccompRule::new(conditions).map_err(|e| e.to_string())?]
    } else {
        conditions
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    Ok(Some(rules))
}

fn condition(arg: &Arg) -> Result<SeccompCondition, String> {
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
        other => return Err(format!("unknown seccomp operator {other:?}")),
    };
    SeccompCondition::new(arg.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| format!("argument index {}: {e}", arg.index))
}

fn action(name: &str, errno_ret: Option<u32>) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno_ret.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno_ret.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_NOTIFY" => return Err("SCMP_ACT_NOTIFY is not supported".into()),
        other => return Err(format!("unknown seccomp action {other:?}")),
    })
}

fn syscall_number(name: &str) -> Option<i64> {
    syscalls::SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| syscalls::SYSCALLS[i].1)
}

/// A capability number from its name (`CAP_SYS_ADMIN`, `sys_admin`, `SYS_ADMIN`).
pub fn cap_number(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    caps::Capability::from_str(&full).ok().map(|c| c.index())
}

fn target_arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("seccomp is not supported on {}", std::env::consts::ARCH))
}

/// The architecture as Docker's profiles name it (Go's `GOARCH`).
fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn parse_version(s: &str) -> (u32, u32) {
    let mut parts = s.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn kernel_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        nix::sys::utsname::uname()
            .ok()
            .and_then(|u| u.release().to_str().map(parse_version))
            .unwrap_or((0, 0))
    })
}

/// Counts of syscalls per action, for tests.
#[cfg(test)]
pub(crate) fn syscall_count() -> usize {
    syscalls::SYSCALLS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_DEFAULT_CAPS: u64 = 0xa804_25fb;

    #[test]
    fn default_profile_parses_and_compiles() {
        let p = parse(DEFAULT_PROFILE).unwrap();
        let f = compile(&p, DOCKER_DEFAULT_CAPS).unwrap();
        // Allow-list program + the clone3 ENOSYS program.
        assert_eq!(f.programs.len(), 2);
        let admin = compile(&p, DOCKER_DEFAULT_CAPS | (1 << 21)).unwrap();
        assert_eq!(admin.programs.len(), 1);
        assert!(super::syscall_count() > 300);
        assert!(syscalls::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn cached_per_capability_set() {
        let a = default_filters(DOCKER_DEFAULT_CAPS).unwrap();
        let b = default_filters(DOCKER_DEFAULT_CAPS).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn bad_profiles_are_named() {
        assert!(parse("{").is_err());
        let e = parse(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap_err();
        assert!(e.contains("SCMP_ACT_NOPE"), "{e}");
        let e = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_WHAT"}]}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("SCMP_CMP_WHAT"), "{e}");
        let e = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":9,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("index 9"), "{e}");
    }

    #[test]
    fn capability_names() {
        assert_eq!(cap_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(cap_number("sys_admin"), Some(21));
        assert_eq!(cap_number("chown"), Some(0));
        assert_eq!(cap_number("CAP_NOPE"), None);
    }
}
