//! Healthchecks (`Config.Healthcheck`, `docker run --health-cmd`): the configuration as the
//! client and the image give it, the `State.Health` record, and the monitor that probes a
//! running container.
//!
//! Docker's semantics, kept here:
//! - `Test` is `["CMD", argv...]`, `["CMD-SHELL", "command"]` (run with `/bin/sh -c`) or
//!   `["NONE"]` (no healthcheck, also overriding the image's); an empty `Test` and zero
//!   durations or retries inherit the image's values ([`HealthConfig::merged`]).
//! - Defaults: interval 30 s (also the delay before the first probe), timeout 30 s, start
//!   period 0, 3 retries; a duration given must be at least 1 ms, retries not negative.
//! - Every start resets the status to `starting` and the failing streak to 0; the log keeps the
//!   last 5 results, each output cut at 4096 bytes (with `...` appended).
//! - A probe exiting 0 makes the container `healthy` and clears the streak; any other result
//!   (a non-zero exit, a timeout as exit code -1, a probe that could not start) adds one to the
//!   streak, except while `starting` inside the start period, and `Retries` consecutive
//!   failures make it `unhealthy`.
//! - Each change of status publishes a `health_status: <status>` container event.
//!
//! The probe is an exec in the container (its namespaces, cgroup, confinement, user,
//! environment and working directory, [`Engine::exec_spec`]) that the monitor owns: a probe
//! that outlives its timeout, or a container that stops under it, is killed. The monitor ends
//! when the container's process exits or the container is removed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Container, Observed, lock};

/// The shortest interval, timeout or start period Docker accepts (1 ms, in nanoseconds).
pub const MIN_DURATION_NS: i64 = 1_000_000;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept in `State.Health.Log`.
pub const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept (stdout and stderr together).
pub const MAX_OUTPUT: usize = 4096;
/// How long a killed probe may take to be reaped before the monitor stops waiting for it.
const REAP_GRACE: Duration = Duration::from_secs(5);

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A `null` field reads as its default, as Go's decoder reads it (docker-py sends `null` for
/// every duration it was not given).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Config.Healthcheck`, in Docker's wire shape (durations in nanoseconds; zero = inherit or
/// default, and left out of inspect as Docker leaves it out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_as_default")]
    pub interval: i64,
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_as_default")]
    pub timeout: i64,
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_as_default")]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(deserialize_with = "null_as_default")]
    pub retries: i64,
}

