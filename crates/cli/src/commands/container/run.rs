//! `berth run`: create, then either start and print the id (`-d`), or run attached like docker:
//! attach before start, hold the `wait` long-poll (its headers arrive before `start` is sent),
//! stream demultiplexed stdout/stderr, forward stdin (`-i`) and signals, and exit with the
//! container's exit code.

use std::io::Write;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptions, KillContainerOptions, ResizeContainerTTYOptions,
};
use clap::Args;
use futures::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::create::{ContainerFlags, create_from_flags, fail_125};
use crate::client::{Client, raw};
use crate::commands::Exit;
use crate::terminal::terminal_size;

/// Flags of `berth run`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// The `wait` answer: `{"StatusCode": N, "Error": {"Message": ...}}`.
#[derive(Debug, serde::Deserialize, Default)]
struct WaitAnswer {
    #[serde(rename = "StatusCode", default)]
    status_code: i64,
    #[serde(rename = "Error", default)]
    error: Option<WaitError>,
}

#[derive(Debug, serde::Deserialize, Default)]
struct WaitError {
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// The process exit code for a container exit status (the OS keeps the low 8 bits).
pub fn exit_code(status: i64) -> u8 {
    status.rem_euclid(256) as u8
}

/// Which `wait` condition an attached run holds: `removed` with `--rm`, else `next-exit`.
pub fn wait_condition(auto_remove: bool) -> &'static str {
    if auto_remove { "removed" } else { "next-exit" }
}

/// `berth run`.
pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<()> {
    let flags = &args.flags;
    let id = create_from_flags(client, flags, !args.detach, "run").await?;
    if args.detach {
        let started = client.docker.start_container(&id, None).await;
        println!("{id}");
        return started.map_err(|err| fail_125("run", &err.into()));
    }
    run_attached(client, flags, &id).await
}

async fn run_attached(client: &Client, flags: &ContainerFlags, id: &str) -> anyhow::Result<()> {
    let session = Session {
        interactive: flags.interactive,
        tty: flags.tty,
        condition: wait_condition(flags.rm),
        verb: "run",
        fail_code: 125,
    };
    attach_start_wait(client, id, &session).await
}

/// How an attached session runs (`run` or `start -a`).
pub(super) struct Session {
    /// Forward stdin (`-i`).
    pub interactive: bool,
    /// The container has a TTY (raw output, raw terminal with `-i`).
    pub tty: bool,
    /// The `wait` condition to hold.
    pub condition: &'static str,
    /// The verb named in error messages.
    pub verb: &'static str,
    /// Exit code for engine errors (125 for run, 1 for start).
    pub fail_code: u8,
}

impl Session {
    fn fail(&self, err: anyhow::Error) -> anyhow::Error {
        if self.fail_code == 125 {
            fail_125(self.verb, &err)
        } else {
            eprintln!("{}", crate::client::describe_error(&err));
            Exit(self.fail_code).into()
        }
    }
}

/// Attach, hold `wait`, start, stream output until the engine closes the attach connection,
/// then exit with the status code from `wait`.
pub(super) async fn attach_start_wait(
    client: &Client,
    id: &str,
    session: &Session,
) -> anyhow::Result<()> {
    let attach_options = AttachContainerOptions {
        stdin: session.interactive,
        stdout: true,
        stderr: true,
        stream: true,
        ..Default::default()
    };
    let attached = client
        .docker
        .attach_container(id, Some(attach_options))
        .await
        .map_err(|err| session.fail(err.into()))?;
    let wait_path = format!("/containers/{id}/wait?condition={}", session.condition);
    let wait = client
        .raw
        .send(Method::POST, &wait_path, None, raw::empty())
        .await
        .map_err(|err| session.fail(err.into()))?;

    let terminal = if session.tty && session.interactive {
        RawTerminal::enter()
    } else {
        None
    };
    if let Err(err) = client.docker.start_container(id, None).await {
        drop(terminal);
        return Err(session.fail(err.into()));
    }
    let resize_task = session
        .tty
        .then(|| tokio::spawn(follow_terminal_size(client.docker.clone(), id.to_string())));

    let mut input = attached.input;
    let stdin_task = session.interactive.then(|| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            if let Err(err) = tokio::io::copy(&mut stdin, &mut input).await {
                tracing::debug!(%err, "forwarding stdin ended");
            }
            // Half-close: the engine sees EOF on the container's stdin, output keeps flowing.
            let _ = input.shutdown().await;
        })
    });
    let signal_task = (!session.tty)
        .then(|| tokio::spawn(forward_signals(client.docker.clone(), id.to_string())));

    print_output(attached.output, "attach").await;
    if let Some(task) = stdin_task {
        task.abort();
    }
    for task in [signal_task, resize_task].into_iter().flatten() {
        task.abort();
    }
    drop(terminal);

    let body = wait
        .into_body()
        .collect()
        .await
        .map_err(|err| session.fail(raw::RawError::Http(err).into()))?
        .to_bytes();
    let answer: WaitAnswer = match serde_json::from_slice(&body) {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("berth: error waiting for container: {err}");
            return Err(Exit(session.fail_code).into());
        }
    };
    if let Some(message) = answer
        .error
        .and_then(|e| e.message)
        .filter(|m| !m.is_empty())
    {
        eprintln!("berth: error waiting for container: {message}");
        return Err(Exit(session.fail_code).into());
    }
    match exit_code(answer.status_code) {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}

