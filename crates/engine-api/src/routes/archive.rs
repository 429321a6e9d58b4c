//! `/containers/{id}/archive` (`docker cp`): `HEAD` stats a path, `GET` streams it as a tar,
//! `PUT` extracts a tar into a directory. The path resolution and its safety live in the engine
//! (`berth_engine::archive`); here are the query, the `X-Docker-Container-Path-Stat` header and
//! the streaming of the bodies through bounded channels.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use berth_engine::archive::{PathStat, body_channel};
use futures::StreamExt;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

const STAT_HEADER: &str = "x-docker-container-path-stat";

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/containers/{id}/archive",
        get(get_archive).head(head_archive).put(put_archive),
    )
}

fn path_of(q: &Query) -> ApiResult<String> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_owned()),
        _ => Err(ApiError::bad_request("path is required (?path=...)")),
    }
}

fn stat_header(stat: &PathStat) -> ApiResult<HeaderValue> {
    let json = serde_json::to_vec(stat)
        .map_err(|e| ApiError::new(berth_state::ErrorKind::Internal, e.to_string()))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    HeaderValue::from_str(&encoded)
        .map_err(|e| ApiError::new(berth_state::ErrorKind::Internal, e.to_string()))
}

async fn head_archive(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let path = path_of(&q)?;
    let stat = s.engine.archive_stat(&id, &path).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(STAT_HEADER, stat_header(&stat)?);
    Ok(resp)
}

async fn get_archive(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let path = path_of(&q)?;
    let (stat, rx) = s.engine.archive_get(&id, &path).await?;
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(STAT_HEADER, stat_header(&stat)?);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

/// How much of a body the extraction did not need (the tar's end and its padding) is read and
/// thrown away before the reply, and for how long: the client is still writing it, and a
/// connection closed under its writes turns a copy that succeeded into a `broken pipe`.
const TRAILING_LIMIT: usize = 1 << 20;
const TRAILING_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn put_archive(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> ApiResult<Response> {
    let path = path_of(&q)?;
    let no_overwrite = q.bool("noOverwriteDirNonDir")?;
    let (tx, rx) = body_channel();
    let mut body = req.into_body().into_data_stream();
    // Feeds the extraction until it is done (the receiver is dropped), then reads what is left of
    // the body, up to TRAILING_LIMIT, so that the reply finds the client reading.
    let mut feeder = tokio::spawn(async move {
        let mut extracting = true;
        let mut discarded = 0usize;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) if extracting => extracting = tx.send(Ok(b)).await.is_ok(),
                Ok(b) => {
                    discarded += b.len();
                    if discarded > TRAILING_LIMIT {
                        break;
                    }
                }
                Err(e) => {
                    if extracting {
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                    }
                    break;
                }
            }
        }
    });
    let result = s.engine.archive_put(&id, &path, no_overwrite, rx).await;
    if tokio::time::timeout(TRAILING_TIME, &mut feeder)
        .await
        .is_err()
    {
        feeder.abort();
    }
    result?;
    Ok(StatusCode::OK.into_response())
}
