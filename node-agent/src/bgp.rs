//! The BGP glue: applies the BGP plan ([`meshlb_actors::bgp::plan`]) of
//! the running configuration. The plan says everything: this node's peers,
//! each one's whole session configuration and BFD session, or why it
//! cannot run ([`meshlb_actors::bgp::peering`]), and the routes each
//! should have. The glue gathers what the plan takes from this node
//! (router ID, a graceful restart, the neighbours Router Discovery found,
//! IP forwarding) and keeps the I/O actors on the answering arbiter (never
//! behind the control plane) in step: one peer actor per planned session,
//! restarted when its configuration changes, stopped (Cease) when it goes,
//! told its routes whenever the plan changes them; the listener for the
//! peers' own connections ([`meshlb_actors::bgp::listener`]), bound with the
//! first peer; the BFD actor ([`meshlb_actors::bfd`]), started with the
//! first peer that has a bfdProfile, whose failure takes the BGP session
//! down; Router Discovery ([`meshlb_actors::bgp::unnumbered`]) on each
//! interface an unnumbered peer names.
//!
//! Every node that may announce a Service does; the router spreads traffic
//! over them (ECMP). It starts with the mesh (`--gossip-bind`), whose node
//! name and labels it plans with. Standalone, the addresses this node
//! announces get local routes ([`crate::local_address::Delivery`], shared
//! with Layer 2), so it accepts the traffic the router sends it; a route
//! goes out only once the node delivers every address it carries, and an
//! address withdrawn stays delivered for [`WITHDRAW_LINGER`] after its
//! withdrawal is on its way, so a router never sends this node traffic it
//! would drop. A peer with `enableGracefulRestart` is stopped for a restart
//! (no Cease), and the addresses stay delivered for the successor
//! ([`crate::remembered::RestartRecord`]). This node's mesh record says
//! what it announces to established peers; a stop drains ([`Stop`], run by
//! [`meshlb_actors::bgp::drain`]'s state machine on the mesh's status), so
//! a planned stop loses no traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, SpawnHandle, StreamHandler, WrapFuture,
};
use meshlb_actors::bfd::actor::{BfdActor, BfdPeer, BfdSockets, SetBfdPeers, StopBfd};
use meshlb_actors::bgp::drain::{Drain, DrainAction, WITHDRAW_LINGER, graceful_shutdown};
use meshlb_actors::bgp::listener::{ListenPeer, ListenSockets, ListenerActor, SetListenPeers, StopListening};
use meshlb_actors::bgp::peer::{Flush, MessageCounts, PeerActor, PeerConfig, SessionState, SetRoutes, StopPeer};
use meshlb_actors::bgp::peering::{Forwarding, NodeFacts};
use meshlb_actors::bgp::plan::{BgpPlan, plan};
use meshlb_actors::bgp::rib_out::RoutePrefix;
use meshlb_actors::bgp::unnumbered::{DiscoveryActor, DiscoverySocket, NeighborFound, StopDiscovery};
use meshlb_config::config::PeerEndpoint;
use meshlb_gossip::driver::{Command, MeshStatus};
use meshlb_gossip::record::BgpSection;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::WatchStream;

use crate::local_address::Delivery;
use crate::node::NodeOptions;
use crate::now;
use crate::running::RunningState;
use crate::status::{BgpPeerStatus, BgpStatus, StatusHub};

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

/// What the BGP glue works with.
#[derive(Debug, Clone)]
pub struct BgpInputs {
    /// This node's IPv4 address if it has one: the BGP identifier of the
    /// peers that set none (as MetalLB derives it).
    pub router_id: Option<Ipv4Addr>,
    /// Peers' connections are taken on this port (0: none) once there is a
    /// peer.
    pub listen_port: u16,
    /// What the pipeline decided: the plan is made from it.
    pub running: watch::Receiver<Arc<RunningState>>,
    /// Where the peers' and BFD sessions' status is published.
    pub hub: StatusHub,
    /// Where the peers and the listener run.
    pub answering: ArbiterHandle,
    /// The owner of the service addresses' delivery: told what this node
    /// announces, so it accepts the traffic (standalone), and telling
    /// which addresses it delivers.
    pub delivery: Delivery,
    /// The mesh: this node's record says what it announces over BGP.
    pub mesh: mpsc::Sender<Command>,
    /// The mesh's status: the others' records say what they announce (a
    /// drain waits for them).
    pub mesh_status: watch::Receiver<MeshStatus>,
    /// How long a drain waits for other nodes to announce this node's
    /// addresses before withdrawing them anyway (zero: no wait).
    pub drain_timeout: Duration,
    /// Whether this start is a graceful restart (see [`NodeFacts`]).
    pub restarted: bool,
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

/// The BGP glue actor. See the module documentation.
pub struct BgpActor {
    options: NodeOptions,
    inputs: BgpInputs,
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
    negotiated: BTreeMap<String, meshlb_actors::bgp::session::Negotiated>,
    /// Messages sent to and received from each peer, by type.
    messages: BTreeMap<String, (MessageCounts, MessageCounts)>,
    /// The addresses the node accepts traffic for now: routes carrying
    /// others wait.
    deliverable: BTreeSet<IpAddr>,
    /// Addresses withdrawn and still delivered while routers converge, by
    /// the number of the withdrawal that released them.
    lingering: BTreeMap<IpAddr, u64>,
    /// The number of the last withdrawal.
    withdrawals: u64,
}

impl BgpActor {
    /// Starts the glue for the node of `options` (inside an actix system).
    pub fn start(options: NodeOptions, inputs: BgpInputs) -> Addr<BgpActor> {
        BgpActor {
            listening: match inputs.listen_port {
                0 => Listening::Off,
                port => Listening::Unbound(port),
            },
            options,
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
            lingering: BTreeMap::new(),
            withdrawals: 0,
        }
        .start()
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
            forwarding: forwarding(),
        }
    }

