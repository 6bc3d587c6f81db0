//! Layer 2 mode in the agent: the glue that applies the Layer 2 plan.
//!
//! The policy is in `meshlb-actors` ([`meshlb_actors::l2::plan`]): from the
//! running state ([`crate::running`], the pipeline's watch) and the
//! link monitor's link state to what this node tells the mesh and where
//! each address is answered. [`Layer2Actor`] only applies each new plan, in
//! steps that each do one thing:
//! 1. tell the mesh its services and this node's Layer 2 record section;
//! 2. give this node's serveable service addresses local routes through
//!    loopback (with `arp_ignore`/`arp_announce` on the announcing
//!    interfaces, so the kernel delivers their traffic but never answers
//!    ARP for them);
//! 3. start, place and stop the service actors, opening the interface
//!    actors they need;
//! 4. publish what it did to the hub ([`StatusHub::layer2`]).
//!
//! The service, membership and interface actors run on the answering
//! arbiter given to [`Layer2Actor::start`], never on the control thread
//! that runs this actor, the pipeline, Kubernetes and gRPC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message, ResponseFuture, StreamHandler,
    WrapFuture,
};
use meshlb_actors::l2::interface::{AnnouncerStatus, InterfaceActor, Shutdown};
use meshlb_actors::l2::links::{Link, Links};
use meshlb_actors::l2::membership::{MembershipActor, Services};
use meshlb_actors::l2::plan::{L2Plan, plan};
use meshlb_actors::l2::service::{Placement, ServiceActor, StopService};
use meshlb_gossip::driver::Command;
use meshlb_gossip::record::ServiceId;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::WatchStream;

use crate::local_address::Delivery;
use crate::node::NodeOptions;
use crate::running::RunningState;
use crate::status::{Layer2Service, StatusHub};

/// How often an interface's counters reach the hub at most (they change
/// with every answer).
const INTERFACE_STATUS_EVERY: Duration = Duration::from_millis(200);

/// What the actor follows.
pub struct Layer2Inputs {
    /// What the pipeline decided: the plan is made from it.
    pub running: watch::Receiver<Arc<RunningState>>,
    /// Where Layer 2 and interface status is published.
    pub hub: StatusHub,
    /// The mesh's commands (services and this node's record section).
    pub mesh: mpsc::Sender<Command>,
    /// The mesh's ownership decision: the addresses this node announces.
    pub owned: watch::Receiver<BTreeSet<IpAddr>>,
    /// The link monitor's link state.
    pub links: watch::Receiver<Links>,
    /// Where the answering actors run.
    pub answering: ArbiterHandle,
    /// The owner of the service addresses' delivery.
    pub delivery: Delivery,
}

/// The Layer 2 glue actor. See the module documentation.
pub struct Layer2Actor {
    options: NodeOptions,
    inputs: Layer2Inputs,
    membership: Addr<MembershipActor>,
    applied: Option<L2Plan>,
    interfaces: BTreeMap<String, Addr<InterfaceActor>>,
    services: BTreeMap<ServiceId, Addr<ServiceActor>>,
}

impl Layer2Actor {
    /// Starts Layer 2 mode (inside an actix system).
    pub fn start(options: NodeOptions, inputs: Layer2Inputs) -> Addr<Layer2Actor> {
        let owned = inputs.owned.clone();
        let membership = MembershipActor::start_in_arbiter(&inputs.answering, move |_| MembershipActor::new(owned));
        Layer2Actor {
            options,
            inputs,
            membership,
            applied: None,
            interfaces: BTreeMap::new(),
            services: BTreeMap::new(),
        }
        .start()
    }

    /// Makes the plan for the current inputs and applies it if it changed.
    fn replan(&mut self, ctx: &mut Context<Self>) {
        let running = Arc::clone(&self.inputs.running.borrow());
        let links = self.inputs.links.borrow_and_update().clone();
        let (input, node) = self.options.plan_inputs(&running);
        let next = plan(input, node, &links);
        if self.applied.as_ref() == Some(&next) {
            return;
        }
        self.tell_mesh(&next, ctx);
        self.place_local_addresses(&next);
        self.place_services(&next);
        self.publish_status(&next);
        self.applied = Some(next);
    }

    /// Step 1: the mesh's services and this node's record section.
    fn tell_mesh(&self, next: &L2Plan, ctx: &mut Context<Self>) {
        let command = Command::SetServices(next.mesh_plan());
        let mesh = self.inputs.mesh.clone();
        ctx.spawn(
            async move {
                if mesh.send(command).await.is_err() {
                    tracing::debug!("the mesh has stopped; Layer 2 plan not published");
                }
            }
            .into_actor(self),
        );
    }

