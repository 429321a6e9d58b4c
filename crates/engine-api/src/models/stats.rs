//! `GET /containers/{id}/stats`: Docker's `types.StatsJSON` (snake_case keys, as Docker sends
//! them). Docker omits the readings a stopped container has not got, hence the skipped `None`s.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Serialize, Default)]
pub struct CpuUsage {
    pub total_usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percpu_usage: Option<Vec<u64>>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Serialize, Default)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Serialize, Default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_cpu_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_cpus: Option<u32>,
    pub throttling_data: Throttling,
}

#[derive(Debug, Serialize, Default)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failcnt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Default)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Default)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<()>>,
    pub io_serviced_recursive: Option<Vec<()>>,
    pub io_queue_recursive: Option<Vec<()>>,
    pub io_service_time_recursive: Option<Vec<()>>,
    pub io_wait_time_recursive: Option<Vec<()>>,
    pub io_merged_recursive: Option<Vec<()>>,
    pub io_time_recursive: Option<Vec<()>>,
    pub sectors_recursive: Option<Vec<()>>,
}

/// Docker's `types.StatsJSON`.
#[derive(Debug, Serialize)]
pub struct StatsJson {
    pub read: String,
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: BTreeMap<String, u64>,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub name: String,
    pub id: String,
}
