//! Differential tests against pnet_packet, an independent implementation
//! of the Layer 2 formats meshlb answers with: every frame our codecs
//! encode is read by pnet with the same fields (and a valid ICMPv6
//! checksum), and every frame pnet builds is decoded by ours to the same
//! values.

use std::net::Ipv6Addr;

use meshlb_wire::arp::{ArpOperation, ArpPacket};
use meshlb_wire::ethernet::MacAddr;
use meshlb_wire::ndp::{NdpMessage, NdpOption};
use pnet_base::MacAddr as PnetMac;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{NdpOptionTypes, NeighborAdvertPacket, NeighborSolicitPacket};
use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::{MutablePacket, Packet};
use proptest::prelude::*;

use crate::strategies;

fn pnet_mac(mac: MacAddr) -> PnetMac {
    let [a, b, c, d, e, f] = mac.0;
    PnetMac::new(a, b, c, d, e, f)
}

fn our_mac(mac: PnetMac) -> MacAddr {
    MacAddr([mac.0, mac.1, mac.2, mac.3, mac.4, mac.5])
}

/// The options (type, data) pnet reads from an NDP message.
fn options_read_by_pnet(options: &[pnet_packet::icmpv6::ndp::NdpOption]) -> Vec<(u8, Vec<u8>)> {
    options.iter().map(|o| (o.option_type.0, o.data.clone())).collect()
}

