//! The peer actor: one per BGP peer of this node. Thin glue that owns the
//! peer's TCP connections and runs a [`Connections`] core and a [`RibOut`]
//! against them: it connects when the core says so (with the MD5 key and
//! TTL set on the socket first, [`crate::bgp::socket`]), takes the
//! connections the peer opens ([`Accepted`], from the listener), frames
//! what it reads and hands each message to the core under its
//! connection's number, writes what the core sends (in order, from a
//! writer task per connection), keeps the core's next timer as one pending
//! `run_later`, and once the session is established sends the routes it is
//! given ([`SetRoutes`]) as UPDATE diffs, then End-of-RIB per family. A
//! route refresh request the core passes on is answered with the family's
//! routes as sent ([`RibOut::readvertise`]), the requests of 50 ms
//! together. [`Flush`] tells the glue when what it sent before has been
//! turned into UPDATEs.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Recipient, SpawnHandle, StreamHandler,
    WrapFuture,
};
use futures_util::StreamExt;
use meshlb_config::secret::Md5Key;
use meshlb_wire::bgp::notification::cease_subcode;
use meshlb_wire::bgp::{Family, Framer, Message, RouteRefresh, SessionParams, Update, route_refresh_subtype};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::bfd::actor::BfdStatus;
use crate::bgp::connections::{Action, ConnectionId, Connections};
use crate::bgp::rib_out::{Peering, RibOut, Routes};
use crate::bgp::session::{CloseReason, Direction, Input, Negotiated, SessionConfig};
use crate::now;

/// Bytes read at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The TTL policy of a session's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hops {
    /// The system default (iBGP).
    Default,
    /// A directly connected eBGP neighbour: TTL 1.
    Direct,
    /// ebgpMultiHop: TTL 255.
    Multihop,
    /// GTSM (RFC 5082): TTL 255 sent, 255 required.
    Security,
}

/// Where and how the peer is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The BGPPeer's name (for logs).
    pub name: String,
    /// The peer's address and port.
    pub address: SocketAddr,
    /// The local address to connect from, if set.
    pub source: Option<IpAddr>,
    /// The TCP MD5 key, if any.
    pub md5: Option<Md5Key>,
    /// TTL policy.
    pub hops: Hops,
    /// The session's terms.
    pub session: SessionConfig,
}

/// The routes the peer should have (replacing the previous set).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct SetRoutes(pub Routes);

/// Answered once every message sent to the actor before it is handled:
/// the UPDATEs they made are queued for the connection's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Stops the session and the actor: with a Cease (Administrative
/// Shutdown), so the peer withdraws the routes at once, or, for a graceful
/// restart of this speaker, by closing the connection, so a peer that
/// helps (RFC 4724) keeps them until the restarted speaker is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct StopPeer {
    /// Whether this is a graceful restart.
    pub for_restart: bool,
}

/// The session came up or went down (to the actor's observer).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct SessionState {
    /// The BGPPeer's name.
    pub peer: String,
    /// The number the observer gave this actor: a stopped actor's last
    /// word can arrive after its successor's first.
    pub instance: u64,
    /// What was negotiated, while the session is established (`None`:
    /// it is not).
    pub negotiated: Option<Negotiated>,
    /// Messages sent over the actor's life, by type.
    pub sent: MessageCounts,
    /// Messages received over the actor's life, by type.
    pub received: MessageCounts,
}

/// BGP messages by type: what FRR counts per neighbor, and MetalLB's
/// metrics give (`metallb_bgp_opens_sent`, `..._updates_total`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// OPEN messages.
    pub opens: u64,
    /// UPDATE messages (End-of-RIB markers included).
    pub updates: u64,
    /// NOTIFICATION messages.
    pub notifications: u64,
    /// KEEPALIVE messages.
    pub keepalives: u64,
    /// ROUTE-REFRESH messages.
    pub route_refreshes: u64,
}

impl MessageCounts {
    /// Counts `message`.
    pub fn count(&mut self, message: &Message) {
        let counter = match message {
            Message::Open(_) => &mut self.opens,
            Message::Update(_) => &mut self.updates,
            Message::Notification(_) => &mut self.notifications,
            Message::Keepalive => &mut self.keepalives,
            Message::RouteRefresh(_) => &mut self.route_refreshes,
        };
        *counter += 1;
    }

    /// Messages of every type.
    pub fn total(&self) -> u64 {
        self.opens + self.updates + self.notifications + self.keepalives + self.route_refreshes
    }
}

