//! Image bodies. Bollard's `ImageSummary` no longer has `VirtualSize` (which older clients
//! read) and its `ImageInspect` drops `Config.Labels: null`, so the list entry and inspect are
//! Berth's own structs; the delete and import bodies are bollard's.

use std::collections::BTreeMap;

use serde::Serialize;

/// One entry of `GET /images/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: i64,
    pub size: u64,
    pub shared_size: i64,
    pub virtual_size: u64,
    pub labels: BTreeMap<String, String>,
    pub containers: i64,
}

/// `GET /images/{name}/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub container: String,
    pub docker_version: String,
    pub author: String,
    pub architecture: String,
    pub os: String,
    pub size: u64,
    pub virtual_size: u64,
    pub config: ImageConfig,
    /// The legacy config of the container an image was committed from: Docker 20.10 always
    /// sends it (empty for imported images: [`Default`]), and docker-compose 1.29 reads its
    /// `Volumes` to recreate a container.
    pub container_config: super::container::ContainerConfig,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub metadata: ImageMetadata,
}

/// `Config` of image inspect: what a container of the image runs by default.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub user: String,
    /// `{"8000/tcp": {}}`; `null` when none.
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `{"/data": {}}`; `null` when none.
    pub volumes: Option<BTreeMap<String, Empty>>,
    pub stop_signal: String,
    /// The image's `HEALTHCHECK`; left out when it has none, as Docker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<berth_engine::health::HealthConfig>,
}

/// The `{}` of Docker's sets (`ExposedPorts`, `Volumes`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}

/// Docker's set shape from a list; `None` (`null`) when empty.
pub fn set_of(items: &[String]) -> Option<BTreeMap<String, Empty>> {
    (!items.is_empty()).then(|| items.iter().map(|i| (i.clone(), Empty {})).collect())
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageMetadata {
    pub last_tag_time: String,
}
