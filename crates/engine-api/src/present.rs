//! Docker presentation: how the Engine API (and the `berth` CLI, which depends on this crate)
//! writes engine facts the way Docker users read them, and how it reads Docker's string syntaxes.
//! The engine keeps typed facts (timestamps, statuses, [`MountSpec`]s); the text lives here.
//!
//! - [`human_duration`]: Go's `units.HumanDuration`, the one used for container statuses
//!   (`Up 2 minutes`) and the CLI's `CREATED` columns (`2 hours ago`), so both round alike.
//! - [`status`]: the `Status` string of `GET /containers/json`.
//! - [`parse_bind`]: one `HostConfig.Binds` entry (`SRC:DST[:MODE]`) into a [`MountSpec`].

use berth_engine::container::{ContainerState, MountKind, MountSpec, Status};
use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// Go's `units.HumanDuration` of `secs` seconds: "Less than a second", "About a minute",
/// "3 hours", "2 weeks"… (hours are rounded, as Go does).
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if secs < 1 => "Less than a second".to_string(),
        _ if secs == 1 => "1 second".to_string(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

fn since(now: DateTime<Utc>, then: Option<DateTime<Utc>>) -> String {
    human_duration((now - then.unwrap_or(now)).num_seconds())
}

/// Docker's human status string (`Up 2 minutes`, `Exited (0) 5 seconds ago`, `Created`).
pub fn status(state: &ContainerState, now: DateTime<Utc>) -> String {
    match state.status {
        Status::Created => "Created".to_owned(),
        Status::Running if state.paused => {
            format!("Up {} (Paused)", since(now, state.started_at))
        }
        Status::Running => match &state.health {
            Some(h) => format!(
                "Up {} {}",
                since(now, state.started_at),
                h.status.ps_suffix()
            ),
            None => format!("Up {}", since(now, state.started_at)),
        },
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            state.exit_code,
            since(now, state.finished_at)
        ),
        Status::Removing => "Removal In Progress".to_owned(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            state.exit_code,
            since(now, state.finished_at)
        ),
        Status::Dead => "Dead".to_owned(),
    }
}

/// Parses one `HostConfig.Binds` entry: `src:dst[:mode]`. A `src` starting with `/` is a host
/// path (created at start when missing, as Docker's `-v` does), anything else a named volume
/// (`volume_driver`, when set, creates it on demand).
pub fn parse_bind(bind: &str, volume_driver: &str) -> Result<MountSpec, ApiError> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid HostConfig.Binds entry {bind:?}: expected SOURCE:DESTINATION[:MODE]"
            )));
        }
    };
    if source.is_empty() || !destination.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "invalid HostConfig.Binds entry {bind:?}: the destination must be an absolute path"
        )));
    }
    let mut read_only = false;
    for opt in mode.split(',').filter(|m| !m.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "rprivate" | "private" | "rslave" | "slave" | "nocopy" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid HostConfig.Binds entry {bind:?}: unknown mode {other:?}"
                )));
            }
        }
    }
    let kind = if source.starts_with('/') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    if kind == MountKind::Volume {
        berth_state::validate_name("volume", source)?;
    }
    Ok(MountSpec {
        anonymous: false,
        kind,
        source: source.to_owned(),
        destination: destination.to_owned(),
        read_only,
        mode: mode.to_owned(),
        driver: (kind == MountKind::Volume && !volume_driver.is_empty())
            .then(|| volume_driver.to_owned()),
        create_source: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_follow_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        // 90 minutes round to 2 hours (the old engine copy said "About an hour" here).
        assert_eq!(human_duration(90 * 60), "2 hours");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(-5), "Less than a second");
    }

    #[test]
    fn status_strings() {
        let now = Utc::now();
        let mut s = ContainerState::new();
        assert_eq!(status(&s, now), "Created");
        s.status = Status::Exited;
        s.exit_code = 3;
        s.finished_at = Some(now - chrono::TimeDelta::seconds(5));
        assert_eq!(status(&s, now), "Exited (3) 5 seconds ago");
        s.status = Status::Running;
        s.started_at = Some(now - chrono::TimeDelta::minutes(90));
        assert_eq!(status(&s, now), "Up 2 hours");
    }

    #[test]
    fn binds_parse() {
        let m = parse_bind("/a:/data:ro", "").unwrap();
        assert_eq!(
            (m.kind, m.read_only, m.destination.as_str(), m.create_source),
            (MountKind::Bind, true, "/data", true)
        );
        let v = parse_bind("nicevol:/d", "flocker").unwrap();
        assert_eq!(
            (v.kind, v.driver.as_deref()),
            (MountKind::Volume, Some("flocker"))
        );
        for bad in ["/a", "/a:rel", "../x:/d", "/a:/d:bogus", ":/d"] {
            let e = parse_bind(bad, "").unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
