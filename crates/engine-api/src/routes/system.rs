//! `/_ping`, `/version` and `/info`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bollard_stubs::models::{SystemVersion, SystemVersionComponents, SystemVersionPlatform};

use super::AppState;
use crate::models::system::{Commit, PluginsInfo, Runtime, SwarmInfo, SystemInfo};
use crate::{API_VERSION, MIN_API_VERSION};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
}

async fn ping(method: Method) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("Builder-Version", HeaderValue::from_static(""));
    headers.insert("Swarm", HeaderValue::from_static("inactive"));
    if method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        (headers, "").into_response()
    } else {
        (headers, "OK").into_response()
    }
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn version() -> Json<SystemVersion> {
    let v = env!("CARGO_PKG_VERSION");
    let details = [
        ("ApiVersion", API_VERSION.to_owned()),
        ("MinAPIVersion", MIN_API_VERSION.to_owned()),
        ("Os", "linux".to_owned()),
        ("Arch", arch().to_owned()),
        ("KernelVersion", kernel_version()),
        ("Experimental", "false".to_owned()),
        ("GitCommit", String::new()),
        ("GoVersion", "rust".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Json(SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "Berth".into(),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".into(),
            version: v.into(),
            details: Some(details),
        }]),
        version: Some(v.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(String::new()),
        go_version: Some("rust".into()),
        os: Some("linux".into()),
        arch: Some(arch().into()),
        kernel_version: Some(kernel_version()),
        experimental: Some(false),
        build_time: Some(String::new()),
    })
}

async fn info(State(state): State<AppState>) -> Json<SystemInfo> {
    let engine = &state.engine;
    let (total, running, stopped) = engine.counts();
    // Docker counts a paused container as paused, not running.
    let paused = engine
        .list(false, false)
        .iter()
        .filter(|v| v.state.paused)
        .count();
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroups = berth_engine::cgroups::version() != "none";
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    // Records the daemon could not load at boot (quarantined, or data without a record): the
    // docker CLI prints these under `docker info`, as it does Docker's own warnings.
    let warnings: Vec<String> = engine
        .load_warnings()
        .iter()
        .map(|w| format!("WARNING: {w}"))
        .collect();
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Json(SystemInfo {
        id: "berth".into(),
        name: hostname,
        server_version: env!("CARGO_PKG_VERSION").into(),
        operating_system: "Berth".into(),
        os_type: "linux".into(),
        os_version: String::new(),
        architecture: std::env::consts::ARCH.into(),
        kernel_version: kernel_version(),
        ncpu,
        mem_total,
        driver: "overlay".into(),
        driver_status: Vec::new(),
        docker_root_dir: engine.root().to_string_lossy().into_owned(),
        n_goroutines: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        n_fd: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0),
        n_events_listener: 0,
        containers: total,
        containers_running: running - paused,
        containers_paused: paused,
        containers_stopped: stopped,
        images: engine.images.list().len(),
        plugins: PluginsInfo {
            volume: vec![berth_volumes::LOCAL_DRIVER.to_owned()],
            network: strings(&["host", "null"]),
            authorization: None,
            log: strings(&["json-file"]),
        },
        logging_driver: "json-file".into(),
        cgroup_driver: if cgroups { "cgroupfs" } else { "none" }.into(),
        cgroup_version: berth_engine::cgroups::version()
            .trim_start_matches('v')
            .to_owned(),
        memory_limit: cgroups,
        swap_limit: cgroups,
        cpu_cfs_period: cgroups,
        cpu_cfs_quota: cgroups,
        cpu_shares: cgroups,
        cpu_set: false,
        pids_limit: cgroups,
        oom_kill_disable: false,
        kernel_memory: false,
        kernel_memory_tcp: false,
        ipv4_forwarding: true,
        bridge_nf_iptables: false,
        bridge_nf_ip6tables: false,
        debug: tracing::enabled!(tracing::Level::DEBUG),
        system_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        index_server_address: String::new(),
        registry_config: None,
        generic_resources: None,
        http_proxy: String::new(),
        https_proxy: String::new(),
        no_proxy: String::new(),
        labels: Vec::new(),
        experimental_build: false,
        runtimes: [(
            "berth".to_owned(),
            Runtime {
                path: "berth".into(),
            },
        )]
        .into(),
        default_runtime: "berth".into(),
        live_restore_enabled: false,
        isolation: String::new(),
        init_binary: String::new(),
        containerd_commit: Commit::default(),
        runc_commit: Commit::default(),
        init_commit: Commit::default(),
        security_options: Vec::new(),
        product_license: String::new(),
        default_address_pools: Vec::new(),
        cdi_spec_dirs: Vec::new(),
        swarm: SwarmInfo::inactive(),
        warnings: (!warnings.is_empty()).then_some(warnings),
    })
}
