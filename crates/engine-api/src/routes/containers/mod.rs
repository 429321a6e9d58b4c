//! `/containers/...`: one file per concern. [`create`] (the create DTO and its translation to the
//! engine's request), [`inspect`] and [`list`] (Docker's presentation), [`lifecycle`] (start, stop,
//! kill, restart, remove, wait, resize) and [`streams`] (attach as a 101 upgrade, logs).
//! New endpoints add their own file and one `.route` line here.

use axum::Router;
use axum::routing::{delete, get, post};

use super::AppState;

mod create;
mod inspect;
mod lifecycle;
mod links;
mod list;
mod streams;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create::create))
        .route("/containers/json", get(list::list))
        .route("/containers/{id}/json", get(inspect::inspect))
        .route("/containers/{id}/start", post(lifecycle::start))
        .route("/containers/{id}/stop", post(lifecycle::stop))
        .route("/containers/{id}/kill", post(lifecycle::kill))
        .route("/containers/{id}/restart", post(lifecycle::restart))
        .route("/containers/{id}/wait", post(lifecycle::wait))
        .route("/containers/{id}/attach", post(streams::attach))
        .route("/containers/{id}/resize", post(lifecycle::resize))
        .route("/containers/{id}/logs", get(streams::logs))
        .route("/containers/{id}", delete(lifecycle::remove))
        .route("/containers/{id}/{alias}", delete(links::remove_link))
}
