//! Runtime tests. Every test that starts a container **needs root** (namespaces, mounts) and
//! Linux ≥ 5.12 with overlayfs: without root they are skipped with a message on stderr, except
//! under CI (`CI` set), where they fail instead. The `Rootfs::Dir` test also needs
//! `/bin/busybox` (Debian: `apt-get install -y busybox-static`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A generous bound: a container starts in milliseconds.
pub(super) const TIMEOUT: Duration = Duration::from_secs(30);

/// SIGKILLs a running container's pid 1 and checks that its exit resolves, in time, with 137.
pub(super) async fn kill_to_137(pid1: i32, exit: futures::future::BoxFuture<'static, i32>) {
    signal(pid1, Signal::SIGKILL).expect("kill");
    let code = tokio::time::timeout(TIMEOUT, exit).await.expect("exit");
    assert_eq!(code, 137, "exit code of a SIGKILLed pid 1");
}

/// True when the test can run; skips loudly (or fails under CI) otherwise.
pub(super) fn needs_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "runtime tests need root");
    eprintln!("SKIPPED: runtime tests need root");
    false
}

/// A unique temporary directory, removed (after `cleanup`) on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "berth-rt-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = cleanup(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn spec(bundle: &TempDir, argv: &[&str]) -> RunSpec {
    spec_at(bundle.path(), argv)
}

pub(super) fn spec_at(bundle: &Path, argv: &[&str]) -> RunSpec {
    RunSpec {
        id: "0".repeat(64),
        bundle: bundle.to_path_buf(),
        rootfs: Rootfs::Host,
        mounts: Vec::new(),
        hostname: "berth-test".into(),
        env: Vec::new(),
        cwd: String::new(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        tty: false,
        open_stdin: false,
        net: NetMode::Host,
        cgroup_procs: Vec::new(),
        user: String::new(),
        security: Default::default(),
    }
}

fn sh(bundle: &TempDir, script: &str) -> RunSpec {
    spec(bundle, &["sh", "-c", script])
}

struct Output {
    stdout: String,
    stderr: String,
    code: i32,
}

/// Runs a container to completion, collecting its output.
async fn run(spec: RunSpec) -> Output {
    let run = async {
        let spawned = spawn(spec).await.expect("spawn");
        let Spawned { io, exit, .. } = spawned;
        let mut stdout_pipe = io.stdout;
        let mut stderr_pipe = io.stderr;
        let read_out = async {
            let mut s = String::new();
            stdout_pipe
                .read_to_string(&mut s)
                .await
                .expect("read stdout");
            s
        };
        let read_err = async {
            let mut s = String::new();
            if let Some(pipe) = stderr_pipe.as_mut() {
                pipe.read_to_string(&mut s).await.expect("read stderr");
            }
            s
        };
        let (stdout, stderr, code) = tokio::join!(read_out, read_err, exit);
        Output {
            stdout,
            stderr,
            code,
        }
    };
    tokio::time::timeout(TIMEOUT, run)
        .await
        .expect("container timed out")
}

/// Needs root. Host rootfs: stdout, stderr and the exit code come back separately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_exit_code() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("basic");
    let out = run(sh(&bundle, "echo hi; echo err >&2; exit 3")).await;
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.code, 3);
}

/// Needs root. Hostname, pid 1, a working /proc and /dev, env defaults and a created working dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_hostname_pid_proc_env_and_cwd() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("ns");
    let mut spec = sh(
        &bundle,
        "cat /proc/sys/kernel/hostname; echo $$; cat /proc/1/comm; pwd; echo $FOO; \
         echo $HOME; ls /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty >/dev/null && echo devs; \
         test -d /dev/pts && test -d /dev/shm && echo ptsshm; grep -c . /proc/self/mounts >/dev/null && echo mounts",
    );
    spec.env = vec!["FOO=bar".into()];
    spec.cwd = "/tmp/../work/dir".into();
    spec.hostname = "inside".into();
    let out = run(spec).await;
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.stdout,
        "inside\n1\nsh\n/work/dir\nbar\n/root\ndevs\nptsshm\nmounts\n"
    );
    assert_eq!(out.code, 0);
}

