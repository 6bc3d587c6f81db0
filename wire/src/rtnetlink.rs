//! rtnetlink: the kernel's routing and address messages, as the agent
//! speaks them (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h,
//! linux/neighbour.h).
//!
//! Builders append one request to a buffer, so many go to the kernel in
//! one datagram (it handles each in turn and answers each): local routes
//! for service addresses ([`local_route_request`]), removals of an
//! interface's addresses ([`address_removal_request`]), and the neighbour
//! table's dump ([`neighbor_dump_request`]). [`Messages`] splits what the
//! kernel sends back into messages, and the parsers read the bodies the
//! agent and the lab use: acknowledgements and errors ([`parse_error`]),
//! routes and neighbours. Everything is in
//! the host's byte order, as netlink is. Malformed input ends the
//! iteration or yields `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ethernet::MacAddr;

/// Message types (linux/netlink.h, linux/rtnetlink.h).
pub mod message_type {
    /// An error, or with error 0 an acknowledgement.
    pub const ERROR: u16 = 2;
    /// The end of a dump.
    pub const DONE: u16 = 3;
    /// Removes an address.
    pub const DELETE_ADDRESS: u16 = 21;
    /// A route was added, or adds one.
    pub const NEW_ROUTE: u16 = 24;
    /// A route was removed, or removes one.
    pub const DELETE_ROUTE: u16 = 25;
    /// A neighbour entry (a dump's entry).
    pub const NEW_NEIGHBOR: u16 = 28;
    /// Asks for neighbour entries.
    pub const GET_NEIGHBOR: u16 = 30;
}

/// Header flags.
pub mod flags {
    /// A request.
    pub const REQUEST: u16 = 0x01;
    /// Asks for an acknowledgement.
    pub const ACK: u16 = 0x04;
    /// With a new object: replace one that exists.
    pub const REPLACE: u16 = 0x100;
    /// With a new object: create it if it does not exist.
    pub const CREATE: u16 = 0x400;
    /// Asks for every entry (root and match).
    pub const DUMP: u16 = 0x300;
}

/// Multicast groups a socket joins to hear changes (the legacy bitmask of
/// `bind`).
pub mod groups {
    /// IPv4 route changes.
    pub const IPV4_ROUTE: u32 = 0x40;
    /// IPv6 route changes.
    pub const IPV6_ROUTE: u32 = 0x400;
}

/// The netlink header's length.
pub const HEADER_LEN: usize = 16;
const ROUTE_MESSAGE_LEN: usize = 12;
const NEIGHBOR_MESSAGE_LEN: usize = 12;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RT_SCOPE_HOST: u8 = 254;
const RTA_TABLE: u16 = 15;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// The route type of a local address: the kernel delivers to itself.
pub const RTN_LOCAL: u8 = 2;
/// The table of local addresses' routes (`RT_TABLE_LOCAL`).
pub const TABLE_LOCAL: u8 = 255;
/// The protocol number meshlb's routes carry (`ip route show table local
/// proto 77`): unassigned in iproute2's `rt_protos`.
pub const PROTOCOL_MESHLB: u8 = 77;

