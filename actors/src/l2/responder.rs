//! The sans-IO core of Layer 2 announcement on one interface: which frames
//! to answer, which to send on its own, and when. No sockets, no clock:
//! frames come in as bytes with the current time, frames go out through
//! [`Responder::poll_transmit`], and [`Responder::poll_timeout`] says when
//! to call back. The interface actor owns the socket and feeds it.
//!
//! What it does, for the service IPs this node owns on this interface:
//! - ARP (RFC 826): answers requests for an owned IPv4 address with this
//!   interface's MAC, unicast to the asker. RFC 5227 probes (sender IP
//!   0.0.0.0) are answered too: the address is in use, here.
//! - NDP (RFC 4861): answers Neighbor Solicitations for an owned IPv6
//!   address with a solicited Neighbor Advertisement (Override set: service
//!   IPs move between nodes); a solicitation from the unspecified address
//!   (duplicate address detection) gets an unsolicited one to all nodes.
//!   Advertisements come from the target address itself, as the kernel
//!   sends them for its own addresses (some tools, ndisc6 among them, drop
//!   a link-local-sourced answer about a global address).
//! - On gaining an address, and when the link comes back: gratuitous ARP
//!   (an announcement request and a reply, since stacks differ in which
//!   they honour) or an unsolicited Neighbor Advertisement, at once and
//!   then on [`AnnounceSchedule::repeats`], and optionally every
//!   [`AnnounceSchedule::refresh`] to refresh switch tables.
//! - On losing an address: silence at once. The new owner's announcements
//!   move the clients.
//! - After a stall (a gap between the glue's wake-ups as long as its stall
//!   bound, [`Responder::forget_after_stalls`], [`Responder::handle_wake`]):
//!   nothing owned, nothing pending, until ownership is given anew.
//!
//! Frames it did not send and cannot parse are counted, never answered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use meshlb_wire::arp::{ArpOperation, ArpPacket};
use meshlb_wire::ethernet::{EtherType, EthernetHeader, MacAddr};
use meshlb_wire::ndp::{NdpMessage, NeighborAdvertisement};

/// When gratuitous announcements go out after a gain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSchedule {
    /// Offsets after the gain of the repeats that follow the first,
    /// immediate announcement: a lost first frame is made up for quickly.
    pub repeats: Vec<Duration>,
    /// Steady refresh interval after the repeats, if any.
    pub refresh: Option<Duration>,
}

impl Default for AnnounceSchedule {
    /// At once, then after 0.25, 1 and 2 s; no steady refresh (MetalLB
    /// sends none either).
    fn default() -> Self {
        AnnounceSchedule {
            repeats: [250, 1000, 2000].map(Duration::from_millis).to_vec(),
            refresh: None,
        }
    }
}

/// One address's counters, MetalLB's per-address Layer 2 metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressCounters {
    /// ARP requests and Neighbor Solicitations for it received while it
    /// was owned here.
    pub requests_received: u64,
    /// Answers sent.
    pub responses_sent: u64,
    /// Gratuitous ARP frames and unsolicited advertisements sent.
    pub gratuitous_sent: u64,
}

/// Counters for introspection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderStats {
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Neighbor Solicitations answered.
    pub na_replies: u64,
    /// Gratuitous ARP frames and unsolicited advertisements sent.
    pub announcements: u64,
    /// Frames that did not parse as ARP or NDP.
    pub malformed: u64,
    /// Well-formed questions about addresses not owned here.
    pub not_ours: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    /// When it was gained (or the link came back).
    since: Instant,
    /// Index into the repeats of the next announcement; past the end, the
    /// refresh interval applies.
    next_repeat: usize,
    /// When the next announcement is due.
    due: Option<Instant>,
}

/// Layer 2 announcement on one interface. See the module documentation.
#[derive(Debug)]
pub struct Responder {
    mac: MacAddr,
    schedule: AnnounceSchedule,
    link_up: bool,
    owned: BTreeMap<IpAddr, Owned>,
    outgoing: Vec<Vec<u8>>,
    stats: ResponderStats,
    /// Per address ever owned here (kept: counters only grow).
    by_address: BTreeMap<IpAddr, AddressCounters>,
    /// When the glue last woke ([`Responder::handle_wake`]).
    last_wake: Option<Instant>,
    /// A gap between wakes this long is a stall (`None`: stalls are not
    /// looked for).
    stall_bound: Option<Duration>,
}

