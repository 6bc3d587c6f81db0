//! The BGP plan: from the running configuration, assignments and health to
//! the peers this node has, each one's session ([`crate::bgp::peering`])
//! and the routes it announces to each. Pure: no sockets, no actors, no
//! clock.
//!
//! MetalLB's rules: a BGPPeer is this node's when its `nodeSelectors`
//! match this node's labels (none: every node). A Service's addresses are
//! announced for every BGPAdvertisement that covers its pool, matches its
//! labels (`serviceSelectors`) and selects this node (`nodeSelectors`),
//! when what both modes require holds ([`crate::eligibility`]: the node not
//! excluded, a ready endpoint anywhere, or here with externalTrafficPolicy
//! Local, a passing health check); to the advertisement's `peers` (none:
//! all of this node's), as the address aggregated to
//! `aggregationLength` / `aggregationLengthV6`, with its LOCAL_PREF and
//! communities (aliases already resolved in the configuration). Every node
//! that may announce does, and the router spreads traffic over them (ECMP).
//!
//! Where several advertisements give one prefix to one peer, the route
//! carries the union of their communities and the highest LOCAL_PREF
//! (MetalLB leaves this case unspecified).
//!
//! A route goes out only once the node accepts traffic for every address
//! it carries ([`PeerPlan::deliverable_routes`]): a router must never send
//! this node packets it would drop.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use meshlb_config::config::{BgpAdvertisement, BgpCommunity, BgpPeer};
use meshlb_config::meta::any_matches;
use meshlb_config::service::{EndpointIndex, ServiceKey};
use meshlb_wire::bgp::{Prefix4, Prefix6};

use crate::bgp::peering::{NodeFacts, NotRunning, SessionPlan, session};
use crate::bgp::rib_out::{RouteAttributes, RoutePrefix, Routes};
use crate::eligibility::{Assigned, Blocker, PlanInput, ThisNode, assigned, eligible, service_blocker};

/// One of this node's peers and what it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPlan {
    /// The peer, as configured.
    pub peer: BgpPeer,
    /// Its session (with its BFD session), or why it cannot run.
    pub session: Result<SessionPlan, NotRunning>,
    /// The routes it should have.
    pub routes: Routes,
    /// The service addresses those routes carry.
    pub addresses: BTreeSet<IpAddr>,
}

impl PeerPlan {
    /// The routes whose every address (of this peer's) is in
    /// `deliverable`.
    pub fn deliverable_routes(&self, deliverable: &BTreeSet<IpAddr>) -> Routes {
        let mut routes = self.routes.clone();
        if routes.is_empty() {
            return routes;
        }
        // The prefix lengths in use, by family: an address's route is its
        // prefix at one of them (one, unless advertisements aggregate
        // differently).
        let lengths: BTreeSet<(bool, u8)> = routes
            .keys()
            .map(|prefix| match prefix {
                RoutePrefix::V4(p) => (false, p.prefix_len()),
                RoutePrefix::V6(p) => (true, p.prefix_len()),
            })
            .collect();
        for address in self.addresses.difference(deliverable) {
            for &(v6, len) in &lengths {
                if v6 == address.is_ipv6()
                    && let Some(prefix) = aggregated(*address, len, len)
                {
                    routes.remove(&prefix);
                }
            }
        }
        routes
    }
}

/// The BGP plan of this node. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpPlan {
    /// This node's peers, by BGPPeer name.
    pub peers: BTreeMap<String, PeerPlan>,
    /// Every Service a BGPAdvertisement covers: `None` when this node
    /// announces it, else why not.
    pub services: BTreeMap<ServiceKey, Option<Blocker>>,
    /// The service addresses this node announces to a peer: the traffic it
    /// must accept.
    pub announced: BTreeSet<IpAddr>,
}

impl BgpPlan {
    /// The addresses announced to the `established` peers (by name) that
    /// the node delivers: what its mesh record says it announces.
    pub fn announcing<'a>(
        &self,
        established: impl IntoIterator<Item = &'a String>,
        deliverable: &BTreeSet<IpAddr>,
    ) -> BTreeSet<IpAddr> {
        established
            .into_iter()
            .filter_map(|name| self.peers.get(name))
            .flat_map(|peer| peer.addresses.iter().copied())
            .filter(|address| deliverable.contains(address))
            .collect()
    }
}

/// `address` aggregated to `v4_len` or `v6_len` bits, by its family.
fn aggregated(address: IpAddr, v4_len: u8, v6_len: u8) -> Option<RoutePrefix> {
    match address {
        IpAddr::V4(a) => Prefix4::new(a, v4_len).ok().map(RoutePrefix::V4),
        IpAddr::V6(a) => Prefix6::new(a, v6_len).ok().map(RoutePrefix::V6),
    }
}

