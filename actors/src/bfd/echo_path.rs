//! Where a session's Echo packets go: out of the interface this system
//! reaches the peer on, to the peer's MAC, addressed to this system's own
//! address on that interface (RFC 5881 section 4), so the peer's
//! forwarding plane sends them back. [`EchoPath::resolve`] finds it all
//! from the kernel: the local address a datagram to the peer would leave
//! from, the interface holding it and that interface's MAC, and the peer's
//! MAC from the neighbour table (an rtnetlink dump; the control packets
//! already made the kernel resolve it). Link-local peers have no path:
//! routers never forward link-local destinations.
//!
//! The packets leave and come back on one packet socket on that interface
//! ([`FrameSocket::open_echo`]): read off the wire, because the kernel's IP
//! input drops a packet whose source is one of its own addresses
//! (`accept_local` is off by default), and the agent changes no sysctl.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use meshlb_wire::bfd_echo::EchoPacket;
use meshlb_wire::ethernet::MacAddr;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto, socket,
};

use std::sync::Arc;

use crate::l2::socket::{FrameSocket, InterfaceInfo};

/// The rtnetlink message types and constants used here (linux/rtnetlink.h,
/// linux/netlink.h, linux/neighbour.h).
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NLMSG_HEADER: usize = 16;
const NDMSG: usize = 12;

/// One neighbour-table entry with a link-layer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    /// The interface it is on.
    pub index: u32,
    /// Its IP address.
    pub address: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// The RTM_GETNEIGH dump request for every family.
fn dump_request(sequence: u32) -> Vec<u8> {
    let len = (NLMSG_HEADER + NDMSG) as u32;
    let mut request = Vec::with_capacity(len as usize);
    request.extend_from_slice(&len.to_ne_bytes());
    request.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&sequence.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0u8; NDMSG]); // family AF_UNSPEC: all
    request
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The entries with a MAC in one datagram of a neighbour dump, and
/// whether the dump ended in it (NLMSG_DONE or NLMSG_ERROR). Malformed
/// parts end the parse, never panic.
pub fn parse_neighbors(datagram: &[u8]) -> (Vec<Neighbor>, bool) {
    let mut found = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u32_at(datagram, at), u16_at(datagram, at + 4)) {
        let len = len as usize;
        if len < NLMSG_HEADER || at + len > datagram.len() {
            return (found, true);
        }
        if kind == NLMSG_DONE || kind == NLMSG_ERROR {
            return (found, true);
        }
        let message = &datagram[at + NLMSG_HEADER..at + len];
        if kind == RTM_NEWNEIGH
            && message.len() >= NDMSG
            && let Some(index) = u32_at(message, 4)
        {
            let family = message[0];
            let mut address = None;
            let mut mac = None;
            let mut attr = NDMSG;
            while let (Some(alen), Some(atype)) = (u16_at(message, attr), u16_at(message, attr + 2)) {
                let alen = usize::from(alen);
                if alen < 4 || attr + alen > message.len() {
                    break;
                }
                let value = &message[attr + 4..attr + alen];
                match (atype, family as i32, value.len()) {
                    (NDA_DST, libc::AF_INET, 4) => {
                        address = Some(IpAddr::V4(Ipv4Addr::new(value[0], value[1], value[2], value[3])));
                    }
                    (NDA_DST, libc::AF_INET6, 16) => {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(value);
                        address = Some(IpAddr::V6(Ipv6Addr::from(octets)));
                    }
                    (NDA_LLADDR, _, 6) => {
                        let mut octets = [0u8; 6];
                        octets.copy_from_slice(value);
                        mac = Some(MacAddr(octets));
                    }
                    _ => {}
                }
                attr += alen.div_ceil(4) * 4;
            }
            if let (Some(address), Some(mac)) = (address, mac) {
                found.push(Neighbor { index, address, mac });
            }
        }
        at += len.div_ceil(4) * 4;
    }
    (found, false)
}

/// The kernel's neighbour table (entries with a MAC).
pub fn neighbors() -> io::Result<Vec<Neighbor>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 0))?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &dump_request(1),
        &kernel,
        MsgFlags::empty(),
    )?;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    // A dump of a table of bounded size ends; the bound guards a kernel
    // that never says done.
    for _ in 0..10_000 {
        let len = recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty())?;
        let (found, done) = parse_neighbors(&buf[..len]);
        all.extend(found);
        if done || len == 0 {
            break;
        }
    }
    Ok(all)
}

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

