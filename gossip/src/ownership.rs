//! What ownership is built from, besides where groups go
//! ([`crate::placement`]): candidates and MetalLB's rank, address groups,
//! when a new owner may start, and the quorum fence, so every node computes
//! the same answer without talking to anyone and a minority side goes quiet.
//!
//! - **Rank** ([`rank`]): MetalLB's order, preference weight (highest
//!   first) then `sha256(node + "#" + address)` ascending. The placement
//!   breaks ties with it, and of several claimants keeps the best-ranked,
//!   so all agree on one (a healed partition without fencing).
//! - **Groups** ([`address_groups`]): the i-th IPv4 and the i-th IPv6
//!   address of a service form a group announced by one node (clients may
//!   use either).
//! - **Handover without a gap**: a node still settling (after its start or
//!   a stall it announces nothing while it re-learns the mesh) does not
//!   displace a settled member that announces the address; it becomes the
//!   owner once it has settled and says so. Together with the rule that a
//!   new owner starts only once no other member claims the address
//!   ([`may_start_announcing`]), a revertive handback is break-before-make
//!   by one record's trip instead of silent for a whole settle period.
//! - **Fencing** ([`Fence`]): a node that sees less than a majority of the
//!   reference membership, or has never heard from a majority of the
//!   cluster it expects, does not announce.

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
    /// Still settling: it will announce nothing until it has settled.
    pub settling: bool,
}

/// Who claims each address now: the settled, live members whose gossiped
/// record lists it.
pub type Claimants = BTreeMap<IpAddr, BTreeSet<String>>;

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

/// Whether `node`, the owner of `address` by [`crate::placement::place`], may
/// announce it: it already does, or no other member claims it any more.
/// A new owner waits for the previous one's record to drop the address
/// (members that crashed, left or lost quorum claim nothing here), so two
/// live nodes never answer for it at once.
pub fn may_start_announcing(node: &str, address: IpAddr, announcing_now: bool, claimants: &Claimants) -> bool {
    announcing_now
        || claimants
            .get(&address)
            .is_none_or(|others| others.iter().all(|other| other == node))
}

/// When a node may announce: it must have heard from a majority of the
/// cluster it expects, and see a majority of the reference membership.
///
/// **The expected cluster** (`expected_members`, this node included) is
/// what the node is told, not what it happens to hear: in standalone mode
/// the `--join` seeds or an explicit `--cluster-size`, in Kubernetes mode
/// the nodes the API server lists. Until a node has seen a majority of it
/// live at once it claims nothing, so an agent with the wrong cluster key
/// or a firewalled gossip port (it hears no one and would otherwise be a
/// quorum of one) never answers for addresses the real cluster serves. A
/// single-node cluster is an explicit `expected_members` of 1. Once heard,
/// the expected size, less the members that left gracefully (they said
/// they stop announcing), stays a floor under the reference size: a node
/// never counts itself a majority of fewer members than it was told there
/// are.
///
/// **The reference membership** is every member seen alive, less members
/// that left gracefully and members down for longer than `forget_after`
/// (default 10 minutes): it grows past the expected size when more nodes
/// join than were named, and shrinks back to it as members are lost for
/// good. Fencing applies only while the reference has at least
/// `min_members` members (default 3): with two nodes a majority is both,
/// and fencing would turn every single failure into an outage (a two-node
/// cluster still waits to hear both before it first announces).
#[derive(Debug, Clone)]
pub struct Fence {
    /// Members down for longer than this leave the reference (ms; `None`:
    /// never).
    pub forget_after_ms: Option<u64>,
    /// Smallest reference size at which fencing applies.
    pub min_members: usize,
    /// How many members the cluster is expected to have, this node
    /// included (1: a single-node cluster, or nothing expected; `None`:
    /// not known yet, so no number heard is a majority of it).
    pub expected_members: Option<usize>,
    /// Reference members and when each was last seen alive (ms).
    reference: BTreeMap<String, u64>,
    /// Members that left gracefully and have not been seen since.
    departed: BTreeSet<String>,
    /// Whether a majority of the expected members was once seen live.
    heard_majority: bool,
}

