//! The canonical request (DESIGN rule 12): built once, early, and the only shape the readiness
//! gate, the api hooks, authorization and the router see.
//!
//! - The target is reduced to path and query (an absolute-form `POST http://x/v1.50/...` loses its
//!   scheme and authority).
//! - The path is normalised: `%XX` escapes of characters that may stand literally in a path
//!   segment are decoded (`%63reate` is `create`), every other byte outside that set is escaped
//!   with upper-case hex (so `%2F` stays an escaped slash, never a separator), empty segments
//!   (`//`) are collapsed, and `.` and `..` segments are resolved. A malformed escape is a 400.
//! - The `/vX.Y` version prefix is kept in what plugins are shown ([`Canonical::requested`],
//!   `Request` of api hooks, `RequestUri` of authorization) and stripped for routing.
//! - JSON routes (those whose handler parses a JSON body) take `application/json` or no
//!   Content-Type, and refuse any other type with 400 as dockerd does. Their body is read here
//!   (bounded), checked to be JSON, and passed on as `application/json`, so hooks, authorization
//!   and the handler all see the same JSON bytes.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Largest JSON body a JSON route accepts (what api hooks may be shown).
pub const MAX_JSON_BODY: usize = 16 << 20;

/// The canonical target of a request, kept as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// Normalised path with its version prefix, then `?query` if any.
    requested: String,
    /// Where the routed path (version prefix stripped) starts in `requested`.
    route_start: usize,
    /// Where the path ends in `requested` (the `?` or the end).
    path_end: usize,
}

impl Canonical {
    /// Canonicalises a request target (origin or absolute form).
    pub fn new(uri: &Uri) -> Result<Canonical, ApiError> {
        let raw_path = uri.path();
        if !raw_path.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid request target {raw_path:?}: the path must start with \"/\""
            )));
        }
        let mut requested = normalize_path(raw_path)?;
        let path_end = requested.len();
        let route_start = version_prefix_len(&requested);
        if let Some(q) = uri.query() {
            requested.push('?');
            requested.push_str(q);
        }
        Ok(Canonical {
            requested,
            route_start,
            path_end,
        })
    }

    /// The target shown to plugins: normalised path with its version prefix, and the query.
    pub fn requested(&self) -> &str {
        &self.requested
    }

    /// The path the router matches (no version prefix, no query).
    pub fn route_path(&self) -> &str {
        match &self.requested[self.route_start..self.path_end] {
            "" => "/",
            p => p,
        }
    }

    /// The query, if any.
    pub fn query(&self) -> Option<&str> {
        self.requested.get(self.path_end + 1..)
    }

    /// The URI the router is given: [`Self::route_path`] and the query.
    pub fn route_uri(&self) -> Result<Uri, ApiError> {
        let pq = if self.route_start == 0 {
            self.requested.clone()
        } else {
            let mut s = self.route_path().to_owned();
            if let Some(q) = self.query() {
                s.push('?');
                s.push_str(q);
            }
            s
        };
        pq.parse().map_err(|e| {
            ApiError::bad_request(format!("invalid request target {:?}: {e}", self.requested))
        })
    }

    /// The canonical target of `req` (set by [`middleware`]; computed if absent).
    pub fn of<B>(req: &axum::http::Request<B>) -> Result<Canonical, ApiError> {
        match req.extensions().get::<Canonical>() {
            Some(c) => Ok(c.clone()),
            None => Canonical::new(req.uri()),
        }
    }
}

/// Bytes that may stand unescaped in a path segment (RFC 3986 `pchar` without `%`).
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises one segment into `out`: decode escapes of `pchar`s, escape everything else.
fn push_segment(seg: &[u8], out: &mut Vec<u8>, whole: &str) -> Result<(), ApiError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        let (byte, step) = if b == b'%' {
            let decoded = seg
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex(h[0])? << 4 | hex(h[1])?))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid request path {whole:?}: malformed percent-encoding"
                    ))
                })?;
            (decoded, 3)
        } else {
            (b, 1)
        };
        if is_pchar(byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
        i += step;
    }
    Ok(())
}

