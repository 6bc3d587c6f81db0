//! UPDATE (RFC 4271 section 4.3), its path attributes, NLRI encoding, and
//! revised error handling (RFC 7606).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//!
//! Path attribute:
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+------------------------+-----------+
//! |O|T|P|E|  0    |  Type Code    | Length (1, or 2 if E)  | Value ... |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+------------------------+-----------+
//!  O optional, T transitive, P partial, E extended length
//!
//! Prefix (NLRI): | Length in bits (1 octet) | ceil(Length/8) octets of address |
//! ```
//!
//! Error handling follows RFC 7606: a malformed attribute whose damage is
//! contained is reported as an [`AttributeIssue`] on the decoded [`Update`]
//! (treat-as-withdraw or attribute-discard) instead of ending the session;
//! only errors that leave the NLRI unlocatable end it with a NOTIFICATION.

use super::notification::{code, update_subcode};
use super::{BgpError, Family, SessionParams};
use crate::error::Error;
use crate::reader::Reader;
use std::fmt;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Path attribute type codes.
pub mod attr_type {
    /// ORIGIN (well-known mandatory).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (well-known mandatory).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (well-known mandatory for IPv4 NLRI).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (optional non-transitive).
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// LOCAL_PREF (well-known, iBGP).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (well-known discretionary).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (optional transitive).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (optional transitive, RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// MP_REACH_NLRI (optional non-transitive, RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (optional non-transitive, RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// AS4_PATH (optional transitive, RFC 6793); passed on unparsed.
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (optional transitive, RFC 6793); passed on unparsed.
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (optional transitive, RFC 8092).
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Attribute flag bits.
pub mod attr_flags {
    /// Optional (vs well-known).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial: an optional transitive attribute passed on by a speaker that did not recognise it.
    pub const PARTIAL: u8 = 0x20;
    /// The length field is 2 octets.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}
use attr_flags::{EXTENDED_LENGTH, OPTIONAL, PARTIAL, TRANSITIVE};

// ===== Prefixes =====

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

fn decode_prefixes<A: PrefixAddr>(data: &[u8], what: &'static str) -> Result<Vec<Prefix<A>>, String> {
    let mut r = Reader::new(data, what);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Prefix::decode(&mut r).map_err(|e| format!("{what}: {e}"))?);
    }
    Ok(out)
}

fn encode_prefixes<A: PrefixAddr>(prefixes: &[Prefix<A>], buf: &mut Vec<u8>) {
    prefixes.iter().for_each(|p| p.encode_nlri(buf));
}

// ===== Attribute values =====

/// ORIGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// 0: learned from an IGP (what meshlb announces).
    Igp,
    /// 1: learned from EGP.
    Egp,
    /// 2: learned some other way.
    Incomplete,
}

/// The kind of an AS_PATH segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsSegmentKind {
    /// 1: AS_SET, unordered.
    Set,
    /// 2: AS_SEQUENCE, ordered.
    Sequence,
    /// 3: AS_CONFED_SEQUENCE (RFC 5065).
    ConfedSequence,
    /// 4: AS_CONFED_SET (RFC 5065).
    ConfedSet,
}

impl AsSegmentKind {
    fn code(self) -> u8 {
        match self {
            AsSegmentKind::Set => 1,
            AsSegmentKind::Sequence => 2,
            AsSegmentKind::ConfedSequence => 3,
            AsSegmentKind::ConfedSet => 4,
        }
    }
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    /// Set or sequence.
    pub kind: AsSegmentKind,
    /// The AS numbers (1 to 255 per segment on the wire; longer runs are split).
    pub asns: Vec<u32>,
}

/// AS_PATH.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    /// Segments in order.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path that is one AS_SEQUENCE (empty for an iBGP origination).
    pub fn sequence(asns: Vec<u32>) -> AsPath {
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// Every AS number in order of appearance.
    pub fn asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.segments.iter().flat_map(|s| s.asns.iter().copied())
    }

    fn encode(&self, buf: &mut Vec<u8>, four_octet: bool) {
        for segment in &self.segments {
            for run in segment.asns.chunks(255) {
                buf.push(segment.kind.code());
                buf.push(run.len() as u8);
                for asn in run {
                    if four_octet {
                        buf.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let two = u16::try_from(*asn).unwrap_or(super::AS_TRANS);
                        buf.extend_from_slice(&two.to_be_bytes());
                    }
                }
            }
        }
    }

    fn decode(data: &[u8], four_octet: bool) -> Result<AsPath, String> {
        let mut r = Reader::new(data, "AS_PATH");
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = match r.u8().map_err(|e| e.to_string())? {
                1 => AsSegmentKind::Set,
                2 => AsSegmentKind::Sequence,
                3 => AsSegmentKind::ConfedSequence,
                4 => AsSegmentKind::ConfedSet,
                other => return Err(format!("segment type {other} is not 1 to 4")),
            };
            let count = r.u8().map_err(|e| e.to_string())?;
            if count == 0 {
                return Err("a segment with no AS numbers".into());
            }
            let mut asns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let asn = if four_octet { r.u32() } else { r.u16().map(u32::from) };
                asns.push(asn.map_err(|e| format!("{e} ({} octets per AS)", if four_octet { 4 } else { 2 }))?);
            }
            segments.push(AsSegment { kind, asns });
        }
        Ok(AsPath { segments })
    }
}

