//! `docker exec`: `POST /containers/{id}/exec` (create), `POST /exec/{id}/start` (hijacked
//! stream, multiplexed stdout/stderr frames; `Detach: true` returns at once),
//! `GET /exec/{id}/json` (inspect) and `POST /exec/{id}/resize` (no-op: no tty).
//!
//! The exec table and the process live in the engine (`berth_engine::exec`). `Tty: true` and
//! `Privileged: true` are refused with 400.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_engine::exec::{ExecConfig, ExecStarted};
use bollard_stubs::models::ProcessConfig;
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, parse_json};
use crate::models::IdResponse;
use crate::models::exec::ExecInspect;
use crate::streams::{self, ConnFd};

/// Largest `POST /exec/{id}/start` body read.
const START_BODY_LIMIT: usize = 64 * 1024;
/// Output chunks in flight between the process and the client.
const OUTPUT_DEPTH: usize = 16;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
        .route("/exec/{id}/resize", post(resize))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    tty: bool,
    privileged: bool,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
}

async fn create(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Option<CreateBody>>,
) -> ApiResult<Response> {
    let body = body.unwrap_or_default();
    if body.tty {
        return Err(ApiError::bad_request(
            "exec with a tty (-t) is not supported by berth; run without -t",
        ));
    }
    if body.privileged {
        return Err(ApiError::bad_request(
            "privileged exec is not supported by berth",
        ));
    }
    let config = ExecConfig {
        cmd: body.cmd.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
        working_dir: body.working_dir.unwrap_or_default(),
        user: body.user.unwrap_or_default(),
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
    };
    let exec_id = s.engine.create_exec(&id, config)?;
    Ok((StatusCode::CREATED, axum::Json(IdResponse { id: exec_id })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    tty: bool,
}

async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    conn: Option<Extension<ConnFd>>,
    mut req: Request,
) -> ApiResult<Response> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let bytes = axum::body::to_bytes(req.into_body(), START_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let body: StartBody = parse_json::<Option<StartBody>>(&bytes)?.unwrap_or_default();
    if body.tty {
        return Err(ApiError::bad_request(
            "exec with a tty (-t) is not supported by berth; run without -t",
        ));
    }
    let started = s.engine.start_exec(&id).await?;
    if body.detach {
        // Nobody reads the output: drain it so the process never blocks on a full pipe.
        let ExecStarted { stdout, stderr, .. } = started;
        if let Some(out) = stdout {
            tokio::spawn(drain(out));
        }
        if let Some(err) = stderr {
            tokio::spawn(drain(err));
        }
        return Ok(StatusCode::OK.into_response());
    }
    let record = s.engine.exec_inspect(&id)?;
    tokio::spawn(serve(
        on_upgrade,
        conn.map(|c| c.0),
        started,
        record.config.attach_stdout,
        record.config.attach_stderr,
    ));
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.docker.multiplexed-stream"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}

async fn drain(mut r: impl AsyncRead + Unpin) {
    let mut buf = vec![0u8; 8192];
    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Reads `r` into frames of stream `kind` (dropped when not `wanted`) until EOF.
async fn pump(mut r: impl AsyncRead + Unpin, kind: u8, wanted: bool, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if wanted && tx.send(streams::frame(kind, &buf[..n])).await.is_err() {
                    // The client left: keep draining so the process is not blocked.
                    drain(r).await;
                    return;
                }
            }
        }
    }
}

/// The hijacked session: stdin in, framed output out; closed once the output ended and the
/// exit code is recorded (so `docker exec` reads it from inspect), or when the client left.
async fn serve(
    on_upgrade: OnUpgrade,
    conn: Option<ConnFd>,
    started: ExecStarted,
    stdout: bool,
    stderr: bool,
) {
    let ExecStarted {
        stdin,
        stdout: out,
        stderr: err,
        exited,
    } = started;
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_DEPTH);
    if let Some(out) = out {
        tokio::spawn(pump(out, 1, stdout, tx.clone()));
    }
    if let Some(err) = err {
        tokio::spawn(pump(err, 2, stderr, tx.clone()));
    }
    drop(tx);
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "exec upgrade failed");
            return;
        }
    };
    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    let stdin_task = tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stdin.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let gone = streams::hung_up(conn);
    tokio::pin!(gone);
    loop {
        tokio::select! {
            _ = &mut gone => break,
            chunk = rx.recv() => match chunk {
                Some(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = exited.await;
                    break;
                }
            },
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    stdin_task.abort();
}

async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ExecInspect>> {
    let r = s.engine.exec_inspect(&id)?;
    let (entrypoint, arguments) = match r.config.cmd.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    Ok(axum::Json(ExecInspect {
        id: r.id,
        running: r.running,
        exit_code: r.exit_code.map(i64::from),
        process_config: ProcessConfig {
            tty: Some(false),
            entrypoint: Some(entrypoint),
            arguments: Some(arguments),
            privileged: Some(false),
            user: Some(r.config.user),
        },
        open_stdin: r.config.attach_stdin,
        open_stderr: r.config.attach_stderr,
        open_stdout: r.config.attach_stdout,
        can_remove: false,
        container_id: r.container_id,
        detach_keys: String::new(),
        pid: r.pid.into(),
    }))
}

async fn resize(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    // No tty: nothing to resize; the exec must exist.
    s.engine.exec_inspect(&id)?;
    Ok(StatusCode::OK)
}
