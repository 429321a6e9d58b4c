//! The streaming endpoints: attach (a 101 upgrade to Docker's raw or multiplexed stream) and
//! logs.

use std::convert::Infallible;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::logs::LogOptions;
use bytes::Bytes;
use futures::StreamExt;

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::routes::AppState;
use crate::streams;

pub(super) async fn attach(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    conn: Option<Extension<streams::ConnFd>>,
    mut req: Request,
) -> ApiResult<Response> {
    let want_stdin = q.bool("stdin")?;
    let want_stdout = q.bool("stdout")?;
    let want_stderr = q.bool("stderr")?;
    let detach_keys = crate::detach::parse(q.get("detachKeys").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let attached = s.engine.attach(&id, want_stdin)?;
    let logs = if q.bool("logs")? && (want_stdout || want_stderr) {
        let opts = LogOptions {
            follow: false,
            stdout: want_stdout,
            stderr: want_stderr,
            tail: None,
            since: None,
            until: None,
        };
        match s.engine.logs(&id, opts) {
            Ok((_, rx)) => Some(rx),
            // Log driver `none`: nothing to replay.
            Err(e) if e.kind() == berth_state::ErrorKind::InvalidArgument => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let tty = attached.tty;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(streams::serve_attach(
        on_upgrade,
        conn.map(|c| c.0),
        attached,
        streams::AttachOptions {
            stdout: want_stdout,
            stderr: want_stderr,
            // Absent means yes (Berth's clients relied on it before `stream` was read).
            stream: q.get("stream").is_none() || q.bool("stream")?,
            logs,
            detach_keys,
        },
    ));
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    Ok(resp)
}

pub(super) async fn logs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let tail = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(n) => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {n:?}")))?
                .max(0) as usize,
        ),
    };
    let nanos_to_time = |n: Option<i64>| {
        n.filter(|n| *n > 0)
            .map(chrono::DateTime::from_timestamp_nanos)
    };
    let opts = LogOptions {
        follow: q.bool("follow")?,
        stdout: q.bool("stdout")?,
        stderr: q.bool("stderr")?,
        tail,
        since: nanos_to_time(q.time_nanos("since")?),
        until: nanos_to_time(q.time_nanos("until")?),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "you must choose at least one stream (stdout=1 or stderr=1)",
        ));
    }
    let timestamps = q.bool("timestamps")?;
    let (tty, rx) = s.engine.logs(&id, opts)?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |entry| {
        let mut payload = Vec::new();
        if timestamps {
            payload.extend_from_slice(
                entry
                    .time
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            payload.push(b' ');
        }
        payload.extend_from_slice(entry.log.as_bytes());
        let kind = if entry.stream == "stderr" { 2 } else { 1 };
        Ok::<_, Infallible>(if tty {
            Bytes::from(payload)
        } else {
            streams::frame(kind, &payload)
        })
    });
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}
