//! `docker update`: new resource limits and restart policy for an existing container. The
//! changes are written into the live cgroup of a running container and kept in its state
//! (`state.json`, [`Updated`]); from then on they replace the create-time settings everywhere:
//! inspect, the cgroup of later starts and the restart decision at exit.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::container::{ContainerConfig, ContainerState, RestartPolicy, Status};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::Container;
use crate::limits::Resources;

/// The settings `docker update` changed, complete (not a difference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updated {
    pub resources: Resources,
    pub restart_policy: RestartPolicy,
}

/// What a client asks to change; `None` (and, as in Docker, 0 for a limit) leaves a setting as
/// it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub restart_policy: Option<RestartPolicy>,
}

/// The restart policy in force: the updated one, else the create-time one.
pub(crate) fn restart_policy<'a>(
    config: &'a ContainerConfig,
    state: &'a ContainerState,
) -> &'a RestartPolicy {
    state
        .updated
        .as_ref()
        .map_or(&config.spec.restart_policy, |u| &u.restart_policy)
}

impl Container {
    /// The resource limits in force (updated or create-time).
    pub fn resources(&self) -> Resources {
        self.state()
            .updated
            .map_or_else(|| self.config.spec.resources.clone(), |u| u.resources)
    }

    /// The restart policy in force (updated or create-time).
    pub fn restart_policy(&self) -> RestartPolicy {
        restart_policy(&self.config, &self.state()).clone()
    }
}

/// `req` applied over `current` (Docker's rule: a limit given as 0 is "not given").
fn merge(current: Resources, req: &UpdateRequest) -> Resources {
    let pick = |new: Option<i64>, old: i64| new.filter(|v| *v != 0).unwrap_or(old);
    let mut r = current;
    r.memory = pick(req.memory, r.memory);
    r.memory_swap = pick(req.memory_swap, r.memory_swap);
    r.cpu_shares = pick(req.cpu_shares, r.cpu_shares);
    r.pids_limit = pick(req.pids_limit, r.pids_limit);
    // As in Docker, an empty list is "not given" (a set cannot be cleared by update).
    for (new, old) in [
        (&req.cpuset_cpus, &mut r.cpuset_cpus),
        (&req.cpuset_mems, &mut r.cpuset_mems),
    ] {
        if let Some(list) = new.as_ref().filter(|l| !l.is_empty()) {
            old.clone_from(list);
        }
    }
    // --cpus and --cpu-quota/--cpu-period exclude each other: a new one replaces the other.
    if req.nano_cpus.is_some_and(|v| v != 0) {
        r.nano_cpus = pick(req.nano_cpus, r.nano_cpus);
        r.cpu_quota = 0;
        r.cpu_period = 0;
    }
    if req.cpu_quota.is_some_and(|v| v != 0) || req.cpu_period.is_some_and(|v| v != 0) {
        r.cpu_quota = pick(req.cpu_quota, r.cpu_quota);
        r.cpu_period = pick(req.cpu_period, r.cpu_period);
        r.nano_cpus = 0;
    }
    r
}

impl Engine {
    /// Changes a container's limits and restart policy; returns Docker's `Warnings`.
    pub async fn update(
        self: &Arc<Self>,
        reference: &str,
        req: UpdateRequest,
    ) -> Result<Vec<String>, EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let st = c.state();
        let policy = req
            .restart_policy
            .clone()
            .unwrap_or_else(|| restart_policy(&c.config, &st).clone());
        if c.config.spec.auto_remove && policy != RestartPolicy::No {
            return Err(EngineError::Invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        let current = c.resources();
        let resources = merge(current.clone(), &req);
        resources.validate()?;
        if st.status == Status::Running && resources != current {
            let (root, id, res) = (self.root.clone(), c.id().to_owned(), resources.clone());
            tokio::task::spawn_blocking(move || crate::cgroups::set_limits(&root, &id, &res))
                .await
                .map_err(|e| EngineError::Io {
                    context: "updating the container's cgroup".into(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|e| {
                    EngineError::Invalid(format!("Cannot update container {}: {e}", c.id()))
                })?;
        }
        c.update(|st| {
            st.updated = Some(Updated {
                resources,
                restart_policy: policy,
            })
        })?;
        self.events
            .publish("container", "update", c.id(), c.attributes());
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_unchanged_and_cpu_forms_replace_each_other() {
        let cur = Resources {
            memory: 400 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        };
        let r = merge(
            cur,
            &UpdateRequest {
                memory: Some(0),
                nano_cpus: Some(1_000_000_000),
                ..Default::default()
            },
        );
        assert_eq!(r.memory, 400 << 20);
        assert_eq!(
            (r.nano_cpus, r.cpu_quota, r.cpu_period),
            (1_000_000_000, 0, 0)
        );
        let r = merge(
            r,
            &UpdateRequest {
                memory: Some(300 << 20),
                cpu_shares: Some(3),
                ..Default::default()
            },
        );
        assert_eq!((r.memory, r.cpu_shares), (300 << 20, 3));
    }
}