/// Needs root. A writable bind writes a host file; a read-only one refuses writes; a file source binds onto a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_rw_ro_and_file() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("bind");
    let data = TempDir::new("bind-data");
    let ro = TempDir::new("bind-ro");
    std::fs::write(ro.path().join("existing"), "old").expect("write");
    let file = data.path().join("single-file");
    std::fs::write(&file, "from host\n").expect("write");
    let mut spec = sh(
        &bundle,
        "echo written > /data/out.txt; cat /etc/berth-file; \
         if echo x > /ro/existing; then echo writable; fi; cat /ro/existing",
    );
    spec.mounts = vec![
        BindMount {
            source: data.path().into(),
            target: "/data".into(),
            readonly: false,
        },
        BindMount {
            source: ro.path().into(),
            target: "/ro".into(),
            readonly: true,
        },
        BindMount {
            source: file,
            target: "/etc/berth-file".into(),
            readonly: true,
        },
    ];
    let out = run(spec).await;
    assert_eq!(out.stdout, "from host\nold");
    assert!(
        out.stderr.contains("Read-only file system"),
        "stderr: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).expect("host file"),
        "written\n"
    );
    assert_eq!(
        std::fs::read_to_string(ro.path().join("existing")).expect("read"),
        "old"
    );
}

/// Needs root and /bin/busybox. A bind target under an image symlink that points to an absolute
/// host path is created inside the container's root, never on the host (`RESOLVE_IN_ROOT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_target_symlink_stays_inside_root() {
    if !needs_root() {
        return;
    }
    // An image whose /escape is a symlink to an absolute host path must not make the runtime
    // create (or mount on) anything outside the container's root.
    let image = TempDir::new("symlink-image");
    let outside = TempDir::new("symlink-outside");
    if !busybox_rootfs(image.path()) {
        return;
    }
    std::os::unix::fs::symlink(outside.path(), image.path().join("escape")).expect("symlink");
    // The link's target also exists inside the image: that is where the mount point belongs.
    let inside = image
        .path()
        .join(outside.path().strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&inside).expect("mkdir inside");
    let bundle = TempDir::new("symlink");
    let data = TempDir::new("symlink-data");
    let mut spec = spec(&bundle, &["sh", "-c", "echo ok"]);
    spec.rootfs = Rootfs::Dir(image.path().into());
    spec.mounts = vec![BindMount {
        source: data.path().into(),
        target: "/escape/sub".into(),
        readonly: false,
    }];
    let out = run(spec).await;
    assert_eq!(out.stdout, "ok\n");
    assert!(
        !outside.path().join("sub").exists(),
        "the mount target was created outside the root"
    );
    let upper = bundle.path().join("rootfs-upper");
    assert!(
        upper
            .join(outside.path().strip_prefix("/").expect("absolute"))
            .join("sub")
            .is_dir(),
        "the mount target was not created inside the root"
    );
}

/// Needs root. A command that is not in PATH, or a path that does not exist, fails `spawn` with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_command_names_it() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("enoent");
    let err = spawn(spec(&bundle, &["no-such-command-xyz"]))
        .await
        .expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "exec \"no-such-command-xyz\": executable file not found in $PATH"
    );
    let err = spawn(spec(&bundle, &["/no/such/binary"]))
        .await
        .expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "exec \"/no/such/binary\": No such file or directory"
    );
}

/// Needs root. A failing setup step reports the step and the paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_failure_names_step_and_path() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("badbind");
    let mut spec = spec(&bundle, &["true"]);
    // A file source on a target that exists as a directory in the host root.
    let file = bundle.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    spec.mounts = vec![BindMount {
        source: file,
        target: "/etc".into(),
        readonly: false,
    }];
    let err = spawn(spec).await.expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.starts_with("bind mount /"), "{msg}");
    assert!(msg.ends_with("/a-file on /etc: Not a directory"), "{msg}");

    let mut bad = spec_missing_source(&bundle);
    bad.argv = vec!["true".into()];
    let err = spawn(bad).await.expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with("stat bind mount source /no/such/dir"),
        "{err}"
    );
}

