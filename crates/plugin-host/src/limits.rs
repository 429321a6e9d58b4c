//! Engine-wide bounds on plugin calls: a deadline cap per call family (api hooks, volume
//! Create/Mount, everything else) and a reply size limit (larger for api post-hooks, which carry
//! response bodies). A plugin may ask for a shorter deadline (load option or v2 `DeadlineMs`),
//! never a longer one: its effective deadline per family is `min(requested, cap)`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default reply size limit: 16 MiB.
pub const DEFAULT_MAX_REPLY: usize = 16 << 20;
/// Default reply size limit of api post-hooks (they return whole response bodies): 64 MiB.
pub const DEFAULT_MAX_REPLY_API_POST: usize = 64 << 20;

/// The call families that have their own deadline cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFamily {
    /// api pre/post hooks and authorization (`api.pre`, `api.post`, `authz`): they hold a user's
    /// API request.
    Api,
    /// Calls that may move or attach data: `VolumeDriver.Create`, `VolumeDriver.Mount` and the MVP
    /// volume hooks at create and start (`volume.create`, `volume.start`).
    Volume,
    /// Everything else (handshake-free calls: network, IPAM, other volume calls, ...).
    Default,
}

impl CallFamily {
    /// The family of a call by its hook name (the counter key: `api.pre`, `volumedriver.mount`,
    /// `volume.create`, `networkdriver.join`, `authz`, ...).
    pub fn of(hook: &str) -> Self {
        let hook = hook.to_ascii_lowercase();
        if hook == "authz" || hook.starts_with("api.") || hook.starts_with("authzplugin.") {
            return Self::Api;
        }
        match hook.as_str() {
            "volumedriver.create" | "volumedriver.mount" | "volume.create" | "volume.start" => {
                Self::Volume
            }
            _ => Self::Default,
        }
    }

    /// `api`, `volume`, `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Volume => "volume",
            Self::Default => "default",
        }
    }
}

/// The engine-wide caps (daemon flags `--plugin-deadline-api`, `--plugin-deadline-volume`,
/// `--plugin-deadline-default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Deadline cap of api hooks and authorization (default 10 s).
    pub api: Duration,
    /// Deadline cap of volume Create/Mount (default 2 min).
    pub volume: Duration,
    /// Deadline cap of every other call (default 30 s).
    pub default: Duration,
    /// Reply size limit of every call but api post-hooks (default 16 MiB).
    pub max_reply: usize,
    /// Reply size limit of api post-hooks (default 64 MiB).
    pub max_reply_api_post: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            api: Duration::from_secs(10),
            volume: Duration::from_secs(120),
            default: Duration::from_secs(30),
            max_reply: DEFAULT_MAX_REPLY,
            max_reply_api_post: DEFAULT_MAX_REPLY_API_POST,
        }
    }
}

impl Caps {
    /// The cap of `family`.
    pub fn cap(&self, family: CallFamily) -> Duration {
        match family {
            CallFamily::Api => self.api,
            CallFamily::Volume => self.volume,
            CallFamily::Default => self.default,
        }
    }

    /// The effective deadlines of a plugin that requested `requested` (none = the caps).
    pub fn clamp(&self, requested: Option<Duration>) -> Deadlines {
        let f = |cap: Duration| requested.map_or(cap, |r| r.min(cap)).as_millis() as u64;
        Deadlines {
            api_ms: f(self.api),
            volume_ms: f(self.volume),
            default_ms: f(self.default),
        }
    }

    /// The reply size limit of the call `hook`.
    pub fn max_reply(&self, hook: &str) -> usize {
        if hook.eq_ignore_ascii_case("api.post") {
            self.max_reply_api_post
        } else {
            self.max_reply
        }
    }
}

/// A plugin's effective deadline per call family (shown by `plugin status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// api hooks and authorization, ms.
    #[serde(rename = "Api")]
    pub api_ms: u64,
    /// volume Create/Mount, ms.
    #[serde(rename = "Volume")]
    pub volume_ms: u64,
    /// Every other call, ms.
    #[serde(rename = "Default")]
    pub default_ms: u64,
}

impl Deadlines {
    /// The deadline of `family`.
    pub fn of(&self, family: CallFamily) -> Duration {
        Duration::from_millis(match family {
            CallFamily::Api => self.api_ms,
            CallFamily::Volume => self.volume_ms,
            CallFamily::Default => self.default_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_clamping() {
        assert_eq!(CallFamily::of("api.pre"), CallFamily::Api);
        assert_eq!(CallFamily::of("api.post"), CallFamily::Api);
        assert_eq!(CallFamily::of("authz"), CallFamily::Api);
        assert_eq!(CallFamily::of("volumedriver.mount"), CallFamily::Volume);
        assert_eq!(CallFamily::of("volume.start"), CallFamily::Volume);
        assert_eq!(CallFamily::of("volumedriver.unmount"), CallFamily::Default);
        assert_eq!(CallFamily::of("networkdriver.join"), CallFamily::Default);
        let caps = Caps::default();
        let none = caps.clamp(None);
        assert_eq!(
            (none.api_ms, none.volume_ms, none.default_ms),
            (10_000, 120_000, 30_000)
        );
        // A plugin asking for an hour gets the caps; one asking for 5 s gets 5 s everywhere.
        assert_eq!(caps.clamp(Some(Duration::from_secs(3600))), none);
        let short = caps.clamp(Some(Duration::from_secs(5)));
        assert_eq!(
            (short.api_ms, short.volume_ms, short.default_ms),
            (5_000, 5_000, 5_000)
        );
        // Between the caps: only the families with a smaller cap are cut.
        let mid = caps.clamp(Some(Duration::from_secs(60)));
        assert_eq!(
            (mid.api_ms, mid.volume_ms, mid.default_ms),
            (10_000, 60_000, 30_000)
        );
        assert_eq!(caps.max_reply("api.post"), 64 << 20);
        assert_eq!(caps.max_reply("api.pre"), 16 << 20);
    }
}
