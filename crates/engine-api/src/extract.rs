//! Request extractors that answer in Docker's error shape: a JSON body parser whose errors name
//! the offending field (400, never axum's 415/422), and a lenient query map that understands the
//! booleans, integers, filters and timestamps the docker CLI and SDK send.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. An empty body decodes as `null` (so `Option`/defaulted types accept it).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        parse_json(&bytes).map(Json)
    }
}

/// Decodes `bytes` as `T`; the error names the JSON path of the bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid JSON in request body: {inner}"))
        } else {
            ApiError::bad_request(format!(
                "invalid JSON in request body: field {path}: {inner}"
            ))
        }
    })
}

/// The query string as a map (last value wins), with typed getters; [`Query::all`] sees repeats.
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, String>, Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Query(pairs.iter().cloned().collect(), pairs))
    }
}

impl Query {
    /// Every value of a repeated key, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.1
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Docker's booleans: `1|true|True` and `0|false|False|""`.
    pub fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" | "" => Ok(false),
                _ => Err(ApiError::bad_request(format!(
                    "invalid query parameter {key}={v:?}: expected a boolean"
                ))),
            },
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        if self.get(key).is_some() {
            self.bool(key)
        } else {
            Ok(default)
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid query parameter {key}={v:?}: expected an integer"
                ))
            }),
        }
    }

    /// A unix time `secs[.nanos]` (or RFC 3339) as nanoseconds.
    pub fn time_nanos(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let bad = || {
            ApiError::bad_request(format!(
                "invalid query parameter {key}={v:?}: expected unix seconds"
            ))
        };
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
            return Ok(t.timestamp_nanos_opt());
        }
        let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let nanos: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}")
                .get(..9)
                .and_then(|f| f.parse().ok())
                .ok_or_else(bad)?
        };
        Ok(Some(
            secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        ))
    }

    /// `filters={"key":{"value":true}}` (or the older `{"key":["value"]}`) as key → values.
    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        let Some(raw) = self.get("filters").filter(|v| !v.is_empty()) else {
            return Ok(BTreeMap::new());
        };
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
        let mut out = BTreeMap::new();
        let serde_json::Value::Object(map) = value else {
            return Err(ApiError::bad_request(format!(
                "invalid filters {raw:?}: expected a JSON object"
            )));
        };
        for (k, v) in map {
            let values = match v {
                serde_json::Value::Object(m) => m
                    .into_iter()
                    .filter(|(_, b)| b.as_bool().unwrap_or(true))
                    .map(|(s, _)| s)
                    .collect(),
                serde_json::Value::Array(a) => a
                    .into_iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::String(s) => vec![s],
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter {k:?} in {raw:?}"
                    )));
                }
            };
            out.insert(k, values);
        }
        Ok(out)
    }
}

/// Checks a driver or plugin name from a request body before it reaches discovery or the
/// filesystem: absent or empty (the default driver) passes, anything else must be a valid object
/// name (no `/`, no `..`), else 400 naming the field, e.g. `invalid volume driver name "/tmp/x"`.
pub fn driver_name(kind: &'static str, name: Option<&str>) -> Result<(), ApiError> {
    match name {
        None | Some("") => Ok(()),
        Some(n) => Ok(berth_state::validate_name(kind, n)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query(pairs.iter().cloned().collect(), pairs)
    }

    #[test]
    fn booleans_ints_times_filters() {
        let q = q(&[
            ("a", "1"),
            ("b", "False"),
            ("c", "maybe"),
            ("t", "5"),
            ("since", "1704067200.5"),
            ("filters", r#"{"name":{"c1":true},"status":["exited"]}"#),
        ]);
        assert!(q.bool("a").unwrap());
        assert!(!q.bool("b").unwrap());
        assert!(!q.bool("missing").unwrap());
        assert!(q.bool("c").is_err());
        assert_eq!(q.int("t").unwrap(), Some(5));
        assert_eq!(
            q.time_nanos("since").unwrap(),
            Some(1_704_067_200_500_000_000)
        );
        let f = q.filters().unwrap();
        assert_eq!(f["name"], ["c1"]);
        assert_eq!(f["status"], ["exited"]);
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            #[serde(rename = "Cmd")]
            cmd: Option<Vec<String>>,
        }
        let err = parse_json::<B>(br#"{"Cmd": 5}"#).unwrap_err();
        assert!(err.message.contains("Cmd"), "{}", err.message);
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(parse_json::<Option<B>>(b"").unwrap().is_none());
    }
}
