//! Services, namespaces and endpoint slices: the inputs that decide which
//! services get addresses, how many, of which family, and which nodes can
//! serve them.
//!
//! Service knobs follow MetalLB: annotations under `metallb.io/` (read
//! first) and the older `metallb.universe.tf/`, `spec.loadBalancerIP`,
//! `spec.loadBalancerClass`, `ipFamilyPolicy`/`ipFamilies`, ports and
//! `externalTrafficPolicy`. meshlb adds `meshlb.io/l2-ips-count` and, in
//! standalone mode, local health checks (see [`crate::health`]). Deckhouse's
//! knobs are read as its `metallb` module reads them: the class
//! ([`Service::load_balancer_class_of`]: `spec.loadBalancerClass` naming a
//! MetalLoadBalancerClass, else the `metal-load-balancer-class` annotation,
//! else the default class), the address count, the addresses by name and
//! the sharing key under its three names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::addresses::Family;
use crate::config::LoadBalancerClass;
use crate::error::Invalid;
use crate::meta::{Kind, ObjectMeta, ObjectRef, StringMap};

/// The loadBalancerClass meshlb serves besides class-less services.
pub const MESHLB_CLASS: &str = "meshlb.io/meshlb";
/// Annotation prefixes read for MetalLB knobs, newest first.
pub const METALLB_PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];
/// Annotation asking for several L2 addresses per family.
pub const IPS_COUNT_ANNOTATION: &str = "meshlb.io/l2-ips-count";
/// The Deckhouse annotation with the same meaning, read as Deckhouse reads
/// it: a whole number, 1 when it is not above 1.
pub const DECKHOUSE_IPS_COUNT_ANNOTATION: &str = "network.deckhouse.io/l2-load-balancer-external-ips-count";
/// Deckhouse's annotation naming a Service's MetalLoadBalancerClass (what
/// its migration writes), read when `spec.loadBalancerClass` names none.
pub const DECKHOUSE_CLASS_ANNOTATION: &str = "network.deckhouse.io/metal-load-balancer-class";
/// Deckhouse's annotation naming a Service's addresses, comma separated:
/// entry i is address i, and the rest of the count is allocated.
pub const DECKHOUSE_IPS_ANNOTATION: &str = "network.deckhouse.io/load-balancer-ips";
/// The sharing key under the three names Deckhouse has used, current first
/// (read after MetalLB's `allow-shared-ip`).
pub const DECKHOUSE_SHARING_ANNOTATIONS: [&str; 3] = [
    "network.deckhouse.io/load-balancer-shared-ip-key",
    "network.deckhouse.io/load-balancer-allow-shared-ip",
    "network.deckhouse.io/allow-shared-ip",
];
/// Annotation the allocating component writes: the pool a service's
/// addresses come from (MetalLB's `metallb.io/ip-allocated-from-pool`).
pub const IP_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";
/// Most addresses per family one service may ask for.
pub const MAX_IPS_PER_FAMILY: u8 = 16;

/// Identifies a service: namespace and name. Keys are copied into every
/// map of the pipeline, the allocator and the status (ten copies a
/// service), so their text is shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl ServiceKey {
    /// A key from namespace and name.
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A core/v1 Service, the fields meshlb reads. Unknown fields (clusterIP,
/// sessionAffinity, ...) are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Metadata; annotations carry the MetalLB knobs.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Status: the addresses already assigned.
    #[serde(default)]
    pub status: ServiceStatus,
}

/// `Service.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `LoadBalancer` for services meshlb serves.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<Spelled<ServiceType>>,
    /// Which load balancer implementation serves the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// A requested address (deprecated in Kubernetes, still honoured).
    #[serde(default, rename = "loadBalancerIP", skip_serializing_if = "Option::is_none")]
    pub load_balancer_ip: Option<String>,
    /// `SingleStack`, `PreferDualStack` or `RequireDualStack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<Spelled<FamilyPolicy>>,
    /// `IPv4` and/or `IPv6`, primary first. (Boxed slices here: a list
    /// read grows to room for four, and an agent holds every Service.)
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub ip_families: Box<[Spelled<Family>]>,
    /// Ports, for sharing checks.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub ports: Box<[ServicePort]>,
    /// `Cluster` (default) or `Local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<Spelled<TrafficPolicy>>,
    /// Pod selector; Local services share an address only with the same one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: StringMap,
}

/// A field Kubernetes spells as one of a few words: the word understood,
/// or kept as written when it is none of them, so that one misspelt field
/// is refused with a clear error ([`Service::allocation_request`]) rather
/// than failing the whole Service's parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Spelled<T> {
    /// One of the words.
    Known(T),
    /// None of them, as written.
    Unknown(String),
}

