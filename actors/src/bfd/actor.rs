//! The BFD actor: one per agent. Thin glue that owns the UDP sockets and
//! runs a [`BfdSession`] per peer with a bfdProfile: it receives control
//! packets on port 3784 (single hop, RFC 5881) and 4784 (multihop, RFC
//! 5883) with the TTL each arrived with, decodes and checks them, finds
//! their session (by Your Discriminator, else by source address), hands
//! them to it, sends what the sessions send from one source port in
//! 49152-65535 with TTL 255, keeps the sessions' next timer as one pending
//! `run_later`, and tells a peer's BGP actor ([`BfdStatus`]) when its
//! session comes up or goes down.
//!
//! GTSM for BFD: a single-hop packet must arrive with TTL 255 (RFC 5881
//! section 5), a multihop one with at least the profile's `minimumTtl`;
//! others are dropped, as are packets from addresses no session has.
//!
//! Echo packets ([`crate::bfd::session`]'s Echo function) leave through an
//! [`EchoPath`] (a packet socket on the peer's interface, resolved when
//! the first is due and again after the session went down) and are read
//! back off it: addressed to this system's own address on the path, with
//! TTL 254 (forwarded once by the peer), each to the session its
//! discriminator names.

use std::collections::BTreeMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use actix::{Actor, AsyncContext, Context, Handler, Recipient, SpawnHandle, StreamHandler};
use meshlb_wire::bfd::{ControlPacket, Diagnostic, MULTI_HOP_PORT, SINGLE_HOP_PORT};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::bfd::echo_path::EchoPath;
use crate::bfd::session::{BfdConfig, BfdSession, Output};
use crate::now;
use meshlb_wire::bfd_echo::{ECHO_TTL, EchoPacket, ReturnedEcho};

/// The source ports BFD packets may come from (RFC 5881 section 4).
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// A BFD session came up or went down (sent to the peer's BGP actor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct BfdStatus {
    /// Whether it is up now.
    pub up: bool,
    /// Why it went down.
    pub diagnostic: Diagnostic,
}

/// A peer to run a session with.
#[derive(Debug, Clone)]
pub struct BfdPeer {
    /// Timers and role.
    pub config: BfdConfig,
    /// Multihop (RFC 5883, port 4784), with this minimum TTL; `None`:
    /// single hop.
    pub multihop_min_ttl: Option<u8>,
    /// The interface index of a link-local peer's link (its scope; 0 for
    /// others).
    pub scope_id: u32,
    /// Told when the session comes up or goes down.
    pub notify: Recipient<BfdStatus>,
}

/// The peers to run sessions with, by address (replacing the previous
/// set: sessions of peers gone end with AdminDown, changed ones restart).
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct SetBfdPeers(pub BTreeMap<IpAddr, BfdPeer>);

/// One session as the actor reports it (to the agent's status hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdSessionReport {
    /// The peer.
    pub peer: IpAddr,
    /// Its state.
    pub state: meshlb_wire::bfd::State,
    /// Multihop (RFC 5883).
    pub multihop: bool,
    /// Whether Echo packets are being sent.
    pub echo: bool,
    /// The detection time now.
    pub detection_time: std::time::Duration,
    /// Why it last went down from Up, if it did.
    pub last_down: Option<Diagnostic>,
    /// Packets and transitions over the session's life.
    pub counters: BfdCounters,
}

/// What one session sent, received and went through, as FRR's bfdd counts
/// it per peer (MetalLB's `metallb_bfd_control_packet_input`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BfdCounters {
    /// Control packets received and accepted.
    pub control_in: u64,
    /// Control packets sent.
    pub control_out: u64,
    /// This system's Echo packets back from the peer.
    pub echo_in: u64,
    /// Echo packets sent.
    pub echo_out: u64,
    /// Times the session came up.
    pub up_events: u64,
    /// Times it went down from Up.
    pub down_events: u64,
}

/// How often changed counters are reported.
const COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Told every session's state whenever one changes.
pub type BfdReporter = Arc<dyn Fn(Vec<BfdSessionReport>) + Send + Sync>;

/// Ends every session with AdminDown and stops the actor.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct StopBfd;

