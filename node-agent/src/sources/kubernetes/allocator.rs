//! The allocator: gives LoadBalancer Services their addresses and writes
//! MetalLB's contract, `status.loadBalancer.ingress` (ipMode VIP), the
//! `metallb.io/ip-allocated-from-pool` annotation and Events (IPAllocated;
//! AllocationFailed with the reason), releasing addresses when a Service
//! goes away or stops being a LoadBalancer. On a Service of a Deckhouse
//! MetalLoadBalancerClass it also writes Deckhouse's two conditions,
//! `AllPublicIPsAssigned` ("X of Y public IPs were assigned") and
//! `network.deckhouse.io/load-balancer-class` (the class), keeping the
//! Service's other conditions.
//!
//! One agent allocates at a time, the holder of a Lease
//! ([`super::lease`]); every agent runs a candidate. What makes a double
//! allocation impossible is not the Lease but one [`AddressClaim`] object
//! per address, named for the address, and this rule:
//!
//! 1. an allocator writes address A into Service S's status only after a
//!    claim on A naming S (by uid) exists, and writes with S's
//!    resourceVersion *as read before it claimed* as the precondition;
//! 2. a claim naming an existing Service is removed only after that
//!    Service's resourceVersion changed: by the allocator's own status
//!    write taking A away, or by a fence (a write of the
//!    [`FENCE_ANNOTATION`] with the resourceVersion at which its status
//!    was seen without A as the precondition). A Service deleted, or no
//!    longer a LoadBalancer, has a new resourceVersion (or none) already.
//!
//! So when S's status write succeeds, the claim it made is still there
//! (its removal would have changed S's resourceVersion and failed the
//! write), and the API server's uniqueness of names keeps any other
//! Service from holding a claim on A meanwhile: two allocators that both
//! believe they hold the Lease, or one cut off from the API server for
//! longer than the Lease, make each other's writes fail, never two
//! Services with one address. Services sharing an address by
//! `allow-shared-ip` are holders of one claim, updated under its own
//! resourceVersion.
//!
//! The allocator also writes each IPAddressPool's status (addresses
//! assigned and available per family), as MetalLB's controller does, from
//! the counts of what the Services' statuses hold.
//!
//! On start every address already in a Service's status (written by a
//! previous allocator, or by MetalLB's controller) is admitted before
//! anything new is allocated, and claimed, so moving from MetalLB changes
//! no Service's address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::events::{Event, EventType, Recorder};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::DynamicObject;
use kube::runtime::reflector::{self, Store};
use meshlb_config::allocator::PoolCounters;
use meshlb_config::crd::{AddressClaim, AddressClaimSpec, ClaimHolder, IpAddressPoolStatus, claim_name};
use meshlb_config::reconcile::Holds;
use meshlb_config::service::{
    ClassFilter, Condition, FamilyPolicy, IP_ALLOCATED_FROM_POOL, Service as ConfigService, ServiceKey,
    conditions_hold, deckhouse_conditions, with_conditions,
};
use meshlb_config::{Inventory, Reconciler, ServiceOutcome};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::running::RunningState;

/// The Lease naming the agent that allocates.
pub const LEASE_NAME: &str = "meshlb-allocator";

/// The annotation a fence writes (see the module documentation).
pub const FENCE_ANNOTATION: &str = "meshlb.io/claims-fenced";

/// How many Services are written at once.
const CONCURRENT_WRITES: usize = 16;

/// How the allocator runs.
#[derive(Debug, Clone)]
pub struct AllocatorOptions {
    /// The namespace of the Lease and the claims (MetalLB's namespace).
    pub namespace: String,
    /// This agent's name in the Lease.
    pub identity: String,
    /// The Lease's name ([`LEASE_NAME`]): agents that name different
    /// Leases allocate at the same time, kept apart by the claims alone.
    pub lease_name: String,
    /// The loadBalancerClasses served.
    pub classes: ClassFilter,
    /// How long a Lease holder that stopped renewing keeps it.
    pub lease_duration: Duration,
    /// How often the Lease is renewed (or tried), and failed writes retried.
    pub retry_every: Duration,
    /// How long a Service keeps addresses no pool covers any more (see
    /// [`Holds`]).
    pub hold_orphaned: Duration,
}

impl AllocatorOptions {
    /// Options with meshlb's defaults: a 5 s Lease renewed every second.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>, classes: ClassFilter) -> AllocatorOptions {
        AllocatorOptions {
            namespace: namespace.into(),
            identity: identity.into(),
            lease_name: LEASE_NAME.into(),
            classes,
            lease_duration: Duration::from_secs(5),
            retry_every: Duration::from_secs(1),
            hold_orphaned: meshlb_config::reconcile::DEFAULT_HOLD_ORPHANED,
        }
    }
}

