//! Unnumbered peering (a BGPPeer's `interface`): the session runs between
//! the two ends' IPv6 link-local addresses, found as FRR finds them for
//! `neighbor IFACE interface` — each end sends Router Advertisements on
//! the link (RFC 4861), and the source of the other's is the address to
//! connect to. IPv4 routes then go with IPv6 next hops (RFC 8950).
//!
//! [`Discovery`] is the sans-IO core for one interface: when to advertise
//! (at once, a few times fast, then every [`ADVERTISE_INTERVAL`]; at once
//! again when solicited), which advertiser is the neighbour (the first,
//! kept while it keeps advertising; another only after the first fell
//! silent for [`NEIGHBOR_LIFETIME`]). [`DiscoveryActor`], one per
//! interface, owns the raw ICMPv6 socket bound to it, checks each message
//! (hop limit 255, RFC 4861 section 6.1), and tells its observer
//! ([`NeighborFound`]) the peer's address with the interface as scope.
//!
//! The advertisements say this node is no default router (lifetime 0) and
//! carry no prefix: they only make this end known to the router.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Recipient, SpawnHandle, StreamHandler};
use meshlb_wire::ethernet::MacAddr;
use meshlb_wire::ndp::{NDP_HOP_LIMIT, NdpOption};
use meshlb_wire::router_discovery::{RouterAdvertisement, RouterDiscovery};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::now;

/// How often an interface is advertised on once the fast start is over
/// (FRR's interval for its unnumbered neighbours).
pub const ADVERTISE_INTERVAL: Duration = Duration::from_secs(10);
/// The advertisements sent a second apart at the start, so the router
/// learns this end quickly.
const FAST_ADVERTISEMENTS: u32 = 3;
/// The spacing of the fast advertisements.
const FAST_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two advertisements answering solicitations.
const MIN_SOLICITED_GAP: Duration = Duration::from_millis(500);
/// How long a neighbour that stopped advertising is kept before another
/// advertiser may replace it.
pub const NEIGHBOR_LIFETIME: Duration = Duration::from_secs(30);

/// All nodes on the link.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All routers on the link.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// What the core asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Send a Router Advertisement to all nodes.
    Advertise,
    /// Send a Router Solicitation to all routers.
    Solicit,
    /// The neighbour is (now) this address.
    Neighbor(Ipv6Addr),
}

/// Router Discovery on one interface, pure. See the module documentation.
#[derive(Debug, Clone)]
pub struct Discovery {
    next_advertisement: Instant,
    fast_left: u32,
    last_solicited: Option<Instant>,
    neighbor: Option<(Ipv6Addr, Instant)>,
    started: bool,
    /// What the driver must do, in order.
    outputs: VecDeque<Output>,
}

impl Discovery {
    /// A core whose first advertisement (and solicitation) is due at `now`.
    pub fn new(now: Instant) -> Discovery {
        Discovery {
            next_advertisement: now,
            fast_left: FAST_ADVERTISEMENTS,
            last_solicited: None,
            neighbor: None,
            started: false,
            outputs: VecDeque::new(),
        }
    }

    /// When [`Discovery::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_advertisement
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The neighbour found so far.
    pub fn neighbor(&self) -> Option<Ipv6Addr> {
        self.neighbor.map(|(address, _)| address)
    }

