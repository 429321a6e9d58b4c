//! Container output: the json-file log (Docker's format, one JSON object per line:
//! `{"log":"hi\n","stream":"stdout","time":"…"}`) written by a per-run pump, the live broadcast of
//! output chunks to attached clients, and the log reader behind `GET /containers/{id}/logs`.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{broadcast, mpsc, watch};

/// Which output stream a chunk came from (the numbers of Docker's multiplexed framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout = 1,
    Stderr = 2,
}

impl StreamKind {
    fn name(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }
}

/// What attached clients receive.
#[derive(Debug, Clone)]
pub enum OutputChunk {
    Data(StreamKind, Bytes),
    /// The process exited and all of its output was delivered.
    Eof,
}

/// One line of the json-file log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: DateTime<Utc>,
}

/// Where a container's log lives.
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

/// Copies one output stream of a running container to the log writer and to attached clients.
pub async fn pump(
    kind: StreamKind,
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    to_log: mpsc::Sender<(StreamKind, Bytes)>,
    to_attach: broadcast::Sender<OutputChunk>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                let _ = to_attach.send(OutputChunk::Data(kind, chunk.clone()));
                if to_log.send((kind, chunk)).await.is_err() {
                    break;
                }
            }
            // EIO is how a pty master reports that the slave side closed.
            Err(_) => break,
        }
    }
}

/// Owns the log file of one run: splits chunks into lines and appends JSON entries, then bumps
/// `seq` so followers wake up. Ends when every pump has dropped its sender.
pub async fn write_log(
    path: PathBuf,
    mut rx: mpsc::Receiver<(StreamKind, Bytes)>,
    seq: std::sync::Arc<watch::Sender<u64>>,
) {
    use tokio::io::AsyncWriteExt;
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open container log");
            while rx.recv().await.is_some() {}
            return;
        }
    };
    let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut out = Vec::new();
    let encode = |out: &mut Vec<u8>, kind: StreamKind, bytes: &[u8]| {
        let entry = LogEntry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: kind.name().into(),
            time: Utc::now(),
        };
        if serde_json::to_writer(&mut *out, &entry).is_ok() {
            out.push(b'\n');
        }
    };
    while let Some((kind, chunk)) = rx.recv().await {
        let pending = &mut partial[kind as usize - 1];
        pending.extend_from_slice(&chunk);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            encode(&mut out, kind, &line);
        }
        if !out.is_empty() {
            if let Err(e) = file.write_all(&out).await {
                tracing::warn!(error = %e, "writing container log");
            }
            out.clear();
            seq.send_modify(|s| *s += 1);
        }
    }
    for (i, kind) in [StreamKind::Stdout, StreamKind::Stderr]
        .into_iter()
        .enumerate()
    {
        if !partial[i].is_empty() {
            let rest = std::mem::take(&mut partial[i]);
            encode(&mut out, kind, &rest);
        }
    }
    if !out.is_empty() {
        let _ = file.write_all(&out).await;
    }
    let _ = file.flush().await;
    seq.send_modify(|s| *s += 1);
}

/// What `GET /logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Only the last N lines (`tail=N`); `None` = all.
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl LogOptions {
    pub fn wants(&self, entry: &LogEntry) -> bool {
        let stream_ok = match entry.stream.as_str() {
            "stdout" => self.stdout,
            "stderr" => self.stderr,
            _ => false,
        };
        stream_ok
            && self.since.is_none_or(|s| entry.time >= s)
            && self.until.is_none_or(|u| entry.time <= u)
    }
}

/// Reads complete lines from `offset` on; returns the entries and the new offset. Blocking.
pub fn read_entries(path: &Path, offset: u64) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(entry) = serde_json::from_str::<LogEntry>(&line) {
            entries.push(entry);
        }
    }
    Ok((entries, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_partial_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "x");
        let (tx, rx) = mpsc::channel(8);
        let (seq, _) = watch::channel(0);
        let writer = tokio::spawn(write_log(path.clone(), rx, std::sync::Arc::new(seq)));
        tx.send((StreamKind::Stdout, Bytes::from_static(b"one\ntw")))
            .await
            .unwrap();
        tx.send((StreamKind::Stderr, Bytes::from_static(b"err\n")))
            .await
            .unwrap();
        tx.send((StreamKind::Stdout, Bytes::from_static(b"o\nlast")))
            .await
            .unwrap();
        drop(tx);
        writer.await.unwrap();
        let (entries, off) = read_entries(&path, 0).unwrap();
        let logs: Vec<_> = entries
            .iter()
            .map(|e| (e.stream.as_str(), e.log.as_str()))
            .collect();
        assert_eq!(
            logs,
            [
                ("stdout", "one\n"),
                ("stderr", "err\n"),
                ("stdout", "two\n"),
                ("stdout", "last")
            ]
        );
        assert_eq!(off, std::fs::metadata(&path).unwrap().len());
        let opts = LogOptions {
            stdout: false,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(entries.iter().filter(|e| opts.wants(e)).count(), 1);
    }
}
