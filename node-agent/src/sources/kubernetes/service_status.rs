//! What each agent tells the cluster of what it announces, as MetalLB's
//! speakers do: a `ServiceL2Status` per Service this node answers for over
//! Layer 2 (node, Service, the interfaces it answers on), a
//! `ServiceBGPStatus` per Service it announces over BGP (node, Service,
//! the BGPPeers whose established sessions carry its addresses), each
//! removed when the node stops, and a `nodeAssigned` Event on the Service
//! when it starts.
//!
//! The objects follow the mesh's decisions, never the other way round: an
//! API server that is down delays them and changes nothing announced. So
//! that they never say a node announces what it does not, at most seconds
//! after a change or after the API server returns:
//! - each node writes and removes its own, found by their `metallb.io/node`
//!   label (a reflector), so leftovers from before a restart go too; each
//!   is named for its node and Service;
//! - a node announcing a Service removes the objects of that Service
//!   written by nodes whose mesh records do not announce any of its
//!   addresses (a node that is back after a crash, and lost the Service
//!   meanwhile, whose own agent cannot reach the API server);
//! - a node with quorum removes every object of nodes the mesh no longer
//!   has (a crashed node cannot remove its own; one the mesh does not hear
//!   from cannot be announcing, as the fence keeps a minority quiet).
//!
//! Which objects to write and remove is decided by [`plan`], a pure
//! function; [`run`] only reads, plans and writes, retrying failed writes
//! within two seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use meshlb_config::crd::{
    BgpServiceStatus, InterfaceName, L2ServiceStatus, ServiceBgpStatus, ServiceBgpStatusSpec, ServiceL2Status,
    ServiceL2StatusSpec,
};
use meshlb_config::service::ServiceKey;
use meshlb_gossip::driver::MeshStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use super::events::{Event, EventType, Recorder};
use crate::running::RunningState;
use crate::status::{Announcing, BgpStatus, Layer2Status, announcers};

/// The label naming the announcing node (MetalLB's).
pub const NODE_LABEL: &str = "metallb.io/node";
/// The label naming the Service.
pub const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
/// The label naming the Service's namespace.
pub const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

/// How long the inputs must be still before the objects are written (a
/// failover changes them in a few steps).
const SETTLE: Duration = Duration::from_millis(100);
/// How soon a failed write is tried again, at first...
const RETRY: Duration = Duration::from_millis(250);
/// ...and at the latest, while writes keep failing (an API server away):
/// the objects are right within seconds of its return.
const RETRY_AT_MOST: Duration = Duration::from_secs(2);

/// A kind of per-Service status object: ServiceL2Status or
/// ServiceBGPStatus.
pub trait StatusKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// What its status says.
    type Status: Clone + Debug + PartialEq + Serialize + Send + Sync + 'static;
    /// Its objects' name prefix (MetalLB's: `l2-`, `bgp-`).
    const PREFIX: &'static str;
    /// The protocol its `nodeAssigned` Event names.
    const PROTOCOL: &'static str;
    /// Which mesh announcements it reports.
    const ANNOUNCING: Announcing;
    /// A new object named `name`, with no status.
    fn named(name: &str) -> Self;
    /// Its status.
    fn status(&self) -> Option<&Self::Status>;
}

impl StatusKind for ServiceL2Status {
    type Status = L2ServiceStatus;
    const PREFIX: &'static str = "l2";
    const PROTOCOL: &'static str = "layer2";
    const ANNOUNCING: Announcing = Announcing::Layer2;
    fn named(name: &str) -> Self {
        ServiceL2Status::new(name, ServiceL2StatusSpec {})
    }
    fn status(&self) -> Option<&L2ServiceStatus> {
        self.status.as_ref()
    }
}

impl StatusKind for ServiceBgpStatus {
    type Status = BgpServiceStatus;
    const PREFIX: &'static str = "bgp";
    const PROTOCOL: &'static str = "bgp";
    const ANNOUNCING: Announcing = Announcing::Bgp;
    fn named(name: &str) -> Self {
        ServiceBgpStatus::new(name, ServiceBgpStatusSpec {})
    }
    fn status(&self) -> Option<&BgpServiceStatus> {
        self.status.as_ref()
    }
}

