//! `GET /events`: past events since `since`, then live ones until `until` (or the client leaves),
//! as newline-delimited JSON flushed per event.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_engine::events::{Event, EventFilter};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::error::ApiResult;
use crate::extract::Query;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

fn line(e: &Event) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn events(State(s): State<AppState>, q: Query) -> ApiResult<Response> {
    let filter = EventFilter {
        filters: q.filters()?,
    };
    let since = q.time_nanos("since")?;
    let until = q.time_nanos("until")?;
    let (past, mut rx) = s.engine.events.subscribe(since);
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let in_range = |e: &Event| until.is_none_or(|u| e.time_nano <= u);
        for e in past.iter().filter(|e| filter.matches(e) && in_range(e)) {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let deadline = until.map(|u| Duration::from_nanos(u.saturating_sub(now).max(0) as u64));
        let live = async {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        if !in_range(&e) {
                            return;
                        }
                        if filter.matches(&e) && tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        };
        // The stream ends at `until`, when the bus closes, or when the client left (its body, and
        // so the receiver, dropped), whichever comes first, even if no event ever matches.
        let bounded = async {
            match deadline {
                Some(d) => {
                    let _ = tokio::time::timeout(d, live).await;
                }
                None => live.await,
            }
        };
        tokio::select! {
            _ = bounded => {}
            _ = tx.closed() => {}
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(out);
    let body = Body::from_stream(futures::StreamExt::map(stream, Ok::<_, Infallible>));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
