//! The BGP applier: keeps the I/O actors in step with the BGP plan
//! ([`crate::bgp::plan`]). The plan says everything: this node's peers,
//! each one's whole session configuration and BFD session, or why it
//! cannot run ([`crate::bgp::peering`]), and the routes each should have.
//! The applier gathers what the plan takes from this node ([`NodeFacts`]:
//! the router ID and a graceful restart it is given, the neighbours Router
//! Discovery found, IP forwarding) and runs, on the answering arbiter it is
//! given (never behind the control plane): one peer actor per planned
//! session, restarted when its configuration changes, stopped (Cease) when
//! it goes, told its routes whenever the plan changes them; the listener
//! for the peers' own connections ([`crate::bgp::listener`]), bound with
//! the first peer; the BFD actor ([`crate::bfd`]), started with the first
//! peer that has a bfdProfile, whose failure takes the BGP session down;
//! Router Discovery ([`crate::bgp::unnumbered`]) on each interface an
//! unnumbered peer names.
//!
//! What it is given and tells is the caller's ([`BgpApplierInputs`]): how
//! to make the plan and when to make it anew, the addresses the node
//! delivers and where to say which it needs (a route goes out only once
//! the node delivers every address it carries, and a withdrawn address
//! stays needed while the routers converge: [`Lingering`]), the mesh (this
//! node's record says what it announces to established peers; a drain
//! waits for the others' records), and where its status goes. A stop
//! ([`Stop`]) is a graceful restart, a drain ([`crate::bgp::drain`]'s state
//! machine on the mesh's status) or nothing ([`Stopping`]), so a planned
//! stop loses no traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, SpawnHandle, StreamHandler, WrapFuture,
};
use futures_util::{Stream, StreamExt as _};
use meshlb_config::config::PeerEndpoint;
use meshlb_gossip::driver::{Command, MeshStatus};
use meshlb_gossip::record::BgpSection;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::WatchStream;

use crate::bfd::actor::{BfdActor, BfdPeer, BfdReporter, BfdSockets, SetBfdPeers, StopBfd};
use crate::bgp::drain::{Drain, DrainAction, Lingering, Stopping, WITHDRAW_LINGER, graceful_shutdown};
use crate::bgp::listener::{ListenPeer, ListenSockets, ListenerActor, SetListenPeers, StopListening};
use crate::bgp::peer::{Flush, MessageCounts, PeerActor, PeerConfig, SessionState, SetRoutes, StopPeer};
use crate::bgp::peering::{Forwarding, NodeFacts};
use crate::bgp::plan::BgpPlan;
use crate::bgp::rib_out::RoutePrefix;
use crate::bgp::session::Negotiated;
use crate::bgp::unnumbered::{DiscoveryActor, DiscoverySocket, NeighborFound, StopDiscovery};
use crate::now;

/// What BGP does here, as the applier reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpStatus {
    /// Every BGPPeer of this node, by name.
    pub peers: BTreeMap<String, BgpPeerStatus>,
}

/// One BGPPeer of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpPeerStatus {
    /// Where its session runs (an unnumbered peer's once found).
    pub address: Option<SocketAddr>,
    /// The prefixes this node sends it.
    pub prefixes: Vec<String>,
    /// The service addresses those prefixes carry.
    pub addresses: BTreeSet<IpAddr>,
    /// Why no session runs, if none does.
    pub not_running: Option<String>,
    /// What was negotiated, while the session is established (`None`:
    /// it is not).
    pub negotiated: Option<Negotiated>,
    /// Messages sent to it over the peer actor's life, by type.
    pub sent: MessageCounts,
    /// Messages received from it, by type.
    pub received: MessageCounts,
}

impl BgpPeerStatus {
    /// Whether the session is established.
    pub fn established(&self) -> bool {
        self.negotiated.is_some()
    }
}

/// Makes the BGP plan with this node's facts now (`None`: there is no
/// running configuration yet).
pub type MakePlan = Box<dyn FnMut(&NodeFacts) -> Option<BgpPlan>>;

