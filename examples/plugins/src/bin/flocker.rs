//! `flocker`: a flocker-like volume plugin on the SDK, for the seed's two-node demo.
//!
//! - **Bind-mount resolution** (the `volume` hook, v1 and v2): a bind source `/flocker/<dataset>`
//!   becomes `<storage>/<dataset>` (created if missing), so engines sharing `--storage` see the
//!   same data. Other sources get a 404 ("not interested"). v2 `start`/`stop` events take and
//!   release a lease on the dataset (shown by `VolumeDriver.Get`'s `Status.Leases`).
//! - **Named-volume driver** (Docker's `VolumeDriver.*`): a volume `NAME` is the dataset
//!   `<storage>/NAME` (so `-v NAME:/d` and `-v /flocker/NAME:/d` share data); `Create` options are
//!   kept as its metadata; `Mount`/`Unmount` count mount IDs; `Snapshot` (Berth's extension)
//!   copies the dataset to `<storage>/.snapshots/NAME/SNAPSHOT`.
//!
//! Test knobs: `--log FILE` appends every call, `--fail METHOD=MESSAGE` fails a call
//! (`volume` for the hook), `--err-status 200` sends failures as 200 + `Err` (else 500 + `Err`),
//! `--delay METHOD=MS` answers a driver call late (a slow or hung plugin).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_plugin_sdk::protocol::Protocol;
use berth_plugin_sdk::protocol::legacy::volume::{
    CreateRequest, GetResponse, ListResponse, MountRequest, MountResponse, NameRequest, Volume,
};
use berth_plugin_sdk::protocol::mvp::{VolumeEvent, VolumeMessage};
use berth_plugin_sdk::{HandlerError, Plugin, Reply, StatusCode};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Clone)]
struct Args {
    #[command(flatten)]
    listen: berth_example_plugins::PluginSocket,
    /// Storage directory shared by the engines (datasets live here).
    #[arg(long, env = "FLOCKER_STORAGE")]
    storage: PathBuf,
    /// Plugin name in the handshake.
    #[arg(long, default_value = "flocker")]
    name: String,
    /// Bind sources under this prefix are datasets.
    #[arg(long, default_value = "/flocker")]
    prefix: String,
    /// Handshakes answered: comma list of v2, v1, activate.
    #[arg(long, default_value = "v2,v1,activate")]
    answer: String,
    /// Append "<name> <call> <detail>" per call to this file.
    #[arg(long, env = "FLOCKER_LOG")]
    log: Option<PathBuf>,
    /// Fail a call: `Mount=no device`, `volume=dataset locked` (repeatable).
    #[arg(long, value_name = "METHOD=MESSAGE")]
    fail: Vec<String>,
    /// Status of failure replies: 500 (go-plugins-helpers style) or 200 (+ Err).
    #[arg(long, default_value_t = 500)]
    err_status: u16,
    /// Answer a `VolumeDriver` call this many milliseconds late: `Mount=100` (a slow driver),
    /// `Create=600000` (a hung one); repeatable. The call is logged when it arrives.
    #[arg(long, value_name = "METHOD=MS")]
    delay: Vec<String>,
}

/// The plugin's state: metadata of named volumes, mount IDs, leases.
#[derive(Default)]
struct State {
    /// Mount IDs per volume (a multiset: the same ID may be mounted twice).
    mounts: BTreeMap<String, Vec<String>>,
    /// Containers holding a lease per dataset.
    leases: BTreeMap<String, Vec<String>>,
}

struct Flocker {
    args: Args,
    state: Mutex<State>,
}

type Res<T> = Result<T, HandlerError>;

impl Flocker {
    fn log(&self, call: &str, detail: &str) {
        if let Some(log) = &self.args.log
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
        {
            let _ = writeln!(f, "{} {call} {detail}", self.args.name);
        }
    }

    fn delay(&self, method: &str) -> Option<std::time::Duration> {
        self.args.delay.iter().find_map(|f| {
            f.split_once('=')
                .filter(|(m, _)| m.eq_ignore_ascii_case(method))
                .and_then(|(_, ms)| ms.parse().ok())
                .map(std::time::Duration::from_millis)
        })
    }

