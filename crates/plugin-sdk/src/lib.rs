//! The plugin SDK: serve a Berth (or Docker legacy) plugin on a UNIX socket in a few lines.
//!
//! ```no_run
//! # async fn run() -> Result<(), berth_plugin_sdk::SdkError> {
//! use berth_plugin_sdk::{Plugin, HandlerError};
//! Plugin::builder("hello")
//!     .author("Me")
//!     .volume(|mut m| async move { m.host_path = format!("/srv{}", m.host_path); Ok::<_, HandlerError>(m) })
//!     .build()
//!     .serve_until_signal("/run/docker/plugin.sock")
//!     .await
//! # }
//! ```
//!
//! The builder answers the handshakes chosen with [`PluginBuilder::answer`] (v2, v1 and
//! `/Plugin.Activate` by default), routes extension-point messages to typed handlers, and the server
//! speaks HTTP/1.1 keep-alive on a UNIX socket with a thread per engine connection and blocking
//! reads (`httparse` for the head; bounded heads and bodies; chunked bodies and
//! `Expect: 100-continue` understood), with graceful shutdown on SIGTERM, ctrl-c or any future.
//! Handlers are async and run on their connection's thread through the runtime that called
//! `serve` (two system calls a request: read, write). Handler errors become `500 {"Err": "..."}`
//! written in one piece; undecodable
//! requests `400` with a plain-text reason; unknown paths `404` (= "not interested"). Each call's
//! remaining budget (the engine's `Berth-Deadline-Ms` header) is readable by its handler through
//! [`budget::remaining`]; [`budget::within_budget`] stops work the engine no longer waits for.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod budget;
mod server;
mod wire;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_plugin_protocol::legacy::ActivateResponse;
use berth_plugin_protocol::mvp::{
    self, ApiSubscription, EventSubscription, HandshakeV1, HandshakeV2, NetworkEvent,
    NetworkMessage, Subscriptions, VolumeEvent, VolumeMessage,
};
use berth_plugin_protocol::pattern::ApiPattern;
use berth_plugin_protocol::powerstrip::{
    ClientRequest, HookRequest, POWERSTRIP_PROTOCOL_VERSION, PostHookReply, PreHookReply,
    ServerResponse,
};
use berth_plugin_protocol::sync::{SyncReason, SyncRequest, SyncSubscription, V2_SYNC_PATH};
use berth_plugin_protocol::{FailurePolicy, Protocol, legacy};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use berth_plugin_protocol as protocol;
pub use http::StatusCode;

/// Errors of the SDK server.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// Binding the socket failed.
    #[error("binding {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    /// Installing a signal handler failed.
    #[error("installing signal handler: {0}")]
    Signal(std::io::Error),
}

/// An error returned by a handler: sent as `500 {"Err": message}` (or the given status).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// HTTP status of the reply.
    pub status: u16,
    /// Error text, sent as `Err`.
    pub message: String,
}

impl HandlerError {
    /// A 500 error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
        }
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// A raw reply: status, content type and body, written in one piece.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Content-Type header.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// `200` with `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => Self::json_bytes(Bytes::from(v)),
            Err(e) => Self::error(500, &format!("encoding reply: {e}")),
        }
    }

    /// `200` with `body`, already JSON.
    pub fn json_bytes(body: Bytes) -> Self {
        Self {
            status: StatusCode::OK,
            content_type: "application/json",
            body,
        }
    }

    /// `status` with `{"Err": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "Err": message }).to_string();
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type: "application/json",
            body: Bytes::from(body),
        }
    }

    /// `status` with a plain-text body.
    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(text.to_owned()),
        }
    }

    /// `404 page not found`, the "not interested / not implemented" answer.
    pub fn not_found() -> Self {
        Self::text(404, "404 page not found")
    }
}

/// A route handler: raw request body in, reply out.
pub type Handler = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Reply> + Send + Sync>;

