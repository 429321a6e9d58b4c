//! Container output: the json-file log (Docker's format, one JSON object per line:
//! `{"log":"hi\n","stream":"stdout","time":"…"}`) written by a per-run pump, the live broadcast of
//! output chunks to attached clients, and the log reader behind `GET /containers/{id}/logs`.
//!
//! Lines longer than [`MAX_ENTRY`] (16 KiB) are split as Docker 20.10's json-file does: each full
//! 16 KiB piece is its own entry without a trailing `\n` (a partial message), the rest of the line
//! ends with `\n`; `docker logs` prints the pieces back to back, so the output is the line. The
//! writer scans each byte once and buffers at most one entry per stream, however long the line;
//! readers read bounded batches, and `tail=N` seeks from the end of the file.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
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

/// The most bytes of output in one log entry (Docker's json-file buffer size); a longer line
/// becomes several entries.
pub const MAX_ENTRY: usize = 16 * 1024;

/// The most entries one [`read_entries`] call returns.
pub const READ_BATCH: usize = 1024;

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
///
/// The file is created with the first entry, not before: a container that prints nothing (the
/// usual `run --rm … true`) costs no log inode. Readers take a missing file for an empty log.
pub async fn write_log(
    path: PathBuf,
    mut rx: mpsc::Receiver<(StreamKind, Bytes)>,
    seq: std::sync::Arc<watch::Sender<u64>>,
) {
    let mut file = LazyLog::new(path);
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
        split_entries(pending, &chunk, |entry| encode(&mut out, kind, entry));
        if !out.is_empty() {
            file.append(&out).await;
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
        file.append(&out).await;
    }
    file.flush().await;
    seq.send_modify(|s| *s += 1);
}

/// A container's log file, opened (created, appending) on the first write.
struct LazyLog {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    /// The open failed (logged once); later entries are dropped.
    failed: bool,
}

impl LazyLog {
    fn new(path: PathBuf) -> Self {
        LazyLog {
            path,
            file: None,
            failed: false,
        }
    }

    async fn append(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        if self.file.is_none() && !self.failed {
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
            {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot open container log");
                    self.failed = true;
                }
            }
        }
        if let Some(file) = &mut self.file
            && let Err(e) = file.write_all(bytes).await
        {
            tracing::warn!(error = %e, "writing container log");
        }
    }

    async fn flush(&mut self) {
        use tokio::io::AsyncWriteExt;
        if let Some(file) = &mut self.file {
            let _ = file.flush().await;
        }
    }
}