impl<T: fmt::Display> fmt::Display for Spelled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spelled::Known(value) => value.fmt(f),
            Spelled::Unknown(written) => f.write_str(written),
        }
    }
}

/// `Service.spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// And on a port of every node.
    NodePort,
    /// And at an external address: what meshlb gives.
    LoadBalancer,
    /// A DNS alias.
    ExternalName,
}

impl ServiceType {
    /// The type `written` names, if any (spelled as the API spells it).
    pub fn parse(written: &str) -> Option<ServiceType> {
        use serde::de::value::{Error, StrDeserializer};
        ServiceType::deserialize(StrDeserializer::<Error>::new(written)).ok()
    }
}

/// `Service.spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrafficPolicy {
    /// Any node forwards to any endpoint (the default).
    Cluster,
    /// Only nodes with a ready endpoint take traffic, which keeps the
    /// client's source address.
    Local,
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        })
    }
}

/// One service port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The port.
    #[serde(default)]
    pub port: i64,
}

/// `Service.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Load balancer status.
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
    /// Conditions (Deckhouse's two among them, for Services of a class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A `status.conditions` entry (`metav1.Condition`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Its type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word saying why.
    #[serde(default)]
    pub reason: String,
    /// What a person reads.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The condition type Deckhouse writes on a Service of a
/// MetalLoadBalancerClass: whether it holds every address it asks for.
pub const ALL_PUBLIC_IPS_ASSIGNED: &str = "AllPublicIPsAssigned";
/// The condition type Deckhouse writes naming the class a Service is bound to.
pub const LOAD_BALANCER_CLASS_CONDITION: &str = "network.deckhouse.io/load-balancer-class";

/// The two conditions Deckhouse writes on a Service of class `class` that
/// holds `assigned` of the `wanted` addresses it asks for, worded as
/// Deckhouse words them (its alerts and scripts read them): without
/// transition times, which the writer keeps from the Service's current
/// conditions while their status stays.
pub fn deckhouse_conditions(class: &str, assigned: usize, wanted: usize) -> [Condition; 2] {
    let all = assigned >= wanted;
    [
        Condition {
            type_: ALL_PUBLIC_IPS_ASSIGNED.to_owned(),
            status: if all { "True" } else { "False" }.to_owned(),
            reason: if all { "AllIPsAssigned" } else { "NotAllIPsAssigned" }.to_owned(),
            message: format!("{assigned} of {wanted} public IPs were assigned"),
            ..Condition::default()
        },
        Condition {
            type_: LOAD_BALANCER_CLASS_CONDITION.to_owned(),
            status: "True".to_owned(),
            reason: "LoadBalancerClassBound".to_owned(),
            message: class.to_owned(),
            ..Condition::default()
        },
    ]
}

/// Whether every `wanted` condition is in `current` with the same status,
/// reason and message (transition times aside).
pub fn conditions_hold(current: &[Condition], wanted: &[Condition]) -> bool {
    wanted.iter().all(|w| {
        current
            .iter()
            .any(|c| c.type_ == w.type_ && c.status == w.status && c.reason == w.reason && c.message == w.message)
    })
}

/// `current` with `wanted` in place of the conditions of their types (the
/// others kept as they are): `None` when every wanted condition is there
/// already with the same status, reason and message. A condition whose
/// status is unchanged keeps its transition time; one new or changed gets
/// `now`.
pub fn with_conditions(current: &[Condition], wanted: &[Condition], now: &str) -> Option<Vec<Condition>> {
    if conditions_hold(current, wanted) {
        return None;
    }
    let mut out: Vec<Condition> = current
        .iter()
        .filter(|c| wanted.iter().all(|w| w.type_ != c.type_))
        .cloned()
        .collect();
    for w in wanted {
        let before = current.iter().find(|c| c.type_ == w.type_);
        let mut condition = w.clone();
        condition.last_transition_time = match before {
            Some(c) if c.status == w.status && c.last_transition_time.is_some() => c.last_transition_time.clone(),
            _ => Some(now.to_owned()),
        };
        out.push(condition);
    }
    Some(out)
}

/// `Service.status.loadBalancer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    /// Assigned addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One `status.loadBalancer.ingress` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A core/v1 Namespace: its labels feed pool `namespaceSelectors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
}

impl Namespace {
    /// Labels as the API server reports them, including the automatic
    /// `kubernetes.io/metadata.name`.
    pub fn labels(&self) -> StringMap {
        namespace_labels(&self.metadata.name, &self.metadata.labels)
    }
}

