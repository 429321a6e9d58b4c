//! `POST /containers/{id}/rename?name=NEW` (`docker rename`; compose renames a container it
//! replaces). 204 on success; 400 for a missing, invalid or unchanged name; 404 for an unknown
//! container; 409 when the name is taken.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

pub fn routes() -> Router<AppState> {
    Router::new().route("/containers/{id}/rename", post(rename))
}

async fn rename(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let name = q
        .get("name")
        .ok_or_else(|| ApiError::bad_request("query parameter `name` is required"))?;
    s.engine.rename(&id, name).await?;
    Ok(StatusCode::NO_CONTENT)
}