/// A standard community (RFC 1997): AS:value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN (RFC 8326).
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xffff_0000);
    /// ACCEPT_OWN (RFC 7611).
    pub const ACCEPT_OWN: Community = Community(0xffff_0001);
    /// LLGR_STALE (RFC 9494).
    pub const LLGR_STALE: Community = Community(0xffff_0006);
    /// NO_LLGR (RFC 9494).
    pub const NO_LLGR: Community = Community(0xffff_0007);
    /// BLACKHOLE (RFC 7999).
    pub const BLACKHOLE: Community = Community(0xffff_029a);
    /// NO_EXPORT (RFC 1997).
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    /// NO_ADVERTISE (RFC 1997).
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);
    /// NO_EXPORT_SUBCONFED (RFC 1997).
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xffff_ff03);
    /// NOPEER (RFC 3765).
    pub const NO_PEER: Community = Community(0xffff_ff04);

    const WELL_KNOWN: [(Community, &'static str); 9] = [
        (Community::GRACEFUL_SHUTDOWN, "graceful-shutdown"),
        (Community::ACCEPT_OWN, "accept-own"),
        (Community::LLGR_STALE, "llgr-stale"),
        (Community::NO_LLGR, "no-llgr"),
        (Community::BLACKHOLE, "blackhole"),
        (Community::NO_EXPORT, "no-export"),
        (Community::NO_ADVERTISE, "no-advertise"),
        (Community::NO_EXPORT_SUBCONFED, "no-export-subconfed"),
        (Community::NO_PEER, "no-peer"),
    ];

    /// The community `asn:value`.
    pub fn new(asn: u16, value: u16) -> Community {
        Community((u32::from(asn) << 16) | u32::from(value))
    }

    /// The high 16 bits.
    pub fn asn(&self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The low 16 bits.
    pub fn value(&self) -> u16 {
        self.0 as u16
    }

    /// The well-known communities and their names.
    pub fn well_known() -> impl Iterator<Item = (Community, &'static str)> {
        Self::WELL_KNOWN.into_iter()
    }

    /// The well-known name, if this is a well-known community.
    pub fn name(&self) -> Option<&'static str> {
        Self::WELL_KNOWN.iter().find(|(c, _)| c == self).map(|(_, n)| *n)
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}:{}", self.asn(), self.value()),
        }
    }
}

impl FromStr for Community {
    type Err = Error;

    /// `AS:VALUE` with both parts 0 to 65535, or a well-known name
    /// (`no-export`, `NO_EXPORT`, `no-advertise`, ...).
    fn from_str(s: &str) -> Result<Self, Error> {
        let normalised = s.trim().to_ascii_lowercase().replace('_', "-");
        if let Some((c, _)) = Self::WELL_KNOWN.iter().find(|(_, n)| *n == normalised) {
            return Ok(*c);
        }
        let bad = || {
            Error::malformed(
                "community",
                format!("{s:?} is neither AS:VALUE (each 0 to 65535) nor a well-known name such as no-export"),
            )
        };
        let (asn, value) = s.trim().split_once(':').ok_or_else(bad)?;
        Ok(Community::new(
            asn.parse().map_err(|_| bad())?,
            value.parse().map_err(|_| bad())?,
        ))
    }
}

/// A large community (RFC 8092): Global Administrator, Local Data 1, Local Data 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global Administrator (an AS number).
    pub global_admin: u32,
    /// Local Data Part 1.
    pub local_data_1: u32,
    /// Local Data Part 2.
    pub local_data_2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global_admin, self.local_data_1, self.local_data_2)
    }
}

impl FromStr for LargeCommunity {
    type Err = Error;

    /// `A:B:C`, each 0 to 4294967295.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::malformed(
                "large community",
                format!("{s:?} is not GLOBAL:LOCAL1:LOCAL2 with each part 0 to 4294967295"),
            )
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [a, b, c] = parts.as_slice() else {
            return Err(bad());
        };
        Ok(LargeCommunity {
            global_admin: a.parse().map_err(|_| bad())?,
            local_data_1: b.parse().map_err(|_| bad())?,
            local_data_2: c.parse().map_err(|_| bad())?,
        })
    }
}

/// AGGREGATOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// The AS that aggregated.
    pub asn: u32,
    /// The aggregating speaker's address.
    pub address: Ipv4Addr,
}

/// MP_REACH_NLRI (RFC 4760 section 3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpReach {
    /// IPv4 unicast with an IPv4 next hop.
    Ipv4Unicast {
        /// Next hop.
        next_hop: Ipv4Addr,
        /// Reachable prefixes.
        nlri: Vec<Prefix4>,
    },
    /// IPv4 unicast with an IPv6 next hop (RFC 8950, with the extended
    /// next hop capability): a global (or only a link-local) address, and
    /// optionally a link-local one.
    Ipv4UnicastV6NextHop {
        /// Global next hop (a link-local one when it is the only one).
        next_hop: Ipv6Addr,
        /// Link-local next hop (32-octet next-hop field).
        link_local: Option<Ipv6Addr>,
        /// Reachable prefixes.
        nlri: Vec<Prefix4>,
    },
    /// IPv6 unicast (RFC 2545): a global next hop and optionally a link-local one.
    Ipv6Unicast {
        /// Global next hop.
        next_hop: Ipv6Addr,
        /// Link-local next hop (32-octet next-hop field).
        link_local: Option<Ipv6Addr>,
        /// Reachable prefixes.
        nlri: Vec<Prefix6>,
    },
    /// Any other family or next-hop form, kept as it came.
    Other {
        /// The family.
        family: Family,
        /// Next-hop field.
        next_hop: Vec<u8>,
        /// NLRI field.
        nlri: Vec<u8>,
    },
}

impl MpReach {
    /// The family.
    pub fn family(&self) -> Family {
        match self {
            MpReach::Ipv4Unicast { .. } | MpReach::Ipv4UnicastV6NextHop { .. } => Family::IPV4_UNICAST,
            MpReach::Ipv6Unicast { .. } => Family::IPV6_UNICAST,
            MpReach::Other { family, .. } => *family,
        }
    }

    fn encode(&self, buf: &mut Vec<u8>) {
        let family = self.family();
        buf.extend_from_slice(&family.afi.to_be_bytes());
        buf.push(family.safi);
        match self {
            MpReach::Ipv4Unicast { next_hop, nlri } => {
                buf.push(4);
                buf.extend_from_slice(&next_hop.octets());
                buf.push(0);
                encode_prefixes(nlri, buf);
            }
            MpReach::Ipv4UnicastV6NextHop {
                next_hop,
                link_local,
                nlri,
            } => {
                encode_v6_next_hop(*next_hop, *link_local, buf);
                encode_prefixes(nlri, buf);
            }
            MpReach::Ipv6Unicast {
                next_hop,
                link_local,
                nlri,
            } => {
                encode_v6_next_hop(*next_hop, *link_local, buf);
                encode_prefixes(nlri, buf);
            }
            MpReach::Other { next_hop, nlri, .. } => {
                buf.push(next_hop.len() as u8);
                buf.extend_from_slice(next_hop);
                buf.push(0);
                buf.extend_from_slice(nlri);
            }
        }
    }

