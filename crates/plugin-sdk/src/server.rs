//! The plugin's HTTP server: HTTP/1.1 keep-alive on a UNIX socket, a thread per engine
//! connection with blocking reads ([`crate::wire`]), routing by path, graceful shutdown.
//!
//! Why threads and blocking reads rather than async I/O: a plugin answers a few connections, one
//! small request at a time on each, and is called when it has not run for a while (an api hook
//! between other processes' turns). A blocked `read` is woken straight by the engine's write,
//! with little code and memory to bring back into the caches, where an async server's wake-up
//! goes through the reactor, the scheduler and the HTTP library first: with every process on one
//! CPU, an observing api hook cost 47–48.5 µs with the previous async server (tokio and hyper)
//! and 34.5–36.3 µs with this one (README, "The engine's part of a hook"), while the engine's
//! warm plugin call stayed the same. Handlers stay async: each runs to
//! completion on its connection's thread through the runtime's handle, so timers, I/O and spawned
//! tasks keep working (the runtime that called `serve` drives them).

use std::future::Future;
use std::io::Write;
use std::os::unix::net::{UnixListener as StdListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::wire::{ReadError, Reader, Request, put_reply, release_large};
use crate::{Plugin, Reply, SdkError};

/// How long a stop waits for requests in flight before it returns anyway.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// finish (connections close after their current request; after 10 s the server returns
    /// anyway). The calling runtime must keep running meanwhile: it drives the handlers' timers
    /// and I/O.
    pub async fn serve_listener(self, listener: UnixListener, shutdown: impl Future<Output = ()>) {
        let listener = match listener
            .into_std()
            .and_then(|l| l.set_nonblocking(false).map(|()| l))
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("plugin server: taking the listener: {e}");
                return;
            }
        };
        // A second descriptor of the listening socket: shutting it down wakes the accept loop.
        let waker = match listener.try_clone() {
            Ok(w) => w,
            Err(e) => {
                eprintln!("plugin server: {e}");
                return;
            }
        };
        let shared = Arc::new(Shared::default());
        let accept = {
            let (plugin, shared, rt) = (self.clone(), shared.clone(), Handle::current());
            std::thread::Builder::new()
                .name("plugin-accept".into())
                .spawn(move || accept_loop(&listener, &plugin, &shared, &rt))
        };
        if let Err(e) = accept {
            eprintln!("plugin server: starting the accept thread: {e}");
            return;
        }
        // Stops the server however this future ends: at `shutdown`, or dropped (a task aborted).
        let stop = Stop { shared, waker };
        shutdown.await;
        stop.now();
        let shared = &stop.shared;
        let drain = async {
            loop {
                let drained = shared.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if shared.live.load(Ordering::Acquire) == 0 {
                    return;
                }
                drained.await;
            }
        };
        let _ = tokio::time::timeout(DRAIN, drain).await;
    }

    /// Answers one request (routing, the interceptor, the call's budget) on the calling thread.
    fn answer(&self, rt: &Handle, req: Request) -> Reply {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let fut = crate::budget::scope(
            req.deadline_ms,
            self.dispatch(req.method, req.path, req.body),
        );
        let mut fut = std::pin::pin!(fut);
        // Most handlers finish without waiting: one poll inside the runtime's context (so they
        // can set up timers and I/O) answers them; one that waits is driven to its end by the
        // runtime's handle, which polls it again with a real waker.
        {
            let _in_runtime = rt.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(reply) = fut.as_mut().poll(&mut cx) {
                return reply;
            }
        }
        rt.block_on(fut)
    }

    async fn dispatch(&self, method: http::Method, path: String, body: bytes::Bytes) -> Reply {
        if let Some(icpt) = &self.interceptor
            && let Some(reply) = icpt(method.to_string(), path.clone()).await
        {
            return reply;
        }
        match self.routes.get(&path) {
            Some(h) if method == http::Method::POST => h(body).await,
            Some(_) => Reply::text(405, "method not allowed"),
            None => Reply::not_found(),
        }
    }
}

/// Stops the accept loop and every connection's reads, once; also when dropped.
struct Stop {
    shared: Arc<Shared>,
    waker: StdListener,
}

impl Stop {
    fn now(&self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: shutdown(2) on a descriptor `self` owns; it only changes the socket's state (a
        // blocked accept returns), no memory is involved.
        unsafe {
            libc::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&self.waker),
                libc::SHUT_RDWR,
            )
        };
        self.shared.stop_reading();
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.now();
    }
}

/// What the accept loop, the connections and the stop share.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    /// Connections being served, by id: a second descriptor of each, to stop its reads.
    open: Mutex<Vec<(u64, UnixStream)>>,
    next_id: AtomicU64,
    live: AtomicUsize,
    drained: Notify,
}

impl Shared {
    /// Connection `id` is done: forget it, and tell a stop waiting for the connections to end.
    fn closed(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _)| *i != id);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// Ends every blocked read: connections finish the request they are answering, then close.
    fn stop_reading(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for (_, s) in open.iter() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }
}

fn accept_loop(listener: &StdListener, plugin: &Plugin, shared: &Arc<Shared>, rt: &Handle) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let Ok(second) = conn.try_clone() else {
            continue;
        };
        plugin.stats.connections.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.live.fetch_add(1, Ordering::AcqRel);
        shared
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, second));
        let (plugin, shared2, rt) = (plugin.clone(), shared.clone(), rt.clone());
        let spawned = std::thread::Builder::new()
            .name("plugin-conn".into())
            .spawn(move || {
                serve_connection(conn, &plugin, &shared2, &rt);
                shared2.closed(id);
            });
        if spawned.is_err() {
            // Out of threads: the connection is dropped (closed); the engine retries or fails
            // the call.
            shared.closed(id);
        }
        // A stop that came while this connection was being set up: its read may have started
        // before `stop_reading` saw it.
        if shared.stopping.load(Ordering::Acquire) {
            shared.stop_reading();
        }
    }
}

/// Serves one keep-alive connection until the peer closes it, a request is refused, or the
/// server stops (after the request in flight).
fn serve_connection(conn: UnixStream, plugin: &Plugin, shared: &Shared, rt: &Handle) {
    let mut reader = Reader::new(conn);
    let mut out = Vec::new();
    loop {
        let req = match reader.next() {
            Ok(Some(req)) => req,
            Ok(None) | Err(ReadError::Gone) => return,
            Err(ReadError::Refuse(status, why)) => {
                let status =
                    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
                put_reply(
                    &mut out,
                    status,
                    "text/plain; charset=utf-8",
                    why.as_bytes(),
                    true,
                );
                let _ = reader.socket().write_all(&out);
                return;
            }
        };
        let close = req.close || shared.stopping.load(Ordering::Acquire);
        let reply = plugin.answer(rt, req);
        let close = close || shared.stopping.load(Ordering::Acquire);
        put_reply(
            &mut out,
            reply.status,
            reply.content_type,
            &reply.body,
            close,
        );
        if reader.socket().write_all(&out).is_err() || close {
            return;
        }
        release_large(&mut out);
    }
}