/// A claim as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimView {
    /// The claim's resourceVersion (the precondition of changes to it).
    pub version: String,
    /// Its pool.
    pub pool: String,
    /// Its sharing key.
    pub sharing_key: Option<String>,
    /// Its holders.
    pub holders: Vec<ClaimHolder>,
}

impl ClaimView {
    fn held_by(&self, uid: &str) -> bool {
        self.holders.iter().any(|h| h.uid == uid)
    }
}

/// The claims by address, read from the claim objects.
pub fn claims_by_address(claims: &[Arc<AddressClaim>]) -> BTreeMap<IpAddr, ClaimView> {
    claims
        .iter()
        .filter_map(|c| {
            let address: IpAddr = c.spec.address.parse().ok()?;
            // A claim whose name is not its address's was not written by
            // meshlb: it guards nothing, and is left alone.
            (c.metadata.name.as_deref() == Some(claim_name(address).as_str())).then(|| {
                (
                    address,
                    ClaimView {
                        version: c.metadata.resource_version.clone().unwrap_or_default(),
                        pool: c.spec.pool.clone(),
                        sharing_key: c.spec.sharing_key.clone(),
                        holders: c.spec.holders.clone(),
                    },
                )
            })
        })
        .collect()
}

/// A Service to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWrite {
    /// The Service, as a claim names it (namespace, name, uid).
    pub holder: ClaimHolder,
    /// The resourceVersion the plan read: the status write's precondition.
    pub version: String,
    /// The addresses it gets (empty: its status is cleared).
    pub addresses: Vec<IpAddr>,
    /// Their pool.
    pub pool: String,
    /// Its `allow-shared-ip` key.
    pub sharing_key: Option<String>,
    /// Whether its pool annotation must be written.
    pub annotate: bool,
    /// The Event the write makes.
    pub event: WriteEvent,
    /// Deckhouse's conditions, for a Service of a MetalLoadBalancerClass.
    pub conditions: Option<ConditionsWrite>,
}

/// The conditions a write sets: `wanted` in place of those of their types
/// in `current` (see [`with_conditions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionsWrite {
    /// The Service's conditions as read.
    pub current: Vec<Condition>,
    /// The conditions it must have.
    pub wanted: Vec<Condition>,
}

/// Deckhouse's two conditions for a Service of a MetalLoadBalancerClass
/// that holds `assigned`: how many of the addresses it asks for it holds,
/// and its class. `None` for a Service of no class.
fn class_conditions(
    inventory: &Inventory,
    key: &ServiceKey,
    service: &ConfigService,
    assigned: &[IpAddr],
) -> Option<Vec<Condition>> {
    let class = service
        .load_balancer_class_of(&inventory.config.classes)
        .ok()
        .flatten()?;
    let wanted = inventory.request_for(key, service).map_or(1, |request| {
        let both = assigned.iter().any(IpAddr::is_ipv4) && assigned.iter().any(IpAddr::is_ipv6);
        let families = match request.family_policy {
            FamilyPolicy::SingleStack => 1,
            FamilyPolicy::RequireDualStack => 2,
            FamilyPolicy::PreferDualStack => 1 + usize::from(both),
        };
        usize::from(request.per_family) * families
    });
    Some(deckhouse_conditions(&class.name, assigned.len(), wanted).to_vec())
}

/// The Event on a Service its write makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteEvent {
    /// `IPAllocated`: it got its addresses.
    Allocated,
    /// `AllocationFailed`, and why: it gets none.
    Failed(String),
    /// `AddressHeld`, and why: it keeps addresses no pool covers.
    Held(String),
}

/// A holder to take off a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The address.
    pub address: IpAddr,
    /// The holder.
    pub holder: ClaimHolder,
    /// The fence to write first on the holder's Service: the
    /// resourceVersion at which it was seen not holding the address. None:
    /// the Service is not in the cache, and the API server is asked
    /// whether it still is a LoadBalancer with that uid.
    pub fence: Option<String>,
}

/// What one pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Services whose status (or claims) must change, in name order.
    pub writes: Vec<ServiceWrite>,
    /// Claims to let go of.
    pub releases: Vec<Release>,
    /// Services that get no address, and why (for AllocationFailed), or
    /// keep addresses no pool covers (AddressHeld).
    pub failures: BTreeMap<ServiceKey, WriteEvent>,
    /// What is held after the pass, for the next.
    pub holds: Holds,
}