    /// Step 2: the addresses delivered (applied by their owner's task).
    fn place_local_addresses(&self, next: &L2Plan) {
        self.inputs
            .delivery
            .set_layer2(next.local_addresses(), next.links.clone());
    }

    /// Step 3: service actors placed anew, started, or stopped.
    fn place_services(&mut self, next: &L2Plan) {
        let mut placed = BTreeMap::new();
        for (id, service) in &next.services {
            let interfaces = service
                .interfaces
                .iter()
                .filter_map(|name| {
                    let link = next.links.get(name).copied().unwrap_or(Link::Down);
                    self.interface(name)
                        .map(|actor| (name.clone(), (actor.recipient(), link)))
                })
                .collect();
            let placement = Placement {
                addresses: service.spec.addresses.iter().copied().collect(),
                interfaces,
            };
            let actor = match self.services.remove(id) {
                Some(actor) => {
                    actor.do_send(placement);
                    actor
                }
                None => {
                    let id = *id;
                    ServiceActor::start_in_arbiter(&self.inputs.answering, move |_| ServiceActor::new(id, placement))
                }
            };
            placed.insert(*id, actor);
        }
        for (_, gone) in std::mem::take(&mut self.services) {
            gone.do_send(StopService);
        }
        self.services = placed;
        self.membership.do_send(Services(self.services.clone()));
    }

    /// Step 4: what Layer 2 does here, for the hub.
    fn publish_status(&self, next: &L2Plan) {
        let services = next
            .services
            .iter()
            .map(|(id, s)| {
                (
                    *id,
                    Layer2Service {
                        key: s.key.clone(),
                        addresses: s.spec.addresses.clone(),
                        serveable: s.serveable(),
                        interfaces: s.interfaces.clone(),
                        blocked: s.blocked,
                        preferences: s.preferences.clone(),
                    },
                )
            })
            .collect();
        self.inputs.hub.layer2().update(|status| status.services = services);
    }

    /// The interface actor of `name`, opened (on the answering arbiter) if
    /// it is not running yet; its status is passed on to the hub.
    fn interface(&mut self, name: &str) -> Option<Addr<InterfaceActor>> {
        if let Some(actor) = self.interfaces.get(name) {
            return Some(actor.clone());
        }
        let (status, mut status_rx) = watch::channel(AnnouncerStatus::default());
        let opened = InterfaceActor::open(name, self.options.schedule.clone(), status, self.inputs.links.clone());
        match opened {
            Ok(opened) => {
                let addr = opened.start_on(&self.inputs.answering);
                self.interfaces.insert(name.to_owned(), addr.clone());
                let (hub, name) = (self.inputs.hub.clone(), name.to_owned());
                tokio::task::spawn_local(async move {
                    while status_rx.changed().await.is_ok() {
                        let status = status_rx.borrow_and_update().clone();
                        hub.interfaces().update(|all| {
                            all.insert(name.clone(), status);
                        });
                        tokio::time::sleep(INTERFACE_STATUS_EVERY).await;
                    }
                });
                Some(addr)
            }
            Err(e) => {
                tracing::error!("{e}; addresses owned here are not answered on {name}");
                None
            }
        }
    }
}

impl Actor for Layer2Actor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::from_changes(self.inputs.running.clone()).map(|_| Replan));
        ctx.add_stream(WatchStream::from_changes(self.inputs.links.clone()).map(|_| Replan));
        ctx.add_stream(WatchStream::from_changes(self.inputs.owned.clone()).map(Announcing));
        self.replan(ctx);
    }
}

/// One of the plan's inputs changed.
struct Replan;

impl StreamHandler<Replan> for Layer2Actor {
    fn handle(&mut self, _: Replan, ctx: &mut Context<Self>) {
        self.replan(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // Inputs end only at shutdown, which sends `Stop`.
    }
}

/// The mesh's ownership decision changed.
struct Announcing(BTreeSet<IpAddr>);

impl StreamHandler<Announcing> for Layer2Actor {
    fn handle(&mut self, Announcing(owned): Announcing, _ctx: &mut Context<Self>) {
        self.inputs.hub.layer2().update(|status| status.announcing = owned);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// Stops Layer 2 mode: every service actor withdraws its claims, every
/// interface actor goes quiet, its addresses' delivery is given up; answered
/// once all of that is done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Layer2Actor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        for (_, service) in std::mem::take(&mut self.services) {
            service.do_send(StopService);
        }
        let interfaces: Vec<Addr<InterfaceActor>> = std::mem::take(&mut self.interfaces).into_values().collect();
        self.inputs.delivery.set_layer2(BTreeSet::new(), Links::new());
        ctx.stop();
        Box::pin(async move {
            // Each interface actor has gone quiet once it answers.
            for interface in interfaces {
                let _ = interface.send(Shutdown).await;
            }
        })
    }
}