/// How long route refresh requests gather before they are answered
/// together: a burst of them costs one re-advertisement.
const REFRESH_COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

/// How often changed message counts are told to the observer.
const COUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A connection the peer opened to this node, from the listener
/// ([`crate::bgp::listener`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Accepted(pub tokio::net::TcpStream);

/// What a connection's reader yields.
enum Inbound {
    /// One whole message's bytes.
    Frame(Vec<u8>),
    /// The byte stream broke the framing rules.
    Malformed(meshlb_wire::bgp::BgpError),
    /// The connection closed or failed.
    Closed,
}

/// A connection's halves as the actor holds them.
struct Connection {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: SpawnHandle,
    direction: Direction,
    /// This node's next hops on the connection's interface.
    next_hops: NextHops,
}

/// The next hops this node gives its routes on one connection: the
/// connection's own address for its family, and for the other family
/// (`dualStackAddressFamily`) an address of that family on the same
/// interface; for IPv6, beside the global address, the interface's
/// link-local one when the peer is on that link (RFC 2545 section 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NextHops {
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<(Ipv6Addr, Option<Ipv6Addr>)>,
}

/// The peer actor. See the module documentation.
pub struct PeerActor {
    config: PeerConfig,
    core: Connections,
    rib: RibOut,
    wanted: Routes,
    connections: BTreeMap<ConnectionId, Connection>,
    next_connection: ConnectionId,
    attempt: Option<SpawnHandle>,
    timer: Option<SpawnHandle>,
    observer: Option<(Recipient<SessionState>, u64)>,
    /// Messages sent so far, by type.
    sent: MessageCounts,
    /// Messages received so far, by type.
    received: MessageCounts,
    /// The counts last told to the observer.
    told: (MessageCounts, MessageCounts),
    /// The families the peer asked to be sent again, answered together
    /// after [`REFRESH_COALESCE`].
    refresh_pending: BTreeSet<Family>,
}

impl PeerActor {
    /// An actor for `config`.
    pub fn new(config: PeerConfig) -> PeerActor {
        PeerActor {
            core: Connections::new(config.session.clone()),
            config,
            rib: RibOut::new(),
            wanted: BTreeMap::new(),
            connections: BTreeMap::new(),
            next_connection: 1,
            attempt: None,
            timer: None,
            observer: None,
            sent: MessageCounts::default(),
            received: MessageCounts::default(),
            told: (MessageCounts::default(), MessageCounts::default()),
            refresh_pending: BTreeSet::new(),
        }
    }

    /// Tells `observer` whenever the session comes up or goes down, as
    /// actor number `instance`.
    pub fn observed_by(mut self, observer: Recipient<SessionState>, instance: u64) -> PeerActor {
        self.observer = Some((observer, instance));
        self
    }

    fn tell_observer(&mut self, negotiated: Option<&Negotiated>) {
        if let Some((observer, instance)) = &self.observer {
            observer.do_send(SessionState {
                peer: self.config.name.clone(),
                instance: *instance,
                negotiated: negotiated.cloned(),
                sent: self.sent,
                received: self.received,
            });
        }
        self.told = (self.sent, self.received);
    }

