//! The plugin host: everything the engine needs to run plugins, below the engine itself.
//!
//! - [`client`]: the typed HTTP-over-UDS client (keep-alive, deadlines, Docker's lenient rules);
//! - [`handshake`]: negotiation v2 → v1 → `/Plugin.Activate`, polling until the load deadline;
//! - [`registry`]: [`PluginHost`], plugins in load order persisted as `<root>/plugins.json`;
//! - [`record`]: what is persisted per plugin ([`PluginRecord`], [`LoadOptions`]) and its status;
//! - [`plugin`]: one [`LoadedPlugin`] (client, counters, the instrumented hook call);
//! - [`load`], [`upgrade`], [`boot`]: the operations on the registry (load from a socket, by
//!   discovery or as a container via [`PluginLauncher`]; upgrade and unload; boot and shutdown);
//! - [`crash_loop`]: when a crash-looping plugin is given up on (Failed), and its revival;
//! - [`error`]: the [`HostError`] type;
//! - [`drivers`]: driver lookup (a loaded or discovered plugin implementing the interface), for
//!   volume, network and IPAM drivers alike;
//! - [`dispatch`]: ordered chain, reverse tear-down, concurrent notify;
//! - [`hooks`]: typed volume/network/api calls per negotiated protocol;
//! - [`readiness`]: the tracker behind the API gate;
//! - [`sync`]: the v2 `sync` message sent after a load, boot, restart or upgrade;
//! - [`discovery`]: Docker-style `/run/docker/plugins/NAME.sock` and spec files;
//! - [`launcher`]: the [`PluginLauncher`] trait the engine implements.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod boot;
pub mod client;
pub mod crash_loop;
pub mod discovery;
pub mod dispatch;
pub mod drivers;
pub mod error;
pub mod handshake;
pub mod hooks;
pub mod launcher;
pub mod limits;
pub mod load;
pub mod plugin;
pub mod readiness;
pub mod record;
pub mod registry;
pub mod sync;
pub mod upgrade;

pub use berth_plugin_protocol as protocol;
pub use client::{CallErrorKind, PluginClient, PluginError, encode_json};
pub use crash_loop::CrashLoopLimit;
pub use dispatch::{ChainError, ChainOutcome, chain, notify_all, teardown};
pub use drivers::{DriverLookupError, find_driver};
pub use error::HostError;
pub use handshake::{HandshakeError, Negotiated, PluginInfo, negotiate};
pub use launcher::{Exited, LaunchError, LaunchSpec, Launched, PluginLauncher};
pub use plugin::LoadedPlugin;
pub use readiness::{Readiness, ReadyState};
pub use record::{
    HookStats, LoadOptions, PluginRecord, PluginSource, PluginState, PluginStatus, validate_mount,
    validate_network,
};
pub use registry::{HostConfig, PluginHost, Snapshot};
pub use sync::SyncOutcome;
pub use upgrade::UpgradeTo;
