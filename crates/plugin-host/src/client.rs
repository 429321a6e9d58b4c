//! The typed HTTP-over-UDS client of one plugin: HTTP/1.1 keep-alive over the plugin's UNIX socket
//! (one idle connection kept per plugin, a new one dialled when it dropped or when calls overlap),
//! a deadline on every call (sent to the plugin as its remaining budget in the
//! [`DEADLINE_HEADER`] header), a reply size limit enforced while the body streams in (a reply is
//! never buffered past it), and Docker's lenient response rules: success is exactly 200, any
//! Content-Type, an `Err`/`Error` in a 200 or non-200 body is an error with that text, plain-text
//! error bodies are used verbatim, and 404 is reported as [`CallErrorKind::NotFound`] ("not
//! implemented / not interested").

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_plugin_protocol::{DOCKER_PLUGIN_MEDIA_TYPE, error_text, error_text_in};

use crate::limits::DEFAULT_MAX_REPLY;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use tokio::time::{Instant, Sleep};

/// How many idle connections a client keeps (sequential use needs one).
const MAX_IDLE: usize = 4;

pub use berth_plugin_protocol::DEADLINE_HEADER;

/// A failed plugin call. Displays as `plugin "flocker": POST /v1/volume/volumes: deadline 5s exceeded`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin \"{plugin}\": {call}: {kind}")]
pub struct PluginError {
    /// Plugin name (or socket path before the handshake named it).
    pub plugin: String,
    /// `METHOD /path`.
    pub call: String,
    /// What went wrong.
    pub kind: CallErrorKind,
}

impl PluginError {
    /// The plugin answered 404: the call is not implemented / the plugin is not interested.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, CallErrorKind::NotFound)
    }

    /// The socket is missing or refuses connections: the plugin is not up (yet).
    pub fn is_not_up(&self) -> bool {
        matches!(self.kind, CallErrorKind::NotUp { .. })
    }

    /// The plugin is not Active (failed, crashed, disabled, still starting): the call was not made.
    pub fn is_not_active(&self) -> bool {
        matches!(self.kind, CallErrorKind::NotActive { .. })
    }

    /// The call's deadline fired.
    pub fn is_deadline(&self) -> bool {
        matches!(self.kind, CallErrorKind::Deadline(_))
    }

    /// The reply was larger than the call's size limit.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, CallErrorKind::TooLarge { .. })
    }
}

/// The reason of a [`PluginError`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallErrorKind {
    /// The deadline fired before a complete answer.
    #[error("deadline {} exceeded", fmt_duration(*.0))]
    Deadline(Duration),
    /// The plugin is not Active, so the call was not made (fail closed, `docs/semantics.md`).
    #[error("plugin is not active (state {state}): {reason}")]
    NotActive {
        /// The plugin's state (`disabled`, `failed`, `pending`).
        state: String,
        /// Why (the operator disabled it, or its last error).
        reason: String,
    },
    /// Socket missing or connection refused.
    #[error("plugin not up: connecting to {socket}: {reason}")]
    NotUp {
        /// Socket path.
        socket: String,
        /// OS error text.
        reason: String,
    },
    /// The reply was larger than the call's limit (the connection is dropped at the limit).
    #[error("reply exceeds the {} size limit", fmt_size(*.limit))]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Other transport failure (connection reset, protocol error).
    #[error("transport: {0}")]
    Transport(String),
    /// 404: not implemented / not interested.
    #[error("not implemented (404)")]
    NotFound,
    /// A non-200 status; `text` is the `Err` of a JSON body or the raw body.
    #[error("{text} (HTTP {status})")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error text.
        text: String,
    },
    /// A 200 reply carrying a non-empty `Err`/`Error`.
    #[error("{0}")]
    Plugin(String),
    /// The reply could not be decoded.
    #[error("decoding reply: {error}; body starts {snippet:?}")]
    Decode {
        /// Decoder message.
        error: String,
        /// The first bytes of the body.
        snippet: String,
    },
    /// The request could not be encoded.
    #[error("encoding request: {0}")]
    Encode(String),
}

/// `5s`, `1500ms`.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `16 MiB`, `512 KiB`, `100 bytes`.
pub fn fmt_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The first bytes of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let end = body.len().min(80);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// `value` as a JSON request body, to send to any number of plugins with
/// [`PluginClient::call_encoded`].
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, serde_json::Error> {
    let mut body = Vec::with_capacity(256);
    serde_json::to_writer(&mut body, value)?;
    Ok(Bytes::from(body))
}

