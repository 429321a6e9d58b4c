//! A deliberately faulty Docker-protocol plugin for the fault-matrix tests: it answers
//! `/Plugin.Activate` and every `VolumeDriver.*`, `NetworkDriver.*`, `IpamDriver.*` and
//! `AuthZPlugin.*` call like a healthy plugin, except the one call chosen with `--on PATH`, where
//! it misbehaves as `--fault` says. Raw HTTP over tokio (no HTTP library) so it can break the
//! protocol in every way a real plugin might:
//!
//! - `hang`: reads the request, never answers (the connection stays open until the engine drops it);
//! - `trickle`: sends the status line and headers, then one body byte every 100 ms, forever;
//! - `status500`: `500 {"Err":"fault: status500"}`;
//! - `err200`: `200 {"Err":"fault: err200"}`;
//! - `nonjson`: `200` with an HTML body;
//! - `wrongtype`: a correct JSON answer labelled `Content-Type: text/html` (must be accepted);
//! - `huge`: a chunked `200` body that never ends;
//! - `crash`: the process exits while the call is in flight;
//! - `close`: answers correctly, then closes the connection (keep-alive dropped between calls).
//!
//! With `--on /Plugin.Activate` the handshake itself is the faulty call. `--handshake v1` answers
//! the MVP's `/v1/handshake` with `--interests` instead (volume hooks at `/v1/volume/volumes`, api
//! hooks at `/v1/api/pre-hook` and `/v1/api/post-hook`, answered `{}`: nothing rewritten), while
//! the `Plugin.Activate` families keep working on the same socket. Two filters narrow the faulty
//! call: `--match TEXT` (only calls whose request body contains TEXT, e.g. one API route among
//! all the requests an api hook or an authorization plugin sees) and `--skip N` (the first N
//! such calls are answered healthily, e.g. the volume hook at create before the one at start).
//! Each call is logged as a line `PATH` to `--log` (the faulty one as `PATH fault`); when the
//! engine drops the connection of a `hang`, `trickle` or `huge` call, `PATH closed` follows.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[derive(Parser, Clone)]
struct Args {
    /// Socket path.
    #[arg(long)]
    socket: PathBuf,
    /// The call that misbehaves, e.g. `/VolumeDriver.Create`.
    #[arg(long, default_value = "")]
    on: String,
    /// How it misbehaves (see the module doc).
    #[arg(long, default_value = "none")]
    fault: String,
    /// `Implements` of the handshake (comma list).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "VolumeDriver,NetworkDriver,IpamDriver,authz"
    )]
    implements: Vec<String>,
    /// Directory handed out as the Mountpoint of every volume.
    #[arg(long, default_value = "/tmp")]
    mountpoint: String,
    /// Append each call's path to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// `activate` (Docker's `/Plugin.Activate` only) or `v1` (also the MVP's `/v1/handshake`).
    #[arg(long, default_value = "activate")]
    handshake: String,
    /// `InterestedIn` of the v1 handshake (comma list).
    #[arg(long, value_delimiter = ',', default_value = "volume")]
    interests: Vec<String>,
    /// Only calls whose request body contains this text misbehave.
    #[arg(long, default_value = "")]
    r#match: String,
    /// The first N calls that would misbehave are answered healthily.
    #[arg(long, default_value_t = 0)]
    skip: u64,
}

/// Faulty calls passed over so far (`--skip`).
static SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Host part of the next address `IpamDriver.RequestAddress` hands out.
static NEXT_HOST: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(10);

