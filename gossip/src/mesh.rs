//! The mesh's sans-IO core: foca plus one ordered timer queue, node records,
//! anti-entropy, the quorum fence, and the view ownership is computed from.
//!
//! The caller owns the clock and the socket (quinn's pattern): it feeds
//! datagrams with [`Mesh::handle_datagram`], calls [`Mesh::handle_timeout`]
//! at [`Mesh::poll_timeout`], and sends what [`Mesh::poll_transmit`] yields.
//! Time is an `Instant` with every call, as in the other sans-IO cores, so
//! the simulation runs it on virtual time and the agent on tokio's; inside,
//! the mesh counts milliseconds from its start. The mesh keeps all of its own
//! timing, so both run the same code: when ownership is evaluated (at least
//! every [`EVALUATE_EVERY_MS`], and at once after a change it depends on:
//! [`Mesh::take_evaluation_due`]), what a stall is ([`STALL_MS`]: a gap in
//! the calls, after which the node settles again, [`MeshEvent::Stalled`]),
//! and when a graceful leave ends ([`Mesh::begin_leave`], then
//! [`MeshEvent::Left`]).
//!
//! Datagrams (before the secure envelope) start with a kind byte:
//!
//! | kind | content |
//! |---|---|
//! | 1 | a foca message (membership, probes, piggybacked record fragments) |
//! | 2 | anti-entropy digest: the records the sender holds in a name range |
//! | 3 | a record fragment sent directly |
//! | 4 | a request for records by node name |
//! | 5 | the owner watch ([`crate::watch`]): heartbeats, pings, probes, a death declared |
//! | 6 | a suspicion notice ([`SuspicionNotice`]): "I suspect you", from a member whose probe of the recipient failed |
//!
//! A member that suspects another tells it so directly, every
//! [`SUSPICION_NOTICE_MS`] until the suspicion is refuted or runs out
//! (Lifeguard's buddy system, which foca lacks): SWIM leaves the suspect
//! to learn of its suspicion from piggybacked gossip, and each update
//! rides along only `max_transmissions` times, all spent within a few
//! hundred milliseconds; in a burst of loss those few copies can all miss
//! the suspect, which then never refutes and is declared down. The suspect
//! refutes through foca and announces itself to the suspecter, whose foca
//! takes the new incarnation from the announcement's header.
//!
//! foca has no push/pull state sync, so records lost to packet loss past
//! their `max_transmissions` are repaired by anti-entropy: every
//! `anti_entropy_ms` a member sends a random member its digest; that member
//! sends back every record the digest lacks or holds older, and asks for
//! every record it holds older. A new member gets the same exchange at once.
//!
//! Owners are watched more closely than SWIM watches every member: a node
//! announcing addresses sends heartbeats to the live member that follows it
//! in name order ([`crate::watch`]). A watcher that declares its owner down
//! tells foca (whose dissemination of the death goes on as for any other)
//! and every live member at once, each of which takes the death as if it
//! had seen the suspicion itself; the owner's successors claim at once. An
//! owner that hears it was declared down (it was frozen past the watch's
//! deadline, say) rejoins and settles again before it announces anything.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use foca::{Foca, Member, Notification, Runtime, Timer};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::codec::{MeshCodec, SuspicionNotice};
use crate::identity::NodeId;
use crate::ownership::{Candidate, Claimants, Failback, Fence, FenceStatus, may_start_announcing};
use crate::placement::{Demand, place};
use crate::profile::{MAX_PLAINTEXT, Profile};
use crate::record::{BgpSection, Layer2Section, NodeRecord, RecordBook, ServiceId, SharedBook};
use crate::watch::{Watch, WatchMessage};

const KIND_FOCA: u8 = 1;
const KIND_DIGEST: u8 = 2;
const KIND_FRAGMENT: u8 = 3;
const KIND_REQUEST: u8 = 4;
const KIND_WATCH: u8 = 5;
const KIND_SUSPICION: u8 = 6;

/// Why the mesh refused something.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// foca refused a message or an operation.
    #[error("membership: {0}")]
    Foca(#[from] foca::Error),
    /// A record could not be encoded.
    #[error("record: {0}")]
    Record(#[from] crate::record::RecordError),
    /// A datagram of an unknown kind, or a malformed anti-entropy message.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A malformed owner-watch message.
    #[error("owner watch: {0}")]
    Watch(#[from] crate::watch::WatchError),
    /// A malformed suspicion notice.
    #[error("suspicion notice: {0}")]
    Suspicion(#[from] crate::codec::CodecError),
}

/// What changed in the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshEvent {
    /// A member became reachable.
    MemberUp(NodeId),
    /// A member was declared down (or left).
    MemberDown(NodeId),
    /// A node's record changed.
    RecordChanged(String),
    /// This node was declared down and rejoined with a new identity.
    Rejoined(NodeId),
    /// No other member is reachable.
    Idle,
    /// This node was stalled (its process frozen, its machine paused) for
    /// this long: what it knew of the mesh is stale, so it announces
    /// nothing until it has settled again (see [`STALL_MS`]).
    Stalled(Duration),
    /// The graceful leave begun by [`Mesh::begin_leave`] is done: this node
    /// announces nothing and has told the others it is gone.
    Left,
}

impl MeshEvent {
    /// The event as one word, for logs and status files.
    pub fn kind(&self) -> &'static str {
        match self {
            MeshEvent::MemberUp(_) => "member-up",
            MeshEvent::MemberDown(_) => "member-down",
            MeshEvent::RecordChanged(_) => "record-changed",
            MeshEvent::Rejoined(_) => "rejoined",
            MeshEvent::Idle => "idle",
            MeshEvent::Stalled(_) => "stalled",
            MeshEvent::Left => "left",
        }
    }

    /// The member it is about (`None`: this node, or no one).
    pub fn member(&self) -> Option<&str> {
        match self {
            MeshEvent::MemberUp(id) | MeshEvent::MemberDown(id) | MeshEvent::Rejoined(id) => Some(&id.name),
            MeshEvent::RecordChanged(name) => Some(name),
            MeshEvent::Idle | MeshEvent::Stalled(_) | MeshEvent::Left => None,
        }
    }
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Datagrams produced.
    pub sent_datagrams: u64,
    /// Their bytes (before the secure envelope).
    pub sent_bytes: u64,
    /// Datagrams taken in.
    pub received_datagrams: u64,
    /// Datagrams refused (malformed, from ourselves, refused by foca).
    pub refused_datagrams: u64,
    /// Members declared down, over this node's life.
    pub members_declared_down: u64,
    /// Crashes detected (members declared down that had not left),
    /// over this node's life.
    pub failures_detected: u64,
    /// The latest of them (at most [`RECENT_DETECTIONS`]), oldest first.
    pub recent_detections: VecDeque<FailureDetection>,
    /// Owners this node declared down as their watcher, over its life.
    pub watch_declarations: u64,
    /// Members this node suspected (a probe of them failed), over its
    /// life; each is told so ([`SuspicionNotice`]) until it refutes.
    pub suspicions_raised: u64,
}

/// How many [`FailureDetection`]s [`MeshStats`] keeps.
pub const RECENT_DETECTIONS: usize = 32;

/// A member this node declared down without it having left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetection {
    /// The member.
    pub member: String,
    /// When it was declared down.
    pub at: Instant,
    /// How long before that this node last received a datagram from it:
    /// an upper bound of the detection time, since the member failed after
    /// it last spoke. `None` when this node never heard it directly.
    pub silent: Option<Duration>,
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Identity.
    pub id: NodeId,
    /// Its latest record, once received.
    pub record: Option<NodeRecord>,
}

/// A service as ownership sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshService {
    /// [`crate::record::service_id`] of `namespace/name`.
    pub id: ServiceId,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Failback policy.
    pub failback: Failback,
    /// Which nodes the cluster's objects let serve it.
    pub eligible: Eligible,
}

