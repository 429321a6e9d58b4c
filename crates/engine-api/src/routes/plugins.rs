//! `/plugins/...` in Docker's shape, so `docker plugin ls` works against Berth.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::AppState;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(list))
        .route("/plugins/{name}/json", get(inspect))
        .route("/plugins/{name}/enable", post(inspect_post))
        .route("/plugins/{name}/disable", post(inspect_post))
}

async fn list() -> Json<Vec<Value>> {
    // The plugin host fills this in; no plugins are loaded by the engine alone.
    Json(Vec::new())
}

async fn inspect(Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found(format!("plugin \"{name}\" not found")))
}

async fn inspect_post(Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found(format!("plugin \"{name}\" not found")))
}