/// Builds the plan of `node`, whose sessions `facts` configure.
pub fn plan(input: PlanInput<'_>, node: ThisNode<'_>, facts: &NodeFacts) -> BgpPlan {
    let config = &input.inventory.config;
    let endpoints = EndpointIndex::new(input.inventory.endpoint_slices.iter().map(AsRef::as_ref));
    let mut out = BgpPlan {
        peers: config
            .bgp_peers
            .values()
            .filter(|peer| any_matches(&peer.node_selectors, node.labels))
            .map(|peer| {
                let plan = PeerPlan {
                    peer: peer.clone(),
                    session: session(peer, &config.bfd_profiles, facts),
                    routes: BTreeMap::new(),
                    addresses: BTreeSet::new(),
                };
                (peer.name.clone(), plan)
            })
            .collect(),
        services: BTreeMap::new(),
        announced: BTreeSet::new(),
    };
    // Each advertisement's attributes, shared by all its routes.
    let advertised: BTreeMap<&str, Arc<RouteAttributes>> = config
        .bgp_advertisements
        .values()
        .map(|advertisement| (advertisement.name.as_str(), Arc::new(attributes_of(advertisement))))
        .collect();
    for Assigned {
        key,
        assignment,
        service,
        pool,
    } in assigned(&input)
    {
        let labels = &service.metadata.labels;
        let covering: Vec<_> = config
            .bgp_advertisements
            .values()
            .filter(|a| a.pools.covers(pool) && any_matches(&a.service_selectors, labels))
            .collect();
        if covering.is_empty() {
            continue;
        }
        let selecting: Vec<_> = covering
            .into_iter()
            .filter(|a| any_matches(&a.node_selectors, node.labels))
            .collect();
        let blocked = if selecting.is_empty() {
            Some(Blocker::NotSelected)
        } else {
            service_blocker(&input, &eligible(&input, &endpoints, key, service), key, &node)
        };
        out.services.insert(key.clone(), blocked);
        if blocked.is_some() {
            continue;
        }
        for advertisement in selecting {
            let Some(attributes) = advertised.get(advertisement.name.as_str()) else {
                continue;
            };
            for address in &assignment.addresses {
                let Some(prefix) = aggregated(
                    *address,
                    advertisement.aggregation_length,
                    advertisement.aggregation_length_v6,
                ) else {
                    continue;
                };
                for (name, peer) in out.peers.iter_mut() {
                    if !advertisement.peers.is_empty() && !advertisement.peers.contains(name) {
                        continue;
                    }
                    match peer.routes.entry(prefix) {
                        Entry::Vacant(entry) => {
                            entry.insert(Arc::clone(attributes));
                        }
                        // Advertisements covering the same prefix: their
                        // attributes merged.
                        Entry::Occupied(mut entry) if entry.get() != attributes => {
                            let route = Arc::make_mut(entry.get_mut());
                            route.local_pref = route.local_pref.max(attributes.local_pref);
                            route.communities.extend(attributes.communities.iter().copied());
                            route
                                .large_communities
                                .extend(attributes.large_communities.iter().copied());
                        }
                        Entry::Occupied(_) => {}
                    }
                    peer.addresses.insert(*address);
                    out.announced.insert(*address);
                }
            }
        }
    }
    out
}

/// The attributes `advertisement` gives its routes.
fn attributes_of(advertisement: &BgpAdvertisement) -> RouteAttributes {
    let mut attributes = RouteAttributes {
        local_pref: advertisement.local_pref,
        ..RouteAttributes::default()
    };
    for community in &advertisement.communities {
        match *community {
            BgpCommunity::Standard(c) => attributes.communities.insert(c),
            BgpCommunity::Large(c) => attributes.large_communities.insert(c),
        };
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::fixture::{State, state};
    use meshlb_config::meta::StringMap;
    use meshlb_wire::bgp::{Community, LargeCommunity};

    fn plan_of(state: &State, name: &str, labels: &StringMap) -> BgpPlan {
        let facts = NodeFacts {
            router_id: Some("198.51.100.10".parse().unwrap()),
            ..NodeFacts::default()
        };
        plan(state.input(), ThisNode::of(name, labels, &state.inventory), &facts)
    }

    fn labels(pairs: &[(&str, &str)]) -> StringMap {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn routes(plan: &BgpPlan, peer: &str) -> Vec<String> {
        plan.peers[peer]
            .routes
            .keys()
            .map(|p| match p {
                RoutePrefix::V4(p) => format!("{}/{}", p.addr(), p.prefix_len()),
                RoutePrefix::V6(p) => format!("{}/{}", p.addr(), p.prefix_len()),
            })
            .collect()
    }

    const CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: public, namespace: metallb-system}
spec: {addresses: [203.0.113.0/28, '2001:db8:100::/124']}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor-a, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 198.51.100.1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor-b, namespace: metallb-system}
spec:
  myASN: 64600
  peerASN: 64600
  peerAddress: 198.51.100.2
  nodeSelectors: [{matchLabels: {rack: b}}]
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: aliases, namespace: metallb-system}
spec:
  communities:
    - {name: no-advertise-here, value: '64600:100'}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: hosts, namespace: metallb-system}
