//! A real dissector agrees with our encoders: one pcap holds every message
//! kind (ARP, NDP, BGP over TCP, BFD over UDP 3784; another, unnumbered
//! BGP's Router Discovery and RFC 8950 encodings); Wireshark's dissectors
//! (through tshark) report no malformed packet and no expert entry of warning or error
//! severity with every checksum check enabled, and the fields they read
//! match the values we encoded.

use crate::pcap::{ACK, PSH_ACK, PcapWriter, SYN, TcpEnd, ipv4_frame, tcp, udp};
use meshlb_wire::arp::{ArpOperation, ArpPacket};
use meshlb_wire::bfd::{self, Authentication, ControlPacket, Diagnostic, Flags, State};
use meshlb_wire::bgp::{
    AsPath, Capability, Community, Family, GracefulRestart, GracefulRestartFamily, LargeCommunity, Message, MpReach,
    MpUnreach, Notification, Open, Origin, PathAttribute, Prefix4, Prefix6, RouteRefresh, SessionParams, Update,
};
use meshlb_wire::ethernet::MacAddr;
use meshlb_wire::ipv6::{link_local_from_mac, solicited_node_multicast};
use meshlb_wire::ndp::{NdpMessage, NdpOption, NeighborAdvertisement, NeighborSolicitation};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x32]);
const NODE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// A capture file removed when the test ends, pass or fail.
struct TempCapture(PathBuf);

impl Drop for TempCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs tshark over `path` and returns, per packet matching `filter`, the
/// values of `fields` (every occurrence, joined with commas).
fn tshark_fields(path: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(path);
    for pref in [
        "ip.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
    ] {
        cmd.args(["-o", pref]);
    }
    cmd.args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run tshark ({e}): it is installed by scripts/test, or by `apt-get install tshark`")
    });
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

struct Expected {
    arp: Vec<ArpPacket>,
    ndp: Vec<NdpMessage>,
    bgp: Vec<Message>,
    bfd: Vec<ControlPacket>,
}

