//! ARP frame decoder: never panics; whatever decodes re-encodes to a frame
//! that decodes to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::arp::ArpPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, packet)) = ArpPacket::from_frame(data) {
        let frame = packet.to_frame(header.source, header.destination);
        let again = ArpPacket::from_frame(&frame).map(|(_, p)| p);
        assert_eq!(again, Ok(packet));
    }
});
