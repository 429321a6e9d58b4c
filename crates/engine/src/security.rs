//! Validation of a container's confinement options at create time, so that a bad capability
//! name, `--security-opt` or seccomp profile is a 400 naming the option and the reason (as in
//! Docker), not a failed start. The runtime interprets the same options at start
//! (`runtime::options`).

use crate::container::SecurityOptions;
use crate::error::EngineError;
use crate::runtime::options;

/// Highest capability number this kernel may know; `interpret` only uses it to size `ALL`.
const LAST_CAP: u32 = 63;

/// Checks every option; the error names the option and why it is refused.
pub fn validate(opts: &SecurityOptions) -> Result<(), EngineError> {
    options::interpret(opts, LAST_CAP)
        .map(|_| ())
        .map_err(EngineError::Invalid)?;
    match opts.cgroupns_mode.as_str() {
        "" | "host" | "private" => {}
        other => {
            return Err(EngineError::Invalid(format!(
                "invalid cgroup namespace mode {other:?}: use \"host\" or \"private\""
            )));
        }
    }
    if !matches!(opts.uts_mode.as_str(), "" | "host") {
        return Err(EngineError::Invalid(format!(
            "invalid UTS mode {:?}: use \"host\" or leave it empty",
            opts.uts_mode
        )));
    }
    if !matches!(opts.pid_mode.as_str(), "" | "host") {
        return Err(EngineError::Invalid(format!(
            "invalid PID mode {:?}: use \"host\" or leave it empty (joining another container's pid namespace is not supported)",
            opts.pid_mode
        )));
    }
    for g in &opts.group_add {
        if g.is_empty() || g.contains([':', '\0']) {
            return Err(EngineError::Invalid(format!(
                "invalid GroupAdd entry {g:?}: expected a group name or number"
            )));
        }
    }
    Ok(())
}

/// Checks `Config.User` (`NAME|UID[:GROUP|GID]`); names are resolved at start, in the
/// container's own `/etc/passwd` and `/etc/group`.
pub fn validate_user(user: &str) -> Result<(), EngineError> {
    if user.contains('\0') || user.matches(':').count() > 1 || user.starts_with(':') {
        return Err(EngineError::Invalid(format!(
            "invalid Config.User {user:?}: expected NAME|UID[:GROUP|GID]"
        )));
    }
    Ok(())
}
