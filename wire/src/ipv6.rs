//! The IPv6 header and the helpers NDP needs: solicited-node multicast
//! addresses (RFC 4291 section 2.7.1), their Ethernet multicast MACs
//! (RFC 2464 section 7), modified EUI-64 link-local addresses, and the ICMPv6
//! checksum over the IPv6 pseudo-header (RFC 8200 section 8.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Source Address (16 octets)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Destination Address (16 octets)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::error::Error;
use crate::ethernet::MacAddr;
use crate::reader::Reader;
use bytes::BufMut;
use std::net::Ipv6Addr;

/// Next Header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// A fixed IPv6 header (extension headers are not decoded: NDP packets that
/// carry any are invalid for meshlb's purposes and are rejected by [`crate::ndp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Length of everything after this header.
    pub payload_length: u16,
    /// Protocol of the payload.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub source: Ipv6Addr,
    /// Destination address.
    pub destination: Ipv6Addr,
}

impl Ipv6Header {
    /// Header length in octets.
    pub const LEN: usize = 40;

    /// Appends the header to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let first = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        buf.put_u32(first);
        buf.put_u16(self.payload_length);
        buf.put_u8(self.next_header);
        buf.put_u8(self.hop_limit);
        buf.put_slice(&self.source.octets());
        buf.put_slice(&self.destination.octets());
    }

    /// Decodes the header; returns it and exactly `payload_length` bytes of
    /// payload (Ethernet padding after the payload is dropped).
    pub fn decode(data: &[u8]) -> Result<(Ipv6Header, &[u8]), Error> {
        let mut r = Reader::new(data, "IPv6 header");
        let first = r.u32()?;
        let version = first >> 28;
        if version != 6 {
            return Err(Error::Unsupported {
                what: "IPv6 version",
                value: version,
                allowed: "6",
            });
        }
        let header = Ipv6Header {
            traffic_class: ((first >> 20) & 0xff) as u8,
            flow_label: first & 0x000f_ffff,
            payload_length: r.u16()?,
            next_header: r.u8()?,
            hop_limit: r.u8()?,
            source: r.ipv6()?,
            destination: r.ipv6()?,
        };
        let mut payload = r.sub(usize::from(header.payload_length), "IPv6 payload")?;
        let payload = payload.take(payload.remaining())?;
        Ok((header, payload))
    }
}

/// The solicited-node multicast address of `addr`: ff02::1:ffXX:XXXX with
/// the low 24 bits of `addr` (RFC 4291 section 2.7.1).
pub fn solicited_node_multicast(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// The Ethernet destination for an IPv6 multicast address: 33:33 followed by
/// its low 32 bits (RFC 2464 section 7).
pub fn multicast_mac(group: &Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The fe80::/64 address a Linux interface derives from its MAC (modified
/// EUI-64, RFC 4291 appendix A).
pub fn link_local_from_mac(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The ICMPv6 checksum of `message` (whose checksum field may hold anything:
/// it is treated as zero) sent from `source` to `destination`.
pub fn icmpv6_checksum(source: &Ipv6Addr, destination: &Ipv6Addr, message: &[u8]) -> u16 {
    let (head, tail) = if message.len() >= 4 {
        (&message[..2], &message[4..])
    } else {
        (message, &[][..])
    };
    internet_checksum(&[
        &source.octets(),
        &destination.octets(),
        &(message.len() as u32).to_be_bytes(),
        &[0, 0, 0, NEXT_HEADER_ICMPV6],
        head,
        tail,
    ])
}

/// The Internet checksum (RFC 1071) over `parts` in order, each of even
/// length but the last.
pub(crate) fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        for chunk in part.chunks(2) {
            sum += u64::from(match chunk {
                [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                [hi] => u16::from_be_bytes([*hi, 0]),
                _ => 0,
            });
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checks every Neighbor Discovery message gets (RFC 4861 sections
/// 6.1 and 7.1) but its type's own: ICMP code 0, and a checksum that
/// verifies for `source` → `destination`. `what` names it in errors.
pub(crate) fn check_nd_message(
    message: &[u8],
    source: &Ipv6Addr,
    destination: &Ipv6Addr,
    what: &'static str,
) -> Result<(), Error> {
    let mut r = Reader::new(message, what);
    r.u8()?;
    let code = r.u8()?;
    let found = r.u16()?;
    if code != 0 {
        return Err(Error::malformed(what, format!("ICMP code is {code}, must be 0")));
    }
    let expected = icmpv6_checksum(source, destination, message);
    if found != expected {
        return Err(Error::BadChecksum {
            what: "ICMPv6",
            expected,
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_group_and_its_mac() {
        let vip: Ipv6Addr = "2001:db8:0:2::1:2a3b".parse().expect("addr");
        let group = solicited_node_multicast(&vip);
        assert_eq!(group, "ff02::1:ff01:2a3b".parse::<Ipv6Addr>().expect("addr"));
        assert_eq!(multicast_mac(&group).to_string(), "33:33:ff:01:2a:3b");
        let all_nodes: Ipv6Addr = "ff02::1".parse().expect("addr");
        assert_eq!(multicast_mac(&all_nodes).to_string(), "33:33:00:00:00:01");
    }

    #[test]
    fn link_local_is_modified_eui64() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().expect("mac");
        assert_eq!(
            link_local_from_mac(mac),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().expect("addr")
        );
    }

    #[test]
    fn header_round_trips_and_checks_version_and_length() {
        let h = Ipv6Header {
            traffic_class: 0xb8,
            flow_label: 0x12345,
            payload_length: 3,
            next_header: NEXT_HEADER_ICMPV6,
            hop_limit: 255,
            source: "fe80::1".parse().expect("addr"),
            destination: "ff02::1".parse().expect("addr"),
        };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        buf.extend_from_slice(&[1, 2, 3, 0, 0]); // payload plus padding
        let (back, payload) = Ipv6Header::decode(&buf).expect("decodes");
        assert_eq!(back, h);
        assert_eq!(payload, &[1, 2, 3]);
        assert!(matches!(Ipv6Header::decode(&buf[..42]), Err(Error::Truncated(_))));
        buf[0] = 0x45;
        assert!(matches!(Ipv6Header::decode(&buf), Err(Error::Unsupported { .. })));
    }
}