/// Which nodes the cluster's objects let serve a service: its endpoints,
/// which every node reads alike, unlike what only a node knows of itself
/// (its links, its health checks). Part of the configuration fingerprint:
/// when the endpoints change, every node's record may change at once (a
/// Service's first endpoint turning ready makes every node serve it), and
/// each node reads the change a moment apart from the others; a node
/// that saw only itself serving would announce on a view the others'
/// records do not share yet. With the fingerprint changed, no node starts
/// announcing until the records agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Eligible {
    /// Any node (a ready endpoint somewhere, or endpoints not told, as in
    /// standalone mode).
    #[default]
    Any,
    /// None: no ready endpoint.
    None,
    /// The nodes with a ready endpoint (externalTrafficPolicy Local).
    Nodes(BTreeSet<String>),
}

/// A node's preference weight for a service (0: no preference), from its
/// record (labels) and the service.
pub type WeightFn = Arc<dyn Fn(&NodeRecord, &MeshService) -> u32 + Send + Sync>;

/// What this node's Layer 2 side tells the mesh, in one step: every service
/// ownership is computed for, how nodes are weighted for them, and this
/// node's [`Layer2Section`] of its record. The section and the
/// configuration fingerprint (of `services`) change together, so a member
/// that sees the fingerprint also sees what this node serves under it.
#[derive(Clone)]
pub struct ServicePlan {
    /// Every service this agent knows, whether or not it serves it here.
    pub services: Vec<MeshService>,
    /// Preference weights.
    pub weight: WeightFn,
    /// What this node's record says of Layer 2.
    pub layer2: Layer2Section,
}

impl Default for ServicePlan {
    fn default() -> ServicePlan {
        ServicePlan {
            services: Vec::new(),
            weight: Arc::new(|_, _| 0),
            layer2: Layer2Section::default(),
        }
    }
}

impl std::fmt::Debug for ServicePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePlan")
            .field("services", &self.services.len())
            .field("layer2", &format_args!("{}", self.layer2))
            .finish()
    }
}