/// A Service this node announces: its addresses, and the status its
/// object must have.
#[derive(Debug, Clone, PartialEq)]
pub struct Announced<S> {
    /// The Service's addresses.
    pub addresses: Vec<IpAddr>,
    /// Its object's status.
    pub status: S,
}

/// What this node announces over Layer 2: each Service with an address
/// the mesh gives it, and the interfaces it answers on.
pub fn layer2_announced(node: &str, layer2: &Layer2Status) -> BTreeMap<ServiceKey, Announced<L2ServiceStatus>> {
    layer2
        .services
        .values()
        .filter(|s| s.addresses.iter().any(|a| layer2.announcing.contains(a)))
        .map(|s| {
            let status = L2ServiceStatus {
                node: node.to_owned(),
                service_name: s.key.name.to_string(),
                service_namespace: s.key.namespace.to_string(),
                interfaces: s
                    .interfaces
                    .iter()
                    .map(|name| InterfaceName { name: name.clone() })
                    .collect(),
            };
            let announced = Announced {
                addresses: s.addresses.clone(),
                status,
            };
            (s.key.clone(), announced)
        })
        .collect()
}

/// What this node announces over BGP: each Service with an address a
/// peer's established session carries, and those peers (sorted).
pub fn bgp_announced(
    node: &str,
    bgp: &BgpStatus,
    running: &RunningState,
) -> BTreeMap<ServiceKey, Announced<BgpServiceStatus>> {
    let mut out = BTreeMap::new();
    for (key, outcome) in running.outcomes.iter() {
        let Some(assignment) = outcome.assignment() else {
            continue;
        };
        let peers: Vec<String> = bgp
            .peers
            .iter()
            .filter(|(_, peer)| peer.established() && assignment.addresses.iter().any(|a| peer.addresses.contains(a)))
            .map(|(name, _)| name.clone())
            .collect();
        if peers.is_empty() {
            continue;
        }
        let status = BgpServiceStatus {
            node: node.to_owned(),
            service_name: key.name.to_string(),
            service_namespace: key.namespace.to_string(),
            peers,
        };
        let announced = Announced {
            addresses: assignment.addresses.clone(),
            status,
        };
        out.insert(key.clone(), announced);
    }
    out
}

/// The name of `node`'s object for `service`: fixed, so writes are
/// idempotent, and short whatever the names' lengths.
pub fn object_name(prefix: &str, node: &str, service: &ServiceKey) -> String {
    format!(
        "{prefix}-{}",
        meshlb_gossip::record::service_id(&format!("{node}/{service}"))
    )
}

/// An existing object, as [`plan`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing<S> {
    /// Its name.
    pub name: String,
    /// The node its label names.
    pub node: Option<String>,
    /// The Service its labels name.
    pub service: Option<ServiceKey>,
    /// Its status.
    pub status: Option<S>,
}

/// What the mesh says, as [`plan`] needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshView {
    /// The members the mesh has.
    pub members: BTreeSet<String>,
    /// Who announces each address, by the members' records.
    pub announcers: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Whether this node has quorum.
    pub quorum: bool,
}

impl MeshView {
    /// The view of `mesh` for the `announcing` protocol.
    pub fn of(mesh: &MeshStatus, announcing: Announcing) -> MeshView {
        MeshView {
            members: mesh.members.iter().map(|m| m.id.name.clone()).collect(),
            announcers: announcers(mesh, announcing),
            quorum: mesh.fence.quorum,
        }
    }
}

/// What to do to the objects.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPlan<S> {
    /// Objects to create (named), then write.
    pub create: BTreeSet<String>,
    /// Objects whose status to write: name, Service, status.
    pub write: Vec<(String, ServiceKey, S)>,
    /// Objects to remove.
    pub remove: BTreeSet<String>,
}

