//! ICMPv6 Router Discovery (RFC 4861 sections 4.1, 4.2 and 6.1): the
//! Router Solicitation and Router Advertisement an unnumbered BGP session
//! finds its peer's link-local address with, as FRR does for
//! `neighbor IFACE interface` (each side advertises itself; the source of
//! the other's advertisement is the address to connect to).
//!
//! ```text
//! Router Solicitation (type 133)        Router Advertisement (type 134)
//! +-------+-------+---------------+     +-------+-------+---------------+
//! | 133   | 0     |   Checksum    |     | 134   | 0     |   Checksum    |
//! +-------+-------+---------------+     +-------+-+-+---+---------------+
//! |           Reserved            |     |Hop Lim|M|O|   |Router Lifetime|
//! +-------------------------------+     +-------+-+-+---+---------------+
//! |   Options ...                 |     |        Reachable Time         |
//!                                       +-------------------------------+
//!                                       |         Retrans Timer         |
//!                                       +-------------------------------+
//!                                       |   Options ...                 |
//! ```
//!
//! These are the ICMPv6 messages alone, as a raw ICMPv6 socket sends and
//! receives them; the caller checks the hop limit (255) from ancillary
//! data. Decoding applies the other validity checks of section 6.1.

use crate::error::Error;
use crate::ipv6::{check_nd_message, icmpv6_checksum};
use crate::ndp::NdpOption;
use crate::reader::Reader;
use bytes::BufMut;
use std::net::Ipv6Addr;

/// ICMPv6 type of a Router Solicitation.
pub const TYPE_ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const TYPE_ROUTER_ADVERTISEMENT: u8 = 134;

/// A Router Advertisement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouterAdvertisement {
    /// The hop limit hosts should use (0: unspecified).
    pub cur_hop_limit: u8,
    /// M: addresses come from DHCPv6.
    pub managed: bool,
    /// O: other configuration comes from DHCPv6.
    pub other: bool,
    /// Seconds hosts may use the sender as a default router (0: not a
    /// default router).
    pub router_lifetime: u16,
    /// Milliseconds (0: unspecified).
    pub reachable_time: u32,
    /// Milliseconds (0: unspecified).
    pub retrans_timer: u32,
    /// Options (source link-layer address, MTU, prefixes...).
    pub options: Vec<NdpOption>,
}

/// A Router Discovery message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouterDiscovery {
    /// Type 133, with its options.
    Solicitation(Vec<NdpOption>),
    /// Type 134.
    Advertisement(RouterAdvertisement),
}

impl RouterDiscovery {
    /// The ICMPv6 message, checksum filled in for `source` → `destination`.
    pub fn encode(&self, source: &Ipv6Addr, destination: &Ipv6Addr) -> Vec<u8> {
        let mut buf = Vec::with_capacity(32);
        match self {
            RouterDiscovery::Solicitation(options) => {
                buf.put_u8(TYPE_ROUTER_SOLICITATION);
                buf.put_u8(0);
                buf.put_u16(0);
                buf.put_u32(0);
                options.iter().for_each(|o| o.encode(&mut buf));
            }
            RouterDiscovery::Advertisement(ra) => {
                buf.put_u8(TYPE_ROUTER_ADVERTISEMENT);
                buf.put_u8(0);
                buf.put_u16(0);
                buf.put_u8(ra.cur_hop_limit);
                buf.put_u8((u8::from(ra.managed) << 7) | (u8::from(ra.other) << 6));
                buf.put_u16(ra.router_lifetime);
                buf.put_u32(ra.reachable_time);
                buf.put_u32(ra.retrans_timer);
                ra.options.iter().for_each(|o| o.encode(&mut buf));
            }
        }
        let checksum = icmpv6_checksum(source, destination, &buf);
        buf[2..4].copy_from_slice(&checksum.to_be_bytes());
        buf
    }

