//! Group 5, API hooks (Powerstrip-shaped pre/post hooks, v1 = every request, v2 = the subscribed
//! patterns) and Docker's `AuthZPlugin`: reply shapes, a rejection's status and message, and the
//! same behaviour whatever the body: empty, sent chunked, or large (the CVE-2024-41110 classes).

use base64::Engine as _;
use berth_plugin_protocol::Protocol;
use berth_plugin_protocol::mvp::{HandshakeV2, Subscriptions};
use serde_json::{Value, json};

use crate::handshake::Found;
use crate::wire::{Call, Framing, field, raw_exchange};
use crate::{Ctx, Group, Outcome, verdict};

const G: Group = Group::Api;

/// Size of the padded body of the "large body" checks.
pub const LARGE_BODY: usize = 2 << 20;

fn tag(p: Protocol) -> &'static str {
    if p == Protocol::V2 { "v2" } else { "v1" }
}

/// What an engine acts on: the status and the JSON (or raw text) reply.
fn effect(c: &Call) -> Option<(u16, Value)> {
    let a = c.answer()?;
    Some((
        a.status,
        a.json
            .clone()
            .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&a.body).into_owned())),
    ))
}

/// A request path matching one of `patterns` (for v2 subscriptions), or the default.
fn pick_request(
    patterns: &[String],
    wants: impl Fn(&str, &str) -> bool,
) -> Option<(String, String)> {
    let default = (
        "POST".to_owned(),
        "/v1.47/containers/create?name=berth-check".to_owned(),
    );
    if wants(&default.0, &default.1) {
        return Some(default);
    }
    for p in patterns {
        let (m, glob) = p.trim().split_once(' ').unwrap_or(("*", p.trim()));
        let method = if m == "*" { "POST" } else { m }.to_ascii_uppercase();
        let path: String = glob.trim().replace(['*', '?'], "x");
        if wants(&method, &path) {
            return Some((method, path));
        }
    }
    None
}

fn hook_shape(c: &Call, key: &str) -> Outcome {
    let Some(a) = c.answer() else {
        return Outcome::Fail(format!("no answer: {}", c.describe()));
    };
    if a.status == 404 || a.proper_error() {
        return Outcome::Pass;
    }
    if !a.ok() {
        return Outcome::Fail(format!(
            "a hook must answer 200, 404 or an error with a non-empty Err; got HTTP {}",
            a.status
        ));
    }
    let Some(v) = a.json.as_ref().filter(|v| v.is_object()) else {
        return Outcome::Fail("a 200 reply must be a JSON object".to_owned());
    };
    let mut p = Vec::new();
    if let Some(x) = field(v, "PowerstripProtocolVersion")
        && !(x.is_null() || x.as_u64() == Some(1))
    {
        p.push(format!("PowerstripProtocolVersion must be 1, got {x}"));
    }
    match field(v, key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            let get = |k: &str| field(&Value::Object(m.clone()), k).cloned();
            for k in ["Method", "Request", "ContentType"] {
                if let Some(x) = get(k)
                    && !(x.is_string() || x.is_null())
                {
                    p.push(format!("{key}.{k} must be a string, got {x}"));
                }
            }
            if let Some(x) = get("Body")
                && !(x.is_string() || x.is_null())
            {
                p.push(format!(
                    "{key}.Body must be the body text as a string or null, got {x}"
                ));
            }
            // `BodyJSON` (Berth's additive form) is any JSON value, but never alongside `Body`.
            if get("BodyJSON").is_some() && get("Body").is_some() {
                p.push(format!("{key} must not carry both Body and BodyJSON"));
            }
            if let Some(x) = get("Code")
                && !(x.is_null() || x.as_u64().is_some_and(|c| (100..600).contains(&c)))
            {
                p.push(format!("{key}.Code must be an HTTP status, got {x}"));
            }
        }
        Some(x) => p.push(format!("{key} must be an object, got {x}")),
    }
    verdict(p.is_empty(), || p.join("; "))
}

fn same_effect(a: &Call, b: &Call, what: &str) -> Outcome {
    verdict(effect(a).is_some() && effect(a) == effect(b), || {
        format!(
            "{what} changed the answer: {} instead of {}",
            b.describe(),
            a.describe()
        )
    })
}

fn pre_body(method: &str, path: &str, body: Option<String>) -> Value {
    json!({"PowerstripProtocolVersion": 1, "Type": "pre-hook",
           "ClientRequest": {"Method": method, "Request": path, "Body": body}})
}

fn large_json() -> String {
    json!({"Image": "busybox", "Labels": {"berth.check.pad": "x".repeat(LARGE_BODY)}}).to_string()
}