/// The volumes created so far (a healthy driver knows its volumes).
static VOLUMES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn volumes() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    VOLUMES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A healthy plugin's answer to `path`.
fn healthy(args: &Args, path: &str, body: &Value) -> Value {
    let name = body["Name"].as_str().unwrap_or_default();
    match path {
        "/Plugin.Activate" => json!({"Implements": args.implements}),
        "/v1/handshake" if args.handshake == "v1" => json!({"InterestedIn": args.interests}),
        "/VolumeDriver.Create" => {
            volumes().insert(name.to_owned());
            json!({})
        }
        "/VolumeDriver.Remove" => {
            volumes().remove(name);
            json!({})
        }
        "/VolumeDriver.Get" if !volumes().contains(name) => {
            json!({"Err": format!("no such volume {name}")})
        }
        "/VolumeDriver.Get" => json!({"Volume": {"Name": name, "Mountpoint": args.mountpoint}}),
        "/VolumeDriver.List" => {
            let list: Vec<Value> = volumes()
                .iter()
                .map(|n| json!({"Name": n, "Mountpoint": args.mountpoint}))
                .collect();
            json!({ "Volumes": list })
        }
        "/VolumeDriver.Mount" | "/VolumeDriver.Path" => json!({"Mountpoint": args.mountpoint}),
        "/VolumeDriver.Capabilities" => json!({"Capabilities": {"Scope": "local"}}),
        "/NetworkDriver.GetCapabilities" => json!({"Scope": "local"}),
        "/IpamDriver.GetDefaultAddressSpaces" => {
            json!({"LocalDefaultAddressSpace": "l", "GlobalDefaultAddressSpace": "g"})
        }
        "/IpamDriver.RequestPool" => json!({"PoolID": body["Pool"], "Pool": body["Pool"]}),
        // The gateway request gets no address (the engine takes the pool's first); an endpoint
        // gets the next host of the pool (PoolID is the pool's CIDR, `a.b.c.0/24`).
        "/IpamDriver.RequestAddress" if !body["Options"]["RequestAddressType"].is_null() => {
            json!({})
        }
        "/IpamDriver.RequestAddress" => {
            let pool = body["PoolID"].as_str().unwrap_or_default();
            let (net, prefix) = pool.split_once('/').unwrap_or((pool, "24"));
            let base = net.rsplit_once('.').map_or(net, |(b, _)| b);
            let host = NEXT_HOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            json!({"Address": format!("{base}.{host}/{prefix}")})
        }
        "/AuthZPlugin.AuthZReq" | "/AuthZPlugin.AuthZRes" => json!({"Allow": true}),
        _ => json!({}),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one request: `(path, body, raw body)`, or `None` when the client closed.
async fn read_request(s: &mut UnixStream) -> Option<(String, Value, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let raw = &buf[head_end..head_end + len];
    let body = serde_json::from_slice(raw).unwrap_or(Value::Null);
    Some((path, body, String::from_utf8_lossy(raw).into_owned()))
}

/// Whether this call is the faulty one (`--on`, `--match`, `--skip`).
fn faulty(args: &Args, path: &str, raw: &str) -> bool {
    if path != args.on || !raw.contains(&args.r#match) {
        return false;
    }
    SKIPPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= args.skip
}

fn log(args: &Args, path: &str) {
    if let Some(log) = &args.log
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{path}");
    }
}

async fn serve(args: Args, mut s: UnixStream) {
    while let Some((path, body, raw)) = read_request(&mut s).await {
        let fault = faulty(&args, &path, &raw);
        log(
            &args,
            &if fault {
                format!("{path} fault")
            } else {
                path.clone()
            },
        );
        if !fault {
            let ok = healthy(&args, &path, &body).to_string();
            if s.write_all(response("200 OK", "application/json", &ok).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        // The faulty call: a correct answer where one is sent at all.
        let ok = healthy(&args, &path, &body).to_string();
        match args.fault.as_str() {
            "hang" => {
                // Never answer; note when the engine gives the connection up.
                let mut sink = [0u8; 4096];
                while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                log(&args, &format!("{path} closed"));
                return;
            }
            "trickle" => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(b" ").await.is_err() {
                        log(&args, &format!("{path} closed"));
                        return;
                    }
                }
            }
            "status500" => {
                let r = response(
                    "500 Internal Server Error",
                    "application/json",
                    r#"{"Err":"fault: status500"}"#,
                );
                let _ = s.write_all(r.as_bytes()).await;
            }
            "err200" => {
                let r = response("200 OK", "application/json", r#"{"Err":"fault: err200"}"#);
                let _ = s.write_all(r.as_bytes()).await;
            }
            "nonjson" => {
                let r = response("200 OK", "text/html", "<html>fault: nonjson</html>");
                let _ = s.write_all(r.as_bytes()).await;
            }
            "wrongtype" => {
                let _ = s
                    .write_all(response("200 OK", "text/html", &ok).as_bytes())
                    .await;
            }
            "huge" => {
                let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                while s.write_all(chunk.as_bytes()).await.is_ok() {}
                log(&args, &format!("{path} closed"));
                return;
            }
            "crash" => std::process::exit(3),
            "close" => {
                let _ = s
                    .write_all(response("200 OK", "application/json", &ok).as_bytes())
                    .await;
                return;
            }
            _ => {
                let _ = s
                    .write_all(response("200 OK", "application/json", &ok).as_bytes())
                    .await;
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)?;
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(serve(args.clone(), s));
    }
}
