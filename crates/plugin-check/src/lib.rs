//! `berth-plugin-check`: the plugin conformance kit behind `berth plugin check`. It drives a plugin
//! through its protocols the way engines do, and reports every rule of `docs/protocol.md`
//! ("Conformance rules") it breaks. No daemon is needed: only the plugin's socket.
//!
//! Groups, run in this order (a group the handshake says the plugin does not implement is
//! reported as skipped, with the reason):
//!
//! 1. [`handshake`]: every handshake version, the fall-back order, field types, deadline, repeat;
//! 2. [`volume_driver`]: Docker's `VolumeDriver` protocol;
//! 3. [`volume_hook`]: the MVP v1/v2 volume hook;
//! 4. [`network`]: `NetworkDriver` and `IpamDriver`;
//! 5. [`api`]: Powerstrip-shaped API hooks (v1, v2 subscriptions) and `AuthZPlugin`;
//! 6. [`robustness`]: concurrent calls, repeats, dropped connections, a slow client.
//!
//! The library is usable from `cargo test`: [`run`] returns a [`Report`]. [`launch`] starts a
//! plugin command as a host process for such tests (`berth plugin check --image` runs a container).

pub mod api;
pub mod handshake;
pub mod launch;
pub mod network;
pub mod report;
pub mod robustness;
pub mod volume_driver;
pub mod volume_hook;
pub mod wire;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use report::{Check, Detected, Exchange, Outcome, Report};
use wire::{Call, Probe};

/// A group of checks (`--only`/`--skip` take these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Handshake versions and fields.
    Handshake,
    /// `VolumeDriver.*`.
    Volume,
    /// The MVP volume hook.
    VolumeHook,
    /// `NetworkDriver.*`, `IpamDriver.*`.
    Network,
    /// API hooks and AuthZ.
    Api,
    /// Concurrency and connection faults.
    Robustness,
}

impl Group {
    /// Every group, in run order.
    pub const ALL: [Group; 6] = [
        Group::Handshake,
        Group::Volume,
        Group::VolumeHook,
        Group::Network,
        Group::Api,
        Group::Robustness,
    ];

    /// The name used on the command line and in check ids.
    pub fn name(self) -> &'static str {
        match self {
            Group::Handshake => "handshake",
            Group::Volume => "volume",
            Group::VolumeHook => "volume-hook",
            Group::Network => "network",
            Group::Api => "api",
            Group::Robustness => "robustness",
        }
    }

    /// Parses a group name.
    pub fn parse(s: &str) -> Result<Group, CheckError> {
        Group::ALL
            .into_iter()
            .find(|g| g.name() == s.trim())
            .ok_or_else(|| CheckError::UnknownGroup(s.to_owned()))
    }
}

/// Bad input to the kit.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `--only`/`--skip` named no group.
    #[error(
        "unknown check group {0:?} (groups: handshake, volume, volume-hook, network, api, robustness)"
    )]
    UnknownGroup(String),
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per-call deadline (a call without a complete answer by then fails its check).
    pub deadline: Duration,
    /// Only these groups (empty = all).
    pub only: BTreeSet<Group>,
    /// Not these groups.
    pub skip: BTreeSet<Group>,
    /// Bind source sent to the MVP volume hook.
    pub hook_path: String,
    /// IPv4 subnet used for NetworkDriver calls when the plugin has no IPAM of its own.
    pub subnet: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(10),
            only: BTreeSet::new(),
            skip: BTreeSet::new(),
            hook_path: "/berth-check/data".to_owned(),
            subnet: "10.254.253.0/24".to_owned(),
        }
    }
}

impl Options {
    /// Whether the user asked for `group`.
    pub fn selected(&self, group: Group) -> bool {
        (self.only.is_empty() || self.only.contains(&group)) && !self.skip.contains(&group)
    }
}

/// The state of a run shared by the groups: the probe, the options, the checks so far, and a
/// random tag that keeps the names of created objects unique.
pub struct Ctx {
    /// The plugin.
    pub probe: Probe,
    /// Options.
    pub opts: Options,
    /// Unique suffix for volume and network names.
    pub tag: String,
    checks: Vec<Check>,
}

impl Ctx {
    fn push(
        &mut self,
        group: Group,
        name: &str,
        rule: &'static str,
        required: bool,
        outcome: Outcome,
        exchange: Option<Exchange>,
    ) {
        self.checks.push(Check {
            id: format!("{}.{name}", group.name()),
            group,
            rule,
            required,
            outcome,
            exchange,
        });
    }

    /// Records a required check.
    pub fn must(
        &mut self,
        group: Group,
        name: &str,
        rule: &'static str,
        outcome: Outcome,
        call: Option<&Call>,
    ) {
        let exchange = call.map(|c| c.exchange.clone());
        self.push(group, name, rule, true, outcome, exchange);
    }

    /// Records an advisory (SHOULD) check: a failure is reported as a warning.
    pub fn should(
        &mut self,
        group: Group,
        name: &str,
        rule: &'static str,
        outcome: Outcome,
        call: Option<&Call>,
    ) {
        let outcome = match outcome {
            Outcome::Fail(r) => Outcome::Warn(r),
            o => o,
        };
        let exchange = call.map(|c| c.exchange.clone());
        self.push(group, name, rule, false, outcome, exchange);
    }

    /// Records a whole group as skipped.
    pub fn skip_group(&mut self, group: Group, reason: &str) {
        self.push(
            group,
            "*",
            "conformance-rules",
            false,
            Outcome::Skip(reason.to_owned()),
            None,
        );
    }
}

/// `Pass` when `cond`, else `Fail(reason())`.
pub fn verdict(cond: bool, reason: impl FnOnce() -> String) -> Outcome {
    if cond {
        Outcome::Pass
    } else {
        Outcome::Fail(reason())
    }
}

/// Checks the plugin on `socket`.
pub async fn run(socket: &Path, opts: &Options) -> Report {
    let tag: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..8)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    };
    let mut ctx = Ctx {
        probe: Probe::new(socket, opts.deadline),
        opts: opts.clone(),
        tag,
        checks: Vec::new(),
    };
    let found = handshake::run(&mut ctx).await;
    if !opts.selected(Group::Handshake) {
        ctx.checks.clear();
        ctx.skip_group(Group::Handshake, "not selected (--only/--skip)");
    }
    let detected = found.detected();
    let gates: [(Group, Option<String>); 5] = [
        (Group::Volume, found.gate_volume_driver()),
        (Group::VolumeHook, found.gate_volume_hook()),
        (Group::Network, found.gate_network()),
        (Group::Api, found.gate_api()),
        (Group::Robustness, found.gate_any()),
    ];
    for (group, blocked) in gates {
        if !opts.selected(group) {
            ctx.skip_group(group, "not selected (--only/--skip)");
            continue;
        }
        if let Some(reason) = blocked {
            ctx.skip_group(group, &reason);
            continue;
        }
        match group {
            Group::Volume => volume_driver::run(&mut ctx).await,
            Group::VolumeHook => volume_hook::run(&mut ctx, &found).await,
            Group::Network => network::run(&mut ctx, &found).await,
            Group::Api => api::run(&mut ctx, &found).await,
            Group::Robustness => robustness::run(&mut ctx, &found).await,
            Group::Handshake => {}
        }
    }
    Report::new(socket.display().to_string(), detected, ctx.checks)
}
