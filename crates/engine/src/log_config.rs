//! `HostConfig.LogConfig`: the log driver of a container and its options, checked at create as
//! Docker checks them and kept for inspect.
//!
//! Berth has two drivers: `json-file` (the default; Docker's file format, read back by
//! `docker logs`) and `none` (nothing is written; `docker logs` is refused). The other drivers
//! Docker ships (syslog, journald, local, …) are refused by name with a clear 400; any other
//! name with Docker's own message (`logger: no log driver named 'x' is registered`). The
//! `json-file` options are checked for their names and values as Docker does; `max-size` and
//! `max-file` are kept but the file is not rotated (a documented difference).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The default driver, as Docker names it.
pub const JSON_FILE: &str = "json-file";
/// The driver that keeps nothing.
pub const NONE: &str = "none";

/// Drivers a Docker engine has that Berth does not.
const DOCKER_ONLY: &[&str] = &[
    "local",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "etwlogs",
    "gcplogs",
    "logentries",
];

/// Options Docker's json-file driver accepts.
const JSON_FILE_OPTS: &[&str] = &[
    "max-size",
    "max-file",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];

/// `HostConfig.LogConfig`, in Docker's wire shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Config")]
    pub config: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            kind: JSON_FILE.to_owned(),
            config: BTreeMap::new(),
        }
    }
}

impl LogConfig {
    /// Checks a requested log config and fills in the default driver (an empty `Type` is
    /// `json-file`, as Docker's daemon default).
    pub fn validated(mut self) -> Result<Self, EngineError> {
        if self.kind.is_empty() {
            self.kind = JSON_FILE.to_owned();
        }
        match self.kind.as_str() {
            JSON_FILE => {
                for (k, v) in &self.config {
                    if !JSON_FILE_OPTS.contains(&k.as_str()) {
                        return Err(EngineError::Invalid(format!(
                            "unknown log opt '{k}' for json-file log driver"
                        )));
                    }
                    check_json_file_opt(k, v)?;
                }
                Ok(self)
            }
            NONE => match self.config.keys().next() {
                Some(k) => Err(EngineError::Invalid(format!(
                    "unknown log opt '{k}' for none log driver"
                ))),
                None => Ok(self),
            },
            other if DOCKER_ONLY.contains(&other) => Err(EngineError::Invalid(format!(
                "log driver {other:?} is not supported by Berth: use json-file or none"
            ))),
            other => Err(EngineError::Invalid(format!(
                "logger: no log driver named '{other}' is registered"
            ))),
        }
    }

    /// Whether output is kept (and `docker logs` can read it).
    pub fn keeps_logs(&self) -> bool {
        self.kind != NONE
    }
}

fn check_json_file_opt(key: &str, value: &str) -> Result<(), EngineError> {
    match key {
        "max-size" => parse_size(value).map(|_| ()).ok_or_else(|| {
            EngineError::Invalid(format!("invalid value {value:?} for log opt max-size"))
        }),
        "max-file" => match value.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(()),
            Ok(_) => Err(EngineError::Invalid(
                "max-file cannot be less than 1".into(),
            )),
            Err(_) => Err(EngineError::Invalid(format!(
                "invalid value {value:?} for log opt max-file"
            ))),
        },
        "compress" => match value {
            "true" | "false" | "1" | "0" | "t" | "f" | "TRUE" | "FALSE" | "True" | "False" => {
                Ok(())
            }
            _ => Err(EngineError::Invalid(format!(
                "invalid value {value:?} for log opt compress"
            ))),
        },
        _ => Ok(()),
    }
}

/// A size as Docker's `units.RAMInBytes` reads it (`10m`, `1.5g`, `512k`, `100`).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lc(kind: &str, opts: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            kind: kind.into(),
            config: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn drivers_and_options() {
        assert_eq!(lc("", &[]).validated().unwrap().kind, "json-file");
        assert!(
            lc("json-file", &[("max-file", "100"), ("max-size", "10m")])
                .validated()
                .is_ok()
        );
        assert_eq!(
            lc("asdf", &[]).validated().unwrap_err().to_string(),
            "logger: no log driver named 'asdf' is registered"
        );
        assert!(lc("syslog", &[]).validated().is_err());
        assert_eq!(
            lc("json-file", &[("colour", "red")])
                .validated()
                .unwrap_err()
                .to_string(),
            "unknown log opt 'colour' for json-file log driver"
        );
        assert!(
            lc("json-file", &[("max-size", "lots")])
                .validated()
                .is_err()
        );
        assert!(lc("json-file", &[("max-file", "0")]).validated().is_err());
        assert!(lc("none", &[]).validated().is_ok());
        assert!(lc("none", &[("max-size", "1m")]).validated().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("12kb"), Some(12 << 10));
        assert_eq!(parse_size("x"), None);
    }
}
