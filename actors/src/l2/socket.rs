//! The sockets of Layer 2 announcement on one interface, non-blocking
//! under tokio:
//! - a packet socket (`AF_PACKET`, raw frames) bound to the interface, with
//!   a classic BPF filter so the kernel hands over only incoming ARP and
//!   ICMPv6 Neighbor Solicitations, nothing else and nothing we sent (the
//!   same socket with another filter carries BFD's Echo packets,
//!   [`FrameSocket::open_echo`]);
//! - a UDP socket holding the interface's memberships of the solicited-node
//!   multicast groups of owned IPv6 addresses, so the NIC accepts the
//!   solicitations for them (the kernel joins those groups itself only for
//!   addresses configured on the interface, and service IPs are not).
//!
//! Interface facts (index, MAC) are read from `/sys/class/net`; link
//! state is read in one place for all interfaces ([`crate::l2::links`]).
//!
//! A frame socket is opened on any thread ([`FrameSocket::open`]) and
//! registered with the tokio reactor of the thread that will run it
//! ([`UnregisteredFrameSocket::register`]), so the agent can open it from
//! its control thread and answer on a thread of its own.
//!
//! The crate's only `unsafe` is here, twice, each wrapped once: filling in
//! a `sockaddr_ll` to bind the packet socket, and registering a
//! descriptor with tokio (this socket's, and the unnumbered peering's
//! ICMPv6 one, [`crate::bgp::unnumbered`]).

use std::io::Read as _;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;

use meshlb_wire::ethernet::MacAddr;
use meshlb_wire::ipv6::solicited_node_multicast;
use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::error::ActorError;

/// `ETH_P_ALL`: every protocol (the filter narrows it).
const ETH_P_ALL: u16 = 0x0003;
/// Largest frame read (a standard MTU frame; ARP and NS are far smaller).
pub const MAX_FRAME: usize = 1514;

/// What the kernel knows of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// MAC.
    pub mac: MacAddr,
}

fn sys_class_net(interface: &str, file: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(interface).join(file)
}

fn read_sys(interface: &str, file: &str) -> Result<String, ActorError> {
    let path = sys_class_net(interface, file);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| ActorError::Interface {
            interface: interface.to_owned(),
            what: format!("read {}", path.display()),
            source,
        })
}

impl InterfaceInfo {
    /// Reads `interface`'s facts.
    pub fn read(interface: &str) -> Result<InterfaceInfo, ActorError> {
        let invalid = |what: &str, value: &str| ActorError::Interface {
            interface: interface.to_owned(),
            what: format!("{what}: {value:?}"),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        };
        let index_text = read_sys(interface, "ifindex")?;
        let index = index_text
            .parse()
            .map_err(|_| invalid("interface index", &index_text))?;
        let mac_text = read_sys(interface, "address")?;
        let mac: MacAddr = mac_text.parse().map_err(|_| invalid("MAC address", &mac_text))?;
        Ok(InterfaceInfo {
            name: interface.to_owned(),
            index,
            mac,
        })
    }
}

// Classic BPF opcodes (linux/filter.h) for the filters below.
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the packet type, as an ancillary load.
const PKTTYPE: u32 = 0xffff_f000 + 4;
/// The packet type of a frame this host sent.
const PACKET_OUTGOING: u32 = 4;

/// The classic BPF program: pass incoming ARP and incoming ICMPv6 Neighbor
/// Solicitations without extension headers (as RFC 4861 receivers expect
/// them), drop everything else.
fn neighbour_filter() -> [SockFilter; 11] {
    [
        SockFilter::new(LD_W_ABS, 0, 0, PKTTYPE),
        SockFilter::new(JEQ_K, 8, 0, PACKET_OUTGOING), // ours: drop
        SockFilter::new(LD_H_ABS, 0, 0, 12),           // EtherType
        SockFilter::new(JEQ_K, 5, 0, 0x0806),          // ARP: accept
        SockFilter::new(JEQ_K, 0, 5, 0x86dd),          // not IPv6: drop
        SockFilter::new(LD_B_ABS, 0, 0, 14 + 6),       // IPv6 next header
        SockFilter::new(JEQ_K, 0, 3, 58),              // not ICMPv6: drop
        SockFilter::new(LD_B_ABS, 0, 0, 14 + 40),      // ICMPv6 type
        SockFilter::new(JEQ_K, 0, 1, 135),             // Neighbor Solicitation: accept
        SockFilter::new(RET_K, 0, 0, 0x0004_0000),     // accept
        SockFilter::new(RET_K, 0, 0, 0),               // drop
    ]
}

