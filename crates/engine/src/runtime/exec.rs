//! `docker exec` in the namespace runtime: a new process inside a running container.
//!
//! Everything is prepared before the fork, in the engine: the namespace fds of the container's
//! pid 1 (`/proc/<pid1>/ns/{ipc,uts,net,pid,mnt}`), the container's `cgroup.procs` files, the
//! confinement plan (capabilities, seccomp BPF, no_new_privs, user and groups, built by the
//! same [`confine::plan`] as for pid 1 from the container's `SecurityOptions`; the user is
//! resolved in the container's root, `/proc/<pid1>/root`), `argv`, `envp` and the `execve`
//! candidates. The forked child (std's `pre_exec`, async-signal-safe code only) joins the
//! cgroups and the namespaces, then forks again so that the command is inside the pid
//! namespace; that grandchild changes to the working directory, drops to the container's
//! confinement ([`harden::finish`]) and execs. The intermediate child waits for it and exits
//! with its code (128+N when killed by signal N), so the engine's `Child` reports the
//! command's exit status. Failures before `execve` come back as a [`Record`] on a CLOEXEC
//! error pipe, as for pid 1.
//!
//! Not done here: a pty (`docker exec -t`); the engine refuses it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use libc::{c_int, c_ulong};
use nix::errno::Errno;
use tokio::io::AsyncReadExt;

use super::child::{Ctx, RECORD_LEN, Record, Step};
use super::plan::{CStrArray, last_cap};
use super::{RuntimeError, confine, harden};
use crate::container::SecurityOptions;

/// The namespaces an exec'd process joins, in this order (`mnt` last: it changes the root).
const NAMESPACES: [&str; 5] = ["ipc", "uts", "net", "pid", "mnt"];

/// `PATH` when the environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run inside a running container.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The container's pid 1, host pid (the caller checked it is still the container's).
    pub pid1: i32,
    /// The command; must not be empty.
    pub argv: Vec<String>,
    /// The whole environment, `KEY=VALUE` (the container's plus the exec's additions).
    pub env: Vec<String>,
    /// Absolute working directory inside the container; empty means `/`.
    pub cwd: String,
    /// `user[:group]` as for `docker run -u`; empty means root.
    pub user: String,
    /// The container's security options (the same confinement as pid 1).
    pub security: SecurityOptions,
    /// The container's `cgroup.procs` files (empty: stay in the engine's cgroup).
    pub cgroup_procs: Vec<PathBuf>,
}

/// Starts `spec`; the returned child has piped stdin, stdout and stderr and exits with the
/// command's code. Resolves once the command has been exec'd (or failed to).
pub async fn exec(spec: ExecSpec) -> Result<tokio::process::Child, RuntimeError> {
    let prepared = prepare(&spec)?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Host {
            step: "create exec error pipe",
            source: e.into(),
        })?;
    let mut cmd = tokio::process::Command::new("berth-exec");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    // SAFETY: `run` only makes async-signal-safe syscalls on data prepared above and never
    // returns (it execs or exits).
    unsafe {
        cmd.as_std_mut()
            .pre_exec(move || run(&prepared, err_w.as_raw_fd()));
    }
    let child = cmd.spawn().map_err(|e| RuntimeError::Host {
        step: "fork exec process",
        source: e,
    });
    // The closure (with the parent's copy of the error pipe's write end) goes away here.
    drop(cmd);
    let child = child?;
    let mut err =
        tokio::net::unix::pipe::Receiver::from_owned_fd(err_r).map_err(|e| RuntimeError::Host {
            step: "read exec error pipe",
            source: e,
        })?;
    let mut buf = Vec::with_capacity(RECORD_LEN);
    err.read_to_end(&mut buf)
        .await
        .map_err(|e| RuntimeError::Host {
            step: "read exec error pipe",
            source: e,
        })?;
    match buf
        .get(..RECORD_LEN)
        .and_then(|b| <&[u8; RECORD_LEN]>::try_from(b).ok())
        .map(Record::from_bytes)
    {
        None => Ok(child),
        Some(record) => Err(describe(&spec, record)),
    }
}

/// Turns a failure record into an error naming the step.
fn describe(spec: &ExecSpec, record: Record) -> RuntimeError {
    let errno = Errno::from_raw(record.errno);
    let cmd = spec.argv.first().cloned().unwrap_or_default();
    match Step::from_u32(record.step) {
        Some(Step::ExecSearch) => RuntimeError::ExecNotFound { cmd },
        Some(Step::Exec) => RuntimeError::Exec { cmd, errno },
        Some(Step::JoinNetns) => RuntimeError::Setup {
            step: format!(
                "exec: join {} namespace of the container",
                NAMESPACES.get(record.index as usize).unwrap_or(&"a")
            ),
            errno,
        },
        Some(Step::Cwd) => RuntimeError::Setup {
            step: format!("exec: chdir to {:?}", spec.cwd),
            errno,
        },
        Some(step) => RuntimeError::Setup {
            step: format!("exec: {step:?} #{}", record.index),
            errno,
        },
        None => RuntimeError::Setup {
            step: format!("exec: unknown step {}", record.step),
            errno,
        },
    }
}

