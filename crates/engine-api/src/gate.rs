//! The readiness gate (DESIGN Semantics 5) and request attribution. At daemon start the socket
//! accepts at once but the gate is closed: user requests wait until the daemon opens it (every
//! plugin shook hands or failed), at most `timeout`, then get a 503 naming the plugins still
//! pending. `_ping`, `version`, plugin management (`/berth/plugins…`, `/plugins…`) and requests
//! made by plugins (on their own engine socket, see [`Caller`]) pass at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_plugin_host::Readiness;
use tokio::sync::watch;

use crate::error::ApiError;

/// Who made a request: a user on the engine socket, or a privileged plugin on its own socket.
/// Inserted as a request extension by the plugin sockets; absent means [`Caller::User`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A client of the main socket.
    User,
    /// The privileged plugin of this name (its engine socket).
    Plugin(String),
}

impl Caller {
    /// The caller of `req` (defaults to [`Caller::User`]).
    pub fn of<B>(req: &axum::http::Request<B>) -> Caller {
        req.extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::User)
    }
}

/// The gate: closed until [`Gate::open`], each waiting request bounded by `timeout`.
#[derive(Debug, Clone)]
pub struct Gate {
    opened: Arc<watch::Sender<bool>>,
    timeout: Duration,
    readiness: Option<Arc<Readiness>>,
}

impl Gate {
    /// A closed gate; `readiness` names the pending plugins in the 503.
    pub fn closed(timeout: Duration, readiness: Option<Arc<Readiness>>) -> Self {
        Self {
            opened: Arc::new(watch::Sender::new(false)),
            timeout,
            readiness,
        }
    }

    /// A gate that is open from the start (no plugins: engine-only servers and tests).
    pub fn open_now() -> Self {
        let g = Self::closed(Duration::ZERO, None);
        g.open();
        g
    }

    /// Opens the gate: waiting requests proceed.
    pub fn open(&self) {
        self.opened.send_replace(true);
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        *self.opened.borrow()
    }

    /// Waits until the gate opens, at most the timeout; on timeout the error names the plugins
    /// still pending.
    pub async fn wait(&self) -> Result<(), ApiError> {
        let mut rx = self.opened.subscribe();
        if tokio::time::timeout(self.timeout, rx.wait_for(|open| *open))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        let pending = self
            .readiness
            .as_ref()
            .map(|r| r.pending())
            .unwrap_or_default();
        let message = if pending.is_empty() {
            format!(
                "the engine is starting: plugins are not ready after {}s",
                self.timeout.as_secs_f64()
            )
        } else {
            format!(
                "the engine is starting: waited {}s for plugins to shake hands; still pending: {}",
                self.timeout.as_secs_f64(),
                pending.join(", ")
            )
        };
        Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message,
        })
    }
}

/// Whether `path` (version prefix already stripped) passes the gate unconditionally.
pub fn passes(path: &str) -> bool {
    path == "/_ping"
        || path == "/version"
        || path == "/plugins"
        || path.starts_with("/plugins/")
        || path == "/berth/plugins"
        || path.starts_with("/berth/plugins/")
}

/// The gate middleware (`axum::middleware::from_fn_with_state`).
pub async fn middleware(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    if gate.is_open() || passes(req.uri().path()) || Caller::of(&req) != Caller::User {
        return next.run(req).await;
    }
    match gate.wait().await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_plugin_host::ReadyState;

    #[test]
    fn exempt_paths() {
        for p in [
            "/_ping",
            "/version",
            "/plugins",
            "/plugins/x/json",
            "/berth/plugins/load",
        ] {
            assert!(passes(p), "{p}");
        }
        for p in ["/containers/json", "/info", "/pluginsx", "/berth/pluginsx"] {
            assert!(!passes(p), "{p}");
        }
    }

    #[tokio::test]
    async fn waits_then_opens_or_names_pending() {
        let r = Arc::new(Readiness::new());
        r.set("slow", ReadyState::Pending);
        let g = Gate::closed(Duration::from_millis(30), Some(r.clone()));
        let e = g.wait().await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("slow"), "{}", e.message);

        let g = Gate::closed(Duration::from_secs(5), Some(r));
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.wait().await.is_ok() });
        // Let the waiter run until it blocks on the closed gate (the test runtime has one
        // thread: each yield hands it the turn).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        g.open();
        assert!(waiter.await.unwrap());
    }
}
