//! # meshlb-wire: sans-IO codecs for every protocol meshlb speaks
//!
//! Place in the architecture: the lowest layer. Actors in `meshlb-actors` own
//! the sockets (AF_PACKET for ARP, raw ICMPv6 for NDP, TCP for BGP, UDP for
//! BFD) and hand bytes to these codecs; the protocol state machines above them
//! only ever see typed messages. Nothing here opens a socket, reads a clock or
//! awaits: every function is a pure transformation between bytes and values,
//! so every decoder can be unit-tested, property-tested and fuzzed.
//!
//! | module | protocol | specification |
//! |---|---|---|
//! | [`ethernet`] | Ethernet II header, MAC addresses | IEEE 802.3 |
//! | [`arp`] | ARP requests, replies, announcements (gratuitous ARP) | RFC 826, RFC 5227 |
//! | [`ipv6`] | IPv6 header, multicast mapping, ICMPv6 checksum | RFC 8200, RFC 4291, RFC 4443 |
//! | [`ndp`] | Neighbor Solicitation and Advertisement | RFC 4861 |
//! | [`bgp`] | BGP-4 messages and a TCP stream framer | RFC 4271, 4760, 6793, 2918, 4724, 1997, 8092, 7606 |
//! | [`bfd`] | BFD control packets and reception checks | RFC 5880 |
//! | [`bfd_echo`] | BFD Echo packets, framed for the wire | RFC 5880, RFC 5881 |
//! | [`router_discovery`] | Router Solicitation and Advertisement | RFC 4861 |
//! | [`rtnetlink`] | the kernel's address, route and neighbour messages | Linux rtnetlink(7) |
//!
//! Why codecs of our own rather than pnet's packet views: these decode into
//! owned, typed values with every RFC validity check (NDP's hop limit,
//! checksum and option rules, RFC 7606 for BGP) and an error that says what
//! to do, which pnet's zero-copy views leave to the caller. pnet_packet is
//! used where it is the better tool, as an independent implementation in
//! the differential tests of the Ethernet, ARP, IPv6 and NDP codecs (as
//! netgauze-bgp-pkt is for BGP). Its datalink channels are not used: their
//! receive blocks a thread, while `meshlb-actors` reads an AF_PACKET socket
//! with a BPF filter through tokio.
//!
//! Decoders never panic on input: every malformed byte string yields an
//! [`Error`] (or, for BGP, a [`bgp::BgpError`] carrying the NOTIFICATION the
//! session must send).

pub mod arp;
pub mod bfd;
pub mod bfd_echo;
pub mod bgp;
mod error;
pub mod ethernet;
pub mod ipv6;
pub mod ndp;
mod reader;
pub mod router_discovery;
pub mod rtnetlink;

pub use error::{Error, Truncated};