fn build_capture(pcap: &mut PcapWriter) -> Expected {
    // ARP: a client resolves the service IP; the owner answers and announces.
    let request = ArpPacket::request(CLIENT_MAC, CLIENT_IP, SERVICE_IP);
    let arp = vec![
        request,
        ArpPacket::reply_to(&request, NODE_MAC),
        ArpPacket::announcement(ArpOperation::Request, NODE_MAC, SERVICE_IP),
        ArpPacket::announcement(ArpOperation::Reply, NODE_MAC, SERVICE_IP),
    ];
    for (i, p) in arp.iter().enumerate() {
        let dst = if i == 1 { CLIENT_MAC } else { MacAddr::BROADCAST };
        pcap.push(&p.to_frame(p.sender_mac, dst));
    }

    // NDP: solicitation, solicited answer, unsolicited announcement.
    let vip6: Ipv6Addr = "2001:db8:100::10".parse().expect("addr");
    let client_ll: Ipv6Addr = link_local_from_mac(CLIENT_MAC);
    let node_ll = link_local_from_mac(NODE_MAC);
    let all_nodes: Ipv6Addr = "ff02::1".parse().expect("addr");
    let ndp = vec![
        NdpMessage::Solicitation(NeighborSolicitation {
            target: vip6,
            options: vec![NdpOption::SourceLinkLayerAddress(CLIENT_MAC)],
        }),
        NdpMessage::Advertisement(NeighborAdvertisement::solicited(vip6, NODE_MAC)),
        NdpMessage::Advertisement(NeighborAdvertisement::unsolicited(vip6, NODE_MAC)),
    ];
    pcap.push(&ndp[0].to_frame(
        CLIENT_MAC,
        MacAddr::BROADCAST,
        client_ll,
        solicited_node_multicast(&vip6),
    ));
    pcap.push(&ndp[1].to_frame(NODE_MAC, CLIENT_MAC, node_ll, client_ll));
    pcap.push(&ndp[2].to_frame(NODE_MAC, MacAddr::BROADCAST, node_ll, all_nodes));

    // BGP: a whole session over TCP, speaker (node) to router.
    let mut speaker = TcpEnd {
        mac: NODE_MAC,
        ip: NODE_IP,
        port: 40179,
        seq: 1000,
    };
    let mut router = TcpEnd {
        mac: ROUTER_MAC,
        ip: ROUTER_IP,
        port: 179,
        seq: 5000,
    };
    pcap.push(&tcp(&mut speaker, &router, SYN, &[]));
    pcap.push(&tcp(&mut router, &speaker, SYN | ACK, &[]));
    pcap.push(&tcp(&mut speaker, &router, ACK, &[]));
    let p = |s: &str| s.parse::<Prefix4>().expect("prefix");
    let p6 = |s: &str| s.parse::<Prefix6>().expect("prefix");
    let base = |asn: u32| {
        vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::sequence(vec![asn])),
        ]
    };
    let speaker_open = Open::new(
        4_200_000_011,
        90,
        NODE_IP,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restart_state: false,
                notification: true,
                restart_time: 120,
                families: vec![
                    GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    },
                    GracefulRestartFamily {
                        family: Family::IPV6_UNICAST,
                        forwarding_preserved: false,
                    },
                ],
            }),
        ],
    );
    let router_open = Open::new(
        64512,
        90,
        ROUTER_IP,
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
    );
    let mut v4_attrs = base(4_200_000_011);
    v4_attrs.extend([
        PathAttribute::NextHop(NODE_IP),
        PathAttribute::MultiExitDisc(10),
        PathAttribute::LocalPref(200),
        PathAttribute::Communities(vec![Community::new(64512, 100), Community::NO_EXPORT]),
        PathAttribute::LargeCommunities(vec![LargeCommunity {
            global_admin: 4_200_000_011,
            local_data_1: 1,
            local_data_2: 2,
        }]),
    ]);
    let mut v6_attrs = base(4_200_000_011);
    v6_attrs.push(PathAttribute::MpReach(MpReach::Ipv6Unicast {
        next_hop: "2001:db8::11".parse().expect("addr"),
        link_local: Some(node_ll),
        nlri: vec![p6("2001:db8:100::10/128")],
    }));
    let from_speaker = |m: Message| (true, m);
    let bgp_session = vec![
        from_speaker(Message::Open(speaker_open)),
        (false, Message::Open(router_open)),
        from_speaker(Message::Keepalive),
        (false, Message::Keepalive),
        from_speaker(Message::Update(Update {
            attributes: v4_attrs,
            nlri: vec![p("203.0.113.10/32"), p("203.0.113.0/28")],
            ..Update::default()
        })),
        from_speaker(Message::Update(Update {
            attributes: v6_attrs,
            ..Update::default()
        })),
        from_speaker(Message::Update(Update {
            withdrawn: vec![p("203.0.113.10/32")],
            ..Update::default()
        })),
        from_speaker(Message::Update(Update {
            attributes: vec![PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(vec![p6(
                "2001:db8:100::10/128",
            )]))],
            ..Update::default()
        })),
        from_speaker(Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))),
        from_speaker(Message::Update(Update::end_of_rib(Family::IPV6_UNICAST))),
        (
            false,
            Message::RouteRefresh(RouteRefresh {
                family: Family::IPV4_UNICAST,
                subtype: 0,
            }),
        ),
        from_speaker(Message::Notification(Notification::new(6, 2, vec![]))),
    ];
    let params = SessionParams::FOUR_OCTET_AS;
    for (by_speaker, m) in &bgp_session {
        let bytes = m.encode(&params).expect("fits");
        let frame = if *by_speaker {
            tcp(&mut speaker, &router, PSH_ACK, &bytes)
        } else {
            tcp(&mut router, &speaker, PSH_ACK, &bytes)
        };
        pcap.push(&frame);
    }
    pcap.push(&tcp(&mut router, &speaker, ACK, &[]));

    // BFD: a session coming up, a poll sequence, admin down, authentication.
    let up = ControlPacket {
        diagnostic: Diagnostic::NoDiagnostic,
        state: State::Up,
        flags: Flags::default(),
        detect_multiplier: 3,
        my_discriminator: 0x1111,
        your_discriminator: 0x2222,
        desired_min_tx_interval: 300_000,
        required_min_rx_interval: 300_000,
        required_min_echo_rx_interval: 50_000,
        authentication: None,
    };
    let bfd_packets = vec![
        ControlPacket {
            state: State::Down,
            your_discriminator: 0,
            desired_min_tx_interval: 1_000_000,
            ..up.clone()
        },
        ControlPacket {
            state: State::Init,
            ..up.clone()
        },
        ControlPacket {
            flags: Flags {
                poll: true,
                ..Flags::default()
            },
            ..up.clone()
        },
        ControlPacket {
            flags: Flags {
                final_: true,
                ..Flags::default()
            },
            ..up.clone()
        },
        ControlPacket {
            state: State::AdminDown,
            diagnostic: Diagnostic::AdministrativelyDown,
            ..up.clone()
        },
        ControlPacket {
            authentication: Some(Authentication::SimplePassword {
                key_id: 7,
                password: b"meshlb".to_vec(),
            }),
            ..up.clone()
        },
    ];
    for packet in &bfd_packets {
        let datagram = udp(NODE_IP, ROUTER_IP, (49152, bfd::SINGLE_HOP_PORT), &packet.to_bytes());
        pcap.push(&ipv4_frame(
            (NODE_MAC, ROUTER_MAC),
            NODE_IP,
            ROUTER_IP,
            17,
            255,
            &datagram,
        ));
    }
    Expected {
        arp,
        ndp,
        bgp: bgp_session.into_iter().map(|(_, m)| m).collect(),
        bfd: bfd_packets,
    }
}

