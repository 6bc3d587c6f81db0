//! IP address management: which service gets which addresses from which
//! pool.
//!
//! The rules are MetalLB's (`internal/allocator/allocator.go`), made
//! deterministic and restart-safe:
//! - Pools are tried in order: those whose `serviceAllocation` matches the
//!   service by priority (1 first, 0 last) then name, then auto-assign pools
//!   without `serviceAllocation` by name. A pool named by annotation is the
//!   only one tried, auto-assign or not.
//! - Within a pool, ranges are walked as written and the first address that
//!   is free (or shareable) is taken; `avoidBuggyIPs` skips IPv4 `.0` and
//!   `.255`.
//! - Explicit requests are honoured or refused with the reason.
//! - Sharing needs the same `allow-shared-ip` key, no overlap of
//!   (protocol, port), and the same backends (both Cluster, or both Local
//!   with the same pod selector).
//! - Dual stack as Kubernetes defines it: SingleStack, PreferDualStack (both
//!   families when the pool can give both, else the primary one) and
//!   RequireDualStack (both or nothing), from one pool.
//! - Restart safety: [`allocate_all`] and [`Allocator::set_pools`] re-admit
//!   every existing assignment that is still valid before allocating
//!   anything new, so an address in use is never handed to another service,
//!   and shrinking a pool moves only the services whose addresses left it.
//!
//! Everything is ordered (B-trees, sorted inputs), so every node given the
//! same inputs computes the same result.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::addresses::{Family, confuses_buggy_firmware, ip_to_number, number_to_ip};
use crate::config::Pool;
use crate::service::{AllocationRequest, Backend, FamilyPolicy, PortKey, ServiceKey};

/// The addresses a service holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assignment {
    /// The pool they come from.
    pub pool: Arc<str>,
    /// The addresses, primary family first.
    pub addresses: Vec<IpAddr>,
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        write!(f, "{} from pool {}", addresses.join(","), self.pool)
    }
}

/// Why a service got no (or not the requested) addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The annotation names a pool that does not exist.
    #[error("pool {pool:?} does not exist (pools: {known})")]
    UnknownPool {
        /// The requested pool.
        pool: String,
        /// Existing pools.
        known: String,
    },
    /// The pool belongs to another MetalLoadBalancerClass than the
    /// service, or to one when the service has none (or the reverse).
    #[error("{}", class_mismatch(pool, pool_class.as_deref(), service_class.as_deref()))]
    OtherClass {
        /// The pool.
        pool: String,
        /// The class the pool belongs to.
        pool_class: Option<String>,
        /// The service's class.
        service_class: Option<String>,
    },
    /// The pool's serviceAllocation does not admit the service.
    #[error("pool {pool} only serves the namespaces and services its serviceAllocation selects")]
    PoolRefusesService {
        /// The pool.
        pool: String,
    },
    /// A requested address is in no pool.
    #[error("{address} is in no IPAddressPool")]
    OutsidePools {
        /// The address.
        address: IpAddr,
    },
    /// A requested address is in a pool other than the requested one.
    #[error("{address} belongs to pool {actual}, not to the requested pool {requested}")]
    WrongPool {
        /// The address.
        address: IpAddr,
        /// Its pool.
        actual: String,
        /// The pool the annotation asks for.
        requested: String,
    },
    /// Requested addresses come from several pools.
    #[error("the requested addresses come from different pools ({first} and {second}); one service uses one pool")]
    SeveralPools {
        /// One pool.
        first: String,
        /// Another.
        second: String,
    },
    /// The pool avoids this address.
    #[error("{address} ends in .0 or .255 and pool {pool} sets avoidBuggyIPs")]
    AvoidedAddress {
        /// The address.
        address: IpAddr,
        /// The pool.
        pool: String,
    },
    /// The address is held by a service it cannot be shared with.
    #[error("{address} is in use by {holder}: {reason}")]
    InUse {
        /// The address.
        address: IpAddr,
        /// One service holding it.
        holder: ServiceKey,
        /// Why sharing is not possible.
        reason: String,
    },
    /// The requested addresses do not fit the family policy or count.
    #[error("the requested addresses do not fit the service: {0}")]
    Shape(String),
    /// No pool had free addresses.
    #[error("no free addresses: {0}")]
    Exhausted(String),
}

/// Users of one address.
#[derive(Debug, Clone)]
struct AddressUse {
    sharing_key: Option<String>,
    backend: Backend,
    users: Users,
}

/// The services using one address, with their ports, in key order: almost
/// always one, so a short sorted list rather than a map (a map's first
/// node is larger than everything else an address costs).
#[derive(Debug, Clone, Default)]
struct Users(Vec<(ServiceKey, Vec<PortKey>)>);

impl Users {
    fn insert(&mut self, service: ServiceKey, ports: Vec<PortKey>) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&service)) {
            Ok(at) => self.0[at].1 = ports,
            Err(at) => {
                // Room for one more, not the four a first push makes.
                self.0.reserve_exact(1);
                self.0.insert(at, (service, ports));
            }
        }
    }

    fn remove(&mut self, service: &ServiceKey) {
        self.0.retain(|(k, _)| k != service);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.0.iter().map(|(k, _)| k)
    }

    fn iter(&self) -> impl Iterator<Item = (&ServiceKey, &Vec<PortKey>)> {
        self.0.iter().map(|(k, p)| (k, p))
    }
}

