//! BFD control packet decoder and the Echo readers (the payload, and a
//! whole frame read off the wire): never panic; a decoded packet
//! re-encodes to bytes that decode equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::bfd::ControlPacket;
use meshlb_wire::bfd_echo::{EchoPacket, ReturnedEcho};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(data) {
        assert_eq!(ControlPacket::decode(&packet.to_bytes()), Ok(packet));
    }
    if let Ok(echo) = EchoPacket::decode(data) {
        assert_eq!(EchoPacket::decode(&echo.to_bytes()), Ok(echo));
    }
    if let Ok(back) = ReturnedEcho::from_frame(data) {
        let again = back.packet.to_frame(
            meshlb_wire::ethernet::MacAddr::ZERO,
            meshlb_wire::ethernet::MacAddr::ZERO,
            back.destination,
            49152,
        );
        assert_eq!(ReturnedEcho::from_frame(&again).map(|b| b.packet), Ok(back.packet));
    }
});
