//! Ethernet II framing and MAC addresses.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Destination MAC (6 octets)                   |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                     Source MAC (6 octets)                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           EtherType           |  payload ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::error::Error;
use crate::reader::Reader;
use bytes::BufMut;
use std::fmt;
use std::str::FromStr;

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, the "unknown" target of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for group addresses (the I/G bit set), broadcast included.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::malformed(
                "MAC address",
                format!("{s:?} is not six hex octets like aa:bb:cc:dd:ee:ff"),
            )
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for octet in out.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// The EtherType field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6
    pub const IPV6: EtherType = EtherType(0x86dd);
}

/// An Ethernet II header (no 802.1Q tag: tagged frames arrive untagged on a
/// VLAN sub-interface, which is where meshlb opens its sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetHeader {
    /// Destination MAC.
    pub destination: MacAddr,
    /// Source MAC.
    pub source: MacAddr,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl EthernetHeader {
    /// Header length in octets.
    pub const LEN: usize = 14;
    /// Minimum frame length without the FCS; shorter frames are padded.
    pub const MIN_FRAME_LEN: usize = 60;

    /// Appends the header to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.destination.0);
        buf.put_slice(&self.source.0);
        buf.put_u16(self.ethertype.0);
    }

    /// Decodes a header and returns it with the payload that follows it.
    pub fn decode(frame: &[u8]) -> Result<(EthernetHeader, &[u8]), Error> {
        let mut r = Reader::new(frame, "Ethernet header");
        let destination = MacAddr(r.array()?);
        let source = MacAddr(r.array()?);
        let ethertype = EtherType(r.u16()?);
        Ok((
            EthernetHeader {
                destination,
                source,
                ethertype,
            },
            r.rest(),
        ))
    }
}

/// Pads a frame with zeros to the Ethernet minimum of 60 octets.
pub(crate) fn pad_frame(frame: &mut Vec<u8>) {
    if frame.len() < EthernetHeader::MIN_FRAME_LEN {
        frame.resize(EthernetHeader::MIN_FRAME_LEN, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let mac: MacAddr = "02:00:5e:10:00:0A".parse().expect("valid");
        assert_eq!(mac.0, [2, 0, 0x5e, 0x10, 0, 0x0a]);
        assert_eq!(mac.to_string(), "02:00:5e:10:00:0a");
        assert!("02:00:5e:10:00".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:0a:01".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:zz".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!mac.is_multicast());
    }

    #[test]
    fn header_round_trips_and_rejects_short_input() {
        let h = EthernetHeader {
            destination: MacAddr::BROADCAST,
            source: MacAddr([2, 0, 0, 0, 0, 1]),
            ethertype: EtherType::ARP,
        };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        buf.extend_from_slice(b"xyz");
        let (back, payload) = EthernetHeader::decode(&buf).expect("decodes");
        assert_eq!(back, h);
        assert_eq!(payload, b"xyz");
        assert!(matches!(EthernetHeader::decode(&buf[..13]), Err(Error::Truncated(_))));
    }
}
