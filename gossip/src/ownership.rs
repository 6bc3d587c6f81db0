//! Who announces each service address: a deterministic function of the
//! live, eligible members, so every node computes the same answer without
//! talking to anyone, plus quorum fencing so a minority side goes quiet.
//!
//! Ranking follows MetalLB, so a mixed MetalLB/meshlb migration picks the
//! same owners: candidates sorted by preference weight (highest first), then
//! by `sha256(node + "#" + address)` ascending (rendezvous hashing: removing
//! a node that does not own an address never moves it; adding one moves only
//! the addresses it now ranks first for).
//!
//! meshlb adds:
//! - **Groups**: the i-th IPv4 and the i-th IPv6 address of a service form a
//!   group announced by one node (clients may use either); the groups of a
//!   service with several addresses per family go to distinct nodes while
//!   there are enough candidates.
//! - **Non-revertive ownership** (MetalLB #704, #561): an address whose
//!   current owner is still a live candidate stays there, instead of moving
//!   back to a better-ranked node that returned.
//! - **Fencing** ([`Fence`]): a node that sees less than a majority of the
//!   reference membership stops announcing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// A node that may announce an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node name.
    pub node: String,
    /// Preference weight (sum of matching preference entries; 0 if none).
    pub weight: u32,
}

/// Whether ownership moves back to a better-ranked node that returns (the
/// L2Policy `failback` setting).
pub use meshlb_config::config::Failback;

/// MetalLB's rendezvous key of a node for an address.
pub fn rendezvous_key(node: &str, address: IpAddr) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update(b"#");
    hasher.update(address.to_string().as_bytes());
    hasher.finalize().into()
}

/// Candidates ranked for `address`: weight descending, then rendezvous key
/// ascending, then name (a tie-break that never happens in practice).
pub fn rank(address: IpAddr, candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut keyed: Vec<(&Candidate, [u8; 32])> = candidates
        .iter()
        .map(|c| (c, rendezvous_key(&c.node, address)))
        .collect();
    keyed.sort_by(|(a, ka), (b, kb)| b.weight.cmp(&a.weight).then(ka.cmp(kb)).then(a.node.cmp(&b.node)));
    keyed.dedup_by(|(a, _), (b, _)| a.node == b.node);
    keyed.into_iter().map(|(c, _)| c).collect()
}

/// Groups a service's addresses: the i-th address of each family together,
/// in the order given.
pub fn address_groups(addresses: &[IpAddr]) -> Vec<Vec<IpAddr>> {
    let v4: Vec<IpAddr> = addresses.iter().copied().filter(IpAddr::is_ipv4).collect();
    let v6: Vec<IpAddr> = addresses.iter().copied().filter(IpAddr::is_ipv6).collect();
    let (first, second) = match addresses.first() {
        Some(IpAddr::V6(_)) => (v6, v4),
        _ => (v4, v6),
    };
    (0..first.len().max(second.len()))
        .map(|i| first.get(i).into_iter().chain(second.get(i)).copied().collect())
        .collect()
}

/// The owner of every address of one service. `current` says who announces
/// each address now (from the members' gossiped claims); it matters only
/// for [`Failback::NonRevertive`]. Addresses with no candidate map to `None`.
pub fn service_owners(
    addresses: &[IpAddr],
    candidates: &[Candidate],
    failback: Failback,
    current: &BTreeMap<IpAddr, String>,
) -> BTreeMap<IpAddr, Option<String>> {
    let mut owners = BTreeMap::new();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for group in address_groups(addresses) {
        let Some(first) = group.first() else { continue };
        let ranked = rank(*first, candidates);
        let sticky = match failback {
            Failback::Revertive => None,
            Failback::NonRevertive => group
                .iter()
                .filter_map(|a| current.get(a))
                .find(|owner| ranked.iter().any(|c| &c.node == *owner) && !used.contains(owner.as_str()))
                .map(String::as_str),
        };
        let chosen = sticky
            .or_else(|| ranked.iter().map(|c| c.node.as_str()).find(|n| !used.contains(n)))
            .or_else(|| ranked.first().map(|c| c.node.as_str()));
        if let Some(node) = chosen {
            used.insert(node);
        }
        for address in group {
            owners.insert(address, chosen.map(String::from));
        }
    }
    owners
}

