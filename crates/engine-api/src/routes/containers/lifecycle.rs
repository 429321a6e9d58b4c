//! The lifecycle endpoints: start, stop, kill, restart, remove, wait (headers sent at once) and
//! resize.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::{WaitCondition, parse_signal};
use bytes::Bytes;

use crate::error::ApiResult;
use crate::extract::Query;
use crate::models::container::WaitResponse;
use crate::routes::AppState;

pub(super) async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.engine.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn signal_param(q: &Query) -> ApiResult<Option<nix::sys::signal::Signal>> {
    match q.get("signal").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(sig) => Ok(Some(parse_signal(sig)?)),
    }
}

pub(super) async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.stop(&id, q.int("t")?, signal_param(&q)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn kill(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.kill(&id, signal_param(&q)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn restart(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine.restart(&id, q.int("t")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    s.engine
        .remove_with_volumes(&id, q.bool("force")?, q.bool("v")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Headers go out at once; the body follows when the condition holds (the docker CLI sends
/// `start` only after it saw the wait's headers).
pub(super) async fn wait(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let condition: WaitCondition = q.get("condition").unwrap_or("").parse()?;
    let fut = s.engine.wait(&id, condition)?;
    let body = futures::stream::once(async move {
        let code = fut.await;
        let body = WaitResponse {
            status_code: code.into(),
            error: None,
        };
        let mut line = serde_json::to_vec(&body).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

pub(super) async fn resize(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    s.engine.resize(&id, h, w)?;
    Ok(StatusCode::OK)
}
