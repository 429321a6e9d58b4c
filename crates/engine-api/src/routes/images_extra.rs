//! `POST /images/{name}/tag?repo=R&tag=T` (`docker tag`). Reached through the `/images/{*rest}`
//! route of `images.rs`, since an image name may contain slashes.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;

/// `POST /images/{*rest}`: `…/tag` tags the image; anything else is not a route.
pub async fn post_rest(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let Some(name) = rest.strip_suffix("/tag") else {
        return Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        )));
    };
    let repo = q
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("repository name (repo) must be given"))?;
    let new_tag = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    };
    s.engine.images.tag(name, &new_tag)?;
    Ok(StatusCode::CREATED)
}

/// `GET /images/json` `reference` filter (and the legacy `filter=` parameter): `repo` matches
/// every tag of that repository, `repo:tag` that one tag; `*` in either part matches any run of
/// characters but `/`, as Docker's glob does.
pub fn matches_reference(repo_tags: &[String], pattern: &str) -> bool {
    let with_tag = pattern
        .rsplit_once(':')
        .is_some_and(|(_, t)| !t.contains('/'));
    repo_tags.iter().any(|t| {
        let candidate = if with_tag {
            t.as_str()
        } else {
            t.rsplit_once(':').map_or(t.as_str(), |(r, _)| r)
        };
        glob(pattern.as_bytes(), candidate.as_bytes())
    })
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches_reference;

    #[test]
    fn reference_filter() {
        let tags = vec!["busybox:latest".to_owned(), "ex/other:v2".to_owned()];
        assert!(matches_reference(&tags, "busybox"));
        assert!(matches_reference(&tags, "busybox:latest"));
        assert!(!matches_reference(&tags, "busybox:v1"));
        assert!(matches_reference(&tags, "ex/*"));
        assert!(matches_reference(&tags, "ex/other:v*"));
        assert!(matches_reference(&tags, "*"), "busybox has no slash");
        assert!(!matches_reference(&["ex/other:v2".to_owned()], "*"));
        assert!(!matches_reference(&tags, "alpine"));
    }
}
