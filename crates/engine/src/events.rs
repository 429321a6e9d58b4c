//! The engine's event bus: every container, image, volume, network and plugin event is published
//! here, kept in a bounded history (for `since`), and fanned out to live subscribers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many past events `since` can reach back to.
const HISTORY: usize = 2048;

/// One event, in the Engine API's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// Legacy fields docker still sends for containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The object an event is about.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Which events a subscriber wants (`filters` of `GET /events`): key → accepted values.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// True when `event` passes every filter key (values of one key are alternatives).
    pub fn matches(&self, event: &Event) -> bool {
        self.filters.iter().all(|(key, values)| {
            values.is_empty()
                || values.iter().any(|v| match key.as_str() {
                    "type" => &event.kind == v,
                    "event" => &event.action == v,
                    "container" | "volume" | "network" | "image" | "plugin" => {
                        key == &event.kind
                            && (&event.actor.id == v
                                || event.actor.attributes.get("name") == Some(v)
                                || (v.len() >= 12 && event.actor.id.starts_with(v.as_str())))
                    }
                    "label" => {
                        let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                        event
                            .actor
                            .attributes
                            .get(k)
                            .is_some_and(|x| val.is_empty() || x == val)
                    }
                    _ => true,
                })
        })
    }
}

/// The bus.
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventBus {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes an event about `id` of type `kind`.
    pub fn publish(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let time_nano = now.timestamp_nanos_opt().unwrap_or_default();
        let legacy = kind == "container";
        let event = Event {
            kind: kind.to_owned(),
            action: action.to_owned(),
            scope: "local".to_owned(),
            time: now.timestamp(),
            time_nano,
            status: legacy.then(|| action.to_owned()),
            id: legacy.then(|| id.to_owned()),
            from: if legacy {
                attributes.get("image").cloned()
            } else {
                None
            },
            actor: Actor {
                id: id.to_owned(),
                attributes,
            },
        };
        tracing::debug!(kind, action, id, "event");
        let mut history = berth_state::lock(&self.history);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        // Publishing while holding the history lock keeps history and live delivery in one order.
        let _ = self.tx.send(event);
    }

    /// Past events with `time_nano >= since_nano` plus a receiver for the live ones after them.
    pub fn subscribe(&self, since_nano: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = berth_state::lock(&self.history);
        let rx = self.tx.subscribe();
        let past = match since_nano {
            Some(since) => history
                .iter()
                .filter(|e| e.time_nano >= since)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_filters() {
        let bus = EventBus::new();
        let (_, mut rx) = bus.subscribe(None);
        let attrs = BTreeMap::from([("name".to_owned(), "c1".to_owned())]);
        bus.publish("container", "start", "abc", attrs);
        bus.publish("volume", "create", "v1", BTreeMap::new());
        let live = rx.try_recv().unwrap();
        assert_eq!(live.action, "start");
        assert_eq!(live.status.as_deref(), Some("start"));
        let (past, _) = bus.subscribe(Some(0));
        assert_eq!(past.len(), 2);
        let f = EventFilter {
            filters: BTreeMap::from([("type".to_owned(), vec!["volume".to_owned()])]),
        };
        assert_eq!(past.iter().filter(|e| f.matches(e)).count(), 1);
        let f = EventFilter {
            filters: BTreeMap::from([("container".to_owned(), vec!["c1".to_owned()])]),
        };
        assert!(f.matches(&past[0]) && !f.matches(&past[1]));
    }
}
