//! `cargo xtask test`: the README's test command. Installs what the tests need when it is
//! missing (`busybox-static` for a tiny test image, `iproute2` and `docker-compose` 1.29 from
//! Debian, the Python `docker` package for the docker-py tests), builds every workspace binary (the end-to-end tests drive
//! `target/<profile>/berth` and the example plugins and never build them themselves), then runs
//! `cargo test --workspace --no-fail-fast` with any extra arguments passed after `--`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Opts {
    /// Skip installing missing prerequisites (apt-get, pip).
    #[arg(long)]
    no_install: bool,
    /// Arguments passed on to `cargo test` (after `--`), e.g. `-p berth-tests --test volumes`.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs the task.
pub fn run(opts: Opts) -> Result<()> {
    if !opts.no_install {
        prerequisites()?;
    }
    let root = workspace_root();
    cargo(&root, &["build", "--workspace", "--bins"], &[])?;
    let mut args = vec!["test", "--workspace", "--no-fail-fast"];
    if !opts.cargo_args.is_empty() {
        // `-p`/`--test` filters replace the whole-workspace run.
        args.retain(|a| *a != "--workspace");
    }
    cargo(&root, &args, &opts.cargo_args)
}

/// Installs the system packages and the Python SDK when they are missing (idempotent).
fn prerequisites() -> Result<()> {
    let busybox = Path::new("/bin/busybox").exists();
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let compose = Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !busybox || !ip || !compose {
        println!("==== installing busybox-static, iproute2 and docker-compose (apt-get) ====");
        run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
        run_checked(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "busybox-static",
                    "iproute2",
                    "docker-compose",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if !python_has_docker() {
        println!("==== installing the Python docker SDK (pip) ====");
        let plain = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "docker"])
            .status()
            .is_ok_and(|s| s.success());
        if !plain {
            // Debian's externally managed Python refuses a plain install.
            run_checked(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--break-system-packages",
                "docker",
            ]))?;
        }
        if !python_has_docker() {
            bail!("`import docker` still fails after pip install docker");
        }
    }
    if Command::new("docker")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("warning: the docker CLI is not installed; the docker_cli tests will fail");
    }
    Ok(())
}

fn python_has_docker() -> bool {
    Command::new("python3")
        .args(["-c", "import docker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("{line} failed: {status} (the tests need root to install their prerequisites)");
    }
    Ok(())
}

fn cargo(root: &Path, args: &[&str], extra: &[String]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let line = format!("cargo {} {}", args.join(" "), extra.join(" "));
    println!("==== {} ====", line.trim_end());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(args)
        .args(extra)
        .status()
        .with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("{} failed: {status}", line.trim_end());
    }
    Ok(())
}
