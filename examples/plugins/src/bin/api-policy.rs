//! `api-policy`: an example `api` plugin (Berth v2 handshake, with subscriptions). Its pre-hook on
//! `POST /containers/create` rejects privileged containers with a policy message and adds a label
//! to every other container; its post-hook on `GET /version` adds a field naming the policy, to
//! show a response rewrite. Run two instances with different `--label`s to watch chaining.
//!
//! `--observe` keeps the same subscriptions but changes nothing: both hooks hand back what they
//! were given, so the SDK answers with the short "no change" reply. That is the cheapest hook a
//! plugin can be (an audit log, a metrics tap), and the like-for-like case for the hook-cost
//! bench (`tests/benches/hook_cost.py`, `PLUGIN=observe`).

use std::collections::BTreeMap;

use berth_plugin_sdk::protocol::Protocol;
use berth_plugin_sdk::protocol::powerstrip::{ClientRequest, ServerResponse};
use berth_plugin_sdk::{HandlerError, Plugin};
use clap::Parser;
use serde_json::value::RawValue;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: berth_example_plugins::PluginSocket,
    /// Name announced in the handshake.
    #[arg(long, default_value = "api-policy")]
    name: String,
    /// Label added to every container create, as KEY=VALUE (repeatable).
    #[arg(long, default_value = "berth.policy=checked")]
    label: Vec<String>,
    /// Also answer the MVP v1 handshake only (every request, no subscriptions).
    #[arg(long)]
    v1: bool,
    /// Observe only: subscribe to the same hooks but never change or refuse anything (every
    /// hook answers "no change").
    #[arg(long)]
    observe: bool,
}

/// The policy: refuse `HostConfig.Privileged`, label everything else.
fn apply_policy(body: Option<&str>, labels: &[(String, String)]) -> Result<String, HandlerError> {
    let mut v: Value = match body {
        Some(b) if !b.trim().is_empty() => serde_json::from_str(b)
            .map_err(|e| HandlerError::new(format!("create body is not JSON: {e}")))?,
        _ => json!({}),
    };
    if v.pointer("/HostConfig/Privileged").and_then(Value::as_bool) == Some(true) {
        return Err(HandlerError {
            status: 403,
            message: "policy: privileged containers are not allowed on this engine".into(),
        });
    }
    let Some(obj) = v.as_object_mut() else {
        return Err(HandlerError::new("create body is not a JSON object"));
    };
    let entry = obj.entry("Labels").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    if let Value::Object(l) = entry {
        for (key, value) in labels {
            l.insert(key.clone(), Value::String(value.clone()));
        }
    }
    Ok(v.to_string())
}

/// `body` (a JSON object) with `key` set to the string `value`, or `None` when it is not an
/// object. Only the top level is decoded: the other members are copied through as they are.
fn with_field(body: &str, key: &str, value: &str) -> Option<String> {
    let mut o: BTreeMap<String, &RawValue> = serde_json::from_str(body).ok()?;
    let value = serde_json::value::to_raw_value(value).ok()?;
    o.insert(key.to_owned(), &value);
    serde_json::to_string(&o).ok()
}

// One thread: a hook is one small request at a time per connection, and a multi-threaded runtime
// would hop between worker threads (a cross-CPU wake-up, ~25 µs here) on every call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let labels: Vec<(String, String)> = args
        .label
        .iter()
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow::anyhow!("--label must be KEY=VALUE"))?;
    let labels = std::sync::Arc::new(labels);
    let name = args.name.clone();
    let observe = args.observe;
    let protocols: &[Protocol] = if args.v1 {
        &[Protocol::V1]
    } else {
        &[Protocol::V2, Protocol::V1]
    };
    Plugin::builder(&args.name)
        .author("Berth examples")
        .org("Berth")
        .website("https://example.invalid/berth")
        .version("0.1")
        .answer_only(protocols)
        .api_pre(
            &["POST /containers/create"],
            move |mut req: ClientRequest| {
                let labels = labels.clone();
                async move {
                    // v1 plugins get every request: only creates are ours.
                    if !observe
                        && req.method == "POST"
                        && req
                            .request
                            .split('?')
                            .next()
                            .is_some_and(|p| p.ends_with("/containers/create"))
                    {
                        req.body = Some(apply_policy(req.body.as_deref(), &labels)?);
                    }
                    Ok::<_, HandlerError>(req)
                }
            },
        )
        .api_post(
            &["GET /version"],
            move |req: ClientRequest, mut resp: ServerResponse| {
                let name = name.clone();
                async move {
                    let is_version = !observe
                        && req.method == "GET"
                        && req
                            .request
                            .split('?')
                            .next()
                            .is_some_and(|p| p.ends_with("/version"));
                    if is_version
                        && let Some(b) = resp
                            .body
                            .as_deref()
                            .and_then(|b| with_field(b, "BerthPolicy", &name))
                    {
                        resp.body = Some(b);
                    }
                    Ok::<_, HandlerError>(resp)
                }
            },
        )
        .build()
        .serve_until_signal(&args.listen.socket)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_labels_and_refuses() {
        let kv = [("k".to_owned(), "v".to_owned())];
        let out = apply_policy(Some(r#"{"Image":"bb","Labels":{"a":"b"}}"#), &kv).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Labels"], json!({"a": "b", "k": "v"}));
        let out = apply_policy(Some(r#"{"Image":"bb","Labels":null}"#), &kv).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["Labels"],
            json!({"k": "v"})
        );
        let err = apply_policy(Some(r#"{"HostConfig":{"Privileged":true}}"#), &kv).unwrap_err();
        assert_eq!(err.status, 403);
    }

    #[test]
    fn version_field_added_and_the_rest_kept() {
        let body = r#"{"Version":"1.0","Components":[{"Name":"Engine","Details":{"a":"\"q\""}}]}"#;
        let out = with_field(body, "BerthPolicy", "p1").unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let mut want: Value = serde_json::from_str(body).unwrap();
        want["BerthPolicy"] = json!("p1");
        assert_eq!(v, want);
        assert_eq!(
            with_field("[1]", "BerthPolicy", "p1"),
            None,
            "not an object"
        );
        assert_eq!(with_field("{", "BerthPolicy", "p1"), None, "not JSON");
    }
}
