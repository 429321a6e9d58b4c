//! `docker top`: the processes of a running container as the host's `ps` shows them. As Docker
//! does, the engine runs `ps` with the client's arguments (default `-ef`), finds the `PID` column
//! in its header and keeps the lines whose pid is in the container's cgroup (`cgroup.procs`) and
//! its pid namespace (which leaves out the runtime's shim). Pids are the host's. `ps` runs without a shell, with a deadline and a bounded output.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;

/// How long `ps` may run.
const PS_DEADLINE: Duration = Duration::from_secs(10);
/// The most `ps` output read (a host with very many processes is cut here: an error).
const PS_MAX_OUTPUT: u64 = 16 << 20;

/// Docker's `ContainerTopResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl Engine {
    /// `ps ps_args` filtered to the container's processes.
    pub async fn top(&self, reference: &str, ps_args: &str) -> Result<Top, EngineError> {
        let c = self.container(reference)?;
        let st = c.state();
        if st.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id()
            )));
        }
        // The cgroup also holds the runtime's shim (pid 1's parent, in the host's pid
        // namespace): only processes in the container's pid namespace are the container's.
        let ns_of = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let container_ns = ns_of(st.pid);
        let mut pids: HashSet<i32> = crate::cgroups::pids(&self.root, c.id())
            .into_iter()
            .filter(|p| container_ns.is_none() || ns_of(*p) == container_ns)
            .collect();
        if pids.is_empty() && st.pid > 0 {
            // Running without a cgroup (no hierarchy was writable): pid 1 at least.
            pids.insert(st.pid);
        }
        let args: Vec<&str> = ps_args.split_whitespace().collect();
        let args = if args.is_empty() { vec!["-ef"] } else { args };
        let output = run_ps(&args).await?;
        parse_ps(&output, &pids)
    }
}

async fn run_ps(args: &[&str]) -> Result<String, EngineError> {
    let mut child = tokio::process::Command::new("ps")
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(EngineError::io("running ps (is procps installed?)"))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(EngineError::Invalid("ps: no output pipes".into()));
    };
    let run = async {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (mut out, mut err) = (out.take(PS_MAX_OUTPUT + 1), err.take(64 << 10));
        let (a, b) = tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
        a.and(b)?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, stdout, stderr))
    };
    let (status, stdout, stderr) = tokio::time::timeout(PS_DEADLINE, run)
        .await
        .map_err(|_| EngineError::Invalid(format!("ps {} did not finish in time", args.join(" "))))?
        .map_err(EngineError::io("reading the output of ps"))?;
    if stdout.len() as u64 > PS_MAX_OUTPUT {
        return Err(EngineError::Invalid(
            "ps printed more than 16 MiB: too many processes to list".into(),
        ));
    }
    if !status.success() {
        // Docker's wording: a bad ps_args is the client's error.
        return Err(EngineError::Invalid(format!(
            "Error running ps: {status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Splits `ps` output into titles and rows, keeping the rows of `pids`. The last column takes
/// the rest of the line (a command line has spaces).
fn parse_ps(output: &str, pids: &HashSet<i32>) -> Result<Top, EngineError> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_col = titles.iter().position(|t| t == "PID").ok_or_else(|| {
        EngineError::Invalid("Couldn't find PID field in ps output (add -o pid)".into())
    })?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i32>() else {
            return Err(EngineError::Invalid(format!(
                "Unexpected pid {:?} in ps output",
                fields[pid_col]
            )));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len() - 1;
        let mut row: Vec<String> = fields[..last].iter().map(|f| (*f).to_owned()).collect();
        row.push(fields[last..].join(" "));
        processes.push(row);
    }
    Ok(Top { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_is_filtered_and_the_command_kept_whole() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 10:00 ? 00:00:01 /sbin/init splash\n\
                   root 4242 4200 0 10:01 ? 00:00:00 sleep 60\n";
        let top = parse_ps(out, &HashSet::from([4242])).unwrap();
        assert_eq!(top.titles.len(), 8);
        assert_eq!(top.processes.len(), 1);
        assert_eq!(top.processes[0][1], "4242");
        assert_eq!(top.processes[0][7], "sleep 60");
        assert!(parse_ps("USER CMD\nroot x\n", &HashSet::new()).is_err());
    }
}
