//! `/images/...`: `docker import` (`POST /images/create?fromSrc=-`, a chunked tar body), list,
//! inspect, history and remove. There is no registry: a pull (`fromImage`) answers 404 with the reason.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_engine::images::Image;
use bollard_stubs::models::{CreateImageInfo, ImageDeleteResponseItem, ImageHistoryResponseItem};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::models::image::{
    ImageConfig, ImageInspect, ImageMetadata, ImageSummary, RootFs, set_of,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/create", post(create))
        .route("/images/json", get(list))
        .route(
            "/images/{*rest}",
            get(inspect)
                .delete(remove)
                .post(super::images_extra::post_rest),
        )
}

fn summary(img: &Image) -> ImageSummary {
    ImageSummary {
        id: img.id.clone(),
        parent_id: img.parent.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: Vec::new(),
        created: img.created.timestamp(),
        size: img.size,
        shared_size: -1,
        virtual_size: img.size,
        labels: img.config.labels.clone(),
        containers: -1,
    }
}

fn detail(img: &Image) -> ImageInspect {
    let comment = if img.builtin {
        "built-in: the host's root filesystem"
    } else if img.container.is_empty() && img.comment.is_empty() {
        "imported"
    } else {
        img.comment.as_str()
    };
    ImageInspect {
        id: img.id.clone(),
        repo_tags: img.repo_tags.clone(),
        repo_digests: Vec::new(),
        parent: img.parent.clone(),
        comment: comment.into(),
        created: img
            .created
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        container: img.container.clone(),
        docker_version: String::new(),
        author: img.author.clone(),
        architecture: "amd64".into(),
        os: "linux".into(),
        size: img.size,
        virtual_size: img.size,
        config: ImageConfig {
            cmd: img.config.cmd.clone(),
            entrypoint: img.config.entrypoint.clone(),
            env: img.config.env.clone(),
            working_dir: img.config.working_dir.clone(),
            labels: (!img.config.labels.is_empty()).then(|| img.config.labels.clone()),
            user: img.config.user.clone(),
            exposed_ports: set_of(&img.config.exposed_ports),
            volumes: set_of(&img.config.volumes),
            stop_signal: img.config.stop_signal.clone(),
            healthcheck: img.config.healthcheck.clone(),
        },
        container_config: Default::default(),
        root_fs: RootFs {
            kind: "layers".into(),
            layers: img.layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        metadata: ImageMetadata {
            last_tag_time: "0001-01-01T00:00:00Z".into(),
        },
    }
}

/// `GET /images/{name}/history`, newest first.
fn history(rows: &[berth_engine::images::HistoryRow]) -> Vec<ImageHistoryResponseItem> {
    rows.iter()
        .map(|r| ImageHistoryResponseItem {
            id: r.id.clone(),
            created: r.created,
            created_by: r.created_by.clone(),
            tags: r.tags.clone(),
            size: i64::try_from(r.size).unwrap_or(i64::MAX),
            comment: r.comment.clone(),
        })
        .collect()
}

async fn create(State(s): State<AppState>, q: Query, body: Body) -> ApiResult<Response> {
    if let Some(from) = q.get("fromImage") {
        let tag = q
            .get("tag")
            .filter(|t| !t.is_empty())
            .map(|t| format!(":{t}"))
            .unwrap_or_default();
        return Err(ApiError::not_found(format!(
            "pull access denied for {from}{tag}, repository does not exist or may require docker login: Berth has no registry; import images with `docker import` or `berth image import`"
        )));
    }
    if q.get("fromSrc") != Some("-") {
        return Err(ApiError::bad_request(
            "fromSrc=- (the image tar in the request body) or fromImage is required",
        ));
    }
    let repo = q.get("repo").filter(|r| !r.is_empty()).map(|r| {
        match q.get("tag").filter(|t| !t.is_empty()) {
            Some(tag) => format!("{r}:{tag}"),
            None => r.to_owned(),
        }
    });
    // Every `changes` value (the query map alone keeps only the last of a repeated key).
    let changes: Vec<String> = q.all("changes").into_iter().map(str::to_owned).collect();
    let tmp = spool(&s, "import", "the image tar", body).await?;
    let result = s
        .engine
        .import_image(tmp.to_path_buf(), repo, changes)
        .await
        .map_err(ApiError::from);
    drop(tmp);
    let image = result?;
    let status = CreateImageInfo {
        status: Some(image.id),
        ..CreateImageInfo::default()
    };
    let mut line = serde_json::to_string(&status).unwrap_or_default();
    line.push('\n');
    let body = Body::from_stream(futures::stream::once(
        async move { Ok::<_, Infallible>(line) },
    ));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn list(State(s): State<AppState>, q: Query) -> ApiResult<Json<Vec<ImageSummary>>> {
    let mut refs = q.filters()?.remove("reference").unwrap_or_default();
    refs.extend(q.get("filter").filter(|f| !f.is_empty()).map(str::to_owned));
    Ok(Json(
        s.engine
            .images
            .list()
            .iter()
            .filter(|i| {
                refs.iter()
                    .all(|r| super::images_extra::matches_reference(&i.repo_tags, r))
            })
            .map(summary)
            .collect(),
    ))
}

async fn inspect(State(s): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/get") {
        return super::image_archive::save_one(s, name).await;
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return Ok(Json(history(&s.engine.images.history(name)?)).into_response());
    }
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        )));
    };
    Ok(Json(detail(&s.engine.images.get(name)?)).into_response())
}

async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<ImageDeleteResponseItem>>> {
    let out = s.engine.remove_image(&name)?;
    Ok(Json(
        out.into_iter()
            .map(|(k, v)| match k.as_str() {
                "Untagged" => ImageDeleteResponseItem {
                    untagged: Some(v),
                    deleted: None,
                },
                _ => ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(v),
                },
            })
            .collect(),
    ))
}

/// Writes a request body (an image tar or a `docker save` archive, `what`) to a file of its own
/// under the engine's tmp dir, named `<prefix>-<id>.tar`. The file is removed when the returned
/// guard drops, however the handler ends: a client that disconnects mid-upload drops the
/// handler's future, and the guard with it; a daemon crash leaves the file for the next boot to
/// sweep (see `ImageStore::open`). A body that cannot be read is the client's fault: 400.
pub(super) async fn spool(
    s: &AppState,
    prefix: &str,
    what: &str,
    body: Body,
) -> ApiResult<tempfile::TempPath> {
    let tmp_dir = s.engine.tmp_dir()?;
    let tmp = tempfile::TempPath::try_from_path(
        tmp_dir.join(format!("{prefix}-{}.tar", berth_state::new_id())),
    )
    .map_err(|e| ApiError::new(berth_state::ErrorKind::Internal, format!("{prefix}: {e}")))?;
    let written = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.map_err(std::io::Error::other)?)
                .await?;
        }
        file.flush().await
    }
    .await;
    written.map_err(|e| ApiError::bad_request(format!("reading {what} from the request: {e}")))?;
    Ok(tmp)
}
