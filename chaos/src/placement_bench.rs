//! The placement benchmark: where several addresses per Service land
//! across node churn, meshlb's placement ([`meshlb_gossip::placement`])
//! against Deckhouse's rule, for docs/benchmarks.md. Pure computation; no
//! lab needed.
//!
//! **Deckhouse's rule** (its `metallb` module, read from its hooks and its
//! speaker patch): the nodes of a class are sorted by
//! `sha256(class + "#" + node)`; address `i` of every Service prefers node
//! `i mod n`; when that node is not available the address goes to MetalLB's
//! choice among the available ones (lowest `sha256(node + "#" + ip)`), and
//! back to the preferred node when it returns. A node's readiness does not
//! count, only its Node object (which sets `n`) and its memberlist
//! membership (which sets availability).
//!
//! **The workload**: `services` Services in one class, Service `i` with
//! `1 + i mod 3` addresses (IPv4, from 198.18.0.0/15), over `nodes` Node
//! objects; then `changes` node changes drawn from a seeded generator: a
//! node fails (its object stays), a failed node returns, a new node joins,
//! a node object is deleted (the object count stays within five of the
//! start). After every change both rules place everything again, meshlb's
//! from the claims of the placement before (as the mesh does), and the
//! benchmark counts the addresses whose announcing node changed, the
//! addresses that had to (those the rule had put on a node that failed or
//! left), the fewest that even the loads when a node comes, the spread
//! of addresses per available node (busiest minus idlest), and the
//! Services with two addresses on one node while there were nodes enough,
//! and times meshlb's placement.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use meshlb_gossip::ownership::{Candidate, Claimants, Failback};
use meshlb_gossip::placement::{Demand, Owners, place};
use meshlb_gossip::record::service_id;
use sha2::{Digest, Sha256};

use crate::bench::Summary;
use crate::random::XorShift;

/// The class the workload's Services belong to (it seeds Deckhouse's node
/// order).
pub const CLASS: &str = "l2-default";

/// A node change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// A node stops answering (its Node object stays).
    Fail,
    /// A failed node answers again.
    Recover,
    /// A new node joins.
    Join,
    /// A Node object is deleted (failed or not).
    Delete,
}

impl Change {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Change::Fail => "a node fails",
            Change::Recover => "a failed node returns",
            Change::Join => "a new node joins",
            Change::Delete => "a node is deleted",
        }
    }
}

/// Totals for one rule over one kind of change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// Changes of this kind.
    pub changes: usize,
    /// Addresses that moved, summed.
    pub moved: usize,
    /// The most that moved in one change.
    pub most: usize,
    /// Addresses that had to move, summed: those the rule had put on the
    /// node that failed or left.
    pub must: usize,
}

impl Moves {
    fn add(&mut self, moved: usize, must: usize) {
        self.changes += 1;
        self.moved += moved;
        self.most = self.most.max(moved);
        self.must += must;
    }

    fn per_change(&self, total: usize) -> f64 {
        if self.changes == 0 {
            0.0
        } else {
            total as f64 / self.changes as f64
        }
    }

    /// Addresses moved per change, on average.
    pub fn mean(&self) -> f64 {
        self.per_change(self.moved)
    }

    /// Addresses that had to move per change, on average.
    pub fn must_mean(&self) -> f64 {
        self.per_change(self.must)
    }
}

/// One rule's results over the churn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleReport {
    /// Moves per kind of change.
    pub moves: BTreeMap<Change, Moves>,
    /// Busiest minus idlest available node, in addresses, averaged over the
    /// states after each change (and the start).
    pub mean_spread: f64,
    /// The largest spread seen.
    pub max_spread: usize,
    /// Services with two addresses on one node while enough nodes were
    /// available, summed over the states.
    pub shared: usize,
}

/// The benchmark's results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Node objects at the start.
    pub nodes: usize,
    /// Services.
    pub services: usize,
    /// Addresses.
    pub addresses: usize,
    /// The fewest moves that even the loads after a node joins or returns
    /// (its even share, `addresses / nodes available`), per kind of change.
    pub even_share: BTreeMap<Change, Moves>,
    /// meshlb, revertive failback (MetalLB's and Deckhouse's behaviour).
    pub meshlb: RuleReport,
    /// meshlb, non-revertive failback.
    pub meshlb_non_revertive: RuleReport,
    /// Deckhouse's rule.
    pub deckhouse: RuleReport,
    /// Time meshlb's placement took per evaluation (every Service, from
    /// the claims before), as each node's mesh runs it.
    pub evaluation: Option<Summary>,
}

