//! Conformance tests for meshlb-wire, in one test binary:
//! - `roundtrip`: property tests that every message survives encode → decode,
//!   that the BGP framer reassembles any split of a stream, and that no
//!   decoder panics on arbitrary bytes;
//! - `netgauze`: BGP messages we encode are parsed and re-encoded
//!   byte-for-byte by an independent implementation (netgauze-bgp-pkt), with
//!   key fields compared;
//! - `pnet`: Ethernet, ARP, IPv6 and NDP frames we encode are read field by
//!   field by an independent implementation (pnet_packet, checksum
//!   included), and frames it builds are decoded by ours;
//! - `tshark`: a pcap holding every message kind is dissected by Wireshark's
//!   dissectors without malformed-packet or error entries, and the fields
//!   tshark reads match what was encoded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod netgauze;
mod pcap;
mod pnet;
mod roundtrip;
mod strategies;
mod tshark;
