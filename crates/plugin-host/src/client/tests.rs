//! Tests of the plugin client against real UNIX-socket servers.

use super::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// A keep-alive `200` with the body `{}`.
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";

/// Binds `dir/name` and runs `conn` on every connection accepted there, each on its own task.
fn serve<F, Fut>(dir: &Path, name: &str, conn: F) -> PathBuf
where
    F: Fn(UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sock = dir.join(name);
    let listener = UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(conn(s));
        }
    });
    sock
}

/// Serves canned raw HTTP responses, one per connection, in order.
fn canned(dir: &Path, responses: Vec<(&'static str, &'static str)>) -> PathBuf {
    let sock = dir.join("canned.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        for r in responses {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let (status, body) = r;
            let raw = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/weird\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(raw.as_bytes()).await.unwrap();
            let _ = s.shutdown().await;
        }
    });
    sock
}

#[tokio::test]
async fn docker_lenient_response_rules() {
    let d = tempfile::tempdir().unwrap();
    let sock = canned(
        d.path(),
        vec![
            ("200 OK", "{\"Mountpoint\":\"/m\",\"Unknown\":[1,2]}\n"),
            ("500 Internal Server Error", "{\"Err\":\"no device\"}"),
            ("400 Bad Request", "plain trouble"),
            ("404 Not Found", "not found"),
            ("201 Created", "{}"),
            ("200 OK", ""),
            ("200 OK", "{\"Error\":\"ipam no\"}"),
            ("200 OK", "<html>"),
        ],
    );
    let c = PluginClient::new("drv", &sock);
    let t = Duration::from_secs(2);
    let v: serde_json::Value = c
        .call("/VolumeDriver.Mount", &serde_json::json!({}), t)
        .await
        .unwrap();
    assert_eq!(v["Mountpoint"], "/m");
    let e = c
        .call::<_, serde_json::Value>("/VolumeDriver.Mount", &(), t)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin \"drv\": POST /VolumeDriver.Mount: no device (HTTP 500)"
    );
    let e = c
        .call::<_, serde_json::Value>("/x", &(), t)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin \"drv\": POST /x: plain trouble (HTTP 400)"
    );
    let e = c
        .call::<_, serde_json::Value>("/x", &(), t)
        .await
        .unwrap_err();
    assert!(e.is_not_found());
    let e = c
        .call::<_, serde_json::Value>("/x", &(), t)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, CallErrorKind::Status { status: 201, .. }),
        "success is 200 only"
    );
    let v: serde_json::Value = c.call_empty("/Plugin.Activate", t).await.unwrap();
    assert_eq!(v, serde_json::json!({}), "empty 200 body reads as {{}}");
    let e = c
        .call_empty::<serde_json::Value>("/IpamDriver.RequestPool", t)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin \"drv\": POST /IpamDriver.RequestPool: ipam no"
    );
    let e = c
        .call_empty::<serde_json::Value>("/x", t)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("decoding reply")
            && e.to_string().contains("body starts \"<html>\""),
        "{e}"
    );
    assert_eq!(c.dials(), 8, "Connection: close means a new dial each time");
}