    /// Carries out what the core asked, and reschedules its timer.
    fn act(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Connect => self.connect(ctx),
                Action::AbandonAttempt(reason) => {
                    if let Some(attempt) = self.attempt.take() {
                        ctx.cancel_future(attempt);
                    }
                    if reason == CloseReason::ConnectTimeout && self.config.md5.is_some() {
                        tracing::warn!(
                            peer = self.config.name,
                            "BGP connection attempt timed out; with a TCP MD5 password, a wrong password on \
                             either side looks like this (the kernel drops unsigned or wrongly signed segments)"
                        );
                    } else if reason == CloseReason::ConnectTimeout {
                        tracing::info!(peer = self.config.name, "BGP connection attempt: {reason}");
                    }
                }
                Action::Send(connection, message) => self.send(connection, &message),
                Action::RefreshRequested(family) => {
                    // The first request of a burst schedules the answer;
                    // the rest join it.
                    if self.refresh_pending.is_empty() {
                        ctx.run_later(REFRESH_COALESCE, |actor, _ctx| actor.refresh());
                    }
                    self.refresh_pending.insert(family);
                }
                Action::Established(connection, negotiated) => {
                    tracing::info!(
                        peer = self.config.name,
                        peer_as = negotiated.peer_as,
                        connection = self.describe(connection),
                        "BGP session established"
                    );
                    self.rib = RibOut::new();
                    self.send_table(&negotiated, true);
                    self.tell_observer(Some(&negotiated));
                }
                Action::Close {
                    connection,
                    reason,
                    established,
                } => {
                    if established && reason == CloseReason::Stopped {
                        tracing::info!(peer = self.config.name, "BGP session closed: {reason}");
                    } else if established {
                        tracing::warn!(peer = self.config.name, "BGP session down: {reason}");
                    } else {
                        tracing::info!(
                            peer = self.config.name,
                            connection = self.describe(connection),
                            "BGP connection closed: {reason}"
                        );
                    }
                    if let Some(closed) = self.connections.remove(&connection) {
                        ctx.cancel_future(closed.reader);
                    }
                    if established {
                        self.tell_observer(None);
                    }
                }
            }
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = self.core.poll_timeout() {
            let delay = at.saturating_duration_since(now());
            self.timer = Some(ctx.run_later(delay, |actor, ctx| {
                actor.timer = None;
                actor.core.handle_timeout(now());
                actor.act(ctx);
            }));
        }
    }

    /// Who opened a connection, for logs.
    fn describe(&self, connection: ConnectionId) -> &'static str {
        match self.connections.get(&connection).map(|c| c.direction) {
            Some(Direction::Outgoing) => "to the peer",
            Some(Direction::Incoming) => "from the peer",
            None => "gone",
        }
    }

    /// How routes are sent on the established session, if there is one.
    fn peering(&self, negotiated: &Negotiated) -> Option<Peering> {
        let next_hops = self
            .core
            .established_on()
            .and_then(|c| self.connections.get(&c))
            .map(|c| c.next_hops)?;
        Some(Peering {
            local_as: self.config.session.local_as,
            internal: negotiated.is_internal(self.config.session.local_as),
            families: negotiated.families.clone(),
            params: negotiated.params,
            next_hop_v4: next_hops.v4,
            next_hop_v6: next_hops.v6,
            ipv4_over_ipv6: negotiated.ipv4_over_ipv6,
        })
    }

    /// Answers the pending route refresh requests: each family's routes
    /// as sent, between Beginning- and End-of-Route-Refresh markers when
    /// the session has enhanced route refresh (RFC 7313).
    fn refresh(&mut self) {
        let families = std::mem::take(&mut self.refresh_pending);
        let Some(negotiated) = self.core.session().negotiated().cloned() else {
            return;
        };
        let Some(peering) = self.peering(&negotiated) else {
            return;
        };
        tracing::debug!(peer = self.config.name, ?families, "BGP route refresh");
        let now = now();
        for family in families {
            let mut messages: Vec<Message> = self
                .rib
                .readvertise(family, &peering)
                .into_iter()
                .map(Message::Update)
                .collect();
            if negotiated.enhanced_route_refresh {
                messages.insert(
                    0,
                    Message::RouteRefresh(RouteRefresh::new(family, route_refresh_subtype::BEGIN)),
                );
                messages.push(Message::RouteRefresh(RouteRefresh::new(
                    family,
                    route_refresh_subtype::END,
                )));
            }
            for message in messages {
                self.send_routing(now, message);
            }
        }
    }

    /// Sends an UPDATE or a ROUTE-REFRESH on the established session.
    fn send_routing(&mut self, now: Instant, message: Message) {
        self.core.send_routing(message, now);
        // Sending on the established session asks for nothing else.
        while let Some(action) = self.core.poll_action() {
            if let Action::Send(connection, message) = action {
                self.send(connection, &message);
            }
        }
    }

    /// The UPDATEs taking the peer to the wanted routes; with `initial`,
    /// End-of-RIB for every family after them (RFC 4724). Whether any
    /// went out.
    fn send_table(&mut self, negotiated: &Negotiated, initial: bool) -> bool {
        let Some(peering) = self.peering(negotiated) else {
            return false;
        };
        let (updates, unsendable) = self.rib.updates_to(&self.wanted, &peering);
        for route in unsendable {
            tracing::warn!(peer = self.config.name, "{route}");
        }
        let end_of_rib: Vec<Update> = if initial {
            negotiated.families.iter().copied().map(Update::end_of_rib).collect()
        } else {
            Vec::new()
        };
        let now = now();
        let before = self.sent.updates;
        for update in updates.into_iter().chain(end_of_rib) {
            self.send_routing(now, Message::Update(update));
        }
        self.sent.updates != before
    }

    fn send(&mut self, connection: ConnectionId, message: &Message) {
        let params = self
            .core
            .session()
            .negotiated()
            .map_or(SessionParams::FOUR_OCTET_AS, |n| n.params);
        match message.encode(&params) {
            Ok(bytes) => {
                if let Some(connection) = self.connections.get(&connection) {
                    // A closed writer shows as the reader's close.
                    let _ = connection.writer.send(bytes);
                    self.sent.count(message);
                }
            }
            Err(e) => tracing::error!(peer = self.config.name, "cannot encode a message: {e}"),
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if let Some(attempt) = self.attempt.take() {
            ctx.cancel_future(attempt);
        }
        let config = self.config.clone();
        let attempt = async move { connect(&config).await }
            .into_actor(self)
            .map(|result, actor, ctx| {
                actor.attempt = None;
                match result {
                    Ok(stream) => actor.connected(stream, Direction::Outgoing, ctx),
                    Err(e) => {
                        tracing::debug!(peer = actor.config.name, "connect: {e}");
                        actor.core.attempt_failed(now());
                        actor.act(ctx);
                    }
                }
            });
        self.attempt = Some(ctx.spawn(attempt));
    }

    /// Takes a connection up, opened by `direction`, and tells the core.
    fn connected(&mut self, stream: tokio::net::TcpStream, direction: Direction, ctx: &mut Context<Self>) {
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::warn!(peer = self.config.name, "connected, but: {e}");
                if direction == Direction::Outgoing {
                    self.core.attempt_failed(now());
                    self.act(ctx);
                }
                return;
            }
        };
        let next_hops = next_hops_beside(local.ip(), self.config.address.ip(), &host_addresses());
        let id = self.next_connection;
        self.next_connection += 1;
        let (read, write) = stream.into_split();
        let (writer, queue) = mpsc::unbounded_channel();
        actix::spawn(write_all(write, queue));
        let reader = ctx.add_stream(frames(read).map(move |inbound| (id, inbound)));
        self.connections.insert(
            id,
            Connection {
                writer,
                reader,
                direction,
                next_hops,
            },
        );
        self.core.connected(id, direction, now());
        self.act(ctx);
    }
}

