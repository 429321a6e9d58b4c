//! `GET /exec/{id}/json`. Docker sends `"ExitCode": null` while the process runs; bollard's
//! `ExecInspectResponse` would drop the key, so the body is this struct (its `ProcessConfig` is
//! bollard's).

use bollard_stubs::models::ProcessConfig;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub process_config: ProcessConfig,
    pub open_stdin: bool,
    pub open_stderr: bool,
    pub open_stdout: bool,
    pub can_remove: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub detach_keys: String,
    pub pid: i64,
}
