//! ICMPv6 Neighbor Discovery (RFC 4861): the two messages meshlb needs to
//! answer for IPv6 service IPs, Neighbor Solicitation and Neighbor
//! Advertisement, with their link-layer address options, the checksum, and
//! whole Ethernet + IPv6 frames.
//!
//! ```text
//! Neighbor Solicitation (type 135)      Neighbor Advertisement (type 136)
//! +-------+-------+---------------+     +-------+-------+---------------+
//! | 135   | 0     |   Checksum    |     | 136   | 0     |   Checksum    |
//! +-------+-------+---------------+     +-+-+-+---------+---------------+
//! |           Reserved            |     |R|S|O|        Reserved         |
//! +-------------------------------+     +-+-+-+-------------------------+
//! |   Target Address (16 octets)  |     |   Target Address (16 octets)  |
//! +-------------------------------+     +-------------------------------+
//! |   Options ...                 |     |   Options ...                 |
//!
//! Option: | Type | Length (units of 8 octets) | Value ... |
//!   1 = Source Link-Layer Address, 2 = Target Link-Layer Address (a MAC)
//! ```
//!
//! Decoding applies the validity checks of RFC 4861 sections 7.1.1 and 7.1.2;
//! a message that fails them must be silently discarded by the caller.

use crate::error::Error;
use crate::ethernet::{EtherType, EthernetHeader, MacAddr};
use crate::ipv6::{
    Ipv6Header, NEXT_HEADER_ICMPV6, check_nd_message, icmpv6_checksum, multicast_mac, solicited_node_multicast,
};
use crate::reader::Reader;
use bytes::BufMut;
use std::net::Ipv6Addr;

/// ICMPv6 type of a Neighbor Solicitation.
pub const TYPE_NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement.
pub const TYPE_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The hop limit every NDP packet must carry (proves it was not routed).
pub const NDP_HOP_LIMIT: u8 = 255;

const OPTION_SOURCE_LL: u8 = 1;
const OPTION_TARGET_LL: u8 = 2;

/// An NDP option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NdpOption {
    /// The sender's link-layer address (type 1).
    SourceLinkLayerAddress(MacAddr),
    /// The target's link-layer address (type 2).
    TargetLinkLayerAddress(MacAddr),
    /// Any other option (nonce, MTU, ...), kept as its value bytes; the
    /// encoder pads the value with zeros to a multiple of 8 octets.
    Other {
        /// Option type.
        kind: u8,
        /// Option value (everything after type and length).
        value: Vec<u8>,
    },
}

impl NdpOption {
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        match self {
            NdpOption::SourceLinkLayerAddress(mac) | NdpOption::TargetLinkLayerAddress(mac) => {
                let kind = if matches!(self, NdpOption::SourceLinkLayerAddress(_)) {
                    OPTION_SOURCE_LL
                } else {
                    OPTION_TARGET_LL
                };
                buf.put_u8(kind);
                buf.put_u8(1);
                buf.put_slice(&mac.0);
            }
            NdpOption::Other { kind, value } => {
                let units = (value.len() + 2).div_ceil(8).max(1);
                buf.put_u8(*kind);
                buf.put_u8(units.min(255) as u8);
                let body = units.min(255) * 8 - 2;
                buf.put_slice(&value[..value.len().min(body)]);
                buf.put_bytes(0, body.saturating_sub(value.len()));
            }
        }
    }

    pub(crate) fn decode_all(mut r: Reader<'_>) -> Result<Vec<NdpOption>, Error> {
        let mut options = Vec::new();
        while !r.is_empty() {
            let kind = r.u8()?;
            let units = r.u8()?;
            if units == 0 {
                return Err(Error::malformed(
                    "NDP option",
                    format!("option type {kind} has length 0"),
                ));
            }
            let value = r.take(usize::from(units) * 8 - 2)?;
            options.push(match (kind, value.len()) {
                (OPTION_SOURCE_LL, 6) => NdpOption::SourceLinkLayerAddress(mac_from(value)),
                (OPTION_TARGET_LL, 6) => NdpOption::TargetLinkLayerAddress(mac_from(value)),
                _ => NdpOption::Other {
                    kind,
                    value: value.to_vec(),
                },
            });
        }
        Ok(options)
    }
}

fn mac_from(value: &[u8]) -> MacAddr {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&value[..6]);
    MacAddr(mac)
}

/// A Neighbor Solicitation: who has `target`?
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NeighborSolicitation {
    /// The address being resolved.
    pub target: Ipv6Addr,
    /// Options, usually a source link-layer address.
    pub options: Vec<NdpOption>,
}