/// The configuration fingerprint of a set of services: what ownership is
/// computed from (ids, addresses, failback, which nodes the cluster's
/// objects let serve them), independent of order.
pub fn services_fingerprint(services: &[MeshService]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&MeshService> = services.iter().collect();
    sorted.sort_by_key(|s| s.id);
    let mut hasher = Sha256::new();
    for service in sorted {
        hasher.update(service.id.0.to_be_bytes());
        hasher.update([u8::from(service.failback == Failback::NonRevertive)]);
        hasher.update((service.addresses.len() as u32).to_be_bytes());
        for address in &service.addresses {
            match address {
                IpAddr::V4(a) => hasher.update(a.octets()),
                IpAddr::V6(a) => hasher.update(a.octets()),
            }
        }
        match &service.eligible {
            Eligible::Any => hasher.update([0]),
            Eligible::None => hasher.update([1]),
            Eligible::Nodes(nodes) => {
                hasher.update([2]);
                hasher.update((nodes.len() as u32).to_be_bytes());
                for node in nodes {
                    hasher.update((node.len() as u32).to_be_bytes());
                    hasher.update(node.as_bytes());
                }
            }
        }
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// How long, after its own or a member's configuration fingerprint
/// changed, a node starts announcing nothing new while the live members'
/// fingerprints differ (they are reading a changed configuration at
/// different moments). Bounded, so a member whose configuration differs
/// for good holds nothing back for longer.
pub const CONFIGURATION_SETTLE_MS: u64 = 2_000;

/// How long a node waits, after a live member's record dropped an address
/// this node is to take over, before it announces it: the member's record
/// leaves as soon as it decides, while its own answering goes quiet a
/// moment later (its decision still has to reach its interfaces, and a
/// gratuitous ARP it had scheduled may go out meanwhile). A crashed or
/// departed claimant gets no such wait.
pub const HANDBACK_GUARD_MS: u64 = 10;

/// Ownership is evaluated at least this often (ms), so time-driven
/// changes take effect without an event; [`Mesh::poll_timeout`] is never
/// further away than this, so a caller that keeps to it calls the mesh at
/// least this often.
pub const EVALUATE_EVERY_MS: u64 = 200;

/// A gap this long between two calls of the mesh (and at least twice the
/// longest sleep it asks for, [`Mesh::poll_timeout`] being at most the
/// evaluation interval away) is a stall: the process was frozen or its
/// machine paused, the others have moved on meanwhile, and what this node
/// believes is stale. The one definition of a stall, for the agent and the
/// simulation alike.
pub const STALL_MS: u64 = 1_000;

/// How often (ms) a member tells a member it suspects so
/// ([`SuspicionNotice`]): the suspect gets several chances to hear of it and
/// refute within the suspicion time, even at 30 % loss each way.
pub const SUSPICION_NOTICE_MS: u64 = 50;

/// foca's effects during one call, drained into the mesh afterwards.
#[derive(Default)]
struct Effects {
    sends: Vec<(SocketAddr, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    notifications: Vec<foca::OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Effects {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        let mut packet = Vec::with_capacity(data.len() + 1);
        packet.push(KIND_FOCA);
        packet.extend_from_slice(data);
        self.sends.push((to.addr, packet));
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((after, event));
    }
}

type Swim = Foca<NodeId, MeshCodec, Xoshiro256PlusPlus, SharedBook>;

/// A mesh member's whole protocol state.
pub struct Mesh {
    foca: Swim,
    book: SharedBook,
    rng: Xoshiro256PlusPlus,
    profile: Profile,
    /// The time the mesh counts its milliseconds from (its start).
    origin: Instant,
    /// Now, in milliseconds from `origin`.
    now_ms: u64,
    /// foca's timers by (due time, submission order): fired in that order.
    timers: BTreeMap<(u64, u64), Timer<NodeId>>,
    timer_seq: u64,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<MeshEvent>,
    own: NodeRecord,
    live: BTreeMap<String, NodeId>,
    /// Members declared down since their record last changed: the claims in
    /// that record are from before they went away (a frozen node thawing
    /// with its old record still claiming what it no longer announces) and
    /// count for nothing until they publish anew; otherwise a non-revertive
    /// address could stick to a node that is not announcing it. Over UDP the
    /// renewed identity and the new record travel in different datagrams,
    /// so others may see the member alive before its new record arrives.
    /// A member seen alive again whose record stays the same (it never
    /// stopped: this node was the one cut off from it) counts again a
    /// detection bound after it came back (the time here, `Some`), long
    /// after a thawed member's new record would have arrived.
    stale_claims: BTreeMap<String, Option<u64>>,
    /// Members declared down without this node having seen them suspected
    /// first, and until when their claims still count. A crashed member is
    /// suspected for a suspicion time before it is declared down, and the
    /// suspicion is gossiped meanwhile; a death that comes without one is
    /// usually news from a member with a stale view: a node that was cut
    /// off spreads, when it is heard again, the deaths it concluded
    /// meanwhile. foca's deaths are final, so such a member can only
    /// rejoin with a renewed identity, which it does as soon as it hears of
    /// its death. Taking its addresses at once would make two announcers
    /// until it is back; waiting a suspicion time for it costs a real
    /// failover that much only where the suspicion was lost on the way.
    presumed_alive: BTreeMap<String, (NodeId, u64)>,
    /// Members this node declared down lately (while it had quorum: in
    /// the last two detection bounds; without quorum: all of them), with
    /// their identity and when. A node that learns it was declared down
    /// ([`MeshEvent::Rejoined`]) was the one cut off: the deaths it
    /// concluded meanwhile are its own view, not the mesh's, and foca keeps
    /// them until each member renews its identity, which the member does
    /// only once it hears of its death (this node's announcements to down
    /// members reach it only over a direct path). So on rejoining it
    /// presumes them alive (see `presumed_alive`) for two announcement
    /// rounds and a detection bound; otherwise, with quorum back, it would
    /// take over what they still announce (the placement gives a returning
    /// node, the least loaded, exactly those addresses).
    recent_deaths: BTreeMap<String, (NodeId, u64)>,
    /// Members seen suspected in their current identity.
    suspected: BTreeSet<NodeId>,
    fence: Fence,
    /// Whether the fence gave quorum at its last observation.
    had_quorum: bool,
    /// What ownership is computed for.
    plan: ServicePlan,
    /// The configuration fingerprint in each live member's record.
    fingerprints: BTreeMap<String, u64>,
    /// When this node's or a member's configuration fingerprint last
    /// changed (ms).
    configuration_changed_ms: Option<u64>,
    /// Who claimed each address at the last ownership evaluation.
    last_claimants: Claimants,
    /// Addresses this node is to take over that a live member released,
    /// and when it released them (see [`HANDBACK_GUARD_MS`]).
    released_ms: BTreeMap<IpAddr, u64>,
    /// A time-driven change ownership depends on came due.
    evaluation_due: bool,
    /// How often ownership is evaluated at least (ms).
    evaluate_every_ms: u64,
    /// When ownership is next evaluated by the clock alone.
    next_evaluation_ms: u64,
    /// When the caller last handed the mesh the time (ms): a datagram or a
    /// timeout.
    last_turn_ms: u64,
    /// When the graceful leave begun ends (ms).
    leave_at_ms: Option<u64>,
    /// The graceful leave is done.
    left: bool,
    seeds: Vec<SocketAddr>,
    next_anti_entropy_ms: u64,
    /// When the members this node suspects are next told so.
    next_suspicion_notice_ms: u64,
    next_seed_announce_ms: u64,
    joined_at_ms: u64,
    /// Whether this node has settled once since its process started: its
    /// first settle waits for the members it expects (see
    /// [`Mesh::settled`]).
    settled_once: bool,
    /// When a member last became live.
    last_arrival_ms: u64,
    /// When a datagram last came from each member's address (ms).
    last_heard_ms: BTreeMap<SocketAddr, u64>,
    /// The owner watch (`None`: the profile has none).
    watch: Option<Watch>,
    /// Whether the watch found this node cut off at the last look.
    was_cut_off: bool,
    stats: MeshStats,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("identity", self.foca.identity())
            .field("live", &self.live.len())
            .finish()
    }
}

impl Mesh {
    /// A mesh member with `identity`, not yet joined. `seed` seeds its
    /// random choices (whom to probe, gossip and sync with).
    pub fn new(identity: NodeId, profile: Profile, seed: u64, now: Instant) -> Mesh {
        let now_ms = 0;
        let book = SharedBook::default();
        let own = NodeRecord::new(identity.name.clone(), identity.boot);
        let mut foca = Foca::with_custom_broadcast(
            identity,
            profile.foca_config(),
            Xoshiro256PlusPlus::seed_from_u64(seed),
            MeshCodec,
            book.clone(),
        );
        for fragment in own.fragments().unwrap_or_default() {
            if let Err(e) = foca.add_broadcast(&fragment) {
                tracing::warn!("own record: {e}");
            }
        }
        let _ = book.lock().take_changed();
        let watch = profile.watch_timing().map(|timing| Watch::new(timing, seed as u32));
        Mesh {
            foca,
            book,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            next_anti_entropy_ms: now_ms + profile.anti_entropy_ms,
            next_suspicion_notice_ms: now_ms,
            next_seed_announce_ms: now_ms,
            profile,
            origin: now,
            now_ms,
            timers: BTreeMap::new(),
            timer_seq: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            own,
            live: BTreeMap::new(),
            stale_claims: BTreeMap::new(),
            presumed_alive: BTreeMap::new(),
            recent_deaths: BTreeMap::new(),
            suspected: BTreeSet::new(),
            fence: Fence::default(),
            had_quorum: false,
            plan: ServicePlan::default(),
            fingerprints: BTreeMap::new(),
            configuration_changed_ms: None,
            last_claimants: Claimants::new(),
            released_ms: BTreeMap::new(),
            evaluation_due: true,
            evaluate_every_ms: EVALUATE_EVERY_MS,
            next_evaluation_ms: now_ms + EVALUATE_EVERY_MS,
            last_turn_ms: now_ms,
            leave_at_ms: None,
            left: false,
            seeds: Vec::new(),
            joined_at_ms: now_ms,
            settled_once: false,
            last_arrival_ms: now_ms,
            last_heard_ms: BTreeMap::new(),
            watch,
            was_cut_off: false,
            stats: MeshStats::default(),
        }
    }

    /// This node's identity now (it changes on rejoin).
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Replaces the quorum fence settings.
    pub fn set_fence(&mut self, fence: Fence) {
        self.fence = fence;
        self.observe_fence();
    }

    /// Replaces the services ownership is computed for, and publishes what
    /// this node's record says of them (see [`ServicePlan`]).
    pub fn set_services(&mut self, plan: ServicePlan) -> Result<(), MeshError> {
        let fingerprint = services_fingerprint(&plan.services);
        if fingerprint != self.own.ownership.config_fingerprint {
            self.configuration_changed_ms = Some(self.now_ms);
        }
        let layer2 = plan.layer2.clone();
        self.plan = plan;
        self.evaluation_due = true;
        self.update_record(|r| {
            r.layer2 = layer2;
            r.ownership.config_fingerprint = fingerprint;
        })
    }

    /// Replaces what this node's record says of its BGP announcements.
    pub fn set_bgp(&mut self, bgp: BgpSection) -> Result<(), MeshError> {
        if self.own.bgp == bgp {
            return Ok(());
        }
        self.update_record(|r| r.bgp = bgp)
    }

    /// Replaces the labels in this node's record (the node selectors of
    /// the others match them).
    pub fn set_labels(&mut self, labels: BTreeMap<String, String>) -> Result<(), MeshError> {
        self.update_record(|r| r.labels = labels)
    }

    /// The services ownership is computed for.
    pub fn services(&self) -> &[MeshService] {
        &self.plan.services
    }

    /// Counters.
    pub fn stats(&self) -> &MeshStats {
        &self.stats
    }

    /// Joins through `seeds` (gossip addresses; this node's own is skipped).
    /// Seeds are announced to again every `rejoin_seeds_ms` while no other
    /// member is reachable, so the order agents start in does not matter.
    pub fn join(&mut self, seeds: &[SocketAddr], now: Instant) {
        self.now_ms = self.now_ms.max(self.ms(now));
        self.joined_at_ms = self.now_ms;
        let own = self.identity().addr;
        self.seeds = seeds.iter().copied().filter(|s| *s != own).collect();
        self.publish_settling();
        self.announce_to_seeds();
    }

    /// Replaces the seeds (the cluster's nodes were listed anew) and
    /// announces to them, without starting the settle period again: a
    /// member already joined stays as it is.
    pub fn set_seeds(&mut self, seeds: &[SocketAddr]) {
        let own = self.identity().addr;
        self.seeds = seeds.iter().copied().filter(|s| *s != own).collect();
        self.announce_to_seeds();
    }

    /// Expects a cluster of `members` (this node included) from now on, as
    /// the list of nodes that run an agent says.
    pub fn expect_members(&mut self, members: usize) {
        self.fence.expect(members);
        self.observe_fence();
    }

    fn announce_to_seeds(&mut self) {
        self.next_seed_announce_ms = self.now_ms + self.profile.rejoin_seeds_ms;
        for seed in self.seeds.clone() {
            let mut fx = Effects::default();
            let result = self.foca.announce(NodeId::seed(seed), &mut fx);
            self.absorb(fx);
            if let Err(e) = result {
                tracing::debug!(%seed, "announce: {e}");
            }
        }
    }

    /// Changes how often ownership is evaluated at least (default
    /// [`EVALUATE_EVERY_MS`]; a large simulation evaluates less often to
    /// run faster). A stall is measured against it.
    pub fn set_evaluation_interval(&mut self, every_ms: u64) {
        self.evaluate_every_ms = every_ms.max(1);
        self.next_evaluation_ms = self.next_evaluation_ms.min(self.now_ms + self.evaluate_every_ms);
    }

    /// When [`Mesh::handle_timeout`] should next be called: never later
    /// than the next periodic evaluation.
    pub fn poll_timeout(&self) -> Instant {
        let timer = self.timers.first_key_value().map_or(u64::MAX, |((due, _), _)| *due);
        let mut next = timer.min(self.next_anti_entropy_ms).min(self.next_evaluation_ms);
        if let Some(at) = self.leave_at_ms.filter(|_| !self.left) {
            next = next.min(at);
        }
        if self.live.is_empty() && !self.seeds.is_empty() {
            next = next.min(self.next_seed_announce_ms);
        }
        if let Some(settles) = self.settle_deadline() {
            next = next.min(settles);
        }
        if let Some(until) = self.presumed_alive.values().map(|(_, until)| *until).min() {
            next = next.min(until);
        }
        if let Some(released) = self.released_ms.values().min() {
            next = next.min(released + HANDBACK_GUARD_MS);
        }
        if let Some(counts_again) = self.stale_claims.values().flatten().min() {
            next = next.min(*counts_again);
        }
        if let Some(watch) = self.watch.as_ref().and_then(Watch::poll_timeout) {
            next = next.min(watch);
        }
        if self
            .timers
            .values()
            .any(|timer| matches!(timer, Timer::ChangeSuspectToDown { .. }))
        {
            next = next.min(self.next_suspicion_notice_ms);
        }
        self.instant(next)
    }

    /// `now` in the mesh's milliseconds (from its start).
    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The mesh's milliseconds `ms` as a time.
    fn instant(&self, ms: u64) -> Instant {
        // A mesh that ran for centuries: as far as the clock goes.
        let far = Duration::from_secs(100 * 365 * 24 * 3600);
        self.origin + Duration::from_millis(ms).min(far)
    }

    /// Whether something time-driven that ownership depends on came due
    /// since the last call (the caller evaluates ownership then); cleared
    /// by the call.
    pub fn take_evaluation_due(&mut self) -> bool {
        std::mem::take(&mut self.evaluation_due)
    }

    /// Takes the time from the caller, first in every call that has it: a
    /// gap of [`STALL_MS`] (and of two evaluation intervals) means this
    /// node was stalled, and it settles again before it announces.
    fn turn(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let gap = self.now_ms.saturating_sub(self.last_turn_ms);
        self.last_turn_ms = self.now_ms;
        if gap >= STALL_MS.max(2 * self.evaluate_every_ms) && !self.left {
            self.events.push_back(MeshEvent::Stalled(Duration::from_millis(gap)));
            self.resettle(self.now_ms);
            self.evaluation_due = true;
        }
    }

    /// Fires every timer due at `now`, in order.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.turn(self.ms(now));
        if self.now_ms >= self.next_evaluation_ms {
            self.next_evaluation_ms = self.now_ms + self.evaluate_every_ms;
            self.evaluation_due = true;
        }
        if self.leave_at_ms.is_some_and(|at| at <= self.now_ms) && !self.left {
            self.finish_leave();
            return;
        }
        self.drop_refuted_suspicions();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > self.now_ms {
                break;
            }
            let event = entry.remove();
            let mut fx = Effects::default();
            let result = self.foca.handle_timer(event, &mut fx);
            self.absorb(fx);
            if let Err(e) = result {
                tracing::debug!("timer: {e}");
            }
        }
        if self.now_ms >= self.next_suspicion_notice_ms {
            self.next_suspicion_notice_ms = self.now_ms + SUSPICION_NOTICE_MS;
            self.notify_suspects();
        }
        if self.now_ms >= self.next_anti_entropy_ms {
            self.next_anti_entropy_ms = self.now_ms + self.profile.anti_entropy_ms;
            let partners: Vec<NodeId> = self.live.values().cloned().collect();
            if !partners.is_empty() {
                let pick = self.rng.random_range(0..partners.len());
                self.send_digest(partners[pick].addr);
            }
            // Only members' addresses are worth remembering.
            let addresses: BTreeSet<SocketAddr> = partners.iter().map(|id| id.addr).collect();
            self.last_heard_ms.retain(|addr, _| addresses.contains(addr));
        }
        if self.live.is_empty() && !self.seeds.is_empty() && self.now_ms >= self.next_seed_announce_ms {
            self.announce_to_seeds();
        }
        let now = self.now_ms;
        let expired: Vec<String> = self
            .presumed_alive
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.presumed_alive.remove(&name);
            self.stale_claims.insert(name, None);
            self.evaluation_due = true;
        }
        let renewed = self.stale_claims.len();
        self.stale_claims.retain(|_, until| until.is_none_or(|at| at > now));
        if self.stale_claims.len() != renewed {
            self.evaluation_due = true;
        }
        if self.released_ms.values().any(|at| at + HANDBACK_GUARD_MS <= now) {
            self.evaluation_due = true;
        }
        if !self.left {
            let helpers: Vec<String> = self.live.keys().cloned().collect();
            let may_declare = self.settled() && self.has_quorum();
            if let Some(watch) = self.watch.as_mut() {
                watch.handle_timeout(now, &helpers, may_declare);
            }
            self.drain_watch();
            self.note_cut_off();
        }
        self.observe_fence();
        self.publish_settling();
    }

    /// Drops the deadlines of suspicions foca no longer holds (the suspect
    /// refuted: foca holds it at a newer incarnation, or under a renewed
    /// identity). foca 2.0.0 checks the incarnation itself before declaring
    /// the suspect down, but sends it `TurnUndead` even when the check
    /// fails, so a member that refuted in time was still told it is down
    /// and rejoined under a renewed identity: after a burst of loss, every
    /// member that had been suspected and refuted did so, and ownership was
    /// re-evaluated for nothing. Called before any timer fires.
    fn drop_refuted_suspicions(&mut self) {
        let foca = &self.foca;
        self.timers.retain(|_, timer| match timer {
            Timer::ChangeSuspectToDown {
                member_id, incarnation, ..
            } => foca
                .iter_membership_state()
                .any(|member| member.id() == member_id && member.incarnation() == *incarnation),
            _ => true,
        });
    }

    /// Tells every member this node suspects (whose suspicion deadline is
    /// pending, so still standing after [`Mesh::drop_refuted_suspicions`])
    /// that it does.
    fn notify_suspects(&mut self) {
        let notices: BTreeSet<(SocketAddr, SuspicionNotice)> = self
            .timers
            .values()
            .filter_map(|timer| match timer {
                Timer::ChangeSuspectToDown {
                    member_id, incarnation, ..
                } => Some((member_id.addr, SuspicionNotice::about(member_id, *incarnation))),
                _ => None,
            })
            .collect();
        for (addr, notice) in notices {
            self.push(addr, KIND_SUSPICION, &notice.encode());
        }
    }

    /// A suspicion notice from `from`: if it is about this identity, foca
    /// refutes (it raises its incarnation past the suspected one and
    /// gossips) and announces this node to the suspecter, whose foca takes
    /// the new incarnation from the announcement. A notice about an earlier
    /// identity, or from a sender that is not a live member, is dropped.
    fn handle_suspicion(&mut self, from: SocketAddr, body: &[u8]) -> Result<(), MeshError> {
        let notice = SuspicionNotice::decode(body)?;
        let own = self.foca.identity().clone();
        if !notice.is_about(&own) {
            return Ok(());
        }
        let Some(suspecter) = self.member_at(from).cloned() else {
            return Ok(());
        };
        let suspected = Member::new(own, notice.incarnation, foca::State::Suspect);
        let mut fx = Effects::default();
        let result = self
            .foca
            .apply_many(std::iter::once(suspected), true, &mut fx)
            .and_then(|()| self.foca.announce(suspecter, &mut fx));
        self.absorb(fx);
        result?;
        Ok(())
    }

    /// Takes one datagram (already authenticated and decrypted).
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> Result<(), MeshError> {
        self.turn(self.ms(now));
        self.stats.received_datagrams += 1;
        self.last_heard_ms.insert(from, self.now_ms);
        let result = self.dispatch(from, data);
        if result.is_err() {
            self.stats.refused_datagrams += 1;
        } else if let Some(name) = self.member_at(from).map(|id| id.name.clone())
            && let Some(watch) = self.watch.as_mut()
        {
            watch.heard(&name, self.now_ms);
        }
        self.drain_watch();
        self.note_cut_off();
        self.publish_settling();
        result
    }

    fn dispatch(&mut self, from: SocketAddr, data: &[u8]) -> Result<(), MeshError> {
        let (&kind, body) = data.split_first().ok_or(MeshError::Malformed("empty datagram"))?;
        match kind {
            KIND_FOCA => {
                let mut fx = Effects::default();
                let result = self.foca.handle_data(body, &mut fx);
                self.absorb(fx);
                result?;
            }
            KIND_DIGEST => self.handle_digest(from, body)?,
            KIND_FRAGMENT => {
                self.foca.add_broadcast(body)?;
                self.collect_record_changes();
            }
            KIND_REQUEST => {
                let names = parse_names(body)?;
                for name in names {
                    self.send_record(from, &name);
                }
            }
            KIND_WATCH => self.handle_watch(from, body)?,
            KIND_SUSPICION => self.handle_suspicion(from, body)?,
            _ => return Err(MeshError::Malformed("datagram kind")),
        }
        Ok(())
    }

    /// The next datagram to send (before the secure envelope).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let next = self.outbox.pop_front()?;
        self.stats.sent_datagrams += 1;
        self.stats.sent_bytes += next.1.len() as u64;
        Some(next)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MeshEvent> {
        self.events.pop_front()
    }

    /// This node's own record.
    pub fn own_record(&self) -> &NodeRecord {
        &self.own
    }

    /// Changes this node's record and spreads the new version. Private:
    /// each section has one writer ([`Mesh::set_labels`],
    /// [`Mesh::set_services`], and the mesh itself for the ownership
    /// section).
    fn update_record(&mut self, change: impl FnOnce(&mut NodeRecord)) -> Result<(), MeshError> {
        let mut next = self.own.clone();
        change(&mut next);
        next.node = self.own.node.clone();
        next.boot = self.own.boot;
        next.version = self.own.version;
        if next == self.own {
            return Ok(());
        }
        next.version += 1;
        let fragments = next.fragments()?;
        self.own = next;
        // Through foca's broadcast handler: the book assembles the new
        // version from its fragments and foca disseminates each one.
        for fragment in fragments {
            self.foca.add_broadcast(&fragment)?;
        }
        self.collect_record_changes();
        Ok(())
    }

    /// Starts a graceful leave at `now`: the record says `leaving`, so the others
    /// stop counting this node as a candidate and its successors start
    /// announcing while it still does. After the handover time
    /// ([`Mesh::handover_ms`]) [`Mesh::handle_timeout`] ends it: this node
    /// announces nothing, tells a few members it is gone, and emits
    /// [`MeshEvent::Left`].
    pub fn begin_leave(&mut self, now: Instant) -> Result<(), MeshError> {
        self.turn(self.ms(now));
        if self.leave_at_ms.is_none() {
            self.leave_at_ms = Some(self.now_ms + self.handover_ms());
        }
        self.update_record(|r| r.ownership.leaving = true)
    }

    /// How long a leaving node keeps announcing after [`Mesh::begin_leave`]:
    /// long enough for its record to reach every member.
    pub fn handover_ms(&self) -> u64 {
        3 * self.profile.gossip_every_ms + self.profile.probe_period_ms
    }

    /// Whether the graceful leave is done.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Ends the graceful leave: silence first (no claims, evaluated at
    /// once), then the goodbye.
    fn finish_leave(&mut self) {
        self.left = true;
        self.evaluation_due = true;
        self.events.push_back(MeshEvent::Left);
        let mut fx = Effects::default();
        let result = self.foca.leave_cluster(&mut fx);
        self.absorb(fx);
        self.live.clear();
        if let Err(e) = result {
            tracing::warn!("leave: {e}");
        }
    }

    /// While leaving: what it claimed, but an address no more once another
    /// member's record claims it. The leaver answers until its successor
    /// announces (nothing is left unanswered), and the two answer together
    /// only while the successor's claim is on its way, not for the whole
    /// handover time.
    fn handing_over(&self) -> BTreeSet<IpAddr> {
        let book = self.book.lock();
        let taken: BTreeSet<IpAddr> = self
            .live_records(&book)
            .skip(1)
            .filter_map(|(_, record)| record)
            .filter(|r| !r.ownership.leaving && !r.ownership.settling)
            .flat_map(|r| r.ownership.claims.iter().copied())
            .collect();
        self.own.ownership.claims.difference(&taken).copied().collect()
    }

    /// Every live member, this node first, with its record of the same
    /// boot (a record of an earlier boot says nothing about the process
    /// running now).
    fn live_records<'b>(&'b self, book: &'b RecordBook) -> impl Iterator<Item = (&'b NodeId, Option<&'b NodeRecord>)> {
        std::iter::once(self.identity())
            .chain(self.live.values())
            .map(move |id| (id, book.get(&id.name).filter(|r| r.boot == id.boot)))
    }

    /// Live members, this node first, by name.
    pub fn members(&self) -> Vec<MemberView> {
        let book = self.book.lock();
        self.live_records(&book)
            .map(|(id, record)| MemberView {
                id: id.clone(),
                record: record.cloned(),
            })
            .collect()
    }

    /// `(identity, stamp of its current record)` of every live member, this
    /// node first: [`Mesh::members`] without copying the records.
    pub fn member_stamps(&self) -> Vec<(NodeId, Option<(u64, u64)>)> {
        let book = self.book.lock();
        self.live_records(&book)
            .map(|(id, record)| (id.clone(), record.map(NodeRecord::stamp)))
            .collect()
    }

    /// Names of the live members, this node included.
    pub fn live_names(&self) -> BTreeSet<String> {
        std::iter::once(self.own.node.clone())
            .chain(self.live.keys().cloned())
            .collect()
    }

    /// Whether this node sees a majority of the reference membership.
    pub fn has_quorum(&self) -> bool {
        self.fence_status().quorum
    }

    /// What the quorum fence says now (see [`Fence`]).
    pub fn fence_status(&self) -> FenceStatus {
        let names = self.live_names();
        self.fence.status(names.iter().map(String::as_str))
    }

    /// The fence's reference membership.
    pub fn fence_reference(&self) -> Vec<String> {
        self.fence.reference().map(str::to_owned).collect()
    }

    /// Whether this node has had time to learn the membership and records
    /// since it joined, or last regained quorum: four probe periods once
    /// another member answered, or four times that with nobody answering
    /// (a lone node). Until then it announces nothing, so a restarting
    /// agent does not briefly claim every address. The first settle after
    /// the process starts also waits, up to a lone node's time, for every
    /// member the fence expects, and then four probe periods from the last
    /// one's arrival (for its record): at a cold start the others are most
    /// likely starting a moment later (a DaemonSet's pods start over
    /// seconds), and a majority that settled without them would hand an
    /// address on as each one arrived. A node without quorum is not
    /// settled either, and its record says so: the others do not
    /// give it an address that someone announces (a firewalled node that
    /// the others hear but that hears no one would otherwise be handed
    /// addresses it will never announce).
    pub fn settled(&self) -> bool {
        self.had_quorum && self.now_ms >= self.settles_at_ms()
    }

    /// When the settle period ends, as far as the membership now tells.
    fn settles_at_ms(&self) -> u64 {
        let settle = 4 * self.profile.probe_period_ms;
        let alone = self.live.is_empty() && !self.seeds.is_empty();
        let longest = self.joined_at_ms + 4 * settle;
        if alone {
            return longest;
        }
        if self.settled_once {
            return self.joined_at_ms + settle;
        }
        // The first settle: every expected member present, and time for
        // the last one's record.
        let all_present = self.live.len() + 1 >= self.fence.size();
        if all_present {
            longest.min(self.joined_at_ms.max(self.last_arrival_ms) + settle)
        } else {
            longest
        }
    }

    /// Starts the settle period again at `now_ms`: after this node was
    /// stalled (its process frozen, its machine paused), what it knows of
    /// the mesh is stale, and it claims nothing until it has listened again.
    fn resettle(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.joined_at_ms = self.now_ms;
        self.publish_settling();
    }

    /// When [`Mesh::settled`] may next turn true by the clock alone
    /// (`None`: settled, or waiting for a member to answer).
    fn settle_deadline(&self) -> Option<u64> {
        if !self.own.ownership.settling {
            return None;
        }
        Some(self.settles_at_ms()).filter(|at| *at > self.now_ms)
    }

    /// Keeps the record's `settling` flag in step with [`Mesh::settled`],
    /// so the others know when this node may take addresses back. A
    /// settling node announces nothing, and its record says so at once.
    fn publish_settling(&mut self) {
        let settling = !self.settled();
        self.settled_once |= !settling;
        if self.own.ownership.settling == settling || self.own.ownership.leaving {
            return;
        }
        self.evaluation_due = true;
        let result = self.update_record(|r| {
            r.ownership.settling = settling;
            if settling {
                r.ownership.claims.clear();
            }
        });
        if let Err(e) = result {
            tracing::warn!("publishing the settle state: {e}");
        }
    }

    /// The addresses this node should announce now: for each service of
    /// the [`ServicePlan`], the owners among the live members whose record
    /// serves it and who are not leaving; nothing while fenced or not yet
    /// [`settled`](Mesh::settled); while leaving, what it announced before,
    /// each address until a successor claims it (its successors take over
    /// as they learn it is leaving). `weight` gives a node's preference
    /// weight for a service. Non-revertive services stay with the member whose
    /// record claims them while it remains a candidate. An owner starts
    /// announcing an address only once no other settled member claims it,
    /// and a settling member does not displace a settled one that does
    /// (see [`crate::ownership`]). While a configuration changes (within
    /// [`CONFIGURATION_SETTLE_MS`] of a fingerprint change) and the live
    /// members' records do not all carry this node's fingerprint, it starts
    /// announcing nothing new: a member that has not read the change yet
    /// does not say it serves a new service (so every node would take
    /// itself for the only candidate), and one that has already read a
    /// removal no longer serves the service (so the next would take it
    /// over for the moment until it reads the removal too). The result is
    /// published as this node's claims, sent at once to the members it
    /// hands addresses to.
    pub fn evaluate_ownership(&mut self) -> BTreeSet<IpAddr> {
        self.evaluation_due = false;
        if self.left {
            return BTreeSet::new();
        }
        if self.own.ownership.leaving {
            return self.handing_over();
        }
        // Members told this node's record at once when its claims change:
        // those it hands an address to (they wait for its record to drop
        // the address before they announce it), and leavers it takes one
        // from.
        let mut tell_at_once: BTreeSet<String> = BTreeSet::new();
        let me = self.own.node.clone();
        let cut_off = self.cut_off();
        let active = self.settled() && self.has_quorum() && !cut_off;
        let book = self.book.lock();
        let fingerprint = self.own.ownership.config_fingerprint;
        let mut views_known = true;
        let mut records: Vec<&NodeRecord> = Vec::new();
        let presumed = self
            .presumed_alive
            .values()
            .map(|(id, _)| book.get(&id.name).filter(|r| r.boot == id.boot));
        // What leaving members still answer for: each hands an address over
        // once it reads the claim of the member taking it.
        let mut leavers: BTreeMap<IpAddr, String> = BTreeMap::new();
        for record in self.live_records(&book).map(|(_, record)| record).chain(presumed) {
            match record {
                Some(r) if r.ownership.leaving => {
                    for address in &r.ownership.claims {
                        leavers.insert(*address, r.node.clone());
                    }
                }
                Some(r) => {
                    views_known &= r.ownership.config_fingerprint == fingerprint;
                    records.push(r);
                }
                None => views_known = false,
            }
        }
        // Who announces what now, as far as this node can tell; kept even
        // while it announces nothing, to recognise a release next time.
        let mut claimants = Claimants::new();
        for record in records
            .iter()
            .filter(|r| !r.ownership.settling && !self.stale_claims.contains_key(&r.node))
        {
            for address in &record.ownership.claims {
                claimants.entry(*address).or_default().insert(record.node.clone());
            }
        }
        let changing = self
            .configuration_changed_ms
            .is_some_and(|at| self.now_ms < at + CONFIGURATION_SETTLE_MS);
        let may_start = views_known || !changing;
        let mut mine = BTreeSet::new();
        let mut released = BTreeMap::new();
        let weight = &self.plan.weight;
        let demands: Vec<Demand<'_>> = self
            .plan
            .services
            .iter()
            .filter(|_| active)
            .map(|service| Demand {
                id: service.id,
                addresses: &service.addresses,
                candidates: records
                    .iter()
                    .filter(|r| r.serves(service.id))
                    .map(|r| Candidate {
                        node: r.node.clone(),
                        weight: weight(r, service),
                        settling: r.ownership.settling,
                    })
                    .collect(),
                failback: service.failback,
            })
            .collect();
        for (address, owner) in place(&demands, &claimants) {
            let announcing_now = self.own.ownership.claims.contains(&address);
            match owner {
                Some(owner)
                    if owner == me
                        && (announcing_now || may_start)
                        && may_start_announcing(&me, address, announcing_now, &claimants) =>
                {
                    // Released a moment ago by a member still live:
                    // let its answering go quiet first.
                    let released_at = self.released_ms.get(&address).copied().or_else(|| {
                        let by_live = self
                            .last_claimants
                            .get(&address)
                            .is_some_and(|before| before.iter().any(|n| *n != me && self.live.contains_key(n)));
                        (by_live && !announcing_now).then_some(self.now_ms)
                    });
                    match released_at {
                        Some(at) if self.now_ms < at + HANDBACK_GUARD_MS => {
                            released.insert(address, at);
                        }
                        _ => {
                            mine.insert(address);
                        }
                    }
                }
                Some(owner) if announcing_now => {
                    tell_at_once.insert(owner);
                }
                _ => {}
            }
        }
        drop(records);
        drop(book);
        self.released_ms = released;
        self.last_claimants = claimants;
        if mine != self.own.ownership.claims {
            // A leaver answers for what this node takes from it until it
            // reads this claim: it gets the record at once too.
            tell_at_once.extend(
                mine.difference(&self.own.ownership.claims)
                    .filter_map(|address| leavers.get(address).cloned()),
            );
            let claims = mine.clone();
            if let Err(e) = self.update_record(|r| r.ownership.claims = claims) {
                tracing::warn!("publishing claims: {e}");
            }
            // The record spreads by gossip anyway; a successor gets it at
            // once, since until then nobody answers for the address (and a
            // leaver, since until then it answers with this node).
            let own = self.own.node.clone();
            for member in tell_at_once {
                if let Some(addr) = self.live.get(&member).map(|id| id.addr) {
                    self.send_record(addr, &own);
                }
            }
        }
        // Cut off, it still sends its heartbeats, to be heard again.
        self.choose_watcher(!mine.is_empty() || cut_off);
        mine
    }

    /// Whether the watch finds this node, an owner, cut off from every
    /// member (see [`crate::watch`]): it announces nothing meanwhile.
    fn cut_off(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.cut_off(self.now_ms))
    }

    /// The live member after this node in name order (wrapping): the one
    /// that watches it while it announces anything (`announcing`).
    fn choose_watcher(&mut self, announcing: bool) {
        let me = &self.own.node;
        let watcher = announcing
            .then(|| {
                self.live
                    .range::<String, _>((std::ops::Bound::Excluded(me), std::ops::Bound::Unbounded))
                    .next()
                    .or_else(|| self.live.iter().next())
                    .map(|(name, _)| name.clone())
            })
            .flatten();
        let now = self.now_ms;
        if let Some(watch) = self.watch.as_mut() {
            watch.set_watcher(watcher, now);
        }
        self.drain_watch();
    }

    /// Evaluates ownership anew when this node became, or stopped being,
    /// cut off.
    fn note_cut_off(&mut self) {
        let cut_off = self.cut_off();
        if cut_off != self.was_cut_off {
            self.was_cut_off = cut_off;
            self.evaluation_due = true;
            if cut_off {
                tracing::warn!(
                    "the owner watch finds this node cut off, or silent past its watcher's deadline: announcing nothing until the mesh answers"
                );
            }
        }
    }

    /// The live member sending from `addr`.
    fn member_at(&self, addr: SocketAddr) -> Option<&NodeId> {
        self.live.values().find(|id| id.addr == addr)
    }

    /// An owner-watch message from `from`: a declared death is the mesh's
    /// to act on, the rest the watch's. Messages from non-members are
    /// dropped (a member not yet seen live sends nothing that matters).
    fn handle_watch(&mut self, from: SocketAddr, body: &[u8]) -> Result<(), MeshError> {
        let message = WatchMessage::decode(body)?;
        let Some(sender) = self.member_at(from).map(|id| id.name.clone()) else {
            return Ok(());
        };
        match message {
            WatchMessage::Down { boot, rejoin, target } => {
                let me = self.identity().clone();
                if target == me.name && boot == me.boot && rejoin == me.rejoin {
                    // Declared down by its watcher: it was silent past the
                    // deadline (frozen, cut off), and its successors have
                    // taken over. It announces nothing until it has
                    // re-learned the mesh, and rejoins.
                    tracing::warn!(
                        by = sender,
                        "declared down by its watcher: rejoining, announcing nothing until settled"
                    );
                    self.resettle(self.now_ms);
                    self.evaluation_due = true;
                    self.apply_down(me);
                } else if let Some(id) = self
                    .live
                    .get(&target)
                    .filter(|id| id.boot == boot && id.rejoin == rejoin)
                {
                    let id = id.clone();
                    self.suspected.insert(id.clone());
                    self.apply_down(id);
                } else if self
                    .presumed_alive
                    .get(&target)
                    .is_some_and(|(id, _)| id.boot == boot && id.rejoin == rejoin)
                {
                    // foca's news of the death came first, without the
                    // suspicion: this is the watcher's word that it was
                    // one, and its claims count no more.
                    self.presumed_alive.remove(&target);
                    self.stale_claims.insert(target, None);
                    self.evaluation_due = true;
                }
            }
            message => {
                let now = self.now_ms;
                if let Some(watch) = self.watch.as_mut() {
                    watch.handle_message(&sender, message, now);
                }
            }
        }
        Ok(())
    }

    /// Sends what the watch has to send, and acts on its declarations: the
    /// owner is told to foca as down, and every live member (the owner
    /// too, should it be alive) is told at once.
    fn drain_watch(&mut self) {
        let Some(watch) = self.watch.as_mut() else { return };
        let mut sends = Vec::new();
        while let Some(send) = watch.poll_transmit() {
            sends.push(send);
        }
        let mut declared = Vec::new();
        while let Some(name) = watch.poll_declared() {
            declared.push(name);
        }
        for (to, message) in sends {
            if let Some(addr) = self.live.get(&to).map(|id| id.addr) {
                let mut body = Vec::new();
                message.encode(&mut body);
                self.push(addr, KIND_WATCH, &body);
            }
        }
        for name in declared {
            let Some(id) = self.live.get(&name).cloned() else {
                continue;
            };
            tracing::info!(member = name, "owner silent past the watch's deadline: declared down");
            self.stats.watch_declarations += 1;
            let mut body = Vec::new();
            WatchMessage::Down {
                boot: id.boot,
                rejoin: id.rejoin,
                target: id.name.clone(),
            }
            .encode(&mut body);
            let members: Vec<SocketAddr> = self.live.values().map(|m| m.addr).collect();
            for addr in members {
                self.push(addr, KIND_WATCH, &body);
            }
            self.suspected.insert(id.clone());
            self.apply_down(id);
        }
    }

    /// Tells foca that `id` is down (this node's own identity: it rejoins),
    /// and spreads it.
    fn apply_down(&mut self, id: NodeId) {
        let mut fx = Effects::default();
        let result = self.foca.apply_many(std::iter::once(Member::down(id)), true, &mut fx);
        self.absorb(fx);
        if let Err(e) = result {
            tracing::debug!("declaring a member down: {e}");
        }
    }

    fn absorb(&mut self, fx: Effects) {
        for member in self.foca.iter_membership_state() {
            if member.state() == foca::State::Suspect && self.live.get(&member.id().name) == Some(member.id()) {
                self.suspected.insert(member.id().clone());
            }
        }
        for (after, event) in fx.timers {
            if matches!(event, Timer::ChangeSuspectToDown { .. }) {
                self.stats.suspicions_raised += 1;
            }
            let due = self.now_ms + after.as_millis() as u64;
            self.timer_seq += 1;
            self.timers.insert((due, self.timer_seq), event);
        }
        self.outbox.extend(fx.sends);
        let downs_before = self.stats.members_declared_down;
        let mut rejoined = false;
        for notification in fx.notifications {
            rejoined |= matches!(notification, foca::OwnedNotification::Rejoin(_));
            self.on_notification(notification);
        }
        if rejoined {
            // A rejoin resets foca to disconnected. foca 2.0.0 reconnects
            // (restarting its probe and announce timers) when it next
            // applies updates, but not when the rejoin came from a
            // `TurnUndead` message of a member it considers down: it
            // returns before that step. After a healed partition every
            // node can rejoin that way at once, and then none probes
            // anyone. Applying no updates takes the step.
            let mut fx = Effects::default();
            let result = self.foca.apply_many(std::iter::empty(), true, &mut fx);
            self.absorb(fx);
            if let Err(e) = result {
                tracing::debug!("reconnecting after a rejoin: {e}");
            }
        }
        if self.stats.members_declared_down > downs_before {
            // A death is news the successors of the dead member's addresses
            // are waiting for: gossip it now rather than at the next round.
            // Every member that learns it does the same, so it reaches all
            // within a few trips instead of a few gossip periods.
            let mut fx = Effects::default();
            let result = self.foca.gossip(&mut fx);
            self.absorb(fx);
            if let Err(e) = result {
                tracing::debug!("gossip: {e}");
            }
        }
        self.collect_record_changes();
    }

    fn collect_record_changes(&mut self) {
        let changed = self.book.lock().take_changed();
        for name in &changed {
            self.stale_claims.remove(name);
            if *name == self.own.node {
                continue;
            }
            let fingerprint = self.book.lock().get(name).map(|r| r.ownership.config_fingerprint);
            if let Some(fingerprint) = fingerprint
                && self
                    .fingerprints
                    .insert(name.clone(), fingerprint)
                    .is_some_and(|old| old != fingerprint)
            {
                self.configuration_changed_ms = Some(self.now_ms);
            }
        }
        for name in changed {
            if name != self.own.node {
                self.events.push_back(MeshEvent::RecordChanged(name));
            }
        }
    }

    fn on_notification(&mut self, notification: foca::OwnedNotification<NodeId>) {
        use foca::OwnedNotification as N;
        match notification {
            N::MemberUp(id) => self.member_up(id),
            N::MemberDown(id) => self.member_down(id),
            N::Rename(old, new) => {
                if self.live.get(&old.name) == Some(&old) {
                    self.live.remove(&old.name);
                    self.live.insert(new.name.clone(), new);
                }
            }
            N::Rejoin(id) => {
                // The others declared this node down: it was the one cut
                // off. The members it took for down meanwhile kept
                // announcing what their records claim (a record that has
                // not changed since is not stale, and may not change
                // again), and those it still takes for down are presumed
                // alive until they renew or the presumption runs out.
                self.stale_claims.clear();
                let until = self.now_ms + 2 * self.profile.announce_down_ms + self.profile.detection_bound_ms();
                for (name, (member, _)) in std::mem::take(&mut self.recent_deaths) {
                    if !self.live.contains_key(&name) {
                        self.presumed_alive.insert(name, (member, until));
                    }
                }
                self.evaluation_due = true;
                self.events.push_back(MeshEvent::Rejoined(id));
            }
            N::Idle => self.events.push_back(MeshEvent::Idle),
            N::Active | N::Defunct => {}
        }
        self.observe_fence();
    }

    fn member_up(&mut self, id: NodeId) {
        if id.is_seed() || id.name == self.own.node {
            return;
        }
        if self
            .live
            .get(&id.name)
            .is_some_and(|old| (old.boot, old.rejoin) > (id.boot, id.rejoin))
        {
            return;
        }
        let addr = id.addr;
        let counts_again = self.now_ms + self.profile.detection_bound_ms();
        if let Some(until) = self.stale_claims.get_mut(&id.name) {
            *until = Some(counts_again);
        }
        self.presumed_alive.remove(&id.name);
        self.suspected.retain(|s| s.name != id.name);
        self.live.insert(id.name.clone(), id.clone());
        self.last_arrival_ms = self.now_ms;
        self.events.push_back(MeshEvent::MemberUp(id));
        // A new member gets our records at once rather than at the next
        // anti-entropy round.
        self.send_digest(addr);
    }

    fn member_down(&mut self, id: NodeId) {
        if self.live.get(&id.name) != Some(&id) {
            return;
        }
        self.live.remove(&id.name);
        self.fingerprints.remove(&id.name);
        if let Some(watch) = self.watch.as_mut() {
            watch.forget(&id.name);
        }
        self.stats.members_declared_down += 1;
        let left = self
            .book
            .lock()
            .get(&id.name)
            .is_some_and(|r| r.ownership.leaving && r.boot == id.boot);
        let suspected = self.suspected.remove(&id);
        let last_heard = self.last_heard_ms.remove(&id.addr);
        if left {
            self.fence.left(&id.name);
        } else {
            self.record_detection(&id, last_heard);
        }
        if !left {
            self.recent_deaths.insert(id.name.clone(), (id.clone(), self.now_ms));
        }
        if !suspected && !left {
            let until = self.now_ms + self.profile.suspect_to_down_ms;
            self.presumed_alive.insert(id.name.clone(), (id.clone(), until));
        } else {
            self.stale_claims.insert(id.name.clone(), None);
        }
        self.events.push_back(MeshEvent::MemberDown(id));
    }

    fn record_detection(&mut self, id: &NodeId, last_heard_ms: Option<u64>) {
        self.stats.failures_detected += 1;
        let at = self.instant(self.now_ms);
        let detections = &mut self.stats.recent_detections;
        if detections.len() == RECENT_DETECTIONS {
            detections.pop_front();
        }
        detections.push_back(FailureDetection {
            member: id.name.clone(),
            at,
            silent: last_heard_ms.map(|heard| Duration::from_millis(self.now_ms.saturating_sub(heard))),
        });
    }

    /// Updates the fence's reference. A node that regains quorum was cut off
    /// from part of the mesh: what it holds of the members it hears again
    /// (their claims above all) may be stale, and in a staged heal it may
    /// hear some members before the one announcing its addresses. It
    /// re-learns the mesh, claiming nothing, for a settle period, as after
    /// a stall.
    fn observe_fence(&mut self) {
        let names = self.live_names();
        self.fence.observe(names.iter().map(String::as_str), self.now_ms);
        let quorum = self.fence.has_quorum(names.iter().map(String::as_str));
        if quorum && !self.had_quorum {
            self.joined_at_ms = self.now_ms;
        }
        if quorum {
            let recent = 2 * self.profile.detection_bound_ms();
            let now = self.now_ms;
            self.recent_deaths.retain(|_, (_, at)| *at + recent >= now);
        }
        self.had_quorum = quorum;
    }

    fn push(&mut self, to: SocketAddr, kind: u8, body: &[u8]) {
        let mut packet = Vec::with_capacity(body.len() + 1);
        packet.push(kind);
        packet.extend_from_slice(body);
        self.outbox.push_back((to, packet));
    }

    fn send_record(&mut self, to: SocketAddr, name: &str) {
        let fragments = self
            .book
            .lock()
            .get(name)
            .and_then(|r| r.fragments().ok())
            .unwrap_or_default();
        for fragment in fragments {
            self.push(to, KIND_FRAGMENT, &fragment);
        }
    }

    /// Digest chunks: each covers a name range `[start, end)` (`end` empty:
    /// to the last name) and lists `(name, boot, version)` of every
    /// record held in it.
    fn send_digest(&mut self, to: SocketAddr) {
        let digest = self.book.lock().digest();
        let budget = MAX_PLAINTEXT - 1 - 2 * 256 - 2;
        let mut chunks: Vec<(String, Vec<DigestEntry>)> = Vec::new();
        let mut size = 0;
        for (name, stamp) in digest {
            let entry = 1 + name.len() + 16;
            if chunks.is_empty() || size + entry > budget {
                chunks.push((name.clone(), Vec::new()));
                size = 0;
            }
            size += entry;
            if let Some(last) = chunks.last_mut() {
                last.1.push((name, stamp));
            }
        }
        if chunks.is_empty() {
            chunks.push((String::new(), Vec::new()));
        }
        let starts: Vec<String> = chunks.iter().map(|c| c.0.clone()).collect();
        for (i, (start, entries)) in chunks.into_iter().enumerate() {
            let start = if i == 0 { String::new() } else { start };
            let end = starts.get(i + 1).cloned().unwrap_or_default();
            let mut body = Vec::with_capacity(MAX_PLAINTEXT);
            put_name(&mut body, &start);
            put_name(&mut body, &end);
            body.put_u16(entries.len() as u16);
            for (name, (boot, version)) in entries {
                put_name(&mut body, &name);
                body.put_u64(boot);
                body.put_u64(version);
            }
            self.push(to, KIND_DIGEST, &body);
        }
    }

    fn handle_digest(&mut self, from: SocketAddr, mut body: &[u8]) -> Result<(), MeshError> {
        let start = get_name(&mut body)?;
        let end = get_name(&mut body)?;
        if body.remaining() < 2 {
            return Err(MeshError::Malformed("digest"));
        }
        let count = body.get_u16();
        let mut theirs = BTreeMap::new();
        for _ in 0..count {
            let name = get_name(&mut body)?;
            if body.remaining() < 16 {
                return Err(MeshError::Malformed("digest entry"));
            }
            theirs.insert(name, (body.get_u64(), body.get_u64()));
        }
        if self.member_at(from).is_none() && !self.left {
            // From a member this node does not know yet: it joined a moment
            // ago (every member that sees a new one sends it a digest), and
            // foca's membership reaches it a few dozen members per datagram.
            // Asking each sender for its membership makes it known at once,
            // so that a joining node has heard of every member, and of what
            // each claims, before it settles and claims anything itself.
            let mut fx = Effects::default();
            let result = self.foca.announce(NodeId::seed(from), &mut fx);
            self.absorb(fx);
            if let Err(e) = result {
                tracing::debug!(%from, "announce: {e}");
            }
        }
        let in_range = |name: &String| *name >= start && (end.is_empty() || *name < end);
        let ours = self.book.lock().digest();
        let newer = |a: &BTreeMap<String, (u64, u64)>, b: &BTreeMap<String, (u64, u64)>| -> Vec<String> {
            a.iter()
                .filter(|(name, stamp)| in_range(name) && b.get(*name).is_none_or(|other| other < *stamp))
                .map(|(name, _)| name.clone())
                .collect()
        };
        let give = newer(&ours, &theirs);
        let want = newer(&theirs, &ours);
        for name in give {
            self.send_record(from, &name);
        }
        for names in want.chunks(40) {
            let mut body = Vec::new();
            body.put_u16(names.len() as u16);
            for name in names {
                put_name(&mut body, name);
            }
            self.push(from, KIND_REQUEST, &body);
        }
        Ok(())
    }
}

/// A digest entry: node name and record stamp.
type DigestEntry = (String, (u64, u64));

fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = &name.as_bytes()[..name.len().min(255)];
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

fn get_name(buf: &mut &[u8]) -> Result<String, MeshError> {
    if buf.is_empty() {
        return Err(MeshError::Malformed("name"));
    }
    let len = buf.get_u8() as usize;
    if buf.len() < len {
        return Err(MeshError::Malformed("name"));
    }
    let name = std::str::from_utf8(&buf[..len])
        .map_err(|_| MeshError::Malformed("name"))?
        .to_owned();
    buf.advance(len);
    Ok(name)
}

fn parse_names(mut body: &[u8]) -> Result<Vec<String>, MeshError> {
    if body.len() < 2 {
        return Err(MeshError::Malformed("request"));
    }
    let count = body.get_u16();
    (0..count).map(|_| get_name(&mut body)).collect()
}
