//! Address ranges of IPAddressPools: `192.0.2.0/24`, `192.0.2.10-192.0.2.20`,
//! `2001:db8::/120` and the like, as inclusive numeric intervals.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde::{Deserialize, Serialize};

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4.
    #[serde(rename = "IPv4")]
    V4,
    /// IPv6.
    #[serde(rename = "IPv6")]
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An address as a number within its family.
pub fn ip_to_number(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(v4) => (Family::V4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (Family::V6, u128::from(v6)),
    }
}

/// The address with this number in `family`. IPv4 numbers are truncated to
/// 32 bits; callers only pass numbers taken from IPv4 ranges.
pub fn number_to_ip(family: Family, number: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(number as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(number)),
    }
}

/// Whether buggy consumer firmware mistakes `ip` for a network or broadcast
/// address: IPv4 addresses ending in `.0` or `.255` (MetalLB's
/// `avoidBuggyIPs`).
pub fn confuses_buggy_firmware(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

/// An inclusive interval of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    family: Family,
    first: u128,
    last: u128,
}

/// What a pool `addresses` entry may look like, for error messages.
pub const ADDRESS_FORMS: &str =
    "a CIDR such as 192.0.2.0/24 or 2001:db8::/120, or a range such as 192.0.2.10-192.0.2.20 of one family";

/// Why a pool `addresses` entry is not a range (phrased to follow the
/// entry in a message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Its ends are of two families.
    #[error("mixes {0} and {1}")]
    MixedFamilies(Family, Family),
    /// Its start is after its end.
    #[error("starts at {first}, after its end {last}")]
    Reversed {
        /// The start.
        first: IpAddr,
        /// The end.
        last: IpAddr,
    },
    /// An end of a range is not an address.
    #[error("has {0:?}, which is not an IP address")]
    NotAnAddress(String),
    /// An address without a prefix length.
    #[error("is a bare address; write {0}/{bits} for one address", bits = Family::of(*.0).bits())]
    BareAddress(IpAddr),
    /// Neither form.
    #[error("is neither a CIDR nor a range")]
    NeitherForm,
    /// A prefix longer than the family's width.
    #[error("has prefix length {len}, longer than {} for {family}", family.bits())]
    PrefixTooLong {
        /// The length written.
        len: u8,
        /// The address's family.
        family: Family,
    },
    /// A prefix length that is not a number.
    #[error("has a prefix length that is not a number")]
    PrefixNotANumber,
    /// Anything else wrong with a CIDR.
    #[error("is not a valid CIDR")]
    NotACidr,
}

impl AddressRange {
    /// The range from `first` to `last` inclusive.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<AddressRange, RangeError> {
        let (family, a) = ip_to_number(first);
        let (other, b) = ip_to_number(last);
        if family != other {
            return Err(RangeError::MixedFamilies(family, other));
        }
        if a > b {
            return Err(RangeError::Reversed { first, last });
        }
        Ok(AddressRange {
            family,
            first: a,
            last: b,
        })
    }

    /// The family of every address in the range.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Lowest address.
    pub fn first(&self) -> IpAddr {
        number_to_ip(self.family, self.first)
    }

    /// Highest address.
    pub fn last(&self) -> IpAddr {
        number_to_ip(self.family, self.last)
    }

    /// Lowest and highest address as numbers.
    pub fn bounds(&self) -> (u128, u128) {
        (self.first, self.last)
    }

    /// Number of addresses (saturating for an entire IPv6 space).
    pub fn len(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// A range is never empty; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (family, n) = ip_to_number(ip);
        family == self.family && self.first <= n && n <= self.last
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    /// How many addresses in the range confuse buggy firmware (IPv4 `.0`
    /// and `.255`).
    pub fn buggy_count(&self) -> u128 {
        if self.family == Family::V6 {
            return 0;
        }
        let congruent = |r: u128| -> u128 {
            // Numbers n in [first, last] with n % 256 == r.
            let upto = |x: u128| -> u128 { if x < r { 0 } else { (x - r) / 256 + 1 } };
            upto(self.last) - if self.first == 0 { 0 } else { upto(self.first - 1) }
        };
        congruent(0) + congruent(255)
    }

    /// The smallest set of CIDRs covering exactly this range.
    pub fn cidrs(&self) -> Vec<IpNet> {
        match (self.first(), self.last()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect(),
            (IpAddr::V6(a), IpAddr::V6(b)) => Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect(),
            _ => Vec::new(),
        }
    }
}

