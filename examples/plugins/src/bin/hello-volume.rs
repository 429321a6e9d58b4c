//! `hello-volume`: the smallest useful MVP v1 volume plugin. It answers only `POST /v1/handshake`
//! (exactly the seed's shape) and rewrites every bind source `HostPath` to the same path under
//! `--root`, creating the directory, so `-v /data/x:/x` is served from `<root>/data/x`.

use std::path::PathBuf;

use berth_plugin_sdk::protocol::Protocol;
use berth_plugin_sdk::{HandlerError, Plugin};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: berth_example_plugins::PluginSocket,
    /// Directory under which bind sources are placed.
    #[arg(
        long,
        env = "HELLO_VOLUME_ROOT",
        default_value = "/var/lib/hello-volume"
    )]
    root: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = args.root.clone();
    Plugin::builder("hello-volume")
        .author("Berth examples")
        .org("Berth")
        .website("https://example.invalid/berth")
        .answer_only(&[Protocol::V1])
        .volume(move |mut m| {
            let target = root.join(m.host_path.trim_start_matches('/'));
            async move {
                std::fs::create_dir_all(&target).map_err(|e| {
                    HandlerError::new(format!("creating {}: {e}", target.display()))
                })?;
                m.host_path = target.display().to_string();
                Ok::<_, HandlerError>(m)
            }
        })
        .build()
        .serve_until_signal(&args.listen.socket)
        .await?;
    Ok(())
}
