//! Criterion benches of engine operations through the Engine API on a real `berth daemon` (release
//! build, private temp root and socket, started by the e2e harness): API request latency
//! (`GET /_ping` against `GET /containers/json`), volume create+rm with the local driver and with
//! a plugin volume driver (the `flocker` example plugin as a separate process on a socket),
//! container create+rm, `run --rm host true` the way the docker CLI does it (create, attach,
//! wait for `removed`, start), and `exec C true` in a running container (create, hijacked start
//! read to its end, inspect for the exit code, as `docker exec` does). The same operations also run through the real `docker` CLI,
//! which is how Docker 20.10's reference figures were taken (CLI start and `/_ping` included).
//!
//! Two measurements are plain timing loops rather than criterion (they are written to
//! `target/bench/manual/engine.json`, which `cargo xtask bench` tabulates with the rest):
//! - `engine_hooks/*`: API request latency on a daemon without plugins against daemons with 4
//!   idle `api-policy` plugins (subscribed only to `POST /containers/create` and `GET /version`)
//!   and with 4 `bare-api` plugins (same subscriptions, no SDK), interleaved round by round so
//!   drift hits all alike; `GET /version` (which the plugins do subscribe to) is measured the
//!   same way for scale;
//! - `engine_isolation/*`: plugin fault isolation: 32 concurrent `run --rm -v V:/d` on a volume
//!   driver whose `Mount` sleeps 100 ms against one such run, and the latency of an unrelated
//!   `rm -f` while another plugin call hangs against its idle latency;
//! - `engine_restart/*`: daemon restart to ready (spawn of `berth daemon` to the first
//!   `GET /containers/json` answering 200, i.e. the readiness gate open) with 0 and 16 plugins
//!   loaded (`test-plugin` processes on sockets, hand-shaken again at boot).
//!
//! Needs root (the daemon creates namespaces and mounts). The client is a hyper keep-alive
//! connection over the UNIX socket, opened outside the timed region. `BERTH_BENCH_QUICK=1`
//! shortens every measurement for CI smoke runs; `BERTH_BENCH_NO_CLI=1` skips the docker CLI
//! series; `BERTH_BENCH_ONLY_ISOLATION=1` runs only the `engine_isolation` loops;
//! `BERTH_BENCH_PLUGIN_DIR` names a directory with optimised example plugin binaries
//! (`cargo xtask bench` passes `target/release`), else the harness builds debug ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{Daemon, PluginProc, spawn_plugin};
use criterion::{Criterion, SamplingMode};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

mod common;
use common::*;

/// A running container (`sleep`, no network) for the exec rows; returns its id.
async fn start_exec_target(api: &mut Api) -> String {
    let mut body = container_body(false);
    body["Cmd"] = serde_json::json!(["sleep", "1000000"]);
    let id = api.create(body).await;
    api.start(&id).await;
    id
}

/// `docker exec C true` on the wire: create, start (hijacked; read until the daemon closes the
/// stream, which it does once the exit code is recorded), then inspect for the exit code.
async fn exec_true(api: &mut Api, socket: &Path, container: &str) {
    let created = api
        .call(
            Method::POST,
            &format!("/containers/{container}/exec"),
            Some(serde_json::json!({
                "Cmd": ["true"], "AttachStdout": true, "AttachStderr": true,
            })),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&created);
    let mut conn = UnixStream::connect(socket).await.expect("connect exec");
    let payload = r#"{"Detach":false,"Tty":false}"#;
    let head = format!(
        "POST {API}/exec/{id}/start HTTP/1.1\r\nHost: api.berth.localhost\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    conn.write_all(head.as_bytes()).await.expect("exec start");
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.expect("exec stream");
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "exec start: {}",
        String::from_utf8_lossy(&got)
    );
    let info = api
        .call(
            Method::GET,
            &format!("/exec/{id}/json"),
            None,
            StatusCode::OK,
        )
        .await;
    let v: serde_json::Value = serde_json::from_slice(&info).expect("exec json");
    assert_eq!(v["ExitCode"], 0, "true exits 0: {v}");
}

/// Names of the plugins the daemon reports `active`.
fn active_plugins(d: &Daemon) -> usize {
    let r = d.raw("GET", "/berth/plugins", None, b"");
    assert_eq!(r.status, 200, "GET /berth/plugins: {}", r.text());
    r.json()
        .as_array()
        .map(|a| a.iter().filter(|p| p["State"] == "active").count())
        .unwrap_or(0)
}

