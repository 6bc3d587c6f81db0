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
//!
//! Decoders never panic on input: every malformed byte string yields an
//! [`Error`] (or, for BGP, a [`bgp::BgpError`] carrying the NOTIFICATION the
//! session must send).

pub mod arp;
pub mod bfd;
pub mod bgp;
mod error;
pub mod ethernet;
pub mod ipv6;
pub mod ndp;
mod reader;

pub use error::{Error, Truncated};
