//! Hijacked and framed streams: Docker's 8-byte multiplexed framing and the attach session that
//! runs on an upgraded connection (output out, stdin in, closed once the process exited or the
//! client hung up).
//!
//! A client that half-closes (the docker CLI shuts its write side down once stdin is done, or at
//! once without `-i`) still reads the output, so end of input is not the end of the session. A
//! client that is gone is seen as a hang-up (`POLLHUP`) on [`ConnFd`], a duplicate of the
//! connection's descriptor watched apart from the stream itself, so a session whose container never
//! prints (or never starts) still ends when its client leaves.
//!
//! No output is written before the client has read the `101` head ([`head_read`]): docker-py
//! reads the head through a buffered reader and the stream from the raw socket after it, so bytes
//! that arrived together with the head would be lost in that buffer.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_engine::Attached;
use berth_engine::logs::{OutputChunk, StreamKind};
use bytes::{BufMut, Bytes, BytesMut};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::sync::broadcast::error::RecvError;

/// One multiplexed frame: stream byte, three zero bytes, big-endian length, payload.
pub fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(stream);
    b.put_bytes(0, 3);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// A duplicate of the descriptor of the client connection a request came on (a request
/// extension set by [`crate::serve_with`]).
#[derive(Debug, Clone)]
pub struct ConnFd(pub Arc<OwnedFd>);

/// The longest a new session's output waits for its client to read the response head.
const HEAD_READ_WAIT: Duration = Duration::from_secs(5);

// `SIOCOUTQ` (= `TIOCOUTQ`): for a UNIX stream socket, the bytes written that the peer has not
// received yet (for TCP, the bytes not yet acknowledged).
nix::ioctl_read_bad!(outq_len, nix::libc::TIOCOUTQ, nix::libc::c_int);

/// Resolves once the client has received everything written on `conn` so far (the kernel's
/// `SIOCOUTQ` count is 0), so what is written next cannot share a read with the response head;
/// or after [`HEAD_READ_WAIT`], or at once when the count cannot be read.
pub async fn head_read(conn: Option<&ConnFd>) {
    let Some(conn) = conn else { return };
    let deadline = Instant::now() + HEAD_READ_WAIT;
    let mut pause = Duration::from_micros(100);
    loop {
        let mut queued: nix::libc::c_int = 0;
        // SAFETY: `TIOCOUTQ` writes one int through the pointer, which points at `queued`; the
        // descriptor is owned by `conn` for the whole call.
        let read = unsafe { outq_len(conn.0.as_raw_fd(), &mut queued) };
        if read.is_err() || queued <= 0 || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Resolves once the peer of `conn` hung up completely (not on a half-close); never without one.
pub async fn hung_up(conn: Option<ConnFd>) {
    // A registration of its own (another duplicate), so clearing its readiness below never
    // disturbs the stream's.
    let watch = conn.and_then(|c| c.0.try_clone().ok()).and_then(|fd| {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(std).ok()
    });
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        let Ok(ready) = watch.ready(Interest::WRITABLE).await else {
            return std::future::pending().await;
        };
        if ready.is_write_closed() {
            return;
        }
        // Edge-triggered: the next wake-up is the next change (a hang-up, or buffer space).
        let _ = watch.try_io(Interest::WRITABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
    }
}

/// What an attach session sends besides the live output.
pub struct AttachOptions {
    pub stdout: bool,
    pub stderr: bool,
    /// Follow the live output (`stream=1`); without it the session ends after the logs.
    pub stream: bool,
    /// The log so far (`logs=1`), sent first.
    pub logs: Option<tokio::sync::mpsc::Receiver<berth_engine::logs::LogEntry>>,
    /// The detach sequence (applies with a tty only, as in Docker).
    pub detach_keys: Vec<u8>,
}

/// How the stdin side of a session ended.
enum StdinEnd {
    Closed,
    Detached,
}

/// Serves one attach session on the upgraded connection until the container's process exits
/// (then the connection is closed, which is what ends `docker run`), the client types the detach
/// sequence (tty only; the container keeps running) or hangs up.
pub async fn serve_attach(
    on_upgrade: OnUpgrade,
    conn: Option<ConnFd>,
    mut attached: Attached,
    opts: AttachOptions,
) {
    let AttachOptions {
        stdout,
        stderr,
        stream,
        logs,
        detach_keys,
    } = opts;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "attach upgrade failed");
            return;
        }
    };
    head_read(conn.as_ref()).await;
    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    if let Some(mut logs) = logs {
        while let Some(entry) = logs.recv().await {
            let kind = if entry.stream == "stderr" { 2 } else { 1 };
            let bytes = if attached.tty {
                Bytes::from(entry.log.into_bytes())
            } else {
                frame(kind, entry.log.as_bytes())
            };
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
    if !stream {
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
        return;
    }
    let stdin_tx = attached.stdin.clone();
    // The keys apply to tty sessions with stdin only (no keys: everything passes).
    let mut watch = crate::detach::Matcher::new(if attached.tty && attached.stdin.is_some() {
        detach_keys
    } else {
        Vec::new()
    });
    let mut stdin_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return StdinEnd::Closed,
                Ok(n) => {
                    let (data, detach) = watch.feed(&buf[..n]);
                    if let Some(tx) = &stdin_tx
                        && !data.is_empty()
                        && tx.send(Bytes::from(data)).await.is_err()
                    {
                        return StdinEnd::Closed;
                    }
                    if detach {
                        return StdinEnd::Detached;
                    }
                }
            }
        }
    });
    let mut stdin_open = attached.stdin.is_some();
    let gone = hung_up(conn);
    tokio::pin!(gone);
    loop {
        tokio::select! {
            _ = &mut gone => break,
            chunk = attached.output.recv() => match chunk {
                Ok(OutputChunk::Data(kind, data)) => {
                    let wanted = match kind { StreamKind::Stdout => stdout, StreamKind::Stderr => stderr };
                    if !wanted {
                        continue;
                    }
                    let bytes = if attached.tty { data } else { frame(kind as u8, &data) };
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Ok(OutputChunk::Eof) | Err(RecvError::Closed) => break,
                Err(RecvError::Lagged(n)) => tracing::warn!(skipped = n, "attach client too slow; output dropped"),
            },
            end = &mut stdin_task, if stdin_open => {
                stdin_open = false;
                if let Ok(StdinEnd::Detached) = end {
                    break;
                }
                attached.stdin_closed();
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    stdin_task.abort();
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_have_docker_header() {
        let f = super::frame(1, b"hello world\n");
        assert_eq!(&f[..8], &[1, 0, 0, 0, 0, 0, 0, 12]);
        assert_eq!(&f[8..], b"hello world\n");
    }
}
