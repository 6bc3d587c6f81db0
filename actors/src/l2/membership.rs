//! The membership actor: turns the mesh's ownership decision (the set of
//! addresses this node announces, from the gossip driver) into [`Owned`]
//! messages to every service actor, when the decision or the set of
//! services changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, StreamHandler};
use tokio::sync::watch;

use crate::l2::service::{Owned, ServiceActor};
use meshlb_gossip::record::ServiceId;

/// The service actors to tell, by service id.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Services(pub BTreeMap<ServiceId, Addr<ServiceActor>>);

struct Decision(BTreeSet<IpAddr>);

/// The membership actor. See the module documentation.
pub struct MembershipActor {
    announce: Option<watch::Receiver<BTreeSet<IpAddr>>>,
    owned: BTreeSet<IpAddr>,
    services: BTreeMap<ServiceId, Addr<ServiceActor>>,
}

impl MembershipActor {
    /// Follows `announce`, the driver's decision.
    pub fn new(announce: watch::Receiver<BTreeSet<IpAddr>>) -> MembershipActor {
        MembershipActor {
            announce: Some(announce),
            owned: BTreeSet::new(),
            services: BTreeMap::new(),
        }
    }

    fn tell_all(&self) {
        for service in self.services.values() {
            service.do_send(Owned(self.owned.clone()));
        }
    }
}

impl Actor for MembershipActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(announce) = self.announce.take() {
            self.owned = announce.borrow().clone();
            let decisions = futures_util::stream::unfold(announce, |mut rx| async move {
                rx.changed().await.ok()?;
                let set = rx.borrow_and_update().clone();
                Some((Decision(set), rx))
            });
            ctx.add_stream(decisions);
        }
    }
}

impl StreamHandler<Decision> for MembershipActor {
    fn handle(&mut self, decision: Decision, _ctx: &mut Context<Self>) {
        if decision.0 != self.owned {
            tracing::info!(addresses = ?decision.0, "the mesh gives this node");
            self.owned = decision.0;
            self.tell_all();
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The mesh has gone (this node left): nothing is owned any more.
        self.owned.clear();
        self.tell_all();
    }
}

impl Handler<Services> for MembershipActor {
    type Result = ();

    fn handle(&mut self, services: Services, _ctx: &mut Context<Self>) {
        for (id, service) in &services.0 {
            if !self.services.contains_key(id) {
                service.do_send(Owned(self.owned.clone()));
            }
        }
        self.services = services.0;
    }
}
