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
        (true, Some(r)) => format!("never came up ({r})"),
        (true, None) => "nothing tried".to_owned(),
        (false, _) => format!("tried {}", fmt_tried(tried)),
    }
}

const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

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
                        // A 200 that is no usable answer of this version: try the next one.
                        Err(why) => tried.push((path.to_owned(), format!("200 {why}"))),
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
                        CallErrorKind::NotUp { reason, .. } => reason.clone(),
                        other => other.to_string(),
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

/// Decodes a 200 handshake reply of `proto`; `Err` says why it is no usable answer of that version.
fn decode(proto: Protocol, body: &[u8]) -> Result<Negotiated, String> {
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        body
    };
    let malformed = |e: serde_json::Error| {
        format!(
            "malformed handshake reply: {e}; body starts {:?}",
            snippet(body)
        )
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    if let Some(text) = error_text(&value) {
        return Err(format!("with Err {text:?}"));
    }
    let n = match proto {
        Protocol::V2 => {
            let h: HandshakeV2 = serde_json::from_value(value).map_err(malformed)?;
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
            }
        }
        Protocol::V1 => {
            let h: HandshakeV1 = serde_json::from_value(value).map_err(malformed)?;
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
            }
        }
        Protocol::Activate => {
            let a: ActivateResponse = serde_json::from_value(value).map_err(malformed)?;
            if a.implements.is_empty() {
                return Err("implementing nothing".to_owned());
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
            }
        }
    };
    if proto != Protocol::Activate && n.name.trim().is_empty() && n.interests.is_empty() {
        return Err("with neither a name nor an interest".to_owned());
    }
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
    async fn a_name_or_interests_alone_is_a_valid_answer() {
        let n = run(&[("/v2/handshake", "200 OK", r#"{"Name":"named"}"#)])
            .await
            .unwrap();
        assert_eq!((n.protocol, n.name.as_str()), (Protocol::V2, "named"));
        let n = run(&[("/v1/handshake", "200 OK", r#"{"InterestedIn":["api"]}"#)])
            .await
            .unwrap();
        assert_eq!(
            (n.protocol, n.interests),
            (Protocol::V1, vec!["api".into()])
        );
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
