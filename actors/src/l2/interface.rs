//! The interface actor: one per network interface that answers for service
//! addresses. It owns the frame socket and the multicast memberships and
//! runs a [`Responder`] against them; it never blocks: frames arrive as a
//! stream, the responder's next timer is one pending `run_later`, the link
//! state comes from the link monitor ([`crate::l2::links`]) and is looked
//! at every [`LINK_POLL`].
//!
//! The Layer 2 applier ([`crate::l2::applier`]) tells it the whole set
//! of addresses it answers for ([`Answer`]).
//!
//! [`InterfaceActor::open`] opens the sockets on the caller's thread (so
//! errors reach the caller); [`OpenInterface::start_on`] runs the actor on
//! another arbiter (thread), where the socket is registered: the agent
//! answers on a thread of its own, never behind its control plane.
//!
//! A stall (the process frozen, its machine paused) is the responder's to
//! tell ([`Responder::handle_wake`], called first in every handler, with
//! the bound [`OpenInterface::resync_after_stalls`] gives it): questions
//! queued meanwhile are stale (answering them would pull clients back to a
//! node the mesh has replaced), and so is the address set. The actor drops
//! both, asks the applier for its set anew ([`Resync`]) and answers nothing
//! until that answer comes: the applier asks the mesh to read the clock and
//! decide first, so no set decided before the stall is taken, whichever
//! of the agent's tasks wakes first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message, Recipient, SpawnHandle,
    StreamHandler,
};
use tokio::sync::watch;

use crate::error::ActorError;
use crate::l2::applier::Resync;
pub use crate::l2::links::LINK_POLL;
use crate::l2::links::{Link, Links};
use crate::l2::responder::{AddressCounters, AnnounceSchedule, Responder, ResponderStats};
use crate::l2::socket::{FrameSocket, InterfaceInfo, MAX_FRAME, SolicitedNodeGroups, UnregisteredFrameSocket};
use crate::now;

/// How long the actor waits after a failed read before reading again.
pub const RECEIVE_RETRY: Duration = Duration::from_secs(1);

/// What the interface actor reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnouncerStatus {
    /// Whether the link is up.
    pub link_up: bool,
    /// Addresses answered for.
    pub owned: BTreeSet<IpAddr>,
    /// Counters.
    pub stats: ResponderStats,
    /// Per address ever owned here.
    pub addresses: BTreeMap<IpAddr, AddressCounters>,
}

/// Every address this interface answers for (empty: none any more).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Answer {
    /// The addresses answered here.
    pub addresses: BTreeSet<IpAddr>,
    /// `Some(n)`: the answer to the [`Resync`] this interface asked after
    /// its `n`th stall; until it comes, every other set is ignored.
    pub resync: Option<u64>,
}

/// Stops answering and stops the actor.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

struct Frame(Result<Vec<u8>, ActorError>);

/// An interface's sockets, open but not yet answering: they move to the
/// thread that runs the actor. See the module documentation.
#[derive(Debug)]
pub struct OpenInterface {
    name: String,
    socket: UnregisteredFrameSocket,
    groups: Option<SolicitedNodeGroups>,
    responder: Responder,
    status: watch::Sender<AnnouncerStatus>,
    links: watch::Receiver<Links>,
    resync: Option<Recipient<Resync>>,
}

impl OpenInterface {
    /// Takes a gap of `bound` between its wakes for a stall, after which it
    /// asks `applier` for its set anew (see the module documentation).
    /// Without this (one answering a fixed set), stalls are not looked for.
    pub fn resync_after_stalls(mut self, bound: Duration, applier: Recipient<Resync>) -> OpenInterface {
        self.responder = self.responder.forget_after_stalls(bound);
        self.resync = Some(applier);
        self
    }

    /// Runs the actor on the current arbiter.
    pub fn start(self) -> Addr<InterfaceActor> {
        InterfaceActor::create(move |_| self.into_actor())
    }

    /// Runs the actor on `arbiter`'s thread.
    pub fn start_on(self, arbiter: &ArbiterHandle) -> Addr<InterfaceActor> {
        InterfaceActor::start_in_arbiter(arbiter, move |_| self.into_actor())
    }

    /// The actor, its socket registered with this thread's reactor.
    fn into_actor(self) -> InterfaceActor {
        let socket = match self.socket.register() {
            Ok(socket) => Some(Rc::new(socket)),
            Err(e) => {
                tracing::error!("{e}; nothing is answered on {}", self.name);
                None
            }
        };
        InterfaceActor {
            name: self.name,
            socket,
            groups: self.groups,
            responder: self.responder,
            answering: BTreeSet::new(),
            stalls: 0,
            awaiting_resync: None,
            resync: self.resync,
            timer: None,
            status: self.status,
            links: self.links,
        }
    }
}

/// The interface actor. See the module documentation.
pub struct InterfaceActor {
    name: String,
    /// `None` if it could not be registered (the actor stops at once).
    socket: Option<Rc<FrameSocket>>,
    groups: Option<SolicitedNodeGroups>,
    responder: Responder,
    /// The addresses answered for.
    answering: BTreeSet<IpAddr>,
    /// Stalls noticed so far.
    stalls: u64,
    /// The stall whose [`Resync`] is awaited: other sets are ignored.
    awaiting_resync: Option<u64>,
    /// Whom it asks for its set after a stall.
    resync: Option<Recipient<Resync>>,
    timer: Option<SpawnHandle>,
    status: watch::Sender<AnnouncerStatus>,
    links: watch::Receiver<Links>,
}

