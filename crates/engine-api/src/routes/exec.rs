//! `docker exec`: `POST /containers/{id}/exec` (create), `POST /exec/{id}/start` (hijacked
//! stream: multiplexed stdout/stderr frames, or the raw terminal with `Tty`; `Detach: true`
//! returns at once), `GET /exec/{id}/json` (inspect) and `POST /exec/{id}/resize` (the pty's
//! size; nothing to do without a tty).
//!
//! The exec table and the process live in the engine (`berth_engine::exec`). On a tty with stdin
//! attached, the `DetachKeys` sequence (default ctrl-p ctrl-q) ends the session and leaves the
//! process running, as Docker does.
//!
//! As in Docker, the start request's `Tty`, not the exec's, decides whether the output is
//! framed: docker-py starts every exec with `Tty: false` unless told otherwise and reads frames,
//! pty output included. A process that cannot be started (no such executable) is reported
//! inside the stream, with exit code 127 (126: not executable) in inspect, as Docker does.
//! A start request without `Upgrade` gets what Docker gives it: `200` and the output as a body
//! that ends with the connection (HTTP/1.0 framing, no chunks), and no stdin.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
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
use crate::detach;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query, parse_json};
use crate::models::IdResponse;
use crate::models::exec::ExecInspect;
use crate::streams::{self, ConnFd};
use berth_engine::error::EngineError;

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
    /// `[rows, cols]`.
    console_size: Option<Vec<u16>>,
    /// docker-py sends `detachKeys` (Docker's decoder ignores case).
    #[serde(alias = "detachKeys")]
    detach_keys: String,
}

/// `ConsoleSize`: `[rows, cols]`, or absent/null.
fn console_size(size: Option<Vec<u16>>) -> ApiResult<Option<(u16, u16)>> {
    match size.as_deref() {
        None | Some([]) => Ok(None),
        Some([rows, cols]) => Ok(Some((*rows, *cols))),
        Some(other) => Err(ApiError::bad_request(format!(
            "ConsoleSize {other:?}: expected [height, width]"
        ))),
    }
}

