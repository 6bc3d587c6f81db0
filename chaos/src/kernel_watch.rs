//! Watching a lab host's kernel as it changes: every route added or
//! removed, read from rtnetlink's multicast groups with the time each was
//! heard ([`KernelWatch`]), and, on a router, an ICMPv6 Echo
//! Request to each route's destination the moment the route is installed,
//! with the replies heard ([`KernelWatch::probing_new_routes`]). Tests
//! compare hosts' timelines: whether a node's local route for an address
//! was in before the router had the address's route, and stayed until the
//! router's was gone.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use meshlb_wire::rtnetlink::{Messages, groups, message_type, parse_route};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, SockaddrIn6, bind, recv, recvfrom, sendto,
    setsockopt, socket, sockopt,
};

use crate::error::LabError;
use crate::lab::Lab;
use crate::netns::in_netns;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A route was installed (its destination, length and protocol).
    RouteAdded(IpAddr, u8, u8),
    /// A route was removed.
    RouteRemoved(IpAddr, u8, u8),
    /// An Echo Reply came from this address.
    EchoReply(IpAddr),
}

/// One change and when it was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub at: Instant,
    /// What.
    pub change: Change,
}

/// A running watch. See the module documentation.
#[derive(Debug)]
pub struct KernelWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<Event>, LabError>>,
}

/// The socket's receive buffer: large enough for tens of thousands of
/// notifications between two reads.
const RECEIVE_BUFFER: usize = 64 << 20;

/// The Echo Request's identifier.
const ECHO_ID: u16 = 0x6d6c;

fn sys(what: &str) -> impl FnOnce(nix::Error) -> LabError + '_ {
    move |source| LabError::Sys {
        what: what.to_owned(),
        source,
    }
}

impl KernelWatch {
    /// Watches `host`'s routes, both families.
    pub fn start(lab: &Lab, host: &str) -> Result<KernelWatch, LabError> {
        KernelWatch::start_with(lab, host, None)
    }

    /// As [`KernelWatch::start`], and sends an ICMPv6 Echo Request to the
    /// destination of each IPv6 host route installed by protocol
    /// `protocol` inside `within`, once, the moment it is heard.
    pub fn probing_new_routes(
        lab: &Lab,
        host: &str,
        protocol: u8,
        within: (Ipv6Addr, u8),
    ) -> Result<KernelWatch, LabError> {
        KernelWatch::start_with(lab, host, Some((protocol, within)))
    }

    fn start_with(lab: &Lab, host: &str, probe: Option<(u8, (Ipv6Addr, u8))>) -> Result<KernelWatch, LabError> {
        let netns = lab.host(host)?.netns.clone();
        let (events, echo) = in_netns(&netns, || -> Result<(OwnedFd, Option<OwnedFd>), LabError> {
            let events = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkRoute,
            )
            .map_err(sys("rtnetlink socket"))?;
            setsockopt(&events, sockopt::RcvBufForce, &RECEIVE_BUFFER).map_err(sys("rtnetlink buffer"))?;
            let all = groups::IPV4_ROUTE | groups::IPV6_ROUTE;
            bind(events.as_raw_fd(), &NetlinkAddr::new(0, all)).map_err(sys("join rtnetlink groups"))?;
            let echo = match probe {
                None => None,
                Some(_) => Some(
                    socket(
                        AddressFamily::Inet6,
                        SockType::Raw,
                        SockFlag::SOCK_CLOEXEC,
                        SockProtocol::IcmpV6,
                    )
                    .map_err(sys("ICMPv6 socket"))?,
                ),
            };
            Ok((events, echo))
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || watch(&events, echo.as_ref(), probe, &stopping));
        Ok(KernelWatch { stop, thread })
    }

    /// Stops the watch; everything heard, in order.
    pub fn stop(self) -> Result<Vec<Event>, LabError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| LabError::Invalid("the kernel watch panicked".into()))?
    }
}