spec:
  ipAddressPools: [public]
  localPref: 100
  communities: [no-advertise-here, 'large:64600:1:2']
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: summary, namespace: metallb-system}
spec:
  ipAddressPools: [public]
  aggregationLength: 28
  aggregationLengthV6: 124
  localPref: 200
  peers: [tor-b]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], ports: [{port: 80}]}
";

    #[test]
    fn peers_follow_their_node_selectors_and_routes_their_advertisements() {
        let state = state(CONFIG);
        let rack_a = plan_of(&state, "node1", &labels(&[("rack", "a")]));
        assert_eq!(rack_a.peers.keys().collect::<Vec<_>>(), ["tor-a"]);
        assert_eq!(routes(&rack_a, "tor-a"), ["203.0.113.0/32", "2001:db8:100::/128"]);
        let route = &rack_a.peers["tor-a"].routes.values().next().unwrap().clone();
        assert_eq!(route.local_pref, Some(100));
        assert_eq!(
            route.communities.iter().copied().collect::<Vec<_>>(),
            [Community((64600 << 16) | 100)]
        );
        assert_eq!(
            route.large_communities.iter().copied().collect::<Vec<_>>(),
            [LargeCommunity {
                global_admin: 64600,
                local_data_1: 1,
                local_data_2: 2
            }]
        );
        let mut shared = rack_a.peers["tor-a"].routes.values();
        let (v4, v6) = (shared.next().unwrap(), shared.next().unwrap());
        assert!(Arc::ptr_eq(v4, v6), "one advertisement's routes share its attributes");
        assert_eq!(rack_a.services.values().copied().collect::<Vec<_>>(), [None]);
        let addresses: Vec<IpAddr> = ["203.0.113.0".parse().unwrap(), "2001:db8:100::".parse().unwrap()].into();
        assert_eq!(rack_a.announced.iter().copied().collect::<Vec<_>>(), addresses);
        assert_eq!(
            rack_a.peers["tor-a"].addresses.iter().copied().collect::<Vec<_>>(),
            addresses
        );

        // tor-b is rack b's, and gets the host routes and the summaries.
        let rack_b = plan_of(&state, "node2", &labels(&[("rack", "b")]));
        assert_eq!(rack_b.peers.keys().collect::<Vec<_>>(), ["tor-a", "tor-b"]);
        assert_eq!(
            routes(&rack_b, "tor-b"),
            [
                "203.0.113.0/28",
                "203.0.113.0/32",
                "2001:db8:100::/124",
                "2001:db8:100::/128"
            ]
        );
        assert_eq!(
            routes(&rack_b, "tor-a"),
            routes(&rack_a, "tor-a"),
            "no summary to tor-a"
        );
        let summary = RoutePrefix::V4(Prefix4::new("203.0.113.0".parse().unwrap(), 28).unwrap());
        assert_eq!(rack_b.peers["tor-b"].routes[&summary].local_pref, Some(200));
    }

    /// A route waits for each of its addresses to be deliverable: a host
    /// route for its one address, a summary for all it carries.
    #[test]
    fn routes_wait_for_every_address_they_carry() {
        let state = state(CONFIG);
        let plan = plan_of(&state, "node2", &labels(&[("rack", "b")]));
        let peer = &plan.peers["tor-b"];
        assert_eq!(peer.addresses.len(), 2);
        let [v4, v6] = [0, 1].map(|i| *peer.addresses.iter().nth(i).unwrap());
        let everything = peer.deliverable_routes(&peer.addresses);
        assert_eq!(everything, peer.routes);
        assert!(peer.deliverable_routes(&BTreeSet::new()).is_empty());
        let only_v4 = peer.deliverable_routes(&[v4].into());
        assert!(!only_v4.is_empty());
        assert!(
            only_v4
                .keys()
                .all(|p| p.family() == meshlb_wire::bgp::Family::IPV4_UNICAST)
        );
        assert_eq!(
            only_v4.len(),
            routes(&plan, "tor-b").iter().filter(|r| !r.contains(':')).count()
        );
        let only_v6 = peer.deliverable_routes(&[v6].into());
        assert!(
            only_v6
                .keys()
                .all(|p| p.family() == meshlb_wire::bgp::Family::IPV6_UNICAST)
        );
        assert_eq!(only_v4.len() + only_v6.len(), peer.routes.len());
    }

    /// The record says an address is announced once an established peer
    /// has it and the node delivers it.
    #[test]
    fn announcing_is_what_established_peers_carry_and_the_node_delivers() {
        let state = state(CONFIG);
        let plan = plan_of(&state, "node2", &labels(&[("rack", "b")]));
        let all = plan.announced.clone();
        assert_eq!(all.len(), 2);
        let tor_a = "tor-a".to_owned();
        assert!(plan.announcing([], &all).is_empty(), "no session established");
        assert_eq!(plan.announcing([&tor_a], &all), all);
        let v4: BTreeSet<IpAddr> = all.iter().filter(|a| a.is_ipv4()).copied().collect();
        assert_eq!(plan.announcing([&tor_a], &v4), v4, "only what is delivered");
        let gone = "tor-gone".to_owned();
        assert!(plan.announcing([&gone], &all).is_empty(), "a peer not planned");
    }

    /// One prefix from two advertisements: communities joined, the higher
    /// LOCAL_PREF.
    #[test]
    fn one_prefix_from_two_advertisements_merges_them() {
        let config = CONFIG
            .replace("aggregationLength: 28", "aggregationLength: 32")
            .replace(
                "aggregationLengthV6: 124",
                "aggregationLengthV6: 128\n  communities: ['65000:1']",
            );
        let state = state(&config);
        let plan = plan_of(&state, "node2", &labels(&[("rack", "b")]));
        let host = RoutePrefix::V4(Prefix4::new("203.0.113.0".parse().unwrap(), 32).unwrap());
        let route = &plan.peers["tor-b"].routes[&host];
        assert_eq!(route.local_pref, Some(200));
        assert_eq!(route.communities.len(), 2, "{route:?}");
        assert_eq!(
            plan.peers["tor-a"].routes[&host].communities.len(),
            1,
            "summary is tor-b's only"
        );
    }

    /// An advertisement's node selectors, the node's exclusion and the
    /// Service's endpoints decide whether this node announces at all; its
    /// peers stay either way.
    #[test]
    fn nodes_not_selected_excluded_or_without_endpoints_announce_nothing() {
        let selective = CONFIG.replace(
            "  ipAddressPools: [public]\n  localPref: 100",
            "  ipAddressPools: [public]\n  nodeSelectors: [{matchLabels: {bgp: 'yes'}}]\n  localPref: 100",
        );
        let selective = selective.replace(
            "  peers: [tor-b]\n",
            "  peers: [tor-b]\n  nodeSelectors: [{matchLabels: {bgp: 'yes'}}]\n",
        );
        let selected = state(&selective);
        let plan = plan_of(&selected, "node1", &labels(&[("rack", "a")]));
        assert!(plan.peers["tor-a"].routes.is_empty());
        assert!(plan.announced.is_empty(), "nothing to accept traffic for");
        assert_eq!(
            plan.services.values().copied().collect::<Vec<_>>(),
            [Some(Blocker::NotSelected)]
        );

        let nodes = "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n  labels: \
                     {node.kubernetes.io/exclude-from-external-load-balancers: ''}\n";
        let excluded = state(&format!("{CONFIG}{nodes}"));
        let plan = plan_of(&excluded, "node1", &StringMap::new());
        assert!(plan.peers["tor-a"].routes.is_empty());
        assert_eq!(
            plan.services.values().copied().collect::<Vec<_>>(),
            [Some(Blocker::NodeExcluded)]
        );

        let local = CONFIG.replace(
            "ipFamilies: [IPv4, IPv6], ports:",
            "ipFamilies: [IPv4, IPv6], externalTrafficPolicy: Local, ports:",
        );
        let slice = "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  \
                     labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n\
                     endpoints: [{addresses: [198.51.100.12], nodeName: node2, conditions: {ready: true}}]\n";
        let local = state(&format!("{local}{slice}"));
        let here = plan_of(&local, "node2", &StringMap::new());
        assert_eq!(routes(&here, "tor-a").len(), 2);
        let elsewhere = plan_of(&local, "node1", &StringMap::new());
        assert_eq!(
            elsewhere.services.values().copied().collect::<Vec<_>>(),
            [Some(Blocker::NoLocalEndpoint)]
        );
        assert!(elsewhere.peers["tor-a"].routes.is_empty());
        assert!(elsewhere.announced.is_empty());
        assert_eq!(here.announced.len(), 2);
    }
}
