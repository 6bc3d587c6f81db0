//! BFD control packet decoder: never panics; a decoded packet re-encodes to
//! bytes that decode equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::bfd::ControlPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(data) {
        assert_eq!(ControlPacket::decode(&packet.to_bytes()), Ok(packet));
    }
});