impl InterfaceActor {
    /// Opens `interface`'s sockets (needs CAP_NET_RAW). `status` receives
    /// the link state, the owned set and the counters after every change;
    /// `links` is the link monitor's.
    pub fn open(
        interface: &str,
        schedule: AnnounceSchedule,
        status: watch::Sender<AnnouncerStatus>,
        links: watch::Receiver<Links>,
    ) -> Result<OpenInterface, ActorError> {
        let info = InterfaceInfo::read(interface)?;
        let socket = FrameSocket::open(interface, info.index)?;
        let groups = match SolicitedNodeGroups::new(interface, info.index) {
            Ok(groups) => Some(groups),
            Err(e) => {
                tracing::warn!("{e}; owned IPv6 addresses cannot be answered on {interface}");
                None
            }
        };
        let mut responder = Responder::new(info.mac, schedule);
        let up = links.borrow().get(interface).copied().is_some_and(Link::is_up);
        responder.set_link(up, now());
        Ok(OpenInterface {
            name: interface.to_owned(),
            socket,
            groups,
            responder,
            status,
            links,
            resync: None,
        })
    }

    fn apply_owned(&mut self) {
        let now = now();
        self.responder.set_owned(&self.answering, now);
        let v6: BTreeSet<_> = self
            .answering
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
            .collect();
        if let Some(groups) = &mut self.groups
            && let Err(e) = groups.set(&v6)
        {
            tracing::warn!(interface = self.name, "solicited-node group membership: {e}");
        }
    }

    /// Sends what the responder queued, reschedules its timer, reports.
    fn after_event(&mut self, ctx: &mut Context<Self>) {
        while let Some(frame) = self.responder.poll_transmit() {
            if let Some(Err(e)) = self.socket.as_ref().map(|s| s.try_send(&frame)) {
                tracing::warn!("{e}");
            }
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = self.responder.poll_timeout() {
            let delay = at.saturating_duration_since(now());
            self.timer = Some(ctx.run_later(delay, |actor, ctx| {
                actor.timer = None;
                actor.check_stall();
                let now = now();
                actor.responder.handle_timeout(now);
                actor.after_event(ctx);
            }));
        }
        if self.status.is_closed() {
            // Nobody watches: skip the copy.
            return;
        }
        let status = AnnouncerStatus {
            link_up: self.responder.link_up(),
            owned: self.responder.owned(),
            stats: self.responder.stats(),
            addresses: self.responder.address_counters(),
        };
        self.status.send_if_modified(|current| {
            let modified = *current != status;
            *current = status;
            modified
        });
    }

    /// Called first in every handler: after a stall, nothing stale may go
    /// out, whichever handler runs first on waking (a queued question, the
    /// timer of an announcement repeat, a new address set, the link poll).
    fn check_stall(&mut self) {
        let now = now();
        if let Some(stalled) = self.responder.handle_wake(now) {
            let dropped = self.socket.as_ref().map_or(0, |s| s.discard_queued());
            tracing::warn!(
                interface = self.name,
                dropped,
                stalled_ms = stalled.as_millis(),
                "stalled: stale questions dropped, answering nothing until the mesh has decided again"
            );
            self.answering.clear();
            self.apply_owned();
            self.stalls += 1;
            self.awaiting_resync = Some(self.stalls);
            if let Some(applier) = &self.resync {
                applier.do_send(Resync {
                    interface: self.name.clone(),
                    stall: self.stalls,
                });
            }
        }
    }

    fn poll_link(&mut self, ctx: &mut Context<Self>) {
        self.check_stall();
        let now = now();
        let up = self.links.borrow().get(&self.name).copied().is_some_and(Link::is_up);
        self.responder.set_link(up, now);
        self.after_event(ctx);
    }
}

impl Actor for InterfaceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(socket) = self.socket.as_ref().map(Rc::clone) else {
            ctx.stop();
            return;
        };
        let frames = futures_util::stream::unfold(socket, |socket| async move {
            let mut buf = vec![0u8; MAX_FRAME];
            let received = socket.recv(&mut buf).await.map(|len| {
                buf.truncate(len);
                buf
            });
            if received.is_err() {
                // An interface gone or down fails every read at once: try
                // again after a pause rather than in a tight loop.
                tokio::time::sleep(RECEIVE_RETRY).await;
            }
            Some((Frame(received), socket))
        });
        ctx.add_stream(frames);
        let now = now();
        self.responder.handle_wake(now);
        ctx.run_interval(LINK_POLL, |actor, ctx| actor.poll_link(ctx));
        tracing::info!(interface = self.name, "answering ARP and NDP");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        tracing::info!(interface = self.name, "no longer answering");
    }
}

impl StreamHandler<Frame> for InterfaceActor {
    fn handle(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        self.check_stall();
        match frame.0 {
            Ok(frame) => {
                let now = now();
                self.responder.handle_frame(&frame, now);
                self.after_event(ctx);
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

impl Handler<Answer> for InterfaceActor {
    type Result = ();

    fn handle(&mut self, answer: Answer, ctx: &mut Context<Self>) {
        self.check_stall();
        if let Some(stall) = self.awaiting_resync {
            if answer.resync != Some(stall) {
                tracing::debug!(interface = self.name, "address set decided before the stall ignored");
                return;
            }
            self.awaiting_resync = None;
        }
        self.answering = answer.addresses;
        self.apply_owned();
        self.after_event(ctx);
    }
}

impl Handler<Shutdown> for InterfaceActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.answering.clear();
        self.apply_owned();
        self.after_event(ctx);
        ctx.stop();
    }
}