/// The workload's addresses, per Service.
pub fn workload(services: usize) -> Vec<Vec<IpAddr>> {
    let mut next = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    (0..services)
        .map(|i| {
            (0..1 + i % 3)
                .map(|_| {
                    next += 1;
                    IpAddr::V4(Ipv4Addr::from(next))
                })
                .collect()
        })
        .collect()
}

fn sha(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Deckhouse's placement: see the module documentation.
pub fn deckhouse(objects: &[String], available: &BTreeSet<String>, services: &[Vec<IpAddr>]) -> Owners {
    let mut order: Vec<&String> = objects.iter().collect();
    order.sort_by_key(|node| sha(&format!("{CLASS}#{node}")));
    let mut owners = Owners::new();
    for addresses in services {
        for (i, address) in addresses.iter().enumerate() {
            let preferred = (!order.is_empty()).then(|| order[i % order.len()]);
            let owner = match preferred {
                Some(node) if available.contains(node) => Some(node.clone()),
                _ => objects
                    .iter()
                    .filter(|n| available.contains(*n))
                    .min_by_key(|n| sha(&format!("{n}#{address}")))
                    .cloned(),
            };
            owners.insert(*address, owner);
        }
    }
    owners
}

/// meshlb's placement from the claims of `before`, every available node a
/// candidate of every Service.
pub fn meshlb(available: &BTreeSet<String>, services: &[Vec<IpAddr>], failback: Failback, before: &Owners) -> Owners {
    let mut claims = Claimants::new();
    for (address, owner) in before {
        if let Some(owner) = owner.as_ref().filter(|o| available.contains(*o)) {
            claims.entry(*address).or_default().insert(owner.clone());
        }
    }
    let candidates: Vec<Candidate> = available
        .iter()
        .map(|node| Candidate {
            node: node.clone(),
            weight: 0,
            settling: false,
        })
        .collect();
    let demands: Vec<Demand<'_>> = services
        .iter()
        .enumerate()
        .map(|(i, addresses)| Demand {
            id: service_id(&format!("bench/svc-{i:04}")),
            addresses,
            candidates: candidates.clone(),
            failback,
        })
        .collect();
    place(&demands, &claims)
}

fn moved(before: &Owners, after: &Owners) -> usize {
    after.iter().filter(|(a, o)| before.get(*a) != Some(*o)).count()
}

/// Spread and Services sharing a node, added to `report`, which has seen
/// `states` states before this one.
fn observe(
    report: &mut RuleReport,
    owners: &Owners,
    available: &BTreeSet<String>,
    services: &[Vec<IpAddr>],
    states: usize,
) {
    let mut load: BTreeMap<&str, usize> = available.iter().map(|n| (n.as_str(), 0)).collect();
    for owner in owners.values().flatten() {
        *load.entry(owner).or_default() += 1;
    }
    let spread = load.values().max().unwrap_or(&0) - load.values().min().unwrap_or(&0);
    report.mean_spread = (report.mean_spread * states as f64 + spread as f64) / (states + 1) as f64;
    report.max_spread = report.max_spread.max(spread);
    report.shared += services
        .iter()
        .filter(|addresses| addresses.len() <= available.len())
        .filter(|addresses| {
            let nodes: BTreeSet<&Option<String>> = addresses.iter().filter_map(|a| owners.get(a)).collect();
            nodes.len() < addresses.len()
        })
        .count();
}

/// The three rules' reports, in the order [`run`] places them.
fn rules_of(report: &mut Report) -> [&mut RuleReport; 3] {
    [
        &mut report.meshlb,
        &mut report.meshlb_non_revertive,
        &mut report.deckhouse,
    ]
}

/// Runs the churn: see the module documentation.
pub fn run(nodes: usize, services: usize, changes: usize, seed: u64) -> Report {
    let services = workload(services);
    let mut objects: Vec<String> = (0..nodes).map(|i| format!("node-{i:03}")).collect();
    let mut available: BTreeSet<String> = objects.iter().cloned().collect();
    let mut next_name = nodes;
    let mut random = XorShift::from_seed(seed);
    let mut report = Report {
        nodes,
        services: services.len(),
        addresses: services.iter().map(Vec::len).sum(),
        ..Report::default()
    };
    let mut states = 0;
    let mut took: Vec<Duration> = Vec::with_capacity(changes);
    // The three rules' placements, in the order of `rules_of`.
    let place_all = |available: &BTreeSet<String>, objects: &[String], before: Option<&[Owners; 3]>| {
        let empty = Owners::new();
        let previous = |i: usize| before.map_or(&empty, |b| &b[i]);
        let started = Instant::now();
        let revertive = meshlb(available, &services, Failback::Revertive, previous(0));
        let took = started.elapsed();
        let sticky = meshlb(available, &services, Failback::NonRevertive, previous(1));
        ([revertive, sticky, deckhouse(objects, available, &services)], took)
    };
    let (mut owners, _) = place_all(&available, &objects, None);
    for (rule, owners) in rules_of(&mut report).into_iter().zip(&owners) {
        observe(rule, owners, &available, &services, states);
    }
    states += 1;
    for _ in 0..changes {
        let failed: Vec<String> = objects.iter().filter(|n| !available.contains(*n)).cloned().collect();
        let pick = |random: &mut XorShift, count: usize| {
            ((random.unit() * count as f64) as usize).min(count.saturating_sub(1))
        };
        let roll = random.unit();
        let change = if roll < 0.35 && available.len() > nodes / 2 {
            Change::Fail
        } else if roll < 0.7 && !failed.is_empty() {
            Change::Recover
        } else if roll < 0.85 && objects.len() < nodes + 5 {
            Change::Join
        } else if objects.len() > nodes.saturating_sub(5).max(2) {
            Change::Delete
        } else {
            Change::Join
        };
        // The node that goes (for the addresses that must move).
        let mut gone: Option<String> = None;
        match change {
            Change::Fail => {
                let live: Vec<String> = available.iter().cloned().collect();
                let node = live[pick(&mut random, live.len())].clone();
                available.remove(&node);
                gone = Some(node);
            }
            Change::Recover => {
                available.insert(failed[pick(&mut random, failed.len())].clone());
            }
            Change::Join => {
                let node = format!("node-{next_name:03}");
                next_name += 1;
                objects.push(node.clone());
                available.insert(node);
            }
            Change::Delete => {
                let node = objects.remove(pick(&mut random, objects.len()));
                if available.remove(&node) {
                    gone = Some(node);
                }
            }
        }
        let on_gone = |owners: &Owners| {
            gone.as_ref()
                .map_or(0, |node| owners.values().filter(|o| o.as_ref() == Some(node)).count())
        };
        let even = match change {
            Change::Recover | Change::Join => report.addresses / available.len().max(1),
            Change::Fail | Change::Delete => 0,
        };
        report.even_share.entry(change).or_default().add(even, even);
        let (next, evaluation) = place_all(&available, &objects, Some(&owners));
        took.push(evaluation);
        for ((rule, before), after) in rules_of(&mut report).into_iter().zip(&owners).zip(&next) {
            rule.moves
                .entry(change)
                .or_default()
                .add(moved(before, after), on_gone(before));
            observe(rule, after, &available, &services, states);
        }
        owners = next;
        states += 1;
    }
    report.evaluation = Summary::of(&took);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deckhouse_puts_address_zero_of_every_service_on_one_node() {
        let objects: Vec<String> = (0..4).map(|i| format!("node-{i}")).collect();
        let available: BTreeSet<String> = objects.iter().cloned().collect();
        let services = workload(30);
        let owners = deckhouse(&objects, &available, &services);
        let firsts: BTreeSet<&Option<String>> = services.iter().map(|s| &owners[&s[0]]).collect();
        assert_eq!(firsts.len(), 1, "Deckhouse's known flaw, which the baseline must keep");
        let seconds: BTreeSet<&Option<String>> = services
            .iter()
            .filter(|s| s.len() > 1)
            .map(|s| &owners[&s[1]])
            .collect();
        assert_eq!(seconds.len(), 1);
        assert_ne!(
            firsts.iter().next(),
            seconds.iter().next(),
            "within a Service, distinct nodes"
        );
    }

    #[test]
    fn a_small_churn_counts_what_each_rule_does() {
        let report = run(16, 60, 30, 7);
        assert_eq!(report.addresses, 60 + 60 / 3 * 3);
        let total = |moves: &BTreeMap<Change, Moves>| moves.values().map(|m| m.changes).sum::<usize>();
        assert_eq!(total(&report.meshlb.moves), 30);
        assert_eq!(total(&report.deckhouse.moves), 30);
        // meshlb moves what must move when a node fails or goes and nothing
        // more (at least eight nodes stay, room for every Service's three),
        // and about what evens the loads when one comes.
        for (kind, moves) in &report.meshlb.moves {
            match kind {
                Change::Fail | Change::Delete => assert_eq!(moves.moved, moves.must, "{kind:?}"),
                Change::Recover | Change::Join => {
                    assert!(moves.moved <= report.even_share[kind].moved + moves.changes, "{kind:?}")
                }
            }
        }
        assert!(report.meshlb.max_spread <= 1, "{:?}", report.meshlb);
        assert!(
            report.deckhouse.max_spread > report.meshlb.max_spread,
            "{:?}",
            report.deckhouse
        );
        assert_eq!(report.meshlb.shared, 0);
    }
}
