//! Group 3, the MVP volume hook (v1 `/v1/volume/volumes`, v2 `/v2/volume/create|start`): the
//! answer is 404 ("not mine"), a rewrite `{"HostPath": "/absolute/existing"}`, or an error with
//! `Err`; it is the same at create and at start, and the same for the same input.

use berth_plugin_protocol::Protocol;
use berth_plugin_protocol::mvp::{HandshakeV2, V1_VOLUME_PATH, V1_VOLUME_PATH_ALT, VolumeEvent};
use serde_json::{Value, json};

use crate::handshake::Found;
use crate::wire::{Call, field};
use crate::{Ctx, Group, Outcome, verdict};

const G: Group = Group::VolumeHook;

fn tag(p: Protocol) -> &'static str {
    if p == Protocol::V2 { "v2" } else { "v1" }
}

async fn send(ctx: &Ctx, proto: Protocol, event: VolumeEvent, cid: &str) -> Call {
    match proto {
        Protocol::V2 => {
            let body = json!({"HostPath": ctx.opts.hook_path, "ContainerID": cid,
                "Event": event.as_str(), "ContainerPath": "/data", "ReadOnly": false});
            let path = event.path(Protocol::V2).unwrap_or_default();
            ctx.probe.post(&path, &body).await
        }
        _ => {
            let body = json!({"HostPath": ctx.opts.hook_path, "ContainerID": cid});
            let c = ctx.probe.post(V1_VOLUME_PATH, &body).await;
            if c.answer().is_some_and(|a| a.status == 404) {
                ctx.probe.post(V1_VOLUME_PATH_ALT, &body).await
            } else {
                c
            }
        }
    }
}

/// `(status, HostPath)` — what an engine acts on.
fn effect(c: &Call) -> Option<(u16, String)> {
    let a = c.answer()?;
    let hp = a
        .json
        .as_ref()
        .and_then(|v| field(v, "HostPath"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some((a.status, if a.ok() { hp } else { String::new() }))
}

fn shape(c: &Call, sent: &str) -> Outcome {
    let Some(a) = c.answer() else {
        return Outcome::Fail(format!("no answer: {}", c.describe()));
    };
    if a.status == 404 || a.proper_error() {
        return Outcome::Pass;
    }
    if !a.ok() {
        return Outcome::Fail(format!(
            "the hook must answer 200, 404 (not mine) or an error with a non-empty Err; got HTTP {}",
            a.status
        ));
    }
    let Some(v) = a.json.as_ref().filter(|v| v.is_object()) else {
        return Outcome::Fail("a 200 reply must be a JSON object".to_owned());
    };
    match field(v, "HostPath") {
        None | Some(Value::Null) => Outcome::Pass,
        Some(Value::String(s)) if s.is_empty() || s == sent => Outcome::Pass,
        Some(Value::String(s)) if !s.starts_with('/') => {
            Outcome::Fail(format!("the rewritten HostPath {s:?} must be absolute"))
        }
        Some(Value::String(s)) if !std::path::Path::new(s).exists() => Outcome::Fail(format!(
            "the rewritten HostPath {s:?} does not exist on this host (the engine bind-mounts it)"
        )),
        Some(Value::String(_)) => Outcome::Pass,
        Some(x) => Outcome::Fail(format!("HostPath must be a string, got {x}")),
    }
}

/// Runs the group for every MVP version that lists `volume`.
pub async fn run(ctx: &mut Ctx, found: &Found) {
    for proto in found.mvp_with("volume") {
        let t = tag(proto);
        let cid = format!("{:0<64}", format!("bc{}", ctx.tag));
        let events: Vec<VolumeEvent> = if proto == Protocol::V2 {
            let subs = found
                .reply(Protocol::V2)
                .and_then(|v| serde_json::from_value::<HandshakeV2>(v.clone()).ok())
                .map(|h| h.effective_subscriptions());
            [VolumeEvent::Create, VolumeEvent::Start]
                .into_iter()
                .filter(|e| subs.as_ref().is_none_or(|s| s.wants_volume(*e)))
                .collect()
        } else {
            vec![VolumeEvent::Create]
        };
        let Some(first_event) = events.first().copied() else {
            ctx.must(
                G,
                &format!("events[{t}]"),
                "c-hook-events",
                Outcome::Skip("subscribed to neither create nor start".to_owned()),
                None,
            );
            continue;
        };
        let first = send(ctx, proto, first_event, &cid).await;
        ctx.must(
            G,
            &format!("shape[{t}]"),
            "c-hook-shape",
            shape(&first, &ctx.opts.hook_path),
            Some(&first),
        );
        let again = send(ctx, proto, first_event, &cid).await;
        ctx.must(
            G,
            &format!("deterministic[{t}]"),
            "c-hook-deterministic",
            verdict(
                effect(&first).is_some() && effect(&first) == effect(&again),
                || {
                    format!(
                        "the same input got two answers: {} then {}",
                        first.describe(),
                        again.describe()
                    )
                },
            ),
            Some(&again),
        );
        if let Some(&second_event) = events.get(1) {
            let other = send(ctx, proto, second_event, &cid).await;
            ctx.must(
                G,
                &format!("create-start[{t}]"),
                "c-hook-events",
                verdict(effect(&first) == effect(&other), || {
                    format!(
                        "create answered {}, start answered {}",
                        first.describe(),
                        other.describe()
                    )
                }),
                Some(&other),
            );
        }
    }
}
