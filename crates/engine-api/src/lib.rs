//! The Docker Engine API subset served by `berth daemon`: the axum router, wire DTOs, the one
//! error→HTTP mapping, the version-prefix layer, streaming endpoints (attach, wait, logs, events),
//! and [`daemon::run`], which wires the engine to a UNIX socket.

pub mod daemon;
pub mod error;
pub mod extract;
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

/// The complete HTTP service: version-prefix stripping around the router and its layers.
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
    let router = routes::router(routes::AppState { engine })
        .layer(axum::middleware::from_fn(version::identify));
    tower::util::MapRequestLayer::new(version::strip_version_prefix::<axum::body::Body>)
        .layer(router)
}

/// Serves `app` on a UNIX listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let svc = app(engine);
    axum::serve(listener, ServiceExt::<Request>::into_make_service(svc))
        .with_graceful_shutdown(shutdown)
        .await
}