/// Answers the first request on each connection, then reads but never answers.
fn answers_once(dir: &Path) -> PathBuf {
    serve(dir, "once.sock", |mut s| async move {
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(OK.as_bytes()).await.unwrap();
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
}

/// Two calls on one connection to [`answers_once`]: the first with `first` as its deadline
/// (answered), the second with `second` (never answered). Returns how long the second took.
async fn second_call_on_reused_connection(
    sock: &Path,
    first: Duration,
    second: Duration,
) -> Duration {
    let c = PluginClient::new("p", sock);
    let _: serde_json::Value = c.call_empty("/x", first).await.unwrap();
    let t = std::time::Instant::now();
    let e = c
        .call_empty::<serde_json::Value>("/x", second)
        .await
        .unwrap_err();
    assert!(e.is_deadline(), "{e}");
    assert_eq!(c.dials(), 1, "the second call reused the connection");
    t.elapsed()
}

#[tokio::test]
async fn deadline_holds_on_a_reused_connection() {
    let d = tempfile::tempdir().unwrap();
    let sock = answers_once(d.path());
    // The connection's timer was last set far out: the next call's shorter deadline fires.
    let took = second_call_on_reused_connection(
        &sock,
        Duration::from_secs(30),
        Duration::from_millis(150),
    )
    .await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The timer was last set close and has not fired yet: a later deadline is honoured in
    // full, not cut short when the earlier setting comes due.
    let took = second_call_on_reused_connection(
        &sock,
        Duration::from_millis(100),
        Duration::from_millis(400),
    )
    .await;
    assert!(took >= Duration::from_millis(390), "{took:?}");
}

#[tokio::test]
async fn deadline_names_plugin_call_and_duration() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("mute.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let c = PluginClient::new("flocker", &sock);
    let e = c
        .call::<_, serde_json::Value>("/v1/volume/volumes", &(), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin \"flocker\": POST /v1/volume/volumes: deadline 200ms exceeded"
    );
    let e = PluginClient::new("gone", d.path().join("none.sock"))
        .call_empty::<()>("/x", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(e.is_not_up(), "{e}");
    assert_eq!(fmt_duration(Duration::from_secs(5)), "5s");
}

/// Streams an endless chunked 200 reply to each request; counts the bytes it managed to send.
fn endless(dir: &Path, sent: Arc<AtomicU64>) -> PathBuf {
    serve(dir, "endless.sock", move |mut s| {
        let sent = sent.clone();
        async move {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            while s.write_all(chunk.as_bytes()).await.is_ok() {
                sent.fetch_add(0x10000, Ordering::Relaxed);
            }
        }
    })
}

#[tokio::test]
async fn endless_reply_fails_at_the_size_limit_without_buffering_past_it() {
    let d = tempfile::tempdir().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let sock = endless(d.path(), sent.clone());
    let c = PluginClient::new("hose", &sock);
    let limit = 1 << 20;
    let t = std::time::Instant::now();
    let e = c
        .call_bounded::<_, serde_json::Value>(
            "/VolumeDriver.Get",
            &(),
            Duration::from_secs(20),
            limit,
        )
        .await
        .unwrap_err();
    assert!(e.is_too_large(), "{e}");
    assert_eq!(
        e.to_string(),
        "plugin \"hose\": POST /VolumeDriver.Get: reply exceeds the 1 MiB size limit"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failed fast, not at the deadline: {:?}",
        t.elapsed()
    );
    // The connection was dropped at the limit: the plugin can push at most the limit plus
    // what the socket buffers hold, never an unbounded stream.
    let stopped = sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = sent.load(Ordering::Relaxed);
    assert!(
        later < (limit as u64) + (8 << 20),
        "plugin pushed {later} bytes"
    );
    assert!(
        later - stopped <= 0x10000,
        "still streaming: {stopped} then {later}"
    );
}

#[tokio::test]
async fn declared_length_over_the_limit_fails_before_reading_the_body() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("big.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        // Claims 1 GiB, sends a few bytes, then stalls: only the header can end the call.
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n{\"a\":";
        s.write_all(head.as_bytes()).await.unwrap();
        std::future::pending::<()>().await;
    });
    let c = PluginClient::new("liar", &sock);
    let e = c
        .call_bounded::<_, serde_json::Value>("/x", &(), Duration::from_secs(20), 16 << 20)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin \"liar\": POST /x: reply exceeds the 16 MiB size limit"
    );
}

#[tokio::test]
async fn each_call_carries_its_remaining_budget() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("budget.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        tx.send(String::from_utf8_lossy(&buf[..n]).into_owned())
            .unwrap();
        s.write_all(OK.as_bytes()).await.unwrap();
    });
    let c = PluginClient::new("p", &sock);
    let _: serde_json::Value = c
        .call_empty("/x", Duration::from_millis(2500))
        .await
        .unwrap();
    let head = rx.recv().await.unwrap().to_ascii_lowercase();
    let ms: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("berth-deadline-ms: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no budget header in {head}"));
    assert!((2000..=2500).contains(&ms), "{ms}");
}

/// Answers the first request of each connection (keep-alive, no `Connection: close`), then
/// closes the connection at once: a plugin that drops keep-alive between calls.
fn answers_then_closes(dir: &Path) -> PathBuf {
    serve(dir, "closes.sock", |mut s| async move {
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(OK.as_bytes()).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_plugin_closed_between_calls_is_never_an_error() {
    // The next call may take the idle connection before the client has seen the plugin's
    // close: writing the request then fails (the plugin never got it), and the call is sent
    // again on a fresh connection instead of failing.
    let d = tempfile::tempdir().unwrap();
    let sock = answers_then_closes(d.path());
    let c = PluginClient::new("p", &sock);
    for i in 0..300 {
        let r: Result<serde_json::Value, _> = c
            .call("/x", &serde_json::json!({"i": i}), Duration::from_secs(5))
            .await;
        assert!(r.is_ok(), "call {i}: {}", r.unwrap_err());
    }
}

/// A waker that counts its wake-ups and passes them on to the task polling through it.
#[derive(Default)]
struct Wakes {
    n: AtomicU64,
    task: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.n.fetch_add(1, Ordering::SeqCst);
        if let Some(w) = self.task.lock().unwrap().as_ref() {
            w.wake_by_ref();
        }
    }
}

/// A finished call leaves no deadline timer armed on its idle connection: an armed one makes
/// every park of the daemon's runtime wait with a timeout, which costs requests no plugin hooks
/// 3-5 % (README, "Idle hooks"). Observed through the timer's wake-up: with the timer left armed,
/// it fires at the finished call's deadline and wakes the waker the call was last polled with.
#[tokio::test]
async fn an_idle_connection_keeps_no_timer_armed() {
    let d = tempfile::tempdir().unwrap();
    let sock = answers_once(d.path());
    let c = PluginClient::new("p", &sock);
    let wakes = Arc::new(Wakes::default());
    let counting = std::task::Waker::from(wakes.clone());
    let mut call = std::pin::pin!(c.post_raw("/x", Bytes::new(), Duration::from_millis(100)));
    let reply = std::future::poll_fn(|cx| {
        *wakes.task.lock().unwrap() = Some(cx.waker().clone());
        call.as_mut()
            .poll(&mut std::task::Context::from_waker(&counting))
    })
    .await
    .expect("the call is answered");
    assert_eq!(reply.status, 200);
    let after_the_call = wakes.n.load(Ordering::SeqCst);
    // Past the finished call's deadline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        wakes.n.load(Ordering::SeqCst),
        after_the_call,
        "the finished call's deadline timer fired: it was left armed"
    );
}
