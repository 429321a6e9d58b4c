//! Handshake negotiation: `POST /v2/handshake` → `/v1/handshake` → `/Plugin.Activate`, walking
//! down while the answer means "not this version": 404/405/501, or a 200 that is unusable as that
//! version (a non-empty `Err`/`Error`, a body that does not decode, a v1/v2 answer with neither a
//! name nor any interest, an `Activate` answer implementing nothing). A missing socket or refused
//! connection means "not up yet": poll again with a short backoff (10 ms doubling to 200 ms) until
//! the load deadline. Failures list every version tried and its answer.

use std::time::Duration;

use berth_plugin_protocol::legacy::ActivateResponse;
use berth_plugin_protocol::mvp::{HandshakeV1, HandshakeV2, HandshakeV2Request, Subscriptions};
use berth_plugin_protocol::{FailurePolicy, Protocol, error_text};
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::client::{CallErrorKind, PluginClient, fmt_duration, snippet};

/// What a handshake established.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Negotiated {
    /// The handshake family that answered.
    pub protocol: Protocol,
    /// Plugin name from the handshake (may be empty for `Activate`).
    pub name: String,
    /// Author, org, website, version as told.
    pub info: PluginInfo,
    /// Extension points (`volume`, `network`, `api`) or, for `Activate`, the `Implements` kinds.
    pub interests: Vec<String>,
    /// Effective subscriptions (v1: everything for each interest).
    pub subscriptions: Subscriptions,
    /// `Implements` of an `Activate` answer.
    pub implements: Vec<String>,
    /// v2: requested per-call deadline.
    pub requested_deadline_ms: Option<u64>,
    /// v2: requested failure policy.
    pub requested_failure_policy: Option<FailurePolicy>,
    /// What looked wrong in the answer but did not refuse it (an unknown key, with a
    /// did-you-mean when one is close).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Descriptive fields of a handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginInfo {
    /// Author.
    pub author: String,
    /// Organisation.
    pub org: String,
    /// Website.
    pub website: String,
    /// Plugin version (v2).
    pub version: String,
}

/// A failed negotiation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandshakeError {
    /// Every known version answered "not this version" (404, or a 200 unusable as that version).
    #[error("plugin \"{plugin}\": speaks no handshake version Berth knows: tried {}", fmt_tried(.tried))]
    NoVersion {
        /// Plugin name or socket.
        plugin: String,
        /// `(path, answer)` per attempt.
        tried: Vec<(String, String)>,
    },
    /// The load deadline passed.
    #[error("plugin \"{plugin}\": no handshake within {}: {}", fmt_duration(*.deadline), fmt_pending(.tried, .not_up))]
    Deadline {
        /// Plugin name or socket.
        plugin: String,
        /// The load deadline.
        deadline: Duration,
        /// Attempts of the last round.
        tried: Vec<(String, String)>,
        /// The last "not up" reason, when the plugin never accepted a connection.
        not_up: Option<String>,
    },
    /// A handshake answer of a version Berth knows, refused: it would load a plugin that does
    /// nothing, or hook more than the plugin asked for (a misspelt `Subscriptions`).
    #[error("plugin \"{plugin}\": handshake refused: {path} answered {reason}")]
    Refused {
        /// Plugin name or socket.
        plugin: String,
        /// Handshake path that answered.
        path: String,
        /// Why the answer is refused.
        reason: String,
    },
    /// A handshake answered with an error.
    #[error("plugin \"{plugin}\": handshake failed: tried {}", fmt_tried(.tried))]
    Failed {
        /// Plugin name or socket.
        plugin: String,
        /// `(path, answer)` per attempt.
        tried: Vec<(String, String)>,
    },
}

