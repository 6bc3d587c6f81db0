//! The BGP drain of a node stopping for good: a sans-IO state machine
//! beside the session core ([`crate::bgp::session`]), in its convention
//! (`handle_*` with `now`, `poll_timeout`, and [`Drain::poll_action`] for
//! what the glue must do).
//!
//! A drain first marks this node's routes for a graceful shutdown (RFC
//! 8326: the GRACEFUL_SHUTDOWN community and the lowest LOCAL_PREF, see
//! [`graceful_shutdown`]) and says in its mesh record that it drains; the
//! routers move traffic to the other nodes announcing the same addresses.
//! Once the mesh shows other nodes, neither draining nor leaving,
//! announcing each of its addresses ([`announced_elsewhere`]), or after the
//! drain timeout, it withdraws them; it keeps its sessions and addresses
//! for [`WITHDRAW_LINGER`] while the routers converge, then ceases. So a
//! planned stop loses no traffic.
//!
//! Beside it, what any stop decides ([`Stopping`]: a graceful restart, a
//! drain, or nothing to do) and the addresses any withdrawal keeps
//! delivered while the routers converge ([`Lingering`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlb_gossip::driver::MeshStatus;
use meshlb_wire::bgp::Community;

use crate::bgp::rib_out::{RouteAttributes, Routes};

/// After the withdrawal, how long a draining node keeps its sessions and
/// its addresses, so traffic the routers still send while they converge
/// is answered.
pub const WITHDRAW_LINGER: Duration = Duration::from_secs(1);

/// What the glue must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainAction {
    /// Send every peer its routes marked by [`graceful_shutdown`], and say
    /// in this node's record that it drains.
    Mark,
    /// Withdraw every route: other nodes announce every address
    /// (`covered`), or the drain timed out.
    Withdraw {
        /// Whether other nodes announce every address.
        covered: bool,
    },
    /// The routers have had [`WITHDRAW_LINGER`]: stop the sessions and
    /// let the addresses go.
    Cease,
}

/// Where a drain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Marked; waiting for other nodes to announce every address until
    /// the deadline.
    Waiting { deadline: Instant },
    /// Withdrawn; lingering until then.
    Lingering { until: Instant },
    /// Ceased.
    Ceased,
}

/// One drain. See the module documentation.
#[derive(Debug, Clone)]
pub struct Drain {
    /// This node's name (its own record does not count).
    node: String,
    /// The addresses this node announced when it began.
    addresses: BTreeSet<IpAddr>,
    phase: Phase,
    actions: VecDeque<DrainAction>,
}

impl Drain {
    /// A drain of `node`'s `addresses` beginning at `now`, waiting at most
    /// `timeout` for other nodes to announce them.
    pub fn new(node: impl Into<String>, addresses: BTreeSet<IpAddr>, timeout: Duration, now: Instant) -> Drain {
        Drain {
            node: node.into(),
            addresses,
            phase: Phase::Waiting {
                deadline: now + timeout,
            },
            actions: VecDeque::from([DrainAction::Mark]),
        }
    }

    /// The mesh as it is now: withdraws once other nodes announce every
    /// address.
    pub fn handle_mesh(&mut self, mesh: &MeshStatus, now: Instant) {
        if matches!(self.phase, Phase::Waiting { .. }) && announced_elsewhere(mesh, &self.node, &self.addresses) {
            self.withdraw(true, now);
        }
    }

    /// Time passed: the wait or the linger may be over.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Waiting { deadline } if now >= deadline => self.withdraw(false, now),
            Phase::Lingering { until } if now >= until => {
                self.phase = Phase::Ceased;
                self.actions.push_back(DrainAction::Cease);
            }
            _ => {}
        }
    }

    /// When [`Drain::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { deadline } => Some(deadline),
            Phase::Lingering { until } => Some(until),
            Phase::Ceased => None,
        }
    }

    /// The next thing the glue must do.
    pub fn poll_action(&mut self) -> Option<DrainAction> {
        self.actions.pop_front()
    }

    fn withdraw(&mut self, covered: bool, now: Instant) {
        self.phase = Phase::Lingering {
            until: now + WITHDRAW_LINGER,
        };
        self.actions.push_back(DrainAction::Withdraw { covered });
    }
}

