//! The plugin host: everything the engine needs to run plugins, below the engine itself.
//!
//! - [`client`]: the typed HTTP-over-UDS client (keep-alive, deadlines, Docker's lenient rules);
//! - [`handshake`]: negotiation v2 → v1 → `/Plugin.Activate`, polling until the load deadline;
//! - [`registry`]: [`PluginHost`], plugins in load order persisted as `<root>/plugins.json`,
//!   load (socket, discovery, container via [`PluginLauncher`]), unload, upgrade, boot;
//! - [`dispatch`]: ordered chain, reverse tear-down, concurrent notify;
//! - [`hooks`]: typed volume/network/api calls per negotiated protocol;
//! - [`readiness`]: the tracker behind the API gate;
//! - [`discovery`]: Docker-style `/run/docker/plugins/NAME.sock` and spec files;
//! - [`launcher`]: the [`PluginLauncher`] trait the engine implements.

pub mod client;
pub mod discovery;
pub mod dispatch;
pub mod handshake;
pub mod hooks;
pub mod launcher;
pub mod limits;
pub mod readiness;
pub mod registry;

pub use berth_plugin_protocol as protocol;
pub use client::{CallErrorKind, PluginClient, PluginError, encode_json};
pub use dispatch::{ChainError, ChainOutcome, chain, notify_all, teardown};
pub use handshake::{HandshakeError, Negotiated, PluginInfo, negotiate};
pub use launcher::{LaunchError, LaunchSpec, Launched, PluginLauncher};
pub use readiness::{Readiness, ReadyState};
pub use registry::{
    HookStats, HostConfig, HostError, LoadOptions, LoadedPlugin, PluginHost, PluginRecord,
    PluginSource, PluginState, PluginStatus, Snapshot, UpgradeTo, validate_mount,
};
