//! Group 1, handshake: every version is asked (`/v2/handshake` with Berth's offer, `/v1/handshake`,
//! `/Plugin.Activate`); each must answer 200 or "not this version" (404/405/501) within the
//! deadline, with well-typed fields, and the same answer when asked again. plugin-host's own
//! negotiation must then pick the highest version that answered. A v2 plugin subscribed to
//! `sync` must answer one. What the answers declare decides which other groups run.

use berth_plugin_host::negotiate;
use berth_plugin_protocol::Protocol;
use berth_plugin_protocol::mvp::HandshakeV2Request;
use berth_plugin_protocol::sync::V2_SYNC_PATH;
use serde_json::{Value, json};

use crate::wire::{Call, field};
use crate::{Ctx, Detected, Group, Outcome, verdict};

const G: Group = Group::Handshake;

/// `Implements` values Docker knows (case-sensitive, as Docker compares them).
const KNOWN_KINDS: [&str; 6] = [
    "VolumeDriver",
    "NetworkDriver",
    "IpamDriver",
    "authz",
    "LogDriver",
    "MetricsCollector",
];

/// What the handshakes declared.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// `(protocol, reply)` of each version that answered 200 with a JSON object.
    pub answered: Vec<(Protocol, Value)>,
}

impl Found {
    /// The reply of `proto`, if it answered.
    pub fn reply(&self, proto: Protocol) -> Option<&Value> {
        self.answered
            .iter()
            .find(|(p, _)| *p == proto)
            .map(|(_, v)| v)
    }