impl Responder {
    /// A responder for an interface with `mac`, link up, owning nothing.
    pub fn new(mac: MacAddr, schedule: AnnounceSchedule) -> Responder {
        Responder {
            mac,
            schedule,
            link_up: true,
            owned: BTreeMap::new(),
            outgoing: Vec::new(),
            stats: ResponderStats::default(),
            by_address: BTreeMap::new(),
            last_wake: None,
            stall_bound: None,
        }
    }

    /// Takes a gap of `bound` between wakes for a stall, after which what
    /// was owned is forgotten ([`Responder::handle_wake`]): the agent's
    /// [`Profile::stall_ms`](meshlb_gossip::profile::Profile::stall_ms),
    /// the shortest stall after which the mesh may have given its addresses
    /// to another node.
    pub fn forget_after_stalls(mut self, bound: Duration) -> Responder {
        self.stall_bound = Some(bound);
        self
    }

    /// Per-address counters, for every address ever owned here.
    pub fn address_counters(&self) -> BTreeMap<IpAddr, AddressCounters> {
        self.by_address.clone()
    }

    fn counters(&mut self, ip: IpAddr) -> &mut AddressCounters {
        self.by_address.entry(ip).or_default()
    }

    /// The interface's MAC.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Whether the link is up, as last told.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// The addresses owned here.
    pub fn owned(&self) -> BTreeSet<IpAddr> {
        self.owned.keys().copied().collect()
    }

    /// Counters.
    pub fn stats(&self) -> ResponderStats {
        self.stats
    }

    /// Sets the addresses this node owns on this interface. New ones are
    /// announced at once; dropped ones are answered no more.
    pub fn set_owned(&mut self, addresses: &BTreeSet<IpAddr>, now: Instant) {
        self.owned.retain(|ip, _| addresses.contains(ip));
        for ip in addresses {
            if !self.owned.contains_key(ip) {
                self.owned.insert(*ip, Owned::fresh(now));
                if self.link_up {
                    self.announce(*ip);
                }
            }
        }
    }

    /// The glue woke at `now` (a frame, a timer, a new address set, the link poll:
    /// at least once every [`LINK_POLL`](crate::l2::links::LINK_POLL)
    /// unless the process is stalled); it calls this first, before the
    /// event. A gap of the stall bound ([`Responder::forget_after_stalls`])
    /// or more since the last wake means the process was stalled (frozen,
    /// or its machine paused): what it owned and what it was about to send
    /// are stale, and forgotten. The answer is then the stall's length: the
    /// caller drops the questions queued meanwhile and waits for ownership
    /// anew.
    pub fn handle_wake(&mut self, now: Instant) -> Option<Duration> {
        let gap = self.last_wake.map(|last| now.saturating_duration_since(last));
        self.last_wake = Some(now);
        let bound = self.stall_bound?;
        let stall = gap.filter(|gap| *gap >= bound)?;
        self.owned.clear();
        self.outgoing.clear();
        Some(stall)
    }

    /// The link went down or came up. While down nothing is sent; on
    /// coming back every owned address is announced again from the start
    /// of the schedule (the switch may have forgotten this port).
    pub fn set_link(&mut self, up: bool, now: Instant) {
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        self.outgoing.clear();
        if up {
            let ips: Vec<IpAddr> = self.owned.keys().copied().collect();
            for ip in ips {
                self.owned.insert(ip, Owned::fresh(now));
                self.announce(ip);
            }
        }
    }