impl HealthConfig {
    /// Docker's create-time checks (400 with Docker's words).
    pub fn validate(&self) -> Result<(), EngineError> {
        for (name, v) in [
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
        ] {
            if v != 0 && v < MIN_DURATION_NS {
                return Err(EngineError::Invalid(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if self.retries < 0 {
            return Err(EngineError::Invalid(
                "Retries in Healthcheck cannot be negative".into(),
            ));
        }
        match self.test.first().map(String::as_str) {
            None | Some("NONE") => Ok(()),
            Some("CMD" | "CMD-SHELL") if self.test.len() > 1 => Ok(()),
            Some("CMD" | "CMD-SHELL") => Err(EngineError::Invalid(
                "Healthcheck: Test needs a command after CMD or CMD-SHELL".into(),
            )),
            Some(other) => Err(EngineError::Invalid(format!(
                "Healthcheck: unknown Test type {other:?}: use CMD, CMD-SHELL or NONE"
            ))),
        }
    }

    /// The container's healthcheck: the client's, its unset parts taken from the image's.
    pub fn merged(user: Option<HealthConfig>, image: Option<&HealthConfig>) -> Option<Self> {
        let Some(image) = image else {
            return user;
        };
        let Some(mut user) = user else {
            return Some(image.clone());
        };
        if user.test.is_empty() {
            user.test = image.test.clone();
        }
        for (mine, theirs) in [
            (&mut user.interval, image.interval),
            (&mut user.timeout, image.timeout),
            (&mut user.start_period, image.start_period),
            (&mut user.retries, image.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        Some(user)
    }

    /// The probe's argv, or `None` when there is nothing to run (`NONE`, empty).
    pub fn probe_argv(&self) -> Option<Vec<String>> {
        let (kind, rest) = self.test.split_first()?;
        match kind.as_str() {
            "CMD" if !rest.is_empty() => Some(rest.to_vec()),
            "CMD-SHELL" if !rest.is_empty() => Some(
                ["/bin/sh".to_owned(), "-c".to_owned(), rest.join(" ")]
                    .into_iter()
                    .collect(),
            ),
            _ => None,
        }
    }

    fn interval(&self) -> Duration {
        duration_or(self.interval, DEFAULT_INTERVAL)
    }

    fn timeout(&self) -> Duration {
        duration_or(self.timeout, DEFAULT_TIMEOUT)
    }

    fn start_period(&self) -> Duration {
        duration_or(self.start_period, Duration::ZERO)
    }

    fn retries(&self) -> u32 {
        if self.retries <= 0 {
            DEFAULT_RETRIES
        } else {
            u32::try_from(self.retries).unwrap_or(u32::MAX)
        }
    }
}

fn duration_or(ns: i64, default: Duration) -> Duration {
    u64::try_from(ns)
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_nanos)
        .unwrap_or(default)
}

/// `State.Health.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    /// The suffix of `docker ps`'s status: `Up 3 seconds (healthy)`, `(health: starting)`.
    pub fn ps_suffix(self) -> &'static str {
        match self {
            HealthStatus::Starting => "(health: starting)",
            HealthStatus::Healthy => "(healthy)",
            HealthStatus::Unhealthy => "(unhealthy)",
        }
    }
}

/// One probe's result (`State.Health.Log[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub exit_code: i64,
    pub output: String,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// Oldest first, at most [`MAX_LOG_ENTRIES`].
    pub log: Vec<HealthResult>,
}

impl Health {
    /// Records a probe's result (Docker's rules, see the module doc); `started_at` is when the
    /// container's process started. Returns whether the status changed.
    pub fn record(
        &mut self,
        result: HealthResult,
        config: &HealthConfig,
        started_at: Option<DateTime<Utc>>,
    ) -> bool {
        let before = self.status;
        let ok = result.exit_code == 0;
        let probe_start = result.start;
        if self.log.len() >= MAX_LOG_ENTRIES {
            self.log.drain(..=self.log.len() - MAX_LOG_ENTRIES);
        }
        self.log.push(result);
        if ok {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else {
            let in_start_period = self.status == HealthStatus::Starting
                && started_at.is_some_and(|s| {
                    (probe_start - s)
                        .to_std()
                        .map(|since| since < config.start_period())
                        // A probe start before the process start counts as inside.
                        .unwrap_or(true)
                });
            if !in_start_period {
                self.failing_streak = self.failing_streak.saturating_add(1);
                if self.failing_streak >= config.retries() {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.status != before
    }
}

/// Go's `time.Duration` text for the timeout message (`1s`, `500ms`, `1m30s`).
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return match ns {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    let s = if frac == 0 {
        format!("{}s", secs % 60)
    } else {
        let f = format!("{:09}", frac);
        format!("{}.{}s", secs % 60, f.trim_end_matches('0'))
    };
    match (secs / 3600, (secs / 60) % 60) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// A bounded output buffer: the first [`MAX_OUTPUT`] bytes, then `...` when more came.
#[derive(Default)]
struct Limited {
    buf: Vec<u8>,
    truncated: bool,
}

impl Limited {
    fn push(&mut self, data: &[u8]) {
        let keep = (MAX_OUTPUT - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..keep]);
        self.truncated |= keep < data.len();
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

async fn drain(reader: Option<impl AsyncRead + Unpin>, out: &std::sync::Mutex<Limited>) {
    let Some(mut reader) = reader else { return };
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(out).push(&chunk[..n]),
        }
    }
}

/// Kills the probe's process when the probe is abandoned (timeout, container stopped).
struct KillOnDrop(tokio::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Whether the run the monitor watches is over.
fn run_over(o: &Observed, exits: u64) -> bool {
    o.exits > exits || o.removed
}

impl Engine {
    /// Resets `State.Health` and starts the monitor for the run that just started (no-op
    /// without a healthcheck). Called by `start` once the state says running.
    pub(crate) fn start_health_monitor(self: &Arc<Self>, c: &Arc<Container>) {
        let Some(config) = c.config.spec.healthcheck.clone() else {
            return;
        };
        let Some(argv) = config.probe_argv() else {
            return;
        };
        let exits = c.observed.borrow().exits;
        let reset = c.update(|st| {
            let h = st.health.get_or_insert_with(Health::default);
            h.status = HealthStatus::Starting;
            h.failing_streak = 0;
        });
        if let Err(e) = reset {
            tracing::warn!(id = c.id(), error = %e, "resetting the health state");
        }
        let engine = self.clone();
        let c = c.clone();
        tokio::spawn(async move { engine.health_monitor(c, config, argv, exits).await });
    }

    async fn health_monitor(
        self: Arc<Self>,
        c: Arc<Container>,
        config: HealthConfig,
        argv: Vec<String>,
        exits: u64,
    ) {
        let mut rx = c.observed.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(config.interval()) => {}
                _ = rx.wait_for(|o| run_over(o, exits)) => return,
            }
            let start = Utc::now();
            let (exit_code, output) = tokio::select! {
                r = self.probe(&c, &argv, config.timeout()) => r,
                _ = rx.wait_for(|o| run_over(o, exits)) => return,
            };
            let result = HealthResult {
                start,
                end: Utc::now(),
                exit_code,
                output,
            };
            let mut changed = None;
            let recorded = c.update(|st| {
                if run_over(&c.observed.borrow(), exits) {
                    return;
                }
                let started_at = st.started_at;
                let h = st.health.get_or_insert_with(Health::default);
                if h.record(result, &config, started_at) {
                    changed = Some(h.status);
                }
            });
            if let Err(e) = recorded {
                tracing::warn!(id = c.id(), error = %e, "recording a health probe");
            }
            if let Some(status) = changed {
                self.events.publish(
                    "container",
                    &format!("health_status: {}", status.as_str()),
                    c.id(),
                    c.attributes(),
                );
            }
        }
    }

    /// Runs one probe: (exit code, output). A probe that cannot start or exceeds `timeout`
    /// gives exit code -1 and the reason as output.
    async fn probe(&self, c: &Container, argv: &[String], timeout: Duration) -> (i64, String) {
        let spec = match self.exec_spec(c, argv.to_vec(), &[], "", "") {
            Ok(spec) => spec,
            Err(e) => return (-1, e.to_string()),
        };
        let pid1 = spec.pid1;
        let (child, io) = match self.runtime.exec(spec).await {
            Ok(process) => (KillOnDrop(process.child), process.io),
            Err(e) => return (-1, e.to_string()),
        };
        if c.state().pid != pid1 {
            return (-1, format!("container {} stopped during the probe", c.id()));
        }
        let mut child = child;
        let out = std::sync::Mutex::new(Limited::default());
        let (stdout, stderr) = (Some(io.stdout), io.stderr);
        drop(io.stdin);
        let run = async {
            tokio::join!(drain(stdout, &out), drain(stderr, &out));
            child.0.wait().await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1);
                (i64::from(code), lock(&out).text())
            }
            Ok(Err(e)) => (-1, format!("waiting for the health probe: {e}")),
            Err(_) => {
                let _ = child.0.start_kill();
                let _ = tokio::time::timeout(REAP_GRACE, child.0.wait()).await;
                (
                    -1,
                    format!("Health check exceeded timeout ({})", go_duration(timeout)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn result(code: i64, start: DateTime<Utc>) -> HealthResult {
        HealthResult {
            start,
            end: start,
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn validation_follows_docker() {
        let ok = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: S,
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let short = HealthConfig {
            interval: 999_999,
            ..ok.clone()
        };
        assert_eq!(
            short.validate().unwrap_err().to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        let neg = HealthConfig {
            retries: -1,
            ..ok.clone()
        };
        assert!(neg.validate().is_err());
        let bare = HealthConfig {
            test: vec!["CMD".into()],
            ..Default::default()
        };
        assert!(bare.validate().is_err());
    }

    #[test]
    fn merge_takes_unset_parts_from_the_image() {
        let image = HealthConfig {
            test: vec!["CMD".into(), "check".into()],
            interval: 5 * S,
            retries: 7,
            ..Default::default()
        };
        let user = HealthConfig {
            interval: 2 * S,
            ..Default::default()
        };
        let m = HealthConfig::merged(Some(user), Some(&image)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!((m.interval, m.retries), (2 * S, 7));
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(
            HealthConfig::merged(Some(none), Some(&image)).and_then(|h| h.probe_argv()),
            None
        );
    }

    #[test]
    fn shell_form_runs_through_sh() {
        let h = HealthConfig {
            test: vec!["CMD-SHELL".into(), "echo hi".into()],
            ..Default::default()
        };
        assert_eq!(h.probe_argv().unwrap(), ["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn streak_start_period_and_log_bound() {
        let config = HealthConfig {
            test: vec!["CMD".into(), "x".into()],
            retries: 2,
            start_period: 10 * S,
            ..Default::default()
        };
        let t0 = Utc::now();
        let mut h = Health::default();
        // Inside the start period a failure does not count.
        assert!(!h.record(
            result(1, t0 + chrono::Duration::seconds(1)),
            &config,
            Some(t0)
        ));
        assert_eq!(h.failing_streak, 0);
        let later = t0 + chrono::Duration::seconds(20);
        assert!(!h.record(result(1, later), &config, Some(t0)));
        assert_eq!(h.failing_streak, 1);
        assert!(h.record(result(1, later), &config, Some(t0)));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert!(h.record(result(0, later), &config, Some(t0)));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..10 {
            h.record(result(0, later), &config, Some(t0));
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
    }

    #[test]
    fn output_is_bounded() {
        let mut l = Limited::default();
        l.push(&vec![b'a'; MAX_OUTPUT - 1]);
        l.push(b"bc");
        let t = l.text();
        assert_eq!(t.len(), MAX_OUTPUT + 3);
        assert!(t.ends_with("b..."));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