    fn decode(value: &[u8]) -> Result<MpReach, String> {
        let mut r = Reader::new(value, "MP_REACH_NLRI");
        let t = |e: crate::error::Truncated| e.to_string();
        let family = Family {
            afi: r.u16().map_err(t)?,
            safi: r.u8().map_err(t)?,
        };
        let nh_len = usize::from(r.u8().map_err(t)?);
        let nh = r.take(nh_len).map_err(t)?;
        r.u8().map_err(t)?; // reserved
        let nlri = r.rest();
        Ok(match (family, nh_len) {
            (Family::IPV4_UNICAST, 4) => MpReach::Ipv4Unicast {
                next_hop: Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]),
                nlri: decode_prefixes(nlri, "MP_REACH_NLRI IPv4 NLRI")?,
            },
            (Family::IPV4_UNICAST, 16 | 32) => MpReach::Ipv4UnicastV6NextHop {
                next_hop: ipv6_at(nh, 0),
                link_local: (nh_len == 32).then(|| ipv6_at(nh, 16)),
                nlri: decode_prefixes(nlri, "MP_REACH_NLRI IPv4 NLRI")?,
            },
            (Family::IPV6_UNICAST, 16 | 32) => MpReach::Ipv6Unicast {
                next_hop: ipv6_at(nh, 0),
                link_local: (nh_len == 32).then(|| ipv6_at(nh, 16)),
                nlri: decode_prefixes(nlri, "MP_REACH_NLRI IPv6 NLRI")?,
            },
            (Family::IPV6_UNICAST, other) => return Err(format!("IPv6 next hop of {other} octets (16 or 32)")),
            _ => MpReach::Other {
                family,
                next_hop: nh.to_vec(),
                nlri: nlri.to_vec(),
            },
        })
    }
}

/// An IPv6 next-hop field (RFC 2545 section 3): its length, the global
/// address, the link-local one if any, and the reserved octet.
fn encode_v6_next_hop(next_hop: Ipv6Addr, link_local: Option<Ipv6Addr>, buf: &mut Vec<u8>) {
    buf.push(if link_local.is_some() { 32 } else { 16 });
    buf.extend_from_slice(&next_hop.octets());
    if let Some(ll) = link_local {
        buf.extend_from_slice(&ll.octets());
    }
    buf.push(0);
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(o)
}

/// MP_UNREACH_NLRI (RFC 4760 section 4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpUnreach {
    /// Withdrawn IPv4 unicast prefixes.
    Ipv4Unicast(Vec<Prefix4>),
    /// Withdrawn IPv6 unicast prefixes.
    Ipv6Unicast(Vec<Prefix6>),
    /// Any other family, kept as it came.
    Other {
        /// The family.
        family: Family,
        /// Withdrawn routes field.
        withdrawn: Vec<u8>,
    },
}

impl MpUnreach {
    /// The family.
    pub fn family(&self) -> Family {
        match self {
            MpUnreach::Ipv4Unicast(_) => Family::IPV4_UNICAST,
            MpUnreach::Ipv6Unicast(_) => Family::IPV6_UNICAST,
            MpUnreach::Other { family, .. } => *family,
        }
    }

    /// True when nothing is withdrawn (the IPv6 End-of-RIB marker).
    pub fn is_empty(&self) -> bool {
        match self {
            MpUnreach::Ipv4Unicast(p) => p.is_empty(),
            MpUnreach::Ipv6Unicast(p) => p.is_empty(),
            MpUnreach::Other { withdrawn, .. } => withdrawn.is_empty(),
        }
    }

    fn encode(&self, buf: &mut Vec<u8>) {
        let family = self.family();
        buf.extend_from_slice(&family.afi.to_be_bytes());
        buf.push(family.safi);
        match self {
            MpUnreach::Ipv4Unicast(p) => encode_prefixes(p, buf),
            MpUnreach::Ipv6Unicast(p) => encode_prefixes(p, buf),
            MpUnreach::Other { withdrawn, .. } => buf.extend_from_slice(withdrawn),
        }
    }

    fn decode(value: &[u8]) -> Result<MpUnreach, String> {
        let mut r = Reader::new(value, "MP_UNREACH_NLRI");
        let t = |e: crate::error::Truncated| e.to_string();
        let family = Family {
            afi: r.u16().map_err(t)?,
            safi: r.u8().map_err(t)?,
        };
        Ok(match family {
            Family::IPV4_UNICAST => MpUnreach::Ipv4Unicast(decode_prefixes(r.rest(), "MP_UNREACH_NLRI IPv4")?),
            Family::IPV6_UNICAST => MpUnreach::Ipv6Unicast(decode_prefixes(r.rest(), "MP_UNREACH_NLRI IPv6")?),
            _ => MpUnreach::Other {
                family,
                withdrawn: r.rest().to_vec(),
            },
        })
    }
}

/// An attribute this codec does not interpret, kept for propagation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownAttribute {
    /// Flags as received, without the extended-length bit (the encoder
    /// chooses the length form).
    pub flags: u8,
    /// Type code.
    pub type_code: u8,
    /// Value.
    pub value: Vec<u8>,
}

/// A path attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathAttribute {
    /// ORIGIN (1)
    Origin(Origin),
    /// AS_PATH (2)
    AsPath(AsPath),
    /// NEXT_HOP (3)
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC (4)
    MultiExitDisc(u32),
    /// LOCAL_PREF (5)
    LocalPref(u32),
    /// ATOMIC_AGGREGATE (6)
    AtomicAggregate,
    /// AGGREGATOR (7)
    Aggregator(Aggregator),
    /// COMMUNITIES (8)
    Communities(Vec<Community>),
    /// MP_REACH_NLRI (14)
    MpReach(MpReach),
    /// MP_UNREACH_NLRI (15)
    MpUnreach(MpUnreach),
    /// LARGE_COMMUNITY (32)
    LargeCommunities(Vec<LargeCommunity>),
    /// Anything else.
    Unknown(UnknownAttribute),
}

