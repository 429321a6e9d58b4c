//! Typed response bodies of the Engine API: the wire format Docker clients (the docker CLI,
//! docker-py, bollard) read. Bollard's generated models (`bollard_stubs::models`) are used where
//! they serialize exactly as Docker does; they skip every `None` field, so where Docker always
//! sends a key, even as `null` (container inspect, `/info`, volume labels…), or where a model
//! lacks a key Docker still sends (`VirtualSize`), the body is a struct of this module.
//! `tests/shapes.rs` pins the key set and types of each body.

pub mod container;
pub mod system;
