//! `bare-api`: an `api` plugin written against the wire protocol with the standard library alone
//! (no SDK, no async runtime): a thread per engine connection, blocking reads, `httparse` for the
//! request head. It subscribes to api hooks (by default the same ones as `api-policy`) and
//! answers every hook "no change"; `--log` prints one line per hook (`post GET /version`).
//! SIGTERM and SIGINT remove the socket and exit at once.
//!
//! It shows how little a plugin must do (docs/plugin-authoring.md, "Without the SDK"), and it is
//! the floor of the hook-cost bench: run through `tests/benches/hook_cost.py` with
//! `APIPOL=target/release/bare-api`, it measures what a hook costs the engine when the plugin
//! adds next to nothing (README, "Api hooks, where the time goes").

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

use berth_plugin_sdk::protocol::mvp::{self, ApiSubscription, HandshakeV2, Subscriptions};
use berth_plugin_sdk::protocol::pattern::ApiPattern;
use berth_plugin_sdk::protocol::powerstrip::{HookRequest, PostHookReply, PreHookReply};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: berth_example_plugins::PluginSocket,
    /// Name announced in the handshake.
    #[arg(long, default_value = "bare-api")]
    name: String,
    /// Pre-hook subscription, `METHOD /path/glob` (repeatable).
    #[arg(long = "pre", default_value = "POST /containers/create")]
    pre: Vec<String>,
    /// Post-hook subscription, `METHOD /path/glob` (repeatable).
    #[arg(long = "post", default_value = "GET /version")]
    post: Vec<String>,
    /// Print `pre|post METHOD TARGET` for every hook (decodes the message to do so).
    #[arg(long)]
    log: bool,
    /// Accepted for the hook-cost bench's command line; every hook observes anyway.
    #[arg(long)]
    observe: bool,
}

/// Largest request head accepted (the engine's are a few hundred bytes).
const MAX_HEAD: usize = 16 << 10;
/// Largest request body accepted: a hook message carries at most a 16 MiB body, escaped.
const MAX_BODY: usize = 40 << 20;

/// The handshake, encoded once (the hook replies are the protocol crate's constant "no change"
/// answers), and whether to log hooks.
struct Replies {
    handshake: Vec<u8>,
    log: bool,
}

/// One parsed request: what to answer, and how many bytes of the buffer it took.
struct Parsed {
    method_is_post: bool,
    path: String,
    head_len: usize,
    body_len: usize,
    close: bool,
}

enum Head {
    Partial,
    Done(Parsed),
    /// A request this plugin refuses: the status to send before closing.
    Refuse(u16),
}

fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Head::Partial,
        Ok(httparse::Status::Partial) => return Head::Refuse(431),
        Err(_) => return Head::Refuse(400),
    };
    let mut body_len = 0;
    let mut close = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) if n <= MAX_BODY => body_len = n,
                Some(_) => return Head::Refuse(413),
                None => return Head::Refuse(400),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The engine always sends a length; nothing here reads chunked bodies.
            return Head::Refuse(411);
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Head::Done(Parsed {
        method_is_post: req.method == Some("POST"),
        path: req.path.unwrap_or_default().to_owned(),
        head_len,
        body_len,
        close,
    })
}