fn fmt_tried(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(p, a)| format!("{p} ({a})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_pending(tried: &[(String, String)], not_up: &Option<String>) -> String {
    match (tried.is_empty(), not_up) {
        (true, Some(r)) => r.clone(),
        (true, None) => "nothing tried".to_owned(),
        (false, _) => format!("tried {}", fmt_tried(tried)),
    }
}

const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// After this many connections in a row closed before an answer, the handler is taken as
/// crashing (not as still starting) and the load fails.
const CLOSED_LIMIT: u32 = 3;

/// Negotiates with the plugin behind `client` until `load_deadline` (a duration from now).
pub async fn negotiate(
    client: &PluginClient,
    offer: &HandshakeV2Request,
    load_deadline: Duration,
) -> Result<Negotiated, HandshakeError> {
    let until = Instant::now() + load_deadline;
    let offer_body = Bytes::from(serde_json::to_vec(offer).unwrap_or_default());
    let mut backoff = BACKOFF_START;
    let mut not_up: Option<String> = None;
    // Connections accepted then closed without an answer: a handler that crashes.
    let mut closed = 0u32;
    'round: loop {
        let mut tried: Vec<(String, String)> = Vec::new();
        for proto in Protocol::NEGOTIATION_ORDER {
            let path = proto.handshake_path();
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_error(client, load_deadline, tried, not_up));
            }
            let body = if proto == Protocol::V2 {
                offer_body.clone()
            } else {
                Bytes::new()
            };
            match client.post_raw(path, body, remaining).await {
                Ok(reply) if reply.status == StatusCode::OK => {
                    match decode(proto, &reply.body) {
                        Ok(n) => return Ok(n),
                        Err(Undecodable::Refused(reason)) => {
                            return Err(HandshakeError::Refused {
                                plugin: client.name(),
                                path: path.to_owned(),
                                reason,
                            });
                        }
                        // A 200 that is no usable answer of this version: try the next one.
                        Err(Undecodable::NotThisVersion(why)) => {
                            tried.push((path.to_owned(), format!("200 {why}")))
                        }
                    }
                }
                Ok(reply) if matches!(reply.status.as_u16(), 404 | 405 | 501) => {
                    tried.push((path.to_owned(), reply.status.as_u16().to_string()));
                }
                Ok(reply) => {
                    let text = client
                        .interpret::<serde_json::Value>(path, reply)
                        .err()
                        .map(|e| e.kind.to_string());
                    tried.push((path.to_owned(), text.unwrap_or_default()));
                    return Err(HandshakeError::Failed {
                        plugin: client.name(),
                        tried,
                    });
                }
                Err(e) if e.is_deadline() => {
                    tried.push((path.to_owned(), "no answer".to_owned()));
                    return Err(deadline_error(client, load_deadline, tried, not_up));
                }
                Err(e) => {
                    // Not up yet (or the connection broke while it starts): poll again.
                    not_up = Some(match &e.kind {
                        CallErrorKind::NotUp { socket, reason }
                            if reason.contains("os error 2") =>
                        {
                            format!("the socket never appeared at {socket}")
                        }
                        CallErrorKind::NotUp { socket, reason } => {
                            format!("the socket at {socket} refused connections ({reason})")
                        }
                        other => {
                            closed += 1;
                            let why = format!("connection closed before an answer ({other})");
                            if closed >= CLOSED_LIMIT {
                                tried.push((path.to_owned(), why));
                                return Err(HandshakeError::Failed {
                                    plugin: client.name(),
                                    tried,
                                });
                            }
                            why
                        }
                    });
                    let remaining = until.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Err(deadline_error(client, load_deadline, tried, not_up));
                    }
                    tokio::time::sleep(backoff.min(remaining)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue 'round;
                }
            }
        }
        return Err(HandshakeError::NoVersion {
            plugin: client.name(),
            tried,
        });
    }
}

fn deadline_error(
    client: &PluginClient,
    deadline: Duration,
    tried: Vec<(String, String)>,
    not_up: Option<String>,
) -> HandshakeError {
    HandshakeError::Deadline {
        plugin: client.name(),
        deadline,
        tried,
        not_up,
    }
}

/// Why a 200 handshake reply was not taken.
#[derive(Debug)]
enum Undecodable {
    /// Not an answer of this version: negotiation walks down to the next one.
    NotThisVersion(String),
    /// An answer of this version, refused: negotiation stops.
    Refused(String),
}

/// Top-level keys of a v1 answer.
const V1_KEYS: &[&str] = &[
    "InterestedIn",
    "Name",
    "PluginName",
    "Author",
    "Org",
    "Website",
];
/// Top-level keys of a v2 answer.
const V2_KEYS: &[&str] = &[
    "ProtocolVersion",
    "Name",
    "PluginName",
    "Version",
    "Author",
    "Org",
    "Website",
    "InterestedIn",
    "Subscriptions",
    "DeadlineMs",
    "FailurePolicy",
];
/// Keys of `Subscriptions` (v2).
const SUBSCRIPTION_KEYS: &[&str] = &["volume", "network", "api", "sync"];
/// Keys that decide what the plugin is called for: a misspelling of one is refused, because
/// the default it falls back to (no interests, or every event) is never what was meant.
const DECIDING_KEYS: &[&str] = &[
    "InterestedIn",
    "Subscriptions",
    "volume",
    "network",
    "api",
    "sync",
];