fn family_of(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn octets_and_length(address: &IpAddr) -> (Vec<u8>, u8) {
    match address {
        IpAddr::V4(v4) => (v4.octets().to_vec(), 32),
        IpAddr::V6(v6) => (v6.octets().to_vec(), 128),
    }
}

fn ip_from(family: u8, value: &[u8]) -> Option<IpAddr> {
    match (family, value.len()) {
        (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(value[0], value[1], value[2], value[3]))),
        (AF_INET6, 16) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(value);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Appends one message: the header, `fixed` (the type's own header), then
/// each attribute padded to four octets.
fn push_message(buf: &mut Vec<u8>, kind: u16, flags: u16, sequence: u32, fixed: &[u8], attributes: &[(u16, &[u8])]) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]); // the length, set below
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&sequence.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(fixed);
    for (kind, value) in attributes {
        // An attribute's length field counts its 4-octet header.
        let len = (4 + value.len()) as u16;
        buf.extend_from_slice(&len.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(value);
        buf.resize(buf.len().div_ceil(4) * 4, 0);
    }
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Whether a request adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Adds the route or address, or replaces the one there (`ip route
    /// replace`, `ip addr replace`).
    Add,
    /// Removes it.
    Remove,
}

/// Appends a request to add or remove a local route (`ip route replace
/// local ADDRESS dev IFACE table local proto 77`) for `address` through
/// interface `index`, acknowledged. With it the kernel delivers the
/// address's packets to this host as it does a configured address's
/// (AnyIP), but it is no interface's address: nothing answers ARP or NDP
/// for it by itself, and adding or removing it costs the kernel a route
/// insertion, however many there are (removing an IPv6 address walks the
/// whole routing table).
pub fn local_route_request(buf: &mut Vec<u8>, change: Change, index: u32, address: IpAddr, sequence: u32) {
    let (octets, prefix_len) = octets_and_length(&address);
    let mut fixed = vec![
        family_of(address),
        prefix_len,
        0,
        0,
        TABLE_LOCAL,
        PROTOCOL_MESHLB,
        RT_SCOPE_HOST,
        RTN_LOCAL,
    ];
    fixed.extend_from_slice(&0u32.to_ne_bytes());
    let (kind, request_flags) = match change {
        Change::Add => (
            message_type::NEW_ROUTE,
            flags::REQUEST | flags::ACK | flags::CREATE | flags::REPLACE,
        ),
        Change::Remove => (message_type::DELETE_ROUTE, flags::REQUEST | flags::ACK),
    };
    let index = index.to_ne_bytes();
    push_message(
        buf,
        kind,
        request_flags,
        sequence,
        &fixed,
        &[(RTA_DST, &octets), (RTA_OIF, &index)],
    );
}

/// Appends a request to remove the host address (/32, /128) `address`
/// from interface `index`, acknowledged (what an agent before local routes
/// left on loopback).
pub fn address_removal_request(buf: &mut Vec<u8>, index: u32, address: IpAddr, sequence: u32) {
    let (octets, prefix_len) = octets_and_length(&address);
    let mut fixed = vec![family_of(address), prefix_len, 0, 0];
    fixed.extend_from_slice(&index.to_ne_bytes());
    push_message(
        buf,
        message_type::DELETE_ADDRESS,
        flags::REQUEST | flags::ACK,
        sequence,
        &fixed,
        &[(IFA_LOCAL, &octets), (IFA_ADDRESS, &octets)],
    );
}

/// Appends a request for the neighbour table of every family.
pub fn neighbor_dump_request(buf: &mut Vec<u8>, sequence: u32) {
    push_message(
        buf,
        message_type::GET_NEIGHBOR,
        flags::REQUEST | flags::DUMP,
        sequence,
        &[0u8; NEIGHBOR_MESSAGE_LEN],
        &[],
    );
}

/// A message's header fields the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its type ([`message_type`]).
    pub kind: u16,
    /// Its flags.
    pub flags: u16,
    /// The sequence number of the request it answers (0 for
    /// notifications).
    pub sequence: u32,
}

/// The messages of one datagram, each with its body; ends at the first
/// malformed one.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    /// The messages of `datagram`.
    pub fn new(datagram: &'a [u8]) -> Messages<'a> {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = (Header, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let len = u32_at(self.rest, 0)? as usize;
        if len < HEADER_LEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let header = Header {
            kind: u16_at(self.rest, 4)?,
            flags: u16_at(self.rest, 6)?,
            sequence: u32_at(self.rest, 8)?,
        };
        let body = &self.rest[HEADER_LEN..len];
        self.rest = self.rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some((header, body))
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// The attributes after a body's fixed part of `fixed` octets, as (type,
/// value); ends at the first malformed one.
fn attributes(body: &[u8], fixed: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = fixed;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(body, at)?);
        let kind = u16_at(body, at + 2)?;
        if len < 4 || at + len > body.len() {
            return None;
        }
        let value = &body[at + 4..at + len];
        at += len.div_ceil(4) * 4;
        // The nested and byte-order flags are not types.
        Some((kind & 0x3fff, value))
    })
}

/// An [`message_type::ERROR`] body's error: 0 for an acknowledgement, else
/// the errno (positive).
pub fn parse_error(body: &[u8]) -> Option<i32> {
    let error = i32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
    Some(error.checked_neg().unwrap_or(i32::MAX))
}

