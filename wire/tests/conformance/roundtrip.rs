//! encode → decode is the identity for every message kind; the framer
//! reassembles any split of a stream; no decoder panics on arbitrary bytes.

use crate::strategies;
use meshlb_wire::arp::ArpPacket;
use meshlb_wire::bfd::ControlPacket;
use meshlb_wire::bgp::{Framer, Message, SessionParams};
use meshlb_wire::ethernet::MacAddr;
use meshlb_wire::ndp::NdpMessage;
use proptest::collection::vec;
use proptest::prelude::*;

const P4: SessionParams = SessionParams::FOUR_OCTET_AS;
const P2: SessionParams = SessionParams { four_octet_as: false };

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arp_round_trips(packet in strategies::arp(), src in strategies::mac(), dst in strategies::mac()) {
        let frame = packet.to_frame(src, dst);
        let (header, back) = ArpPacket::from_frame(&frame).expect("own frame decodes");
        prop_assert_eq!(back, packet);
        prop_assert_eq!((header.source, header.destination), (src, dst));
    }

    #[test]
    fn ndp_round_trips((message, source, destination) in strategies::ndp(), mac in strategies::mac()) {
        let icmp = message.encode(&source, &destination);
        prop_assert_eq!(NdpMessage::decode(&icmp, &source, &destination).expect("decodes"), message.clone());
        let frame = message.to_frame(mac, MacAddr::BROADCAST, source, destination);
        let decoded = NdpMessage::from_frame(&frame).expect("frame decodes");
        prop_assert_eq!(decoded.message, message);
        prop_assert_eq!(decoded.ip.hop_limit, 255);
    }

    #[test]
    fn ndp_detects_any_single_bit_flip((message, source, destination) in strategies::ndp(), bit in 0usize..192) {
        let mut icmp = message.encode(&source, &destination);
        let bit = bit % (icmp.len() * 8);
        icmp[bit / 8] ^= 1 << (bit % 8);
        // A flipped bit is caught by the checksum or by a validity check;
        // it is never accepted as a different valid message.
        prop_assert!(NdpMessage::decode(&icmp, &source, &destination).is_err());
    }

    #[test]
    fn bfd_round_trips(packet in strategies::bfd()) {
        let bytes = packet.to_bytes();
        prop_assert_eq!(bytes.len(), usize::from(bytes[3]));
        prop_assert_eq!(ControlPacket::decode(&bytes).expect("decodes"), packet);
    }

    #[test]
    fn bgp_round_trips(message in strategies::bgp_message()) {
        let bytes = message.encode(&P4).expect("fits in 4096 octets");
        prop_assert_eq!(Message::decode(&bytes, &P4).expect("decodes"), message);
    }

    #[test]
    fn bgp_update_round_trips_with_two_octet_asns(update in strategies::update(false, false)) {
        let message = Message::Update(update);
        let bytes = message.encode(&P2).expect("fits");
        prop_assert_eq!(Message::decode(&bytes, &P2).expect("decodes"), message);
    }

    #[test]
    fn framer_reassembles_any_split(messages in vec(strategies::bgp_message(), 1..6), cuts in vec(any::<prop::sample::Index>(), 0..8)) {
        let encoded: Vec<Vec<u8>> = messages.iter().map(|m| m.encode(&P4).expect("fits")).collect();
        let stream: Vec<u8> = encoded.concat();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len())).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut framer = Framer::new();
        let mut frames = Vec::new();
        let mut start = 0;
        for end in points {
            framer.push(&stream[start..end]);
            start = end;
            while let Some(frame) = framer.next_frame().expect("valid stream") {
                frames.push(frame.to_vec());
            }
        }
        prop_assert_eq!(frames, encoded);
        prop_assert_eq!(framer.buffered(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic a decoder (the fuzz targets go further).
    #[test]
    fn decoders_never_panic(bytes in vec(any::<u8>(), 0..200), four_octet in any::<bool>()) {
        let _ = ArpPacket::from_frame(&bytes);
        let _ = NdpMessage::from_frame(&bytes);
        let _ = ControlPacket::decode(&bytes);
        let params = SessionParams { four_octet_as: four_octet };
        let _ = Message::decode(&bytes, &params);
        // The same bytes behind a valid header reach every body decoder.
        for kind in 1u8..=5 {
            let mut framed = vec![0xff; 16];
            framed.extend_from_slice(&((bytes.len() + 19) as u16).to_be_bytes());
            framed.push(kind);
            framed.extend_from_slice(&bytes);
            let _ = Message::decode(&framed, &params);
        }
    }
}