/// One address of this node: its interface and netmask.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostAddress {
    interface: String,
    address: IpAddr,
    netmask: Option<IpAddr>,
}

/// This node's addresses now (none if they cannot be read).
fn host_addresses() -> Vec<HostAddress> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let ip = |address: &nix::sys::socket::SockaddrStorage| -> Option<IpAddr> {
        address
            .as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| address.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    };
    addresses
        .filter_map(|a| {
            Some(HostAddress {
                address: ip(a.address.as_ref()?)?,
                netmask: a.netmask.as_ref().and_then(ip),
                interface: a.interface_name,
            })
        })
        .collect()
}

/// The next hops on the interface holding `own` (the connection's local
/// address) for a session with `peer`, among this node's `addresses`: see
/// [`NextHops`]. Without the interface's addresses, `own` alone.
fn next_hops_beside(own: IpAddr, peer: IpAddr, addresses: &[HostAddress]) -> NextHops {
    let mut hops = NextHops::default();
    match own {
        IpAddr::V4(v4) => hops.v4 = Some(v4),
        IpAddr::V6(v6) => hops.v6 = Some((v6, None)),
    }
    let Some(holder) = addresses.iter().find(|a| a.address == own) else {
        return hops;
    };
    let on_interface = || {
        addresses
            .iter()
            .filter(|a| a.interface == holder.interface)
            .map(|a| a.address)
    };
    let on_link = match (own, peer, holder.netmask) {
        (IpAddr::V4(own), IpAddr::V4(peer), Some(IpAddr::V4(mask))) => {
            u32::from(own) & u32::from(mask) == u32::from(peer) & u32::from(mask)
        }
        (IpAddr::V6(own), IpAddr::V6(peer), Some(IpAddr::V6(mask))) => {
            u128::from(own) & u128::from(mask) == u128::from(peer) & u128::from(mask)
        }
        _ => false,
    };
    if hops.v4.is_none() {
        hops.v4 = on_interface().find_map(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
    }
    // A session between link-local addresses (unnumbered) still gives
    // the interface's global address first when it has one.
    let own_global = hops.v6.map(|(g, _)| g).filter(|g| !g.is_unicast_link_local());
    let global = own_global
        .or_else(|| {
            on_interface().find_map(|a| match a {
                IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(v6),
                _ => None,
            })
        })
        .or(hops.v6.map(|(g, _)| g));
    let link_local = on_link
        .then(|| {
            on_interface().find_map(|a| match a {
                IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                _ => None,
            })
        })
        .flatten();
    // Only a link-local address: it goes alone (16 octets, RFC 8950).
    hops.v6 = global.map(|g| (g, link_local.filter(|ll| *ll != g)));
    hops
}

/// A connected socket to the peer, with the key and TTL set before the
/// SYN goes out.
async fn connect(config: &PeerConfig) -> io::Result<tokio::net::TcpStream> {
    let peer = config.address.ip();
    let socket = Socket::new(Domain::for_address(config.address), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(key) = &config.md5 {
        crate::bgp::socket::set_md5_key(&socket, peer, Some(key))?;
    }
    set_hops(&socket, peer, config.hops)?;
    if let Some(source) = config.source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(config.address).await
}

/// The TTL policy `hops` on a socket to `peer`.
fn set_hops(socket: &Socket, peer: IpAddr, hops: Hops) -> io::Result<()> {
    match hops {
        Hops::Default => Ok(()),
        Hops::Direct => crate::bgp::socket::set_ttl(socket, peer, 1),
        Hops::Multihop => crate::bgp::socket::set_ttl(socket, peer, 255),
        Hops::Security => crate::bgp::socket::set_ttl_security(socket, peer, 1),
    }
}

/// Writes what `queue` brings, in order, until it closes or a write fails.
async fn write_all(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(bytes) = queue.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// The messages read from `read`, framed; ends after a close or a framing
/// error.
fn frames(read: OwnedReadHalf) -> impl futures_util::Stream<Item = Inbound> {
    futures_util::stream::unfold(Some((read, Framer::new())), |state| async move {
        let (mut read, mut framer) = state?;
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => return Some((Inbound::Frame(frame.to_vec()), Some((read, framer)))),
                Ok(None) => {}
                Err(e) => return Some((Inbound::Malformed(e), None)),
            }
            let mut buf = vec![0u8; READ_CHUNK];
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return Some((Inbound::Closed, None)),
                Ok(n) => framer.push(&buf[..n]),
            }
        }
    })
}

