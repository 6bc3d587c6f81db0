//! The peer actor: one per BGP peer of this node. Thin glue that owns the
//! TCP connection and runs a [`Session`] and a [`RibOut`] against it: it
//! connects when the session says so (with the MD5 key and TTL set on the
//! socket first, [`crate::bgp::socket`]), frames what it reads and hands
//! each message to the session, writes what the session sends (in order,
//! from a writer task), keeps the session's next timer as one pending
//! `run_later`, and once the session is established sends the routes it is
//! given ([`SetRoutes`]) as UPDATE diffs, then End-of-RIB per family.
//!
//! Only outgoing connections so far: the peer (a router) is expected to
//! accept them, as MetalLB's speakers expect. Incoming connections (and
//! so collisions) come with the listener.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, SpawnHandle, StreamHandler, WrapFuture,
};
use meshlb_config::secret::Md5Key;
use meshlb_wire::bgp::{Family, Framer, Message, SessionParams, Update};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::bgp::rib_out::{Peering, RibOut, RouteAttributes, RoutePrefix};
use crate::bgp::session::{Input, Negotiated, Output, Session, SessionConfig, State};

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
pub struct SetRoutes(pub BTreeMap<RoutePrefix, RouteAttributes>);

/// Stops the session (Cease, Administrative Shutdown) and the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct StopPeer;

/// What the reader yields.
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
    local: SocketAddr,
}

/// The peer actor. See the module documentation.
pub struct PeerActor {
    config: PeerConfig,
    session: Session,
    rib: RibOut,
    wanted: BTreeMap<RoutePrefix, RouteAttributes>,
    connection: Option<Connection>,
    connecting: Option<SpawnHandle>,
    timer: Option<SpawnHandle>,
}

impl PeerActor {
    /// An actor for `config`.
    pub fn new(config: PeerConfig) -> PeerActor {
        PeerActor {
            session: Session::new(config.session.clone()),
            config,
            rib: RibOut::new(),
            wanted: BTreeMap::new(),
            connection: None,
            connecting: None,
            timer: None,
        }
    }

    fn input(&mut self, input: Input, ctx: &mut Context<Self>) {
        let outputs = self.session.handle(Instant::now(), input);
        self.act(outputs, ctx);
    }