    /// MVP interests of `proto` (v1/v2): `InterestedIn` plus subscribed points, normalised.
    pub fn interests(&self, proto: Protocol) -> Vec<String> {
        let Some(v) = self.reply(proto) else {
            return Vec::new();
        };
        let mut out: Vec<String> = field(v, "InterestedIn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| {
                s.trim()
                    .to_ascii_lowercase()
                    .trim_end_matches('s')
                    .to_owned()
            })
            .collect();
        if proto == Protocol::V2
            && let Some(subs) = field(v, "Subscriptions").and_then(Value::as_object)
        {
            out.extend(subs.keys().map(|k| k.to_ascii_lowercase()));
        }
        out.sort();
        out.dedup();
        out
    }

    /// `Implements` of `/Plugin.Activate`.
    pub fn implements(&self) -> Vec<String> {
        self.reply(Protocol::Activate)
            .and_then(|v| field(v, "Implements"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    /// Whether Activate lists `kind`.
    pub fn implements_kind(&self, kind: &str) -> bool {
        self.implements().iter().any(|k| k == kind)
    }

    /// The MVP protocols (v2 first) whose handshake lists `point`.
    pub fn mvp_with(&self, point: &str) -> Vec<Protocol> {
        [Protocol::V2, Protocol::V1]
            .into_iter()
            .filter(|p| self.interests(*p).iter().any(|i| i == point))
            .collect()
    }

    /// For the report header.
    pub fn detected(&self) -> Detected {
        let mut interests: Vec<String> = [Protocol::V2, Protocol::V1]
            .iter()
            .flat_map(|p| self.interests(*p))
            .collect();
        interests.sort();
        interests.dedup();
        Detected {
            handshakes: self
                .answered
                .iter()
                .map(|(p, _)| p.handshake_path().to_owned())
                .collect(),
            interests,
            implements: self.implements(),
        }
    }

    /// `None` when some handshake answered, else why nothing can run.
    pub fn gate_any(&self) -> Option<String> {
        self.answered
            .is_empty()
            .then(|| "no handshake answered".to_owned())
    }

    /// Why the VolumeDriver group cannot run, if it cannot.
    pub fn gate_volume_driver(&self) -> Option<String> {
        self.gate_any().or_else(|| {
            (!self.implements_kind("VolumeDriver"))
                .then(|| "/Plugin.Activate does not list VolumeDriver".to_owned())
        })
    }

    /// Why the MVP volume hook group cannot run, if it cannot.
    pub fn gate_volume_hook(&self) -> Option<String> {
        self.gate_any().or_else(|| {
            self.mvp_with("volume")
                .is_empty()
                .then(|| "no v1/v2 handshake lists the volume extension point".to_owned())
        })
    }

    /// Why the network group cannot run, if it cannot.
    pub fn gate_network(&self) -> Option<String> {
        self.gate_any().or_else(|| {
            (!self.implements_kind("NetworkDriver") && !self.implements_kind("IpamDriver"))
                .then(|| "/Plugin.Activate lists neither NetworkDriver nor IpamDriver".to_owned())
        })
    }

    /// Why the api group cannot run, if it cannot.
    pub fn gate_api(&self) -> Option<String> {
        self.gate_any().or_else(|| {
            (self.mvp_with("api").is_empty() && !self.implements_kind("authz")).then(|| {
                "no v1/v2 handshake lists the api extension point and Activate does not list authz"
                    .to_owned()
            })
        })
    }
}

fn short(p: Protocol) -> &'static str {
    match p {
        Protocol::V2 => "v2",
        Protocol::V1 => "v1",
        Protocol::Activate => "activate",
    }
}

async fn ask(ctx: &Ctx, proto: Protocol) -> Call {
    if proto == Protocol::V2 {
        let offer = HandshakeV2Request::berth(env!("CARGO_PKG_VERSION"), 30_000);
        let body = serde_json::to_value(&offer).unwrap_or_default();
        ctx.probe.post(proto.handshake_path(), &body).await
    } else {
        ctx.probe.post_empty(proto.handshake_path()).await
    }
}

/// Runs the handshake checks (recorded even when the group is not selected; the caller drops
/// them) and returns what the plugin declared.
pub async fn run(ctx: &mut Ctx) -> Found {
    let mut found = Found::default();
    let mut calls: Vec<(Protocol, Call)> = Vec::new();
    for proto in Protocol::NEGOTIATION_ORDER {
        calls.push((proto, ask(ctx, proto).await));
    }

    // Each version: 200 or "not this version", within the deadline.
    for (proto, call) in &calls {
        let name = format!("version-answer[{}]", short(*proto));
        let outcome = match &call.outcome {
            Err(e) => Outcome::Fail(format!("no answer: {e}")),
            Ok(a) if a.status == 200 || matches!(a.status, 404 | 405 | 501) => Outcome::Pass,
            Ok(a) => Outcome::Fail(format!(
                "HTTP {}: a version the plugin does not speak must answer 404 (or 405/501) so the engine falls back",
                a.status
            )),
        };
        ctx.must(G, &name, "c-hs-versions", outcome, Some(call));
    }
    let answered: Vec<&(Protocol, Call)> = calls
        .iter()
        .filter(|(_, c)| c.answer().is_some_and(|a| a.status == 200))
        .collect();
    ctx.must(
        G,
        "any-version",
        "c-hs-versions",
        verdict(!answered.is_empty(), || {
            "no handshake version answered 200".to_owned()
        }),
        calls.first().map(|(_, c)| c),
    );

    // Field types.
    for (proto, call) in &answered {
        let a = call.answer().cloned();
        let body_text = a
            .as_ref()
            .map(|a| String::from_utf8_lossy(&a.body).into_owned())
            .unwrap_or_default();
        let json = if body_text.trim().is_empty() {
            Some(Value::Object(Default::default()))
        } else {
            a.and_then(|a| a.json)
        };
        let problems = match &json {
            None => vec!["the body is not JSON".to_owned()],
            Some(v) => fields_problems(*proto, v),
        };
        if problems.is_empty()
            && let Some(v) = json
        {
            found.answered.push((*proto, v));
        }
        ctx.must(
            G,
            &format!("fields[{}]", short(*proto)),
            "c-hs-fields",
            verdict(problems.is_empty(), || problems.join("; ")),
            Some(call),
        );
    }

    // Same answer when asked again.
    for (proto, first) in &answered {
        let again = ask(ctx, *proto).await;
        let same = match (first.answer(), again.answer()) {
            (Some(a), Some(b)) => {
                a.status == b.status && (a.json == b.json && a.json.is_some() || a.body == b.body)
            }
            _ => false,
        };
        ctx.must(
            G,
            &format!("repeat[{}]", short(*proto)),
            "c-hs-repeat",
            verdict(same, || {
                format!(
                    "second answer differs: first {}, then {}",
                    first.describe(),
                    again.describe()
                )
            }),
            Some(&again),
        );
    }

    // The engine's own negotiation picks the highest version that answered.
    if let Some((best, _)) = answered.first() {
        let offer = HandshakeV2Request::berth(env!("CARGO_PKG_VERSION"), 30_000);
        let got = negotiate(ctx.probe.client(), &offer, ctx.probe.deadline).await;
        let received = match &got {
            Ok(n) => format!("negotiated {}", n.protocol.handshake_path()),
            Err(e) => e.to_string(),
        };
        let outcome = match got {
            Ok(n) if n.protocol == *best => Outcome::Pass,
            Ok(n) => Outcome::Fail(format!(
                "negotiation chose {} but {} answered",
                n.protocol.handshake_path(),
                best.handshake_path()
            )),
            Err(e) => Outcome::Fail(e.to_string()),
        };
        let shown = Call {
            outcome: Err(received.clone()),
            exchange: crate::Exchange {
                sent: "the engine's negotiation: /v2/handshake, then /v1/handshake on 404, then /Plugin.Activate".to_owned(),
                received,
            },
            wrote_at: None,
        };
        ctx.must(G, "negotiation", "c-hs-versions", outcome, Some(&shown));
    }

    // A v2 plugin subscribed to `sync` answers one (an empty engine, plus a key it does not
    // know), and the same sync again the same way.
    if found.interests(Protocol::V2).iter().any(|i| i == "sync") {
        let body = json!({"Reason": "load", "Plugin": "berth-check", "Volumes": [],
            "Networks": [], "Containers": [], "BerthCheckExtra": true});
        let first = ctx.probe.post(V2_SYNC_PATH, &body).await;
        let outcome = match first.answer() {
            None => Outcome::Fail(format!("no answer: {}", first.describe())),
            Some(a) if a.status == 404 => Outcome::Fail(
                "the handshake subscribes to sync but /v2/sync answers 404".to_owned(),
            ),
            Some(a) if a.ok() || a.proper_error() => Outcome::Pass,
            Some(a) => Outcome::Fail(format!(
                "a sync must be answered 200 or with an error carrying a non-empty Err, got HTTP {}",
                a.status
            )),
        };
        ctx.must(G, "sync-answer", "c-sync-answer", outcome, Some(&first));
        let again = ctx.probe.post(V2_SYNC_PATH, &body).await;
        let same = match (first.answer(), again.answer()) {
            (Some(a), Some(b)) => a.status == b.status,
            _ => false,
        };
        ctx.must(
            G,
            "sync-repeat",
            "c-sync-answer",
            verdict(same, || {
                format!(
                    "the same sync twice got different answers: {}, then {}",
                    first.describe(),
                    again.describe()
                )
            }),
            Some(&again),
        );
    }

    // Unknown methods are "not implemented".
    let unknown = ctx.probe.post_empty("/BerthCheck.NoSuchMethod").await;
    ctx.must(
        G,
        "unknown-path",
        "c-hs-unknown",
        verdict(unknown.answer().is_some_and(|a| a.status == 404), || {
            format!(
                "an unknown path must answer 404, got {}",
                unknown.describe()
            )
        }),
        Some(&unknown),
    );
    found
}

/// What is wrong with the fields of a 200 handshake reply.
pub fn fields_problems(proto: Protocol, v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if !v.is_object() {
        return vec![format!("the reply must be a JSON object, got {v}")];
    }
    let opt_str = |p: &mut Vec<String>, key: &str| {
        if let Some(x) = field(v, key)
            && !(x.is_string() || x.is_null())
        {
            p.push(format!("{key} must be a string, got {x}"));
        }
    };
    let str_list = |p: &mut Vec<String>, key: &str, x: &Value| {
        if !(x.is_null() || x.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
            p.push(format!("{key} must be a list of strings, got {x}"));
        }
    };
    match proto {
        Protocol::V1 | Protocol::V2 => {
            for k in ["Author", "Org", "Website", "Version"] {
                opt_str(&mut p, k);
            }
            let name = field(v, "Name").or_else(|| field(v, "PluginName"));
            match name {
                Some(Value::String(s)) if !s.is_empty() => {}
                other => p.push(format!(
                    "Name must be a non-empty string, got {}",
                    other.map_or("nothing".to_owned(), Value::to_string)
                )),
            }
            if let Some(x) = field(v, "InterestedIn") {
                str_list(&mut p, "InterestedIn", x);
            }
            let mut points: Vec<String> = field(v, "InterestedIn")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| s.to_ascii_lowercase().trim_end_matches('s').to_owned())
                .collect();
            if proto == Protocol::V2 {
                if let Some(x) = field(v, "ProtocolVersion")
                    && !(x.is_null() || x.as_u64() == Some(2))
                {
                    p.push(format!("ProtocolVersion must be 2, got {x}"));
                }
                if let Some(x) = field(v, "DeadlineMs")
                    && !(x.is_null() || x.as_u64().is_some())
                {
                    p.push(format!(
                        "DeadlineMs must be a non-negative integer, got {x}"
                    ));
                }
                if let Some(x) = field(v, "FailurePolicy")
                    && !(x.is_null()
                        || x.as_str().is_some_and(|s| {
                            matches!(s.to_ascii_lowercase().as_str(), "abort" | "ignore")
                        }))
                {
                    p.push(format!(
                        "FailurePolicy must be \"abort\" or \"ignore\", got {x}"
                    ));
                }
                match field(v, "Subscriptions") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(subs)) => {
                        for (k, s) in subs {
                            points.push(k.to_ascii_lowercase());
                            subscription_problems(&mut p, k, s);
                        }
                    }
                    Some(x) => p.push(format!("Subscriptions must be an object, got {x}")),
                }
            }
            // `sync` (v2 only) is a point too: a v2 driver plugin may declare nothing else.
            if !points.iter().any(|i| {
                matches!(i.as_str(), "volume" | "network" | "api")
                    || (proto == Protocol::V2 && i == "sync")
            }) {
                p.push(
                    "declares no known extension point (volume, network, api; sync for v2): it would get no calls"
                        .to_owned(),
                );
            }
        }
        Protocol::Activate => match field(v, "Implements") {
            Some(Value::Array(a)) => {
                for k in a {
                    match k.as_str() {
                        Some(s) if KNOWN_KINDS.contains(&s) => {}
                        _ => p.push(format!(
                            "Implements entry {k} is not one of {} (Docker compares them case-sensitively)",
                            KNOWN_KINDS.join(", ")
                        )),
                    }
                }
            }
            other => p.push(format!(
                "Implements must be a list, got {}",
                other.map_or("nothing".to_owned(), Value::to_string)
            )),
        },
    }
    p
}