#[derive(Debug, Clone)]
struct Held {
    /// Shared with the copies of the entry (a request is ten times the
    /// size of the rest, and a map holding one per service half-full
    /// nodes of them).
    request: Arc<AllocationRequest>,
    assignment: Assignment,
}

/// Per-family address counts of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyCounters {
    /// Usable addresses (without avoided ones).
    pub total: u128,
    /// Addresses assigned to at least one service.
    pub in_use: u128,
    /// `total - in_use`.
    pub available: u128,
}

/// Address counts of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// IPv4.
    pub v4: FamilyCounters,
    /// IPv6.
    pub v6: FamilyCounters,
}

/// The allocator: pools and who holds what.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    pools: BTreeMap<String, Pool>,
    addresses: BTreeMap<IpAddr, AddressUse>,
    services: BTreeMap<ServiceKey, Held>,
    /// Search hints per pool range, keyed by (family, first address).
    hints: BTreeMap<(Family, u128), RangeHint>,
}

/// Speeds up the search for a free address in one range.
#[derive(Debug, Clone)]
struct RangeHint {
    /// The range's last address.
    last: u128,
    /// Whether the pool avoids buggy addresses.
    avoid: bool,
    /// Every usable address of the range below `first_free` is in use (so
    /// `first_free > last` means the range is full).
    first_free: u128,
}

/// Allocates for a whole set of services at once, as on start-up: first
/// every service that already holds addresses (from `status`) re-admits
/// them, then the others get new ones. Inputs are sorted by service, so the
/// result does not depend on their order.
pub fn allocate_all(
    pools: impl IntoIterator<Item = Pool>,
    inputs: impl IntoIterator<Item = (AllocationRequest, Vec<IpAddr>)>,
) -> (Allocator, BTreeMap<ServiceKey, Result<Assignment, AllocationError>>) {
    let mut allocator = Allocator::new(pools);
    let mut inputs: Vec<(AllocationRequest, Vec<IpAddr>)> = inputs.into_iter().collect();
    inputs.sort_by(|a, b| a.0.service.cmp(&b.0.service));
    let mut results = BTreeMap::new();
    let mut pending = Vec::new();
    for (request, existing) in inputs {
        if !existing.is_empty()
            && let Ok(assignment) = allocator.admit(&request, &existing)
        {
            results.insert(request.service.clone(), Ok(assignment));
            continue;
        }
        pending.push(request);
    }
    for request in pending {
        let result = allocator.assign(&request);
        results.insert(request.service.clone(), result);
    }
    (allocator, results)
}

impl Allocator {
    /// An allocator over these pools, holding nothing.
    pub fn new(pools: impl IntoIterator<Item = Pool>) -> Allocator {
        let mut allocator = Allocator {
            pools: pools.into_iter().map(|p| (p.name.clone(), p)).collect(),
            addresses: BTreeMap::new(),
            services: BTreeMap::new(),
            hints: BTreeMap::new(),
        };
        allocator.index_ranges();
        allocator
    }

    /// Rebuilds the range hints after the pools changed (with no address
    /// held).
    fn index_ranges(&mut self) {
        self.hints = self
            .pools
            .values()
            .flat_map(|p| p.ranges.iter().map(move |r| (p.avoid_buggy_ips, r)))
            .map(|(avoid, r)| {
                let (first, last) = r.bounds();
                (
                    (r.family(), first),
                    RangeHint {
                        last,
                        avoid,
                        first_free: first,
                    },
                )
            })
            .collect();
        let keys: Vec<(Family, u128)> = self.hints.keys().copied().collect();
        for key in keys {
            self.advance_hint(key);
        }
    }

    /// The hint key of the range holding `address`.
    fn hint_key(&self, address: IpAddr) -> Option<(Family, u128)> {
        let (family, n) = ip_to_number(address);
        let (key, hint) = self.hints.range(..=(family, n)).next_back()?;
        (key.0 == family && n <= hint.last).then_some(*key)
    }

    /// Moves a range's `first_free` past addresses in use or avoided.
    fn advance_hint(&mut self, key: (Family, u128)) {
        let Some(hint) = self.hints.get(&key) else { return };
        let (last, avoid, mut n) = (hint.last, hint.avoid, hint.first_free);
        while n <= last {
            let ip = number_to_ip(key.0, n);
            if !(self.addresses.contains_key(&ip) || avoid && confuses_buggy_firmware(ip)) {
                break;
            }
            n += 1;
        }
        if let Some(hint) = self.hints.get_mut(&key) {
            hint.first_free = n;
        }
    }

    /// The pools.
    pub fn pools(&self) -> &BTreeMap<String, Pool> {
        &self.pools
    }

    /// What a service holds.
    pub fn assignment(&self, service: &ServiceKey) -> Option<&Assignment> {
        self.services.get(service).map(|h| &h.assignment)
    }

    /// The request a service's current assignment was made for.
    pub fn request(&self, service: &ServiceKey) -> Option<&AllocationRequest> {
        self.services.get(service).map(|h| h.request.as_ref())
    }

