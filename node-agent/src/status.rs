//! The status hub: one place where every component of the agent publishes
//! what it knows, as snapshots, and where every reader (the files in the
//! state directory, the gRPC API and the metrics) reads them,
//! never the components' internals.
//!
//! Each section is a [`Section`]: a `watch` of the latest snapshot, written
//! by one component only, read by any number. Readers get an `Arc` of an
//! immutable snapshot (cheap to hold, never torn) or wait for the next.
//! Nothing acts on the hub: what the protocols and the allocator act on
//! comes to them from its maker ([`crate::running::Decisions`], the mesh),
//! and the hub mirrors it.
//!
//! | section | written by | what |
//! |---|---|---|
//! | [`StatusHub::config`] | the pipeline | running generation and fingerprint, last accepted, last rejection and its errors, a held snapshot |
//! | [`StatusHub::source`] | the pipeline, from its source | which kinds the source reads, and why it cannot read some |
//! | [`StatusHub::running`] | the pipeline (a mirror of [`crate::running::Decisions::running`], read-only here) | the running inventory, every service's outcome and health |
//! | [`StatusHub::pools`] | the pipeline | each pool's address counters |
//! | [`StatusHub::mesh`] | the mesh | members and their records, the quorum fence, protocol and drop counters |
//! | [`StatusHub::mesh_events`] | the mesh | membership events as they happen (a broadcast, not a snapshot; record changes are in the mesh section instead) |
//! | [`StatusHub::layer2`] | the Layer 2 glue | each Layer 2 service here: addresses, whether this node can serve it, interfaces; what this node announces |
//! | [`StatusHub::interfaces`] | the interface actors | per interface: link, addresses answered, ARP/NA answer and announcement counters |
//! | [`StatusHub::bgp`] | the BGP applier | per BGPPeer: address, whether established, the prefixes sent, or why it is not running |
//! | [`StatusHub::bfd`] | the BFD actor | per BFD session: state, echo, detection time, why it last went down |
//! What can be derived
//! from sections is derived when read ([`StatusHub::ownership`]), never
//! stored twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

use meshlb_actors::bfd::actor::BfdSessionReport;
use meshlb_actors::l2::interface::AnnouncerStatus;
use meshlb_config::allocator::PoolCounters;
use meshlb_config::service::ServiceKey;
use meshlb_gossip::driver::MeshStatus;
use meshlb_gossip::mesh::MeshEvent;
use meshlb_gossip::record::ServiceId;
use tokio::sync::{broadcast, watch};

use crate::running::{Decisions, RunningState};
use crate::sources::Readability;

/// One section of the hub: the latest snapshot of one component's status.
#[derive(Debug)]
pub struct Section<T> {
    latest: watch::Sender<Arc<T>>,
}

impl<T: Default> Default for Section<T> {
    fn default() -> Section<T> {
        Section {
            latest: watch::Sender::new(Arc::new(T::default())),
        }
    }
}

impl<T> Section<T> {
    /// Replaces the snapshot.
    pub fn publish(&self, snapshot: T) {
        self.latest.send_replace(Arc::new(snapshot));
    }

    /// Publishes `next()` if `differs` says the current snapshot differs
    /// from it (for snapshots cheaper to tell apart than to compare).
    pub fn publish_when(&self, differs: impl FnOnce(&T) -> bool, next: impl FnOnce() -> T) {
        self.latest.send_if_modified(|current| {
            let modified = differs(current);
            if modified {
                *current = Arc::new(next());
            }
            modified
        });
    }

    /// Changes a copy of the snapshot with `change` and publishes it.
    pub fn update(&self, change: impl FnOnce(&mut T))
    where
        T: Clone,
    {
        self.latest.send_modify(|current| change(Arc::make_mut(current)));
    }

    /// The latest snapshot.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.latest.borrow())
    }

    /// Follows the snapshots.
    pub fn watch(&self) -> watch::Receiver<Arc<T>> {
        self.latest.subscribe()
    }
}

/// A read-only view of a snapshot another component publishes.
#[derive(Debug, Clone)]
pub struct Mirror<T> {
    latest: watch::Receiver<Arc<T>>,
}

impl<T> Mirror<T> {
    /// The latest snapshot.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.latest.borrow())
    }

    /// Follows the snapshots.
    pub fn watch(&self) -> watch::Receiver<Arc<T>> {
        self.latest.clone()
    }
}

/// The configuration as the pipeline holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigStatus {
    /// Generation running (0: none yet).
    pub generation: u64,
    /// The source's fingerprint of the running snapshot.
    pub fingerprint: Option<u64>,
    /// When the running generation was accepted.
    pub accepted_at: Option<SystemTime>,
    /// The latest update, if it was refused: when, and why.
    pub last_rejection: Option<Rejection>,
    /// Updates refused over the agent's life.
    pub rejections: u64,
    /// Updates taken from the source over the agent's life.
    pub updates: u64,
    /// A snapshot held because it would withdraw everything: why.
    pub held: Option<String>,
    /// What the running configuration holds that is probably not meant
    /// (an advertisement naming no pool yet).
    pub warnings: Vec<String>,
}