/// A Neighbor Advertisement: `target` is at the MAC in the options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NeighborAdvertisement {
    /// R: the sender is a router.
    pub router: bool,
    /// S: this answers a solicitation.
    pub solicited: bool,
    /// O: receivers must replace an existing cache entry.
    pub override_entry: bool,
    /// The address being advertised.
    pub target: Ipv6Addr,
    /// Options, usually a target link-layer address.
    pub options: Vec<NdpOption>,
}

impl NeighborAdvertisement {
    /// The answer to a solicitation for `target`, which this node owns at
    /// `mac`. Override is set: a service IP is not anycast and moves between
    /// nodes, so a stale entry must be replaced (RFC 4861 section 7.2.4).
    pub fn solicited(target: Ipv6Addr, mac: MacAddr) -> Self {
        NeighborAdvertisement {
            router: false,
            solicited: true,
            override_entry: true,
            target,
            options: vec![NdpOption::TargetLinkLayerAddress(mac)],
        }
    }

    /// An unsolicited advertisement sent to all nodes when this node takes
    /// `target` over (RFC 4861 section 7.2.6): S clear, O set.
    pub fn unsolicited(target: Ipv6Addr, mac: MacAddr) -> Self {
        NeighborAdvertisement {
            solicited: false,
            ..Self::solicited(target, mac)
        }
    }
}

/// A Neighbor Discovery message meshlb handles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NdpMessage {
    /// Type 135.
    Solicitation(NeighborSolicitation),
    /// Type 136.
    Advertisement(NeighborAdvertisement),
}

impl NdpMessage {
    /// The link-layer address carried in a source (solicitation) or target
    /// (advertisement) link-layer address option, if any.
    pub fn link_layer_address(&self) -> Option<MacAddr> {
        let options = match self {
            NdpMessage::Solicitation(ns) => &ns.options,
            NdpMessage::Advertisement(na) => &na.options,
        };
        options.iter().find_map(|o| match (self, o) {
            (NdpMessage::Solicitation(_), NdpOption::SourceLinkLayerAddress(m))
            | (NdpMessage::Advertisement(_), NdpOption::TargetLinkLayerAddress(m)) => Some(*m),
            _ => None,
        })
    }

    /// The target address.
    pub fn target(&self) -> Ipv6Addr {
        match self {
            NdpMessage::Solicitation(ns) => ns.target,
            NdpMessage::Advertisement(na) => na.target,
        }
    }

    /// The ICMPv6 message, checksum filled in for `source` → `destination`.
    pub fn encode(&self, source: &Ipv6Addr, destination: &Ipv6Addr) -> Vec<u8> {
        let mut buf = Vec::with_capacity(32);
        match self {
            NdpMessage::Solicitation(ns) => {
                buf.put_u8(TYPE_NEIGHBOR_SOLICITATION);
                buf.put_u8(0);
                buf.put_u16(0);
                buf.put_u32(0);
                buf.put_slice(&ns.target.octets());
                ns.options.iter().for_each(|o| o.encode(&mut buf));
            }
            NdpMessage::Advertisement(na) => {
                buf.put_u8(TYPE_NEIGHBOR_ADVERTISEMENT);
                buf.put_u8(0);
                buf.put_u16(0);
                let flags = (u32::from(na.router) << 31)
                    | (u32::from(na.solicited) << 30)
                    | (u32::from(na.override_entry) << 29);
                buf.put_u32(flags);
                buf.put_slice(&na.target.octets());
                na.options.iter().for_each(|o| o.encode(&mut buf));
            }
        }
        let checksum = icmpv6_checksum(source, destination, &buf);
        buf[2..4].copy_from_slice(&checksum.to_be_bytes());
        buf
    }