struct Running {
    peer: BfdPeer,
    session: BfdSession,
    /// Where its Echo packets go, once resolved, and the stream reading
    /// them back.
    echo_path: Option<(EchoPath, SpawnHandle)>,
    /// Why the last resolution failed (logged once per reason).
    echo_path_error: Option<String>,
    /// Why it last went down from Up.
    last_down: Option<Diagnostic>,
    /// Its counters.
    counters: BfdCounters,
}

/// Which port a receiving socket is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// 3784: single-hop control packets.
    SingleHop,
    /// 4784: multihop control packets.
    MultiHop,
}

/// The sockets, bound but not yet in a runtime (binding needs none).
#[derive(Debug)]
pub struct BfdSockets {
    /// Receiving, by port.
    receive: Vec<(std::net::UdpSocket, Port)>,
    /// Sending, by family: IPv4 first.
    send: Vec<std::net::UdpSocket>,
}

impl BfdSockets {
    /// Binds the receiving ports on every IPv4 and IPv6 address and a
    /// sending socket per family; a family the host lacks is skipped.
    pub fn bind() -> io::Result<BfdSockets> {
        let mut receive = Vec::new();
        let mut send = Vec::new();
        let mut first_error = None;
        for any in [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)] {
            for (number, port) in [(SINGLE_HOP_PORT, Port::SingleHop), (MULTI_HOP_PORT, Port::MultiHop)] {
                match receiving(SocketAddr::new(any, number)) {
                    Ok(socket) => receive.push((socket, port)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            match sending(any) {
                Ok(socket) => send.push(socket),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if receive.is_empty() || send.is_empty() => Err(e),
            _ => Ok(BfdSockets { receive, send }),
        }
    }
}

fn udp(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A socket on `address` that reports each datagram's TTL (hop limit).
fn receiving(address: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = udp(address)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    let socket: std::net::UdpSocket = socket.into();
    match address {
        SocketAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4RecvTtl, &true),
        SocketAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true),
    }
    .map_err(io::Error::from)?;
    Ok(socket)
}

/// A socket sending with TTL 255 from a port in [`SOURCE_PORTS`].
fn sending(any: IpAddr) -> io::Result<std::net::UdpSocket> {
    let socket = udp(SocketAddr::new(any, 0))?;
    match any {
        IpAddr::V4(_) => socket.set_ttl_v4(255)?,
        IpAddr::V6(_) => socket.set_unicast_hops_v6(255)?,
    }
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    // The ports in turn from one that varies by process, so agents on one
    // host (the lab's) rarely meet.
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let offset = std::process::id() % span;
    for step in 0..span {
        let port = SOURCE_PORTS.start() + u16::try_from((offset + step) % span).unwrap_or(0);
        match socket.bind(&SocketAddr::new(any, port).into()) {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One datagram: its bytes, sender, TTL, and the port it came to.
struct Datagram {
    bytes: Vec<u8>,
    from: SocketAddr,
    ttl: Option<u8>,
    port: Port,
}

/// Receives one datagram with its TTL from a non-blocking socket.
fn receive_one(socket: &UdpSocket, port: Port) -> io::Result<Datagram> {
    let mut buf = [0u8; 512];
    let mut control = nix::cmsg_space!(libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let message = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let ttl = message.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|c| match c {
            ControlMessageOwned::Ipv4Ttl(ttl) | ControlMessageOwned::Ipv6HopLimit(ttl) => u8::try_from(ttl).ok(),
            _ => None,
        })
    });
    let from = message.address.as_ref().and_then(socket_address);
    let len = message.bytes;
    let from = from.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no sender address"))?;
    Ok(Datagram {
        bytes: buf[..len.min(buf.len())].to_vec(),
        from,
        ttl,
        port,
    })
}

fn socket_address(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::new(IpAddr::V4(v4.ip()), v4.port()));
    }
    let v6 = address.as_sockaddr_in6()?;
    Some(SocketAddr::new(IpAddr::V6(v6.ip()).to_canonical(), v6.port()))
}

/// The BFD actor. See the module documentation.
pub struct BfdActor {
    receive: Vec<(Arc<UdpSocket>, Port)>,
    send: Vec<Arc<UdpSocket>>,
    sessions: BTreeMap<IpAddr, Running>,
    next_discriminator: u32,
    timer: Option<SpawnHandle>,
    reporter: Option<BfdReporter>,
}

impl BfdActor {
    /// Tells `reporter` every session's state whenever one changes.
    pub fn reporting(mut self, reporter: BfdReporter) -> BfdActor {
        self.reporter = Some(reporter);
        self
    }

