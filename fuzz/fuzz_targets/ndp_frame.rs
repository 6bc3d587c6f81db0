//! NDP frame decoder (Ethernet + IPv6 + ICMPv6 checks): never panics; a
//! decoded message re-encodes between the same addresses to one that
//! decodes equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::ndp::NdpMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = NdpMessage::from_frame(data) {
        let icmp = frame.message.encode(&frame.ip.source, &frame.ip.destination);
        let again = NdpMessage::decode(&icmp, &frame.ip.source, &frame.ip.destination);
        assert_eq!(again, Ok(frame.message));
    }
    // The ICMPv6 decoder on its own, with fixed addresses.
    let src = "fe80::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST);
    let dst = "ff02::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST);
    let _ = NdpMessage::decode(data, &src, &dst);
});
