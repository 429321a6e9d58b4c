//! One loaded plugin: its record, its client and its runtime counters. Hook calls go through
//! [`LoadedPlugin::call`] (deadline, counters, last error); the registry only decides who is in
//! the load order.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_plugin_protocol::mvp::Subscriptions;
use berth_plugin_protocol::{FailurePolicy, Protocol};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{CallErrorKind, PluginClient, PluginError};
use crate::crash_loop::ExitWindow;
use crate::limits::{CallFamily, Caps, Deadlines};
use crate::record::{HookStats, PluginRecord, PluginState};

#[derive(Debug)]
struct Runtime {
    state: PluginState,
    last_error: Option<String>,
    hooks: BTreeMap<String, HookStats>,
    /// When its container exited unasked, within the crash-loop window.
    exits: ExitWindow,
}

/// A registered plugin: its record, its client and its runtime counters.
#[derive(Debug)]
pub struct LoadedPlugin {
    pub(crate) record: PluginRecord,
    pub(crate) client: PluginClient,
    caps: Caps,
    deadlines: Deadlines,
    runtime: Mutex<Runtime>,
    inflight: AtomicUsize,
}

struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LoadedPlugin {
    pub(crate) fn new(record: PluginRecord, state: PluginState, caps: Caps) -> Self {
        let client = PluginClient::new(record.name.clone(), record.socket.clone());
        let last_error = record.last_error.clone();
        let requested = record
            .requested_deadline_ms
            .or(record.options.deadline_ms)
            .map(Duration::from_millis);
        let deadlines = caps.clamp(requested);
        Self {
            record,
            client,
            caps,
            deadlines,
            runtime: Mutex::new(Runtime {
                state,
                last_error,
                hooks: BTreeMap::new(),
                exits: ExitWindow::default(),
            }),
            inflight: AtomicUsize::new(0),
        }
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The record (last error as of load; see [`Self::last_error`]).
    pub fn record(&self) -> &PluginRecord {
        &self.record
    }

    /// Negotiated protocol.
    pub fn protocol(&self) -> Protocol {
        self.record.protocol
    }

    /// Effective subscriptions.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.record.subscriptions
    }

    /// Effective deadline of the default call family.
    pub fn deadline(&self) -> Duration {
        self.deadlines.of(CallFamily::Default)
    }

    /// Effective deadline per call family.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The deadline of the call `hook` (its family's effective deadline).
    pub fn deadline_for(&self, hook: &str) -> Duration {
        self.deadlines.of(CallFamily::of(hook))
    }

    /// Failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.record.failure_policy
    }

    /// Whether the `/Plugin.Activate` answer listed `kind`.
    pub fn implements(&self, kind: &str) -> bool {
        self.record.implements.iter().any(|k| k == kind)
    }

    /// The underlying client.
    pub fn client(&self) -> &PluginClient {
        &self.client
    }

    /// State.
    pub fn state(&self) -> PluginState {
        berth_state::lock(&self.runtime).state
    }

    /// Last error.
    pub fn last_error(&self) -> Option<String> {
        berth_state::lock(&self.runtime).last_error.clone()
    }

    /// Records an error as the plugin's last error.
    pub fn set_last_error(&self, e: &str) {
        berth_state::lock(&self.runtime).last_error = Some(e.to_owned());
    }

    pub(crate) fn set_state(&self, s: PluginState) {
        berth_state::lock(&self.runtime).state = s;
    }

    /// Records an unasked exit of the plugin's container at `now`, forgets the ones older than
    /// `window`, and returns how many are left (this one included).
    pub(crate) fn record_exit(&self, now: Instant, window: Duration) -> usize {
        berth_state::lock(&self.runtime).exits.record(now, window)
    }

    /// Per-hook counters.
    pub fn hook_stats(&self) -> BTreeMap<String, HookStats> {
        berth_state::lock(&self.runtime).hooks.clone()
    }

    /// Calls `path` with `req` for `hook` (the counter's key) under the plugin's deadline; records
    /// counters, latency and the last error. A plugin that is not active fails at once.
    pub async fn call<Req, Resp>(
        &self,
        hook: &str,
        path: &str,
        req: &Req,
    ) -> Result<Resp, PluginError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let (deadline, max_reply) = (self.deadline_for(hook), self.caps.max_reply(hook));
        self.instrumented(
            hook,
            path,
            self.client.call_bounded(path, req, deadline, max_reply),
        )
        .await
    }

    /// Like [`Self::call`] with the request already encoded (see [`crate::encode_json`]).
    pub async fn call_encoded<Resp: DeserializeOwned>(
        &self,
        hook: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Resp, PluginError> {
        let (deadline, max_reply) = (self.deadline_for(hook), self.caps.max_reply(hook));
        self.instrumented(hook, path, async {
            let reply = self
                .client
                .post_bounded(path, body, deadline, max_reply)
                .await?;
            self.client.interpret(path, reply)
        })
        .await
    }

    /// Like [`Self::call`] with an empty body.
    pub async fn call_empty<Resp: DeserializeOwned>(
        &self,
        hook: &str,
        path: &str,
    ) -> Result<Resp, PluginError> {
        let (deadline, max_reply) = (self.deadline_for(hook), self.caps.max_reply(hook));
        self.instrumented(hook, path, async {
            let reply = self
                .client
                .post_bounded(path, Bytes::new(), deadline, max_reply)
                .await?;
            self.client.interpret(path, reply)
        })
        .await
    }

    async fn instrumented<Resp>(
        &self,
        hook: &str,
        path: &str,
        fut: impl Future<Output = Result<Resp, PluginError>>,
    ) -> Result<Resp, PluginError> {
        let state = self.state();
        if state != PluginState::Active {
            let why = match state {
                PluginState::Disabled => "disabled by the operator".to_owned(),
                _ => self
                    .last_error()
                    .unwrap_or_else(|| format!("{state:?}").to_lowercase()),
            };
            return Err(PluginError {
                plugin: self.record.name.clone(),
                call: format!("POST {path}"),
                kind: CallErrorKind::NotActive {
                    state: format!("{state:?}").to_lowercase(),
                    reason: why,
                },
            });
        }
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let _g = InflightGuard(&self.inflight);
        let start = Instant::now();
        let res = fut.await;
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        // 404 = "not interested": not a failure.
        let failure = match &res {
            Err(e) if !e.is_not_found() => Some(e.to_string()),
            _ => None,
        };
        {
            let mut r = berth_state::lock(&self.runtime);
            let record = |s: &mut HookStats| {
                s.calls += 1;
                s.total_latency_us = s.total_latency_us.saturating_add(us);
                s.max_latency_us = s.max_latency_us.max(us);
                s.failures += u64::from(failure.is_some());
            };
            // The key is allocated once per hook, not per call.
            match r.hooks.get_mut(hook) {
                Some(s) => record(s),
                None => {
                    let mut s = HookStats::default();
                    record(&mut s);
                    r.hooks.insert(hook.to_owned(), s);
                }
            }
            if failure.is_some() {
                r.last_error = failure;
            }
        }
        res
    }

    /// Calls currently running on this plugin.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    pub(crate) fn current_record(&self) -> PluginRecord {
        let mut r = self.record.clone();
        r.last_error = self.last_error();
        r.disabled = self.operator_disabled();
        r
    }

    /// Whether the operator disabled this plugin: the state says so once the plugin is up; while
    /// it is pending or failed, the persisted record does.
    pub(crate) fn operator_disabled(&self) -> bool {
        match self.state() {
            PluginState::Disabled => true,
            PluginState::Active => false,
            PluginState::Pending | PluginState::Failed => self.record.disabled,
        }
    }

    /// The state a replacement of this plugin (upgrade, boot) starts in once it shook hands: the
    /// operator's `disable` outlives both.
    pub(crate) fn carried_state(&self) -> PluginState {
        if self.operator_disabled() {
            PluginState::Disabled
        } else {
            PluginState::Active
        }
    }
}