    /// Takes in a frame received on the interface.
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) {
        let _ = now;
        if !self.link_up {
            return;
        }
        let Ok((header, _)) = EthernetHeader::decode(frame) else {
            self.stats.malformed += 1;
            return;
        };
        if header.source == self.mac {
            return;
        }
        match header.ethertype {
            EtherType::ARP => self.handle_arp(frame),
            EtherType::IPV6 => self.handle_ndp(frame),
            _ => {}
        }
    }

    fn handle_arp(&mut self, frame: &[u8]) {
        let Ok((_, arp)) = ArpPacket::from_frame(frame) else {
            self.stats.malformed += 1;
            return;
        };
        if arp.operation != ArpOperation::Request || arp.is_announcement() {
            // Replies and announcements are other hosts' news, not questions.
            return;
        }
        if !self.owned.contains_key(&IpAddr::V4(arp.target_ip)) {
            self.stats.not_ours += 1;
            return;
        }
        let reply = ArpPacket::reply_to(&arp, self.mac);
        self.outgoing.push(reply.to_frame(self.mac, arp.sender_mac));
        self.stats.arp_replies += 1;
        let counters = self.counters(IpAddr::V4(arp.target_ip));
        counters.requests_received += 1;
        counters.responses_sent += 1;
    }

    fn handle_ndp(&mut self, frame: &[u8]) {
        let parsed = match NdpMessage::from_frame(frame) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let NdpMessage::Solicitation(ns) = &parsed.message else {
            return;
        };
        if !self.owned.contains_key(&IpAddr::V6(ns.target)) {
            self.stats.not_ours += 1;
            return;
        }
        self.counters(IpAddr::V6(ns.target)).requests_received += 1;
        let source = parsed.ip.source;
        if source.is_unspecified() {
            // Duplicate address detection: defend to all nodes (RFC 4861
            // section 7.2.4), S clear.
            self.push_unsolicited_na(ns.target);
        } else {
            let to_mac = parsed.message.link_layer_address().unwrap_or(parsed.ethernet.source);
            let na = NdpMessage::Advertisement(NeighborAdvertisement::solicited(ns.target, self.mac));
            self.outgoing.push(na.to_frame(self.mac, to_mac, ns.target, source));
            self.counters(IpAddr::V6(ns.target)).responses_sent += 1;
        }
        self.stats.na_replies += 1;
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.outgoing.is_empty() {
            None
        } else {
            Some(self.outgoing.remove(0))
        }
    }

    /// When [`Responder::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.link_up {
            return None;
        }
        self.owned.values().filter_map(|o| o.due).min()
    }

    /// Sends the announcements due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.link_up {
            return;
        }
        let due: Vec<IpAddr> = self
            .owned
            .iter()
            .filter(|(_, o)| o.due.is_some_and(|d| d <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in due {
            self.announce(ip);
        }
    }

    /// Queues the announcement of `ip` and schedules the next one.
    fn announce(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.push_garp(v4),
            IpAddr::V6(v6) => self.push_unsolicited_na(v6),
        }
        let schedule = &self.schedule;
        if let Some(owned) = self.owned.get_mut(&ip) {
            owned.due = match schedule.repeats.get(owned.next_repeat) {
                Some(offset) => Some(owned.since + *offset),
                None => schedule.refresh.map(|every| owned.due.unwrap_or(owned.since) + every),
            };
            owned.next_repeat += 1;
        }
    }

    fn push_garp(&mut self, ip: Ipv4Addr) {
        for operation in [ArpOperation::Request, ArpOperation::Reply] {
            let garp = ArpPacket::announcement(operation, self.mac, ip);
            self.outgoing.push(garp.to_frame(self.mac, MacAddr::BROADCAST));
            self.stats.announcements += 1;
            self.counters(IpAddr::V4(ip)).gratuitous_sent += 1;
        }
    }

    fn push_unsolicited_na(&mut self, ip: Ipv6Addr) {
        let na = NdpMessage::Advertisement(NeighborAdvertisement::unsolicited(ip, self.mac));
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        self.outgoing
            .push(na.to_frame(self.mac, MacAddr::BROADCAST, ip, all_nodes));
        self.stats.announcements += 1;
        self.counters(IpAddr::V6(ip)).gratuitous_sent += 1;
    }
}

