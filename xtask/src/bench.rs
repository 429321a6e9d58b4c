//! `cargo xtask bench [--quick]`: runs the criterion benches (plugin call and hook fan-out in
//! `crates/plugin-host/benches/fanout.rs`, engine operations on a real daemon in
//! `tests/benches/engine.rs`), reads the medians from `target/criterion/**/new/estimates.json`
//! and from the benches' own timing loops (`target/bench/manual/plugin_host.json`: the paired
//! plugin-call and fan-out ratios; `target/bench/manual/engine.json`: plugin fault isolation,
//! idle api hooks, restart to ready),
//! prints a table with the ratios to the floors measured in the same run and to Docker 20.10's
//! reference figures, and draws the fan-out plot (latency per event against N, sequential and
//! concurrent, with the floors) with `plotters`.
//!
//! `--compare-bin OLD` runs only `tests/benches/compare.rs`: an older `berth` build against the
//! current one, interleaved in one run (before/after figures for a refactor).
//!
//! A full run writes `docs/bench/fanout.svg` and `docs/bench/results.md`; `--quick` (short
//! measurements, for CI) writes them under `target/bench/` so the tree stays clean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

/// Docker 20.10 on the benchmark machine, through the docker CLI (interleaved medians, ms),
/// measured once beside Berth (see the README's benchmark section).
const DOCKER_MS: [(&str, f64); 4] = [
    ("volume_create_rm", 66.0),
    ("volume_create_rm_plugin", 64.0),
    ("container_create_rm", 109.0),
    ("run_rm_true", 554.0),
];

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Short measurements (CI smoke run, well under two minutes once built).
    #[arg(long)]
    quick: bool,
    /// Skip the engine benches (they need root and start a real daemon).
    #[arg(long)]
    no_engine: bool,
    /// Do not run anything: tabulate and plot the results already in target/criterion.
    #[arg(long)]
    report_only: bool,
    /// Where the plot and the table go (default: docs/bench, or target/bench with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the before/after comparison: this older `berth` binary against the workspace's,
    /// interleaved on one machine (`tests/benches/compare.rs`; needs root).
    #[arg(long, value_name = "OLD_BERTH")]
    compare_bin: Option<PathBuf>,
}

