//! Opening the registry: an unreadable `plugins.json` is quarantined (the one policy of
//! `berth_state::records`), the host opens with no plugins and says why.

use berth_plugin_host::{HostConfig, PluginHost};
use berth_state::LoadWarning;

#[test]
fn an_unreadable_load_order_is_quarantined_and_the_host_opens_empty() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("plugins.json"), b"[{\"name\": ").unwrap();
    let host = PluginHost::open(HostConfig::new(root.path()), None).unwrap();
    assert!(host.names().is_empty());
    let [LoadWarning::Quarantined { moved_to, .. }] = host.load_warnings() else {
        panic!("expected one quarantine: {:?}", host.load_warnings());
    };
    assert!(moved_to.starts_with(root.path().join("quarantine")));
    assert_eq!(std::fs::read(moved_to).unwrap(), b"[{\"name\": ");
    assert!(!root.path().join("plugins.json").exists());
}
