//! The userland proxy of a published port (what docker-proxy does, inside the daemon): it holds
//! the host port (binding it is how a taken port is found), and forwards what reaches it (the
//! host's loopback above all, which DNAT cannot serve without `route_localnet`) to the
//! container's address. Bounded: at most [`MAX_FLOWS`] connections (TCP) or peers (UDP) at a
//! time per port, UDP peers forgotten after [`UDP_IDLE`] without traffic; the flows are tasks of a
//! `JoinSet` owned by the port's task, so unpublishing (aborting it) ends them all and frees the
//! port at once.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::spec::{PortBinding, Proto};
use crate::error::EngineError;

/// Connections (TCP) or peers (UDP) served at once per published port.
pub const MAX_FLOWS: usize = 1024;
/// How long a UDP peer is remembered without traffic.
pub const UDP_IDLE: Duration = Duration::from_secs(60);
/// How long a connection to the container may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound host port, not serving yet.
pub enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Bound {
    /// The host port actually bound (the chosen one when 0 was asked for).
    pub fn port(&self) -> u16 {
        let addr = match self {
            Bound::Tcp(l) => l.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        };
        addr.map(|a| a.port()).unwrap_or(0)
    }
}

/// Binds the host side of `b`; a port in use is a 409 naming it, as Docker words it.
pub async fn bind(b: &PortBinding) -> Result<Bound, EngineError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(
        b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        b.host_port,
    ));
    let bound = match b.proto {
        Proto::Tcp => TcpListener::bind(addr).await.map(Bound::Tcp),
        Proto::Udp => UdpSocket::bind(addr).await.map(Bound::Udp),
    };
    bound.map_err(|e| {
        let what = format!("Bind for {}:{}/{}", b.host_ip_str(), b.host_port, b.proto);
        if e.kind() == std::io::ErrorKind::AddrInUse {
            EngineError::Conflict(format!(
                "driver failed programming external connectivity: {what} failed: port is already allocated"
            ))
        } else {
            EngineError::Io {
                context: format!("publishing a port: {what}"),
                source: e,
            }
        }
    })
}

/// Serves `bound` towards `target` on the network's `bridge` until the returned task is aborted.
/// Connections to the container leave through the bridge itself (`SO_BINDTODEVICE`): another
/// engine's network with the same subnet must not catch them.
pub fn serve(bound: Bound, target: SocketAddrV4, bridge: String) -> JoinHandle<()> {
    match bound {
        Bound::Tcp(l) => tokio::spawn(serve_tcp(l, target, bridge)),
        Bound::Udp(s) => tokio::spawn(serve_udp(Arc::new(s), target, bridge)),
    }
}

/// A connection to the container through `bridge`.
async fn connect(target: SocketAddrV4, bridge: &str) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind_device(Some(bridge.as_bytes()))?;
    socket.connect(SocketAddr::V4(target)).await
}

async fn serve_tcp(listener: TcpListener, target: SocketAddrV4, bridge: String) {
    let slots = Arc::new(Semaphore::new(MAX_FLOWS));
    let mut flows = JoinSet::new();
    loop {
        while flows.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (mut client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "port proxy accept");
                // EMFILE and the like: give the host a moment rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let bridge = bridge.clone();
        flows.spawn(async move {
            let _permit = permit;
            let upstream = tokio::time::timeout(CONNECT_TIMEOUT, connect(target, &bridge)).await;
            let Ok(Ok(mut upstream)) = upstream else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, target: SocketAddrV4, bridge: String) {
    // Peer → the socket connected to the container for it (replies go back to that peer).
    let peers: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Default::default();
    let mut flows = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        while flows.try_join_next().is_some() {}
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let existing = peers.lock().await.get(&peer).cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                if peers.lock().await.len() >= MAX_FLOWS {
                    continue;
                }
                let Ok(u) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await else {
                    continue;
                };
                if u.bind_device(Some(bridge.as_bytes())).is_err()
                    || u.connect(SocketAddr::V4(target)).await.is_err()
                {
                    continue;
                }
                let u = Arc::new(u);
                peers.lock().await.insert(peer, u.clone());
                let (back, up, table) = (socket.clone(), u.clone(), peers.clone());
                flows.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up.recv(&mut buf)).await {
                        if back.send_to(&buf[..n], peer).await.is_err() {
                            break;
                        }
                    }
                    table.lock().await.remove(&peer);
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Needs root (`SO_BINDTODEVICE`; skips loudly without, fails under CI): both proxies carry
/// traffic both ways to an echo server on the loopback (standing in for the bridge), a taken port
/// is a 409 naming it, and aborting the task frees the port.
#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(std::env::var_os("CI").is_none(), "proxy tests need root");
        eprintln!("SKIPPED: proxy tests need root");
        false
    }

    fn binding(proto: Proto) -> PortBinding {
        PortBinding {
            container_port: 0,
            proto,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 0,
        }
    }

    #[tokio::test]
    async fn udp_and_tcp_round_trip_and_free_the_port() {
        if !root() {
            return;
        }
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // UDP echo "container".
        let echo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let SocketAddr::V4(target) = echo_addr else {
            unreachable!()
        };
        let bound = bind(&binding(Proto::Udp)).await.unwrap();
        let port = bound.port();
        let task = serve(bound, target, "lo".into());
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        client.connect((Ipv4Addr::LOCALHOST, port)).await.unwrap();
        client.send(b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"ping");
        task.abort();
        let _ = task.await;
        UdpSocket::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("the UDP port is free again");

        // TCP echo "container".
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let SocketAddr::V4(target) = echo.local_addr().unwrap() else {
            unreachable!()
        };
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let bound = bind(&binding(Proto::Tcp)).await.unwrap();
        let port = bound.port();
        let taken = PortBinding {
            host_port: port,
            ..binding(Proto::Tcp)
        };
        let err = bind(&taken).await.err().expect("port taken");
        assert!(
            matches!(err, EngineError::Conflict(_))
                && err.to_string().contains(&format!(":{port}/tcp")),
            "{err}"
        );
        let task = serve(bound, target, "lo".into());
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"hello");
        task.abort();
        let _ = task.await;
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "the open connection ended with the port");
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("the TCP port is free again");
    }
}
