//! The plugin's HTTP server: hyper 1 HTTP/1.1 (keep-alive) over a tokio `UnixListener`, routing by
//! path, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::{Plugin, Reply, SdkError};

impl Plugin {
    /// Binds `path` (removing a stale socket first) and serves until `shutdown` resolves; the
    /// socket file is removed on the way out.
    pub async fn serve(
        self,
        path: impl AsRef<Path>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SdkError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|source| SdkError::Bind {
            path: path.display().to_string(),
            source,
        })?;
        self.serve_listener(listener, shutdown).await;
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    /// Serves until SIGTERM or ctrl-c.
    pub async fn serve_until_signal(self, path: impl AsRef<Path>) -> Result<(), SdkError> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(SdkError::Signal)?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        self.serve(path, shutdown).await
    }

    /// Serves connections from `listener` until `shutdown` resolves, then lets in-flight requests
    /// finish (connections close after their current request).
    pub async fn serve_listener(self, listener: UnixListener, shutdown: impl Future<Output = ()>) {
        let mut stops: Vec<Weak<ConnStop>> = Vec::new();
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    let stop = Arc::new(ConnStop::default());
                    stops.retain(|s| s.strong_count() > 0);
                    stops.push(Arc::downgrade(&stop));
                    conns.spawn(self.clone().serve_connection(stream, stop));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        for stop in stops.iter().filter_map(Weak::upgrade) {
            stop.stop();
        }
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            conns.abort_all();
        }
    }

    /// Serves one keep-alive connection; once `stop` fires, the connection finishes its current
    /// request and closes.
    async fn serve_connection(self, stream: UnixStream, stop: Arc<ConnStop>) {
        let plugin = self;
        let svc = service_fn(move |req| {
            let plugin = plugin.clone();
            async move { Ok::<_, Infallible>(plugin.handle(req).await) }
        });
        // Registered for reads only (see `read_interest`); if that fails the connection is
        // closed, which the engine reports as a transport error of its call.
        let Ok(io) = crate::read_interest::ReadInterestStream::new(stream) else {
            return;
        };
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut stopping = false;
        let _ = std::future::poll_fn(|cx| {
            if !stopping {
                stop.waker.register(cx.waker());
                if stop.stopped.load(Ordering::Acquire) {
                    conn.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
            conn.as_mut().poll(cx)
        })
        .await;
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let header = parts.headers.get(crate::budget::DEADLINE_HEADER).cloned();
        crate::budget::scope(header.as_ref(), self.dispatch(parts, body)).await
    }

    async fn dispatch(&self, parts: http::request::Parts, body: Incoming) -> Response<Full<Bytes>> {
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return into_response(Reply::text(400, &format!("reading body: {e}"))),
        };
        let path = parts.uri.path();
        if let Some(icpt) = &self.interceptor
            && let Some(reply) = icpt(parts.method.to_string(), path.to_owned()).await
        {
            return into_response(reply);
        }
        let reply = match self.routes.get(path) {
            Some(h) if parts.method == Method::POST => h(body).await,
            Some(_) => Reply::text(405, "method not allowed"),
            None => Reply::not_found(),
        };
        into_response(reply)
    }
}

/// The stop signal of one connection: checked with one atomic load per wake-up of the connection
/// (a channel would be polled, and lock, on every request).
#[derive(Default)]
struct ConnStop {
    stopped: AtomicBool,
    waker: AtomicWaker,
}

impl ConnStop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    let content_type = if reply.content_type == JSON {
        Ok(HeaderValue::from_static(JSON))
    } else {
        HeaderValue::from_str(reply.content_type)
    };
    if let Ok(v) = content_type {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}