    fn report(&self) {
        let Some(reporter) = &self.reporter else { return };
        let sessions = self
            .sessions
            .iter()
            .map(|(peer, running)| BfdSessionReport {
                peer: *peer,
                state: running.session.state(),
                multihop: running.peer.multihop_min_ttl.is_some(),
                echo: running.session.echo_active(),
                detection_time: running.session.detection_time(),
                last_down: running.last_down,
                counters: running.counters,
            })
            .collect();
        reporter(sessions);
    }

    /// The actor over `sockets`; called inside the Tokio runtime it runs on
    /// (a socket it cannot register there is logged and left out).
    pub fn new(sockets: BfdSockets) -> BfdActor {
        let register = |socket: std::net::UdpSocket| match UdpSocket::from_std(socket) {
            Ok(socket) => Some(Arc::new(socket)),
            Err(e) => {
                tracing::warn!("BFD: {e}");
                None
            }
        };
        BfdActor {
            receive: sockets
                .receive
                .into_iter()
                .filter_map(|(s, port)| register(s).map(|s| (s, port)))
                .collect(),
            send: sockets.send.into_iter().filter_map(register).collect(),
            sessions: BTreeMap::new(),
            // Distinct across restarts, so a peer never mistakes a new
            // session for the old one.
            next_discriminator: std::process::id().wrapping_mul(1000).max(1),
            timer: None,
            reporter: None,
        }
    }