/// One criterion result.
#[derive(Debug, Clone, Copy)]
struct Est {
    /// Median time per iteration, ns.
    median: f64,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs `cargo xtask bench`.
pub fn run(opts: Opts) -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    if let Some(old) = &opts.compare_bin {
        return compare(&root, &target, old, opts.quick);
    }
    let started = SystemTime::now();
    if !opts.report_only {
        // Every cargo call here selects the whole workspace and builds bench targets: the same
        // feature unification as CI's `cargo bench --workspace --no-run`, so nothing is compiled
        // twice. The first also builds the daemon and the example plugins that the engine
        // benches drive, in the benches' optimised profile (target/release).
        cargo(
            &root,
            &[
                "build",
                "--profile",
                "bench",
                "--workspace",
                "--bins",
                "--benches",
            ],
            false,
            &[],
        )?;
        cargo(
            &root,
            &["bench", "--workspace", "--bench", "fanout"],
            opts.quick,
            &[],
        )?;
        // SAFETY: geteuid(2) has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        if opts.no_engine {
            println!("engine benches skipped (--no-engine)");
        } else if !is_root {
            println!("engine benches skipped: they need root (namespaces, mounts)");
        } else {
            let release = target.join("release");
            let berth = release.join("berth");
            let berth = berth.to_string_lossy();
            let plugins = release.to_string_lossy();
            cargo(
                &root,
                &["bench", "--workspace", "--bench", "engine"],
                opts.quick,
                &[
                    ("RUST_LOG", "warn"),
                    ("BERTH_BIN", &berth),
                    ("BERTH_BENCH_PLUGIN_DIR", &plugins),
                ],
            )?;
        }
    }
    let since = (!opts.report_only).then_some(started);
    let mut results = collect(&target.join("criterion"), since)?;
    for manual in ["plugin_host.json", "engine.json"] {
        collect_manual(
            &target.join("bench/manual").join(manual),
            since,
            &mut results,
        )?;
    }
    if results.is_empty() {
        bail!(
            "no criterion results under {}",
            target.join("criterion").display()
        );
    }
    let table = table(&results);
    println!("\n{table}");
    let out = opts.out.unwrap_or_else(|| {
        if opts.quick {
            target.join("bench")
        } else {
            root.join("docs/bench")
        }
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let md = out.join("results.md");
    std::fs::write(&md, format!("{table}\n"))
        .with_context(|| format!("writing {}", md.display()))?;
    let svg = out.join("fanout.svg");
    plot(&results, &svg)?;
    println!("wrote {} and {}", md.display(), svg.display());
    Ok(())
}

/// `--compare-bin OLD`: builds the current daemon and the example plugins in the benches'
/// profile, then runs the paired before/after bench (it prints its table and writes
/// `target/bench/manual/compare.json`).
fn compare(root: &Path, target: &Path, old: &Path, quick: bool) -> Result<()> {
    let old = std::fs::canonicalize(old).with_context(|| format!("{}", old.display()))?;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the before/after bench needs root (namespaces, mounts)");
    }
    let build = [
        "build",
        "--profile",
        "bench",
        "-p",
        "berth-cli",
        "-p",
        "berth-example-plugins",
    ];
    cargo(root, &build, false, &[])?;
    let release = target.join("release");
    let berth = release.join("berth");
    cargo(
        root,
        &["bench", "-p", "berth-tests", "--bench", "compare"],
        quick,
        &[
            ("RUST_LOG", "warn"),
            ("BERTH_BIN", &berth.to_string_lossy()),
            ("BERTH_BENCH_PLUGIN_DIR", &release.to_string_lossy()),
            ("BERTH_BENCH_OLD_BIN", &old.to_string_lossy()),
        ],
    )
}

/// Runs `cargo ARGS` in the workspace (with `BERTH_BENCH_QUICK=1` when `quick`, and `env`
/// where the caller's environment does not set it).
fn cargo(root: &Path, args: &[&str], quick: bool, env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(args);
    if quick {
        cmd.env("BERTH_BENCH_QUICK", "1");
    }
    for (k, v) in env {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let line = format!("cargo {}", args.join(" "));
    println!("==== {line}{} ====", if quick { " (quick)" } else { "" });
    let status = cmd.status().with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(())
}

/// Reads every `new/estimates.json` (written after `since`, if given), keyed by the benchmark's
/// full id (`group/function[/value]`, from `new/benchmark.json`).
fn collect(dir: &Path, since: Option<SystemTime>) -> Result<BTreeMap<String, Est>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.file_name().is_none_or(|n| n != "estimates.json")
                || p.parent()
                    .and_then(Path::file_name)
                    .is_none_or(|n| n != "new")
            {
                continue;
            }
            if let Some(since) = since {
                let fresh = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since);
                if !fresh {
                    continue;
                }
            }
            let est: serde_json::Value = serde_json::from_slice(&std::fs::read(&p)?)
                .with_context(|| format!("parsing {}", p.display()))?;
            let meta_path = p.with_file_name("benchmark.json");
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&meta_path)
                    .with_context(|| format!("reading {}", meta_path.display()))?,
            )
            .with_context(|| format!("parsing {}", meta_path.display()))?;
            let Some(id) = meta["full_id"].as_str() else {
                continue;
            };
            let Some(median) = est["median"]["point_estimate"].as_f64() else {
                continue;
            };
            out.insert(id.to_owned(), Est { median });
        }
    }
    Ok(out)
}