fn configure(c: Criterion) -> Criterion {
    let c = c.sample_size(10).without_plots();
    if quick() {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
    }
}

fn bench_api(c: &mut Criterion, d: &Daemon, rt: &tokio::runtime::Runtime) {
    let socket: PathBuf = d.socket();
    let (mut api, mut waiter) =
        rt.block_on(async { (Api::connect(&socket).await, Api::connect(&socket).await) });
    let mut g = c.benchmark_group("engine_api");
    g.sampling_mode(SamplingMode::Flat);
    if !quick() {
        g.sample_size(30);
    }
    // One timed async loop per operation: `iters` sequential calls on the kept-alive connection.
    macro_rules! timed {
        ($name:literal, $op:block) => {
            g.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters $op
                        start.elapsed()
                    })
                })
            });
        };
    }
    timed!("ping", {
        black_box(api.call(Method::GET, "/_ping", None, StatusCode::OK).await);
    });
    timed!("containers_json", {
        black_box(
            api.call(Method::GET, "/containers/json", None, StatusCode::OK)
                .await,
        );
    });
    timed!("volume_create_rm", {
        volume_create_rm(&mut api, None).await;
    });
    timed!("volume_create_rm_plugin", {
        volume_create_rm(&mut api, Some("flocker")).await;
    });
    timed!("container_create_rm", {
        container_create_rm(&mut api).await;
    });
    let (plain, limited) = (container_body(true), limited_body());
    timed!("run_rm_true", {
        run_rm_true(&mut api, &mut waiter, &socket, &plain, &[]).await;
    });
    timed!("run_rm_true_limits", {
        run_rm_true(&mut api, &mut waiter, &socket, &limited, &[]).await;
    });
    let target = rt.block_on(start_exec_target(&mut api));
    timed!("exec_true", {
        exec_true(&mut api, &socket, &target).await;
    });
    // The same without the seccomp filter: the price of seccomp per container.
    timed!("run_rm_true_no_seccomp", {
        run_rm_true(
            &mut api,
            &mut waiter,
            &socket,
            &plain,
            &["seccomp=unconfined"],
        )
        .await;
    });
    g.finish();
}

fn bench_cli(c: &mut Criterion, d: &Daemon) {
    let mut g = c.benchmark_group("engine_cli");
    g.sampling_mode(SamplingMode::Flat);
    // The docker CLI's own cost: two invocations that ask the daemon almost nothing (ping and
    // `GET /version` each), the floor of the two-command rows below.
    g.bench_function("cli_floor_two_invocations", |b| {
        b.iter(|| {
            d.docker(&["version", "--format", "{{.Server.Version}}"])
                .ok();
            d.docker(&["version", "--format", "{{.Server.Version}}"])
                .ok();
        })
    });
    g.bench_function("volume_create_rm", |b| {
        b.iter(|| {
            let name = unique("benchvol");
            d.docker(&["volume", "create", &name]).ok();
            d.docker(&["volume", "rm", &name]).ok();
        })
    });
    g.bench_function("volume_create_rm_plugin", |b| {
        b.iter(|| {
            let name = unique("benchpvol");
            d.docker(&["volume", "create", "-d", "flocker", &name]).ok();
            d.docker(&["volume", "rm", &name]).ok();
        })
    });
    g.bench_function("container_create_rm", |b| {
        b.iter(|| {
            let out = d.docker(&["create", "--network", "none", "host", "true"]);
            let id = out.ok().trim().to_owned();
            d.docker(&["rm", &id]).ok();
        })
    });
    g.bench_function("run_rm_true", |b| {
        b.iter(|| {
            d.docker(&["run", "--rm", "--network", "none", "host", "true"])
                .ok();
        })
    });
    let target = d
        .docker(&["run", "-d", "--network", "none", "host", "sleep", "1000000"])
        .ok()
        .trim()
        .to_owned();
    g.bench_function("exec_true", |b| {
        b.iter(|| {
            d.docker(&["exec", &target, "true"]).ok();
        })
    });
    g.finish();
}

fn write_manual(results: &serde_json::Map<String, serde_json::Value>) {
    let path = manual_results_path("engine.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create manual results dir");
    let text = serde_json::to_string_pretty(results).expect("json");
    std::fs::write(&path, text).expect("write manual results");
    println!("timing loops written to {}", path.display());
}

