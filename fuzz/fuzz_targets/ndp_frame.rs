//! NDP frame decoder (Ethernet + IPv6 + ICMPv6 checks) and the Router
//! Discovery decoder (unnumbered BGP's): never panic; a decoded message
//! re-encodes between the same addresses to one that decodes equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::ndp::NdpMessage;
use meshlb_wire::router_discovery::RouterDiscovery;

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
    if let Ok(message) = RouterDiscovery::decode(data, &src, &dst) {
        let again = RouterDiscovery::decode(&message.encode(&src, &dst), &src, &dst);
        assert_eq!(again, Ok(message));
    }
});
