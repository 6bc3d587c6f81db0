//! The Layer 2 applier: the one actor between the Layer 2 plan and the
//! wire. It runs on the answering arbiter, beside the interface actors, and
//! follows two inputs: the plan ([`Apply`], made by the agent's glue off
//! this thread) and the mesh's ownership decision (the addresses this node
//! announces, the gossip driver's watch). On either change every interface
//! is given its whole address set, [`L2Plan::interfaces_for`] (the owned
//! addresses of the services planned on it, if its link is up), and only
//! the sets that changed are sent ([`changes`], pure).
//!
//! Every interface the plan names is opened at once, before anything is
//! owned there, so a takeover never waits for a socket. How an interface
//! is opened is the caller's ([`OpenInterface`]): interface actors in the
//! agent, recorders in tests. One that cannot be opened is tried again
//! with each plan that follows.
//!
//! An interface that stalled asks for its set anew ([`Resync`]). The
//! applier sends it nothing more until the mesh has read the clock and
//! decided ([`Command::Evaluate`]): the mesh runs on the same thread, and
//! what it published before the stall may still be on its way here. Then
//! the interface gets its set from the newest decision, marked as the
//! answer to its stall.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{
    Actor, ActorContext, ActorFutureExt as _, Addr, AsyncContext, Context, Handler, Message, Recipient, ResponseFuture,
    StreamHandler, WrapFuture as _,
};
use futures_util::StreamExt as _;
use meshlb_gossip::driver::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::WatchStream;

use crate::l2::interface::{Answer, Shutdown};
use crate::l2::plan::L2Plan;

/// What the applier sends an interface: its address sets, and at the end
/// a shutdown it awaits. An [`crate::l2::interface::InterfaceActor`]'s
/// address converts into one.
#[derive(Debug, Clone)]
pub struct InterfaceHandle {
    /// Takes the interface's whole address set.
    pub answer: Recipient<Answer>,
    /// Stops it; answered once it is quiet.
    pub shutdown: Recipient<Shutdown>,
}

impl<A> From<Addr<A>> for InterfaceHandle
where
    A: Actor + Handler<Answer> + Handler<Shutdown>,
    A::Context: ToEnvelope<A, Answer> + ToEnvelope<A, Shutdown>,
{
    /// An interface actor's handle (or a stand-in's).
    fn from(actor: Addr<A>) -> InterfaceHandle {
        InterfaceHandle {
            answer: actor.clone().recipient(),
            shutdown: actor.recipient(),
        }
    }
}

/// Opens the interface of a name on the applier's thread, given where it
/// asks for its set after a stall (`None`: it could not be, and the opener
/// has said why).
pub type OpenInterface = Box<dyn FnMut(&str, Recipient<Resync>) -> Option<InterfaceHandle> + Send>;

/// An interface stalled (its `stall`th): it takes no set until the answer
/// to this, decided by the mesh after the stall.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Resync {
    /// The interface's name.
    pub interface: String,
    /// Which of its stalls.
    pub stall: u64,
}

/// The new plan to apply.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Apply(pub Arc<L2Plan>);

/// Silences and stops every interface, then the applier; answered once
/// every interface is quiet.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// What each interface must be sent to answer for `wanted`, given what it
/// was last sent (`told`, updated): the interfaces whose set changed, an
/// interface `wanted` leaves out being sent the empty set.
pub fn changes(
    told: &mut BTreeMap<String, BTreeSet<IpAddr>>,
    mut wanted: BTreeMap<String, BTreeSet<IpAddr>>,
) -> Vec<(String, BTreeSet<IpAddr>)> {
    let names: BTreeSet<String> = told.keys().chain(wanted.keys()).cloned().collect();
    let mut out = Vec::new();
    for name in names {
        let before = told.remove(&name).unwrap_or_default();
        let now = wanted.remove(&name).unwrap_or_default();
        if now != before {
            out.push((name.clone(), now.clone()));
        }
        if !now.is_empty() {
            told.insert(name, now);
        }
    }
    out
}

/// The ownership decision changed.
struct Owned(BTreeSet<IpAddr>);