fn spec_missing_source(bundle: &TempDir) -> RunSpec {
    let mut spec = spec(bundle, &["true"]);
    spec.mounts = vec![BindMount {
        source: "/no/such/dir".into(),
        target: "/x".into(),
        readonly: false,
    }];
    spec
}

/// Needs root. SIGKILL gives 137; afterwards `signal` says NotRunning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_gives_137_and_then_not_running() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("kill");
    let spawned = spawn(spec(&bundle, &["sleep", "100"]))
        .await
        .expect("spawn");
    kill_to_137(spawned.pid1, spawned.exit).await;
    assert!(matches!(
        signal(spawned.pid1, Signal::SIGTERM),
        Err(RuntimeError::NotRunning { .. })
    ));
    assert!(matches!(
        signal(0, Signal::SIGTERM),
        Err(RuntimeError::NotRunning { .. })
    ));
}

/// Needs root. With a tty, stdout and stderr come merged through the pty (with CRLF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_output_goes_through_the_pty() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("tty");
    let mut spec = sh(
        &bundle,
        "echo hi; test -t 0 && test -t 1 && echo tty; echo $TERM; echo err >&2",
    );
    spec.tty = true;
    let out = run(spec).await;
    assert_eq!(out.stdout, "hi\r\ntty\r\nxterm\r\nerr\r\n");
    assert_eq!(out.code, 0);
}

/// Needs root. With a tty and open stdin: input is echoed and read, and `resize` reaches `stty`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_stdin_and_resize() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("tty-stdin");
    let mut spec = sh(&bundle, "read line; echo got $line; stty size");
    spec.tty = true;
    spec.open_stdin = true;
    let spawned = spawn(spec).await.expect("spawn");
    let Spawned { io, exit, .. } = spawned;
    let pty = io.pty.expect("pty");
    resize(&pty, 40, 100).expect("resize");
    let mut stdin = io.stdin.expect("stdin");
    stdin.write_all(b"abc\n").await.expect("write");
    let mut stdout = io.stdout;
    let mut out = String::new();
    let read = async {
        stdout.read_to_string(&mut out).await.expect("read");
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("read timed out");
    assert_eq!(out, "abc\r\ngot abc\r\n40 100\r\n");
    assert_eq!(tokio::time::timeout(TIMEOUT, exit).await.expect("exit"), 0);
}

/// Needs root. Open stdin without a tty: write, close, and `cat` echoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stdin_reaches_cat() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("stdin");
    let mut spec = spec(&bundle, &["cat"]);
    spec.open_stdin = true;
    let spawned = spawn(spec).await.expect("spawn");
    let Spawned { io, exit, .. } = spawned;
    let mut stdin = io.stdin.expect("stdin");
    stdin.write_all(b"abc\n").await.expect("write");
    drop(stdin);
    let mut stdout = io.stdout;
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, stdout.read_to_string(&mut out))
        .await
        .expect("read timed out")
        .expect("read");
    assert_eq!(out, "abc\n");
    assert_eq!(tokio::time::timeout(TIMEOUT, exit).await.expect("exit"), 0);
}

/// Needs root. NetMode::Isolated: only `lo`, and it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_network_has_only_lo_up() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("net");
    let mut spec = sh(
        &bundle,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/flags",
    );
    spec.net = NetMode::Isolated;
    let out = run(spec).await;
    assert_eq!(out.stderr, "");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "lo");
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is not up");
}

/// Needs root. NetMode::Join enters the given network namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_network_namespace_of_another_process() {
    if !needs_root() {
        return;
    }
    // Join the netns of an isolated container: it sees the same (lo-only) namespace.
    let holder_bundle = TempDir::new("netns-holder");
    let mut holder = spec(&holder_bundle, &["sleep", "100"]);
    holder.net = NetMode::Isolated;
    let holder = spawn(holder).await.expect("spawn holder");
    let netns = PathBuf::from(format!("/proc/{}/ns/net", holder.pid1));
    let inode = std::fs::read_link(&netns).expect("readlink");

    let bundle = TempDir::new("netns-join");
    let mut spec = sh(&bundle, "readlink /proc/self/ns/net");
    spec.net = NetMode::Join(netns);
    let out = run(spec).await;
    assert_eq!(out.stdout.trim(), inode.to_string_lossy());
    kill_to_137(holder.pid1, holder.exit).await;
}