    /// What is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_advertisement {
            return;
        }
        if !self.started {
            self.started = true;
            self.outputs.push_back(Output::Solicit);
        }
        self.outputs.push_back(Output::Advertise);
        let interval = if self.fast_left > 0 {
            self.fast_left -= 1;
            FAST_INTERVAL
        } else {
            ADVERTISE_INTERVAL
        };
        self.next_advertisement = now + interval;
    }

    /// A valid message from `source` (a link-local address) arrived.
    pub fn handle_message(&mut self, source: Ipv6Addr, message: &RouterDiscovery, now: Instant) {
        let output = match message {
            RouterDiscovery::Solicitation(_) => {
                let due = self
                    .last_solicited
                    .is_none_or(|last| now.saturating_duration_since(last) >= MIN_SOLICITED_GAP);
                if due {
                    self.last_solicited = Some(now);
                    Some(Output::Advertise)
                } else {
                    None
                }
            }
            RouterDiscovery::Advertisement(_) => match self.neighbor {
                Some((current, _)) if current == source => {
                    self.neighbor = Some((source, now));
                    None
                }
                Some((_, heard)) if now.saturating_duration_since(heard) < NEIGHBOR_LIFETIME => None,
                _ => {
                    self.neighbor = Some((source, now));
                    Some(Output::Neighbor(source))
                }
            },
        };
        self.outputs.extend(output);
    }
}

/// The neighbour on an interface was found, or changed (to the actor's
/// observer).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct NeighborFound {
    /// The interface's name.
    pub interface: String,
    /// The neighbour's link-local address, with the interface as scope.
    pub address: SocketAddrV6,
}

/// Stops the actor (no more advertisements).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct StopDiscovery;

/// The interface a [`DiscoveryActor`] runs on, with its socket bound but
/// not yet in a runtime.
#[derive(Debug)]
pub struct DiscoverySocket {
    interface: String,
    index: u32,
    socket: Socket,
}

impl DiscoverySocket {
    /// A raw ICMPv6 socket on `interface` (which must exist): hop limit
    /// 255 sent and reported, destinations reported, its own multicast not
    /// looped back, all-routers joined so solicitations reach it.
    pub fn bind(interface: &str) -> io::Result<DiscoverySocket> {
        let index = nix::net::if_::if_nametoindex(interface).map_err(io::Error::from)?;
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_multicast_hops_v6(u32::from(NDP_HOP_LIMIT))?;
        socket.set_unicast_hops_v6(u32::from(NDP_HOP_LIMIT))?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_multicast_if_v6(index)?;
        socket.join_multicast_v6(&ALL_ROUTERS, index)?;
        socket.set_nonblocking(true)?;
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        Ok(DiscoverySocket {
            interface: interface.to_string(),
            index,
            socket,
        })
    }
}

/// One received message's bytes, source, destination and hop limit.
struct Received {
    bytes: Vec<u8>,
    source: Ipv6Addr,
    destination: Option<Ipv6Addr>,
    hop_limit: Option<u8>,
}

fn receive_one(socket: &Socket) -> io::Result<Received> {
    let mut buf = [0u8; 1500];
    let mut control = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let message = recvmsg::<SockaddrIn6>(socket.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let mut hop_limit = None;
    let mut destination = None;
    if let Ok(cmsgs) = message.cmsgs() {
        for cmsg in cmsgs {
            match cmsg {
                ControlMessageOwned::Ipv6HopLimit(limit) => hop_limit = u8::try_from(limit).ok(),
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    destination = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
                }
                _ => {}
            }
        }
    }
    let source = message
        .address
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no sender address"))?;
    let len = message.bytes;
    Ok(Received {
        bytes: buf[..len.min(buf.len())].to_vec(),
        source,
        destination,
        hop_limit,
    })
}

/// The interface's link-local address and MAC, if it has them.
fn interface_addresses(interface: &str) -> (Option<Ipv6Addr>, Option<MacAddr>) {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return (None, None);
    };
    let mut link_local = None;
    let mut mac = None;
    for address in addresses.filter(|a| a.interface_name == interface) {
        let Some(storage) = address.address else { continue };
        if let Some(v6) = storage.as_sockaddr_in6()
            && v6.ip().is_unicast_link_local()
        {
            link_local.get_or_insert(v6.ip());
        }
        if let Some(link) = storage.as_link_addr()
            && let Some(bytes) = link.addr()
        {
            mac = Some(MacAddr(bytes));
        }
    }
    (link_local, mac)
}