/// The classic BPF program of BFD's Echo function
/// ([`crate::bfd::echo_path`]): pass incoming IPv4 and IPv6 UDP datagrams
/// to port 3785 (IPv4 without options, as meshlb sends them), drop
/// everything else, this system's own sends included. Read off the wire,
/// a returning Echo packet is seen even though the kernel's IP input would
/// drop it for carrying this system's own address as its source.
fn echo_filter() -> [SockFilter; 15] {
    let port = u32::from(meshlb_wire::bfd_echo::ECHO_PORT);
    [
        SockFilter::new(LD_W_ABS, 0, 0, PKTTYPE),
        SockFilter::new(JEQ_K, 12, 0, PACKET_OUTGOING), // ours: drop
        SockFilter::new(LD_H_ABS, 0, 0, 12),            // EtherType
        SockFilter::new(JEQ_K, 0, 4, 0x0800),           // not IPv4: to the IPv6 test
        SockFilter::new(LD_B_ABS, 0, 0, 14 + 9),        // IPv4 protocol
        SockFilter::new(JEQ_K, 0, 8, 17),               // not UDP: drop
        SockFilter::new(LD_H_ABS, 0, 0, 14 + 20 + 2),   // UDP destination port
        SockFilter::new(JEQ_K, 5, 6, port),             // Echo: accept, else drop
        SockFilter::new(JEQ_K, 0, 5, 0x86dd),           // not IPv6: drop
        SockFilter::new(LD_B_ABS, 0, 0, 14 + 6),        // IPv6 next header
        SockFilter::new(JEQ_K, 0, 3, 17),               // not UDP: drop
        SockFilter::new(LD_H_ABS, 0, 0, 14 + 40 + 2),   // UDP destination port
        SockFilter::new(JEQ_K, 0, 1, port),             // not Echo: drop
        SockFilter::new(RET_K, 0, 0, 0x0004_0000),      // accept
        SockFilter::new(RET_K, 0, 0, 0),                // drop
    ]
}

/// A raw frame socket on one interface. See the module documentation.
#[derive(Debug)]
pub struct FrameSocket {
    socket: AsyncFd<Socket>,
    interface: String,
}

/// A frame socket opened, bound and filtered, not yet registered with a
/// reactor: it can move to the thread that will run it.
#[derive(Debug)]
pub struct UnregisteredFrameSocket {
    socket: Socket,
    interface: String,
}

impl UnregisteredFrameSocket {
    /// Registers the socket with the tokio reactor of the calling thread.
    pub fn register(self) -> Result<FrameSocket, ActorError> {
        let interface = self.interface;
        let socket = register(self.socket).map_err(|source| ActorError::Interface {
            interface: interface.clone(),
            what: "register the packet socket".into(),
            source,
        })?;
        Ok(FrameSocket { socket, interface })
    }
}

impl FrameSocket {
    /// Opens the socket on interface `index` (named `interface` in errors)
    /// for ARP and Neighbor Solicitations. Needs CAP_NET_RAW; register it
    /// on the thread that runs it.
    pub fn open(interface: &str, index: u32) -> Result<UnregisteredFrameSocket, ActorError> {
        Self::open_filtered(interface, index, &neighbour_filter(), "the ARP/NDP filter")
    }

    /// Opens the socket on interface `index` for BFD Echo packets coming
    /// back (and for sending them).
    pub fn open_echo(interface: &str, index: u32) -> Result<UnregisteredFrameSocket, ActorError> {
        Self::open_filtered(interface, index, &echo_filter(), "the BFD Echo filter")
    }

    fn open_filtered(
        interface: &str,
        index: u32,
        filter: &[SockFilter],
        filter_name: &str,
    ) -> Result<UnregisteredFrameSocket, ActorError> {
        let fail = |what: &str| {
            let what = what.to_owned();
            move |source| ActorError::Interface {
                interface: interface.to_owned(),
                what,
                source,
            }
        };
        // Protocol 0: nothing is received until the filter is in place and
        // the bind below names the protocol and interface.
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
            .map_err(fail("open a packet socket (needs CAP_NET_RAW)"))?;
        socket
            .attach_filter(filter)
            .map_err(fail(&format!("attach {filter_name}")))?;
        bind_packet_socket(&socket, index, ETH_P_ALL).map_err(fail("bind the packet socket"))?;
        socket
            .set_nonblocking(true)
            .map_err(fail("make the packet socket non-blocking"))?;
        Ok(UnregisteredFrameSocket {
            socket,
            interface: interface.to_owned(),
        })
    }

