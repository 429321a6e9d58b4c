//! `GET /containers/{id}/stats`, engine side: one sample of a container's cgroup counters with
//! the host figures Docker puts next to them (total CPU time, online CPUs, read time).

use chrono::{DateTime, Utc};

use crate::cgroups::{self, CgroupStats};
use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;

/// One reading.
#[derive(Debug, Clone)]
pub struct StatsSample {
    pub id: String,
    pub name: String,
    pub read: DateTime<Utc>,
    /// The container runs (a stopped one reads as all zeros, as Docker's).
    pub running: bool,
    pub cgroup: CgroupStats,
    /// Host CPU time in ns (`/proc/stat`).
    pub system_cpu_usage: u64,
    pub online_cpus: u32,
}

impl Engine {
    /// Reads the container's counters now. Blocking (a few small cgroupfs reads).
    pub fn stats_sample(&self, reference: &str) -> Result<StatsSample, EngineError> {
        let c = self.container(reference)?;
        let st = c.state();
        let running = st.status == Status::Running;
        let cgroup = if running {
            // A container that started without a cgroup (none available) reads as zeros.
            cgroups::stats(self.root(), c.id()).unwrap_or_default()
        } else {
            CgroupStats::default()
        };
        Ok(StatsSample {
            id: c.id().to_owned(),
            name: format!("/{}", c.name()),
            read: Utc::now(),
            running,
            cgroup,
            system_cpu_usage: if running {
                cgroups::system_cpu_usage()
            } else {
                0
            },
            online_cpus: if running {
                crate::limits::online_cpus() as u32
            } else {
                0
            },
        })
    }
}