/// Needs root. Docker's default capability set, nothing inheritable or ambient, no
/// no_new_privs unless asked, seccomp filtering on; `no-new-privileges` sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_seccomp_and_no_new_privs() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("caps");
    let script =
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status";
    let out = run(sh(&bundle, script)).await;
    assert_eq!(
        out.stdout,
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n"
    );
    let mut spec = sh(&bundle, script);
    spec.security.security_opt = vec!["no-new-privileges".into(), "seccomp=unconfined".into()];
    spec.security.cap_drop = vec!["ALL".into()];
    let out = run(spec).await;
    assert_eq!(
        out.stdout,
        "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
         CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n"
    );
}

/// Needs root. A device node made with mknod does not open (every mount but the default device
/// binds is nodev), the default devices do, /proc paths are masked or read-only, and --user
/// sets uid, gid and groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_masks_and_user() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("devs");
    let out = run(sh(
        &bundle,
        "mknod /dev/kmsg2 c 1 11 && mknod /tmp/kmsg c 1 11 && \
         (head -c1 /dev/kmsg2 >/dev/null 2>&1 && echo dev-open) ; \
         (head -c1 /tmp/kmsg >/dev/null 2>&1 && echo tmp-open) ; \
         head -c4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         cat /proc/kcore 2>/dev/null | wc -c; (echo 1 > /proc/sys/kernel/core_pattern) 2>/dev/null || echo sys-ro; \
         ls /sys/firmware | wc -l",
    ))
    .await;
    assert_eq!(
        out.stdout, "4\nnull-ok\n0\nsys-ro\n0\n",
        "stderr: {}",
        out.stderr
    );
    let mut spec = sh(&bundle, "id -u; id -g; id -G");
    spec.user = "65534:65534".into();
    spec.security.group_add = vec!["7".into()];
    let out = run(spec).await;
    assert_eq!(
        out.stdout, "65534\n65534\n65534 7\n",
        "stderr: {}",
        out.stderr
    );
}

/// Fills `dir` with a busybox root (`/bin/busybox` + applet symlinks). Returns false (skipping)
/// when busybox is missing outside CI.
fn busybox_rootfs(dir: &Path) -> bool {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "/bin/busybox is missing: apt-get install -y busybox-static"
        );
        eprintln!("SKIPPED: /bin/busybox is missing (apt-get install -y busybox-static)");
        return false;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    std::fs::set_permissions(bin.join("busybox"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    for applet in [
        "sh", "echo", "cat", "ls", "hostname", "mount", "true", "sleep", "grep",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
    }
    true
}

/// Needs root and /bin/busybox (busybox-static). Rootfs::Dir: an image dir as the lower layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_rootfs_with_busybox() {
    if !needs_root() {
        return;
    }
    let image = TempDir::new("image");
    if !busybox_rootfs(image.path()) {
        return;
    }
    let bundle = TempDir::new("dir");
    let mut spec = sh(
        &bundle,
        "hostname; ls /; echo changed > /bin/new-file; test -e /etc/passwd || echo no-passwd",
    );
    spec.rootfs = Rootfs::Dir(image.path().into());
    spec.hostname = "busy".into();
    let out = run(spec).await;
    assert_eq!(out.stderr, "");
    assert_eq!(out.code, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "busy");
    for dir in ["bin", "dev", "proc", "sys"] {
        assert!(lines.contains(&dir), "missing /{dir} in {lines:?}");
    }
    assert_eq!(lines.last(), Some(&"no-passwd"));
    // Writes went to the upper layer, not the image.
    assert!(!image.path().join("bin/new-file").exists());
    assert!(bundle.path().join("rootfs-upper/bin/new-file").exists());
}

/// Needs root. A second run on the same bundle (a restart) sees the first run's writes: the
/// upper layer is kept, the work dir (with its volatile marker) is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_writable_layer() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("restart");
    let first = run(sh(&bundle, "echo kept > /root/berth-restart-test")).await;
    assert_eq!((first.stderr.as_str(), first.code), ("", 0));
    let second = run(sh(&bundle, "cat /root/berth-restart-test")).await;
    assert_eq!(second.stderr, "");
    assert_eq!(second.stdout, "kept\n");
    assert!(
        !Path::new("/root/berth-restart-test").exists(),
        "wrote through to the host"
    );
}

