//! `METHOD /path/glob` patterns used by api hook subscriptions (Powerstrip's `endpoints` keys).
//!
//! `METHOD` is an HTTP method or `*`. The glob matches the request path without its query: `*`
//! matches any run of characters including `/` (like Powerstrip's `fnmatch`), `?` one character.
//! A pattern that does not start with `/*/` also matches the path with its `/v1.xx` version prefix
//! removed, so `POST /containers/create` matches `/v1.47/containers/create`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed `METHOD /glob` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPattern {
    method: String,
    glob: String,
}

impl ApiPattern {
    /// Parses `"POST /*/containers/create"`; a bare glob means any method.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        match s.split_once(char::is_whitespace) {
            Some((m, g)) => Self {
                method: m.to_ascii_uppercase(),
                glob: g.trim().to_owned(),
            },
            None => Self {
                method: "*".to_owned(),
                glob: s.to_owned(),
            },
        }
    }

    /// `* *`: every request.
    pub fn any() -> Self {
        Self {
            method: "*".to_owned(),
            glob: "*".to_owned(),
        }
    }

    /// Whether `method path` (path may carry a query, which is ignored) matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method != "*" && !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if glob_match(self.glob.as_bytes(), path.as_bytes()) {
            return true;
        }
        match strip_version(path) {
            Some(rest) => glob_match(self.glob.as_bytes(), rest.as_bytes()),
            None => false,
        }
    }
}

impl std::fmt::Display for ApiPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.glob)
    }
}

impl Serialize for ApiPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ApiPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// `/v1.47/containers/create` → `/containers/create`.
fn strip_version(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/')?;
    let ver = &rest[..end];
    (!ver.is_empty() && ver.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| &rest[end..])
}

/// Iterative glob match with backtracking on the last `*`.
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powerstrip_style_patterns() {
        let p = ApiPattern::parse("POST /*/containers/create");
        assert!(p.matches("POST", "/v1.16/containers/create?name=web"));
        assert!(!p.matches("GET", "/v1.16/containers/create"));
        assert!(!p.matches("POST", "/containers/create"));
        let p = ApiPattern::parse("post /containers/*/start");
        assert!(p.matches("POST", "/v1.47/containers/abc/start"));
        assert!(p.matches("POST", "/containers/abc/start"));
        assert!(!p.matches("POST", "/v1.47/containers/abc/stop"));
        assert!(ApiPattern::any().matches("DELETE", "/anything/at/all"));
        assert!(ApiPattern::parse("/_ping").matches("HEAD", "/_ping"));
        assert!(ApiPattern::parse("GET /containers/?son").matches("GET", "/containers/json"));
    }

    #[test]
    fn serde_roundtrip() {
        let p: ApiPattern = serde_json::from_str("\"GET /images/*\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"GET /images/*\"");
    }
}