/// How a node stopping leaves its routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopping {
    /// A running peer helps with a graceful restart: the sessions close
    /// without a Cease, and these addresses (every one the plan announces)
    /// stay delivered for the successor.
    ForRestart(BTreeSet<IpAddr>),
    /// These addresses, announced to established peers, are drained
    /// ([`Drain`]).
    Drain(BTreeSet<IpAddr>),
    /// Nothing is announced, or a drain is under way already: stop now.
    Now,
}

impl Stopping {
    /// How to stop: `restarting` if a running peer has graceful restart,
    /// `draining` if a drain is under way, `planned` what the plan
    /// announces, `announcing` what established peers were sent.
    pub fn decide(
        restarting: bool,
        draining: bool,
        planned: &BTreeSet<IpAddr>,
        announcing: BTreeSet<IpAddr>,
    ) -> Stopping {
        if restarting {
            Stopping::ForRestart(planned.clone())
        } else if draining || announcing.is_empty() {
            Stopping::Now
        } else {
            Stopping::Drain(announcing)
        }
    }
}

/// Addresses withdrawn from the routers and still delivered while they
/// converge, so a router never sends this node traffic it would drop.
/// Each withdrawal is released once every peer has queued it and
/// [`WITHDRAW_LINGER`] has passed (the glue's timer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lingering {
    /// Each address by the number of the withdrawal that released it.
    addresses: BTreeMap<IpAddr, u64>,
    /// The number of the last withdrawal.
    withdrawals: u64,
}

impl Lingering {
    /// A withdrawal of the addresses `previous` announced and `next` does
    /// not: its number, to release later (`None`: nothing withdrawn).
    pub fn withdraw(&mut self, previous: &BTreeSet<IpAddr>, next: &BTreeSet<IpAddr>) -> Option<u64> {
        let withdrawn: Vec<IpAddr> = previous.difference(next).copied().collect();
        if withdrawn.is_empty() {
            return None;
        }
        self.withdrawals += 1;
        let withdrawal = self.withdrawals;
        self.addresses.extend(withdrawn.into_iter().map(|a| (a, withdrawal)));
        Some(withdrawal)
    }

    /// The routers have converged on `withdrawal`: its addresses go,
    /// unless a later withdrawal holds them.
    pub fn release(&mut self, withdrawal: u64) {
        self.addresses.retain(|_, w| *w != withdrawal);
    }

    /// What BGP needs delivered: `announced`, and what still lingers.
    pub fn needed(&self, announced: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
        announced.iter().chain(self.addresses.keys()).copied().collect()
    }
}

/// `routes` marked for a graceful shutdown (RFC 8326): the community, and
/// the lowest LOCAL_PREF (sent to iBGP peers only).
pub fn graceful_shutdown(routes: &Routes) -> Routes {
    // Routes that shared attributes share the marked ones.
    let mut marked: BTreeMap<&Arc<RouteAttributes>, Arc<RouteAttributes>> = BTreeMap::new();
    routes
        .iter()
        .map(|(prefix, attributes)| {
            let marked = marked.entry(attributes).or_insert_with(|| {
                let mut attributes = RouteAttributes::clone(attributes);
                attributes.communities.insert(Community::GRACEFUL_SHUTDOWN);
                attributes.local_pref = Some(0);
                Arc::new(attributes)
            });
            (*prefix, Arc::clone(marked))
        })
        .collect()
}

