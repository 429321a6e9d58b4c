//! The call's budget: every engine call carries its remaining deadline in the `Berth-Deadline-Ms`
//! header; the server reads it and makes it visible to the handler of that call through
//! [`remaining`] and [`deadline`] (a task-local: tasks a handler spawns do not inherit it), and
//! [`within_budget`] ends a piece of work when the engine would stop waiting anyway.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::HandlerError;

pub use berth_plugin_protocol::DEADLINE_HEADER;

tokio::task_local! {
    static DEADLINE: Option<Instant>;
}

/// Runs `fut` with the deadline `ms` milliseconds from now (`None`: no deadline), as read from
/// the call's header.
pub(crate) async fn scope<F: Future>(ms: Option<u64>, fut: F) -> F::Output {
    let until = ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    DEADLINE.scope(until, fut).await
}

/// When the engine stops waiting for the current call, if it said (Berth does, on every call;
/// Docker does not).
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok().flatten()
}

/// What is left of the current call's budget (zero once it has passed).
pub fn remaining() -> Option<Duration> {
    deadline().map(|d| d.saturating_duration_since(Instant::now()))
}

/// Runs `work` but gives up when the current call's budget runs out (the engine has then already
/// failed the call): a 504 `HandlerError` naming the budget. Without a budget, `work` runs to its end.
pub async fn within_budget<T, F>(work: F) -> Result<T, HandlerError>
where
    F: Future<Output = Result<T, HandlerError>>,
{
    match deadline() {
        Some(until) => tokio::time::timeout_at(until, work)
            .await
            .unwrap_or_else(|_| {
                Err(HandlerError {
                    status: 504,
                    message: "gave up: the engine's deadline for this call passed".to_owned(),
                })
            }),
        None => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_is_visible_in_scope_only() {
        assert!(remaining().is_none());
        scope(Some(1500), async {
            let r = remaining().unwrap();
            assert!(
                r <= Duration::from_millis(1500) && r > Duration::from_millis(1000),
                "{r:?}"
            );
        })
        .await;
        let e = scope(
            Some(50),
            within_budget(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, HandlerError>(())
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, 504);
        scope(None, async { assert!(deadline().is_none()) }).await;
    }
}