/// What the fence says now, for logs and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FenceStatus {
    /// Members the cluster is expected to have (`None`: not known yet).
    pub expected: Option<usize>,
    /// The reference size quorum is measured against (at least `expected`).
    pub reference: usize,
    /// Live members (this node included) that count towards it.
    pub live: usize,
    /// Whether a majority of the expected members was ever seen at once.
    pub heard_majority: bool,
    /// Whether this node may announce.
    pub quorum: bool,
}

impl std::fmt::Display for FenceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "quorum={} live={} reference={} expected={} heard-majority={}",
            self.quorum,
            self.live,
            self.reference,
            ExpectedSize(self.expected),
            self.heard_majority
        )
    }
}

/// An expected size as text: the number, or `unknown`.
pub struct ExpectedSize(pub Option<usize>);

impl std::fmt::Display for ExpectedSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(members) => write!(f, "{members}"),
            None => f.write_str("unknown"),
        }
    }
}

impl Default for Fence {
    fn default() -> Fence {
        Fence::new(Some(600_000), 3)
    }
}

impl Fence {
    /// A fence with these settings, expecting no one but this node (see
    /// [`Fence::expecting`]).
    pub fn new(forget_after_ms: Option<u64>, min_members: usize) -> Fence {
        Fence {
            forget_after_ms,
            min_members,
            expected_members: Some(1),
            reference: BTreeMap::new(),
            departed: BTreeSet::new(),
            heard_majority: false,
        }
    }

    /// The same fence, expecting a cluster of `members` (this node included).
    pub fn expecting(mut self, members: usize) -> Fence {
        self.expect(members);
        self
    }

    /// Expects a cluster of `members` from now on (this node included):
    /// what it has seen so far stays.
    pub fn expect(&mut self, members: usize) {
        self.expected_members = Some(members.max(1));
    }

    /// The same fence, not knowing the cluster's size yet: it claims
    /// nothing until [`Fence::expect`] says it.
    pub fn size_not_known(mut self) -> Fence {
        self.expected_members = None;
        self
    }

    /// Records the live members (including this node) at time `now_ms`.
    pub fn observe<'a>(&mut self, live: impl IntoIterator<Item = &'a str>, now_ms: u64) {
        let mut count = 0;
        for member in live {
            count += 1;
            self.departed.remove(member);
            self.reference.insert(member.to_string(), now_ms);
        }
        self.heard_majority |= self.expected_members.is_some_and(|expected| count * 2 > expected);
        if let Some(forget) = self.forget_after_ms {
            self.reference.retain(|_, seen| now_ms.saturating_sub(*seen) <= forget);
        }
    }

    /// A member left gracefully: it no longer counts.
    pub fn left(&mut self, member: &str) {
        self.reference.remove(member);
        self.departed.insert(member.to_owned());
    }

    /// The reference membership.
    pub fn reference(&self) -> impl Iterator<Item = &str> {
        self.reference.keys().map(String::as_str)
    }

    /// The reference size quorum is measured against: the reference
    /// membership, or the expected cluster less the members that left if
    /// that is more.
    pub fn size(&self) -> usize {
        let expected = self
            .expected_members
            .map_or(0, |expected| expected.saturating_sub(self.departed.len()));
        self.reference.len().max(expected)
    }

    /// What the fence says of a node seeing `live` members.
    pub fn status<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> FenceStatus {
        let size = self.size();
        let seen = live
            .into_iter()
            .filter(|m| self.reference.contains_key(*m))
            .collect::<BTreeSet<_>>()
            .len();
        FenceStatus {
            expected: self.expected_members,
            reference: size,
            live: seen,
            heard_majority: self.heard_majority,
            quorum: self.heard_majority && (size < self.min_members || seen * 2 > size),
        }
    }

    /// Whether a node seeing `live` members may announce.
    pub fn has_quorum<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> bool {
        self.status(live).quorum
    }
}

