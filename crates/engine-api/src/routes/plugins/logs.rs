//! `GET /berth/plugins/{name}/logs` (a plugin's output, or the kept output of its last failed
//! load) and the duration parsing shared by the load, upgrade and unload bodies.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::host;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::routes::AppState;

/// `GET /berth/plugins/{name}/logs[?follow=1&tail=N]`: the output of the plugin's container as
/// plain text; for a plugin that is not loaded, the output of its last failed load (kept until
/// its next load).
pub(super) async fn berth_logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let h = host(&s)?;
    let tail = match q.int("tail")? {
        Some(n) if n >= 0 => Some(n as usize),
        _ => None,
    };
    let follow = q.bool("follow")?;
    let text = |rx: tokio::sync::mpsc::Receiver<berth_engine::logs::LogEntry>| {
        use tokio_stream::StreamExt;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|e| Ok::<_, Infallible>(Bytes::from(e.log)));
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from_stream(stream),
        )
            .into_response()
    };
    if let Some(st) = h.list().into_iter().find(|p| p.record.name == name) {
        let Some(id) = st.record.container_id else {
            return Err(ApiError::bad_request(format!(
                "plugin \"{name}\" runs on a socket Berth did not start ({}): its output is wherever its process writes it",
                st.record.socket.display()
            )));
        };
        let opts = berth_engine::logs::LogOptions {
            follow,
            stdout: true,
            stderr: true,
            tail,
            ..Default::default()
        };
        let (_tty, rx) = s.engine.logs(&id, opts)?;
        return Ok(text(rx));
    }
    berth_state::validate_name("plugin", &name)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let path = h.failed_log_path(&name);
    if !path.exists() {
        return Err(ApiError::not_found(format!(
            "plugin \"{name}\" is not loaded, and no output of a failed load of it is kept"
        )));
    }
    // The kept log is capped at 1 MiB when it is saved; `--tail` starts from the end.
    let entries = tokio::task::spawn_blocking(move || {
        let from = match tail {
            Some(n) => berth_engine::logs::tail_offset(&path, n)?,
            None => 0,
        };
        berth_engine::logs::read_entries(&path, from, usize::MAX)
    })
    .await
    .map_err(|e| ApiError::new(berth_state::ErrorKind::Internal, e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            berth_state::ErrorKind::Internal,
            format!("reading the kept plugin log: {e}"),
        )
    })?
    .0;
    let (tx, rx) = tokio::sync::mpsc::channel(entries.len().max(1));
    for e in entries {
        let _ = tx.try_send(e);
    }
    Ok(text(rx))
}

/// Parses a duration: a number of milliseconds, or a string like `500ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(v: &Value) -> Result<Duration, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid duration: {v}"));
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().map_err(|_| bad())?;
            let ms = match unit {
                "ms" => n,
                "" | "s" => n * 1000.0,
                "m" => n * 60_000.0,
                "h" => n * 3_600_000.0,
                _ => return Err(bad()),
            };
            if !ms.is_finite() || ms < 0.0 {
                return Err(bad());
            }
            Ok(Duration::from_millis(ms as u64))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration(&json!("500ms")).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration(&json!("5s")).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            parse_duration(&json!("2m")).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse_duration(&json!(250)).unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_duration(&json!("5 parsecs")).is_err());
        assert!(parse_duration(&json!(true)).is_err());
    }
}
