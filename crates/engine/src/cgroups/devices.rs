//! Device rules, and the eBPF program that enforces them on cgroup v2.
//!
//! One typed list ([`DEFAULT_RULES`], Docker's defaults for a non-privileged container) feeds
//! both layouts: v1 writes each rule to `devices.allow` in the kernel's text syntax
//! ([`DeviceRule`]'s `Display`), v2 has no device files and takes a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program instead, generated here by [`program`].
//!
//! The kernel runs the program on every open (read, write) and `mknod` of a device node by a
//! task of the cgroup (or of a descendant), with a `struct bpf_cgroup_dev_ctx { u32 access_type;
//! u32 major; u32 minor; }` in `r1`, where `access_type` is `(access << 16) | type`; returning 1
//! allows, 0 denies (EPERM). The program is an allow-list with a default deny: one block per
//! rule, each block's tests jumping to the next block on a mismatch and returning 1 when all
//! pass, and a final `return 0`. The encoding follows the kernel's `struct bpf_insn`.

use std::fmt;

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`: the low 16 bits of `access_type`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// `BPF_DEVCG_ACC_*`: the high 16 bits of `access_type` (one or more of them).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The node types a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevType {
    Char,
    Block,
    /// Both (v1's `a`).
    Any,
}

/// One allow rule: a node type, a major and a minor (`None` = any), and the accesses allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// A set of `ACC_*` bits.
    pub access: u8,
}

impl DeviceRule {
    const fn char(major: u32, minor: Option<u32>, access: u8) -> DeviceRule {
        DeviceRule {
            kind: DevType::Char,
            major: Some(major),
            minor,
            access,
        }
    }

    /// Whether this rule allows `access` (a set of `ACC_*` bits) to node `kind major:minor`: the
    /// kernel's v1 semantics, which the generated program must match.
    pub fn allows(&self, kind: DevType, major: u32, minor: u32, access: u8) -> bool {
        (self.kind == DevType::Any || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && access & !self.access == 0
    }
}

/// The v1 `devices.allow` syntax: `c 1:3 rwm`, `b *:* m`, `a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DevType::Char => 'c',
            DevType::Block => 'b',
            DevType::Any => 'a',
        };
        let num = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        write!(f, "{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// Docker's `DeviceCgroupRules` syntax, v1's: `TYPE MAJOR:MINOR ACCESS` (`c 7:128 rwm`, `a *:* m`).
impl std::str::FromStr for DeviceRule {
    type Err = String;

    fn from_str(s: &str) -> Result<DeviceRule, String> {
        let bad = || {
            format!(
                "invalid device cgroup rule {s:?}: expected TYPE MAJOR:MINOR ACCESS, e.g. \"c 7:128 rwm\" \
                 (TYPE a, b or c; MAJOR and MINOR numbers or *; ACCESS of r, w and m)"
            )
        };
        let parts: Vec<&str> = s.split(' ').collect();
        let [kind, dev, access] = parts[..] else {
            return Err(bad());
        };
        let kind = match kind {
            "a" => DevType::Any,
            "b" => DevType::Block,
            "c" => DevType::Char,
            _ => return Err(bad()),
        };
        let num = |n: &str| match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().map(Some).map_err(|_| bad())
            }
            _ => Err(bad()),
        };
        let (major, minor) = dev.split_once(':').ok_or_else(bad)?;
        if access.is_empty() || access.len() > 3 {
            return Err(bad());
        }
        let mut bits = 0;
        for c in access.chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(bad()),
            };
        }
        Ok(DeviceRule {
            kind,
            major: num(major)?,
            minor: num(minor)?,
            access: bits,
        })
    }
}