/// Everything the forked child needs, owned and built before the fork.
struct Prepared {
    namespaces: Vec<OwnedFd>,
    cgroup_procs: Vec<OwnedFd>,
    confine: confine::ConfinePlan,
    last_cap: u32,
    cwd: CString,
    argv: CStrArray,
    envp: CStrArray,
    exec_paths: Vec<CString>,
}

fn invalid(what: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidSpec(what.into())
}

fn cstring(s: &str, what: &str) -> Result<CString, RuntimeError> {
    CString::new(s).map_err(|_| invalid(format!("{what} contains a NUL byte")))
}

fn prepare(spec: &ExecSpec) -> Result<Prepared, RuntimeError> {
    let argv0 = spec
        .argv
        .first()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("exec: no command given"))?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "exec: working directory {cwd:?} is not absolute"
        )));
    }
    let root = PathBuf::from(format!("/proc/{}/root", spec.pid1));
    let last_cap = last_cap();
    let layers: [&Path; 1] = [&root];
    let (confine, _, _) = confine::plan(&spec.security, &spec.user, &layers, last_cap)?;
    let mut namespaces = Vec::with_capacity(NAMESPACES.len());
    for ns in NAMESPACES {
        let path = format!("/proc/{}/ns/{ns}", spec.pid1);
        let file = std::fs::File::open(&path).map_err(|e| RuntimeError::Prepare {
            step: "open namespace",
            path: path.into(),
            source: e,
        })?;
        namespaces.push(OwnedFd::from(file));
    }
    let mut cgroup_procs = Vec::with_capacity(spec.cgroup_procs.len());
    for path in &spec.cgroup_procs {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| RuntimeError::Prepare {
                step: "open cgroup.procs",
                path: path.clone(),
                source: e,
            })?;
        cgroup_procs.push(OwnedFd::from(file));
    }
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring(a, "exec argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = spec
        .env
        .iter()
        .map(|e| cstring(e, "exec environment"))
        .collect::<Result<Vec<_>, _>>()?;
    let path_var = spec
        .env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let exec_paths = if argv0.contains('/') {
        vec![cstring(argv0, "exec command")?]
    } else {
        path_var
            .split(':')
            .map(|dir| {
                let dir = if dir.is_empty() { "." } else { dir };
                cstring(
                    &format!("{}/{argv0}", dir.trim_end_matches('/')),
                    "exec command",
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Prepared {
        namespaces,
        cgroup_procs,
        confine,
        last_cap,
        cwd: cstring(cwd, "exec working directory")?,
        argv: CStrArray::new(argv),
        envp: CStrArray::new(envp),
        exec_paths,
    })
}

/// The forked child: joins cgroups and namespaces, forks the command, waits for it.
///
/// # Safety
/// Only in the freshly forked child; async-signal-safe.
fn run(p: &Prepared, err_w: c_int) -> std::io::Result<()> {
    let ctx = Ctx::new(err_w);
    // SAFETY: plain syscalls on fds and buffers owned by `p`.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
        for (i, fd) in p.cgroup_procs.iter().enumerate() {
            let ret = libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1);
            ctx.check(ret as c_int, Step::JoinCgroup, i as u32);
        }
        for (i, fd) in p.namespaces.iter().enumerate() {
            ctx.check(libc::setns(fd.as_raw_fd(), 0), Step::JoinNetns, i as u32);
        }
        let pid = ctx.check(libc::fork(), Step::Fork, 0);
        if pid == 0 {
            command(p, &ctx);
        }
        // Only the command reports on the error pipe (its EOF means exec'd), and std's own
        // exec-status pipe must see EOF too, or `spawn` would wait for the command to end.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut status: c_int = 0;
        loop {
            if libc::waitpid(pid, &mut status, 0) == pid {
                break;
            }
            if super::child::errno() != libc::EINTR {
                libc::_exit(127);
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        libc::_exit(code)
    }
}

/// The command, inside the pid namespace: working directory, confinement, `execve`.
fn command(p: &Prepared, ctx: &Ctx) -> ! {
    // SAFETY: async-signal-safe syscalls on data owned by `p`.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
        ctx.check(libc::chdir(p.cwd.as_ptr()), Step::Cwd, 0);
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::umask(0o022);
    }
    harden::finish(ctx, &p.confine, p.last_cap);
    let mut denied = false;
    for path in &p.exec_paths {
        // SAFETY: NULL-terminated arrays of valid C strings.
        unsafe { libc::execve(path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
        match super::child::errno() {
            libc::ENOENT | libc::ENOTDIR if p.exec_paths.len() > 1 => {}
            libc::EACCES if p.exec_paths.len() > 1 => denied = true,
            other => ctx.fail(Step::Exec, 0, other),
        }
    }
    ctx.fail(
        Step::ExecSearch,
        0,
        if denied { libc::EACCES } else { libc::ENOENT },
    )
}

/// Needs root (skips loudly without, fails under CI): exec into a real container.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::runtime::{NetMode, Rootfs, RunSpec, Spawned, cleanup, signal, spawn};

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn status_line(text: &str, key: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[key.len()..].trim().to_string())
            .unwrap_or_default()
    }

    async fn run_exec(spec: ExecSpec, stdin: &[u8]) -> (String, i32) {
        let mut child = exec(spec).await.expect("exec");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).await.expect("write stdin");
        drop(input);
        let out = child.wait_with_output().await.expect("wait exec");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exec_joins_namespaces_cgroup_and_confinement() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "exec tests need root");
            eprintln!("SKIPPED: exec tests need root");
            return;
        }
        let bundle = std::env::temp_dir().join(format!("berth-rt-exec-{}", std::process::id()));
        std::fs::create_dir_all(&bundle).expect("bundle");
        let spec = RunSpec {
            id: "e".repeat(64),
            bundle: bundle.clone(),
            rootfs: Rootfs::Host,
            mounts: Vec::new(),
            hostname: "berth-exec".into(),
            env: Vec::new(),
            cwd: String::new(),
            argv: ["sh", "-c", "echo ready; exec sleep 60"]
                .map(String::from)
                .to_vec(),
            tty: false,
            open_stdin: false,
            net: NetMode::Isolated,
            cgroup_procs: Vec::new(),
            user: String::new(),
            security: Default::default(),
        };
        let result = tokio::time::timeout(TIMEOUT, async {
            let Spawned { pid1, io, exit, .. } = spawn(spec).await.expect("spawn");
            let mut lines = BufReader::new(io.stdout).lines();
            assert_eq!(
                lines.next_line().await.expect("read").as_deref(),
                Some("ready")
            );
            let pid1_status =
                std::fs::read_to_string(format!("/proc/{pid1}/status")).expect("pid 1 status");
            let exec_spec = |argv: &[&str], user: &str, cwd: &str| ExecSpec {
                pid1,
                argv: argv.iter().map(|s| s.to_string()).collect(),
                env: vec![format!("PATH={DEFAULT_PATH}"), "GREETING=hello".into()],
                cwd: cwd.into(),
                user: user.into(),
                security: Default::default(),
                cgroup_procs: Vec::new(),
            };
            let script = "echo host=$(hostname) cwd=$(pwd) one=$(cat /proc/1/comm) \
                          greeting=$GREETING; grep -E '^(Seccomp|CapEff|NoNewPrivs):' \
                          /proc/self/status; cat; exit 3";
            let (out, code) = run_exec(exec_spec(&["sh", "-c", script], "", "/tmp"), b"hi\n").await;
            assert_eq!(code, 3, "exit code: {out}");
            assert!(
                out.contains("host=berth-exec cwd=/tmp one=sleep greeting=hello"),
                "{out}"
            );
            assert!(out.ends_with("hi\n"), "stdin reaches the command: {out}");
            for key in ["Seccomp:", "CapEff:", "NoNewPrivs:"] {
                assert_eq!(
                    status_line(&out, key),
                    status_line(&pid1_status, key),
                    "{key} as pid 1: {out}"
                );
            }
            assert_eq!(status_line(&out, "Seccomp:"), "2", "{out}");

            let (out, code) = run_exec(exec_spec(&["id", "-u"], "65534", ""), b"").await;
            assert_eq!((out.trim(), code), ("65534", 0));

            let err = exec(exec_spec(&["no-such-command"], "", ""))
                .await
                .expect_err("missing command");
            assert!(matches!(err, RuntimeError::ExecNotFound { .. }), "{err}");

            signal(pid1, nix::sys::signal::Signal::SIGKILL).expect("kill");
            assert_eq!(exit.await, 137);
        })
        .await;
        let _ = cleanup(&bundle);
        let _ = std::fs::remove_dir_all(&bundle);
        result.expect("exec test timed out");
    }
}
