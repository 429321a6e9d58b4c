//! Tests: the generated one-program filter gives, for every syscall number, a foreign
//! architecture and arguments on each rule's boundaries, the same answer as the previous
//! generator (one `seccompiler` linear program per action, combined as the kernel combines
//! stacked filters). Both run in a small classic-BPF interpreter.

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use super::bpf::{Cond, Op, precedence};
use super::{DEFAULT_PROFILE, Profile, Rules, compile, parse, rule_set};

/// `seccomp_data`: nr, arch, instruction pointer, six arguments.
#[derive(Debug, Clone, Copy)]
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0,
            16..=60 if off.is_multiple_of(4) => {
                let arg = self.args[((off - 16) / 8) as usize];
                if (off - 16).is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load at offset {off}"),
        }
    }
}

/// Runs a classic-BPF seccomp program the way the kernel does (forward jumps only, the program
/// must end in a return); panics on anything it does not know.
fn run(prog: &[sock_filter], data: &Data) -> u32 {
    run_counted(prog, data).0
}

/// The program's answer and how many instructions it executed.
fn run_counted(prog: &[sock_filter], data: &Data) -> (u32, usize) {
    let (mut a, mut pc, mut n) = (0u32, 0usize, 0usize);
    loop {
        let i = prog
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the end at {pc}"));
        n += 1;
        pc += 1;
        let (jt, jf) = (pc + usize::from(i.jt), pc + usize::from(i.jf));
        match i.code {
            0x20 => a = data.word(i.k),
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc = if a == i.k { jt } else { jf },
            0x25 => pc = if a > i.k { jt } else { jf },
            0x35 => pc = if a >= i.k { jt } else { jf },
            0x45 => pc = if a & i.k != 0 { jt } else { jf },
            0x06 => return (i.k, n),
            code => panic!("opcode {code:#x} at {}", pc - 1),
        }
    }
}

/// The kernel's answer for stacked filters: every program runs, the most restrictive action
/// wins, for equal precedence the one installed last.
fn run_stack(programs: &[BpfProgram], data: &Data) -> u32 {
    // No program: every syscall is allowed.
    let mut ret: Option<u32> = programs.is_empty().then_some(libc::SECCOMP_RET_ALLOW);
    for prog in programs.iter().rev() {
        let cur = run(prog, data);
        if ret.is_none_or(|r| precedence(cur) < precedence(r)) {
            ret = Some(cur);
        }
    }
    ret.expect("at least one program")
}

/// The previous generator: one `seccompiler` program for "allowed at all" (when the default is
/// not allow) and one per further action.
fn old_programs(profile: &Profile, caps: u64) -> Vec<BpfProgram> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
    let (default, by_action) = rule_set(profile, caps).unwrap();
    let to_map = |rules: &Rules| -> BTreeMap<i64, Vec<SeccompRule>> {
        rules
            .iter()
            .map(|(nr, r)| {
                let rules = r
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|conds| {
                        SeccompRule::new(conds.iter().map(old_condition).collect()).unwrap()
                    })
                    .collect();
                (*nr, rules)
            })
            .collect()
    };
    let build = |rules, mismatch, matched| -> BpfProgram {
        BpfProgram::try_from(SeccompFilter::new(rules, mismatch, matched, arch).unwrap()).unwrap()
    };
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        let mut all = Rules::new();
        for (_, rules) in &by_action {
            for (nr, r) in rules {
                super::merge(all.entry(*nr).or_insert_with(|| Some(Vec::new())), r);
            }
        }
        programs.push(build(to_map(&all), default.clone(), SeccompAction::Allow));
    }
    for (act, rules) in &by_action {
        if *act != SeccompAction::Allow {
            programs.push(build(to_map(rules), SeccompAction::Allow, act.clone()));
        }
    }
    programs
}

fn old_condition(c: &Cond) -> SeccompCondition {
    let op = match c.op {
        Op::Eq => SeccompCmpOp::Eq,
        Op::Ne => SeccompCmpOp::Ne,
        Op::Lt => SeccompCmpOp::Lt,
        Op::Le => SeccompCmpOp::Le,
        Op::Gt => SeccompCmpOp::Gt,
        Op::Ge => SeccompCmpOp::Ge,
        Op::MaskedEq(m) => SeccompCmpOp::MaskedEq(m),
    };
    SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, c.value).unwrap()
}

