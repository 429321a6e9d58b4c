//! The code generator: a compiled rule set becomes ONE classic-BPF program that checks the
//! architecture (a foreign one kills the process), loads the syscall number, finds its interval
//! with a balanced binary search (`JGE` on the sorted interval starts; adjacent syscalls with the
//! same plain action and the gaps between named syscalls are merged into one interval each), and
//! either returns the interval's action or runs the syscall's argument rules.
//!
//! A syscall can carry rules of several actions (Docker's profiles give one action per entry).
//! The result is the kernel's rule for a stack of one-action programs: the most restrictive action
//! whose rules match, for equal precedence the one of the later group; none matching gives the
//! default action. Leaves test the groups in that order and return the first match.
//!
//! The kernel evaluates one program per syscall and, on attach, emulates it once per syscall
//! number to build its constant-allow cache: the search makes both O(log n) instead of the
//! linear chain's O(n). Classic BPF's conditional jumps reach at most 255 instructions ahead:
//! the assembler below lays out the code and routes a far target through a `JA` (32-bit offset)
//! placed right after the jump.

use std::collections::BTreeMap;

use seccompiler::sock_filter;

/// A comparison on one 64-bit syscall argument (`args[index] OP value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

/// Unsigned 64-bit comparisons, as libseccomp defines them; `MaskedEq(mask)` is
/// `args[index] & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    MaskedEq(u64),
}

/// One action's rules for one syscall: `None` matches whatever the arguments, `Some(rules)`
/// matches when one of the rules (OR) has all its conditions (AND) true.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub action: u32,
    pub rules: Option<Vec<Vec<Cond>>>,
}

/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
const MAX_LEN: usize = 4096;

// BPF_LD | BPF_W | BPF_ABS.
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x04 | 0x50;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// The action part of a return value, ordered as the kernel orders them: lower is more
/// restrictive (`SECCOMP_RET_KILL_PROCESS` is negative as an `i32`).
pub(crate) fn precedence(ret: u32) -> i32 {
    (ret & 0xffff_0000) as i32
}

/// The program for architecture `audit_arch`: `syscalls` maps a syscall number to its groups in
/// installation order (a later group wins a tie); every other number gets `default`.
pub(crate) fn generate(
    audit_arch: u32,
    default: u32,
    syscalls: &BTreeMap<u32, Vec<Group>>,
) -> Result<Vec<sock_filter>, String> {
    let mut asm = Asm::default();
    let kill = asm.label();
    asm.stmt(LD_W_ABS, OFF_ARCH);
    let search = asm.label();
    asm.jump(JMP_JEQ_K, audit_arch, search, kill);
    asm.mark(kill);
    asm.stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS);
    asm.mark(search);

    // One leaf per named syscall: a shared return, or code for its argument rules.
    let mut leaves: Vec<(u32, usize)> = Vec::new();
    let mut code_leaves: Vec<(usize, Vec<&Group>)> = Vec::new();
    for (&nr, groups) in syscalls {
        let mut ordered: Vec<(usize, &Group)> = groups.iter().enumerate().collect();
        ordered.sort_by_key(|(i, g)| (precedence(g.action), std::cmp::Reverse(*i)));
        // Groups after an unconditional one are never reached.
        let cut = ordered
            .iter()
            .position(|(_, g)| g.rules.is_none())
            .map_or(ordered.len(), |p| p + 1);
        let ordered: Vec<&Group> = ordered[..cut].iter().map(|(_, g)| *g).collect();
        let leaf = match ordered.as_slice() {
            [] => asm.ret(default),
            [only] if only.rules.is_none() => asm.ret(only.action),
            _ => {
                let l = asm.label();
                code_leaves.push((l, ordered));
                l
            }
        };
        leaves.push((nr, leaf));
    }
    // Intervals [start, next start) of syscall numbers, each with its leaf.
    let fallback = asm.ret(default);
    let mut intervals: Vec<(u32, usize)> = Vec::new();
    push_interval(&mut intervals, 0, fallback);
    for (nr, leaf) in leaves {
        push_interval(&mut intervals, nr, leaf);
        if let Some(after) = nr.checked_add(1) {
            push_interval(&mut intervals, after, fallback);
        }
    }

    search_tree(&mut asm, &intervals);

    for (label, groups) in code_leaves {
        asm.mark(label);
        for group in groups {
            let matched = asm.ret(group.action);
            match &group.rules {
                None => asm.ja(matched),
                Some(rules) => {
                    for rule in rules {
                        let next_rule = asm.label();
                        for cond in rule {
                            let ok = asm.label();
                            condition(&mut asm, cond, ok, next_rule);
                            asm.mark(ok);
                        }
                        asm.ja(matched);
                        asm.mark(next_rule);
                    }
                }
            }
        }
        asm.ja(fallback);
    }
    // The returns come last, so every jump to them goes forward.
    for (action, label) in std::mem::take(&mut asm.returns) {
        asm.mark(label);
        asm.stmt(RET_K, action);
    }
    let program = asm.assemble()?;
    if program.len() > MAX_LEN {
        return Err(format!(
            "the seccomp program has {} instructions (the kernel takes at most {MAX_LEN})",
            program.len()
        ));
    }
    Ok(program)
}