/// Decides a pass (pure): addresses for every Service of `classes` in
/// `inventory`, honouring `claims` (see the module documentation), and
/// the addresses `holds` keeps at `now`.
pub fn plan(
    inventory: &Inventory,
    claims: &BTreeMap<IpAddr, ClaimView>,
    classes: &ClassFilter,
    holds: &Holds,
    now: std::time::Instant,
) -> Plan {
    let mut claimed_by: HashMap<&str, BTreeSet<IpAddr>> = HashMap::new();
    for (address, claim) in claims {
        for holder in &claim.holders {
            claimed_by.entry(holder.uid.as_str()).or_default().insert(*address);
        }
    }
    // What each Service may keep of its status: addresses no one claims
    // (written by MetalLB, or before a crash) or claimed for it (or for
    // Services it shares with); and what it was given but never got.
    let mut adjusted = inventory.clone();
    let mut remembered = BTreeMap::new();
    for (key, service) in adjusted.services.iter_mut() {
        let uid = service.metadata.uid.clone().unwrap_or_default();
        let sharing = service.sharing_key().map(str::to_owned);
        let keeps = |ingress: &meshlb_config::service::LoadBalancerIngress| {
            let Some(address) = ingress.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) else {
                return false;
            };
            claims
                .get(&address)
                .is_none_or(|claim| claim.held_by(&uid) || (sharing.is_some() && claim.sharing_key == sharing))
        };
        // Copied only when something is taken away.
        if !service.status.load_balancer.ingress.iter().all(keeps) {
            Arc::make_mut(service).status.load_balancer.ingress.retain(keeps);
        }
        if service.status.load_balancer.ingress.is_empty()
            && let Some(given) = claimed_by.get(uid.as_str())
        {
            remembered.insert(key.clone(), given.iter().copied().collect());
        }
    }
    let mut reconciler = Reconciler::new(classes.clone(), remembered).with_holds(holds.clone());
    let outcomes = reconciler.apply(&adjusted, now);

    let mut plan = Plan {
        writes: Vec::new(),
        releases: Vec::new(),
        failures: BTreeMap::new(),
        holds: reconciler.holds().clone(),
    };
    let mut seen = BTreeSet::new();
    for (key, service) in &inventory.services {
        let uid = service.metadata.uid.clone().unwrap_or_default();
        seen.insert(uid.clone());
        let version = service.metadata.resource_version.clone().unwrap_or_default();
        let holder = ClaimHolder {
            namespace: key.namespace.to_string(),
            name: key.name.to_string(),
            uid: uid.clone(),
        };
        let ours = claimed_by.get(uid.as_str()).cloned().unwrap_or_default();
        let status = service.assigned_addresses();
        let Some(outcome) = outcomes.get(key) else {
            // Not ours to serve (another class): it keeps no claim.
            for address in ours {
                plan.releases.push(Release {
                    address,
                    holder: holder.clone(),
                    fence: Some(version.clone()),
                });
            }
            continue;
        };
        let event = match **outcome {
            ServiceOutcome::Failed { .. } | ServiceOutcome::Invalid { .. } => WriteEvent::Failed(outcome.to_string()),
            ServiceOutcome::Held { .. } => WriteEvent::Held(outcome.to_string()),
            ServiceOutcome::Assigned(_) | ServiceOutcome::Pending => WriteEvent::Allocated,
        };
        if event != WriteEvent::Allocated {
            plan.failures.insert(key.clone(), event.clone());
        }
        let sharing_key = service.sharing_key().map(str::to_owned);
        let (addresses, pool) = match outcome.assignment() {
            Some(a) => (a.addresses.clone(), a.pool.to_string()),
            // Held: kept, under the pool they came from.
            None => (
                outcome.kept_addresses().to_vec(),
                service.allocated_from_pool().unwrap_or_default().to_owned(),
            ),
        };
        let unclaimed = addresses.iter().any(|a| !ours.contains(a));
        let annotate = outcome.assignment().is_some() && service.allocated_from_pool() != Some(pool.as_str());
        let conditions = class_conditions(inventory, key, service, &addresses).map(|wanted| ConditionsWrite {
            current: service.status.conditions.clone(),
            wanted,
        });
        let conditions_change = conditions
            .as_ref()
            .is_some_and(|c| !conditions_hold(&c.current, &c.wanted));
        if addresses != status || unclaimed || annotate || conditions_change {
            plan.writes.push(ServiceWrite {
                holder: holder.clone(),
                version: version.clone(),
                event: event.clone(),
                addresses: addresses.clone(),
                pool,
                sharing_key,
                annotate,
                conditions,
            });
        } else {
            // Claims it holds for addresses it no longer has.
            for address in ours.iter().filter(|a| !addresses.contains(a)) {
                plan.releases.push(Release {
                    address: *address,
                    holder: holder.clone(),
                    fence: Some(version.clone()),
                });
            }
        }
    }
    // Claims of Services the cache does not hold: deleted, no longer
    // LoadBalancers, or not seen yet.
    for (address, claim) in claims {
        for holder in claim.holders.iter().filter(|h| !seen.contains(&h.uid)) {
            plan.releases.push(Release {
                address: *address,
                holder: holder.clone(),
                fence: None,
            });
        }
    }
    plan
}

