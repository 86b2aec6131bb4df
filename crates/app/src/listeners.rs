//! The listeners: bound from the configuration, or given by the caller (tests and the demo
//! bind port 0); DNS over UDP with one `SO_REUSEPORT` socket per CPU.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

/// Listeners bound by the caller instead of the configured addresses (tests and the demo
/// bind port 0).
#[derive(Default)]
pub struct Listeners {
    /// Admin HTTP.
    pub admin: Option<TcpListener>,
    /// xDS gRPC.
    pub xds: Option<TcpListener>,
    /// xDS gRPC over TLS.
    pub xds_tls: Option<TcpListener>,
    /// DNS over UDP and TCP (both on the same address).
    pub dns: Option<(Vec<tokio::net::UdpSocket>, TcpListener)>,
}

impl Listeners {
    /// Binds DNS on `addr` over TCP and over UDP with one socket per CPU (`SO_REUSEPORT`: the
    /// kernel spreads queries over them, and each has its own receive loop); port 0 picks one
    /// free for both.
    pub async fn bind_dns(
        addr: SocketAddr,
    ) -> anyhow::Result<(Vec<tokio::net::UdpSocket>, TcpListener)> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        for _ in 0..16 {
            let first =
                reuse_port_udp(addr).with_context(|| format!("cannot listen on {addr}/udp"))?;
            let bound = first.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    let mut udp = vec![first];
                    for _ in 1..workers {
                        udp.push(
                            reuse_port_udp(bound)
                                .with_context(|| format!("cannot listen on {bound}/udp"))?,
                        );
                    }
                    return Ok((udp, tcp));
                }
                Err(_) if addr.port() == 0 => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}/tcp")),
            }
        }
        anyhow::bail!("no port free for both UDP and TCP on {}", addr.ip())
    }

    /// Every listener on an ephemeral port of `127.0.0.1` (tests).
    pub async fn loopback() -> anyhow::Result<Self> {
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        Ok(Self {
            admin: Some(TcpListener::bind(any).await?),
            xds: Some(TcpListener::bind(any).await?),
            xds_tls: Some(TcpListener::bind(any).await?),
            dns: Some(Self::bind_dns(any).await?),
        })
    }
}

pub(crate) async fn bind(
    given: Option<TcpListener>,
    addr: std::net::SocketAddr,
    field: &str,
) -> anyhow::Result<TcpListener> {
    match given {
        Some(listener) => Ok(listener),
        None => TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ({field})")),
    }
}

/// A non-blocking UDP socket on `addr` with `SO_REUSEPORT`, so that several can share it.
fn reuse_port_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` answers IPv4 clients too, whatever the system default.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}
