//! The `api` extension point inside the engine: pre-hooks (load order, each seeing the previous
//! rewrite, able to reject) and post-hooks (reverse load order, each seeing the previous rewrite)
//! around every Engine API request a plugin subscribed to, in Powerstrip's message shape; and,
//! in the same layer, Docker's authorization plugins (see [`crate::authz`]) on the request the
//! pre-hooks produced (DESIGN rule 12, docs/api-hooks.md).
//!
//! Rules (docs/semantics.md, docs/protocol.md):
//! - hooks and authorization act on the canonical request ([`crate::canonical`]): subscriptions
//!   match its target, and a rewritten target is canonicalised again before it is judged;
//! - no subscriber for `METHOD path` and no authorization plugin → the request goes straight
//!   through (no buffering);
//! - only JSON (or empty) request bodies are shown to hooks and may be rewritten (JSON routes
//!   always carry JSON, see [`crate::canonical`]); other bodies (e.g. an image tar) stream through
//!   unchanged with `Body: null`;
//! - streaming and hijacked endpoints (attach, wait, logs, events, archive) get pre-hooks only;
//! - a pre-hook answering 4xx rejects the request: its status and `Err` text go to the client;
//! - any other hook failure aborts with 502 naming the plugin (policy `abort`) or is skipped
//!   (policy `ignore`); a post-hook failure never loses the operation's result: the client gets
//!   the real response with a `Berth-Warning` header;
//! - requests a privileged plugin makes on its own engine socket skip that plugin's hooks.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_engine::Engine;
use berth_plugin_host::protocol::FailurePolicy;
use berth_plugin_host::protocol::powerstrip::{BodyForm, ClientRequest, ServerResponse};
use berth_plugin_host::{CallErrorKind, LoadedPlugin, PluginError, hooks};

use crate::authz::{self, AuthzState};
use crate::canonical::Canonical;
use crate::error::ApiError;
use crate::gate::Caller;
use crate::version::RequestedUri;

/// Largest request or response body shown to hooks.
pub const MAX_HOOK_BODY: usize = 16 << 20;

/// The header carrying warnings of failed post-hooks.
pub const WARNING_HEADER: &str = "Berth-Warning";

/// Whether `path` streams or hijacks: such requests get pre-hooks only.
pub fn is_streaming(path: &str) -> bool {
    path == "/events"
        || path.ends_with("/attach")
        || path.ends_with("/wait")
        || (path.starts_with("/containers/") && path.ends_with("/logs"))
        || (path.starts_with("/containers/") && path.ends_with("/archive"))
        || (path.starts_with("/exec/") && path.ends_with("/start"))
        || path == "/images/create"
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
}

fn body_is_empty(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0")
        || (headers.get(header::CONTENT_LENGTH).is_none()
            && headers.get(header::TRANSFER_ENCODING).is_none())
}

fn failure(p: &LoadedPlugin, phase: &str, e: &PluginError) -> ApiError {
    ApiError {
        // Fail closed: an abort-policy hook that is not Active is 503 (`docs/semantics.md`).
        status: if e.is_not_active() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        },
        message: format!("api {phase} of plugin \"{}\" failed: {}", p.name(), e.kind),
    }
}

/// What the policy layer needs: the engine (its plugins) and the authorization plugins, in order.
#[derive(Clone)]
pub struct PolicyState {
    pub engine: Arc<Engine>,
    pub authz: Arc<Vec<String>>,
}

/// The plugins whose pre- and post-hooks `req` calls for (borrowed strings: a request nobody
/// hooks allocates nothing here).
fn subscribers(
    host: &berth_plugin_host::PluginHost,
    req: &Request,
    canonical: &Canonical,
) -> (Vec<Arc<LoadedPlugin>>, Vec<Arc<LoadedPlugin>>) {
    let path = canonical.route_path();
    // Plugin management and liveness never go through api hooks: a broken api plugin must not be
    // able to block its own unload.
    if path == "/_ping" || path == "/berth/plugins" || path.starts_with("/berth/plugins/") {
        return (Vec::new(), Vec::new());
    }
    let caller = req.extensions().get::<Caller>();
    let own = |p: &LoadedPlugin| matches!(caller, Some(Caller::Plugin(n)) if n == p.name());
    let method = req.method().as_str();
    let requested = canonical.requested();
    let plugins = host.snapshot();
    let wanted = |post: bool| -> Vec<Arc<LoadedPlugin>> {
        plugins
            .iter()
            .filter(|p| {
                let subs = p.subscriptions();
                let wants = if post {
                    subs.wants_api_post(method, requested)
                } else {
                    subs.wants_api_pre(method, requested)
                };
                // Every state: a hook that is not Active fails closed (policy abort) or becomes a
                // warning (policy ignore) when called.
                wants && !own(p)
            })
            .cloned()
            .collect()
    };
    let pre = wanted(false);
    let post = if is_streaming(path) {
        Vec::new()
    } else {
        wanted(true)
    };
    (pre, post)
}

