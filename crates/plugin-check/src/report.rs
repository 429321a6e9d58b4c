//! The outcome of a run: one [`Check`] per rule tested, rendered as a table or JSON. Every check
//! names its rule by a stable anchor of `docs/protocol.md` ("Conformance rules").

use std::fmt::Write as _;

use serde::Serialize;

use crate::Group;

/// Where the rules are written down.
pub const RULES_DOC: &str = "docs/protocol.md";

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    /// The plugin follows the rule.
    Pass,
    /// The plugin breaks a rule (fails the run when the check is required).
    Fail(String),
    /// The plugin does something engines tolerate but that a SHOULD rule advises against.
    Warn(String),
    /// Not run, with the reason.
    Skip(String),
}

/// One request and its answer, truncated for display.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// `POST /path` and the body sent.
    pub sent: String,
    /// The status and body that came back, or the transport error.
    pub received: String,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable id, `group.name` (`volume.create-idempotent`).
    pub id: String,
    /// Its group.
    pub group: Group,
    /// The rule's anchor in `docs/protocol.md` (`c-vol-idempotent`).
    pub rule: &'static str,
    /// A failed required check fails the run; a failed optional one is reported only.
    pub required: bool,
    /// What was found.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// On failure: what was sent and what came back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
}

impl Check {
    /// Whether this check makes the run fail.
    pub fn is_failure(&self) -> bool {
        self.required && matches!(self.outcome, Outcome::Fail(_))
    }
}

/// What the handshake found, for the report header.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detected {
    /// Handshake paths that answered 200.
    pub handshakes: Vec<String>,
    /// MVP extension points (v1/v2 `InterestedIn` and subscriptions).
    pub interests: Vec<String>,
    /// `Implements` of `/Plugin.Activate`.
    pub implements: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The socket checked.
    pub socket: String,
    /// What the handshakes told.
    pub detected: Detected,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// True when no required check failed.
    pub passed: bool,
}

impl Report {
    /// Builds the report and its verdict.
    pub fn new(socket: String, detected: Detected, checks: Vec<Check>) -> Self {
        let passed = !checks.iter().any(Check::is_failure);
        Self {
            socket,
            detected,
            checks,
            passed,
        }
    }

    /// The ids of the failed checks (required or not), sorted.
    pub fn failed_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
            .map(|c| c.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The check with this id.
    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The human table: `CHECK  RULE  RESULT`, a detail line under every non-pass, a summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "plugin socket: {}", self.socket);
        let _ = writeln!(
            out,
            "handshakes: {}; interests: {}; implements: {}",
            list_or_none(&self.detected.handshakes),
            list_or_none(&self.detected.interests),
            list_or_none(&self.detected.implements)
        );
        let id_w = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let rule_w = self
            .checks
            .iter()
            .map(|c| c.rule.len() + RULES_DOC.len() + 1)
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(out, "\n{:id_w$}  {:rule_w$}  RESULT", "CHECK", "RULE");
        for c in &self.checks {
            let (word, reason) = match &c.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(r) if c.required => ("FAIL", Some(r)),
                Outcome::Fail(r) => ("fail (optional)", Some(r)),
                Outcome::Warn(r) => ("warn", Some(r)),
                Outcome::Skip(r) => ("skip", Some(r)),
            };
            let rule = format!("{RULES_DOC}#{}", c.rule);
            let _ = writeln!(out, "{:id_w$}  {rule:rule_w$}  {word}", c.id);
            if let Some(r) = reason {
                let _ = writeln!(out, "    {r}");
            }
            if matches!(c.outcome, Outcome::Fail(_) | Outcome::Warn(_))
                && let Some(x) = &c.exchange
            {
                let _ = writeln!(out, "    sent:     {}", x.sent);
                let _ = writeln!(out, "    received: {}", x.received);
            }
        }
        let count = |f: fn(&Outcome) -> bool| self.checks.iter().filter(|c| f(&c.outcome)).count();
        let _ = writeln!(
            out,
            "\n{} checks: {} passed, {} failed ({} required), {} warnings, {} skipped",
            self.checks.len(),
            count(|o| matches!(o, Outcome::Pass)),
            count(|o| matches!(o, Outcome::Fail(_))),
            self.checks.iter().filter(|c| c.is_failure()).count(),
            count(|o| matches!(o, Outcome::Warn(_))),
            count(|o| matches!(o, Outcome::Skip(_))),
        );
        let _ = writeln!(
            out,
            "{}",
            if self.passed {
                "result: PASS"
            } else {
                "result: FAIL"
            }
        );
        out
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// `s` cut to `max` characters with a `…(N bytes)` marker.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…({} bytes)", s.len())
}
