//! Example plugins built on the SDK (binaries in `src/bin/`): `hello-volume`, a tiny seed-v1 volume
//! plugin, and `test-plugin`, a configurable plugin the plugin-host tests drive as real processes.
//! The tests in `tests/` exercise `berth-plugin-host` against these binaries.

/// The `--socket` option of the example plugins that run in a plugin container, where the engine
/// bind-mounts the plugin's directory at `/var/run/docker/` (flattened into each plugin's
/// arguments).
#[derive(clap::Args, Debug, Clone)]
pub struct PluginSocket {
    /// Socket to serve on (the engine bind-mounts its plugin dir at /var/run/docker/).
    #[arg(
        long,
        env = "PLUGIN_SOCKET",
        default_value = "/var/run/docker/plugin.sock"
    )]
    pub socket: std::path::PathBuf,
}
