//! Before/after on one machine in one run: the engine's core operations on two daemons, an older
//! `berth` build (`BERTH_BENCH_OLD_BIN`) and the current one (`BERTH_BIN`, else the workspace's),
//! each on its own temp root and socket, measured in alternating short blocks so that load from
//! anything else on the machine hits both alike. `cargo xtask bench --compare-bin OLD` runs it.
//!
//! Every round runs a block of `BLOCK` iterations of every series (the order reverses each round)
//! and keeps the block's median. A series' figure is the median of its block medians; a ratio is
//! the median over rounds of (numerator block median / denominator block median) of the same
//! round, with its spread (p10–p90 and min–max of the per-round ratios). Only ratios mean
//! anything on a shared machine; the absolute medians are for scale.
//!
//! Series (all through the raw API on a keep-alive connection, as `tests/benches/engine.rs`):
//! `ps` (`GET /containers/json` with one container), `inspect` (`GET /containers/{id}/json`),
//! `volume_create_rm` (local driver), `container_create_rm`, `run_rm_true` (`docker run --rm host
//! true` on the wire: create, attach, wait for `removed`, start), and `run_rm_volume_plugin` (`run
//! --rm -v V:/d` on a `flocker` volume, the plugin a separate process). The current build also runs
//! `run --rm` with `seccomp=unconfined` (no filter), with a memory and pids limit (cgroup), and with
//! both, so that confinement's cost can be told apart from the rest.
//!
//! Results go to `<target>/bench/manual/compare.json` and stdout. Needs root.
//! `BERTH_BENCH_QUICK=1`: 3 rounds; `BERTH_BENCH_ROUNDS=N` overrides the round count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_tests::{Daemon, PluginProc};
use http::{Method, StatusCode};

mod common;
use common::*;

/// Iterations per block.
const BLOCK: usize = 5;

/// One daemon under test with its connections and fixtures.
struct Side {
    daemon: Daemon,
    _flocker: Option<PluginProc>,
    api: Api,
    waiter: Api,
    /// A created (not started) container for `inspect`.
    idle: String,
    /// A flocker volume for `run_rm_volume_plugin`, if the plugin loaded.
    volume: Option<String>,
}

/// What one series runs.
#[derive(Clone, Copy)]
enum Op {
    Ps,
    Inspect,
    VolumeCreateRm,
    ContainerCreateRm,
    /// `run --rm host true`: with the memory+pids limits, with `seccomp=unconfined`.
    RunRm {
        limits: bool,
        unconfined: bool,
    },
    RunRmVolumePlugin,
}

/// One measured series: a name, the side (0 old, 1 new) and the operation.
struct Series {
    name: &'static str,
    side: usize,
    op: Op,
    blocks: Vec<f64>,
}

fn series(name: &'static str, side: usize, op: Op) -> Series {
    Series {
        name,
        side,
        op,
        blocks: Vec::new(),
    }
}

/// Starts `bin` with flocker loaded (when the build accepts it) and the fixtures.
async fn side(rt_bin: &Path) -> Side {
    let daemon = Daemon::start_bin(rt_bin, |_| Vec::new());
    let (flocker, sock) = spawn_flocker(&daemon);
    let body = serde_json::json!({"Name": "flocker", "Socket": sock, "Timeout": "20s"});
    let loaded = daemon.raw_json("POST", "/berth/plugins/load", &body);
    let socket = daemon.socket();
    let mut api = Api::connect(&socket).await;
    let waiter = Api::connect(&socket).await;
    let volume = if loaded.status == 200 {
        let name = unique("cmpvol");
        api.call(
            Method::POST,
            "/volumes/create",
            Some(serde_json::json!({"Name": name, "Driver": "flocker"})),
            StatusCode::CREATED,
        )
        .await;
        Some(name)
    } else {
        eprintln!(
            "{}: flocker did not load ({}), no run_rm_volume_plugin row",
            rt_bin.display(),
            loaded.text()
        );
        None
    };
    let idle = api.create(container_body(false)).await;
    Side {
        daemon,
        _flocker: Some(flocker),
        api,
        waiter,
        idle,
        volume,
    }
}

