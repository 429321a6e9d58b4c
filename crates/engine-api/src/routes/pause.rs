//! `POST /containers/{id}/pause` and `/unpause` (`docker pause`, `unpause`): the container's
//! processes frozen through its cgroup's freezer (see the engine's `pause.rs`). 204; 409 when
//! the container is not running, already paused or not paused.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

use super::AppState;
use crate::error::ApiResult;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
}

async fn pause(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.engine.pause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unpause(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.engine.unpause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
