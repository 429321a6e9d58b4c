//! Router tests: the complete HTTP service ([`berth_engine_api::app`]) driven in process with
//! `tower::ServiceExt::oneshot`, no socket and no daemon. They pin the one error→HTTP mapping
//! (404 unknown object, 400 bad input, 409 conflict, 304 nothing to do, 403 forbidden), Docker's
//! `{"message": …}` body, and the `/vX.Y` prefix being optional on every route.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Api {
    _root: tempfile::TempDir,
    engine: Arc<berth_engine::Engine>,
}

impl Api {
    fn new() -> Api {
        let root = tempfile::tempdir().unwrap();
        let engine = berth_engine::Engine::open(root.path()).unwrap();
        Api {
            _root: root,
            engine,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: &str) -> Response {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        berth_engine_api::app(self.engine.clone())
            .oneshot(req)
            .await
            .unwrap()
    }
}

async fn message(resp: Response) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {v}"))
        .to_owned()
}

#[tokio::test]
async fn unknown_container_is_404_with_a_docker_message() {
    let api = Api::new();
    let resp = api.call(Method::GET, "/containers/nosuch/json", "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let msg = message(resp).await;
    assert!(msg.contains("nosuch"), "{msg}");
    let resp = api.call(Method::POST, "/containers/nosuch/start", "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_version_prefix_is_optional_on_every_route() {
    let api = Api::new();
    for uri in ["/_ping", "/v1.50/_ping", "/v1.24/_ping", "/v1/_ping"] {
        let resp = api.call(Method::GET, uri, "").await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()["Api-Version"], berth_engine_api::API_VERSION);
    }
    let resp = api
        .call(Method::GET, "/v1.50/containers/nosuch/json", "")
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Not a version: the path is kept as it is, and no route matches.
    let resp = api.call(Method::GET, "/vx/_ping", "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_400() {
    let api = Api::new();
    let resp = api.call(Method::POST, "/containers/create", "{").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    message(resp).await;
    let resp = api
        .call(Method::POST, "/volumes/create", r#"{"Name": "../escape"}"#)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(message(resp).await.contains("../escape"));
    let resp = api.call(Method::POST, "/images/create", "").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_name_in_use_is_409_and_a_stop_of_a_stopped_container_is_304() {
    let api = Api::new();
    let create = r#"{"Image": "host", "Cmd": ["true"]}"#;
    let resp = api
        .call(Method::POST, "/v1.50/containers/create?name=c1", create)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = api
        .call(Method::POST, "/containers/create?name=c1", create)
        .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(message(resp).await.contains("c1"));
    // Created, never started: nothing to stop. 304 carries no body.
    let resp = api.call(Method::POST, "/containers/c1/stop", "").await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    let resp = api.call(Method::DELETE, "/containers/c1", "").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = api.call(Method::GET, "/containers/c1/json", "").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn removing_a_predefined_network_is_403() {
    let api = Api::new();
    let resp = api.call(Method::DELETE, "/networks/bridge", "").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(message(resp).await.contains("pre-defined"));
}
