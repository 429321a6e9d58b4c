//! Docker's identification headers on every response, and the requested URI plugins are shown.
//! Every route is served with and without `/vX.Y` (the docker CLI sends `/v1.50/...`, the SDK
//! probes bare `/version`): [`crate::canonical`] strips the prefix for routing.

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::API_VERSION;

/// The canonical target with its `/vX.Y` prefix (see [`crate::canonical`]), kept as a request
/// extension for the layers that show it to plugins (api hooks, authorization).
#[derive(Debug, Clone)]
pub struct RequestedUri(pub String);

/// Adds `Api-Version`, `Server`, `Ostype` and `Docker-Experimental` to every response.
pub async fn identify(req: Request<Body>, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}
