//! `GET /images/{name}/get` and `GET /images/get?names=` (`docker save`): a tar in `docker save`
//! format, streamed; `POST /images/load` (`docker load`): such a tar (Berth's or Docker's) into
//! the store, answering with Docker's progress lines (`{"stream":"Loaded image: x:y\n"}`, or an
//! `errorDetail` line for a bad archive, as Docker does once its stream started). The work is the
//! engine's (`images/save.rs`, `images/load.rs`); `/images/{name}/get` is dispatched here from
//! `images.rs`, whose route takes every `/images/...` path (names may contain slashes).

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::AppState;
use crate::error::ApiResult;
use crate::extract::Query;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/get", get(save_many))
        .route("/images/load", post(load))
}

/// `docker save NAME`.
pub async fn save_one(s: AppState, name: &str) -> ApiResult<Response> {
    save(s, vec![name.to_owned()]).await
}

async fn save_many(State(s): State<AppState>, q: Query) -> ApiResult<Response> {
    let names: Vec<String> = q
        .all("names")
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    save(s, names).await
}

async fn save(s: AppState, names: Vec<String>) -> ApiResult<Response> {
    let file = tokio::fs::File::from_std(s.engine.save_images(names).await?);
    // The archive is unlinked already: it goes away when this stream (or its client) ends.
    let stream = futures::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 64 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One line of the load output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_detail: Option<ErrorDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail {
    message: String,
}

async fn load(State(s): State<AppState>, body: Body) -> ApiResult<Response> {
    let tmp = super::images::spool(&s, "import-load", "the archive", body).await?;
    let result = s.engine.load_images(tmp.to_path_buf()).await;
    drop(tmp);
    let lines: Vec<LoadLine> = match result {
        Ok(loaded) => loaded
            .into_iter()
            .flat_map(|l| {
                let msgs: Vec<String> = if l.tags.is_empty() {
                    vec![format!("Loaded image ID: {}\n", l.id)]
                } else {
                    l.tags
                        .iter()
                        .map(|t| format!("Loaded image: {t}\n"))
                        .collect()
                };
                msgs.into_iter().map(|m| LoadLine {
                    stream: Some(m),
                    error_detail: None,
                    error: None,
                })
            })
            .collect(),
        Err(e) => vec![LoadLine {
            stream: None,
            error_detail: Some(ErrorDetail {
                message: e.to_string(),
            }),
            error: Some(e.to_string()),
        }],
    };
    let text: String = lines
        .iter()
        .filter_map(|l| serde_json::to_string(l).ok())
        .map(|l| l + "\n")
        .collect();
    let body = Body::from_stream(futures::stream::once(
        async move { Ok::<_, Infallible>(text) },
    ));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