/// A raw reply.
#[derive(Debug, Clone)]
pub struct RawReply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

/// The client of one plugin socket.
pub struct PluginClient {
    name: Mutex<String>,
    socket: PathBuf,
    idle: Mutex<Vec<Conn>>,
    dials: AtomicU64,
}

/// A kept-alive connection with its deadline timer. The timer lives as long as the connection, so
/// a call only moves its deadline (an atomic store while the new deadline is later than the one
/// the timer wheel holds) instead of registering a new timer every call.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    timer: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for PluginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginClient")
            .field("name", &self.name())
            .field("socket", &self.socket)
            .finish()
    }
}

enum SendError {
    Connect(std::io::Error),
    TooLarge(usize),
    /// A reused connection was found closed before the request went out: safe to retry.
    Stale(String),
    Other(String),
}

/// The request headers every call carries (built once, cloned per call).
const HOST: HeaderValue = HeaderValue::from_static("plugin.berth.localhost");
const ACCEPT: HeaderValue = HeaderValue::from_static(DOCKER_PLUGIN_MEDIA_TYPE);
const JSON: HeaderValue = HeaderValue::from_static("application/json");

impl PluginClient {
    /// A client for the plugin `name` on `socket`. Nothing is dialled until the first call.
    pub fn new(name: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        Self {
            name: Mutex::new(name.into()),
            socket: socket.into(),
            idle: Mutex::new(Vec::new()),
            dials: AtomicU64::new(0),
        }
    }

    /// The name used in error messages.
    pub fn name(&self) -> String {
        berth_state::lock(&self.name).clone()
    }

    /// Renames (once the handshake told the plugin's name).
    pub fn set_name(&self, name: &str) {
        *berth_state::lock(&self.name) = name.to_owned();
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connections dialled so far.
    pub fn dials(&self) -> u64 {
        self.dials.load(Ordering::Relaxed)
    }

    /// Drops the idle connections (the next call dials).
    pub fn close_idle(&self) {
        berth_state::lock(&self.idle).clear();
    }

    fn error(&self, path: &str, kind: CallErrorKind) -> PluginError {
        PluginError {
            plugin: self.name(),
            call: format!("POST {path}"),
            kind,
        }
    }

    /// `POST path` with `body` (empty = no body), bounded by `deadline` and the default reply
    /// size limit ([`crate::limits::DEFAULT_MAX_REPLY`]). Returns the raw reply, whatever its
    /// status.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<RawReply, PluginError> {
        self.post_bounded(path, body, deadline, DEFAULT_MAX_REPLY)
            .await
    }

