//! Group 6, robustness, on the cheapest call the plugin answers (its highest handshake):
//! concurrent calls on separate connections, the same call twice in a row,
//! a call after clients hung up mid-request and mid-reply, and a slow client that must not hold
//! up anyone else.

use std::time::Duration;

use berth_plugin_protocol::Protocol;
use berth_plugin_protocol::mvp::HandshakeV2Request;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::handshake::Found;
use crate::wire::{Call, Framing, raw_exchange};
use crate::{Ctx, Group, Outcome, verdict};

const G: Group = Group::Robustness;

/// Concurrent connections of the concurrency check.
pub const CONCURRENT: usize = 16;

fn same(a: &Call, b: &Call) -> bool {
    match (a.answer(), b.answer()) {
        (Some(x), Some(y)) => {
            x.status == y.status && (x.json.is_some() && x.json == y.json || x.body == y.body)
        }
        _ => false,
    }
}

/// Runs the group.
pub async fn run(ctx: &mut Ctx, found: &Found) {
    let Some((proto, _)) = found.answered.first() else {
        return;
    };
    let path = proto.handshake_path();
    let body = if *proto == Protocol::V2 {
        let offer = HandshakeV2Request::berth(env!("CARGO_PKG_VERSION"), 30_000);
        Bytes::from(serde_json::to_vec(&offer).unwrap_or_default())
    } else {
        Bytes::new()
    };
    let socket = ctx.probe.socket().to_path_buf();
    let deadline = ctx.probe.deadline;
    let reference = ctx.probe.post_bytes(path, body.clone()).await;

    // Concurrent calls, one connection each.
    let calls = futures::future::join_all(
        (0..CONCURRENT).map(|_| raw_exchange(&socket, path, &body, Framing::Length, deadline)),
    )
    .await;
    let bad = calls.iter().find(|c| !same(&reference, c));
    ctx.must(
        G,
        "concurrent-calls",
        "c-rob-concurrent",
        verdict(bad.is_none(), || {
            format!("{CONCURRENT} concurrent calls did not all get the same answer")
        }),
        bad,
    );

    // The same call twice in a row (the engine's kept-alive connection).
    let a = ctx.probe.post_bytes(path, body.clone()).await;
    let b = ctx.probe.post_bytes(path, body.clone()).await;
    ctx.must(
        G,
        "same-call-twice",
        "c-rob-repeat",
        verdict(same(&a, &b) && same(&reference, &a), || {
            "the same call twice got different answers".to_owned()
        }),
        Some(&b),
    );
    // Clients that hang up: mid-request (half a body), and before reading the reply.
    let mut problems = Vec::new();
    match UnixStream::connect(&socket).await {
        Ok(mut s) => {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: plugin.berth.localhost\r\nContent-Length: 1000\r\n\r\n{{\"half"
            );
            let _ = s.write_all(head.as_bytes()).await;
        }
        Err(e) => problems.push(format!("connecting: {e}")),
    }
    if let Ok(mut s) = UnixStream::connect(&socket).await {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: plugin.berth.localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(req.as_bytes()).await;
        let _ = s.write_all(&body).await;
    }
    ctx.probe.close_idle();
    let after = ctx.probe.post_bytes(path, body.clone()).await;
    if !same(&reference, &after) {
        problems.push(format!(
            "after clients hung up, the next call got {}",
            after.describe()
        ));
    }
    ctx.must(
        G,
        "call-after-drop",
        "c-rob-drop",
        verdict(problems.is_empty(), || problems.join("; ")),
        Some(&after),
    );

    // A slow client must not block others.
    let pause = Duration::from_millis(200);
    let slow_socket = socket.clone();
    let slow_body = body.clone();
    let slow = tokio::spawn(async move {
        raw_exchange(
            &slow_socket,
            path,
            &slow_body,
            Framing::Slow { pause },
            deadline + Duration::from_secs(5),
        )
        .await
    });
    // Let the slow client connect and start writing first.
    tokio::time::sleep(pause / 2).await;
    let fast = raw_exchange(&socket, path, &body, Framing::Length, deadline).await;
    let fast_done = std::time::Instant::now();
    let slow = slow.await.ok();
    let outcome = match &slow {
        None => Outcome::Fail("the slow client's task failed".to_owned()),
        Some(s) if !same(&reference, s) => {
            Outcome::Fail(format!("the slow client got {}", s.describe()))
        }
        Some(_) if !same(&reference, &fast) => Outcome::Fail(format!(
            "a call made while a slow client was sending got {}",
            fast.describe()
        )),
        Some(s) if s.wrote_at.is_some_and(|w| fast_done < w) => Outcome::Pass,
        Some(_) => Outcome::Fail(
            "a call was answered only after a slow client finished sending its request: one slow client stalls the plugin"
                .to_owned(),
        ),
    };
    ctx.must(G, "slow-client", "c-rob-slow", outcome, Some(&fast));
}