/// The Layer 2 applier. See the module documentation.
pub struct Layer2Applier {
    /// The mesh's decision: followed as a stream, and its newest read when
    /// a resync is answered.
    latest: watch::Receiver<BTreeSet<IpAddr>>,
    /// Where the mesh is asked to decide after an interface's stall.
    mesh: mpsc::Sender<Command>,
    /// Interfaces waiting for a decision after their stall: the stall's
    /// number, and the request to the mesh that answers it.
    resyncing: BTreeMap<String, (u64, u64)>,
    /// Requests made to the mesh.
    requests: u64,
    plan: Arc<L2Plan>,
    owned: BTreeSet<IpAddr>,
    open: OpenInterface,
    interfaces: BTreeMap<String, InterfaceHandle>,
    /// What each open interface was last sent (non-empty sets only).
    told: BTreeMap<String, BTreeSet<IpAddr>>,
}

impl Layer2Applier {
    /// An applier following `owned` (the decision of the mesh that takes
    /// `mesh`'s commands), opening interfaces with `open`; it applies
    /// nothing until the first plan.
    pub fn new(
        owned: watch::Receiver<BTreeSet<IpAddr>>,
        mesh: mpsc::Sender<Command>,
        open: OpenInterface,
    ) -> Layer2Applier {
        Layer2Applier {
            latest: owned,
            mesh,
            resyncing: BTreeMap::new(),
            requests: 0,
            plan: Arc::default(),
            owned: BTreeSet::new(),
            open,
            interfaces: BTreeMap::new(),
            told: BTreeMap::new(),
        }
    }

    /// Opens what the plan names, then sends each interface its new set
    /// (those waiting for a resync excepted).
    fn apply(&mut self, ctx: &mut Context<Self>) {
        for name in self.plan.links.keys() {
            if !self.interfaces.contains_key(name)
                && let Some(handle) = (self.open)(name, ctx.address().recipient())
            {
                self.interfaces.insert(name.clone(), handle);
            }
        }
        let mut wanted = self.plan.interfaces_for(&self.owned);
        wanted.retain(|name, _| self.interfaces.contains_key(name) && !self.resyncing.contains_key(name));
        for (name, addresses) in changes(&mut self.told, wanted) {
            if let Some(interface) = self.interfaces.get(&name) {
                tracing::debug!(interface = name, ?addresses, "answering");
                interface.answer.do_send(Answer {
                    addresses,
                    resync: None,
                });
            }
        }
    }

    /// The mesh has decided after `request`: every interface that request
    /// covers gets its set from the newest decision, as its resync's
    /// answer.
    fn resynced(&mut self, request: u64, ctx: &mut Context<Self>) {
        // A mesh gone (this node left, or its task ended) owns nothing, as
        // the stream's end says; its last value is no decision.
        self.owned = match self.latest.has_changed() {
            Ok(_) => self.latest.borrow().clone(),
            Err(_) => BTreeSet::new(),
        };
        let wanted = self.plan.interfaces_for(&self.owned);
        let due: Vec<(String, u64)> = self
            .resyncing
            .iter()
            .filter(|(_, (_, asked))| *asked <= request)
            .map(|(name, (stall, _))| (name.clone(), *stall))
            .collect();
        for (name, stall) in due {
            self.resyncing.remove(&name);
            let addresses = wanted.get(&name).cloned().unwrap_or_default();
            if let Some(interface) = self.interfaces.get(&name) {
                tracing::info!(interface = name, ?addresses, "answering again after a stall");
                interface.answer.do_send(Answer {
                    addresses: addresses.clone(),
                    resync: Some(stall),
                });
            }
            if !addresses.is_empty() {
                self.told.insert(name, addresses);
            }
        }
        self.apply(ctx);
    }
}

impl Actor for Layer2Applier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.owned = self.latest.borrow().clone();
        ctx.add_stream(WatchStream::from_changes(self.latest.clone()).map(Owned));
    }
}

impl Handler<Apply> for Layer2Applier {
    type Result = ();