    fn injected(&self, method: &str) -> Option<String> {
        self.args.fail.iter().find_map(|f| {
            f.split_once('=')
                .filter(|(m, _)| m.eq_ignore_ascii_case(method))
                .map(|(_, msg)| msg.to_owned())
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dataset_dir(&self, name: &str) -> Res<PathBuf> {
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.starts_with('.')
            && !name.contains('/');
        if !ok {
            return Err(HandlerError::new(format!("invalid dataset name {name:?}")));
        }
        Ok(self.args.storage.join(name))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.args.storage.join(".meta").join(format!("{name}.json"))
    }

    fn ensure_dataset(&self, name: &str) -> Res<PathBuf> {
        let dir = self.dataset_dir(name)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| HandlerError::new(format!("creating {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// The `volume` hook: `/flocker/<dataset>` → `<storage>/<dataset>`; leases on start/stop.
    fn volume(&self, mut m: VolumeMessage) -> Res<VolumeMessage> {
        let event = m.event.map_or("v1", VolumeEvent::as_str);
        self.log(&format!("volume.{event}"), &m.host_path);
        if let Some(msg) = self.injected("volume") {
            return Err(HandlerError::new(msg));
        }
        let prefix = format!("{}/", self.args.prefix.trim_end_matches('/'));
        let storage = format!("{}/", self.args.storage.display());
        let dataset = if let Some(d) = m.host_path.strip_prefix(&prefix) {
            d.trim_end_matches('/').to_owned()
        } else if let Some(d) = m.host_path.strip_prefix(&storage) {
            // Stop/remove carry the resolved path.
            d.trim_end_matches('/').to_owned()
        } else {
            return Err(HandlerError {
                status: 404,
                message: "not a flocker dataset".into(),
            });
        };
        match m.event {
            Some(VolumeEvent::Stop | VolumeEvent::Remove) => {
                let mut st = self.state();
                if let Some(l) = st.leases.get_mut(&dataset) {
                    l.retain(|c| c != &m.container_id);
                }
                return Ok(m);
            }
            Some(VolumeEvent::Start) => {
                let mut st = self.state();
                let l = st.leases.entry(dataset.clone()).or_default();
                if !l.contains(&m.container_id) {
                    l.push(m.container_id.clone());
                }
            }
            _ => {}
        }
        m.host_path = self.ensure_dataset(&dataset)?.display().to_string();
        Ok(m)
    }

    fn describe(&self, name: &str) -> Res<Option<Volume>> {
        let dir = self.dataset_dir(name)?;
        let meta = self.meta_path(name);
        if !meta.exists() {
            return Ok(None);
        }
        let meta: Value = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let st = self.state();
        let mut status = BTreeMap::new();
        status.insert("Metadata".to_owned(), meta["Opts"].clone());
        status.insert(
            "Mounts".to_owned(),
            json!(st.mounts.get(name).map_or(0, Vec::len)),
        );
        status.insert(
            "Leases".to_owned(),
            json!(st.leases.get(name).cloned().unwrap_or_default()),
        );
        Ok(Some(Volume {
            name: name.to_owned(),
            mountpoint: dir.display().to_string(),
            created_at: meta["CreatedAt"].as_str().map(str::to_owned),
            status: Some(status),
        }))
    }

    fn create(&self, r: CreateRequest) -> Res<Value> {
        self.ensure_dataset(&r.name)?;
        let meta = self.meta_path(&r.name);
        if let Some(parent) = meta.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HandlerError::new(e.to_string()))?;
        }
        let created = chrono_now();
        let body = json!({"Opts": r.opts, "CreatedAt": created});
        std::fs::write(&meta, body.to_string()).map_err(|e| HandlerError::new(e.to_string()))?;
        Ok(json!({"Err": ""}))
    }

    fn get(&self, r: NameRequest) -> Res<GetResponse> {
        match self.describe(&r.name)? {
            Some(v) => Ok(GetResponse {
                volume: Some(v),
                err: String::new(),
            }),
            None => Err(HandlerError::new("no such volume")),
        }
    }

    fn list(&self) -> Res<Value> {
        let mut vols = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.args.storage.join(".meta")) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(name) = file.strip_suffix(".json")
                    && let Ok(Some(v)) = self.describe(name)
                {
                    vols.push(v);
                }
            }
        }
        // Like Go plugins: an empty list is sent as null.
        if vols.is_empty() {
            return Ok(json!({"Volumes": null, "Err": ""}));
        }
        Ok(serde_json::to_value(ListResponse {
            volumes: vols,
            err: String::new(),
        })
        .unwrap_or(Value::Null))
    }

    fn mount(&self, r: MountRequest) -> Res<MountResponse> {
        let Some(v) = self.describe(&r.name)? else {
            return Err(HandlerError::new("no such volume"));
        };
        if r.id.len() != 64 || !r.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HandlerError::new(format!("bad mount id {:?}", r.id)));
        }
        self.state().mounts.entry(r.name).or_default().push(r.id);
        Ok(MountResponse {
            mountpoint: v.mountpoint,
            err: String::new(),
        })
    }

    fn unmount(&self, r: MountRequest) -> Res<Value> {
        let mut st = self.state();
        let ids = st.mounts.entry(r.name.clone()).or_default();
        let Some(pos) = ids.iter().position(|i| i == &r.id) else {
            return Err(HandlerError::new(format!(
                "volume {} is not mounted with id {}",
                r.name, r.id
            )));
        };
        ids.remove(pos);
        Ok(json!({"Err": ""}))
    }

    fn path(&self, r: NameRequest) -> Res<MountResponse> {
        match self.describe(&r.name)? {
            Some(v) => Ok(MountResponse {
                mountpoint: v.mountpoint,
                err: String::new(),
            }),
            None => Err(HandlerError::new("no such volume")),
        }
    }

    fn remove(&self, r: NameRequest) -> Res<Value> {
        if self
            .state()
            .mounts
            .get(&r.name)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(HandlerError::new(format!("volume {} is mounted", r.name)));
        }
        let dir = self.dataset_dir(&r.name)?;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(self.meta_path(&r.name));
        Ok(json!({"Err": ""}))
    }

    fn snapshot(&self, r: Value) -> Res<Value> {
        let name = r["Name"].as_str().unwrap_or_default().to_owned();
        let snap = r["Snapshot"].as_str().unwrap_or_default().to_owned();
        let src = self.dataset_dir(&name)?;
        self.dataset_dir(&snap)?;
        if self.describe(&name)?.is_none() {
            return Err(HandlerError::new("no such volume"));
        }
        let dst = self.args.storage.join(".snapshots").join(&name).join(&snap);
        if dst.exists() {
            return Err(HandlerError::new(format!(
                "snapshot {snap} of {name} exists"
            )));
        }
        copy_dir(&src, &dst).map_err(|e| HandlerError::new(format!("snapshot: {e}")))?;
        Ok(json!({"Err": ""}))
    }
}

