//! An MRT TABLE_DUMP_V2 writer (RFC 6396), so a speaker such as gobgpd can
//! load tens of thousands of routes in one step for the route-scale
//! benchmark.
//!
//! ```text
//! MRT header: Timestamp (4) | Type = 13 (2) | Subtype (2) | Length (4) | Message
//! PEER_INDEX_TABLE (subtype 1): Collector BGP ID (4) | View Name Length (2) = 0 |
//!     Peer Count (2) | Peer Type (1) | Peer BGP ID (4) | Peer IP (4/16) | Peer AS (4)
//! RIB_IPV4_UNICAST (2) / RIB_IPV6_UNICAST (4): Sequence (4) | Prefix Length (1) |
//!     Prefix (var) | Entry Count (2) | Peer Index (2) | Originated Time (4) |
//!     Attribute Length (2) | BGP Path Attributes (4-octet AS encoding)
//! ```

use meshlb_wire::bgp::{AsPath, Message, MpReach, Origin, PathAttribute, Prefix, PrefixAddr, SessionParams, Update};
use std::net::{IpAddr, Ipv4Addr};

const TABLE_DUMP_V2: u16 = 13;
const PEER_INDEX_TABLE: u16 = 1;
const RIB_IPV4_UNICAST: u16 = 2;
const RIB_IPV6_UNICAST: u16 = 4;

fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&TABLE_DUMP_V2.to_be_bytes());
    out.extend_from_slice(&subtype.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// The path attributes of every entry: ORIGIN IGP, an empty AS_PATH (the
/// speaker originates the routes) and the next hop: NEXT_HOP for IPv4, an
/// MP_REACH_NLRI with the next hop and no NLRI for IPv6. RFC 6396 §4.3.4
/// allows an abbreviated MP_REACH_NLRI (next hop only), but gobgpd parses
/// the full form.
fn attributes(next_hop: IpAddr) -> Vec<u8> {
    let mut attrs = vec![
        PathAttribute::Origin(Origin::Igp),
        PathAttribute::AsPath(AsPath::default()),
    ];
    match next_hop {
        IpAddr::V4(nh) => attrs.push(PathAttribute::NextHop(nh)),
        IpAddr::V6(nh) => attrs.push(PathAttribute::MpReach(MpReach::Ipv6Unicast {
            next_hop: nh,
            link_local: None,
            nlri: vec![],
        })),
    }
    let update = Update {
        attributes: attrs,
        ..Update::default()
    };
    // An UPDATE is the 19-octet header, withdrawn length (2, zero here),
    // attribute length (2), attributes: cut the attributes out.
    match Message::Update(update).encode(&SessionParams::FOUR_OCTET_AS) {
        Ok(bytes) => bytes[23..].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// A TABLE_DUMP_V2 dump of `prefixes`, all learned from one peer
/// (`peer`, AS `peer_asn`, router ID `peer_id`) with next hop `next_hop`.
pub fn table_dump<A: PrefixAddr>(
    peer: IpAddr,
    peer_asn: u32,
    peer_id: Ipv4Addr,
    prefixes: &[Prefix<A>],
    next_hop: IpAddr,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index = peer_id.octets().to_vec();
    index.extend_from_slice(&0u16.to_be_bytes()); // no view name
    index.extend_from_slice(&1u16.to_be_bytes());
    index.push(0x02 | u8::from(peer.is_ipv6())); // AS4, and IPv6 address if so
    index.extend_from_slice(&peer_id.octets());
    match peer {
        IpAddr::V4(a) => index.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => index.extend_from_slice(&a.octets()),
    }
    index.extend_from_slice(&peer_asn.to_be_bytes());
    record(&mut out, PEER_INDEX_TABLE, &index);

    let attrs = attributes(next_hop);
    let subtype = if A::BITS == 32 {
        RIB_IPV4_UNICAST
    } else {
        RIB_IPV6_UNICAST
    };
    for (seq, prefix) in prefixes.iter().enumerate() {
        let mut body = (seq as u32).to_be_bytes().to_vec();
        prefix.encode_nlri(&mut body);
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes()); // peer index
        body.extend_from_slice(&0u32.to_be_bytes()); // originated time
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        record(&mut out, subtype, &body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlb_wire::bgp::Prefix6;
    use std::net::Ipv6Addr;

    #[test]
    fn dump_layout() {
        let p: Prefix6 = "2001:db8:100::1/128".parse().expect("prefix");
        let nh: Ipv6Addr = "2001:db8:1::11".parse().expect("addr");
        let dump = table_dump(
            "2001:db8:1::11".parse().expect("addr"),
            64513,
            Ipv4Addr::new(198, 51, 100, 11),
            &[p],
            nh.into(),
        );
        // Peer index record: 12-byte header + 4 + 2 + 2 + 1 + 4 + 16 + 4.
        assert_eq!(&dump[4..8], &[0, 13, 0, 1]);
        let index_len = u32::from_be_bytes(dump[8..12].try_into().expect("4")) as usize;
        assert_eq!(index_len, 33);
        let rib = &dump[12 + index_len..];
        assert_eq!(&rib[4..8], &[0, 13, 0, 4], "RIB_IPV6_UNICAST");
        let body = &rib[12..];
        assert_eq!(body[4], 128, "prefix length");
        let attrs = &body[4 + 1 + 16 + 2 + 2 + 4 + 2..];
        // ORIGIN, empty AS_PATH, MP_REACH_NLRI (AFI 2, SAFI 1, next hop, no NLRI).
        assert_eq!(&attrs[..4], &[0x40, 1, 1, 0]);
        assert_eq!(&attrs[4..7], &[0x40, 2, 0]);
        assert_eq!(&attrs[7..14], &[0x80, 14, 21, 0, 2, 1, 16]);
        assert_eq!(&attrs[14..30], &nh.octets());
        assert_eq!(attrs.len(), 31);
    }
}