/// What the applier works with.
pub struct BgpApplierInputs {
    /// This node's name (its own mesh record does not count in a drain).
    pub node: String,
    /// Makes the plan.
    pub plan: MakePlan,
    /// Yields whenever the plan's inputs changed.
    pub replan: Pin<Box<dyn Stream<Item = ()>>>,
    /// This node's IPv4 address if it has one: the BGP identifier of the
    /// peers that set none (as MetalLB derives it).
    pub router_id: Option<Ipv4Addr>,
    /// Whether this start is a graceful restart (see [`NodeFacts`]).
    pub restarted: bool,
    /// Peers' connections are taken on this port (0: none) once there is a
    /// peer.
    pub listen_port: u16,
    /// Where the peers, the listener, BFD and Router Discovery run.
    pub answering: ArbiterHandle,
    /// The addresses the node accepts traffic for now: routes carrying
    /// others wait.
    pub deliverable: watch::Receiver<BTreeSet<IpAddr>>,
    /// Told the addresses BGP needs delivered (announced or lingering).
    pub deliver: Box<dyn Fn(BTreeSet<IpAddr>)>,
    /// The mesh: this node's record says what it announces over BGP.
    pub mesh: mpsc::Sender<Command>,
    /// The mesh's status: the others' records say what they announce (a
    /// drain waits for them).
    pub mesh_status: watch::Receiver<MeshStatus>,
    /// How long a drain waits for other nodes to announce this node's
    /// addresses before withdrawing them anyway (zero: no wait).
    pub drain_timeout: Duration,
    /// Told the peers' status whenever it changes.
    pub report: Box<dyn Fn(BgpStatus)>,
    /// Told the BFD sessions' status (from the BFD actor's thread).
    pub report_bfd: BfdReporter,
}

/// One running peer and the configuration it was started with.
struct RunningPeer {
    config: PeerConfig,
    addr: Addr<PeerActor>,
    /// Its number, in the session states it reports.
    instance: u64,
}

/// Router Discovery on an interface with unnumbered peers, and the
/// neighbour it found there.
struct Neighbor {
    actor: Addr<DiscoveryActor>,
    address: Option<SocketAddrV6>,
}

/// The listener for peers' connections, as far as it is set up.
enum Listening {
    /// Not wanted (`--bgp-listen-port 0`).
    Off,
    /// Not bound yet: no peer so far, or the port was taken (tried again
    /// at the next change).
    Unbound(u16),
    /// Listening.
    Bound(Addr<ListenerActor>),
}

/// How long before Router Discovery is tried again on an interface it
/// could not run on.
const DISCOVERY_RETRY: Duration = Duration::from_secs(10);

/// A drain under way: its state machine, who waits for its end, and its
/// next timer.
struct Draining {
    drain: Drain,
    answer: Option<oneshot::Sender<BTreeSet<IpAddr>>>,
    timer: Option<SpawnHandle>,
}

/// The BGP applier. See the module documentation.
pub struct BgpApplier {
    /// What it was given (its streams taken out when it started).
    inputs: BgpApplierInputs,
    peers: BTreeMap<String, RunningPeer>,
    applied: Option<BgpPlan>,
    listening: Listening,
    bfd: Option<Addr<BfdActor>>,
    /// By interface, for the peers that name one (unnumbered).
    neighbors: BTreeMap<String, Neighbor>,
    /// Whether a retry of the interfaces Router Discovery could not run on
    /// is scheduled.
    discovery_retry: bool,
    /// Draining: the configuration is no longer followed.
    draining: Option<Draining>,
    /// What this node's record says now.
    published: BgpSection,
    /// The number of the last peer actor started.
    instances: u64,
    /// The peers whose session is established, and what it negotiated.
    negotiated: BTreeMap<String, Negotiated>,
    /// Messages sent to and received from each peer, by type.
    messages: BTreeMap<String, (MessageCounts, MessageCounts)>,
    /// The addresses the node accepts traffic for now: routes carrying
    /// others wait.
    deliverable: BTreeSet<IpAddr>,
    /// Addresses withdrawn and still delivered while routers converge.
    lingering: Lingering,
    /// The status last reported.
    reported: BgpStatus,
}

impl BgpApplier {
    /// Starts the applier on the current arbiter (inside an actix system).
    pub fn start(mut inputs: BgpApplierInputs) -> Addr<BgpApplier> {
        let replan = std::mem::replace(&mut inputs.replan, Box::pin(futures_util::stream::empty()));
        let deliverable = WatchStream::from_changes(inputs.deliverable.clone());
        BgpApplier::create(move |ctx| {
            ctx.add_stream(replan.map(|()| Heard::Replan));
            ctx.add_stream(deliverable.map(Heard::Deliverable));
            BgpApplier {
                listening: match inputs.listen_port {
                    0 => Listening::Off,
                    port => Listening::Unbound(port),
                },
                inputs,
                peers: BTreeMap::new(),
                applied: None,
                bfd: None,
                neighbors: BTreeMap::new(),
                discovery_retry: false,
                draining: None,
                published: BgpSection::default(),
                instances: 0,
                negotiated: BTreeMap::new(),
                messages: BTreeMap::new(),
                deliverable: BTreeSet::new(),
                lingering: Lingering::default(),
                reported: BgpStatus::default(),
            }
        })
    }

