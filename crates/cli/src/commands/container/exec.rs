//! `berth exec [-i] [-t] [-d] [--privileged] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD...`: runs
//! a command in a running container through the exec API, streams its stdout/stderr (the raw
//! terminal with `-t`), forwards stdin (`-i`) and exits with the command's exit code.

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use clap::Args;
use tokio::io::AsyncWriteExt;

use crate::client::{Client, describe_error};
use crate::commands::Exit;

/// Flags of `berth exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and forward it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Give the command every capability.
    #[arg(long)]
    pub privileged: bool,
    /// Run the command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Environment variables (`KEY=VALUE`).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User (`name|uid[:group|gid]`).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// The container.
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Exit code when the exec could not be created or started (as `docker exec`).
const FAIL_CODE: u8 = 126;

pub async fn exec(client: &Client, args: ExecArgs) -> anyhow::Result<()> {
    let fail = |err: bollard::errors::Error| -> anyhow::Error {
        eprintln!("{}", describe_error(&err.into()));
        Exit(FAIL_CODE).into()
    };
    let config = ExecConfig {
        attach_stdin: Some(args.interactive && !args.detach),
        attach_stdout: Some(!args.detach),
        attach_stderr: Some(!args.detach),
        tty: Some(args.tty),
        privileged: Some(args.privileged),
        env: (!args.env.is_empty()).then(|| args.env.clone()),
        cmd: Some(args.command.clone()),
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
        ..Default::default()
    };
    let created = client
        .docker
        .create_exec(&args.container, config)
        .await
        .map_err(fail)?;
    let options = StartExecOptions {
        detach: args.detach,
        tty: args.tty,
        output_capacity: None,
    };
    let started = client
        .docker
        .start_exec(&created.id, Some(options))
        .await
        .map_err(fail)?;
    let StartExecResults::Attached { output, input } = started else {
        return Ok(());
    };
    let mut input = input;
    let stdin_task = args.interactive.then(|| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            if let Err(err) = tokio::io::copy(&mut stdin, &mut input).await {
                tracing::debug!(%err, "forwarding stdin ended");
            }
            let _ = input.shutdown().await;
        })
    });
    super::run::print_output(output, "exec").await;
    if let Some(task) = stdin_task {
        task.abort();
    }
    let info = client
        .docker
        .inspect_exec(&created.id)
        .await
        .map_err(fail)?;
    match info.exit_code {
        Some(0) => Ok(()),
        Some(code) => Err(Exit(u8::try_from(code).unwrap_or(FAIL_CODE)).into()),
        None => Err(Exit(FAIL_CODE).into()),
    }
}