/// The normalised form of an absolute path (see the module docs).
pub fn normalize_path(path: &str) -> Result<String, ApiError> {
    // Fast path: nothing to decode, escape, collapse or resolve.
    let bytes = path.as_bytes();
    let simple = bytes.first() == Some(&b'/')
        && bytes.iter().all(|&b| b == b'/' || is_pchar(b))
        && !path.contains("//")
        && !path.split('/').any(|s| s == "." || s == "..");
    if simple {
        return Ok(path.to_owned());
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let raw: Vec<&str> = path.split('/').skip(1).collect();
    let trailing = raw.len() > 1 && raw.last().is_some_and(|s| s.is_empty());
    for seg in raw {
        if seg.is_empty() {
            continue;
        }
        let mut out = Vec::with_capacity(seg.len());
        push_segment(seg.as_bytes(), &mut out, path)?;
        match out.as_slice() {
            b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(out),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        // Only ASCII was pushed.
        out.push_str(std::str::from_utf8(s).unwrap_or_default());
    }
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

/// Length of a leading `/v<digits>[.<digits>]` segment (0 if none).
fn version_prefix_len(path: &str) -> usize {
    let Some(rest) = path.strip_prefix("/v") else {
        return 0;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    let is_version = !version.is_empty()
        && version.split('.').count() <= 2
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if is_version { 2 + end } else { 0 }
}

/// Whether `method route_path` is served by a handler that parses a JSON body.
pub fn is_json_route(method: &Method, route_path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let segs: Vec<&str> = route_path.trim_start_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["containers", "create"]
            | ["networks", "create"]
            | ["volumes", "create"]
            | ["networks", _, "connect" | "disconnect"]
            | ["berth", "plugins", "load"]
            | ["berth", "plugins", _, "upgrade"]
    )
}

/// Checks a JSON route's Content-Type: absent or `application/json` (with parameters).
pub fn check_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(ct.as_bytes());
    let media = text.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({text}): must be 'application/json'"
        )))
    }
}

/// Reads and checks a JSON route's body: at most [`MAX_JSON_BODY`], empty or valid JSON.
async fn json_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
        .await
        .map_err(|e| ApiError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "reading the request body (at most {} MiB): {e}",
                MAX_JSON_BODY >> 20
            ),
        })?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))?;
    }
    Ok(bytes)
}

/// Rewrites `req` into its canonical form (URI, JSON body) and records [`Canonical`] and
/// [`crate::version::RequestedUri`].
pub async fn canonicalize(req: Request) -> Result<Request, ApiError> {
    let canonical = Canonical::new(req.uri())?;
    let (mut parts, body) = req.into_parts();
    parts.uri = canonical.route_uri()?;
    let body = if is_json_route(&parts.method, canonical.route_path()) {
        check_json_content_type(&parts.headers)?;
        // The body is read whatever the framing headers say (an in-process caller may send a
        // body with neither Content-Length nor Transfer-Encoding): what the handler parses is
        // exactly what the hooks and authorization were shown.
        let bytes = json_body(body).await?;
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if bytes.is_empty() {
            Body::empty()
        } else {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Body::from(bytes)
        }
    } else {
        body
    };
    parts
        .extensions
        .insert(crate::version::RequestedUri(canonical.requested.clone()));
    parts.extensions.insert(canonical);
    Ok(Request::from_parts(parts, body))
}

/// The canonicalising middleware (outermost after caller attribution and identification).
pub async fn middleware(req: Request, next: Next) -> Response {
    match canonicalize(req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(target: &str) -> (String, String) {
        let uri: Uri = target.parse().unwrap();
        let c = Canonical::new(&uri).unwrap();
        (c.requested().to_owned(), c.route_uri().unwrap().to_string())
    }

    #[test]
    fn targets_are_normalised() {
        assert_eq!(
            canon("http://x/v1.50/containers/create?name=a"),
            (
                "/v1.50/containers/create?name=a".into(),
                "/containers/create?name=a".into()
            )
        );
        assert_eq!(canon("//v1.50//containers//create").1, "/containers/create");
        assert_eq!(canon("/v1.50/containers/%63reate").1, "/containers/create");
        assert_eq!(canon("/images/../containers/./json").1, "/containers/json");
        assert_eq!(canon("/../..").1, "/");
        assert_eq!(canon("/volumes/a%2fb").1, "/volumes/a%2Fb");
        assert_eq!(canon("/volumes/a%20b/").1, "/volumes/a%20b/");
        assert_eq!(canon("/v1.41").1, "/");
        assert_eq!(canon("/volumes/v1.2").1, "/volumes/v1.2");
        assert_eq!(canon("/vabc/x").1, "/vabc/x");
        assert_eq!(canon("/_ping").0, "/_ping");
        let bad: Uri = "/containers/%zz".parse().unwrap();
        assert_eq!(
            Canonical::new(&bad).unwrap_err().status,
            axum::http::StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/%2e%2E/b", "/a%25b", "/x/%7e/y", "/%C3%A9", "/a//b/./c/"] {
            let once = normalize_path(p).unwrap();
            assert_eq!(normalize_path(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn json_routes_and_content_types() {
        assert!(is_json_route(&Method::POST, "/containers/create"));
        assert!(is_json_route(&Method::POST, "/networks/n1/connect"));
        assert!(!is_json_route(&Method::POST, "/containers/c1/start"));
        assert!(!is_json_route(&Method::GET, "/containers/create"));
        let mut h = axum::http::HeaderMap::new();
        assert!(check_json_content_type(&h).is_ok());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(check_json_content_type(&h).is_ok());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            check_json_content_type(&h).unwrap_err().message,
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
    }
}