impl StreamHandler<(ConnectionId, Inbound)> for PeerActor {
    fn handle(&mut self, (connection, item): (ConnectionId, Inbound), ctx: &mut Context<Self>) {
        let input = match item {
            Inbound::Frame(frame) => {
                let params = self
                    .core
                    .session()
                    .negotiated()
                    .map_or(SessionParams::FOUR_OCTET_AS, |n| n.params);
                match Message::decode(&frame, &params) {
                    Ok(Message::Update(update)) if !update.issues.is_empty() => {
                        // RFC 7606: treat-as-withdraw or attribute-discard,
                        // never the session (received routes are not
                        // installed anyway).
                        for issue in &update.issues {
                            tracing::info!(
                                peer = self.config.name,
                                ?issue.action,
                                "a malformed UPDATE from the peer, contained: {}",
                                issue.reason
                            );
                        }
                        self.received.updates += 1;
                        Input::Message(Message::Update(update))
                    }
                    Ok(message) => {
                        self.received.count(&message);
                        Input::Message(message)
                    }
                    Err(e) => {
                        tracing::warn!(
                            peer = self.config.name,
                            "a malformed message from the peer: {}",
                            e.reason
                        );
                        Input::DecodeError(e)
                    }
                }
            }
            Inbound::Malformed(e) => Input::DecodeError(e),
            Inbound::Closed => {
                self.connections.remove(&connection);
                Input::TcpConnectionFails
            }
        };
        self.core.handle_input(connection, input, now());
        self.act(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // A connection's end is reported by its last item; the actor lives
        // on to reconnect.
    }
}

impl Handler<SetRoutes> for PeerActor {
    type Result = ();

    fn handle(&mut self, routes: SetRoutes, ctx: &mut Context<Self>) {
        self.wanted = routes.0;
        if let Some(negotiated) = self.core.session().negotiated().cloned()
            && self.core.established_on().is_some()
            && self.send_table(&negotiated, false)
        {
            self.tell_observer(Some(&negotiated));
        }
        self.act(ctx);
    }
}

impl Handler<Flush> for PeerActor {
    type Result = ();

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {}
}

impl Handler<BfdStatus> for PeerActor {
    type Result = ();

    /// The path to the peer failed: the session goes down now, not at the
    /// hold time.
    fn handle(&mut self, status: BfdStatus, ctx: &mut Context<Self>) {
        if !status.up {
            let reason = format!("BFD: the path to the peer is down ({:?})", status.diagnostic);
            self.core.cease(cease_subcode::BFD_DOWN, &reason, now());
            self.act(ctx);
        }
    }
}

impl Handler<Accepted> for PeerActor {
    type Result = ();

