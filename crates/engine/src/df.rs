//! `docker system df`: the disk space of images, containers and volumes. Sizes are measured
//! (blocks on disk, see [`crate::prune::disk_usage`]): an image's unpacked root, a container's
//! writable layer (`SizeRw`) and directory, a local volume's data. Plugin-driven volumes report
//! -1 (their data is not Berth's to walk), as Docker does for volumes it cannot measure.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ContainerView;
use crate::engine::Engine;
use crate::images::Image;
use crate::prune::disk_usage;
use crate::runtime::Rootfs;

/// One image with its measured size and how many containers use it.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    pub image: Image,
    pub size: i64,
    pub containers: i64,
}

/// One container with its writable layer's size.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub view: ContainerView,
    pub size_rw: i64,
    pub size_root_fs: i64,
}

/// One volume with its size and how many containers use it.
#[derive(Debug, Clone)]
pub struct VolumeUsage {
    pub volume: berth_volumes::Volume,
    pub size: i64,
    pub ref_count: i64,
}

/// Everything `GET /system/df` reports.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    pub layers_size: i64,
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
    pub volumes: Vec<VolumeUsage>,
}

impl Engine {
    /// Measures the disk usage of images, user containers and volumes.
    pub async fn disk_usage(self: &Arc<Self>) -> DiskUsage {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.disk_usage_blocking())
            .await
            .unwrap_or_default()
    }

    fn disk_usage_blocking(&self) -> DiskUsage {
        let containers = self.all();
        let mut per_image: HashMap<String, i64> = HashMap::new();
        for c in &containers {
            *per_image.entry(c.config.image_id.clone()).or_default() += 1;
        }
        let mut out = DiskUsage::default();
        let mut image_sizes: HashMap<String, i64> = HashMap::new();
        for image in self.images.list() {
            let size = match self.images.rootfs(&image) {
                Rootfs::Host => 0,
                Rootfs::Dir(d) => disk_usage(&d) as i64,
            };
            out.layers_size += size;
            image_sizes.insert(image.id.clone(), size);
            out.images.push(ImageUsage {
                containers: per_image.get(&image.id).copied().unwrap_or(0),
                image,
                size,
            });
        }
        for c in containers.iter().filter(|c| !c.config.spec.system) {
            let size_rw = disk_usage(&c.dir.join(crate::runtime::UPPER_DIR)) as i64;
            let base = image_sizes.get(&c.config.image_id).copied().unwrap_or(0);
            out.containers.push(ContainerUsage {
                view: self.view(c),
                size_rw,
                size_root_fs: size_rw + base,
            });
        }
        for volume in self.volumes.list() {
            let ref_count = self.volume_users(&volume.name).len() as i64;
            let size = if volume.driver == "local" {
                disk_usage(&volume.mountpoint) as i64
            } else {
                -1
            };
            out.volumes.push(VolumeUsage {
                volume,
                size,
                ref_count,
            });
        }
        out
    }
}
