//! One interface's Layer 2 announcer: the thin I/O layer around a
//! [`Responder`]. It owns the frame socket and the multicast memberships,
//! takes the owned addresses from a watch channel, follows the link state,
//! and never blocks: every wait is on the socket, the responder's next
//! timer, the channel or the link poll.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ActorError;
use crate::l2::responder::{AnnounceSchedule, Responder, ResponderStats};
use crate::l2::socket::{FrameSocket, InterfaceInfo, MAX_FRAME, SolicitedNodeGroups, link_is_up};

/// How often the link state is read (so the loop wakes at least this often).
pub const LINK_POLL: Duration = Duration::from_millis(100);

/// A sleep this much longer than [`LINK_POLL`] means the process was
/// stalled (frozen, or its machine paused). Questions queued meanwhile are
/// stale, and so is ownership: the announcer forgets both and answers
/// nothing until it is given owned addresses anew.
pub const STALL: Duration = Duration::from_secs(1);

/// What the announcer reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnouncerStatus {
    /// Whether the link is up.
    pub link_up: bool,
    /// Addresses answered for.
    pub owned: BTreeSet<IpAddr>,
    /// Counters.
    pub stats: ResponderStats,
}

/// Runs the announcer of `interface` until `owned` is closed. The set in
/// `owned` is what this node owns on this interface; `status` gets the
/// link state, the owned set and the counters after every change.
pub async fn run_announcer(
    interface: &str,
    schedule: AnnounceSchedule,
    mut owned: watch::Receiver<BTreeSet<IpAddr>>,
    status: watch::Sender<AnnouncerStatus>,
) -> Result<(), ActorError> {
    let info = InterfaceInfo::read(interface)?;
    let socket = FrameSocket::open(interface, info.index)?;
    let mut groups = SolicitedNodeGroups::new(interface, info.index).ok();
    let mut responder = Responder::new(info.mac, schedule);
    let epoch = Instant::now();
    let now_ms = || epoch.elapsed().as_millis() as u64;
    responder.set_link(info.link_up, now_ms());
    let mut link_poll = tokio::time::interval(LINK_POLL);
    link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_FRAME];
    let initial = owned.borrow_and_update().clone();
    apply_owned(&mut responder, &mut groups, &initial, now_ms(), interface);
    loop {
        while let Some(frame) = responder.poll_transmit() {
            if let Err(e) = socket.send(&frame).await {
                tracing::warn!("{e}");
            }
        }
        status.send_replace(AnnouncerStatus {
            link_up: link_is_up(interface),
            owned: responder.owned(),
            stats: responder.stats(),
        });
        let timer = responder.poll_timeout();
        let sleep = async {
            match timer {
                Some(at) => tokio::time::sleep_until(epoch + Duration::from_millis(at)).await,
                None => std::future::pending().await,
            }
        };
        let asleep_since = Instant::now();
        tokio::select! {
            changed = owned.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let set = owned.borrow_and_update().clone();
                apply_owned(&mut responder, &mut groups, &set, now_ms(), interface);
            }
            received = socket.recv(&mut buf) => match received {
                Ok(len) => responder.handle_frame(buf.get(..len).unwrap_or_default(), now_ms()),
                Err(e) => tracing::warn!("{e}"),
            },
            () = sleep => responder.handle_timeout(now_ms()),
            _ = link_poll.tick() => responder.set_link(link_is_up(interface), now_ms()),
        }
        if asleep_since.elapsed() >= STALL {
            let dropped = socket.discard_queued();
            tracing::warn!(
                interface,
                dropped,
                "stalled: stale questions dropped, answering nothing until ownership is given anew"
            );
            responder.set_owned(&BTreeSet::new(), now_ms());
            groups_apply(&mut groups, &BTreeSet::new(), interface);
            owned.borrow_and_update();
        }
    }
}

fn apply_owned(
    responder: &mut Responder,
    groups: &mut Option<SolicitedNodeGroups>,
    owned: &BTreeSet<IpAddr>,
    now_ms: u64,
    interface: &str,
) {
    responder.set_owned(owned, now_ms);
    groups_apply(groups, owned, interface);
}

fn groups_apply(groups: &mut Option<SolicitedNodeGroups>, owned: &BTreeSet<IpAddr>, interface: &str) {
    let v6: BTreeSet<_> = owned
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
        .collect();
    match groups {
        Some(groups) => {
            if let Err(e) = groups.set(&v6) {
                tracing::warn!(interface, "solicited-node group membership: {e}");
            }
        }
        None if !v6.is_empty() => {
            tracing::warn!(interface, "IPv6 is off: owned IPv6 addresses cannot be answered")
        }
        None => {}
    }
}
