//! Layer 2 mode in the agent: the glue that makes the Layer 2 plan and
//! hands it on.
//!
//! The policy is in `meshlb-actors` ([`meshlb_actors::l2::plan`]): from the
//! running state ([`crate::running`], the pipeline's watch) and the
//! link monitor's link state to what this node tells the mesh and where
//! each address is answered. [`Layer2Actor`] makes the plan when either
//! changes and applies a new one in steps that each do one thing:
//! 1. tell the mesh its services and this node's Layer 2 record section;
//! 2. give this node's serveable service addresses local routes through
//!    loopback (with `arp_ignore`/`arp_announce` on the announcing
//!    interfaces, so the kernel delivers their traffic but never answers
//!    ARP for them);
//! 3. hand it to the Layer 2 applier ([`Layer2Applier`]), which gives each
//!    interface its whole address set as the plan and the mesh's ownership
//!    decision say;
//! 4. publish what it did to the hub ([`StatusHub::layer2`]).
//!
//! The applier and the interface actors ([`open_interfaces`]) run on the
//! answering arbiter given to [`Layer2Actor::start`], never on the control
//! thread that runs this actor, the pipeline, Kubernetes and gRPC.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message, ResponseFuture, StreamHandler,
    WrapFuture,
};
use meshlb_actors::l2::applier::{self, Apply, Layer2Applier, OpenInterface};
use meshlb_actors::l2::interface::{AnnouncerStatus, InterfaceActor};
use meshlb_actors::l2::links::Links;
use meshlb_actors::l2::plan::{L2Plan, plan};
use meshlb_actors::l2::responder::AnnounceSchedule;
use meshlb_gossip::driver::Command;
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
    /// Where Layer 2 status is published.
    pub hub: StatusHub,
    /// The mesh's commands (services and this node's record section).
    pub mesh: mpsc::Sender<Command>,
    /// The mesh's ownership decision: the addresses this node announces.
    pub owned: watch::Receiver<BTreeSet<IpAddr>>,
    /// The link monitor's link state.
    pub links: watch::Receiver<Links>,
    /// Where the applier and the interfaces run.
    pub answering: ArbiterHandle,
    /// Opens an interface (on the answering arbiter): [`open_interfaces`].
    pub interfaces: OpenInterface,
    /// The owner of the service addresses' delivery.
    pub delivery: Delivery,
}

/// Interface actors answering on the interface of each name, started on
/// the opener's thread, each reporting its status to `hub` (from the
/// calling thread's arbiter, at most every [`INTERFACE_STATUS_EVERY`]) and
/// asking the applier for its set anew after a stall of `stall_bound` (the
/// mesh profile's [`stall_ms`](meshlb_gossip::profile::Profile::stall_ms)).
pub fn open_interfaces(
    schedule: AnnounceSchedule,
    stall_bound: Duration,
    links: watch::Receiver<Links>,
    hub: StatusHub,
) -> OpenInterface {
    let control = actix::Arbiter::current();
    Box::new(move |name: &str, resync| {
        let (status, mut status_rx) = watch::channel(AnnouncerStatus::default());
        let opened = InterfaceActor::open(name, schedule.clone(), status, links.clone())
            .map(|opened| opened.resync_after_stalls(stall_bound, resync));
        match opened {
            Ok(opened) => {
                let (hub, name) = (hub.clone(), name.to_owned());
                control.spawn(async move {
                    while status_rx.changed().await.is_ok() {
                        let status = status_rx.borrow_and_update().clone();
                        hub.interfaces().update(|all| {
                            all.insert(name.clone(), status);
                        });
                        tokio::time::sleep(INTERFACE_STATUS_EVERY).await;
                    }
                });
                Some(opened.start().into())
            }
            Err(e) => {
                tracing::error!("{e}; addresses owned here are not answered on {name}");
                None
            }
        }
    })
}

/// The Layer 2 glue actor. See the module documentation.
pub struct Layer2Actor {
    options: NodeOptions,
    running: watch::Receiver<Arc<RunningState>>,
    links: watch::Receiver<Links>,
    owned: watch::Receiver<BTreeSet<IpAddr>>,
    hub: StatusHub,
    mesh: mpsc::Sender<Command>,
    delivery: Delivery,
    applier: Addr<Layer2Applier>,
    applied: Option<Arc<L2Plan>>,
}

impl Layer2Actor {
    /// Starts Layer 2 mode (inside an actix system).
    pub fn start(options: NodeOptions, inputs: Layer2Inputs) -> Addr<Layer2Actor> {
        let Layer2Inputs {
            running,
            hub,
            mesh,
            owned,
            links,
            answering,
            interfaces,
            delivery,
        } = inputs;
        let (decision, commands) = (owned.clone(), mesh.clone());
        let applier =
            Layer2Applier::start_in_arbiter(&answering, move |_| Layer2Applier::new(decision, commands, interfaces));
        Layer2Actor {
            options,
            running,
            links,
            owned,
            hub,
            mesh,
            delivery,
            applier,
            applied: None,
        }
        .start()
    }

    /// Makes the plan for the current inputs and applies it if it changed.
    fn replan(&mut self, ctx: &mut Context<Self>) {
        let running = Arc::clone(&self.running.borrow());
        let links = self.links.borrow_and_update().clone();
        let (input, node) = self.options.plan_inputs(&running);
        let next = Arc::new(plan(input, node, &links));
        if self.applied.as_ref() == Some(&next) {
            return;
        }
        self.tell_mesh(&next, ctx);
        self.delivery.set_layer2(next.local_addresses(), next.links.clone());
        self.applier.do_send(Apply(Arc::clone(&next)));
        self.publish_status(&next);
        self.applied = Some(next);
    }

    /// Step 1: the mesh's services and this node's record section.
    fn tell_mesh(&self, next: &L2Plan, ctx: &mut Context<Self>) {
        let command = Command::SetServices(next.mesh_plan());
        let mesh = self.mesh.clone();
        ctx.spawn(
            async move {
                if mesh.send(command).await.is_err() {
                    tracing::debug!("the mesh has stopped; Layer 2 plan not published");
                }
            }
            .into_actor(self),
        );
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
        self.hub.layer2().update(|status| status.services = services);
    }
}

impl Actor for Layer2Actor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::from_changes(self.running.clone()).map(|_| Replan));
        ctx.add_stream(WatchStream::from_changes(self.links.clone()).map(|_| Replan));
        ctx.add_stream(WatchStream::from_changes(self.owned.clone()).map(Announcing));
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
        self.hub.layer2().update(|status| status.announcing = owned);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// Stops Layer 2 mode: every interface goes quiet, its addresses' delivery
/// is given up; answered once all of that is done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Layer2Actor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        self.delivery.set_layer2(BTreeSet::new(), Links::new());
        ctx.stop();
        let applier = self.applier.clone();
        Box::pin(async move {
            let _ = applier.send(applier::Stop).await;
        })
    }
}