    fn handle(&mut self, Apply(plan): Apply, ctx: &mut Context<Self>) {
        self.plan = plan;
        self.apply(ctx);
    }
}

impl Handler<Resync> for Layer2Applier {
    type Result = ();

    fn handle(&mut self, Resync { interface, stall }: Resync, ctx: &mut Context<Self>) {
        self.told.remove(&interface);
        self.requests += 1;
        let request = self.requests;
        self.resyncing.insert(interface, (stall, request));
        let mesh = self.mesh.clone();
        let evaluated = async move {
            let (done, evaluated) = oneshot::channel();
            // A mesh gone has nothing more to decide: answered at once.
            if mesh.send(Command::Evaluate(done)).await.is_ok() {
                let _ = evaluated.await;
            }
        };
        ctx.spawn(
            evaluated
                .into_actor(self)
                .map(move |(), applier, ctx| applier.resynced(request, ctx)),
        );
    }
}

impl StreamHandler<Owned> for Layer2Applier {
    fn handle(&mut self, Owned(owned): Owned, ctx: &mut Context<Self>) {
        if owned != self.owned {
            tracing::info!(addresses = ?owned, "the mesh gives this node");
            self.owned = owned;
            self.apply(ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The mesh has gone (this node left): nothing is owned any more.
        self.owned.clear();
        self.apply(ctx);
    }
}

impl Handler<Stop> for Layer2Applier {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let interfaces: Vec<InterfaceHandle> = std::mem::take(&mut self.interfaces).into_values().collect();
        self.told.clear();
        ctx.stop();
        Box::pin(async move {
            // Each interface is quiet once it answers.
            for interface in interfaces {
                let _ = interface.shutdown.send(Shutdown).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use meshlb_config::meta::StringMap;
    use tokio::sync::mpsc;

    use crate::eligibility::ThisNode;
    use crate::eligibility::fixture::state;
    use crate::l2::links::{Link, Links};
    use crate::l2::plan::plan;

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<IpAddr>> {
        pairs.iter().map(|(n, ips)| ((*n).to_owned(), set(ips))).collect()
    }

    #[test]
    fn only_changed_sets_are_sent_and_a_dropped_interface_is_emptied() {
        let mut told = BTreeMap::new();
        assert!(
            changes(&mut told, map(&[("eth0", &[])])).is_empty(),
            "nothing to say yet"
        );
        let a = &["203.0.113.10"][..];
        let ab = &["203.0.113.10", "2001:db8::10"][..];
        assert_eq!(
            changes(&mut told, map(&[("eth0", a), ("eth1", a)])),
            vec![("eth0".to_owned(), set(a)), ("eth1".to_owned(), set(a))]
        );
        assert!(
            changes(&mut told, map(&[("eth0", a), ("eth1", a)])).is_empty(),
            "no change"
        );
        assert_eq!(
            changes(&mut told, map(&[("eth0", ab)])),
            vec![("eth0".to_owned(), set(ab)), ("eth1".to_owned(), set(&[]))],
            "eth1 left out: emptied"
        );
        assert_eq!(told, map(&[("eth0", ab)]));
        assert_eq!(changes(&mut told, BTreeMap::new()), vec![("eth0".to_owned(), set(&[]))]);
        assert!(told.is_empty());
    }

    /// What a fake interface received.
    #[derive(Debug, PartialEq, Eq)]
    enum Received {
        /// A set, and the stall it answers.
        Answer(String, BTreeSet<IpAddr>, Option<u64>),
        Shutdown(String),
    }

    /// Stands in for an interface actor: reports what it is sent.
    struct Recorder {
        name: String,
        log: mpsc::UnboundedSender<Received>,
    }

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<Answer> for Recorder {
        type Result = ();
        fn handle(&mut self, answer: Answer, _: &mut Context<Self>) {
            let _ = self
                .log
                .send(Received::Answer(self.name.clone(), answer.addresses, answer.resync));
        }
    }

    impl Handler<Shutdown> for Recorder {
        type Result = ();
        fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
            let _ = self.log.send(Received::Shutdown(self.name.clone()));
            ctx.stop();
        }
    }

    /// An opener of recorders that fails for the names in `broken` (shared,
    /// so the test can mend them) and logs each name it opened.
    fn opener(
        log: mpsc::UnboundedSender<Received>,
        broken: Arc<Mutex<BTreeSet<String>>>,
        opened: Arc<Mutex<Vec<String>>>,
    ) -> OpenInterface {
        Box::new(move |name: &str, _resync: Recipient<Resync>| {
            if broken.lock().unwrap().contains(name) {
                return None;
            }
            opened.lock().unwrap().push(name.to_owned());
            let recorder = Recorder {
                name: name.to_owned(),
                log: log.clone(),
            };
            Some(recorder.start().into())
        })
    }

    const CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: l2, namespace: metallb-system}
spec: {addresses: [203.0.113.10-203.0.113.20]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec: {ipAddressPools: [l2], interfaces: [eth0, eth1]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
";

    fn plan_of(yaml: &str, links: &[(&str, bool)]) -> Arc<L2Plan> {
        let links: Links = links
            .iter()
            .map(|(n, up)| ((*n).to_owned(), Link::from_up(*up)))
            .collect();
        let labels = StringMap::new();
        let node = ThisNode {
            name: "n1",
            labels: &labels,
            may_announce: true,
        };
        Arc::new(plan(state(yaml).input(), node, &links))
    }

    /// The next thing a fake interface received (the test fails after a
    /// generous wait rather than hang).
    async fn next(log: &mut mpsc::UnboundedReceiver<Received>) -> Received {
        tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
            .await
            .expect("no interface was sent anything")
            .expect("every recorder has gone")
    }

    fn answer(name: &str, ips: &[&str]) -> Received {
        Received::Answer(name.to_owned(), set(ips), None)
    }

    /// The applier across a plan's changes (a link coming up, the service
    /// going), ownership moving and the mesh leaving, against interfaces
    /// that record what they are sent. Each step's expected message is the
    /// next one received: a stray or missing set fails the order.
    #[actix::test]
    async fn interfaces_get_their_whole_set_across_plans_and_ownership() {
        let (log_tx, mut log) = mpsc::unbounded_channel();
        let broken = Arc::new(Mutex::new(BTreeSet::from(["eth1".to_owned()])));
        let opened = Arc::new(Mutex::new(Vec::new()));
        let (owned_tx, owned) = watch::channel(BTreeSet::new());
        let (mesh, _) = mpsc::channel(1);
        let applier = Layer2Applier::new(owned, mesh, opener(log_tx, Arc::clone(&broken), Arc::clone(&opened))).start();

        // The plan opens eth0 at once; eth1 fails to open.
        let both_up = plan_of(CONFIG, &[("eth0", true), ("eth1", true)]);
        let web = both_up.services.values().next().unwrap().spec.addresses[0].to_string();
        applier.send(Apply(Arc::clone(&both_up))).await.unwrap();
        assert_eq!(*opened.lock().unwrap(), vec!["eth0".to_owned()]);

        // The mesh gives this node the service's address and one of
        // another service: only the first is answered, where open.
        owned_tx.send_replace(set(&[&web, "198.51.100.99"]));
        assert_eq!(next(&mut log).await, answer("eth0", &[&web]));

        // eth1 can be opened at the next plan (its link going down, then
        // up): it gets the set once its link is up.
        broken.lock().unwrap().clear();
        applier
            .send(Apply(plan_of(CONFIG, &[("eth0", true), ("eth1", false)])))
            .await
            .unwrap();
        assert_eq!(*opened.lock().unwrap(), vec!["eth0".to_owned(), "eth1".to_owned()]);
        applier.send(Apply(Arc::clone(&both_up))).await.unwrap();
        assert_eq!(next(&mut log).await, answer("eth1", &[&web]));

        // eth0's link goes down: emptied there only.
        applier
            .send(Apply(plan_of(CONFIG, &[("eth0", false), ("eth1", true)])))
            .await
            .unwrap();
        assert_eq!(next(&mut log).await, answer("eth0", &[]));

        // The service is deleted: eth1 emptied too.
        let without_web = CONFIG.split("---\napiVersion: v1\nkind: Service").next().unwrap();
        applier
            .send(Apply(plan_of(without_web, &[("eth0", true), ("eth1", true)])))
            .await
            .unwrap();
        assert_eq!(next(&mut log).await, answer("eth1", &[]));

        // It comes back, then the mesh leaves: nothing is owned any more.
        applier.send(Apply(Arc::clone(&both_up))).await.unwrap();
        assert_eq!(next(&mut log).await, answer("eth0", &[&web]));
        assert_eq!(next(&mut log).await, answer("eth1", &[&web]));
        drop(owned_tx);
        assert_eq!(next(&mut log).await, answer("eth0", &[]));
        assert_eq!(next(&mut log).await, answer("eth1", &[]));

        // Stopping shuts every interface down, answered once they are.
        applier.send(Stop).await.unwrap();
        let mut shut = vec![next(&mut log).await, next(&mut log).await];
        shut.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            shut,
            vec![Received::Shutdown("eth0".into()), Received::Shutdown("eth1".into())]
        );
        assert!(log.try_recv().is_err(), "nothing after the shutdown");
    }

    /// An interface that stalled is sent nothing until the mesh has decided
    /// after its request (what the mesh published before may be stale),
    /// then its set from the newest decision, as its stall's answer.
    #[actix::test]
    async fn a_stalled_interface_waits_for_the_mesh_to_decide_again() {
        let (log_tx, mut log) = mpsc::unbounded_channel();
        let (owned_tx, owned) = watch::channel(BTreeSet::new());
        let (mesh, mut commands) = mpsc::channel(4);
        let opened = Arc::new(Mutex::new(Vec::new()));
        let applier = Layer2Applier::new(owned, mesh, opener(log_tx, Arc::default(), opened)).start();
        let both_up = plan_of(CONFIG, &[("eth0", true), ("eth1", true)]);
        let web = both_up.services.values().next().unwrap().spec.addresses[0].to_string();
        applier.send(Apply(Arc::clone(&both_up))).await.unwrap();
        owned_tx.send_replace(set(&[&web]));
        assert_eq!(next(&mut log).await, answer("eth0", &[&web]));
        assert_eq!(next(&mut log).await, answer("eth1", &[&web]));

        applier
            .send(Resync {
                interface: "eth0".into(),
                stall: 1,
            })
            .await
            .unwrap();
        let Some(Command::Evaluate(done)) = commands.recv().await else {
            panic!("the mesh was not asked to decide");
        };
        // Decisions before the mesh's answer reach eth1 only.
        owned_tx.send_replace(BTreeSet::new());
        assert_eq!(next(&mut log).await, answer("eth1", &[]));
        owned_tx.send_replace(set(&[&web]));
        assert_eq!(next(&mut log).await, answer("eth1", &[&web]));
        done.send(()).unwrap();
        assert_eq!(
            next(&mut log).await,
            Received::Answer("eth0".into(), set(&[&web]), Some(1))
        );
        // Back in step: the next change reaches both.
        owned_tx.send_replace(BTreeSet::new());
        assert_eq!(next(&mut log).await, answer("eth0", &[]));
        assert_eq!(next(&mut log).await, answer("eth1", &[]));
        owned_tx.send_replace(set(&[&web]));
        assert_eq!(next(&mut log).await, answer("eth0", &[&web]));
        assert_eq!(next(&mut log).await, answer("eth1", &[&web]));

        // The mesh's task ends without a last word: nothing is owned, and a
        // stall's answer is empty, not the mesh's last value.
        drop(owned_tx);
        drop(commands);
        assert_eq!(next(&mut log).await, answer("eth0", &[]));
        assert_eq!(next(&mut log).await, answer("eth1", &[]));
        applier
            .send(Resync {
                interface: "eth0".into(),
                stall: 2,
            })
            .await
            .unwrap();
        assert_eq!(
            next(&mut log).await,
            Received::Answer("eth0".into(), BTreeSet::new(), Some(2))
        );
        assert!(log.try_recv().is_err());
    }
}
