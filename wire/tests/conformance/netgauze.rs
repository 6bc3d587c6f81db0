//! Differential test against netgauze-bgp-pkt, an independent BGP codec:
//! every message we encode must parse there (in strict mode), re-encode
//! there to the same bytes, and show the same key fields.

use crate::strategies;
use meshlb_wire::bgp::{
    AsSegmentKind, Family, Message, MpReach, MpUnreach, Notification, Origin, PathAttribute, RouteRefresh,
    SessionParams, Update,
};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::path_attribute::{
    Aggregator as NgAggregator, AsPath as NgAsPath, MpReach as NgMpReach, MpUnreach as NgMpUnreach, PathAttributeValue,
};
use netgauze_bgp_pkt::wire::deserializer::{BgpParsingContext, BgpParsingIgnoredErrors};
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use proptest::prelude::*;
use std::collections::HashMap;

fn netgauze_parse(bytes: &[u8], asn4: bool) -> BgpMessage {
    let mut ctx = BgpParsingContext::new(asn4, HashMap::new(), HashMap::new(), true, true, true, true);
    let mut cursor = SliceReader::new(bytes);
    let message = BgpMessage::parse(&mut cursor, &mut ctx)
        .unwrap_or_else(|e| panic!("netgauze rejects our encoding: {e:?}\nbytes: {bytes:02x?}"));
    assert!(cursor.is_empty(), "netgauze left {} octets unread", cursor.remaining());
    let ignored = ctx.reset_parsing_errors();
    assert_eq!(
        format!("{ignored:?}"),
        format!("{:?}", BgpParsingIgnoredErrors::default()),
        "netgauze noted errors"
    );
    message
}

fn netgauze_write(message: &BgpMessage) -> Vec<u8> {
    let mut out = Vec::new();
    message.write(&mut out).expect("netgauze writes what it parsed");
    out
}

/// Key fields of an UPDATE as a list of facts both sides can produce.
fn our_update_facts(u: &Update) -> Vec<String> {
    let mut facts: Vec<String> = u.withdrawn.iter().map(|p| format!("withdrawn {p}")).collect();
    facts.extend(u.nlri.iter().map(|p| format!("nlri {p}")));
    for a in &u.attributes {
        facts.push(format!("attribute {}", a.type_code()));
        match a {
            PathAttribute::Origin(o) => facts.push(format!(
                "origin {}",
                match o {
                    Origin::Igp => 0,
                    Origin::Egp => 1,
                    Origin::Incomplete => 2,
                }
            )),
            PathAttribute::AsPath(p) => {
                for s in &p.segments {
                    let kind = if s.kind == AsSegmentKind::Set { 1 } else { 2 };
                    facts.push(format!("segment {kind} {:?}", s.asns));
                }
            }
            PathAttribute::NextHop(n) => facts.push(format!("next hop {n}")),
            PathAttribute::MultiExitDisc(m) => facts.push(format!("med {m}")),
            PathAttribute::LocalPref(l) => facts.push(format!("local pref {l}")),
            PathAttribute::Aggregator(a) => facts.push(format!("aggregator {} {}", a.asn, a.address)),
            PathAttribute::Communities(cs) => facts.extend(cs.iter().map(|c| format!("community {}", c.0))),
            PathAttribute::LargeCommunities(cs) => facts.extend(
                cs.iter()
                    .map(|c| format!("large {}:{}:{}", c.global_admin, c.local_data_1, c.local_data_2)),
            ),
            PathAttribute::MpReach(MpReach::Ipv6Unicast {
                next_hop,
                link_local,
                nlri,
            }) => {
                facts.push(format!("reach6 next hop {next_hop} {link_local:?}"));
                facts.extend(nlri.iter().map(|p| format!("reach6 {p}")));
            }
            PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(p)) => {
                facts.push("unreach6".into());
                facts.extend(p.iter().map(|p| format!("unreach6 {p}")));
            }
            _ => {}
        }
    }
    facts
}

