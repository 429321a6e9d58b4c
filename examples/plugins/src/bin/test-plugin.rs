//! `test-plugin`: a configurable plugin for tests. Flags (or `TEST_PLUGIN_*` env vars) choose the
//! handshake versions it answers, a start delay, latency, hangs, failures and how it rewrites
//! volume paths; it logs every extension call (and its own shutdown) to `--log` and reports its
//! connection and request counters on `POST /Test.Stats`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_plugin_sdk::protocol::mvp::NetworkMessage;
use berth_plugin_sdk::protocol::{FailurePolicy, Protocol};
use berth_plugin_sdk::{HandlerError, Plugin, Reply};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Clone)]
struct Args {
    /// Socket path.
    #[arg(long, env = "TEST_PLUGIN_SOCKET")]
    socket: PathBuf,
    /// Plugin name in the handshake.
    #[arg(long, env = "TEST_PLUGIN_NAME", default_value = "test")]
    name: String,
    /// Handshakes answered: comma list of v2, v1, activate.
    #[arg(long, env = "TEST_PLUGIN_ANSWER", default_value = "v2,v1,activate")]
    answer: String,
    /// Sleep this long before listening.
    #[arg(long, env = "TEST_PLUGIN_START_DELAY_MS", default_value_t = 0)]
    start_delay_ms: u64,
    /// Do not listen until this file exists (checked every 20 ms): a plugin slow to come up,
    /// gated by the test.
    #[arg(long)]
    wait_for: Option<PathBuf>,
    /// Stop listening once one handshake was answered and exit, leaving the socket file behind
    /// as a SIGKILLed process does: the previous incarnation of a plugin that dies just after
    /// a new daemon shook hands with it.
    #[arg(long)]
    exit_after_handshake: bool,
    /// Accept connections but never answer anything.
    #[arg(long, env = "TEST_PLUGIN_NEVER_ANSWER")]
    never_answer: bool,
    /// Answer the handshakes with malformed JSON.
    #[arg(long)]
    malformed: bool,
    /// Fail every extension call with this message.
    #[arg(long, env = "TEST_PLUGIN_FAIL")]
    fail: Option<String>,
    /// Send failures as 200 + Err instead of 500 + Err.
    #[arg(long)]
    fail_with_200: bool,
    /// Latency added to every extension call.
    #[arg(long, env = "TEST_PLUGIN_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Volume: HostPath becomes HostPath + this suffix.
    #[arg(long, default_value = "")]
    suffix: String,
    /// Append "<name> <path>" for every extension call to this file.
    #[arg(long, env = "TEST_PLUGIN_LOG")]
    log: Option<PathBuf>,
    /// v2: requested deadline.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// v2: requested failure policy.
    #[arg(long)]
    failure_policy: Option<FailurePolicy>,
    /// Activate: Implements entries.
    #[arg(long, value_delimiter = ',')]
    implements: Vec<String>,
    /// Version string (v2).
    #[arg(long, default_value = "1.0")]
    version: String,
    /// Also take part in the `api` extension point (a pre-hook on every request that appends
    /// `seen=<name>` to the query). Off by default: an api plugin sees every engine request.
    #[arg(long, env = "TEST_PLUGIN_API")]
    api: bool,
    /// With `--api`: the requests the pre-hook subscribes to (`METHOD path`, repeatable; default
    /// every request).
    #[arg(long)]
    api_subscribe: Vec<String>,
    /// With `--api`: answer every api hook with this raw body (status 200), e.g. malformed JSON
    /// or a reply of the wrong `Type`.
    #[arg(long)]
    api_reply: Option<String>,
    /// With `--api`: also a post-hook on the same requests that appends this plugin's name to a
    /// `Seen` list in a JSON object response (to watch post-hooks chain).
    #[arg(long)]
    api_post: bool,
}

fn log_call(args: &Args, path: &str) {
    if let Some(log) = &args.log
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{} {}", args.name, path);
    }
}

