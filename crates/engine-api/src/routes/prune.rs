//! `POST /containers/prune`, `/images/prune`, `/networks/prune` (`docker container|image|network
//! prune`), with Docker's filters (`label`, `label!`, `until`; `dangling` for images) and
//! response keys. What each removes is described in the engine's `prune.rs`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use berth_engine::prune::PruneFilters;
use serde::Serialize;

use super::AppState;
use crate::error::ApiResult;
use crate::extract::Query;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/prune", post(containers))
        .route("/images/prune", post(images))
        .route("/networks/prune", post(networks))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainersPruneResponse {
    containers_deleted: Vec<String>,
    space_reclaimed: u64,
}

/// One step of an image removal: `{"Untagged": ref}` or `{"Deleted": id}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageDeleteResponseItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    untagged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImagesPruneResponse {
    images_deleted: Vec<ImageDeleteResponseItem>,
    space_reclaimed: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworksPruneResponse {
    networks_deleted: Vec<String>,
}

async fn containers(
    State(s): State<AppState>,
    q: Query,
) -> ApiResult<Json<ContainersPruneResponse>> {
    let f = PruneFilters::parse(&q.filters()?, &["label", "label!", "until"])?;
    let pruned = s.engine.prune_containers(&f).await;
    Ok(Json(ContainersPruneResponse {
        containers_deleted: pruned.removed.into_iter().map(|(_, id)| id).collect(),
        space_reclaimed: pruned.space,
    }))
}

async fn images(State(s): State<AppState>, q: Query) -> ApiResult<Json<ImagesPruneResponse>> {
    let f = PruneFilters::parse(&q.filters()?, &["label", "label!", "until", "dangling"])?;
    let pruned = s.engine.prune_images(&f).await;
    Ok(Json(ImagesPruneResponse {
        images_deleted: pruned
            .removed
            .into_iter()
            .map(|(kind, what)| {
                let deleted = kind == "Deleted";
                ImageDeleteResponseItem {
                    untagged: (!deleted).then(|| what.clone()),
                    deleted: deleted.then_some(what),
                }
            })
            .collect(),
        space_reclaimed: pruned.space,
    }))
}

async fn networks(State(s): State<AppState>, q: Query) -> ApiResult<Json<NetworksPruneResponse>> {
    let f = PruneFilters::parse(&q.filters()?, &["label", "label!", "until"])?;
    Ok(Json(NetworksPruneResponse {
        networks_deleted: s.engine.prune_networks(&f).await,
    }))
}