/// A refused update.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// When it was refused.
    pub at: SystemTime,
    /// Each error: file or object, field, value, what is allowed.
    pub errors: Vec<meshlb_config::Error>,
}

/// What Layer 2 does here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer2Status {
    /// Every Layer 2 service, by its mesh id.
    pub services: BTreeMap<ServiceId, Layer2Service>,
    /// The addresses the mesh gives this node to announce.
    pub announcing: BTreeSet<IpAddr>,
}

/// One Layer 2 service as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer2Service {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Whether this node can serve it now (selected, healthy, a link up).
    pub serveable: bool,
    /// The interfaces its addresses are answered on here.
    pub interfaces: BTreeSet<String>,
    /// Why this node cannot serve it now, if it cannot.
    pub blocked: Option<meshlb_actors::eligibility::Blocker>,
    /// Its L2Policy preferences: a node's weight is the sum of those its
    /// labels match.
    pub preferences: Vec<meshlb_config::config::WeightedSelector>,
}

pub use meshlb_actors::bgp::applier::{BgpPeerStatus, BgpStatus};

/// An established session's terms, for tests.
#[cfg(test)]
pub(crate) fn established_session() -> meshlb_actors::bgp::session::Negotiated {
    meshlb_actors::bgp::session::Negotiated {
        peer_as: 64512,
        peer_id: Ipv4Addr::new(198, 51, 100, 1),
        hold_time: 90,
        keepalive_time: 30,
        families: vec![meshlb_wire::bgp::Family::IPV4_UNICAST],
        params: meshlb_wire::bgp::SessionParams::FOUR_OCTET_AS,
        route_refresh: true,
        enhanced_route_refresh: false,
        ipv4_over_ipv6: false,
        peer_graceful_restart: None,
    }
}

/// Who announces one address of a service, as this node sees the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOwnership {
    /// The service.
    pub service: ServiceKey,
    /// The address.
    pub address: IpAddr,
    /// Members whose record claims it (one, when all is well).
    pub announcers: Vec<String>,
    /// Whether this node announces it.
    pub here: bool,
}

/// A mesh event with the wall-clock time it was seen.
#[derive(Debug, Clone)]
pub struct TimedMeshEvent {
    /// When.
    pub at: SystemTime,
    /// What.
    pub event: MeshEvent,
}

/// How many mesh events a slow reader may fall behind before it misses some.
const MESH_EVENT_BACKLOG: usize = 256;

/// The hub. Cheap to clone; every clone is the same hub.
#[derive(Debug, Clone)]
pub struct StatusHub {
    inner: Arc<Sections>,
}

#[derive(Debug)]
struct Sections {
    config: Section<ConfigStatus>,
    source: Section<Readability>,
    running: Mirror<RunningState>,
    pools: Section<BTreeMap<String, PoolCounters>>,
    mesh: Section<MeshStatus>,
    mesh_events: broadcast::Sender<TimedMeshEvent>,
    layer2: Section<Layer2Status>,
    interfaces: Section<BTreeMap<String, AnnouncerStatus>>,
    bgp: Section<BgpStatus>,
    bfd: Section<Vec<BfdSessionReport>>,
}

impl Default for StatusHub {
    /// A hub mirroring decisions that never change.
    fn default() -> StatusHub {
        StatusHub::mirroring(&Decisions::default())
    }
}

impl StatusHub {
    /// A hub mirroring what `decisions` publishes.
    pub fn mirroring(decisions: &Decisions) -> StatusHub {
        StatusHub {
            inner: Arc::new(Sections {
                config: Section::default(),
                source: Section::default(),
                running: Mirror {
                    latest: decisions.running(),
                },
                pools: Section::default(),
                mesh: Section::default(),
                mesh_events: broadcast::Sender::new(MESH_EVENT_BACKLOG),
                layer2: Section::default(),
                interfaces: Section::default(),
                bgp: Section::default(),
                bfd: Section::default(),
            }),
        }
    }

    /// The configuration (written by the pipeline).
    pub fn config(&self) -> &Section<ConfigStatus> {
        &self.inner.config
    }

    /// Which kinds the configuration source can read (written by the
    /// pipeline, from its source).
    pub fn source(&self) -> &Section<Readability> {
        &self.inner.source
    }

    /// What the pipeline decided, as it publishes it for the protocols
    /// (read-only: for the readers that show it).
    pub fn running(&self) -> &Mirror<RunningState> {
        &self.inner.running
    }

    /// Each pool's address counters (written by the pipeline, for the
    /// metrics, the gRPC API and IPAddressPool status).
    pub fn pools(&self) -> &Section<BTreeMap<String, PoolCounters>> {
        &self.inner.pools
    }

    /// The mesh (written by the mesh).
    pub fn mesh(&self) -> &Section<MeshStatus> {
        &self.inner.mesh
    }

