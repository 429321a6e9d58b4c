//! The `netplug` example plugin as the network tests run it: a host process on a socket in the
//! daemon's temp dir, loaded by socket, its calls logged to a file the tests read, and the host
//! links it made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{Daemon, example_plugin, poll_until};

/// A `netplug` process on a socket in the daemon's temp dir, killed on drop.
pub struct NetPlug {
    child: Child,
    log: PathBuf,
}

impl Drop for NetPlug {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NetPlug {
    /// Starts `netplug --name NAME [extra]` with a shared call log `log` and loads it into `d`.
    pub fn load(d: &Daemon, name: &str, log: &Path, extra: &[&str]) -> NetPlug {
        NetPlug::load_with(d, name, log, extra, &[])
    }

    /// [`NetPlug::load`] with more `berth plugin load` flags (`--timeout 2s`).
    pub fn load_with(
        d: &Daemon,
        name: &str,
        log: &Path,
        extra: &[&str],
        flags: &[&str],
    ) -> NetPlug {
        let sock = d.dir().join(format!("{name}.sock"));
        let child = Command::new(example_plugin("netplug"))
            .arg("--socket")
            .arg(&sock)
            .arg("--name")
            .arg(name)
            .arg("--log")
            .arg(log)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn netplug");
        poll_until("the netplug socket", Duration::from_secs(10), || {
            sock.exists().then_some(())
        });
        let mut args = vec![
            "plugin",
            "load",
            "--name",
            name,
            "--socket",
            sock.to_str().expect("a UTF-8 socket path"),
        ];
        args.extend_from_slice(flags);
        d.berth(&args).ok();
        NetPlug {
            child,
            log: log.to_owned(),
        }
    }

    /// The calls logged so far: `(plugin, call, body)`.
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        read_calls(&self.log)
    }

    pub fn call_names(&self) -> Vec<String> {
        self.calls().into_iter().map(|(_, c, _)| c).collect()
    }
}

/// The calls in a netplug log: `(plugin, call, body)`.
pub fn read_calls(log: &Path) -> Vec<(String, String, Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line in the netplug log");
            let s = |k: &str| {
                v[k].as_str()
                    .expect("plugin and call in a log line")
                    .to_owned()
            };
            (s("plugin"), s("call"), v["body"].clone())
        })
        .collect()
}

/// The links of the host's network namespace (the tests' own), sorted.
pub fn host_links() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Host interfaces netplug made for the networks and endpoints named in `log` and that still
/// exist (other tests run in parallel, so only this test's objects are checked).
pub fn leftover_links(log: &Path) -> Vec<String> {
    let short = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .chars()
            .take(10)
            .collect::<String>()
    };
    let mut names = Vec::new();
    for (_, _, body) in read_calls(log) {
        if body["NetworkID"].is_string() {
            names.push(format!("np{}", short(&body["NetworkID"])));
        }
        if body["EndpointID"].is_string() {
            names.push(format!("nh{}", short(&body["EndpointID"])));
            names.push(format!("nc{}", short(&body["EndpointID"])));
        }
    }
    names.sort();
    names.dedup();
    let links = host_links();
    names.into_iter().filter(|n| links.contains(n)).collect()
}