/// The policy middleware (between the readiness gate and the router): api pre-hooks, then
/// authorization of the request they produced (and of the original, if they changed it), the
/// handler, api post-hooks, and authorization of the response.
pub async fn middleware(State(st): State<PolicyState>, req: Request, next: Next) -> Response {
    let canonical = match Canonical::of(&req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (pre, post) = match st.engine.plugins() {
        Some(host) => subscribers(host, &req, &canonical),
        None => (Vec::new(), Vec::new()),
    };
    let authz = AuthzState {
        engine: st.engine.clone(),
        plugins: st.authz.clone(),
    };
    let authorizing = !st.authz.is_empty();
    if pre.is_empty() && post.is_empty() && !authorizing {
        return next.run(req).await;
    }

    let (mut parts, body) = req.into_parts();
    let shows_body = is_json(&parts.headers) || body_is_empty(&parts.headers);
    // Authorization sees every body (bounded, refused when larger); hooks see JSON ones.
    let (original_bytes, mut passthrough) = if authorizing {
        match authz::read_limited(body, authz::MAX_AUTHZ_BODY).await {
            Ok(b) => (b, None),
            Err(()) => return authz::too_large().into_response(),
        }
    } else if shows_body {
        match axum::body::to_bytes(body, MAX_HOOK_BODY).await {
            Ok(b) => (b, None),
            Err(e) => {
                return ApiError::bad_request(format!(
                    "reading the request body for api hooks: {e}"
                ))
                .into_response();
            }
        }
    } else {
        (bytes::Bytes::new(), Some(body))
    };
    let original = ClientRequest {
        method: parts.method.as_str().to_owned(),
        request: canonical.requested().to_owned(),
        body: (shows_body && !original_bytes.is_empty())
            .then(|| String::from_utf8_lossy(&original_bytes).into_owned()),
        body_form: BodyForm::Text,
    };

    // Pre-hooks, in load order, each seeing the previous rewrite; the message is encoded once
    // per body form until a hook rewrites the request.
    let mut current = original.clone();
    let mut encoded = hooks::Encoded::default();
    let mut warnings: Vec<String> = Vec::new();
    for p in &pre {
        match hooks::api_pre(p, &current, &mut encoded).await {
            Ok(Some(rewritten)) => {
                if shows_body {
                    // A `BodyJSON` body was parsed as JSON when the reply was decoded.
                    if rewritten.body_form == BodyForm::Text
                        && let Some(b) = rewritten.body.as_deref().filter(|b| !b.trim().is_empty())
                        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(b)
                    {
                        return ApiError::bad_request(format!(
                            "api pre-hook of plugin \"{}\" returned a request body that is not valid JSON: {e}",
                            p.name()
                        ))
                        .into_response();
                    }
                } else if rewritten.body.is_some() {
                    tracing::debug!(
                        plugin = p.name(),
                        "pre-hook body ignored for a non-JSON request"
                    );
                }
                if rewritten.method.is_empty() || rewritten.request.is_empty() {
                    let e = ApiError {
                        status: StatusCode::BAD_GATEWAY,
                        message: format!(
                            "api pre-hook of plugin \"{}\" returned a request without Method or Request",
                            p.name()
                        ),
                    };
                    match p.failure_policy() {
                        FailurePolicy::Ignore => warnings.push(e.message),
                        FailurePolicy::Abort => return e.into_response(),
                    }
                    continue;
                }
                current = ClientRequest {
                    body: if shows_body { rewritten.body } else { None },
                    ..rewritten
                };
                encoded.clear();
            }
            Ok(None) => {}
            Err(PluginError {
                kind: CallErrorKind::Status { status, text },
                ..
            }) if (400..500).contains(&status) => {
                // A deliberate rejection: the plugin's status and message go to the client.
                return ApiError {
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                    message: text,
                }
                .into_response();
            }
            Err(e) => match p.failure_policy() {
                FailurePolicy::Ignore => warnings.push(format!("{e} (ignored)")),
                FailurePolicy::Abort => return failure(p, "pre-hook", &e).into_response(),
            },
        }
    }

    // The final request, canonical again if a hook rewrote it.
    let changed = current != original;
    let mut canonical = canonical;
    if changed {
        match current.method.parse() {
            Ok(m) => parts.method = m,
            Err(_) => {
                return ApiError::bad_request(format!(
                    "api pre-hook set an invalid method {:?}",
                    current.method
                ))
                .into_response();
            }
        }
        match current
            .request
            .parse::<axum::http::Uri>()
            .map_err(|e| ApiError::bad_request(format!("{e}")))
            .and_then(|u| Canonical::new(&u))
        {
            Ok(c) => canonical = c,
            Err(e) => {
                return ApiError::bad_request(format!(
                    "api pre-hook set an invalid request URI {:?}: {}",
                    current.request, e.message
                ))
                .into_response();
            }
        }
        current.request = canonical.requested().to_owned();
    }
    let final_bytes = if changed && shows_body {
        bytes::Bytes::from(current.body.clone().unwrap_or_default().into_bytes())
    } else {
        original_bytes.clone()
    };
    if changed && shows_body {
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(final_bytes.len()));
    }

    // Authorization judges the request the handler will run, and the original when it differs.
    let mut authz_msg = None;
    if authorizing {
        let msg = authz::request_message(
            current.method.clone(),
            current.request.clone(),
            &parts.headers,
            &final_bytes,
        );
        if let Err(e) = authz::authorize(&authz, authz::REQ_PATH, &msg).await {
            return e.into_response();
        }
        if changed {
            let orig = authz::request_message(
                original.method.clone(),
                original.request.clone(),
                &parts.headers,
                &original_bytes,
            );
            if let Err(e) = authz::authorize(&authz, authz::REQ_PATH, &orig).await {
                return e.into_response();
            }
        }
        authz_msg = Some(msg);
    }

    match canonical.route_uri() {
        Ok(uri) => parts.uri = uri,
        Err(e) => return e.into_response(),
    }
    let streaming = is_streaming(canonical.route_path());
    parts
        .extensions
        .insert(RequestedUri(canonical.requested().to_owned()));
    parts.extensions.insert(canonical);
    let new_body = match passthrough.take() {
        Some(b) => b,
        None => Body::from(final_bytes),
    };
    let resp = next.run(Request::from_parts(parts, new_body)).await;
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let mut resp = if post.is_empty() || switching {
        resp
    } else {
        run_post_hooks(&post, &current, resp, &mut warnings).await
    };
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&w.replace(['\r', '\n'], " ")) {
            resp.headers_mut().append(WARNING_HEADER, v);
        }
    }
    match authz_msg {
        Some(msg) if !streaming && !switching => authz::authorize_response(&authz, msg, resp).await,
        _ => resp,
    }
}