/// What RFC 7606 says to do with an attribute error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorAction {
    /// Drop the attribute, keep the routes.
    AttributeDiscard,
    /// Handle every route the UPDATE announces as withdrawn.
    TreatAsWithdraw,
}

/// An attribute error that RFC 7606 contains without a session reset. The
/// attribute is not in [`Update::attributes`]; the session must log it and,
/// for [`ErrorAction::TreatAsWithdraw`], withdraw the announced routes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttributeIssue {
    /// The attribute's type code (0 when the attribute list itself is damaged).
    pub type_code: u8,
    /// What to do.
    pub action: ErrorAction,
    /// The UPDATE Message Error subcode RFC 4271 would have sent.
    pub subcode: u8,
    /// What is wrong.
    pub reason: String,
}

impl PathAttribute {
    /// The type code.
    pub fn type_code(&self) -> u8 {
        use attr_type::*;
        match self {
            PathAttribute::Origin(_) => ORIGIN,
            PathAttribute::AsPath(_) => AS_PATH,
            PathAttribute::NextHop(_) => NEXT_HOP,
            PathAttribute::MultiExitDisc(_) => MULTI_EXIT_DISC,
            PathAttribute::LocalPref(_) => LOCAL_PREF,
            PathAttribute::AtomicAggregate => ATOMIC_AGGREGATE,
            PathAttribute::Aggregator(_) => AGGREGATOR,
            PathAttribute::Communities(_) => COMMUNITIES,
            PathAttribute::MpReach(_) => MP_REACH_NLRI,
            PathAttribute::MpUnreach(_) => MP_UNREACH_NLRI,
            PathAttribute::LargeCommunities(_) => LARGE_COMMUNITY,
            PathAttribute::Unknown(u) => u.type_code,
        }
    }

    /// The flags the attribute is sent with (without extended length).
    pub fn flags(&self) -> u8 {
        match self {
            PathAttribute::Unknown(u) => u.flags & !EXTENDED_LENGTH,
            other => expected_category(other.type_code()).unwrap_or(OPTIONAL | TRANSITIVE),
        }
    }

    fn encode(&self, buf: &mut Vec<u8>, four_octet: bool) {
        let mut value = Vec::new();
        match self {
            PathAttribute::Origin(o) => value.push(*o as u8),
            PathAttribute::AsPath(p) => p.encode(&mut value, four_octet),
            PathAttribute::NextHop(nh) => value.extend_from_slice(&nh.octets()),
            PathAttribute::MultiExitDisc(v) | PathAttribute::LocalPref(v) => value.extend_from_slice(&v.to_be_bytes()),
            PathAttribute::AtomicAggregate => {}
            PathAttribute::Aggregator(a) => {
                if four_octet {
                    value.extend_from_slice(&a.asn.to_be_bytes());
                } else {
                    value.extend_from_slice(&u16::try_from(a.asn).unwrap_or(super::AS_TRANS).to_be_bytes());
                }
                value.extend_from_slice(&a.address.octets());
            }
            PathAttribute::Communities(cs) => cs.iter().for_each(|c| value.extend_from_slice(&c.0.to_be_bytes())),
            PathAttribute::MpReach(m) => m.encode(&mut value),
            PathAttribute::MpUnreach(m) => m.encode(&mut value),
            PathAttribute::LargeCommunities(cs) => {
                for c in cs {
                    value.extend_from_slice(&c.global_admin.to_be_bytes());
                    value.extend_from_slice(&c.local_data_1.to_be_bytes());
                    value.extend_from_slice(&c.local_data_2.to_be_bytes());
                }
            }
            PathAttribute::Unknown(u) => value.extend_from_slice(&u.value),
        }
        let extended = value.len() > 255;
        buf.push(self.flags() | if extended { EXTENDED_LENGTH } else { 0 });
        buf.push(self.type_code());
        if extended {
            buf.extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        } else {
            buf.push(value.len() as u8);
        }
        buf.extend_from_slice(&value);
    }
}

/// The optional/transitive bits a recognised attribute must carry.
fn expected_category(type_code: u8) -> Option<u8> {
    use attr_type::*;
    Some(match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => TRANSITIVE,
        MULTI_EXIT_DISC | MP_REACH_NLRI | MP_UNREACH_NLRI => OPTIONAL,
        AGGREGATOR | COMMUNITIES | LARGE_COMMUNITY => OPTIONAL | TRANSITIVE,
        _ => return None,
    })
}

/// How RFC 7606 (section 7) contains an error in a recognised attribute.
fn containment(type_code: u8) -> Option<ErrorAction> {
    use attr_type::*;
    match type_code {
        ATOMIC_AGGREGATE | AGGREGATOR => Some(ErrorAction::AttributeDiscard),
        MP_REACH_NLRI | MP_UNREACH_NLRI => None,
        _ => Some(ErrorAction::TreatAsWithdraw),
    }
}

struct AttrError {
    subcode: u8,
    reason: String,
}

fn attr_error(subcode: u8, reason: impl Into<String>) -> AttrError {
    AttrError {
        subcode,
        reason: reason.into(),
    }
}

fn exact_len(value: &[u8], len: usize, name: &str) -> Result<(), AttrError> {
    if value.len() != len {
        return Err(attr_error(
            update_subcode::ATTRIBUTE_LENGTH_ERROR,
            format!("{name} has length {}, must be {len}", value.len()),
        ));
    }
    Ok(())
}

