//! `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=` (`docker commit`): a
//! container's root filesystem as a new image (see the engine's `commit.rs`). The body, when
//! given, is a container config whose `Cmd`, `Entrypoint`, `Env`, `WorkingDir`, `Labels`, `User`
//! and `ExposedPorts` replace the container's; `changes` are Dockerfile instructions. 201 with
//! the new image's `Id`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use berth_engine::commit::CommitRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{self, Query};

pub fn routes() -> Router<AppState> {
    Router::new().route("/commit", post(commit))
}

/// The parts of the body's container config a commit takes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommitConfig {
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, Value>>,
}

/// Docker's `IdResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct IdResponse {
    id: String,
}

async fn commit(
    State(s): State<AppState>,
    q: Query,
    body: bytes::Bytes,
) -> ApiResult<(StatusCode, Json<IdResponse>)> {
    let container = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("the container to commit (container=) is required"))?
        .to_owned();
    let config: CommitConfig =
        extract::parse_json::<Option<CommitConfig>>(&body)?.unwrap_or_default();
    let repo = q.get("repo").filter(|r| !r.is_empty()).map(|r| {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{r}:{t}"),
            None => r.to_owned(),
        }
    });
    let req = CommitRequest {
        repo,
        changes: q
            .all("changes")
            .into_iter()
            .flat_map(str::lines)
            .filter(|c| !c.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        comment: q.get("comment").unwrap_or_default().to_owned(),
        author: q.get("author").unwrap_or_default().to_owned(),
        pause: q.bool_or("pause", true)?,
        cmd: config.cmd.filter(|c| !c.is_empty()),
        entrypoint: config.entrypoint.filter(|e| !e.is_empty()),
        env: config.env.filter(|e| !e.is_empty()),
        working_dir: config.working_dir.filter(|w| !w.is_empty()),
        labels: config.labels.filter(|l| !l.is_empty()),
        user: config.user.filter(|u| !u.is_empty()),
        exposed_ports: config
            .exposed_ports
            .filter(|p| !p.is_empty())
            .map(|p| p.into_keys().collect()),
    };
    let image = s.engine.commit(&container, req).await?;
    Ok((StatusCode::CREATED, Json(IdResponse { id: image.id })))
}
