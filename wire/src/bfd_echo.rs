//! BFD Echo packets (RFC 5880 section 6.4, RFC 5881 section 4): what the
//! Echo function sends to UDP port 3785 and the peer's forwarding plane
//! sends back, without its control plane taking part. Their contents are
//! the sender's own business (the RFC leaves them local); meshlb's carry a
//! magic, the session's discriminator and a sequence number:
//!
//! ```text
//! +---------------+---------------+---------------+---------------+
//! |      'M'      |      'L'      |      'B'      |      'E'      |
//! +---------------+---------------+---------------+---------------+
//! |                     My Discriminator                          |
//! +---------------+---------------+---------------+---------------+
//! |                     Sequence (64 bits)                        |
//! +                                                               +
//! +---------------+---------------+---------------+---------------+
//! ```
//!
//! The frame is built whole (Ethernet, IPv4 or IPv6, UDP), because an
//! Echo packet is addressed to the sender itself and only an Ethernet
//! destination of the peer's MAC gets it to the peer: the kernel would
//! deliver it locally.

use crate::error::Error;
use crate::ethernet::{EtherType, EthernetHeader, MacAddr};
use crate::ipv6::{Ipv6Header, internet_checksum};
use crate::reader::Reader;
use std::net::IpAddr;

/// UDP destination port of BFD Echo packets (RFC 5881 section 4).
pub const ECHO_PORT: u16 = 3785;
/// The TTL (hop limit) an Echo packet leaves with; it comes back with one
/// less, forwarded once by the peer.
pub const ECHO_TTL: u8 = 255;

const MAGIC: [u8; 4] = *b"MLBE";
const LEN: usize = 16;
const UDP_HEADER: usize = 8;
const IPV4_HEADER: usize = 20;
const PROTOCOL_UDP: u8 = 17;

/// One Echo packet's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EchoPacket {
    /// The sending session's discriminator.
    pub discriminator: u32,
    /// Counts the session's Echo packets.
    pub sequence: u64,
}

impl EchoPacket {
    /// Its 16 octets.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&self.discriminator.to_be_bytes());
        bytes.extend_from_slice(&self.sequence.to_be_bytes());
        bytes
    }

    /// Reads a UDP payload that came back to port 3785; anything but
    /// meshlb's own Echo packet is an error.
    pub fn decode(payload: &[u8]) -> Result<EchoPacket, Error> {
        let mut r = Reader::new(payload, "BFD Echo packet");
        if r.take(4)? != MAGIC {
            return Err(Error::malformed("BFD Echo packet", "not meshlb's (no magic)"));
        }
        let discriminator = r.u32()?;
        let sequence = u64::from(r.u32()?) << 32 | u64::from(r.u32()?);
        if !r.is_empty() {
            return Err(Error::malformed("BFD Echo packet", "longer than 16 octets"));
        }
        Ok(EchoPacket {
            discriminator,
            sequence,
        })
    }

    /// The whole frame: from `source_mac` to the peer's `peer_mac`, IP
    /// source and destination both `address` (this system's own, so the
    /// peer forwards it back), TTL [`ECHO_TTL`], UDP from `source_port`
    /// to [`ECHO_PORT`], checksums filled in.
    pub fn to_frame(&self, source_mac: MacAddr, peer_mac: MacAddr, address: IpAddr, source_port: u16) -> Vec<u8> {
        let payload = self.to_bytes();
        let udp_len = UDP_HEADER + payload.len();
        let mut udp = Vec::with_capacity(udp_len);
        udp.extend_from_slice(&source_port.to_be_bytes());
        udp.extend_from_slice(&ECHO_PORT.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&payload);
        let mut frame = Vec::with_capacity(EthernetHeader::LEN + Ipv6Header::LEN + udp_len);
        let ethertype = if address.is_ipv4() {
            EtherType::IPV4
        } else {
            EtherType::IPV6
        };
        EthernetHeader {
            destination: peer_mac,
            source: source_mac,
            ethertype,
        }
        .encode(&mut frame);
        match address {
            IpAddr::V4(v4) => {
                let total = (IPV4_HEADER + udp_len) as u16;
                let mut header = [0u8; IPV4_HEADER];
                header[0] = 0x45;
                header[2..4].copy_from_slice(&total.to_be_bytes());
                header[6] = 0x40; // don't fragment
                header[8] = ECHO_TTL;
                header[9] = PROTOCOL_UDP;
                header[12..16].copy_from_slice(&v4.octets());
                header[16..20].copy_from_slice(&v4.octets());
                let checksum = internet_checksum(&[&header]);
                header[10..12].copy_from_slice(&checksum.to_be_bytes());
                let pseudo = [
                    &v4.octets()[..],
                    &v4.octets()[..],
                    &[0, PROTOCOL_UDP],
                    &(udp_len as u16).to_be_bytes(),
                ]
                .concat();
                let sum = internet_checksum(&[&pseudo, &udp]);
                // Zero means "no checksum" in IPv4 UDP: all ones instead.
                udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
                frame.extend_from_slice(&header);
            }
            IpAddr::V6(v6) => {
                let pseudo = [
                    &v6.octets()[..],
                    &v6.octets()[..],
                    &(udp_len as u32).to_be_bytes(),
                    &[0, 0, 0, PROTOCOL_UDP],
                ]
                .concat();
                let sum = internet_checksum(&[&pseudo, &udp]);
                udp[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
                Ipv6Header {
                    traffic_class: 0,
                    flow_label: 0,
                    payload_length: udp_len as u16,
                    next_header: PROTOCOL_UDP,
                    hop_limit: ECHO_TTL,
                    source: v6,
                    destination: v6,
                }
                .encode(&mut frame);
            }
        }
        frame.extend_from_slice(&udp);
        frame
    }
}

