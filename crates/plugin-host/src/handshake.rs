//! Handshake negotiation: `POST /v2/handshake` → on 404 `/v1/handshake` → on 404 `/Plugin.Activate`.
//! A missing socket or refused connection means "not up yet": poll again with a short backoff
//! (10 ms doubling to 200 ms) until the load deadline. Failures list every version tried and its
//! answer.

use std::time::Duration;

use berth_plugin_protocol::legacy::ActivateResponse;
use berth_plugin_protocol::mvp::{HandshakeV1, HandshakeV2, HandshakeV2Request, Subscriptions};
use berth_plugin_protocol::{FailurePolicy, Protocol};
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
    /// Every known version answered "not found".
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
    /// A handshake answered 200 with a body that does not decode.
    #[error(
        "plugin \"{plugin}\": POST {path}: malformed handshake reply: {error}; body starts {snippet:?}"
    )]
    Malformed {
        /// Plugin name or socket.
        plugin: String,
        /// Handshake path.
        path: String,
        /// Decoder message.
        error: String,
        /// First bytes of the body.
        snippet: String,
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
                    return decode(client, proto, &reply.body);
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

fn decode(
    client: &PluginClient,
    proto: Protocol,
    body: &[u8],
) -> Result<Negotiated, HandshakeError> {
    let path = proto.handshake_path();
    let malformed = |e: serde_json::Error| HandshakeError::Malformed {
        plugin: client.name(),
        path: path.to_owned(),
        error: e.to_string(),
        snippet: snippet(body),
    };
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        body
    };
    Ok(match proto {
        Protocol::V2 => {
            let h: HandshakeV2 = serde_json::from_slice(body).map_err(malformed)?;
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
            let h: HandshakeV1 = serde_json::from_slice(body).map_err(malformed)?;
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
            let a: ActivateResponse = serde_json::from_slice(body).map_err(malformed)?;
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
    })
}