    /// Tells the listener (binding it first, with the first peer) whose
    /// connections to take.
    fn listen(&mut self) {
        if let Listening::Unbound(port) = self.listening
            && !self.peers.is_empty()
        {
            match ListenSockets::bind(port) {
                // Run on the answering arbiter, beside the peers.
                Ok(sockets) => {
                    let addr =
                        ListenerActor::start_in_arbiter(&self.inputs.answering, move |_| ListenerActor::new(sockets));
                    self.listening = Listening::Bound(addr);
                }
                Err(e) => tracing::warn!(
                    port,
                    "BGP: cannot listen for peers' connections ({e}); connecting to them only"
                ),
            }
        }
        let Listening::Bound(listener) = &self.listening else {
            return;
        };
        let peers = self
            .peers
            .values()
            .map(|running| {
                let peer = ListenPeer {
                    actor: running.addr.clone().recipient(),
                    md5: running.config.md5.clone(),
                };
                (running.config.address.ip(), peer)
            })
            .collect();
        listener.do_send(SetListenPeers(peers));
    }

    /// What the plan takes from this node now.
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            router_id: self.inputs.router_id,
            restarted: self.inputs.restarted,
            neighbors: self
                .neighbors
                .iter()
                .filter_map(|(interface, neighbor)| Some((interface.clone(), neighbor.address?)))
                .collect(),
            forwarding: Forwarding::read(),
        }
    }

    fn replan(&mut self, ctx: &mut Context<Self>) {
        if self.draining.is_some() {
            return;
        }
        let facts = self.facts();
        let Some(next) = (self.inputs.plan)(&facts) else {
            return;
        };
        if self.applied.as_ref() != Some(&next) {
            self.apply(next, ctx);
            self.tell_mesh(ctx);
        }
    }

    /// Makes `next` the running plan: peers gone or whose session changed
    /// stop, new or changed ones start, every peer gets its routes.
    fn apply(&mut self, next: BgpPlan, ctx: &mut Context<Self>) {
        let stale: Vec<String> = self
            .peers
            .iter()
            .filter(|(name, running)| {
                next.peers
                    .get(*name)
                    .and_then(|p| p.session.as_ref().ok())
                    .is_none_or(|session| session.config != running.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(running) = self.peers.remove(&name) {
                tracing::info!(peer = name, "BGP peer stopping");
                running.addr.do_send(StopPeer { for_restart: false });
                self.negotiated.remove(&name);
            }
        }
        self.discover(&next, ctx);
        for (name, planned) in &next.peers {
            let session = match &planned.session {
                Ok(session) => session,
                Err(why) => {
                    // Waiting for Router Discovery is no fault.
                    if !matches!(planned.peer.endpoint, PeerEndpoint::Interface(_)) {
                        tracing::warn!(peer = name, "BGP peer not started: {why}");
                    }
                    continue;
                }
            };
            if !self.peers.contains_key(name) {
                self.instances += 1;
                let instance = self.instances;
                let config = session.config.clone();
                let actor = PeerActor::new(config.clone()).observed_by(ctx.address().recipient(), instance);
                let addr = PeerActor::start_in_arbiter(&self.inputs.answering, move |_| actor);
                self.peers.insert(name.clone(), RunningPeer { config, addr, instance });
            }
        }
        let withdrawal = match &self.applied {
            Some(previous) => self.lingering.withdraw(&previous.announced, &next.announced),
            None => None,
        };
        self.applied = Some(next);
        self.send_routes();
        self.linger(withdrawal, ctx);
        self.listen();
        self.run_bfd();
        self.publish_status();
    }

    /// Sends every peer its planned routes that the node delivers.
    fn send_routes(&self) {
        let Some(plan) = &self.applied else { return };
        for (name, running) in &self.peers {
            if let Some(planned) = plan.peers.get(name) {
                running
                    .addr
                    .do_send(SetRoutes(planned.deliverable_routes(&self.deliverable)));
            }
        }
    }

    /// Keeps a withdrawal's addresses delivered until every peer has
    /// queued it and [`WITHDRAW_LINGER`] has passed, then lets them go;
    /// says what BGP needs delivered now.
    fn linger(&mut self, withdrawal: Option<u64>, ctx: &mut Context<Self>) {
        if let Some(withdrawal) = withdrawal {
            let flushed: Vec<_> = self.peers.values().map(|running| running.addr.send(Flush)).collect();
            ctx.spawn(
                async move {
                    // A peer that stopped meanwhile withdrew everything.
                    futures_util::future::join_all(flushed).await;
                    tokio::time::sleep(WITHDRAW_LINGER).await;
                }
                .into_actor(self)
                .map(move |(), actor, ctx| {
                    actor.lingering.release(withdrawal);
                    actor.linger(None, ctx);
                }),
            );
        }
        let announced = self.applied.as_ref().map(|p| p.announced.clone()).unwrap_or_default();
        (self.inputs.deliver)(self.lingering.needed(&announced));
    }

    /// Reports every planned peer's state, when it changed.
    fn publish_status(&mut self) {
        let Some(plan) = &self.applied else { return };
        let peers = plan
            .peers
            .iter()
            .map(|(name, planned)| {
                let running = self.peers.get(name);
                let status = BgpPeerStatus {
                    address: running.map(|r| r.config.address),
                    prefixes: planned
                        .routes
                        .keys()
                        .map(|prefix| match prefix {
                            RoutePrefix::V4(p) => p.to_string(),
                            RoutePrefix::V6(p) => p.to_string(),
                        })
                        .collect(),
                    addresses: planned.addresses.clone(),
                    sent: self.messages.get(name).map(|m| m.0).unwrap_or_default(),
                    received: self.messages.get(name).map(|m| m.1).unwrap_or_default(),
                    negotiated: self.negotiated.get(name).cloned(),
                    not_running: match (running, &planned.session) {
                        (Some(_), _) => None,
                        (None, Err(why)) => Some(why.to_string()),
                        (None, Ok(_)) => Some("stopped".into()),
                    },
                };
                (name.clone(), status)
            })
            .collect();
        let next = BgpStatus { peers };
        if next != self.reported {
            self.reported = next.clone();
            (self.inputs.report)(next);
        }
    }

    /// Runs Router Discovery on every interface `plan`'s unnumbered peers
    /// name, and on no other.
    fn discover(&mut self, plan: &BgpPlan, ctx: &mut Context<Self>) {
        let wanted: BTreeSet<&String> = plan
            .peers
            .values()
            .filter_map(|planned| match &planned.peer.endpoint {
                PeerEndpoint::Interface(interface) => Some(interface),
                PeerEndpoint::Address(_) => None,
            })
            .collect();
        self.neighbors.retain(|interface, neighbor| {
            let keep = wanted.contains(interface);
            if !keep {
                neighbor.actor.do_send(StopDiscovery);
            }
            keep
        });
        for interface in wanted {
            if self.neighbors.contains_key(interface) {
                continue;
            }
            match DiscoverySocket::bind(interface) {
                Ok(socket) => {
                    tracing::info!(interface, "unnumbered BGP: looking for the peer on the link");
                    let observer = ctx.address().recipient();
                    let actor = DiscoveryActor::start_in_arbiter(&self.inputs.answering, move |_| {
                        DiscoveryActor::new(socket, observer)
                    });
                    self.neighbors
                        .insert(interface.clone(), Neighbor { actor, address: None });
                }
                // An interface not there yet (a VLAN made later): tried
                // again after a while.
                Err(e) => {
                    tracing::warn!(
                        interface,
                        "unnumbered BGP: cannot run Router Discovery ({e}); trying again"
                    );
                    if !self.discovery_retry {
                        self.discovery_retry = true;
                        ctx.run_later(DISCOVERY_RETRY, |actor, ctx| {
                            actor.discovery_retry = false;
                            if let Some(plan) = actor.applied.clone()
                                && actor.draining.is_none()
                            {
                                actor.discover(&plan, ctx);
                            }
                        });
                    }
                }
            }
        }
    }

    /// Tells the BFD actor (starting it with the first peer that has a
    /// bfdProfile) which running peers to run sessions with, as planned.
    fn run_bfd(&mut self) {
        let Some(plan) = &self.applied else { return };
        let peers: BTreeMap<IpAddr, BfdPeer> = self
            .peers
            .iter()
            .filter_map(|(name, running)| {
                let bfd = plan.peers.get(name)?.session.as_ref().ok()?.bfd?;
                let peer = BfdPeer {
                    config: bfd.config,
                    multihop_min_ttl: bfd.multihop_min_ttl,
                    scope_id: match running.config.address {
                        SocketAddr::V6(v6) => v6.scope_id(),
                        SocketAddr::V4(_) => 0,
                    },
                    notify: running.addr.clone().recipient(),
                };
                Some((running.config.address.ip(), peer))
            })
            .collect();
        if self.bfd.is_none() && !peers.is_empty() {
            match BfdSockets::bind() {
                Ok(sockets) => {
                    let reporter = std::sync::Arc::clone(&self.inputs.report_bfd);
                    self.bfd = Some(BfdActor::start_in_arbiter(&self.inputs.answering, move |_| {
                        BfdActor::new(sockets).reporting(reporter)
                    }));
                }
                Err(e) => tracing::warn!("BFD: cannot bind its ports ({e}); the BGP sessions run without it"),
            }
        }
        if let Some(bfd) = &self.bfd {
            bfd.do_send(SetBfdPeers(peers));
        }
    }

    /// The addresses announced to an established peer.
    fn announcing(&self) -> BTreeSet<IpAddr> {
        self.applied
            .as_ref()
            .map(|plan| plan.announcing(self.negotiated.keys(), &self.deliverable))
            .unwrap_or_default()
    }

    /// Puts what this node announces (and whether it drains) in its
    /// record, when that changed.
    fn tell_mesh(&mut self, ctx: &mut Context<Self>) {
        let section = BgpSection {
            announcing: self.announcing(),
            draining: self.draining.is_some(),
        };
        if section == self.published {
            return;
        }
        self.published = section.clone();
        let mesh = self.inputs.mesh.clone();
        ctx.spawn(
            async move {
                if mesh.send(Command::SetBgp(section)).await.is_err() {
                    tracing::debug!("the mesh has stopped; BGP announcements not published");
                }
            }
            .into_actor(self),
        );
    }

    /// Does what the drain asks, and sets its next timer.
    fn drive_drain(&mut self, ctx: &mut Context<Self>) {
        let Some(draining) = &mut self.draining else { return };
        let mut actions = Vec::new();
        while let Some(action) = draining.drain.poll_action() {
            actions.push(action);
        }
        if let Some(timer) = draining.timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(at) = draining.drain.poll_timeout() {
            let wait = at.saturating_duration_since(now());
            draining.timer = Some(ctx.run_later(wait, |actor, ctx| {
                if let Some(draining) = &mut actor.draining {
                    draining.timer = None;
                    draining.drain.handle_timeout(now());
                }
                actor.drive_drain(ctx);
            }));
        }
        for action in actions {
            match action {
                DrainAction::Mark => {
                    self.tell_mesh(ctx);
                    if let Some(plan) = &self.applied {
                        for (name, running) in &self.peers {
                            if let Some(planned) = plan.peers.get(name) {
                                let routes = planned.deliverable_routes(&self.deliverable);
                                running.addr.do_send(SetRoutes(graceful_shutdown(&routes)));
                            }
                        }
                    }
                }
                DrainAction::Withdraw { covered } => {
                    if covered {
                        tracing::info!("BGP drain: other nodes announce every address; withdrawing");
                    } else {
                        tracing::warn!("BGP drain: not every address is announced elsewhere; withdrawing anyway");
                    }
                    for running in self.peers.values() {
                        running.addr.do_send(SetRoutes(BTreeMap::new()));
                    }
                }
                DrainAction::Cease => {
                    if let Some(answer) = self.draining.as_mut().and_then(|d| d.answer.take()) {
                        // Its receiver stops this actor once answered.
                        let _ = answer.send(BTreeSet::new());
                    }
                }
            }
        }
    }
}

/// Stops the applier, and with it every peer. Peers with
/// `enableGracefulRestart` are left for a restart: their sessions close
/// without a Cease, so they keep the routes while the agent restarts, and
/// the answer is the addresses to leave delivered meanwhile. Otherwise
/// this node drains ([`crate::bgp::drain`]: marked for a graceful
/// shutdown, withdrawn once the mesh shows others announcing its
/// addresses or at the drain timeout, ceased after [`WITHDRAW_LINGER`]);
/// the answer is then empty.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "BTreeSet<IpAddr>")]
pub struct Stop;

impl actix::Handler<Stop> for BgpApplier {
    type Result = actix::ResponseActFuture<Self, BTreeSet<IpAddr>>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        let restarting = self.peers.values().any(|p| p.config.session.graceful_restart.is_some());
        let planned = self.applied.as_ref().map(|p| p.announced.clone()).unwrap_or_default();
        let announcing = match Stopping::decide(restarting, self.draining.is_some(), &planned, self.announcing()) {
            Stopping::Drain(announcing) => announcing,
            Stopping::ForRestart(kept) => return stop_answering(kept),
            Stopping::Now => return stop_answering(BTreeSet::new()),
        };
        tracing::info!(addresses = announcing.len(), "BGP drain: graceful shutdown announced");
        let (answer, answered) = oneshot::channel();
        let drain = Drain::new(self.inputs.node.clone(), announcing, self.inputs.drain_timeout, now());
        self.draining = Some(Draining {
            drain,
            answer: Some(answer),
            timer: None,
        });
        // The mesh as it is, then each change.
        ctx.add_stream(WatchStream::new(self.inputs.mesh_status.clone()).map(|_| Heard::Mesh));
        self.drive_drain(ctx);
        Box::pin(
            async move { answered.await.unwrap_or_default() }
                .into_actor(self)
                .map(|kept, _actor, ctx| {
                    actix::ActorContext::stop(ctx);
                    kept
                }),
        )
    }
}

