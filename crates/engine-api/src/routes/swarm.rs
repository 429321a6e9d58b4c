//! Swarm, node, service, task, secret and config endpoints: Berth is a single-node engine that
//! never joins a swarm (a deliberate difference, see the README's compatibility matrix), so it
//! answers them as a Docker engine outside any swarm does: 503 Service Unavailable with Docker's
//! message, which clients (docker-py's `leave_swarm(force=True)`, the docker CLI) recognise.

use axum::Router;
use axum::http::Method;
use axum::routing::any;

use super::AppState;
use crate::error::ApiError;
use berth_state::ErrorKind;

/// Docker's answer on a node outside any swarm, for endpoints that need a manager.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// Docker's answer to `POST /swarm/leave` on a node outside any swarm.
pub const NOT_IN_SWARM: &str = "This node is not part of a swarm";

pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/swarm/leave", any(leave))
        .route("/swarm/init", any(init));
    for prefix in [
        "/swarm",
        "/nodes",
        "/services",
        "/tasks",
        "/secrets",
        "/configs",
    ] {
        r = r
            .route(prefix, any(not_manager))
            .route(&format!("{prefix}/{{*rest}}"), any(not_manager));
    }
    r
}

async fn not_manager() -> ApiError {
    ApiError::new(ErrorKind::Unavailable, NOT_A_MANAGER)
}

async fn leave() -> ApiError {
    ApiError::new(ErrorKind::Unavailable, NOT_IN_SWARM)
}

async fn init(method: Method) -> ApiError {
    if method != Method::POST {
        return ApiError::new(ErrorKind::Unavailable, NOT_A_MANAGER);
    }
    ApiError::new(
        ErrorKind::Unavailable,
        "swarm mode is not supported by Berth: it is a single-node engine",
    )
}