/// Runs before routing with the request's method and path; `Some(reply)` answers instead of the
/// route. Used by test plugins to inject latency, hangs and failures.
pub type Interceptor =
    Arc<dyn Fn(String, String) -> BoxFuture<'static, Option<Reply>> + Send + Sync>;

/// Counters of a running plugin server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
}

impl Stats {
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Which handshakes a plugin answers (the others get 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// `/v2/handshake`.
    pub v2: bool,
    /// `/v1/handshake`.
    pub v1: bool,
    /// `/Plugin.Activate`.
    pub activate: bool,
}

/// A built plugin, ready to serve.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) routes: Arc<HashMap<String, Handler>>,
    pub(crate) interceptor: Option<Interceptor>,
    pub(crate) stats: Arc<Stats>,
}

impl Plugin {
    /// Starts a builder for a plugin called `name`.
    pub fn builder(name: impl Into<String>) -> PluginBuilder {
        PluginBuilder::new(name)
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The paths this plugin answers.
    pub fn paths(&self) -> BTreeSet<String> {
        self.routes.keys().cloned().collect()
    }
}

/// Builder of a [`Plugin`].
pub struct PluginBuilder {
    name: String,
    author: String,
    org: String,
    website: String,
    version: String,
    answers: Answers,
    interests: Vec<String>,
    subscriptions: Subscriptions,
    implements: Vec<String>,
    deadline_ms: Option<u64>,
    failure_policy: Option<FailurePolicy>,
    routes: HashMap<String, Handler>,
    interceptor: Option<Interceptor>,
    stats: Arc<Stats>,
}

impl PluginBuilder {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            author: String::new(),
            org: String::new(),
            website: String::new(),
            version: String::new(),
            answers: Answers {
                v2: true,
                v1: true,
                activate: true,
            },
            interests: Vec::new(),
            subscriptions: Subscriptions::default(),
            implements: Vec::new(),
            deadline_ms: None,
            failure_policy: None,
            routes: HashMap::new(),
            interceptor: None,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Author shown in the handshake.
    pub fn author(mut self, v: impl Into<String>) -> Self {
        self.author = v.into();
        self
    }

    /// Organisation shown in the handshake.
    pub fn org(mut self, v: impl Into<String>) -> Self {
        self.org = v.into();
        self
    }

    /// Website shown in the handshake.
    pub fn website(mut self, v: impl Into<String>) -> Self {
        self.website = v.into();
        self
    }

    /// Plugin version (v2 handshake).
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }

    /// Which handshakes to answer; the others are 404.
    pub fn answer(mut self, answers: Answers) -> Self {
        self.answers = answers;
        self
    }

    /// Answer only these handshake families.
    pub fn answer_only(self, protocols: &[Protocol]) -> Self {
        self.answer(Answers {
            v2: protocols.contains(&Protocol::V2),
            v1: protocols.contains(&Protocol::V1),
            activate: protocols.contains(&Protocol::Activate),
        })
    }

    /// Requested per-call deadline (v2 handshake).
    pub fn deadline_ms(mut self, ms: u64) -> Self {
        self.deadline_ms = Some(ms);
        self
    }