    fn replan(&mut self, ctx: &mut Context<Self>) {
        let running = Arc::clone(&self.inputs.running.borrow());
        if running.generation == 0 || self.draining.is_some() {
            return;
        }
        let (input, node) = self.options.plan_inputs(&running);
        let next = plan(input, node, &self.facts());
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
        let withdrawn: Vec<IpAddr> = match &self.applied {
            Some(previous) => previous.announced.difference(&next.announced).copied().collect(),
            None => Vec::new(),
        };
        self.applied = Some(next);
        self.send_routes();
        self.linger(withdrawn, ctx);
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

    /// Keeps `withdrawn` delivered until every peer has queued the
    /// withdrawal and [`WITHDRAW_LINGER`] has passed, then lets them go;
    /// tells the owner of the addresses what BGP needs now.
    fn linger(&mut self, withdrawn: Vec<IpAddr>, ctx: &mut Context<Self>) {
        if !withdrawn.is_empty() {
            self.withdrawals += 1;
            let withdrawal = self.withdrawals;
            self.lingering.extend(withdrawn.iter().map(|a| (*a, withdrawal)));
            let flushed: Vec<_> = self.peers.values().map(|running| running.addr.send(Flush)).collect();
            ctx.spawn(
                async move {
                    // A peer that stopped meanwhile withdrew everything.
                    futures_util::future::join_all(flushed).await;
                    tokio::time::sleep(WITHDRAW_LINGER).await;
                }
                .into_actor(self)
                .map(move |(), actor, ctx| {
                    actor.lingering.retain(|_, w| *w != withdrawal);
                    actor.linger(Vec::new(), ctx);
                }),
            );
        }
        let mut needed = self.applied.as_ref().map(|p| p.announced.clone()).unwrap_or_default();
        needed.extend(self.lingering.keys().copied());
        self.inputs.delivery.set_bgp(needed);
    }

    /// Puts every planned peer's state in the status hub.
    fn publish_status(&self) {
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
        self.inputs
            .hub
            .bgp()
            .publish_when(|current| *current != next, || next.clone());
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
                    let hub = self.inputs.hub.clone();
                    let reporter: meshlb_actors::bfd::actor::BfdReporter =
                        std::sync::Arc::new(move |sessions| hub.bfd().publish(sessions));
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
        let Some(plan) = &self.applied else {
            return BTreeSet::new();
        };
        self.negotiated
            .keys()
            .filter_map(|name| plan.peers.get(name))
            .flat_map(|peer| peer.addresses.iter().copied())
            .filter(|address| self.deliverable.contains(address))
            .collect()
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

/// Stops the glue, and with it every peer. Peers with
/// `enableGracefulRestart` are left for a restart: their sessions close
/// without a Cease, so they keep the routes while the agent restarts, and
/// the answer is the addresses to leave delivered meanwhile. Otherwise
/// this node drains ([`meshlb_actors::bgp::drain`]: marked for a graceful
/// shutdown, withdrawn once the mesh shows others announcing its
/// addresses or at the drain timeout, ceased after [`WITHDRAW_LINGER`]);
/// the answer is then empty.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "BTreeSet<IpAddr>")]
pub struct Stop;

impl actix::Handler<Stop> for BgpActor {
    type Result = actix::ResponseActFuture<Self, BTreeSet<IpAddr>>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        let restarting = self.peers.values().any(|p| p.config.session.graceful_restart.is_some());
        let announcing = self.announcing();
        if restarting || announcing.is_empty() || self.draining.is_some() {
            let kept = match &self.applied {
                Some(plan) if restarting => plan.announced.clone(),
                _ => BTreeSet::new(),
            };
            // Stopped once answered: stopping first would drop the answer.
            return Box::pin(actix::fut::ready(kept).map(|kept, _actor, ctx: &mut Context<Self>| {
                actix::ActorContext::stop(ctx);
                kept
            }));
        }
        tracing::info!(addresses = announcing.len(), "BGP drain: graceful shutdown announced");
        let (answer, answered) = oneshot::channel();
        let drain = Drain::new(self.options.node.clone(), announcing, self.inputs.drain_timeout, now());
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

impl actix::Handler<SessionState> for BgpActor {
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

impl actix::Handler<NeighborFound> for BgpActor {
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

/// What the glue hears: the running configuration changed, the addresses
/// the node delivers did, or (draining) the mesh did.
enum Heard {
    Replan,
    Deliverable(BTreeSet<IpAddr>),
    Mesh,
}

impl StreamHandler<Heard> for BgpActor {
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
}

impl Actor for BgpActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::from_changes(self.inputs.running.clone()).map(|_| Heard::Replan));
        ctx.add_stream(WatchStream::from_changes(self.inputs.delivery.deliverable()).map(Heard::Deliverable));
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

/// Whether this node forwards IPv4 and IPv6 packets, as its sysctls say.
fn forwarding() -> Forwarding {
    let on = |sysctl: &str| std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "1");
    Forwarding {
        ipv4: on("/proc/sys/net/ipv4/ip_forward"),
        ipv6: on("/proc/sys/net/ipv6/conf/all/forwarding"),
    }
}

/// This node's IPv4 address for the BGP identifier: the gossip address's
/// when it is IPv4.
pub fn router_id_from(bind: SocketAddr) -> Option<Ipv4Addr> {
    match bind.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    }
}