    /// Receives the next frame into `buf`; returns its length.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, ActorError> {
        loop {
            let mut guard = self
                .socket
                .readable()
                .await
                .map_err(|e| self.io("wait for frames", e))?;
            match guard.try_io(|socket| socket.get_ref().read(buf)) {
                Ok(result) => return result.map_err(|e| self.io("receive a frame", e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends a whole Ethernet frame.
    pub async fn send(&self, frame: &[u8]) -> Result<(), ActorError> {
        loop {
            let mut guard = self.socket.writable().await.map_err(|e| self.io("wait to send", e))?;
            match guard.try_io(|socket| socket.get_ref().send(frame)) {
                Ok(result) => return result.map(|_| ()).map_err(|e| self.io("send a frame", e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends a whole Ethernet frame now, without waiting: a packet socket's
    /// send queue is rarely full, and a frame that finds it full is dropped
    /// (the responder repeats announcements; an asker asks again).
    pub fn try_send(&self, frame: &[u8]) -> Result<(), ActorError> {
        self.socket
            .get_ref()
            .send(frame)
            .map(|_| ())
            .map_err(|e| self.io("send a frame", e))
    }

    /// Reads and drops every frame already queued; returns how many.
    pub fn discard_queued(&self) -> usize {
        let mut buf = [0u8; MAX_FRAME];
        let mut dropped = 0;
        while self.socket.get_ref().read(&mut buf).is_ok() {
            dropped += 1;
        }
        dropped
    }

    fn io(&self, what: &str, source: std::io::Error) -> ActorError {
        ActorError::Interface {
            interface: self.interface.clone(),
            what: what.to_owned(),
            source,
        }
    }
}

/// Registers `socket` with tokio's reactor. tokio asks the caller to vouch
/// that the descriptor stays open and the same while registered.
#[allow(unsafe_code)]
pub(crate) fn register(socket: Socket) -> std::io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its descriptor, closes it only when dropped,
    // and always returns the same one; the `AsyncFd` owns the `Socket`.
    unsafe { AsyncFd::register(socket) }.map_err(std::io::Error::from)
}

/// Binds packet socket `socket` to interface `index` for EtherType
/// `protocol`. socket2 has no safe constructor for `sockaddr_ll`, so it is
/// filled in here.
#[allow(unsafe_code)]
fn bind_packet_socket(socket: &Socket, index: u32, protocol: u16) -> std::io::Result<()> {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's socket address types
    // and fits in the storage (socket2 checks the size); the storage is
    // zeroed, which is a valid `sockaddr_ll`.
    let address = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    address.sll_family = libc::AF_PACKET as libc::sa_family_t;
    address.sll_protocol = protocol.to_be();
    address.sll_ifindex = i32::try_from(index).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` of `length`
    // bytes, and its family says so.
    let address = unsafe { SockAddr::new(storage, length) };
    socket.bind(&address)
}

/// Memberships of solicited-node multicast groups on one interface.
#[derive(Debug)]
pub struct SolicitedNodeGroups {
    socket: UdpSocket,
    index: u32,
    joined: std::collections::BTreeMap<Ipv6Addr, usize>,
}

impl SolicitedNodeGroups {
    /// Prepares to join groups on interface `index`.
    pub fn new(interface: &str, index: u32) -> Result<SolicitedNodeGroups, ActorError> {
        let socket =
            UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).map_err(|source| ActorError::Interface {
                interface: interface.to_owned(),
                what: "open a socket for multicast memberships (is IPv6 off?)".into(),
                source,
            })?;
        Ok(SolicitedNodeGroups {
            socket,
            index,
            joined: Default::default(),
        })
    }

    /// Makes the memberships those of the solicited-node groups of
    /// `addresses` (several addresses can share a group).
    pub fn set(&mut self, addresses: &std::collections::BTreeSet<Ipv6Addr>) -> std::io::Result<()> {
        let mut wanted = std::collections::BTreeMap::new();
        for a in addresses {
            *wanted.entry(solicited_node_multicast(a)).or_insert(0usize) += 1;
        }
        for group in self.joined.keys().filter(|g| !wanted.contains_key(*g)) {
            self.socket.leave_multicast_v6(group, self.index)?;
        }
        for group in wanted.keys().filter(|g| !self.joined.contains_key(*g)) {
            self.socket.join_multicast_v6(group, self.index)?;
        }
        self.joined = wanted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts_are_read() {
        let info = InterfaceInfo::read("lo").unwrap();
        assert_eq!(info.mac, MacAddr::ZERO);
        assert!(info.index >= 1);
    }

    #[test]
    fn a_missing_interface_is_a_clear_error() {
        let e = InterfaceInfo::read("no-such-if0").unwrap_err().to_string();
        assert!(e.contains("no-such-if0"), "{e}");
    }
}
