//! `GET /containers/{id}/top?ps_args=` (`docker top`) and `GET /containers/{id}/changes`
//! (`docker diff`): what runs in a container and what it changed in its root filesystem, in
//! Docker's `ContainerTopResponse` and `FilesystemChange` shapes.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::changes::Change;
use berth_engine::top::Top;

use super::AppState;
use crate::error::ApiResult;
use crate::extract::Query;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/changes", get(changes))
}

async fn top(State(s): State<AppState>, Path(id): Path<String>, q: Query) -> ApiResult<Json<Top>> {
    let args = q.get("ps_args").unwrap_or_default();
    Ok(Json(s.engine.top(&id, args).await?))
}

async fn changes(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Change>>> {
    Ok(Json(s.engine.changes(&id).await?))
}
