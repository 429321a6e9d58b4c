//! `/_ping`, `/version` and `/info`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
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

async fn version() -> Json<serde_json::Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "Berth"},
        "Components": [{
            "Name": "Engine", "Version": v,
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                        "Arch": arch(), "KernelVersion": kernel_version(), "Experimental": "false",
                        "GitCommit": "", "GoVersion": "rust"}
        }],
        "Version": v, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux", "Arch": arch(), "KernelVersion": kernel_version(),
        "GitCommit": "", "GoVersion": "rust", "BuildTime": "", "Experimental": false
    }))
}

async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
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
    let volume_drivers: Vec<String> = vec![berth_volumes::LOCAL_DRIVER.to_owned()];
    // Records the daemon could not load at boot (quarantined, or data without a record): the
    // docker CLI prints these under `docker info`, as it does Docker's own warnings.
    let warnings: Vec<String> = engine
        .load_warnings()
        .iter()
        .map(|w| format!("WARNING: {w}"))
        .collect();
    let warnings = (!warnings.is_empty()).then_some(warnings);
    let mut out = json!({
        "ID": "berth", "Name": hostname, "ServerVersion": env!("CARGO_PKG_VERSION"),
        "OperatingSystem": "Berth", "OSType": "linux", "Architecture": std::env::consts::ARCH,
        "KernelVersion": kernel_version(), "NCPU": ncpu, "MemTotal": mem_total, "Driver": "overlay",
        "DockerRootDir": engine.root().to_string_lossy(),
        "NGoroutines": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "Containers": total, "ContainersRunning": running - paused, "ContainersPaused": paused, "ContainersStopped": stopped,
        "Images": engine.images.list().len(),
        "Plugins": {"Volume": volume_drivers, "Network": ["host", "null"], "Log": ["json-file"], "Authorization": null},
        "LoggingDriver": "json-file",
        "CgroupDriver": if cgroups { "cgroupfs" } else { "none" },
        "CgroupVersion": berth_engine::cgroups::version().trim_start_matches('v'),
        "MemoryLimit": cgroups, "SwapLimit": cgroups, "CpuCfsPeriod": cgroups, "CpuCfsQuota": cgroups,
        "CPUShares": cgroups, "PidsLimit": cgroups,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false,
                  "Error": "", "RemoteManagers": null},
        "Warnings": warnings
    });
    // The rest of Docker's SystemInfo, so clients that index these keys find them.
    let rest = json!({
        "DriverStatus": [], "CPUSet": false, "OomKillDisable": false, "KernelMemory": false, "KernelMemoryTCP": false,
        "IPv4Forwarding": true, "BridgeNfIptables": false, "BridgeNfIp6tables": false,
        "Debug": tracing::enabled!(tracing::Level::DEBUG),
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "NEventsListener": 0,
    });
    let rest2 = json!({
        "OSVersion": "", "IndexServerAddress": "", "RegistryConfig": null, "GenericResources": null,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [], "ExperimentalBuild": false,
        "Runtimes": {"berth": {"path": "berth"}}, "DefaultRuntime": "berth", "LiveRestoreEnabled": false,
        "Isolation": "", "InitBinary": "", "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""}, "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": [], "ProductLicense": "", "DefaultAddressPools": [], "CDISpecDirs": []
    });
    if let Some(out) = out.as_object_mut() {
        for part in [rest, rest2] {
            if let serde_json::Value::Object(part) = part {
                out.extend(part);
            }
        }
    }
    Json(out)
}