/// Cuts `data` (the next bytes of one stream, after what `pending` holds) into log entries: each
/// line with its `\n`, and each [`MAX_ENTRY`] bytes of a longer line as a partial entry. What is
/// left without a newline stays in `pending` (never more than `MAX_ENTRY` bytes). Each byte is
/// looked at once.
pub fn split_entries(pending: &mut Vec<u8>, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
    while !data.is_empty() {
        let room = MAX_ENTRY - pending.len();
        // A line may use all the room and still end with its newline.
        let window = &data[..data.len().min(room + 1)];
        if let Some(i) = memchr::memchr(b'\n', window) {
            let line = &window[..=i];
            if pending.is_empty() {
                emit(line);
            } else {
                pending.extend_from_slice(line);
                emit(pending);
                pending.clear();
            }
            data = &data[i + 1..];
        } else if window.len() > room {
            // Full without a newline: a partial entry of exactly MAX_ENTRY bytes.
            pending.extend_from_slice(&window[..room]);
            emit(pending);
            pending.clear();
            data = &data[room..];
        } else {
            pending.extend_from_slice(window);
            data = &[];
        }
    }
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

/// Reads complete lines from `offset` on, at most `max` of them; returns the entries and the
/// offset after the last one read. Blocking.
pub fn read_entries(path: &Path, offset: u64, max: usize) -> std::io::Result<(Vec<LogEntry>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    // An entry is at most MAX_ENTRY bytes of output, escaped (≤ 6 bytes each), plus its fields.
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    while entries.len() < max {
        line.clear();
        let n = (&mut reader)
            .take(MAX_ENTRY as u64 * 6 + 1024)
            .read_line(&mut line)?;
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

/// The offset where the last `n` complete entries of the log begin (the end of the last complete
/// entry for 0), found by reading the file backwards in blocks. Blocking.
pub fn tail_offset(path: &Path, n: usize) -> std::io::Result<u64> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    let mut newlines = 0usize;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let block = &mut buf[..(end - start) as usize];
        file.read_exact_at(block, start)?;
        for i in memchr::memrchr_iter(b'\n', block) {
            newlines += 1;
            if newlines == n + 1 {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that prints nothing leaves no log file (no inode per silent `run --rm`), and reads
    /// of the missing file give an empty log; the first entry creates it.
    #[tokio::test]
    async fn the_log_file_is_created_with_the_first_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "x");
        let (tx, rx) = mpsc::channel(8);
        let (seq, _) = watch::channel(0);
        let writer = tokio::spawn(write_log(path.clone(), rx, std::sync::Arc::new(seq)));
        tx.send((StreamKind::Stdout, Bytes::new())).await.unwrap();
        drop(tx);
        writer.await.unwrap();
        assert!(!path.exists(), "a silent run created {}", path.display());
        let (entries, off) = read_entries(&path, 0, READ_BATCH).unwrap();
        assert!(entries.is_empty());
        assert_eq!(off, 0);
        assert_eq!(tail_offset(&path, 5).unwrap(), 0);

        let (tx, rx) = mpsc::channel(8);
        let (seq, _) = watch::channel(0);
        let writer = tokio::spawn(write_log(path.clone(), rx, std::sync::Arc::new(seq)));
        tx.send((StreamKind::Stderr, Bytes::from_static(b"late\n")))
            .await
            .unwrap();
        drop(tx);
        writer.await.unwrap();
        let (entries, _) = read_entries(&path, 0, READ_BATCH).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].log, "late\n");
    }

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
        let (entries, off) = read_entries(&path, 0, READ_BATCH).unwrap();
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

    #[test]
    fn long_lines_split_at_16k_like_docker() {
        let mut pending = Vec::new();
        let mut entries: Vec<Vec<u8>> = Vec::new();
        let line = vec![b'a'; 2 * MAX_ENTRY + 10];
        // Fed in odd-sized chunks, with the newline and a short line after it.
        let mut data = line.clone();
        data.extend_from_slice(b"\nshort\n");
        for chunk in data.chunks(5000) {
            split_entries(&mut pending, chunk, |e| entries.push(e.to_vec()));
        }
        let lens: Vec<usize> = entries.iter().map(Vec::len).collect();
        assert_eq!(lens, [MAX_ENTRY, MAX_ENTRY, 11, 6]);
        assert!(!entries[0].ends_with(b"\n") && entries[2].ends_with(b"\n"));
        assert_eq!(entries.concat(), data);
        assert!(pending.is_empty());
        // Exactly MAX_ENTRY bytes and the newline: one entry.
        entries.clear();
        let mut exact = vec![b'b'; MAX_ENTRY];
        exact.push(b'\n');
        split_entries(&mut pending, &exact, |e| entries.push(e.to_vec()));
        assert_eq!(entries, [exact]);
        // No newline at all: partial entries, never more than MAX_ENTRY buffered.
        entries.clear();
        for _ in 0..100 {
            split_entries(&mut pending, &[b'c'; 1000], |e| entries.push(e.to_vec()));
            assert!(pending.len() <= MAX_ENTRY);
        }
        assert_eq!(entries.len(), 100_000 / MAX_ENTRY);
    }

    #[test]
    fn tail_offset_finds_the_last_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text = String::new();
        for i in 0..20_000 {
            let entry = LogEntry {
                log: format!("line {i}\n"),
                stream: "stdout".into(),
                time: Utc::now(),
            };
            text.push_str(&serde_json::to_string(&entry).unwrap());
            text.push('\n');
        }
        // A half-written entry at the end is not counted.
        text.push_str("{\"log\":\"half");
        std::fs::write(&path, &text).unwrap();
        let off = tail_offset(&path, 3).unwrap();
        let (entries, _) = read_entries(&path, off, READ_BATCH).unwrap();
        let logs: Vec<&str> = entries.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["line 19997\n", "line 19998\n", "line 19999\n"]);
        assert_eq!(tail_offset(&path, 100_000).unwrap(), 0);
        let end = tail_offset(&path, 0).unwrap();
        assert!(read_entries(&path, end, READ_BATCH).unwrap().0.is_empty());
        assert_eq!(tail_offset(&dir.path().join("none"), 5).unwrap(), 0);
        let (batch, _) = read_entries(&path, 0, 10).unwrap();
        assert_eq!(batch.len(), 10);
    }
}
