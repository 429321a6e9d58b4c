//! The device rules and their eBPF program: the generator's output read by a small interpreter
//! of the instructions it emits (the program must decide exactly as the v1 rules do), and the
//! program loaded into the real kernel, attached to a cgroup2 directory and probed by a child
//! process in it (needs root).

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::devices::{
    ACC_MKNOD, ACC_READ, ACC_WRITE, AND32_K, DevType, EXIT, Insn, JNE_K, LDX_W, MOV32_X, MOV64_K,
    RSH32_K, program,
};
use super::*;

/// A value standing for the context pointer in `r1`: a load from any other base is a bug.
const CTX: u64 = 0xc7c7_c7c7_0000_0000;

/// Runs `prog` as the kernel would for an access to `kind major:minor`; returns `r0`.
fn run(prog: &[Insn], kind: DevType, major: u32, minor: u32, access: u8) -> u64 {
    let kind = match kind {
        DevType::Block => 1,
        DevType::Char => 2,
        DevType::Any => unreachable!("an access is to one node type"),
    };
    let ctx = [(u32::from(access) << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    r[1] = CTX;
    let mut pc = 0usize;
    // No backward jumps: at most one pass over the program.
    for _ in 0..prog.len() {
        let i = prog[pc];
        pc += 1;
        let (d, s) = (usize::from(i.dst()), usize::from(i.src()));
        match i.code {
            LDX_W => {
                assert_eq!(r[s], CTX, "load from r{s}, which is not the context");
                assert!(i.off % 4 == 0 && (0..12).contains(&i.off), "{i:?}");
                r[d] = u64::from(ctx[(i.off / 4) as usize]);
            }
            AND32_K => r[d] = u64::from(r[d] as u32 & i.imm as u32),
            RSH32_K => r[d] = u64::from(r[d] as u32 >> i.imm),
            MOV32_X => r[d] = u64::from(r[s] as u32),
            MOV64_K => r[d] = i.imm as i64 as u64,
            JNE_K => {
                assert!(i.off >= 0, "backward jump {i:?}");
                if r[d] != i.imm as i64 as u64 {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0],
            other => panic!("unexpected opcode {other:#x}"),
        }
        assert!(pc < prog.len(), "ran off the end of the program");
    }
    panic!("no exit")
}

/// Every combination of node type, access set and a grid of majors and minors (the rules'
/// own numbers and their neighbours): the program's verdict is the rules' verdict.
fn assert_program_matches(rules: &[DeviceRule]) {
    let prog = program(rules);
    let numbers = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 136, 199, 200, 254, 4095];
    for kind in [DevType::Char, DevType::Block] {
        for access in 1..=7u8 {
            for major in numbers {
                for minor in numbers {
                    let want = rules.iter().any(|r| r.allows(kind, major, minor, access));
                    let got = run(&prog, kind, major, minor, access);
                    assert_eq!(
                        got,
                        u64::from(want),
                        "{kind:?} {major}:{minor} access {access:#b} under {rules:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn default_rules_in_v1_syntax() {
    let text: Vec<String> = DEFAULT_RULES.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        text,
        [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:1 rwm",
            "c 5:2 rwm",
            "c 10:200 rwm",
            "c 136:* rwm",
        ]
    );
}

#[test]
fn program_shape_for_the_default_rules() {
    let prog = program(&DEFAULT_RULES);
    // Prologue 6; `c *:* m` and `b *:* m` 6 each (type, three for the access, return 1);
    // nine `c M:m rwm` 5 each (type, major, minor, return 1); `c 136:* rwm` 4; `return 0` 2.
    assert_eq!(prog.len(), 6 + 6 + 6 + 9 * 5 + 4 + 2);
    let codes: Vec<u8> = prog[..6].iter().map(|i| i.code).collect();
    assert_eq!(codes, [LDX_W, AND32_K, LDX_W, RSH32_K, LDX_W, LDX_W]);
    assert_eq!(
        (prog[4].off, prog[5].off),
        (4, 8),
        "major and minor offsets"
    );
    // The default: deny.
    let tail = &prog[prog.len() - 2..];
    assert_eq!(
        (tail[0].code, tail[0].imm, tail[1].code),
        (MOV64_K, 0, EXIT)
    );
    // `c 1:3 rwm`: type char, major 1, minor 3, each jumping past the block's 5 instructions.
    let null = &prog[18..23];
    assert_eq!(
        null.iter()
            .map(|i| (i.code, i.imm, i.off))
            .collect::<Vec<_>>(),
        [
            (JNE_K, 2, 4),
            (JNE_K, 1, 3),
            (JNE_K, 3, 2),
            (MOV64_K, 1, 0),
            (EXIT, 0, 0)
        ]
    );
    // Every jump lands inside the program, on the start of a block or the final deny.
    for (pc, i) in prog.iter().enumerate() {
        if i.code == JNE_K {
            let to = pc + 1 + i.off as usize;
            assert!(to < prog.len(), "jump at {pc} lands at {to}");
            assert!(
                prog[to - 1].code == EXIT,
                "jump at {pc} lands mid-block at {to}"
            );
        }
    }
}

#[test]
fn program_decides_as_the_rules_do() {
    assert_program_matches(&DEFAULT_RULES);
    assert_program_matches(&[]);
    let all = DeviceRule {
        kind: DevType::Any,
        major: None,
        minor: None,
        access: ACC_READ | ACC_WRITE | ACC_MKNOD,
    };
    assert_program_matches(&[all]);
    assert_eq!(program(&[all]).len(), 6 + 2 + 2, "allow-all has no tests");
    let odd = [
        DeviceRule {
            kind: DevType::Block,
            major: Some(8),
            minor: None,
            access: ACC_READ,
        },
        DeviceRule {
            kind: DevType::Any,
            major: None,
            minor: Some(5),
            access: ACC_WRITE | ACC_MKNOD,
        },
    ];
    assert_program_matches(&odd);
    // A container's own rules, as `--device-cgroup-rule` gives them, after the defaults.
    let mut own = DEFAULT_RULES.to_vec();
    for r in ["c 1:11 r", "b 8:* rw", "a *:4 m", "c 4:* rwm"] {
        own.push(crate::devices::parse_rule(r).unwrap());
    }
    assert_program_matches(&own);
    let prog = program(&own);
    assert_eq!(run(&prog, DevType::Char, 1, 11, ACC_READ), 1);
    assert_eq!(run(&prog, DevType::Char, 1, 11, ACC_WRITE), 0);
    assert_eq!(
        run(&program(&DEFAULT_RULES), DevType::Char, 1, 11, ACC_READ),
        0
    );
}

/// The cgroup2 mount: `/sys/fs/cgroup` on v2, the hybrid layout's own mount otherwise.
fn cgroup2_mount() -> PathBuf {
    super::cgroup2_mount().expect("no cgroup2 mount in /proc/self/mountinfo")
}

/// What one probe got: 0 when the call succeeded, else its errno.
type Verdicts = [i32; 6];

/// Forks a child that joins the cgroup2 directory `cgroup`, then: opens /dev/null read-write,
/// opens /dev/kmsg read-only, `mknod`s a 1:1 node (/dev/mem) in `scratch` and opens it
/// read-only, `mknod`s a 1:11 node (/dev/kmsg) there and opens it read-only. Opens only, never
/// a read or a write. `scratch` must be on a filesystem without `nodev`.
fn probe_in(cgroup: &Path, scratch: &Path) -> Verdicts {
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .unwrap();
    let (null, kmsg) = (c(Path::new("/dev/null")), c(Path::new("/dev/kmsg")));
    let (mem_node, kmsg_node) = (c(&scratch.join("mem")), c(&scratch.join("kmsg")));
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: the child only makes raw system calls on memory prepared before the fork, then
    // `_exit`s: nothing that could take a lock another thread held at the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: see the fork; every pointer is to a live CString or local.
        unsafe {
            let errno = || *libc::__errno_location();
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(100);
            }
            let mut out: Verdicts = [0; 6];
            let mut open = |path: &CString, flags: i32, slot: usize| {
                let fd = libc::open(path.as_ptr(), flags | libc::O_CLOEXEC);
                if fd < 0 {
                    out[slot] = errno();
                } else {
                    libc::close(fd);
                }
            };
            open(&null, libc::O_RDWR, 0);
            open(&kmsg, libc::O_RDONLY, 1);
            let dev = libc::S_IFCHR | 0o600;
            let made = libc::mknod(mem_node.as_ptr(), dev, libc::makedev(1, 1));
            let mem_errno = if made < 0 { errno() } else { 0 };
            let made = libc::mknod(kmsg_node.as_ptr(), dev, libc::makedev(1, 11));
            let kmsg_errno = if made < 0 { errno() } else { 0 };
            open(&mem_node, libc::O_RDONLY, 3);
            open(&kmsg_node, libc::O_RDONLY, 5);
            out[2] = mem_errno;
            out[4] = kmsg_errno;
            let bytes = std::mem::size_of_val(&out);
            let ok = libc::write(wr.as_raw_fd(), out.as_ptr().cast(), bytes) == bytes as isize;
            libc::_exit(if ok { 0 } else { 101 });
        }
    }
    drop(wr);
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "probe child failed: status {status:#x}"
    );
    let mut out: Verdicts = [0; 6];
    let bytes = std::mem::size_of_val(&out);
    // SAFETY: `out` has room for `bytes` bytes.
    let n = unsafe { libc::read(rd.as_raw_fd(), out.as_mut_ptr().cast(), bytes) };
    assert_eq!(n, bytes as isize, "short report from the probe child");
    for node in ["mem", "kmsg"] {
        let _ = std::fs::remove_file(scratch.join(node));
    }
    out
}

/// Needs root (loads and attaches a BPF program, makes cgroups, `mknod`s). A child in a cgroup2
/// directory with the device program can open /dev/null and `mknod` any node, but cannot open
/// /dev/kmsg or a `mknod`ed /dev/mem or /dev/kmsg node (EPERM); the same child in a sibling
/// directory without the program gets past the device check for all of them.
#[test]
fn device_program_denies_in_the_kernel_needs_root() {
    if !needs_root() {
        return;
    }
    let base = cgroup2_mount().join(format!("berth-unit-devprog-{}", std::process::id()));
    let (guarded, open) = (base.join("guarded"), base.join("open"));
    std::fs::create_dir_all(&guarded).unwrap();
    std::fs::create_dir_all(&open).unwrap();
    // The nodes go in a directory of the test's own under the workspace's `target/` (not /tmp,
    // a `nodev` tmpfs on many hosts: the program must be what denies).
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(format!("berth-devprog-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let fs = nix::sys::statvfs::statvfs(&scratch).unwrap();
    assert!(
        !fs.flags().contains(nix::sys::statvfs::FsFlags::ST_NODEV),
        "{} is on a nodev filesystem: the probe needs one where nodes open",
        scratch.display()
    );

    assert_eq!(device_programs(&guarded).unwrap(), Vec::<u32>::new());
    attach_device_rules(&guarded, &DEFAULT_RULES).unwrap();
    assert_eq!(device_programs(&guarded).unwrap().len(), 1);
    assert!(device_programs(&open).unwrap().is_empty());

    let with = probe_in(&guarded, &scratch);
    let without = probe_in(&open, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    for dir in [&guarded, &open, &base] {
        std::fs::remove_dir(dir).unwrap();
    }

    let eperm = libc::EPERM;
    assert_eq!(
        with,
        [0, eperm, 0, eperm, 0, eperm],
        "with the program: null rw, kmsg ro, mknod 1:1, open it, mknod 1:11, open it"
    );
    // Without it, every open reaches the driver: kmsg opens; a kernel without /dev/mem
    // support answers ENXIO for 1:1, which is past the device check all the same.
    assert_eq!(
        [without[0], without[1], without[2]],
        [0, 0, 0],
        "{without:?}"
    );
    assert!(without[3] == 0 || without[3] == libc::ENXIO, "{without:?}");
    assert_eq!([without[4], without[5]], [0, 0], "{without:?}");
}

/// Needs root. A container's own rule (`--device-cgroup-rule 'c 1:11 r'`, /dev/kmsg read-only)
/// gets a program of its own: the child opens /dev/kmsg and a `mknod`ed 1:11 node read-only,
/// while /dev/mem (1:1) stays denied.
#[test]
fn own_rules_get_their_own_program_in_the_kernel_needs_root() {
    if !needs_root() {
        return;
    }
    let dir = cgroup2_mount().join(format!("berth-unit-devown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(format!("berth-devown-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut rules = DEFAULT_RULES.to_vec();
    rules.push(crate::devices::parse_rule("c 1:11 r").unwrap());
    attach_device_rules(&dir, &rules).unwrap();
    let programs = device_programs(&dir).unwrap();
    let got = probe_in(&dir, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::remove_dir(&dir).unwrap();
    assert_eq!(programs.len(), 1);
    let eperm = libc::EPERM;
    assert_eq!(
        got,
        [0, 0, 0, eperm, 0, 0],
        "null rw, kmsg ro, mknod 1:1, open it, mknod 1:11, open it"
    );
}

/// True when the test can run; skips loudly (or fails under CI) otherwise.
fn needs_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "device program tests need root"
    );
    eprintln!("SKIPPED: device program tests need root");
    false
}

/// Needs root. The v2 layout's `create` (run here on the cgroup2 mount, whatever the host's
/// layout: on the hybrid layout that mount has no controllers, so only the directory and the
/// program are made) attaches the program unless asked not to (privileged).
#[test]
fn v2_create_attaches_the_program_unless_privileged_needs_root() {
    if !needs_root() {
        return;
    }
    let v2 = v2::V2::new(cgroup2_mount());
    let parent = format!("berth-unit-v2dev-{}", std::process::id());
    let (guarded, privileged) = (format!("{parent}/guarded"), format!("{parent}/privileged"));
    let res = Resources::default();
    let procs = v2.create(&guarded, &res, Some(&DEFAULT_RULES)).unwrap();
    assert_eq!(procs, [cgroup2_mount().join(&guarded).join("cgroup.procs")]);
    v2.create(&privileged, &res, None).unwrap();
    let (g, p) = (v2.dirs(&guarded), v2.dirs(&privileged));
    let counts = (
        device_programs(&g[0]).unwrap().len(),
        device_programs(&p[0]).unwrap().len(),
    );
    remove_dirs(&[g[0].clone(), p[0].clone()], Duration::ZERO).unwrap();
    std::fs::remove_dir(cgroup2_mount().join(&parent)).unwrap();
    assert_eq!(counts, (1, 0), "programs on (guarded, privileged)");
}

#[test]
fn device_cgroup_rules_parse_in_dockers_syntax() {
    use crate::devices::parse_rule;
    for ok in ["c 7:128 rwm", "a *:* m", "b 8:* rw", "c 1:3 r"] {
        let rule = parse_rule(ok).unwrap();
        assert_eq!(rule.to_string(), ok);
    }
    let rule = parse_rule("c 7:128 rw").unwrap();
    assert!(rule.allows(DevType::Char, 7, 128, ACC_READ | ACC_WRITE));
    assert!(!rule.allows(DevType::Char, 7, 128, ACC_MKNOD));
    assert!(!rule.allows(DevType::Block, 7, 128, ACC_READ));
    for bad in [
        "",
        "c 7:128",
        "x 1:1 r",
        "c 1:1 rwx",
        "c a:1 r",
        "c +1:1 r",
        "c 1:1 rwmr",
        "c  1:1 r",
        "c 1-1 r",
        "c 99999999999:1 r",
    ] {
        let err = parse_rule(bad).unwrap_err();
        assert!(err.contains("invalid device cgroup rule"), "{bad}: {err}");
    }
}