    fn send(&mut self, peer: IpAddr, scope_id: u32, multihop: bool, packet: &ControlPacket) {
        let port = if multihop { MULTI_HOP_PORT } else { SINGLE_HOP_PORT };
        let destination = match peer {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id)),
            _ => SocketAddr::new(peer, port),
        };
        let socket = self
            .send
            .iter()
            .find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == peer.is_ipv4()));
        if let Some(socket) = socket {
            // A full buffer or an unreachable peer shows as its silence.
            match socket.try_send_to(&packet.to_bytes(), destination) {
                Ok(_) => {
                    if let Some(running) = self.sessions.get_mut(&peer) {
                        running.counters.control_out += 1;
                    }
                }
                Err(e) => tracing::debug!(%peer, "BFD send: {e}"),
            }
        }
    }

    /// Sends `echo` for `peer`'s session, resolving its path first if
    /// needed.
    fn send_echo(&mut self, peer: IpAddr, echo: &EchoPacket, ctx: &mut Context<Self>) {
        let source_port = self
            .send
            .iter()
            .find_map(|s| s.local_addr().ok().filter(|a| a.is_ipv4() == peer.is_ipv4()))
            .map_or(0, |a| a.port());
        let Some(running) = self.sessions.get_mut(&peer) else {
            return;
        };
        if running.echo_path.is_none() {
            match EchoPath::resolve(peer) {
                Ok(path) => {
                    tracing::info!(%peer, address = %path.address, "BFD Echo packets start");
                    let socket = path.socket.clone();
                    let frames = futures_util::stream::unfold(socket, |socket| async move {
                        let mut buf = vec![0u8; crate::l2::socket::MAX_FRAME];
                        let frame = socket.recv(&mut buf).await.map(|len| {
                            buf.truncate(len);
                            buf
                        });
                        Some((EchoFrame(frame), socket))
                    });
                    let reader = ctx.add_stream(frames);
                    running.echo_path = Some((path, reader));
                    running.echo_path_error = None;
                }
                Err(why) => {
                    // Said once per reason, not at every Echo interval.
                    let why = why.to_string();
                    if running.echo_path_error.as_ref() != Some(&why) {
                        tracing::warn!(%peer, "BFD Echo packets cannot be sent: {why}");
                        running.echo_path_error = Some(why);
                    }
                    return;
                }
            }
        }
        if let Some((path, _)) = &running.echo_path {
            match path.send(echo, source_port) {
                Ok(()) => running.counters.echo_out += 1,
                // A full queue shows as a lost Echo packet.
                Err(e) => tracing::debug!(%peer, "BFD Echo send: {e}"),
            }
        }
    }

    /// Stops `peer`'s Echo packets' reader and forgets their path.
    fn drop_echo_path(&mut self, peer: IpAddr, ctx: &mut Context<Self>) {
        if let Some((_, reader)) = self.sessions.get_mut(&peer).and_then(|r| r.echo_path.take()) {
            ctx.cancel_future(reader);
        }
    }

    /// Does what `peer`'s session asks.
    fn act(&mut self, peer: IpAddr, ctx: &mut Context<Self>) {
        let Some(running) = self.sessions.get_mut(&peer) else {
            return;
        };
        let outputs: Vec<Output> = std::iter::from_fn(|| running.session.poll_output()).collect();
        let multihop = running.peer.multihop_min_ttl.is_some();
        let scope_id = running.peer.scope_id;
        let notify = running.peer.notify.clone();
        let mut changed = false;
        for output in outputs {
            match output {
                Output::Send(packet) => self.send(peer, scope_id, multihop, &packet),
                Output::SendEcho(echo) => self.send_echo(peer, &echo, ctx),
                Output::Up => {
                    tracing::info!(%peer, "BFD session up");
                    if let Some(running) = self.sessions.get_mut(&peer) {
                        running.counters.up_events += 1;
                    }
                    changed = true;
                    notify.do_send(BfdStatus {
                        up: true,
                        diagnostic: Diagnostic::NoDiagnostic,
                    });
                }
                Output::Down(diagnostic) => {
                    tracing::warn!(%peer, ?diagnostic, "BFD session down");
                    // The way back may have changed (another MAC).
                    self.drop_echo_path(peer, ctx);
                    if let Some(running) = self.sessions.get_mut(&peer) {
                        running.last_down = Some(diagnostic);
                        running.counters.down_events += 1;
                    }
                    changed = true;
                    notify.do_send(BfdStatus { up: false, diagnostic });
                }
            }
        }
        if changed {
            self.report();
        }
    }

    fn reschedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let next = self.sessions.values().filter_map(|r| r.session.poll_timeout()).min();
        if let Some(at) = next {
            let delay = at.saturating_duration_since(now());
            self.timer = Some(ctx.run_later(delay, |actor, ctx| {
                actor.timer = None;
                let now = now();
                let peers: Vec<IpAddr> = actor.sessions.keys().copied().collect();
                for peer in peers {
                    if let Some(running) = actor.sessions.get_mut(&peer) {
                        running.session.handle_timeout(now);
                        actor.act(peer, ctx);
                    }
                }
                actor.reschedule(ctx);
            }));
        }
    }

    /// Ends `peer`'s session with an AdminDown packet.
    fn end(&mut self, peer: IpAddr, ctx: &mut Context<Self>) {
        self.drop_echo_path(peer, ctx);
        if let Some(mut running) = self.sessions.remove(&peer) {
            let packet = running.session.admin_down();
            self.send(
                peer,
                running.peer.scope_id,
                running.peer.multihop_min_ttl.is_some(),
                &packet,
            );
        }
    }
}

impl Actor for BfdActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for (socket, port) in &self.receive {
            let port = *port;
            let datagrams = futures_util::stream::unfold(socket.clone(), move |socket| async move {
                let received = socket.async_io(Interest::READABLE, || receive_one(&socket, port)).await;
                Some((received, socket))
            });
            ctx.add_stream(datagrams);
        }
        // Counters move with every packet: reported at most this often.
        let mut reported: Vec<BfdCounters> = Vec::new();
        ctx.run_interval(COUNTERS_EVERY, move |actor, _ctx| {
            let now: Vec<BfdCounters> = actor.sessions.values().map(|r| r.counters).collect();
            if now != reported {
                actor.report();
                reported = now;
            }
        });
    }
}

