//! Docker's full `HostConfig` shape for container inspect: every key a Docker 20.10+ engine
//! reports, filled in where Berth's inspect does not set it, with the value that describes what
//! Berth actually does (its defaults: no resource limits, private PID/IPC/UTS namespaces, the
//! host's cgroup namespace). Keys Berth sets from the container's settings are never replaced.
//! Docker omits `Init` when unset, and so does Berth.

use serde_json::{Map, Value, json};

/// The keys of Docker's `HostConfig` with the values that describe a Berth container.
fn host_config_defaults() -> Map<String, Value> {
    let part1 = json!({
        "Binds": null, "ContainerIDFile": "", "NetworkMode": "default", "PortBindings": {},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
        "CapAdd": null, "CapDrop": null, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "",
        "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 67_108_864, "Runtime": "berth", "Isolation": "", "CgroupParent": "",
    });
    let part2 = json!({
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": null, "BlkioDeviceWriteBps": null, "BlkioDeviceReadIOps": null,
        "BlkioDeviceWriteIOps": null, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null, "OomKillDisable": false,
        "PidsLimit": null, "Ulimits": null, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0, "MaskedPaths": null, "ReadonlyPaths": null,
    });
    let mut out = Map::new();
    for part in [part1, part2] {
        if let Value::Object(m) = part {
            out.extend(m);
        }
    }
    out
}

/// Adds every Docker `HostConfig` key missing from `inspect["HostConfig"]`, and `Config.OnBuild`.
pub fn fill(inspect: &mut Value) {
    if let Some(hc) = inspect.get_mut("HostConfig").and_then(Value::as_object_mut) {
        for (k, v) in host_config_defaults() {
            hc.entry(k).or_insert(v);
        }
    }
    if let Some(cfg) = inspect.get_mut("Config").and_then(Value::as_object_mut) {
        cfg.entry("OnBuild").or_insert(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_missing_keys_and_keeps_set_ones() {
        let mut v =
            json!({"HostConfig": {"NetworkMode": "bridge", "Privileged": true}, "Config": {}});
        fill(&mut v);
        let hc = &v["HostConfig"];
        assert_eq!(hc["NetworkMode"], "bridge");
        assert_eq!(hc["Privileged"], true);
        assert_eq!(hc["CgroupnsMode"], "host");
        assert!(hc.get("MemorySwappiness").is_some_and(Value::is_null));
        assert!(hc.get("Init").is_none(), "Docker omits Init when unset");
        assert!(hc.as_object().is_some_and(|m| m.len() >= 60), "{hc}");
        assert!(v["Config"].get("OnBuild").is_some());
    }
}
