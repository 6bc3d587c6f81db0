//! Where every Layer 2 address group is announced: a pure function of the
//! services, the nodes that may serve each, and who announces what now,
//! that every node evaluates alike ([`place`]).
//!
//! A service's addresses form groups ([`address_groups`]: the i-th IPv4
//! and the i-th IPv6 address together); a node's **load** is the number of
//! groups it announces, over every service. The placement:
//!
//! - **keeps** a group where it is announced now while its holder is still
//!   a candidate of the service, holds no other group of the same service,
//!   and (revertive failback) is as preferred as the service's weights ask:
//!   the i-th most preferred of the service's holders must weigh at least
//!   the i-th largest candidate weight, so a preferred node that returns
//!   gets a group back and nothing else moves;
//! - **places** every other group (new, or its holder gone, ineligible or
//!   out-preferred) on a candidate not already holding a group of the same
//!   service, of the highest weight among those, least loaded first, ties
//!   broken by MetalLB's rendezvous rank ([`rank`]: with one service the
//!   owner is the node MetalLB's speakers pick); a group that was announced
//!   goes to a settled node rather than one still settling, while one
//!   exists (a settling node does not displace the announcing one before it
//!   can answer); only when every candidate holds one of its service's
//!   groups does a group share a node;
//! - **rebalances** (revertive failback only) by moving a group from a node
//!   to an equally preferred candidate carrying at least two groups fewer,
//!   until none can move: a node that joins or returns takes groups from
//!   the busiest nodes until loads are even. Non-revertive groups never
//!   move while their holder serves (they still count in the loads).
//!
//! So, with every service able to use every node: loads stay within one
//! group of each other for any number of services (addresses spread across
//! services, not only within one: Deckhouse's rule puts address 0 of every
//! service of a class on the same node), the groups of one service stay on
//! distinct nodes after failures too, a node that fails moves its own groups
//! (each to the least-loaded node without its service) and, revertive,
//! another node's group only where every lightest node already holds one
//! of an orphan's service (at most one per orphan), and a node
//! that joins takes only what evens the loads. Placing what was placed
//! once more changes nothing ([`place`] is a fixed point of its own
//! output), which is what lets every node, reading the others' claims,
//! agree without another round.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::ownership::{Candidate, Claimants, Failback, address_groups, rank, rendezvous_key};
use crate::record::ServiceId;

/// One service to place: its addresses, the nodes that may serve it now
/// (with their preference weight and whether they still settle), and its
/// failback policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand<'a> {
    /// The service (the order services are placed in).
    pub id: ServiceId,
    /// Its addresses, grouped by [`address_groups`].
    pub addresses: &'a [IpAddr],
    /// Nodes that may announce it.
    pub candidates: Vec<Candidate>,
    /// Whether groups move back to rebalance or to a preferred node.
    pub failback: Failback,
}

/// The owner of every address (`None`: no candidate).
pub type Owners = BTreeMap<IpAddr, Option<String>>;

/// A candidate of one service, by node index.
#[derive(Debug, Clone, Copy)]
struct Choice {
    node: usize,
    weight: u32,
    settling: bool,
}

/// One address group being placed.
struct Group {
    service: usize,
    addresses: Vec<IpAddr>,
    /// Announced by someone now (a settled member's claim).
    claimed: bool,
    /// The best-ranked claimant that is a candidate of its service.
    holder: Option<usize>,
    owner: Option<usize>,
}

struct Service {
    options: Vec<Choice>,
    failback: Failback,
    /// Groups of this service each node holds.
    held: BTreeMap<usize, u32>,
    groups: Vec<usize>,
}

impl Service {
    fn option(&self, node: usize) -> Option<Choice> {
        self.options.iter().copied().find(|o| o.node == node)
    }

    fn held(&self, node: usize) -> u32 {
        self.held.get(&node).copied().unwrap_or(0)
    }

    fn take(&mut self, node: usize) {
        *self.held.entry(node).or_default() += 1;
    }

