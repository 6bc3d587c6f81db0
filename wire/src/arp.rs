//! ARP for IPv4 over Ethernet (RFC 826), including the RFC 5227 announcement
//! that meshlb sends as gratuitous ARP when it takes over a service IP.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Hardware type (1)         |     Protocol type (0x0800)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  HLEN (6)     |  PLEN (4)     |          Operation            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Sender hardware address (6 octets)                |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |  Sender protocol address      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |             Target hardware address (6 octets)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Target protocol address                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::error::Error;
use crate::ethernet::{EtherType, EthernetHeader, MacAddr, pad_frame};
use crate::reader::Reader;
use bytes::BufMut;
use std::net::Ipv4Addr;

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;

/// The ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has the target IP? (1)
    Request,
    /// The target IP is at the sender MAC. (2)
    Reply,
}

impl ArpOperation {
    /// The operation code on the wire.
    pub fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpPacket {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = 28;

    /// A request: who has `target_ip`? Tell `sender_ip` at `sender_mac`.
    pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        ArpPacket {
            operation: ArpOperation::Request,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// The reply to `request`: the requested IP is at `our_mac`.
    pub fn reply_to(request: &ArpPacket, our_mac: MacAddr) -> Self {
        ArpPacket {
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: request.target_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
        }
    }

    /// An announcement of `ip` at `mac` (gratuitous ARP): sender IP equals
    /// target IP. As a request it is the RFC 5227 section 2.3 ARP
    /// Announcement (target MAC zero); as a reply, the RFC 5944 section 4.6
    /// form (target MAC = sender MAC). Send both: some stacks honour only one.
    pub fn announcement(operation: ArpOperation, mac: MacAddr, ip: Ipv4Addr) -> Self {
        ArpPacket {
            operation,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: match operation {
                ArpOperation::Request => MacAddr::ZERO,
                ArpOperation::Reply => mac,
            },
            target_ip: ip,
        }
    }

    /// True when sender and target IP are the same: an announcement or an
    /// RFC 5227 probe answer rather than a question about another host.
    pub fn is_announcement(&self) -> bool {
        self.sender_ip == self.target_ip
    }

    /// Appends the 28-octet ARP packet to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16(HTYPE_ETHERNET);
        buf.put_u16(PTYPE_IPV4);
        buf.put_u8(6);
        buf.put_u8(4);
        buf.put_u16(self.operation.code());
        buf.put_slice(&self.sender_mac.0);
        buf.put_slice(&self.sender_ip.octets());
        buf.put_slice(&self.target_mac.0);
        buf.put_slice(&self.target_ip.octets());
    }

    /// Decodes an ARP packet; trailing bytes (Ethernet padding) are ignored.
    pub fn decode(data: &[u8]) -> Result<ArpPacket, Error> {
        let mut r = Reader::new(data, "ARP packet");
        let htype = r.u16()?;
        if htype != HTYPE_ETHERNET {
            return Err(Error::Unsupported {
                what: "ARP hardware type",
                value: htype.into(),
                allowed: "only 1 (Ethernet)",
            });
        }
        let ptype = r.u16()?;
        if ptype != PTYPE_IPV4 {
            return Err(Error::Unsupported {
                what: "ARP protocol type",
                value: ptype.into(),
                allowed: "only 0x0800 (IPv4)",
            });
        }
        let (hlen, plen) = (r.u8()?, r.u8()?);
        if (hlen, plen) != (6, 4) {
            return Err(Error::malformed(
                "ARP address lengths",
                format!("hardware {hlen} / protocol {plen}, Ethernet/IPv4 needs 6 / 4"),
            ));
        }
        let operation = match r.u16()? {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => {
                return Err(Error::Unsupported {
                    what: "ARP operation",
                    value: other.into(),
                    allowed: "1 (request) or 2 (reply)",
                });
            }
        };
        Ok(ArpPacket {
            operation,
            sender_mac: MacAddr(r.array()?),
            sender_ip: r.ipv4()?,
            target_mac: MacAddr(r.array()?),
            target_ip: r.ipv4()?,
        })
    }

    /// A whole Ethernet frame carrying this packet, padded to 60 octets.
    pub fn to_frame(&self, source: MacAddr, destination: MacAddr) -> Vec<u8> {
        let mut frame = Vec::with_capacity(EthernetHeader::MIN_FRAME_LEN);
        EthernetHeader {
            destination,
            source,
            ethertype: EtherType::ARP,
        }
        .encode(&mut frame);
        self.encode(&mut frame);
        pad_frame(&mut frame);
        frame
    }

    /// Decodes a whole Ethernet frame that must carry ARP.
    pub fn from_frame(frame: &[u8]) -> Result<(EthernetHeader, ArpPacket), Error> {
        let (header, payload) = EthernetHeader::decode(frame)?;
        if header.ethertype != EtherType::ARP {
            return Err(Error::Unsupported {
                what: "EtherType",
                value: header.ethertype.0.into(),
                allowed: "0x0806 (ARP)",
            });
        }
        Ok((header, ArpPacket::decode(payload)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast request as `arping 198.51.100.10` sends it, byte by byte after RFC 826.
    const ARPING_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen op
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 198, 51, 100, 1, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 51, 100, 10, // target
    ];

    #[test]
    fn decodes_an_arping_request_and_answers_it() {
        let (eth, req) = ArpPacket::from_frame(&ARPING_REQUEST).expect("valid request");
        assert_eq!(eth.destination, MacAddr::BROADCAST);
        assert_eq!(req.operation, ArpOperation::Request);
        assert_eq!(req.sender_ip, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(req.target_ip, Ipv4Addr::new(198, 51, 100, 10));
        assert!(!req.is_announcement());

        let ours = MacAddr([2, 0, 0, 0, 0, 0x0a]);
        let reply = ArpPacket::reply_to(&req, ours);
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!((reply.sender_mac, reply.sender_ip), (ours, req.target_ip));
        assert_eq!((reply.target_mac, reply.target_ip), (req.sender_mac, req.sender_ip));
        let frame = reply.to_frame(ours, req.sender_mac);
        assert_eq!(frame.len(), 60, "padded to the Ethernet minimum");
        assert_eq!(ArpPacket::from_frame(&frame).expect("own frame").1, reply);
    }

    #[test]
    fn announcements_follow_rfc5227_and_rfc5944() {
        let mac = MacAddr([2, 0, 0, 0, 0, 7]);
        let ip = Ipv4Addr::new(203, 0, 113, 7);
        let req = ArpPacket::announcement(ArpOperation::Request, mac, ip);
        assert!(req.is_announcement());
        assert_eq!(req.target_mac, MacAddr::ZERO);
        let rep = ArpPacket::announcement(ArpOperation::Reply, mac, ip);
        assert!(rep.is_announcement());
        assert_eq!(rep.target_mac, mac);
        let mut bytes = Vec::new();
        req.encode(&mut bytes);
        assert_eq!(&bytes[6..8], &[0, 1]);
        assert_eq!(&bytes[14..18], &ip.octets());
        assert_eq!(&bytes[24..28], &ip.octets());
    }

    #[test]
    fn rejects_other_hardware_protocols_and_operations() {
        let mut bad = ARPING_REQUEST[14..].to_vec();
        bad[1] = 6; // IEEE 802 hardware
        assert!(matches!(
            ArpPacket::decode(&bad),
            Err(Error::Unsupported {
                what: "ARP hardware type",
                ..
            })
        ));
        let mut bad = ARPING_REQUEST[14..].to_vec();
        bad[7] = 3; // RARP request
        assert!(matches!(
            ArpPacket::decode(&bad),
            Err(Error::Unsupported {
                what: "ARP operation",
                ..
            })
        ));
        let mut bad = ARPING_REQUEST[14..].to_vec();
        bad[4] = 8;
        assert!(matches!(ArpPacket::decode(&bad), Err(Error::Malformed { .. })));
        assert!(matches!(
            ArpPacket::decode(&ARPING_REQUEST[14..40]),
            Err(Error::Truncated(_))
        ));
    }
}
