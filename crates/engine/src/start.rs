//! `start`: resolves the mounts, attaches the network, spawns the process through the runtime
//! and wires its stdio, logs and exit watcher.

use std::path::PathBuf;
use std::sync::Arc;

use berth_state::rollback::Rollback;
use chrono::Utc;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use berth_networks::Attachment;

use crate::cgroups::CgroupError;
use crate::container::{ResolvedMount, Status};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::{Container, lock};
use crate::logs::{self, OutputChunk, StreamKind};
use crate::runtime::{BindMount, NetMode, RunSpec, Spawned};

impl Engine {
    /// Starts a container (`304`-class error when it already runs).
    pub async fn start(self: &Arc<Self>, reference: &str) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let result = self.start_locked(&c, false).await;
        if result.is_err() && c.config.spec.auto_remove && c.state().status != Status::Running {
            // `docker run --rm` waits for `removed` even when start failed.
            if let Err(e) = self.remove_locked(&c, true, true).await {
                tracing::warn!(id = c.id(), error = %e, "auto-remove after a failed start");
            }
        }
        result
    }

    /// Boxed: start → exit → policy restart → start is a cycle of futures.
    pub(crate) fn start_locked<'a>(
        self: &'a Arc<Self>,
        c: &'a Arc<Container>,
        by_policy: bool,
    ) -> futures::future::BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.start_inner(c, by_policy))
    }

    pub(crate) async fn start_inner(
        self: &Arc<Self>,
        c: &Arc<Container>,
        by_policy: bool,
    ) -> Result<(), EngineError> {
        let status = c.state().status;
        match status {
            Status::Running => {
                return Err(EngineError::NotModified("container already started".into()));
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {} is being removed",
                    c.name()
                )));
            }
            _ => {}
        }
        // Each step that succeeds records its undo; a failing step unwinds them newest first
        // (network detach, then the mounts: driver `Unmount`s and the volume hooks' `stop`).
        let mut undo = Rollback::new("start");
        // The image and the mounts (the volume plugins' `start` hooks; prepare_run gives back its
        // own partial work).
        let (mut spec, resolved) = match self.prepare_run(c).await {
            Ok(prepared) => prepared,
            Err(e) => return Err(not_started(c, e.to_string(), e)),
        };
        let held = resolved.clone();
        undo.push("resolve the mounts", move || async move {
            self.release_mounts(&c.config, &held).await;
        });
        let attached = self
            .networks
            .attach(c.id(), &c.config.spec.network_mode)
            .await;
        if let Err(e) = undo.check(attached).await {
            return Err(not_started(c, format!("network setup: {e}"), e.into()));
        }
        undo.push("attach the network", move || async move {
            self.networks.detach(c.id()).await;
        });
        let published = self.publish_ports(c).await;
        if let Err(e) = undo.check(published).await {
            return Err(not_started(c, e.to_string(), e));
        }
        undo.push("publish the ports", move || async move {
            self.unpublish_ports(c.id()).await;
        });
        let etc = self.etc_files(c, &spec);
        match undo.check(etc).await {
            Ok(binds) => spec.mounts.extend(binds),
            Err(e) => return Err(not_started(c, e.to_string(), e)),
        }
        let spawned = self.runtime.spawn(spec).await;
        let Spawned { pid1, io, exit } = match undo.check(spawned).await {
            Ok(s) => s,
            Err(e) => {
                // Not half-started: the network and the mounts were given back.
                let msg = e.to_string();
                c.update(|st| {
                    st.error = msg;
                    st.exit_code = 127;
                    if st.status != Status::Created {
                        st.status = Status::Exited;
                        st.finished_at = Some(Utc::now());
                    }
                })?;
                return Err(e.into());
            }
        };
        undo.commit();
        c.update(|st| {
            st.status = Status::Running;
            st.pid = pid1;
            // A fresh process is never frozen (a record left paused by a killed engine).
            st.paused = false;
            st.exit_code = 0;
            st.error.clear();
            st.started_at = Some(Utc::now());
            st.mounts = resolved;
            if !by_policy {
                st.manually_stopped = false;
                st.restart_count = 0;
            }
        })?;
        *lock(&c.pty) = io.pty;
        if let Some(mut writer) = io.stdin {
            let rx = c.stdin().rx.take();
            if let Some(mut rx) = rx {
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if writer.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = writer.shutdown().await;
                });
            }
        }
        let (log_tx, mut log_rx) = mpsc::channel(256);
        let writer = if c.config.spec.log_config.keeps_logs() {
            tokio::spawn(logs::write_log(
                logs::log_path(&c.dir, c.id()),
                log_rx,
                c.log_seq.clone(),
            ))
        } else {
            // Log driver `none`: output still reaches attached clients, nothing is kept.
            tokio::spawn(async move { while log_rx.recv().await.is_some() {} })
        };
        let mut pumps = vec![tokio::spawn(logs::pump(
            StreamKind::Stdout,
            io.stdout,
            log_tx.clone(),
            c.output.clone(),
        ))];
        if let Some(stderr) = io.stderr {
            pumps.push(tokio::spawn(logs::pump(
                StreamKind::Stderr,
                stderr,
                log_tx.clone(),
                c.output.clone(),
            )));
        }
        drop(log_tx);
        self.events
            .publish("container", "start", c.id(), c.attributes());
        self.start_health_monitor(c);
        let engine = self.clone();
        let container = c.clone();
        tokio::spawn(async move {
            let code = exit.await;
            for p in pumps {
                let _ = p.await;
            }
            let _ = writer.await;
            let _ = container.output.send(OutputChunk::Eof);
            engine.on_exit(&container, code).await;
        });
        Ok(())
    }

    /// Writes the container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (after the
    /// network is attached: they hold its addresses) and gives their bind mounts.
    fn etc_files(&self, c: &Container, spec: &RunSpec) -> Result<Vec<BindMount>, EngineError> {
        let addresses: Vec<_> = self
            .networks
            .container_networks(c.id())
            .into_iter()
            .filter_map(|(_, m)| m.endpoint.map(|e| e.address))
            .collect();
        let links = self.link_hosts(c)?;
        let net = crate::etc::NetView {
            mode: &spec.net,
            addresses: &addresses,
            embedded_dns: self.networks.wants_resolver(c.id()),
            links: &links,
        };
        let taken: Vec<String> = spec.mounts.iter().map(|m| m.target.clone()).collect();
        crate::etc::prepare(
            &c.dir,
            &spec.hostname,
            &net,
            &crate::etc::HostFiles::system(),
            &taken,
        )
        .map_err(|source| EngineError::Io {
            context: "writing the container's /etc files".into(),
            source,
        })
    }

    /// Removes the cgroup a start made before it failed (blocking work off the workers; best
    /// effort: `rm` removes it again).
    async fn drop_cgroup(&self, id: &str) {
        let runtime = self.runtime.clone();
        let (root, id) = (self.root.clone(), id.to_owned());
        let removed = tokio::task::spawn_blocking(move || runtime.remove_cgroup(&root, &id)).await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(error = %e, "removing the cgroup of a container that did not start");
        }
    }

    pub(crate) async fn prepare_run(
        &self,
        c: &Container,
    ) -> Result<(RunSpec, Vec<ResolvedMount>), EngineError> {
        let image = self.images.get(&c.config.image_id)?;
        // The container's own device rules (`--device`, `--device-cgroup-rule`), checked again
        // now: the host node may have gone since create.
        let (_, device_rules) =
            crate::devices::resolve_all(&c.config.spec.security).map_err(EngineError::Invalid)?;
        let env = crate::links::merge_env(self.link_env(c)?, &c.config.spec.env);
        let net = match self
            .networks
            .for_mode(&c.config.spec.network_mode)?
            .attachment
        {
            Attachment::Host => NetMode::Host,
            Attachment::Isolated => NetMode::Isolated,
            Attachment::Driver => NetMode::Join(self.networks.netns_path(c.id())),
        };
        // The container's cgroup (blocking mkdirs in every hierarchy), its bundle's directories
        // and, for an isolated network, its network namespace are made while the volume
        // drivers' `Mount`s are under way: none needs the others, and a slow `Mount` then hides
        // that work instead of adding to it (the README's bench (a): 32 containers that start
        // at once all wait on their `Mount`s together).
        let cgroup = {
            let runtime = self.runtime.clone();
            let (root, id, bundle) = (self.root.clone(), c.id().to_owned(), c.dir.clone());
            let (res, privileged) = (c.resources(), c.config.spec.security.privileged);
            let early_net = net.clone();
            tokio::task::spawn_blocking(move || {
                let procs = runtime.create_cgroup(&root, &id, &res, privileged, &device_rules)?;
                // Best effort: `spawn` does all of it itself when this could not.
                let _ = runtime.prepare_bundle(&bundle, &early_net);
                Ok::<_, CgroupError>(procs)
            })
        };
        let mut warnings = Vec::new(); // a start has nowhere to show them
        let (cgroup, resolved) =
            tokio::join!(cgroup, self.resolve_mounts(&c.config, true, &mut warnings));
        let cgroup = cgroup
            .map_err(|e| EngineError::Io {
                context: "creating the container's cgroup".into(),
                source: std::io::Error::other(e),
            })
            .and_then(|made| made.map_err(EngineError::from));
        // Whichever half succeeded is given back when the other failed.
        let (cgroup_procs, resolved) = match (cgroup, resolved) {
            (Ok(procs), Ok(resolved)) => (procs, resolved),
            (Ok(_), Err(e)) => {
                self.drop_cgroup(c.id()).await;
                return Err(e);
            }
            (Err(e), Ok(resolved)) => {
                self.release_mounts(&c.config, &resolved).await;
                return Err(e);
            }
            (Err(_), Err(e)) => return Err(e),
        };
        let spec = RunSpec {
            id: c.id().to_owned(),
            bundle: c.dir.clone(),
            rootfs: self.images.rootfs(&image),
            mounts: resolved
                .iter()
                .map(|m| BindMount {
                    source: PathBuf::from(&m.host_path),
                    target: m.spec.destination.clone(),
                    readonly: m.spec.read_only,
                })
                .collect(),
            hostname: c.config.spec.hostname.clone(),
            env,
            cwd: c.config.spec.working_dir.clone(),
            argv: std::iter::once(c.config.path.clone())
                .chain(c.config.args.iter().cloned())
                .collect(),
            tty: c.config.spec.tty,
            open_stdin: c.config.spec.open_stdin,
            net,
            cgroup_procs,
            user: c.config.spec.user.clone(),
            security: c.config.spec.security.clone(),
        };
        Ok((spec, resolved))
    }
}

/// Records why a start failed before the process ran (`error`, exit code 127, as Docker) and
/// gives back the error to return (the recording's own failure, if the state could not be saved).
fn not_started(c: &Container, msg: String, e: EngineError) -> EngineError {
    match c.update(|st| {
        st.error = msg;
        st.exit_code = 127;
    }) {
        Ok(_) => e,
        Err(saving) => saving,
    }
}
