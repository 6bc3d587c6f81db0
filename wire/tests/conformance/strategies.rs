//! proptest strategies producing valid messages of every kind.

use meshlb_wire::arp::{ArpOperation, ArpPacket};
use meshlb_wire::bfd::{Authentication, ControlPacket, Diagnostic, Flags, State};
use meshlb_wire::bgp::{
    Aggregator, AsPath, AsSegment, AsSegmentKind, Capability, Community, Family, GracefulRestart,
    GracefulRestartFamily, LargeCommunity, Message, MpReach, MpUnreach, Notification, Open, Origin, PathAttribute,
    Prefix, Prefix4, Prefix6, RouteRefresh, UnknownAttribute, Update,
};
use meshlb_wire::ethernet::MacAddr;
use meshlb_wire::ndp::{NdpMessage, NdpOption, NeighborAdvertisement, NeighborSolicitation};
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

pub fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

pub fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

pub fn unicast_ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(|b| Ipv6Addr::from(b & !(0xffu128 << 120) | (0x20u128 << 120)))
}

pub fn arp() -> impl Strategy<Value = ArpPacket> {
    (
        prop_oneof![Just(ArpOperation::Request), Just(ArpOperation::Reply)],
        mac(),
        ipv4(),
        mac(),
        ipv4(),
    )
        .prop_map(|(operation, sender_mac, sender_ip, target_mac, target_ip)| ArpPacket {
            operation,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        })
}

fn ndp_option() -> impl Strategy<Value = NdpOption> {
    prop_oneof![
        mac().prop_map(NdpOption::SourceLinkLayerAddress),
        mac().prop_map(NdpOption::TargetLinkLayerAddress),
        (3u8..=255, 1usize..=3, any::<u8>()).prop_map(|(kind, units, fill)| NdpOption::Other {
            kind,
            value: vec![fill; units * 8 - 2],
        }),
    ]
}

/// An NDP message with source and destination addresses it is valid between.
pub fn ndp() -> impl Strategy<Value = (NdpMessage, Ipv6Addr, Ipv6Addr)> {
    let ns = (unicast_ipv6(), vec(ndp_option(), 0..3), unicast_ipv6(), any::<bool>()).prop_map(
        |(target, options, source, to_group)| {
            let destination = if to_group {
                meshlb_wire::ipv6::solicited_node_multicast(&target)
            } else {
                target
            };
            let message = NdpMessage::Solicitation(NeighborSolicitation { target, options });
            (message, source, destination)
        },
    );
    let na = (
        any::<(bool, bool, bool)>(),
        unicast_ipv6(),
        vec(ndp_option(), 0..3),
        unicast_ipv6(),
        unicast_ipv6(),
    )
        .prop_map(
            |((router, solicited, override_entry), target, options, source, unicast_dst)| {
                let destination = if solicited {
                    unicast_dst
                } else {
                    "ff02::1".parse().expect("all-nodes")
                };
                let na = NeighborAdvertisement {
                    router,
                    solicited,
                    override_entry,
                    target,
                    options,
                };
                (NdpMessage::Advertisement(na), source, destination)
            },
        );
    prop_oneof![ns, na]
}

fn bfd_auth() -> impl Strategy<Value = Authentication> {
    prop_oneof![
        (any::<u8>(), vec(any::<u8>(), 1..=16))
            .prop_map(|(key_id, password)| Authentication::SimplePassword { key_id, password }),
        (any::<bool>(), any::<u8>(), any::<u32>(), any::<[u8; 16]>()).prop_map(
            |(meticulous, key_id, sequence, digest)| {
                Authentication::Md5 {
                    meticulous,
                    key_id,
                    sequence,
                    digest,
                }
            }
        ),
        (any::<bool>(), any::<u8>(), any::<u32>(), any::<[u8; 20]>()).prop_map(
            |(meticulous, key_id, sequence, hash)| {
                Authentication::Sha1 {
                    meticulous,
                    key_id,
                    sequence,
                    hash,
                }
            }
        ),
    ]
}

