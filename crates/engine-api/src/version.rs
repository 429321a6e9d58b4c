//! The version-prefix layer: every route is served with and without `/vX.Y` (the docker CLI
//! sends `/v1.50/...`, the SDK probes bare `/version`), and every response carries Docker's
//! identification headers.

use axum::body::Body;
use axum::http::{HeaderValue, Request, Uri};
use axum::middleware::Next;
use axum::response::Response;

use crate::API_VERSION;

/// The URI as the client sent it (with its `/vX.Y` prefix), kept as a request extension for the
/// layers that must show it to plugins (api hooks, authorization).
#[derive(Debug, Clone)]
pub struct RequestedUri(pub String);

/// Strips a leading `/v<digits>[.<digits>]` segment from the request path (and remembers the
/// original as [`RequestedUri`] the first time).
pub fn strip_version_prefix<B>(mut req: Request<B>) -> Request<B> {
    if req.extensions().get::<RequestedUri>().is_none() {
        let original = req.uri().to_string();
        req.extensions_mut().insert(RequestedUri(original));
    }
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        let is_version = !version.is_empty()
            && version.split('.').count() <= 2
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if is_version {
            let new_path = if end == rest.len() {
                "/".to_owned()
            } else {
                rest[end..].to_owned()
            };
            let pq = match req.uri().query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            let mut parts = req.uri().clone().into_parts();
            if let Ok(p) = pq.parse() {
                parts.path_and_query = Some(p);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(uri: &str) -> String {
        let req = Request::builder().uri(uri).body(()).unwrap();
        strip_version_prefix(req).uri().to_string()
    }

    #[test]
    fn prefixes_are_stripped() {
        assert_eq!(
            strip("/v1.50/containers/json?all=1"),
            "/containers/json?all=1"
        );
        assert_eq!(strip("/v1.41/_ping"), "/_ping");
        assert_eq!(strip("/_ping"), "/_ping");
        assert_eq!(strip("/volumes/v1.2"), "/volumes/v1.2");
        assert_eq!(strip("/vabc/x"), "/vabc/x");
    }
}
