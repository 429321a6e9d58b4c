//! `DELETE /containers/{parent}/{alias}?link=1`: removes one legacy link of `parent`. Without
//! `link=1` the path names no container (Docker reads it as the name `parent/alias`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use berth_engine::EngineError;

use crate::error::ApiResult;
use crate::extract::Query;
use crate::routes::AppState;

pub(super) async fn remove_link(
    State(s): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    q: Query,
) -> ApiResult<StatusCode> {
    if !q.bool("link")? {
        return Err(EngineError::NoSuchContainer(format!("{parent}/{alias}")).into());
    }
    s.engine.remove_link(&parent, &alias)?;
    Ok(StatusCode::NO_CONTENT)
}