fn reply(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        _ => "Request Header Fields Too Large",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn answer(r: &Replies, p: &Parsed, body: &[u8]) -> Vec<u8> {
    if !p.method_is_post {
        return reply(405, br#"{"Err":"method not allowed"}"#);
    }
    let phase = match p.path.as_str() {
        mvp::V2_HANDSHAKE_PATH => return reply(200, &r.handshake),
        mvp::V2_API_PRE_PATH => "pre",
        mvp::V2_API_POST_PATH => "post",
        _ => return reply(404, br#"{"Err":"not found"}"#),
    };
    if r.log {
        match serde_json::from_slice::<HookRequest>(body) {
            Ok(m) => println!(
                "{phase} {} {}",
                m.client_request.method, m.client_request.request
            ),
            Err(e) => println!("{phase} (undecodable message: {e})"),
        }
    }
    let unchanged = if phase == "pre" {
        PreHookReply::UNCHANGED_JSON
    } else {
        PostHookReply::UNCHANGED_JSON
    };
    reply(200, unchanged)
}

/// Serves one engine connection until it closes or sends something this plugin refuses.
fn serve(mut conn: UnixStream, replies: &Replies) {
    let mut buf: Vec<u8> = Vec::with_capacity(8 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        // Answer every complete request already buffered.
        loop {
            let p = match parse_head(&buf) {
                Head::Partial => break,
                Head::Refuse(status) => {
                    let _ = conn.write_all(&reply(status, br#"{"Err":"refused"}"#));
                    return;
                }
                Head::Done(p) => p,
            };
            let end = p.head_len + p.body_len;
            if buf.len() < end {
                break;
            }
            let out = answer(replies, &p, &buf[p.head_len..end]);
            if conn.write_all(&out).is_err() || p.close {
                return;
            }
            buf.drain(..end);
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let handshake = HandshakeV2 {
        protocol_version: 2,
        name: args.name.clone(),
        version: "0.1".into(),
        author: "Berth examples".into(),
        interested_in: vec![mvp::API.into()],
        subscriptions: Subscriptions {
            api: Some(ApiSubscription {
                pre: args.pre.iter().map(|p| ApiPattern::parse(p)).collect(),
                post: args.post.iter().map(|p| ApiPattern::parse(p)).collect(),
                // Bodies arrive as JSON values; this plugin never looks at them.
                body_json: true,
            }),
            ..Subscriptions::default()
        },
        ..HandshakeV2::default()
    };
    let replies = Arc::new(Replies {
        handshake: serde_json::to_vec(&handshake)?,
        log: args.log,
    });
    if let Some(dir) = args.listen.socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&args.listen.socket);
    let listener = UnixListener::bind(&args.listen.socket)?;
    // In its plugin container this is pid 1, which the kernel spares signals it has no handler
    // for: without one, every unload would wait out the engine's grace period and end in SIGKILL.
    let socket = args.listen.socket.clone();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    })?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let replies = replies.clone();
        std::thread::spawn(move || serve(conn, &replies));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> Parsed {
        match parse_head(buf) {
            Head::Done(p) => p,
            Head::Partial => panic!("partial"),
            Head::Refuse(s) => panic!("refused with {s}"),
        }
    }

    #[test]
    fn parses_a_hook_request_and_its_length() {
        let p = done(
            b"POST /v2/api/post-hook HTTP/1.1\r\nhost: plugin\r\ncontent-length: 12\r\n\r\n{}",
        );
        assert!(p.method_is_post);
        assert_eq!(p.path, "/v2/api/post-hook");
        assert_eq!(p.body_len, 12);
        assert!(!p.close);
    }

    #[test]
    fn waits_for_the_rest_of_a_head() {
        assert!(matches!(
            parse_head(b"POST /v2/api/pre-hook HTTP/1.1\r\nhost: pl"),
            Head::Partial
        ));
    }

    #[test]
    fn refuses_chunked_oversized_and_endless_requests() {
        let chunked = b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(chunked), Head::Refuse(411)));
        let big = format!(
            "POST /x HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse_head(big.as_bytes()), Head::Refuse(413)));
        let mut endless = b"POST /x HTTP/1.1\r\n".to_vec();
        while endless.len() <= MAX_HEAD {
            endless.extend_from_slice(b"x-pad: 0123456789\r\n");
        }
        assert!(matches!(parse_head(&endless), Head::Refuse(431 | 400)));
    }

    #[test]
    fn answers_hooks_no_change_and_other_paths_404() {
        let r = Replies {
            handshake: b"{}".to_vec(),
            log: false,
        };
        let p = |m: bool, path: &str| Parsed {
            method_is_post: m,
            path: path.into(),
            head_len: 0,
            body_len: 0,
            close: false,
        };
        let text = |v: Vec<u8>| String::from_utf8(v).unwrap_or_default();
        let body = |b: &[u8]| format!("\r\n\r\n{}", String::from_utf8_lossy(b));
        assert!(
            text(answer(&r, &p(true, mvp::V2_API_POST_PATH), b""))
                .ends_with(&body(PostHookReply::UNCHANGED_JSON))
        );
        assert!(
            text(answer(&r, &p(true, mvp::V2_API_PRE_PATH), b""))
                .ends_with(&body(PreHookReply::UNCHANGED_JSON))
        );
        assert!(text(answer(&r, &p(true, "/v1/handshake"), b"")).starts_with("HTTP/1.1 404"));
        assert!(text(answer(&r, &p(false, mvp::V2_API_PRE_PATH), b"")).starts_with("HTTP/1.1 405"));
    }
}
