//! From a set of objects to "which service holds which addresses": the
//! glue every configuration source shares.
//!
//! An [`Inventory`] is one consistent reading of a source (configuration
//! kinds, Services, Namespaces, EndpointSlices). A [`Reconciler`] keeps the
//! allocator across readings and applies each new inventory: services that
//! left (deleted, no longer LoadBalancer, another class) release their
//! addresses; services that already hold addresses (from `status`, or
//! remembered from before a restart) are re-admitted before anything new is
//! allocated; then every other service is served in name order, those that
//! name their addresses (`loadBalancerIPs`) before those that take any.
//!
//! A service with invalid knobs is reported and keeps what it held; it
//! never makes the whole inventory invalid. A service whose addresses no
//! pool covers any more keeps them for a while ([`Holds`]): losing a pool
//! by mistake never renumbers its services.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addresses::Family;
use crate::allocator::{AllocationError, Allocator, Assignment};
use crate::config::{Config, L2Policy, LoadBalancerClass, Pool};
use crate::error::{Error, Invalid, Rejected, SourceLocation};
use crate::meta::{ObjectRef, StringMap};
use crate::object::{Located, Object};
use crate::service::{
    AllocationRequest, ClassFilter, EndpointSlice, FamilyPolicy, Node, Service, ServiceKey, namespace_labels,
};

/// One consistent reading of a configuration source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// The validated configuration.
    pub config: Config,
    /// Services, by key (shared with the reading they came from: copying
    /// an inventory copies pointers).
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
    /// Where each service was read.
    pub service_locations: BTreeMap<ServiceKey, SourceLocation>,
    /// Namespace labels, for namespaces declared as objects.
    pub namespaces: BTreeMap<String, StringMap>,
    /// The whole label set ([`Inventory::namespace_labels`]) of each
    /// namespace holding a Service, made once a reading: every request of
    /// a namespace's Services shares it (ten thousand Services, one map).
    namespace_label_sets: BTreeMap<String, Arc<StringMap>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Nodes declared as objects (a cluster's; standalone files may
    /// declare some), by name.
    pub nodes: BTreeMap<String, Node>,
}

impl Inventory {
    /// Builds an inventory; configuration errors and duplicate objects
    /// reject it as a whole.
    pub fn build(objects: &[Located<Object>]) -> Result<Inventory, Rejected> {
        let config = Config::build(objects);
        let cluster = Inventory::build_cluster(objects);
        match (config, cluster) {
            (Ok(config), Ok(cluster)) => Ok(cluster.with_config(config)),
            (config, cluster) => {
                let mut errors = config.err().map(|r| r.errors).unwrap_or_default();
                errors.extend(cluster.err().map(|r| r.errors).unwrap_or_default());
                Err(Rejected { errors })
            }
        }
    }

    /// Builds the cluster's part of a reading alone (Services, Namespaces,
    /// EndpointSlices, Nodes), with no configuration: what keeps being
    /// served, with the last good configuration, while the configuration
    /// kinds of the reading are refused. Duplicate objects reject it.
    pub fn build_cluster(objects: &[Located<Object>]) -> Result<Inventory, Rejected> {
        let mut errors = Vec::new();
        let mut inventory = Inventory::default();
        let mut duplicate = |location: &SourceLocation, object: ObjectRef, first: Option<&SourceLocation>| {
            let first = first.map(|l| format!(" (first at {l})")).unwrap_or_default();
            errors.push(Error::Invalid {
                location: Some(location.clone()),
                invalid: Box::new(Invalid::new(
                    &object,
                    "metadata.name",
                    &object.name,
                    format!("is defined twice{first}"),
                    "one object per kind, namespace and name",
                )),
            });
        };
        let mut namespace_locations: BTreeMap<String, SourceLocation> = BTreeMap::new();
        let mut node_locations: BTreeMap<String, SourceLocation> = BTreeMap::new();
        for located in objects {
            match &located.object {
                Object::Service(service) => {
                    let key = service.key();
                    if let Some(first) = inventory.service_locations.get(&key) {
                        duplicate(&located.location, service.object_ref(), Some(first));
                        continue;
                    }
                    inventory
                        .service_locations
                        .insert(key.clone(), located.location.clone());
                    inventory.services.insert(key, Arc::clone(service));
                }
                Object::Namespace(namespace) => {
                    let name = namespace.metadata.name.clone();
                    if let Some(first) = namespace_locations.get(&name) {
                        duplicate(&located.location, located.object.object_ref(), Some(first));
                        continue;
                    }
                    namespace_locations.insert(name.clone(), located.location.clone());
                    inventory.namespaces.insert(name, namespace.metadata.labels.clone());
                }
                Object::EndpointSlice(slice) => inventory.endpoint_slices.push(Arc::clone(slice)),
                Object::Node(node) => {
                    let name = node.metadata.name.clone();
                    if let Some(first) = node_locations.get(&name) {
                        duplicate(&located.location, located.object.object_ref(), Some(first));
                        continue;
                    }
                    node_locations.insert(name.clone(), located.location.clone());
                    inventory.nodes.insert(name, (**node).clone());
                }
                _ => {}
            }
        }
        let service_namespaces: BTreeSet<&str> = inventory.services.keys().map(|k| &*k.namespace).collect();
        inventory.namespace_label_sets = service_namespaces
            .into_iter()
            .map(|namespace| (namespace.to_owned(), Arc::new(inventory.namespace_labels_of(namespace))))
            .collect();
        if errors.is_empty() {
            Ok(inventory)
        } else {
            Err(Rejected { errors })
        }
    }