/// Argument values on the boundaries of every condition: equal, one off, the high word set or
/// flipped, the mask's bits, all ones.
fn boundary_values(conds: &[Cond]) -> BTreeMap<u8, BTreeSet<u64>> {
    let mut out: BTreeMap<u8, BTreeSet<u64>> = BTreeMap::new();
    for c in conds {
        let set = out.entry(c.index).or_default();
        let v = c.value;
        set.extend([
            0,
            u64::MAX,
            v,
            v.wrapping_add(1),
            v.wrapping_sub(1),
            v | (1 << 32),
            v ^ (1 << 63),
            v ^ 0xffff_ffff_0000_0000,
            v.wrapping_add(1 << 32),
            v.wrapping_sub(1 << 32),
            v as u32 as u64,
        ]);
        if let Op::MaskedEq(m) = c.op {
            set.extend([
                m,
                !m,
                v | !m,
                v | (m & m.wrapping_neg()),
                m & !v,
                v ^ (m & m.wrapping_neg()),
            ]);
        }
    }
    out
}

/// Every argument vector to try for a syscall whose rules use `conds`: all zero, each index on
/// its own, and the full product over the indexes (bounded).
fn arg_vectors(conds: &[Cond]) -> Vec<[u64; 6]> {
    let values = boundary_values(conds);
    let mut out = vec![[0u64; 6]];
    for (idx, set) in &values {
        for v in set {
            let mut a = [0u64; 6];
            a[usize::from(*idx)] = *v;
            out.push(a);
        }
    }
    let mut product = vec![[0u64; 6]];
    for (idx, set) in &values {
        product = product
            .iter()
            .flat_map(|base| {
                set.iter().map(move |v| {
                    let mut a = *base;
                    a[usize::from(*idx)] = *v;
                    a
                })
            })
            .collect();
        assert!(product.len() <= 200_000, "too many argument combinations");
    }
    out.extend(product);
    out
}

const FOREIGN_ARCHES: [u32; 3] = [0x4000_0003 /* i386 */, 0xc000_00b7, 0];

/// Compares the new and old programs for one profile and capability set; returns how many
/// inputs were checked.
fn check(profile: &Profile, caps: u64) -> usize {
    let new = compile(profile, caps).unwrap();
    let old = old_programs(profile, caps);
    // Nothing to filter (default allow, no other action): no program, as before.
    assert_eq!(
        new.programs.len(),
        usize::from(!old.is_empty()),
        "one program"
    );
    let (_, by_action) = rule_set(profile, caps).unwrap();
    let mut conds_by_nr: BTreeMap<u32, Vec<Cond>> = BTreeMap::new();
    for (_, rules) in &by_action {
        for (nr, r) in rules {
            let entry = conds_by_nr.entry(*nr as u32).or_default();
            for rule in r.iter().flatten() {
                entry.extend(rule.iter().copied());
            }
        }
    }
    let native = super::audit_arch().unwrap();
    let max = super::syscalls::SYSCALLS
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap() as u32;
    let mut nrs: Vec<u32> = (0..=max + 10).collect();
    nrs.extend([
        0x4000_0000,
        0x4000_0001,
        0x4000_0000 | 59,
        0x7fff_ffff,
        u32::MAX,
    ]);
    let mut checked = 0;
    for nr in nrs {
        let conds = conds_by_nr.get(&nr).cloned().unwrap_or_default();
        for args in arg_vectors(&conds) {
            for arch in std::iter::once(native).chain(FOREIGN_ARCHES) {
                let data = Data { nr, arch, args };
                let (got, want) = (run_stack(&new.programs, &data), run_stack(&old, &data));
                assert_eq!(
                    got, want,
                    "caps {caps:#x}: {data:?}: new {got:#x} != old {want:#x}"
                );
                if arch != native && !old.is_empty() {
                    assert_eq!(got, libc::SECCOMP_RET_KILL_PROCESS);
                }
                checked += 1;
            }
        }
    }
    checked
}

/// Docker's default capability set.
const DOCKER_CAPS: u64 = 0xa804_25fb;

#[test]
fn default_profile_matches_the_stacked_programs() {
    let profile = parse(DEFAULT_PROFILE).unwrap();
    let sets = [
        DOCKER_CAPS,
        0,
        DOCKER_CAPS | (1 << 21),                         // SYS_ADMIN
        DOCKER_CAPS | (1 << 19) | (1 << 22) | (1 << 16), // SYS_PTRACE, SYS_BOOT... and more
        DOCKER_CAPS | (1 << 24) | (1 << 25) | (1 << 12) | (1 << 35), // resource, time, net_admin, bpf
        (1u64 << 41) - 1,                                            // all
    ];
    for caps in sets {
        let n = check(&profile, caps);
        assert!(n > 400 * 4, "{n} inputs");
    }
}