/// The actor for one interface. See the module documentation.
pub struct DiscoveryActor {
    interface: String,
    index: u32,
    socket: Option<Arc<AsyncFd<Socket>>>,
    pending: Option<Socket>,
    core: Discovery,
    timer: Option<SpawnHandle>,
    observer: Recipient<NeighborFound>,
}

impl DiscoveryActor {
    /// The actor on `socket`'s interface, telling `observer` about its
    /// neighbour.
    pub fn new(socket: DiscoverySocket, observer: Recipient<NeighborFound>) -> DiscoveryActor {
        DiscoveryActor {
            interface: socket.interface,
            index: socket.index,
            socket: None,
            pending: Some(socket.socket),
            core: Discovery::new(now()),
            timer: None,
            observer,
        }
    }

    /// Does what the core asks, and sets its next timer.
    fn act(&mut self, ctx: &mut Context<Self>) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Advertise => self.send(
                    &RouterDiscovery::Advertisement(RouterAdvertisement::default()),
                    ALL_NODES,
                ),
                Output::Solicit => self.send(&RouterDiscovery::Solicitation(Vec::new()), ALL_ROUTERS),
                Output::Neighbor(address) => {
                    tracing::info!(
                        interface = self.interface,
                        %address,
                        "unnumbered BGP: the peer's link-local address"
                    );
                    self.observer.do_send(NeighborFound {
                        interface: self.interface.clone(),
                        address: SocketAddrV6::new(address, 0, 0, self.index),
                    });
                }
            }
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let delay = self.core.poll_timeout().saturating_duration_since(now());
        self.timer = Some(ctx.run_later(delay, |actor, ctx| {
            actor.timer = None;
            actor.core.handle_timeout(now());
            actor.act(ctx);
        }));
    }

    /// Sends `message` to `destination` on the interface, from its
    /// link-local address (the kernel's choice for a link-scope
    /// destination), with the source link-layer address option when the
    /// interface has a MAC.
    fn send(&self, message: &RouterDiscovery, destination: Ipv6Addr) {
        let Some(socket) = &self.socket else { return };
        let (Some(source), mac) = interface_addresses(&self.interface) else {
            tracing::debug!(interface = self.interface, "no link-local address yet; nothing sent");
            return;
        };
        let options = mac.map(NdpOption::SourceLinkLayerAddress).into_iter().collect();
        let message = match message {
            RouterDiscovery::Solicitation(_) => RouterDiscovery::Solicitation(options),
            RouterDiscovery::Advertisement(ra) => {
                RouterDiscovery::Advertisement(RouterAdvertisement { options, ..ra.clone() })
            }
        };
        let bytes = message.encode(&source, &destination);
        let to = std::net::SocketAddr::V6(SocketAddrV6::new(destination, 0, 0, self.index));
        // A full buffer or a link down shows as the neighbour's silence.
        if let Err(e) = socket.get_ref().send_to(&bytes, &to.into()) {
            tracing::debug!(interface = self.interface, "router discovery send: {e}");
        }
    }
}

impl Actor for DiscoveryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(pending) = self.pending.take() else { return };
        match crate::l2::socket::register(pending) {
            Ok(socket) => {
                let socket = Arc::new(socket);
                self.socket = Some(socket.clone());
                let received = futures_util::stream::unfold(socket, |socket| async move {
                    let received = socket.async_io(Interest::READABLE, receive_one).await;
                    Some((received, socket))
                });
                ctx.add_stream(received);
            }
            Err(e) => tracing::warn!(interface = self.interface, "router discovery: {e}"),
        }
        self.core.handle_timeout(now());
        self.act(ctx);
    }
}

