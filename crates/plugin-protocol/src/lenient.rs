//! Lenient decoding helpers: `null` as the default value, and extraction of the `Err`/`Error` text a
//! plugin may put in any reply.

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A list of words from a closed set (event names, sync reasons), case-insensitive: `null` is
/// empty, and entries that are not strings or not known are dropped (the handshake checks
/// report them; decoding never fails on them).
pub fn known_words<'de, D, E>(de: D) -> Result<Vec<E>, D::Error>
where
    D: Deserializer<'de>,
    E: serde::de::DeserializeOwned,
{
    let raw: Option<Vec<serde_json::Value>> = Option::deserialize(de)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) => {
                serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).ok()
            }
            _ => None,
        })
        .collect())
}

/// `#[serde(default, deserialize_with = "nullable")]`: accepts `null` as `T::default()`.
pub fn nullable<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// The error text of a plugin reply: a non-empty top-level `Err` or `Error` string (keys matched
/// case-insensitively, as Go's decoder does). `None` when the reply carries no error.
pub fn error_text(reply: &serde_json::Value) -> Option<String> {
    let obj = reply.as_object()?;
    obj.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("err") || k.eq_ignore_ascii_case("error"))
        .find_map(|(_, v)| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
}

/// [`error_text`] read straight from a reply body, without building a `serde_json::Value` (the hot
/// path of every plugin call). `None` when the body is not a JSON object: the caller then falls
/// back to the general rules.
pub fn error_text_in(body: &[u8]) -> Option<Option<String>> {
    serde_json::from_slice::<ErrorProbe>(body).ok().map(|p| p.0)
}

/// The `Err`/`Error` text of a JSON object, every other member skipped unread.
struct ErrorProbe(Option<String>);

impl<'de> Deserialize<'de> for ErrorProbe {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(ProbeVisitor)
    }
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = ErrorProbe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorProbe, A::Error> {
        // Same answer as `error_text` on the decoded object: a repeated key keeps its last value,
        // and among the spellings of Err/Error the first in key order with a non-empty string wins.
        // Nothing is allocated unless a reply carries an error (or repeats an error key).
        let mut seen: Vec<(String, Option<String>)> = Vec::new();
        while let Some(key) = map.next_key::<ErrKey>()? {
            let ErrKey::Err(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let TextValue(text) = map.next_value()?;
            match seen.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = text,
                None if text.is_some() => seen.push((key, text)),
                None => {}
            }
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(ErrorProbe(seen.into_iter().find_map(|(_, text)| text)))
    }
}

/// A member name: one of the spellings of `Err`/`Error` (kept), or anything else (not copied).
enum ErrKey {
    Err(String),
    Other,
}

impl<'de> Deserialize<'de> for ErrKey {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ErrKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<ErrKey, E> {
                Ok(
                    if key.eq_ignore_ascii_case("err") || key.eq_ignore_ascii_case("error") {
                        ErrKey::Err(key.to_owned())
                    } else {
                        ErrKey::Other
                    },
                )
            }
        }
        de.deserialize_str(V)
    }
}

/// A member value: `Some` for a non-empty string, `None` for anything else (skipped unread).
struct TextValue(Option<String>);

impl<'de> Deserialize<'de> for TextValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TextValue, E> {
                Ok(TextValue((!v.is_empty()).then(|| v.to_owned())))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<TextValue, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TextValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TextValue, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TextValue(None))
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_text_finds_err_and_error() {
        assert_eq!(error_text(&json!({"Err": "boom"})).as_deref(), Some("boom"));
        assert_eq!(
            error_text(&json!({"Error": "ipam"})).as_deref(),
            Some("ipam")
        );
        assert_eq!(
            error_text(&json!({"err": "lower"})).as_deref(),
            Some("lower")
        );
        assert_eq!(error_text(&json!({"Err": ""})), None);
        assert_eq!(error_text(&json!({"Err": null})), None);
        assert_eq!(error_text(&json!([1])), None);
    }

    #[test]
    fn error_text_in_agrees_with_error_text() {
        for body in [
            r#"{"Err":"boom"}"#,
            r#"{"Mountpoint":"/m","Error":"ipam","x":[1,{"Err":"nested"}]}"#,
            r#"{"err":"lower","Err":"second"}"#,
            r#"{"Err":"first","Err":""}"#,
            r#"{"Err":"","Err":"last"}"#,
            r#"{"Error":{"Err":"x"},"ERR":[1,"y"],"eRr":true}"#,
            r#"{"Err":1.5,"Error":"\u00e9chec"}"#,
            r#"{"Err":"","Action":"continue"}"#,
            r#"{"Err":null,"Error":5}"#,
            r#"{"Na\u006de":"escaped key","Er\u0072":"escaped"}"#,
            "{}",
        ] {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                error_text_in(body.as_bytes()),
                Some(error_text(&v)),
                "{body}"
            );
        }
        assert_eq!(error_text_in(b"[1]"), None, "not an object");
        assert_eq!(error_text_in(b"<html>"), None, "not JSON");
    }
}