/// Why one write did not happen (it is retried at the next pass).
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// Another writer got there first (a claim exists, a resourceVersion
    /// moved): the cache is behind.
    #[error("{0}: changed meanwhile")]
    Conflict(String),
    /// The API server refused or could not be reached.
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> WriteError {
    let what = what.into();
    move |source| match &source {
        kube::Error::Api(status) if status.code == 409 || status.code == 404 => WriteError::Conflict(what),
        _ => WriteError::Api { what, source },
    }
}

/// The writer side of the allocator.
struct Writer {
    services: Api<Service>,
    claims: Api<AddressClaim>,
    pools: Api<DynamicObject>,
    recorder: Recorder,
}

/// A pool's counters as MetalLB's IPAddressPool status gives them.
pub fn pool_status(counters: &PoolCounters) -> IpAddressPoolStatus {
    let count = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
    IpAddressPoolStatus {
        assigned_ipv4: count(counters.v4.in_use),
        assigned_ipv6: count(counters.v6.in_use),
        available_ipv4: count(counters.v4.available),
        available_ipv6: count(counters.v6.available),
    }
}

fn service_reference(key: &ServiceKey, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some(key.namespace.to_string()),
        name: Some(key.name.to_string()),
        uid: Some(uid.to_owned()),
        ..ObjectReference::default()
    }
}

impl Writer {
    fn services_in(&self, namespace: &str) -> Api<Service> {
        Api::namespaced(self.services.clone().into_client(), namespace)
    }

