//! The router: one sub-router per resource, merged, plus Docker's fallback error shape.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use berth_engine::Engine;

use crate::error::ApiError;

pub mod archive;
pub mod commit;
pub mod containers;
pub mod df;
pub(crate) mod endpoint;
pub mod events;
pub mod exec;
pub mod image_archive;
pub mod images;
pub mod images_extra;
pub mod networks;
pub mod pause;
pub mod plugins;
pub mod ports;
pub mod prune;
pub mod rename;
pub mod stats;
pub mod swarm;
pub mod system;
pub mod top;
pub mod update;
pub mod volumes;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

/// The whole Engine API router (version prefixes are stripped before it, see `crate::version`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(containers::routes())
        .merge(stats::routes())
        .merge(rename::routes())
        .merge(archive::routes())
        .merge(exec::routes())
        .merge(images::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .merge(events::routes())
        .merge(plugins::routes())
        .merge(swarm::routes())
        .merge(pause::routes())
        .merge(top::routes())
        .merge(update::routes())
        .merge(prune::routes())
        .merge(commit::routes())
        .merge(image_archive::routes())
        .merge(df::routes())
        .fallback(|uri: axum::http::Uri| async move {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("page not found: {}", uri.path()),
            }
        })
        .with_state(state)
}