    fn handle(&mut self, Accepted(stream): Accepted, ctx: &mut Context<Self>) {
        if let Err(e) = set_hops(
            &socket2::SockRef::from(&stream),
            self.config.address.ip(),
            self.config.hops,
        ) {
            tracing::warn!(peer = self.config.name, "a connection from the peer refused: {e}");
            return;
        }
        self.connected(stream, Direction::Incoming, ctx);
    }
}

impl Handler<StopPeer> for PeerActor {
    type Result = ();

    fn handle(&mut self, stop: StopPeer, ctx: &mut Context<Self>) {
        self.core.stop(stop.for_restart, now());
        self.act(ctx);
        ctx.stop();
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(peer = self.config.name, address = %self.config.address, "BGP peer starting");
        self.core.start(now());
        self.act(ctx);
        // Message counts move with every keepalive: told at most this often.
        ctx.run_interval(COUNTS_EVERY, |actor, _ctx| {
            if actor.told != (actor.sent, actor.received) {
                let negotiated = actor
                    .core
                    .established_on()
                    .and_then(|_| actor.core.session().negotiated().cloned());
                actor.tell_observer(negotiated.as_ref());
            }
        });
    }
}

/// The families a session offers for a peer at `address`: its own, and
/// the other too with `dual_stack` (BGPPeer `dualStackAddressFamily`).
pub fn families_for(address: IpAddr, dual_stack: bool) -> Vec<Family> {
    let own = match address {
        IpAddr::V4(_) => Family::IPV4_UNICAST,
        IpAddr::V6(_) => Family::IPV6_UNICAST,
    };
    if dual_stack {
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    } else {
        vec![own]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::time::Duration;

    use meshlb_wire::bgp::notification::{code, fsm_subcode, header_subcode};
    use meshlb_wire::bgp::{Capability, Open};

    use crate::bgp::session::PeerAs;

    const PEER_AS: u32 = 64512;
    const LOCAL_AS: u32 = 64513;

    fn host(interface: &str, address: &str, netmask: &str) -> HostAddress {
        HostAddress {
            interface: interface.into(),
            address: address.parse().unwrap(),
            netmask: Some(netmask.parse().unwrap()),
        }
    }

    /// The next hops come from the interface holding the session's local
    /// address: its other family's address, its global IPv6 address first
    /// and its link-local one beside it only towards a peer on the link.
    #[test]
    fn next_hops_are_the_session_interfaces_addresses() {
        let addresses = [
            host("eth0", "198.51.100.10", "255.255.255.0"),
            host("eth0", "2001:db8::10", "ffff:ffff:ffff:ffff::"),
            host("eth0", "fe80::10", "ffff:ffff:ffff:ffff::"),
            host("eth1", "203.0.113.10", "255.255.255.0"),
            host("eth1", "fe80::99", "ffff:ffff:ffff:ffff::"),
        ];
        let ip = |a: &str| -> IpAddr { a.parse().unwrap() };
        let v6 = |a: &str| -> Ipv6Addr { a.parse().unwrap() };
        let on_link = next_hops_beside(ip("2001:db8::10"), ip("2001:db8::1"), &addresses);
        assert_eq!(on_link.v4, Some("198.51.100.10".parse().unwrap()));
        assert_eq!(on_link.v6, Some((v6("2001:db8::10"), Some(v6("fe80::10")))));
        let far = next_hops_beside(ip("2001:db8::10"), ip("2001:db8:ffff::1"), &addresses);
        assert_eq!(
            far.v6,
            Some((v6("2001:db8::10"), None)),
            "no link-local beyond the link"
        );
        let over_v4 = next_hops_beside(ip("203.0.113.10"), ip("203.0.113.1"), &addresses);
        assert_eq!(over_v4.v4, Some("203.0.113.10".parse().unwrap()));
        assert_eq!(over_v4.v6, None, "eth1 has no global IPv6 address");
        let unnumbered = next_hops_beside(ip("fe80::99"), ip("fe80::1"), &addresses);
        assert_eq!(
            unnumbered.v6,
            Some((v6("fe80::99"), None)),
            "a link-local address alone"
        );
        assert_eq!(unnumbered.v4, Some("203.0.113.10".parse().unwrap()));
        let unknown = next_hops_beside(ip("192.0.2.5"), ip("192.0.2.1"), &addresses);
        assert_eq!(unknown.v4, Some("192.0.2.5".parse().unwrap()));
        assert_eq!(unknown.v6, None, "an address of no interface: itself alone");
    }

    fn read_message(stream: &mut TcpStream) -> Option<Message> {
        let mut header = [0u8; 19];
        stream.read_exact(&mut header).ok()?;
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut frame = header.to_vec();
        frame.resize(len.max(19), 0);
        stream.read_exact(&mut frame[19..]).ok()?;
        Message::decode(&frame, &SessionParams::FOUR_OCTET_AS).ok()
    }

    fn send(stream: &mut TcpStream, message: &Message) {
        stream
            .write_all(&message.encode(&SessionParams::FOUR_OCTET_AS).unwrap())
            .unwrap();
    }

    /// The next NOTIFICATION the actor sends (KEEPALIVEs and UPDATEs
    /// skipped), as code and subcode; None if the connection ends first.
    fn notification(stream: &mut TcpStream) -> Option<(u8, u8)> {
        loop {
            match read_message(stream)? {
                Message::Notification(n) => return Some((n.code, n.subcode)),
                _ => continue,
            }
        }
    }

    /// Takes the actor's next connection through OPEN (and, unless
    /// `stop_in_open_confirm`, KEEPALIVE: established).
    fn handshake(listener: &TcpListener, stop_in_open_confirm: bool) -> TcpStream {
        handshake_offering(listener, stop_in_open_confirm, vec![])
    }

    /// [`handshake`], the peer's OPEN offering `capabilities` beside IPv4
    /// unicast.
    fn handshake_offering(
        listener: &TcpListener,
        stop_in_open_confirm: bool,
        capabilities: Vec<Capability>,
    ) -> TcpStream {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert!(matches!(read_message(&mut stream), Some(Message::Open(_))));
        let mut offered = vec![Capability::Multiprotocol(Family::IPV4_UNICAST)];
        offered.extend(capabilities);
        let open = Open::new(PEER_AS, 9, Ipv4Addr::new(192, 0, 2, 1), offered);
        send(&mut stream, &Message::Open(open));
        assert_eq!(read_message(&mut stream), Some(Message::Keepalive));
        if !stop_in_open_confirm {
            send(&mut stream, &Message::Keepalive);
        }
        stream
    }

    fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xff; 16];
        frame.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
        frame.push(kind);
        frame.extend_from_slice(body);
        frame
    }