    /// Decodes and validates an ICMPv6 message received from `source` for
    /// `destination` (the hop limit is checked by [`NdpMessage::from_frame`]
    /// or, on a raw ICMPv6 socket, by the caller from ancillary data).
    pub fn decode(message: &[u8], source: &Ipv6Addr, destination: &Ipv6Addr) -> Result<NdpMessage, Error> {
        let mut r = Reader::new(message, "NDP message");
        let kind = r.u8()?;
        r.u8()?; // code
        r.u16()?; // checksum
        let flags = r.u32()?;
        let target = r.ipv6()?;
        if kind != TYPE_NEIGHBOR_SOLICITATION && kind != TYPE_NEIGHBOR_ADVERTISEMENT {
            return Err(Error::Unsupported {
                what: "ICMPv6 type",
                value: kind.into(),
                allowed: "135 (NS) or 136 (NA)",
            });
        }
        check_nd_message(message, source, destination, "NDP message")?;
        if target.is_multicast() {
            return Err(Error::malformed("NDP message", format!("target {target} is multicast")));
        }
        let options = NdpOption::decode_all(r)?;
        if kind == TYPE_NEIGHBOR_SOLICITATION {
            if source.is_unspecified() {
                if *destination != solicited_node_multicast(&target) {
                    return Err(Error::malformed(
                        "Neighbor Solicitation",
                        "from the unspecified address but not to the target's solicited-node group",
                    ));
                }
                if options
                    .iter()
                    .any(|o| matches!(o, NdpOption::SourceLinkLayerAddress(_)))
                {
                    return Err(Error::malformed(
                        "Neighbor Solicitation",
                        "from the unspecified address with a source link-layer address option",
                    ));
                }
            }
            return Ok(NdpMessage::Solicitation(NeighborSolicitation { target, options }));
        }
        let na = NeighborAdvertisement {
            router: flags & (1 << 31) != 0,
            solicited: flags & (1 << 30) != 0,
            override_entry: flags & (1 << 29) != 0,
            target,
            options,
        };
        if na.solicited && destination.is_multicast() {
            return Err(Error::malformed(
                "Neighbor Advertisement",
                "solicited flag set on an advertisement to a multicast address",
            ));
        }
        Ok(NdpMessage::Advertisement(na))
    }

    /// A whole Ethernet frame: Ethernet, IPv6 (hop limit 255) and this
    /// message. The Ethernet destination follows from `ip_destination` when
    /// it is multicast; otherwise `eth_destination` is used.
    pub fn to_frame(
        &self,
        eth_source: MacAddr,
        eth_destination: MacAddr,
        ip_source: Ipv6Addr,
        ip_destination: Ipv6Addr,
    ) -> Vec<u8> {
        let icmp = self.encode(&ip_source, &ip_destination);
        let destination = if ip_destination.is_multicast() {
            multicast_mac(&ip_destination)
        } else {
            eth_destination
        };
        let mut frame = Vec::with_capacity(EthernetHeader::LEN + Ipv6Header::LEN + icmp.len());
        EthernetHeader {
            destination,
            source: eth_source,
            ethertype: EtherType::IPV6,
        }
        .encode(&mut frame);
        Ipv6Header {
            traffic_class: 0,
            flow_label: 0,
            payload_length: icmp.len() as u16,
            next_header: NEXT_HEADER_ICMPV6,
            hop_limit: NDP_HOP_LIMIT,
            source: ip_source,
            destination: ip_destination,
        }
        .encode(&mut frame);
        frame.extend_from_slice(&icmp);
        frame
    }

    /// Decodes a whole Ethernet frame carrying NDP, with every check of
    /// RFC 4861 (hop limit 255 included).
    pub fn from_frame(frame: &[u8]) -> Result<NdpFrame, Error> {
        let (ethernet, payload) = EthernetHeader::decode(frame)?;
        if ethernet.ethertype != EtherType::IPV6 {
            return Err(Error::Unsupported {
                what: "EtherType",
                value: ethernet.ethertype.0.into(),
                allowed: "0x86dd (IPv6)",
            });
        }
        let (ip, icmp) = Ipv6Header::decode(payload)?;
        if ip.next_header != NEXT_HEADER_ICMPV6 {
            return Err(Error::Unsupported {
                what: "IPv6 next header",
                value: ip.next_header.into(),
                allowed: "58 (ICMPv6, no extension headers)",
            });
        }
        if ip.hop_limit != NDP_HOP_LIMIT {
            return Err(Error::malformed(
                "NDP packet",
                format!("hop limit {} (must be 255: the packet was routed)", ip.hop_limit),
            ));
        }
        let message = NdpMessage::decode(icmp, &ip.source, &ip.destination)?;
        Ok(NdpFrame { ethernet, ip, message })
    }
}