fn print_row(id: &str, v: &serde_json::Value) {
    println!(
        "{id:<55} median {:>10.1} µs  [p10 {:.1}, p90 {:.1}]  n={}",
        v["median"].as_f64().unwrap_or(0.0) / 1e3,
        v["p10"].as_f64().unwrap_or(0.0) / 1e3,
        v["p90"].as_f64().unwrap_or(0.0) / 1e3,
        v["n"]
    );
}

/// API request latency without and with 4 idle api plugins: four daemons (two without plugins,
/// the second an A/A noise control, one with 4 `api-policy` plugins and one with 4 `bare-api`
/// plugins, which answer every hook "no change" without the SDK: the engine's own part of a
/// hook), measured in rounds whose
/// daemon order rotates, one keep-alive connection each. Every request is timed; the summaries
/// are over all timed requests. Also records the median of the per-round ratios (against the
/// first plugin-less daemon), which cancels slow drift.
fn bench_idle_hooks(
    rt: &tokio::runtime::Runtime,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let plain = Daemon::start();
    let control = Daemon::start();
    let hooked = Daemon::start();
    let bare = Daemon::start();
    let mut procs = spawn_and_load(&hooked, "api-policy", "policy", 4);
    procs.extend(spawn_and_load(&bare, "bare-api", "bare", 4));
    assert_eq!(active_plugins(&hooked), 4, "4 api plugins active");
    assert_eq!(active_plugins(&bare), 4, "4 bare api plugins active");
    let (rounds, per_round) = if quick() { (12, 100) } else { (60, 200) };
    let paths = ["/containers/json", "/version"];
    let labels = [
        "no_plugins",
        "no_plugins_control",
        "4_idle_api_plugins",
        "4_bare_api_plugins",
    ];
    let n = labels.len();
    rt.block_on(async {
        let mut apis = [
            Api::connect(&plain.socket()).await,
            Api::connect(&control.socket()).await,
            Api::connect(&hooked.socket()).await,
            Api::connect(&bare.socket()).await,
        ];
        // samples[path][daemon], round_ratios[path][daemon]
        let mut samples = vec![vec![Vec::new(); n]; paths.len()];
        let mut round_ratios = vec![vec![Vec::new(); n]; paths.len()];
        for round in 0..=rounds {
            for (pi, path) in paths.iter().enumerate() {
                let mut medians = vec![0.0f64; n];
                for k in 0..n {
                    let di = (round + k) % n;
                    let mut round_samples = Vec::with_capacity(per_round);
                    for _ in 0..per_round {
                        let t = Instant::now();
                        black_box(apis[di].call(Method::GET, path, None, StatusCode::OK).await);
                        round_samples.push(t.elapsed().as_nanos() as f64);
                    }
                    let mut sorted = round_samples.clone();
                    sorted.sort_by(f64::total_cmp);
                    medians[di] = sorted[sorted.len() / 2];
                    // Round 0 is warm-up.
                    if round > 0 {
                        samples[pi][di].extend(round_samples);
                    }
                }
                if round > 0 {
                    for di in 1..n {
                        round_ratios[pi][di].push(medians[di] / medians[0]);
                    }
                }
            }
        }
        for (pi, path) in paths.iter().enumerate() {
            let key = path.trim_start_matches('/').replace('/', "_");
            for (di, label) in labels.iter().enumerate() {
                let v = summary(std::mem::take(&mut samples[pi][di]));
                let id = format!("engine_hooks/{key}/{label}");
                print_row(&id, &v);
                out.insert(id, v);
                if di > 0 {
                    let mut ratios = std::mem::take(&mut round_ratios[pi][di]);
                    ratios.sort_by(f64::total_cmp);
                    let ratio = ratios[ratios.len() / 2];
                    println!(
                        "{:<55} median of per-round ratios to no_plugins {ratio:.4}",
                        format!("engine_hooks/{key}/{label}")
                    );
                    out.insert(
                        format!("engine_hooks/{key}/{label}/round_ratio"),
                        serde_json::json!({"median": ratio, "n": ratios.len()}),
                    );
                }
            }
        }
    });
    drop(procs);
}