pub fn bfd() -> impl Strategy<Value = ControlPacket> {
    let state = prop_oneof![
        Just(State::AdminDown),
        Just(State::Down),
        Just(State::Init),
        Just(State::Up)
    ];
    (
        (0u8..32, state, any::<(bool, bool, bool, bool)>(), 1u8..=255),
        (1u32.., 1u32.., any::<[u32; 3]>()),
        proptest::option::of(bfd_auth()),
    )
        .prop_map(
            |((diag, state, (poll, final_, cpi, demand), detect_multiplier), (my, your, iv), auth)| {
                let diagnostic = match diag {
                    0..=8 => [
                        Diagnostic::NoDiagnostic,
                        Diagnostic::ControlDetectionTimeExpired,
                        Diagnostic::EchoFunctionFailed,
                        Diagnostic::NeighborSignaledSessionDown,
                        Diagnostic::ForwardingPlaneReset,
                        Diagnostic::PathDown,
                        Diagnostic::ConcatenatedPathDown,
                        Diagnostic::AdministrativelyDown,
                        Diagnostic::ReverseConcatenatedPathDown,
                    ][usize::from(diag)],
                    other => Diagnostic::Reserved(other),
                };
                ControlPacket {
                    diagnostic,
                    state,
                    flags: Flags {
                        poll,
                        final_,
                        control_plane_independent: cpi,
                        demand,
                        multipoint: false,
                    },
                    detect_multiplier,
                    my_discriminator: my,
                    your_discriminator: your,
                    desired_min_tx_interval: iv[0],
                    required_min_rx_interval: iv[1],
                    required_min_echo_rx_interval: iv[2],
                    authentication: auth,
                }
            },
        )
}

/// An IPv4 prefix; `unicast` keeps it out of 224.0.0.0/3 (multicast and
/// reserved), which some implementations refuse in unicast NLRI.
pub fn prefix4(unicast: bool) -> impl Strategy<Value = Prefix4> {
    (ipv4(), 0u8..=32).prop_map(move |(a, l)| {
        let a = if unicast && a.octets()[0] >= 224 {
            Ipv4Addr::from(u32::from(a) & 0x7fff_ffff)
        } else {
            a
        };
        Prefix::new(a, l).expect("length in range")
    })
}

/// An IPv6 prefix; `unicast` keeps it out of ff00::/8.
pub fn prefix6(unicast: bool) -> impl Strategy<Value = Prefix6> {
    (any::<u128>(), 0u8..=128).prop_map(move |(a, l)| {
        let a = if unicast { a & !(1u128 << 127) } else { a };
        Prefix::new(Ipv6Addr::from(a), l).expect("length in range")
    })
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        Just(Family::IPV4_UNICAST),
        Just(Family::IPV6_UNICAST),
        (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family { afi, safi })
    ]
}

/// Capabilities: `known_only` restricts them to the ones every BGP
/// implementation models (for the differential test).
pub fn capabilities(known_only: bool) -> impl Strategy<Value = Vec<Capability>> {
    let gr_family = if known_only {
        prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)].boxed()
    } else {
        family().boxed()
    };
    let gr = (
        any::<bool>(),
        any::<bool>(),
        0u16..4096,
        vec((gr_family, any::<bool>()), 0..3),
    )
        .prop_map(|(restart_state, notification, restart_time, fams)| {
            Capability::GracefulRestart(GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families: fams
                    .into_iter()
                    .map(|(family, forwarding_preserved)| GracefulRestartFamily {
                        family,
                        forwarding_preserved,
                    })
                    .collect(),
            })
        });
    let unknown = (128u8..=254, vec(any::<u8>(), 0..8)).prop_map(|(code, value)| Capability::Unknown { code, value });
    let known = prop_oneof![
        prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)].prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        gr,
    ];
    if known_only {
        vec(known, 0..5).boxed()
    } else {
        vec(prop_oneof![3 => known, 1 => unknown], 0..6).boxed()
    }
}

/// An OPEN. With `known_only`, the BGP Identifier is also kept below
/// 224.0.0.0: RFC 4271 wanted a unicast address there, RFC 6286 allows any
/// non-zero value (as our decoder does), and some implementations still
/// enforce the older rule.
pub fn open(known_only: bool) -> impl Strategy<Value = Open> {
    let id = if known_only {
        (1u32..0xe000_0000).boxed()
    } else {
        (1u32..).boxed()
    };
    (1u32.., prop_oneof![Just(0u16), 3u16..], id, capabilities(known_only))
        .prop_map(|(asn, hold_time, id, caps)| Open::new(asn, hold_time, Ipv4Addr::from(id), caps))
}

fn as_path(four_octet: bool, known_only: bool) -> impl Strategy<Value = AsPath> {
    let asn = if four_octet {
        (1u32..).boxed()
    } else {
        (1u32..=65535).boxed()
    };
    let kind = if known_only {
        prop_oneof![Just(AsSegmentKind::Sequence), Just(AsSegmentKind::Set)].boxed()
    } else {
        prop_oneof![
            Just(AsSegmentKind::Sequence),
            Just(AsSegmentKind::Set),
            Just(AsSegmentKind::ConfedSequence),
            Just(AsSegmentKind::ConfedSet)
        ]
        .boxed()
    };
    vec(
        (kind, vec(asn, 1..8)).prop_map(|(kind, asns)| AsSegment { kind, asns }),
        0..4,
    )
    .prop_map(|segments| AsPath { segments })
}

