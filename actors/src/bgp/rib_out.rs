//! The outgoing RIB of one BGP session, pure: the routes this node
//! announces to one peer, and the UPDATEs that take the peer from what it
//! was sent to what it should have. A change sends only what changed:
//! withdrawals for routes gone, announcements for routes new or whose
//! attributes changed, packed so that routes sharing attributes share
//! UPDATEs, each within the 4,096-octet message limit.
//!
//! What the routes are (which service addresses, aggregated how, with
//! which communities and local preference, to which peer) is the BGP
//! policy's, from the BGPAdvertisements; this module turns a wanted table
//! into messages for one session's terms ([`Peering`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use meshlb_wire::bgp::{
    AsPath, Community, Family, LargeCommunity, MAX_MESSAGE_LEN, Message, MpReach, MpUnreach, Origin, PathAttribute,
    Prefix4, Prefix6, SessionParams, Update,
};

/// A route's prefix, either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoutePrefix {
    /// IPv4 unicast.
    V4(Prefix4),
    /// IPv6 unicast.
    V6(Prefix6),
}

impl RoutePrefix {
    /// Its family.
    pub fn family(&self) -> Family {
        match self {
            RoutePrefix::V4(_) => Family::IPV4_UNICAST,
            RoutePrefix::V6(_) => Family::IPV6_UNICAST,
        }
    }
}

/// Routes and their attributes. Routes with the same attributes share one
/// copy of them: a table of ten thousand host routes from one
/// advertisement holds one set of attributes, wherever it is copied.
pub type Routes = BTreeMap<RoutePrefix, Arc<RouteAttributes>>;

/// The attributes a route carries that the policy sets (ORIGIN, AS_PATH
/// and the next hop come from the session).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteAttributes {
    /// LOCAL_PREF, sent on iBGP sessions only (RFC 4271 section 5.1.5).
    pub local_pref: Option<u32>,
    /// COMMUNITIES.
    pub communities: BTreeSet<Community>,
    /// LARGE_COMMUNITY.
    pub large_communities: BTreeSet<LargeCommunity>,
}

/// The terms of one established session that shape its UPDATEs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    /// This side's AS.
    pub local_as: u32,
    /// Whether the peer is in the same AS.
    pub internal: bool,
    /// The families negotiated.
    pub families: Vec<Family>,
    /// How UPDATEs are encoded.
    pub params: SessionParams,
    /// This node's IPv4 next hop on the session, if it has one.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// This node's IPv6 next hop on the session (global, and link-local
    /// where the peer is on-link), if it has one.
    pub next_hop_v6: Option<(Ipv6Addr, Option<Ipv6Addr>)>,
    /// Whether IPv4 routes may take the IPv6 next hop (RFC 8950,
    /// negotiated): used when this node has no IPv4 next hop on the
    /// session, as on an unnumbered one.
    pub ipv4_over_ipv6: bool,
}

impl Peering {
    /// Whether routes of `family` can be sent on this session: negotiated,
    /// and this node has a next hop of that family.
    pub fn carries(&self, family: Family) -> bool {
        self.families.contains(&family)
            && match family {
                Family::IPV4_UNICAST => {
                    self.next_hop_v4.is_some() || (self.ipv4_over_ipv6 && self.next_hop_v6.is_some())
                }
                Family::IPV6_UNICAST => self.next_hop_v6.is_some(),
                _ => false,
            }
    }
}

/// A route that cannot be sent: its attributes alone overflow a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the route {prefix:?} is not sent: its attributes alone exceed a BGP message ({MAX_MESSAGE_LEN} octets)")]
pub struct Unsendable {
    /// The route.
    pub prefix: RoutePrefix,
}

/// What one session's peer has been sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RibOut {
    sent: Routes,
}

impl RibOut {
    /// Nothing sent: a session (re)established starts here.
    pub fn new() -> RibOut {
        RibOut::default()
    }