/// Candidates and claims for the tests of ownership and placement.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// Unweighted, settled candidates of these names.
    pub(crate) fn nodes(names: &[&str]) -> Vec<Candidate> {
        names
            .iter()
            .map(|n| Candidate {
                node: n.to_string(),
                weight: 0,
                settling: false,
            })
            .collect()
    }

    pub(crate) fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Each address claimed by the node beside it.
    pub(crate) fn claimed(pairs: &[(IpAddr, &str)]) -> Claimants {
        let mut out = Claimants::new();
        for (address, node) in pairs {
            out.entry(*address).or_default().insert(node.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{claimed, ip, nodes};
    use super::*;

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
    }

    #[test]
    fn a_new_owner_waits_until_no_one_else_claims() {
        let address = ip("192.0.2.9");
        let free = Claimants::new();
        assert!(may_start_announcing("a", address, false, &free));
        let by_b = claimed(&[(address, "b")]);
        assert!(!may_start_announcing("a", address, false, &by_b), "b still claims it");
        assert!(may_start_announcing("b", address, false, &by_b));
        let by_both = claimed(&[(address, "a"), (address, "b")]);
        assert!(
            may_start_announcing("a", address, true, &by_both),
            "an owner already announcing keeps on"
        );
        assert!(!may_start_announcing("a", address, false, &by_both));
    }

    #[test]
    fn a_node_that_hears_no_one_of_the_cluster_it_expects_never_has_quorum() {
        // Told of four members, hearing only itself (a wrong key, a
        // firewalled port): no quorum, however long it waits.
        let mut lonely = Fence::default().expecting(4);
        for t in [0, 1_000, 700_000] {
            lonely.observe(["me"], t);
            assert!(!lonely.has_quorum(["me"]), "at {t} ms");
        }
        let status = lonely.status(["me"]);
        assert_eq!((status.expected, status.reference, status.live), (Some(4), 4, 1));
        assert!(!status.heard_majority);
        // Two of four is not a majority either; three is.
        let mut fence = Fence::default().expecting(4);
        fence.observe(["a", "b"], 0);
        assert!(!fence.has_quorum(["a", "b"]));
        fence.observe(["a", "b", "c"], 10);
        assert!(fence.has_quorum(["a", "b", "c"]));
        // The expected size stays a floor: after the others are forgotten
        // the survivor is still one of four.
        fence.observe(["a"], 700_000);
        assert!(!fence.has_quorum(["a"]));
        // A graceful leave lowers the floor: three expected, one killed
        // (still in the reference), one left: the survivor is one of two.
        let mut fence = Fence::default().expecting(3);
        fence.observe(["a", "b", "c"], 0);
        fence.observe(["a", "b"], 10);
        fence.left("b");
        fence.observe(["a"], 20);
        assert!(fence.has_quorum(["a"]), "{}", fence.status(["a"]));
        // A two-node cluster waits to hear both, then does not fence.
        let mut pair = Fence::default().expecting(2);
        pair.observe(["a"], 0);
        assert!(!pair.has_quorum(["a"]), "a single-node cluster is never an accident");
        pair.observe(["a", "b"], 10);
        pair.observe(["a"], 20);
        assert!(pair.has_quorum(["a"]));
        // One expected member: a single-node cluster, said so.
        let mut single = Fence::default().expecting(1);
        single.observe(["a"], 0);
        assert!(single.has_quorum(["a"]));
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

    /// A fence whose cluster size is not known yet (the API server has not
    /// listed the nodes) gives no quorum, however many answer; told the
    /// size, it counts what it saw.
    #[test]
    fn a_cluster_size_told_later_is_counted_from_then() {
        let mut fence = Fence::default().expecting(usize::MAX / 4);
        fence.observe(["a", "b", "c"], 0);
        assert!(!fence.has_quorum(["a", "b", "c"]), "nothing until the size is known");
        fence.expect(4);
        fence.observe(["a", "b", "c"], 10);
        assert!(fence.has_quorum(["a", "b", "c"]));
        assert!(!fence.has_quorum(["a"]), "one of four is no majority");
    }

    #[test]
    fn a_fence_not_told_the_size_claims_nothing_and_says_so() {
        let mut fence = Fence::default().size_not_known();
        fence.observe(["a", "b", "c", "d"], 0);
        let status = fence.status(["a", "b", "c", "d"]);
        assert!(!status.quorum && !status.heard_majority);
        assert_eq!(status.expected, None);
        assert!(status.to_string().contains("expected=unknown"), "{status}");
        fence.expect(5);
        fence.observe(["a", "b", "c"], 1);
        assert!(fence.has_quorum(["a", "b", "c"]), "three of five, once told");
    }
}