/// Spawns `berth daemon` on `d`'s root and socket (it must be stopped) and returns the time until
/// `GET /containers/json` first answers 200, and the child (to stop).
fn time_to_ready(d: &Daemon) -> (Duration, Child) {
    let sock = d.socket();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.log_path())
        .expect("open daemon log");
    let mut cmd = Command::new(berth_tests::berth_binary());
    cmd.arg("daemon")
        .arg("--root")
        .arg(d.root())
        .arg("--host")
        .arg(d.host())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log fd"))
        .stderr(log)
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn berth daemon");
    let deadline = start + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "berth daemon exited with {status} during restart:\n{}",
                d.log()
            );
        }
        // A request sent while the gate is closed waits at the gate, so one attempt per
        // connection suffices; a refused or missing socket is retried after 1 ms.
        if let Ok(r) = berth_tests::raw_request(&sock, "GET", "/v1.50/containers/json", None, b"")
            && r.status == 200
        {
            return (start.elapsed(), child);
        }
        assert!(
            Instant::now() < deadline,
            "daemon not ready within 60 s:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGTERM to a daemon spawned by [`time_to_ready`], then reap it.
fn stop_child(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// Starts `n` processes of the example plugin `bin` on sockets in `d`'s dir, named `PREFIX0`…,
/// and loads each into `d`.
fn spawn_and_load(d: &Daemon, bin: &str, prefix: &str, n: usize) -> Vec<PluginProc> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let sock = d.dir().join(format!("{name}.sock"));
            let args = [
                "--socket",
                sock.to_str().expect("utf-8 path"),
                "--name",
                &name,
            ];
            let proc = spawn_plugin(&plugin_bin(bin), &args);
            load_plugin(d, &name, &sock);
            proc
        })
        .collect()
}

/// Daemon restart to ready with `n` `test-plugin` processes loaded (they keep running across
/// the restarts; the daemon hand-shakes them again at boot).
fn bench_restart(n: usize, out: &mut serde_json::Map<String, serde_json::Value>) {
    let mut d = Daemon::start();
    let procs = spawn_and_load(&d, "test-plugin", "tp", n);
    assert_eq!(
        active_plugins(&d),
        n,
        "{n} plugins active before the restarts"
    );
    let runs = if quick() { 3 } else { 10 };
    let mut samples = Vec::new();
    // One untimed restart first (page cache, plugin connections).
    for i in 0..=runs {
        d.stop(Duration::from_secs(20));
        let (t, child) = time_to_ready(&d);
        if i == 0 {
            assert_eq!(active_plugins(&d), n, "{n} plugins active after a restart");
        } else {
            samples.push(t.as_nanos() as f64);
        }
        stop_child(child);
    }
    d.restart();
    let v = summary(samples);
    let id = format!("engine_restart/{n}_plugins");
    print_row(&id, &v);
    out.insert(id, v);
    drop(procs);
}