/// A core/v1 Node, the parts load balancing reads: labels for node
/// selectors, the label that excludes it from external load balancers and
/// the NetworkUnavailable condition (MetalLB's candidate filters), and the
/// `node.kubernetes.io/out-of-service` taint (an administrator's word that
/// the node is shut down, Kubernetes' non-graceful node shutdown). Node
/// readiness is not one of them: a NotReady node's kubelet is silent, not
/// necessarily its network, which the agents' mesh tests directly; its
/// pods' endpoints turn not ready, which moves an externalTrafficPolicy
/// Local address by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec: the taints.
    #[serde(default)]
    pub spec: NodeSpec,
    /// Status: the conditions.
    #[serde(default)]
    pub status: NodeStatus,
}

/// `Node.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Its taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

/// One taint of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    /// Its key.
    #[serde(default)]
    pub key: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default)]
    pub effect: String,
}

/// The taint that says a node is shut down and takes it out of load
/// balancing (Kubernetes' non-graceful node shutdown).
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// `Node.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Conditions by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<NodeCondition>,
    /// Its addresses (InternalIP: where the agents of a cluster find each
    /// other).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// One address of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(rename = "type", default)]
    pub type_: String,
    /// The address.
    #[serde(default)]
    pub address: String,
}

/// One node condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCondition {
    /// `Ready`, `NetworkUnavailable`, ...
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
}

/// The label that takes a node out of every load balancer's candidates.
pub const EXCLUDE_FROM_LOAD_BALANCERS: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

impl Node {
    /// Its InternalIP addresses that parse.
    pub fn internal_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.status
            .addresses
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
    }

    /// Whether the node may announce load-balancer addresses: not labelled
    /// out of external load balancers, not tainted out of service, and not
    /// NetworkUnavailable.
    pub fn may_announce(&self) -> bool {
        !self.metadata.labels.contains_key(EXCLUDE_FROM_LOAD_BALANCERS)
            && !self.spec.taints.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT)
            && !self
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
    }
}

/// Labels of a namespace named `name` with these explicit labels.
pub fn namespace_labels(name: &str, labels: &StringMap) -> StringMap {
    let mut labels = labels.clone();
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    labels
}

/// A discovery.k8s.io/v1 EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Metadata; label `kubernetes.io/service-name` names the service.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Pod addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Readiness.
    #[serde(default)]
    pub conditions: EndpointConditions,
    /// Node hosting the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// Endpoint conditions; absent means unknown, which counts as ready.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConditions {
    /// Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Serving (ready, or terminating but still able to serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

impl Endpoint {
    /// MetalLB's rule: healthy when `ready` is absent or true, or when
    /// `serving` is true.
    pub fn is_healthy(&self) -> bool {
        self.conditions.ready.unwrap_or(true) || self.conditions.serving == Some(true)
    }
}

/// What a Service's EndpointSlices say of its endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    /// Whether some endpoint is healthy, on any node or none named.
    pub any_healthy: bool,
    /// The nodes with a healthy endpoint.
    pub nodes: BTreeSet<String>,
}

/// The endpoints of every Service that has EndpointSlices, read once from
/// all the slices (a slice names its Service by the
/// `kubernetes.io/service-name` label, in its own namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointIndex {
    by_service: std::collections::HashMap<ServiceKey, ServiceEndpoints>,
}

impl EndpointIndex {
    /// The index of `slices`.
    pub fn new<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> EndpointIndex {
        let mut by_service: std::collections::HashMap<ServiceKey, ServiceEndpoints> = Default::default();
        for slice in slices {
            let Some(name) = slice.metadata.labels.get("kubernetes.io/service-name") else {
                continue;
            };
            let key = ServiceKey::new(slice.metadata.namespace.as_deref().unwrap_or("default"), name.as_str());
            let entry = by_service.entry(key).or_default();
            for endpoint in slice.endpoints.iter().filter(|e| e.is_healthy()) {
                entry.any_healthy = true;
                entry.nodes.extend(endpoint.node_name.clone());
            }
        }
        EndpointIndex { by_service }
    }

    /// The endpoints of `service`, if it has EndpointSlices.
    pub fn get(&self, service: &ServiceKey) -> Option<&ServiceEndpoints> {
        self.by_service.get(service)
    }
}

/// Which loadBalancerClass values meshlb serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFilter {
    /// Serve services without a class.
    pub serve_classless: bool,
    /// Classes served.
    pub classes: BTreeSet<String>,
}

impl Default for ClassFilter {
    /// Class-less services and [`MESHLB_CLASS`].
    fn default() -> ClassFilter {
        ClassFilter {
            serve_classless: true,
            classes: BTreeSet::from([MESHLB_CLASS.to_string()]),
        }
    }
}

