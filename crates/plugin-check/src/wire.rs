//! Talking to the plugin under test. Ordinary calls go through plugin-host's
//! [`PluginClient`] (the engine's own client: keep-alive, deadline, raw status and body). The
//! robustness and body-framing checks need what an engine never does on purpose (a chunked body,
//! a client that stalls or hangs up half-way), so [`raw_exchange`] writes HTTP/1.1 by hand on a
//! fresh UNIX-socket connection, bounded by the same deadline and a reply size limit.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_plugin_host::PluginClient;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::report::{Exchange, truncate};

/// The largest reply read by [`raw_exchange`].
pub const MAX_REPLY: usize = 8 << 20;

/// An answer to one call.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Raw body.
    pub body: Bytes,
    /// The body as JSON, when it parses.
    pub json: Option<Value>,
    /// Time to the complete answer.
    pub elapsed: Duration,
}

impl Answer {
    fn new(status: u16, body: Bytes, elapsed: Duration) -> Self {
        let json = serde_json::from_slice(&body).ok();
        Self {
            status,
            body,
            json,
            elapsed,
        }
    }

    /// The top-level `Err` / `Error` (any case) when it is a non-empty string.
    pub fn err_text(&self) -> Option<String> {
        let obj = self.json.as_ref()?.as_object()?;
        obj.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("err") || k.eq_ignore_ascii_case("error"))
            .find_map(|(_, v)| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
    }

    /// Docker's success: exactly 200 and no `Err`.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.err_text().is_none()
    }

    /// A failure the way a plugin must send one: not 200-without-Err, and a non-empty `Err`.
    pub fn proper_error(&self) -> bool {
        !self.ok() && self.status != 404 && self.err_text().is_some()
    }

    /// Field `key` of a JSON object reply (exact key first, then any case, as Go decodes).
    pub fn field(&self, key: &str) -> Option<&Value> {
        field(self.json.as_ref()?, key)
    }

    /// `200`, `500 {"Err":"x"}`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}",
            self.status,
            truncate(&String::from_utf8_lossy(&self.body), 300)
        )
    }
}

/// Field `key` of a JSON object, matched as Go's decoder does (exact, then case-insensitive).
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A string field, `""` when absent or not a string.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key).and_then(Value::as_str).unwrap_or_default()
}

/// The outcome of a call: an answer or a transport error (deadline, reset, refused).
pub type Outcome = Result<Answer, String>;

/// One call with the request and answer kept for the report.
#[derive(Debug, Clone)]
pub struct Call {
    /// What came back.
    pub outcome: Outcome,
    /// For the report.
    pub exchange: Exchange,
    /// [`raw_exchange`]: when the last byte of the request was written.
    pub wrote_at: Option<Instant>,
}

impl Call {
    /// The answer, if there was one.
    pub fn answer(&self) -> Option<&Answer> {
        self.outcome.as_ref().ok()
    }

    /// True on Docker success.
    pub fn ok(&self) -> bool {
        self.answer().is_some_and(Answer::ok)
    }

    /// The JSON reply of a successful call.
    pub fn json(&self) -> Option<&Value> {
        self.answer().filter(|a| a.ok())?.json.as_ref()
    }

    /// A one-line description of what came back.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Ok(a) => a.describe(),
            Err(e) => e.clone(),
        }
    }
}

/// The plugin under test.
pub struct Probe {
    client: PluginClient,
    /// Per-call deadline.
    pub deadline: Duration,
}

impl Probe {
    /// A probe of the plugin on `socket`.
    pub fn new(socket: &Path, deadline: Duration) -> Self {
        Self {
            client: PluginClient::new(socket.display().to_string(), socket),
            deadline,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        self.client.socket()
    }

    /// The engine's client (for plugin-host's negotiation).
    pub fn client(&self) -> &PluginClient {
        &self.client
    }

    /// Drops kept-alive connections.
    pub fn close_idle(&self) {
        self.client.close_idle();
    }

    /// `POST path` with `body` as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Call {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.post_bytes(path, bytes).await
    }

    /// `POST path` with no body (handshakes, `GetCapabilities`).
    pub async fn post_empty(&self, path: &str) -> Call {
        self.post_bytes(path, Bytes::new()).await
    }

    /// `POST path` with raw bytes.
    pub async fn post_bytes(&self, path: &str, body: Bytes) -> Call {
        let sent = sent_text(path, &body);
        let start = Instant::now();
        let outcome = match self.client.post_raw(path, body, self.deadline).await {
            Ok(r) => Ok(Answer::new(r.status.as_u16(), r.body, start.elapsed())),
            Err(e) => Err(e.kind.to_string()),
        };
        call(sent, outcome)
    }
}

