//! One module per command group. Plugin commands (`berth plugin ...`) will live in `plugin.rs`,
//! using `crate::client::raw` for the berth-specific endpoints.

pub mod container;
pub mod daemon;
pub mod image;
pub mod network;
pub mod plugin;
pub mod plugin_check;
pub mod system;
pub mod system_check;
pub mod volume;

use std::future::Future;

use crate::client::describe_error;

/// "The message was already printed; exit with this code."
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct Exit(pub u8);

/// Runs `op` for every name in order, printing the name on success and the docker-style error on
/// failure (like `docker stop c1 c2`); fails with exit 1 if any failed.
pub async fn for_each_name<F, Fut>(names: &[String], mut op: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut failed = false;
    for name in names {
        match op(name.clone()).await {
            Ok(()) => println!("{name}"),
            Err(err) => {
                eprintln!("{}", describe_error(&err));
                failed = true;
            }
        }
    }
    if failed { Err(Exit(1).into()) } else { Ok(()) }
}
