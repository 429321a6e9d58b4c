//! `/volumes/...`: create (idempotent, any driver), list with filters, inspect, remove, prune,
//! and Berth's `POST /volumes/{name}/snapshot?snapshot=SNAP` (`berth volume snapshot`), which
//! calls the plugin driver's `VolumeDriver.Snapshot`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_volumes::CreateVolume;
use bollard_stubs::models::VolumePruneResponse;
use serde::Deserialize;

use super::AppState;
use crate::error::ApiResult;
use crate::extract::{self, Query};
use crate::models::volume::{Volume, VolumeList};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
        .route("/volumes/{name}/snapshot", post(snapshot))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(State(s): State<AppState>, body: bytes::Bytes) -> ApiResult<Response> {
    let body: CreateBody = extract::parse_json::<Option<CreateBody>>(&body)?.unwrap_or_default();
    extract::driver_name("volume driver", body.driver.as_deref())?;
    let v = s
        .engine
        .create_volume(CreateVolume {
            name: body.name.filter(|n| !n.is_empty()),
            driver: body.driver,
            options: body.driver_opts.unwrap_or_default(),
            labels: body.labels.unwrap_or_default(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Volume::from(&v))).into_response())
}

async fn list(State(s): State<AppState>, q: Query) -> ApiResult<Json<VolumeList>> {
    let filters = q.filters()?;
    let host = s.engine.plugins().cloned();
    let volumes: Vec<Volume> = s
        .engine
        .volumes
        .list_with(host.as_deref())
        .await
        .iter()
        .filter(|v| {
            filters.iter().all(|(k, vals)| {
                vals.is_empty()
                    || vals.iter().any(|val| match k.as_str() {
                        "name" => v.name.contains(val.as_str()),
                        "driver" => &v.driver == val,
                        "dangling" => {
                            (val == "true" || val == "1")
                                == s.engine.volume_users(&v.name).is_empty()
                        }
                        "label" => {
                            let (lk, lv) = val
                                .split_once('=')
                                .map(|(a, b)| (a, Some(b)))
                                .unwrap_or((val.as_str(), None));
                            v.labels
                                .as_ref()
                                .and_then(|l| l.get(lk))
                                .is_some_and(|x| lv.is_none_or(|lv| x == lv))
                        }
                        _ => true,
                    })
            })
        })
        .map(Volume::from)
        .collect();
    Ok(Json(VolumeList {
        volumes,
        warnings: None,
    }))
}

async fn inspect(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Volume>> {
    let host = s.engine.plugins().cloned();
    Ok(Json(Volume::from(
        &s.engine
            .volumes
            .inspect_with(host.as_deref(), &name)
            .await?,
    )))
}

async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    match s.engine.remove_volume(&name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        // `volume rm -f` of a missing volume succeeds, as with dockerd.
        Err(e) if q.bool("force")? && e.kind() == berth_state::ErrorKind::NotFound => {
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes unused volumes. Without the `all=true` filter only anonymous volumes (those the engine
/// named with a 64-hex id) go, as with API ≥ 1.42.
async fn prune(State(s): State<AppState>, q: Query) -> ApiResult<Json<VolumePruneResponse>> {
    let filters = q.filters()?;
    let all = filters
        .get("all")
        .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
    let f = berth_engine::prune::PruneFilters::parse(&filters, &["all", "label", "label!"])?;
    let (removed, space) = s.engine.prune_volumes_filtered(all, &f).await;
    Ok(Json(VolumePruneResponse {
        volumes_deleted: Some(removed),
        space_reclaimed: Some(space as i64),
    }))
}

/// `POST /volumes/{name}/snapshot?snapshot=SNAP` (Berth): 204, or 400 when the driver does not
/// support snapshots, 404 for an unknown volume, 500 with the plugin's error.
async fn snapshot(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let snap = q.get("snapshot").unwrap_or_default().to_owned();
    let host = s.engine.plugins().cloned();
    s.engine
        .volumes
        .snapshot(host.as_deref(), &name, &snap)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