fn be_u32(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

fn decode_attribute(
    flags: u8,
    type_code: u8,
    value: &[u8],
    params: &SessionParams,
) -> Result<PathAttribute, AttrError> {
    use attr_type::*;
    let Some(expected) = expected_category(type_code) else {
        return Ok(unknown_attribute(flags, type_code, value));
    };
    let category = flags & (OPTIONAL | TRANSITIVE);
    let partial_ok = expected == OPTIONAL | TRANSITIVE;
    if category != expected || (!partial_ok && flags & PARTIAL != 0) {
        return Err(attr_error(
            update_subcode::ATTRIBUTE_FLAGS_ERROR,
            format!("attribute {type_code} has flags {flags:#04x}, expected {expected:#04x}"),
        ));
    }
    let length_multiple = |unit: usize, name: &str| {
        if value.is_empty() || !value.len().is_multiple_of(unit) {
            Err(attr_error(
                update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
                format!("{name} length {} is not a non-zero multiple of {unit}", value.len()),
            ))
        } else {
            Ok(())
        }
    };
    Ok(match type_code {
        ORIGIN => {
            exact_len(value, 1, "ORIGIN")?;
            PathAttribute::Origin(match value[0] {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                other => {
                    return Err(attr_error(
                        update_subcode::INVALID_ORIGIN,
                        format!("ORIGIN value {other}"),
                    ));
                }
            })
        }
        AS_PATH => PathAttribute::AsPath(
            AsPath::decode(value, params.four_octet_as)
                .map_err(|e| attr_error(update_subcode::MALFORMED_AS_PATH, e))?,
        ),
        NEXT_HOP => {
            exact_len(value, 4, "NEXT_HOP")?;
            PathAttribute::NextHop(Ipv4Addr::new(value[0], value[1], value[2], value[3]))
        }
        MULTI_EXIT_DISC => {
            exact_len(value, 4, "MULTI_EXIT_DISC")?;
            PathAttribute::MultiExitDisc(be_u32(value))
        }
        LOCAL_PREF => {
            exact_len(value, 4, "LOCAL_PREF")?;
            PathAttribute::LocalPref(be_u32(value))
        }
        ATOMIC_AGGREGATE => {
            exact_len(value, 0, "ATOMIC_AGGREGATE")?;
            PathAttribute::AtomicAggregate
        }
        AGGREGATOR => {
            let (asn, rest) = if params.four_octet_as {
                exact_len(value, 8, "AGGREGATOR")?;
                (be_u32(value), &value[4..])
            } else {
                exact_len(value, 6, "AGGREGATOR")?;
                (u32::from(u16::from_be_bytes([value[0], value[1]])), &value[2..])
            };
            PathAttribute::Aggregator(Aggregator {
                asn,
                address: Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]),
            })
        }
        COMMUNITIES => {
            length_multiple(4, "COMMUNITIES")?;
            PathAttribute::Communities(value.chunks_exact(4).map(|c| Community(be_u32(c))).collect())
        }
        LARGE_COMMUNITY => {
            length_multiple(12, "LARGE_COMMUNITY")?;
            PathAttribute::LargeCommunities(
                value
                    .chunks_exact(12)
                    .map(|c| LargeCommunity {
                        global_admin: be_u32(&c[0..4]),
                        local_data_1: be_u32(&c[4..8]),
                        local_data_2: be_u32(&c[8..12]),
                    })
                    .collect(),
            )
        }
        MP_REACH_NLRI => PathAttribute::MpReach(
            MpReach::decode(value).map_err(|e| attr_error(update_subcode::OPTIONAL_ATTRIBUTE_ERROR, e))?,
        ),
        MP_UNREACH_NLRI => PathAttribute::MpUnreach(
            MpUnreach::decode(value).map_err(|e| attr_error(update_subcode::OPTIONAL_ATTRIBUTE_ERROR, e))?,
        ),
        _ => unknown_attribute(flags, type_code, value),
    })
}

/// An attribute kept as received (flags without the extended-length bit).
/// Also the fallback should `expected_category` and `decode_attribute` ever
/// disagree on which codes are known.
fn unknown_attribute(flags: u8, type_code: u8, value: &[u8]) -> PathAttribute {
    PathAttribute::Unknown(UnknownAttribute {
        flags: flags & !EXTENDED_LENGTH,
        type_code,
        value: value.to_vec(),
    })
}

// ===== Update =====

/// An UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn IPv4 unicast prefixes.
    pub withdrawn: Vec<Prefix4>,
    /// Path attributes in the order received or to be sent.
    pub attributes: Vec<PathAttribute>,
    /// Announced IPv4 unicast prefixes.
    pub nlri: Vec<Prefix4>,
    /// Errors contained under RFC 7606 while decoding; empty for a clean
    /// UPDATE and ignored by the encoder.
    pub issues: Vec<AttributeIssue>,
}