    /// The same cluster objects under `config`.
    pub fn with_config(self, config: Config) -> Inventory {
        Inventory { config, ..self }
    }

    /// Labels of a namespace (declared or not), with the automatic
    /// `kubernetes.io/metadata.name`.
    pub fn namespace_labels(&self, namespace: &str) -> Arc<StringMap> {
        match self.namespace_label_sets.get(namespace) {
            Some(labels) => Arc::clone(labels),
            None => Arc::new(self.namespace_labels_of(namespace)),
        }
    }

    fn namespace_labels_of(&self, namespace: &str) -> StringMap {
        namespace_labels(namespace, self.namespaces.get(namespace).unwrap_or(&StringMap::new()))
    }

    /// The allocation request of a service (known by `key`, whose text the
    /// request shares), with the L2Policy's address count applied.
    pub fn request_for(&self, key: &ServiceKey, service: &Service) -> Result<AllocationRequest, Vec<Invalid>> {
        let per_family = self
            .config
            .l2_policy_for(&service.metadata.labels)
            .map_or(1, |p| p.addresses_per_service);
        let class = service
            .load_balancer_class_of(&self.config.classes)
            .map_err(|invalid| vec![*invalid])?;
        service.allocation_request(
            key.clone(),
            &self.namespace_labels(&key.namespace),
            per_family,
            class.map(|c| c.name.as_str()),
        )
    }
}

/// Every served service's outcome, each shared by the reconciler, the
/// pipeline and the status the protocols read (one copy however many hold
/// it).
pub type Outcomes = BTreeMap<ServiceKey, Arc<ServiceOutcome>>;

/// What happened to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOutcome {
    /// The service holds these addresses.
    Assigned(Assignment),
    /// The service's knobs are invalid; it keeps what it held.
    Invalid {
        /// Every problem.
        errors: Vec<Invalid>,
        /// What it still holds.
        kept: Option<Assignment>,
    },
    /// No (or not the requested) addresses could be given.
    Failed {
        /// Why.
        error: AllocationError,
        /// What it still holds.
        kept: Option<Assignment>,
    },
    /// The service's status holds no address yet; the allocator (another
    /// agent, in a cluster) has not written one.
    Pending,
    /// No pool covers the addresses the service holds any more; it keeps
    /// them, not announced, for a while (see [`Holds`]).
    Held {
        /// The addresses it keeps.
        addresses: Vec<IpAddr>,
        /// Why they are not admitted.
        error: AllocationError,
        /// How long they are kept at most.
        hold_for: Duration,
    },
}

impl ServiceOutcome {
    /// The addresses the service holds after the outcome, from a pool: what
    /// is announced.
    pub fn assignment(&self) -> Option<&Assignment> {
        match self {
            ServiceOutcome::Assigned(a) => Some(a),
            ServiceOutcome::Invalid { kept, .. } | ServiceOutcome::Failed { kept, .. } => kept.as_ref(),
            ServiceOutcome::Pending | ServiceOutcome::Held { .. } => None,
        }
    }

    /// The addresses the service keeps in its status: those of its
    /// assignment, or those it holds though no pool covers them.
    pub fn kept_addresses(&self) -> &[IpAddr] {
        match self {
            ServiceOutcome::Held { addresses, .. } => addresses,
            other => other.assignment().map_or(&[], |a| &a.addresses),
        }
    }
}

impl fmt::Display for ServiceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = |k: &Option<Assignment>| k.as_ref().map(|a| format!("; keeps {a}")).unwrap_or_default();
        match self {
            ServiceOutcome::Assigned(a) => write!(f, "{a}"),
            ServiceOutcome::Invalid { errors, kept: k } => {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "invalid: {}{}", errors.join("; "), kept(k))
            }
            ServiceOutcome::Failed { error, kept: k } => write!(f, "no addresses: {error}{}", kept(k)),
            ServiceOutcome::Pending => f.write_str("pending: no address in its status yet"),
            ServiceOutcome::Held {
                addresses,
                error,
                hold_for,
            } => {
                let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "holds {} though {error}: kept, not announced, until a pool covers it again or the \
                     Service asks for another address, at most {}",
                    addresses.join(", "),
                    crate::duration::format(*hold_for)
                )
            }
        }
    }
}

