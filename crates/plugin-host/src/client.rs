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

mod error;

pub use error::{CallErrorKind, PluginError, fmt_duration, fmt_size, snippet};

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

/// hyper's half of a connection that reads and writes the socket; `None` once it ended (dropped
/// then, which fails whatever still waits on it).
type Driver = Option<Pin<Box<http1::Connection<TokioIo<UnixStream>, Full<Bytes>>>>>;

/// A kept-alive connection: the request half, the connection half and the deadline timer. The
/// caller's task drives the connection half while its call runs (no task of its own: handing
/// each request and reply between two tasks cost two wake-ups per call, across worker threads in
/// the daemon's multi-threaded runtime); an idle connection is not polled, so a close by the
/// plugin is noticed by the next call, which then retries on a new connection. The timer's
/// allocation lives as long as the connection, but an idle connection's timer is disarmed (see
/// [`PluginClient::post_bounded`]).
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Driver,
    timer: Pin<Box<Sleep>>,
}

/// The connection half: a request half and its driver.
struct Link {
    sender: SendRequest<Full<Bytes>>,
    driver: Driver,
}

/// Runs `fut` while driving the connection. Once the connection has ended (a close after the
/// reply, say), `fut` resolves from what hyper delivered before the end (a reply, or hyper's
/// error for a request it could not complete).
async fn driving<T>(driver: &mut Driver, fut: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(fut);
    if let Some(conn) = driver.as_mut() {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            ended = conn.as_mut() => {
                *driver = None;
                if let Err(e) = ended {
                    tracing::debug!("plugin connection ended: {e}");
                }
            }
        }
    }
    fut.await
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

/// The plugin's end of a kept-alive connection was gone before it took the whole request:
/// writing it failed (`EPIPE`), or the plugin closed with our bytes unread (`ECONNRESET`). This
/// is the keep-alive race (the plugin closed the idle connection just as the next call took
/// it), and the plugin cannot have acted on the request, so it is safe to send again. A plugin
/// that read the request and then died ends the connection with EOF instead, which is never
/// retried.
fn never_taken(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            );
        }
        source = s.source();
    }
    false
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
            Some(Conn {
                sender,
                driver,
                mut timer,
            }) => {
                timer.as_mut().reset(until);
                (Some(Link { sender, driver }), timer)
            }
            None => (None, Box::pin(tokio::time::sleep_until(until))),
        };
        let outcome = tokio::select! {
            biased;
            r = self.post_inner(path, body, reused, until, max_reply) => r,
            () = timer.as_mut() => return Err(self.error(path, CallErrorKind::Deadline(deadline))),
        };
        match outcome {
            Ok((reply, Link { sender, driver })) => {
                // An idle connection keeps no armed timer. One left in the runtime's timer wheel
                // until its deadline (the api family's cap is seconds) makes every park of the
                // runtime wait with a timeout, which costs a request no plugin hooks 3-5 % here
                // (README, "Idle hooks"); a replaced, never-polled `Sleep` is not in the wheel.
                timer.set(tokio::time::sleep_until(until));
                self.put_idle(Conn {
                    sender,
                    driver,
                    timer,
                });
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
        reused: Option<Link>,
        until: Instant,
        max_reply: usize,
    ) -> Result<(RawReply, Link), SendError> {
        let bounds = (until, max_reply);
        if let Some(link) = reused {
            // A reused connection may have been closed by the plugin (restart, idle close) before
            // our request went out; then retry once on a fresh one. Anything later is not retried.
            match Self::send_once(link, path, body.clone(), true, bounds).await {
                Err(SendError::Stale(_)) => {}
                other => return other,
            }
        }
        let link = self.dial().await?;
        Self::send_once(link, path, body, false, bounds).await
    }

    async fn send_once(
        Link {
            mut sender,
            mut driver,
        }: Link,
        path: &str,
        body: Bytes,
        reused: bool,
        (until, max_reply): (Instant, usize),
    ) -> Result<(RawReply, Link), SendError> {
        // An idle connection is not polled: a close by the plugin is seen here.
        if let Err(e) = driving(&mut driver, sender.ready()).await {
            return Err(if reused {
                SendError::Stale(e.to_string())
            } else {
                SendError::Other(e.to_string())
            });
        }
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
        let resp = match driving(&mut driver, sender.send_request(req)).await {
            Ok(r) => r,
            Err(e) if reused && (e.is_canceled() || e.is_closed() || never_taken(&e)) => {
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
        let body = driving(
            &mut driver,
            Limited::new(resp.into_body(), max_reply).collect(),
        )
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                SendError::TooLarge(max_reply)
            } else {
                SendError::Other(format!("reading reply: {e}"))
            }
        })?
        .to_bytes();
        Ok((RawReply { status, body }, Link { sender, driver }))
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = berth_state::lock(&self.idle);
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        if conn.sender.is_closed() || conn.driver.is_none() {
            return;
        }
        let mut idle = berth_state::lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn dial(&self) -> Result<Link, SendError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(SendError::Connect)?;
        self.dials.fetch_add(1, Ordering::Relaxed);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Other(format!("http handshake: {e}")))?;
        Ok(Link {
            sender,
            driver: Some(Box::pin(conn)),
        })
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
mod tests;
