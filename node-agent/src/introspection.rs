//! The introspection API: the gRPC service of `meshlb.v1.Introspection`
//! ([`meshlb_proto`]), with server reflection (v1 and v1alpha, so grpcurl
//! needs no .proto file) and the standard health service. Read-only: every
//! answer is read off the [status hub](crate::status), never from a
//! component's internals, and built by the pure view functions below
//! (tested without a server).
//!
//! It listens on 127.0.0.1:7473 by default (`--grpc-listen`: another
//! address, `unix:/path` for a Unix socket, or `off`), on the control
//! thread: nothing here can delay an ARP answer or a BFD packet. Lists
//! that grow with the cluster are paged (services: at most
//! [`MAX_PAGE_SIZE`] a call); the event stream is bounded
//! ([`EVENT_BACKLOG`]) and a reader too slow for it is told how many
//! events it missed rather than holding the agent's memory. Bad requests
//! get `INVALID_ARGUMENT`, unknown names `NOT_FOUND`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use meshlb_config::service::ServiceKey;
use meshlb_gossip::driver::MeshStatus;
use meshlb_gossip::record::ServiceId;
use meshlb_proto::v1::introspection_server::{Introspection, IntrospectionServer};
use meshlb_proto::v1::{self as pb, event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::AgentError;
pub use crate::listen::Listen;
use crate::running::RunningState;
use crate::status::{Announcing, BgpPeerStatus, BgpStatus, ConfigStatus, Layer2Status, StatusHub, announcers};

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7473";
/// The most services one `ListServices` call returns (and the default).
pub const MAX_PAGE_SIZE: usize = 500;
/// How many events a `WatchEvents` reader may fall behind.
pub const EVENT_BACKLOG: usize = 256;

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn strings<T: ToString>(items: impl IntoIterator<Item = T>) -> Vec<String> {
    items.into_iter().map(|i| i.to_string()).collect()
}

/// The members and the fence.
pub fn members_view(mesh: &MeshStatus) -> pb::ListMembersResponse {
    let local = mesh.identity.as_ref().map(|id| id.name.as_str());
    let members = mesh
        .members
        .iter()
        .map(|member| {
            let record = member.record.as_ref();
            pb::Member {
                name: member.id.name.clone(),
                address: member.id.addr.to_string(),
                boot_ms: member.id.boot,
                has_record: record.is_some(),
                settling: record.is_some_and(|r| r.ownership.settling),
                claims: record.map(|r| strings(&r.ownership.claims)).unwrap_or_default(),
                bgp_announcing: record.map(|r| strings(&r.bgp.announcing)).unwrap_or_default(),
                bgp_draining: record.is_some_and(|r| r.bgp.draining),
                labels: record
                    .map(|r| r.labels.clone().into_iter().collect())
                    .unwrap_or_default(),
                local: Some(member.id.name.as_str()) == local,
            }
        })
        .collect();
    let fence = &mesh.fence;
    pb::ListMembersResponse {
        members,
        fence: Some(pb::Fence {
            quorum: fence.quorum,
            live: u32::try_from(fence.live).unwrap_or(u32::MAX),
            reference: u32::try_from(fence.reference).unwrap_or(u32::MAX),
            expected: fence.expected.map(|e| u32::try_from(e).unwrap_or(u32::MAX)),
            heard_majority: fence.heard_majority,
        }),
    }
}

/// The sections a service's view is read from.
pub struct ServiceSources<'a> {
    /// The pipeline's decisions.
    pub running: &'a RunningState,
    /// Layer 2 here.
    pub layer2: &'a Layer2Status,
    /// The mesh.
    pub mesh: &'a MeshStatus,
}