/// Who gives services their addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressSource {
    /// The reconciler allocates: standalone agents, and the one allocator
    /// of a cluster.
    #[default]
    Allocate,
    /// Services hold what their status says (checked against the pools and
    /// each other), and nothing else: the agents of a cluster announce
    /// only what the allocator wrote, as MetalLB's speakers do.
    Status,
}

/// How long a service keeps addresses no pool covers, by default (see
/// [`Holds`]).
pub const DEFAULT_HOLD_ORPHANED: Duration = Duration::from_secs(3600);

/// Addresses services keep though no pool covers them any more.
///
/// The rule: when the pools stop covering the addresses a service holds
/// (its pool deleted or shrunk; every pool gone at once, as when a Helm
/// uninstall takes MetalLB's CRDs with it), the service keeps them, in its
/// status and not announced, until
/// - a pool covers them again: it is served with them as before;
/// - the service itself asks for something else (other addresses, another
///   pool, family or sharing key): that is served at once;
/// - `hold_for` has passed since they left the pools: they are let go,
///   and the service is served anew (or fails, saying why).
///
/// MetalLB lets them go at once and gives the service the next free
/// address, so re-applying a pool deleted by mistake renumbers its
/// services; a `hold_for` of zero is that behaviour. While held, no other
/// service can take them (no pool offers them), and when a pool covers
/// them again the services holding them are re-admitted before anything
/// is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holds {
    hold_for: Duration,
    entries: BTreeMap<ServiceKey, Hold>,
}

/// One service's held addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    addresses: Vec<IpAddr>,
    intent: Intent,
    since: Instant,
    /// Its time passed, or the service asked for something else: kept
    /// only so that the service is not held again meanwhile.
    ended: bool,
}

/// What a service asks of its addresses: when it changes, a hold ends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Intent {
    pool: Option<String>,
    addresses: Vec<IpAddr>,
    family_policy: FamilyPolicy,
    families: Vec<Family>,
    per_family: u8,
    sharing_key: Option<String>,
}

impl Intent {
    fn of(request: &AllocationRequest) -> Intent {
        Intent {
            pool: request.pool.clone(),
            addresses: request.addresses.clone(),
            family_policy: request.family_policy,
            families: request.families.clone(),
            per_family: request.per_family,
            sharing_key: request.sharing_key.clone(),
        }
    }
}

impl Default for Holds {
    fn default() -> Holds {
        Holds::new(DEFAULT_HOLD_ORPHANED)
    }
}

impl Holds {
    /// Holds of at most `hold_for` (zero: none, as MetalLB).
    pub fn new(hold_for: Duration) -> Holds {
        Holds {
            hold_for,
            entries: BTreeMap::new(),
        }
    }

    /// How long addresses are held at most.
    pub fn hold_for(&self) -> Duration {
        self.hold_for
    }

    /// The services holding addresses no pool covers, and those addresses.
    pub fn held(&self) -> impl Iterator<Item = (&ServiceKey, &[IpAddr])> {
        self.entries
            .iter()
            .filter(|(_, h)| !h.ended)
            .map(|(key, h)| (key, h.addresses.as_slice()))
    }

    /// When the next running hold ends: apply again then.
    pub fn next_end(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|h| !h.ended)
            .map(|h| h.since + self.hold_for)
            .min()
    }

    /// Whether `request` keeps `addresses`, which no pool covers, at `now`.
    fn keep(&mut self, request: &AllocationRequest, addresses: &[IpAddr], now: Instant) -> bool {
        if self.hold_for.is_zero() {
            return false;
        }
        let intent = Intent::of(request);
        let named = request.addresses.iter().collect::<BTreeSet<_>>();
        if !named.is_empty() && named != addresses.iter().collect() {
            // It names other addresses: what it asks for now is served.
            self.entries.remove(&request.service);
            return false;
        }
        let hold_for = self.hold_for;
        let hold = self.entries.entry(request.service.clone()).or_insert_with(|| Hold {
            addresses: addresses.to_vec(),
            intent: intent.clone(),
            since: now,
            ended: false,
        });
        if hold.addresses != addresses {
            *hold = Hold {
                addresses: addresses.to_vec(),
                intent,
                since: now,
                ended: false,
            };
            return true;
        }
        if hold.intent != intent {
            hold.intent = intent;
            hold.ended = true;
        }
        if now.saturating_duration_since(hold.since) >= hold_for {
            hold.ended = true;
        }
        !hold.ended
    }
}