/// Starts `flocker` as `name` with `extra` flags (e.g. `--delay Mount=100`), loaded with a
/// 10-minute deadline (a hung call stays hung for the whole measurement).
fn start_slow_flocker(d: &Daemon, name: &str, extra: &[&str]) -> PluginProc {
    let sock = d.dir().join(format!("{name}.sock"));
    let storage = d.dir().join(format!("{name}-storage"));
    std::fs::create_dir_all(&storage).expect("flocker storage");
    let mut args = vec![
        "--socket",
        sock.to_str().expect("utf-8 path"),
        "--name",
        name,
        "--storage",
        storage.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let p = spawn_plugin(&plugin_bin("flocker"), &args);
    let body =
        serde_json::json!({"Name": name, "Socket": sock, "Timeout": "20s", "Deadline": "600s"});
    let r = d.raw_json("POST", "/berth/plugins/load", &body);
    assert_eq!(r.status, 200, "load {name}: {}", r.text());
    p
}

/// Creates (`driver`) or removes (`None`) the volumes `names` through the API.
async fn volumes(api: &mut Api, names: &[String], driver: Option<&str>) {
    for name in names {
        match driver {
            Some(driver) => {
                api.call(
                    Method::POST,
                    "/volumes/create",
                    Some(serde_json::json!({"Name": name, "Driver": driver})),
                    StatusCode::CREATED,
                )
                .await;
            }
            None => {
                api.call(
                    Method::DELETE,
                    &format!("/volumes/{name}"),
                    None,
                    StatusCode::NO_CONTENT,
                )
                .await;
            }
        }
    }
}

/// Creates and starts a `sleep 600` container with a local volume on the default bridge, then
/// times its `DELETE ?force=1`.
async fn rm_f(api: &mut Api) -> f64 {
    let body = serde_json::json!({
        "Image": "host",
        "Cmd": ["sleep", "600"],
        "HostConfig": {"Binds": ["benchlocal:/d"]},
    });
    let id = api.create(body).await;
    api.start(&id).await;
    let t = Instant::now();
    api.call(
        Method::DELETE,
        &format!("/containers/{id}?force=1"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    t.elapsed().as_nanos() as f64
}

/// CPU time (ms) the daemon `pid` and every descendant it has reaped used so far
/// (`utime + stime + cutime + cstime` of `/proc/PID/stat`; the shim reaps pid 1 and the daemon
/// reaps the shim, so a finished run is counted whole). Clock-tick resolution (10 ms): compare
/// sums over many runs.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    // Fields after the command name (which may hold spaces) start at field 3 (`state`).
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().expect("tick count"))
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks as f64 * 1000.0 / hz
}

/// Plugin fault isolation (issue 13), two timing loops:
/// - `engine_isolation/slow_mount/*`: `run --rm -v V:/d host true` on a volume driver whose
///   `Mount` sleeps 100 ms: one run alone, then 32 at once (32 different volumes of that driver),
///   wall time of the batch; `batch_ratio` is batch / single per round (a lock shared by every
///   mount makes it ~32, per-volume locks ~1);
/// - `engine_isolation/rm_f/*`: `DELETE /containers/{id}?force=1` of a running container with
///   only a local volume on the default bridge, idle, then while another plugin's
///   `VolumeDriver.Create` hangs (a request left waiting on it the whole time).
fn bench_isolation(
    rt: &tokio::runtime::Runtime,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    const BATCH: usize = 32;
    let d = Daemon::start();
    let slow = start_slow_flocker(&d, "slowmount", &["--delay", "Mount=100"]);
    let hung_log = d.dir().join("hungcreate.log");
    let hung = start_slow_flocker(
        &d,
        "hungcreate",
        &[
            "--delay",
            "Create=600000",
            "--log",
            hung_log.to_str().expect("utf-8 path"),
        ],
    );
    let socket = d.socket();
    let pid = d.pid().expect("daemon pid");
    let rounds = if quick() { 2 } else { 8 };
    let (mut single, mut batch, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut local_batch, mut local_serial) = (Vec::new(), Vec::new());
    // CPU (ms) per run of the daemon and everything it forked, by series.
    let (mut cpu_batch, mut cpu_local_batch, mut cpu_serial) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle, mut hanging) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let mut api = Api::connect(&socket).await;
        // (a) one run against 32 at once.
        for round in 0..=rounds {
            let names: Vec<String> = (0..=BATCH).map(|_| unique("slowvol")).collect();
            volumes(&mut api, &names, Some("slowmount")).await;
            let t = Instant::now();
            run_rm_volume(&socket, &names[BATCH]).await;
            let one = t.elapsed().as_nanos() as f64;
            let (t, cpu) = (Instant::now(), cpu_ms(pid));
            futures::future::join_all(names[..BATCH].iter().map(|n| run_rm_volume(&socket, n)))
                .await;
            let all = t.elapsed().as_nanos() as f64;
            let cpu_all = cpu_ms(pid) - cpu;
            volumes(&mut api, &names, None).await;
            // Control: the same batch on local volumes (what 32 containers cost this machine
            // without any plugin).
            let locals: Vec<String> = (0..BATCH).map(|_| unique("localvol")).collect();
            let (t, cpu) = (Instant::now(), cpu_ms(pid));
            futures::future::join_all(locals.iter().map(|n| run_rm_volume(&socket, n))).await;
            let local_all = t.elapsed().as_nanos() as f64;
            let cpu_local = cpu_ms(pid) - cpu;
            // And the same 32 local runs one after the other: their CPU per run is what the
            // batch would cost without any contention.
            let (t, cpu) = (Instant::now(), cpu_ms(pid));
            for n in &locals {
                run_rm_volume(&socket, n).await;
            }
            let serial = t.elapsed().as_nanos() as f64;
            let cpu_ser = cpu_ms(pid) - cpu;
            volumes(&mut api, &locals, None).await;
            // Round 0 warms up (page cache, plugin connections).
            if round > 0 {
                single.push(one);
                batch.push(all);
                local_batch.push(local_all);
                local_serial.push(serial);
                ratios.push(all / one);
                cpu_batch.push(cpu_all / BATCH as f64);
                cpu_local_batch.push(cpu_local / BATCH as f64);
                cpu_serial.push(cpu_ser / BATCH as f64);
            }
        }
        // (b) rm -f, idle and while another plugin call hangs.
        let n = if quick() { 3 } else { 15 };
        rm_f(&mut api).await;
        for _ in 0..n {
            idle.push(rm_f(&mut api).await);
        }
        let mut stuck = Api::connect(&socket).await;
        let hang = tokio::spawn(async move {
            let body = serde_json::json!({"Name": "stuck", "Driver": "hungcreate"});
            let _ = stuck
                .send(Method::POST, "/volumes/create", Some(body))
                .await;
        });
        // The hung Create reaches the plugin before the first timed rm -f.
        let t = Instant::now();
        while !std::fs::read_to_string(&hung_log)
            .unwrap_or_default()
            .contains("VolumeDriver.Create stuck")
        {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the Create never came"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!hang.is_finished(), "the hung volume create returned");
        for _ in 0..n {
            hanging.push(rm_f(&mut api).await);
        }
        assert!(!hang.is_finished(), "the hung volume create returned");
        hang.abort();
    });
    drop(hung);
    drop(slow);
    drop(d);
    for (id, samples) in [
        ("engine_isolation/slow_mount/1_run", single),
        ("engine_isolation/slow_mount/32_concurrent_runs", batch),
        (
            "engine_isolation/slow_mount/32_concurrent_runs_local_volumes",
            local_batch,
        ),
        (
            "engine_isolation/slow_mount/32_serial_runs_local_volumes",
            local_serial,
        ),
        ("engine_isolation/rm_f/idle", idle.clone()),
        (
            "engine_isolation/rm_f/while_a_plugin_call_hangs",
            hanging.clone(),
        ),
    ] {
        let v = summary(samples);
        print_row(id, &v);
        out.insert(id.to_owned(), v);
    }
    for (id, samples) in [
        (
            "engine_isolation/cpu_ms_per_run/slow_mount_batch",
            cpu_batch,
        ),
        (
            "engine_isolation/cpu_ms_per_run/local_batch",
            cpu_local_batch,
        ),
        ("engine_isolation/cpu_ms_per_run/local_serial", cpu_serial),
    ] {
        let v = summary(samples);
        println!(
            "{id:<55} median {:>10.2} ms  [p10 {:.2}, p90 {:.2}]  n={}",
            v["median"].as_f64().unwrap_or(0.0),
            v["p10"].as_f64().unwrap_or(0.0),
            v["p90"].as_f64().unwrap_or(0.0),
            v["n"]
        );
        out.insert(id.to_owned(), v);
    }
    let idle_median = summary(idle)["median"].as_f64().unwrap_or(0.0);
    let hang_ratios: Vec<f64> = hanging.iter().map(|h| h / idle_median).collect();
    for (id, samples) in [
        ("engine_isolation/slow_mount/batch_ratio", ratios),
        ("engine_isolation/rm_f/hang_ratio", hang_ratios),
    ] {
        let v = summary(samples);
        println!(
            "{id:<55} median {:>10.2}×  [p10 {:.2}, p90 {:.2}]  n={}",
            v["median"].as_f64().unwrap_or(0.0),
            v["p10"].as_f64().unwrap_or(0.0),
            v["p90"].as_f64().unwrap_or(0.0),
            v["n"]
        );
        out.insert(id.to_owned(), v);
    }
}

