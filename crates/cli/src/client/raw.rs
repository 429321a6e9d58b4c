//! A small raw HTTP/1.1 client over the engine's UNIX socket, one connection per request, for
//! what bollard cannot express: berth-specific query parameters (`system=1`), berth endpoints
//! (plugins), responses printed verbatim (`inspect`), and the `wait` long-poll whose headers must
//! arrive before `start` is sent.

use std::path::PathBuf;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// The request body type: anything that yields `Bytes` (full or streamed).
pub type ReqBody = BoxBody<Bytes, std::io::Error>;

/// Errors of the raw client.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The socket could not be reached.
    #[error("Cannot connect to the berth daemon at unix://{}. Is the berth daemon running?", socket.display())]
    Connect {
        socket: PathBuf,
        source: std::io::Error,
    },
    /// HTTP-level failure talking to the engine.
    #[error("talking to the engine: {0}")]
    Http(#[from] hyper::Error),
    /// Building the request failed (a bad path or header).
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    /// The engine answered with a non-2xx status.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    /// The engine's answer was not the JSON we expected.
    #[error("decoding the engine's answer: {0}")]
    Decode(#[from] serde_json::Error),
    /// The request body could not be encoded.
    #[error("encoding the request: {0}")]
    Encode(String),
}

/// The raw client: knows only the socket path.
#[derive(Debug, Clone)]
pub struct RawClient {
    socket: PathBuf,
}

/// An empty request body.
pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Builds `path?query` from serialisable query pairs (skipping an empty query).
pub fn with_query<Q: Serialize + ?Sized>(path: &str, query: &Q) -> Result<String, RawError> {
    let qs = serde_urlencoded::to_string(query).map_err(|e| RawError::Encode(e.to_string()))?;
    if qs.is_empty() {
        Ok(path.to_string())
    } else {
        Ok(format!("{path}?{qs}"))
    }
}

impl RawClient {
    /// A client for the engine listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// Sends one request and returns the response as soon as its headers arrived (the body is
    /// still streaming). A non-2xx answer becomes [`RawError::Daemon`] with the engine's message.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: ReqBody,
    ) -> Result<Response<Incoming>, RawError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| RawError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "raw engine connection ended with an error");
            }
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, "berth")
            .header(
                header::USER_AGENT,
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let response = sender.send_request(request.body(body)?).await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        Err(daemon_error(response).await)
    }

    /// Sends a request with an optional JSON body and collects the whole answer.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<Bytes, RawError> {
        let response = match body {
            Some(body) => {
                let json = serde_json::to_vec(body)?;
                self.send(method, path_and_query, Some("application/json"), full(json))
                    .await?
            }
            None => self.send(method, path_and_query, None, empty()).await?,
        };
        Ok(response.into_body().collect().await?.to_bytes())
    }

    /// Sends a request with an optional JSON body and decodes the JSON answer.
    pub async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, RawError> {
        let bytes = self.call(method, path_and_query, body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// `GET path` decoded as untyped JSON (printed verbatim by inspect-type commands).
    pub async fn get_value(&self, path_and_query: &str) -> Result<serde_json::Value, RawError> {
        self.json::<serde_json::Value, ()>(Method::GET, path_and_query, None)
            .await
    }
}

/// Reads an error response: `{"message": ...}` when JSON, the text otherwise.
async fn daemon_error(response: Response<Incoming>) -> RawError {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return RawError::Http(err),
    };
    RawError::Daemon {
        status: status.as_u16(),
        message: error_message(status, is_json, &body),
    }
}

/// Docker's rule for error bodies: the `message` of a JSON body, else the text, else the status.
pub fn error_message(status: StatusCode, is_json: bool, body: &[u8]) -> String {
    let json = is_json
        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
        .flatten();
    if let Some(message) = json.as_ref().and_then(|v| v.get("message")?.as_str()) {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        format!("request returned {status}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_building() {
        assert_eq!(
            with_query("/containers/json", &[("all", "1"), ("system", "1")]).unwrap(),
            "/containers/json?all=1&system=1"
        );
        let empty: [(&str, &str); 0] = [];
        assert_eq!(with_query("/x", &empty).unwrap(), "/x");
        assert_eq!(
            with_query("/x", &[("filters", r#"{"a":["b c"]}"#)]).unwrap(),
            "/x?filters=%7B%22a%22%3A%5B%22b+c%22%5D%7D"
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                StatusCode::NOT_FOUND,
                true,
                br#"{"message":"no such volume"}"#
            ),
            "no such volume"
        );
        assert_eq!(
            error_message(
                StatusCode::INTERNAL_SERVER_ERROR,
                false,
                br#"{"message":"x"}"#
            ),
            r#"{"message":"x"}"#
        );
        assert_eq!(
            error_message(StatusCode::INTERNAL_SERVER_ERROR, true, b""),
            "request returned 500 Internal Server Error"
        );
    }

    /// Drives the client against a one-shot HTTP server on a temp UNIX socket.
    #[tokio::test]
    async fn round_trip_over_unix_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("e.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = r#"{"message":"nope"}"#;
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                body
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            req
        });
        let client = RawClient::new(&sock);
        let err = client.get_value("/volumes/x?system=1").await.unwrap_err();
        match err {
            RawError::Daemon { status, message } => {
                assert_eq!(status, 404);
                assert_eq!(message, "nope");
            }
            other => panic!("unexpected {other:?}"),
        }
        let req = server.await.unwrap();
        assert!(
            req.starts_with("GET /volumes/x?system=1 HTTP/1.1\r\n"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn missing_socket_is_a_connect_error() {
        let client = RawClient::new("/nonexistent/berth.sock");
        let err = client.get_value("/info").await.unwrap_err();
        assert!(matches!(err, RawError::Connect { .. }));
        assert!(
            err.to_string()
                .starts_with("Cannot connect to the berth daemon")
        );
    }
}