/// Keeps the allocator across inventories.
#[derive(Debug, Clone)]
pub struct Reconciler {
    allocator: Allocator,
    classes: ClassFilter,
    remembered: BTreeMap<ServiceKey, Vec<IpAddr>>,
    source: AddressSource,
    holds: Holds,
    last: LastApply,
}

/// What every service's outcome depends on besides the service itself: when
/// it is unchanged, an apply redoes only the services that changed.
#[derive(Debug, Clone, PartialEq)]
struct Context {
    pools: BTreeMap<String, Pool>,
    l2_policies: BTreeMap<String, L2Policy>,
    classes: BTreeMap<String, LoadBalancerClass>,
    namespaces: BTreeMap<String, StringMap>,
}

impl Context {
    fn of(inventory: &Inventory) -> Context {
        Context {
            pools: inventory.config.pools.clone(),
            l2_policies: inventory.config.l2_policies.clone(),
            classes: inventory.config.classes.clone(),
            namespaces: inventory.namespaces.clone(),
        }
    }
}

/// The last apply: its context, and each served service as read and its
/// outcome.
#[derive(Debug, Clone, Default)]
struct LastApply {
    context: Option<Context>,
    services: BTreeMap<ServiceKey, (Arc<Service>, Arc<ServiceOutcome>)>,
}

impl Reconciler {
    /// A reconciler serving these classes. `remembered` holds addresses
    /// services had before a restart (used when a service's `status` has
    /// none, as in standalone mode).
    pub fn new(classes: ClassFilter, remembered: BTreeMap<ServiceKey, Vec<IpAddr>>) -> Reconciler {
        Reconciler {
            allocator: Allocator::default(),
            classes,
            remembered,
            source: AddressSource::Allocate,
            holds: Holds::default(),
            last: LastApply::default(),
        }
    }

    /// The same reconciler with these holds (a hold's length, and what a
    /// previous reconciler held).
    pub fn with_holds(mut self, holds: Holds) -> Reconciler {
        self.holds = holds;
        self
    }

    /// What the reconciler holds (see [`Holds`]).
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// The same reconciler taking addresses from `source`.
    pub fn taking_addresses_from(mut self, source: AddressSource) -> Reconciler {
        self.source = source;
        self
    }

    /// Who gives the services their addresses.
    pub fn address_source(&self) -> AddressSource {
        self.source
    }

    /// The allocator, for counters and lookups.
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Forgets what the last apply read, so the next one redoes every
    /// service (tests compare the two ways).
    #[doc(hidden)]
    pub fn forget_last_apply(&mut self) {
        self.last = LastApply::default();
    }

    /// Whether applying `inventory` surely leaves some service holding
    /// addresses: one holding them now is in it unchanged, under the same
    /// pools, L2Policies, classes and namespaces. (False says nothing.)
    pub fn surely_keeps_some_address(&self, inventory: &Inventory) -> bool {
        if self.last.context.as_ref() != Some(&Context::of(inventory)) {
            return false;
        }
        self.last.services.iter().any(|(key, (read, outcome))| {
            matches!(**outcome, ServiceOutcome::Assigned(_))
                && inventory
                    .services
                    .get(key)
                    // Arc's equality of an Eq type tries the pointer first.
                    .is_some_and(|service| read == service)
        })
    }

    /// Applies an inventory; returns the outcome of every service meshlb
    /// serves, and releases the others.
    ///
    /// When the pools, L2Policies, classes and namespaces are those of the
    /// last apply, only the services that changed (or are new), and those that
    /// failed last time (a release may have made room), are served again;
    /// every other keeps its outcome, as a full pass would give it: a
    /// service holding its addresses keeps them, and one pending or invalid
    /// depends on nothing else. A cluster's stream of status writes costs
    /// what changed, not what exists. `now` times the [`Holds`]; a service
    /// held is served again at every apply (apply again at
    /// [`Holds::next_end`]).
    pub fn apply(&mut self, inventory: &Inventory, now: Instant) -> Outcomes {
        let pools: Vec<_> = inventory.config.pools.values().cloned().collect();
        if self.allocator.pools().values().ne(pools.iter()) {
            // Services whose addresses left the pools are served again
            // below, with those addresses as what they hold.
            for (request, assignment) in self.allocator.replace_pools(pools) {
                self.remembered.insert(request.service.clone(), assignment.addresses);
            }
        }
        let wanted: BTreeMap<&ServiceKey, &Arc<Service>> = inventory
            .services
            .iter()
            .filter(|(_, s)| s.wants_address(&self.classes, &inventory.config.classes))
            .collect();
        let held: Vec<ServiceKey> = self.allocator.assignments().map(|(k, _)| k.clone()).collect();
        for key in held.iter().filter(|k| !wanted.contains_key(k)) {
            self.allocator.release(key);
        }
        self.remembered.retain(|k, _| wanted.contains_key(k));

        let context = Context::of(inventory);
        let last = std::mem::take(&mut self.last);
        let same_context = last.context.as_ref() == Some(&context);
        let mut outcomes = BTreeMap::new();
        let mut served = Vec::new();
        for (key, service) in &wanted {
            match last.services.get(*key) {
                Some((read, outcome))
                    if same_context
                        && !matches!(**outcome, ServiceOutcome::Failed { .. } | ServiceOutcome::Held { .. })
                        && read == *service =>
                {
                    outcomes.insert((*key).clone(), Arc::clone(outcome));
                }
                _ => served.push((*key, service.as_ref())),
            }
        }
        outcomes.extend(self.serve(inventory, &served, now));
        self.last = LastApply {
            context: Some(context),
            services: wanted
                .iter()
                .filter_map(|(key, service)| {
                    let outcome = Arc::clone(outcomes.get(*key)?);
                    Some(((*key).clone(), (Arc::clone(service), outcome)))
                })
                .collect(),
        };
        outcomes
    }