/// Adds the engine bench's timing-loop summaries (`{id: {"median": ns, ...}}`), if that file
/// exists (and was written after `since`, if given).
fn collect_manual(
    path: &Path,
    since: Option<SystemTime>,
    out: &mut BTreeMap<String, Est>,
) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if let Some(since) = since
        && !meta.modified().is_ok_and(|t| t >= since)
    {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    if let Some(map) = v.as_object() {
        for (id, s) in map {
            if let Some(median) = s["median"].as_f64() {
                out.insert(id.clone(), Est { median });
            }
        }
    }
    Ok(())
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns < 1e3 {
        format!("{ns:.0} ns")
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn table(r: &BTreeMap<String, Est>) -> String {
    let get = |k: &str| r.get(k).map(|e| e.median);
    let raw = get("plugin_call/floor_raw_unix_200B");
    let hyper = get("plugin_call/floor_hyper_keepalive_200B");
    let mut s = String::new();
    s.push_str(
        "### Plugin call (200 B event; all processes pinned to one CPU)\n\n\
         criterion's median of each bench, then the same four cases interleaved in short blocks \
         (round-robin): the paired median and the median of per-round ratios to the bare hyper \
         floor. The paired ratio is the one the target applies to: between criterion's \
         back-to-back measurement windows the level of every figure drifts by more than the \
         overhead being measured.\n\n\
         | bench | criterion median | × raw floor | × bare hyper | paired median | paired × bare hyper |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (k, label) in [
        ("floor_raw_unix_200B", "floor: raw UNIX-socket round trip"),
        (
            "floor_hyper_keepalive_200B",
            "floor: bare hyper keep-alive POST",
        ),
        (
            "client_post_raw_bare_server_200B",
            "`PluginClient::post_raw` → bare hyper server",
        ),
        (
            "client_call_sdk_plugin_200B",
            "`PluginClient::call` → no-op SDK plugin",
        ),
    ] {
        let v = get(&format!("plugin_call/{k}"));
        let paired = get(&format!("plugin_call_paired/{k}"));
        let paired_ratio = get(&format!("plugin_call_paired/{k}/round_ratio"));
        if v.is_none() && paired.is_none() {
            continue;
        }
        s.push_str(&format!(
            "| {label} | {} | {} | {} | {} | {} |\n",
            v.map(fmt_ns).unwrap_or_else(|| "–".into()),
            ratio(v, raw),
            ratio(v, hyper),
            paired.map(fmt_ns).unwrap_or_else(|| "–".into()),
            paired_ratio
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    for (label, title) in [
        ("200B", "Fan-out per event, 200 B event"),
        ("64KiB", "Fan-out per event, 64 KiB event"),
    ] {
        s.push_str(&format!(
            "\n### {title} (N plugin processes, keep-alive, all CPUs)\n\n\
             | N | sequential | concurrent | conc ÷ seq | paired conc ÷ seq | seq per call | seq per call × bare hyper |\n\
             |---:|---:|---:|---:|---:|---:|---:|\n"
        ));
        for n in [0u32, 1, 4, 16, 64] {
            let seq = get(&format!("fanout_{label}/seq/{n}"));
            let conc = get(&format!("fanout_{label}/conc/{n}"));
            if seq.is_none() && conc.is_none() {
                continue;
            }
            let paired = get(&format!("fanout_paired_{label}/conc/{n}/round_ratio"))
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into());
            let per_call = seq.filter(|_| n > 0).map(|v| v / f64::from(n));
            s.push_str(&format!(
                "| {n} | {} | {} | {} | {paired} | {} | {} |\n",
                seq.map(fmt_ns).unwrap_or_else(|| "–".into()),
                conc.map(fmt_ns).unwrap_or_else(|| "–".into()),
                ratio(conc, seq),
                per_call.map(fmt_ns).unwrap_or_else(|| "–".into()),
                ratio(per_call, hyper),
            ));
        }
    }
    s.push_str(
        "\n### One slow (5 ms) or failing plugin among N (200 B event)\n\n\
         | case | N | sequential | concurrent | conc ÷ seq |\n|---|---:|---:|---:|---:|\n",
    );
    for (group, prefix, label) in [
        ("fanout_slow5ms_200B", "", "one plugin sleeps 5 ms"),
        (
            "fanout_failing_200B",
            "fast_error_",
            "one plugin fails at once (500, policy ignore)",
        ),
        (
            "fanout_failing_200B",
            "deadline_20ms_",
            "one plugin never answers (deadline 20 ms, ignore)",
        ),
    ] {
        for n in [1u32, 4, 16] {
            let seq = get(&format!("{group}/{prefix}seq/{n}"));
            let conc = get(&format!("{group}/{prefix}conc/{n}"));
            if seq.is_none() && conc.is_none() {
                continue;
            }
            s.push_str(&format!(
                "| {label} | {n} | {} | {} | {} |\n",
                seq.map(fmt_ns).unwrap_or_else(|| "–".into()),
                conc.map(fmt_ns).unwrap_or_else(|| "–".into()),
                ratio(conc, seq),
            ));
        }
    }
    if r.keys().any(|k| k.starts_with("engine_")) {
        s.push_str(
            "\n### Engine operations on a real daemon (medians; unpinned)\n\n\
             | operation | Berth, raw API | Berth, docker CLI | Docker 20.10, docker CLI | CLI ÷ Docker |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for (k, label) in [
            (
                "cli_floor_two_invocations",
                "two `docker version` invocations (the CLI's own floor for the two-command rows)",
            ),
            ("ping", "`GET /_ping`"),
            ("containers_json", "`GET /containers/json`"),
            ("volume_create_rm", "volume create + rm (local driver)"),
            (
                "volume_create_rm_plugin",
                "volume create + rm (`flocker` plugin driver)",
            ),
            ("container_create_rm", "container create + rm"),
            ("run_rm_true", "`run --rm --network none host true`"),
            (
                "exec_true",
                "`exec C true` (a running container; create, start, inspect)",
            ),
            (
                "run_rm_true_limits",
                "the same with `-m 64m --pids-limit 100` (cgroup limits written at start)",
            ),
        ] {
            let api = get(&format!("engine_api/{k}"));
            let cli = get(&format!("engine_cli/{k}"));
            let docker = DOCKER_MS
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, ms)| ms * 1e6);
            s.push_str(&format!(
                "| {label} | {} | {} | {} | {} |\n",
                api.map(fmt_ns).unwrap_or_else(|| "–".into()),
                cli.map(fmt_ns).unwrap_or_else(|| "–".into()),
                docker.map(fmt_ns).unwrap_or_else(|| "–".into()),
                ratio(cli, docker),
            ));
        }
    }
    if r.keys().any(|k| k.starts_with("engine_hooks/")) {
        s.push_str(
            "\n### API request latency with 4 idle api plugins (four daemons, rotating rounds; unpinned)\n\n\
             Ratios are medians of per-round ratios to the first plugin-less daemon; the second \
             plugin-less daemon is an A/A control showing the daemon-to-daemon noise. `bare-api` \
             answers the same hooks \"no change\" without the SDK (std only, blocking): the \
             engine's own part of a hook.\n\n\
             | request | no plugins | no plugins (control) | 4 `api-policy` plugins | 4 `bare-api` plugins | control ratio | `api-policy` ratio | `bare-api` ratio |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let rr = |k: &str| {
            get(k)
                .map(|v| format!("{v:.3}×"))
                .unwrap_or_else(|| "–".into())
        };
        for (k, label) in [
            (
                "containers_json",
                "`GET /containers/json` (no plugin subscribed)",
            ),
            ("version", "`GET /version` (all 4 post-hook it)"),
        ] {
            let cell = |l: &str| {
                get(&format!("engine_hooks/{k}/{l}"))
                    .map(fmt_ns)
                    .unwrap_or_else(|| "–".into())
            };
            s.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} |\n",
                cell("no_plugins"),
                cell("no_plugins_control"),
                cell("4_idle_api_plugins"),
                cell("4_bare_api_plugins"),
                rr(&format!("engine_hooks/{k}/no_plugins_control/round_ratio")),
                rr(&format!("engine_hooks/{k}/4_idle_api_plugins/round_ratio")),
                rr(&format!("engine_hooks/{k}/4_bare_api_plugins/round_ratio")),
            ));
        }
        // One post-hook: what the 4 hooks add to `GET /version`, per hook, against one plugin
        // call of the fan-out bench (paired figure when that bench ran in the same run).
        let call = get("plugin_call_paired/client_call_sdk_plugin_200B")
            .or_else(|| get("plugin_call/client_call_sdk_plugin_200B"));
        let plain = get("engine_hooks/version/no_plugins");
        for (key, who) in [
            (
                "4_idle_api_plugins",
                "`api-policy` (SDK, rewrites the response)",
            ),
            ("4_bare_api_plugins", "`bare-api` (no SDK, no change)"),
        ] {
            if let (Some(hooked), Some(plain)) =
                (get(&format!("engine_hooks/version/{key}")), plain)
            {
                let per_hook = (hooked - plain) / 4.0;
                s.push_str(&format!(
                    "\nOne api post-hook of {who} (`GET /version`, (4 plugins − none) ÷ 4): {}; \
                     the fan-out bench's plugin call (`PluginClient::call` → no-op SDK plugin): \
                     {}; ratio {} (target ≤ 2×).\n",
                    fmt_ns(per_hook),
                    call.map(fmt_ns).unwrap_or_else(|| "–".into()),
                    ratio(Some(per_hook), call),
                ));
            }
        }
    }
    if r.keys().any(|k| k.starts_with("engine_isolation/")) {
        s.push_str(
            "\n### Plugin fault isolation (medians; targets ≤ 2×)\n\n\
             (a) `run --rm -v V:/d host true` on a volume driver whose `Mount` sleeps 100 ms: one \
             run, and 32 at once (32 volumes of that driver); the ratio is the median of per-round \
             batch / single ratios (one lock for every mount gives ~32×). (b) `rm -f` of a running \
             container with only a local volume, idle and while another plugin's \
             `VolumeDriver.Create` hangs; the ratio is each hung-phase sample over the idle median.\n\n\
             The control row is the same batch of 32 on local volumes: what 32 containers cost \
             this machine with no plugin in the way.\n\n\
             | measurement | baseline | under load | ratio |\n|---|---:|---:|---:|\n",
        );
        let rr = |k: &str| {
            get(k)
                .map(|v| format!("{v:.2}×"))
                .unwrap_or_else(|| "–".into())
        };
        let cell = |k: &str| get(k).map(fmt_ns).unwrap_or_else(|| "–".into());
        s.push_str(&format!(
            "| (a) 32 concurrent `run --rm -v V:/d`, `Mount` 100 ms | {} | {} | {} |\n",
            cell("engine_isolation/slow_mount/1_run"),
            cell("engine_isolation/slow_mount/32_concurrent_runs"),
            rr("engine_isolation/slow_mount/batch_ratio"),
        ));
        s.push_str(&format!(
            "| control: 32 concurrent `run --rm -v V:/d`, local volumes | {} | {} | {} |\n",
            cell("engine_isolation/slow_mount/1_run"),
            cell("engine_isolation/slow_mount/32_concurrent_runs_local_volumes"),
            ratio(
                get("engine_isolation/slow_mount/32_concurrent_runs_local_volumes"),
                get("engine_isolation/slow_mount/1_run")
            ),
        ));
        s.push_str(&format!(
            "| (b) unrelated `rm -f` while a plugin call hangs | {} | {} | {} |\n",
            cell("engine_isolation/rm_f/idle"),
            cell("engine_isolation/rm_f/while_a_plugin_call_hangs"),
            rr("engine_isolation/rm_f/hang_ratio"),
        ));
    }
    if r.keys().any(|k| k.starts_with("engine_restart/")) {
        s.push_str(
            "\n### Daemon restart to ready (spawn → first `GET /containers/json` 200; medians)\n\n\
             | plugins loaded | time to ready | × 0 plugins |\n|---:|---:|---:|\n",
        );
        let zero = get("engine_restart/0_plugins");
        for (n, label) in [(0u32, "0"), (16, "16 (`test-plugin` processes on sockets)")] {
            if let Some(v) = get(&format!("engine_restart/{n}_plugins")) {
                s.push_str(&format!(
                    "| {label} | {} | {} |\n",
                    fmt_ns(v),
                    ratio(Some(v), zero)
                ));
            }
        }
    }
    s
}