fn subscription_problems(p: &mut Vec<String>, point: &str, s: &Value) {
    if s.is_null() {
        return;
    }
    let Some(obj) = s.as_object() else {
        p.push(format!("Subscriptions.{point} must be an object, got {s}"));
        return;
    };
    for (k, x) in obj {
        // `api.BodyJSON` is the one flag among the lists.
        if point.eq_ignore_ascii_case("api") && k == "BodyJSON" {
            if !(x.is_null() || x.is_boolean()) {
                p.push(format!(
                    "Subscriptions.api.BodyJSON must be a boolean, got {x}"
                ));
            }
            continue;
        }
        let ok = x.is_null() || x.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            p.push(format!(
                "Subscriptions.{point}.{k} must be a list of strings, got {x}"
            ));
            continue;
        }
        if point.eq_ignore_ascii_case("api") {
            for pat in x.as_array().into_iter().flatten().filter_map(Value::as_str) {
                let path = pat.split_once(' ').map_or(pat, |(_, g)| g);
                if !path.starts_with('/') && !path.starts_with('*') {
                    p.push(format!(
                        "Subscriptions.api.{k} pattern {pat:?} must be \"METHOD /glob\""
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_body_json_is_a_boolean_flag_among_the_lists() {
        let hs = |api: Value| {
            json!({"ProtocolVersion": 2, "Name": "p", "InterestedIn": ["api"],
                   "Subscriptions": {"api": api}})
        };
        let ok = hs(json!({"Pre": ["POST /containers/create"], "BodyJSON": true}));
        assert_eq!(fields_problems(Protocol::V2, &ok), Vec::<String>::new());
        let bad = hs(json!({"Pre": ["POST /containers/create"], "BodyJSON": "yes"}));
        let p = fields_problems(Protocol::V2, &bad);
        assert!(
            p.iter().any(|m| m.contains("BodyJSON must be a boolean")),
            "{p:?}"
        );
    }
}