/// One optional attribute of each kind, or none, in a random order.
fn optional_attributes(four_octet: bool, known_only: bool) -> impl Strategy<Value = Vec<PathAttribute>> {
    let asn = if four_octet {
        (1u32..).boxed()
    } else {
        (1u32..=65535).boxed()
    };
    let large = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(g, a, b)| LargeCommunity {
        global_admin: g,
        local_data_1: a,
        local_data_2: b,
    });
    let unknown = (
        prop_oneof![Just(0xc0u8), Just(0x80u8), Just(0xe0u8)],
        prop_oneof![40u8..=60, 100u8..=250],
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(flags, type_code, value)| {
            PathAttribute::Unknown(UnknownAttribute {
                flags,
                type_code,
                value,
            })
        });
    let reach6 = (
        unicast_ipv6(),
        proptest::option::of(unicast_ipv6()),
        vec(prefix6(known_only), 0..10),
    )
        .prop_map(|(next_hop, link_local, nlri)| {
            PathAttribute::MpReach(MpReach::Ipv6Unicast {
                next_hop,
                link_local,
                nlri,
            })
        });
    let unreach6 = vec(prefix6(known_only), 0..10).prop_map(|p| PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(p)));
    let all = (
        (
            proptest::option::of(any::<u32>().prop_map(PathAttribute::MultiExitDisc)),
            proptest::option::of(any::<u32>().prop_map(PathAttribute::LocalPref)),
            proptest::option::of(Just(PathAttribute::AtomicAggregate)),
            proptest::option::of(
                (asn, ipv4()).prop_map(|(asn, address)| PathAttribute::Aggregator(Aggregator { asn, address })),
            ),
        ),
        (
            proptest::option::of(vec(any::<u32>().prop_map(Community), 1..10).prop_map(PathAttribute::Communities)),
            proptest::option::of(vec(large, 1..5).prop_map(PathAttribute::LargeCommunities)),
            proptest::option::of(reach6),
            proptest::option::of(unreach6),
            proptest::option::of(unknown),
        ),
    );
    all.prop_flat_map(move |((med, lp, aa, ag), (co, lc, r6, u6, unk))| {
        let mut attrs: Vec<PathAttribute> = [med, lp, aa, ag, co, lc, r6, u6].into_iter().flatten().collect();
        if !known_only {
            attrs.extend(unk);
        }
        Just(attrs).prop_shuffle()
    })
}

/// A valid UPDATE: ORIGIN, AS_PATH and NEXT_HOP first (the mandatory
/// attributes), then optional ones.
pub fn update(four_octet: bool, known_only: bool) -> impl Strategy<Value = Update> {
    let origin = prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)];
    (
        vec(prefix4(known_only), 0..20),
        origin,
        as_path(four_octet, known_only),
        ipv4(),
        optional_attributes(four_octet, known_only),
        vec(prefix4(known_only), 0..20),
    )
        .prop_map(|(withdrawn, origin, path, next_hop, optional, nlri)| {
            let mut attributes = vec![
                PathAttribute::Origin(origin),
                PathAttribute::AsPath(path),
                PathAttribute::NextHop(next_hop),
            ];
            attributes.extend(optional);
            Update {
                withdrawn,
                attributes,
                nlri,
                issues: vec![],
            }
        })
}

pub fn end_of_rib() -> impl Strategy<Value = Update> {
    prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)].prop_map(Update::end_of_rib)
}

pub fn notification() -> impl Strategy<Value = Notification> {
    (1u8..=7, 0u8..=11, vec(any::<u8>(), 0..40)).prop_map(|(c, s, d)| Notification::new(c, s, d))
}

pub fn route_refresh() -> impl Strategy<Value = RouteRefresh> {
    (family(), 0u8..=2).prop_map(|(family, subtype)| RouteRefresh { family, subtype })
}

/// Any BGP message for a session with 4-octet AS numbers.
pub fn bgp_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        open(false).prop_map(Message::Open),
        update(true, false).prop_map(Message::Update),
        end_of_rib().prop_map(Message::Update),
        notification().prop_map(Message::Notification),
        Just(Message::Keepalive),
        route_refresh().prop_map(Message::RouteRefresh),
    ]
}