async fn run_post_hooks(
    post: &[Arc<LoadedPlugin>],
    request: &ClientRequest,
    resp: Response,
    warnings: &mut Vec<String>,
) -> Response {
    let (mut parts, body) = resp.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let json = is_json(&parts.headers);
    let bytes = match axum::body::to_bytes(body, MAX_HOOK_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("buffering the response for post-hooks: {e}"),
            }
            .into_response();
        }
    };
    let mut current = ServerResponse {
        content_type: content_type.clone(),
        body: json.then(|| String::from_utf8_lossy(&bytes).into_owned()),
        code: parts.status.as_u16(),
        body_form: BodyForm::Text,
    };
    let mut rewritten_by_any = false;
    let mut encoded = hooks::Encoded::default();
    // Post-hooks run in reverse load order; the message is encoded once per body form until a
    // hook rewrites the response.
    for p in post.iter().rev() {
        match hooks::api_post(p, request, &current, &mut encoded).await {
            Ok(Some(rewritten)) => {
                let code_ok = StatusCode::from_u16(rewritten.code).is_ok() && rewritten.code >= 100;
                // A `BodyJSON` body was parsed as JSON when the reply was decoded.
                let body_ok = !rewritten.content_type.contains("json")
                    || rewritten.body_form == BodyForm::Json
                    || rewritten.body.as_deref().is_none_or(|b| {
                        b.trim().is_empty()
                            || serde_json::from_str::<serde::de::IgnoredAny>(b).is_ok()
                    });
                if code_ok && body_ok {
                    current = rewritten;
                    rewritten_by_any = true;
                    encoded.clear();
                } else {
                    warnings.push(format!(
                        "api post-hook of plugin \"{}\" returned an invalid response (code {}); it was not applied",
                        p.name(),
                        rewritten.code
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => warnings.push(format!(
                "api post-hook of plugin \"{}\" failed: {}",
                p.name(),
                e.kind
            )),
        }
    }
    // Compared with what the handler wrote (a rewrite may put back the same response).
    let unchanged = !rewritten_by_any
        || (current.code == parts.status.as_u16()
            && current.body.as_deref().map(str::as_bytes) == json.then_some(&bytes[..])
            && current.content_type == content_type);
    if unchanged {
        return Response::from_parts(parts, Body::from(bytes));
    }
    parts.status = StatusCode::from_u16(current.code).unwrap_or(parts.status);
    let new_bytes = match current.body {
        Some(b) => b.into_bytes(),
        None if json => Vec::new(),
        None => bytes.to_vec(),
    };
    if let Ok(v) = HeaderValue::from_str(&current.content_type) {
        parts.headers.insert(header::CONTENT_TYPE, v);
    }
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(new_bytes.len()));
    Response::from_parts(parts, Body::from(new_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_paths() {
        assert!(is_streaming("/containers/abc/attach"));
        assert!(is_streaming("/containers/abc/logs"));
        assert!(is_streaming("/events"));
        assert!(is_streaming("/containers/abc/wait"));
        assert!(is_streaming("/exec/abc/start"));
        assert!(!is_streaming("/containers/create"));
        assert!(!is_streaming("/containers/json"));
    }

    #[test]
    fn json_detection() {
        let mut h = axum::http::HeaderMap::new();
        assert!(body_is_empty(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-tar"),
        );
        assert!(!is_json(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(!body_is_empty(&h));
    }
}