impl actix::Handler<SessionState> for BgpApplier {
    type Result = ();

    fn handle(&mut self, state: SessionState, ctx: &mut Context<Self>) {
        // A stopped actor's last word, after its successor started.
        if self.peers.get(&state.peer).is_none_or(|p| p.instance != state.instance) {
            return;
        }
        self.messages.insert(state.peer.clone(), (state.sent, state.received));
        match state.negotiated {
            Some(negotiated) => {
                self.negotiated.insert(state.peer, negotiated);
            }
            None => {
                self.negotiated.remove(&state.peer);
            }
        }
        self.tell_mesh(ctx);
        self.publish_status();
    }
}

impl actix::Handler<NeighborFound> for BgpApplier {
    type Result = ();

    /// An unnumbered peer's address is known, or changed: the plan
    /// (re)starts its sessions there.
    fn handle(&mut self, found: NeighborFound, ctx: &mut Context<Self>) {
        let Some(neighbor) = self.neighbors.get_mut(&found.interface) else {
            return;
        };
        if neighbor.address == Some(found.address) {
            return;
        }
        tracing::info!(interface = found.interface, address = %found.address, "unnumbered BGP: peer found");
        neighbor.address = Some(found.address);
        self.replan(ctx);
    }
}

/// What the applier hears: the running configuration changed, the addresses
/// the node delivers did, or (draining) the mesh did.
enum Heard {
    Replan,
    Deliverable(BTreeSet<IpAddr>),
    Mesh,
}

