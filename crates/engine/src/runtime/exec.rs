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
//! With `tty` (`docker exec -t`) the command opens a new pty in the container's own devpts
//! (`/dev/ptmx` after joining the mount namespace, as runc does, so `tty` inside names
//! `/dev/pts/N` of the container), makes its slave the controlling terminal of a new session and
//! its stdio, and hands the master to the engine over a socket pair (`SCM_RIGHTS`) before it
//! drops its confinement. `privileged` (`docker exec --privileged`) gives the command every
//! capability the engine has, as Docker does; the container's seccomp program, no_new_privs and
//! user still apply.

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
use super::{Io, RuntimeError, confine, harden, pty};
use crate::container::SecurityOptions;

/// The namespaces an exec'd process joins, in this order (`mnt` last: it changes the root;
/// `cgroup` after the container's cgroups were joined, and the host's unless `CgroupnsMode`
/// is `private`).
const NAMESPACES: [&str; 6] = ["cgroup", "ipc", "uts", "net", "pid", "mnt"];

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
    /// Run on a new pty of the container (stdout and stderr merged, raw bytes).
    pub tty: bool,
    /// Every capability the engine has, instead of the container's.
    pub privileged: bool,
    /// Give the engine a writable stdin.
    pub open_stdin: bool,
    /// With a tty: its size, `(rows, cols)`, set before the command runs.
    pub console_size: Option<(u16, u16)>,
}

/// A started exec: the process (it exits with the command's code) and its stdio.
#[derive(Debug)]
pub struct ExecProcess {
    pub child: tokio::process::Child,
    pub io: Io,
}