impl Owned {
    fn fresh(now: Instant) -> Owned {
        Owned {
            since: now,
            next_repeat: 0,
            due: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlb_wire::ipv6::solicited_node_multicast;
    use meshlb_wire::ndp::{NdpOption, NeighborSolicitation};
    use proptest::prelude::*;

    const OUR_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
    const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
    const SERVICE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The virtual time `ms` milliseconds after the tests' origin.
    fn at(ms: u64) -> Instant {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    /// Milliseconds from the tests' origin to `t`.
    fn ms(t: Instant) -> u64 {
        u64::try_from((t - at(0)).as_millis()).unwrap()
    }

    fn responder(schedule: AnnounceSchedule) -> Responder {
        Responder::new(OUR_MAC, schedule)
    }

    fn owning(ips: &[IpAddr]) -> Responder {
        let mut r = responder(AnnounceSchedule::default());
        r.set_owned(&ips.iter().copied().collect(), at(0));
        drain(&mut r);
        r
    }

    fn drain(r: &mut Responder) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| r.poll_transmit()).collect()
    }

    fn who_has(ip: Ipv4Addr) -> Vec<u8> {
        ArpPacket::request(CLIENT_MAC, CLIENT_IP, ip).to_frame(CLIENT_MAC, MacAddr::BROADCAST)
    }

    fn solicit(target: Ipv6Addr, source: Ipv6Addr) -> Vec<u8> {
        let options = if source.is_unspecified() {
            vec![]
        } else {
            vec![NdpOption::SourceLinkLayerAddress(CLIENT_MAC)]
        };
        NdpMessage::Solicitation(NeighborSolicitation { target, options }).to_frame(
            CLIENT_MAC,
            MacAddr::BROADCAST,
            source,
            solicited_node_multicast(&target),
        )
    }

    #[test]
    fn an_arp_request_for_an_owned_address_gets_our_mac_unicast() {
        let mut r = owning(&[SERVICE_V4.into()]);
        r.handle_frame(&who_has(SERVICE_V4), at(5));
        let sent = drain(&mut r);
        assert_eq!(sent.len(), 1);
        let (eth, reply) = ArpPacket::from_frame(&sent[0]).unwrap();
        assert_eq!((eth.source, eth.destination), (OUR_MAC, CLIENT_MAC));
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!((reply.sender_mac, reply.sender_ip), (OUR_MAC, SERVICE_V4));
        assert_eq!((reply.target_mac, reply.target_ip), (CLIENT_MAC, CLIENT_IP));
        assert_eq!(r.stats().arp_replies, 1);
    }

    /// Per address: the questions for it, the answers and the gratuitous
    /// announcements; nothing for an address not owned.
    #[test]
    fn counters_are_kept_per_address() {
        let v6_service = v6("2001:db8:100::10");
        let mut r = responder(AnnounceSchedule::default());
        r.set_owned(&BTreeSet::from([IpAddr::V4(SERVICE_V4), IpAddr::V6(v6_service)]), at(0));
        drain(&mut r);
        r.handle_frame(&who_has(SERVICE_V4), at(5));
        r.handle_frame(&who_has(SERVICE_V4), at(6));
        r.handle_frame(&solicit(v6_service, v6("fe80::99")), at(7));
        r.handle_frame(&who_has(Ipv4Addr::new(203, 0, 113, 11)), at(8));
        let counters = r.address_counters();
        let v4 = counters[&IpAddr::V4(SERVICE_V4)];
        assert_eq!((v4.requests_received, v4.responses_sent, v4.gratuitous_sent), (2, 2, 2));
        let v6c = counters[&IpAddr::V6(v6_service)];
        assert_eq!(
            (v6c.requests_received, v6c.responses_sent, v6c.gratuitous_sent),
            (1, 1, 1)
        );
        assert!(!counters.contains_key(&IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11))));
        // Lost, the counters stay (they only grow).
        r.set_owned(&BTreeSet::new(), at(10));
        assert_eq!(r.address_counters()[&IpAddr::V4(SERVICE_V4)].responses_sent, 2);
    }

    #[test]
    fn other_addresses_replies_and_announcements_get_nothing() {
        let mut r = owning(&[SERVICE_V4.into()]);
        r.handle_frame(&who_has(Ipv4Addr::new(203, 0, 113, 11)), at(5));
        let foreign_reply = ArpPacket::reply_to(&ArpPacket::request(OUR_MAC, CLIENT_IP, SERVICE_V4), CLIENT_MAC);
        r.handle_frame(&foreign_reply.to_frame(CLIENT_MAC, OUR_MAC), at(5));
        let other_garp = ArpPacket::announcement(ArpOperation::Request, CLIENT_MAC, SERVICE_V4);
        r.handle_frame(&other_garp.to_frame(CLIENT_MAC, MacAddr::BROADCAST), at(5));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.stats().not_ours, 1);
    }

    #[test]
    fn an_rfc5227_probe_for_an_owned_address_is_defended() {
        let mut r = owning(&[SERVICE_V4.into()]);
        let probe = ArpPacket::request(CLIENT_MAC, Ipv4Addr::UNSPECIFIED, SERVICE_V4);
        r.handle_frame(&probe.to_frame(CLIENT_MAC, MacAddr::BROADCAST), at(5));
        assert_eq!(drain(&mut r).len(), 1);
    }

    #[test]
    fn a_gain_is_announced_at_once_then_on_the_schedule_then_never() {
        let mut r = responder(AnnounceSchedule::default());
        r.set_owned(&BTreeSet::from([IpAddr::V4(SERVICE_V4)]), at(1000));
        let first = drain(&mut r);
        assert_eq!(first.len(), 2, "a request and a reply");
        let ops: Vec<ArpOperation> = first
            .iter()
            .map(|f| {
                let (eth, arp) = ArpPacket::from_frame(f).unwrap();
                assert_eq!(eth.destination, MacAddr::BROADCAST);
                assert!(arp.is_announcement());
                assert_eq!((arp.sender_mac, arp.sender_ip), (OUR_MAC, SERVICE_V4));
                arp.operation
            })
            .collect();
        assert_eq!(ops, vec![ArpOperation::Request, ArpOperation::Reply]);
        let mut due_at = Vec::new();
        while let Some(due) = r.poll_timeout() {
            r.handle_timeout(due);
            assert_eq!(drain(&mut r).len(), 2);
            due_at.push(ms(due));
        }
        assert_eq!(due_at, vec![1250, 2000, 3000]);
    }

    #[test]
    fn a_refresh_interval_keeps_announcing() {
        let mut r = responder(AnnounceSchedule {
            repeats: vec![Duration::from_millis(100)],
            refresh: Some(Duration::from_secs(5)),
        });
        r.set_owned(&BTreeSet::from([IpAddr::V4(SERVICE_V4)]), at(0));
        let mut due_at = Vec::new();
        for _ in 0..4 {
            let due = r.poll_timeout().unwrap();
            r.handle_timeout(due);
            due_at.push(ms(due));
        }
        assert_eq!(due_at, vec![100, 5100, 10100, 15100]);
    }

    #[test]
    fn a_lost_address_is_answered_no_more_and_not_announced() {
        let mut r = owning(&[SERVICE_V4.into()]);
        r.set_owned(&BTreeSet::new(), at(10));
        r.handle_frame(&who_has(SERVICE_V4), at(11));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn link_down_silences_and_link_up_announces_again() {
        let mut r = owning(&[SERVICE_V4.into()]);
        r.set_link(false, at(10));
        r.handle_frame(&who_has(SERVICE_V4), at(11));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), None);
        r.set_link(true, at(500));
        assert_eq!(drain(&mut r).len(), 2, "announced again at once");
        assert_eq!(
            r.poll_timeout(),
            Some(at(750)),
            "and on the schedule from the link's return"
        );
    }

    #[test]
    fn a_solicitation_for_an_owned_ipv6_address_gets_a_solicited_override_advertisement() {
        let service = v6("2001:db8:100::10");
        let client = v6("2001:db8::99");
        let mut r = owning(&[service.into()]);
        r.handle_frame(&solicit(service, client), at(5));
        let sent = drain(&mut r);
        assert_eq!(sent.len(), 1);
        let na = NdpMessage::from_frame(&sent[0]).unwrap();
        assert_eq!((na.ethernet.source, na.ethernet.destination), (OUR_MAC, CLIENT_MAC));
        assert_eq!((na.ip.source, na.ip.destination), (service, client));
        let NdpMessage::Advertisement(adv) = na.message else {
            panic!("not an advertisement")
        };
        assert!(adv.solicited && adv.override_entry && !adv.router);
        assert_eq!(adv.target, service);
        assert!(adv.options.contains(&NdpOption::TargetLinkLayerAddress(OUR_MAC)));
        r.handle_frame(&solicit(v6("2001:db8:100::11"), client), at(6));
        assert!(drain(&mut r).is_empty());
    }

    #[test]
    fn duplicate_address_detection_is_answered_to_all_nodes() {
        let service = v6("2001:db8:100::10");
        let mut r = owning(&[service.into()]);
        r.handle_frame(&solicit(service, Ipv6Addr::UNSPECIFIED), at(5));
        let sent = drain(&mut r);
        let na = NdpMessage::from_frame(&sent[0]).unwrap();
        assert_eq!(na.ip.destination, v6("ff02::1"));
        let NdpMessage::Advertisement(adv) = na.message else {
            panic!("not an advertisement")
        };
        assert!(!adv.solicited && adv.override_entry);
    }

    #[test]
    fn an_ipv6_gain_sends_an_unsolicited_advertisement() {
        let service = v6("2001:db8:100::10");
        let mut r = responder(AnnounceSchedule::default());
        r.set_owned(&BTreeSet::from([IpAddr::V6(service)]), at(0));
        let sent = drain(&mut r);
        assert_eq!(sent.len(), 1);
        let na = NdpMessage::from_frame(&sent[0]).unwrap();
        assert_eq!(na.ethernet.destination, MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(na.message.target(), service);
    }

    #[test]
    fn a_stall_forgets_ownership_pending_frames_and_timers() {
        let mut unbounded = responder(AnnounceSchedule::default());
        unbounded.set_owned(&BTreeSet::from([IpAddr::V4(SERVICE_V4)]), at(0));
        assert_eq!(unbounded.handle_wake(at(0)), None);
        assert_eq!(unbounded.handle_wake(at(3_600_000)), None, "no bound: no stall");
        assert!(!unbounded.owned().is_empty());
        const STALL_MS: u64 = 185;
        let mut r = responder(AnnounceSchedule::default()).forget_after_stalls(Duration::from_millis(STALL_MS));
        assert_eq!(r.handle_wake(at(0)), None, "the first wake sets the clock");
        r.set_owned(&BTreeSet::from([IpAddr::V4(SERVICE_V4)]), at(0));
        assert_eq!(r.handle_wake(at(100)), None, "a link poll's gap is no stall");
        r.handle_frame(&who_has(SERVICE_V4), at(100));
        assert_eq!(r.handle_wake(at(100 + STALL_MS - 1)), None);
        assert!(!r.owned().is_empty(), "still owned just short of a stall");
        let woke = 100 + STALL_MS - 1 + STALL_MS;
        assert_eq!(r.handle_wake(at(woke)), Some(Duration::from_millis(STALL_MS)));
        assert!(drain(&mut r).is_empty(), "nothing queued before the stall goes out");
        assert_eq!(r.poll_timeout(), None, "no announcement repeat is left");
        assert!(r.owned().is_empty());
        r.handle_frame(&who_has(SERVICE_V4), at(woke + 1));
        assert!(drain(&mut r).is_empty());
    }

    #[test]
    fn our_own_frames_are_ignored() {
        let mut r = owning(&[SERVICE_V4.into()]);
        let ours = ArpPacket::request(OUR_MAC, CLIENT_IP, SERVICE_V4).to_frame(OUR_MAC, MacAddr::BROADCAST);
        r.handle_frame(&ours, at(5));
        assert!(drain(&mut r).is_empty());
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_is_never_answered(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = owning(&[SERVICE_V4.into(), IpAddr::V6(v6("2001:db8:100::10"))]);
            r.handle_frame(&frame, at(1));
            // Only a well-formed question about an owned address is answered.
            for sent in drain(&mut r) {
                let answers_arp = ArpPacket::from_frame(&frame).is_ok_and(|(_, a)| a.target_ip == SERVICE_V4);
                let answers_ns = NdpMessage::from_frame(&frame).is_ok();
                prop_assert!(answers_arp || answers_ns, "answered garbage with {sent:?}");
            }
        }
    }
}
