//! `HostConfig.VolumesFrom` (`--volumes-from NAME[:ro|rw]`): at create, the new container gets
//! the other container's volumes and bind mounts at the same targets, read-only when `ro` is
//! asked, read-write when `rw` is, otherwise as the other container has them. A target the new
//! container mounts something else on keeps its own mount, as in Docker.

use crate::container::MountSpec;
use crate::engine::Engine;
use crate::error::EngineError;

impl Engine {
    /// The mounts `specs` bring to a container whose own mounts are `own`. An unknown container
    /// is a 404 (`No such container`), an unknown mode a 400.
    pub(crate) fn volumes_from(
        &self,
        specs: &[String],
        own: &[MountSpec],
    ) -> Result<Vec<MountSpec>, EngineError> {
        let mut out: Vec<MountSpec> = Vec::new();
        for spec in specs {
            let (name, read_only) = parse(spec)?;
            let from = self.container(name)?;
            for m in &from.config.spec.mounts {
                let taken = own
                    .iter()
                    .chain(&out)
                    .any(|o| o.destination == m.destination);
                if taken {
                    continue;
                }
                let mut m = m.clone();
                // Shared, not this container's own: `rm -v` of either leaves it.
                m.anonymous = false;
                if let Some(ro) = read_only {
                    m.read_only = ro;
                    m.mode = if ro { "ro" } else { "rw" }.to_owned();
                }
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// `NAME[:ro|rw]` → the name and the asked access (`None`: the other container's).
fn parse(spec: &str) -> Result<(&str, Option<bool>), EngineError> {
    let (name, mode) = match spec.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(EngineError::Invalid(format!(
            "invalid VolumesFrom entry {spec:?}: expected CONTAINER[:ro|rw]"
        )));
    }
    let read_only = match mode {
        None => None,
        Some("ro") => Some(true),
        Some("rw") => Some(false),
        Some(other) => {
            return Err(EngineError::Invalid(format!(
                "invalid mode for volumes-from: {other}"
            )));
        }
    };
    Ok((name, read_only))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn entries_parse_with_their_mode() {
        assert_eq!(parse("a").unwrap(), ("a", None));
        assert_eq!(parse("a:ro").unwrap(), ("a", Some(true)));
        assert_eq!(parse("a:rw").unwrap(), ("a", Some(false)));
        assert!(parse("a:xx").unwrap_err().to_string().contains("xx"));
        assert!(parse(":ro").is_err());
    }
}