    /// Requested failure policy (v2 handshake).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = Some(policy);
        self
    }

    /// Adds an `Implements` entry to the `/Plugin.Activate` answer (`VolumeDriver`, ...).
    pub fn implements(mut self, kind: impl Into<String>) -> Self {
        let kind = kind.into();
        if !self.implements.contains(&kind) {
            self.implements.push(kind);
        }
        self
    }

    /// The server's counters (shared with handlers built after this call).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Sets an [`Interceptor`].
    pub fn interceptor<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Reply>> + Send + 'static,
    {
        self.interceptor = Some(Arc::new(move |m, p| Box::pin(f(m, p))));
        self
    }

    /// A raw route.
    pub fn route_raw<F, Fut>(mut self, path: impl Into<String>, f: F) -> Self
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        self.routes
            .insert(path.into(), Arc::new(move |b| Box::pin(f(b))));
        self
    }

    /// A typed JSON route: the body (empty = `{}`) is decoded leniently into `Req`; `Ok` is sent as
    /// 200 JSON, `Err` as `{"Err"}` with the error's status. Use it for any legacy
    /// `/<Interface>.<Method>` call.
    pub fn route_json<Req, Resp, F, Fut>(self, path: impl Into<String>, f: F) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.route_decoded(path, move |req: Req| {
            let f = f.clone();
            async move {
                match f(req).await {
                    Ok(resp) => Reply::json(&resp),
                    Err(e) => Reply::error(e.status, &e.message),
                }
            }
        })
    }

    /// A route whose body (empty = `{}`) is decoded into `Req` before `f` sees it; a body that
    /// does not decode is answered 400.
    fn route_decoded<Req, F, Fut>(self, path: impl Into<String>, f: F) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        let f = Arc::new(f);
        self.route_raw(path, move |body: Bytes| {
            let f = f.clone();
            async move {
                match decode::<Req>(&body) {
                    Ok(req) => f(req).await,
                    Err(e) => Reply::text(400, &format!("decoding request: {e}")),
                }
            }
        })
    }

    fn add_interest(&mut self, point: &str) {
        if !self.interests.iter().any(|i| i == point) {
            self.interests.push(point.to_owned());
        }
    }

    /// The `volume` extension point: one handler for the seed's v1 call (`/v1/volume/volumes`, and
    /// `/v1/volumes`) and for every v2 volume event (`/v2/volume/<event>`; `Event` is set). Return
    /// the message with the (possibly new) `HostPath`. Subscribes to every event unless
    /// [`Self::volume_events`] narrows it.
    pub fn volume<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(VolumeMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<VolumeMessage, E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.add_interest(mvp::VOLUME);
        if self.subscriptions.volume.is_none() {
            self.subscriptions.volume = Some(EventSubscription {
                events: VolumeEvent::ALL.to_vec(),
            });
        }
        let f = Arc::new(f);
        let mut paths: Vec<(String, Option<VolumeEvent>)> = vec![
            (mvp::V1_VOLUME_PATH.to_owned(), None),
            (mvp::V1_VOLUME_PATH_ALT.to_owned(), None),
        ];
        paths.extend(
            VolumeEvent::ALL
                .iter()
                .filter_map(|e| e.path(Protocol::V2).map(|p| (p, Some(*e)))),
        );
        for (path, event) in paths {
            let f = f.clone();
            self = self.route_json(path, move |mut m: VolumeMessage| {
                let f = f.clone();
                async move {
                    if m.event.is_none() {
                        m.event = event;
                    }
                    let is_v1 = event.is_none();
                    let mut out = f(m).await.map_err(Into::into)?;
                    out.err = None;
                    if is_v1 {
                        // The seed's reply is exactly {HostPath, ContainerID}.
                        out = VolumeMessage::v1(out.host_path, out.container_id);
                    }
                    Ok::<_, HandlerError>(out)
                }
            });
        }
        self
    }

    /// Narrows the v2 volume subscription to `events`.
    pub fn volume_events(mut self, events: &[VolumeEvent]) -> Self {
        self.add_interest(mvp::VOLUME);
        self.subscriptions.volume = Some(EventSubscription {
            events: events.to_vec(),
        });
        self
    }

    /// The `network` extension point: one handler for `/v1/network/<event>` and
    /// `/v2/network/<event>` (`Event` is always set). Return the fields to change (or the message).
    pub fn network<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(NetworkMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<NetworkMessage, E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.add_interest(mvp::NETWORK);
        if self.subscriptions.network.is_none() {
            self.subscriptions.network = Some(EventSubscription {
                events: NetworkEvent::ALL.to_vec(),
            });
        }
        let f = Arc::new(f);
        for event in NetworkEvent::ALL {
            for proto in [Protocol::V1, Protocol::V2] {
                let Some(path) = event.path(proto) else {
                    continue;
                };
                let f = f.clone();
                self = self.route_json(path, move |mut m: NetworkMessage| {
                    let f = f.clone();
                    async move {
                        m.event = Some(event);
                        let mut out = f(m).await.map_err(Into::into)?;
                        out.err = None;
                        Ok::<_, HandlerError>(out)
                    }
                });
            }
        }
        self
    }

    /// Narrows the v2 network subscription to `events`.
    pub fn network_events(mut self, events: &[NetworkEvent]) -> Self {
        self.add_interest(mvp::NETWORK);
        self.subscriptions.network = Some(EventSubscription {
            events: events.to_vec(),
        });
        self
    }

    /// The v2 `sync` message (catch-up): `f` gets the objects the engine says this plugin
    /// handles (its volumes with their mount ids and users, its networks and endpoints, the
    /// containers using them) after each load, daemon boot, restart of its container and upgrade,
    /// and reconciles the plugin's own state with them (`docs/protocol.md#v2-sync`). Subscribes to
    /// every reason unless [`Self::sync_reasons`] narrows it. v1 plugins never get it.
    pub fn sync<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(SyncRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.add_interest(mvp::SYNC);
        if self.subscriptions.sync.is_none() {
            self.subscriptions.sync = Some(SyncSubscription::default());
        }
        let f = Arc::new(f);
        self.route_json(V2_SYNC_PATH, move |req: SyncRequest| {
            let f = f.clone();
            async move {
                f(req).await.map_err(Into::into)?;
                Ok::<_, HandlerError>(serde_json::json!({}))
            }
        })
    }

    /// Narrows the `sync` subscription to `reasons`.
    pub fn sync_reasons(mut self, reasons: &[SyncReason]) -> Self {
        self.add_interest(mvp::SYNC);
        self.subscriptions.sync = Some(SyncSubscription {
            reasons: reasons.to_vec(),
        });
        self
    }

    /// Declares the `api` interest and returns the api subscription to extend.
    fn api_subscription(&mut self) -> &mut ApiSubscription {
        self.add_interest(mvp::API);
        // JSON bodies come as JSON values (`BodyJSON`): nothing to unescape here, nothing for the
        // engine to escape. Replies mirror the form of each request, so a host that sends `Body`
        // text (v1, or one that ignores the flag) gets text back.
        self.subscriptions
            .api
            .get_or_insert_with(|| ApiSubscription {
                body_json: true,
                ..ApiSubscription::default()
            })
    }

    /// Serves `handler` on the v1 and the v2 path of one api hook. The handler answers `None`
    /// when it changed nothing: that reply (`unchanged`, the short form without `Modified…`) is
    /// sent as it is, with no encoding, as most hooks of an observing or filtering plugin end.
    fn api_routes<Resp, H, Fut>(
        mut self,
        paths: [&str; 2],
        unchanged: &'static [u8],
        handler: H,
    ) -> Self
    where
        Resp: Serialize + Send + 'static,
        H: Fn(HookRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Resp>, HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        for path in paths {
            let handler = handler.clone();
            self = self.route_decoded(path, move |req: HookRequest| {
                let handler = handler.clone();
                async move {
                    match handler(req).await {
                        Ok(None) => Reply::json_bytes(Bytes::from_static(unchanged)),
                        Ok(Some(resp)) => Reply::json(&resp),
                        Err(e) => Reply::error(e.status, &e.message),
                    }
                }
            });
        }
        self
    }

    /// An api pre-hook for requests matching `patterns` (v2 subscription; v1 plugins get every
    /// request). Return the request to pass on.
    pub fn api_pre<F, Fut, E>(mut self, patterns: &[&str], f: F) -> Self
    where
        F: Fn(ClientRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ClientRequest, E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.api_subscription()
            .pre
            .extend(patterns.iter().map(|p| ApiPattern::parse(p)));
        let f = Arc::new(f);
        let paths = [mvp::V1_API_PRE_PATH, mvp::V2_API_PRE_PATH];
        self.api_routes(paths, PreHookReply::UNCHANGED_JSON, move |req| {
            let f = f.clone();
            async move {
                let form = req.client_request.body_form;
                let seen = req.client_request.clone();
                let mut out = f(req.client_request).await.map_err(Into::into)?;
                out.body_form = form;
                Ok((out != seen).then_some(PreHookReply {
                    protocol_version: POWERSTRIP_PROTOCOL_VERSION,
                    hook_type: None,
                    modified_client_request: Some(out),
                }))
            }
        })
    }

    /// An api post-hook for requests matching `patterns`. Return the response to pass on.
    pub fn api_post<F, Fut, E>(mut self, patterns: &[&str], f: F) -> Self
    where
        F: Fn(ClientRequest, ServerResponse) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ServerResponse, E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        self.api_subscription()
            .post
            .extend(patterns.iter().map(|p| ApiPattern::parse(p)));
        let f = Arc::new(f);
        let paths = [mvp::V1_API_POST_PATH, mvp::V2_API_POST_PATH];
        self.api_routes(paths, PostHookReply::UNCHANGED_JSON, move |req| {
            let f = f.clone();
            async move {
                let resp = req.server_response.unwrap_or_default();
                let form = resp.body_form;
                let seen = resp.clone();
                let mut out = f(req.client_request, resp).await.map_err(Into::into)?;
                out.body_form = form;
                Ok((out != seen).then_some(PostHookReply {
                    protocol_version: POWERSTRIP_PROTOCOL_VERSION,
                    hook_type: None,
                    modified_server_response: Some(out),
                }))
            }
        })
    }

    /// Finishes the plugin: adds the handshake routes.
    pub fn build(mut self) -> Plugin {
        // `sync` is a v2 message: a plugin with no other interest has nothing to say over v1.
        let v1_points = self.interests.iter().filter(|i| *i != mvp::SYNC).count();
        if self.answers.v1 && (v1_points > 0 || self.interests.is_empty()) {
            let hs = HandshakeV1 {
                // `sync` is a v2 message.
                interested_in: self
                    .interests
                    .iter()
                    .filter(|i| *i != mvp::SYNC)
                    .cloned()
                    .collect(),
                name: self.name.clone(),
                author: self.author.clone(),
                org: self.org.clone(),
                website: self.website.clone(),
            };
            let reply = Reply::json(&hs);
            self = self.route_raw(mvp::V1_HANDSHAKE_PATH, move |_| {
                let r = reply.clone();
                async move { r }
            });
        }
        if self.answers.v2 {
            let hs = HandshakeV2 {
                protocol_version: 2,
                name: self.name.clone(),
                version: self.version.clone(),
                author: self.author.clone(),
                org: self.org.clone(),
                website: self.website.clone(),
                interested_in: self.interests.clone(),
                subscriptions: self.subscriptions.clone(),
                deadline_ms: self.deadline_ms,
                failure_policy: self.failure_policy,
            };
            let reply = Reply::json(&hs);
            self = self.route_raw(mvp::V2_HANDSHAKE_PATH, move |_| {
                let r = reply.clone();
                async move { r }
            });
        }
        if self.answers.activate {
            let reply = Reply::json(&ActivateResponse {
                implements: self.implements.clone(),
            });
            self = self.route_raw(legacy::ACTIVATE_PATH, move |_| {
                let r = reply.clone();
                async move { r }
            });
        }
        Plugin {
            routes: Arc::new(self.routes),
            interceptor: self.interceptor,
            stats: self.stats,
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let trimmed = body.iter().all(|b| b.is_ascii_whitespace());
    if trimmed {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(body)
    }
}
