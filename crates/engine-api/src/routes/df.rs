//! `GET /system/df` (`docker system df`): measured disk usage of images, containers and
//! volumes (see the engine's `df.rs`), in Docker's `SystemDataUsageResponse` shape. Berth has no
//! build cache: `BuildCache` is empty.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::df::{ContainerUsage, ImageUsage, VolumeUsage};
use serde::Serialize;

use super::AppState;
use crate::present;

pub fn routes() -> Router<AppState> {
    Router::new().route("/system/df", get(df))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DataUsage {
    layers_size: i64,
    images: Vec<ImageSummary>,
    containers: Vec<ContainerSummary>,
    volumes: Vec<VolumeSummary>,
    build_cache: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageSummary {
    id: String,
    parent_id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    created: i64,
    size: i64,
    shared_size: i64,
    virtual_size: i64,
    labels: BTreeMap<String, String>,
    containers: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSummary {
    id: String,
    names: Vec<String>,
    image: String,
    #[serde(rename = "ImageID")]
    image_id: String,
    command: String,
    created: i64,
    ports: Vec<serde_json::Value>,
    size_rw: i64,
    size_root_fs: i64,
    labels: BTreeMap<String, String>,
    state: String,
    status: String,
    mounts: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeSummary {
    name: String,
    driver: String,
    mountpoint: String,
    created_at: String,
    labels: BTreeMap<String, String>,
    scope: String,
    options: BTreeMap<String, String>,
    usage_data: UsageData,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct UsageData {
    size: i64,
    ref_count: i64,
}

fn image(u: ImageUsage) -> ImageSummary {
    ImageSummary {
        id: u.image.id,
        parent_id: u.image.parent,
        repo_tags: u.image.repo_tags,
        repo_digests: Vec::new(),
        created: u.image.created.timestamp(),
        size: u.size,
        shared_size: 0,
        virtual_size: u.size,
        labels: u.image.config.labels,
        containers: u.containers,
    }
}

fn container(u: ContainerUsage) -> ContainerSummary {
    let v = u.view;
    let command = std::iter::once(v.config.path.as_str())
        .chain(v.config.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    ContainerSummary {
        id: v.config.id.clone(),
        names: vec![format!("/{}", v.config.name)],
        image: v.config.spec.image.clone(),
        image_id: v.config.image_id.clone(),
        command,
        created: v.config.created.timestamp(),
        ports: Vec::new(),
        size_rw: u.size_rw,
        size_root_fs: u.size_root_fs,
        labels: v.config.spec.labels.clone(),
        state: v.state.status_name().to_owned(),
        status: present::status(&v.state, chrono::Utc::now()),
        mounts: Vec::new(),
    }
}

fn volume(u: VolumeUsage) -> VolumeSummary {
    let v = u.volume;
    VolumeSummary {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint.display().to_string(),
        created_at: v
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        labels: v.labels.unwrap_or_default(),
        scope: v.scope,
        options: v.options.unwrap_or_default(),
        usage_data: UsageData {
            size: u.size,
            ref_count: u.ref_count,
        },
    }
}

async fn df(State(s): State<AppState>) -> Json<DataUsage> {
    let du = s.engine.disk_usage().await;
    Json(DataUsage {
        layers_size: du.layers_size,
        images: du.images.into_iter().map(image).collect(),
        containers: du.containers.into_iter().map(container).collect(),
        volumes: du.volumes.into_iter().map(volume).collect(),
        build_cache: Vec::new(),
    })
}
