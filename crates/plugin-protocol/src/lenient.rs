//! Lenient decoding helpers: `null` as the default value, and extraction of the `Err`/`Error` text a
//! plugin may put in any reply.

use serde::{Deserialize, Deserializer};

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
}
