//! Berth's core domain: containers and their lifecycle, images, events, logs and the runtime that
//! runs real processes in namespaces. No HTTP server here (that is `berth-engine-api`).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod archive;
mod archive_images;
mod archive_root;
mod boot;
pub mod catchup;
pub mod cgroups;
pub mod changes;
pub mod commit;
mod connect;
pub mod container;
mod create;
pub mod devices;
pub mod df;
pub mod engine;
pub mod error;
mod etc;
pub mod events;
pub mod exec;
mod exit;
pub mod handle;
pub mod health;
pub mod images;
pub mod limits;
pub mod links;
pub mod log_config;
pub mod logs;
mod mounts;
pub mod pause;
pub mod plugins;
pub mod ports;
pub mod prune;
mod remove;
mod rename;
mod resources;
pub mod runtime;
pub mod security;
mod spread;
pub mod standalone;
mod start;
pub mod stats;
mod stop;
mod streams;
pub mod top;
pub mod update;
mod volumes_from;

pub use boot::OpenError;
pub use create::CreateContainer;
pub use engine::Engine;
pub use error::EngineError;
pub use handle::{Attached, Container, ContainerView, Observed, WaitCondition};
pub use stop::parse_signal;

#[cfg(test)]
mod tests;