fn netgauze_update_facts(m: &BgpMessage) -> Vec<String> {
    let BgpMessage::Update(u) = m else {
        panic!("netgauze parsed {m:?} instead of an UPDATE")
    };
    let mut facts: Vec<String> = u
        .withdraw_routes()
        .iter()
        .map(|p| format!("withdrawn {}", p.network()))
        .collect();
    facts.extend(u.nlri().iter().map(|p| format!("nlri {}", p.network())));
    for a in u.path_attributes() {
        let code = a.path_attribute_type().map(u8::from).unwrap_or_else(|c| c);
        facts.push(format!("attribute {code}"));
        match a.value() {
            PathAttributeValue::Origin(o) => facts.push(format!("origin {}", u8::from(*o))),
            PathAttributeValue::AsPath(NgAsPath::As4PathSegments(segs)) => {
                for s in segs.iter() {
                    facts.push(format!("segment {} {:?}", u8::from(s.segment_type()), s.as_numbers()));
                }
            }
            PathAttributeValue::AsPath(NgAsPath::As2PathSegments(segs)) => {
                for s in segs.iter() {
                    let asns: Vec<u32> = s.as_numbers().iter().map(|a| u32::from(*a)).collect();
                    facts.push(format!("segment {} {asns:?}", u8::from(s.segment_type())));
                }
            }
            PathAttributeValue::NextHop(n) => facts.push(format!("next hop {}", n.next_hop())),
            PathAttributeValue::MultiExitDiscriminator(m) => facts.push(format!("med {}", m.metric())),
            PathAttributeValue::LocalPreference(l) => facts.push(format!("local pref {}", l.metric())),
            PathAttributeValue::Aggregator(NgAggregator::As4Aggregator(a)) => {
                facts.push(format!("aggregator {} {}", a.asn(), a.origin()))
            }
            PathAttributeValue::Aggregator(NgAggregator::As2Aggregator(a)) => {
                facts.push(format!("aggregator {} {}", a.asn(), a.origin()))
            }
            PathAttributeValue::Communities(cs) => {
                facts.extend(cs.communities().iter().map(|c| format!("community {}", c.value())))
            }
            PathAttributeValue::LargeCommunities(cs) => facts.extend(
                cs.communities()
                    .iter()
                    .map(|c| format!("large {}:{}:{}", c.global_admin(), c.local_data1(), c.local_data2())),
            ),
            PathAttributeValue::MpReach(NgMpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                facts.push(format!("reach6 next hop {next_hop_global} {next_hop_local:?}"));
                facts.extend(nlri.iter().map(|p| format!("reach6 {}", p.network())));
            }
            PathAttributeValue::MpUnreach(NgMpUnreach::Ipv6Unicast { nlri }) => {
                facts.push("unreach6".into());
                facts.extend(nlri.iter().map(|p| format!("unreach6 {}", p.network())));
            }
            _ => {}
        }
    }
    facts
}

fn differential(message: &Message, params: &SessionParams) -> (Vec<u8>, BgpMessage) {
    let ours = message.encode(params).expect("fits");
    let theirs = netgauze_parse(&ours, params.four_octet_as);
    assert_eq!(
        netgauze_write(&theirs),
        ours,
        "netgauze re-encodes {message:?} differently"
    );
    (ours, theirs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn open_agrees(open in strategies::open(true)) {
        let (_, theirs) = differential(&Message::Open(open.clone()), &SessionParams::default());
        let BgpMessage::Open(theirs) = theirs else { panic!("not an OPEN") };
        prop_assert_eq!(theirs.my_as(), open.my_as);
        prop_assert_eq!(theirs.hold_time(), open.hold_time);
        prop_assert_eq!(theirs.bgp_id(), open.bgp_identifier);
        prop_assert_eq!(theirs.my_asn4(), open.asn());
        prop_assert_eq!(theirs.capabilities().len(), open.capabilities.len());
    }

    #[test]
    fn update_agrees(update in strategies::update(true, true)) {
        let (_, theirs) = differential(&Message::Update(update.clone()), &SessionParams::FOUR_OCTET_AS);
        prop_assert_eq!(netgauze_update_facts(&theirs), our_update_facts(&update));
    }

    #[test]
    fn update_agrees_with_two_octet_asns(update in strategies::update(false, true)) {
        let (_, theirs) = differential(&Message::Update(update.clone()), &SessionParams::default());
        prop_assert_eq!(netgauze_update_facts(&theirs), our_update_facts(&update));
    }

    #[test]
    fn end_of_rib_agrees(family in prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)]) {
        let (_, theirs) = differential(&Message::Update(Update::end_of_rib(family)), &SessionParams::FOUR_OCTET_AS);
        let BgpMessage::Update(u) = theirs else { panic!("not an UPDATE") };
        prop_assert!(u.end_of_rib().is_some(), "netgauze does not see End-of-RIB");
    }

    #[test]
    fn cease_and_hold_timer_notifications_agree(subcode in 1u8..=8, hold in any::<bool>()) {
        let n = if hold { Notification::new(4, 0, vec![]) } else { Notification::new(6, subcode, vec![]) };
        let (_, theirs) = differential(&Message::Notification(n), &SessionParams::default());
        prop_assert!(matches!(theirs, BgpMessage::Notification(_)));
    }

    #[test]
    fn route_refresh_agrees(v6 in any::<bool>(), subtype in 0u8..=2) {
        let family = if v6 { Family::IPV6_UNICAST } else { Family::IPV4_UNICAST };
        let (_, theirs) = differential(&Message::RouteRefresh(RouteRefresh { family, subtype }), &SessionParams::default());
        prop_assert!(matches!(theirs, BgpMessage::RouteRefresh(_)));
    }
}

#[test]
fn keepalive_agrees() {
    let (_, theirs) = differential(&Message::Keepalive, &SessionParams::default());
    assert!(matches!(theirs, BgpMessage::KeepAlive));
}