/// Every custom profile the tests use, and profiles that exercise every action, every operator,
/// repeated argument indexes (OR), high words, and an action tie.
const CUSTOM: &[&str] = &[
    // tests/confinement.rs
    r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#,
    r#"{"defaultAction":"SCMP_ACT_ERRNO"}"#,
    r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
        {"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"},
        {"names":["openat"],"action":"SCMP_ACT_ALLOW","args":[{"index":2,"value":3,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
        {"names":["openat"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":2,"value":1,"op":"SCMP_CMP_EQ"}]},
        {"names":["openat","close"],"action":"SCMP_ACT_ERRNO","errnoRet":2,"args":[{"index":0,"value":4294967296,"op":"SCMP_CMP_GE"}]},
        {"names":["mmap"],"action":"SCMP_ACT_KILL","args":[{"index":2,"value":7,"op":"SCMP_CMP_EQ"}]},
        {"names":["mmap"],"action":"SCMP_ACT_TRAP","args":[{"index":3,"value":4294967297,"op":"SCMP_CMP_GT"},{"index":4,"value":5,"op":"SCMP_CMP_LT"}]},
        {"names":["mmap","brk"],"action":"SCMP_ACT_LOG","args":[{"index":0,"value":18446744069414584320,"op":"SCMP_CMP_LE"}]},
        {"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"},{"index":0,"value":10,"op":"SCMP_CMP_EQ"}]},
        {"names":["socket"],"action":"SCMP_ACT_KILL_PROCESS","args":[{"index":0,"value":40,"op":"SCMP_CMP_NE"},{"index":1,"value":1,"op":"SCMP_CMP_GT"}]},
        {"names":["kill"],"action":"SCMP_ACT_TRACE","errnoRet":7},
        {"names":["tkill"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
        {"names":["tkill"],"action":"SCMP_ACT_ERRNO","errnoRet":2,"args":[{"index":1,"value":9,"op":"SCMP_CMP_EQ"}]},
        {"names":["tkill"],"action":"SCMP_ACT_ERRNO","errnoRet":3,"args":[{"index":1,"value":15,"op":"SCMP_CMP_EQ"}]},
        {"names":["no_such_syscall"],"action":"SCMP_ACT_ALLOW"}
    ]}"#,
    r#"{"defaultAction":"SCMP_ACT_KILL_PROCESS","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_LE"},{"index":5,"value":4294967295,"op":"SCMP_CMP_LT"}]},
        {"names":["write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2,"op":"SCMP_CMP_GE"}]},
        {"names":["write"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_NE"}]},
        {"names":["exit","exit_group"],"action":"SCMP_ACT_ALLOW"}
    ]}"#,
];

#[test]
fn custom_profiles_match_the_stacked_programs() {
    for json in CUSTOM {
        let profile = parse(json).unwrap_or_else(|e| panic!("{e}: {json}"));
        for caps in [DOCKER_CAPS, 0] {
            check(&profile, caps);
        }
    }
}

/// Far jumps (more than 255 instructions) are routed through `JA` and stay correct.
#[test]
fn far_jumps_are_correct() {
    let many: Vec<String> = (0..120)
        .map(|i| format!(r#"{{"index":1,"value":{i},"op":"SCMP_CMP_EQ"}}"#))
        .collect();
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[{}]}},{{"names":["close"],"action":"SCMP_ACT_ALLOW"}}]}}"#,
        many.join(",")
    );
    let profile = parse(&json).unwrap();
    let prog = &compile(&profile, 0).unwrap().programs[0];
    assert!(prog.len() > 600, "{}", prog.len());
    assert!(prog.iter().any(|i| i.code == 0x05 && i.k > 255), "a far JA");
    check(&profile, 0);
}

/// The point of the generator: the default profile is one program, and a syscall's path
/// through it is short (the linear chain ran a compare per named syscall before it).
#[test]
fn default_profile_is_one_short_program() {
    let profile = parse(DEFAULT_PROFILE).unwrap();
    let prog = &compile(&profile, DOCKER_CAPS).unwrap().programs[0];
    let old = old_programs(&profile, DOCKER_CAPS);
    assert_eq!(old.len(), 2);
    let arch = super::audit_arch().unwrap();
    let longest = |prog: &[sock_filter]| {
        (0..500)
            .map(|nr| {
                run_counted(
                    prog,
                    &Data {
                        nr,
                        arch,
                        args: [0; 6],
                    },
                )
                .1
            })
            .max()
            .unwrap()
    };
    let (new_len, old_len) = (longest(prog), longest(&old[0]));
    assert!(new_len < 40, "new longest path {new_len}");
    assert!(old_len > 300, "old longest path {old_len}");
}

/// Not a test: the kernel's time in `seccomp(SECCOMP_SET_MODE_FILTER)` for the default
/// profile, old stacked programs against the new one, alternating, in forked children
/// (`cargo test -p berth-engine --lib attach_cost -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, run by hand"]
fn attach_cost() {
    let profile = parse(DEFAULT_PROFILE).unwrap();
    let new = compile(&profile, DOCKER_CAPS).unwrap().programs;
    let old = old_programs(&profile, DOCKER_CAPS);
    let (mut t_old, mut t_new) = (Vec::new(), Vec::new());
    for round in 0..400 {
        let progs = if round % 2 == 0 { &old } else { &new };
        let ns = install_in_child(progs);
        if round % 2 == 0 {
            t_old.push(ns)
        } else {
            t_new.push(ns)
        }
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (mo, mn) = (median(&mut t_old), median(&mut t_new));
    println!(
        "attach: old {} programs {} insns: median {mo} ns; new 1 program {} insns: median {mn} ns",
        old.len(),
        old.iter().map(|p| p.len()).sum::<usize>(),
        new[0].len()
    );
    assert!(mn > 0 && mo > 0);
}

/// Forks; the child sets no_new_privs, installs `progs` and reports the nanoseconds the
/// `seccomp` calls took (monotonic clock).
fn install_in_child(progs: &[BpfProgram]) -> u64 {
    in_filtered_child(progs, &[]).0
}

/// The kernel takes the generated program and applies it: in a forked child with the default
/// profile, `clone3` fails with ENOSYS (its own action), `unshare(CLONE_NEWUSER)` with EPERM (not
/// allowed without CAP_SYS_ADMIN), `personality(0xffffffff)` (an allowed argument) and `getppid`
/// pass; with the e2e test's custom profile `mkdirat` fails with EPERM and `getppid` passes.
#[test]
fn the_kernel_applies_the_program() {
    let default = compile(&parse(DEFAULT_PROFILE).unwrap(), DOCKER_CAPS).unwrap();
    let (_, got) = in_filtered_child(
        &default.programs,
        &[
            (libc::SYS_clone3, [0; 3]),
            (libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0]),
            (libc::SYS_personality, [0xffff_ffff, 0, 0]),
            (libc::SYS_getppid, [0; 3]),
        ],
    );
    assert_eq!(got[0], -libc::ENOSYS as i64, "clone3");
    assert_eq!(got[1], -libc::EPERM as i64, "unshare(CLONE_NEWUSER)");
    assert!(got[2] >= 0, "personality query: {}", got[2]);
    assert!(got[3] > 0, "getppid: {}", got[3]);

    let custom = compile(&parse(CUSTOM[0]).unwrap(), DOCKER_CAPS).unwrap();
    let path = c"/nonexistent-berth-seccomp-test";
    let (_, got) = in_filtered_child(
        &custom.programs,
        &[
            (
                libc::SYS_mkdirat,
                [libc::AT_FDCWD as u64, path.as_ptr() as u64, 0o755],
            ),
            (libc::SYS_getppid, [0; 3]),
        ],
    );
    assert_eq!(got[0], -libc::EPERM as i64, "mkdirat");
    assert!(got[1] > 0, "getppid: {}", got[1]);
}

/// Forks; the child installs `progs` (after no_new_privs), timing the `seccomp` calls, then
/// makes each call; returns the install time in nanoseconds (monotonic clock) and the calls'
/// results (`-errno` on failure), reported on a pipe.
fn in_filtered_child(progs: &[BpfProgram], calls: &[(libc::c_long, [u64; 3])]) -> (u64, Vec<i64>) {
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const sock_filter,
    }
    // out[0]: the install time; out[1..]: the calls' results.
    const SLOTS: usize = 9;
    const BYTES: usize = SLOTS * 8;
    assert!(calls.len() < SLOTS);
    let mut fds = [0i32; 2];
    // SAFETY: plain libc calls; the child only makes async-signal-safe calls before _exit.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let mut out = [0i64; SLOTS];
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let mut a: libc::timespec = std::mem::zeroed();
            let mut b: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut a);
            for p in progs {
                let f = Fprog {
                    len: p.len() as u16,
                    filter: p.as_ptr(),
                };
                if libc::syscall(libc::SYS_seccomp, 1, 0, &f as *const Fprog) != 0 {
                    libc::_exit(1);
                }
            }
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut b);
            out[0] = (b.tv_sec - a.tv_sec) * 1_000_000_000 + (b.tv_nsec - a.tv_nsec);
            for (i, (nr, a)) in calls.iter().enumerate() {
                let r = libc::syscall(*nr, a[0], a[1], a[2]);
                out[i + 1] = if r < 0 {
                    -i64::from(*libc::__errno_location())
                } else {
                    r
                };
            }
            libc::write(fds[1], out.as_ptr() as *const libc::c_void, BYTES);
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut out = [0i64; SLOTS];
        let n = libc::read(fds[0], out.as_mut_ptr() as *mut libc::c_void, BYTES);
        libc::close(fds[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert_eq!(
            (n, status),
            (BYTES as isize, 0),
            "the child failed to install or report"
        );
        (out[0] as u64, out[1..=calls.len()].to_vec())
    }
}