    /// Every assignment, by service.
    pub fn assignments(&self) -> impl Iterator<Item = (&ServiceKey, &Assignment)> {
        self.services.iter().map(|(k, h)| (k, &h.assignment))
    }

    /// The services holding `address`.
    pub fn holders(&self, address: IpAddr) -> Vec<&ServiceKey> {
        self.addresses
            .get(&address)
            .map(|u| u.users.keys().collect())
            .unwrap_or_default()
    }

    /// Releases whatever the service holds (on delete, on a type change
    /// away from LoadBalancer, or when it leaves our class).
    pub fn release(&mut self, service: &ServiceKey) -> Option<Assignment> {
        let held = self.services.remove(service)?;
        for address in &held.assignment.addresses {
            if let Some(entry) = self.addresses.get_mut(address) {
                entry.users.remove(service);
                if entry.users.is_empty() {
                    self.addresses.remove(address);
                    if let Some(key) = self.hint_key(*address)
                        && let Some(hint) = self.hints.get_mut(&key)
                    {
                        hint.first_free = hint.first_free.min(ip_to_number(*address).1);
                    }
                }
            }
        }
        Some(held.assignment)
    }

    /// Re-admits addresses a service already holds (from `status`), if they
    /// still fit the pools and the request; never others (the request
    /// changed so that they no longer fit: an error, as when they are
    /// admitted for the first time). On error nothing is held.
    pub fn admit(&mut self, request: &AllocationRequest, existing: &[IpAddr]) -> Result<Assignment, AllocationError> {
        if let Some(held) = self.services.get(&request.service) {
            if held.assignment.addresses == existing {
                let current = held.assignment.clone();
                if let Err(error) = self.check(request, &current) {
                    self.release(&request.service);
                    return Err(error);
                }
                self.commit(request, current.clone());
                return Ok(current);
            }
            self.release(&request.service);
        }
        let pool = self.pool_of_all(existing)?;
        let assignment = Assignment {
            pool: pool.into(),
            addresses: existing.to_vec(),
        };
        self.check(request, &assignment)?;
        self.commit(request, assignment.clone());
        Ok(assignment)
    }

    /// Gives the service addresses. Idempotent: a service whose current
    /// addresses still fit its request keeps them. If the request changed
    /// and cannot be met, the service keeps what it had and the error says
    /// why.
    pub fn assign(&mut self, request: &AllocationRequest) -> Result<Assignment, AllocationError> {
        if let Some(held) = self.services.get(&request.service) {
            let current = held.assignment.clone();
            if self.check(request, &current).is_ok() {
                self.commit(request, current.clone());
                return Ok(current);
            }
        }
        let previous = self.services.get(&request.service).cloned();
        self.release(&request.service);
        match self.allocate(request) {
            Ok(assignment) => {
                self.commit(request, assignment.clone());
                Ok(assignment)
            }
            Err(e) => {
                if let Some(held) = previous {
                    self.commit(&held.request, held.assignment);
                }
                Err(e)
            }
        }
    }

    /// Replaces the pools. Every assignment still valid is re-admitted
    /// first (in service order); then services whose addresses left their
    /// pool are allocated anew. Returns the outcome for every service whose
    /// addresses changed or were lost.
    pub fn set_pools(
        &mut self,
        pools: impl IntoIterator<Item = Pool>,
    ) -> BTreeMap<ServiceKey, Result<Assignment, AllocationError>> {
        self.replace_pools(pools)
            .into_iter()
            .map(|(request, _)| (request.service.clone(), self.assign(&request)))
            .collect()
    }

    /// Replaces the pools, re-admitting every assignment still valid (in
    /// service order); the services whose addresses are no longer
    /// admitted are let go, and returned with what they held, for the
    /// caller to decide (allocate anew, or hold).
    pub fn replace_pools(
        &mut self,
        pools: impl IntoIterator<Item = Pool>,
    ) -> Vec<(Arc<AllocationRequest>, Assignment)> {
        let held: Vec<Held> = std::mem::take(&mut self.services).into_values().collect();
        self.addresses.clear();
        self.pools = pools.into_iter().map(|p| (p.name.clone(), p)).collect();
        self.index_ranges();
        let mut displaced = Vec::new();
        for h in held {
            if self.admit(&h.request, &h.assignment.addresses).is_err() {
                displaced.push((h.request, h.assignment));
            }
        }
        displaced
    }

    /// Address counts per pool.
    pub fn counters(&self) -> BTreeMap<String, PoolCounters> {
        let mut out = BTreeMap::new();
        for pool in self.pools.values() {
            let mut counters = PoolCounters::default();
            for range in &pool.ranges {
                let c = match range.family() {
                    Family::V4 => &mut counters.v4,
                    Family::V6 => &mut counters.v6,
                };
                let avoided = if pool.avoid_buggy_ips { range.buggy_count() } else { 0 };
                c.total = c.total.saturating_add(range.len() - avoided);
                c.in_use += self.addresses.range(range.first()..=range.last()).count() as u128;
            }
            for c in [&mut counters.v4, &mut counters.v6] {
                c.available = c.total - c.in_use;
            }
            out.insert(pool.name.clone(), counters);
        }
        out
    }