/// Runs `op` once on `s`.
async fn once(s: &mut Side, op: Op) {
    match op {
        Op::Ps => {
            s.api
                .call(Method::GET, "/containers/json", None, StatusCode::OK)
                .await;
        }
        Op::Inspect => {
            let path = format!("/containers/{}/json", s.idle);
            s.api.call(Method::GET, &path, None, StatusCode::OK).await;
        }
        Op::VolumeCreateRm => volume_create_rm(&mut s.api, None).await,
        Op::ContainerCreateRm => container_create_rm(&mut s.api).await,
        Op::RunRm { limits, unconfined } => {
            let body = if limits {
                limited_body()
            } else {
                container_body(true)
            };
            let opt: &[&str] = if unconfined {
                &["seccomp=unconfined"]
            } else {
                &[]
            };
            let socket = s.daemon.socket();
            run_rm_true(&mut s.api, &mut s.waiter, &socket, &body, opt).await;
        }
        Op::RunRmVolumePlugin => {
            let v = s.volume.clone().expect("flocker volume");
            run_rm_volume(&s.daemon.socket(), &v).await;
        }
    }
}

/// p-quantile of `v` (sorted copy).
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let old = PathBuf::from(
        std::env::var_os("BERTH_BENCH_OLD_BIN")
            .expect("BERTH_BENCH_OLD_BIN: the older berth binary to compare against"),
    );
    assert!(old.exists(), "{} does not exist", old.display());
    let new = berth_tests::berth_binary().to_path_buf();
    let rounds: usize = std::env::var("BERTH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 3 } else { 15 });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut sides = rt.block_on(async { vec![side(&old).await, side(&new).await] });
    let plain = Op::RunRm {
        limits: false,
        unconfined: false,
    };
    let mut all = vec![
        series("ps/old", 0, Op::Ps),
        series("ps/new", 1, Op::Ps),
        series("inspect/old", 0, Op::Inspect),
        series("inspect/new", 1, Op::Inspect),
        series("volume_create_rm/old", 0, Op::VolumeCreateRm),
        series("volume_create_rm/new", 1, Op::VolumeCreateRm),
        series("container_create_rm/old", 0, Op::ContainerCreateRm),
        series("container_create_rm/new", 1, Op::ContainerCreateRm),
        series("run_rm_true/old", 0, plain),
        series("run_rm_true/new", 1, plain),
        series(
            "run_rm_true/new_seccomp_unconfined",
            1,
            Op::RunRm {
                limits: false,
                unconfined: true,
            },
        ),
        series(
            "run_rm_true/new_limits",
            1,
            Op::RunRm {
                limits: true,
                unconfined: false,
            },
        ),
        series(
            "run_rm_true/new_limits_seccomp_unconfined",
            1,
            Op::RunRm {
                limits: true,
                unconfined: true,
            },
        ),
    ];
    if sides.iter().all(|s| s.volume.is_some()) {
        all.push(series("run_rm_volume_plugin/old", 0, Op::RunRmVolumePlugin));
        all.push(series("run_rm_volume_plugin/new", 1, Op::RunRmVolumePlugin));
    }
    rt.block_on(async {
        // Warm-up round (page cache, connections, the seccomp filter's first compile), not kept.
        for s in &all {
            for _ in 0..BLOCK {
                once(&mut sides[s.side], s.op).await;
            }
        }
        for round in 0..rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..all.len()).collect()
            } else {
                (0..all.len()).rev().collect()
            };
            for i in order {
                let (side, op) = (all[i].side, all[i].op);
                let mut t = Vec::with_capacity(BLOCK);
                for _ in 0..BLOCK {
                    let start = Instant::now();
                    once(&mut sides[side], op).await;
                    t.push(start.elapsed().as_nanos() as f64);
                }
                all[i].blocks.push(quantile(&t, 0.5));
            }
            eprintln!("round {}/{rounds} done", round + 1);
        }
    });
    report(&all, &old, &new);
    drop(sides);
}

