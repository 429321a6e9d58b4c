//! Berth's core domain: containers and their lifecycle, images, events, logs and the runtime that
//! runs real processes in namespaces. No HTTP server here (that is `berth-engine-api`).

pub mod cgroups;
pub mod container;
pub mod engine;
pub mod error;
pub mod events;
pub mod images;
pub mod logs;
pub mod plugins;
pub mod resources;
pub mod runtime;
pub mod stats;

pub use engine::{Attached, ContainerView, CreateContainer, Engine, WaitCondition, parse_signal};
pub use error::EngineError;
