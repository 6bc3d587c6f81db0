//! Path attributes: their values (ORIGIN, AS_PATH, NEXT_HOP, MED,
//! LOCAL_PREF, AGGREGATOR, MP_REACH/MP_UNREACH_NLRI and those passed on
//! unparsed), decoding with RFC 7606's containment of malformed ones, and
//! encoding.

use super::super::notification::update_subcode;
use super::super::{Family, SessionParams};
use super::*;
use crate::reader::Reader;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

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

    pub(super) fn encode(&self, buf: &mut Vec<u8>, four_octet: bool) {
        for segment in &self.segments {
            for run in segment.asns.chunks(255) {
                buf.push(segment.kind.code());
                buf.push(run.len() as u8);
                for asn in run {
                    if four_octet {
                        buf.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let two = u16::try_from(*asn).unwrap_or(crate::bgp::AS_TRANS);
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

    pub(super) fn encode(&self, buf: &mut Vec<u8>, four_octet: bool) {
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
                    value.extend_from_slice(&u16::try_from(a.asn).unwrap_or(crate::bgp::AS_TRANS).to_be_bytes());
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
pub(super) fn expected_category(type_code: u8) -> Option<u8> {
    use attr_type::*;
    Some(match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => TRANSITIVE,
        MULTI_EXIT_DISC | MP_REACH_NLRI | MP_UNREACH_NLRI => OPTIONAL,
        AGGREGATOR | COMMUNITIES | LARGE_COMMUNITY => OPTIONAL | TRANSITIVE,
        _ => return None,
    })
}

/// How RFC 7606 (section 7) contains an error in a recognised attribute.
pub(super) fn containment(type_code: u8) -> Option<ErrorAction> {
    use attr_type::*;
    match type_code {
        ATOMIC_AGGREGATE | AGGREGATOR => Some(ErrorAction::AttributeDiscard),
        MP_REACH_NLRI | MP_UNREACH_NLRI => None,
        _ => Some(ErrorAction::TreatAsWithdraw),
    }
}

pub(super) struct AttrError {
    pub(super) subcode: u8,
    pub(super) reason: String,
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

pub(super) fn be_u32(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

pub(super) fn decode_attribute(
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