/// Starts `spec`. Resolves once the command has been exec'd (or failed to).
pub async fn exec(spec: ExecSpec) -> Result<ExecProcess, RuntimeError> {
    let mut prepared = prepare(&spec)?;
    let host = |step: &'static str| {
        move |e: nix::errno::Errno| RuntimeError::Host {
            step,
            source: e.into(),
        }
    };
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(host("create exec error pipe"))?;
    // The command sends the pty master it opened on this socket pair.
    let pty_pair = if spec.tty {
        let (engine, command) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(host("create exec pty socket"))?;
        prepared.pty_sock = Some(command);
        Some(engine)
    } else {
        None
    };
    let mut cmd = tokio::process::Command::new("berth-exec");
    if spec.tty {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    } else {
        cmd.stdin(if spec.open_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
    cmd.kill_on_drop(false);
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
    let mut child = child?;
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
    if let Some(record) = buf
        .get(..RECORD_LEN)
        .and_then(|b| <&[u8; RECORD_LEN]>::try_from(b).ok())
        .map(Record::from_bytes)
    {
        return Err(describe(&spec, record));
    }
    let io = match pty_pair {
        Some(sock) => {
            let master = receive_fd(&sock).map_err(|source| RuntimeError::Host {
                step: "receive the exec's pty",
                source,
            })?;
            pty_io(master, spec.open_stdin).map_err(|source| RuntimeError::Host {
                step: "set up the exec's pty",
                source,
            })?
        }
        None => pipe_io(&mut child),
    };
    Ok(ExecProcess { child, io })
}

/// The engine's side of a pty master: output, input (when asked for), a dup for resizes.
fn pty_io(master: OwnedFd, open_stdin: bool) -> std::io::Result<Io> {
    pty::set_nonblocking(&master)?;
    let stdout = pty::PtyStream::new(master.try_clone()?)?;
    let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = if open_stdin {
        Some(Box::new(pty::PtyStream::new(master.try_clone()?)?))
    } else {
        None
    };
    Ok(Io {
        stdin,
        stdout: Box::new(stdout),
        stderr: None,
        pty: Some(master),
    })
}

/// The child's pipes as [`Io`] (stdin only when it was piped).
fn pipe_io(child: &mut tokio::process::Child) -> Io {
    let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
    let stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match child.stdout.take() {
        Some(out) => Box::new(out),
        None => Box::new(tokio::io::empty()),
    };
    let stderr = child
        .stderr
        .take()
        .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    Io {
        stdin,
        stdout,
        stderr,
        pty: None,
    }
}

/// Receives the one descriptor the command sent (it did so before its `execve`, whose
/// success the error pipe's EOF already told, so this never waits).
fn receive_fd(sock: &OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = msg
        .cmsgs()
        .map_err(std::io::Error::from)?
        .flat_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds,
            _ => Vec::new(),
        });
    let first = fds.next();
    for extra in fds {
        // SAFETY: a descriptor just received, owned by nobody else; closed right away.
        drop(unsafe { OwnedFd::from_raw_fd(extra) });
    }
    match first {
        // SAFETY: a descriptor just received, owned by nobody else.
        Some(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        None => Err(std::io::Error::other("the exec sent no pty")),
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
        Some(Step::Console) => RuntimeError::Setup {
            step: "exec: open a pty in the container's /dev/ptmx".into(),
            errno,
        },
        Some(Step::Ctty) => RuntimeError::Setup {
            step: "exec: make the pty the controlling terminal".into(),
            errno,
        },
        Some(Step::Pipe) => RuntimeError::Setup {
            step: "exec: hand the pty to the engine".into(),
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
    /// With a tty: the command's end of the socket pair it sends the pty master on.
    pty_sock: Option<OwnedFd>,
    /// With a tty: its initial size (all zero: the kernel's default).
    winsize: libc::winsize,
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
    let (mut confine, _, _) = confine::plan(&spec.security, &spec.user, &layers, last_cap)?;
    if spec.privileged {
        confine.caps = confine::bounding_set(last_cap);
    }
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
        pty_sock: None,
        winsize: libc::winsize {
            ws_row: spec.console_size.map_or(0, |s| s.0),
            ws_col: spec.console_size.map_or(0, |s| s.1),
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
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
        if let Some(sock) = &p.pty_sock {
            terminal(ctx, sock.as_raw_fd(), &p.winsize);
        }
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

/// In the command, with a tty: opens a pty in the container's devpts, sends the master to the
/// engine on `sock` (after giving it `size`, unless zero), and makes the slave the controlling terminal of a new session and stdio.
///
/// # Safety
/// Only in the forked command, after joining the mount namespace; async-signal-safe.
unsafe fn terminal(ctx: &Ctx, sock: c_int, size: &libc::winsize) {
    // SAFETY: plain syscalls on constant paths, local ints and buffers on this stack.
    unsafe {
        let master = ctx.check(
            libc::open(
                c"/dev/ptmx".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ),
            Step::Console,
            0,
        );
        let unlock: c_int = 0;
        ctx.check(
            libc::ioctl(master, libc::TIOCSPTLCK, &unlock),
            Step::Console,
            1,
        );
        let slave = ctx.check(
            libc::ioctl(
                master,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ),
            Step::Console,
            2,
        );
        if size.ws_row != 0 || size.ws_col != 0 {
            ctx.check(
                libc::ioctl(master, libc::TIOCSWINSZ, size),
                Step::Console,
                3,
            );
        }
        // One data byte carrying the master as SCM_RIGHTS; the control buffer is on the stack
        // (u64s for the alignment of `cmsghdr`).
        let mut control = [0u64; 4];
        let space = libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as usize;
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space.min(std::mem::size_of_val(&control)) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>(), master);
        ctx.check(libc::sendmsg(sock, &msg, 0) as c_int, Step::Pipe, 0);
        libc::close(master);
        libc::close(sock);
        ctx.check(libc::setsid(), Step::Setsid, 0);
        ctx.check(libc::ioctl(slave, libc::TIOCSCTTY, 0), Step::Ctty, 0);
        for target in 0..3 {
            ctx.check(libc::dup2(slave, target), Step::Ctty, 1 + target as u32);
        }
        libc::close(slave);
    }
}

/// Needs root (skips loudly without, fails under CI): exec into a real container.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
        let ExecProcess { mut child, io } = exec(spec).await.expect("exec");
        let mut input = io.stdin.expect("stdin");
        input.write_all(stdin).await.expect("write stdin");
        drop(input);
        let mut out = String::new();
        let mut stdout = io.stdout;
        stdout.read_to_string(&mut out).await.expect("read stdout");
        let status = child.wait().await.expect("wait exec");
        (out, status.code().unwrap_or(-1))
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
                tty: false,
                privileged: false,
                open_stdin: true,
                console_size: None,
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