    fn commit(&mut self, request: &AllocationRequest, assignment: Assignment) {
        // A service keeping what it holds (every reload re-checks every
        // service) is updated in place: releasing and taking its addresses
        // again would walk each range's first-free hint across every
        // address in use after it, time quadratic in the services.
        let keeps = self
            .services
            .get(&request.service)
            .is_some_and(|held| held.assignment.addresses == assignment.addresses);
        if !keeps {
            self.release(&request.service);
        }
        for address in &assignment.addresses {
            let entry = self.addresses.entry(*address).or_insert_with(|| AddressUse {
                sharing_key: request.sharing_key.clone(),
                backend: request.backend.clone(),
                users: Users::default(),
            });
            if keeps && entry.users.keys().all(|user| *user == request.service) {
                // As if released and taken anew: its sole user's request says.
                entry.sharing_key = request.sharing_key.clone();
                entry.backend = request.backend.clone();
            }
            entry.users.insert(request.service.clone(), request.ports.clone());
            if let Some(key) = self.hint_key(*address)
                && self
                    .hints
                    .get(&key)
                    .is_some_and(|h| h.first_free == ip_to_number(*address).1)
            {
                self.advance_hint(key);
            }
        }
        match self.services.get_mut(&request.service) {
            Some(held) => {
                if *held.request != *request {
                    held.request = Arc::new(request.clone());
                }
                held.assignment = assignment;
            }
            None => {
                self.services.insert(
                    request.service.clone(),
                    Held {
                        request: Arc::new(request.clone()),
                        assignment,
                    },
                );
            }
        }
    }

    /// The single pool holding every address.
    fn pool_of_all(&self, addresses: &[IpAddr]) -> Result<String, AllocationError> {
        let mut found: Option<&str> = None;
        for address in addresses {
            let pool = self
                .pools
                .values()
                .find(|p| p.contains(*address))
                .ok_or(AllocationError::OutsidePools { address: *address })?;
            match found {
                Some(first) if first != pool.name => {
                    return Err(AllocationError::SeveralPools {
                        first: first.into(),
                        second: pool.name.clone(),
                    });
                }
                _ => found = Some(&pool.name),
            }
        }
        found
            .map(String::from)
            .ok_or_else(|| AllocationError::Shape("no addresses".into()))
    }

    /// Why the service cannot share `address`, if it cannot.
    fn sharing_conflict(&self, request: &AllocationRequest, address: IpAddr) -> Option<AllocationError> {
        let entry = self.addresses.get(&address)?;
        let others: Vec<(&ServiceKey, &Vec<PortKey>)> =
            entry.users.iter().filter(|(k, _)| **k != request.service).collect();
        let (holder, _) = others.first()?;
        let conflict = |reason: String| {
            Some(AllocationError::InUse {
                address,
                holder: (*holder).clone(),
                reason,
            })
        };
        match (&request.sharing_key, &entry.sharing_key) {
            (None, _) | (_, None) => return conflict("sharing needs the allow-shared-ip annotation on both".into()),
            (Some(a), Some(b)) if a != b => return conflict(format!("sharing keys differ ({a:?} and {b:?})")),
            _ => {}
        }
        if request.backend != entry.backend {
            return conflict("externalTrafficPolicy or pod selector differ".into());
        }
        for (other, ports) in &others {
            if let Some(port) = ports.iter().find(|p| request.ports.contains(p)) {
                return Some(AllocationError::InUse {
                    address,
                    holder: (*other).clone(),
                    reason: format!("both use {}/{}", port.protocol, port.port),
                });
            }
        }
        None
    }