/// When a node may announce: it must see a majority of the reference
/// membership.
///
/// The reference membership is every member seen alive, less members that
/// left gracefully and members down for longer than `forget_after`. The
/// default (10 minutes) trades safety for availability: a partition longer
/// than that lets the minority side announce again (it logs why), while a
/// node lost for good stops counting against the quorum after 10 minutes.
/// Fencing applies only while the reference has at least `min_members`
/// members (default 3): with two nodes a majority is both, and fencing would
/// turn every single failure into an outage.
#[derive(Debug, Clone)]
pub struct Fence {
    /// Members down for longer than this leave the reference (ms; `None`:
    /// never).
    pub forget_after_ms: Option<u64>,
    /// Smallest reference size at which fencing applies.
    pub min_members: usize,
    /// Reference members and when each was last seen alive (ms).
    reference: BTreeMap<String, u64>,
}

impl Default for Fence {
    fn default() -> Fence {
        Fence {
            forget_after_ms: Some(600_000),
            min_members: 3,
            reference: BTreeMap::new(),
        }
    }
}

impl Fence {
    /// A fence with these settings.
    pub fn new(forget_after_ms: Option<u64>, min_members: usize) -> Fence {
        Fence {
            forget_after_ms,
            min_members,
            reference: BTreeMap::new(),
        }
    }

