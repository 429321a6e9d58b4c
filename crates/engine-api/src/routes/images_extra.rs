//! `POST /images/{name}/tag?repo=R&tag=T` (`docker tag`). Reached through the `/images/{*rest}`
//! route of `images.rs`, since an image name may contain slashes.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

/// `POST /images/{*rest}`: `…/tag` tags the image; anything else is not a route.
pub async fn post_rest(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let Some(name) = rest.strip_suffix("/tag") else {
        return Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        )));
    };
    let repo = q
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("repository name (repo) must be given"))?;
    let new_tag = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    };
    s.engine.images.tag(name, &new_tag)?;
    Ok(StatusCode::CREATED)
}