impl ServiceSources<'_> {
    /// Every service, in name order.
    pub fn services(&self) -> Vec<pb::Service> {
        let claimants = announcers(self.mesh, Announcing::Layer2);
        let bgp_announcers = announcers(self.mesh, Announcing::Bgp);
        let names = |map: &BTreeMap<IpAddr, BTreeSet<String>>, address: &IpAddr| -> Vec<String> {
            map.get(address).into_iter().flatten().cloned().collect()
        };
        let layer2_by_key: BTreeMap<&ServiceKey, (&ServiceId, &crate::status::Layer2Service)> =
            self.layer2.services.iter().map(|(id, s)| (&s.key, (id, s))).collect();
        self.running
            .outcomes
            .iter()
            .map(|(key, outcome)| {
                let addresses: Vec<IpAddr> = outcome.kept_addresses().to_vec();
                let layer2 = layer2_by_key.get(key);
                let owners = addresses
                    .iter()
                    .map(|address| {
                        // Layer 2 services' addresses only: another
                        // service's claim on the address is not this one's.
                        let layer2_claims = layer2.is_some();
                        pb::AddressOwner {
                            address: address.to_string(),
                            announcers: if layer2_claims {
                                names(&claimants, address)
                            } else {
                                Vec::new()
                            },
                            here: layer2_claims && self.layer2.announcing.contains(address),
                            bgp_announcers: names(&bgp_announcers, address),
                            candidates: layer2
                                .map(|(id, s)| ranked_candidates(self.mesh, **id, s, *address))
                                .unwrap_or_default(),
                        }
                    })
                    .collect();
                pb::Service {
                    name: key.to_string(),
                    addresses: strings(&addresses),
                    outcome: outcome.to_string(),
                    owners,
                    layer2: layer2.is_some(),
                    serveable_here: layer2.is_some_and(|(_, s)| s.serveable),
                    interfaces: layer2
                        .map(|(_, s)| s.interfaces.iter().cloned().collect())
                        .unwrap_or_default(),
                    not_serveable_here: layer2
                        .and_then(|(_, s)| s.blocked)
                        .map(|blocked| blocked.to_string())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// The members that may announce `address` of Layer 2 service `id`
/// (`service`), in the order the placement gives a new owner from them
/// ([`meshlb_gossip::placement`]): those whose record says they serve it
/// and that are not leaving, by the service's preference weight, then by
/// how many addresses each announces, then MetalLB's rank for the first
/// address of its group.
fn ranked_candidates(
    mesh: &MeshStatus,
    id: ServiceId,
    service: &crate::status::Layer2Service,
    address: IpAddr,
) -> Vec<pb::Candidate> {
    use meshlb_gossip::ownership::{Candidate, address_groups, rank};
    let records: BTreeMap<&str, &meshlb_gossip::record::NodeRecord> = mesh
        .members
        .iter()
        .filter_map(|m| m.record.as_ref())
        .filter(|r| r.serves(id) && !r.ownership.leaving)
        .map(|r| (r.node.as_str(), r))
        .collect();
    let candidates: Vec<Candidate> = records
        .values()
        .map(|r| Candidate {
            node: r.node.clone(),
            weight: service
                .preferences
                .iter()
                .filter(|p| p.selector.matches(&r.labels))
                .map(|p| u32::from(p.weight))
                .sum(),
            settling: r.ownership.settling,
        })
        .collect();
    let first = address_groups(&service.addresses)
        .into_iter()
        .find(|group| group.contains(&address))
        .and_then(|group| group.first().copied())
        .unwrap_or(address);
    let announcing = |node: &str| records.get(node).map_or(0, |r| r.ownership.claims.len());
    let mut ranked: Vec<pb::Candidate> = rank(first, &candidates)
        .into_iter()
        .map(|c| pb::Candidate {
            node: c.node.clone(),
            weight: c.weight,
            settling: c.settling,
            announcing: u32::try_from(announcing(&c.node)).unwrap_or(u32::MAX),
        })
        .collect();
    // Stable: MetalLB's rank stays the last key.
    ranked.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.announcing.cmp(&b.announcing)));
    ranked
}

/// A page of `services` (in name order) after `token` (the last name of
/// the previous page), at most `size` (0: the default).
pub fn services_page(services: Vec<pb::Service>, size: u32, token: &str) -> Result<pb::ListServicesResponse, Status> {
    let size = match usize::try_from(size) {
        Ok(0) | Err(_) => MAX_PAGE_SIZE,
        Ok(size) => size.min(MAX_PAGE_SIZE),
    };
    if !token.is_empty() && parse_key(token).is_err() {
        return Err(Status::invalid_argument(format!(
            "page_token {token:?} is not one this server gave"
        )));
    }
    let mut rest: Vec<pb::Service> = services
        .into_iter()
        .filter(|s| token.is_empty() || s.name.as_str() > token)
        .collect();
    let more = rest.len() > size;
    rest.truncate(size);
    let next_page_token = if more {
        rest.last().map(|s| s.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListServicesResponse {
        services: rest,
        next_page_token,
    })
}

/// `namespace/name`, or why not.
fn parse_key(name: &str) -> Result<ServiceKey, Status> {
    match name.split_once('/') {
        Some((namespace, service)) if !namespace.is_empty() && !service.is_empty() && !service.contains('/') => {
            Ok(ServiceKey::new(namespace, service))
        }
        _ => Err(Status::invalid_argument(format!("{name:?} is not namespace/name"))),
    }
}

/// The interfaces answering here.
pub fn interfaces_view(
    interfaces: &BTreeMap<String, meshlb_actors::l2::interface::AnnouncerStatus>,
) -> pb::ListInterfacesResponse {
    pb::ListInterfacesResponse {
        interfaces: interfaces
            .iter()
            .map(|(name, status)| pb::Interface {
                name: name.clone(),
                link_up: status.link_up,
                answering: strings(&status.owned),
                arp_replies: status.stats.arp_replies,
                na_replies: status.stats.na_replies,
                announcements: status.stats.announcements,
                malformed: status.stats.malformed,
                not_ours: status.stats.not_ours,
            })
            .collect(),
    }
}

/// The BGP peers.
pub fn bgp_view(bgp: &BgpStatus) -> pb::ListBgpPeersResponse {
    pb::ListBgpPeersResponse {
        peers: bgp
            .peers
            .iter()
            .map(|(name, peer)| pb::BgpPeer {
                name: name.clone(),
                address: peer.address.map(|a| a.to_string()).unwrap_or_default(),
                established: peer.established(),
                prefixes: peer.prefixes.clone(),
                not_running: peer.not_running.clone().unwrap_or_default(),
                peer_as: peer.negotiated.as_ref().map_or(0, |n| n.peer_as),
                peer_id: peer
                    .negotiated
                    .as_ref()
                    .map(|n| n.peer_id.to_string())
                    .unwrap_or_default(),
                hold_time: peer.negotiated.as_ref().map_or(0, |n| n.hold_time.into()),
                keepalive_time: peer.negotiated.as_ref().map_or(0, |n| n.keepalive_time.into()),
                families: peer
                    .negotiated
                    .iter()
                    .flat_map(|n| &n.families)
                    .map(|f| match *f {
                        meshlb_wire::bgp::Family::IPV4_UNICAST => "ipv4-unicast".to_owned(),
                        meshlb_wire::bgp::Family::IPV6_UNICAST => "ipv6-unicast".to_owned(),
                        other => format!("afi {} safi {}", other.afi, other.safi),
                    })
                    .collect(),
                capabilities: peer.negotiated.as_ref().map(capabilities).unwrap_or_default(),
            })
            .collect(),
    }
}

/// The capabilities a session uses (both sides offered them).
fn capabilities(n: &meshlb_actors::bgp::session::Negotiated) -> Vec<String> {
    [
        (n.params.four_octet_as, "4-octet-as"),
        (n.route_refresh, "route-refresh"),
        (n.enhanced_route_refresh, "enhanced-route-refresh"),
        (n.peer_graceful_restart.is_some(), "graceful-restart"),
        (n.ipv4_over_ipv6, "extended-next-hop"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_owned())
    .collect()
}

/// The BFD sessions.
pub fn bfd_view(sessions: &[meshlb_actors::bfd::actor::BfdSessionReport]) -> pb::ListBfdSessionsResponse {
    use meshlb_wire::bfd::State;
    pb::ListBfdSessionsResponse {
        sessions: sessions
            .iter()
            .map(|s| pb::BfdSession {
                peer: s.peer.to_string(),
                state: match s.state {
                    State::AdminDown => "admin-down",
                    State::Down => "down",
                    State::Init => "init",
                    State::Up => "up",
                }
                .to_owned(),
                multihop: s.multihop,
                echo: s.echo,
                detection_time_ms: u64::try_from(s.detection_time.as_millis()).unwrap_or(u64::MAX),
                last_down: s.last_down.map(|d| format!("{d:?}")).unwrap_or_default(),
            })
            .collect(),
    }
}

/// The pools and their counters (IPv6 pools beyond 2^64 addresses read
/// as 2^64 - 1).
pub fn pools_view(pools: &BTreeMap<String, meshlb_config::allocator::PoolCounters>) -> pb::ListPoolsResponse {
    let count = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
    pb::ListPoolsResponse {
        pools: pools
            .iter()
            .map(|(name, c)| pb::Pool {
                name: name.clone(),
                ipv4_total: count(c.v4.total),
                ipv4_in_use: count(c.v4.in_use),
                ipv6_total: count(c.v6.total),
                ipv6_in_use: count(c.v6.in_use),
            })
            .collect(),
    }
}

/// The configuration state.
pub fn config_view(config: &ConfigStatus) -> pb::ConfigState {
    pb::ConfigState {
        generation: config.generation,
        fingerprint: config.fingerprint.map(|f| format!("{f:016x}")).unwrap_or_default(),
        accepted_at: config.accepted_at.map(unix_seconds).unwrap_or_default(),
        rejections: config.rejections,
        last_rejection: config.last_rejection.as_ref().map(|r| pb::Rejection {
            at: unix_seconds(r.at),
            errors: strings(&r.errors),
        }),
        held: config.held.clone().unwrap_or_default(),
        warnings: config.warnings.clone(),
    }
}

/// The ownership events between two views of the announcers.
pub fn ownership_changes(
    before: &BTreeMap<IpAddr, BTreeSet<String>>,
    after: &BTreeMap<IpAddr, BTreeSet<String>>,
) -> Vec<pb::OwnershipEvent> {
    let addresses: BTreeSet<&IpAddr> = before.keys().chain(after.keys()).collect();
    addresses
        .into_iter()
        .filter(|a| before.get(*a) != after.get(*a))
        .map(|a| pb::OwnershipEvent {
            address: a.to_string(),
            announcers: after.get(a).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
        })
        .collect()
}

/// The session events between two BGP snapshots.
fn session_changes(before: &BgpStatus, after: &BgpStatus) -> Vec<pb::SessionEvent> {
    after
        .peers
        .iter()
        .filter(|(name, peer)| before.peers.get(*name).is_some_and(BgpPeerStatus::established) != peer.established())
        .map(|(name, peer)| pb::SessionEvent {
            peer: name.clone(),
            established: peer.established(),
        })
        .chain(
            before
                .peers
                .iter()
                .filter(|(name, peer)| peer.established() && !after.peers.contains_key(*name))
                .map(|(name, _)| pb::SessionEvent {
                    peer: name.clone(),
                    established: false,
                }),
        )
        .collect()
}

fn now_event(kind: event::Kind) -> pb::Event {
    pb::Event {
        at: unix_seconds(SystemTime::now()),
        kind: Some(kind),
    }
}

/// Follows the hub and sends every event to `out` until the reader goes.
async fn follow_events(hub: StatusHub, out: mpsc::Sender<Result<pb::Event, Status>>) {
    let mut members = hub.mesh_events().subscribe();
    let mut mesh = hub.mesh().watch();
    let mut config = hub.config().watch();
    let mut bgp = hub.bgp().watch();
    let mut owners = announcers(&mesh.borrow_and_update(), Announcing::Either);
    let mut generation = config.borrow_and_update().generation;
    let mut rejections = config.borrow().rejections;
    let mut sessions = (*bgp.borrow_and_update()).as_ref().clone();
    loop {
        let events: Vec<pb::Event> = tokio::select! {
            _ = out.closed() => return,
            member = members.recv() => match member {
                Ok(timed) => vec![pb::Event {
                    at: unix_seconds(timed.at),
                    kind: Some(event::Kind::Member(pb::MemberEvent {
                        what: timed.event.kind().to_owned(),
                        node: timed.event.member().unwrap_or_default().to_owned(),
                    })),
                }],
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    vec![now_event(event::Kind::Member(pb::MemberEvent {
                        what: format!("missed-{missed}"),
                        node: String::new(),
                    }))]
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            changed = mesh.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = announcers(&mesh.borrow_and_update(), Announcing::Either);
                let changes = ownership_changes(&owners, &now);
                owners = now;
                changes.into_iter().map(|c| now_event(event::Kind::Ownership(c))).collect()
            }
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = config.borrow_and_update().clone();
                let mut out = Vec::new();
                if current.rejections != rejections {
                    rejections = current.rejections;
                    out.push(now_event(event::Kind::Config(pb::ConfigEvent {
                        accepted: false,
                        generation: current.generation,
                        errors: current.last_rejection.iter().flat_map(|r| strings(&r.errors)).collect(),
                    })));
                }
                if current.generation != generation {
                    generation = current.generation;
                    out.push(now_event(event::Kind::Config(pb::ConfigEvent {
                        accepted: true,
                        generation,
                        errors: Vec::new(),
                    })));
                }
                out
            }
            changed = bgp.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = (*bgp.borrow_and_update()).as_ref().clone();
                let changes = session_changes(&sessions, &now);
                sessions = now;
                changes.into_iter().map(|c| now_event(event::Kind::Session(c))).collect()
            }
        };
        for event in events {
            if out.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

/// The service implementation over the hub.
#[derive(Debug, Clone)]
pub struct IntrospectionService {
    hub: StatusHub,
}

impl IntrospectionService {
    /// The service reading `hub`.
    pub fn new(hub: StatusHub) -> IntrospectionService {
        IntrospectionService { hub }
    }

    fn services(&self) -> Vec<pb::Service> {
        let running = self.hub.running().get();
        let layer2 = self.hub.layer2().get();
        let mesh = self.hub.mesh().get();
        ServiceSources {
            running: &running,
            layer2: &layer2,
            mesh: &mesh,
        }
        .services()
    }
}

type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn list_members(
        &self,
        _request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Ok(Response::new(members_view(&self.hub.mesh().get())))
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let request = request.into_inner();
        services_page(self.services(), request.page_size, &request.page_token).map(Response::new)
    }

    async fn get_service(&self, request: Request<pb::GetServiceRequest>) -> Result<Response<pb::Service>, Status> {
        let key = parse_key(&request.into_inner().name)?;
        let name = key.to_string();
        self.services()
            .into_iter()
            .find(|s| s.name == name)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no service {name} here")))
    }

    async fn list_interfaces(
        &self,
        _request: Request<pb::ListInterfacesRequest>,
    ) -> Result<Response<pb::ListInterfacesResponse>, Status> {
        Ok(Response::new(interfaces_view(&self.hub.interfaces().get())))
    }

    async fn list_bgp_peers(
        &self,
        _request: Request<pb::ListBgpPeersRequest>,
    ) -> Result<Response<pb::ListBgpPeersResponse>, Status> {
        Ok(Response::new(bgp_view(&self.hub.bgp().get())))
    }

    async fn list_bfd_sessions(
        &self,
        _request: Request<pb::ListBfdSessionsRequest>,
    ) -> Result<Response<pb::ListBfdSessionsResponse>, Status> {
        Ok(Response::new(bfd_view(&self.hub.bfd().get())))
    }

    async fn list_pools(
        &self,
        _request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        Ok(Response::new(pools_view(&self.hub.pools().get())))
    }

    async fn get_config(&self, _request: Request<pb::GetConfigRequest>) -> Result<Response<pb::ConfigState>, Status> {
        Ok(Response::new(config_view(&self.hub.config().get())))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let (tx, rx) = mpsc::channel(EVENT_BACKLOG);
        tokio::spawn(follow_events(self.hub.clone(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Binds `listen` and serves the API (with reflection and health) from
/// `hub` on the current runtime until the task is aborted; `None` when
/// it is off or its address cannot be bound (logged).
pub async fn spawn(hub: StatusHub, listen: &Listen) -> Result<Option<tokio::task::JoinHandle<()>>, AgentError> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(meshlb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(meshlb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IntrospectionServer<IntrospectionService>>()
        .await;
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(IntrospectionServer::new(IntrospectionService::new(hub)));
    // The API is for people and dashboards: an address taken (another
    // agent on this host) leaves this one without it, not down.
    let failed = |e: std::io::Error, at: String| {
        tracing::error!("introspection API: cannot listen on {at} ({e}); running without it");
        Ok(None)
    };
    let task = match listen {
        Listen::Off => return Ok(None),
        Listen::Tcp(address) => {
            let listener = match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => listener,
                Err(e) => return failed(e, address.to_string()),
            };
            tracing::info!(%address, "introspection API listening");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    tracing::warn!("introspection API stopped: {e}");
                }
            })
        }
        Listen::Unix(path) => {
            // A socket left by a previous run would refuse the bind.
            let _ = std::fs::remove_file(path);
            let listener = match tokio::net::UnixListener::bind(path) {
                Ok(listener) => listener,
                Err(e) => return failed(e, path.display().to_string()),
            };
            tracing::info!(path = %path.display(), "introspection API listening");
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    tracing::warn!("introspection API stopped: {e}");
                }
            })
        }
    };
    Ok(Some(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> pb::Service {
        pb::Service {
            name: name.to_owned(),
            ..pb::Service::default()
        }
    }

    #[test]
    fn services_come_a_bounded_page_at_a_time() {
        let all: Vec<pb::Service> = (0..1203).map(|i| service(&format!("ns/svc{i:05}"))).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = services_page(all.clone(), 0, &token).unwrap();
            assert!(page.services.len() <= MAX_PAGE_SIZE);
            seen.extend(page.services.into_iter().map(|s| s.name));
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, all.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        let small = services_page(all.clone(), 2, "").unwrap();
        assert_eq!(small.services.len(), 2);
        assert_eq!(small.next_page_token, "ns/svc00001");
        let huge = services_page(all.clone(), 1_000_000, "").unwrap();
        assert_eq!(huge.services.len(), MAX_PAGE_SIZE, "clamped to the maximum");
        let err = services_page(all, 10, "not a name").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn service_names_are_namespace_slash_name() {
        assert_eq!(parse_key("default/web").unwrap(), ServiceKey::new("default", "web"));
        for bad in ["web", "/web", "default/", "a/b/c", ""] {
            assert_eq!(
                parse_key(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn ownership_events_name_what_changed() {
        let a: IpAddr = "203.0.113.10".parse().unwrap();
        let b: IpAddr = "203.0.113.11".parse().unwrap();
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let before = BTreeMap::from([(a, set(&["node1"])), (b, set(&["node2"]))]);
        let after = BTreeMap::from([(a, set(&["node3"])), (b, set(&["node2"]))]);
        let changes = ownership_changes(&before, &after);
        assert_eq!(
            changes,
            [pb::OwnershipEvent {
                address: a.to_string(),
                announcers: vec!["node3".into()]
            }]
        );
        let gone = ownership_changes(&after, &BTreeMap::new());
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(|c| c.announcers.is_empty()));
        assert!(ownership_changes(&after, &after).is_empty());
    }

    #[test]
    fn session_events_are_the_state_changes() {
        let peer = |established: bool| BgpPeerStatus {
            negotiated: established.then(crate::status::established_session),
            ..BgpPeerStatus::default()
        };
        let before = BgpStatus {
            peers: BTreeMap::from([("a".into(), peer(false)), ("b".into(), peer(true))]),
        };
        let after = BgpStatus {
            peers: BTreeMap::from([("a".into(), peer(true)), ("c".into(), peer(false))]),
        };
        let mut changes: Vec<(String, bool)> = session_changes(&before, &after)
            .into_iter()
            .map(|e| (e.peer, e.established))
            .collect();
        changes.sort();
        // a came up; b went away while up; c is new and not up (no event).
        assert_eq!(changes, [("a".to_owned(), true), ("b".to_owned(), false)]);
    }
}