/// Appends an interval starting at `start` (replacing one that started there) unless it
/// continues the previous interval's leaf.
fn push_interval(intervals: &mut Vec<(u32, usize)>, start: u32, leaf: usize) {
    if intervals.last().is_some_and(|l| l.0 == start) {
        intervals.pop();
    }
    if intervals.last().map(|l| l.1) != Some(leaf) {
        intervals.push((start, leaf));
    }
}

/// The balanced search over interval starts; the accumulator holds the syscall number.
fn search_tree(asm: &mut Asm, intervals: &[(u32, usize)]) {
    asm.stmt(LD_W_ABS, OFF_NR);
    node(asm, intervals, None);
}

fn node(asm: &mut Asm, intervals: &[(u32, usize)], here: Option<usize>) {
    if let Some(l) = here {
        asm.mark(l);
    }
    if intervals.len() == 1 {
        asm.ja(intervals[0].1);
        return;
    }
    let mid = intervals.len() / 2;
    let (left, right) = intervals.split_at(mid);
    let target = |asm: &mut Asm, part: &[(u32, usize)]| {
        if part.len() == 1 {
            (part[0].1, false)
        } else {
            (asm.label(), true)
        }
    };
    let (lt, lcode) = target(asm, left);
    let (rt, rcode) = target(asm, right);
    asm.jump(JMP_JGE_K, right[0].0, rt, lt);
    if lcode {
        node(asm, left, Some(lt));
    }
    if rcode {
        node(asm, right, Some(rt));
    }
}

/// Jumps to `ok` when `cond` holds and to `fail` otherwise (the accumulator is clobbered).
fn condition(asm: &mut Asm, cond: &Cond, ok: usize, fail: usize) {
    let lo_off = OFF_ARGS + 8 * u32::from(cond.index);
    let hi_off = lo_off + 4;
    let (vhi, vlo) = ((cond.value >> 32) as u32, cond.value as u32);
    let low = asm.label();
    match cond.op {
        Op::Eq | Op::Ne => {
            let (t, f) = if cond.op == Op::Eq {
                (ok, fail)
            } else {
                (fail, ok)
            };
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JMP_JEQ_K, vhi, low, f);
            asm.mark(low);
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JMP_JEQ_K, vlo, t, f);
        }
        Op::MaskedEq(mask) => {
            let (mhi, mlo) = ((mask >> 32) as u32, mask as u32);
            asm.stmt(LD_W_ABS, hi_off);
            asm.stmt(ALU_AND_K, mhi);
            asm.jump(JMP_JEQ_K, vhi, low, fail);
            asm.mark(low);
            asm.stmt(LD_W_ABS, lo_off);
            asm.stmt(ALU_AND_K, mlo);
            asm.jump(JMP_JEQ_K, vlo, ok, fail);
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            // `Lt` is "not `Ge`" and `Le` is "not `Gt`": one test, outcomes swapped. For the
            // test: hi > vhi holds; hi == vhi: the low words decide; hi < vhi fails.
            let (strict, holds, fails) = match cond.op {
                Op::Gt => (true, ok, fail),
                Op::Ge => (false, ok, fail),
                Op::Lt => (false, fail, ok),
                _ => (true, fail, ok),
            };
            let equal = asm.label();
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JMP_JGT_K, vhi, holds, equal);
            asm.mark(equal);
            asm.jump(JMP_JEQ_K, vhi, low, fails);
            asm.mark(low);
            asm.stmt(LD_W_ABS, lo_off);
            let code = if strict { JMP_JGT_K } else { JMP_JGE_K };
            asm.jump(code, vlo, holds, fails);
        }
    }
}