async fn create(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Option<CreateBody>>,
) -> ApiResult<Response> {
    let body = body.unwrap_or_default();
    detach::parse(&body.detach_keys).map_err(ApiError::bad_request)?;
    let config = ExecConfig {
        cmd: body.cmd.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
        working_dir: body.working_dir.unwrap_or_default(),
        user: body.user.unwrap_or_default(),
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        tty: body.tty,
        privileged: body.privileged,
        console_size: console_size(body.console_size)?,
        detach_keys: body.detach_keys,
    };
    let exec_id = s.engine.create_exec(&id, config)?;
    Ok((StatusCode::CREATED, axum::Json(IdResponse { id: exec_id })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    /// The client wants the raw output (no frames), whether or not the exec has a tty.
    tty: bool,
    /// `[rows, cols]`: the terminal size to start with (tty execs).
    console_size: Option<Vec<u16>>,
}

async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    conn: Option<Extension<ConnFd>>,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let bytes = axum::body::to_bytes(req.into_body(), START_BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let body: StartBody = parse_json::<Option<StartBody>>(&bytes)?.unwrap_or_default();
    let size = console_size(body.console_size)?;
    let raw = body.tty;
    let started = match s.engine.start_exec(&id, size).await {
        Ok(started) => started,
        Err(e @ EngineError::Runtime(_)) if !body.detach => {
            let line = format!("{e}\r\n");
            let out = if raw {
                Bytes::from(line)
            } else {
                streams::frame(1, line.as_bytes())
            };
            if !upgrade {
                return Ok(plain(raw, Body::from(out)));
            }
            tokio::spawn(tell(on_upgrade, out));
            return Ok(hijacked(raw));
        }
        Err(e) => return Err(e.into()),
    };
    if body.detach {
        // Nobody reads the output: drain it so the process never blocks on a full pipe.
        let ExecStarted { stdout, stderr, .. } = started;
        tokio::spawn(drain(stdout));
        if let Some(err) = stderr {
            tokio::spawn(drain(err));
        }
        return Ok(StatusCode::OK.into_response());
    }
    let record = s.engine.exec_inspect(&id)?;
    let session = Session {
        raw,
        stdout: record.config.attach_stdout,
        stderr: record.config.attach_stderr,
        // Validated at create.
        detach_keys: (started.tty && record.config.attach_stdin)
            .then(|| detach::parse(&record.config.detach_keys).ok())
            .flatten(),
    };
    if !upgrade {
        return Ok(plain(raw, output_body(started, session)));
    }
    tokio::spawn(serve(on_upgrade, conn.map(|c| c.0), started, session));
    Ok(hijacked(raw))
}

/// The `200` of a start without `Upgrade`: `body` until the connection closes. HTTP/1.0 framing
/// (no length, no chunks) is what Docker's hijacked answer amounts to.
fn plain(raw: bool, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.version_mut() = Version::HTTP_10;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if raw {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    resp
}

/// The session's output as a response body, ended once the output ended and the exit code is
/// recorded; a client that leaves drops it, and the pumps then drain the process's output.
fn output_body(started: ExecStarted, s: Session) -> Body {
    let ExecStarted {
        stdout: out,
        stderr: err,
        exited,
        ..
    } = started;
    let (tx, rx) = mpsc::channel::<Bytes>(OUTPUT_DEPTH);
    tokio::spawn(pump(out, if s.raw { 0 } else { 1 }, s.stdout, tx.clone()));
    if let Some(err) = err {
        tokio::spawn(pump(err, if s.raw { 0 } else { 2 }, s.stderr, tx.clone()));
    }
    drop(tx);
    let stream = futures::stream::unfold((rx, Some(exited)), |(mut rx, exited)| async move {
        match rx.recv().await {
            Some(chunk) => Some((Ok::<_, std::io::Error>(chunk), (rx, exited))),
            None => {
                if let Some(exited) = exited {
                    let _ = exited.await;
                }
                None
            }
        }
    });
    Body::from_stream(stream)
}

/// The `101` that hands the connection over to the session: raw or multiplexed output.
fn hijacked(raw: bool) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if raw {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// A session that only tells the client why its process did not start, then ends.
async fn tell(on_upgrade: OnUpgrade, out: Bytes) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut io = TokioIo::new(upgraded);
    let _ = io.write_all(&out).await;
    let _ = io.shutdown().await;
}

async fn drain(mut r: impl AsyncRead + Unpin) {
    let mut buf = vec![0u8; 8192];
    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// What a session passes on.
struct Session {
    /// Raw output (the start request's `Tty`), else multiplexed frames.
    raw: bool,
    stdout: bool,
    stderr: bool,
    /// The detach sequence to watch stdin for (tty sessions with stdin only).
    detach_keys: Option<Vec<u8>>,
}

/// Reads `r` into frames of stream `kind` (raw bytes when `kind` is 0: a tty; dropped when not
/// `wanted`) until EOF.
async fn pump(mut r: impl AsyncRead + Unpin, kind: u8, wanted: bool, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = if kind == 0 {
                    Bytes::copy_from_slice(&buf[..n])
                } else {
                    streams::frame(kind, &buf[..n])
                };
                if wanted && tx.send(chunk).await.is_err() {
                    // The client left: keep draining so the process is not blocked.
                    drain(r).await;
                    return;
                }
            }
        }
    }
}

/// The hijacked session: stdin in, output out (framed, or raw on a tty); closed once the output
/// ended and the exit code is recorded (so `docker exec` reads it from inspect), when the client
/// left, or when stdin carried the detach keys (the process keeps running).
async fn serve(on_upgrade: OnUpgrade, conn: Option<ConnFd>, started: ExecStarted, s: Session) {
    let ExecStarted {
        stdin,
        stdout: out,
        stderr: err,
        exited,
        ..
    } = started;
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_DEPTH);
    tokio::spawn(pump(out, if s.raw { 0 } else { 1 }, s.stdout, tx.clone()));
    if let Some(err) = err {
        tokio::spawn(pump(err, if s.raw { 0 } else { 2 }, s.stderr, tx.clone()));
    }
    drop(tx);
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "exec upgrade failed");
            return;
        }
    };
    streams::head_read(conn.as_ref()).await;
    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    let detach_keys = s.detach_keys;
    let stdin_task = tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        let mut matcher = detach_keys.map(detach::Matcher::new);
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let (input, detach) = match &mut matcher {
                        Some(m) => m.feed(&buf[..n]),
                        None => (buf[..n].to_vec(), false),
                    };
                    if stdin.write_all(&input).await.is_err() {
                        return;
                    }
                    if detach {
                        let _ = detached_tx.send(());
                        return;
                    }
                }
            }
        }
    });
    let gone = streams::hung_up(conn);
    tokio::pin!(gone);
    let mut detach_watch = true;
    loop {
        tokio::select! {
            _ = &mut gone => break,
            res = &mut detached, if detach_watch => match res {
                Ok(()) => break,
                // Stdin ended without the keys: nothing more to watch.
                Err(_) => detach_watch = false,
            },
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
            tty: Some(r.config.tty),
            entrypoint: Some(entrypoint),
            arguments: Some(arguments),
            privileged: Some(r.config.privileged),
            user: Some(r.config.user),
        },
        open_stdin: r.config.attach_stdin,
        open_stderr: r.config.attach_stderr,
        open_stdout: r.config.attach_stdout,
        can_remove: false,
        container_id: r.container_id,
        detach_keys: r.config.detach_keys,
        pid: r.pid.into(),
    }))
}

async fn resize(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    s.engine.resize_exec(&id, h, w)?;
    Ok(StatusCode::OK)
}