impl EchoPath {
    /// The path to `peer`, or why there is none; its socket is registered
    /// with the calling thread's reactor.
    pub fn resolve(peer: IpAddr) -> Result<EchoPath, String> {
        if matches!(peer, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            return Err("a link-local peer: routers do not forward link-local destinations".into());
        }
        let any = match peer {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        // Connecting a datagram socket sends nothing; it only asks the
        // kernel's routing for the source address.
        let probe = UdpSocket::bind(SocketAddr::new(any, 0)).map_err(|e| e.to_string())?;
        probe
            .connect(SocketAddr::new(peer, meshlb_wire::bfd::SINGLE_HOP_PORT))
            .map_err(|e| format!("no route to the peer ({e})"))?;
        let address = probe.local_addr().map_err(|e| e.to_string())?.ip();
        let interface = nix::ifaddrs::getifaddrs()
            .map_err(|e| e.to_string())?
            .find(|a| {
                a.address.as_ref().is_some_and(|s| {
                    s.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())) == Some(address)
                        || s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())) == Some(address)
                })
            })
            .map(|a| a.interface_name)
            .ok_or_else(|| format!("no interface holds {address}"))?;
        let info = InterfaceInfo::read(&interface).map_err(|e| e.to_string())?;
        let peer_mac = neighbors()
            .map_err(|e| format!("cannot read the neighbour table ({e})"))?
            .into_iter()
            .find(|n| n.index == info.index && n.address == peer)
            .map(|n| n.mac)
            .ok_or_else(|| format!("{peer} has no MAC in the neighbour table of {interface} yet"))?;
        let socket = FrameSocket::open_echo(&interface, info.index)
            .and_then(|s| s.register())
            .map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWNEIGH message as the kernel sends one: ndmsg, then
    /// NDA_DST and NDA_LLADDR attributes, each padded to 4 octets.
    fn new_neighbor(family: u8, index: u32, address: &[u8], mac: &[u8]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&[2, 0, 0, 1]); // state REACHABLE, flags, type
        for (kind, value) in [(NDA_DST, address), (NDA_LLADDR, mac)] {
            body.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut message = ((NLMSG_HEADER + body.len()) as u32).to_ne_bytes().to_vec();
        message.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        message.extend_from_slice(&0x2u16.to_ne_bytes());
        message.extend_from_slice(&[0; 8]);
        message.extend_from_slice(&body);
        message
    }

    #[test]
    fn parses_a_neighbour_dump_of_both_families() {
        let mac = [2, 0, 0, 0, 0, 1];
        let v6: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let mut datagram = new_neighbor(libc::AF_INET as u8, 3, &[198, 51, 100, 1], &mac);
        datagram.extend(new_neighbor(libc::AF_INET6 as u8, 3, &v6.octets(), &mac));
        datagram.extend(new_neighbor(libc::AF_INET as u8, 4, &[198, 51, 100, 9], &[])); // no MAC (FAILED)
        let (found, done) = parse_neighbors(&datagram);
        assert!(!done);
        assert_eq!(
            found,
            [
                Neighbor {
                    index: 3,
                    address: "198.51.100.1".parse().unwrap(),
                    mac: MacAddr(mac)
                },
                Neighbor {
                    index: 3,
                    address: IpAddr::V6(v6),
                    mac: MacAddr(mac)
                },
            ]
        );
        let mut end = 16u32.to_ne_bytes().to_vec();
        end.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        end.extend_from_slice(&[0; 10]);
        assert_eq!(parse_neighbors(&end), (vec![], true));
        // Truncated or nonsense: no panic, nothing made up.
        for cut in 0..datagram.len() {
            let (found, _) = parse_neighbors(&datagram[..cut]);
            assert!(found.len() <= 2);
        }
        assert_eq!(dump_request(7).len(), NLMSG_HEADER + NDMSG);
    }

    /// The kernel's own table can be read (the loopback namespace has few
    /// entries, but the dump must end cleanly).
    #[test]
    fn the_kernel_neighbour_table_reads() {
        assert!(neighbors().is_ok());
    }
}
