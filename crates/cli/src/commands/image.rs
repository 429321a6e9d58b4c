//! `berth image import|ls|rm` and `berth images`. Import streams the tar to
//! `POST /images/create?fromSrc=-&repo=NAME`; a directory is tarred on the fly on a blocking
//! thread, so nothing is staged on disk or held whole in memory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::client::{Client, describe_error};
use crate::commands::Exit;
use crate::output::{self, Format, Table};
use crate::parse;

/// `berth image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a root filesystem (directory, tar file, or `-` for stdin) as an image.
    Import(ImportArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove images.
    #[command(alias = "remove")]
    Rm(RmArgs),
}

/// Flags of `image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Dockerfile-style change to apply (`CMD ["sh"]`, `ENV K=V`...), repeatable.
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Commit message.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// A directory, a tar file, or `-` for a tar on stdin.
    pub source: String,
    /// Image name (`name[:tag]`).
    pub name: String,
}

/// Flags of `image ls` / `images`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all images.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter (`reference=x`, `label=k`...).
    #[arg(short = 'f', long = "filter", value_name = "K=V")]
    pub filters: Vec<String>,
    /// Don't truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table", value_parser = output::parse_format)]
    pub format: Format,
}

/// Flags of `image rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force removal.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Where the imported tar comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    /// Tar this directory on the fly.
    Dir(PathBuf),
    /// Send this tar file.
    File(PathBuf),
    /// Send stdin.
    Stdin,
}

/// Classifies the `import` source argument.
pub fn import_source(text: &str) -> ImportSource {
    if text == "-" {
        ImportSource::Stdin
    } else if Path::new(text).is_dir() {
        ImportSource::Dir(PathBuf::from(text))
    } else {
        ImportSource::File(PathBuf::from(text))
    }
}

/// Chunk size of the streamed upload.
const CHUNK: usize = 64 * 1024;

/// A `Write` that sends buffered chunks into a channel (used on a blocking thread).
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload aborted"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

/// Writes a tar of `dir`'s contents (paths relative to `dir`, symlinks kept as links).
pub fn tar_dir(dir: &Path, out: impl Write) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()?.flush()
}

/// Produces the tar bytes of `source` on a blocking thread; errors end the stream.
fn tar_stream(
    source: ImportSource,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = match &source {
            ImportSource::Dir(dir) => tar_dir(dir, &mut writer),
            ImportSource::File(path) => std::fs::File::open(path)
                .and_then(|mut f| copy_into(&mut f, &mut writer))
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            ImportSource::Stdin => copy_into(&mut std::io::stdin().lock(), &mut writer),
        };
        let result = result.and_then(|()| writer.flush());
        if let Err(err) = result {
            let _ = tx.blocking_send(Err(err));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn copy_into(from: &mut impl Read, to: &mut ChannelWriter) -> std::io::Result<()> {
    std::io::copy(from, to).map(|_| ())
}

/// Runs an image subcommand.
pub async fn run(client: &Client, command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import(args) => import(client, args).await,
        ImageCommand::Ls(args) => ls(client, args).await,
        ImageCommand::Rm(args) => {
            let options = RemoveImageOptions {
                force: args.force,
                ..Default::default()
            };
            let mut failed = false;
            for name in &args.images {
                match client
                    .docker
                    .remove_image(name, Some(options.clone()), None)
                    .await
                {
                    Ok(items) => {
                        for item in items {
                            if let Some(untagged) = item.untagged {
                                println!("Untagged: {untagged}");
                            }
                            if let Some(deleted) = item.deleted {
                                println!("Deleted: {deleted}");
                            }
                        }
                    }
                    Err(err) => {
                        eprintln!("{}", describe_error(&err.into()));
                        failed = true;
                    }
                }
            }
            if failed { Err(Exit(1).into()) } else { Ok(()) }
        }
    }
}

/// `berth image import SOURCE NAME`: prints the engine's status lines (the new image id).
async fn import(client: &Client, args: ImportArgs) -> anyhow::Result<()> {
    let source = import_source(&args.source);
    if let ImportSource::File(path) = &source
        && !path.exists()
    {
        anyhow::bail!("{}: no such file or directory", path.display());
    }
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(args.name.clone()),
        message: args.message.clone(),
        changes: args.changes.clone(),
        ..Default::default()
    };
    let body = bollard::body_try_stream(tar_stream(source));
    let mut progress = client.docker.create_image(Some(options), Some(body), None);
    while let Some(item) = progress.next().await {
        let info = item?;
        if let Some(status) = info.status.filter(|s| !s.is_empty()) {
            println!("{status}");
        }
    }
    Ok(())
}

