//! `POST /containers/{id}/update` (`docker update`): memory, CPU, pids limits, cpusets and the restart
//! policy, applied to a running container's cgroup at once and kept for later starts (see the
//! engine's `update.rs`). Settings Berth cannot apply (block I/O weight, reservations,
//! ...) are refused with 400 when given a value, rather than accepted and ignored.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use berth_engine::container::RestartPolicy;
use berth_engine::update::UpdateRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract;

pub fn routes() -> Router<AppState> {
    Router::new().route("/containers/{id}/update", post(update))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicyBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    maximum_retry_count: i64,
}

/// The body: Docker's `Resources` plus `RestartPolicy`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateBody {
    memory: Option<i64>,
    memory_swap: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    cpu_shares: Option<i64>,
    pids_limit: Option<i64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    restart_policy: Option<RestartPolicyBody>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Docker's `ContainerUpdateResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateResponse {
    warnings: Vec<String>,
}

/// A value that sets something (clients send zeros, empty lists and nulls for what they leave).
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult<Json<UpdateResponse>> {
    let body: UpdateBody = extract::parse_json::<Option<UpdateBody>>(&body)?.unwrap_or_default();
    if let Some((key, _)) = body.other.iter().find(|(_, v)| is_set(v)) {
        return Err(ApiError::bad_request(format!(
            "cannot update {key}: Berth applies Memory, MemorySwap, NanoCpus, CpuQuota, CpuPeriod, CpuShares, PidsLimit, CpusetCpus, CpusetMems and RestartPolicy"
        )));
    }
    let restart_policy = match body.restart_policy {
        Some(p) if !p.name.is_empty() => {
            Some(RestartPolicy::parse(&p.name, p.maximum_retry_count)?)
        }
        _ => None,
    };
    let req = UpdateRequest {
        memory: body.memory,
        memory_swap: body.memory_swap,
        nano_cpus: body.nano_cpus,
        cpu_quota: body.cpu_quota,
        cpu_period: body.cpu_period,
        cpu_shares: body.cpu_shares,
        pids_limit: body.pids_limit,
        cpuset_cpus: body.cpuset_cpus,
        cpuset_mems: body.cpuset_mems,
        restart_policy,
    };
    let warnings = s.engine.update(&id, req).await?;
    Ok(Json(UpdateResponse { warnings }))
}