    fn pool_named(&self, name: &str) -> Result<&Pool, AllocationError> {
        self.pools.get(name).ok_or_else(|| AllocationError::UnknownPool {
            pool: name.into(),
            known: self.pools.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Whether an assignment (current or proposed) fits the request.
    fn check(&self, request: &AllocationRequest, assignment: &Assignment) -> Result<(), AllocationError> {
        let pool = self.pool_named(&assignment.pool)?;
        if let Some(requested) = &request.pool
            && *requested != pool.name
        {
            self.pool_named(requested)?;
            let address = assignment
                .addresses
                .first()
                .copied()
                .ok_or(AllocationError::Shape("empty".into()))?;
            return Err(AllocationError::WrongPool {
                address,
                actual: pool.name.clone(),
                requested: requested.clone(),
            });
        }
        if pool.class != request.class {
            return Err(AllocationError::OtherClass {
                pool: pool.name.clone(),
                pool_class: pool.class.clone(),
                service_class: request.class.clone(),
            });
        }
        if !pool.admits(&request.service.namespace, &request.namespace_labels, &request.labels) {
            return Err(AllocationError::PoolRefusesService {
                pool: pool.name.clone(),
            });
        }
        // Every address asked for by name, the rest (when it names fewer
        // than it takes) from the same pool.
        if let Some(missing) = request.addresses.iter().find(|a| !assignment.addresses.contains(a)) {
            return Err(AllocationError::Shape(format!(
                "the requested addresses changed ({missing} is not held)"
            )));
        }
        check_shape(request, &assignment.addresses)?;
        for (i, address) in assignment.addresses.iter().enumerate() {
            if !pool.contains(*address) {
                return Err(AllocationError::WrongPool {
                    address: *address,
                    actual: self
                        .pools
                        .values()
                        .find(|p| p.contains(*address))
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                    requested: pool.name.clone(),
                });
            }
            if assignment.addresses[..i].contains(address) {
                return Err(AllocationError::Shape(format!("{address} appears twice")));
            }
            if pool.avoid_buggy_ips && confuses_buggy_firmware(*address) {
                return Err(AllocationError::AvoidedAddress {
                    address: *address,
                    pool: pool.name.clone(),
                });
            }
            if let Some(conflict) = self.sharing_conflict(request, *address) {
                return Err(conflict);
            }
        }
        Ok(())
    }

    /// Finds new addresses for a service that holds none.
    fn allocate(&self, request: &AllocationRequest) -> Result<Assignment, AllocationError> {
        if !request.addresses.is_empty() {
            let pool = self.pool_named(&self.pool_of_all(&request.addresses)?)?;
            let mut addresses = request.addresses.clone();
            // Fewer named than taken: the rest of their families from the
            // same pool.
            let families: std::collections::BTreeSet<Family> = addresses.iter().map(|a| Family::of(*a)).collect();
            for family in families {
                while addresses.iter().filter(|a| Family::of(**a) == family).count() < usize::from(request.per_family) {
                    let more = self.first_usable(request, pool, family, &addresses).ok_or_else(|| {
                        AllocationError::Exhausted(format!(
                            "pool {} has no {family} address left beside the {} asked for by name",
                            pool.name,
                            request.addresses.len()
                        ))
                    })?;
                    addresses.push(more);
                }
            }
            let assignment = Assignment {
                pool: pool.name.as_str().into(),
                addresses,
            };
            self.check(request, &assignment)?;
            return Ok(assignment);
        }
        let candidates: Vec<&Pool> = match (&request.class, &request.pool) {
            // A class's Services take from its pool alone.
            (Some(class), _) => vec![self.pool_named(class)?],
            (None, Some(name)) => {
                let pool = self.pool_named(name)?;
                if let Some(class) = &pool.class {
                    return Err(AllocationError::OtherClass {
                        pool: pool.name.clone(),
                        pool_class: Some(class.clone()),
                        service_class: None,
                    });
                }
                if !pool.admits(&request.service.namespace, &request.namespace_labels, &request.labels) {
                    return Err(AllocationError::PoolRefusesService {
                        pool: pool.name.clone(),
                    });
                }
                vec![pool]
            }
            (None, None) => {
                let mut preferred: Vec<&Pool> = self
                    .pools
                    .values()
                    .filter(|p| p.auto_assign && p.allocation.is_some())
                    .filter(|p| p.admits(&request.service.namespace, &request.namespace_labels, &request.labels))
                    .collect();
                preferred.sort_by_key(|p| (p.allocation.as_ref().map(|a| a.order()), p.name.clone()));
                preferred.extend(self.pools.values().filter(|p| p.auto_assign && p.allocation.is_none()));
                preferred
            }
        };
        let mut tried = Vec::new();
        for pool in &candidates {
            for families in family_options(request, pool) {
                if let Some(addresses) = self.take_from_pool(request, pool, &families) {
                    return Ok(Assignment {
                        pool: pool.name.as_str().into(),
                        addresses,
                    });
                }
            }
            tried.push(pool.name.clone());
        }
        let wanted = match request.family_policy {
            FamilyPolicy::RequireDualStack => "IPv4 and IPv6".to_string(),
            _ => request
                .families
                .first()
                .map(ToString::to_string)
                .unwrap_or_else(|| "any family".into()),
        };
        Err(AllocationError::Exhausted(if tried.is_empty() {
            "no pool is available to this service (none auto-assigns, or serviceAllocation excludes it)".into()
        } else {
            format!(
                "{} {wanted} address(es) per family wanted; pools tried: {}",
                request.per_family,
                tried.join(", ")
            )
        }))
    }

    /// `per_family` addresses of each family from `pool`, or nothing.
    fn take_from_pool(&self, request: &AllocationRequest, pool: &Pool, families: &[Family]) -> Option<Vec<IpAddr>> {
        let mut taken = Vec::new();
        for family in families {
            for _ in 0..request.per_family {
                taken.push(self.first_usable(request, pool, *family, &taken)?);
            }
        }
        Some(taken)
    }

    /// The first address of `family` in `pool`, in range order, that is free
    /// or shareable and not already in `taken`.
    fn first_usable(
        &self,
        request: &AllocationRequest,
        pool: &Pool,
        family: Family,
        taken: &[IpAddr],
    ) -> Option<IpAddr> {
        let clean = |n: u128| {
            let ip = number_to_ip(family, n);
            !(taken.contains(&ip) || pool.avoid_buggy_ips && confuses_buggy_firmware(ip))
        };
        // First clean address in [from, to]; at most a few steps, since only
        // avoided and already-taken addresses are skipped.
        let first_clean = |from: u128, to: u128| -> Option<IpAddr> {
            let mut n = from;
            while n <= to {
                if clean(n) {
                    return Some(number_to_ip(family, n));
                }
                n = n.checked_add(1)?;
            }
            None
        };
        for range in pool.ranges.iter().filter(|r| r.family() == family) {
            let (low, high) = range.bounds();
            // Without a sharing key only free addresses qualify, and none
            // lies below the range's hint.
            let start = match (&request.sharing_key, self.hints.get(&(family, low))) {
                (None, Some(hint)) => hint.first_free,
                _ => low,
            };
            if start > high {
                continue;
            }
            let mut next = Some(start);
            for (address, entry) in self.addresses.range(number_to_ip(family, start)..=range.last()) {
                let (_, n) = ip_to_number(*address);
                if let Some(from) = next.filter(|from| *from < n)
                    && let Some(found) = first_clean(from, n - 1)
                {
                    return Some(found);
                }
                // Cheap test first: only a matching sharing key can share.
                let may_share = request.sharing_key.is_some() && entry.sharing_key == request.sharing_key;
                if may_share && clean(n) && self.sharing_conflict(request, *address).is_none() {
                    return Some(*address);
                }
                next = n.checked_add(1);
            }
            if let Some(found) = next.and_then(|from| first_clean(from, high)) {
                return Some(found);
            }
        }
        None
    }
}

/// Family sets to try in a pool, in preference order.
fn family_options(request: &AllocationRequest, pool: &Pool) -> Vec<Vec<Family>> {
    let primary = request.families.first().copied();
    match request.family_policy {
        FamilyPolicy::SingleStack => match primary {
            Some(f) => vec![vec![f]],
            None => {
                let mut order: Vec<Family> = Vec::new();
                for r in &pool.ranges {
                    if !order.contains(&r.family()) {
                        order.push(r.family());
                    }
                }
                order.into_iter().map(|f| vec![f]).collect()
            }
        },
        FamilyPolicy::RequireDualStack => {
            let p = primary.unwrap_or(Family::V4);
            vec![vec![p, p.other()]]
        }
        FamilyPolicy::PreferDualStack => {
            let p = primary.unwrap_or(Family::V4);
            vec![vec![p, p.other()], vec![p]]
        }
    }
}

/// Whether the addresses have the families and counts the request needs.
/// The message of [`AllocationError::OtherClass`].
fn class_mismatch(pool: &str, pool_class: Option<&str>, service_class: Option<&str>) -> String {
    match (pool_class, service_class) {
        (Some(theirs), Some(ours)) => format!(
            "pool {pool} is MetalLoadBalancerClass {theirs}'s; the service is of class {ours}, whose pool is {ours}"
        ),
        (Some(theirs), None) => {
            format!("pool {pool} is MetalLoadBalancerClass {theirs}'s, and serves that class's Services alone")
        }
        (None, Some(ours)) => format!(
            "pool {pool} is an IPAddressPool; the service is of MetalLoadBalancerClass {ours}, whose pool is {ours}"
        ),
        (None, None) => format!("pool {pool} serves this service"),
    }
}

fn check_shape(request: &AllocationRequest, addresses: &[IpAddr]) -> Result<(), AllocationError> {
    let count = |f: Family| addresses.iter().filter(|a| Family::of(**a) == f).count();
    let (v4, v6) = (count(Family::V4), count(Family::V6));
    let per = usize::from(request.per_family);
    for (family, n) in [(Family::V4, v4), (Family::V6, v6)] {
        if n != 0 && n != per {
            return Err(AllocationError::Shape(format!(
                "{n} {family} address(es) where the service takes {per} per family"
            )));
        }
    }
    let present: Vec<Family> = [Family::V4, Family::V6].into_iter().filter(|f| count(*f) > 0).collect();
    match request.family_policy {
        FamilyPolicy::SingleStack => {
            if present.len() != 1 {
                return Err(AllocationError::Shape(
                    "a SingleStack service takes addresses of one family".into(),
                ));
            }
            if let Some(f) = request.families.first()
                && present[0] != *f
            {
                return Err(AllocationError::Shape(format!("the service's ipFamilies ask for {f}")));
            }
        }
        FamilyPolicy::RequireDualStack => {
            if present.len() != 2 {
                return Err(AllocationError::Shape(
                    "a RequireDualStack service needs IPv4 and IPv6".into(),
                ));
            }
        }
        FamilyPolicy::PreferDualStack => {
            let primary = request.families.first().copied().unwrap_or(Family::V4);
            if !present.contains(&primary) {
                return Err(AllocationError::Shape(format!(
                    "the primary family {primary} is missing"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::StringMap;
    use crate::service::{Backend, Protocol};

    fn pool(name: &str, ranges: &[&str]) -> Pool {
        Pool {
            name: name.into(),
            labels: StringMap::new(),
            ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            allocation: None,
            class: None,
        }
    }

    fn req(name: &str) -> AllocationRequest {
        AllocationRequest {
            service: ServiceKey::new("default", name),
            labels: StringMap::new(),
            namespace_labels: Default::default(),
            pool: None,
            addresses: vec![],
            family_policy: FamilyPolicy::SingleStack,
            families: vec![],
            per_family: 1,
            sharing_key: None,
            class: None,
            ports: vec![PortKey {
                protocol: Protocol::Tcp,
                port: 80,
            }],
            backend: Backend::Cluster,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_free_in_order_and_release() {
        let mut a = Allocator::new([pool("p", &["192.0.2.0/30", "192.0.2.100-192.0.2.101"])]);
        let got: Vec<IpAddr> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| a.assign(&req(n)).unwrap().addresses[0])
            .collect();
        assert_eq!(
            got,
            ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.100"].map(ip)
        );
        assert!(matches!(a.assign(&req("f")).unwrap().addresses[0], x if x == ip("192.0.2.101")));
        assert!(matches!(a.assign(&req("g")), Err(AllocationError::Exhausted(_))));
        a.release(&ServiceKey::new("default", "b"));
        assert_eq!(a.assign(&req("g")).unwrap().addresses, [ip("192.0.2.1")]);
        let c = a.counters()["p"].clone();
        assert_eq!((c.v4.total, c.v4.in_use, c.v4.available), (6, 6, 0));
    }

    #[test]
    fn avoid_buggy_ips_skips_dot_zero_and_255() {
        let mut p = pool("p", &["192.0.2.255-192.0.3.1"]);
        p.avoid_buggy_ips = true;
        let mut a = Allocator::new([p]);
        assert_eq!(a.assign(&req("a")).unwrap().addresses, [ip("192.0.3.1")]);
        let mut explicit = req("b");
        explicit.addresses = vec![ip("192.0.3.0")];
        assert!(matches!(
            a.assign(&explicit),
            Err(AllocationError::AvoidedAddress { .. })
        ));
        assert_eq!(a.counters()["p"].v4.total, 1);
    }

    #[test]
    fn sharing_rules() {
        let mut a = Allocator::new([pool("p", &["192.0.2.0/29"])]);
        let mut web = req("web");
        web.sharing_key = Some("k".into());
        let mut dns = req("dns");
        dns.sharing_key = Some("k".into());
        dns.ports = vec![PortKey {
            protocol: Protocol::Udp,
            port: 53,
        }];
        let first = a.assign(&web).unwrap();
        assert_eq!(a.assign(&dns).unwrap(), first, "same key, disjoint ports: shared");
        let mut clash = req("clash");
        clash.sharing_key = Some("k".into());
        clash.addresses = first.addresses.clone();
        let err = a.assign(&clash).unwrap_err();
        assert!(err.to_string().contains("both use TCP/80"), "{err}");
        let mut other_key = req("other");
        other_key.sharing_key = Some("j".into());
        other_key.ports = vec![PortKey {
            protocol: Protocol::Tcp,
            port: 8080,
        }];
        other_key.addresses = first.addresses.clone();
        assert!(
            a.assign(&other_key)
                .unwrap_err()
                .to_string()
                .contains("sharing keys differ")
        );
        let mut local = req("local");
        local.sharing_key = Some("k".into());
        local.ports = vec![PortKey {
            protocol: Protocol::Tcp,
            port: 443,
        }];
        local.backend = Backend::Local("app=x".into());
        assert_ne!(a.assign(&local).unwrap(), first, "Local and Cluster do not share");
        assert_eq!(a.holders(first.addresses[0]).len(), 2);
    }

    #[test]
    fn dual_stack_policies() {
        let mut a = Allocator::new([
            pool("v4only", &["192.0.2.0/30"]),
            pool("z-dual", &["198.51.100.0/30", "2001:db8::/126"]),
        ]);
        let mut require = req("require");
        require.family_policy = FamilyPolicy::RequireDualStack;
        require.families = vec![Family::V6, Family::V4];
        let got = a.assign(&require).unwrap();
        assert_eq!(&*got.pool, "z-dual");
        assert_eq!(got.addresses, [ip("2001:db8::"), ip("198.51.100.0")]);
        let mut prefer = req("prefer");
        prefer.family_policy = FamilyPolicy::PreferDualStack;
        prefer.families = vec![Family::V4, Family::V6];
        let got = a.assign(&prefer).unwrap();
        assert_eq!(
            (&*got.pool, got.addresses.len()),
            ("v4only", 1),
            "pool order wins; v4only gives IPv4 only"
        );
        let mut single6 = req("single6");
        single6.families = vec![Family::V6];
        assert_eq!(a.assign(&single6).unwrap().addresses, [ip("2001:db8::1")]);
        let mut bad = req("bad");
        bad.family_policy = FamilyPolicy::RequireDualStack;
        bad.families = vec![Family::V4, Family::V6];
        bad.addresses = vec![ip("198.51.100.3")];
        assert!(matches!(a.assign(&bad), Err(AllocationError::Shape(_))));
    }

    #[test]
    fn several_addresses_per_family() {
        let mut a = Allocator::new([pool("p", &["192.0.2.0/29"])]);
        let mut r = req("multi");
        r.per_family = 3;
        assert_eq!(
            a.assign(&r).unwrap().addresses,
            ["192.0.2.0", "192.0.2.1", "192.0.2.2"].map(ip)
        );
        assert_eq!(a.assign(&req("one")).unwrap().addresses, [ip("192.0.2.3")]);
    }

    #[test]
    fn explicit_requests_are_honoured_or_refused_with_reason() {
        let mut a = Allocator::new([pool("a", &["192.0.2.0/29"]), pool("b", &["198.51.100.0/29"])]);
        let mut r = req("x");
        r.addresses = vec![ip("192.0.2.5")];
        assert_eq!(a.assign(&r).unwrap().addresses, [ip("192.0.2.5")]);
        let mut taken = req("y");
        taken.addresses = vec![ip("192.0.2.5")];
        let err = a.assign(&taken).unwrap_err().to_string();
        assert!(err.contains("in use by default/x"), "{err}");
        let mut outside = req("z");
        outside.addresses = vec![ip("203.0.113.1")];
        assert!(
            a.assign(&outside)
                .unwrap_err()
                .to_string()
                .contains("in no IPAddressPool")
        );
        let mut wrong = req("w");
        wrong.addresses = vec![ip("198.51.100.1")];
        wrong.pool = Some("a".into());
        assert!(matches!(a.assign(&wrong), Err(AllocationError::WrongPool { .. })));
        let mut two_pools = req("v");
        two_pools.family_policy = FamilyPolicy::PreferDualStack;
        two_pools.addresses = vec![ip("192.0.2.1"), ip("198.51.100.1")];
        assert!(matches!(
            a.assign(&two_pools),
            Err(AllocationError::SeveralPools { .. })
        ));
        let mut unknown = req("u");
        unknown.pool = Some("nope".into());
        assert!(
            a.assign(&unknown)
                .unwrap_err()
                .to_string()
                .contains("pool \"nope\" does not exist (pools: a, b)")
        );
    }

    #[test]
    fn changed_request_that_cannot_be_met_keeps_old_addresses() {
        let mut a = Allocator::new([pool("p", &["192.0.2.0/30"])]);
        a.assign(&req("holder")).unwrap();
        let mine = a.assign(&req("mine")).unwrap();
        let mut wants_taken = req("mine");
        wants_taken.addresses = vec![ip("192.0.2.0")];
        assert!(a.assign(&wants_taken).is_err());
        assert_eq!(a.assignment(&ServiceKey::new("default", "mine")), Some(&mine));
    }

    #[test]
    fn pool_priority_and_auto_assign() {
        use crate::config::ServiceAllocation;
        let mut low = pool("low", &["192.0.2.0/30"]);
        low.allocation = Some(ServiceAllocation {
            priority: 0,
            namespaces: vec!["default".into()],
            namespace_selectors: vec![],
            service_selectors: vec![],
        });
        let mut high = pool("high", &["198.51.100.0/30"]);
        high.allocation = Some(ServiceAllocation {
            priority: 1,
            ..low.allocation.clone().unwrap()
        });
        let mut manual = pool("a-manual", &["203.0.113.0/30"]);
        manual.auto_assign = false;
        let plain = pool("b-plain", &["203.0.113.8/30"]);
        let mut a = Allocator::new([low, high, manual, plain]);
        assert_eq!(a.assign(&req("x")).unwrap().pool.as_ref(), "high");
        let mut elsewhere = req("y");
        elsewhere.service.namespace = "other".into();
        assert_eq!(a.assign(&elsewhere).unwrap().pool.as_ref(), "b-plain");
        let mut named = req("z");
        named.pool = Some("a-manual".into());
        assert_eq!(a.assign(&named).unwrap().pool.as_ref(), "a-manual");
        let mut refused = req("w");
        refused.service.namespace = "other".into();
        refused.pool = Some("high".into());
        assert!(matches!(
            a.assign(&refused),
            Err(AllocationError::PoolRefusesService { .. })
        ));
    }

    #[test]
    fn restart_readmits_before_allocating() {
        // MetalLB #1774: a pending service must not take an address held by
        // a service processed later.
        let pools = [pool("p", &["192.0.2.0/30"])];
        let inputs = vec![(req("a-new"), vec![]), (req("z-old"), vec![ip("192.0.2.0")])];
        let (a, results) = allocate_all(pools.clone(), inputs);
        assert_eq!(
            results[&ServiceKey::new("default", "z-old")]
                .as_ref()
                .unwrap()
                .addresses,
            [ip("192.0.2.0")]
        );
        assert_eq!(
            results[&ServiceKey::new("default", "a-new")]
                .as_ref()
                .unwrap()
                .addresses,
            [ip("192.0.2.1")]
        );
        assert_eq!(a.assignments().count(), 2);
    }

    #[test]
    fn shrinking_moves_only_services_outside() {
        let mut a = Allocator::new([pool("p", &["192.0.2.0/29"])]);
        for n in ["a", "b", "c"] {
            a.assign(&req(n)).unwrap();
        }
        let moved = a.set_pools([pool("p", &["192.0.2.0-192.0.2.1", "192.0.2.4/30"])]);
        assert_eq!(moved.len(), 1);
        assert_eq!(
            moved[&ServiceKey::new("default", "c")].as_ref().unwrap().addresses,
            [ip("192.0.2.4")]
        );
        assert_eq!(
            a.assignment(&ServiceKey::new("default", "a")).unwrap().addresses,
            [ip("192.0.2.0")]
        );
    }
}
