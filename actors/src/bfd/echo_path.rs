//! Where a session's Echo packets go: out of the interface this system
//! reaches the peer on, to the peer's MAC, addressed to this system's own
//! address on that interface (RFC 5881 section 4), so the peer's
//! forwarding plane sends them back. [`EchoPath::resolve`] finds it all
//! from the kernel: the local address a datagram to the peer would leave
//! from, the interface holding it and that interface's MAC, and the peer's
//! MAC from the neighbour table ([`RouteSocket::neighbors`]; the control
//! packets already made the kernel resolve it). Link-local peers have no path:
//! routers never forward link-local destinations.
//!
//! The packets leave and come back on one packet socket on that interface
//! ([`FrameSocket::open_echo`]): read off the wire, because the kernel's IP
//! input drops a packet whose source is one of its own addresses
//! (`accept_local` is off by default), and the agent changes no sysctl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use meshlb_wire::bfd_echo::EchoPacket;
use meshlb_wire::ethernet::MacAddr;

use std::sync::Arc;

use crate::l2::socket::{FrameSocket, InterfaceInfo};
use crate::netlink::RouteSocket;

/// A session's Echo path. See the module documentation.
#[derive(Debug)]
pub struct EchoPath {
    /// The packet socket the packets leave and come back on.
    pub socket: Arc<FrameSocket>,
    source_mac: MacAddr,
    peer_mac: MacAddr,
    /// This system's address on the path: the Echo packets' source and
    /// destination.
    pub address: IpAddr,
}

/// Why a peer's Echo packets have no path (yet).
#[derive(Debug, thiserror::Error)]
pub enum NoEchoPath {
    /// Routers do not forward link-local destinations.
    #[error("a link-local peer: routers do not forward link-local destinations")]
    LinkLocal,
    /// The kernel has no route to the peer.
    #[error("no route to the peer ({0})")]
    NoRoute(#[source] std::io::Error),
    /// No interface holds the source address the route gives.
    #[error("no interface holds {0}")]
    NoInterface(IpAddr),
    /// The neighbour table cannot be read.
    #[error("cannot read the neighbour table ({0})")]
    Neighbors(#[source] std::io::Error),
    /// The peer's MAC is not known yet.
    #[error("{peer} has no MAC in the neighbour table of {interface} yet")]
    NoMac {
        /// The peer.
        peer: IpAddr,
        /// The interface towards it.
        interface: String,
    },
    /// A socket or the interface could not be read or opened.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The interface could not be read or its socket opened.
    #[error(transparent)]
    Actor(#[from] crate::ActorError),
}

impl EchoPath {
    /// The path to `peer`, or why there is none; its socket is registered
    /// with the calling thread's reactor.
    pub fn resolve(peer: IpAddr) -> Result<EchoPath, NoEchoPath> {
        if matches!(peer, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            return Err(NoEchoPath::LinkLocal);
        }
        let any = match peer {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        // Connecting a datagram socket sends nothing; it only asks the
        // kernel's routing for the source address.
        let probe = UdpSocket::bind(SocketAddr::new(any, 0))?;
        probe
            .connect(SocketAddr::new(peer, meshlb_wire::bfd::SINGLE_HOP_PORT))
            .map_err(NoEchoPath::NoRoute)?;
        let address = probe.local_addr()?.ip();
        let interface = nix::ifaddrs::getifaddrs()
            .map_err(std::io::Error::from)?
            .find(|a| {
                a.address.as_ref().is_some_and(|s| {
                    s.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())) == Some(address)
                        || s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())) == Some(address)
                })
            })
            .map(|a| a.interface_name)
            .ok_or(NoEchoPath::NoInterface(address))?;
        let info = InterfaceInfo::read(&interface)?;
        let peer_mac = RouteSocket::open()
            .and_then(|mut socket| socket.neighbors())
            .map_err(NoEchoPath::Neighbors)?
            .into_iter()
            .find(|n| n.index == info.index && n.address == peer)
            .map(|n| n.mac)
            .ok_or(NoEchoPath::NoMac {
                peer,
                interface: interface.clone(),
            })?;
        let socket = FrameSocket::open_echo(&interface, info.index).and_then(|s| s.register())?;
        Ok(EchoPath {
            socket: Arc::new(socket),
            source_mac: info.mac,
            peer_mac,
            address,
        })
    }

    /// Sends `echo` from UDP port `source_port`.
    pub fn send(&self, echo: &EchoPacket, source_port: u16) -> Result<(), crate::error::ActorError> {
        let frame = echo.to_frame(self.source_mac, self.peer_mac, self.address, source_port);
        self.socket.try_send(&frame)
    }
}