fn chrono_now() -> String {
    // RFC 3339 without pulling in a date crate: seconds since the epoch, UTC.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), to)?;
        }
    }
    Ok(())
}

/// Registers `POST /VolumeDriver.<method>`: logs, applies `--fail`, and sends errors in the
/// configured style (500 + Err, or 200 + Err).
fn driver_route<Req, Resp, F>(
    b: berth_plugin_sdk::PluginBuilder,
    fl: &Arc<Flocker>,
    method: &'static str,
    f: F,
) -> berth_plugin_sdk::PluginBuilder
where
    Req: serde::de::DeserializeOwned + serde::Serialize + Send + 'static,
    Resp: serde::Serialize + Send + 'static,
    F: Fn(&Flocker, Req) -> Res<Resp> + Send + Sync + 'static,
{
    let fl = fl.clone();
    let f = Arc::new(f);
    b.route_raw(format!("/VolumeDriver.{method}"), move |body| {
        let fl = fl.clone();
        let f = f.clone();
        async move {
            let text = if body.is_empty() {
                "{}".to_owned()
            } else {
                String::from_utf8_lossy(&body).into_owned()
            };
            let req: Req = match serde_json::from_str(&text) {
                Ok(r) => r,
                Err(e) => return Reply::text(400, &format!("decoding request: {e}")),
            };
            let v = serde_json::to_value(&req).unwrap_or(Value::Null);
            let detail = [&v["Name"], &v["ID"]]
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            fl.log(&format!("VolumeDriver.{method}"), &detail);
            if let Some(d) = fl.delay(method) {
                tokio::time::sleep(d).await;
            }
            let res = match fl.injected(method) {
                Some(msg) => Err(HandlerError::new(msg)),
                None => f(&fl, req),
            };
            match res {
                Ok(v) => Reply::json(&v),
                Err(e) if fl.args.err_status == 200 => Reply {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: json!({"Err": e.message}).to_string().into(),
                },
                Err(e) => Reply::error(fl.args.err_status, &e.message),
            }
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.storage)?;
    let protocols: Vec<Protocol> = args
        .answer
        .split(',')
        .filter_map(|s| match s.trim() {
            "v2" => Some(Protocol::V2),
            "v1" => Some(Protocol::V1),
            "activate" => Some(Protocol::Activate),
            _ => None,
        })
        .collect();
    let fl = Arc::new(Flocker {
        args: args.clone(),
        state: Mutex::new(State::default()),
    });
    let mut b = Plugin::builder(args.name.clone())
        .author("Luke Marsden <luke@example.com>")
        .org("ClusterHQ, Inc.")
        .website("https://clusterhq.com/")
        .version("0.1.0")
        .answer_only(&protocols)
        .implements("VolumeDriver");
    let hook = fl.clone();
    b = b.volume(move |m| {
        let r = hook.volume(m);
        async move { r }
    });
    b = driver_route(b, &fl, "Create", Flocker::create);
    b = driver_route(b, &fl, "Get", Flocker::get);
    b = driver_route(b, &fl, "List", |f, _: Value| f.list());
    b = driver_route(b, &fl, "Mount", Flocker::mount);
    b = driver_route(b, &fl, "Unmount", Flocker::unmount);
    b = driver_route(b, &fl, "Path", Flocker::path);
    b = driver_route(b, &fl, "Remove", Flocker::remove);
    b = driver_route(b, &fl, "Snapshot", Flocker::snapshot);
    b = driver_route(b, &fl, "Capabilities", |_, _: Value| {
        Ok(json!({"Capabilities": {"Scope": "global"}}))
    });
    eprintln!(
        "flocker: serving {} with datasets in {}",
        args.listen.socket.display(),
        args.storage.display()
    );
    b.build().serve_until_signal(&args.listen.socket).await?;
    Ok(())
}
