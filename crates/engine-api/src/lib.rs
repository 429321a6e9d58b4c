//! The Docker Engine API subset served by `berth daemon`: the axum router, wire DTOs, the one
//! error→HTTP mapping, the version-prefix layer, streaming endpoints (attach, wait, logs, events),
//! and [`daemon::run`], which wires the engine to a UNIX socket.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod authz;
pub mod daemon;
pub mod error;
pub mod extract;
pub mod gate;
pub mod hooks;
pub mod hygiene;
pub mod present;
pub mod routes;
pub mod streams;
pub mod version;

use std::sync::Arc;

use axum::ServiceExt;
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
/// Layers, outermost first: caller attribution → version prefix → identification headers →
/// readiness gate → authorization → api hooks → router.
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
    let hooked = from_fn_with_state(engine.clone(), hooks::middleware).layer(router);
    let authorized = from_fn_with_state(
        authz::AuthzState {
            engine,
            plugins: authz,
        },
        authz::middleware,
    )
    .layer(hooked);
    let gated = from_fn_with_state(gate, gate::middleware).layer(authorized);
    let identified = from_fn(version::identify).layer(gated);
    let strip =
        tower::util::MapRequestLayer::new(version::strip_version_prefix::<axum::body::Body>)
            .layer(identified);
    tower::util::MapRequestLayer::new(move |mut req: Request| {
        if let Some(f) = &caller {
            req.extensions_mut().insert(f());
        }
        req
    })
    .layer(strip)
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

/// Serves [`app_with`] on a UNIX listener until `shutdown` resolves.
pub async fn serve_with(
    listener: tokio::net::UnixListener,
    engine: Arc<Engine>,
    gate: gate::Gate,
    caller: Option<CallerFn>,
    authz: Arc<Vec<String>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let svc = app_with(engine, gate, caller, authz);
    axum::serve(listener, ServiceExt::<Request>::into_make_service(svc))
        .with_graceful_shutdown(shutdown)
        .await
}