/// A decoded NDP frame with its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdpFrame {
    /// Ethernet header.
    pub ethernet: EthernetHeader,
    /// IPv6 header.
    pub ip: Ipv6Header,
    /// The NDP message.
    pub message: NdpMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    /// A Neighbor Solicitation laid out by hand after RFC 4861 section 4.3,
    /// with the checksum worked out independently of [`icmpv6_checksum`]
    /// (sum of 16-bit words of pseudo-header and message, folded, inverted).
    #[test]
    fn decodes_a_hand_built_solicitation() {
        let src = addr("fe80::1");
        let dst = solicited_node_multicast(&addr("2001:db8::10"));
        let mut msg = vec![135, 0, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&addr("2001:db8::10").octets());
        msg.extend_from_slice(&[1, 1, 0x02, 0, 0, 0, 0, 0x01]);
        // Independent checksum.
        let mut words: Vec<u16> = Vec::new();
        for chunk in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
            words.push(u16::from_be_bytes([chunk[0], chunk[1]]));
        }
        words.extend([0, msg.len() as u16, 0, 58]);
        for chunk in msg.chunks(2) {
            words.push(u16::from_be_bytes([chunk[0], chunk[1]]));
        }
        let mut sum: u32 = words.iter().map(|w| u32::from(*w)).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let checksum = !(sum as u16);
        msg[2..4].copy_from_slice(&checksum.to_be_bytes());

        let decoded = NdpMessage::decode(&msg, &src, &dst).expect("valid NS");
        assert_eq!(decoded.target(), addr("2001:db8::10"));
        assert_eq!(decoded.link_layer_address(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(decoded.encode(&src, &dst), msg, "our encoder produces the same bytes");

        msg[10] ^= 1;
        assert!(matches!(
            NdpMessage::decode(&msg, &src, &dst),
            Err(Error::BadChecksum { .. })
        ));
    }

    #[test]
    fn solicited_and_unsolicited_advertisements() {
        let vip = addr("2001:db8:1::5");
        let mac = MacAddr([2, 0, 0, 0, 0, 5]);
        let reply = NeighborAdvertisement::solicited(vip, mac);
        assert!(reply.solicited && reply.override_entry && !reply.router);
        let announce = NeighborAdvertisement::unsolicited(vip, mac);
        assert!(!announce.solicited && announce.override_entry);

        let frame = NdpMessage::Advertisement(announce.clone()).to_frame(
            mac,
            MacAddr::BROADCAST,
            addr("fe80::5"),
            addr("ff02::1"),
        );
        let decoded = NdpMessage::from_frame(&frame).expect("valid frame");
        assert_eq!(decoded.ethernet.destination.to_string(), "33:33:00:00:00:01");
        assert_eq!(decoded.ip.hop_limit, 255);
        assert_eq!(decoded.message, NdpMessage::Advertisement(announce));
        assert_eq!(decoded.message.link_layer_address(), Some(mac));

        // A solicited advertisement to a multicast group is invalid (7.1.2).
        let bad = NdpMessage::Advertisement(reply).to_frame(mac, MacAddr::BROADCAST, addr("fe80::5"), addr("ff02::1"));
        assert!(matches!(NdpMessage::from_frame(&bad), Err(Error::Malformed { .. })));
    }

    #[test]
    fn enforces_hop_limit_and_dad_rules() {
        let vip = addr("2001:db8::7");
        let ns = NdpMessage::Solicitation(NeighborSolicitation {
            target: vip,
            options: vec![NdpOption::SourceLinkLayerAddress(MacAddr([2, 0, 0, 0, 0, 9]))],
        });
        let mut frame = ns.to_frame(
            MacAddr([2, 0, 0, 0, 0, 9]),
            MacAddr::BROADCAST,
            addr("fe80::9"),
            solicited_node_multicast(&vip),
        );
        assert!(NdpMessage::from_frame(&frame).is_ok());
        frame[EthernetHeader::LEN + 7] = 64; // hop limit
        assert!(matches!(NdpMessage::from_frame(&frame), Err(Error::Malformed { .. })));

        // Duplicate address detection: unspecified source must not carry SLLA.
        let dad = ns.encode(&Ipv6Addr::UNSPECIFIED, &solicited_node_multicast(&vip));
        assert!(NdpMessage::decode(&dad, &Ipv6Addr::UNSPECIFIED, &solicited_node_multicast(&vip)).is_err());
        let dad_ok = NdpMessage::Solicitation(NeighborSolicitation {
            target: vip,
            options: vec![],
        });
        let bytes = dad_ok.encode(&Ipv6Addr::UNSPECIFIED, &solicited_node_multicast(&vip));
        assert!(NdpMessage::decode(&bytes, &Ipv6Addr::UNSPECIFIED, &solicited_node_multicast(&vip)).is_ok());
    }

    #[test]
    fn rejects_zero_length_options_and_multicast_targets() {
        let src = addr("fe80::1");
        let dst = addr("ff02::1:ff00:10");
        let ns = NdpMessage::Solicitation(NeighborSolicitation {
            target: addr("2001:db8::10"),
            options: vec![],
        });
        let mut bytes = ns.encode(&src, &dst);
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let sum = icmpv6_checksum(&src, &dst, &bytes);
        bytes[2..4].copy_from_slice(&sum.to_be_bytes());
        assert!(matches!(
            NdpMessage::decode(&bytes, &src, &dst),
            Err(Error::Malformed { .. })
        ));

        let ns = NdpMessage::Solicitation(NeighborSolicitation {
            target: addr("ff02::1"),
            options: vec![],
        });
        let bytes = ns.encode(&src, &dst);
        assert!(matches!(
            NdpMessage::decode(&bytes, &src, &dst),
            Err(Error::Malformed { .. })
        ));
    }
}