/// A route, as much of it as the agent and the lab read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Its destination, if it has one (a default route has none).
    pub destination: Option<IpAddr>,
    /// The destination's prefix length.
    pub prefix_len: u8,
    /// Its table.
    pub table: u32,
    /// Who installed it (`RTPROT_*`: 2 kernel, 186 BGP, 12 bird...).
    pub protocol: u8,
    /// Its scope (`RT_SCOPE_*`: 254 host).
    pub scope: u8,
    /// Its type (`RTN_*`, e.g. [`RTN_LOCAL`]).
    pub kind: u8,
}

/// A route message's body ([`message_type::NEW_ROUTE`],
/// [`message_type::DELETE_ROUTE`]).
pub fn parse_route(body: &[u8]) -> Option<Route> {
    let family = *body.first()?;
    let mut route = Route {
        destination: None,
        prefix_len: *body.get(1)?,
        table: u32::from(*body.get(4)?),
        scope: *body.get(6)?,
        protocol: *body.get(5)?,
        kind: *body.get(7)?,
    };
    if body.len() < ROUTE_MESSAGE_LEN {
        return None;
    }
    for (kind, value) in attributes(body, ROUTE_MESSAGE_LEN) {
        match kind {
            RTA_DST => route.destination = ip_from(family, value),
            RTA_TABLE => route.table = u32_at(value, 0).unwrap_or(route.table),
            _ => {}
        }
    }
    Some(route)
}

/// One neighbour-table entry with a link-layer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    /// The interface it is on.
    pub index: u32,
    /// Its IP address.
    pub address: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// A neighbour message's body ([`message_type::NEW_NEIGHBOR`]), if it has
