//! `GET /containers/{id}/stats`: a container's cgroup counters in Docker's shape.
//! `stream=true` (the default) sends one JSON object per second, each with the previous reading
//! as `precpu_stats`, until the client leaves or the container stops; `stream=false` sends one
//! object, after a second's interval so that the CPU figures have a baseline (as Docker does),
//! or at once with `one-shot=true` (then `precpu_stats` is empty).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_engine::Engine;
use berth_engine::stats::StatsSample;
use bytes::Bytes;
use std::sync::Arc;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::models::stats::{
    BlkioStats, CpuStats, CpuUsage, MemoryStats, PidsStats, StatsJson, Throttling,
};

/// Docker's sampling interval.
const INTERVAL: Duration = Duration::from_secs(1);

pub fn routes() -> Router<AppState> {
    Router::new().route("/containers/{id}/stats", get(stats))
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn cpu_stats(s: &StatsSample) -> CpuStats {
    if !s.running {
        return CpuStats::default();
    }
    let c = &s.cgroup;
    CpuStats {
        cpu_usage: CpuUsage {
            total_usage: c.cpu_total,
            percpu_usage: (!c.cpu_percpu.is_empty()).then(|| c.cpu_percpu.clone()),
            usage_in_kernelmode: c.cpu_system,
            usage_in_usermode: c.cpu_user,
        },
        system_cpu_usage: Some(s.system_cpu_usage),
        online_cpus: Some(s.online_cpus),
        throttling_data: Throttling {
            periods: c.throttling.0,
            throttled_periods: c.throttling.1,
            throttled_time: c.throttling.2,
        },
    }
}

fn to_json(now: &StatsSample, pre: Option<&StatsSample>) -> StatsJson {
    let c = &now.cgroup;
    let (memory_stats, pids_stats) = if now.running {
        (
            MemoryStats {
                usage: Some(c.memory_usage),
                max_usage: (c.memory_max_usage > 0).then_some(c.memory_max_usage),
                stats: Some(c.memory_stat.clone()),
                failcnt: Some(c.memory_failcnt),
                limit: Some(c.memory_limit),
            },
            PidsStats {
                current: Some(c.pids_current),
                limit: c.pids_limit,
            },
        )
    } else {
        (MemoryStats::default(), PidsStats::default())
    };
    StatsJson {
        read: if now.running {
            time(now.read)
        } else {
            ZERO_TIME.into()
        },
        preread: pre.map_or(ZERO_TIME.into(), |p| time(p.read)),
        pids_stats,
        blkio_stats: BlkioStats::default(),
        num_procs: 0,
        storage_stats: BTreeMap::new(),
        cpu_stats: cpu_stats(now),
        precpu_stats: pre.map(cpu_stats).unwrap_or_default(),
        memory_stats,
        name: now.name.clone(),
        id: now.id.clone(),
    }
}

fn line(now: &StatsSample, pre: Option<&StatsSample>) -> Bytes {
    let mut out = serde_json::to_vec(&to_json(now, pre)).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

async fn sample(engine: &Arc<Engine>, id: &str) -> ApiResult<StatsSample> {
    let (engine, id) = (engine.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || engine.stats_sample(&id))
        .await
        .map_err(|e| {
            ApiError::new(
                berth_state::ErrorKind::Internal,
                format!("reading stats: {e}"),
            )
        })?
        .map_err(Into::into)
}

async fn stats(State(s): State<AppState>, Path(id): Path<String>, q: Query) -> ApiResult<Response> {
    let stream = q.get("stream").is_none() || q.bool("stream")?;
    let one_shot = q.bool("one-shot")?;
    if one_shot && stream {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let first = sample(&s.engine, &id).await?;
    let json = [(header::CONTENT_TYPE, "application/json")];
    if !stream {
        if one_shot || !first.running {
            return Ok((json, line(&first, None)).into_response());
        }
        tokio::time::sleep(INTERVAL).await;
        let now = sample(&s.engine, &id).await?;
        return Ok((json, line(&now, Some(&first))).into_response());
    }
    // One object per interval until the container stops (or is removed) or the client leaves
    // (the body is dropped, ending the stream).
    let engine = s.engine.clone();
    let body = futures::stream::unfold(
        (Some(first), None::<StatsSample>, true),
        move |(next, pre, go_on)| {
            let (engine, id) = (engine.clone(), id.clone());
            async move {
                if !go_on {
                    return None;
                }
                let now = match next {
                    Some(n) => n,
                    None => {
                        tokio::time::sleep(INTERVAL).await;
                        sample(&engine, &id).await.ok()?
                    }
                };
                let bytes = line(&now, pre.as_ref());
                let running = now.running;
                Some((
                    Ok::<_, std::convert::Infallible>(bytes),
                    (None, Some(now), running),
                ))
            }
        },
    );
    Ok((json, Body::from_stream(body)).into_response())
}