/// Decides the writes (pure): see the module documentation.
pub fn plan<S: Clone + PartialEq>(
    prefix: &str,
    node: &str,
    announced: &BTreeMap<ServiceKey, Announced<S>>,
    mesh: &MeshView,
    existing: &[Existing<S>],
) -> StatusPlan<S> {
    let mut out = StatusPlan {
        create: BTreeSet::new(),
        write: Vec::new(),
        remove: BTreeSet::new(),
    };
    let by_name: BTreeMap<&str, &Existing<S>> = existing.iter().map(|e| (e.name.as_str(), e)).collect();
    for (service, wanted) in announced {
        let name = object_name(prefix, node, service);
        match by_name.get(name.as_str()) {
            None => {
                out.create.insert(name.clone());
            }
            Some(current) if current.status.as_ref() == Some(&wanted.status) => continue,
            Some(_) => {}
        }
        out.write.push((name, service.clone(), wanted.status.clone()));
    }
    for object in existing {
        let Some(owner) = object.node.as_deref() else {
            continue;
        };
        let remove = if owner == node {
            object.service.as_ref().is_none_or(|service| {
                object_name(prefix, node, service) != object.name || !announced.contains_key(service)
            })
        } else if !mesh.members.contains(owner) {
            mesh.quorum
        } else {
            // A live node's object of a Service this node announces, when
            // its record announces none of the Service's addresses.
            object
                .service
                .as_ref()
                .and_then(|s| announced.get(s))
                .is_some_and(|wanted| {
                    !wanted
                        .addresses
                        .iter()
                        .any(|a| mesh.announcers.get(a).is_some_and(|nodes| nodes.contains(owner)))
                })
        };
        if remove {
            out.remove.insert(object.name.clone());
        }
    }
    out
}

/// The label `object` carries under `key`.
fn label<'a, K: Resource>(object: &'a K, key: &str) -> Option<&'a str> {
    object.meta().labels.as_ref()?.get(key).map(String::as_str)
}

/// An object as [`plan`] sees it.
fn existing<K: StatusKind>(object: &K) -> Option<Existing<K::Status>> {
    Some(Existing {
        name: object.meta().name.clone()?,
        node: label(object, NODE_LABEL).map(str::to_owned),
        service: label(object, SERVICE_NAME_LABEL)
            .zip(label(object, SERVICE_NAMESPACE_LABEL))
            .map(|(name, namespace)| ServiceKey::new(namespace, name)),
        status: object.status().cloned(),
    })
}

/// Keeps the Layer 2 objects (ServiceL2Status) of `node` in `namespace` to
/// what `layer2` says it announces, until the hub closes.
pub async fn run_layer2(
    client: kube::Client,
    namespace: String,
    node: String,
    mut layer2: watch::Receiver<Arc<Layer2Status>>,
    mesh: watch::Receiver<Arc<MeshStatus>>,
) {
    let (tx, announced) = watch::channel(Arc::new(BTreeMap::new()));
    let mapped = node.clone();
    let mapper = tokio::spawn(async move {
        layer2.mark_changed();
        while layer2.changed().await.is_ok() {
            let next = layer2_announced(&mapped, &layer2.borrow_and_update());
            tx.send_if_modified(|current| (**current != next).then(|| *current = Arc::new(next)).is_some());
        }
    });
    run::<ServiceL2Status>(client, namespace, node, announced, mesh).await;
    mapper.abort();
}

/// Keeps the BGP objects (ServiceBGPStatus) of `node` in `namespace` to
/// what `bgp` and `running` say it announces, until `bgp` closes.
pub async fn run_bgp(
    client: kube::Client,
    namespace: String,
    node: String,
    mut bgp: watch::Receiver<Arc<BgpStatus>>,
    mut running: watch::Receiver<Arc<RunningState>>,
    mesh: watch::Receiver<Arc<MeshStatus>>,
) {
    let (tx, announced) = watch::channel(Arc::new(BTreeMap::new()));
    let mapped = node.clone();
    let mapper = tokio::spawn(async move {
        bgp.mark_changed();
        // The running state ends with the pipeline, before BGP stops: a
        // drain's changes still reach the objects.
        let mut running_open = true;
        loop {
            tokio::select! {
                r = bgp.changed() => if r.is_err() { break },
                r = running.changed(), if running_open => running_open = r.is_ok(),
            }
            let next = bgp_announced(&mapped, &bgp.borrow_and_update(), &running.borrow_and_update());
            tx.send_if_modified(|current| (**current != next).then(|| *current = Arc::new(next)).is_some());
        }
    });
    run::<ServiceBgpStatus>(client, namespace, node, announced, mesh).await;
    mapper.abort();
}