    /// Records the live members (including this node) at time `now_ms`.
    pub fn observe<'a>(&mut self, live: impl IntoIterator<Item = &'a str>, now_ms: u64) {
        for member in live {
            self.reference.insert(member.to_string(), now_ms);
        }
        if let Some(forget) = self.forget_after_ms {
            self.reference.retain(|_, seen| now_ms.saturating_sub(*seen) <= forget);
        }
    }

    /// A member left gracefully: it no longer counts.
    pub fn left(&mut self, member: &str) {
        self.reference.remove(member);
    }

    /// The reference membership.
    pub fn reference(&self) -> impl Iterator<Item = &str> {
        self.reference.keys().map(String::as_str)
    }

    /// Whether a node seeing `live` members may announce.
    pub fn has_quorum<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> bool {
        let size = self.reference.len();
        if size < self.min_members {
            return true;
        }
        let seen = live
            .into_iter()
            .filter(|m| self.reference.contains_key(*m))
            .collect::<BTreeSet<_>>()
            .len();
        seen * 2 > size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<Candidate> {
        names
            .iter()
            .map(|n| Candidate {
                node: n.to_string(),
                weight: 0,
            })
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rendezvous_key_is_metallbs_sha256_of_node_hash_ip() {
        // sha256("node1#192.0.2.1"), as `printf 'node1#192.0.2.1' | sha256sum` prints it.
        let key = rendezvous_key("node1", ip("192.0.2.1"));
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let expected = std::process::Command::new("sh")
            .args(["-c", "printf 'node1#192.0.2.1' | sha256sum"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap();
        assert_eq!(hex, expected);
    }

    #[test]
    fn removing_a_non_owner_never_moves_an_address() {
        let all = nodes(&["n1", "n2", "n3", "n4", "n5"]);
        for k in 0..200u32 {
            let address = IpAddr::from([192, 0, 2, (k % 250) as u8]);
            let owner = rank(address, &all)[0].node.clone();
            for gone in &all {
                if gone.node == owner {
                    continue;
                }
                let rest: Vec<Candidate> = all.iter().filter(|c| c.node != gone.node).cloned().collect();
                assert_eq!(rank(address, &rest)[0].node, owner);
            }
        }
    }

    #[test]
    fn weights_come_before_hashing() {
        let mut c = nodes(&["n1", "n2", "n3"]);
        let address = ip("192.0.2.7");
        let unweighted_last = rank(address, &c)[2].node.clone();
        for cand in &mut c {
            if cand.node == unweighted_last {
                cand.weight = 50;
            }
        }
        assert_eq!(rank(address, &c)[0].node, unweighted_last);
    }

    #[test]
    fn groups_pair_families_and_spread_over_nodes() {
        let addresses = [ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1"), ip("2001:db8::2")];
        let groups = address_groups(&addresses);
        assert_eq!(
            groups,
            vec![
                vec![ip("192.0.2.1"), ip("2001:db8::1")],
                vec![ip("192.0.2.2"), ip("2001:db8::2")]
            ]
        );
        let owners = service_owners(
            &addresses,
            &nodes(&["a", "b", "c"]),
            Failback::Revertive,
            &BTreeMap::new(),
        );
        assert_eq!(
            owners[&ip("192.0.2.1")],
            owners[&ip("2001:db8::1")],
            "a dual-stack pair stays together"
        );
        assert_ne!(
            owners[&ip("192.0.2.1")],
            owners[&ip("192.0.2.2")],
            "groups go to distinct nodes"
        );
        // One candidate: everything on it rather than nothing.
        let owners = service_owners(&addresses, &nodes(&["a"]), Failback::Revertive, &BTreeMap::new());
        assert!(owners.values().all(|o| o.as_deref() == Some("a")));
        let none = service_owners(&addresses, &[], Failback::Revertive, &BTreeMap::new());
        assert!(none.values().all(Option::is_none));
    }

    #[test]
    fn non_revertive_keeps_the_current_owner() {
        let address = ip("192.0.2.9");
        let all = nodes(&["n1", "n2", "n3"]);
        let best = rank(address, &all)[0].node.clone();
        let other = rank(address, &all)[1].node.clone();
        let current = BTreeMap::from([(address, other.clone())]);
        let revertive = service_owners(&[address], &all, Failback::Revertive, &current);
        assert_eq!(
            revertive[&address].as_deref(),
            Some(best.as_str()),
            "revertive: back to the best"
        );
        let sticky = service_owners(&[address], &all, Failback::NonRevertive, &current);
        assert_eq!(
            sticky[&address].as_deref(),
            Some(other.as_str()),
            "non-revertive: stays"
        );
        let without_other: Vec<Candidate> = all.iter().filter(|c| c.node != other).cloned().collect();
        let moved = service_owners(&[address], &without_other, Failback::NonRevertive, &current);
        assert_eq!(
            moved[&address].as_deref(),
            Some(best.as_str()),
            "a dead owner does not hold on"
        );
    }

    #[test]
    fn fence_needs_a_majority_of_the_reference() {
        let mut fence = Fence::default();
        fence.observe(["n1", "n2", "n3", "n4", "n5"], 0);
        assert!(fence.has_quorum(["n1", "n2", "n3"]));
        assert!(!fence.has_quorum(["n4", "n5"]), "the minority side goes quiet");
        assert!(
            !fence.has_quorum(["n4", "n5", "stranger"]),
            "unknown members do not count"
        );
        fence.left("n1");
        fence.left("n2");
        assert!(fence.has_quorum(["n4", "n5"]), "graceful leaves shrink the reference");
        // Forgetting: members silent for longer than forget_after leave the reference.
        let mut fence = Fence::new(Some(1000), 3);
        fence.observe(["a", "b", "c"], 0);
        fence.observe(["a"], 500);
        assert!(!fence.has_quorum(["a"]));
        fence.observe(["a"], 1501);
        assert!(
            fence.has_quorum(["a"]),
            "a lone survivor announces again after forget_after"
        );
        // Two-node clusters do not fence.
        let mut pair = Fence::default();
        pair.observe(["a", "b"], 0);
        assert!(pair.has_quorum(["a"]));
    }
}
