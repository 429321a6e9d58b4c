//! Wire types of every plugin protocol family Berth speaks, shared by the host (`berth-plugin-host`)
//! and the SDK (`berth-plugin-sdk`):
//!
//! - [`mvp`]: the "Docker plugins MVP" handshake v1 (exactly as the seed) and Berth's v2 handshake,
//!   plus the v1/v2 volume, network and api messages;
//! - [`legacy`]: Docker's `/Plugin.Activate` and the `VolumeDriver.*`, `NetworkDriver.*`,
//!   `IpamDriver.*` and `AuthZPlugin.*` calls;
//! - [`powerstrip`]: Powerstrip-shaped api pre/post hook messages (used by the MVP `api` extension point);
//! - [`pattern`]: `METHOD /path/glob` patterns for api hook subscriptions;
//! - [`sync`]: the v2 `sync` message (catch-up after a load, boot, restart or upgrade).
//!
//! Decoding is lenient everywhere: unknown keys are ignored, `null` is accepted where a list or map is
//! expected, and missing fields take their defaults. The full spec is `docs/protocol.md`.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod legacy;
pub mod mvp;
pub mod pattern;
pub mod powerstrip;
pub mod sync;

mod lenient;

pub use lenient::{error_text, error_text_in, nullable};

/// `Accept` header value Docker sends to legacy plugins; Berth sends it on every call.
pub const DOCKER_PLUGIN_MEDIA_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The request header carrying a call's remaining budget in whole milliseconds, so the plugin can
/// give up in time: `Berth-Deadline-Ms: 9998`. Sent on every call; Docker never sends it.
pub const DEADLINE_HEADER: &str = "berth-deadline-ms";

/// The handshake families Berth knows, highest first (the negotiation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    /// Berth's own v2 handshake (`POST /v2/handshake`).
    #[serde(rename = "v2")]
    V2,
    /// The MVP seed's handshake (`POST /v1/handshake`).
    #[serde(rename = "v1")]
    V1,
    /// Docker's legacy `POST /Plugin.Activate`.
    #[serde(rename = "activate")]
    Activate,
}

impl Protocol {
    /// All handshake families in negotiation order.
    pub const NEGOTIATION_ORDER: [Protocol; 3] = [Protocol::V2, Protocol::V1, Protocol::Activate];

    /// The handshake path of this family.
    pub fn handshake_path(self) -> &'static str {
        match self {
            Protocol::V2 => mvp::V2_HANDSHAKE_PATH,
            Protocol::V1 => mvp::V1_HANDSHAKE_PATH,
            Protocol::Activate => legacy::ACTIVATE_PATH,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::V2 => "v2",
            Protocol::V1 => "v1",
            Protocol::Activate => "activate",
        })
    }
}

/// A failure policy chosen at load (or requested in the v2 handshake).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// A failing "before" hook aborts the operation (the default).
    #[default]
    Abort,
    /// A failing hook is skipped (recorded as the plugin's last error and a warning).
    Ignore,
}

impl std::fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailurePolicy::Abort => "abort",
            FailurePolicy::Ignore => "ignore",
        })
    }
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "abort" => Ok(FailurePolicy::Abort),
            "ignore" => Ok(FailurePolicy::Ignore),
            other => Err(format!(
                "unknown failure policy {other:?} (want abort or ignore)"
            )),
        }
    }
}