/// Whether any process's mount table mentions `needle`.
fn mounted_anywhere(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(info) = std::fs::read_to_string(entry.path().join("mountinfo")) {
            hits.extend(
                info.lines()
                    .filter(|l| l.contains(needle))
                    .map(String::from),
            );
        }
    }
    hits
}

/// Zombie children of this process.
fn zombie_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            // pid (comm) state ppid ...
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
                    zombies.push(stat);
                }
            }
        }
    }
    zombies
}

/// Needs root. After exit and cleanup: no mount anywhere mentions the bundle, no dirs, pid 1 reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leak_after_exit_and_cleanup() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("leak");
    let data = TempDir::new("leak-data");
    let mut spec = sh(&bundle, "echo done");
    spec.mounts = vec![BindMount {
        source: data.path().into(),
        target: "/data".into(),
        readonly: true,
    }];
    spec.net = NetMode::Isolated;
    let spawned = spawn(spec).await.expect("spawn");
    let pid1 = spawned.pid1;
    // The root is mounted on the overlay's work dir: two directories per container, no third
    // mount point.
    let mut made: Vec<String> = std::fs::read_dir(bundle.path())
        .expect("read bundle")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(made, ["rootfs-upper", "rootfs-work"]);
    let needle = bundle.path().to_string_lossy().into_owned();
    let Spawned { io, exit, .. } = spawned;
    let mut stdout = io.stdout;
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "done\n");
    assert_eq!(tokio::time::timeout(TIMEOUT, exit).await.expect("exit"), 0);
    assert!(
        !Path::new(&format!("/proc/{pid1}")).exists(),
        "pid 1 was not reaped"
    );
    assert_eq!(mounted_anywhere(&needle), Vec::<String>::new());
    cleanup(bundle.path()).expect("cleanup");
    cleanup(bundle.path()).expect("cleanup is idempotent");
    for dir in ["rootfs", "rootfs-upper", "rootfs-work"] {
        assert!(!bundle.path().join(dir).exists(), "{dir} left behind");
    }
    assert_eq!(mounted_anywhere(&needle), Vec::<String>::new());
}

/// Needs root. Dropping `Spawned::exit` kills the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_exit_kills_the_container() {
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("drop");
    let spawned = spawn(spec(&bundle, &["sleep", "100"]))
        .await
        .expect("spawn");
    let pid1 = spawned.pid1;
    let Spawned { io, exit, .. } = spawned;
    drop(exit);
    // stdout reaches EOF once the container is dead.
    let mut stdout = io.stdout;
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, stdout.read_to_end(&mut out))
        .await
        .expect("container still alive")
        .expect("read");
    let gone = async {
        while Path::new(&format!("/proc/{pid1}")).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, gone)
        .await
        .expect("pid 1 still exists");
}