fn main() {
    let mut c = configure(Criterion::default()).configure_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // `BERTH_BENCH_ONLY_HOOKS=1`: only the api hook loop (profiling and quick before/after).
    if std::env::var_os("BERTH_BENCH_ONLY_HOOKS").is_some_and(|v| v != "0") {
        let mut manual = serde_json::Map::new();
        bench_idle_hooks(&rt, &mut manual);
        return;
    }
    // `BERTH_BENCH_ONLY_ISOLATION=1`: only the plugin fault isolation loops (one batch of 32
    // concurrent slow-mount runs against one run, interleaved round by round; rm -f while hung).
    if std::env::var_os("BERTH_BENCH_ONLY_ISOLATION").is_some_and(|v| v != "0") {
        let mut manual = serde_json::Map::new();
        bench_isolation(&rt, &mut manual);
        return;
    }
    let d = Daemon::start();
    let flocker = start_flocker(&d);
    bench_api(&mut c, &d, &rt);
    let cli = std::env::var_os("BERTH_BENCH_NO_CLI").is_none_or(|v| v == "0");
    if cli && Command::new("docker").arg("--version").output().is_ok() {
        bench_cli(&mut c, &d);
    }
    drop(d);
    drop(flocker);
    c.final_summary();

    // The timing loops (not criterion): idle api hooks and restart to ready.
    let mut manual = serde_json::Map::new();
    bench_isolation(&rt, &mut manual);
    bench_idle_hooks(&rt, &mut manual);
    bench_restart(0, &mut manual);
    bench_restart(16, &mut manual);
    write_manual(&manual);
}