    /// A scripted misbehaving peer on loopback: an UPDATE with a malformed
    /// attribute is contained (RFC 7606, the session stays up); a bad
    /// marker, an oversized message and an UPDATE in OpenConfirm get their
    /// NOTIFICATION (RFC 4271 sections 6.1 and 6.6), and each time the
    /// actor reconnects and the session recovers.
    /// The actor's configuration for a scripted peer on `port` of loopback.
    fn scripted(port: u16) -> PeerConfig {
        PeerConfig {
            name: "scripted".into(),
            address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            source: None,
            md5: None,
            hops: Hops::Default,
            session: SessionConfig {
                local_as: LOCAL_AS,
                peer_as: PeerAs::Exact(PEER_AS),
                router_id: Ipv4Addr::new(192, 0, 2, 11),
                hold_time: 9,
                keepalive_time: None,
                connect_retry: Duration::from_secs(2),
                passive: false,
                families: vec![Family::IPV4_UNICAST],
                route_refresh: true,
                extended_next_hop: false,
                graceful_restart: None,
            },
        }
    }

    /// The actor for `config`, on a system of its own; the system (to
    /// stop), its thread, and the actor's address.
    fn run_actor(config: PeerConfig) -> (actix::System, std::thread::JoinHandle<()>, actix::Addr<PeerActor>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let actors = std::thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(async {
                let addr = PeerActor::new(config).start();
                tx.send((actix::System::current(), addr)).unwrap();
            });
            system.run().unwrap();
        });
        let (system, addr) = rx.recv().unwrap();
        (system, actors, addr)
    }

    #[test]
    fn a_misbehaving_peer_gets_the_rfcs_answers_and_the_session_recovers() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (system, actors, _) = run_actor(scripted(port));

        // ORIGIN 7 (no such origin): treat-as-withdraw, no NOTIFICATION.
        let mut stream = handshake(&listener, false);
        let mut body = vec![0, 0];
        let attributes = [
            0x40, 1, 1, 7, // ORIGIN, invalid
            0x40, 2, 0, // AS_PATH, empty
            0x40, 3, 4, 192, 0, 2, 1, // NEXT_HOP
        ];
        body.extend_from_slice(&u16::try_from(attributes.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&attributes);
        body.extend_from_slice(&[24, 203, 0, 113]);
        stream.write_all(&raw(2, &body)).unwrap();
        send(&mut stream, &Message::Keepalive);
        stream.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
        let mut answers = Vec::new();
        while let Some(message) = read_message(&mut stream) {
            answers.push(message);
        }
        assert!(
            !answers.iter().any(|m| matches!(m, Message::Notification(_))),
            "contained, not a reset: {answers:?}"
        );

        // A bad marker: Connection Not Synchronized.
        let mut frame = raw(4, &[]);
        frame[3] = 0;
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&frame).unwrap();
        assert_eq!(
            notification(&mut stream),
            Some((code::MESSAGE_HEADER, header_subcode::CONNECTION_NOT_SYNCHRONIZED))
        );

        // A message longer than 4,096 octets: Bad Message Length.
        let mut stream = handshake(&listener, false);
        let mut frame = raw(2, &[]);
        frame[16..18].copy_from_slice(&5000u16.to_be_bytes());
        stream.write_all(&frame).unwrap();
        assert_eq!(
            notification(&mut stream),
            Some((code::MESSAGE_HEADER, header_subcode::BAD_MESSAGE_LENGTH))
        );

        // An UPDATE in OpenConfirm: the FSM error of that state.
        let mut stream = handshake(&listener, true);
        send(&mut stream, &Message::Update(Update::default()));
        assert_eq!(
            notification(&mut stream),
            Some((code::FSM, fsm_subcode::UNEXPECTED_IN_OPEN_CONFIRM))
        );

        // And the session recovers: established again, End-of-RIB sent.
        let mut stream = handshake(&listener, false);
        let end_of_rib = Update::end_of_rib(Family::IPV4_UNICAST);
        let mut seen = Vec::new();
        while let Some(message) = read_message(&mut stream) {
            let done = message == Message::Update(end_of_rib.clone());
            seen.push(message);
            if done {
                break;
            }
        }
        assert!(seen.contains(&Message::Update(end_of_rib)), "{seen:?}");
        system.stop();
        actors.join().unwrap();
    }

    /// Route refresh (RFC 2918, RFC 7313): a burst of a thousand requests
    /// is answered once, or a few times, never a thousand: the routes
    /// between Beginning- and End-of-Route-Refresh markers; a request for
    /// a family the session does not carry is ignored; the session stays.
    #[test]
    fn a_burst_of_refresh_requests_is_answered_with_the_routes_a_few_times() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (system, actors, addr) = run_actor(scripted(port));
        let prefix = crate::bgp::rib_out::RoutePrefix::V4(
            meshlb_wire::bgp::Prefix4::new(Ipv4Addr::new(203, 0, 113, 20), 32).unwrap(),
        );
        addr.do_send(SetRoutes([(prefix, Default::default())].into()));
        let mut stream = handshake_offering(&listener, false, vec![Capability::EnhancedRouteRefresh]);
        let end_of_rib = Message::Update(Update::end_of_rib(Family::IPV4_UNICAST));
        while read_message(&mut stream).is_some_and(|m| m != end_of_rib) {}

        let request = |family| Message::RouteRefresh(RouteRefresh::new(family, route_refresh_subtype::REQUEST));
        send(&mut stream, &request(Family::IPV6_UNICAST));
        for _ in 0..1000 {
            send(&mut stream, &request(Family::IPV4_UNICAST));
        }
        stream.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
        let mut answers = Vec::new();
        while let Some(message) = read_message(&mut stream) {
            if message != Message::Keepalive {
                answers.push(message);
            }
        }
        let marker = |subtype| Message::RouteRefresh(RouteRefresh::new(Family::IPV4_UNICAST, subtype));
        let refreshes = answers.len() / 3;
        assert!((1..=5).contains(&refreshes), "{} messages: {answers:?}", answers.len());
        for answer in answers.chunks(3) {
            let [begin, Message::Update(update), end] = answer else {
                panic!("not BoRR, UPDATE, EoRR: {answer:?}");
            };
            assert_eq!(*begin, marker(route_refresh_subtype::BEGIN));
            assert_eq!(
                update.nlri,
                [meshlb_wire::bgp::Prefix4::new(Ipv4Addr::new(203, 0, 113, 20), 32).unwrap()]
            );
            assert_eq!(*end, marker(route_refresh_subtype::END));
        }
        send(&mut stream, &Message::Keepalive);
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_message(&mut stream), Some(Message::Keepalive), "still established");
        system.stop();
        actors.join().unwrap();
    }
}