/// Whether every one of `addresses` is announced by a member other than
/// `node` that is neither draining nor leaving.
pub fn announced_elsewhere(mesh: &MeshStatus, node: &str, addresses: &BTreeSet<IpAddr>) -> bool {
    addresses.iter().all(|address| {
        mesh.members.iter().any(|member| {
            member.id.name != node
                && member
                    .record
                    .as_ref()
                    .is_some_and(|r| !r.bgp.draining && !r.ownership.leaving && r.bgp.announcing.contains(address))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib_out::RoutePrefix;
    use meshlb_gossip::identity::NodeId;
    use meshlb_gossip::mesh::MemberView;
    use meshlb_gossip::record::NodeRecord;
    use std::net::SocketAddr;

    fn member(name: &str, last: u8, announcing: &[&str], draining: bool, leaving: bool) -> MemberView {
        let mut record = NodeRecord::new(name, 1);
        record.bgp.announcing = announcing.iter().map(|a| a.parse().unwrap()).collect();
        record.bgp.draining = draining;
        record.ownership.leaving = leaving;
        MemberView {
            id: NodeId::new(name, SocketAddr::from(([192, 0, 2, last], 7947)), 1),
            record: Some(record),
        }
    }

    fn mesh(members: Vec<MemberView>) -> MeshStatus {
        MeshStatus {
            members,
            ..MeshStatus::default()
        }
    }

    const BOTH: [&str; 2] = ["203.0.113.20", "203.0.113.21"];

    fn wanted() -> BTreeSet<IpAddr> {
        BOTH.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// A drain waits for members other than this one, neither draining nor
    /// leaving, to announce each address.
    #[test]
    fn addresses_count_as_announced_elsewhere_only_by_staying_members() {
        let wanted = wanted();
        assert!(!announced_elsewhere(
            &mesh(vec![member("n1", 1, &BOTH, true, false)]),
            "n1",
            &wanted
        ));
        assert!(announced_elsewhere(
            &mesh(vec![
                member("n1", 1, &BOTH, true, false),
                member("n2", 2, &["203.0.113.20"], false, false),
                member("n3", 3, &["203.0.113.21"], false, false),
            ]),
            "n1",
            &wanted
        ));
        assert!(!announced_elsewhere(
            &mesh(vec![
                member("n2", 2, &BOTH, true, false),
                member("n3", 3, &BOTH, false, true),
            ]),
            "n1",
            &wanted
        ));
        assert!(!announced_elsewhere(
            &mesh(vec![member("n2", 2, &["203.0.113.20"], false, false)]),
            "n1",
            &wanted
        ));
    }

    fn actions(drain: &mut Drain) -> Vec<DrainAction> {
        std::iter::from_fn(|| drain.poll_action()).collect()
    }

    /// Marked at once; withdrawn when the others cover every address;
    /// ceased a linger later, not before.
    #[test]
    fn a_drain_withdraws_once_others_announce_and_ceases_after_the_linger() {
        let start = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut drain = Drain::new("n1", wanted(), timeout, start);
        assert_eq!(actions(&mut drain), [DrainAction::Mark]);
        assert_eq!(drain.poll_timeout(), Some(start + timeout));

        let half = mesh(vec![
            member("n1", 1, &BOTH, true, false),
            member("n2", 2, &["203.0.113.20"], false, false),
        ]);
        let at = start + Duration::from_millis(300);
        drain.handle_mesh(&half, at);
        drain.handle_timeout(at);
        assert_eq!(actions(&mut drain), [], "one address is not announced elsewhere yet");

        let covered = mesh(vec![
            member("n1", 1, &BOTH, true, false),
            member("n2", 2, &BOTH, false, false),
        ]);
        let at = start + Duration::from_millis(700);
        drain.handle_mesh(&covered, at);
        assert_eq!(actions(&mut drain), [DrainAction::Withdraw { covered: true }]);
        assert_eq!(drain.poll_timeout(), Some(at + WITHDRAW_LINGER));
        drain.handle_mesh(&covered, at + Duration::from_millis(10));
        drain.handle_timeout(at + WITHDRAW_LINGER - Duration::from_millis(1));
        assert_eq!(actions(&mut drain), [], "withdrawn once, lingering");
        drain.handle_timeout(at + WITHDRAW_LINGER);
        assert_eq!(actions(&mut drain), [DrainAction::Cease]);
        assert_eq!(drain.poll_timeout(), None);
        drain.handle_timeout(at + timeout);
        assert_eq!(actions(&mut drain), []);
    }

    /// Nobody takes over: withdrawn at the timeout anyway; a zero timeout
    /// withdraws at once.
    #[test]
    fn a_drain_nobody_covers_withdraws_at_its_timeout() {
        let start = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut drain = Drain::new("n1", wanted(), timeout, start);
        actions(&mut drain);
        let alone = mesh(vec![member("n1", 1, &BOTH, true, false)]);
        drain.handle_mesh(&alone, start + Duration::from_secs(4));
        drain.handle_timeout(start + Duration::from_secs(4));
        assert_eq!(actions(&mut drain), []);
        drain.handle_timeout(start + timeout);
        assert_eq!(actions(&mut drain), [DrainAction::Withdraw { covered: false }]);
        drain.handle_timeout(start + timeout + WITHDRAW_LINGER);
        assert_eq!(actions(&mut drain), [DrainAction::Cease]);

        let mut at_once = Drain::new("n1", wanted(), Duration::ZERO, start);
        at_once.handle_timeout(start);
        assert_eq!(
            actions(&mut at_once),
            [DrainAction::Mark, DrainAction::Withdraw { covered: false }]
        );
    }

    fn set(addresses: &[&str]) -> BTreeSet<IpAddr> {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_restart_keeps_the_planned_addresses_a_drain_takes_the_announced_ones() {
        let planned = set(&BOTH);
        let announcing = set(&BOTH[..1]);
        assert_eq!(
            Stopping::decide(true, false, &planned, announcing.clone()),
            Stopping::ForRestart(planned.clone())
        );
        assert_eq!(
            Stopping::decide(false, false, &planned, announcing.clone()),
            Stopping::Drain(announcing.clone())
        );
        assert_eq!(Stopping::decide(false, true, &planned, announcing), Stopping::Now);
        assert_eq!(Stopping::decide(false, false, &planned, BTreeSet::new()), Stopping::Now);
    }

    /// A withdrawn address stays needed until its withdrawal is released;
    /// one withdrawn again meanwhile waits for the later release.
    #[test]
    fn withdrawn_addresses_linger_until_their_withdrawal_is_released() {
        let (a, b) = (set(&BOTH[..1]), set(&BOTH[1..]));
        let both = set(&BOTH);
        let mut lingering = Lingering::default();
        assert_eq!(lingering.withdraw(&both, &both), None);
        let first = lingering.withdraw(&both, &b).unwrap();
        assert_eq!(lingering.needed(&b), both, "a lingers");
        // a comes back and goes again before the first release.
        let second = lingering.withdraw(&both, &b).unwrap();
        lingering.release(first);
        assert_eq!(lingering.needed(&b), both, "held by the second withdrawal");
        lingering.release(second);
        assert_eq!(lingering.needed(&b), b);
        let third = lingering.withdraw(&b, &BTreeSet::new()).unwrap();
        assert_eq!(lingering.needed(&BTreeSet::new()), b);
        lingering.release(third);
        assert!(lingering.needed(&BTreeSet::new()).is_empty());
        assert!(a.is_disjoint(&b));
    }

    #[test]
    fn a_graceful_shutdown_marks_every_route() {
        let host = |a: &str| RoutePrefix::V4(meshlb_wire::bgp::Prefix4::new(a.parse().unwrap(), 32).unwrap());
        let (prefix, other) = (host("203.0.113.20"), host("203.0.113.21"));
        let attributes = Arc::new(RouteAttributes {
            local_pref: Some(200),
            communities: [Community(100)].into(),
            ..RouteAttributes::default()
        });
        let routes = BTreeMap::from([(prefix, Arc::clone(&attributes)), (other, attributes)]);
        let marked = graceful_shutdown(&routes);
        assert_eq!(marked[&prefix].local_pref, Some(0));
        assert_eq!(
            marked[&prefix].communities,
            [Community(100), Community::GRACEFUL_SHUTDOWN].into()
        );
        assert!(
            Arc::ptr_eq(&marked[&prefix], &marked[&other]),
            "routes that shared attributes share the marked ones"
        );
    }
}