    /// What the peer has been sent.
    pub fn sent(&self) -> &Routes {
        &self.sent
    }

    /// The UPDATEs that advertise again every route of `family` the peer
    /// was sent: the answer to its route refresh request (RFC 2918). What
    /// was sent stays as it was.
    pub fn readvertise(&self, family: Family, peering: &Peering) -> Vec<Update> {
        let routes: Routes = self
            .sent
            .iter()
            .filter(|(prefix, _)| prefix.family() == family)
            .map(|(prefix, attributes)| (*prefix, Arc::clone(attributes)))
            .collect();
        RibOut::new().updates_to(&routes, peering).0
    }

    /// The UPDATEs that take the peer from what it was sent to `wanted`
    /// (routes of families the session does not carry are left out), and
    /// the routes left unsent because their attributes overflow a message;
    /// what they send is recorded as sent.
    pub fn updates_to(&mut self, wanted: &Routes, peering: &Peering) -> (Vec<Update>, Vec<Unsendable>) {
        let carried = |prefix: &RoutePrefix| peering.carries(prefix.family()) && wanted.contains_key(prefix);
        let withdrawn: Vec<RoutePrefix> = self.sent.keys().filter(|prefix| !carried(prefix)).copied().collect();
        let mut announced: BTreeMap<(&Arc<RouteAttributes>, Family), Vec<RoutePrefix>> = BTreeMap::new();
        for (prefix, attributes) in wanted.iter().filter(|(prefix, _)| peering.carries(prefix.family())) {
            if self.sent.get(prefix) != Some(attributes) {
                announced
                    .entry((attributes, prefix.family()))
                    .or_default()
                    .push(*prefix);
            }
        }

        let mut updates = withdrawals(&withdrawn, peering.params);
        for prefix in &withdrawn {
            self.sent.remove(prefix);
        }
        let mut unsendable = Vec::new();
        for ((attributes, family), prefixes) in announced {
            match announcements(attributes, family, &prefixes, peering) {
                Some(more) => {
                    updates.extend(more);
                    for prefix in prefixes {
                        self.sent.insert(prefix, Arc::clone(attributes));
                    }
                }
                None => unsendable.extend(prefixes.into_iter().map(|prefix| Unsendable { prefix })),
            }
        }
        (updates, unsendable)
    }
}

/// The encoded length of `update`, or more than a message when it cannot
/// be encoded.
fn encoded_len(update: &Update, params: SessionParams) -> usize {
    Message::Update(update.clone())
        .encode(&params)
        .map_or(MAX_MESSAGE_LEN + 1, |bytes| bytes.len())
}

/// Octets a prefix takes in NLRI or withdrawn routes.
fn nlri_len(prefix: &RoutePrefix) -> usize {
    let bits = match prefix {
        RoutePrefix::V4(p) => p.prefix_len(),
        RoutePrefix::V6(p) => p.prefix_len(),
    };
    1 + usize::from(bits).div_ceil(8)
}

/// `prefixes` in runs that each fit in `budget` octets.
fn packed(prefixes: &[RoutePrefix], budget: usize) -> Vec<&[RoutePrefix]> {
    let mut runs = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, prefix) in prefixes.iter().enumerate() {
        let len = nlri_len(prefix);
        if used + len > budget && i > start {
            runs.push(&prefixes[start..i]);
            (start, used) = (i, 0);
        }
        used += len;
    }
    if start < prefixes.len() {
        runs.push(&prefixes[start..]);
    }
    runs
}

/// An attribute's length field grows from one octet to two past 255
/// octets: room kept for it.
const EXTENDED_LENGTH_SLACK: usize = 1;

fn v4s(prefixes: &[RoutePrefix]) -> Vec<Prefix4> {
    prefixes
        .iter()
        .filter_map(|p| match p {
            RoutePrefix::V4(p) => Some(*p),
            RoutePrefix::V6(_) => None,
        })
        .collect()
}

