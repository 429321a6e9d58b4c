//! Legacy links (`HostConfig.Links`, `docker run --link name:alias`) on the default bridge
//! network, as Docker keeps them:
//!
//! - at create each `name[:alias]` must name an existing container (the alias defaults to the
//!   name); the link is kept by the linked container's id, so a rename does not break it, and
//!   inspect shows it as `/child:/parent/alias`;
//! - at start every linked container must be running, and the process gets, per link with
//!   `ALIAS` the alias upper-cased with `-` as `_`: `ALIAS_PORT*` for the linked container's
//!   exposed ports at its bridge address ([`port_env`]), `ALIAS_NAME=/parent/alias` and
//!   `ALIAS_ENV_<K>=<V>` for each variable of the linked container's config but `HOME` and
//!   `PATH` (the container's own variables win over these); execs and health probes get them
//!   too;
//! - its `/etc/hosts` gets `<bridge address>\t<alias> <hostname> [<name>]` per link (the name
//!   only when it is not the alias), after the fixed names and before its own line (`etc.rs`);
//! - `DELETE /containers/parent/alias?link=1` removes one link.
//!
//! The formats were compared with Docker 20.10.24 (`docker run --link` with `--expose`, `-p`
//! and `-e`). Not here: Docker rewrites a running container's `/etc/hosts` when a container
//! it links to restarts with a new address; Berth writes it at each start only. On a
//! user-defined network Docker resolves links through its DNS instead of variables; Berth
//! keeps them but adds no variables or hosts lines there, as Docker.

use std::net::Ipv4Addr;

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

/// The default bridge network's name.
const DEFAULT_BRIDGE: &str = "bridge";

/// A running linked container, as one container's link names it.
struct Linked {
    alias: String,
    /// `/parent/alias`.
    full: String,
    child: std::sync::Arc<Container>,
    /// Its address on the default bridge.
    address: Option<Ipv4Addr>,
}