/// Our options as pnet sees them on the wire: type and the bytes after the
/// type and length octets, padded to a multiple of 8 octets.
fn expected_options(options: &[NdpOption]) -> Vec<(u8, Vec<u8>)> {
    options
        .iter()
        .map(|o| match o {
            NdpOption::SourceLinkLayerAddress(mac) => (NdpOptionTypes::SourceLLAddr.0, mac.0.to_vec()),
            NdpOption::TargetLinkLayerAddress(mac) => (NdpOptionTypes::TargetLLAddr.0, mac.0.to_vec()),
            NdpOption::Other { kind, value } => {
                let mut padded = value.clone();
                padded.resize((value.len() + 2).div_ceil(8) * 8 - 2, 0);
                (*kind, padded)
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn pnet_reads_the_arp_frames_we_encode(arp in strategies::arp(), source in strategies::mac(), destination in strategies::mac()) {
        let frame = arp.to_frame(source, destination);
        let ethernet = EthernetPacket::new(&frame).unwrap();
        prop_assert_eq!(ethernet.get_ethertype(), EtherTypes::Arp);
        prop_assert_eq!(our_mac(ethernet.get_source()), source);
        prop_assert_eq!(our_mac(ethernet.get_destination()), destination);
        let packet = pnet_packet::arp::ArpPacket::new(ethernet.payload()).unwrap();
        prop_assert_eq!(packet.get_hardware_type(), ArpHardwareTypes::Ethernet);
        prop_assert_eq!(packet.get_protocol_type(), EtherTypes::Ipv4);
        prop_assert_eq!((packet.get_hw_addr_len(), packet.get_proto_addr_len()), (6, 4));
        let operation = match arp.operation {
            ArpOperation::Request => ArpOperations::Request,
            ArpOperation::Reply => ArpOperations::Reply,
        };
        prop_assert_eq!(packet.get_operation(), operation);
        prop_assert_eq!(our_mac(packet.get_sender_hw_addr()), arp.sender_mac);
        prop_assert_eq!(packet.get_sender_proto_addr(), arp.sender_ip);
        prop_assert_eq!(our_mac(packet.get_target_hw_addr()), arp.target_mac);
        prop_assert_eq!(packet.get_target_proto_addr(), arp.target_ip);
    }

    #[test]
    fn we_decode_the_arp_frames_pnet_builds(arp in strategies::arp(), source in strategies::mac(), destination in strategies::mac()) {
        let mut frame = vec![0u8; 14 + ArpPacket::LEN];
        {
            let mut ethernet = MutableEthernetPacket::new(&mut frame).unwrap();
            ethernet.set_source(pnet_mac(source));
            ethernet.set_destination(pnet_mac(destination));
            ethernet.set_ethertype(EtherTypes::Arp);
            let mut packet = MutableArpPacket::new(ethernet.payload_mut()).unwrap();
            packet.set_hardware_type(ArpHardwareTypes::Ethernet);
            packet.set_protocol_type(EtherTypes::Ipv4);
            packet.set_hw_addr_len(6);
            packet.set_proto_addr_len(4);
            packet.set_operation(match arp.operation {
                ArpOperation::Request => ArpOperations::Request,
                ArpOperation::Reply => ArpOperations::Reply,
            });
            packet.set_sender_hw_addr(pnet_mac(arp.sender_mac));
            packet.set_sender_proto_addr(arp.sender_ip);
            packet.set_target_hw_addr(pnet_mac(arp.target_mac));
            packet.set_target_proto_addr(arp.target_ip);
        }
        let (header, decoded) = ArpPacket::from_frame(&frame).unwrap();
        prop_assert_eq!(header.source, source);
        prop_assert_eq!(header.destination, destination);
        prop_assert_eq!(decoded, arp);
    }

    #[test]
    fn pnet_reads_the_ndp_frames_we_encode(
        (message, ip_source, ip_destination) in strategies::ndp(),
        source in strategies::mac(),
        destination in strategies::mac(),
    ) {
        let frame = message.to_frame(source, destination, ip_source, ip_destination);
        let ethernet = EthernetPacket::new(&frame).unwrap();
        prop_assert_eq!(ethernet.get_ethertype(), EtherTypes::Ipv6);
        let ip = Ipv6Packet::new(ethernet.payload()).unwrap();
        prop_assert_eq!(ip.get_version(), 6);
        prop_assert_eq!(ip.get_hop_limit(), 255);
        prop_assert_eq!(ip.get_source(), ip_source);
        prop_assert_eq!(ip.get_destination(), ip_destination);
        prop_assert_eq!(usize::from(ip.get_payload_length()), ip.payload().len());
        let icmp = Icmpv6Packet::new(ip.payload()).unwrap();
        prop_assert_eq!(
            icmp.get_checksum(),
            pnet_packet::icmpv6::checksum(&icmp, &ip_source, &ip_destination),
            "ICMPv6 checksum"
        );
        match &message {
            NdpMessage::Solicitation(ns) => {
                prop_assert_eq!(icmp.get_icmpv6_type(), Icmpv6Types::NeighborSolicit);
                let packet = NeighborSolicitPacket::new(ip.payload()).unwrap();
                prop_assert_eq!(packet.get_target_addr(), ns.target);
                prop_assert_eq!(options_read_by_pnet(&packet.get_options()), expected_options(&ns.options));
            }
            NdpMessage::Advertisement(na) => {
                prop_assert_eq!(icmp.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
                let packet = NeighborAdvertPacket::new(ip.payload()).unwrap();
                prop_assert_eq!(packet.get_target_addr(), na.target);
                let flags = packet.get_flags();
                prop_assert_eq!(flags & 0x80 != 0, na.router, "R");
                prop_assert_eq!(flags & 0x40 != 0, na.solicited, "S");
                prop_assert_eq!(flags & 0x20 != 0, na.override_entry, "O");
                prop_assert_eq!(options_read_by_pnet(&packet.get_options()), expected_options(&na.options));
            }
        }
    }
}

/// A Neighbor Solicitation as the Linux kernel sends it, built with pnet
/// (type 135, solicited-node destination, a source link-layer address
/// option, its checksum), decodes to what was built.
#[test]
fn we_decode_a_neighbor_solicitation_pnet_builds() {
    use pnet_packet::icmpv6::ndp::{MutableNeighborSolicitPacket, NdpOption as PnetOption};
    let source: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let target: Ipv6Addr = "2001:db8:100::10".parse().unwrap();
    let destination = meshlb_wire::ipv6::solicited_node_multicast(&target);
    let mac = MacAddr([2, 0, 0, 0, 2, 0x65]);
    let mut icmp = vec![0u8; 24 + 8];
    {
        let mut ns = MutableNeighborSolicitPacket::new(&mut icmp).unwrap();
        ns.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
        ns.set_target_addr(target);
        ns.set_options(&[PnetOption {
            option_type: NdpOptionTypes::SourceLLAddr,
            length: 1,
            data: mac.0.to_vec(),
        }]);
    }
    let checksum = pnet_packet::icmpv6::checksum(&Icmpv6Packet::new(&icmp).unwrap(), &source, &destination);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let decoded = NdpMessage::decode(&icmp, &source, &destination).unwrap();
    let NdpMessage::Solicitation(ns) = decoded else {
        panic!("not a solicitation: {decoded:?}")
    };
    assert_eq!(ns.target, target);
    assert_eq!(ns.options, vec![NdpOption::SourceLinkLayerAddress(mac)]);
    // One flipped bit and our decoder refuses it, as the kernel would.
    icmp[10] ^= 1;
    assert!(NdpMessage::decode(&icmp, &source, &destination).is_err());
}
