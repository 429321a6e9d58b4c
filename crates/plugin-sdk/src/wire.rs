//! HTTP/1.1 on one blocking plugin connection: reading a request (`httparse` for the head, then a
//! `Content-Length` or chunked body, both bounded) and writing a reply in one piece. Only what a
//! plugin server needs: no upgrades, no trailers kept, `Expect: 100-continue` answered.

use std::io::{Read, Write};

use bytes::{Buf, Bytes, BytesMut};

/// Largest request head accepted.
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// Largest request body accepted: an api hook message carries a body of up to 16 MiB, escaped.
pub(crate) const MAX_BODY: usize = 64 << 20;
/// Headers per request.
const MAX_HEADERS: usize = 64;

/// One request, as the router needs it.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: http::Method,
    /// The path, without query (an absolute-form target is reduced to it).
    pub path: String,
    /// The `Berth-Deadline-Ms` header (milliseconds), if present and a number.
    pub deadline_ms: Option<u64>,
    pub body: Bytes,
    /// The connection closes after the reply (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    pub close: bool,
}

/// Why a request could not be read. `Refuse` gets a reply before the connection closes.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed or the socket failed: nothing to answer.
    Gone,
    Refuse(u16, &'static str),
}

/// The head of a request, parsed.
struct Head {
    len: usize,
    method: http::Method,
    path: String,
    deadline_ms: Option<u64>,
    length: Option<usize>,
    chunked: bool,
    close: bool,
    expect_continue: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Refuse(431, "request head too large"));
        }
        Err(_) => return Err(ReadError::Refuse(400, "malformed request")),
    };
    let target = req.path.unwrap_or("/");
    // Absolute form (`http://host/path`): the path is what follows the authority. (Looked for only
    // when the target is not a path: the engine always sends one.)
    let target = if target.starts_with('/') {
        target
    } else {
        match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target,
        }
    };
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    let mut head = Head {
        len,
        method: http::Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| ReadError::Refuse(400, "malformed method"))?,
        path,
        deadline_ms: None,
        length: None,
        chunked: false,
        close: req.version == Some(0),
        expect_continue: false,
    };
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(ReadError::Refuse(400, "bad Content-Length"))?;
            if head.length.is_some_and(|m| m != n) {
                return Err(ReadError::Refuse(400, "conflicting Content-Length"));
            }
            head.length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let chunked = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(ReadError::Refuse(501, "unsupported Transfer-Encoding"));
            }
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                head.close = true;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                head.close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(berth_plugin_protocol::DEADLINE_HEADER) {
            head.deadline_ms = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
    }
    if head.chunked && head.length.is_some() {
        return Err(ReadError::Refuse(400, "both Content-Length and chunked"));
    }
    if head.length.is_some_and(|n| n > MAX_BODY) {
        return Err(ReadError::Refuse(413, "request body too large"));
    }
    Ok(Some(head))
}

/// A connection's read side: the socket and what was read past the last request.
pub(crate) struct Reader<S> {
    sock: S,
    buf: BytesMut,
    /// What one read lands in (zeroed once, not per read).
    chunk: Box<[u8]>,
}

impl<S: Read + Write> Reader<S> {
    pub(crate) fn new(sock: S) -> Self {
        Self {
            sock,
            buf: BytesMut::with_capacity(8 << 10),
            chunk: vec![0u8; 16 << 10].into_boxed_slice(),
        }
    }

    /// The socket, to write the reply on.
    pub(crate) fn socket(&mut self) -> &mut S {
        &mut self.sock
    }

    /// Reads more into the buffer; `Gone` at end of stream.
    fn fill(&mut self) -> Result<(), ReadError> {
        loop {
            return match self.sock.read(&mut self.chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => Err(ReadError::Gone),
                Ok(n) => {
                    self.buf.extend_from_slice(&self.chunk[..n]);
                    Ok(())
                }
            };
        }
    }

    /// The next request; `Ok(None)` when the peer closed between requests.
    pub(crate) fn next(&mut self) -> Result<Option<Request>, ReadError> {
        let head = loop {
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
            match self.fill() {
                Ok(()) => {}
                Err(ReadError::Gone) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        self.buf.advance(head.len);
        if head.expect_continue && (head.chunked || head.length.unwrap_or(0) > self.buf.len()) {
            self.sock
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| ReadError::Gone)?;
        }
        let body = if head.chunked {
            self.chunked_body()?
        } else {
            let n = head.length.unwrap_or(0);
            while self.buf.len() < n {
                self.fill()?;
            }
            self.buf.split_to(n).freeze()
        };
        Ok(Some(Request {
            method: head.method,
            path: head.path,
            deadline_ms: head.deadline_ms,
            body,
            close: head.close,
        }))
    }

    fn chunked_body(&mut self) -> Result<Bytes, ReadError> {
        let mut body = Vec::new();
        loop {
            let (skip, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((skip, size))) => break (skip, size),
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => self.fill()?,
                    _ => return Err(ReadError::Refuse(400, "malformed chunk")),
                }
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|s| body.len().saturating_add(*s) <= MAX_BODY)
                .ok_or(ReadError::Refuse(413, "request body too large"))?;
            if size == 0 {
                self.buf.advance(skip);
                // Trailers (ignored) up to the empty line.
                loop {
                    match self.buf.windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            self.buf.advance(2);
                            return Ok(Bytes::from(body));
                        }
                        Some(i) => {
                            self.buf.advance(i + 2);
                        }
                        None if self.buf.len() < MAX_HEAD => self.fill()?,
                        None => return Err(ReadError::Refuse(431, "trailers too large")),
                    }
                }
            }
            while self.buf.len() < skip + size + 2 {
                self.fill()?;
            }
            if &self.buf[skip + size..skip + size + 2] != b"\r\n" {
                return Err(ReadError::Refuse(400, "malformed chunk"));
            }
            body.extend_from_slice(&self.buf[skip..skip + size]);
            self.buf.advance(skip + size + 2);
        }
    }
}

