//! `GET /containers/json`: the list, its filters and Docker's summary of each container.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use berth_engine::ContainerView;

use super::inspect::{mount_points, networks};
use crate::error::ApiResult;
use crate::extract::Query;
use crate::models::container::{ContainerSummary, SummaryHostConfig, SummaryNetworkSettings};
use crate::present;
use crate::routes::AppState;

fn command_line(v: &ContainerView) -> String {
    std::iter::once(v.config.path.as_str())
        .chain(v.config.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(s: &AppState, v: &ContainerView) -> ContainerSummary {
    ContainerSummary {
        id: v.config.id.clone(),
        names: vec![format!("/{}", v.config.name)],
        image: v.config.spec.image.clone(),
        image_id: v.config.image_id.clone(),
        command: command_line(v),
        created: v.config.created.timestamp(),
        state: v.state.status_name(),
        status: present::status(&v.state, chrono::Utc::now()),
        ports: crate::routes::ports::summary(s, v),
        labels: v.config.spec.labels.clone(),
        size_rw: 0,
        size_root_fs: 0,
        host_config: SummaryHostConfig {
            network_mode: v.config.spec.network_mode.clone(),
        },
        network_settings: SummaryNetworkSettings {
            networks: networks(s, v),
        },
        mounts: mount_points(v),
    }
}

pub(super) async fn list(
    State(s): State<AppState>,
    q: Query,
) -> ApiResult<Json<Vec<ContainerSummary>>> {
    let filters = q.filters()?;
    let mut all = q.bool("all")?;
    if filters.contains_key("status") {
        all = true;
    }
    let views = s.engine.list(all, q.bool("system")?);
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let out: Vec<ContainerSummary> = views
        .iter()
        .filter(|v| matches_filters(v, &filters))
        .take(limit.unwrap_or(usize::MAX))
        .map(|v| summary(&s, v))
        .collect();
    Ok(Json(out))
}

fn matches_filters(v: &ContainerView, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| {
        // Docker ANDs `label` filters (compose lists by project *and* service labels) and ORs
        // the values of every other key.
        let every = k == "label";
        let check = |val: &String| match k.as_str() {
            "name" => v.config.name.contains(val.trim_start_matches('/')),
            "id" => v.config.id.starts_with(val.as_str()),
            "status" => v.state.status_name() == val,
            "label" => {
                let (lk, lv) = val
                    .split_once('=')
                    .map(|(a, b)| (a, Some(b)))
                    .unwrap_or((val.as_str(), None));
                v.config
                    .spec
                    .labels
                    .get(lk)
                    .is_some_and(|x| lv.is_none_or(|lv| x == lv))
            }
            "ancestor" => v.config.spec.image == *val || v.config.image_id.contains(val.as_str()),
            "exited" => v.state.exit_code.to_string() == *val,
            "volume" => v
                .config
                .spec
                .mounts
                .iter()
                .any(|m| m.source == *val || m.destination == *val),
            "network" => v.network == *val,
            "health" => {
                let h = v.state.health.as_ref().map(|h| h.status.as_str());
                h.unwrap_or("none") == val
            }
            _ => true,
        };
        vals.is_empty()
            || if every {
                vals.iter().all(check)
            } else {
                vals.iter().any(check)
            }
    })
}
