//! Property tests over request targets, headers and bodies, run in-process against the real
//! canonical layer, policy layer and router (`tower::ServiceExt::oneshot`): for every generated
//! request, the route that serves it is the route a hook subscription or authorization plugin
//! matched on what the policy layer saw, and no input panics or yields a 5xx (no plugin is
//! loaded, so none could have caused one). Mutating routes are matched but not run (a recording
//! layer answers for them), read-only ones run their real handlers on a temp engine.

#![allow(clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use berth_engine::Engine;
use berth_engine_api::canonical::{self, Canonical};
use berth_engine_api::{hooks, routes};
use berth_plugin_host::protocol::pattern::ApiPattern;
use berth_plugin_host::{HostConfig, PluginHost};
use proptest::prelude::*;
use tower::ServiceExt;

/// What the policy layer saw (method, canonical target) and what the router served (method,
/// matched route, path).
#[derive(Debug, Default, Clone)]
struct Seen {
    policy: Option<(String, String)>,
    route: Option<(String, String, String)>,
}

type Log = Arc<Mutex<Seen>>;

async fn record_policy(
    axum::extract::State(log): axum::extract::State<Log>,
    req: Request,
    next: Next,
) -> Response {
    let c = Canonical::of(&req).expect("canonical set by the canonical layer");
    if let Ok(mut s) = log.lock() {
        s.policy = Some((req.method().to_string(), c.requested().to_owned()));
    }
    next.run(req).await
}

async fn record_route(
    axum::extract::State(log): axum::extract::State<Log>,
    req: Request,
    next: Next,
) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    if let Ok(mut s) = log.lock() {
        s.route = Some((
            req.method().to_string(),
            matched,
            req.uri().path().to_owned(),
        ));
    }
    // Read-only requests run their handler; anything that could change the host is only routed.
    if req.method() == Method::GET || req.method() == Method::HEAD {
        next.run(req).await
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    rt: tokio::runtime::Runtime,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = rt.block_on(async {
        let host = PluginHost::open(HostConfig::new(dir.path()), None).expect("plugin host");
        Engine::open_with(
            dir.path(),
            Arc::new(berth_engine::runtime::NamespaceRuntime),
            Some(Arc::new(host)),
        )
        .expect("engine")
    });
    Rig {
        _dir: dir,
        engine,
        rt,
    }
}

/// The stack of `berth_engine_api::app_with`, with the two recorders around the policy layer
/// and on the routes.
async fn send(rig: &Rig, req: Request) -> (Response, Seen) {
    let log: Log = Arc::default();
    let router = routes::router(routes::AppState {
        engine: rig.engine.clone(),
    })
    .route_layer(from_fn_with_state(log.clone(), record_route));
    let policy = from_fn_with_state(
        hooks::PolicyState {
            engine: rig.engine.clone(),
            authz: Arc::new(Vec::new()),
        },
        hooks::middleware,
    );
    // Tower layers around the whole router, as `app_with` composes them: they run before
    // routing (`Router::layer` would run them after it).
    use tower::Layer;
    let app = from_fn(canonical::middleware)
        .layer(from_fn_with_state(log.clone(), record_policy).layer(policy.layer(router)));
    let resp = app.oneshot(req).await.expect("infallible");
    let seen = log.lock().map(|s| s.clone()).unwrap_or_default();
    (resp, seen)
}

/// `/containers/{id}/start` → `/containers/*/start` (how a plugin subscribes to that route).
fn route_glob(route: &str) -> String {
    route
        .split('/')
        .map(|s| if s.starts_with('{') { "*" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn target() -> impl Strategy<Value = String> {
    let origin = prop::sample::select(vec!["", "http://berth", "http://x:80", "HTTP://h"]);
    let version = prop::sample::select(vec!["", "/v1.50", "/v1.24", "/v9", "/v1.", "/vx"]);
    let segment = prop::sample::select(vec![
        "containers",
        "create",
        "json",
        "start",
        "attach",
        "logs",
        "wait",
        "events",
        "images",
        "volumes",
        "networks",
        "connect",
        "_ping",
        "version",
        "info",
        "berth",
        "plugins",
        "load",
        "abc",
        ".",
        "..",
        "",
        "%63reate",
        "%2F",
        "%2e%2E",
        "a%20b",
        "%zz",
        "%",
        "v1.50",
        "%C3%A9",
        "~x",
        "a:b@c",
    ]);
    let query = prop::sample::select(vec![
        "",
        "?name=x",
        "?system=1",
        "?a=%ZZ",
        "?filters=%7B%7D",
        "?all=1&limit=-1",
        "?filters=nope",
    ]);
    (
        origin,
        version,
        prop::collection::vec(segment, 0..6),
        prop::bool::ANY,
        query,
    )
        .prop_map(|(o, v, segs, trailing, q)| {
            let mut t = format!("{o}{v}");
            for s in segs {
                t.push('/');
                t.push_str(s);
            }
            if trailing || t.is_empty() || !t.contains('/') {
                t.push('/');
            }
            t.push_str(q);
            t
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "{}",
            "null",
            "[1,2]",
            "not json",
            r#"{"Image":"host","Cmd":["true"]}"#,
            r#"{"Image":5}"#,
            "  ",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_route_served_is_the_route_the_policy_matched(
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "PUT", "HEAD"]),
        target in target(),
        content_type in prop::sample::select(vec![
            None, Some("application/json"), Some("text/plain"),
            Some("application/json; charset=utf-8"), Some(""), Some("APPLICATION/JSON"),
        ]),
        body in body(),
    ) {
        let rig = rig();
        let mut builder = Request::builder().method(method).uri(&target);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_LENGTH, body.len());
        }
        // Targets hyper would refuse never reach the service.
        let Ok(req) = builder.body(Body::from(body)) else { return Ok(()); };
        let (resp, seen) = rig.rt.block_on(send(&rig, req));
        let status = resp.status();
        prop_assert!(!status.is_server_error(), "{method} {target}: {status}");
        if let Some((route_method, route, path)) = &seen.route {
            let (policy_method, requested) = seen.policy.clone().expect("policy layer saw it");
            prop_assert_eq!(route_method, &policy_method);
            // The path the router served is the canonical one the policy saw.
            let canonical = Canonical::new(&requested.parse().expect("canonical parses"))
                .expect("canonical is canonical");
            prop_assert_eq!(path.as_str(), canonical.route_path());
            prop_assert_eq!(canonical.requested(), requested.as_str(), "canonical twice");
            // A subscription to the route served matches what hooks and authorization saw.
            let pattern = ApiPattern::parse(&format!("{route_method} {}", route_glob(route)));
            prop_assert!(
                pattern.matches(&policy_method, &requested),
                "{} does not match {} {} (served {} {})", pattern, policy_method, requested, route_method, route
            );
        }
    }
}
