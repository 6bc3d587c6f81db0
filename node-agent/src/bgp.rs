//! The BGP glue: applies the BGP plan ([`meshlb_actors::bgp::plan`]) of
//! the running configuration. One peer actor per BGPPeer this node has,
//! started on the answering arbiter (never behind the control plane),
//! restarted when its configuration changes, stopped (Cease) when it goes;
//! each is told the routes it should have whenever the plan changes them.
//!
//! Every node that may announce a Service does; the router spreads traffic
//! over them (ECMP). It starts with the mesh (`--gossip-bind`), whose node
//! name and labels it plans with. The peers' own connections are taken
//! by a listener ([`meshlb_actors::bgp::listener`]) bound with the first
//! peer. Standalone, the addresses this node announces get local routes
//! ([`crate::local_address::Delivery`], shared with Layer 2), so it accepts
//! the traffic the router sends it; a route goes out only once the node
//! delivers every address it carries, and an address withdrawn stays
//! delivered for [`WITHDRAW_LINGER`] after its withdrawal is on its way,
//! so a router never sends this node traffic it would drop. A peer with
//! `enableGracefulRestart` is stopped for a restart (no Cease), and the
//! addresses stay delivered for the successor
//! ([`crate::state_file::RestartRecord`]). Peers with a
//! bfdProfile get a BFD session ([`meshlb_actors::bfd`]), started with the
//! first, whose failure takes the BGP session down. A peer that names an
//! `interface` (unnumbered) starts once Router Discovery on that interface
//! ([`meshlb_actors::bgp::unnumbered`]) finds its link-local address, and
//! restarts when that changes. This node's mesh
//! record says what it announces to established peers; a stop drains
//! (see [`Stop`]): graceful shutdown first, the withdrawal once the mesh
//! shows the others announcing, so a planned stop loses no traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, StreamHandler, WrapFuture};
use meshlb_actors::bfd::actor::{BfdActor, BfdPeer, BfdSockets, SetBfdPeers, StopBfd};
use meshlb_actors::bfd::session::BfdConfig;
use meshlb_actors::bgp::listener::{ListenPeer, ListenSockets, ListenerActor, SetListenPeers, StopListening};
use meshlb_actors::bgp::peer::{
    Flush, Hops, MessageCounts, PeerActor, PeerConfig, SessionState, SetRoutes, StopPeer, families_for,
};
use meshlb_actors::bgp::plan::{BgpPlan, plan};
use meshlb_actors::bgp::rib_out::{RouteAttributes, RoutePrefix, Routes};
use meshlb_actors::bgp::session::{PeerAs, SessionConfig};
use meshlb_actors::bgp::unnumbered::{DiscoveryActor, DiscoverySocket, NeighborFound, StopDiscovery};
use meshlb_config::config::{BgpPeer, Config, PeerAsn, PeerEndpoint};
use meshlb_gossip::driver::{Command, MeshStatus};
use meshlb_gossip::record::BgpSection;
use meshlb_wire::bgp::{Community, GracefulRestart, GracefulRestartFamily};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::WatchStream;

use crate::layer2::Layer2Options;
use crate::local_address::Delivery;
use crate::status::{BgpPeerStatus, BgpStatus, StatusHub};

/// The connect retry time when a BGPPeer sets no `connectTime`.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(10);

/// One running peer and the configuration it was started with.
struct RunningPeer {
    peer: BgpPeer,
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
    /// The running configuration is read from it.
    pub hub: StatusHub,
    /// Where the peers and the listener run.
    pub answering: ArbiterHandle,
    /// The owner of the service addresses' delivery: told what this node
    /// announces, so it accepts the traffic (standalone), and telling
    /// which addresses it delivers.
    pub delivery: Delivery,
    /// The mesh: this node's record says what it announces over BGP, and
    /// the others' records what they do.
    pub mesh: mpsc::Sender<Command>,
    /// How long a drain waits for other nodes to announce this node's
    /// addresses before withdrawing them anyway (zero: no wait).
    pub drain_timeout: Duration,
    /// Whether this start is a graceful restart (a predecessor stopped
    /// within [`RESTART_TIME`], its peers holding the routes): the OPENs
    /// say so (R bit) and that forwarding was preserved (F bit).
    pub restarted: bool,
}

/// How long a peer helping with a graceful restart holds this node's
/// routes (the capability's Restart Time; FRR's default, which MetalLB's
/// FRR mode uses).
pub const RESTART_TIME: Duration = Duration::from_secs(120);

/// After the withdrawal, how long a draining node keeps its sessions and
/// its addresses, so traffic the routers still send while they converge
/// is answered.
pub const WITHDRAW_LINGER: Duration = Duration::from_secs(1);

