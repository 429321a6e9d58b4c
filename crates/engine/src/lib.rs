//! Berth's core domain: containers and their lifecycle, images, events, logs and the runtime that
//! runs real processes in namespaces. No HTTP server here (that is `berth-engine-api`).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod container;
pub mod engine;
pub mod error;
pub mod events;
pub mod images;
pub mod logs;
pub mod plugins;
pub mod runtime;
pub mod security;

pub use engine::{Attached, ContainerView, CreateContainer, Engine, WaitCondition, parse_signal};
pub use error::EngineError;