impl StreamHandler<Heard> for BgpApplier {
    fn handle(&mut self, heard: Heard, ctx: &mut Context<Self>) {
        match heard {
            Heard::Replan => self.replan(ctx),
            Heard::Deliverable(deliverable) => {
                self.deliverable = deliverable;
                if self.draining.is_none() {
                    self.send_routes();
                    self.tell_mesh(ctx);
                }
            }
            Heard::Mesh => {
                if let Some(draining) = &mut self.draining {
                    draining.drain.handle_mesh(&self.inputs.mesh_status.borrow(), now());
                    self.drive_drain(ctx);
                }
            }
        }
    }

    /// An input ending (the pipeline stopping before the agent stops BGP,
    /// the mesh leaving during a drain) stops nothing: [`Stop`] does.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Actor for BgpApplier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.replan(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Listening::Bound(listener) = &self.listening {
            listener.do_send(StopListening);
        }
        if let Some(bfd) = &self.bfd {
            bfd.do_send(StopBfd);
        }
        for neighbor in std::mem::take(&mut self.neighbors).into_values() {
            neighbor.actor.do_send(StopDiscovery);
        }
        for (name, running) in std::mem::take(&mut self.peers) {
            let for_restart = running.config.session.graceful_restart.is_some();
            tracing::info!(peer = name, for_restart, "BGP peer stopping");
            running.addr.do_send(StopPeer { for_restart });
        }
    }
}

/// Answers a stop with `kept`, then stops the applier (stopping first
/// would drop the answer).
fn stop_answering(kept: BTreeSet<IpAddr>) -> actix::ResponseActFuture<BgpApplier, BTreeSet<IpAddr>> {
    Box::pin(
        actix::fut::ready(kept).map(|kept, _actor, ctx: &mut Context<BgpApplier>| {
            actix::ActorContext::stop(ctx);
            kept
        }),
    )
}