impl StreamHandler<io::Result<Received>> for DiscoveryActor {
    fn handle(&mut self, received: io::Result<Received>, ctx: &mut Context<Self>) {
        let received = match received {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(interface = self.interface, "router discovery receive: {e}");
                return;
            }
        };
        // Other ICMPv6 (echo, neighbour discovery) arrives too: only
        // Router Discovery from a neighbour, unrouted, counts.
        if received.hop_limit != Some(NDP_HOP_LIMIT) {
            return;
        }
        let Some(destination) = received.destination else {
            return;
        };
        let Ok(message) = RouterDiscovery::decode(&received.bytes, &received.source, &destination) else {
            return;
        };
        self.core.handle_message(received.source, &message, now());
        self.act(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<StopDiscovery> for DiscoveryActor {
    type Result = ();

    fn handle(&mut self, _: StopDiscovery, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `core` asks for once the time is `now`.
    fn timeout(core: &mut Discovery, now: Instant) -> Vec<Output> {
        core.handle_timeout(now);
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    /// What `core` asks for once `source`'s `received` arrived at `now`.
    fn message(core: &mut Discovery, source: Ipv6Addr, received: &RouterDiscovery, now: Instant) -> Vec<Output> {
        core.handle_message(source, received, now);
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    fn ra() -> RouterDiscovery {
        RouterDiscovery::Advertisement(RouterAdvertisement::default())
    }

    #[test]
    fn advertises_at_once_then_fast_then_slowly() {
        let start = Instant::now();
        let mut core = Discovery::new(start);
        assert_eq!(timeout(&mut core, start), [Output::Solicit, Output::Advertise]);
        let mut sent = vec![start];
        let mut now = start;
        for _ in 0..6 {
            now = core.poll_timeout();
            assert_eq!(timeout(&mut core, now), [Output::Advertise], "no second solicitation");
            sent.push(now);
        }
        let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            gaps,
            [
                FAST_INTERVAL,
                FAST_INTERVAL,
                FAST_INTERVAL,
                ADVERTISE_INTERVAL,
                ADVERTISE_INTERVAL,
                ADVERTISE_INTERVAL
            ]
        );
        assert!(timeout(&mut core, now + Duration::from_secs(1)).is_empty(), "not due");
    }

    #[test]
    fn solicitations_are_answered_at_once_but_not_flooded() {
        let start = Instant::now();
        let mut core = Discovery::new(start);
        let rs = RouterDiscovery::Solicitation(Vec::new());
        let peer: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(message(&mut core, peer, &rs, start), [Output::Advertise]);
        assert!(message(&mut core, peer, &rs, start + Duration::from_millis(100)).is_empty());
        assert_eq!(
            message(&mut core, peer, &rs, start + MIN_SOLICITED_GAP),
            [Output::Advertise]
        );
        assert_eq!(core.neighbor(), None, "a solicitation names no neighbour");
    }

    #[test]
    fn the_first_advertiser_stays_the_neighbor_while_it_advertises() {
        let start = Instant::now();
        let mut core = Discovery::new(start);
        let router: Ipv6Addr = "fe80::1".parse().unwrap();
        let other: Ipv6Addr = "fe80::2".parse().unwrap();
        assert_eq!(message(&mut core, router, &ra(), start), [Output::Neighbor(router)]);
        assert!(
            message(&mut core, router, &ra(), start + Duration::from_secs(1)).is_empty(),
            "no news"
        );
        let mut now = start;
        for _ in 0..5 {
            now += ADVERTISE_INTERVAL;
            assert!(message(&mut core, router, &ra(), now).is_empty());
            assert!(
                message(&mut core, other, &ra(), now).is_empty(),
                "the first one keeps advertising"
            );
        }
        assert_eq!(core.neighbor(), Some(router));
        // The router falls silent (replaced, with a new address).
        now += NEIGHBOR_LIFETIME - Duration::from_secs(1);
        assert!(message(&mut core, other, &ra(), now).is_empty(), "not yet");
        now += Duration::from_secs(1);
        assert_eq!(message(&mut core, other, &ra(), now), [Output::Neighbor(other)]);
        assert_eq!(core.neighbor(), Some(other));
    }
}
