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
use crate::reader::Reader;
use std::net::Ipv4Addr;

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

mod attribute;
mod community;
mod prefix;

pub use attribute::{
    Aggregator, AsPath, AsSegment, AsSegmentKind, AttributeIssue, ErrorAction, MpReach, MpUnreach, Origin,
    PathAttribute, UnknownAttribute,
};
use attribute::{containment, decode_attribute, expected_category};
pub use community::{Community, LargeCommunity};
pub use prefix::{Prefix, Prefix4, Prefix6, PrefixAddr};
use prefix::{decode_prefixes, encode_prefixes};

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
    use std::net::Ipv6Addr;

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