fn watch(
    events: &OwnedFd,
    echo: Option<&OwnedFd>,
    probe: Option<(u8, (Ipv6Addr, u8))>,
    stop: &AtomicBool,
) -> Result<Vec<Event>, LabError> {
    let mut heard = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut probed: BTreeSet<Ipv6Addr> = BTreeSet::new();
    let mut sequence = 0u16;
    loop {
        // Once stopped, what is queued is still read.
        let stopping = stop.load(Ordering::Relaxed);
        let mut fds = vec![PollFd::new(events.as_fd(), PollFlags::POLLIN)];
        if let Some(echo) = echo {
            fds.push(PollFd::new(echo.as_fd(), PollFlags::POLLIN));
        }
        let wait = if stopping { 0u8 } else { 50 };
        poll(&mut fds, PollTimeout::from(wait)).map_err(sys("poll"))?;
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        if stopping && !ready.contains(&true) {
            break;
        }
        if ready[0] {
            let len = recv(events.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).map_err(sys("rtnetlink read"))?;
            let at = Instant::now();
            for (header, body) in Messages::new(&buf[..len]) {
                let change = match header.kind {
                    message_type::NEW_ROUTE => parse_route(body)
                        .and_then(|r| Some(Change::RouteAdded(r.destination?, r.prefix_len, r.protocol))),
                    message_type::DELETE_ROUTE => parse_route(body)
                        .and_then(|r| Some(Change::RouteRemoved(r.destination?, r.prefix_len, r.protocol))),
                    _ => None,
                };
                let Some(change) = change else { continue };
                heard.push(Event { at, change });
                if let (Some(echo), Some((protocol, within)), Change::RouteAdded(IpAddr::V6(to), 128, by)) =
                    (echo, probe, change)
                    && by == protocol
                    && inside(to, within)
                    && probed.insert(to)
                {
                    sequence = sequence.wrapping_add(1);
                    send_echo(echo, to, sequence)?;
                }
            }
        }
        if let (Some(echo), Some(true)) = (echo, ready.get(1)) {
            let (len, from) = recvfrom::<SockaddrIn6>(echo.as_raw_fd(), &mut buf).map_err(sys("ICMPv6 read"))?;
            // Type 129: Echo Reply, ours by its identifier.
            if len >= 8
                && buf[0] == 129
                && buf[4..6] == ECHO_ID.to_be_bytes()
                && let Some(from) = from
            {
                heard.push(Event {
                    at: Instant::now(),
                    change: Change::EchoReply(IpAddr::V6(from.ip())),
                });
            }
        }
    }
    Ok(heard)
}

/// Whether `address` is inside the prefix `(net, len)`.
pub fn inside(address: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(address) & mask == u128::from(net) & mask
}

/// An Echo Request to `to`; the kernel fills in the checksum of a raw
/// ICMPv6 socket's messages.
fn send_echo(echo: &OwnedFd, to: Ipv6Addr, sequence: u16) -> Result<(), LabError> {
    let mut request = vec![128, 0, 0, 0];
    request.extend_from_slice(&ECHO_ID.to_be_bytes());
    request.extend_from_slice(&sequence.to_be_bytes());
    request.extend_from_slice(b"meshlb-delivery");
    let destination = SockaddrIn6::from(std::net::SocketAddrV6::new(to, 0, 0, 0));
    sendto(echo.as_raw_fd(), &request, &destination, MsgFlags::empty()).map_err(sys("send Echo Request"))?;
    Ok(())
}

/// The time each destination's first event matching `pick` was heard.
pub fn first_times(
    events: &[Event],
    pick: impl Fn(&Change) -> Option<IpAddr>,
) -> std::collections::BTreeMap<IpAddr, Instant> {
    let mut times = std::collections::BTreeMap::new();
    for event in events {
        if let Some(address) = pick(&event.change) {
            times.entry(address).or_insert(event.at);
        }
    }
    times
}