/// The largest reply buffer a connection keeps between requests.
const KEPT_REPLY_BUFFER: usize = 64 << 10;

/// Frees a reply buffer that a large reply grew past [`KEPT_REPLY_BUFFER`], so a connection does
/// not hold it for the rest of its life.
pub(crate) fn release_large(out: &mut Vec<u8>) {
    if out.capacity() > KEPT_REPLY_BUFFER {
        *out = Vec::new();
    }
}

/// A whole reply (status line, `content-type`, `content-length`, body) in `out` (cleared first: a
/// connection reuses one buffer), so it leaves in one write. Put together from pieces rather than
/// through `format!`: this runs once per call with the plugin's caches cold, where the formatting
/// machinery alone cost ~0.4 µs.
pub(crate) fn put_reply(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    content_type: &str,
    body: &[u8],
    close: bool,
) {
    let mut num = itoa::Buffer::new();
    out.clear();
    out.reserve(128 + content_type.len() + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(num.format(body.len()).as_bytes());
    out.extend_from_slice(if close {
        b"\r\nconnection: close\r\n\r\n".as_slice()
    } else {
        b"\r\n\r\n".as_slice()
    });
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A socket made of the bytes the peer sent, recording what we write.
    struct Fake {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Fake {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            // At most 7 bytes at a time: every parse must cope with partial input.
            let n = b.len().min(7);
            self.input.read(&mut b[..n])
        }
    }

    impl Write for Fake {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn reader(input: &[u8]) -> Reader<Fake> {
        Reader::new(Fake {
            input: Cursor::new(input.to_vec()),
            written: Vec::new(),
        })
    }

    #[test]
    fn reads_keep_alive_requests_one_after_another() {
        let mut r = reader(
            b"POST /VolumeDriver.Create?x=1 HTTP/1.1\r\nContent-Length: 2\r\nBerth-Deadline-Ms: 900\r\n\r\n{}\
              POST http://plugin/v2/handshake HTTP/1.1\r\nBerth-Deadline-Ms: soon\r\nconnection: close\r\n\r\n",
        );
        let a = r.next().unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path.as_str()),
            ("POST", "/VolumeDriver.Create")
        );
        assert_eq!(&a.body[..], b"{}");
        assert_eq!(a.deadline_ms, Some(900));
        assert!(!a.close);
        let b = r.next().unwrap().unwrap();
        assert_eq!(b.path, "/v2/handshake");
        assert_eq!(
            b.deadline_ms, None,
            "a deadline that is not a number is no deadline"
        );
        assert!(b.body.is_empty());
        assert!(b.close);
        assert!(r.next().unwrap().is_none(), "clean end between requests");
    }

    #[test]
    fn reads_a_chunked_body_and_answers_expect() {
        let mut r = reader(
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n\
              3\r\n{\"a\r\n4;ext=1\r\n\":1}\r\n0\r\nX-T: y\r\n\r\n",
        );
        let a = r.next().unwrap().unwrap();
        assert_eq!(&a.body[..], b"{\"a\":1}");
        assert_eq!(r.socket().written, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let big = format!(
            "POST /x HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        for (input, want) in [
            (big.into_bytes(), 413),
            (
                b"POST /x HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(),
                501,
            ),
            (
                b"POST /x HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n".to_vec(),
                400,
            ),
            (b"GARBAGE\x01\r\n\r\n".to_vec(), 400),
            (
                b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
                400,
            ),
        ] {
            match reader(&input).next() {
                Err(ReadError::Refuse(s, _)) => {
                    assert_eq!(s, want, "{}", String::from_utf8_lossy(&input))
                }
                other => panic!("{other:?} for {}", String::from_utf8_lossy(&input)),
            }
        }
        let mut endless = b"POST /x HTTP/1.1\r\n".to_vec();
        while endless.len() <= MAX_HEAD {
            endless.extend_from_slice(b"x: 0123456789abcdef\r\n");
        }
        assert!(matches!(
            reader(&endless).next(),
            Err(ReadError::Refuse(431, _))
        ));
        assert!(matches!(
            reader(b"POST /x HTTP/1.1\r\ncontent-length: 5\r\n\r\n{}").next(),
            Err(ReadError::Gone)
        ));
    }

    #[test]
    fn a_reply_is_one_buffer() {
        let mut out = b"left from the previous reply".to_vec();
        put_reply(
            &mut out,
            http::StatusCode::NOT_FOUND,
            "text/plain",
            b"no",
            true,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno"
        );
        put_reply(
            &mut out,
            http::StatusCode::OK,
            "application/json",
            &[b' '; 1234],
            false,
        );
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1234\r\n\r\n";
        assert_eq!(&out[..head.len()], head);
        assert_eq!(out.len(), head.len() + 1234);
        release_large(&mut out);
        assert!(
            out.capacity() >= head.len() + 1234,
            "a small buffer is kept"
        );
        put_reply(
            &mut out,
            http::StatusCode::OK,
            "application/json",
            &[b' '; 1 << 20],
            false,
        );
        release_large(&mut out);
        assert_eq!(
            out.capacity(),
            0,
            "a buffer grown by a 1 MiB reply is let go"
        );
    }
}