fn b(v: bool) -> &'static str {
    if v { "1" } else { "0" }
}

#[test]
fn tshark_dissects_every_message_kind_cleanly() {
    let mut pcap = PcapWriter::new();
    let expected = build_capture(&mut pcap);
    let frames = pcap.frames();
    let path = std::env::temp_dir().join(format!(
        "meshlb-wire-{}-{:?}.pcap",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, pcap.into_bytes()).expect("write pcap");
    let capture = TempCapture(path);
    let path = capture.0.as_path();

    // Every frame is dissected, none is malformed, no expert error.
    assert_eq!(tshark_fields(path, "frame", &["frame.number"]).len(), frames);
    let bad = tshark_fields(
        path,
        "_ws.malformed || _ws.expert.severity >= 0x00600000",
        &["frame.number", "_ws.expert.message"],
    );
    assert!(
        bad.is_empty(),
        "tshark reports malformed packets, warnings or errors: {bad:?}"
    );

    // ARP.
    let arp = tshark_fields(
        path,
        "arp",
        &[
            "arp.opcode",
            "arp.src.hw_mac",
            "arp.src.proto_ipv4",
            "arp.dst.hw_mac",
            "arp.dst.proto_ipv4",
            "arp.isgratuitous",
        ],
    );
    let want: Vec<Vec<String>> = expected
        .arp
        .iter()
        .map(|p| {
            let gratuitous = if p.is_announcement() { "1" } else { "" };
            vec![
                p.operation.code().to_string(),
                p.sender_mac.to_string(),
                p.sender_ip.to_string(),
                p.target_mac.to_string(),
                p.target_ip.to_string(),
                gratuitous.to_string(),
            ]
        })
        .collect();
    assert_eq!(arp, want);

    // NDP: types, targets, flags, link-layer options, and a checksum tshark verified.
    let ndp = tshark_fields(
        path,
        "icmpv6",
        &[
            "icmpv6.type",
            "icmpv6.nd.ns.target_address",
            "icmpv6.nd.na.target_address",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "icmpv6.opt.linkaddr",
            "icmpv6.checksum.status",
        ],
    );
    let want: Vec<Vec<String>> = expected
        .ndp
        .iter()
        .map(|m| match m {
            NdpMessage::Solicitation(ns) => vec![
                "135".into(),
                ns.target.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                m.link_layer_address().expect("SLLA").to_string(),
                "1".into(),
            ],
            NdpMessage::Advertisement(na) => vec![
                "136".into(),
                String::new(),
                na.target.to_string(),
                b(na.router).into(),
                b(na.solicited).into(),
                b(na.override_entry).into(),
                m.link_layer_address().expect("TLLA").to_string(),
                "1".into(),
            ],
        })
        .collect();
    assert_eq!(ndp, want);

    // BGP: message types in order, then per-kind fields.
    let types: Vec<String> = tshark_fields(path, "bgp", &["bgp.type"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<String> = expected.bgp.iter().map(|m| m.message_type().to_string()).collect();
    assert_eq!(types, want, "one BGP message per segment, in order");

    let opens = tshark_fields(
        path,
        "bgp.type == 1",
        &[
            "bgp.open.myas",
            "bgp.open.holdtime",
            "bgp.open.identifier",
            "bgp.cap.type",
            "bgp.cap.4as",
        ],
    );
    let want: Vec<Vec<String>> = expected
        .bgp
        .iter()
        .filter_map(|m| match m {
            Message::Open(o) => Some(vec![
                o.my_as.to_string(),
                o.hold_time.to_string(),
                o.bgp_identifier.to_string(),
                o.capabilities
                    .iter()
                    .map(|c| c.code().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                o.asn().to_string(),
            ]),
            _ => None,
        })
        .collect();
    assert_eq!(opens, want);
    let gr = tshark_fields(
        path,
        "bgp.cap.gr.timers",
        &[
            "bgp.cap.gr.timers.restart_time",
            "bgp.cap.gr.timers.notification_flag",
            "bgp.cap.gr.afi",
            "bgp.cap.gr.flag.pfs",
        ],
    );
    assert_eq!(
        gr,
        vec![vec!["120".to_string(), "1".into(), "1,2".into(), "1,0".into()]]
    );

    let updates = tshark_fields(
        path,
        "bgp.type == 2",
        &[
            "bgp.update.path_attribute.origin",
            "bgp.update.path_attribute.as_path_segment.as4",
            "bgp.update.path_attribute.next_hop",
            "bgp.update.path_attribute.multi_exit_disc",
            "bgp.update.path_attribute.local_pref",
            "bgp.update.path_attribute.community_as",
            "bgp.update.path_attribute.community_value",
            "bgp.update.path_attribute.community_wellknown",
            "bgp.large_communities.ga",
            "bgp.large_communities.ldp1",
            "bgp.large_communities.ldp2",
            "bgp.nlri_prefix",
            "bgp.mp_reach_nlri_ipv6_prefix",
            "bgp.update.path_attribute.mp_reach_nlri.next_hop.ipv6",
            "bgp.update.path_attribute.mp_reach_nlri.next_hop.ipv6.link_local",
            "bgp.withdrawn_prefix",
            "bgp.mp_unreach_nlri_ipv6_prefix",
            "bgp.update.path_attribute.mp_unreach_nlri.afi",
            "bgp.prefix_length",
        ],
    );
    let join = |v: Vec<String>| v.join(",");
    let want: Vec<Vec<String>> = expected
        .bgp
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .map(|u| {
            // Prefix lengths in wire order: withdrawn, MP attributes, NLRI.
            let mut lengths: Vec<String> = u.withdrawn.iter().map(|p| p.prefix_len().to_string()).collect();
            for a in &u.attributes {
                match a {
                    PathAttribute::MpReach(MpReach::Ipv6Unicast { nlri: v, .. })
                    | PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(v)) => {
                        lengths.extend(v.iter().map(|p| p.prefix_len().to_string()))
                    }
                    _ => {}
                }
            }
            lengths.extend(u.nlri.iter().map(|p| p.prefix_len().to_string()));
            // tshark names well-known communities instead of splitting them.
            let (well_known, plain): (Vec<&Community>, Vec<&Community>) =
                u.communities().iter().partition(|c| c.name().is_some());
            let (reach6, nh6, ll6) = match u.mp_reach() {
                Some(MpReach::Ipv6Unicast {
                    next_hop,
                    link_local,
                    nlri,
                }) => (
                    join(nlri.iter().map(|p| p.addr().to_string()).collect()),
                    next_hop.to_string(),
                    link_local.map(|l| l.to_string()).unwrap_or_default(),
                ),
                _ => Default::default(),
            };
            let (unreach6, unreach_afi) = match u.mp_unreach() {
                Some(MpUnreach::Ipv6Unicast(p)) => {
                    (join(p.iter().map(|p| p.addr().to_string()).collect()), "2".to_string())
                }
                _ => Default::default(),
            };
            let large = u.large_communities();
            vec![
                u.origin().map(|o| (o as u8).to_string()).unwrap_or_default(),
                join(
                    u.as_path()
                        .map(|p| p.asns().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                ),
                u.next_hop().map(|n| n.to_string()).unwrap_or_default(),
                u.attributes
                    .iter()
                    .find_map(|a| match a {
                        PathAttribute::MultiExitDisc(m) => Some(m.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                u.local_pref().map(|l| l.to_string()).unwrap_or_default(),
                join(plain.iter().map(|c| c.asn().to_string()).collect()),
                join(plain.iter().map(|c| c.value().to_string()).collect()),
                join(well_known.iter().map(|c| format!("{:#010x}", c.0)).collect()),
                join(large.iter().map(|c| c.global_admin.to_string()).collect()),
                join(large.iter().map(|c| c.local_data_1.to_string()).collect()),
                join(large.iter().map(|c| c.local_data_2.to_string()).collect()),
                join(u.nlri.iter().map(|p| p.addr().to_string()).collect()),
                reach6,
                nh6,
                ll6,
                join(u.withdrawn.iter().map(|p| p.addr().to_string()).collect()),
                unreach6,
                unreach_afi,
                join(lengths),
            ]
        })
        .collect();
    assert_eq!(updates, want);

    let rr = tshark_fields(
        path,
        "bgp.type == 5",
        &["bgp.route_refresh.afi", "bgp.route_refresh.safi"],
    );
    assert_eq!(rr, vec![vec!["1".to_string(), "1".into()]]);
    let notify = tshark_fields(
        path,
        "bgp.type == 3",
        &["bgp.notify.major_error", "bgp.notify.minor_error_cease"],
    );
    assert_eq!(notify, vec![vec!["6".to_string(), "2".into()]]);

    // BFD: every field of every packet.
    let bfd_rows = tshark_fields(
        path,
        "bfd",
        &[
            "bfd.version",
            "bfd.diag",
            "bfd.sta",
            "bfd.flags.p",
            "bfd.flags.f",
            "bfd.flags.a",
            "bfd.flags.m",
            "bfd.detect_time_multiplier",
            "bfd.message_length",
            "bfd.my_discriminator",
            "bfd.your_discriminator",
            "bfd.desired_min_tx_interval",
            "bfd.required_min_rx_interval",
            "bfd.required_min_echo_interval",
            "bfd.auth.type",
            "bfd.auth.password",
        ],
    );
    let want: Vec<Vec<String>> = expected
        .bfd
        .iter()
        .map(|p| {
            let (auth_type, password) = match &p.authentication {
                Some(Authentication::SimplePassword { password, .. }) => {
                    ("1".to_string(), String::from_utf8_lossy(password).into_owned())
                }
                _ => Default::default(),
            };
            vec![
                "1".into(),
                format!("{:#04x}", p.diagnostic.bits()),
                format!("{:#04x}", p.state.bits()),
                b(p.flags.poll).into(),
                b(p.flags.final_).into(),
                b(p.authentication.is_some()).into(),
                b(p.flags.multipoint).into(),
                p.detect_multiplier.to_string(),
                p.len().to_string(),
                format!("{:#010x}", p.my_discriminator),
                format!("{:#010x}", p.your_discriminator),
                p.desired_min_tx_interval.to_string(),
                p.required_min_rx_interval.to_string(),
                p.required_min_echo_rx_interval.to_string(),
                auth_type,
                password,
            ]
        })
        .collect();
    assert_eq!(bfd_rows, want);
}

/// An IPv6 frame carrying ICMPv6 `message`, hop limit 255.
fn icmpv6_frame(macs: (MacAddr, MacAddr), source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    meshlb_wire::ethernet::EthernetHeader {
        destination: macs.1,
        source: macs.0,
        ethertype: meshlb_wire::ethernet::EtherType::IPV6,
    }
    .encode(&mut frame);
    meshlb_wire::ipv6::Ipv6Header {
        traffic_class: 0,
        flow_label: 0,
        payload_length: message.len() as u16,
        next_header: meshlb_wire::ipv6::NEXT_HEADER_ICMPV6,
        hop_limit: 255,
        source,
        destination,
    }
    .encode(&mut frame);
    frame.extend_from_slice(message);
    frame
}

/// Unnumbered BGP's pieces: a Router Solicitation and Advertisement
/// between link-local addresses, an OPEN with the extended next hop
/// capability, and IPv4 routes in MP_REACH_NLRI with a link-local IPv6
/// next hop (RFC 8950), all read back by tshark.
#[test]
fn tshark_reads_router_discovery_and_ipv4_over_ipv6_next_hops() {
    use meshlb_wire::bgp::ExtendedNextHop;
    use meshlb_wire::router_discovery::{RouterAdvertisement, RouterDiscovery};
    let mut pcap = PcapWriter::new();
    let node_ll = link_local_from_mac(NODE_MAC);
    let all_routers: Ipv6Addr = "ff02::2".parse().expect("addr");
    let all_nodes: Ipv6Addr = "ff02::1".parse().expect("addr");
    let rs = RouterDiscovery::Solicitation(vec![NdpOption::SourceLinkLayerAddress(NODE_MAC)]);
    let ra = RouterDiscovery::Advertisement(RouterAdvertisement {
        router_lifetime: 0,
        options: vec![NdpOption::SourceLinkLayerAddress(NODE_MAC)],
        ..RouterAdvertisement::default()
    });
    let to_routers = MacAddr([0x33, 0x33, 0, 0, 0, 2]);
    let to_nodes = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    pcap.push(&icmpv6_frame(
        (NODE_MAC, to_routers),
        node_ll,
        all_routers,
        &rs.encode(&node_ll, &all_routers),
    ));
    pcap.push(&icmpv6_frame(
        (NODE_MAC, to_nodes),
        node_ll,
        all_nodes,
        &ra.encode(&node_ll, &all_nodes),
    ));

    let mut speaker = TcpEnd {
        mac: NODE_MAC,
        ip: NODE_IP,
        port: 40179,
        seq: 1000,
    };
    let router = TcpEnd {
        mac: ROUTER_MAC,
        ip: ROUTER_IP,
        port: 179,
        seq: 5000,
    };
    pcap.push(&tcp(&mut speaker, &router, SYN, &[]));
    let open = Open::new(
        64513,
        90,
        NODE_IP,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::ExtendedNextHop(vec![ExtendedNextHop::IPV4_OVER_IPV6]),
        ],
    );
    let update = Update {
        attributes: vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::sequence(vec![64513])),
            PathAttribute::MpReach(MpReach::Ipv4UnicastV6NextHop {
                next_hop: node_ll,
                link_local: None,
                nlri: vec!["203.0.113.20/32".parse().expect("prefix")],
            }),
        ],
        ..Update::default()
    };
    for message in [Message::Open(open), Message::Update(update)] {
        let bytes = message.encode(&SessionParams::FOUR_OCTET_AS).expect("fits");
        pcap.push(&tcp(&mut speaker, &router, PSH_ACK, &bytes));
    }
    let path = std::env::temp_dir().join(format!("meshlb-wire-unnumbered-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap.into_bytes()).expect("write pcap");
    let capture = TempCapture(path);
    let path = capture.0.as_path();

    let bad = tshark_fields(
        path,
        "_ws.malformed || _ws.expert.severity >= 0x00600000",
        &["frame.number", "_ws.expert.message"],
    );
    assert!(bad.is_empty(), "tshark reports malformed packets or errors: {bad:?}");
    let discovery = tshark_fields(
        path,
        "icmpv6",
        &[
            "icmpv6.type",
            "icmpv6.nd.ra.router_lifetime",
            "icmpv6.opt.linkaddr",
            "icmpv6.checksum.status",
        ],
    );
    let mac = NODE_MAC.to_string();
    assert_eq!(
        discovery,
        vec![
            vec!["133".to_string(), String::new(), mac.clone(), "1".into()],
            vec!["134".to_string(), "0".into(), mac, "1".into()],
        ]
    );
    let capability = tshark_fields(
        path,
        "bgp.type == 1",
        &["bgp.cap.enh.afi", "bgp.cap.enh.safi", "bgp.cap.enh.nhafi"],
    );
    assert_eq!(capability, vec![vec!["1".to_string(), "1".into(), "2".into()]]);
    let reach = tshark_fields(
        path,
        "bgp.type == 2",
        &[
            "bgp.update.path_attribute.mp_reach_nlri.afi",
            "bgp.update.path_attribute.mp_reach_nlri.next_hop.ipv6",
            "bgp.mp_reach_nlri_ipv4_prefix",
        ],
    );
    assert_eq!(
        reach,
        vec![vec!["1".to_string(), node_ll.to_string(), "203.0.113.20".into()]]
    );
}