    /// Decodes and validates a message received from `source` for
    /// `destination` (RFC 4861 sections 6.1.1 and 6.1.2, but the hop
    /// limit): code 0, the checksum, the length, options of non-zero
    /// length, an advertisement from a link-local address, a solicitation
    /// from the unspecified address without a source link-layer address.
    pub fn decode(message: &[u8], source: &Ipv6Addr, destination: &Ipv6Addr) -> Result<RouterDiscovery, Error> {
        let mut r = Reader::new(message, "Router Discovery message");
        let kind = r.u8()?;
        r.u8()?; // code
        r.u16()?; // checksum
        if kind != TYPE_ROUTER_SOLICITATION && kind != TYPE_ROUTER_ADVERTISEMENT {
            return Err(Error::Unsupported {
                what: "ICMPv6 type",
                value: kind.into(),
                allowed: "133 (RS) or 134 (RA)",
            });
        }
        check_nd_message(message, source, destination, "Router Discovery message")?;
        if kind == TYPE_ROUTER_SOLICITATION {
            r.u32()?; // reserved
            let options = NdpOption::decode_all(r)?;
            if source.is_unspecified()
                && options
                    .iter()
                    .any(|o| matches!(o, NdpOption::SourceLinkLayerAddress(_)))
            {
                return Err(Error::malformed(
                    "Router Solicitation",
                    "from the unspecified address with a source link-layer address option",
                ));
            }
            return Ok(RouterDiscovery::Solicitation(options));
        }
        if !source.is_unicast_link_local() {
            return Err(Error::malformed(
                "Router Advertisement",
                format!("from {source}, not a link-local address"),
            ));
        }
        let cur_hop_limit = r.u8()?;
        let flags = r.u8()?;
        let router_lifetime = r.u16()?;
        let reachable_time = r.u32()?;
        let retrans_timer = r.u32()?;
        Ok(RouterDiscovery::Advertisement(RouterAdvertisement {
            cur_hop_limit,
            managed: flags & 0x80 != 0,
            other: flags & 0x40 != 0,
            router_lifetime,
            reachable_time,
            retrans_timer,
            options: NdpOption::decode_all(r)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::MacAddr;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

    /// An advertisement as FRR's zebra sends one for an unnumbered
    /// neighbour (router lifetime 1800 s, a source link-layer address and
    /// an MTU option), laid out by hand after section 4.2.
    #[test]
    fn decodes_a_hand_built_advertisement() {
        let source = addr("fe80::1");
        let mut msg = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[1, 1, 0x02, 0, 0, 0, 0, 0x01]);
        msg.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        let checksum = icmpv6_checksum(&source, &ALL_NODES, &msg);
        msg[2..4].copy_from_slice(&checksum.to_be_bytes());
        let decoded = RouterDiscovery::decode(&msg, &source, &ALL_NODES).expect("valid RA");
        let RouterDiscovery::Advertisement(ra) = &decoded else {
            panic!("not an RA: {decoded:?}");
        };
        assert_eq!((ra.cur_hop_limit, ra.router_lifetime), (64, 1800));
        assert!(!ra.managed && !ra.other);
        assert_eq!(
            ra.options[0],
            NdpOption::SourceLinkLayerAddress(MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert!(matches!(ra.options[1], NdpOption::Other { kind: 5, .. }));
        assert_eq!(
            decoded.encode(&source, &ALL_NODES),
            msg,
            "our encoder produces the same bytes"
        );

        let mut flipped = msg.clone();
        flipped[7] ^= 1;
        assert!(matches!(
            RouterDiscovery::decode(&flipped, &source, &ALL_NODES),
            Err(Error::BadChecksum { .. })
        ));
        let global = addr("2001:db8::1");
        let from_global = RouterDiscovery::Advertisement(ra.clone()).encode(&global, &ALL_NODES);
        assert!(RouterDiscovery::decode(&from_global, &global, &ALL_NODES).is_err());
        assert!(
            RouterDiscovery::decode(&msg[..12], &source, &ALL_NODES).is_err(),
            "truncated"
        );
    }

    #[test]
    fn solicitations_round_trip_and_are_checked() {
        let all_routers = addr("ff02::2");
        let source = addr("fe80::11");
        let rs = RouterDiscovery::Solicitation(vec![NdpOption::SourceLinkLayerAddress(MacAddr([2, 0, 0, 0, 1, 11]))]);
        let bytes = rs.encode(&source, &all_routers);
        assert_eq!(bytes.len(), 16);
        assert_eq!(
            RouterDiscovery::decode(&bytes, &source, &all_routers).expect("valid"),
            rs
        );
        // From the unspecified address, a link-layer address is forbidden.
        let unspecified = Ipv6Addr::UNSPECIFIED;
        let bytes = rs.encode(&unspecified, &all_routers);
        assert!(RouterDiscovery::decode(&bytes, &unspecified, &all_routers).is_err());
        // A zero-length option.
        let mut bad = RouterDiscovery::Solicitation(vec![]).encode(&source, &all_routers);
        bad.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let checksum = icmpv6_checksum(&source, &all_routers, &{
            let mut zeroed = bad.clone();
            zeroed[2..4].copy_from_slice(&[0, 0]);
            zeroed
        });
        bad[2..4].copy_from_slice(&checksum.to_be_bytes());
        assert!(RouterDiscovery::decode(&bad, &source, &all_routers).is_err());
        // Neighbor Discovery's other messages are not ours.
        let ns = crate::ndp::NdpMessage::Solicitation(crate::ndp::NeighborSolicitation {
            target: addr("fe80::1"),
            options: vec![],
        })
        .encode(&source, &all_routers);
        assert!(matches!(
            RouterDiscovery::decode(&ns, &source, &all_routers),
            Err(Error::Unsupported { .. })
        ));
    }
}
