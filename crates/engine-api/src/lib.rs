//! The Docker Engine API subset served by `berth daemon`: the axum router, wire DTOs, the one
//! error→HTTP mapping, the canonical request layer, streaming endpoints (attach, wait, logs, events),
//! and [`daemon::run`], which wires the engine to a UNIX socket.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod authz;
pub mod canonical;
pub mod daemon;
pub mod detach;
pub mod error;
pub mod extract;
pub mod gate;
pub mod hooks;
pub mod hygiene;
pub mod models;
pub mod present;
pub mod routes;
pub mod streams;
pub mod version;

use std::sync::Arc;

use axum::extract::Request;
use berth_engine::Engine;
use tower::Layer;

/// The API version Berth speaks (what docker CLI 28 negotiates to).
pub const API_VERSION: &str = "1.50";
/// The oldest API version Berth accepts.
pub const MIN_API_VERSION: &str = "1.24";

/// Resolves who the requests of one listener come from (see [`gate::Caller`]).
pub type CallerFn = Arc<dyn Fn() -> gate::Caller + Send + Sync>;

/// The complete HTTP service: version-prefix stripping around the router and its layers. The
/// readiness gate is open (engine-only servers and tests); the daemon uses [`app_with`].
pub fn app(
    engine: Arc<Engine>,
) -> impl tower::Service<
    Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    app_with(engine, gate::Gate::open_now(), None, Arc::new(Vec::new()))
}

/// The complete HTTP service behind the readiness `gate`; with `caller`, every request carries
/// the [`gate::Caller`] it returns (a privileged plugin's own engine socket); `authz` names the
/// Docker authorization plugins, in order.
///
/// Layers, outermost first: caller attribution → identification headers → canonical request
/// (normalised target, version prefix stripped, JSON bodies checked) → readiness gate → policy
/// (api pre-hooks → authorization → router → api post-hooks → authorization of the response).
pub fn app_with(
    engine: Arc<Engine>,
    gate: gate::Gate,
    caller: Option<CallerFn>,
    authz: Arc<Vec<String>>,
) -> impl tower::Service<
    Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    use axum::middleware::{from_fn, from_fn_with_state};
    let router = routes::router(routes::AppState {
        engine: engine.clone(),
    });
    let policy =
        from_fn_with_state(hooks::PolicyState { engine, authz }, hooks::middleware).layer(router);
    let gated = from_fn_with_state(gate, gate::middleware).layer(policy);
    let canonical = from_fn(canonical::middleware).layer(gated);
    let identified = from_fn(version::identify).layer(canonical);
    tower::util::MapRequestLayer::new(move |mut req: Request| {
        if let Some(f) = &caller {
            req.extensions_mut().insert(f());
        }
        req
    })
    .layer(identified)
}

/// Serves `app` on a UNIX listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        engine,
        gate::Gate::open_now(),
        None,
        Arc::new(Vec::new()),
        shutdown,
    )
    .await
}

/// Serves [`app_with`] on a UNIX listener until `shutdown` resolves. Every request carries a
/// [`streams::ConnFd`] of its connection (attach sessions watch it for the client's hang-up).
pub async fn serve_with(
    listener: tokio::net::UnixListener,
    engine: Arc<Engine>,
    gate: gate::Gate,
    caller: Option<CallerFn>,
    authz: Arc<Vec<String>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let svc = app_with(engine, gate, caller, authz);
    axum::serve(listener, PerConnection(svc))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Makes the service of one connection: `S` with that connection's [`streams::ConnFd`].
#[derive(Clone)]
struct PerConnection<S>(S);

impl<'a, S: Clone> tower::Service<axum::serve::IncomingStream<'a, tokio::net::UnixListener>>
    for PerConnection<S>
{
    type Response = WithConn<S>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<WithConn<S>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        conn: axum::serve::IncomingStream<'a, tokio::net::UnixListener>,
    ) -> Self::Future {
        use std::os::fd::AsFd;
        let fd = conn
            .io()
            .as_fd()
            .try_clone_to_owned()
            .map(|fd| streams::ConnFd(Arc::new(fd)))
            .map_err(|e| tracing::warn!(error = %e, "duplicating a connection's descriptor"))
            .ok();
        std::future::ready(Ok(WithConn {
            inner: self.0.clone(),
            fd,
        }))
    }
}

/// The service of one connection (see [`PerConnection`]).
#[derive(Clone)]
struct WithConn<S> {
    inner: S,
    fd: Option<streams::ConnFd>,
}

impl<S: tower::Service<Request>> tower::Service<Request> for WithConn<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if let Some(fd) = &self.fd {
            req.extensions_mut().insert(fd.clone());
        }
        self.inner.call(req)
    }
}