/// `ALIAS_PORT*` for the linked container's exposed `ports` (`80/tcp`) at `ip`, as Docker 20.10
/// gives them: `ALIAS_PORT` names the lowest port (tcp first); the last run of consecutive
/// port numbers, when longer than one, gets `_START`/`_PORT_START` and `_END`/`_PORT_END`; and
/// every port `ALIAS_PORT_<port>_<PROTO>` with `_ADDR`, `_PORT` and `_PROTO`.
fn port_env(prefix: &str, ip: Ipv4Addr, ports: &[String]) -> Vec<String> {
    let mut ports: Vec<(u16, String)> = ports
        .iter()
        .filter_map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            Some((port.parse().ok()?, proto.to_ascii_lowercase()))
        })
        .collect();
    ports.sort_by_key(|(port, proto)| (*port, proto != "tcp", proto.clone()));
    ports.dedup();
    let mut env = Vec::new();
    let Some((first, first_proto)) = ports.first() else {
        return env;
    };
    env.push(format!("{prefix}_PORT={first_proto}://{ip}:{first}"));
    // Docker keeps only the last run of consecutive port numbers (whatever their protocols),
    // and names its end by the first port with the last port's protocol.
    let mut start = 0;
    for i in 1..ports.len() {
        if u32::from(ports[i].0) != u32::from(ports[i - 1].0) + 1 {
            start = i;
        }
    }
    if let (Some((sp, sproto)), Some((ep, eproto))) = (ports.get(start), ports.last())
        && start + 1 < ports.len()
    {
        let head = format!("{prefix}_PORT_{sp}_{}", sproto.to_uppercase());
        env.push(format!("{head}_START={sproto}://{ip}:{sp}"));
        env.push(format!("{head}_PORT_START={sp}"));
        let head = format!("{prefix}_PORT_{sp}_{}", eproto.to_uppercase());
        env.push(format!("{head}_END={eproto}://{ip}:{ep}"));
        env.push(format!("{head}_PORT_END={ep}"));
    }
    for (port, proto) in &ports {
        let head = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
        env.push(format!("{head}={proto}://{ip}:{port}"));
        env.push(format!("{head}_ADDR={ip}"));
        env.push(format!("{head}_PORT={port}"));
        env.push(format!("{head}_PROTO={proto}"));
    }
    env
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

    /// The running containers the links of `c` name (empty off the default bridge), with their
    /// address on the bridge. Every linked container must be running.
    fn linked(&self, c: &Container) -> Result<Vec<Linked>, EngineError> {
        let links = c.state().links;
        if links.is_empty() || !is_default_bridge(&c.config.spec.network_mode) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
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
            let address = self
                .networks
                .container_networks(child.id())
                .into_iter()
                .find(|(n, _)| n.name == DEFAULT_BRIDGE)
                .and_then(|(_, m)| m.endpoint.map(|e| e.address));
            out.push(Linked {
                alias: link.alias,
                full,
                child,
                address,
            });
        }
        Ok(out)
    }

    /// The variables the links of `c` give its processes (empty off the default bridge).
    /// Every linked container must be running.
    pub(crate) fn link_env(&self, c: &Container) -> Result<Vec<String>, EngineError> {
        let mut env = Vec::new();
        for l in self.linked(c)? {
            let prefix = env_prefix(&l.alias);
            if let Some(ip) = l.address {
                env.extend(port_env(&prefix, ip, &l.child.config.spec.exposed_ports));
            }
            env.push(format!("{prefix}_NAME={}", l.full));
            for kv in &l.child.config.spec.env {
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

    /// The `/etc/hosts` lines the links of `c` add, as Docker writes them: the linked
    /// container's bridge address, then the alias, its hostname and (when the alias is not
    /// it) its name. Linked containers with no bridge address add none.
    pub(crate) fn link_hosts(&self, c: &Container) -> Result<Vec<String>, EngineError> {
        Ok(self
            .linked(c)?
            .into_iter()
            .filter_map(|l| {
                let ip = l.address?;
                let mut names = format!("{} {}", l.alias, l.child.config.spec.hostname);
                let name = l.child.name();
                if l.alias != name {
                    names = format!("{names} {name}");
                }
                Some(format!("{ip}\t{names}"))
            })
            .collect())
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

    /// The cases compared with Docker 20.10 (`docker run --link` with `--expose`).
    #[test]
    fn port_variables_as_docker_gives_them() {
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        let ports = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let env = port_env(
            "DATA",
            ip,
            &ports(&["5432/tcp", "5433/tcp", "5434/udp", "80/tcp"]),
        );
        assert_eq!(env[0], "DATA_PORT=tcp://172.17.0.2:80");
        for want in [
            "DATA_PORT_5432_TCP_START=tcp://172.17.0.2:5432",
            "DATA_PORT_5432_TCP_PORT_START=5432",
            "DATA_PORT_5432_UDP_END=udp://172.17.0.2:5434",
            "DATA_PORT_5432_UDP_PORT_END=5434",
            "DATA_PORT_5434_UDP=udp://172.17.0.2:5434",
            "DATA_PORT_5434_UDP_ADDR=172.17.0.2",
            "DATA_PORT_5434_UDP_PORT=5434",
            "DATA_PORT_5434_UDP_PROTO=udp",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} missing: {env:?}");
        }
        // 4 ports x 4 variables, the default and the last run's 4.
        assert_eq!(env.len(), 21, "{env:?}");
        // Earlier runs and a last run of one port give no range variables.
        let env = port_env(
            "X",
            ip,
            &ports(&["80", "81/tcp", "90/udp", "91/udp", "100/udp", "100/tcp"]),
        );
        assert_eq!(env[0], "X_PORT=tcp://172.17.0.2:80");
        assert!(!env.iter().any(|e| e.contains("START") || e.contains("END")));
        assert_eq!(env.len(), 1 + 6 * 4);
        assert!(port_env("X", ip, &[]).is_empty());
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