/// Docker's default device rules for a non-privileged container: `mknod` of any node,
/// read/write/mknod of null, zero, full, random, urandom, tty, console, ptmx, tun and the pty
/// slaves. Everything else is denied.
pub const DEFAULT_RULES: [DeviceRule; 12] = [
    DeviceRule {
        kind: DevType::Char,
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    DeviceRule {
        kind: DevType::Block,
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    DeviceRule::char(1, Some(3), ACC_ALL),    // null
    DeviceRule::char(1, Some(5), ACC_ALL),    // zero
    DeviceRule::char(1, Some(7), ACC_ALL),    // full
    DeviceRule::char(1, Some(8), ACC_ALL),    // random
    DeviceRule::char(1, Some(9), ACC_ALL),    // urandom
    DeviceRule::char(5, Some(0), ACC_ALL),    // tty
    DeviceRule::char(5, Some(1), ACC_ALL),    // console
    DeviceRule::char(5, Some(2), ACC_ALL),    // ptmx
    DeviceRule::char(10, Some(200), ACC_ALL), // net/tun
    DeviceRule::char(136, None, ACC_ALL),     // pts/*
];

/// Most rules one program may hold: 7 instructions a rule at most keeps a program far below the
/// kernel's 4096-instruction limit for unprivileged loaders (root may load more).
pub const MAX_RULES: usize = 512;

/// One eBPF instruction (`struct bpf_insn`): opcode, destination and source registers (4 bits
/// each), a signed 16-bit offset and a signed 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode parts (`linux/bpf_common.h`, `linux/bpf.h`).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// Opcodes the generator emits, for the tests' reading of a program.
pub const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
pub const AND32_K: u8 = BPF_ALU | BPF_AND | BPF_K;
pub const RSH32_K: u8 = BPF_ALU | BPF_RSH | BPF_K;
pub const MOV32_X: u8 = BPF_ALU | BPF_MOV | BPF_X;
pub const MOV64_K: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
pub const JNE_K: u8 = BPF_JMP | BPF_JNE | BPF_K;
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // The C bitfields `dst_reg:4, src_reg:4` are laid out from the low bits on
        // little-endian targets and from the high bits on big-endian ones.
        #[cfg(target_endian = "little")]
        let regs = (dst & 0xf) | (src << 4);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0xf);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    #[cfg(test)]
    pub fn dst(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    #[cfg(test)]
    pub fn src(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }
}

// Registers: r1 holds the context on entry; the prologue leaves the fields in r2..r5.
const R0: u8 = 0;
const R1: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// The program for `rules` (an allow-list; anything no rule allows is denied). At most
/// [`MAX_RULES`] rules (the caller's list is fixed; more is a bug, cut here).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let rules = &rules[..rules.len().min(MAX_RULES)];
    let mut out = vec![
        // r2 = type, r3 = access, r4 = major, r5 = minor.
        Insn::new(LDX_W, R_TYPE, R1, 0, 0),
        Insn::new(AND32_K, R_TYPE, 0, 0, 0xffff),
        Insn::new(LDX_W, R_ACCESS, R1, 0, 0),
        Insn::new(RSH32_K, R_ACCESS, 0, 0, 16),
        Insn::new(LDX_W, R_MAJOR, R1, 4, 0),
        Insn::new(LDX_W, R_MINOR, R1, 8, 0),
    ];
    for rule in rules {
        out.extend(rule_block(rule));
    }
    out.push(Insn::new(MOV64_K, R0, 0, 0, 0));
    out.push(Insn::new(EXIT, 0, 0, 0, 0));
    out
}

/// One rule: its tests, each jumping past the block on a mismatch, then `return 1`.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Tests first, with the jump offsets filled in once the block's length is known.
    let mut tests: Vec<Insn> = Vec::with_capacity(5);
    match rule.kind {
        DevType::Char => tests.push(Insn::new(JNE_K, R_TYPE, 0, 0, DEV_CHAR)),
        DevType::Block => tests.push(Insn::new(JNE_K, R_TYPE, 0, 0, DEV_BLOCK)),
        DevType::Any => {}
    }
    if rule.access & ACC_ALL != ACC_ALL {
        // Every access asked for must be among the rule's: (asked & !allowed) == 0.
        tests.push(Insn::new(MOV32_X, R1, R_ACCESS, 0, 0));
        tests.push(Insn::new(AND32_K, R1, 0, 0, i32::from(!rule.access)));
        tests.push(Insn::new(JNE_K, R1, 0, 0, 0));
    }
    // Majors and minors are at most 12 and 20 bits wide: they fit the signed immediate.
    if let Some(major) = rule.major {
        tests.push(Insn::new(JNE_K, R_MAJOR, 0, 0, major as i32));
    }
    if let Some(minor) = rule.minor {
        tests.push(Insn::new(JNE_K, R_MINOR, 0, 0, minor as i32));
    }
    let len = tests.len() + 2;
    for (i, insn) in tests.iter_mut().enumerate() {
        if insn.code == JNE_K {
            // Relative to the next instruction: to the first one after the block.
            insn.off = (len - i - 1) as i16;
        }
    }
    tests.push(Insn::new(MOV64_K, R0, 0, 0, 1));
    tests.push(Insn::new(EXIT, 0, 0, 0, 0));
    tests
}