/// Needs root. 200 containers, 4 at a time, while other threads are constantly created and destroyed (the
/// situation in which a forked child that takes a lock inherited from another thread hangs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_200_spawns_under_thread_churn() {
    if !needs_root() {
        return;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let handles: Vec<_> = (0..4)
                    .map(|i| {
                        std::thread::spawn(move || {
                            let v: Vec<u64> = (0..256).map(|x| x * i).collect();
                            v.iter().sum::<u64>()
                        })
                    })
                    .collect();
                for h in handles {
                    n += h.join().unwrap_or(0);
                }
            }
            n
        })
    };
    let fds_before = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    for i in 0..200 {
        let semaphore = semaphore.clone();
        set.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore");
            // Blocking threads come and go too.
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_micros(100)));
            let bundle = TempDir::new("stress");
            let out = run(sh(&bundle, &format!("echo {i}"))).await;
            assert_eq!(out.stdout, format!("{i}\n"));
            assert_eq!(out.code, 0);
            cleanup(bundle.path()).expect("cleanup");
        });
    }
    let all = async {
        while let Some(result) = set.join_next().await {
            result.expect("container task");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("stress test hung");
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    eprintln!("200 containers in {:?}", started.elapsed());

    // No zombie and no fd left behind (other tests may run concurrently: allow some slack).
    let settled = async {
        while !zombie_children().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .expect("zombies left");
    let fds_after = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    assert!(
        fds_after < fds_before + 40,
        "fd leak: {fds_before} -> {fds_after}"
    );
}

#[test]
fn plan_rejects_bad_specs() {
    let bundle = TempDir::new("plan");
    let mut bad = spec(&bundle, &[]);
    assert!(matches!(
        plan::build(&bad),
        Err(RuntimeError::InvalidSpec(_))
    ));
    bad.argv = vec!["true".into()];
    bad.cwd = "relative".into();
    assert!(matches!(
        plan::build(&bad),
        Err(RuntimeError::InvalidSpec(_))
    ));
    bad.cwd = String::new();
    bad.mounts = vec![BindMount {
        source: "/tmp".into(),
        target: "/".into(),
        readonly: false,
    }];
    assert!(matches!(
        plan::build(&bad),
        Err(RuntimeError::InvalidSpec(_))
    ));
    bad.mounts.clear();
    bad.hostname = "x".repeat(65);
    assert!(matches!(
        plan::build(&bad),
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[test]
fn clean_absolute_paths() {
    let clean = |p: &str| plan::clean_absolute(p, "path").expect("absolute");
    assert_eq!(clean("/"), Vec::<String>::new());
    assert_eq!(clean("/a//b/./c/"), ["a", "b", "c"]);
    assert_eq!(clean("/../a/../../b"), ["b"]);
    assert!(plan::clean_absolute("a/b", "path").is_err());
}

#[test]
fn mountinfo_unescape() {
    assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
    assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
}

#[test]
fn record_roundtrip_and_messages() {
    let record = child::Record {
        step: child::Step::Bind as u32,
        index: 0,
        errno: libc::EINVAL,
    };
    let bytes = {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(&record.step.to_ne_bytes());
        b[4..8].copy_from_slice(&record.index.to_ne_bytes());
        b[8..12].copy_from_slice(&record.errno.to_ne_bytes());
        b
    };
    assert_eq!(Record::from_bytes(&bytes), record);
    for value in 1..=39 {
        assert!(child::Step::from_u32(value).is_some(), "step {value}");
    }
    assert!(child::Step::from_u32(40).is_none());
}

/// Not a test on its own: the "engine" process of [`engine_kill_9_kills_its_containers`], run as
/// a subprocess of the test binary. Does nothing unless `BERTH_RT_HELPER_BUNDLE` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_engine_process() {
    let Some(bundle) = std::env::var_os("BERTH_RT_HELPER_BUNDLE") else {
        return;
    };
    let spec = spec_at(Path::new(&bundle), &["sleep", "1000"]);
    let spawned = spawn(spec).await.expect("spawn");
    println!("PID1={}", spawned.pid1);
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    // Bounded, in case the parent test dies before killing this process.
    tokio::time::sleep(TIMEOUT).await;
    drop(spawned);
}

/// Needs root. When the engine dies by SIGKILL, its containers die too (shim liveness pipe,
/// then pid 1's parent-death signal).
#[test]
fn engine_kill_9_kills_its_containers() {
    use std::io::BufRead;
    if !needs_root() {
        return;
    }
    let bundle = TempDir::new("kill9");
    let mut engine = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "runtime::tests::helper_engine_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_RT_HELPER_BUNDLE", bundle.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start helper engine");
    let stdout = engine.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test NAME ... " before the test's own output, on the same line.
            if let Some((_, pid)) = line.split_once("PID1=") {
                let _ = tx.send(pid.trim().parse::<i32>().ok());
                return;
            }
        }
        let _ = tx.send(None);
    });
    let pid1 = rx.recv_timeout(TIMEOUT).ok().flatten();
    if pid1.is_none() {
        let _ = engine.kill();
        let _ = engine.wait();
    }
    let pid1 = pid1.expect("helper did not start a container");
    assert!(Path::new(&format!("/proc/{pid1}")).exists());
    engine.kill().expect("SIGKILL the engine");
    engine.wait().expect("reap the engine");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while Path::new(&format!("/proc/{pid1}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "container outlived its engine"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