/// Keeps `node`'s objects of kind `K` in `namespace` to `announced` (and
/// removes others' that no longer hold: see the module documentation),
/// until `announced` closes.
pub async fn run<K: StatusKind>(
    client: kube::Client,
    namespace: String,
    node: String,
    mut announced: watch::Receiver<Arc<BTreeMap<ServiceKey, Announced<K::Status>>>>,
    mut mesh: watch::Receiver<Arc<MeshStatus>>,
) {
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let changed = Arc::new(Notify::new());
    let (objects, writer) = reflector::store();
    let kind = K::kind(&()).into_owned();
    let reflector = super::reflect(
        api.clone(),
        writer,
        changed.clone(),
        super::KindHealth::alone(kind.clone()),
    );
    let _reflector = super::AbortOnDrop(vec![reflector]);
    if objects.wait_until_ready().await.is_err() {
        return;
    }
    let recorder = Recorder::new(client, "meshlb-agent", node.clone());
    let mut told: BTreeSet<ServiceKey> = BTreeSet::new();
    // Failed writes are retried after `retry_in` (from RETRY, doubled
    // while they keep failing); each round that fails logs once.
    let mut retry_in: Option<Duration> = None;
    let mut view = MeshView::of(&mesh.borrow_and_update(), K::ANNOUNCING);
    announced.mark_changed();
    loop {
        let proceed = loop {
            tokio::select! {
                r = announced.changed() => break r.is_ok(),
                // The mesh's status changes often; only who is there and
                // who announces what matters here.
                r = mesh.changed() => {
                    if r.is_err() {
                        break false;
                    }
                    if MeshView::of(&mesh.borrow_and_update(), K::ANNOUNCING) != view {
                        break true;
                    }
                }
                () = changed.notified() => break true,
                () = tokio::time::sleep(retry_in.unwrap_or(RETRY)), if retry_in.is_some() => break true,
            }
        };
        if !proceed {
            return;
        }
        // Settle: a failover moves several things at once.
        while tokio::time::timeout(SETTLE, announced.changed())
            .await
            .is_ok_and(|r| r.is_ok())
        {}
        let wanted = Arc::clone(&announced.borrow_and_update());
        view = MeshView::of(&mesh.borrow_and_update(), K::ANNOUNCING);
        let current: Vec<Existing<K::Status>> = objects.state().iter().filter_map(|o| existing(o.as_ref())).collect();
        let todo = plan(K::PREFIX, &node, &wanted, &view, &current);
        let mut failures: Vec<String> = Vec::new();
        for (name, service, status) in &todo.write {
            if todo.create.contains(name) {
                let mut object = K::named(name);
                object.meta_mut().labels = Some(BTreeMap::from([
                    (NODE_LABEL.to_owned(), node.clone()),
                    (SERVICE_NAME_LABEL.to_owned(), service.name.to_string()),
                    (SERVICE_NAMESPACE_LABEL.to_owned(), service.namespace.to_string()),
                ]));
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        failures.push(format!("create {kind} {name} ({service}): {e}"));
                        continue;
                    }
                }
            }
            let patch = serde_json::json!({ "status": status });
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                failures.push(format!("write {kind} {name} ({service}): {e}"));
            }
        }
        for name in &todo.remove {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => failures.push(format!("remove {kind} {name}: {e}")),
            }
        }
        retry_in = if failures.is_empty() {
            None
        } else {
            let next = retry_in.map_or(RETRY, |last| (last * 2).min(RETRY_AT_MOST));
            tracing::warn!(
                failed = failures.len(),
                retry_in_ms = next.as_millis() as u64,
                "{kind} not written: {}",
                failures[0]
            );
            Some(next)
        };
        // MetalLB's nodeAssigned, once per gain.
        told.retain(|service| wanted.contains_key(service));
        for service in wanted
            .keys()
            .filter(|s| !told.contains(*s))
            .cloned()
            .collect::<Vec<_>>()
        {
            let event = Event {
                type_: EventType::Normal,
                reason: "nodeAssigned".into(),
                note: Some(format!(
                    "announcing from node \"{node}\" with protocol \"{}\"",
                    K::PROTOCOL
                )),
                action: "Announce".into(),
                secondary: None,
            };
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Service".into()),
                namespace: Some(service.namespace.to_string()),
                name: Some(service.name.to_string()),
                ..ObjectReference::default()
            };
            match recorder.publish(&event, &reference).await {
                Ok(()) => {
                    told.insert(service);
                }
                Err(e) => tracing::warn!(service = %service, "cannot record nodeAssigned: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::status::Layer2Service;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_services_with_an_address_given_here_are_announced() {
        let service = |name: &str, address: &str| Layer2Service {
            key: ServiceKey::new("shop", name),
            addresses: vec![ip(address)],
            serveable: true,
            interfaces: BTreeSet::from(["eth0".to_owned()]),
            blocked: None,
            preferences: Vec::new(),
        };
        let layer2 = Layer2Status {
            services: BTreeMap::from([
                (meshlb_gossip::record::ServiceId(1), service("web", "192.0.2.1")),
                (meshlb_gossip::record::ServiceId(2), service("db", "192.0.2.2")),
            ]),
            announcing: BTreeSet::from([ip("192.0.2.1")]),
        };
        let announced = layer2_announced("node-a", &layer2);
        assert_eq!(
            announced.keys().map(ToString::to_string).collect::<Vec<_>>(),
            ["shop/web"]
        );
        let web = &announced[&ServiceKey::new("shop", "web")].status;
        assert_eq!((web.node.as_str(), web.interfaces[0].name.as_str()), ("node-a", "eth0"));
        let name = object_name("l2", "node-a", &ServiceKey::new("shop", "web"));
        assert_eq!(name.len(), 19);
        assert_ne!(
            name,
            object_name("l2", "node-b", &ServiceKey::new("shop", "web")),
            "one object per node"
        );
    }

    /// The objects that say a node announces what it does not go: this
    /// node's own it no longer announces, a live node's that its record
    /// does not back, any of a node the mesh lost (with quorum only).
    #[test]
    fn objects_that_no_longer_hold_are_removed() {
        let web = ServiceKey::new("shop", "web");
        let db = ServiceKey::new("shop", "db");
        let announced = BTreeMap::from([(
            web.clone(),
            Announced {
                addresses: vec![ip("192.0.2.1")],
                status: "web@a",
            },
        )]);
        let object = |name: &str, node: &str, service: &ServiceKey, status: &'static str| Existing {
            name: name.to_owned(),
            node: Some(node.to_owned()),
            service: Some(service.clone()),
            status: Some(status),
        };
        let own = object_name("l2", "a", &web);
        let existing = vec![
            object(&own, "a", &web, "stale"),
            object("left-over", "a", &db, "db@a"),
            object("b-handing-over", "b", &web, "web@b"),
            object("c-back-and-quiet", "c", &web, "web@c"),
            object("d-crashed", "d", &db, "db@d"),
            object("c-other", "c", &db, "db@c"),
        ];
        let mut mesh = MeshView {
            members: ["a", "b", "c"].map(str::to_owned).into(),
            announcers: BTreeMap::from([(ip("192.0.2.1"), ["a", "b"].map(str::to_owned).into())]),
            quorum: true,
        };
        let todo = plan("l2", "a", &announced, &mesh, &existing);
        assert!(todo.create.is_empty());
        assert_eq!(todo.write, vec![(own.clone(), web.clone(), "web@a")]);
        assert_eq!(
            todo.remove,
            ["left-over", "c-back-and-quiet", "d-crashed"].map(str::to_owned).into()
        );
        // Without quorum, nothing of another node's is this node's to judge
        // by absence.
        mesh.quorum = false;
        let todo = plan("l2", "a", &announced, &mesh, &existing);
        assert!(!todo.remove.contains("d-crashed"));
        // Nothing there yet: created.
        let todo = plan("l2", "a", &announced, &mesh, &[]);
        assert_eq!(todo.create, [own].into());
    }
}