/// `berth image ls` / `berth images`.
pub async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let filters = parse::filters(&args.filters).map_err(anyhow::Error::msg)?;
    let options = ListImagesOptions {
        all: args.all,
        filters: (!filters.is_empty()).then_some(filters),
        ..Default::default()
    };
    let images = client.docker.list_images(Some(options)).await?;
    let id_of = |id: &str| {
        if args.no_trunc {
            id.to_string()
        } else {
            output::short_id(id)
        }
    };
    if args.quiet {
        for image in &images {
            println!("{}", id_of(&image.id));
        }
        return Ok(());
    }
    if args.format == Format::Json {
        return output::print_json_lines(&images);
    }
    let now = output::now_unix();
    let mut table = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    for image in &images {
        let refs: Vec<(String, String)> = if image.repo_tags.is_empty() {
            vec![("<none>".to_string(), "<none>".to_string())]
        } else {
            image.repo_tags.iter().map(|r| split_reference(r)).collect()
        };
        for (repo, tag) in refs {
            table.row(vec![
                repo,
                tag,
                id_of(&image.id),
                if image.created > 0 {
                    output::ago(image.created, now)
                } else {
                    "N/A".to_string()
                },
                output::human_size(image.size),
            ]);
        }
    }
    table.print();
    Ok(())
}

/// Splits `name[:tag]` into repository and tag (`latest` when absent; a `:` inside a registry
/// host part is not a tag separator).
pub fn split_reference(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (reference.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            split_reference("busybox:1.36"),
            ("busybox".into(), "1.36".into())
        );
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(
            split_reference("localhost:5000/x"),
            ("localhost:5000/x".into(), "latest".into())
        );
        assert_eq!(
            split_reference("localhost:5000/x:v1"),
            ("localhost:5000/x".into(), "v1".into())
        );
    }

    #[test]
    fn sources() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(import_source("-"), ImportSource::Stdin);
        assert_eq!(
            import_source(dir.path().to_str().unwrap()),
            ImportSource::Dir(dir.path().to_path_buf())
        );
        assert_eq!(
            import_source("/x/rootfs.tar"),
            ImportSource::File(PathBuf::from("/x/rootfs.tar"))
        );
    }

    #[test]
    fn directory_tar_has_relative_paths_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/hello"), b"#!/bin/sh\necho hi\n").unwrap();
        std::os::unix::fs::symlink("hello", dir.path().join("bin/hi")).unwrap();
        let mut tar_bytes = Vec::new();
        tar_dir(dir.path(), &mut tar_bytes).unwrap();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().to_string();
            if path == "./bin/hi" || path == "bin/hi" {
                assert!(entry.header().entry_type().is_symlink());
            }
            seen.push(path.trim_start_matches("./").to_string());
        }
        assert!(seen.contains(&"bin/hello".to_string()), "{seen:?}");
        assert!(seen.contains(&"bin/hi".to_string()), "{seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_tar_equals_direct_tar() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 300 * 1024]).unwrap();
        let mut direct = Vec::new();
        tar_dir(dir.path(), &mut direct).unwrap();
        let chunks: Vec<Bytes> = tar_stream(ImportSource::Dir(dir.path().to_path_buf()))
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert!(chunks.len() > 1);
        let streamed: Vec<u8> = chunks.concat();
        assert_eq!(streamed.len(), direct.len());
        let err: Vec<_> = tar_stream(ImportSource::File(PathBuf::from("/nonexistent.tar")))
            .collect()
            .await;
        assert!(err.last().unwrap().is_err());
    }
}