/// A tiny assembler with forward labels.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
    returns: BTreeMap<u32, usize>,
}

enum Item {
    Stmt(u16, u32),
    Jump {
        code: u16,
        k: u32,
        jt: usize,
        jf: usize,
    },
    Ja(usize),
    Mark(usize),
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    /// The label of the shared `RET action`.
    fn ret(&mut self, action: u32) -> usize {
        if let Some(l) = self.returns.get(&action) {
            return *l;
        }
        let l = self.label();
        self.returns.insert(action, l);
        l
    }
    fn mark(&mut self, l: usize) {
        self.items.push(Item::Mark(l));
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.items.push(Item::Stmt(code, k));
    }
    fn jump(&mut self, code: u16, k: u32, jt: usize, jf: usize) {
        self.items.push(Item::Jump { code, k, jt, jf });
    }
    fn ja(&mut self, l: usize) {
        self.items.push(Item::Ja(l));
    }

    /// Lays the code out; a conditional jump whose target is more than 255 instructions ahead
    /// gets a `JA` trampoline right after it (repeated until every offset fits).
    fn assemble(&self) -> Result<Vec<sock_filter>, String> {
        let mut far = vec![(false, false); self.items.len()];
        loop {
            let (pos, labels) = self.layout(&far)?;
            let mut changed = false;
            for (i, item) in self.items.iter().enumerate() {
                if let Item::Jump { jt, jf, .. } = item {
                    let next = pos[i] + 1;
                    if !far[i].0 && labels[*jt] - next > 255 {
                        far[i].0 = true;
                        changed = true;
                    }
                    if !far[i].1 && labels[*jf] - next > 255 {
                        far[i].1 = true;
                        changed = true;
                    }
                }
            }
            if changed {
                continue;
            }
            let mut out = Vec::with_capacity(pos.last().copied().unwrap_or(0) + 2);
            for (i, item) in self.items.iter().enumerate() {
                let next = pos[i] + 1;
                match *item {
                    Item::Mark(_) => {}
                    Item::Stmt(code, k) => out.push(insn(code, 0, 0, k)),
                    Item::Ja(l) => out.push(insn(JMP_JA, 0, 0, (labels[l] - next) as u32)),
                    Item::Jump { code, k, jt, jf } => {
                        let (ft, ff) = far[i];
                        let tramp = usize::from(ft) + usize::from(ff);
                        let jt_off = if ft { 0 } else { labels[jt] - next };
                        let jf_off = if ff {
                            usize::from(ft)
                        } else {
                            labels[jf] - next
                        };
                        out.push(insn(code, jt_off as u8, jf_off as u8, k));
                        let mut at = next;
                        for (is_far, l) in [(ft, jt), (ff, jf)] {
                            if is_far {
                                out.push(insn(JMP_JA, 0, 0, (labels[l] - (at + 1)) as u32));
                                at += 1;
                            }
                        }
                        debug_assert_eq!(at, next + tramp);
                    }
                }
            }
            return Ok(out);
        }
    }

    /// Instruction positions per item and label positions, checking every jump goes forward.
    fn layout(&self, far: &[(bool, bool)]) -> Result<(Vec<usize>, Vec<usize>), String> {
        let mut pos = Vec::with_capacity(self.items.len());
        let mut labels = vec![usize::MAX; self.labels];
        let mut at = 0usize;
        for (i, item) in self.items.iter().enumerate() {
            pos.push(at);
            match item {
                Item::Mark(l) => labels[*l] = at,
                Item::Jump { .. } => at += 1 + usize::from(far[i].0) + usize::from(far[i].1),
                _ => at += 1,
            }
        }
        for (i, item) in self.items.iter().enumerate() {
            let targets: &[usize] = match item {
                Item::Jump { jt, jf, .. } => &[*jt, *jf],
                Item::Ja(l) => std::slice::from_ref(l),
                _ => &[],
            };
            for l in targets {
                let end = pos[i] + 1 + usize::from(far[i].0) + usize::from(far[i].1);
                if labels[*l] == usize::MAX || labels[*l] < end.min(pos[i] + 1) {
                    return Err("seccomp code generator: a jump goes backwards".into());
                }
            }
        }
        Ok((pos, labels))
    }
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}