/// Levenshtein distance, case-insensitive (handshake keys are short: quadratic is fine).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key`, when close enough to be a misspelling of it.
pub fn did_you_mean<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Unknown keys of `obj` against `known`: warnings, and whether one misspells a deciding key.
fn unknown_keys(
    obj: &serde_json::Value,
    known: &[&str],
    at: &str,
    warnings: &mut Vec<String>,
    refusals: &mut Vec<String>,
) {
    let Some(map) = obj.as_object() else { return };
    for key in map.keys() {
        if known.contains(&key.as_str()) || matches!(key.as_str(), "Err" | "Error") {
            continue;
        }
        match did_you_mean(key, known) {
            Some(k) if DECIDING_KEYS.contains(&k) => {
                refusals.push(format!("unknown key {at}{key:?} (did you mean {k:?}?)"))
            }
            Some(k) => warnings.push(format!(
                "unknown key {at}{key:?} ignored (did you mean {k:?}?)"
            )),
            None => warnings.push(format!("unknown key {at}{key:?} ignored")),
        }
    }
}

/// Decodes a 200 handshake reply of `proto`.
fn decode(proto: Protocol, body: &[u8]) -> Result<Negotiated, Undecodable> {
    use Undecodable::{NotThisVersion, Refused};
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        body
    };
    let malformed = |e: serde_json::Error| {
        NotThisVersion(format!(
            "malformed handshake reply: {e}; body starts {:?}",
            snippet(body)
        ))
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    if let Some(text) = error_text(&value) {
        return Err(NotThisVersion(format!("with Err {text:?}")));
    }
    let mut warnings = Vec::new();
    let mut refusals = Vec::new();
    match proto {
        Protocol::V2 => {
            unknown_keys(&value, V2_KEYS, "", &mut warnings, &mut refusals);
            if let Some(subs) = value.get("Subscriptions") {
                unknown_keys(
                    subs,
                    SUBSCRIPTION_KEYS,
                    "Subscriptions.",
                    &mut warnings,
                    &mut refusals,
                );
            }
        }
        Protocol::V1 => unknown_keys(&value, V1_KEYS, "", &mut warnings, &mut refusals),
        Protocol::Activate => {}
    }
    let mut n = match proto {
        Protocol::V2 => {
            let h: HandshakeV2 = match serde_json::from_value(value.clone()) {
                Ok(h) => h,
                // A v2 answer (it names itself) whose fields do not parse is refused: walking
                // down would load it under a version it does not speak.
                Err(e) if value.get("Name").is_some_and(|v| v.is_string()) => {
                    return Err(Refused(format!("a v2 handshake that does not parse: {e}")));
                }
                Err(e) => return Err(malformed(e)),
            };
            let subscriptions = h.effective_subscriptions();
            Negotiated {
                protocol: proto,
                interests: subscriptions.interests(),
                subscriptions,
                name: h.name,
                info: PluginInfo {
                    author: h.author,
                    org: h.org,
                    website: h.website,
                    version: h.version,
                },
                implements: Vec::new(),
                requested_deadline_ms: h.deadline_ms,
                requested_failure_policy: h.failure_policy,
                warnings: Vec::new(),
            }
        }
        Protocol::V1 => {
            let mut h: HandshakeV1 = serde_json::from_value(value).map_err(malformed)?;
            // `sync` is a v2 message: a v1 plugin naming it gets nothing for it.
            h.interested_in
                .retain(|i| !i.eq_ignore_ascii_case(berth_plugin_protocol::mvp::SYNC));
            Negotiated {
                protocol: proto,
                subscriptions: Subscriptions::all_for(&h.interested_in),
                interests: h.interested_in,
                name: h.name,
                info: PluginInfo {
                    author: h.author,
                    org: h.org,
                    website: h.website,
                    version: String::new(),
                },
                implements: Vec::new(),
                requested_deadline_ms: None,
                requested_failure_policy: None,
                warnings: Vec::new(),
            }
        }
        Protocol::Activate => {
            let a: ActivateResponse = serde_json::from_value(value).map_err(malformed)?;
            if a.implements.is_empty() {
                return Err(NotThisVersion("implementing nothing".to_owned()));
            }
            Negotiated {
                protocol: proto,
                name: String::new(),
                info: PluginInfo::default(),
                interests: a.implements.clone(),
                subscriptions: Subscriptions::default(),
                implements: a.implements,
                requested_deadline_ms: None,
                requested_failure_policy: None,
                warnings: Vec::new(),
            }
        }
    };
    if proto != Protocol::Activate {
        if n.name.trim().is_empty() && n.interests.is_empty() && refusals.is_empty() {
            return Err(NotThisVersion(
                "with neither a name nor an interest".to_owned(),
            ));
        }
        if !refusals.is_empty() {
            return Err(Refused(refusals.join("; ")));
        }
        if n.interests.is_empty() {
            let mut why =
                "no interests (InterestedIn is empty): the plugin would be loaded and never called"
                    .to_owned();
            if !warnings.is_empty() {
                why.push_str(&format!("; {}", warnings.join("; ")));
            }
            return Err(Refused(why));
        }
    }
    n.warnings = warnings;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// A fake plugin: answers each path with a canned `(status line, body)` (404 for others), one
    /// request per connection.
    fn fake(dir: &Path, answers: &[(&'static str, &'static str, &'static str)]) -> PathBuf {
        let sock = dir.join("fake.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let answers: HashMap<&str, (&str, &str)> =
            answers.iter().map(|(p, s, b)| (*p, (*s, *b))).collect();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let (status, body) = answers
                    .get(path.as_str())
                    .copied()
                    .unwrap_or(("404 Not Found", "404 page not found"));
                let raw = format!(
                    "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(raw.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        sock
    }

    async fn run(
        answers: &[(&'static str, &'static str, &'static str)],
    ) -> Result<Negotiated, HandshakeError> {
        let d = tempfile::tempdir().unwrap();
        let sock = fake(d.path(), answers);
        let client = PluginClient::new("fake", sock);
        let offer = HandshakeV2Request::berth("test", 30_000);
        negotiate(&client, &offer, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn err_in_a_200_falls_back_to_the_next_version() {
        let n = run(&[
            (
                "/v2/handshake",
                "200 OK",
                r#"{"Err":"v2 unsupported here"}"#,
            ),
            (
                "/v1/handshake",
                "200 OK",
                r#"{"Name":"old","InterestedIn":["volume"]}"#,
            ),
        ])
        .await
        .unwrap();
        assert_eq!(n.protocol, Protocol::V1);
        assert_eq!(n.name, "old");
        assert_eq!(n.interests, vec!["volume"]);
    }

    #[tokio::test]
    async fn sync_is_a_v2_interest_and_ignored_over_v1() {
        use berth_plugin_protocol::sync::SyncReason;
        let n = run(&[(
            "/v2/handshake",
            "200 OK",
            r#"{"Name":"drv","Subscriptions":{"sync":{"Reasons":["restart"]}}}"#,
        )])
        .await
        .unwrap();
        assert_eq!(n.interests, vec!["sync"]);
        assert!(n.subscriptions.wants_sync(SyncReason::Restart));
        assert!(!n.subscriptions.wants_sync(SyncReason::Load));
        let n = run(&[(
            "/v1/handshake",
            "200 OK",
            r#"{"Name":"old","InterestedIn":["volume","sync"]}"#,
        )])
        .await
        .unwrap();
        assert_eq!(n.interests, vec!["volume"]);
        assert!(n.subscriptions.sync.is_none());
        let e = run(&[(
            "/v2/handshake",
            "200 OK",
            r#"{"Name":"typo","InterestedIn":["volume"],"Subscriptions":{"synk":{}}}"#,
        )])
        .await
        .unwrap_err();
        assert!(e.to_string().contains("did you mean \"sync\""), "{e}");
    }

    #[tokio::test]
    async fn empty_v2_and_v1_answers_fall_back_to_activate() {
        let n = run(&[
            ("/v2/handshake", "200 OK", "{}"),
            ("/v1/handshake", "200 OK", r#"{"Author":"nobody"}"#),
            (
                "/Plugin.Activate",
                "200 OK",
                r#"{"Implements":["VolumeDriver"]}"#,
            ),
        ])
        .await
        .unwrap();
        assert_eq!(n.protocol, Protocol::Activate);
        assert_eq!(n.implements, vec!["VolumeDriver"]);
    }

    #[tokio::test]
    async fn interests_alone_are_a_valid_answer_a_name_alone_is_refused() {
        let n = run(&[("/v1/handshake", "200 OK", r#"{"InterestedIn":["api"]}"#)])
            .await
            .unwrap();
        assert_eq!(
            (n.protocol, n.interests),
            (Protocol::V1, vec!["api".into()])
        );
        let e = run(&[("/v2/handshake", "200 OK", r#"{"Name":"named"}"#)])
            .await
            .unwrap_err();
        assert!(matches!(e, HandshakeError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("no interests"), "{e}");
    }

    #[tokio::test]
    async fn a_misspelt_interested_in_is_refused_with_a_did_you_mean() {
        let e = run(&[(
            "/v1/handshake",
            "200 OK",
            r#"{"Name":"typo","IntrestedIn":["volume"]}"#,
        )])
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"fake\": handshake refused: /v1/handshake answered unknown key \"IntrestedIn\" (did you mean \"InterestedIn\"?)"
        );
    }

    #[tokio::test]
    async fn a_misspelt_v2_subscriptions_is_refused_not_hooked_on_everything() {
        let e = run(&[(
            "/v2/handshake",
            "200 OK",
            r#"{"ProtocolVersion":2,"Name":"typo","InterestedIn":["api"],"Subscribtions":{"api":{"Pre":["POST /containers/create"]}}}"#,
        )])
        .await
        .unwrap_err();
        assert!(matches!(e, HandshakeError::Refused { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("unknown key \"Subscribtions\" (did you mean \"Subscriptions\"?)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn other_unknown_keys_load_with_a_warning() {
        let n = run(&[(
            "/v2/handshake",
            "200 OK",
            r#"{"ProtocolVersion":2,"Name":"w","InterestedIn":["volume"],"Autor":"me","Colour":"blue"}"#,
        )])
        .await
        .unwrap();
        assert_eq!(
            n.warnings,
            [
                "unknown key \"Autor\" ignored (did you mean \"Author\"?)",
                "unknown key \"Colour\" ignored"
            ]
        );
    }

    #[tokio::test]
    async fn a_handler_closing_the_connection_fails_fast_not_as_never_up() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("crash.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                drop(s);
            }
        });
        let client = PluginClient::new("crash", sock);
        let offer = HandshakeV2Request::berth("test", 30_000);
        let e = negotiate(&client, &offer, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(e, HandshakeError::Failed { .. }), "{e}");
        assert!(
            e.to_string().contains("connection closed before an answer"),
            "{e}"
        );
    }

    #[test]
    fn edit_distance_and_did_you_mean() {
        assert_eq!(edit_distance("IntrestedIn", "InterestedIn"), 1);
        assert_eq!(edit_distance("Subscribtions", "Subscriptions"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(did_you_mean("interestedin", V1_KEYS), Some("InterestedIn"));
        assert_eq!(did_you_mean("Colour", V2_KEYS), None);
    }

    #[tokio::test]
    async fn failure_lists_every_version_and_its_answer() {
        let e = run(&[
            ("/v2/handshake", "200 OK", r#"{"Err":"no v2"}"#),
            ("/v1/handshake", "200 OK", "not json"),
            ("/Plugin.Activate", "200 OK", r#"{"Implements":[]}"#),
        ])
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, HandshakeError::NoVersion { .. }), "{msg}");
        assert!(msg.starts_with("plugin \"fake\": "), "{msg}");
        assert!(
            msg.contains("/v2/handshake (200 with Err \"no v2\")"),
            "{msg}"
        );
        assert!(
            msg.contains("/v1/handshake (200 malformed handshake reply:")
                && msg.contains("body starts \"not json\""),
            "{msg}"
        );
        assert!(
            msg.contains("/Plugin.Activate (200 implementing nothing)"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_server_error_stops_negotiation_and_lists_what_was_tried() {
        let e = run(&[
            ("/v2/handshake", "200 OK", "{}"),
            (
                "/v1/handshake",
                "500 Internal Server Error",
                r#"{"Err":"boom"}"#,
            ),
        ])
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"fake\": handshake failed: tried /v2/handshake (200 with neither a name nor an interest), /v1/handshake (boom (HTTP 500))"
        );
    }
}
