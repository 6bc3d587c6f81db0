//! The service actor: one per service announced in Layer 2 mode. It knows
//! the service's addresses and the interfaces they are answered on (with
//! their link state), is told by the membership actor which of the
//! addresses this node owns, and claims exactly those on each interface
//! whose link is up. Stopped, it withdraws every claim.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use actix::{Actor, ActorContext, Context, Handler, Message, Recipient};
use tokio::time::Instant;

use crate::l2::interface::Claim;
use crate::l2::links::Link;
use meshlb_gossip::record::ServiceId;

/// Where a service is answered, and whether each interface's link is up.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Placement {
    /// The service's addresses.
    pub addresses: BTreeSet<IpAddr>,
    /// Interfaces (by name) with their actor and link state.
    pub interfaces: BTreeMap<String, (Recipient<Claim>, Link)>,
}

/// The addresses the mesh gives this node (any service's; the actor keeps
/// its own).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Owned(pub BTreeSet<IpAddr>);

/// Withdraws every claim and stops the actor.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopService;

/// The service actor. See the module documentation.
pub struct ServiceActor {
    id: ServiceId,
    placement: Placement,
    owned: BTreeSet<IpAddr>,
    /// What each interface was last told.
    claimed: BTreeMap<String, BTreeSet<IpAddr>>,
}

impl ServiceActor {
    /// A service actor for service `id`, placed as `placement`.
    pub fn new(id: ServiceId, placement: Placement) -> ServiceActor {
        ServiceActor {
            id,
            placement,
            owned: BTreeSet::new(),
            claimed: BTreeMap::new(),
        }
    }

    fn reconcile(&mut self) {
        let mine: BTreeSet<IpAddr> = self.owned.intersection(&self.placement.addresses).copied().collect();
        for (name, (actor, link)) in &self.placement.interfaces {
            let wanted = if link.is_up() { mine.clone() } else { BTreeSet::new() };
            if self.claimed.get(name) != Some(&wanted) {
                actor.do_send(Claim {
                    service: self.id,
                    addresses: wanted.clone(),
                    sent: Instant::now(),
                });
                self.claimed.insert(name.clone(), wanted);
            }
        }
        // Interfaces no longer in the placement lose their claim.
        let gone: Vec<String> = self
            .claimed
            .keys()
            .filter(|n| !self.placement.interfaces.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.claimed.remove(&name);
        }
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for (actor, _) in self.placement.interfaces.values() {
            actor.do_send(Claim {
                service: self.id,
                addresses: BTreeSet::new(),
                sent: Instant::now(),
            });
        }
    }
}

impl Handler<Placement> for ServiceActor {
    type Result = ();

    fn handle(&mut self, placement: Placement, _ctx: &mut Context<Self>) {
        // Interfaces dropped from the placement are told first.
        for (name, (actor, _)) in &self.placement.interfaces {
            if !placement.interfaces.contains_key(name) {
                actor.do_send(Claim {
                    service: self.id,
                    addresses: BTreeSet::new(),
                    sent: Instant::now(),
                });
            }
        }
        self.placement = placement;
        self.reconcile();
    }
}

impl Handler<StopService> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: StopService, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Owned> for ServiceActor {
    type Result = ();

    fn handle(&mut self, owned: Owned, _ctx: &mut Context<Self>) {
        self.owned = owned.0;
        self.reconcile();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::membership::{MembershipActor, Services};
    use actix::Addr;
    use std::sync::{Arc, Mutex};
    use tokio::sync::watch;

    /// Every claim an interface was sent, in order.
    type ClaimLog = Arc<Mutex<Vec<(ServiceId, BTreeSet<IpAddr>)>>>;

    /// Stands in for an interface actor: records every claim.
    struct Recorder(ClaimLog);

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<Claim> for Recorder {
        type Result = ();
        fn handle(&mut self, claim: Claim, _: &mut Context<Self>) {
            self.0.lock().unwrap().push((claim.service, claim.addresses));
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|s| ip(s)).collect()
    }

    async fn settle() {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    fn recorder() -> (Addr<Recorder>, ClaimLog) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Recorder(Arc::clone(&log)).start(), log)
    }

    #[actix::test]
    async fn claims_follow_ownership_and_link_state() {
        let (eth0, eth0_log) = recorder();
        let (eth1, eth1_log) = recorder();
        let addresses = set(&["203.0.113.10", "2001:db8:100::10"]);
        let placement = |eth1_up: bool| Placement {
            addresses: addresses.clone(),
            interfaces: BTreeMap::from([
                ("eth0".to_owned(), (eth0.clone().recipient(), Link::Up)),
                ("eth1".to_owned(), (eth1.clone().recipient(), Link::from_up(eth1_up))),
            ]),
        };
        let (announce_tx, announce) = watch::channel(BTreeSet::new());
        let membership = MembershipActor::new(announce).start();
        let service = ServiceActor::new(ServiceId(7), placement(false)).start();
        membership.do_send(Services(BTreeMap::from([(ServiceId(7), service.clone())])));
        settle().await;
        assert!(eth0_log.lock().unwrap().iter().all(|(_, a)| a.is_empty()));

        // The mesh gives this node one of the service's addresses and one
        // of another service: only the first is claimed, on the up link.
        announce_tx.send_replace(set(&["203.0.113.10", "198.51.100.99"]));
        settle().await;
        assert_eq!(
            eth0_log.lock().unwrap().last(),
            Some(&(ServiceId(7), set(&["203.0.113.10"])))
        );
        assert!(eth1_log.lock().unwrap().iter().all(|(_, a)| a.is_empty()));

        // eth1 comes up: claimed there too.
        service.do_send(placement(true));
        settle().await;
        assert_eq!(
            eth1_log.lock().unwrap().last(),
            Some(&(ServiceId(7), set(&["203.0.113.10"])))
        );

        // Ownership moves away: both withdrawn.
        announce_tx.send_replace(BTreeSet::new());
        settle().await;
        assert_eq!(eth0_log.lock().unwrap().last(), Some(&(ServiceId(7), BTreeSet::new())));
        assert_eq!(eth1_log.lock().unwrap().last(), Some(&(ServiceId(7), BTreeSet::new())));

        // Stopping the service withdraws too; the mesh going away as well.
        announce_tx.send_replace(set(&["2001:db8:100::10"]));
        settle().await;
        assert_eq!(
            eth0_log.lock().unwrap().last(),
            Some(&(ServiceId(7), set(&["2001:db8:100::10"])))
        );
        service.do_send(StopService);
        settle().await;
        assert_eq!(eth0_log.lock().unwrap().last(), Some(&(ServiceId(7), BTreeSet::new())));
    }

    #[actix::test]
    async fn a_departed_mesh_means_nothing_is_owned() {
        let (eth0, log) = recorder();
        let (announce_tx, announce) = watch::channel(set(&["203.0.113.10"]));
        let membership = MembershipActor::new(announce).start();
        let service = ServiceActor::new(
            ServiceId(1),
            Placement {
                addresses: set(&["203.0.113.10"]),
                interfaces: BTreeMap::from([("eth0".to_owned(), (eth0.recipient(), Link::Up))]),
            },
        )
        .start();
        membership.do_send(Services(BTreeMap::from([(ServiceId(1), service)])));
        settle().await;
        assert_eq!(
            log.lock().unwrap().last(),
            Some(&(ServiceId(1), set(&["203.0.113.10"])))
        );
        drop(announce_tx);
        settle().await;
        assert_eq!(log.lock().unwrap().last(), Some(&(ServiceId(1), BTreeSet::new())));
    }
}
