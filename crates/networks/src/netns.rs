//! Kernel plumbing shared by every driver: network namespaces as bind-mounted files (created by a
//! helper thread that unshares its network namespace and bind-mounts `/proc/self/task/<tid>/ns/net`),
//! running netlink requests inside such a namespace (a helper thread that `setns`es into it with
//! its own single-threaded runtime), and the engine's half of a join: moving the interface a
//! driver made into the container's namespace, renaming it `eth<N>`, addressing it and routing
//! through the gateway. Everything goes through rtnetlink, no shell-outs.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::NetworkError;

fn nl(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let context = context.into();
    move |e| NetworkError::Netlink {
        context,
        reason: e.to_string(),
    }
}

fn sys(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let context = context.into();
    move |e| NetworkError::System {
        context,
        reason: e.to_string(),
    }
}

/// Whether a netlink error carries errno `code`.
pub(crate) fn is_errno(e: &rtnetlink::Error, code: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -code)
}

/// A netlink handle in the daemon's own network namespace (the connection task runs on the
/// caller's runtime and ends when the handle is dropped).
pub(crate) fn host_handle() -> Result<Handle, NetworkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(sys("opening a netlink socket"))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The indexes of every link in the daemon's namespace: taken before a driver creates an
/// endpoint, so the `SrcName` it answers can be checked to be a link made for that endpoint.
pub async fn link_indexes() -> Result<std::collections::BTreeSet<u32>, NetworkError> {
    let handle = host_handle()?;
    let mut links = handle.link().get().execute();
    let mut set = std::collections::BTreeSet::new();
    while let Some(m) = links.try_next().await.map_err(nl("listing links"))? {
        set.insert(m.header.index);
    }
    Ok(set)
}

/// The index of the link named `name` in the daemon's namespace, if it exists.
pub async fn link_index(name: &str) -> Result<Option<u32>, NetworkError> {
    let handle = host_handle()?;
    Ok(link_by_name(&handle, name).await?.map(|l| l.header.index))
}

/// The link named `name`, if it exists.
pub(crate) async fn link_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, NetworkError> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up interface {name}"))(e)),
    }
}

/// Deletes the link named `name`; a missing link is fine.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<(), NetworkError> {
    if let Some(link) = link_by_name(handle, name).await? {
        match handle.link().del(link.header.index).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::ENODEV) => {}
            Err(e) => return Err(nl(format!("deleting interface {name}"))(e)),
        }
    }
    Ok(())
}

fn mac_of(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Every IPv4 subnet configured on an interface of the daemon's namespace (to skip pools in use).
pub(crate) async fn host_subnets() -> Result<Vec<crate::ipam::Subnet>, NetworkError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let handle = host_handle()?;
    let mut out = Vec::new();
    let mut addrs = handle.address().get().execute();
    while let Some(m) = addrs
        .try_next()
        .await
        .map_err(nl("listing host addresses"))?
    {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                && !ip.is_loopback()
                && let Ok(s) = crate::ipam::Subnet::new(*ip, m.header.prefix_len)
            {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Runs `f` with a netlink handle inside the network namespace bound at `path`, on a helper
/// thread (setns only changes that thread) with its own runtime; the caller's runtime is not
/// blocked.
pub(crate) async fn in_netns<F, Fut, T>(path: &Path, f: F) -> Result<T, NetworkError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetworkError>>,
    T: Send + 'static,
{
    let path = path.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let _ = tx.send(run_in_netns(&path, f));
        })
        .map_err(sys("spawning a netns helper thread"))?;
    rx.await.map_err(|_| NetworkError::System {
        context: "netns helper thread".into(),
        reason: "it ended without an answer".into(),
    })?
}

fn run_in_netns<F, Fut, T>(path: &Path, f: F) -> Result<T, NetworkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    let ns = File::open(path).map_err(sys(format!("opening {}", path.display())))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| sys(format!("entering {}", path.display()))(e.into()))?;
    local_runtime()?.block_on(async move {
        let handle = host_handle()?;
        f(handle).await
    })
}

fn local_runtime() -> Result<tokio::runtime::Runtime, NetworkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(sys("building a netns helper runtime"))
}

/// Creates a new network namespace bound at `path` (the file is created), with loopback up.
/// On failure nothing is left behind.
pub async fn create(path: &Path) -> Result<(), NetworkError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(sys(format!("creating {}", dir.display())))?;
    }
    let target = path.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns-new".into())
        .spawn(move || {
            let _ = tx.send(create_on_thread(&target));
        })
        .map_err(sys("spawning a netns helper thread"))?;
    let result = rx.await.unwrap_or_else(|_| {
        Err(NetworkError::System {
            context: "netns helper thread".into(),
            reason: "it ended without an answer".into(),
        })
    });
    if result.is_err() {
        remove(path);
    }
    result
}