/// An Echo packet read off the wire with the IP header it came back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnedEcho {
    /// IP source.
    pub source: IpAddr,
    /// IP destination.
    pub destination: IpAddr,
    /// TTL (hop limit) on arrival.
    pub ttl: u8,
    /// The packet.
    pub packet: EchoPacket,
}

impl ReturnedEcho {
    /// Reads a whole frame (Ethernet, IPv4 or IPv6 without extension
    /// headers, UDP to [`ECHO_PORT`]) carrying one of meshlb's Echo
    /// packets.
    pub fn from_frame(frame: &[u8]) -> Result<ReturnedEcho, Error> {
        let (ethernet, payload) = EthernetHeader::decode(frame)?;
        let (source, destination, ttl, udp) = if ethernet.ethertype == EtherType::IPV4 {
            let mut r = Reader::new(payload, "IPv4 header");
            let first = r.u8()?;
            let header_len = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || header_len < IPV4_HEADER {
                return Err(Error::malformed(
                    "IPv4 header",
                    "not version 4 with a 20-octet header or more",
                ));
            }
            let header = Reader::new(payload, "IPv4 header").take(header_len)?;
            if header[9] != PROTOCOL_UDP {
                return Err(Error::malformed("IPv4 header", "not UDP"));
            }
            let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let end = total.clamp(header_len, payload.len());
            let octets =
                |at: usize| std::net::Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
            (
                IpAddr::V4(octets(12)),
                IpAddr::V4(octets(16)),
                header[8],
                &payload[header_len..end],
            )
        } else if ethernet.ethertype == EtherType::IPV6 {
            let (header, rest) = Ipv6Header::decode(payload)?;
            if header.next_header != PROTOCOL_UDP {
                return Err(Error::malformed("IPv6 header", "not UDP (or behind extension headers)"));
            }
            (
                IpAddr::V6(header.source),
                IpAddr::V6(header.destination),
                header.hop_limit,
                rest,
            )
        } else {
            return Err(Error::Unsupported {
                what: "EtherType",
                value: ethernet.ethertype.0.into(),
                allowed: "0x0800 (IPv4) or 0x86dd (IPv6)",
            });
        };
        let mut r = Reader::new(udp, "UDP header");
        r.u16()?; // source port
        let port = r.u16()?;
        let len = usize::from(r.u16()?);
        r.u16()?; // checksum
        if port != ECHO_PORT {
            return Err(Error::malformed(
                "UDP header",
                format!("to port {port}, not {ECHO_PORT}"),
            ));
        }
        if len < UDP_HEADER || len > udp.len() {
            return Err(Error::malformed(
                "UDP header",
                format!("length {len} of {} octets", udp.len()),
            ));
        }
        Ok(ReturnedEcho {
            source,
            destination,
            ttl,
            packet: EchoPacket::decode(&udp[UDP_HEADER..len])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_packets_round_trip_and_foreign_ones_are_refused() {
        let echo = EchoPacket {
            discriminator: 0x0102_0304,
            sequence: 0x1122_3344_5566_7788,
        };
        let bytes = echo.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(EchoPacket::decode(&bytes).unwrap(), echo);
        assert!(EchoPacket::decode(&bytes[..15]).is_err(), "truncated");
        assert!(
            EchoPacket::decode(&[bytes.clone(), vec![0]].concat()).is_err(),
            "too long"
        );
        let mut foreign = bytes;
        foreign[0] = 0;
        assert!(EchoPacket::decode(&foreign).is_err(), "another system's echo");
    }

    /// Every checksum of the frame verifies: summing a header or segment
    /// with its checksum in place gives zero.
    #[test]
    fn frames_carry_valid_checksums_and_address_the_sender() {
        let echo = EchoPacket {
            discriminator: 7,
            sequence: 1,
        };
        let (ours, peer) = (MacAddr([2, 0, 0, 0, 1, 11]), MacAddr([2, 0, 0, 0, 0, 1]));
        let v4 = echo.to_frame(ours, peer, "198.51.100.11".parse().unwrap(), 49152);
        assert_eq!(&v4[..6], &peer.0);
        let ip = &v4[14..34];
        assert_eq!((ip[8], ip[9]), (255, 17));
        assert_eq!(&ip[12..16], &ip[16..20], "to itself");
        assert_eq!(internet_checksum(&[ip]), 0);
        let udp = &v4[34..];
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), ECHO_PORT);
        let pseudo = [&ip[12..20], &[0, 17], &(udp.len() as u16).to_be_bytes()[..]].concat();
        assert_eq!(internet_checksum(&[&pseudo, udp]), 0);
        assert_eq!(EchoPacket::decode(&udp[8..]).unwrap(), echo);

        let address: std::net::Ipv6Addr = "2001:db8:1::11".parse().unwrap();
        let v6 = echo.to_frame(ours, peer, IpAddr::V6(address), 49152);
        let (header, udp) = Ipv6Header::decode(&v6[14..]).unwrap();
        assert_eq!(
            (header.source, header.destination, header.hop_limit),
            (address, address, 255)
        );
        let pseudo = [
            &address.octets()[..],
            &address.octets()[..],
            &(udp.len() as u32).to_be_bytes(),
            &[0, 0, 0, 17],
        ]
        .concat();
        assert_eq!(internet_checksum(&[&pseudo, udp]), 0);
    }

    /// A frame as it comes back, forwarded once (TTL 254), reads back; a
    /// truncated one or another datagram does not.
    #[test]
    fn returned_frames_read_back() {
        let echo = EchoPacket {
            discriminator: 9,
            sequence: 42,
        };
        let (ours, peer) = (MacAddr([2, 0, 0, 0, 1, 11]), MacAddr([2, 0, 0, 0, 0, 1]));
        for address in ["198.51.100.11", "2001:db8:1::11"] {
            let address: IpAddr = address.parse().unwrap();
            let mut frame = echo.to_frame(ours, peer, address, 49152);
            let ttl_at = if address.is_ipv4() { 14 + 8 } else { 14 + 7 };
            frame[ttl_at] -= 1;
            let back = ReturnedEcho::from_frame(&frame).unwrap();
            assert_eq!(
                back,
                ReturnedEcho {
                    source: address,
                    destination: address,
                    ttl: ECHO_TTL - 1,
                    packet: echo
                }
            );
            for cut in 0..frame.len() {
                assert!(ReturnedEcho::from_frame(&frame[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut other_port = echo.to_frame(ours, peer, "198.51.100.11".parse().unwrap(), 49152);
        other_port[14 + 20 + 3] = 0x84; // 3716
        assert!(ReturnedEcho::from_frame(&other_port).is_err());
    }
}
