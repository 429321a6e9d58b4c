//! `authz-policy`: an example Docker authorization plugin (`/Plugin.Activate` →
//! `{"Implements": ["authz"]}`, then `AuthZPlugin.AuthZReq` / `AuthZRes`), unchanged from what
//! dockerd would host. It denies requests whose URI contains a `--deny` substring, requests whose
//! body contains a `--deny-body` substring, and creates of privileged containers, allows everything else, and can log what it saw (`--log FILE`, one JSON
//! line per request phase) so tests can check that the engine executed only bodies it was shown.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_plugin_sdk::protocol::Protocol;
use berth_plugin_sdk::protocol::legacy::authz;
use berth_plugin_sdk::{HandlerError, Plugin};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Socket to serve on (Docker-style discovery: `<plugin-dir>/<name>.sock`).
    #[arg(
        long,
        env = "PLUGIN_SOCKET",
        default_value = "/run/docker/plugins/authz-policy.sock"
    )]
    socket: PathBuf,
    /// Deny requests whose URI contains this text (repeatable).
    #[arg(long)]
    deny: Vec<String>,
    /// Deny requests whose body contains this text (repeatable).
    #[arg(long)]
    deny_body: Vec<String>,
    /// Append one JSON line per call to this file.
    #[arg(long)]
    log: Option<PathBuf>,
}

type Log = Arc<Mutex<Option<std::fs::File>>>;

fn record(log: &Log, phase: &str, req: &authz::Request) {
    if let Ok(mut guard) = log.lock()
        && let Some(f) = guard.as_mut()
    {
        let line = json!({
            "Phase": phase, "Method": req.request_method, "Uri": req.request_uri,
            "Body": String::from_utf8_lossy(&req.request_body), "Status": req.response_status_code,
        });
        let _ = writeln!(f, "{line}");
    }
}

/// The policy decision for one request.
fn decide(deny: &[String], deny_body: &[String], req: &authz::Request) -> authz::Response {
    if let Some(d) = deny.iter().find(|d| req.request_uri.contains(d.as_str())) {
        return authz::Response {
            allow: false,
            msg: format!("{} is not allowed here (matches {d:?})", req.request_uri),
            err: String::new(),
        };
    }
    let body = String::from_utf8_lossy(&req.request_body);
    if let Some(d) = deny_body.iter().find(|d| body.contains(d.as_str())) {
        return authz::Response {
            allow: false,
            msg: format!("the request body carries {d:?}"),
            err: String::new(),
        };
    }
    let privileged = serde_json::from_slice::<serde_json::Value>(&req.request_body)
        .ok()
        .and_then(|v| {
            v.pointer("/HostConfig/Privileged")
                .and_then(serde_json::Value::as_bool)
        })
        .unwrap_or(false);
    if privileged {
        return authz::Response {
            allow: false,
            msg: "privileged containers are not allowed".into(),
            err: String::new(),
        };
    }
    authz::Response {
        allow: true,
        msg: String::new(),
        err: String::new(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let log: Log = Arc::new(Mutex::new(match &args.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    }));
    let deny = Arc::new((args.deny.clone(), args.deny_body.clone()));
    let (log_req, log_res, deny_req) = (log.clone(), log.clone(), deny.clone());
    Plugin::builder("authz-policy")
        .answer_only(&[Protocol::Activate])
        .implements("authz")
        .route_json(authz::REQ_PATH, move |req: authz::Request| {
            record(&log_req, "req", &req);
            let answer = decide(&deny_req.0, &deny_req.1, &req);
            async move { Ok::<_, HandlerError>(answer) }
        })
        .route_json(authz::RES_PATH, move |req: authz::Request| {
            record(&log_res, "res", &req);
            async move {
                Ok::<_, HandlerError>(authz::Response {
                    allow: true,
                    ..Default::default()
                })
            }
        })
        .build()
        .serve_until_signal(&args.socket)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let mut r = authz::Request {
            request_uri: "/v1.50/volumes".into(),
            ..Default::default()
        };
        assert!(!decide(&["/volumes".into()], &[], &r).allow);
        r.request_uri = "/v1.50/containers/create".into();
        r.request_body = br#"{"HostConfig":{"Privileged":true}}"#.to_vec();
        assert!(!decide(&[], &[], &r).allow);
        r.request_body = br#"{"Image":"host"}"#.to_vec();
        assert!(decide(&[], &[], &r).allow);
        assert!(!decide(&[], &["host".into()], &r).allow);
    }
}