impl FromStr for AddressRange {
    type Err = RangeError;

    /// Parses a pool `addresses` entry. As in MetalLB a CIDR with host bits
    /// set (`192.0.2.7/24`) means its whole network.
    fn from_str(text: &str) -> Result<AddressRange, RangeError> {
        let text = text.trim();
        let address = |end: &str| {
            end.trim()
                .parse::<IpAddr>()
                .map_err(|_| RangeError::NotAnAddress(end.trim().to_owned()))
        };
        if let Some((a, b)) = text.split_once('-') {
            return AddressRange::new(address(a)?, address(b)?);
        }
        if !text.contains('/') {
            return match text.parse::<IpAddr>() {
                Ok(ip) => Err(RangeError::BareAddress(ip)),
                Err(_) => Err(RangeError::NeitherForm),
            };
        }
        let net: IpNet = text.parse().map_err(|_| {
            match text
                .rsplit_once('/')
                .map(|(ip, len)| (ip.parse::<IpAddr>(), len.parse::<u8>()))
            {
                Some((Ok(ip), Ok(len))) => RangeError::PrefixTooLong {
                    len,
                    family: Family::of(ip),
                },
                Some((Ok(_), Err(_))) => RangeError::PrefixNotANumber,
                _ => RangeError::NotACidr,
            }
        })?;
        AddressRange::new(net.network(), net.broadcast())
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cidrs = self.cidrs();
        match cidrs.as_slice() {
            [one] => write!(f, "{one}"),
            _ => write!(f, "{}-{}", self.first(), self.last()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> AddressRange {
        s.parse().unwrap()
    }

    #[test]
    fn forms() {
        let r = range("192.0.2.0/24");
        assert_eq!(
            (r.first().to_string(), r.last().to_string()),
            ("192.0.2.0".into(), "192.0.2.255".into())
        );
        assert_eq!(r.len(), 256);
        assert_eq!(range("192.0.2.7/24"), r);
        let r = range("192.0.2.10 - 192.0.2.20");
        assert_eq!(r.len(), 11);
        assert_eq!(r.to_string(), "192.0.2.10-192.0.2.20");
        assert_eq!(range("2001:db8::/120").len(), 256);
        assert_eq!(range("2001:db8::/120").to_string(), "2001:db8::/120");
        assert_eq!(range("::/0").len(), u128::MAX);
    }

    #[test]
    fn rejections_say_why() {
        let cases = [
            ("192.0.2.0/33", "prefix length 33, longer than 32"),
            ("2001:db8::/129", "longer than 128"),
            ("192.0.2.1", "write 192.0.2.1/32"),
            ("192.0.2.9-192.0.2.1", "after its end"),
            ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
            ("192.0.2.x-192.0.2.9", "\"192.0.2.x\", which is not an IP address"),
            ("pool", "neither a CIDR nor a range"),
            ("192.0.2.0/abc", "not a number"),
        ];
        for (text, want) in cases {
            let err = text.parse::<AddressRange>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn overlap_and_membership() {
        let a = range("192.0.2.0/25");
        assert!(a.overlaps(&range("192.0.2.100-192.0.2.200")));
        assert!(!a.overlaps(&range("192.0.2.128/25")));
        assert!(!a.overlaps(&range("2001:db8::/64")));
        assert!(a.contains("192.0.2.127".parse().unwrap()));
        assert!(!a.contains("192.0.2.128".parse().unwrap()));
    }

    #[test]
    fn buggy_addresses_are_counted_exactly() {
        for text in [
            "192.0.2.0/24",
            "192.0.0.0/22",
            "192.0.2.254-192.0.3.1",
            "192.0.2.1-192.0.2.254",
            "0.0.0.0/30",
        ] {
            let r = range(text);
            let (lo, hi) = r.bounds();
            let brute = (lo..=hi)
                .filter(|n| confuses_buggy_firmware(number_to_ip(Family::V4, *n)))
                .count() as u128;
            assert_eq!(r.buggy_count(), brute, "{text}");
        }
        assert_eq!(range("2001:db8::/120").buggy_count(), 0);
    }

    #[test]
    fn cidr_cover_is_exact() {
        let cidrs: Vec<String> = range("192.0.2.10-192.0.2.20")
            .cidrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            cidrs,
            ["192.0.2.10/31", "192.0.2.12/30", "192.0.2.16/30", "192.0.2.20/32"]
        );
    }
}
