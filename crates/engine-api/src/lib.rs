//! The Docker Engine API subset served by `berth daemon`: the axum router, wire DTOs, the one
//! error→HTTP mapping, the version-prefix layer, streaming endpoints (attach, wait, logs, events),
//! and [`daemon::run`], which wires the engine to a UNIX socket.

pub mod daemon;
