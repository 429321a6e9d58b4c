//! Pure parsers for command-line values shared by several commands: durations (`500ms`, `5s`,
//! `2m`), `unix://` host addresses, `k=v` pairs, and `--since`/`--until` times.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a duration written like Go's: a sequence of `<number><unit>` with units `ns`, `us`,
/// `ms`, `s`, `m`, `h` (`1m30s`, `500ms`, `1.5s`). A bare number is seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return secs_to_duration(secs, text);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    secs_to_duration(total, text)
}

fn secs_to_duration(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Turns `unix:///path` (or a bare absolute path) into the socket path.
pub fn unix_host(host: &str) -> Result<PathBuf, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(format!("invalid host {host:?}: empty socket path"));
        }
        return Ok(PathBuf::from(path));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    Err(format!(
        "invalid host {host:?}: only unix:///PATH sockets are supported"
    ))
}

/// Splits `k=v` (the value may contain `=`; a bare `k` means an empty value).
pub fn key_value(text: &str) -> (String, String) {
    match text.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (text.to_string(), String::new()),
    }
}

/// Collects repeated `k=v` flags into a map (later ones win).
pub fn key_values(items: &[String]) -> HashMap<String, String> {
    items.iter().map(|item| key_value(item)).collect()
}

/// Collects repeated `--filter k=v` flags into the Engine API's filter map (`k` → values).
pub fn filters(items: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "bad format of filter (expected name=value): {item}"
            ));
        };
        map.entry(k.trim().to_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(map)
}

/// Converts a `--since`/`--until` value to the API's `secs[.nanos]` form, like docker: a unix
/// timestamp passes through, a duration (`10m`) means that long before `now`, an RFC 3339 time or
/// `YYYY-MM-DD[THH:MM:SS]` (UTC) is converted.
pub fn timestamp(text: &str, now: SystemTime) -> Result<String, String> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok(text.to_string());
    }
    if let Ok(ago) = duration(text) {
        let at = now
            .checked_sub(ago)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        return Ok(at.as_secs().to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            let t = t.and_utc();
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let t = d.and_time(chrono::NaiveTime::MIN).and_utc();
        return Ok(format!("{}.000000000", t.timestamp()));
    }
    Err(format!("invalid time value {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("7").unwrap(), Duration::from_secs(7));
        assert!(duration("").is_err());
        assert!(duration("5x").is_err());
        assert!(duration("ms").is_err());
        assert!(duration("-1s").is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(
            unix_host("unix:///tmp/b.sock").unwrap(),
            PathBuf::from("/tmp/b.sock")
        );
        assert_eq!(
            unix_host("/tmp/b.sock").unwrap(),
            PathBuf::from("/tmp/b.sock")
        );
        assert!(unix_host("tcp://1.2.3.4:2375").is_err());
        assert!(unix_host("unix://").is_err());
    }

    #[test]
    fn pairs_and_filters() {
        assert_eq!(key_value("a=b=c"), ("a".into(), "b=c".into()));
        assert_eq!(key_value("flag"), ("flag".into(), String::new()));
        let f = filters(&["name=c1".into(), "status=exited".into(), "name=c2".into()]).unwrap();
        assert_eq!(f["name"], vec!["c1", "c2"]);
        assert_eq!(f["status"], vec!["exited"]);
        assert!(filters(&["oops".into()]).is_err());
    }

    #[test]
    fn timestamps() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(timestamp("1704067200", now).unwrap(), "1704067200");
        assert_eq!(timestamp("10m", now).unwrap(), "999400");
        assert_eq!(
            timestamp("2024-01-01T00:00:00", now).unwrap(),
            "1704067200.000000000"
        );
        assert_eq!(
            timestamp("2024-01-01T00:00:00Z", now).unwrap(),
            "1704067200.000000000"
        );
        assert!(timestamp("yesterday", now).is_err());
    }
}