impl ClassFilter {
    /// MetalLB's `--lb-class=CLASS`: only that class, not class-less ones.
    pub fn only(class: impl Into<String>) -> ClassFilter {
        ClassFilter {
            serve_classless: false,
            classes: BTreeSet::from([class.into()]),
        }
    }

    /// Whether services with this class are ours.
    pub fn accepts(&self, class: Option<&str>) -> bool {
        match class {
            None => self.serve_classless,
            Some(c) => self.classes.contains(c),
        }
    }
}

/// The IP family policy of a service, as Kubernetes defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FamilyPolicy {
    /// One address family.
    SingleStack,
    /// Both families when the pool has both, otherwise the primary one.
    PreferDualStack,
    /// Both families or nothing.
    RequireDualStack,
}

impl fmt::Display for FamilyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FamilyPolicy::SingleStack => "SingleStack",
            FamilyPolicy::PreferDualStack => "PreferDualStack",
            FamilyPolicy::RequireDualStack => "RequireDualStack",
        })
    }
}

/// A port as far as sharing is concerned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    /// The transport protocol.
    pub protocol: Protocol,
    /// Port number.
    pub port: u16,
}

/// A Service port's protocol (`spec.ports[].protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// `TCP`, the default.
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
}

impl std::str::FromStr for Protocol {
    type Err = ();

