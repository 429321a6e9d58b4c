//! Seccomp filters from profiles in Docker's format (`defaultAction`, `syscalls[]` with
//! `names`, `action`, `errnoRet`, `args`, `includes`/`excludes` on capabilities, architectures
//! and kernel version), compiled before the fork into ONE classic-BPF program by our generator
//! (`bpf.rs`: architecture check, binary search on the syscall number, argument rules in the
//! leaves) and installed by pid 1 (`harden.rs`) with one raw `seccomp(2)`.
//!
//! One parser serves both the default profile and `--security-opt seccomp=<json>` (the docker CLI
//! reads the file and sends its JSON content). `default.json` is Berth's transcription of the
//! facts of Docker's default profile (moby's `profiles/seccomp/default.json`, Apache-2.0 data):
//! the same allow-list, argument rules and capability-dependent rules. The default profile is
//! parsed once and its BPF is cached per capability set, so a container start costs a map
//! look-up.
//!
//! A profile with several actions gives each syscall the most restrictive action whose rules
//! match (for equal precedence, the one named later in the profile), and the default action when
//! none matches: the answer a stack of one-action programs would give (what `seccompiler`'s
//! linear filters needed: two programs for the default profile, whose `clone3` rule returns
//! ENOSYS). The tests (`equivalence.rs`) run both forms in a BPF interpreter and compare them on
//! every syscall number, a foreign architecture and every argument rule's boundaries. The
//! binary search matters on attach: the kernel emulates the program once per syscall number to
//! build its constant-allow cache, so a linear chain of ~350 compares cost O(syscalls x rules)
//! in `seccomp(2)` for every container, and a compare per rule on every syscall after it.
//! A profile that allows everything installs no program.
//!
//! Limits: only the native architecture's syscalls are allowed (32-bit x86 binaries on x86_64
//! are killed by the architecture check); `SCMP_ACT_NOTIFY` and listener paths are refused.

mod bpf;
#[cfg(test)]
mod equivalence;
mod syscalls;

use bpf::{Cond, Group, Op};

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use seccompiler::{BpfProgram, SeccompAction};
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

/// Rules by syscall number; `None` = the syscall matches whatever its arguments, `Some` = one
/// of the rules (OR) with all its conditions (AND).
pub(crate) type Rules = BTreeMap<i64, Option<Vec<Vec<Cond>>>>;

/// A profile's rules that apply to capability set `caps`: the default action and, per other
/// action in order of first appearance, the syscalls it names.
pub(crate) fn rule_set(
    profile: &Profile,
    caps: u64,
) -> Result<(SeccompAction, Vec<(SeccompAction, Rules)>), String> {
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let kernel = kernel_version();
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
            merge(
                rules.entry(nr).or_insert_with(|| Some(Vec::new())),
                &new_rules,
            );
        }
    }
    Ok((default, by_action))
}

/// Adds `more` to a syscall's rules; an unconditional side makes the result unconditional.
pub(crate) fn merge(slot: &mut Option<Vec<Vec<Cond>>>, more: &Option<Vec<Vec<Cond>>>) {
    match (slot.as_mut(), more) {
        (Some(existing), Some(more)) => existing.extend(more.iter().cloned()),
        (_, None) => *slot = None,
        (None, Some(_)) => {}
    }
}

/// Compiles a profile for a container with capability set `caps` into one program.
pub fn compile(profile: &Profile, caps: u64) -> Result<Filters, String> {
    let audit_arch = audit_arch()?;
    let (default, by_action) = rule_set(profile, caps)?;
    if default == SeccompAction::Allow && by_action.is_empty() {
        // Nothing to filter.
        return Ok(Filters {
            programs: Vec::new(),
        });
    }
    let mut syscalls: BTreeMap<u32, Vec<Group>> = BTreeMap::new();
    for (act, rules) in &by_action {
        for (nr, r) in rules {
            let nr = u32::try_from(*nr).map_err(|_| format!("syscall number {nr}"))?;
            syscalls.entry(nr).or_default().push(Group {
                action: u32::from(act.clone()),
                // No rules at all means "whatever the arguments", as seccompiler read it.
                rules: r.clone().filter(|rules| !rules.is_empty()),
            });
        }
    }
    let program = bpf::generate(audit_arch, u32::from(default), &syscalls)?;
    Ok(Filters {
        programs: vec![program],
    })
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
fn entry_rules(args: &[Arg]) -> Result<Option<Vec<Vec<Cond>>>, String> {
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    let mut indexes: Vec<u8> = args.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    let rules = if indexes.len() == args.len() {
        vec![conditions]
    } else {
        conditions.into_iter().map(|c| vec![c]).collect()
    };
    Ok(Some(rules))
}

fn condition(arg: &Arg) -> Result<Cond, String> {
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_EQ" => (Op::Eq, arg.value),
        "SCMP_CMP_NE" => (Op::Ne, arg.value),
        "SCMP_CMP_LT" => (Op::Lt, arg.value),
        "SCMP_CMP_LE" => (Op::Le, arg.value),
        "SCMP_CMP_GT" => (Op::Gt, arg.value),
        "SCMP_CMP_GE" => (Op::Ge, arg.value),
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEq(arg.value), arg.value_two),
        other => return Err(format!("unknown seccomp operator {other:?}")),
    };
    if arg.index > 5 {
        return Err(format!(
            "argument index {}: a syscall has arguments 0 to 5",
            arg.index
        ));
    }
    Ok(Cond {
        index: arg.index,
        op,
        value,
    })
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

/// `AUDIT_ARCH_*` of the native architecture, as the kernel reports it in `seccomp_data.arch`.
fn audit_arch() -> Result<u32, String> {
    const AUDIT_64_LE: u32 = 0x8000_0000 | 0x4000_0000;
    match std::env::consts::ARCH {
        "x86_64" => Ok(62 | AUDIT_64_LE),
        "aarch64" => Ok(183 | AUDIT_64_LE),
        "riscv64" => Ok(243 | AUDIT_64_LE),
        other => Err(format!("seccomp is not supported on {other}")),
    }
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
        // One program, with the clone3 ENOSYS rule in it.
        assert_eq!(f.programs.len(), 1);
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
