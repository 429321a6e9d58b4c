//! Docker's authorization plugins (`--authorization-plugin NAME`, repeatable, in order):
//! `AuthZPlugin.AuthZReq` before the handler and `AuthZPlugin.AuthZRes` after it, with the code's
//! field spellings (`RequestUri`, `RequestHeaders`, `ResponseHeaders`) and base64 bodies.
//!
//! Rules: every plugin must allow (first deny wins, 403 `authorization denied by plugin NAME:
//! MSG`); a plugin that is missing, down, answers non-200 or garbage denies too (fail-closed, 500
//! `plugin NAME failed with error: ...`). The CVE-2024-41110 class is closed by construction: the
//! request body is buffered once, the plugin sees those exact bytes and the handler gets the same
//! bytes; a body larger than [`MAX_AUTHZ_BODY`] is refused (413), never passed on unseen.
//! Streaming and hijacked responses are released after `AuthZReq` only (as dockerd does).
//!
//! The plugins judge the canonical request the handler will run: [`crate::hooks::middleware`]
//! calls [`authorize`] after the api pre-hooks (on the final request, and on the original too
//! when a hook changed it) and [`authorize_response`] after the post-hooks.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::Engine;
use berth_plugin_host::protocol::legacy::authz;

pub use authz::REQ_PATH;

use crate::error::ApiError;

/// Largest request body an authorization plugin is shown (and thus the largest accepted).
pub const MAX_AUTHZ_BODY: usize = 4 << 20;
/// Largest response body shown to `AuthZRes` (bigger responses are shown without their body).
pub const MAX_AUTHZ_RESPONSE: usize = 64 << 10;

/// The configured plugins, in order.
#[derive(Clone)]
pub struct AuthzState {
    pub engine: Arc<Engine>,
    pub plugins: Arc<Vec<String>>,
}

fn headers_map(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in h {
        let name = k.as_str();
        if matches!(
            name,
            "authorization" | "x-registry-auth" | "x-registry-config"
        ) {
            continue;
        }
        // Canonical spelling (`Content-Type`), last value wins.
        let canon = name
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        out.insert(canon, String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    out
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// Reads a body of at most `limit` bytes. A longer one is drained (up to 16× the limit, so the
/// client can read the refusal instead of a broken pipe) and refused.
pub async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ()> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(()) };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > limit.saturating_mul(16) {
                return Err(());
            }
            if seen <= limit {
                buf.extend_from_slice(&data);
            }
        }
    }
    if seen > limit {
        Err(())
    } else {
        Ok(buf.freeze())
    }
}

/// The refusal of a body larger than [`MAX_AUTHZ_BODY`].
pub fn too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "request body larger than {} MiB: authorization plugins cannot inspect it, so it is refused",
            MAX_AUTHZ_BODY >> 20
        ),
    }
}

/// The `AuthZReq` message for a request (`uri` is the canonical target with its version prefix).
pub fn request_message(
    method: String,
    uri: String,
    headers: &HeaderMap,
    body: &[u8],
) -> authz::Request {
    authz::Request {
        request_method: method,
        request_uri: uri,
        request_headers: headers_map(headers),
        request_body: body.to_vec(),
        ..Default::default()
    }
}

/// Asks every plugin in order (`path`: [`REQ_PATH`] or `AuthZPlugin.AuthZRes`); the first
/// denial or failure is the answer.
pub async fn authorize(
    state: &AuthzState,
    path: &str,
    msg: &authz::Request,
) -> Result<(), ApiError> {
    let phase = if path == authz::REQ_PATH {
        "AuthZPlugin.AuthZReq"
    } else {
        "AuthZPlugin.AuthZRes"
    };
    for name in state.plugins.iter() {
        let fail = |why: String| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("plugin {name} failed with error: {phase}: {why}"),
        };
        let Some(plugin) = state.engine.plugins().and_then(|h| h.get(name)) else {
            return Err(fail("the authorization plugin is not loaded".into()));
        };
        let reply: authz::Response = plugin
            .call("authz", path, msg)
            .await
            .map_err(|e| fail(e.kind.to_string()))?;
        if !reply.allow {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: format!("authorization denied by plugin {name}: {}", reply.msg),
            });
        }
    }
    Ok(())
}

/// The response phase (`AuthZRes`) for a buffered, non-streaming response: the plugins see the
/// response as the client will receive it; a denial replaces it.
pub async fn authorize_response(
    state: &AuthzState,
    mut msg: authz::Request,
    resp: Response,
) -> Response {
    let (rparts, rbody) = resp.into_parts();
    let rbytes = match axum::body::to_bytes(rbody, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                berth_state::ErrorKind::Internal,
                format!("buffering the response: {e}"),
            )
            .into_response();
        }
    };
    msg.response_status_code = rparts.status.as_u16();
    msg.response_headers = headers_map(&rparts.headers);
    if is_json(&rparts.headers) && rbytes.len() <= MAX_AUTHZ_RESPONSE {
        msg.response_body = rbytes.to_vec();
    }
    if let Err(e) = authorize(state, authz::RES_PATH, &msg).await {
        return e.into_response();
    }
    Response::from_parts(rparts, Body::from(rbytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_canonical_and_secrets_dropped() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-registry-auth", "secret".parse().unwrap());
        h.insert("authorization", "Bearer x".parse().unwrap());
        let m = headers_map(&h);
        assert_eq!(
            m.get("Content-Type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(m.len(), 1);
    }
}