/// Whether `path` is listed in its directory. Not `path.exists()`: in a plugin container whose
/// root is an overlay on the host's `/`, a lookup that missed is cached by the overlay, and a
/// file the host creates later in the lower layer stays invisible to it (while a listing of the
/// directory shows it).
fn listed(path: &std::path::Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name() == name)
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.start_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.start_delay_ms)).await;
    }
    if let Some(gate) = &args.wait_for {
        while !listed(gate) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let protocols: Vec<Protocol> = args
        .answer
        .split(',')
        .filter_map(|s| match s.trim() {
            "v2" => Some(Protocol::V2),
            "v1" => Some(Protocol::V1),
            "activate" => Some(Protocol::Activate),
            _ => None,
        })
        .collect();
    let mut b = Plugin::builder(args.name.clone())
        .author("Berth tests")
        .version(args.version.clone())
        .answer_only(&protocols);
    if let Some(ms) = args.deadline_ms {
        b = b.deadline_ms(ms);
    }
    if let Some(p) = args.failure_policy {
        b = b.failure_policy(p);
    }
    for i in &args.implements {
        b = b.implements(i.clone());
    }
    let stats = b.stats();
    b = b.route_raw("/Test.Stats", move |_| {
        let s = stats.clone();
        async move {
            Reply::json(
                &serde_json::json!({"Connections": s.connections(), "Requests": s.requests()}),
            )
        }
    });
    let shared = Arc::new(args.clone());
    let handshaken = Arc::new(tokio::sync::Notify::new());
    let a = shared.clone();
    let h = handshaken.clone();
    b = b.interceptor(move |_method, path| {
        let a = a.clone();
        let h = h.clone();
        async move {
            if a.never_answer {
                std::future::pending::<()>().await;
            }
            let handshake = path.ends_with("handshake") || path == "/Plugin.Activate";
            if handshake {
                if a.exit_after_handshake {
                    // The answer still goes out: the server stops after the requests in flight.
                    h.notify_one();
                }
                return a
                    .malformed
                    .then(|| Reply::text(200, "{\"Name\": oops not json"));
            }
            if path == "/Test.Stats" {
                return None;
            }
            if let Some(body) = a.api_reply.as_ref().filter(|_| path.contains("/api/")) {
                return Some(Reply {
                    status: http_ok(),
                    content_type: "application/json",
                    body: body.clone().into(),
                });
            }
            log_call(&a, &path);
            if a.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(a.latency_ms)).await;
            }
            match &a.fail {
                Some(msg) if a.fail_with_200 => Some(Reply {
                    status: http_ok(),
                    content_type: "application/json",
                    body: serde_json::json!({"Err": msg}).to_string().into(),
                }),
                Some(msg) => Some(Reply::error(500, msg)),
                None => None,
            }
        }
    });
    let a = shared.clone();
    b = b.volume(move |mut m| {
        let suffix = a.suffix.clone();
        async move {
            m.host_path.push_str(&suffix);
            Ok::<_, HandlerError>(m)
        }
    });
    let a = shared.clone();
    b = b.network(move |m: NetworkMessage| {
        let name = a.name.clone();
        async move {
            let mut out = NetworkMessage::default();
            if m.ip_address.is_none() {
                out.ip_address = Some(format!("10.99.0.{}/24", name.len()));
            }
            Ok::<_, HandlerError>(out)
        }
    });
    if shared.api {
        let a = shared.clone();
        let subs: Vec<&str> = if shared.api_subscribe.is_empty() {
            vec!["* *"]
        } else {
            shared.api_subscribe.iter().map(String::as_str).collect()
        };
        b = b.api_pre(&subs, move |mut r| {
            let name = a.name.clone();
            async move {
                let sep = if r.request.contains('?') { '&' } else { '?' };
                r.request = format!("{}{sep}seen={name}", r.request);
                Ok::<_, HandlerError>(r)
            }
        });
        if shared.api_post {
            let a = shared.clone();
            b = b.api_post(&subs, move |_, mut resp| {
                let name = a.name.clone();
                async move {
                    let parsed = resp.body.as_deref().map(serde_json::from_str::<Value>);
                    if let Some(Ok(Value::Object(mut o))) = parsed {
                        if let Value::Array(seen) = o.entry("Seen").or_insert_with(|| json!([])) {
                            seen.push(Value::String(name));
                        }
                        resp.body = Some(Value::Object(o).to_string());
                    }
                    Ok::<_, HandlerError>(resp)
                }
            });
        }
    }
    if args.exit_after_handshake {
        let _ = std::fs::remove_file(&args.socket);
        let listener = tokio::net::UnixListener::bind(&args.socket)?;
        // The socket file stays: nobody listens on it any more (connections are refused).
        b.build()
            .serve_listener(listener, async move { handshaken.notified().await })
            .await;
        log_call(&args, "gone");
        return Ok(());
    }
    b.build().serve_until_signal(&args.socket).await?;
    log_call(&args, "shutdown");
    Ok(())
}

fn http_ok() -> berth_plugin_sdk::StatusCode {
    berth_plugin_sdk::StatusCode::OK
}