    /// Carries out what the session asked, and reschedules its timer.
    fn act(&mut self, outputs: Vec<Output>, ctx: &mut Context<Self>) {
        for output in outputs {
            match output {
                Output::Connect => self.connect(ctx),
                Output::Send(message) => self.send(&message),
                Output::Established(negotiated) => {
                    tracing::info!(
                        peer = self.config.name,
                        peer_as = negotiated.peer_as,
                        "BGP session established"
                    );
                    self.rib = RibOut::new();
                    self.send_table(&negotiated, true);
                }
                Output::Closed { reason, established } => {
                    if established {
                        tracing::warn!(peer = self.config.name, "BGP session down: {reason}");
                    } else {
                        tracing::info!(peer = self.config.name, "BGP connection closed: {reason}");
                    }
                    self.close(ctx);
                }
            }
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = self.session.next_timeout() {
            let delay = at.saturating_duration_since(Instant::now());
            self.timer = Some(ctx.run_later(delay, |actor, ctx| {
                actor.timer = None;
                let outputs = actor.session.handle_timeout(Instant::now());
                actor.act(outputs, ctx);
            }));
        }
    }

    /// The UPDATEs taking the peer to the wanted routes; with `initial`,
    /// End-of-RIB for every family after them (RFC 4724).
    fn send_table(&mut self, negotiated: &Negotiated, initial: bool) {
        let Some(local) = self.connection.as_ref().map(|c| c.local) else {
            return;
        };
        let peering = Peering {
            local_as: self.config.session.local_as,
            internal: negotiated.is_internal(self.config.session.local_as),
            families: negotiated.families.clone(),
            params: negotiated.params,
            next_hop_v4: match local.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            },
            next_hop_v6: match local.ip() {
                IpAddr::V6(v6) => Some((v6, None)),
                IpAddr::V4(_) => None,
            },
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
        let now = Instant::now();
        for update in updates.into_iter().chain(end_of_rib) {
            let outputs = self.session.send_update(now, update);
            for output in outputs {
                if let Output::Send(message) = output {
                    self.send(&message);
                }
            }
        }
    }

    fn send(&self, message: &Message) {
        let params = self
            .session
            .negotiated()
            .map_or(SessionParams::FOUR_OCTET_AS, |n| n.params);
        match message.encode(&params) {
            Ok(bytes) => {
                if let Some(connection) = &self.connection {
                    // A closed writer shows as the reader's close.
                    let _ = connection.writer.send(bytes);
                }
            }
            Err(e) => tracing::error!(peer = self.config.name, "cannot encode a message: {e}"),
        }
    }

    /// Drops the connection (what was queued is still written) and any
    /// attempt under way.
    fn close(&mut self, ctx: &mut Context<Self>) {
        if let Some(connection) = self.connection.take() {
            ctx.cancel_future(connection.reader);
        }
        if let Some(attempt) = self.connecting.take() {
            ctx.cancel_future(attempt);
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.close(ctx);
        let config = self.config.clone();
        let attempt = async move { connect(&config).await }
            .into_actor(self)
            .map(|result, actor, ctx| {
                actor.connecting = None;
                match result {
                    Ok(stream) => actor.connected(stream, ctx),
                    Err(e) => {
                        tracing::debug!(peer = actor.config.name, "connect: {e}");
                        actor.input(Input::TcpConnectionFails, ctx);
                    }
                }
            });
        self.connecting = Some(ctx.spawn(attempt));
    }

    fn connected(&mut self, stream: tokio::net::TcpStream, ctx: &mut Context<Self>) {
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::warn!(peer = self.config.name, "connected, but: {e}");
                self.input(Input::TcpConnectionFails, ctx);
                return;
            }
        };
        let (read, write) = stream.into_split();
        let (writer, queue) = mpsc::unbounded_channel();
        actix::spawn(write_all(write, queue));
        let reader = ctx.add_stream(frames(read));
        self.connection = Some(Connection { writer, reader, local });
        self.input(Input::TcpConnectionConfirmed, ctx);
    }
}

/// A connected socket to the peer, with the key and TTL set before the
/// SYN goes out.
async fn connect(config: &PeerConfig) -> io::Result<tokio::net::TcpStream> {
    let peer = config.address.ip();
    let socket = Socket::new(Domain::for_address(config.address), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(key) = &config.md5 {
        crate::bgp::socket::set_md5_key(&socket, peer, Some(key))?;
    }
    match config.hops {
        Hops::Default => {}
        Hops::Direct => crate::bgp::socket::set_ttl(&socket, peer, 1)?,
        Hops::Multihop => crate::bgp::socket::set_ttl(&socket, peer, 255)?,
        Hops::Security => crate::bgp::socket::set_ttl_security(&socket, peer, 1)?,
    }
    if let Some(source) = config.source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(config.address).await
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

impl StreamHandler<Inbound> for PeerActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        match item {
            Inbound::Frame(frame) => {
                let params = self
                    .session
                    .negotiated()
                    .map_or(SessionParams::FOUR_OCTET_AS, |n| n.params);
                let input = match Message::decode(&frame, &params) {
                    Ok(message) => Input::Message(message),
                    Err(e) => Input::DecodeError(e),
                };
                self.input(input, ctx);
            }
            Inbound::Malformed(e) => self.input(Input::DecodeError(e), ctx),
            Inbound::Closed => self.input(Input::TcpConnectionFails, ctx),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The connection's end is reported by its last item; the actor
        // lives on to reconnect.
    }
}

impl Handler<SetRoutes> for PeerActor {
    type Result = ();

    fn handle(&mut self, routes: SetRoutes, ctx: &mut Context<Self>) {
        self.wanted = routes.0;
        if let Some(negotiated) = self.session.negotiated().cloned()
            && self.session.state() == State::Established
        {
            self.send_table(&negotiated, false);
        }
        self.act(Vec::new(), ctx);
    }
}

impl Handler<StopPeer> for PeerActor {
    type Result = ();

    fn handle(&mut self, _: StopPeer, ctx: &mut Context<Self>) {
        self.input(Input::ManualStop, ctx);
        ctx.stop();
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(peer = self.config.name, address = %self.config.address, "BGP peer starting");
        self.input(Input::ManualStart, ctx);
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