/// Runs the group.
pub async fn run(ctx: &mut Ctx, found: &Found) {
    for proto in found.mvp_with("api") {
        hooks(ctx, found, proto).await;
    }
    if found.implements_kind("authz") {
        authz(ctx).await;
    }
}

async fn hooks(ctx: &mut Ctx, found: &Found, proto: Protocol) {
    let t = tag(proto);
    let subs: Subscriptions = if proto == Protocol::V2 {
        found
            .reply(Protocol::V2)
            .and_then(|v| serde_json::from_value::<HandshakeV2>(v.clone()).ok())
            .map(|h| h.effective_subscriptions())
            .unwrap_or_default()
    } else {
        Subscriptions::all_for(&["api".to_owned()])
    };
    let raw_patterns = |key: &str| -> Vec<String> {
        found
            .reply(Protocol::V2)
            .and_then(|v| field(v, "Subscriptions"))
            .and_then(|s| field(s, "api"))
            .and_then(|a| field(a, key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect()
    };
    let (pre_path, post_path) = if proto == Protocol::V2 {
        ("/v2/api/pre-hook", "/v2/api/post-hook")
    } else {
        ("/v1/api/pre-hook", "/v1/api/post-hook")
    };
    let socket = ctx.probe.socket().to_path_buf();
    let deadline = ctx.probe.deadline;

    match pick_request(&raw_patterns("Pre"), |m, p| subs.wants_api_pre(m, p)) {
        None => ctx.must(
            G,
            &format!("pre-hook[{t}]"),
            "c-api-shape",
            Outcome::Skip("no pre-hook subscription".to_owned()),
            None,
        ),
        Some((method, path)) => {
            let body = pre_body(&method, &path, Some(r#"{"Image":"busybox"}"#.to_owned()));
            let first = ctx.probe.post(pre_path, &body).await;
            ctx.must(
                G,
                &format!("pre-hook-shape[{t}]"),
                "c-api-shape",
                hook_shape(&first, "ModifiedClientRequest"),
                Some(&first),
            );
            let privileged = pre_body(
                &method,
                &path,
                Some(r#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#.to_owned()),
            );
            let rej = ctx.probe.post(pre_path, &privileged).await;
            let outcome = match rej.answer() {
                None => Outcome::Fail(format!("no answer: {}", rej.describe())),
                Some(a) if a.ok() || a.status == 404 => Outcome::Pass,
                Some(a) => verdict(
                    (400..600).contains(&a.status) && a.err_text().is_some(),
                    || {
                        format!(
                            "a rejection must be a 4xx/5xx status with a non-empty Err (the client sees both), got HTTP {}",
                            a.status
                        )
                    },
                ),
            };
            ctx.must(
                G,
                &format!("pre-hook-rejection[{t}]"),
                "c-api-reject",
                outcome,
                Some(&rej),
            );
            let empty = ctx
                .probe
                .post(pre_path, &pre_body(&method, &path, None))
                .await;
            ctx.must(
                G,
                &format!("pre-hook-empty-body[{t}]"),
                "c-api-bodies",
                hook_shape(&empty, "ModifiedClientRequest"),
                Some(&empty),
            );
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let chunked = raw_exchange(&socket, pre_path, &bytes, Framing::Chunked, deadline).await;
            ctx.must(
                G,
                &format!("pre-hook-chunked[{t}]"),
                "c-api-bodies",
                same_effect(&first, &chunked, "a chunked request body"),
                Some(&chunked),
            );
            let large = ctx
                .probe
                .post(pre_path, &pre_body(&method, &path, Some(large_json())))
                .await;
            ctx.must(
                G,
                &format!("pre-hook-large-body[{t}]"),
                "c-api-bodies",
                hook_shape(&large, "ModifiedClientRequest"),
                Some(&large),
            );
        }
    }
    match pick_request(&raw_patterns("Post"), |m, p| subs.wants_api_post(m, p)) {
        None => ctx.must(
            G,
            &format!("post-hook[{t}]"),
            "c-api-shape",
            Outcome::Skip("no post-hook subscription".to_owned()),
            None,
        ),
        Some((method, path)) => {
            let body = json!({"PowerstripProtocolVersion": 1, "Type": "post-hook",
                "ClientRequest": {"Method": method, "Request": path, "Body": null},
                "ServerResponse": {"ContentType": "application/json",
                                   "Body": r#"{"Id":"berth-check"}"#, "Code": 200}});
            let c = ctx.probe.post(post_path, &body).await;
            ctx.must(
                G,
                &format!("post-hook-shape[{t}]"),
                "c-api-shape",
                hook_shape(&c, "ModifiedServerResponse"),
                Some(&c),
            );
        }
    }
}

fn authz_req(method: &str, uri: &str, body: Option<&[u8]>) -> Value {
    let mut v = json!({"User": "", "UserAuthNMethod": "", "RequestMethod": method,
        "RequestUri": uri, "RequestHeaders": {"Content-Type": "application/json"}});
    if let Some(b) = body {
        v["RequestBody"] = Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    }
    v
}

fn authz_shape(c: &Call) -> Outcome {
    let Some(a) = c.answer() else {
        return Outcome::Fail(format!("no answer: {}", c.describe()));
    };
    if a.status != 200 {
        return Outcome::Fail(format!(
            "AuthZ must answer 200 (a deny is Allow=false, any other status is a plugin failure), got HTTP {}",
            a.status
        ));
    }
    let Some(v) = a.json.as_ref().filter(|v| v.is_object()) else {
        return Outcome::Fail("the reply must be a JSON object".to_owned());
    };
    let mut p = Vec::new();
    match field(v, "Allow") {
        Some(Value::Bool(_)) => {}
        other => p.push(format!(
            "Allow must be a boolean, got {}",
            other.map_or("nothing".to_owned(), Value::to_string)
        )),
    }
    for k in ["Msg", "Err"] {
        if let Some(x) = field(v, k)
            && !(x.is_string() || x.is_null())
        {
            p.push(format!("{k} must be a string, got {x}"));
        }
    }
    verdict(p.is_empty(), || p.join("; "))
}

async fn authz(ctx: &mut Ctx) {
    const REQ: &str = "/AuthZPlugin.AuthZReq";
    let plain = authz_req("GET", "/v1.47/version", None);
    let first = ctx.probe.post(REQ, &plain).await;
    ctx.must(
        G,
        "authz-request-shape",
        "c-authz-shape",
        authz_shape(&first),
        Some(&first),
    );
    let mut res = authz_req("GET", "/v1.47/version", None);
    res["ResponseStatusCode"] = json!(200);
    res["ResponseBody"] =
        Value::String(base64::engine::general_purpose::STANDARD.encode(br#"{"Version":"x"}"#));
    res["ResponseHeaders"] = json!({"Content-Type": "application/json"});
    let r = ctx.probe.post("/AuthZPlugin.AuthZRes", &res).await;
    ctx.must(
        G,
        "authz-response-shape",
        "c-authz-shape",
        authz_shape(&r),
        Some(&r),
    );

    let priv_body = br#"{"Image":"busybox","HostConfig":{"Privileged":true}}"#;
    let deny = ctx
        .probe
        .post(
            REQ,
            &authz_req("POST", "/v1.47/containers/create", Some(priv_body)),
        )
        .await;
    let outcome = match deny.answer().and_then(|a| a.json.as_ref()) {
        Some(v) if field(v, "Allow") == Some(&Value::Bool(false)) => {
            let msg = field(v, "Msg").and_then(Value::as_str).unwrap_or_default();
            verdict(
                !msg.is_empty() && deny.answer().is_some_and(|a| a.status == 200),
                || {
                    "a deny must be 200 with Allow=false and a non-empty Msg (the user sees it)"
                        .to_owned()
                },
            )
        }
        _ => authz_shape(&deny),
    };
    ctx.must(G, "authz-deny", "c-authz-deny", outcome, Some(&deny));

    let empty = ctx
        .probe
        .post(REQ, &authz_req("POST", "/v1.47/containers/create", None))
        .await;
    ctx.must(
        G,
        "authz-empty-body",
        "c-api-bodies",
        authz_shape(&empty),
        Some(&empty),
    );
    // The body decides a deny: sent chunked, the same request must get the same decision.
    let priv_req = authz_req("POST", "/v1.47/containers/create", Some(priv_body));
    let bytes = serde_json::to_vec(&priv_req).unwrap_or_default();
    let chunked = raw_exchange(
        ctx.probe.socket(),
        REQ,
        &bytes,
        Framing::Chunked,
        ctx.probe.deadline,
    )
    .await;
    ctx.must(
        G,
        "authz-chunked",
        "c-api-bodies",
        same_effect(&deny, &chunked, "a chunked request body"),
        Some(&chunked),
    );
    let large = large_json();
    let big = ctx
        .probe
        .post(
            REQ,
            &authz_req("POST", "/v1.47/containers/create", Some(large.as_bytes())),
        )
        .await;
    ctx.must(
        G,
        "authz-large-body",
        "c-api-bodies",
        authz_shape(&big),
        Some(&big),
    );
}
