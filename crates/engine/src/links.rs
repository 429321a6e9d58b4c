//! Legacy links (`HostConfig.Links`, `docker run --link name:alias`) on the default bridge
//! network, as Docker keeps them:
//!
//! - at create each `name[:alias]` must name an existing container (the alias defaults to the
//!   name); the link is kept by the linked container's id, so a rename does not break it, and
//!   inspect shows it as `/child:/parent/alias`;
//! - at start every linked container must be running, and the process gets, per link with
//!   `ALIAS` the alias upper-cased with `-` as `_`: `ALIAS_NAME=/parent/alias` and
//!   `ALIAS_ENV_<K>=<V>` for each variable of the linked container's config but `HOME` and
//!   `PATH` (the container's own variables win over these); execs and health probes get them
//!   too;
//! - `DELETE /containers/parent/alias?link=1` removes one link.
//!
//! Not here: the `ALIAS_PORT_*` variables (Berth keeps no exposed ports) and the `/etc/hosts`
//! entries (Berth does not write the container's `/etc/hosts`). On a user-defined network
//! Docker resolves links through its DNS instead of variables; Berth keeps them but adds no
//! variables there, as Docker.

use serde::{Deserialize, Serialize};

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;

/// One link: the linked container (by id) and the name it has inside this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub container: String,
    pub alias: String,
}

/// Splits `name[:alias]` (a leading `/` on either side is dropped).
fn parse(spec: &str) -> Result<(String, String), EngineError> {
    let (name, alias) = match spec.split_once(':') {
        Some((n, a)) => (n, a),
        None => (spec, spec),
    };
    let name = name.trim_start_matches('/');
    // Docker's own form is `/child:/parent/alias`: the alias is the last path element.
    let alias = alias.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || alias.is_empty() {
        return Err(EngineError::Invalid(format!(
            "invalid link {spec:?}: use NAME[:ALIAS]"
        )));
    }
    Ok((name.to_owned(), alias.to_owned()))
}

/// Whether a network mode is Docker's default bridge, where links give variables.
fn is_default_bridge(mode: &str) -> bool {
    matches!(mode, "" | "default" | "bridge")
}

/// The variable prefix of an alias.
fn env_prefix(alias: &str) -> String {
    alias.to_uppercase().replace('-', "_")
}

impl Engine {
    /// Resolves `HostConfig.Links` at create.
    pub(crate) fn resolve_links(
        &self,
        specs: &[String],
        network_mode: &str,
    ) -> Result<Vec<Link>, EngineError> {
        if !specs.is_empty() && network_mode == "host" {
            return Err(EngineError::Invalid(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
            ));
        }
        let mut links: Vec<Link> = Vec::new();
        for spec in specs {
            let (name, alias) = parse(spec)?;
            let child = self.container(&name).map_err(|e| match e {
                EngineError::NoSuchContainer(_) => EngineError::Invalid(format!(
                    "could not get container for {name}: No such container: {name}"
                )),
                other => other,
            })?;
            if links.iter().any(|l| l.alias == alias) {
                return Err(EngineError::Invalid(format!(
                    "invalid links: alias {alias:?} is given twice"
                )));
            }
            links.push(Link {
                container: child.id().to_owned(),
                alias,
            });
        }
        Ok(links)
    }

    /// The variables the links of `c` give its processes (empty off the default bridge).
    /// Every linked container must be running.
    pub(crate) fn link_env(&self, c: &Container) -> Result<Vec<String>, EngineError> {
        let links = c.state().links;
        if links.is_empty() || !is_default_bridge(&c.config.spec.network_mode) {
            return Ok(Vec::new());
        }
        let mut env = Vec::new();
        for link in links {
            let full = format!("/{}/{}", c.name(), link.alias);
            let child = self
                .container(&link.container)
                .ok()
                .filter(|child| child.state().status == Status::Running)
                .ok_or_else(|| {
                    EngineError::Conflict(format!(
                        "Cannot link to a non running container: {} AS {full}",
                        self.container(&link.container)
                            .map(|ch| format!("/{}", ch.name()))
                            .unwrap_or_else(|_| link.container.clone())
                    ))
                })?;
            let prefix = env_prefix(&link.alias);
            env.push(format!("{prefix}_NAME={full}"));
            for kv in &child.config.spec.env {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                if k != "HOME" && k != "PATH" {
                    env.push(format!("{prefix}_ENV_{k}={v}"));
                }
            }
        }
        Ok(env)
    }

    /// `HostConfig.Links` as Docker shows them: `/child:/parent/alias`.
    pub fn link_names(&self, parent: &str, links: &[Link]) -> Vec<String> {
        links
            .iter()
            .map(|l| {
                let child = self
                    .container(&l.container)
                    .map(|ch| ch.name())
                    .unwrap_or_else(|_| l.container.clone());
                format!("/{child}:/{parent}/{}", l.alias)
            })
            .collect()
    }

    /// `DELETE /containers/{parent}/{alias}?link=1`: removes the link `alias` of `parent`.
    pub fn remove_link(&self, parent: &str, alias: &str) -> Result<(), EngineError> {
        let c = self.container(parent)?;
        if !c.state().links.iter().any(|l| l.alias == alias) {
            return Err(EngineError::NotFound(format!(
                "No such link: /{}/{alias}",
                c.name()
            )));
        }
        c.update(|st| st.links.retain(|l| l.alias != alias))?;
        Ok(())
    }
}

/// `env` with `add` in front, each of `env`'s variables replacing one of `add`'s of the same
/// name (the container's own settings win over link variables).
pub(crate) fn merge_env(add: Vec<String>, env: &[String]) -> Vec<String> {
    if add.is_empty() {
        return env.to_vec();
    }
    let key = |kv: &str| kv.split('=').next().unwrap_or_default().to_owned();
    let own: std::collections::HashSet<String> = env.iter().map(|kv| key(kv)).collect();
    add.into_iter()
        .filter(|kv| !own.contains(&key(kv)))
        .chain(env.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs() {
        assert_eq!(parse("db:data").unwrap(), ("db".into(), "data".into()));
        assert_eq!(parse("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(
            parse("/db:/web/data").unwrap(),
            ("db".into(), "data".into())
        );
        assert!(parse(":x").is_err());
        assert_eq!(env_prefix("my-link1"), "MY_LINK1");
    }

    #[test]
    fn own_variables_win() {
        let merged = merge_env(
            vec!["DB_NAME=/web/db".into(), "X=link".into()],
            &["X=own".into()],
        );
        assert_eq!(merged, ["DB_NAME=/web/db", "X=own"]);
    }
}
