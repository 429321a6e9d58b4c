//! The errors of a plugin call ([`PluginError`], [`CallErrorKind`]) and the helpers that word
//! them: durations, sizes and body snippets as the messages show them.

use std::time::Duration;

/// A failed plugin call. Displays as `plugin "flocker": POST /v1/volume/volumes: deadline 5s exceeded`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin \"{plugin}\": {call}: {kind}")]
pub struct PluginError {
    /// Plugin name (or socket path before the handshake named it).
    pub plugin: String,
    /// `METHOD /path`.
    pub call: String,
    /// What went wrong.
    pub kind: CallErrorKind,
}

impl PluginError {
    /// The plugin answered 404: the call is not implemented / the plugin is not interested.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, CallErrorKind::NotFound)
    }

    /// The socket is missing or refuses connections: the plugin is not up (yet).
    pub fn is_not_up(&self) -> bool {
        matches!(self.kind, CallErrorKind::NotUp { .. })
    }

    /// The plugin is not Active (failed, crashed, disabled, still starting): the call was not made.
    pub fn is_not_active(&self) -> bool {
        matches!(self.kind, CallErrorKind::NotActive { .. })
    }

    /// The call's deadline fired.
    pub fn is_deadline(&self) -> bool {
        matches!(self.kind, CallErrorKind::Deadline(_))
    }

    /// The reply was larger than the call's size limit.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, CallErrorKind::TooLarge { .. })
    }
}

/// The reason of a [`PluginError`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallErrorKind {
    /// The deadline fired before a complete answer.
    #[error("deadline {} exceeded", fmt_duration(*.0))]
    Deadline(Duration),
    /// The plugin is not Active, so the call was not made (fail closed, `docs/semantics.md`).
    #[error("plugin is not active (state {state}): {reason}")]
    NotActive {
        /// The plugin's state (`disabled`, `failed`, `pending`).
        state: String,
        /// Why (the operator disabled it, or its last error).
        reason: String,
    },
    /// Socket missing or connection refused.
    #[error("plugin not up: connecting to {socket}: {reason}")]
    NotUp {
        /// Socket path.
        socket: String,
        /// OS error text.
        reason: String,
    },
    /// The reply was larger than the call's limit (the connection is dropped at the limit).
    #[error("reply exceeds the {} size limit", fmt_size(*.limit))]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Other transport failure (connection reset, protocol error).
    #[error("transport: {0}")]
    Transport(String),
    /// 404: not implemented / not interested.
    #[error("not implemented (404)")]
    NotFound,
    /// A non-200 status; `text` is the `Err` of a JSON body or the raw body.
    #[error("{text} (HTTP {status})")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error text.
        text: String,
    },
    /// A 200 reply carrying a non-empty `Err`/`Error`.
    #[error("{0}")]
    Plugin(String),
    /// The reply could not be decoded.
    #[error("decoding reply: {error}; body starts {snippet:?}")]
    Decode {
        /// Decoder message.
        error: String,
        /// The first bytes of the body.
        snippet: String,
    },
    /// The request could not be encoded.
    #[error("encoding request: {0}")]
    Encode(String),
}

/// `5s`, `1500ms`.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `16 MiB`, `512 KiB`, `100 bytes`.
pub fn fmt_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The first bytes of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let end = body.len().min(80);
    String::from_utf8_lossy(&body[..end]).into_owned()
}