fn sent_text(path: &str, body: &[u8]) -> String {
    if body.is_empty() {
        format!("POST {path} (empty body)")
    } else {
        format!(
            "POST {path} {}",
            truncate(&String::from_utf8_lossy(body), 200)
        )
    }
}

fn call(sent: String, outcome: Outcome) -> Call {
    let received = match &outcome {
        Ok(a) => a.describe(),
        Err(e) => e.clone(),
    };
    Call {
        outcome,
        exchange: Exchange { sent, received },
        wrote_at: None,
    }
}

/// How [`raw_exchange`] frames and paces the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`, one write.
    Length,
    /// `Transfer-Encoding: chunked`, the body in several chunks.
    Chunked,
    /// `Content-Length`, written a few bytes at a time with `pause` between writes.
    Slow {
        /// Pause between writes.
        pause: Duration,
    },
}

/// One request on a fresh connection, written by hand, with `Connection: close`; reads the reply
/// until the peer closes (bounded by `deadline` and [`MAX_REPLY`]).
pub async fn raw_exchange(
    socket: &Path,
    path: &str,
    body: &[u8],
    framing: Framing,
    deadline: Duration,
) -> Call {
    let sent = format!(
        "{} [{}]",
        sent_text(path, body),
        match framing {
            Framing::Length => "content-length".to_owned(),
            Framing::Chunked => "chunked".to_owned(),
            Framing::Slow { pause } =>
                format!("slow: 64-byte writes every {}ms", pause.as_millis()),
        }
    );
    let start = Instant::now();
    let mut wrote_at = None;
    let inner = raw_inner(socket, path, body, framing, &mut wrote_at);
    let outcome = match tokio::time::timeout(deadline, inner).await {
        Ok(Ok((status, body))) => Ok(Answer::new(status, body, start.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no complete answer within {}ms",
            deadline.as_millis()
        )),
    };
    Call {
        wrote_at,
        ..call(sent, outcome)
    }
}

async fn raw_inner(
    socket: &Path,
    path: &str,
    body: &[u8],
    framing: Framing,
    wrote_at: &mut Option<Instant>,
) -> Result<(u16, Bytes), String> {
    let mut s = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin.berth.localhost\r\nAccept: {}\r\nConnection: close\r\n",
        berth_plugin_protocol::DOCKER_PLUGIN_MEDIA_TYPE
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    let wr = |e: std::io::Error| format!("writing request: {e}");
    match framing {
        Framing::Length | Framing::Slow { .. } => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut all = head.into_bytes();
            all.extend_from_slice(body);
            if let Framing::Slow { pause } = framing {
                for (i, piece) in all.chunks(64).enumerate() {
                    if i > 0 {
                        tokio::time::sleep(pause).await;
                    }
                    s.write_all(piece).await.map_err(wr)?;
                }
            } else {
                s.write_all(&all).await.map_err(wr)?;
            }
        }
        Framing::Chunked => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            s.write_all(head.as_bytes()).await.map_err(wr)?;
            let size = body.len().div_ceil(3).max(1);
            for piece in body.chunks(size) {
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await
                    .map_err(wr)?;
                s.write_all(piece).await.map_err(wr)?;
                s.write_all(b"\r\n").await.map_err(wr)?;
            }
            s.write_all(b"0\r\n\r\n").await.map_err(wr)?;
        }
    }
    *wrote_at = Some(Instant::now());
    let mut buf = Vec::new();
    let mut limited = (&mut s).take(MAX_REPLY as u64 + 1);
    limited
        .read_to_end(&mut buf)
        .await
        .map_err(|e| format!("reading reply: {e}"))?;
    if buf.len() > MAX_REPLY {
        return Err(format!("reply larger than {MAX_REPLY} bytes"));
    }
    parse_response(&buf)
}

/// Parses a complete HTTP/1.1 response read until close (Content-Length, chunked, or to EOF).
fn parse_response(buf: &[u8]) -> Result<(u16, Bytes), String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete reply header ({} bytes read)", buf.len()))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            length = v.parse().ok();
        }
    }
    let rest = &buf[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| format!("reply body cut short: {} of {n} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, Bytes::from(body)))
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked reply")?;
        let size_text = String::from_utf8_lossy(&rest[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or("chunked reply cut short")?);
        rest = rest.get(size + 2..).ok_or("chunked reply cut short")?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_replies() {
        let (s, b) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((s, &b[..]), (200, &b"{}"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"E\r\n4\r\nrr\":\r\n4\r\n\"x\"}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, &b[..]), (500, &br#"{"Err":"x"}"#[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