/// The ratios reported: (name, numerator, denominator).
const RATIOS: [(&str, &str, &str); 13] = [
    ("ps new/old", "ps/new", "ps/old"),
    ("inspect new/old", "inspect/new", "inspect/old"),
    (
        "volume_create_rm new/old",
        "volume_create_rm/new",
        "volume_create_rm/old",
    ),
    (
        "container_create_rm new/old",
        "container_create_rm/new",
        "container_create_rm/old",
    ),
    (
        "run_rm_true new/old (carve + confinement)",
        "run_rm_true/new",
        "run_rm_true/old",
    ),
    (
        "run_rm_true new seccomp=unconfined/old",
        "run_rm_true/new_seccomp_unconfined",
        "run_rm_true/old",
    ),
    (
        "run_rm_true hardened (limits)/old",
        "run_rm_true/new_limits",
        "run_rm_true/old",
    ),
    (
        "run_rm_true hardened/new unconfined, no limits",
        "run_rm_true/new_limits",
        "run_rm_true/new_seccomp_unconfined",
    ),
    (
        "run_rm_true seccomp cost (new/new unconfined)",
        "run_rm_true/new",
        "run_rm_true/new_seccomp_unconfined",
    ),
    (
        "run_rm_true cgroup cost (new limits/new)",
        "run_rm_true/new_limits",
        "run_rm_true/new",
    ),
    (
        "run_rm_true limits, seccomp=unconfined/old",
        "run_rm_true/new_limits_seccomp_unconfined",
        "run_rm_true/old",
    ),
    (
        "run_rm_volume_plugin new/old",
        "run_rm_volume_plugin/new",
        "run_rm_volume_plugin/old",
    ),
    (
        "run_rm_volume_plugin new/run_rm_true new",
        "run_rm_volume_plugin/new",
        "run_rm_true/new",
    ),
];

fn report(all: &[Series], old: &Path, new: &Path) {
    let mut out = serde_json::Map::new();
    out.insert("old_bin".into(), old.display().to_string().into());
    out.insert("new_bin".into(), new.display().to_string().into());
    println!("\nbefore/after, {} rounds of {BLOCK}:", all[0].blocks.len());
    for s in all {
        let v = summary(s.blocks.clone());
        println!(
            "{:<45} median {:>10.1} µs  [p10 {:.1}, p90 {:.1}]",
            s.name,
            v["median"].as_f64().unwrap_or(0.0) / 1e3,
            v["p10"].as_f64().unwrap_or(0.0) / 1e3,
            v["p90"].as_f64().unwrap_or(0.0) / 1e3,
        );
        out.insert(format!("compare/{}", s.name), v);
    }
    let find = |n: &str| all.iter().find(|s| s.name == n);
    println!();
    for (name, num, den) in RATIOS {
        let (Some(num), Some(den)) = (find(num), find(den)) else {
            continue;
        };
        let r: Vec<f64> = num
            .blocks
            .iter()
            .zip(&den.blocks)
            .map(|(a, b)| a / b)
            .collect();
        let v = serde_json::json!({
            "median": quantile(&r, 0.5),
            "p10": quantile(&r, 0.1),
            "p90": quantile(&r, 0.9),
            "min": quantile(&r, 0.0),
            "max": quantile(&r, 1.0),
            "n": r.len(),
        });
        println!(
            "{name:<50} {:>6.2}×  [p10 {:.2}, p90 {:.2}; min {:.2}, max {:.2}]",
            v["median"].as_f64().unwrap_or(0.0),
            v["p10"].as_f64().unwrap_or(0.0),
            v["p90"].as_f64().unwrap_or(0.0),
            v["min"].as_f64().unwrap_or(0.0),
            v["max"].as_f64().unwrap_or(0.0),
        );
        out.insert(format!("ratio/{name}"), v);
    }
    let path = manual_results_path("compare.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("results dir");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&out).expect("json") + "\n",
    )
    .expect("write results");
    println!("written to {}", path.display());
}