/// Forwards SIGINT/SIGTERM to the container while attached (docker's sig-proxy).
async fn forward_signals(docker: bollard::Docker, id: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        let options = KillContainerOptions {
            signal: name.to_string(),
        };
        if let Err(err) = docker.kill_container(&id, Some(options)).await {
            tracing::debug!(%err, "forwarding {name}");
        }
    }
}

/// Sends the terminal size to the container now and on every SIGWINCH (`-t` on a terminal).
async fn follow_terminal_size(docker: bollard::Docker, id: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut winch = signal(SignalKind::window_change()).ok();
    loop {
        if let Some((rows, cols)) = terminal_size() {
            let options = ResizeContainerTTYOptions {
                h: i32::from(rows),
                w: i32::from(cols),
            };
            if let Err(err) = docker.resize_container_tty(&id, options).await {
                tracing::debug!(%err, "resizing the container's terminal");
            }
        }
        match winch.as_mut() {
            Some(w) => {
                if w.recv().await.is_none() {
                    return;
                }
            }
            None => return,
        }
    }
}

/// Puts the controlling terminal in raw mode for `-it`, restoring it on drop.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copies a multiplexed attach or exec stream (`what` names it in the debug log) to this
/// process's stdout and stderr until it ends.
pub(super) async fn print_output<S>(mut output: S, what: &str)
where
    S: futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdErr { message }) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&message);
                let _ = err.flush();
            }
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&message);
                let _ = out.flush();
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(err) => {
                tracing::debug!(%err, what, "stream ended with an error");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct Wrap {
        #[command(flatten)]
        args: RunArgs,
    }

    #[test]
    fn run_flags_stop_at_the_image() {
        let w =
            Wrap::try_parse_from(["run", "-d", "--rm", "host", "sh", "-c", "echo -n x"]).unwrap();
        assert!(w.args.detach);
        assert!(w.args.flags.rm);
        assert_eq!(w.args.flags.image, "host");
        assert_eq!(w.args.flags.command, vec!["sh", "-c", "echo -n x"]);
        let w = Wrap::try_parse_from(["run", "host", "ls", "-l", "--rm"]).unwrap();
        assert!(!w.args.flags.rm);
        assert_eq!(w.args.flags.command, vec!["ls", "-l", "--rm"]);
    }

    #[test]
    fn exit_codes_and_conditions() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3), 3);
        assert_eq!(exit_code(137), 137);
        assert_eq!(exit_code(256), 0);
        assert_eq!(exit_code(-1), 255);
        assert_eq!(wait_condition(true), "removed");
        assert_eq!(wait_condition(false), "next-exit");
    }

    #[test]
    fn wait_answers() {
        let a: WaitAnswer = serde_json::from_str(r#"{"StatusCode":3,"Error":null}"#).unwrap();
        assert_eq!(a.status_code, 3);
        assert!(a.error.is_none());
        let a: WaitAnswer =
            serde_json::from_str(r#"{"StatusCode":1,"Error":{"Message":"oops"}}"#).unwrap();
        assert_eq!(a.error.unwrap().message.as_deref(), Some("oops"));
        let a: WaitAnswer = serde_json::from_str("{}").unwrap();
        assert_eq!(a.status_code, 0);
    }
}