    /// Membership events (sent by the mesh).
    pub fn mesh_events(&self) -> &broadcast::Sender<TimedMeshEvent> {
        &self.inner.mesh_events
    }

    /// Layer 2 (written by the Layer 2 glue).
    pub fn layer2(&self) -> &Section<Layer2Status> {
        &self.inner.layer2
    }

    /// Interfaces (written for the interface actors).
    pub fn interfaces(&self) -> &Section<BTreeMap<String, AnnouncerStatus>> {
        &self.inner.interfaces
    }

    /// BGP (written by the BGP applier).
    pub fn bgp(&self) -> &Section<BgpStatus> {
        &self.inner.bgp
    }

    /// BFD (written by the BFD actor).
    pub fn bfd(&self) -> &Section<Vec<BfdSessionReport>> {
        &self.inner.bfd
    }

    /// For every address of every Layer 2 service, who announces it: what
    /// the members' records claim, and whether this node does.
    pub fn ownership(&self) -> Vec<AddressOwnership> {
        ownership(&self.layer2().get(), &self.mesh().get())
    }
}

/// What [`announcers`] counts as announcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcing {
    /// A Layer 2 claim.
    Layer2,
    /// An announcement to an established BGP peer.
    Bgp,
    /// Either.
    Either,
}

/// Who announces each address, by the members' records: their Layer 2
/// claims, their BGP announcements, or both.
pub fn announcers(mesh: &MeshStatus, what: Announcing) -> BTreeMap<IpAddr, BTreeSet<String>> {
    let mut all: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for member in &mesh.members {
        let Some(record) = &member.record else { continue };
        let layer2 = record.ownership.claims.iter().filter(|_| what != Announcing::Bgp);
        let bgp = record.bgp.announcing.iter().filter(|_| what != Announcing::Layer2);
        for address in layer2.chain(bgp) {
            all.entry(*address).or_default().insert(member.id.name.clone());
        }
    }
    all
}

/// [`StatusHub::ownership`] from its two sections.
pub fn ownership(layer2: &Layer2Status, mesh: &MeshStatus) -> Vec<AddressOwnership> {
    let claimants = announcers(mesh, Announcing::Layer2);
    layer2
        .services
        .values()
        .flat_map(|service| {
            service.addresses.iter().map(|address| AddressOwnership {
                service: service.key.clone(),
                address: *address,
                announcers: claimants.get(address).into_iter().flatten().cloned().collect(),
                here: layer2.announcing.contains(address),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlb_gossip::identity::NodeId;
    use meshlb_gossip::mesh::MemberView;
    use meshlb_gossip::record::NodeRecord;

    #[test]
    fn ownership_is_read_from_the_members_claims() {
        let a: IpAddr = "203.0.113.10".parse().unwrap();
        let b: IpAddr = "203.0.113.11".parse().unwrap();
        let member = |name: &str, last: u8, claims: &[IpAddr]| {
            let mut record = NodeRecord::new(name, 1);
            record.ownership.claims = claims.iter().copied().collect();
            MemberView {
                id: NodeId::new(name, std::net::SocketAddr::from(([192, 0, 2, last], 7947)), 1),
                record: Some(record),
            }
        };
        let mesh = MeshStatus {
            members: vec![member("n1", 1, &[a]), member("n2", 2, &[])],
            ..MeshStatus::default()
        };
        let layer2 = Layer2Status {
            services: BTreeMap::from([(
                ServiceId(7),
                Layer2Service {
                    key: ServiceKey::new("default", "web"),
                    addresses: vec![a, b],
                    serveable: true,
                    interfaces: BTreeSet::from(["eth0".to_owned()]),
                    blocked: None,
                    preferences: Vec::new(),
                },
            )]),
            announcing: BTreeSet::from([a]),
        };
        let view = ownership(&layer2, &mesh);
        assert_eq!(view.len(), 2);
        assert_eq!(
            (view[0].address, view[0].announcers.clone(), view[0].here),
            (a, vec!["n1".to_owned()], true)
        );
        assert_eq!((view[1].address, view[1].announcers.len(), view[1].here), (b, 0, false));
    }

    #[tokio::test]
    async fn a_section_has_one_latest_snapshot_and_wakes_its_readers() {
        let hub = StatusHub::default();
        let mut config = hub.config().watch();
        hub.config().publish(ConfigStatus {
            generation: 3,
            ..ConfigStatus::default()
        });
        config.changed().await.unwrap();
        assert_eq!(config.borrow_and_update().generation, 3);
        hub.config()
            .publish_when(|current| current.generation != 3, ConfigStatus::default);
        assert!(
            !config.has_changed().unwrap(),
            "a snapshot that does not differ wakes no one"
        );
        hub.config().publish_when(
            |current| current.generation != 4,
            || ConfigStatus {
                generation: 4,
                ..ConfigStatus::default()
            },
        );
        assert_eq!(config.borrow_and_update().generation, 4);
        hub.config().update(|c| c.rejections += 1);
        assert_eq!(hub.config().get().rejections, 1);
    }
}