impl StreamHandler<io::Result<Datagram>> for BfdActor {
    fn handle(&mut self, datagram: io::Result<Datagram>, ctx: &mut Context<Self>) {
        let datagram = match datagram {
            Ok(datagram) => datagram,
            Err(e) => {
                tracing::debug!("BFD receive: {e}");
                return;
            }
        };
        let packet = match ControlPacket::decode(&datagram.bytes) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::debug!(from = %datagram.from, "BFD packet discarded: {e}");
                return;
            }
        };
        let by_discriminator = (packet.your_discriminator != 0)
            .then(|| {
                self.sessions
                    .iter()
                    .find(|(_, r)| r.session.local_discriminator() == packet.your_discriminator)
                    .map(|(peer, _)| *peer)
            })
            .flatten();
        let peer = by_discriminator.unwrap_or(datagram.from.ip());
        let Some(running) = self.sessions.get_mut(&peer) else {
            return;
        };
        let ttl_ok = match (running.peer.multihop_min_ttl, datagram.ttl) {
            (_, None) => false,
            (None, Some(ttl)) => ttl == 255 && datagram.port == Port::SingleHop,
            (Some(minimum), Some(ttl)) => ttl >= minimum && datagram.port == Port::MultiHop,
        };
        if peer != datagram.from.ip() || !ttl_ok {
            tracing::debug!(from = %datagram.from, ttl = ?datagram.ttl, "BFD packet discarded: wrong sender, port or TTL");
            return;
        }
        running.counters.control_in += 1;
        running.session.handle_packet(&packet, now());
        self.act(peer, ctx);
        self.reschedule(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// A frame read off an Echo path's socket.
struct EchoFrame(Result<Vec<u8>, crate::error::ActorError>);

impl StreamHandler<EchoFrame> for BfdActor {
    /// One of this system's Echo packets came back: addressed to and from
    /// this system's address on the path, forwarded exactly once (TTL
    /// 254), for a session that sends them.
    fn handle(&mut self, EchoFrame(frame): EchoFrame, ctx: &mut Context<Self>) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!("BFD Echo receive: {e}");
                return;
            }
        };
        let Ok(back) = ReturnedEcho::from_frame(&frame) else {
            return;
        };
        if back.ttl != ECHO_TTL - 1 || back.source != back.destination {
            tracing::debug!(
                ttl = back.ttl,
                "BFD Echo packet discarded: not ours forwarded exactly once"
            );
            return;
        }
        let Some(running) = self
            .sessions
            .values_mut()
            .find(|r| r.session.local_discriminator() == back.packet.discriminator)
        else {
            return;
        };
        if running.echo_path.as_ref().map(|(p, _)| p.address) != Some(back.source) {
            return;
        }
        running.counters.echo_in += 1;
        running.session.handle_echo(&back.packet, now());
        self.reschedule(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<SetBfdPeers> for BfdActor {
    type Result = ();

    fn handle(&mut self, SetBfdPeers(mut peers): SetBfdPeers, ctx: &mut Context<Self>) {
        // Echo packets that could not come back would fail the session:
        // none to link-local peers (routers do not forward link-local
        // destinations).
        for (address, peer) in peers.iter_mut().filter(|(_, p)| p.config.echo_interval.is_some()) {
            if matches!(address, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
                tracing::debug!(peer = %address, "BFD echo mode off for a link-local peer");
                peer.config.echo_interval = None;
            }
        }
        let stale: Vec<IpAddr> = self
            .sessions
            .iter()
            .filter(|(peer, running)| {
                peers.get(peer).is_none_or(|p| {
                    p.config != running.peer.config
                        || p.multihop_min_ttl != running.peer.multihop_min_ttl
                        || p.scope_id != running.peer.scope_id
                })
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in stale {
            self.end(peer, ctx);
        }
        let now = now();
        for (address, peer) in peers {
            match self.sessions.get_mut(&address) {
                Some(running) => running.peer.notify = peer.notify,
                None => {
                    self.next_discriminator = self.next_discriminator.wrapping_add(1).max(1);
                    let seed = u64::from(self.next_discriminator) ^ 0x9e37_79b9_7f4a_7c15;
                    let session = BfdSession::new(peer.config, self.next_discriminator, seed, now);
                    tracing::info!(peer = %address, "BFD session starting");
                    self.sessions.insert(
                        address,
                        Running {
                            peer,
                            session,
                            echo_path: None,
                            echo_path_error: None,
                            last_down: None,
                            counters: BfdCounters::default(),
                        },
                    );
                }
            }
        }
        self.report();
        self.reschedule(ctx);
    }
}

impl Handler<StopBfd> for BfdActor {
    type Result = ();

    fn handle(&mut self, _: StopBfd, ctx: &mut Context<Self>) {
        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
        for peer in peers {
            self.end(peer, ctx);
        }
        actix::ActorContext::stop(ctx);
    }
}