/// How long before Router Discovery is tried again on an interface it
/// could not run on.
const DISCOVERY_RETRY: Duration = Duration::from_secs(10);

/// How often a drain looks at the others' records.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// The BGP glue actor. See the module documentation.
pub struct BgpActor {
    options: Layer2Options,
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
    draining: bool,
    /// What this node's record says now.
    published: BgpSection,
    /// The number of the last peer actor started.
    instances: u64,
    /// Why planned peers are not running, by name.
    not_started: BTreeMap<String, String>,
    /// The peers whose session is established, and what it negotiated.
    negotiated: BTreeMap<String, meshlb_actors::bgp::session::Negotiated>,
    /// UPDATEs each peer actor has sent, by peer name.
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
    pub fn start(options: Layer2Options, inputs: BgpInputs) -> Addr<BgpActor> {
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
            draining: false,
            published: BgpSection::default(),
            instances: 0,
            not_started: BTreeMap::new(),
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

    fn replan(&mut self, ctx: &mut Context<Self>) {
        let running = self.inputs.hub.running().get();
        if running.generation == 0 || self.draining {
            return;
        }
        let (input, node) = crate::layer2::plan_inputs(&running, &self.options);
        let next = plan(input, node);
        if self.applied.as_ref() != Some(&next) {
            self.apply(next, ctx);
            self.publish(ctx);
        }
        // A BFDProfile's timers are not in the plan: the sessions follow
        // them on every change.
        self.detect(&running.inventory.config);
    }

    /// Makes `next` the running plan: peers gone or changed stop, new or
    /// changed ones start, every peer gets its routes.
    fn apply(&mut self, next: BgpPlan, ctx: &mut Context<Self>) {
        let stale: Vec<String> = self
            .peers
            .iter()
            .filter(|(name, running)| next.peers.get(*name).is_none_or(|p| p.peer != running.peer))
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
        self.not_started.retain(|name, _| next.peers.contains_key(name));
        for (name, planned) in &next.peers {
            if let PeerEndpoint::Interface(interface) = &planned.peer.endpoint
                && self.neighbors.get(interface).is_none_or(|n| n.address.is_none())
            {
                // Started once Router Discovery finds the peer.
                self.not_started.insert(
                    name.clone(),
                    format!("no router advertisement heard on {interface} yet"),
                );
                continue;
            }
            if !self.peers.contains_key(name) {
                match self.peer_config(&planned.peer) {
                    Ok(config) => {
                        self.not_started.remove(name);
                        self.instances += 1;
                        let instance = self.instances;
                        let actor = PeerActor::new(config.clone()).observed_by(ctx.address().recipient(), instance);
                        let addr = PeerActor::start_in_arbiter(&self.inputs.answering, move |_| actor);
                        self.peers.insert(
                            name.clone(),
                            RunningPeer {
                                peer: planned.peer.clone(),
                                config,
                                addr,
                                instance,
                            },
                        );
                    }
                    Err(why) => {
                        tracing::warn!(peer = name, "BGP peer not started: {why}");
                        self.not_started.insert(name.clone(), why);
                    }
                }
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
        self.report();
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
    fn report(&self) {
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
                    not_running: match running {
                        Some(_) => None,
                        None => Some(self.not_started.get(name).cloned().unwrap_or_else(|| "stopped".into())),
                    },
                };
                (name.clone(), status)
            })
            .collect();
        let next = BgpStatus { peers };
        if *self.inputs.hub.bgp().get() != next {
            self.inputs.hub.bgp().publish(next);
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
                                && !actor.draining
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
    /// bfdProfile) which peers to run sessions with.
    fn detect(&mut self, config: &Config) {
        let peers: BTreeMap<IpAddr, BfdPeer> = self
            .peers
            .values()
            .filter_map(|running| {
                let profile = config.bfd_profiles.get(running.peer.bfd_profile.as_ref()?)?;
                let echo_interval = Duration::from_millis(profile.echo_interval_ms.into());
                let peer = BfdPeer {
                    config: BfdConfig {
                        desired_min_tx: Duration::from_millis(profile.transmit_interval_ms.into()),
                        required_min_rx: Duration::from_millis(profile.receive_interval_ms.into()),
                        detect_multiplier: profile.detect_multiplier,
                        passive: profile.passive_mode,
                        echo_interval: profile.echo_mode.then_some(echo_interval),
                        // The peer's Echo packets come back only through
                        // this node's forwarding.
                        echo_receive: if profile.echo_mode && forwards(running.config.address.ip()) {
                            echo_interval
                        } else {
                            Duration::ZERO
                        },
                    },
                    multihop_min_ttl: running.peer.ebgp_multi_hop.then_some(profile.minimum_ttl),
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
    fn publish(&mut self, ctx: &mut Context<Self>) {
        let section = BgpSection {
            announcing: self.announcing(),
            draining: self.draining,
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

    /// The peer actor's configuration for `peer`, or why it cannot run.
    fn peer_config(&self, peer: &BgpPeer) -> Result<PeerConfig, String> {
        let (address, unnumbered) = match &peer.endpoint {
            PeerEndpoint::Address(address) => (SocketAddr::new(*address, peer.port), false),
            PeerEndpoint::Interface(interface) => {
                let found = self
                    .neighbors
                    .get(interface)
                    .and_then(|n| n.address)
                    .ok_or_else(|| format!("no router advertisement heard on {interface} yet"))?;
                (
                    SocketAddr::V6(SocketAddrV6::new(*found.ip(), peer.port, 0, found.scope_id())),
                    true,
                )
            }
        };
        if peer.vrf.is_some() {
            return Err("VRFs are not supported".into());
        }
        let router_id = peer
            .router_id
            .or(self.inputs.router_id)
            .ok_or("no routerID, and this node has no IPv4 address to take it from")?;
        let local_as = peer.local_asn.unwrap_or(peer.my_asn);
        let peer_as = match peer.peer_asn {
            PeerAsn::Fixed(asn) => PeerAs::Exact(asn),
            PeerAsn::Internal => PeerAs::Internal,
            PeerAsn::External => PeerAs::External,
        };
        let internal = matches!(peer_as, PeerAs::Internal) || peer_as == PeerAs::Exact(local_as);
        // A password Secret that does not exist yet: the session waits for
        // it, never running unsigned.
        let md5 = match &peer.password {
            None => None,
            Some(password) => Some(
                password
                    .key()
                    .cloned()
                    .ok_or("its password Secret does not exist yet")?,
            ),
        };
        // Unnumbered: both families over the one session.
        let families = families_for(address.ip(), peer.dual_stack_address_family || unnumbered);
        Ok(PeerConfig {
            name: peer.name.clone(),
            address,
            source: peer.source_address,
            md5,
            hops: match (internal, peer.ebgp_multi_hop) {
                (true, _) => Hops::Default,
                (false, true) => Hops::Multihop,
                (false, false) => Hops::Direct,
            },
            session: SessionConfig {
                local_as,
                peer_as,
                router_id,
                hold_time: u16::try_from(peer.hold_time.as_secs()).unwrap_or(u16::MAX),
                keepalive_time: u16::try_from(peer.keepalive_time.as_secs()).ok(),
                connect_retry: peer.connect_time.unwrap_or(DEFAULT_CONNECT_RETRY),
                passive: false,
                families: families.clone(),
                route_refresh: true,
                extended_next_hop: unnumbered,
                graceful_restart: peer.graceful_restart.then(|| GracefulRestart {
                    restart_state: self.inputs.restarted,
                    notification: false,
                    restart_time: u16::try_from(RESTART_TIME.as_secs()).unwrap_or(u16::MAX),
                    families: families
                        .iter()
                        .map(|&family| GracefulRestartFamily {
                            family,
                            forwarding_preserved: self.inputs.restarted,
                        })
                        .collect(),
                }),
            },
        })
    }
}

/// Stops the glue, and with it every peer. Peers with
/// `enableGracefulRestart` are left for a restart: their sessions close
/// without a Cease, so they keep the routes while the agent restarts, and
/// the answer is the addresses to leave delivered meanwhile. Otherwise
/// this node drains: its routes get the GRACEFUL_SHUTDOWN community (RFC
/// 8326) and the lowest LOCAL_PREF, its record says it drains, and once
/// the mesh shows other nodes announcing each of its addresses (or after
/// the drain timeout) it withdraws them, keeps its sessions and addresses
/// for [`WITHDRAW_LINGER`] while the routers converge, and ceases; the
/// answer is then empty.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "BTreeSet<IpAddr>")]
pub struct Stop;

/// `routes` marked for a graceful shutdown (RFC 8326): the community, and
/// the lowest LOCAL_PREF (sent to iBGP peers only).
fn graceful_shutdown(routes: &Routes) -> Routes {
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

impl actix::Handler<Stop> for BgpActor {
    type Result = actix::ResponseActFuture<Self, BTreeSet<IpAddr>>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        let restarting = self.peers.values().any(|p| p.peer.graceful_restart);
        let announcing = self.announcing();
        if restarting || announcing.is_empty() || self.draining {
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
        self.draining = true;
        self.publish(ctx);
        if let Some(plan) = &self.applied {
            for (name, running) in &self.peers {
                if let Some(planned) = plan.peers.get(name) {
                    let routes = planned.deliverable_routes(&self.deliverable);
                    running.addr.do_send(SetRoutes(graceful_shutdown(&routes)));
                }
            }
        }
        let hub = self.inputs.hub.clone();
        let node = self.options.node.clone();
        let timeout = self.inputs.drain_timeout;
        let covered = async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if announced_elsewhere(&hub.mesh().get(), &node, &announcing) {
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
        };
        Box::pin(covered.into_actor(self).then(|covered, actor, _ctx| {
            if covered {
                tracing::info!("BGP drain: other nodes announce every address; withdrawing");
            } else {
                tracing::warn!("BGP drain: not every address is announced elsewhere; withdrawing anyway");
            }
            for running in actor.peers.values() {
                running.addr.do_send(SetRoutes(BTreeMap::new()));
            }
            tokio::time::sleep(WITHDRAW_LINGER)
                .into_actor(actor)
                .map(|(), _actor, ctx| {
                    actix::ActorContext::stop(ctx);
                    BTreeSet::new()
                })
        }))
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
        self.publish(ctx);
        self.report();
    }
}

impl actix::Handler<NeighborFound> for BgpActor {
    type Result = ();

    /// An unnumbered peer's address is known, or changed: its sessions
    /// (re)start there.
    fn handle(&mut self, found: NeighborFound, ctx: &mut Context<Self>) {
        let Some(neighbor) = self.neighbors.get_mut(&found.interface) else {
            return;
        };
        if neighbor.address == Some(found.address) {
            return;
        }
        neighbor.address = Some(found.address);
        let moved: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, running)| running.peer.endpoint == PeerEndpoint::Interface(found.interface.clone()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in moved {
            if let Some(running) = self.peers.remove(&name) {
                tracing::info!(
                    peer = name,
                    "BGP peer restarting: the peer's link-local address changed"
                );
                running.addr.do_send(StopPeer { for_restart: false });
                self.negotiated.remove(&name);
            }
        }
        if self.draining {
            return;
        }
        if let Some(plan) = self.applied.clone() {
            self.apply(plan, ctx);
            self.publish(ctx);
            self.detect(&self.inputs.hub.running().get().inventory.config);
        }
    }
}

/// What the glue hears: the running configuration changed, or the
/// addresses the node delivers did.
enum Heard {
    Replan,
    Deliverable(BTreeSet<IpAddr>),
}

impl StreamHandler<Heard> for BgpActor {
    fn handle(&mut self, heard: Heard, ctx: &mut Context<Self>) {
        match heard {
            Heard::Replan => self.replan(ctx),
            Heard::Deliverable(deliverable) => {
                self.deliverable = deliverable;
                if !self.draining {
                    self.send_routes();
                    self.publish(ctx);
                }
            }
        }
    }
}

impl Actor for BgpActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::from_changes(self.inputs.hub.running().watch()).map(|_| Heard::Replan));
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
            let for_restart = running.peer.graceful_restart;
            tracing::info!(peer = name, for_restart, "BGP peer stopping");
            running.addr.do_send(StopPeer { for_restart });
        }
    }
}

/// Whether this node forwards IP packets of `peer`'s family (what loops
/// a peer's BFD Echo packets back to it).
fn forwards(peer: IpAddr) -> bool {
    let sysctl = match peer {
        IpAddr::V4(_) => "/proc/sys/net/ipv4/ip_forward",
        IpAddr::V6(_) => "/proc/sys/net/ipv6/conf/all/forwarding",
    };
    std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "1")
}

/// This node's IPv4 address for the BGP identifier: the gossip address's
/// when it is IPv4.
pub fn router_id_from(bind: SocketAddr) -> Option<Ipv4Addr> {
    match bind.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlb_gossip::identity::NodeId;
    use meshlb_gossip::mesh::MemberView;
    use meshlb_gossip::record::NodeRecord;

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

    /// A drain waits for members other than this one, neither draining nor
    /// leaving, to announce each address.
    #[test]
    fn addresses_count_as_announced_elsewhere_only_by_staying_members() {
        let wanted: BTreeSet<IpAddr> = ["203.0.113.20".parse().unwrap(), "203.0.113.21".parse().unwrap()].into();
        let mesh = |members: Vec<MemberView>| MeshStatus {
            members,
            ..MeshStatus::default()
        };
        let both = ["203.0.113.20", "203.0.113.21"];
        assert!(!announced_elsewhere(
            &mesh(vec![member("n1", 1, &both, true, false)]),
            "n1",
            &wanted
        ));
        assert!(announced_elsewhere(
            &mesh(vec![
                member("n1", 1, &both, true, false),
                member("n2", 2, &["203.0.113.20"], false, false),
                member("n3", 3, &["203.0.113.21"], false, false),
            ]),
            "n1",
            &wanted
        ));
        assert!(!announced_elsewhere(
            &mesh(vec![
                member("n2", 2, &both, true, false),
                member("n3", 3, &both, false, true),
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