    /// Kubernetes' spelling, as the API server accepts it.
    fn from_str(text: &str) -> Result<Protocol, ()> {
        match text {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// Where traffic goes, as far as sharing is concerned: services sharing an
/// address must send it to the same backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// externalTrafficPolicy Cluster: any node forwards.
    Cluster,
    /// externalTrafficPolicy Local with this pod selector (canonical form).
    Local(String),
}

/// Everything the allocator needs to know about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    /// The service.
    pub service: ServiceKey,
    /// Service labels (pool `serviceSelectors`).
    pub labels: StringMap,
    /// Labels of the service's namespace (pool `namespaceSelectors`).
    pub namespace_labels: Arc<StringMap>,
    /// The pool asked for by annotation.
    pub pool: Option<String>,
    /// Addresses asked for explicitly, in the order given.
    pub addresses: Vec<IpAddr>,
    /// Family policy.
    pub family_policy: FamilyPolicy,
    /// Families in preference order; empty means "whichever the pool has".
    pub families: Vec<Family>,
    /// Addresses per family (1 unless meshlb's multi-address L2 is used).
    pub per_family: u8,
    /// Sharing key (`allow-shared-ip`).
    pub sharing_key: Option<String>,
    /// The MetalLoadBalancerClass it belongs to: it takes from that class's
    /// pool alone.
    pub class: Option<String>,
    /// Ports (sharing requires no overlap).
    pub ports: Vec<PortKey>,
    /// Backends (sharing requires equality).
    pub backend: Backend,
}

impl Service {
    /// Namespace and name; the namespace defaults to `default`.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(
            self.metadata.namespace.as_deref().unwrap_or("default"),
            self.metadata.name.clone(),
        )
    }

    /// A reference for messages.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(Kind::Service, &self.metadata)
    }

    /// Whether meshlb should give this service an address.
    pub fn wants_address(
        &self,
        classes: &ClassFilter,
        load_balancer_classes: &BTreeMap<String, LoadBalancerClass>,
    ) -> bool {
        let class = self.spec.load_balancer_class.as_deref();
        self.spec.type_ == Some(Spelled::Known(ServiceType::LoadBalancer))
            && (classes.accepts(class) || class.is_some_and(|c| load_balancer_classes.contains_key(c)))
    }

    /// The MetalLoadBalancerClass of `classes` this Service belongs to, as
    /// Deckhouse binds it: `spec.loadBalancerClass` naming one; else (with
    /// no class, or meshlb's) the [`DECKHOUSE_CLASS_ANNOTATION`], which
    /// must name one; else, for a Service that names no class at all, the
    /// default class. A Service of another implementation's class belongs
    /// to none (Deckhouse gives it the default class too, and two load
    /// balancers then fight over it).
    pub fn load_balancer_class_of<'a>(
        &self,
        classes: &'a BTreeMap<String, LoadBalancerClass>,
    ) -> Result<Option<&'a LoadBalancerClass>, Box<Invalid>> {
        let named = self.spec.load_balancer_class.as_deref();
        if let Some(class) = named.and_then(|c| classes.get(c)) {
            return Ok(Some(class));
        }
        if named.is_some_and(|c| c != MESHLB_CLASS) {
            return Ok(None);
        }
        if let Some(written) = self.metadata.annotations.get(DECKHOUSE_CLASS_ANNOTATION) {
            return match classes.get(written.trim()) {
                Some(class) => Ok(Some(class)),
                None => Err(Box::new(Invalid::new(
                    &self.object_ref(),
                    format!("metadata.annotations[{DECKHOUSE_CLASS_ANNOTATION}]"),
                    written,
                    "names no MetalLoadBalancerClass",
                    if classes.is_empty() {
                        "the name of a MetalLoadBalancerClass (there are none)".to_owned()
                    } else {
                        format!("one of {}", classes.keys().cloned().collect::<Vec<_>>().join(", "))
                    },
                ))),
            };
        }
        Ok(named
            .is_none()
            .then(|| classes.values().find(|c| c.is_default))
            .flatten())
    }

    /// A MetalLB annotation (`metallb.io/<name>`, else the older
    /// `metallb.universe.tf/<name>`), with the key it was found under.
    pub fn metallb_annotation(&self, name: &str) -> Option<(String, &str)> {
        METALLB_PREFIXES.iter().find_map(|prefix| {
            let key = format!("{prefix}{name}");
            self.metadata.annotations.get(&key).map(|v| (key, v.as_str()))
        })
    }

    /// The pool recorded by the allocating component, under either prefix.
    pub fn allocated_from_pool(&self) -> Option<&str> {
        self.metallb_annotation("ip-allocated-from-pool").map(|(_, v)| v)
    }

    /// The key of the Services it may share its addresses with (the
    /// `allow-shared-ip` annotation under either prefix, else Deckhouse's
    /// under any of its names, trimmed: keys that differ only by
    /// surrounding spaces are one key, in planning and in claiming alike).
    pub fn sharing_key(&self) -> Option<&str> {
        self.metallb_annotation("allow-shared-ip")
            .map(|(_, v)| v)
            .or_else(|| {
                DECKHOUSE_SHARING_ANNOTATIONS
                    .iter()
                    .find_map(|key| self.metadata.annotations.get(*key))
                    .map(String::as_str)
            })
            .map(str::trim)
    }

    /// Addresses in `status.loadBalancer.ingress` that parse; these are
    /// re-admitted on restart.
    pub fn assigned_addresses(&self) -> Vec<IpAddr> {
        self.status
            .load_balancer
            .ingress
            .iter()
            .filter_map(|i| i.ip.as_deref()?.trim().parse().ok())
            .collect()
    }

    /// Reads every allocation knob. `default_per_family` comes from the
    /// matching L2Policy (1 without one); the service's own annotation
    /// overrides it. `class` is the MetalLoadBalancerClass it belongs to
    /// ([`Service::load_balancer_class_of`]).
    pub fn allocation_request(
        &self,
        key: ServiceKey,
        namespace_labels: &Arc<StringMap>,
        default_per_family: u8,
        class: Option<&str>,
    ) -> Result<AllocationRequest, Vec<Invalid>> {
        let object = self.object_ref();
        let mut errors = Vec::new();
        let annotation_field = |key: &str| format!("metadata.annotations[{key}]");

        let pool = self
            .metallb_annotation("address-pool")
            .map(|(_, v)| v.trim().to_string());
        let sharing_key = self.sharing_key().map(str::to_owned);

        let mut addresses = Vec::new();
        // Where the addresses asked for by name are written: one place.
        let mut named: Vec<(String, &str)> = Vec::new();
        if let Some((key, value)) = self.metallb_annotation("loadBalancerIPs") {
            named.push((annotation_field(&key), value));
        }
        if let Some(value) = self.metadata.annotations.get(DECKHOUSE_IPS_ANNOTATION) {
            named.push((annotation_field(DECKHOUSE_IPS_ANNOTATION), value));
        }
        if let Some(ip) = &self.spec.load_balancer_ip {
            named.push(("spec.loadBalancerIP".to_owned(), ip));
        }
        for (field, value) in named.iter().skip(1) {
            errors.push(Invalid::new(
                &object,
                field,
                *value,
                format!("is set together with {}", named[0].0),
                format!(
                    "one of the metallb.io/loadBalancerIPs annotation, the {DECKHOUSE_IPS_ANNOTATION} annotation or spec.loadBalancerIP"
                ),
            ));
        }
        let (field, text) = match named.first() {
            Some((field, value)) => (field.clone(), Some((*value).to_owned())),
            None => (String::new(), None),
        };
        for part in text
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match part.parse::<IpAddr>() {
                Ok(ip) if addresses.contains(&ip) => errors.push(Invalid::new(
                    &object,
                    &field,
                    part,
                    "is listed twice",
                    "distinct addresses",
                )),
                Ok(ip) => addresses.push(ip),
                Err(_) => errors.push(Invalid::new(
                    &object,
                    &field,
                    part,
                    "is not an IP address",
                    "IPv4 or IPv6 addresses, comma separated",
                )),
            }
        }

        let family_policy = match &self.spec.ip_family_policy {
            None => FamilyPolicy::SingleStack,
            Some(Spelled::Known(policy)) => *policy,
            Some(Spelled::Unknown(other)) => {
                errors.push(Invalid::new(
                    &object,
                    "spec.ipFamilyPolicy",
                    other,
                    "is not an IP family policy",
                    "SingleStack, PreferDualStack or RequireDualStack",
                ));
                FamilyPolicy::SingleStack
            }
        };
        let mut families = Vec::new();
        for (i, name) in self.spec.ip_families.iter().enumerate() {
            let family = match name {
                Spelled::Known(family) => *family,
                Spelled::Unknown(other) => {
                    errors.push(Invalid::new(
                        &object,
                        format!("spec.ipFamilies[{i}]"),
                        other,
                        "is not an IP family",
                        "IPv4 or IPv6",
                    ));
                    continue;
                }
            };
            if families.contains(&family) {
                errors.push(Invalid::new(
                    &object,
                    format!("spec.ipFamilies[{i}]"),
                    name.to_string(),
                    "is listed twice",
                    "each family once",
                ));
            } else {
                families.push(family);
            }
        }
        if family_policy == FamilyPolicy::SingleStack && families.len() > 1 {
            errors.push(Invalid::new(
                &object,
                "spec.ipFamilies",
                self.spec
                    .ip_families
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                "lists two families for a SingleStack service",
                "one family, or ipFamilyPolicy PreferDualStack or RequireDualStack",
            ));
        }
        // Without ipFamilies, the explicit addresses say which family comes first.
        if families.is_empty()
            && let Some(first) = addresses.first()
        {
            families.push(Family::of(*first));
        }
        if family_policy != FamilyPolicy::SingleStack {
            let primary = families.first().copied().unwrap_or(Family::V4);
            families = vec![primary, primary.other()];
        }

        let mut count = |key: &str, value: &str, below_one_is_one: bool| match value.trim().parse::<i64>() {
            Ok(n) if (1..=i64::from(MAX_IPS_PER_FAMILY)).contains(&n) => n as u8,
            Ok(n) if n < 1 && below_one_is_one => 1,
            _ => {
                errors.push(Invalid::new(
                    &object,
                    annotation_field(key),
                    value,
                    "is not a valid address count",
                    format!("a whole number from 1 to {MAX_IPS_PER_FAMILY}"),
                ));
                default_per_family
            }
        };
        let per_family = match (
            self.metadata.annotations.get(IPS_COUNT_ANNOTATION),
            self.metadata.annotations.get(DECKHOUSE_IPS_COUNT_ANNOTATION),
        ) {
            (Some(value), _) => count(IPS_COUNT_ANNOTATION, value, false),
            // Deckhouse's: a count not above 1 is 1.
            (None, Some(value)) => count(DECKHOUSE_IPS_COUNT_ANNOTATION, value, true),
            (None, None) => default_per_family,
        };

        let mut ports = Vec::new();
        for (i, port) in self.spec.ports.iter().enumerate() {
            let protocol = match port.protocol.as_deref().map(str::parse) {
                None => Some(Protocol::Tcp),
                Some(Ok(protocol)) => Some(protocol),
                Some(Err(())) => {
                    errors.push(Invalid::new(
                        &object,
                        format!("spec.ports[{i}].protocol"),
                        port.protocol.as_deref().unwrap_or_default(),
                        "is not a service protocol",
                        "TCP, UDP or SCTP",
                    ));
                    None
                }
            };
            match u16::try_from(port.port) {
                Ok(p) if p > 0 => ports.extend(protocol.map(|protocol| PortKey { protocol, port: p })),
                _ => errors.push(Invalid::new(
                    &object,
                    format!("spec.ports[{i}].port"),
                    port.port.to_string(),
                    "is out of range",
                    "1 to 65535",
                )),
            }
        }

        let backend = match &self.spec.external_traffic_policy {
            None | Some(Spelled::Known(TrafficPolicy::Cluster)) => Backend::Cluster,
            Some(Spelled::Known(TrafficPolicy::Local)) => {
                let selector: Vec<String> = self.spec.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Backend::Local(selector.join(","))
            }
            Some(Spelled::Unknown(other)) => {
                errors.push(Invalid::new(
                    &object,
                    "spec.externalTrafficPolicy",
                    other,
                    "is not a traffic policy",
                    "Cluster or Local",
                ));
                Backend::Cluster
            }
        };

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AllocationRequest {
            service: key,
            labels: self.metadata.labels.clone(),
            namespace_labels: Arc::clone(namespace_labels),
            pool,
            addresses,
            family_policy,
            families,
            per_family,
            sharing_key,
            class: class.map(str::to_owned),
            ports,
            backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn request(yaml: &str) -> Result<AllocationRequest, Vec<Invalid>> {
        let service = service(yaml);
        service.allocation_request(service.key(), &Default::default(), 1, None)
    }

    #[test]
    fn class_filter() {
        let default = ClassFilter::default();
        assert!(default.accepts(None) && default.accepts(Some(MESHLB_CLASS)) && !default.accepts(Some("other")));
        let only = ClassFilter::only("corp/lb");
        assert!(!only.accepts(None) && only.accepts(Some("corp/lb")));
        let none = BTreeMap::new();
        let svc = service("metadata: {name: a}\nspec: {type: ClusterIP}\n");
        assert!(!svc.wants_address(&default, &none));
        let svc = service("metadata: {name: a}\nspec: {type: LoadBalancer, loadBalancerClass: other}\n");
        assert!(!svc.wants_address(&default, &none));
        let other = BTreeMap::from([(
            "other".to_owned(),
            LoadBalancerClass {
                name: "other".into(),
                is_default: false,
            },
        )]);
        assert!(
            svc.wants_address(&default, &other),
            "a MetalLoadBalancerClass's Service is ours"
        );
    }

    #[test]
    fn reads_metallb_knobs_new_and_old_prefixes() {
        let r = request(
            "metadata:
  name: web
  namespace: shop
  annotations:
    metallb.io/address-pool: public
    metallb.universe.tf/address-pool: ignored
    metallb.universe.tf/allow-shared-ip: key1
    metallb.io/loadBalancerIPs: 192.0.2.10, 2001:db8::10
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ports: [{port: 80}, {port: 53, protocol: UDP}]
  externalTrafficPolicy: Local
  selector: {app: web}
",
        )
        .unwrap();
        assert_eq!(r.service.to_string(), "shop/web");
        assert_eq!(r.pool.as_deref(), Some("public"));
        assert_eq!(r.sharing_key.as_deref(), Some("key1"));
        assert_eq!(r.addresses.len(), 2);
        assert_eq!(r.families, vec![Family::V4, Family::V6]);
        assert_eq!(r.family_policy, FamilyPolicy::RequireDualStack);
        assert_eq!(
            r.ports[1],
            PortKey {
                protocol: Protocol::Udp,
                port: 53
            }
        );
        assert_eq!(r.backend, Backend::Local("app=web".into()));
    }

    /// The words Kubernetes spells are read as types, and written back as
    /// they were, understood or not.
    #[test]
    fn spelled_fields_are_typed_and_written_back_as_read() {
        let yaml = "metadata: {name: web}\nspec: {type: LoadBalancer, ipFamilyPolicy: PreferDualStack, \
                    ipFamilies: [IPv6, IPv5], externalTrafficPolicy: Nearest}\n";
        let read = service(yaml);
        assert_eq!(read.spec.type_, Some(Spelled::Known(ServiceType::LoadBalancer)));
        assert_eq!(
            read.spec.ip_family_policy,
            Some(Spelled::Known(FamilyPolicy::PreferDualStack))
        );
        assert_eq!(
            read.spec.ip_families.as_ref(),
            [Spelled::Known(Family::V6), Spelled::Unknown("IPv5".into())]
        );
        assert_eq!(
            read.spec.external_traffic_policy,
            Some(Spelled::Unknown("Nearest".into()))
        );
        let written = serde_yaml_ng::to_string(&read.spec).unwrap();
        for word in [
            "type: LoadBalancer",
            "ipFamilyPolicy: PreferDualStack",
            "- IPv6",
            "- IPv5",
            "externalTrafficPolicy: Nearest",
        ] {
            assert!(written.contains(word), "{word} not in {written}");
        }
        assert_eq!(
            service(&format!("metadata: {{name: web}}\nspec:\n{}", indent(&written))),
            read
        );
        assert_eq!(ServiceType::parse("ClusterIP"), Some(ServiceType::ClusterIp));
        assert_eq!(ServiceType::parse("loadbalancer"), None);
    }

    fn indent(text: &str) -> String {
        text.lines().map(|line| format!("  {line}\n")).collect()
    }

    #[test]
    fn bad_knobs_are_named() {
        let errors = request(
            "metadata:
  name: web
  annotations:
    metallb.io/loadBalancerIPs: 192.0.2.1,nope
    meshlb.io/l2-ips-count: \"40\"
spec:
  type: LoadBalancer
  loadBalancerIP: 192.0.2.2
  ipFamilyPolicy: Sometimes
  ipFamilies: [IPv4, IPv5]
  ports: [{port: 70000, protocol: ICMP}]
  externalTrafficPolicy: Nearest
",
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        for want in [
            "spec.loadBalancerIP \"192.0.2.2\" is set together with metadata.annotations[metallb.io/loadBalancerIPs]",
            "metadata.annotations[metallb.io/loadBalancerIPs] \"nope\" is not an IP address",
            "spec.ipFamilyPolicy \"Sometimes\"",
            "spec.ipFamilies[1] \"IPv5\"",
            "meshlb.io/l2-ips-count] \"40\"",
            "spec.ports[0].protocol \"ICMP\"",
            "spec.ports[0].port \"70000\" is out of range",
            "spec.externalTrafficPolicy \"Nearest\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
    }

    #[test]
    fn ready_endpoint_nodes() {
        let slice: EndpointSlice = serde_yaml_ng::from_str(
            "metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
endpoints:
  - {addresses: [198.18.0.1], nodeName: n1, conditions: {ready: true}}
  - {addresses: [198.18.0.2], nodeName: n2, conditions: {ready: false}}
  - {addresses: [198.18.0.3], nodeName: n3, conditions: {ready: false, serving: true, terminating: true}}
  - {addresses: [198.18.0.4], nodeName: n4}
",
        )
        .unwrap();
        let index = EndpointIndex::new([&slice]);
        let web = index.get(&ServiceKey::new("shop", "web")).unwrap();
        assert_eq!(web.nodes.iter().collect::<Vec<_>>(), ["n1", "n3", "n4"]);
        assert!(web.any_healthy);
        assert_eq!(index.get(&ServiceKey::new("default", "web")), None);
        // Listed, with no healthy endpoint; and healthy on no named node.
        let none_ready = slice.endpoints.iter().filter(|e| !e.is_healthy()).cloned().collect();
        let index = EndpointIndex::new([&EndpointSlice {
            endpoints: none_ready,
            ..slice.clone()
        }]);
        let web = index.get(&ServiceKey::new("shop", "web")).unwrap();
        assert!(!web.any_healthy && web.nodes.is_empty());
        let mut unnamed = slice.clone();
        unnamed.endpoints.iter_mut().for_each(|e| e.node_name = None);
        let index = EndpointIndex::new([&unnamed]);
        let web = index.get(&ServiceKey::new("shop", "web")).unwrap();
        assert!(web.any_healthy && web.nodes.is_empty());
    }

    #[test]
    fn status_addresses_are_read() {
        let svc = service(
            "metadata: {name: a, annotations: {metallb.universe.tf/ip-allocated-from-pool: p}}\n\
             status: {loadBalancer: {ingress: [{ip: 192.0.2.5}, {hostname: x}, {ip: bad}]}}\n",
        );
        assert_eq!(svc.allocated_from_pool(), Some("p"));
        assert_eq!(svc.assigned_addresses(), vec!["192.0.2.5".parse::<IpAddr>().unwrap()]);
    }

    /// A node announces unless labelled out of external load balancers,
    /// tainted out of service, or NetworkUnavailable; NotReady, cordoned
    /// or tainted otherwise (the node controller's unreachable and
    /// not-ready taints) it still does.
    #[test]
    fn what_takes_a_node_out_of_announcing() {
        let node = |yaml: &str| -> Node { serde_yaml_ng::from_str(yaml).unwrap() };
        let announces = |yaml: &str| node(yaml).may_announce();
        assert!(announces("metadata: {name: n}\n"));
        assert!(announces(
            "metadata: {name: n}\nspec:\n  unschedulable: true\n  taints:\n\
             \x20 - {key: node.kubernetes.io/unreachable, effect: NoExecute}\n\
             \x20 - {key: node.kubernetes.io/not-ready, effect: NoSchedule}\n\
             status: {conditions: [{type: Ready, status: Unknown}]}\n"
        ));
        assert!(!announces(
            "metadata: {name: n, labels: {node.kubernetes.io/exclude-from-external-load-balancers: ''}}\n"
        ));
        assert!(!announces(
            "metadata: {name: n}\nspec: {taints: [{key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}]}\n"
        ));
        assert!(!announces(
            "metadata: {name: n}\nstatus: {conditions: [{type: NetworkUnavailable, status: 'True'}]}\n"
        ));
    }
}