fn create_on_thread(path: &Path) -> Result<(), NetworkError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| sys("unsharing the network namespace")(e.into()))?;
    File::create(path).map_err(sys(format!("creating {}", path.display())))?;
    let tid = nix::unistd::gettid();
    let source = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
    nix::mount::mount(
        Some(&source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| sys(format!("bind-mounting the netns at {}", path.display()))(e.into()))?;
    // Loopback up, from inside (this thread is in the new namespace).
    local_runtime()?.block_on(async {
        let handle = host_handle()?;
        let lo = link_by_name(&handle, "lo")
            .await?
            .ok_or_else(|| NetworkError::System {
                context: "new netns".into(),
                reason: "no loopback interface".into(),
            })?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("bringing loopback up"))
    })
}

/// Unmounts and deletes a netns file (the namespace dies with its last user). Idempotent.
pub fn remove(path: &Path) {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "unmounting netns"),
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "removing netns file"),
    }
}

/// What the engine applies to the interface a driver handed over (Docker's Join response).
#[derive(Debug, Clone)]
pub struct Plumbing {
    /// Interface name in the daemon's namespace (the driver's `SrcName`).
    pub src_name: String,
    /// The links that existed before the endpoint was created: `src_name` must not be one of them
    /// (the host's `eth0`, `lo`, another container's interface are never moved).
    pub preexisting: std::sync::Arc<std::collections::BTreeSet<u32>>,
    /// Name inside the container (`eth0`, `eth1`, ...).
    pub dst_name: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// Installed as the default route when `default_route`.
    pub gateway: Option<Ipv4Addr>,
    pub default_route: bool,
    /// Extra routes `(destination, via)`.
    pub routes: Vec<(crate::ipam::Subnet, Ipv4Addr)>,
    /// The MAC address to give the interface (`None`: keep the one it has).
    pub mac: Option<[u8; 6]>,
}

/// Moves `p.src_name` into the namespace at `netns`, renames it, addresses it, brings it up and
/// routes. Returns the interface's MAC address.
pub async fn plumb(netns: &Path, p: Plumbing) -> Result<String, NetworkError> {
    let handle = host_handle()?;
    let link = link_by_name(&handle, &p.src_name)
        .await?
        .ok_or_else(|| NetworkError::System {
            context: format!("joining {}", p.src_name),
            reason: "the driver's interface does not exist".into(),
        })?;
    if p.preexisting.contains(&link.header.index) {
        return Err(NetworkError::System {
            context: format!("joining {}", p.src_name),
            reason: "the interface existed before this endpoint was created; only an interface \
                     made for the endpoint is moved into a container"
                .into(),
        });
    }
    let ns = File::open(netns).map_err(sys(format!("opening {}", netns.display())))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(link.header.index)
                .setns_by_fd(ns.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("moving {} into the container", p.src_name)))?;
    drop(ns);
    in_netns(netns, move |h| async move {
        let link = link_by_name(&h, &p.src_name)
            .await?
            .ok_or_else(|| NetworkError::System {
                context: format!("joining {}", p.src_name),
                reason: "the interface vanished while moving into the container".into(),
            })?;
        let idx = link.header.index;
        h.link()
            .set(
                LinkUnspec::new_with_index(idx)
                    .name(p.dst_name.clone())
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("renaming {} to {}", p.src_name, p.dst_name)))?;
        if let Some(mac) = p.mac {
            h.link()
                .set(
                    LinkUnspec::new_with_index(idx)
                        .address(mac.to_vec())
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("setting the MAC address of {}", p.dst_name)))?;
        }
        h.address()
            .add(idx, IpAddr::V4(p.address), p.prefix)
            .execute()
            .await
            .map_err(nl(format!(
                "adding {}/{} to {}",
                p.address, p.prefix, p.dst_name
            )))?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(nl(format!("bringing {} up", p.dst_name)))?;
        if let (Some(gw), true) = (p.gateway, p.default_route) {
            h.route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(gw)
                        .output_interface(idx)
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("adding the default route via {gw}")))?;
        }
        for (dest, via) in &p.routes {
            h.route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(dest.addr, dest.prefix)
                        .gateway(*via)
                        .output_interface(idx)
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("adding the route to {dest} via {via}")))?;
        }
        let after = link_by_name(&h, &p.dst_name).await?;
        Ok(after.as_ref().map(mac_of).unwrap_or_default())
    })
    .await
}

/// Deletes interface `name` inside the namespace at `netns` (a missing one is fine).
pub async fn delete_in(netns: &Path, name: &str) -> Result<(), NetworkError> {
    let name = name.to_owned();
    in_netns(netns, move |h| async move { delete_link(&h, &name).await }).await
}