    fn give_up(&mut self, node: usize) {
        if let Some(n) = self.held.get_mut(&node) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Places every group of `demands` given who announces what now
/// (`claimants`). See the module documentation.
pub fn place(demands: &[Demand<'_>], claimants: &Claimants) -> Owners {
    // Nodes by index, so loads and holdings are vectors and maps of ints.
    let names: Vec<&str> = demands
        .iter()
        .flat_map(|d| &d.candidates)
        .map(|c| c.node.as_str())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut order: Vec<&Demand<'_>> = demands.iter().collect();
    order.sort_by_key(|d| d.id);
    let mut services: Vec<Service> = Vec::with_capacity(order.len());
    let mut groups: Vec<Group> = Vec::new();
    for (s, demand) in order.iter().enumerate() {
        let mut options: Vec<Choice> = Vec::with_capacity(demand.candidates.len());
        for c in &demand.candidates {
            if let Some(&node) = index.get(c.node.as_str())
                && options.iter().all(|o| o.node != node)
            {
                options.push(Choice {
                    node,
                    weight: c.weight,
                    settling: c.settling,
                });
            }
        }
        options.sort_by_key(|o| o.node);
        let mut service = Service {
            options,
            failback: demand.failback,
            held: BTreeMap::new(),
            groups: Vec::new(),
        };
        for addresses in address_groups(demand.addresses) {
            let claimers: BTreeSet<&str> = addresses
                .iter()
                .filter_map(|a| claimants.get(a))
                .flatten()
                .map(String::as_str)
                .collect();
            let holding: Vec<Candidate> = demand
                .candidates
                .iter()
                .filter(|c| claimers.contains(c.node.as_str()))
                .cloned()
                .collect();
            let holder = match (holding.len(), addresses.first()) {
                (0, _) | (_, None) => None,
                (1, _) => index.get(holding[0].node.as_str()).copied(),
                (_, Some(first)) => rank(*first, &holding)
                    .first()
                    .and_then(|c| index.get(c.node.as_str()).copied()),
            };
            service.groups.push(groups.len());
            groups.push(Group {
                service: s,
                addresses,
                claimed: !claimers.is_empty(),
                holder,
                owner: None,
            });
        }
        services.push(service);
    }
    let mut load = vec![0u32; names.len()];

    // Keep: groups stay with their holder where the rules allow.
    for service in &mut services {
        let mut kept: Vec<(usize, u32)> = Vec::new();
        for &g in &service.groups {
            let Some(holder) = groups[g].holder else { continue };
            let Some(option) = service.option(holder) else { continue };
            if kept.iter().all(|(k, _)| groups[*k].holder != Some(holder)) {
                kept.push((g, option.weight));
            }
        }
        if service.failback == Failback::Revertive {
            let any_settled = service.options.iter().any(|o| !o.settling);
            let mut wanted: Vec<u32> = service
                .options
                .iter()
                .filter(|o| !any_settled || !o.settling)
                .map(|o| o.weight)
                .collect();
            wanted.sort_unstable_by(|a, b| b.cmp(a));
            // Stable: among equal weights the earlier group keeps first.
            kept.sort_by_key(|k| std::cmp::Reverse(k.1));
            let mut i = 0;
            kept.retain(|(_, weight)| {
                let enough = wanted.get(i).is_none_or(|w| weight >= w);
                i += 1;
                enough
            });
        }
        for (g, _) in kept {
            if let Some(holder) = groups[g].holder {
                groups[g].owner = Some(holder);
                service.take(holder);
                load[holder] += 1;
            }
        }
    }

    // Place: the rest, least loaded first; the groups of services with
    // the fewest nodes left to them first, so that the less constrained
    // fill in around them.
    let mut unplaced: Vec<(usize, usize)> = (0..groups.len())
        .filter(|g| groups[*g].owner.is_none())
        .map(|g| {
            let service = &services[groups[g].service];
            let free = service.options.iter().filter(|o| service.held(o.node) == 0).count();
            (free, g)
        })
        .collect();
    unplaced.sort_unstable();
    for (_, g) in unplaced {
        let service = &services[groups[g].service];
        let Some(first) = groups[g].addresses.first().copied() else {
            continue;
        };
        let any_settled = service.options.iter().any(|o| !o.settling);
        let pool: Vec<Choice> = service
            .options
            .iter()
            .copied()
            .filter(|o| !(groups[g].claimed && any_settled && o.settling))
            .collect();
        // The nodes holding the fewest of its service's groups: none,
        // while there are enough; else (more groups than nodes) where it
        // is announced now if that is one of them.
        let fewest = pool.iter().map(|o| service.held(o.node)).min().unwrap_or(0);
        let free: Vec<Choice> = pool
            .iter()
            .copied()
            .filter(|o| service.held(o.node) == fewest)
            .collect();
        let chosen = match groups[g].holder {
            Some(holder) if fewest > 0 && free.iter().any(|o| o.node == holder) => Some(holder),
            _ => least_loaded(&free, first, &load, &names),
        };
        if let Some(node) = chosen {
            groups[g].owner = Some(node);
            services[groups[g].service].take(node);
            load[node] += 1;
        }
    }

    // Rebalance: from the busiest node that has a group to give, to an
    // equally preferred candidate carrying at least two groups fewer,
    // until none can move. Busiest first, so a node that joins takes from
    // the nodes above the even share and no group moves between the
    // others. Groups placed in this evaluation move first, along a chain
    // of them if need be ([`chain_of_placed`]), since moving them costs
    // nothing; a group that stays where it is announced moves only when no
    // such chain evens the loads. Each step lowers the sum of squared
    // loads, so this ends.
    while let Some(steps) = chain_of_placed(&groups, &services, &load)
        .or_else(|| next_move(&groups, &services, &load, &names).map(|m| vec![m]))
    {
        for (g, to) in steps {
            let Some(from) = groups[g].owner else { continue };
            let service = &mut services[groups[g].service];
            service.give_up(from);
            service.take(to);
            load[from] -= 1;
            load[to] += 1;
            groups[g].owner = Some(to);
        }
    }

    let mut owners = Owners::new();
    for group in groups {
        let owner = group.owner.map(|n| names[n].to_string());
        for address in group.addresses {
            owners.insert(address, owner.clone());
        }
    }
    owners
}

/// Whether a group of `service` announced by `from` may move to `option`:
/// the service is revertive, and `option` as preferred, settled, and
/// holding fewer of the service's groups.
fn may_move(service: &Service, from: usize, option: Choice) -> bool {
    service.failback == Failback::Revertive
        && !option.settling
        && service.option(from).is_some_and(|o| o.weight == option.weight)
        && service.held(option.node) < service.held(from)
}

/// A chain of moves of groups placed in this evaluation (not kept where
/// they are announced) that takes one group off the busiest node it can
/// and puts one on a node at least two groups lighter, the nodes between
/// unchanged: breadth first, over the groups in order.
fn chain_of_placed(groups: &[Group], services: &[Service], load: &[u32]) -> Option<Vec<(usize, usize)>> {
    let lightest = load.iter().copied().min()?;
    let mut sources: Vec<usize> = (0..load.len()).filter(|n| load[*n] >= lightest + 2).collect();
    sources.sort_by(|a, b| load[*b].cmp(&load[*a]).then(a.cmp(b)));
    if sources.is_empty() {
        return None;
    }
    let mut placed_on: Vec<Vec<usize>> = vec![Vec::new(); load.len()];
    for (g, group) in groups.iter().enumerate() {
        if let Some(owner) = group.owner
            && group.holder != Some(owner)
        {
            placed_on[owner].push(g);
        }
    }
    for source in sources {
        // Where each reached node was reached from: (group moved, node).
        let mut reached: Vec<Option<(usize, usize)>> = vec![None; load.len()];
        let mut visited = vec![false; load.len()];
        visited[source] = true;
        let mut queue = std::collections::VecDeque::from([source]);
        while let Some(node) = queue.pop_front() {
            for &g in &placed_on[node] {
                let service = &services[groups[g].service];
                for option in service.options.iter().copied().filter(|o| may_move(service, node, *o)) {
                    if visited[option.node] {
                        continue;
                    }
                    visited[option.node] = true;
                    reached[option.node] = Some((g, node));
                    if load[option.node] + 2 <= load[source] {
                        let mut steps = Vec::new();
                        let mut at = option.node;
                        while let Some((g, from)) = reached[at] {
                            steps.push((g, at));
                            at = from;
                        }
                        steps.reverse();
                        if chain_is_valid(&steps, groups, services) {
                            return Some(steps);
                        }
                        continue;
                    }
                    queue.push_back(option.node);
                }
            }
        }
    }
    None
}

/// Whether the chain's moves, made one after the other, each still keep
/// its service's groups as spread as before (two groups of one service
/// on the chain see each other's move).
fn chain_is_valid(steps: &[(usize, usize)], groups: &[Group], services: &[Service]) -> bool {
    let mut held: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    let count = |held: &BTreeMap<(usize, usize), u32>, s: usize, n: usize| {
        held.get(&(s, n)).copied().unwrap_or_else(|| services[s].held(n))
    };
    for &(g, to) in steps {
        let s = groups[g].service;
        let Some(from) = groups.get(g).and_then(|group| group.owner) else {
            return false;
        };
        // Each group of the chain moves once, from where it is now.
        let (at_from, at_to) = (count(&held, s, from), count(&held, s, to));
        if at_to >= at_from {
            return false;
        }
        held.insert((s, from), at_from - 1);
        held.insert((s, to), at_to + 1);
    }
    true
}

/// How a candidate move ranks (lowest first): whether its group stays
/// where it is announced, its target's load, its target's rendezvous key.
type MovePreference = (bool, u32, [u8; 32]);

/// The next rebalancing move (see [`place`]): a group of the busiest
/// node that can give one, and where it goes.
fn next_move(groups: &[Group], services: &[Service], load: &[u32], names: &[&str]) -> Option<(usize, usize)> {
    let lightest = load.iter().copied().min()?;
    let mut sources: Vec<usize> = (0..load.len()).filter(|n| load[*n] >= lightest + 2).collect();
    sources.sort_by(|a, b| load[*b].cmp(&load[*a]).then(names[*a].cmp(names[*b])));
    for from in sources {
        let mut best: Option<(MovePreference, usize, usize)> = None;
        for (g, group) in groups.iter().enumerate().filter(|(_, group)| group.owner == Some(from)) {
            let service = &services[group.service];
            let Some(first) = group.addresses.first() else {
                continue;
            };
            let targets: Vec<Choice> = service
                .options
                .iter()
                .copied()
                .filter(|o| may_move(service, from, *o) && load[o.node] + 2 <= load[from])
                .collect();
            // A group placed in this evaluation moves for free: prefer it
            // to one that stays where it is announced; then the lightest
            // target; then the group its target ranks best for (MetalLB's
            // rank), so a node that returns tends to get its own back.
            if let Some(to) = least_loaded(&targets, *first, load, names) {
                let key = (group.holder == Some(from), load[to], rendezvous_key(names[to], *first));
                if best.as_ref().is_none_or(|(other, _, _)| key < *other) {
                    best = Some((key, g, to));
                }
            }
        }
        if let Some((_, g, to)) = best {
            return Some((g, to));
        }
    }
    None
}

/// Of `options`, those of the highest weight, then the least loaded, then
/// the best by rendezvous rank for `first` (hashed only on a tie).
fn least_loaded(options: &[Choice], first: IpAddr, load: &[u32], names: &[&str]) -> Option<usize> {
    let weight = options.iter().map(|o| o.weight).max()?;
    let lightest = options
        .iter()
        .filter(|o| o.weight == weight)
        .map(|o| load[o.node])
        .min()?;
    let tied: Vec<usize> = options
        .iter()
        .filter(|o| o.weight == weight && load[o.node] == lightest)
        .map(|o| o.node)
        .collect();
    match tied.as_slice() {
        [only] => Some(*only),
        _ => tied
            .into_iter()
            .min_by_key(|n| (rendezvous_key(names[*n], first), names[*n])),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::ownership::fixture::{claimed, ip, nodes};
    use crate::record::service_id;

    /// What every owner claims once it announces what it owns.
    fn claims_of(owners: &Owners) -> Claimants {
        let mut out = Claimants::new();
        for (address, owner) in owners {
            if let Some(owner) = owner {
                out.entry(*address).or_default().insert(owner.clone());
            }
        }
        out
    }

    fn one(addresses: &[IpAddr], candidates: Vec<Candidate>, failback: Failback, claims: &Claimants) -> Owners {
        place(
            &[Demand {
                id: ServiceId(1),
                addresses,
                candidates,
                failback,
            }],
            claims,
        )
    }

    /// Services `counts[i]` groups each (IPv4 only), addresses numbered
    /// from 198.18.0.0.
    fn addresses_for(counts: &[usize]) -> Vec<Vec<IpAddr>> {
        let mut next = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        counts
            .iter()
            .map(|&count| {
                (0..count)
                    .map(|_| {
                        next += 1;
                        IpAddr::V4(Ipv4Addr::from(next))
                    })
                    .collect()
            })
            .collect()
    }

    fn demands<'a>(addresses: &'a [Vec<IpAddr>], live: &[String], failback: Failback) -> Vec<Demand<'a>> {
        addresses
            .iter()
            .enumerate()
            .map(|(i, addresses)| Demand {
                id: service_id(&format!("ns/svc-{i}")),
                addresses,
                candidates: live
                    .iter()
                    .map(|n| Candidate {
                        node: n.clone(),
                        weight: 0,
                        settling: false,
                    })
                    .collect(),
                failback,
            })
            .collect()
    }

    fn loads(owners: &Owners, live: &[String]) -> BTreeMap<String, usize> {
        let mut out: BTreeMap<String, usize> = live.iter().map(|n| (n.clone(), 0)).collect();
        for owner in owners.values().flatten() {
            *out.entry(owner.clone()).or_default() += 1;
        }
        out
    }

    fn spread(owners: &Owners, live: &[String]) -> usize {
        let loads = loads(owners, live);
        loads.values().max().unwrap_or(&0) - loads.values().min().unwrap_or(&0)
    }

    /// Every service's groups on distinct nodes (IPv4-only services: one
    /// address a group), when it has no more groups than nodes.
    fn distinct(addresses: &[Vec<IpAddr>], owners: &Owners, live: usize) -> Result<(), String> {
        for service in addresses {
            let holders: Vec<&Option<String>> = service.iter().map(|a| &owners[a]).collect();
            let unique: BTreeSet<&Option<String>> = holders.iter().copied().collect();
            if service.len() <= live && unique.len() != holders.len() {
                return Err(format!("{service:?} on {holders:?}"));
            }
        }
        Ok(())
    }

    #[test]
    fn a_dual_stack_pair_stays_together_and_groups_go_to_distinct_nodes() {
        let addresses = [ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1"), ip("2001:db8::2")];
        let owners = one(
            &addresses,
            nodes(&["a", "b", "c"]),
            Failback::Revertive,
            &Claimants::new(),
        );
        assert_eq!(owners[&ip("192.0.2.1")], owners[&ip("2001:db8::1")]);
        assert_eq!(owners[&ip("192.0.2.2")], owners[&ip("2001:db8::2")]);
        assert_ne!(owners[&ip("192.0.2.1")], owners[&ip("192.0.2.2")]);
        // One candidate: everything on it rather than nothing.
        let owners = one(&addresses, nodes(&["a"]), Failback::Revertive, &Claimants::new());
        assert!(owners.values().all(|o| o.as_deref() == Some("a")));
        let none = one(&addresses, Vec::new(), Failback::Revertive, &Claimants::new());
        assert!(none.values().all(Option::is_none));
    }

    #[test]
    fn one_service_goes_where_metallb_puts_it() {
        let all = nodes(&["n1", "n2", "n3", "n4"]);
        for k in 0..50u8 {
            let address = IpAddr::from([192, 0, 2, k]);
            let owners = one(&[address], all.clone(), Failback::Revertive, &Claimants::new());
            assert_eq!(owners[&address].as_deref(), Some(rank(address, &all)[0].node.as_str()));
        }
    }

    #[test]
    fn a_held_address_stays_unless_a_preferred_node_returns_and_failback_is_revertive() {
        let address = ip("192.0.2.9");
        let mut all = nodes(&["n1", "n2", "n3"]);
        let held = claimed(&[(address, "n2")]);
        for failback in [Failback::Revertive, Failback::NonRevertive] {
            let owners = one(&[address], all.clone(), failback, &held);
            assert_eq!(
                owners[&address].as_deref(),
                Some("n2"),
                "{failback:?}: even loads, no move"
            );
        }
        all[0].weight = 50;
        let revertive = one(&[address], all.clone(), Failback::Revertive, &held);
        assert_eq!(revertive[&address].as_deref(), Some("n1"), "back to the preferred node");
        let sticky = one(&[address], all.clone(), Failback::NonRevertive, &held);
        assert_eq!(sticky[&address].as_deref(), Some("n2"), "non-revertive: stays");
        let without: Vec<Candidate> = all.iter().filter(|c| c.node != "n2").cloned().collect();
        let moved = one(&[address], without, Failback::NonRevertive, &held);
        assert_eq!(moved[&address].as_deref(), Some("n1"), "a holder gone does not hold on");
    }

    #[test]
    fn a_preferred_node_takes_one_group_back_and_no_other_moves() {
        let addresses = [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")];
        let mut all = nodes(&["p", "x", "y", "z"]);
        all[0].weight = 100;
        let held = claimed(&[(addresses[0], "x"), (addresses[1], "y"), (addresses[2], "z")]);
        let owners = one(&addresses, all, Failback::Revertive, &held);
        let moved: Vec<&IpAddr> = addresses
            .iter()
            .filter(|a| held[*a].iter().next() != owners[*a].as_ref())
            .collect();
        assert_eq!(moved.len(), 1, "{owners:?}");
        assert_eq!(owners[moved[0]].as_deref(), Some("p"));
    }

    #[test]
    fn a_settling_node_does_not_displace_a_settled_claimant() {
        let address = ip("192.0.2.9");
        let mut all = nodes(&["n1", "n2", "n3"]);
        all[0].weight = 50;
        all[0].settling = true;
        let held = claimed(&[(address, "n2")]);
        let owners = one(&[address], all.clone(), Failback::Revertive, &held);
        assert_eq!(
            owners[&address].as_deref(),
            Some("n2"),
            "kept while the preferred node settles"
        );
        // Its holder gone: a settled node rather than the settling one.
        let owners = one(
            &[address],
            all[..1].iter().chain(&all[2..]).cloned().collect(),
            Failback::Revertive,
            &held,
        );
        assert_eq!(owners[&address].as_deref(), Some("n3"));
        // Unclaimed (a cluster starting): the settling node places too, so
        // the first node to settle does not take everything.
        let owners = one(&[address], all.clone(), Failback::Revertive, &Claimants::new());
        assert_eq!(owners[&address].as_deref(), Some("n1"));
        all[0].settling = false;
        let owners = one(&[address], all, Failback::Revertive, &held);
        assert_eq!(owners[&address].as_deref(), Some("n1"), "settled: preferred again");
    }

    #[test]
    fn two_claimants_resolve_to_the_same_one_everywhere() {
        let all = nodes(&["n1", "n2", "n3", "n4"]);
        for k in 0..50u8 {
            let address = IpAddr::from([192, 0, 2, k]);
            let ranked: Vec<String> = rank(address, &all).iter().map(|c| c.node.clone()).collect();
            // The two worst-ranked both claim it (each side of a healed
            // partition announced it); the better of them keeps it.
            let both = claimed(&[(address, &ranked[2]), (address, &ranked[3])]);
            for failback in [Failback::Revertive, Failback::NonRevertive] {
                let owners = one(&[address], all.clone(), failback, &both);
                assert_eq!(owners[&address].as_deref(), Some(ranked[2].as_str()));
            }
        }
    }

    #[test]
    fn address_zero_of_every_service_does_not_pile_on_one_node() {
        let live: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
        let addresses = addresses_for(&[3; 40]);
        let owners = place(&demands(&addresses, &live, Failback::Revertive), &Claimants::new());
        let firsts: BTreeSet<&Option<String>> = addresses.iter().map(|s| &owners[&s[0]]).collect();
        assert_eq!(firsts.len(), 5, "the first addresses use every node");
        assert!(spread(&owners, &live) <= 1);
    }

    /// A node change in a churn: one fails (or is deleted), one joins (a
    /// new name, or a failed one returning).
    #[derive(Debug, Clone)]
    enum Change {
        Fail(usize),
        Join,
        Return(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0usize..64).prop_map(Change::Fail),
            Just(Change::Join),
            (0usize..64).prop_map(Change::Return),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// From nothing, any number of services of up to as many groups as
        /// nodes: loads within one of each other, every service's groups on
        /// distinct nodes, every group placed, and a fixed point.
        #[test]
        fn loads_are_even_across_services(n in 1usize..9, counts in prop::collection::vec(1usize..9, 0..60)) {
            let live: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let counts: Vec<usize> = counts.into_iter().map(|c| c.min(n)).collect();
            let addresses = addresses_for(&counts);
            let demands = demands(&addresses, &live, Failback::Revertive);
            let owners = place(&demands, &Claimants::new());
            prop_assert!(owners.values().all(Option::is_some));
            prop_assert!(spread(&owners, &live) <= 1, "{:?}", loads(&owners, &live));
            distinct(&addresses, &owners, n).map_err(TestCaseError::fail)?;
            prop_assert_eq!(place(&demands, &claims_of(&owners)), owners);
        }

        /// Across node churn, each change moves only what it must: a failed
        /// node's groups (each to a node without its service), or, when a
        /// node joins, groups onto that node only and no more than evens the
        /// loads (none at all when failback is non-revertive); loads stay
        /// within one (revertive) and groups on distinct nodes.
        #[test]
        fn churn_moves_only_what_it_must(
            n in 2usize..8,
            counts in prop::collection::vec(1usize..4, 1..50),
            changes in prop::collection::vec(change(), 1..12),
            revertive in any::<bool>(),
        ) {
            let failback = if revertive { Failback::Revertive } else { Failback::NonRevertive };
            let mut live: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let mut failed: Vec<String> = Vec::new();
            let mut joined = n;
            let widest = counts.iter().copied().max().unwrap_or(1);
            let addresses = addresses_for(&counts);
            let mut owners = place(&demands(&addresses, &live, failback), &Claimants::new());
            for change in changes {
                let before = owners.clone();
                let left = match change {
                    Change::Fail(i) if live.len() > 2 => {
                        let gone = live.remove(i % live.len());
                        failed.push(gone.clone());
                        Some(gone)
                    }
                    Change::Return(i) if !failed.is_empty() => {
                        live.push(failed.remove(i % failed.len()));
                        None
                    }
                    Change::Join | Change::Return(_) => {
                        live.push(format!("node-{joined}"));
                        joined += 1;
                        None
                    }
                    Change::Fail(_) => continue,
                };
                // The failed node claims nothing any more.
                let mut claims = claims_of(&before);
                for holders in claims.values_mut() {
                    holders.retain(|h| live.contains(h));
                }
                let demands = demands(&addresses, &live, failback);
                owners = place(&demands, &claims);
                let moved: Vec<IpAddr> = before.keys().copied().filter(|a| before[a] != owners[a]).collect();
                match &left {
                    Some(gone) => {
                        let had: Vec<IpAddr> = before.iter().filter(|(_, o)| o.as_ref() == Some(gone)).map(|(a, _)| *a).collect();
                        prop_assert!(had.iter().all(|a| moved.contains(a)), "the failed node's groups move");
                        let others = moved.len() - had.len();
                        if widest == 1 || !revertive {
                            // Every lightest node may take any orphan, or
                            // loads need not be even: nothing else moves.
                            prop_assert_eq!(others, 0, "only the failed node's groups move");
                        } else {
                            // The lightest nodes may all hold one of an
                            // orphan's service, however many nodes there
                            // are: a group of another node moves to even
                            // the loads, at most one per orphan.
                            prop_assert!(others <= had.len(), "{others} others moved for {} orphans", had.len());
                        }
                    }
                    None => {
                        let new = live.last().cloned();
                        // Groups that shared a node with another of their
                        // service: with a node more there may be room.
                        let shared: Vec<&IpAddr> = before
                            .keys()
                            .filter(|a| {
                                addresses.iter().find(|s| s.contains(a)).is_some_and(|s| {
                                    s.iter().filter(|b| before[*b] == before[*a]).count() > 1
                                })
                            })
                            .collect();
                        let took = owners.values().filter(|o| **o == new).count();
                        if !revertive {
                            prop_assert!(moved.iter().all(|a| shared.contains(&a)), "non-revertive: only a shared group moves");
                        } else if shared.is_empty() {
                            prop_assert!(moved.iter().all(|a| owners[a] == new), "moves go to the joining node only");
                            // Not one more than evens it: the newcomer
                            // ends at most level with the busiest.
                            let busiest = loads(&owners, &live).values().max().copied().unwrap_or(0);
                            prop_assert!(took <= busiest, "took {took}, busiest {busiest}");
                        } else {
                            prop_assert!(moved.len() <= took + shared.len(), "{} moved, {took} to the new node, {} shared", moved.len(), shared.len());
                        }
                    }
                }
                if revertive {
                    prop_assert!(spread(&owners, &live) <= 1, "{:?}", loads(&owners, &live));
                }
                distinct(&addresses, &owners, live.len()).map_err(TestCaseError::fail)?;
                prop_assert_eq!(place(&demands, &claims_of(&owners)), owners.clone());
            }
        }

        /// Services each with its own eligible nodes (endpoints, selectors)
        /// and preference weights: every owner is a candidate of its
        /// service, groups are on distinct nodes while there are enough,
        /// revertive groups sit on the most preferred candidates, and the
        /// placement is a fixed point.
        #[test]
        fn owners_follow_eligibility_and_weights(
            n in 1usize..8,
            services in prop::collection::vec((1usize..4, prop::collection::vec((any::<bool>(), 0u32..3), 8)), 1..30),
            revertive in any::<bool>(),
        ) {
            let failback = if revertive { Failback::Revertive } else { Failback::NonRevertive };
            let counts: Vec<usize> = services.iter().map(|(c, _)| *c).collect();
            let addresses = addresses_for(&counts);
            let demands: Vec<Demand<'_>> = addresses
                .iter()
                .zip(&services)
                .enumerate()
                .map(|(i, (addresses, (_, eligibility)))| Demand {
                    id: service_id(&format!("ns/svc-{i}")),
                    addresses,
                    candidates: (0..n)
                        .filter(|k| eligibility[*k].0)
                        .map(|k| Candidate { node: format!("node-{k}"), weight: eligibility[k].1 * 50, settling: false })
                        .collect(),
                    failback,
                })
                .collect();
            let owners = place(&demands, &Claimants::new());
            for demand in &demands {
                let held: Vec<&Option<String>> = demand.addresses.iter().map(|a| &owners[a]).collect();
                if demand.candidates.is_empty() {
                    prop_assert!(held.iter().all(|o| o.is_none()));
                    continue;
                }
                let weight_of = |node: &str| demand.candidates.iter().find(|c| c.node == node).map(|c| c.weight);
                prop_assert!(held.iter().all(|o| o.as_deref().and_then(weight_of).is_some()), "owners are candidates");
                if demand.addresses.len() <= demand.candidates.len() {
                    let unique: BTreeSet<&&Option<String>> = held.iter().collect();
                    prop_assert_eq!(unique.len(), held.len());
                    let mut got: Vec<u32> = held.iter().filter_map(|o| o.as_deref().and_then(weight_of)).collect();
                    let mut best: Vec<u32> = demand.candidates.iter().map(|c| c.weight).collect();
                    got.sort_unstable_by(|a, b| b.cmp(a));
                    best.sort_unstable_by(|a, b| b.cmp(a));
                    best.truncate(got.len());
                    prop_assert_eq!(got, best, "the most preferred candidates");
                }
            }
            prop_assert_eq!(place(&demands, &claims_of(&owners)), owners);
        }
    }
}
