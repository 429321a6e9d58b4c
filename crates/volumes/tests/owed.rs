//! The mount record behind owed `Unmount`s: written before `Mount` is sent, gone once `Unmount`
//! was sent or when `Mount` failed; a store opened over a record owes its `Unmount`, and pays it
//! before the volume's next `Mount`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_plugin_host::protocol::Protocol;
use berth_plugin_host::{HostConfig, LoadOptions, PluginHost};
use berth_plugin_sdk::{HandlerError, Plugin};
use berth_volumes::{CreateVolume, VolumeStore};
use serde_json::{Value, json};

type Log = Arc<Mutex<Vec<String>>>;

/// A driver `drv` logging `Mount <id>` / `Unmount <id>`; `Mount` fails while `fail` is set.
async fn driver(dir: &Path, log: &Log, fail: &Arc<AtomicBool>) -> Arc<PluginHost> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut b = Plugin::builder("drv")
        .answer_only(&[Protocol::Activate])
        .implements("VolumeDriver");
    for method in ["Create", "Get", "Mount", "Unmount", "Capabilities"] {
        let (log, fail, data) = (log.clone(), fail.clone(), data.clone());
        b = b.route_json(format!("/VolumeDriver.{method}"), move |req: Value| {
            let (log, fail, data) = (log.clone(), fail.clone(), data.clone());
            async move {
                let id = req["ID"].as_str().unwrap_or_default().to_owned();
                match method {
                    "Get" => Err(HandlerError::new("no such volume")),
                    "Mount" if fail.load(Ordering::SeqCst) => Err(HandlerError::new("no device")),
                    "Mount" | "Unmount" => {
                        log.lock().unwrap().push(format!("{method} {id}"));
                        Ok(json!({"Mountpoint": data}))
                    }
                    _ => Ok(json!({})),
                }
            }
        });
    }
    let socket = dir.join("drv.sock");
    let plugin = b.build();
    let s = socket.clone();
    tokio::spawn(async move { plugin.serve(s, std::future::pending()).await });
    let host = PluginHost::open(HostConfig::new(dir.join("host")), None).unwrap();
    host.load_socket(&socket, LoadOptions::default())
        .await
        .unwrap();
    Arc::new(host)
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn a_mount_record_lives_from_before_mount_until_unmount_and_a_reopened_store_owes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fail) = (Log::default(), Arc::new(AtomicBool::new(false)));
    let host = driver(dir.path(), &log, &fail).await;
    let root = dir.path().join("root");
    let store = VolumeStore::open(&root).unwrap();
    let create = CreateVolume {
        name: Some("v".into()),
        driver: Some("drv".into()),
        ..Default::default()
    };
    store.create_with(Some(&host), create).await.unwrap();
    let record = root.join("volumes/v/mount.json");

    // A failed Mount leaves no record.
    fail.store(true, Ordering::SeqCst);
    assert!(store.mount(Some(&host), "v", "c1").await.is_err());
    assert!(!record.exists());
    fail.store(false, Ordering::SeqCst);

    // Mounted: the record holds the Mount's id; a normal Unmount removes it.
    store.mount(Some(&host), "v", "c1").await.unwrap();
    let id = entries(&log)[0].trim_start_matches("Mount ").to_owned();
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(on_disk["ID"], id.as_str());
    store.unmount(Some(&host), "v", "c1").await.unwrap();
    assert!(!record.exists());
    assert!(VolumeStore::open(&root).unwrap().owed_unmounts().is_empty());

    // Mounted, then the daemon dies: the next store owes the Unmount and pays it before the
    // volume's next Mount.
    store.mount(Some(&host), "v", "c2").await.unwrap();
    let id2 = entries(&log)[2].trim_start_matches("Mount ").to_owned();
    drop(store);
    let next = VolumeStore::open(&root).unwrap();
    assert_eq!(next.owed_unmounts(), [("v".to_owned(), id2.clone())]);
    next.mount(Some(&host), "v", "c3").await.unwrap();
    let log = entries(&log);
    assert_eq!(log[3], format!("Unmount {id2}"), "{log:?}");
    assert!(
        log[4].starts_with("Mount ") && log[4] != format!("Mount {id2}"),
        "{log:?}"
    );
    assert!(next.owed_unmounts().is_empty());
    // The new mount has its own record.
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(format!("Mount {}", on_disk["ID"].as_str().unwrap()), log[4]);
}