    /// Serves `services` (in name order): their outcomes.
    fn serve(&mut self, inventory: &Inventory, services: &[(&ServiceKey, &Service)], now: Instant) -> Outcomes {
        let mut outcomes = BTreeMap::new();
        let mut requests = Vec::new();
        for (key, service) in services {
            match inventory.request_for(key, service) {
                Ok(request) => requests.push((request, *service)),
                Err(errors) => {
                    let kept = self.allocator.assignment(key).cloned();
                    outcomes.insert((*key).clone(), Arc::new(ServiceOutcome::Invalid { errors, kept }));
                }
            }
        }
        if self.source == AddressSource::Status {
            // Services whose status changed let go first, so an address
            // that moved between two services is admitted in any order.
            for (request, service) in &requests {
                let held = self.allocator.assignment(&request.service).map(|a| &a.addresses);
                if held.is_some_and(|held| *held != service.assigned_addresses()) {
                    self.allocator.release(&request.service);
                }
            }
            for (request, service) in &requests {
                let status = service.assigned_addresses();
                let outcome = if status.is_empty() {
                    ServiceOutcome::Pending
                } else {
                    match self.allocator.admit(request, &status) {
                        Ok(assignment) => ServiceOutcome::Assigned(assignment),
                        Err(error) => {
                            self.allocator.release(&request.service);
                            ServiceOutcome::Failed { error, kept: None }
                        }
                    }
                };
                outcomes.insert(request.service.clone(), Arc::new(outcome));
            }
            return outcomes;
        }
        // Phase 1: re-admit addresses services already hold elsewhere;
        // keep those no pool covers any more (see Holds).
        let mut held = BTreeMap::new();
        let mut considered = BTreeSet::new();
        for (request, service) in &requests {
            if self.allocator.assignment(&request.service).is_some() {
                continue;
            }
            let mut existing = service.assigned_addresses();
            if existing.is_empty() {
                existing = self.remembered.get(&request.service).cloned().unwrap_or_default();
            }
            if existing.is_empty() {
                continue;
            }
            match self.allocator.admit(request, &existing) {
                Ok(_) => {
                    self.remembered.remove(&request.service);
                }
                Err(error @ AllocationError::OutsidePools { .. }) => {
                    considered.insert(request.service.clone());
                    if self.holds.keep(request, &existing, now) {
                        held.insert(request.service.clone(), (existing, error));
                    } else {
                        self.remembered.remove(&request.service);
                    }
                }
                Err(_) => {}
            }
        }
        // A hold is over once its service's addresses are admitted again,
        // replaced, or gone with the service (a held service is served at
        // every apply, so one not considered holds nothing).
        self.holds.entries.retain(|key, _| considered.contains(key));
        // Phase 2: everything else, in service order, the services that
        // name their addresses first: an address a service asks for by
        // name is never taken by one that asked for any (when a pool comes
        // back, say, after its services lost their addresses).
        let (named, any): (Vec<_>, Vec<_>) = requests.iter().partition(|(r, _)| !r.addresses.is_empty());
        for (request, _) in named.into_iter().chain(any) {
            if let Some((addresses, error)) = held.remove(&request.service) {
                let hold_for = self.holds.hold_for;
                outcomes.insert(
                    request.service.clone(),
                    Arc::new(ServiceOutcome::Held {
                        addresses,
                        error,
                        hold_for,
                    }),
                );
                continue;
            }
            let outcome = match self.allocator.assign(request) {
                Ok(assignment) => ServiceOutcome::Assigned(assignment),
                Err(error) => ServiceOutcome::Failed {
                    error,
                    kept: self.allocator.assignment(&request.service).cloned(),
                },
            };
            outcomes.insert(request.service.clone(), Arc::new(outcome));
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::parse_documents;

    const BASE: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p}
spec: {addresses: [192.0.2.0/30]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: c, namespace: shop}
spec: {type: LoadBalancer, ports: [{port: 80}], loadBalancerClass: someone-else}
---
apiVersion: v1
kind: Service
metadata: {name: d, namespace: shop}
spec: {type: ClusterIP}
";

    fn inventory(text: &str) -> Inventory {
        Inventory::build(&parse_documents(text, "t.yaml").unwrap().objects).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The tests' time zero (a hold's clock starts there).
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    #[test]
    fn taking_addresses_from_status_allocates_nothing() {
        let text = format!(
            "{BASE}---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: shop}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.2}}]}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: e, namespace: shop}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
status: {{loadBalancer: {{ingress: [{{ip: 198.51.100.1}}]}}}}
"
        );
        let mut reconciler =
            Reconciler::new(ClassFilter::default(), BTreeMap::new()).taking_addresses_from(AddressSource::Status);
        let outcomes = reconciler.apply(&inventory(&text), t0());
        let key = |name: &str| ServiceKey::new("shop", name);
        assert_eq!(
            outcomes[&key("a")].assignment().unwrap().addresses,
            vec![ip("192.0.2.2")]
        );
        assert_eq!(*outcomes[&key("b")], ServiceOutcome::Pending);
        assert!(matches!(
            &*outcomes[&key("e")],
            ServiceOutcome::Failed {
                error: AllocationError::OutsidePools { .. },
                kept: None
            }
        ));
        // The address moves from a to b in one reading: both are admitted.
        let moved = text.replacen(
            "spec: {type: LoadBalancer, ports: [{port: 80}]}\n---",
            "spec: {type: LoadBalancer, ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.2}]}}\n---",
            1,
        );
        let moved = moved.replace(
            "metadata: {name: a, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.2}]}}",
            "metadata: {name: a, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}",
        );
        let outcomes = reconciler.apply(&inventory(&moved), t0());
        assert_eq!(
            outcomes[&key("b")].assignment().unwrap().addresses,
            vec![ip("192.0.2.2")]
        );
        assert_eq!(
            outcomes[&key("a")].assignment().unwrap().addresses,
            vec![ip("192.0.2.1")]
        );
    }

    /// Every reload re-checks every service; one keeping its addresses is
    /// updated in place. (Released and taken again, each walked its range's
    /// first-free hint across every address in use after its own: a second
    /// apply of 5,000 services took seconds where the first took a fraction.)
    #[test]
    fn applying_again_costs_no_more_than_the_first_time() {
        let mut text = String::from(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: ['2001:db8::/112']}\n",
        );
        for i in 0..5_000 {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\n\
                 spec: {{type: LoadBalancer, ipFamilies: [IPv6], ports: [{{port: 80}}]}}\n"
            ));
        }
        let first_inventory = inventory(&text);
        text.push_str("---\napiVersion: v1\nkind: Service\nmetadata: {name: one-more}\nspec: {type: LoadBalancer, ipFamilies: [IPv6], ports: [{port: 80}]}\n");
        let second_inventory = inventory(&text);
        let mut reconciler = Reconciler::new(ClassFilter::default(), BTreeMap::new());
        let started = std::time::Instant::now();
        let first = reconciler.apply(&first_inventory, t0());
        let first_took = started.elapsed();
        let started = std::time::Instant::now();
        let second = reconciler.apply(&second_inventory, t0());
        let second_took = started.elapsed();
        assert_eq!((first.len(), second.len()), (5_000, 5_001));
        for (key, outcome) in &first {
            assert_eq!(second.get(key), Some(outcome), "{key} kept its address");
        }
        assert!(
            second_took <= first_took * 3 + std::time::Duration::from_millis(50),
            "the first apply took {first_took:?}, the second {second_took:?}"
        );
    }

    /// One random Service of a small cluster: whether it exists, the
    /// address in its status, the one it asks for, its sharing key.
    fn service_yaml(i: usize, (present, status, wants, shared, port): (bool, u8, u8, bool, u16)) -> String {
        if !present {
            return String::new();
        }
        // Addresses 192.0.2.0-3 are the pool's, .4 and .5 outside it.
        let address = |n: u8| (n > 0).then(|| format!("192.0.2.{}", n - 1));
        let mut annotations = Vec::new();
        if let Some(ip) = address(wants) {
            annotations.push(format!("metallb.io/loadBalancerIPs: {ip}"));
        }
        if shared {
            annotations.push("metallb.io/allow-shared-ip: k".to_owned());
        }
        let status = address(status)
            .map(|ip| format!("status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"))
            .unwrap_or_default();
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop, annotations: {{{}}}}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: {port}}}]}}\n{status}",
            annotations.join(", ")
        )
    }

    proptest::proptest! {
        /// Redoing only what changed gives, reading after reading, what
        /// redoing everything gives: same outcomes, same allocator.
        #[test]
        fn applying_only_what_changed_is_applying_everything(
            steps in proptest::collection::vec(
                (
                    proptest::collection::vec((proptest::bool::weighted(0.8), 0u8..7, 0u8..7, proptest::bool::ANY, 80u16..82), 6),
                    0u8..3,
                ),
                1..8,
            ),
            status_mode in proptest::bool::ANY,
        ) {
            let source = if status_mode { AddressSource::Status } else { AddressSource::Allocate };
            let mut incremental = Reconciler::new(ClassFilter::default(), BTreeMap::new()).taking_addresses_from(source);
            let mut full = incremental.clone();
            for (services, pool) in steps {
                let pool = ["192.0.2.0/30", "192.0.2.0/31", "192.0.2.0-192.0.2.4"][usize::from(pool)];
                let mut text = format!(
                    "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p}}\nspec: {{addresses: ['{pool}']}}\n"
                );
                for (i, shape) in services.into_iter().enumerate() {
                    text.push_str(&service_yaml(i, shape));
                }
                let inventory = inventory(&text);
                full.forget_last_apply();
                let want = full.apply(&inventory, t0());
                let got = incremental.apply(&inventory, t0());
                proptest::prop_assert_eq!(&got, &want);
                let held = |r: &Reconciler| r.allocator().assignments().map(|(k, a)| (k.clone(), a.clone())).collect::<Vec<_>>();
                proptest::prop_assert_eq!(held(&incremental), held(&full));
            }
        }
    }

    #[test]
    fn serves_only_our_load_balancers_and_releases_leavers() {
        let mut r = Reconciler::new(ClassFilter::default(), BTreeMap::new());
        let out = r.apply(&inventory(BASE), t0());
        assert_eq!(out.keys().map(ToString::to_string).collect::<Vec<_>>(), ["shop/b"]);
        assert_eq!(
            out[&ServiceKey::new("shop", "b")].assignment().unwrap().addresses,
            [ip("192.0.2.0")]
        );
        let changed = BASE.replace(
            "metadata: {name: b, namespace: shop}\nspec: {type: LoadBalancer",
            "metadata: {name: b, namespace: shop}\nspec: {type: NodePort",
        );
        assert!(r.apply(&inventory(&changed), t0()).is_empty());
        assert_eq!(r.allocator().assignments().count(), 0, "type change releases");
    }

    #[test]
    fn remembered_and_status_addresses_win_over_new_services() {
        let text = format!(
            "{BASE}---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: shop}}
spec: {{type: LoadBalancer}}
---
apiVersion: v1
kind: Service
metadata: {{name: z, namespace: shop}}
spec: {{type: LoadBalancer}}
status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.1}}]}}}}
"
        );
        let remembered = BTreeMap::from([(ServiceKey::new("shop", "b"), vec![ip("192.0.2.0")])]);
        let mut r = Reconciler::new(ClassFilter::default(), remembered);
        let out = r.apply(&inventory(&text), t0());
        let addr = |n: &str| out[&ServiceKey::new("shop", n)].assignment().unwrap().addresses[0];
        assert_eq!(
            (addr("a"), addr("b"), addr("z")),
            (ip("192.0.2.2"), ip("192.0.2.0"), ip("192.0.2.1"))
        );
    }

    /// A service that names its address gets it, though one that takes any
    /// sorts before it and the address is the pool's first.
    #[test]
    fn services_naming_their_addresses_are_served_first() {
        let text = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p}
