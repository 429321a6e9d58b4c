//! Driver lookup, written once for volume, network and IPAM drivers: a driver name that is not
//! built in names a plugin, loaded already or found by Docker-style discovery (then loaded at the
//! end of the load order); a plugin that shook hands the `/Plugin.Activate` way must list the
//! driver interface in its `Implements`. The volume and network stores map the outcome to their
//! own errors.

use std::sync::Arc;

use berth_plugin_protocol::Protocol;

use crate::discovery;
use crate::plugin::LoadedPlugin;
use crate::record::LoadOptions;
use crate::registry::PluginHost;

/// Why no plugin acts as the driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverLookupError {
    /// No plugin of that name is loaded or discoverable (or there is no plugin host).
    #[error("plugin \"{0}\" not found")]
    NotFound(String),
    /// A plugin of that name was discovered but could not be loaded.
    #[error("loading the discovered plugin: {0}")]
    Load(String),
    /// The plugin does not implement the interface (`Implements` lists the others).
    #[error("it implements {0:?}")]
    NotImplemented(Vec<String>),
}

impl DriverLookupError {
    /// Why the plugin found is not a driver (`None` when none was found).
    pub fn not_a_driver_reason(&self) -> Option<String> {
        match self {
            DriverLookupError::NotFound(_) => None,
            other => Some(other.to_string()),
        }
    }
}

/// The plugin acting as driver `name` for `interface` (`VolumeDriver`, `NetworkDriver`,
/// `IpamDriver`): a loaded plugin of that name, else one found by discovery, which is loaded.
pub async fn find_driver(
    host: Option<&PluginHost>,
    name: &str,
    interface: &str,
) -> Result<Arc<LoadedPlugin>, DriverLookupError> {
    let not_found = || DriverLookupError::NotFound(name.to_owned());
    let host = host.ok_or_else(not_found)?;
    let plugin = match host.get(name) {
        Some(p) => p,
        None => {
            if discovery::discover(name, &host.config().discovery_dirs).is_err() {
                return Err(not_found());
            }
            host.load_discovered(name, LoadOptions::default())
                .await
                .map_err(|e| DriverLookupError::Load(e.to_string()))?
        }
    };
    if plugin.protocol() == Protocol::Activate && !plugin.implements(interface) {
        return Err(DriverLookupError::NotImplemented(
            plugin.record().implements.clone(),
        ));
    }
    Ok(plugin)
}