    /// Like [`Self::post_raw`] with the reply size limit `max_reply` (bytes): a longer reply fails
    /// with [`CallErrorKind::TooLarge`] as soon as the limit is crossed, without reading further.
    pub async fn post_bounded(
        &self,
        path: &str,
        body: Bytes,
        deadline: Duration,
        max_reply: usize,
    ) -> Result<RawReply, PluginError> {
        let until = Instant::now() + deadline;
        let (reused, mut timer) = match self.take_idle() {
            Some(Conn { sender, mut timer }) => {
                timer.as_mut().reset(until);
                (Some(sender), timer)
            }
            None => (None, Box::pin(tokio::time::sleep_until(until))),
        };
        let outcome = tokio::select! {
            biased;
            r = self.post_inner(path, body, reused, until, max_reply) => r,
            () = timer.as_mut() => return Err(self.error(path, CallErrorKind::Deadline(deadline))),
        };
        match outcome {
            Ok((reply, sender)) => {
                self.put_idle(Conn { sender, timer });
                Ok(reply)
            }
            Err(SendError::Connect(e)) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                        CallErrorKind::NotUp {
                            socket: self.socket.display().to_string(),
                            reason: e.to_string(),
                        }
                    }
                    _ => CallErrorKind::Transport(format!(
                        "connecting to {}: {e}",
                        self.socket.display()
                    )),
                };
                Err(self.error(path, kind))
            }
            Err(SendError::TooLarge(limit)) => {
                Err(self.error(path, CallErrorKind::TooLarge { limit }))
            }
            Err(SendError::Stale(e) | SendError::Other(e)) => {
                Err(self.error(path, CallErrorKind::Transport(e)))
            }
        }
    }

    /// Sends on `reused` if given, else on a new connection; returns the reply and the connection
    /// to keep.
    async fn post_inner(
        &self,
        path: &str,
        body: Bytes,
        reused: Option<SendRequest<Full<Bytes>>>,
        until: Instant,
        max_reply: usize,
    ) -> Result<(RawReply, SendRequest<Full<Bytes>>), SendError> {
        let bounds = (until, max_reply);
        if let Some(sender) = reused {
            // A reused connection may have been closed by the plugin (restart, idle close) before
            // our request went out; then retry once on a fresh one. Anything later is not retried.
            match Self::send_once(sender, path, body.clone(), true, bounds).await {
                Err(SendError::Stale(_)) => {}
                other => return other,
            }
        }
        let sender = self.dial().await?;
        Self::send_once(sender, path, body, false, bounds).await
    }

    async fn send_once(
        mut sender: SendRequest<Full<Bytes>>,
        path: &str,
        body: Bytes,
        reused: bool,
        (until, max_reply): (Instant, usize),
    ) -> Result<(RawReply, SendRequest<Full<Bytes>>), SendError> {
        let has_body = !body.is_empty();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path
            .parse()
            .map_err(|e| SendError::Other(format!("request path {path:?}: {e}")))?;
        let headers = req.headers_mut();
        headers.insert(http::header::HOST, HOST);
        headers.insert(http::header::ACCEPT, ACCEPT);
        if has_body {
            headers.insert(http::header::CONTENT_TYPE, JSON);
        }
        let budget = until.saturating_duration_since(Instant::now()).as_millis() as u64;
        headers.insert(DEADLINE_HEADER, HeaderValue::from(budget));
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) if reused && (e.is_canceled() || e.is_closed()) => {
                return Err(SendError::Stale(e.to_string()));
            }
            Err(e) => return Err(SendError::Other(e.to_string())),
        };
        let status = resp.status();
        // A declared length over the limit fails before a byte of the body is read; otherwise the
        // body is counted frame by frame and reading stops at the first frame past the limit.
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_reply as u64) {
            return Err(SendError::TooLarge(max_reply));
        }
        let body = Limited::new(resp.into_body(), max_reply)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    SendError::TooLarge(max_reply)
                } else {
                    SendError::Other(format!("reading reply: {e}"))
                }
            })?
            .to_bytes();
        Ok((RawReply { status, body }, sender))
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = berth_state::lock(&self.idle);
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() && c.sender.is_ready() {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = berth_state::lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(SendError::Connect)?;
        self.dials.fetch_add(1, Ordering::Relaxed);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Other(format!("http handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("plugin connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// `POST path` with `req` as JSON, Docker's response rules, decoding the reply into `Resp`
    /// (an empty 200 body reads as `{}`).
    pub async fn call<Req, Resp>(
        &self,
        path: &str,
        req: &Req,
        deadline: Duration,
    ) -> Result<Resp, PluginError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_bounded(path, req, deadline, DEFAULT_MAX_REPLY)
            .await
    }

    /// Like [`Self::call`] with the reply size limit `max_reply`.
    pub async fn call_bounded<Req, Resp>(
        &self,
        path: &str,
        req: &Req,
        deadline: Duration,
        max_reply: usize,
    ) -> Result<Resp, PluginError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body =
            encode_json(req).map_err(|e| self.error(path, CallErrorKind::Encode(e.to_string())))?;
        let reply = self.post_bounded(path, body, deadline, max_reply).await?;
        self.interpret(path, reply)
    }

    /// Like [`Self::call`] with the request already encoded as JSON (see [`encode_json`]): an event
    /// sent to many plugins is encoded once.
    pub async fn call_encoded<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Resp, PluginError> {
        let reply = self.post_raw(path, body, deadline).await?;
        self.interpret(path, reply)
    }

    /// Like [`Self::call`] with an empty request body (Activate, handshakes, GetCapabilities).
    pub async fn call_empty<Resp: DeserializeOwned>(
        &self,
        path: &str,
        deadline: Duration,
    ) -> Result<Resp, PluginError> {
        let reply = self.post_raw(path, Bytes::new(), deadline).await?;
        self.interpret(path, reply)
    }

    /// Applies Docker's response rules to a raw reply.
    pub fn interpret<Resp: DeserializeOwned>(
        &self,
        path: &str,
        reply: RawReply,
    ) -> Result<Resp, PluginError> {
        // The common case, a 200 JSON object, is decoded straight from the bytes; everything else
        // goes through the general rules below.
        if reply.status == StatusCode::OK
            && let Some(err) = error_text_in(&reply.body)
        {
            if let Some(text) = err {
                return Err(self.error(path, CallErrorKind::Plugin(text)));
            }
            return serde_json::from_slice(&reply.body).map_err(|e| {
                self.error(
                    path,
                    CallErrorKind::Decode {
                        error: e.to_string(),
                        snippet: snippet(&reply.body),
                    },
                )
            });
        }
        let json: Option<serde_json::Value> = if reply.body.iter().all(|b| b.is_ascii_whitespace())
        {
            Some(serde_json::Value::Object(serde_json::Map::new()))
        } else {
            serde_json::from_slice(&reply.body).ok()
        };
        if reply.status == StatusCode::NOT_FOUND {
            return Err(self.error(path, CallErrorKind::NotFound));
        }
        if reply.status != StatusCode::OK {
            let text = json
                .as_ref()
                .and_then(error_text)
                .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).trim().to_owned());
            return Err(self.error(
                path,
                CallErrorKind::Status {
                    status: reply.status.as_u16(),
                    text,
                },
            ));
        }
        let Some(json) = json else {
            let error = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(self.error(
                path,
                CallErrorKind::Decode {
                    error,
                    snippet: snippet(&reply.body),
                },
            ));
        };
        if let Some(text) = error_text(&json) {
            return Err(self.error(path, CallErrorKind::Plugin(text)));
        }
        serde_json::from_value(json).map_err(|e| {
            self.error(
                path,
                CallErrorKind::Decode {
                    error: e.to_string(),
                    snippet: snippet(&reply.body),
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// Serves canned raw HTTP responses, one per connection, in order.
    fn canned(dir: &Path, responses: Vec<(&'static str, &'static str)>) -> PathBuf {
        let sock = dir.join("canned.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            for r in responses {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let (status, body) = r;
                let raw = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/weird\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(raw.as_bytes()).await.unwrap();
                let _ = s.shutdown().await;
            }
        });
        sock
    }

    #[tokio::test]
    async fn docker_lenient_response_rules() {
        let d = tempfile::tempdir().unwrap();
        let sock = canned(
            d.path(),
            vec![
                ("200 OK", "{\"Mountpoint\":\"/m\",\"Unknown\":[1,2]}\n"),
                ("500 Internal Server Error", "{\"Err\":\"no device\"}"),
                ("400 Bad Request", "plain trouble"),
                ("404 Not Found", "not found"),
                ("201 Created", "{}"),
                ("200 OK", ""),
                ("200 OK", "{\"Error\":\"ipam no\"}"),
                ("200 OK", "<html>"),
            ],
        );
        let c = PluginClient::new("drv", &sock);
        let t = Duration::from_secs(2);
        let v: serde_json::Value = c
            .call("/VolumeDriver.Mount", &serde_json::json!({}), t)
            .await
            .unwrap();
        assert_eq!(v["Mountpoint"], "/m");
        let e = c
            .call::<_, serde_json::Value>("/VolumeDriver.Mount", &(), t)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"drv\": POST /VolumeDriver.Mount: no device (HTTP 500)"
        );
        let e = c
            .call::<_, serde_json::Value>("/x", &(), t)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"drv\": POST /x: plain trouble (HTTP 400)"
        );
        let e = c
            .call::<_, serde_json::Value>("/x", &(), t)
            .await
            .unwrap_err();
        assert!(e.is_not_found());
        let e = c
            .call::<_, serde_json::Value>("/x", &(), t)
            .await
            .unwrap_err();
        assert!(
            matches!(e.kind, CallErrorKind::Status { status: 201, .. }),
            "success is 200 only"
        );
        let v: serde_json::Value = c.call_empty("/Plugin.Activate", t).await.unwrap();
        assert_eq!(v, serde_json::json!({}), "empty 200 body reads as {{}}");
        let e = c
            .call_empty::<serde_json::Value>("/IpamDriver.RequestPool", t)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"drv\": POST /IpamDriver.RequestPool: ipam no"
        );
        let e = c
            .call_empty::<serde_json::Value>("/x", t)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("decoding reply")
                && e.to_string().contains("body starts \"<html>\""),
            "{e}"
        );
        assert_eq!(c.dials(), 8, "Connection: close means a new dial each time");
    }

    /// Answers the first request on each connection, then reads but never answers.
    fn answers_once(dir: &Path) -> PathBuf {
        let sock = dir.join("once.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                    s.write_all(ok.as_bytes()).await.unwrap();
                    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                });
            }
        });
        sock
    }

    /// Two calls on one connection to [`answers_once`]: the first with `first` as its deadline
    /// (answered), the second with `second` (never answered). Returns how long the second took.
    async fn second_call_on_reused_connection(
        sock: &Path,
        first: Duration,
        second: Duration,
    ) -> Duration {
        let c = PluginClient::new("p", sock);
        let _: serde_json::Value = c.call_empty("/x", first).await.unwrap();
        let t = std::time::Instant::now();
        let e = c
            .call_empty::<serde_json::Value>("/x", second)
            .await
            .unwrap_err();
        assert!(e.is_deadline(), "{e}");
        assert_eq!(c.dials(), 1, "the second call reused the connection");
        t.elapsed()
    }

    #[tokio::test]
    async fn deadline_holds_on_a_reused_connection() {
        let d = tempfile::tempdir().unwrap();
        let sock = answers_once(d.path());
        // The connection's timer was last set far out: the next call's shorter deadline fires.
        let took = second_call_on_reused_connection(
            &sock,
            Duration::from_secs(30),
            Duration::from_millis(150),
        )
        .await;
        assert!(took < Duration::from_secs(5), "{took:?}");
        // The timer was last set close and has not fired yet: a later deadline is honoured in
        // full, not cut short when the earlier setting comes due.
        let took = second_call_on_reused_connection(
            &sock,
            Duration::from_millis(100),
            Duration::from_millis(400),
        )
        .await;
        assert!(took >= Duration::from_millis(390), "{took:?}");
    }

    #[tokio::test]
    async fn deadline_names_plugin_call_and_duration() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("mute.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        let c = PluginClient::new("flocker", &sock);
        let e = c
            .call::<_, serde_json::Value>("/v1/volume/volumes", &(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"flocker\": POST /v1/volume/volumes: deadline 200ms exceeded"
        );
        let e = PluginClient::new("gone", d.path().join("none.sock"))
            .call_empty::<()>("/x", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.is_not_up(), "{e}");
        assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
    }

    /// Streams an endless chunked 200 reply to each request; counts the bytes it managed to send.
    fn endless(dir: &Path, sent: Arc<AtomicU64>) -> PathBuf {
        let sock = dir.join("endless.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                    while s.write_all(chunk.as_bytes()).await.is_ok() {
                        sent.fetch_add(0x10000, Ordering::Relaxed);
                    }
                });
            }
        });
        sock
    }

    #[tokio::test]
    async fn endless_reply_fails_at_the_size_limit_without_buffering_past_it() {
        let d = tempfile::tempdir().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let sock = endless(d.path(), sent.clone());
        let c = PluginClient::new("hose", &sock);
        let limit = 1 << 20;
        let t = std::time::Instant::now();
        let e = c
            .call_bounded::<_, serde_json::Value>(
                "/VolumeDriver.Get",
                &(),
                Duration::from_secs(20),
                limit,
            )
            .await
            .unwrap_err();
        assert!(e.is_too_large(), "{e}");
        assert_eq!(
            e.to_string(),
            "plugin \"hose\": POST /VolumeDriver.Get: reply exceeds the 1 MiB size limit"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "failed fast, not at the deadline: {:?}",
            t.elapsed()
        );
        // The connection was dropped at the limit: the plugin can push at most the limit plus
        // what the socket buffers hold, never an unbounded stream.
        let stopped = sent.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let later = sent.load(Ordering::Relaxed);
        assert!(
            later < (limit as u64) + (8 << 20),
            "plugin pushed {later} bytes"
        );
        assert!(
            later - stopped <= 0x10000,
            "still streaming: {stopped} then {later}"
        );
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_fails_before_reading_the_body() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("big.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            // Claims 1 GiB, sends a few bytes, then stalls: only the header can end the call.
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n{\"a\":";
            s.write_all(head.as_bytes()).await.unwrap();
            std::future::pending::<()>().await;
        });
        let c = PluginClient::new("liar", &sock);
        let e = c
            .call_bounded::<_, serde_json::Value>("/x", &(), Duration::from_secs(20), 16 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"liar\": POST /x: reply exceeds the 16 MiB size limit"
        );
    }

    #[tokio::test]
    async fn each_call_carries_its_remaining_budget() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("budget.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            tx.send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .unwrap();
            let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
            s.write_all(ok.as_bytes()).await.unwrap();
        });
        let c = PluginClient::new("p", &sock);
        let _: serde_json::Value = c
            .call_empty("/x", Duration::from_millis(2500))
            .await
            .unwrap();
        let head = rx.recv().await.unwrap().to_ascii_lowercase();
        let ms: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("berth-deadline-ms: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no budget header in {head}"));
        assert!((2000..=2500).contains(&ms), "{ms}");
    }
}