    async fn event(&self, key: &ServiceKey, uid: &str, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Allocate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &service_reference(key, uid)).await {
            tracing::warn!(service = %key, "cannot record event {reason}: {e}");
        }
    }

    /// The Warning `event` says (AllocationFailed, AddressHeld).
    async fn warn(&self, key: &ServiceKey, uid: &str, event: &WriteEvent) {
        match event {
            WriteEvent::Allocated => {}
            WriteEvent::Failed(note) => {
                self.event(key, uid, EventType::Warning, "AllocationFailed", note.clone())
                    .await
            }
            WriteEvent::Held(note) => {
                self.event(key, uid, EventType::Warning, "AddressHeld", note.clone())
                    .await
            }
        }
    }

    /// Adds `holder` to the claim on `address`, creating it if need be.
    async fn claim(
        &self,
        address: IpAddr,
        write: &ServiceWrite,
        current: Option<&ClaimView>,
    ) -> Result<(), WriteError> {
        let name = claim_name(address);
        match current {
            None => {
                let claim = AddressClaim::new(
                    &name,
                    AddressClaimSpec {
                        address: address.to_string(),
                        pool: write.pool.clone(),
                        sharing_key: write.sharing_key.clone(),
                        holders: vec![write.holder.clone()],
                    },
                );
                self.claims
                    .create(&PostParams::default(), &claim)
                    .await
                    .map_err(api_error(format!("claim {name}")))?;
            }
            // Held by others: joined only by a Service sharing it by key.
            Some(view) if view.sharing_key.is_none() || view.sharing_key != write.sharing_key => {
                return Err(WriteError::Conflict(format!("claim {name} (held by another Service)")));
            }
            Some(view) => {
                let mut holders = view.holders.clone();
                holders.push(write.holder.clone());
                let patch = json!({"metadata": {"resourceVersion": view.version}, "spec": {"holders": holders}});
                self.claims
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(api_error(format!("claim {name}")))?;
            }
        }
        Ok(())
    }

    /// Takes `holder` off the claim on `address` (deleting it when no one
    /// is left), under the claim's resourceVersion.
    async fn unclaim(&self, address: IpAddr, holder: &ClaimHolder, view: &ClaimView) -> Result<(), WriteError> {
        let name = claim_name(address);
        let rest: Vec<&ClaimHolder> = view.holders.iter().filter(|h| h.uid != holder.uid).collect();
        if rest.is_empty() {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(view.version.clone()),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            self.claims
                .delete(&name, &params)
                .await
                .map_err(api_error(format!("claim {name}")))?;
        } else {
            let patch = json!({"metadata": {"resourceVersion": view.version}, "spec": {"holders": rest}});
            self.claims
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_error(format!("claim {name}")))?;
        }
        Ok(())
    }

    /// Claims, then writes one Service's status (and annotation, and
    /// event), then lets go of the claims it no longer needs.
    async fn write(
        &self,
        write: &ServiceWrite,
        claims: &BTreeMap<IpAddr, ClaimView>,
    ) -> Result<(String, Vec<IpAddr>), WriteError> {
        let uid = &write.holder.uid;
        let key = write.holder.service();
        for address in &write.addresses {
            let current = claims.get(address);
            if current.is_none_or(|c| !c.held_by(uid)) {
                self.claim(*address, write, current).await?;
            }
        }
        let services = self.services_in(&key.namespace);
        let ingress: Vec<_> = write
            .addresses
            .iter()
            .map(|a| json!({"ip": a.to_string(), "ipMode": "VIP"}))
            .collect();
        // The precondition: the Service as the plan read it, before the
        // claims above (see the module documentation). The pool annotation
        // rides along: the API server keeps a Service's metadata from a
        // status write (it resets only the spec); if one ever does not, the
        // annotation is written on its own.
        let mut metadata = json!({"resourceVersion": write.version});
        if write.annotate {
            metadata["annotations"] = json!({IP_ALLOCATED_FROM_POOL: write.pool});
        }
        let mut status = json!({
            "metadata": metadata,
            "status": {"loadBalancer": {"ingress": ingress}},
        });
        if let Some(conditions) = &write.conditions {
            let now = k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second);
            if let Some(all) = with_conditions(
                &conditions.current,
                &conditions.wanted,
                &now.map_or_else(|_| String::new(), |t| t.to_string()),
            ) {
                status["status"]["conditions"] = json!(all);
            }
        }
        let written = services
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(api_error(format!("Service {}", key)))?;
        let annotated = written
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(IP_ALLOCATED_FROM_POOL))
            .is_some_and(|pool| *pool == write.pool);
        if write.annotate && !annotated {
            let annotation = json!({"metadata": {"annotations": {IP_ALLOCATED_FROM_POOL: write.pool}}});
            if let Err(e) = services
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(annotation))
                .await
            {
                tracing::warn!(service = %key, "cannot write {IP_ALLOCATED_FROM_POOL}: {e}");
            }
        }
        match &write.event {
            WriteEvent::Allocated => {
                let list: Vec<String> = write.addresses.iter().map(ToString::to_string).collect();
                self.event(
                    &key,
                    uid,
                    EventType::Normal,
                    "IPAllocated",
                    format!("Assigned IP [{}] from pool {}", list.join(", "), write.pool),
                )
                .await;
            }
            other => self.warn(&key, uid, other).await,
        }
        // Claims on addresses it no longer has: its status write above
        // moved its resourceVersion, so no fence is needed.
        for (address, view) in claims
            .iter()
            .filter(|(a, c)| c.held_by(uid) && !write.addresses.contains(a))
        {
            self.unclaim(*address, &write.holder, view).await?;
        }
        Ok((write.version.clone(), write.addresses.clone()))
    }

    /// Writes the status of every pool whose counts changed since `written`
    /// (MetalLB's controller writes it too). Whether one must be retried.
    async fn pool_statuses(
        &self,
        pools: &BTreeMap<String, PoolCounters>,
        written: &mut HashMap<String, IpAddressPoolStatus>,
    ) -> bool {
        let mut retry = false;
        for (name, counters) in pools {
            let status = pool_status(counters);
            if written.get(name) == Some(&status) {
                continue;
            }
            let patch = json!({"status": status});
            match self
                .pools
                .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    written.insert(name.clone(), status);
                }
                // Deleted meanwhile: the next configuration drops it.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::debug!("status of IPAddressPool {name} retried: {e}");
                    retry = true;
                }
            }
        }
        written.retain(|name, _| pools.contains_key(name));
        retry
    }

    /// Takes a holder off a claim, fencing its Service first if it exists.
    async fn release(&self, release: &Release, claims: &BTreeMap<IpAddr, ClaimView>) -> Result<(), WriteError> {
        let Some(view) = claims.get(&release.address) else {
            return Ok(());
        };
        if let Some(version) = &release.fence {
            let key = release.holder.service();
            let fence = json!({"metadata": {
                "resourceVersion": version,
                "annotations": {FENCE_ANNOTATION: claim_name(release.address)},
            }});
            self.services_in(&key.namespace)
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(fence))
                .await
                .map_err(api_error(format!("Service {key}")))?;
        } else {
            // Not in the cache: make sure the Service is gone, or is no
            // longer the one the claim names, or no longer a LoadBalancer.
            let services = self.services_in(&release.holder.namespace);
            let current = services.get_opt(&release.holder.name).await.map_err(api_error(format!(
                "Service {}/{}",
                release.holder.namespace, release.holder.name
            )))?;
            let still_holder = current.is_some_and(|s| {
                s.metadata.uid.as_deref() == Some(release.holder.uid.as_str()) && super::convert::is_load_balancer(&s)
            });
            if still_holder {
                return Err(WriteError::Conflict(format!(
                    "Service {}/{} not cached yet",
                    release.holder.namespace, release.holder.name
                )));
            }
        }
        self.unclaim(release.address, &release.holder, view).await
    }
}

