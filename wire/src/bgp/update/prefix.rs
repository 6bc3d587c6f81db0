//! NLRI prefixes (RFC 4271 section 4.3): an address and a length, encoded
//! in as few octets as the length needs.

use crate::error::Error;
use crate::reader::Reader;
use std::fmt;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An address type that can head a [`Prefix`]: IPv4 or IPv6.
pub trait PrefixAddr: sealed::Sealed + Copy + Eq + Ord + Hash + fmt::Debug + fmt::Display + FromStr {
    /// Address width in bits.
    const BITS: u8;
    /// The address as an integer.
    fn to_bits(self) -> u128;
    /// The address from an integer.
    fn from_bits(bits: u128) -> Self;
}

impl PrefixAddr for Ipv4Addr {
    const BITS: u8 = 32;
    fn to_bits(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits(bits: u128) -> Self {
        Ipv4Addr::from(bits as u32)
    }
}

impl PrefixAddr for Ipv6Addr {
    const BITS: u8 = 128;
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
}

/// An IP prefix whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix<A> {
    addr: A,
    len: u8,
}

/// An IPv4 prefix.
pub type Prefix4 = Prefix<Ipv4Addr>;
/// An IPv6 prefix.
pub type Prefix6 = Prefix<Ipv6Addr>;

fn netmask(bits: u8, len: u8) -> u128 {
    let all = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    let host_bits = bits - len;
    let host = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    all & !host
}

impl<A: PrefixAddr> Prefix<A> {
    /// The prefix `addr/len`; host bits of `addr` are cleared.
    pub fn new(addr: A, len: u8) -> Result<Self, Error> {
        if len > A::BITS {
            return Err(Error::malformed(
                "prefix",
                format!("length {len} exceeds the address width of {} bits", A::BITS),
            ));
        }
        Ok(Prefix {
            addr: A::from_bits(addr.to_bits() & netmask(A::BITS, len)),
            len,
        })
    }

    /// A host route (/32 or /128).
    pub fn host(addr: A) -> Self {
        Prefix { addr, len: A::BITS }
    }

    /// The network address.
    pub fn addr(&self) -> A {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True if `addr` lies inside this prefix.
    pub fn contains(&self, addr: A) -> bool {
        addr.to_bits() & netmask(A::BITS, self.len) == self.addr.to_bits()
    }

    /// Appends the NLRI encoding: length in bits, then ceil(length/8) octets.
    pub fn encode_nlri(&self, buf: &mut Vec<u8>) {
        buf.push(self.len);
        let bytes = self.addr.to_bits().to_be_bytes();
        let width = usize::from(A::BITS / 8);
        buf.extend_from_slice(&bytes[16 - width..16 - width + usize::from(self.len).div_ceil(8)]);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, String> {
        let len = r.u8().map_err(|e| e.to_string())?;
        if len > A::BITS {
            return Err(format!("prefix length {len} exceeds {}", A::BITS));
        }
        let octets = r.take(usize::from(len).div_ceil(8)).map_err(|e| e.to_string())?;
        let width = usize::from(A::BITS / 8);
        let mut full = [0u8; 16];
        full[16 - width..16 - width + octets.len()].copy_from_slice(octets);
        Prefix::new(A::from_bits(u128::from_be_bytes(full)), len).map_err(|e| e.to_string())
    }
}

impl<A: PrefixAddr> fmt::Display for Prefix<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<A: PrefixAddr> FromStr for Prefix<A> {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::malformed("prefix", format!("{s:?} is not ADDRESS/LENGTH"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: A = addr.parse().map_err(|_| bad())?;
        Prefix::new(addr, len.parse().map_err(|_| bad())?)
    }
}

pub(super) fn decode_prefixes<A: PrefixAddr>(data: &[u8], what: &'static str) -> Result<Vec<Prefix<A>>, String> {
    let mut r = Reader::new(data, what);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Prefix::decode(&mut r).map_err(|e| format!("{what}: {e}"))?);
    }
    Ok(out)
}

pub(super) fn encode_prefixes<A: PrefixAddr>(prefixes: &[Prefix<A>], buf: &mut Vec<u8>) {
    prefixes.iter().for_each(|p| p.encode_nlri(buf));
}