/// an IP address and a MAC.
pub fn parse_neighbor(body: &[u8]) -> Option<Neighbor> {
    if body.len() < NEIGHBOR_MESSAGE_LEN {
        return None;
    }
    let family = body[0];
    let index = u32_at(body, 4)?;
    let (mut address, mut mac) = (None, None);
    for (kind, value) in attributes(body, NEIGHBOR_MESSAGE_LEN) {
        match kind {
            NDA_DST => address = ip_from(family, value),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(value).ok().map(MacAddr),
            _ => {}
        }
    }
    Some(Neighbor {
        index,
        address: address?,
        mac: mac?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address message's body as the kernel reads it: the interface,
    /// the address (IFA_LOCAL) and its prefix length.
    fn parse_address(body: &[u8]) -> Option<(u32, IpAddr, u8)> {
        let (family, prefix_len, index) = (*body.first()?, *body.get(1)?, u32_at(body, 4)?);
        let address =
            attributes(body, 8).find_map(|(kind, value)| (kind == IFA_LOCAL).then(|| ip_from(family, value)))??;
        Some((index, address, prefix_len))
    }

    fn only(datagram: &[u8]) -> (Header, &[u8]) {
        let all: Vec<_> = Messages::new(datagram).collect();
        assert_eq!(all.len(), 1);
        all[0]
    }

    /// An address removal is `ip addr del 203.0.113.9/32 dev lo`:
    /// ifaddrmsg, IFA_LOCAL and IFA_ADDRESS, acknowledged.
    #[test]
    fn address_removals_carry_the_host_prefix() {
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        let mut buf = Vec::new();
        address_removal_request(&mut buf, 1, v4, 10);
        let (header, body) = only(&buf);
        assert_eq!(header.kind, message_type::DELETE_ADDRESS);
        assert_eq!(header.flags, flags::REQUEST | flags::ACK);
        assert_eq!(header.sequence, 10);
        assert_eq!(parse_address(body), Some((1, v4, 32)));
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut buf = Vec::new();
        address_removal_request(&mut buf, 1, v6, 11);
        assert_eq!(parse_address(only(&buf).1), Some((1, v6, 128)));
    }

    /// A local route request is `ip route replace local 203.0.113.9 dev lo
    /// table local proto 77`: the local table, host scope, type local.
    #[test]
    fn local_route_requests_carry_table_scope_type_and_protocol() {
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        let mut buf = Vec::new();
        local_route_request(&mut buf, Change::Add, 1, v4, 3);
        let (header, body) = only(&buf);
        assert_eq!(header.kind, message_type::NEW_ROUTE);
        assert_eq!(
            header.flags,
            flags::REQUEST | flags::ACK | flags::CREATE | flags::REPLACE
        );
        let route = parse_route(body).unwrap();
        assert_eq!(
            route,
            Route {
                destination: Some(v4),
                prefix_len: 32,
                table: u32::from(TABLE_LOCAL),
                protocol: PROTOCOL_MESHLB,
                scope: RT_SCOPE_HOST,
                kind: RTN_LOCAL,
            }
        );
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut buf = Vec::new();
        local_route_request(&mut buf, Change::Remove, 1, v6, 4);
        let (header, body) = only(&buf);
        assert_eq!(header.kind, message_type::DELETE_ROUTE);
        assert_eq!(header.flags, flags::REQUEST | flags::ACK);
        let route = parse_route(body).unwrap();
        assert_eq!((route.destination, route.prefix_len), (Some(v6), 128));
    }

    #[test]
    fn requests_in_one_buffer_are_read_back_in_order() {
        let mut buf = Vec::new();
        for i in 1..=3u8 {
            let address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, i));
            local_route_request(&mut buf, Change::Add, 1, address, u32::from(i));
        }
        neighbor_dump_request(&mut buf, 4);
        let read: Vec<_> = Messages::new(&buf).map(|(h, _)| (h.kind, h.sequence)).collect();
        assert_eq!(
            read,
            [
                (message_type::NEW_ROUTE, 1),
                (message_type::NEW_ROUTE, 2),
                (message_type::NEW_ROUTE, 3),
                (message_type::GET_NEIGHBOR, 4)
            ]
        );
        let (_, body) = Messages::new(&buf).nth(1).unwrap();
        assert_eq!(
            parse_route(body).unwrap().destination,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))
        );
        let (header, body) = Messages::new(&buf).nth(3).unwrap();
        assert_eq!(header.flags, flags::REQUEST | flags::DUMP);
        assert_eq!(body, [0u8; NEIGHBOR_MESSAGE_LEN], "every family");
    }

    #[test]
    fn an_error_body_gives_the_errno() {
        assert_eq!(parse_error(&0i32.to_ne_bytes()), Some(0));
        assert_eq!(parse_error(&(-17i32).to_ne_bytes()), Some(17));
        assert_eq!(parse_error(&[0, 0]), None);
    }

    /// An RTM_NEWNEIGH message as the kernel sends one: ndmsg, then
    /// NDA_DST and NDA_LLADDR attributes, each padded to 4 octets.
    fn new_neighbor(family: u8, index: u32, address: &[u8], mac: &[u8]) -> Vec<u8> {
        let mut fixed = vec![family, 0, 0, 0];
        fixed.extend_from_slice(&index.to_ne_bytes());
        fixed.extend_from_slice(&[2, 0, 0, 1]); // state REACHABLE, flags, type
        let mut buf = Vec::new();
        push_message(
            &mut buf,
            message_type::NEW_NEIGHBOR,
            0x2,
            0,
            &fixed,
            &[(NDA_DST, address), (NDA_LLADDR, mac)],
        );
        buf
    }

    #[test]
    fn neighbours_of_both_families_are_read_and_entries_without_a_mac_skipped() {
        let mac = [2, 0, 0, 0, 0, 1];
        let v6: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let mut datagram = new_neighbor(AF_INET, 3, &[198, 51, 100, 1], &mac);
        datagram.extend(new_neighbor(AF_INET6, 3, &v6.octets(), &mac));
        datagram.extend(new_neighbor(AF_INET, 4, &[198, 51, 100, 9], &[])); // no MAC (FAILED)
        let found: Vec<Neighbor> = Messages::new(&datagram)
            .filter_map(|(_, body)| parse_neighbor(body))
            .collect();
        assert_eq!(
            found,
            [
                Neighbor {
                    index: 3,
                    address: "198.51.100.1".parse().unwrap(),
                    mac: MacAddr(mac)
                },
                Neighbor {
                    index: 3,
                    address: IpAddr::V6(v6),
                    mac: MacAddr(mac)
                },
            ]
        );
        // Truncated anywhere: no panic, nothing made up.
        for cut in 0..datagram.len() {
            let found = Messages::new(&datagram[..cut])
                .filter_map(|(_, body)| parse_neighbor(body))
                .count();
            assert!(found <= 2);
        }
    }

    proptest::proptest! {
        /// Any bytes: the iterator ends and the parsers answer, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            for (_, body) in Messages::new(&bytes) {
                let _ = parse_error(body);
                let _ = parse_route(body);
                let _ = parse_neighbor(body);
            }
        }
    }
}