fn v6s(prefixes: &[RoutePrefix]) -> Vec<Prefix6> {
    prefixes
        .iter()
        .filter_map(|p| match p {
            RoutePrefix::V6(p) => Some(*p),
            RoutePrefix::V4(_) => None,
        })
        .collect()
}

/// UPDATEs withdrawing `prefixes`: IPv4 in Withdrawn Routes, IPv6 in
/// MP_UNREACH_NLRI.
fn withdrawals(prefixes: &[RoutePrefix], params: SessionParams) -> Vec<Update> {
    let (v4, v6): (Vec<RoutePrefix>, Vec<RoutePrefix>) = prefixes.iter().partition(|p| matches!(p, RoutePrefix::V4(_)));
    let mut updates = Vec::new();
    let empty = encoded_len(&Update::default(), params);
    for run in packed(&v4, MAX_MESSAGE_LEN - empty) {
        updates.push(Update {
            withdrawn: v4s(run),
            ..Update::default()
        });
    }
    let base = encoded_len(&Update::end_of_rib(Family::IPV6_UNICAST), params);
    for run in packed(&v6, MAX_MESSAGE_LEN - base - EXTENDED_LENGTH_SLACK) {
        updates.push(Update {
            attributes: vec![PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(v6s(run)))],
            ..Update::default()
        });
    }
    updates
}