/// What the allocator remembers between passes.
struct Memory {
    /// Services written whose new version the cache may not show yet.
    written: Written,
    /// The last AllocationFailed or AddressHeld published per Service.
    failures: HashMap<ServiceKey, WriteEvent>,
    /// The addresses held though no pool covers them (see [`Holds`]).
    holds: Holds,
    /// The pool statuses written (forgotten when the Lease changes hands:
    /// another allocator may have written since).
    pool_statuses: HashMap<String, IpAddressPoolStatus>,
}

/// Services this allocator wrote: the resourceVersion each was written
/// under, and the addresses it was given.
#[derive(Default)]
struct Written(HashMap<ServiceKey, (String, Vec<IpAddr>)>);

impl Written {
    /// The inventory with this allocator's own writes the cache does not
    /// show yet (a Service still at the version it was written under);
    /// forgets the writes the cache shows.
    fn overlay(&mut self, inventory: &Inventory) -> Inventory {
        let mut adjusted = inventory.clone();
        self.0.retain(|key, (version, addresses)| {
            let Some(service) = adjusted.services.get_mut(key) else {
                return false;
            };
            if service.metadata.resource_version.as_deref() != Some(version.as_str()) {
                return false;
            }
            Arc::make_mut(service).status.load_balancer.ingress = addresses
                .iter()
                .map(|a| meshlb_config::service::LoadBalancerIngress {
                    ip: Some(a.to_string()),
                })
                .collect();
            true
        });
        adjusted
    }
}