spec: {addresses: [192.0.2.10/31]}
---
apiVersion: v1
kind: Service
metadata: {name: a-any, namespace: shop}
spec: {type: LoadBalancer}
---
apiVersion: v1
kind: Service
metadata: {name: b-named, namespace: shop, annotations: {metallb.io/loadBalancerIPs: 192.0.2.10}}
spec: {type: LoadBalancer}
";
        let mut r = Reconciler::new(ClassFilter::default(), BTreeMap::new());
        let out = r.apply(&inventory(text), t0());
        let addr = |n: &str| out[&ServiceKey::new("shop", n)].assignment().unwrap().addresses[0];
        assert_eq!((addr("b-named"), addr("a-any")), (ip("192.0.2.10"), ip("192.0.2.11")));
    }

    /// A pool deleted by mistake and applied again gives every service back
    /// its address (standalone: no status, the addresses the reconciler
    /// held); a service asking for something else meanwhile gets it at
    /// once; a hold that runs out lets the address go.
    #[test]
    fn addresses_outlive_their_pool_for_the_hold() {
        let with = |pools: &str, services: &str| {
            format!(
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: spare}}\n\
                 spec: {{addresses: [198.51.100.0/30]}}\n{pools}{services}"
            )
        };
        let lan = "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan}\n\
                   spec: {addresses: [192.0.2.0/30]}\n";
        let services = |b_asks: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: shop, annotations: \
                 {{metallb.io/address-pool: lan}}}}\nspec: {{type: LoadBalancer}}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: b, namespace: shop{b_asks}}}\n\
                 spec: {{type: LoadBalancer}}\n"
            )
        };
        let hour = Duration::from_secs(3600);
        let mut r = Reconciler::new(ClassFilter::default(), BTreeMap::new()).with_holds(Holds::new(hour));
        let key = |n: &str| ServiceKey::new("shop", n);
        let first = r.apply(
            &inventory(&with(lan, &services(", annotations: {metallb.io/address-pool: lan}"))),
            t0(),
        );
        assert_eq!(first[&key("a")].kept_addresses(), [ip("192.0.2.0")]);
        assert_eq!(first[&key("b")].kept_addresses(), [ip("192.0.2.1")]);
        // The pool goes: both keep their addresses, announced by nobody.
        let gone = inventory(&with("", &services(", annotations: {metallb.io/address-pool: lan}")));
        let held = r.apply(&gone, t0() + Duration::from_secs(1));
        for (name, address) in [("a", "192.0.2.0"), ("b", "192.0.2.1")] {
            let outcome = &held[&key(name)];
            assert!(matches!(**outcome, ServiceOutcome::Held { .. }), "{outcome}");
            assert_eq!(outcome.kept_addresses(), [ip(address)]);
            assert!(outcome.assignment().is_none(), "a held address is not announced");
        }
        assert_eq!(r.holds().next_end(), Some(t0() + Duration::from_secs(1) + hour));
        // b stops asking for the pool: it is served at once, from the spare.
        let b_moves = inventory(&with("", &services("")));
        let moved = r.apply(&b_moves, t0() + Duration::from_secs(2));
        assert_eq!(moved[&key("b")].assignment().unwrap().addresses, [ip("198.51.100.0")]);
        assert!(matches!(*moved[&key("a")], ServiceOutcome::Held { .. }));
        // The pool is back within the hour: a has its address again.
        let back = r.apply(&inventory(&with(lan, &services(""))), t0() + Duration::from_secs(60));
        assert_eq!(back[&key("a")].assignment().unwrap().addresses, [ip("192.0.2.0")]);
        assert_eq!(r.holds().next_end(), None);
        // Gone again, for longer than the hold: a fails, the address let go.
        r.apply(&b_moves, t0() + Duration::from_secs(120));
        let ended = r.apply(&b_moves, t0() + Duration::from_secs(120) + hour);
        assert!(
            matches!(*ended[&key("a")], ServiceOutcome::Failed { .. }),
            "{}",
            ended[&key("a")]
        );
        assert_eq!(r.holds().next_end(), None);
    }

    #[test]
    fn invalid_service_keeps_its_addresses_and_others_proceed() {
        let mut r = Reconciler::new(ClassFilter::default(), BTreeMap::new());
        r.apply(&inventory(BASE), t0());
        let broken = BASE.replace("ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c", "ports: [{port: 80}], externalTrafficPolicy: Sideways}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c");
        let out = r.apply(&inventory(&broken), t0());
        let outcome = &out[&ServiceKey::new("shop", "b")];
        assert!(
            matches!(**outcome, ServiceOutcome::Invalid { kept: Some(_), .. }),
            "{outcome}"
        );
        assert!(outcome.to_string().contains("Sideways") && outcome.to_string().contains("keeps 192.0.2.0"));
    }

    #[test]
    fn duplicate_services_reject_the_inventory() {
        let text = format!("{BASE}---\napiVersion: v1\nkind: Service\nmetadata: {{name: b, namespace: shop}}\n");
        let err = Inventory::build(&parse_documents(&text, "t.yaml").unwrap().objects).unwrap_err();
        assert!(
            err.to_string()
                .contains("Service shop/b: metadata.name \"b\" is defined twice (first at t.yaml:7)"),
            "{err}"
        );
    }

    #[test]
    fn l2_policy_sets_the_address_count() {
        let text = format!(
            "{BASE}---
apiVersion: meshlb.io/v1alpha1
kind: L2Policy
metadata: {{name: two}}
spec: {{addressesPerService: 2}}
"
        );
        let mut r = Reconciler::new(ClassFilter::default(), BTreeMap::new());
        let out = r.apply(&inventory(&text), t0());
        assert_eq!(
            out[&ServiceKey::new("shop", "b")].assignment().unwrap().addresses.len(),
            2
        );
    }
}