impl Update {
    /// The End-of-RIB marker for `family` (RFC 4724 section 2): an empty
    /// UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI otherwise.
    pub fn end_of_rib(family: Family) -> Update {
        let attributes = match family {
            Family::IPV4_UNICAST => vec![],
            Family::IPV6_UNICAST => vec![PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(vec![]))],
            other => vec![PathAttribute::MpUnreach(MpUnreach::Other {
                family: other,
                withdrawn: vec![],
            })],
        };
        Update {
            attributes,
            ..Update::default()
        }
    }

    /// The family this UPDATE marks End-of-RIB for, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || !self.issues.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some(Family::IPV4_UNICAST),
            [PathAttribute::MpUnreach(m)] if m.is_empty() => Some(m.family()),
            _ => None,
        }
    }

    /// True when RFC 7606 says to treat every route this UPDATE announces
    /// as withdrawn.
    pub fn treat_as_withdraw(&self) -> bool {
        self.issues.iter().any(|i| i.action == ErrorAction::TreatAsWithdraw)
    }

    /// The attribute with `type_code`, if present.
    pub fn attribute(&self, type_code: u8) -> Option<&PathAttribute> {
        self.attributes.iter().find(|a| a.type_code() == type_code)
    }

    /// ORIGIN, if present.
    pub fn origin(&self) -> Option<Origin> {
        self.attributes.iter().find_map(|a| match a {
            PathAttribute::Origin(o) => Some(*o),
            _ => None,
        })
    }

    /// AS_PATH, if present.
    pub fn as_path(&self) -> Option<&AsPath> {
        self.attributes.iter().find_map(|a| match a {
            PathAttribute::AsPath(p) => Some(p),
            _ => None,
        })
    }

    /// NEXT_HOP, if present.
    pub fn next_hop(&self) -> Option<Ipv4Addr> {
        self.attributes.iter().find_map(|a| match a {
            PathAttribute::NextHop(n) => Some(*n),
            _ => None,
        })
    }

    /// LOCAL_PREF, if present.
    pub fn local_pref(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            PathAttribute::LocalPref(v) => Some(*v),
            _ => None,
        })
    }

    /// COMMUNITIES (empty if absent).
    pub fn communities(&self) -> &[Community] {
        self.attributes
            .iter()
            .find_map(|a| match a {
                PathAttribute::Communities(c) => Some(c.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// LARGE_COMMUNITY (empty if absent).
    pub fn large_communities(&self) -> &[LargeCommunity] {
        self.attributes
            .iter()
            .find_map(|a| match a {
                PathAttribute::LargeCommunities(c) => Some(c.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// MP_REACH_NLRI, if present.
    pub fn mp_reach(&self) -> Option<&MpReach> {
        self.attributes.iter().find_map(|a| match a {
            PathAttribute::MpReach(m) => Some(m),
            _ => None,
        })
    }

    /// MP_UNREACH_NLRI, if present.
    pub fn mp_unreach(&self) -> Option<&MpUnreach> {
        self.attributes.iter().find_map(|a| match a {
            PathAttribute::MpUnreach(m) => Some(m),
            _ => None,
        })
    }

    /// The attributes as a speaker passes them on (RFC 4271 section 5):
    /// unrecognised optional transitive attributes get the Partial bit,
    /// unrecognised optional non-transitive ones are dropped.
    pub fn for_propagation(&self) -> Update {
        let attributes = self
            .attributes
            .iter()
            .filter_map(|a| match a {
                PathAttribute::Unknown(u) if u.flags & TRANSITIVE == 0 => None,
                PathAttribute::Unknown(u) => Some(PathAttribute::Unknown(UnknownAttribute {
                    flags: u.flags | PARTIAL,
                    ..u.clone()
                })),
                other => Some(other.clone()),
            })
            .collect();
        Update {
            attributes,
            issues: vec![],
            ..self.clone()
        }
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>, params: &SessionParams) {
        let mut withdrawn = Vec::new();
        encode_prefixes(&self.withdrawn, &mut withdrawn);
        let mut attributes = Vec::new();
        for a in &self.attributes {
            a.encode(&mut attributes, params.four_octet_as);
        }
        buf.extend_from_slice(&(withdrawn.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        buf.extend_from_slice(&withdrawn);
        buf.extend_from_slice(&(attributes.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        buf.extend_from_slice(&attributes);
        encode_prefixes(&self.nlri, buf);
    }

    pub(super) fn decode_body(body: &[u8], params: &SessionParams) -> Result<Update, BgpError> {
        let reset = |subcode: u8, data: &[u8], reason: String| BgpError::new(code::UPDATE, subcode, data, reason);
        let mut r = Reader::new(body, "UPDATE");
        let list_error =
            |e: crate::error::Truncated| reset(update_subcode::MALFORMED_ATTRIBUTE_LIST, &[], e.to_string());
        let withdrawn_len = usize::from(r.u16().map_err(list_error)?);
        let withdrawn_bytes = r.take(withdrawn_len).map_err(|_| {
            reset(
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                &[],
                format!("Withdrawn Routes Length {withdrawn_len} overruns the message"),
            )
        })?;
        let attributes_len = usize::from(r.u16().map_err(list_error)?);
        let attribute_bytes = r.take(attributes_len).map_err(|_| {
            reset(
                update_subcode::MALFORMED_ATTRIBUTE_LIST,
                &[],
                format!("Total Path Attribute Length {attributes_len} overruns the message"),
            )
        })?;
        let network = |e: String| reset(update_subcode::INVALID_NETWORK_FIELD, &[], e);
        let withdrawn = decode_prefixes(withdrawn_bytes, "withdrawn routes").map_err(network)?;
        let nlri = decode_prefixes(r.rest(), "NLRI").map_err(network)?;

        let mut attributes: Vec<PathAttribute> = Vec::new();
        let mut issues = Vec::new();
        let mut seen = [false; 256];
        let mut a = Reader::new(attribute_bytes, "path attribute");
        while !a.is_empty() {
            let start = a.rest();
            let header = (|| {
                let flags = a.u8()?;
                let type_code = a.u8()?;
                let len = if flags & EXTENDED_LENGTH != 0 {
                    usize::from(a.u16()?)
                } else {
                    usize::from(a.u8()?)
                };
                Ok::<_, crate::error::Truncated>((flags, type_code, len, a.take(len)?))
            })();
            let Ok((flags, type_code, len, value)) = header else {
                // RFC 7606 section 4: the attribute list is damaged but the
                // NLRI can still be found from the total length.
                issues.push(AttributeIssue {
                    type_code: 0,
                    action: ErrorAction::TreatAsWithdraw,
                    subcode: update_subcode::MALFORMED_ATTRIBUTE_LIST,
                    reason: format!(
                        "the last {} octets of the attribute list do not form an attribute",
                        start.len()
                    ),
                });
                break;
            };
            let raw = &start[..start.len() - a.remaining()];
            if seen[usize::from(type_code)] {
                if type_code == attr_type::MP_REACH_NLRI || type_code == attr_type::MP_UNREACH_NLRI {
                    return Err(reset(
                        update_subcode::MALFORMED_ATTRIBUTE_LIST,
                        &[],
                        format!("attribute {type_code} appears twice"),
                    ));
                }
                issues.push(AttributeIssue {
                    type_code,
                    action: ErrorAction::AttributeDiscard,
                    subcode: update_subcode::MALFORMED_ATTRIBUTE_LIST,
                    reason: format!("repeated attribute {type_code} discarded"),
                });
                continue;
            }
            seen[usize::from(type_code)] = true;
            if flags & OPTIONAL == 0 && expected_category(type_code).is_none() {
                return Err(reset(
                    update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    raw,
                    format!("unrecognised well-known attribute {type_code} ({len} octets)"),
                ));
            }
            match decode_attribute(flags, type_code, value, params) {
                Ok(attribute) => attributes.push(attribute),
                Err(e) => match containment(type_code) {
                    Some(action) => issues.push(AttributeIssue {
                        type_code,
                        action,
                        subcode: e.subcode,
                        reason: e.reason,
                    }),
                    None => return Err(reset(e.subcode, raw, e.reason)),
                },
            }
        }

        let reach = attributes.iter().any(|a| matches!(a, PathAttribute::MpReach(_)));
        let announces = reach || !nlri.is_empty();
        if announces && issues.iter().all(|i| i.action != ErrorAction::TreatAsWithdraw) {
            let mut missing: Vec<u8> = vec![attr_type::ORIGIN, attr_type::AS_PATH];
            if !nlri.is_empty() {
                missing.push(attr_type::NEXT_HOP);
            }
            missing.retain(|t| !seen[usize::from(*t)]);
            if let Some(first) = missing.first() {
                issues.push(AttributeIssue {
                    type_code: *first,
                    action: ErrorAction::TreatAsWithdraw,
                    subcode: update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE,
                    reason: format!("well-known mandatory attribute(s) {missing:?} missing"),
                });
            }
        }
        Ok(Update {
            withdrawn,
            attributes,
            nlri,
            issues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::{MARKER, Message};

    const P4: SessionParams = SessionParams::FOUR_OCTET_AS;
    const P2: SessionParams = SessionParams { four_octet_as: false };

    fn p4(s: &str) -> Prefix4 {
        s.parse().expect("prefix")
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = MARKER.to_vec();
        v.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
        v.push(2);
        v.extend_from_slice(body);
        v
    }

    fn decode(body: &[u8], params: &SessionParams) -> Result<Update, BgpError> {
        match Message::decode(&frame(body), params)? {
            Message::Update(u) => Ok(u),
            other => panic!("not an UPDATE: {other:?}"),
        }
    }

    /// An announcement of 203.0.113.10/32 as meshlb sends it to an eBGP
    /// router: ORIGIN IGP, AS_PATH 64512, NEXT_HOP, COMMUNITIES, laid out
    /// after RFC 4271 section 4.3 with 4-octet AS numbers.
    const ANNOUNCE: [u8; 40] = [
        0, 0, // no withdrawn routes
        0, 31, // attributes length
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0, // AS_PATH SEQ [64512]
        0x40, 3, 4, 198, 51, 100, 11, // NEXT_HOP
        0xc0, 8, 8, 0xfc, 0, 0, 100, 0xff, 0xff, 0xff, 0x01, // COMMUNITIES 64512:100 no-export
        32, 203, 0, 113, 10, // NLRI
    ];

    #[test]
    fn decodes_an_announcement() {
        let u = decode(&ANNOUNCE, &P4).expect("valid");
        assert!(u.issues.is_empty());
        assert_eq!(u.nlri, vec![p4("203.0.113.10/32")]);
        assert_eq!(u.origin(), Some(Origin::Igp));
        assert_eq!(u.as_path().expect("path").asns().collect::<Vec<_>>(), vec![64512]);
        assert_eq!(u.next_hop(), Some(Ipv4Addr::new(198, 51, 100, 11)));
        assert_eq!(u.communities(), &[Community::new(64512, 100), Community::NO_EXPORT]);
        let again = Message::Update(u).encode(&P4).expect("encodes");
        assert_eq!(&again[19..], &ANNOUNCE);
    }

    #[test]
    fn two_octet_sessions_use_as_trans() {
        let u = Update {
            attributes: vec![
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath::sequence(vec![4_200_000_000, 65001])),
                PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
            ],
            nlri: vec![p4("203.0.113.0/24")],
            ..Update::default()
        };
        let bytes = Message::Update(u).encode(&P2).expect("encodes");
        let back = decode(&bytes[19..], &P2).expect("valid");
        assert_eq!(
            back.as_path().expect("path").asns().collect::<Vec<_>>(),
            vec![u32::from(crate::bgp::AS_TRANS), 65001]
        );
    }

    #[test]
    fn end_of_rib_markers() {
        for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            let eor = Update::end_of_rib(family);
            let bytes = Message::Update(eor).encode(&P4).expect("encodes");
            let back = decode(&bytes[19..], &P4).expect("valid");
            assert_eq!(back.end_of_rib_family(), Some(family));
        }
        assert_eq!(
            Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))
                .encode(&P4)
                .expect("enc")
                .len(),
            23
        );
        assert_eq!(decode(&ANNOUNCE, &P4).expect("valid").end_of_rib_family(), None);
    }

    #[test]
    fn ipv6_mp_reach_with_link_local_next_hop() {
        let prefix: Prefix6 = "2001:db8:100::10/128".parse().expect("prefix");
        let u = Update {
            attributes: vec![
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath::sequence(vec![64512])),
                PathAttribute::MpReach(MpReach::Ipv6Unicast {
                    next_hop: "2001:db8::11".parse().expect("addr"),
                    link_local: Some("fe80::11".parse().expect("addr")),
                    nlri: vec![prefix],
                }),
            ],
            ..Update::default()
        };
        let bytes = Message::Update(u.clone()).encode(&P4).expect("encodes");
        let back = decode(&bytes[19..], &P4).expect("valid");
        assert_eq!(back, u);
        assert!(back.issues.is_empty(), "ORIGIN and AS_PATH suffice without IPv4 NLRI");
    }

    #[test]
    fn ipv4_routes_with_an_ipv6_link_local_next_hop() {
        // RFC 8950: IPv4 NLRI in MP_REACH_NLRI (AFI 1, SAFI 1), next hop
        // the 16-octet link-local address of an unnumbered session.
        let link_local: Ipv6Addr = "fe80::11".parse().expect("addr");
        let u = Update {
            attributes: vec![
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath::sequence(vec![64512])),
                PathAttribute::MpReach(MpReach::Ipv4UnicastV6NextHop {
                    next_hop: link_local,
                    link_local: None,
                    nlri: vec![p4("203.0.113.10/32")],
                }),
            ],
            ..Update::default()
        };
        let bytes = Message::Update(u.clone()).encode(&P4).expect("encodes");
        let field = bytes
            .windows(4)
            .position(|w| w == [0, 1, 1, 16])
            .expect("AFI 1, SAFI 1, a 16-octet next hop");
        assert_eq!(&bytes[field + 4..field + 20], &link_local.octets());
        let back = decode(&bytes[19..], &P4).expect("valid");
        assert_eq!(back, u);
        assert!(back.issues.is_empty(), "no NEXT_HOP needed without plain NLRI");
        assert_eq!(back.mp_reach().map(MpReach::family), Some(Family::IPV4_UNICAST));
    }

    fn with_attribute(flags: u8, type_code: u8, value: &[u8]) -> Vec<u8> {
        // ANNOUNCE with one more attribute appended to the list.
        let mut attrs = ANNOUNCE[4..35].to_vec();
        attrs.extend_from_slice(&[flags, type_code, value.len() as u8]);
        attrs.extend_from_slice(value);
        let mut body = vec![0, 0];
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&ANNOUNCE[35..]);
        body
    }

    #[test]
    fn rfc7606_treat_as_withdraw() {
        // MULTI_EXIT_DISC of 3 octets.
        let u = decode(&with_attribute(0x80, 4, &[1, 2, 3]), &P4).expect("contained");
        assert!(u.treat_as_withdraw());
        assert_eq!(u.nlri, vec![p4("203.0.113.10/32")], "the routes are still located");
        // Repeated COMMUNITIES: the first one wins, the second is discarded.
        let u = decode(&with_attribute(0xc0, 8, &[0, 0, 0, 1]), &P4).expect("contained");
        assert!(!u.treat_as_withdraw());
        assert_eq!(u.communities().len(), 2);
        assert_eq!(u.issues[0].action, ErrorAction::AttributeDiscard);
        // LARGE_COMMUNITY of 11 octets.
        let u = decode(&with_attribute(0xc0, 32, &[0; 11]), &P4).expect("contained");
        assert!(u.treat_as_withdraw());
        // LOCAL_PREF with optional flags: flags error, treat-as-withdraw.
        let u = decode(&with_attribute(0x80, 5, &[0, 0, 0, 100]), &P4).expect("contained");
        assert!(u.treat_as_withdraw());
        assert_eq!(u.issues[0].subcode, update_subcode::ATTRIBUTE_FLAGS_ERROR);
        // Attribute list overruns its total length.
        let mut body = ANNOUNCE.to_vec();
        body[3] = 32;
        body.insert(4 + 31, 0xc0); // a lone flags octet inside the list
        let u = decode(&body, &P4).expect("contained");
        assert!(u.treat_as_withdraw());
        // Missing NEXT_HOP with IPv4 NLRI.
        let mut attrs = ANNOUNCE[4..17].to_vec();
        attrs.extend_from_slice(&ANNOUNCE[24..35]);
        let mut body = vec![0, 0, 0, attrs.len() as u8];
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&ANNOUNCE[35..]);
        let u = decode(&body, &P4).expect("contained");
        assert!(u.treat_as_withdraw());
        assert_eq!(u.issues[0].subcode, update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE);
    }

    #[test]
    fn rfc7606_attribute_discard_and_session_reset() {
        // AGGREGATOR of the wrong length: discarded, routes kept.
        let u = decode(&with_attribute(0xc0, 7, &[0; 5]), &P4).expect("contained");
        assert!(!u.treat_as_withdraw());
        assert_eq!(u.issues[0].action, ErrorAction::AttributeDiscard);
        // Unrecognised well-known attribute: session reset with the attribute as data.
        let err = decode(&with_attribute(0x40, 99, &[7]), &P4).expect_err("reset");
        assert_eq!((err.notification.code, err.notification.subcode), (3, 2));
        assert_eq!(err.notification.data, vec![0x40, 99, 1, 7]);
        // Malformed MP_REACH_NLRI: session reset.
        let err = decode(&with_attribute(0x80, 14, &[0, 2, 1, 5, 0]), &P4).expect_err("reset");
        assert_eq!((err.notification.code, err.notification.subcode), (3, 9));
        // NLRI with a prefix length of 33.
        let mut body = ANNOUNCE.to_vec();
        body[35] = 33;
        let err = decode(&body, &P4).expect_err("reset");
        assert_eq!((err.notification.code, err.notification.subcode), (3, 10));
        // Withdrawn length beyond the message.
        let err = decode(&[0, 200, 0, 0], &P4).expect_err("reset");
        assert_eq!((err.notification.code, err.notification.subcode), (3, 1));
    }

    #[test]
    fn unknown_optional_transitive_attributes_are_passed_on_partial() {
        let u = decode(&with_attribute(0xc0, 99, &[1, 2]), &P4).expect("valid");
        assert!(u.issues.is_empty());
        let out = u.for_propagation();
        let unknown = out.attribute(99).expect("kept");
        assert_eq!(unknown.flags(), 0xe0);
        let u = decode(&with_attribute(0x80, 98, &[1, 2]), &P4).expect("valid");
        assert!(u.for_propagation().attribute(98).is_none(), "non-transitive dropped");
        // Extended length is chosen by the encoder.
        let big = Update {
            attributes: vec![PathAttribute::Unknown(UnknownAttribute {
                flags: 0xc0,
                type_code: 99,
                value: vec![1; 300],
            })],
            ..Update::default()
        };
        let bytes = Message::Update(big.clone()).encode(&P4).expect("encodes");
        assert_eq!(bytes[23], 0xd0);
        assert_eq!(decode(&bytes[19..], &P4).expect("valid"), big);
    }

    #[test]
    fn communities_parse_and_print() {
        assert_eq!(
            "64512:100".parse::<Community>().expect("valid"),
            Community::new(64512, 100)
        );
        assert_eq!("NO_EXPORT".parse::<Community>().expect("valid"), Community::NO_EXPORT);
        assert_eq!(
            "no-advertise".parse::<Community>().expect("valid").to_string(),
            "no-advertise"
        );
        assert!("65536:1".parse::<Community>().is_err());
        assert!("1:2:3".parse::<Community>().is_err());
        let large: LargeCommunity = "4200000000:1:2".parse().expect("valid");
        assert_eq!(large.to_string(), "4200000000:1:2");
        assert!("1:2".parse::<LargeCommunity>().is_err());
    }

    #[test]
    fn prefixes_mask_host_bits() {
        let p: Prefix4 = "203.0.113.77/24".parse().expect("valid");
        assert_eq!(p.to_string(), "203.0.113.0/24");
        assert!(p.contains(Ipv4Addr::new(203, 0, 113, 200)));
        assert!("198.18.0.0/33".parse::<Prefix4>().is_err());
        let p: Prefix6 = "2001:db8::1/0".parse().expect("valid");
        assert_eq!(p.to_string(), "::/0");
    }
}