/// Runs the allocator candidate until `stop` turns true: takes the Lease
/// when it can, and while it holds it, allocates after every change of the
/// running inventory or of the claims.
pub async fn run(
    client: kube::Client,
    options: AllocatorOptions,
    mut running: watch::Receiver<Arc<RunningState>>,
    mut pools: watch::Receiver<Arc<BTreeMap<String, PoolCounters>>>,
    mut stop: watch::Receiver<bool>,
) {
    let changed = Arc::new(Notify::new());
    let claims_api: Api<AddressClaim> = Api::namespaced(client.clone(), &options.namespace);
    let (claims, writer) = reflector::store();
    let reflector = super::reflect(
        claims_api.clone(),
        writer,
        changed.clone(),
        super::KindHealth::alone("AddressClaim"),
    );
    let _reflector = super::AbortOnDrop(vec![reflector]);
    if claims.wait_until_ready().await.is_err() {
        return;
    }
    let writer = Writer {
        services: Api::all(client.clone()),
        claims: claims_api,
        pools: Api::namespaced_with(
            client.clone(),
            &options.namespace,
            &meshlb_config::kinds::IpAddressPool::api_resource(),
        ),
        recorder: Recorder::new(client.clone(), "meshlb-allocator", options.identity.clone()),
    };
    let mut lease = super::lease::LeaderLease::new(
        client,
        &options.namespace,
        &options.lease_name,
        &options.identity,
        options.lease_duration,
    );
    let mut leader = false;
    let mut dirty = true;
    let mut memory = Memory {
        written: Written::default(),
        failures: HashMap::new(),
        holds: Holds::new(options.hold_orphaned),
        pool_statuses: HashMap::new(),
    };
    let mut tick = tokio::time::interval(options.retry_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                let was = leader;
                leader = lease.try_acquire().await.unwrap_or_else(|e| {
                    tracing::warn!("allocator lease: {e}");
                    false
                });
                if leader != was {
                    tracing::info!(identity = %options.identity, leader, "allocator lease");
                    dirty |= leader;
                    memory.pool_statuses.clear();
                }
            }
            r = running.changed() => if r.is_err() { break } else { dirty = true },
            // IPAddressPool status follows the counters.
            r = pools.changed() => if r.is_err() { break } else { dirty = true },
            () = changed.notified() => dirty = true,
            // A hold of addresses no pool covers ends.
            () = sleep_until(memory.holds.next_end()), if leader => dirty = true,
        }
        if !(leader && dirty) || *stop.borrow() {
            continue;
        }
        dirty = pass(&writer, &options, &running, &pools, &claims, &mut memory).await;
    }
    if leader && let Err(e) = lease.release().await {
        tracing::warn!("cannot give up the allocator lease: {e}");
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// One pass: plan, write, release. Whether something must be retried.
async fn pass(
    writer: &Writer,
    options: &AllocatorOptions,
    running: &watch::Receiver<Arc<RunningState>>,
    pools: &watch::Receiver<Arc<BTreeMap<String, PoolCounters>>>,
    claims: &Store<AddressClaim>,
    memory: &mut Memory,
) -> bool {
    let state = Arc::clone(&running.borrow());
    if state.generation == 0 {
        return false;
    }
    let pass_started = std::time::Instant::now();
    // Copying and planning over every Service runs off the control thread.
    let mut written = std::mem::take(&mut memory.written);
    let claims_listed = claims.state();
    let classes = options.classes.clone();
    let inventory = Arc::clone(&state);
    let holds = memory.holds.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let adjusted = written.overlay(&inventory.inventory);
        let claims_now = claims_by_address(&claims_listed);
        let plan = plan(&adjusted, &claims_now, &classes, &holds, pass_started);
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "allocation planned");
        (plan, claims_now, written)
    })
    .await;
    let Ok((plan, claims_now, written)) = planned else {
        return true;
    };
    memory.written = written;
    memory.holds = plan.holds.clone();
    let started = std::time::Instant::now();
    let mut retry = false;
    let claims_ref = &claims_now;
    let results: Vec<_> = futures_util::stream::iter(plan.writes.iter().cloned())
        .map(|write| async move {
            let result = writer.write(&write, claims_ref).await;
            (write, result)
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    for (write, result) in results {
        match result {
            Ok(done) => {
                if !write.addresses.is_empty() {
                    metrics::histogram!(crate::metrics::ALLOCATION_SECONDS)
                        .record(pass_started.elapsed().as_secs_f64());
                }
                memory.written.0.insert(write.holder.service(), done);
                if write.event == WriteEvent::Allocated {
                    memory.failures.remove(&write.holder.service());
                } else {
                    memory.failures.insert(write.holder.service(), write.event.clone());
                }
            }
            Err(e) => {
                tracing::debug!("allocation retried: {e}");
                retry = true;
            }
        }
    }
    // Failures of Services whose status did not change (nothing to clear).
    for (key, event) in &plan.failures {
        if memory.failures.get(key) != Some(event)
            && let Some(service) = state.inventory.services.get(key)
        {
            let uid = service.metadata.uid.clone().unwrap_or_default();
            writer.warn(key, &uid, event).await;
            memory.failures.insert(key.clone(), event.clone());
        }
    }
    memory
        .failures
        .retain(|key, _| plan.failures.contains_key(key) || state.inventory.services.contains_key(key));
    for release in &plan.releases {
        if let Err(e) = writer.release(release, &claims_now).await {
            tracing::debug!("release retried: {e}");
            retry = true;
        }
    }
    let pools = Arc::clone(&pools.borrow());
    retry |= writer.pool_statuses(&pools, &mut memory.pool_statuses).await;
    tracing::debug!(
        writes = plan.writes.len(),
        releases = plan.releases.len(),
        ms = started.elapsed().as_millis() as u64,
        retry,
        "allocation pass"
    );
    retry
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn inventory(yaml: &str) -> Inventory {
        Inventory::build(&meshlb_config::parse_documents(yaml, "t.yaml").unwrap().objects).unwrap()
    }

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n\
                        spec: {addresses: [192.0.2.0/30]}\n";

    /// A Service; one with a status address also has the pool annotation
    /// an allocator writes with it.
    fn service(name: &str, uid: &str, status: Option<&str>) -> String {
        let (annotations, status) = match status {
            Some(ip) => (
                format!(", annotations: {{{IP_ALLOCATED_FROM_POOL}: p}}"),
                format!("status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns, uid: {uid}, \
             resourceVersion: '1'{annotations}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n{status}"
        )
    }

    fn holder(name: &str, uid: &str) -> ClaimHolder {
        ClaimHolder {
            namespace: "ns".into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn claim(holders: &[ClaimHolder]) -> ClaimView {
        ClaimView {
            version: "9".into(),
            pool: "p".into(),
            sharing_key: None,
            holders: holders.to_vec(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A pass with no holds running, at one moment.
    fn plan_now(inventory: &Inventory, claims: &BTreeMap<IpAddr, ClaimView>) -> Plan {
        plan(
            inventory,
            claims,
            &ClassFilter::default(),
            &Holds::default(),
            std::time::Instant::now(),
        )
    }

    /// A Service whose pool is gone keeps its address (and its claim) for
    /// the hold's length, told as AddressHeld; when the pool is back it is
    /// served with it; after the hold it is let go.
    #[test]
    fn an_address_whose_pool_is_gone_is_held_then_let_go() {
        let t0 = std::time::Instant::now();
        let hour = std::time::Duration::from_secs(3600);
        let other = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: q}\n\
                     spec: {addresses: [198.51.100.0/30]}\n";
        let text = format!("{other}{}", service("a", "ua", Some("192.0.2.2")));
        let claims = BTreeMap::from([(ip("192.0.2.2"), claim(&[holder("a", "ua")]))]);
        let classes = ClassFilter::default();
        let first = plan(&inventory(&text), &claims, &classes, &Holds::new(hour), t0);
        assert!(first.writes.is_empty() && first.releases.is_empty(), "{first:?}");
        let WriteEvent::Held(note) = &first.failures[&ServiceKey::new("ns", "a")] else {
            panic!("{:?}", first.failures)
        };
        assert!(note.contains("192.0.2.2") && note.contains("1h0m0s"), "{note}");
        // Within the hour, the pool comes back: the address stays, no write.
        let back = format!("{POOL}---\n{text}");
        let later = t0 + hour / 2;
        let returned = plan(&inventory(&back), &claims, &classes, &first.holds, later);
        assert!(
            returned.writes.is_empty() && returned.failures.is_empty(),
            "{returned:?}"
        );
        // The pool stays away for the hour: the Service gets another.
        let second = plan(&inventory(&text), &claims, &classes, &first.holds, later);
        assert!(second.writes.is_empty(), "still held: {second:?}");
        let after = plan(&inventory(&text), &claims, &classes, &second.holds, t0 + hour);
        assert_eq!(after.writes.len(), 1, "{after:?}");
        assert_eq!(after.writes[0].addresses, vec![ip("198.51.100.0")]);
        assert_eq!(after.writes[0].event, WriteEvent::Allocated);
        // Without holds (MetalLB's behaviour) it moves at once.
        let at_once = plan(
            &inventory(&text),
            &claims,
            &classes,
            &Holds::new(std::time::Duration::ZERO),
            t0,
        );
        assert_eq!(at_once.writes[0].addresses, vec![ip("198.51.100.0")]);
    }

    #[test]
    fn status_written_elsewhere_is_kept_and_claimed() {
        // MetalLB wrote .2 for a; b is new.
        let text = format!(
            "{POOL}{}{}",
            service("a", "ua", Some("192.0.2.2")),
            service("b", "ub", None)
        );
        let plan = plan_now(&inventory(&text), &BTreeMap::new());
        let a = plan.writes.iter().find(|w| w.holder.name == "a").unwrap();
        assert_eq!(a.addresses, vec![ip("192.0.2.2")], "kept, and claimed");
        let b = plan.writes.iter().find(|w| w.holder.name == "b").unwrap();
        assert_eq!(b.addresses, vec![ip("192.0.2.0")]);
        assert!(plan.releases.is_empty());
    }

    #[test]
    fn an_address_claimed_for_another_service_is_never_kept_or_given() {
        // b's status says .0, but .0 is claimed for a (whose status write
        // has not landed yet): b must not keep it, and a gets it.
        let text = format!(
            "{POOL}{}{}",
            service("a", "ua", None),
            service("b", "ub", Some("192.0.2.0"))
        );
        let claims = BTreeMap::from([(ip("192.0.2.0"), claim(&[holder("a", "ua")]))]);
        let plan = plan_now(&inventory(&text), &claims);
        let a = plan.writes.iter().find(|w| w.holder.name == "a").unwrap();
        assert_eq!(a.addresses, vec![ip("192.0.2.0")]);
        let b = plan.writes.iter().find(|w| w.holder.name == "b").unwrap();
        assert_eq!(b.addresses, vec![ip("192.0.2.1")]);
    }

    #[test]
    fn claims_of_services_gone_or_moved_are_released() {
        // a holds .2 in status, with a leftover claim on .1; x is gone.
        let text = format!("{POOL}{}", service("a", "ua", Some("192.0.2.2")));
        let claims = BTreeMap::from([
            (ip("192.0.2.1"), claim(&[holder("a", "ua")])),
            (ip("192.0.2.2"), claim(&[holder("a", "ua")])),
            (ip("192.0.2.3"), claim(&[holder("x", "ux")])),
        ]);
        let mut plan = plan_now(&inventory(&text), &claims);
        plan.releases.sort_by_key(|r| r.address);
        assert!(plan.writes.is_empty(), "{:?}", plan.writes);
        assert_eq!(plan.releases.len(), 2, "{:?}", plan.releases);
        assert_eq!(plan.releases[0].address, ip("192.0.2.1"));
        assert_eq!(plan.releases[0].fence.as_deref(), Some("1"));
        assert_eq!(plan.releases[1].address, ip("192.0.2.3"));
        assert!(plan.releases[1].fence.is_none());
    }

    #[test]
    fn an_exhausted_pool_is_a_failure_with_its_reason() {
        let mut text = POOL.to_owned();
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            text.push_str(&service(name, &format!("u{i}"), None));
        }
        let plan = plan_now(&inventory(&text), &BTreeMap::new());
        assert_eq!(plan.writes.iter().filter(|w| !w.addresses.is_empty()).count(), 4);
        let failure = &plan.failures[&ServiceKey::new("ns", "e")];
        assert!(
            matches!(failure, WriteEvent::Failed(note) if note.contains("no addresses")),
            "{failure:?}"
        );
    }
}
