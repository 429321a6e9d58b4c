//! Example plugins built on the SDK (binaries in `src/bin/`): `hello-volume`, a tiny seed-v1 volume
//! plugin, and `test-plugin`, a configurable plugin the plugin-host tests drive as real processes.
//! The tests in `tests/` exercise `berth-plugin-host` against these binaries.