/// UPDATEs announcing `prefixes` (all of `family`) with `attributes` on
/// `peering`, or None when the attributes alone overflow a message.
fn announcements(
    attributes: &RouteAttributes,
    family: Family,
    prefixes: &[RoutePrefix],
    peering: &Peering,
) -> Option<Vec<Update>> {
    let as_path = if peering.internal {
        AsPath::default()
    } else {
        AsPath::sequence(vec![peering.local_as])
    };
    let common = vec![PathAttribute::Origin(Origin::Igp), PathAttribute::AsPath(as_path)];
    let mut tail = Vec::new();
    if peering.internal
        && let Some(local_pref) = attributes.local_pref
    {
        tail.push(PathAttribute::LocalPref(local_pref));
    }
    if !attributes.communities.is_empty() {
        tail.push(PathAttribute::Communities(
            attributes.communities.iter().copied().collect(),
        ));
    }
    if !attributes.large_communities.is_empty() {
        tail.push(PathAttribute::LargeCommunities(
            attributes.large_communities.iter().copied().collect(),
        ));
    }
    let update = |run: &[RoutePrefix]| -> Option<Update> {
        match family {
            Family::IPV4_UNICAST => {
                let mut all = common.clone();
                let nlri = v4s(run);
                match (peering.next_hop_v4, peering.next_hop_v6) {
                    (Some(next_hop), _) => all.push(PathAttribute::NextHop(next_hop)),
                    (None, Some((next_hop, link_local))) if peering.ipv4_over_ipv6 => {
                        all.push(PathAttribute::MpReach(MpReach::Ipv4UnicastV6NextHop {
                            next_hop,
                            link_local,
                            nlri,
                        }));
                        all.extend(tail.iter().cloned());
                        return Some(Update {
                            attributes: all,
                            ..Update::default()
                        });
                    }
                    _ => return None,
                }
                all.extend(tail.iter().cloned());
                Some(Update {
                    attributes: all,
                    nlri,
                    ..Update::default()
                })
            }
            Family::IPV6_UNICAST => {
                let (next_hop, link_local) = peering.next_hop_v6?;
                let mut all = common.clone();
                all.push(PathAttribute::MpReach(MpReach::Ipv6Unicast {
                    next_hop,
                    link_local,
                    nlri: v6s(run),
                }));
                all.extend(tail.iter().cloned());
                Some(Update {
                    attributes: all,
                    ..Update::default()
                })
            }
            _ => None,
        }
    };
    let base = encoded_len(&update(&[])?, peering.params) + EXTENDED_LENGTH_SLACK;
    if base >= MAX_MESSAGE_LEN {
        return None;
    }
    packed(prefixes, MAX_MESSAGE_LEN - base)
        .into_iter()
        .map(update)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> RoutePrefix {
        let (addr, len) = s.split_once('/').unwrap();
        RoutePrefix::V4(Prefix4::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap())
    }

    fn v6(s: &str) -> RoutePrefix {
        let (addr, len) = s.split_once('/').unwrap();
        RoutePrefix::V6(Prefix6::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap())
    }

    fn peering(internal: bool) -> Peering {
        Peering {
            local_as: 64600,
            internal,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            params: SessionParams::FOUR_OCTET_AS,
            next_hop_v4: Some(Ipv4Addr::new(198, 51, 100, 11)),
            next_hop_v6: Some(("2001:db8::11".parse().unwrap(), None)),
            ipv4_over_ipv6: false,
        }
    }

    /// What a peer holds after applying `updates` to `table`, by decoding
    /// each as it would arrive.
    fn apply(table: &mut BTreeMap<RoutePrefix, Vec<PathAttribute>>, updates: &[Update], params: SessionParams) {
        for update in updates {
            let bytes = Message::Update(update.clone()).encode(&params).unwrap();
            assert!(bytes.len() <= MAX_MESSAGE_LEN);
            let Message::Update(got) = Message::decode(&bytes, &params).unwrap() else {
                panic!("not an UPDATE")
            };
            for p in &got.withdrawn {
                table.remove(&RoutePrefix::V4(*p));
            }
            let plain: Vec<PathAttribute> = got
                .attributes
                .iter()
                .filter(|a| !matches!(a, PathAttribute::MpReach(_) | PathAttribute::MpUnreach(_)))
                .cloned()
                .collect();
            for p in &got.nlri {
                table.insert(RoutePrefix::V4(*p), plain.clone());
            }
            for a in &got.attributes {
                match a {
                    PathAttribute::MpUnreach(MpUnreach::Ipv6Unicast(ps)) => {
                        for p in ps {
                            table.remove(&RoutePrefix::V6(*p));
                        }
                    }
                    PathAttribute::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                        for p in nlri {
                            table.insert(RoutePrefix::V6(*p), plain.clone());
                        }
                    }
                    PathAttribute::MpReach(MpReach::Ipv4UnicastV6NextHop { nlri, .. }) => {
                        for p in nlri {
                            table.insert(RoutePrefix::V4(*p), plain.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn with_communities(communities: &[u32]) -> Arc<RouteAttributes> {
        Arc::new(RouteAttributes {
            communities: communities.iter().map(|c| Community(*c)).collect(),
            ..RouteAttributes::default()
        })
    }

    #[test]
    fn a_change_sends_only_what_changed() {
        let peering = peering(false);
        let mut rib = RibOut::new();
        let mut wanted = BTreeMap::from([
            (v4("203.0.113.10/32"), Arc::default()),
            (v4("203.0.113.11/32"), Arc::default()),
            (v6("2001:db8:100::10/128"), Arc::default()),
        ]);
        let (first, unsendable) = rib.updates_to(&wanted, &peering);
        assert!(unsendable.is_empty());
        assert_eq!(first.len(), 2, "one UPDATE per family: {first:?}");
        let mut peer = BTreeMap::new();
        apply(&mut peer, &first, peering.params);
        assert_eq!(peer.keys().collect::<Vec<_>>(), wanted.keys().collect::<Vec<_>>());
        assert!(
            peer.values()
                .all(|a| a.contains(&PathAttribute::AsPath(AsPath::sequence(vec![64600]))))
        );

        // Nothing changed: nothing sent.
        assert_eq!(rib.updates_to(&wanted, &peering).0, []);

        // One route gone, one new, one with new communities.
        wanted.remove(&v4("203.0.113.11/32"));
        wanted.insert(v4("203.0.113.12/32"), Arc::default());
        wanted.insert(v6("2001:db8:100::10/128"), with_communities(&[0xfde8_0001]));
        let (second, _) = rib.updates_to(&wanted, &peering);
        assert_eq!(second.len(), 3, "a withdrawal and two announcements: {second:?}");
        assert_eq!(
            second[0].withdrawn,
            [Prefix4::new("203.0.113.11".parse().unwrap(), 32).unwrap()]
        );
        apply(&mut peer, &second, peering.params);
        assert_eq!(peer.keys().collect::<Vec<_>>(), wanted.keys().collect::<Vec<_>>());
        assert!(peer[&v6("2001:db8:100::10/128")].contains(&PathAttribute::Communities(vec![Community(0xfde8_0001)])));
        assert_eq!(rib.sent().len(), 3);

        // A route refresh of one family: everything of it as sent, none of
        // the other; what was sent is unchanged.
        let again = rib.readvertise(Family::IPV4_UNICAST, &peering);
        let mut refreshed = BTreeMap::new();
        apply(&mut refreshed, &again, peering.params);
        assert_eq!(
            refreshed.keys().collect::<Vec<_>>(),
            [&v4("203.0.113.10/32"), &v4("203.0.113.12/32")]
        );
        assert!(refreshed.iter().all(|(prefix, attributes)| peer[prefix] == *attributes));
        let v6_again = rib.readvertise(Family::IPV6_UNICAST, &peering);
        apply(&mut refreshed, &v6_again, peering.params);
        assert_eq!(refreshed, peer);
        assert_eq!(rib.updates_to(&wanted, &peering).0, [], "nothing left to send");
    }

    #[test]
    fn local_preference_goes_only_to_internal_peers() {
        let wanted = BTreeMap::from([(
            v4("203.0.113.10/32"),
            Arc::new(RouteAttributes {
                local_pref: Some(150),
                ..RouteAttributes::default()
            }),
        )]);
        for internal in [true, false] {
            let (updates, _) = RibOut::new().updates_to(&wanted, &peering(internal));
            let has = updates[0].attributes.contains(&PathAttribute::LocalPref(150));
            assert_eq!(has, internal);
            let path = AsPath::sequence(if internal { vec![] } else { vec![64600] });
            assert!(updates[0].attributes.contains(&PathAttribute::AsPath(path)));
        }
    }

    /// 10,000 host routes of each family go out in full messages, every one
    /// within the limit, and withdrawing them all takes as few.
    #[test]
    fn large_tables_are_packed_within_the_message_limit() {
        let peering = peering(false);
        let mut wanted = BTreeMap::new();
        for i in 0..10_000u32 {
            let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i);
            wanted.insert(RoutePrefix::V4(Prefix4::host(a)), Arc::default());
            let b = Ipv6Addr::from(u128::from("2001:db8:100::".parse::<Ipv6Addr>().unwrap()) + u128::from(i));
            wanted.insert(RoutePrefix::V6(Prefix6::host(b)), with_communities(&[1, 2, 3]));
        }
        let mut rib = RibOut::new();
        let (updates, _) = rib.updates_to(&wanted, &peering);
        let mut peer = BTreeMap::new();
        apply(&mut peer, &updates, peering.params);
        assert_eq!(peer.len(), 20_000);
        // 5 octets per IPv4 host route, 17 per IPv6: about 800 and 240 per message.
        assert!(
            updates.len() <= 10_000 / 780 + 10_000 / 230 + 2,
            "{} UPDATEs",
            updates.len()
        );

        let (withdrawals, _) = rib.updates_to(&BTreeMap::new(), &peering);
        apply(&mut peer, &withdrawals, peering.params);
        assert!(peer.is_empty());
        assert!(
            withdrawals.len() <= 10_000 / 800 + 10_000 / 235 + 2,
            "{} UPDATEs",
            withdrawals.len()
        );
        assert!(rib.sent().is_empty());
    }

    /// On an unnumbered session (no IPv4 address, the link-local IPv6 one
    /// only) IPv4 routes go with the IPv6 next hop in MP_REACH_NLRI once
    /// RFC 8950 is negotiated, and are not carried otherwise.
    #[test]
    fn unnumbered_sessions_send_ipv4_routes_with_the_link_local_next_hop() {
        let link_local: Ipv6Addr = "fe80::11".parse().unwrap();
        let mut peering = Peering {
            next_hop_v4: None,
            next_hop_v6: Some((link_local, Some(link_local))),
            ipv4_over_ipv6: true,
            ..peering(false)
        };
        let wanted = BTreeMap::from([
            (v4("203.0.113.10/32"), with_communities(&[0xfde8_0001])),
            (v6("2001:db8:100::10/128"), Arc::default()),
        ]);
        let mut rib = RibOut::new();
        let (updates, unsendable) = rib.updates_to(&wanted, &peering);
        assert!(unsendable.is_empty());
        let v4_update = updates
            .iter()
            .find(|u| u.mp_reach().map(|m| m.family()) == Some(Family::IPV4_UNICAST))
            .expect("IPv4 in MP_REACH_NLRI");
        assert!(
            v4_update.nlri.is_empty()
                && !v4_update
                    .attributes
                    .iter()
                    .any(|a| matches!(a, PathAttribute::NextHop(_)))
        );
        assert_eq!(
            v4_update.mp_reach(),
            Some(&MpReach::Ipv4UnicastV6NextHop {
                next_hop: link_local,
                link_local: Some(link_local),
                nlri: vec![Prefix4::new("203.0.113.10".parse().unwrap(), 32).unwrap()],
            })
        );
        let mut peer = BTreeMap::new();
        apply(&mut peer, &updates, peering.params);
        assert_eq!(peer.keys().collect::<Vec<_>>(), wanted.keys().collect::<Vec<_>>());
        assert!(peer[&v4("203.0.113.10/32")].contains(&PathAttribute::Communities(vec![Community(0xfde8_0001)])));

        // Gone: withdrawn.
        let (updates, _) = rib.updates_to(&BTreeMap::new(), &peering);
        apply(&mut peer, &updates, peering.params);
        assert!(peer.is_empty());

        // Without the capability, IPv4 has no next hop on this session.
        peering.ipv4_over_ipv6 = false;
        assert!(!peering.carries(Family::IPV4_UNICAST));
        let (updates, _) = RibOut::new().updates_to(&wanted, &peering);
        assert!(
            updates
                .iter()
                .all(|u| u.nlri.is_empty() && u.mp_reach().map(|m| m.family()) != Some(Family::IPV4_UNICAST))
        );
    }

    /// Families the session does not carry are left out (and withdrawn if
    /// they were sent); attributes too large for any message are reported.
    #[test]
    fn uncarried_families_and_oversized_attributes_are_left_out() {
        let mut peering = peering(false);
        let wanted = BTreeMap::from([
            (v4("203.0.113.10/32"), Arc::default()),
            (v6("2001:db8:100::10/128"), Arc::default()),
        ]);
        let mut rib = RibOut::new();
        rib.updates_to(&wanted, &peering);
        peering.next_hop_v6 = None;
        let (updates, _) = rib.updates_to(&wanted, &peering);
        let mut peer = BTreeMap::from([(v6("2001:db8:100::10/128"), vec![])]);
        apply(&mut peer, &updates, peering.params);
        assert!(peer.is_empty(), "the IPv6 route is withdrawn");

        let huge = with_communities(&(0..1100).collect::<Vec<_>>());
        let (updates, unsendable) =
            RibOut::new().updates_to(&BTreeMap::from([(v4("203.0.113.20/32"), huge)]), &peering);
        assert!(updates.is_empty());
        assert_eq!(
            unsendable,
            [Unsendable {
                prefix: v4("203.0.113.20/32")
            }]
        );
    }
}