/// Registers a system TrueType font for the SVG's text (plotters lays text out itself).
fn register_font() -> Result<()> {
    const CANDIDATES: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    let Some(bytes) = CANDIDATES.iter().find_map(|p| std::fs::read(p).ok()) else {
        bail!(
            "no TrueType font found for the plot (tried {CANDIDATES:?}; install fonts-dejavu-core)"
        );
    };
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("the font could not be parsed"))?;
    Ok(())
}

/// One plotted series: label, (N, µs) points, colour, dashed.
type Line = (String, Vec<(f64, f64)>, RGBColor, bool);

/// Fan-out latency per event against N (log–log), sequential and concurrent for both payloads,
/// with the floors drawn as N × (one bare hyper call) and N × (one raw round trip).
fn plot(r: &BTreeMap<String, Est>, path: &Path) -> Result<()> {
    register_font()?;
    let ns = [1u32, 4, 16, 64];
    let us = |k: String| r.get(&k).map(|e| e.median / 1e3);
    let series = |group: &str, mode: &str| -> Vec<(f64, f64)> {
        ns.iter()
            .filter_map(|n| us(format!("{group}/{mode}/{n}")).map(|v| (f64::from(*n), v)))
            .collect()
    };
    let floor = |k: &str| -> Vec<(f64, f64)> {
        us(format!("plugin_call/{k}"))
            .map(|v| {
                ns.iter()
                    .map(|n| (f64::from(*n), v * f64::from(*n)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let lines: Vec<Line> = vec![
        (
            "sequential, 200 B".into(),
            series("fanout_200B", "seq"),
            RGBColor(200, 40, 40),
            false,
        ),
        (
            "concurrent, 200 B".into(),
            series("fanout_200B", "conc"),
            RGBColor(30, 90, 200),
            false,
        ),
        (
            "sequential, 64 KiB".into(),
            series("fanout_64KiB", "seq"),
            RGBColor(230, 140, 30),
            false,
        ),
        (
            "concurrent, 64 KiB".into(),
            series("fanout_64KiB", "conc"),
            RGBColor(40, 160, 90),
            false,
        ),
        (
            "floor: N × bare hyper call".into(),
            floor("floor_hyper_keepalive_200B"),
            RGBColor(90, 90, 90),
            true,
        ),
        (
            "floor: N × raw socket round trip".into(),
            floor("floor_raw_unix_200B"),
            RGBColor(160, 160, 160),
            true,
        ),
    ];
    let all: Vec<f64> = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)).collect();
    if all.is_empty() {
        bail!("no fan-out results to plot");
    }
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min) * 0.7;
    let hi = all.iter().cloned().fold(0.0, f64::max) * 1.4;

    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Hook fan-out: latency per event vs plugins (medians, all CPUs)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..80f64).log_scale(), (lo..hi).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("plugins subscribed (N, separate processes)")
        .y_desc("µs per event")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (label, points, color, dashed) in lines {
        if points.is_empty() {
            continue;
        }
        let style = color.stroke_width(if dashed { 1 } else { 2 });
        let drawn = if dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))
        };
        drawn
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if !dashed {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
