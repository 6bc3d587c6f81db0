//! The validated configuration: pools, advertisements, peers, profiles and
//! meshlb policies, cross-checked as a whole.
//!
//! [`Config::build`] rejects at least everything MetalLB rejects
//! (`internal/config/config.go`, `validation.go` and the CRD schemas), and a
//! few things MetalLB lets through to fail later. Every problem is reported
//! at once, each naming the object, the field, the value and what is
//! allowed. [`ConfigStore`] keeps the last configuration that passed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use meshlb_wire::bgp::{Community, LargeCommunity};

use crate::addresses::{ADDRESS_FORMS, AddressRange, Family};
use crate::duration::parse_duration;
use crate::error::{Error, Invalid, Rejected, SourceLocation};
use crate::kinds::{
    BfdProfileSpec, BgpAdvertisementSpec, BgpPeerSpec, CommunitySpec, IpAddressPoolSpec, L2AdvertisementSpec,
    L2PolicySpec, SecretReference, WeightedNodeSelector,
};
use crate::meta::{
    Kind, LabelSelector, ObjectMeta, ObjectRef, StringMap, any_matches, valid_dns_subdomain, validate_selectors,
};
use crate::object::{Located, Object, Resource};
use crate::secret::{BASIC_AUTH, Md5Key, PASSWORD_KEY, Secret};

/// A validated IPAddressPool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// Labels (matched by `ipAddressPoolSelectors`).
    pub labels: StringMap,
    /// Address ranges in the order written; allocation walks them in order.
    pub ranges: Vec<AddressRange>,
    /// Whether services get addresses without asking for this pool.
    pub auto_assign: bool,
    /// Skip IPv4 `.0` and `.255`.
    pub avoid_buggy_ips: bool,
    /// Preferred services, when set.
    pub allocation: Option<ServiceAllocation>,
}

impl Pool {
    /// Whether the pool holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether the pool has addresses of `family`.
    pub fn has_family(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    /// Whether the pool's `serviceAllocation` lets this service in (always
    /// true without one).
    pub fn admits(&self, namespace: &str, namespace_labels: &StringMap, service_labels: &StringMap) -> bool {
        self.allocation
            .as_ref()
            .is_none_or(|a| a.matches(namespace, namespace_labels, service_labels))
    }
}

/// A validated `serviceAllocation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAllocation {
    /// 1 is the highest priority; 0 the lowest.
    pub priority: i32,
    /// Allowed namespaces by name.
    pub namespaces: Vec<String>,
    /// Allowed namespaces by labels.
    pub namespace_selectors: Vec<LabelSelector>,
    /// Allowed services by labels.
    pub service_selectors: Vec<LabelSelector>,
}

impl ServiceAllocation {
    /// MetalLB's rule: the namespace is listed or matched by a selector (no
    /// namespace rule means any), and the service labels match.
    pub fn matches(&self, namespace: &str, namespace_labels: &StringMap, service_labels: &StringMap) -> bool {
        let namespace_ok = (self.namespaces.is_empty() && self.namespace_selectors.is_empty())
            || self.namespaces.iter().any(|n| n == namespace)
            || self.namespace_selectors.iter().any(|s| s.matches(namespace_labels));
        namespace_ok && any_matches(&self.service_selectors, service_labels)
    }

    /// Sort key: lower sorts first, and 0 after every positive priority.
    pub fn order(&self) -> i64 {
        if self.priority == 0 {
            i64::MAX
        } else {
            i64::from(self.priority)
        }
    }
}

/// Which pools an advertisement covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolScope {
    /// By name.
    pub names: Vec<String>,
    /// By labels.
    pub selectors: Vec<LabelSelector>,
}

impl PoolScope {
    /// Neither names nor selectors means every pool.
    pub fn covers(&self, pool: &Pool) -> bool {
        (self.names.is_empty() && self.selectors.is_empty())
            || self.names.contains(&pool.name)
            || self.selectors.iter().any(|s| s.matches(&pool.labels))
    }
}

/// A node preference weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedSelector {
    /// 1 to 100.
    pub weight: u8,
    /// Nodes it applies to.
    pub selector: LabelSelector,
}

/// A validated L2Advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Advertisement {
    /// Name.
    pub name: String,
    /// Pools covered.
    pub pools: PoolScope,
    /// Nodes allowed to announce.
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces (empty: all eligible).
    pub interfaces: Vec<String>,
    /// Services covered.
    pub service_selectors: Vec<LabelSelector>,
    /// Soft node preferences.
    pub preferred_nodes: Vec<WeightedSelector>,
}

/// A BGP community value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BgpCommunity {
    /// RFC 1997 community.
    Standard(Community),
    /// RFC 8092 large community.
    Large(LargeCommunity),
}

impl BgpCommunity {
    /// `AA:NN`, a well-known name, or `large:A:B:C`.
    pub fn parse(text: &str) -> Option<BgpCommunity> {
        let text = text.trim();
        match text.strip_prefix("large:") {
            Some(large) => LargeCommunity::from_str(large).ok().map(BgpCommunity::Large),
            None => Community::from_str(text).ok().map(BgpCommunity::Standard),
        }
    }
}

/// A validated BGPAdvertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpAdvertisement {
    /// Name.
    pub name: String,
    /// Pools covered.
    pub pools: PoolScope,
    /// IPv4 prefix length announced.
    pub aggregation_length: u8,
    /// IPv6 prefix length announced.
    pub aggregation_length_v6: u8,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// Communities attached (aliases resolved).
    pub communities: Vec<BgpCommunity>,
    /// Nodes announcing.
    pub node_selectors: Vec<LabelSelector>,
    /// Peers announced to (empty: all).
    pub peers: Vec<String>,
    /// Services covered.
    pub service_selectors: Vec<LabelSelector>,
}

/// The peer's AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAsn {
    /// A fixed AS number.
    Fixed(u32),
    /// Whatever the peer sends, which must equal ours (iBGP).
    Internal,
    /// Whatever the peer sends, which must differ from ours (eBGP).
    External,
}

/// Where the peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEndpoint {
    /// An address.
    Address(IpAddr),
    /// Unnumbered, over an interface.
    Interface(String),
}

/// The TCP MD5 password of a peer, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPassword {
    /// Written in the BGPPeer.
    Inline(Md5Key),
    /// In a `kubernetes.io/basic-auth` Secret.
    Secret {
        /// Secret name.
        name: String,
        /// Secret namespace, when the peer names one (it must be the
        /// peer's own).
        namespace: Option<String>,
        /// Its `password`; `None` while the Secret does not exist (a
        /// warning: the session waits for it, it never runs unsigned).
        key: Option<Md5Key>,
    },
}

impl PeerPassword {
    /// The key to sign the session with, if there is one yet.
    pub fn key(&self) -> Option<&Md5Key> {
        match self {
            PeerPassword::Inline(key) => Some(key),
            PeerPassword::Secret { key, .. } => key.as_ref(),
        }
    }
}

/// A validated BGPPeer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPeer {
    /// Name.
    pub name: String,
    /// Our AS.
    pub my_asn: u32,
    /// Peer AS.
    pub peer_asn: PeerAsn,
    /// AS presented instead of `my_asn`.
    pub local_asn: Option<u32>,
    /// Peer address or interface.
    pub endpoint: PeerEndpoint,
    /// Local address.
    pub source_address: Option<IpAddr>,
    /// Peer TCP port.
    pub port: u16,
    /// Hold time (0 disables keepalives).
    pub hold_time: Duration,
    /// Keepalive interval.
    pub keepalive_time: Duration,
    /// Connect retry time, if set.
    pub connect_time: Option<Duration>,
    /// BGP identifier.
    pub router_id: Option<Ipv4Addr>,
    /// Nodes that peer.
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password.
    pub password: Option<PeerPassword>,
    /// BFD profile name.
    pub bfd_profile: Option<String>,
    /// Graceful Restart capability.
    pub graceful_restart: bool,
    /// eBGP multihop.
    pub ebgp_multi_hop: bool,
    /// VRF.
    pub vrf: Option<String>,
    /// Deprecated per-family sessions.
    pub disable_mp: bool,
    /// Carry the other family too.
    pub dual_stack_address_family: bool,
}

impl BgpPeer {
    /// Whether the session is iBGP.
    pub fn is_internal(&self) -> bool {
        match self.peer_asn {
            PeerAsn::Fixed(asn) => asn == self.local_asn.unwrap_or(self.my_asn),
            PeerAsn::Internal => true,
            PeerAsn::External => false,
        }
    }
}

/// A validated BFDProfile (intervals in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdProfile {
    /// Name.
    pub name: String,
    /// Required minimum receive interval.
    pub receive_interval_ms: u32,
    /// Desired minimum transmit interval.
    pub transmit_interval_ms: u32,
    /// Detection multiplier.
    pub detect_multiplier: u8,
    /// Echo interval.
    pub echo_interval_ms: u32,
    /// Echo mode.
    pub echo_mode: bool,
    /// Passive mode.
    pub passive_mode: bool,
    /// Minimum TTL (multihop).
    pub minimum_ttl: u8,
}

/// What happens when a more preferred node comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// It takes the address back (MetalLB's behaviour).
    Revertive,
    /// The address stays until its owner fails.
    NonRevertive,
}

/// A validated meshlb L2Policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Policy {
    /// Name.
    pub name: String,
    /// Services covered.
    pub service_selectors: Vec<LabelSelector>,
    /// Addresses per family per service.
    pub addresses_per_service: u8,
    /// Node preference weights.
    pub node_preferences: Vec<WeightedSelector>,
    /// Failback behaviour.
    pub failback: Failback,
}

/// A complete, validated configuration. Maps are keyed by object name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// IPAddressPools.
    pub pools: BTreeMap<String, Pool>,
    /// L2Advertisements.
    pub l2_advertisements: BTreeMap<String, L2Advertisement>,
    /// BGPAdvertisements.
    pub bgp_advertisements: BTreeMap<String, BgpAdvertisement>,
    /// BGPPeers.
    pub bgp_peers: BTreeMap<String, BgpPeer>,
    /// BFDProfiles.
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
    /// Community aliases, from every Community object.
    pub communities: BTreeMap<String, BgpCommunity>,
    /// meshlb L2Policies.
    pub l2_policies: BTreeMap<String, L2Policy>,
    /// What is accepted but probably not meant: an advertisement naming a
    /// pool or peer that does not exist (yet: in a cluster objects arrive
    /// in any order, and MetalLB ignores such names too). The name matches
    /// nothing until an object of that name appears.
    pub warnings: Vec<Error>,
}

impl Config {
    /// The L2Policy applying to a service with these labels: the first by
    /// name whose selectors match.
    pub fn l2_policy_for(&self, service_labels: &StringMap) -> Option<&L2Policy> {
        self.l2_policies
            .values()
            .find(|p| any_matches(&p.service_selectors, service_labels))
    }

    /// Builds and validates a configuration from objects; non-configuration
    /// kinds (Services, Namespaces, EndpointSlices) are ignored.
    pub fn build(objects: &[Located<Object>]) -> Result<Config, Rejected> {
        let mut builder = Builder::default();
        // Pass 1: kinds others refer to.
        for located in objects {
            builder.location = Some(located.location.clone());
            match &located.object {
                Object::IpAddressPool(r) => builder.pool(r),
                Object::BfdProfile(r) => builder.bfd_profile(r),
                Object::Community(r) => builder.community(r),
                Object::L2Policy(r) => builder.l2_policy(r),
                Object::Secret(secret) => builder.secret(secret),
                _ => {}
            }
        }
        builder.check_pool_overlaps();
        // Pass 2: kinds that refer to pass-1 kinds; peers before BGP ads.
        for located in objects {
            builder.location = Some(located.location.clone());
            if let Object::BgpPeer(r) = &located.object {
                builder.bgp_peer(r);
            }
        }
        for located in objects {
            builder.location = Some(located.location.clone());
            match &located.object {
                Object::L2Advertisement(r) => builder.l2_advertisement(r),
                Object::BgpAdvertisement(r) => builder.bgp_advertisement(r),
                _ => {}
            }
        }
        if builder.errors.is_empty() {
            builder.config.warnings = builder.warnings;
            Ok(builder.config)
        } else {
            Err(Rejected { errors: builder.errors })
        }
    }
}

#[derive(Default)]
struct Builder {
    config: Config,
    errors: Vec<Error>,
    warnings: Vec<Error>,
    location: Option<SourceLocation>,
    /// Where each pool was read, for overlap messages.
    pool_locations: BTreeMap<String, Option<SourceLocation>>,
    /// Pools in the order they were read.
    pool_order: Vec<String>,
    /// Names seen per kind, to refuse duplicates.
    seen: BTreeMap<Kind, BTreeMap<String, Option<SourceLocation>>>,
    /// Secrets by name, for peers' `passwordSecret`.
    secrets: BTreeMap<String, Secret>,
}

/// Ranges for numeric fields, for messages.
fn in_range(value: i64, low: i64, high: i64) -> bool {
    (low..=high).contains(&value)
}

impl Builder {
    fn push(&mut self, invalid: Invalid) {
        self.errors.push(Error::Invalid {
            location: self.location.clone(),
            invalid: Box::new(invalid),
        });
    }

    fn extend(&mut self, invalid: Vec<Invalid>) {
        for i in invalid {
            self.push(i);
        }
    }

    fn warn(&mut self, invalid: Invalid) {
        self.warnings.push(Error::Invalid {
            location: self.location.clone(),
            invalid: Box::new(invalid),
        });
    }

    /// Registers a name and returns the object's reference; `None` (with an
    /// error recorded) when an object of the same kind already has it.
    fn claim_name(&mut self, kind: Kind, meta: &ObjectMeta) -> Option<ObjectRef> {
        let object = ObjectRef::new(kind, meta);
        let seen = self.seen.entry(kind).or_default();
        if let Some(first) = seen.get(&meta.name) {
            let where_ = first.as_ref().map(|l| format!(" (first at {l})")).unwrap_or_default();
            let invalid = Invalid::new(
                &object,
                "metadata.name",
                &meta.name,
                format!("is already used by another {kind}{where_}"),
                format!("a name unique among {kind} objects"),
            );
            self.push(invalid);
            return None;
        }
        seen.insert(meta.name.clone(), self.location.clone());
        Some(object)
    }

    /// A Secret, checked only when a peer names it (the namespace holds
    /// others: the mesh's key, say).
    fn secret(&mut self, secret: &Secret) {
        if self.claim_name(Kind::Secret, &secret.metadata).is_some() {
            self.secrets.insert(secret.metadata.name.clone(), secret.clone());
        }
    }

    /// The key in the Secret a peer names, as MetalLB reads it: a
    /// `kubernetes.io/basic-auth` Secret of the peer's namespace, its
    /// `password` key. A missing Secret is a warning (objects arrive in any
    /// order); one of another type, or without a usable password, an error.
    fn password_from_secret(
        &mut self,
        peer: &ObjectRef,
        reference: &SecretReference,
        errors: &mut Vec<Invalid>,
    ) -> Option<Md5Key> {
        let field = "spec.passwordSecret";
        if let (Some(wanted), Some(own)) = (&reference.namespace, &peer.namespace)
            && wanted != own
        {
            errors.push(Invalid::new(
                peer,
                format!("{field}.namespace"),
                wanted,
                "is not the BGPPeer's namespace",
                format!("a Secret in {own}, where meshlb reads Secrets"),
            ));
            return None;
        }
        let Some(secret) = self.secrets.get(&reference.name) else {
            self.warn(Invalid::new(
                peer,
                format!("{field}.name"),
                &reference.name,
                format!("names no {BASIC_AUTH} Secret (none exists yet); the session waits for it"),
                format!("a {BASIC_AUTH} Secret with a {PASSWORD_KEY} key"),
            ));
            return None;
        };
        let expected = format!("a {BASIC_AUTH} Secret with a {PASSWORD_KEY} key of 1 to 80 bytes");
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        if type_ != BASIC_AUTH {
            errors.push(Invalid::new(
                peer,
                format!("{field}.name"),
                &reference.name,
                format!("names a Secret of type {type_}"),
                expected,
            ));
            return None;
        }
        let why = match secret.value(PASSWORD_KEY) {
            Ok(Some(password)) => match Md5Key::new(password) {
                Ok(key) => return Some(key),
                Err(why) => format!("names a Secret whose {PASSWORD_KEY} {why}"),
            },
            Ok(None) => format!("names a Secret without a {PASSWORD_KEY} key"),
            Err(why) => format!("names a Secret whose {why}"),
        };
        errors.push(Invalid::new(
            peer,
            format!("{field}.name"),
            &reference.name,
            why,
            expected,
        ));
        None
    }

    fn pool(&mut self, resource: &Resource<IpAddressPoolSpec>) {
        let Some(object) = self.claim_name(Kind::IpAddressPool, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        if spec.addresses.is_empty() {
            errors.push(Invalid::new(
                &object,
                "spec.addresses",
                "",
                "is empty",
                "at least one entry: {ADDRESS_FORMS}",
            ));
        }
        let mut ranges: Vec<AddressRange> = Vec::new();
        let mut indices: Vec<usize> = Vec::new();
        for (i, text) in spec.addresses.iter().enumerate() {
            let field = format!("spec.addresses[{i}]");
            match text.parse::<AddressRange>() {
                Ok(range) => {
                    if let Some(j) = ranges.iter().position(|r| r.overlaps(&range)) {
                        errors.push(Invalid::new(
                            &object,
                            field,
                            text,
                            format!(
                                "overlaps spec.addresses[{}] ({}) of the same pool",
                                indices[j], ranges[j]
                            ),
                            "ranges that do not overlap",
                        ));
                    }
                    ranges.push(range);
                    indices.push(i);
                }
                Err(problem) => errors.push(Invalid::new(&object, field, text, problem, ADDRESS_FORMS)),
            }
        }
        let allocation = spec.service_allocation.as_ref().map(|a| {
            if a.priority < 0 {
                errors.push(Invalid::new(
                    &object,
                    "spec.serviceAllocation.priority",
                    a.priority.to_string(),
                    "is negative",
                    "0 (the lowest priority) or a positive number, 1 being the highest",
                ));
            }
            for (i, ns) in a.namespaces.iter().enumerate() {
                if !valid_dns_subdomain(ns) || ns.contains('.') || ns.len() > 63 {
                    errors.push(Invalid::new(
                        &object,
                        format!("spec.serviceAllocation.namespaces[{i}]"),
                        ns,
                        "is not a namespace name",
                        "a DNS label: at most 63 lower-case alphanumerics or '-'",
                    ));
                }
            }
            validate_selectors(
                &object,
                "spec.serviceAllocation.namespaceSelectors",
                &a.namespace_selectors,
                &mut errors,
            );
            validate_selectors(
                &object,
                "spec.serviceAllocation.serviceSelectors",
                &a.service_selectors,
                &mut errors,
            );
            ServiceAllocation {
                priority: a.priority,
                namespaces: a.namespaces.clone(),
                namespace_selectors: a.namespace_selectors.clone(),
                service_selectors: a.service_selectors.clone(),
            }
        });
        if !errors.is_empty() {
            self.extend(errors);
            return;
        }
        let name = resource.metadata.name.clone();
        self.pool_locations.insert(name.clone(), self.location.clone());
        self.pool_order.push(name.clone());
        self.config.pools.insert(
            name.clone(),
            Pool {
                name,
                labels: resource.metadata.labels.clone(),
                ranges,
                auto_assign: spec.auto_assign.unwrap_or(true),
                avoid_buggy_ips: spec.avoid_buggy_ips,
                allocation,
            },
        );
    }

    /// Overlaps between pools, each reported on the pool read later (the
    /// later document of a file; the newer object of a cluster).
    fn check_pool_overlaps(&mut self) {
        let pools: Vec<&Pool> = self
            .pool_order
            .iter()
            .filter_map(|name| self.config.pools.get(name))
            .collect();
        let mut found = Vec::new();
        for (i, a) in pools.iter().enumerate() {
            for b in &pools[i + 1..] {
                for ra in &a.ranges {
                    if let Some(rb) = b.ranges.iter().find(|rb| ra.overlaps(rb)) {
                        found.push((b.name.clone(), rb.to_string(), a.name.clone(), ra.to_string()));
                    }
                }
            }
        }
        for (pool, range, other, other_range) in found {
            self.location = self.pool_locations.get(&pool).cloned().flatten();
            let object = ObjectRef {
                kind: Kind::IpAddressPool,
                namespace: None,
                name: pool.clone(),
            };
            self.push(Invalid::new(
                &object,
                "spec.addresses",
                range,
                format!("overlaps {other_range} of IPAddressPool {other}"),
                "addresses that belong to no other pool",
            ));
        }
    }

    /// The pools an advertisement covers; a name of no pool is a warning.
    fn pool_scope(
        &mut self,
        object: &ObjectRef,
        names: &[String],
        selectors: &[LabelSelector],
        errors: &mut Vec<Invalid>,
    ) -> PoolScope {
        for (i, name) in names.iter().enumerate() {
            if !self.config.pools.contains_key(name) && !self.seen_name(Kind::IpAddressPool, name) {
                let known = self.known(Kind::IpAddressPool);
                self.warn(Invalid::new(
                    object,
                    format!("spec.ipAddressPools[{i}]"),
                    name,
                    "names no IPAddressPool (yet); it covers none until one of that name exists",
                    known,
                ));
            }
        }
        validate_selectors(object, "spec.ipAddressPoolSelectors", selectors, errors);
        PoolScope {
            names: names.to_vec(),
            selectors: selectors.to_vec(),
        }
    }

    fn seen_name(&self, kind: Kind, name: &str) -> bool {
        self.seen.get(&kind).is_some_and(|m| m.contains_key(name))
    }

    fn known(&self, kind: Kind) -> String {
        let names: Vec<&String> = self.seen.get(&kind).map(|m| m.keys().collect()).unwrap_or_default();
        if names.is_empty() {
            format!("the name of a {kind} (there are none)")
        } else {
            format!(
                "one of {}",
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    }

    fn weighted(
        object: &ObjectRef,
        field: &str,
        list: &[WeightedNodeSelector],
        errors: &mut Vec<Invalid>,
    ) -> Vec<WeightedSelector> {
        let mut out = Vec::new();
        for (i, w) in list.iter().enumerate() {
            if !in_range(i64::from(w.weight), 1, 100) {
                errors.push(Invalid::new(
                    object,
                    format!("{field}[{i}].weight"),
                    w.weight.to_string(),
                    "is out of range",
                    "1 to 100",
                ));
            }
            w.preference
                .validate(object, &format!("{field}[{i}].preference"), errors);
            out.push(WeightedSelector {
                weight: w.weight.clamp(1, 100) as u8,
                selector: w.preference.clone(),
            });
        }
        out
    }

    fn l2_advertisement(&mut self, resource: &Resource<L2AdvertisementSpec>) {
        let Some(object) = self.claim_name(Kind::L2Advertisement, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let pools = self.pool_scope(
            &object,
            &spec.ip_address_pools,
            &spec.ip_address_pool_selectors,
            &mut errors,
        );
        validate_selectors(&object, "spec.nodeSelectors", &spec.node_selectors, &mut errors);
        validate_selectors(&object, "spec.serviceSelectors", &spec.service_selectors, &mut errors);
        for (i, name) in spec.interfaces.iter().enumerate() {
            check_interface(&object, &format!("spec.interfaces[{i}]"), name, &mut errors);
        }
        let preferred_nodes = Self::weighted(
            &object,
            "spec.preferredNodeSelectors",
            &spec.preferred_node_selectors,
            &mut errors,
        );
        if !errors.is_empty() {
            return self.extend(errors);
        }
        let name = resource.metadata.name.clone();
        self.config.l2_advertisements.insert(
            name.clone(),
            L2Advertisement {
                name,
                pools,
                node_selectors: spec.node_selectors.clone(),
                interfaces: spec.interfaces.clone(),
                service_selectors: spec.service_selectors.clone(),
                preferred_nodes,
            },
        );
    }

    fn bgp_advertisement(&mut self, resource: &Resource<BgpAdvertisementSpec>) {
        let Some(object) = self.claim_name(Kind::BgpAdvertisement, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let pools = self.pool_scope(
            &object,
            &spec.ip_address_pools,
            &spec.ip_address_pool_selectors,
            &mut errors,
        );
        let mut length = |field: &str, value: Option<i32>, family: Family| -> u8 {
            let max = family.bits();
            match value {
                None => max,
                Some(v) if in_range(i64::from(v), 0, i64::from(max)) => v as u8,
                Some(v) => {
                    errors.push(Invalid::new(
                        &object,
                        field,
                        v.to_string(),
                        "is out of range",
                        format!("0 to {max} ({family} prefix length)"),
                    ));
                    max
                }
            }
        };
        let aggregation_length = length("spec.aggregationLength", spec.aggregation_length, Family::V4);
        let aggregation_length_v6 = length("spec.aggregationLengthV6", spec.aggregation_length_v6, Family::V6);
        // An aggregate must not reach beyond a pool's own CIDRs.
        for pool in self.config.pools.values().filter(|p| pools.covers(p)) {
            for range in &pool.ranges {
                let (field, length) = match range.family() {
                    Family::V4 => ("spec.aggregationLength", aggregation_length),
                    Family::V6 => ("spec.aggregationLengthV6", aggregation_length_v6),
                };
                if let Some(cidr) = range.cidrs().into_iter().find(|c| c.prefix_len() > length) {
                    errors.push(Invalid::new(
                        &object,
                        field,
                        length.to_string(),
                        format!(
                            "is shorter than {cidr} of IPAddressPool {}, so the aggregate would cover addresses \
                             outside the pool",
                            pool.name
                        ),
                        format!("a length of at least {}", cidr.prefix_len()),
                    ));
                    break;
                }
            }
        }
        if !spec.service_selectors.is_empty() && (aggregation_length != 32 || aggregation_length_v6 != 128) {
            errors.push(Invalid::new(
                &object,
                "spec.serviceSelectors",
                format!("{} selectors", spec.service_selectors.len()),
                "are set together with a non-default aggregation length",
                "serviceSelectors only with aggregationLength 32 and aggregationLengthV6 128",
            ));
        }
        let mut communities = Vec::new();
        for (i, text) in spec.communities.iter().enumerate() {
            match BgpCommunity::parse(text).or_else(|| self.config.communities.get(text.trim()).copied()) {
                Some(c) => communities.push(c),
                None => {
                    let aliases: Vec<&String> = self.config.communities.keys().collect();
                    let aliases = if aliases.is_empty() {
                        "none defined".to_string()
                    } else {
                        aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
                    };
                    errors.push(Invalid::new(
                        &object,
                        format!("spec.communities[{i}]"),
                        text,
                        "is not a community",
                        format!(
                            "AS:VALUE (each 0 to 65535), large:A:B:C (each 0 to 4294967295), a well-known name such \
                             as no-export, or a Community alias ({aliases})"
                        ),
                    ));
                }
            }
        }
        for (i, peer) in spec.peers.iter().enumerate() {
            if !self.seen_name(Kind::BgpPeer, peer) {
                let known = self.known(Kind::BgpPeer);
                self.warn(Invalid::new(
                    &object,
                    format!("spec.peers[{i}]"),
                    peer,
                    "names no BGPPeer (yet); it announces to none until one of that name exists",
                    known,
                ));
            }
        }
        validate_selectors(&object, "spec.nodeSelectors", &spec.node_selectors, &mut errors);
        validate_selectors(&object, "spec.serviceSelectors", &spec.service_selectors, &mut errors);
        if !errors.is_empty() {
            return self.extend(errors);
        }
        let name = resource.metadata.name.clone();
        self.config.bgp_advertisements.insert(
            name.clone(),
            BgpAdvertisement {
                name,
                pools,
                aggregation_length,
                aggregation_length_v6,
                local_pref: spec.local_pref,
                communities,
                node_selectors: spec.node_selectors.clone(),
                peers: spec.peers.clone(),
                service_selectors: spec.service_selectors.clone(),
            },
        );
    }

    fn bgp_peer(&mut self, resource: &Resource<BgpPeerSpec>) {
        let Some(object) = self.claim_name(Kind::BgpPeer, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let o = &object;
        if spec.my_asn == 0 {
            errors.push(Invalid::new(
                o,
                "spec.myASN",
                "0",
                "is missing or zero",
                "an AS number from 1 to 4294967295",
            ));
        }
        if spec.local_asn == Some(0) {
            errors.push(Invalid::new(
                o,
                "spec.localASN",
                "0",
                "is zero",
                "an AS number from 1 to 4294967295",
            ));
        }
        let peer_asn = match (spec.peer_asn, spec.dynamic_asn.as_deref()) {
            (Some(_), Some(d)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.dynamicASN",
                    d,
                    "is set together with spec.peerASN",
                    "exactly one of peerASN or dynamicASN",
                ));
                PeerAsn::External
            }
            (None, None) | (Some(0), None) => {
                errors.push(Invalid::new(
                    o,
                    "spec.peerASN",
                    "",
                    "is missing (and dynamicASN is not set)",
                    "peerASN from 1 to 4294967295, or dynamicASN internal or external",
                ));
                PeerAsn::External
            }
            (Some(asn), None) => PeerAsn::Fixed(asn),
            (None, Some("internal")) => PeerAsn::Internal,
            (None, Some("external")) => PeerAsn::External,
            (None, Some(other)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.dynamicASN",
                    other,
                    "is not a dynamic AS mode",
                    "internal or external",
                ));
                PeerAsn::External
            }
        };
        let endpoint = match (&spec.peer_address, &spec.interface) {
            (Some(a), Some(i)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.interface",
                    i,
                    format!("is set together with spec.peerAddress {a}"),
                    "exactly one of peerAddress or interface",
                ));
                PeerEndpoint::Interface(i.clone())
            }
            (None, None) => {
                errors.push(Invalid::new(
                    o,
                    "spec.peerAddress",
                    "",
                    "is missing (and interface is not set)",
                    "an IPv4 or IPv6 address, or an interface for an unnumbered session",
                ));
                PeerEndpoint::Interface(String::new())
            }
            (Some(a), None) => match a.trim().parse::<IpAddr>() {
                Ok(ip) => PeerEndpoint::Address(ip),
                Err(_) => {
                    errors.push(Invalid::new(
                        o,
                        "spec.peerAddress",
                        a,
                        "is not an IP address",
                        "an IPv4 or IPv6 address",
                    ));
                    PeerEndpoint::Interface(String::new())
                }
            },
            (None, Some(i)) => {
                check_interface(o, "spec.interface", i, &mut errors);
                PeerEndpoint::Interface(i.clone())
            }
        };
        let source_address = spec
            .source_address
            .as_ref()
            .and_then(|s| match s.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    if let PeerEndpoint::Address(peer) = endpoint
                        && Family::of(peer) != Family::of(ip)
                    {
                        {
                            errors.push(Invalid::new(
                                o,
                                "spec.sourceAddress",
                                s,
                                format!(
                                    "is {} but the peer address {peer} is {}",
                                    Family::of(ip),
                                    Family::of(peer)
                                ),
                                "a source address of the peer's family",
                            ));
                        }
                    }
                    Some(ip)
                }
                Err(_) => {
                    errors.push(Invalid::new(
                        o,
                        "spec.sourceAddress",
                        s,
                        "is not an IP address",
                        "an IPv4 or IPv6 address",
                    ));
                    None
                }
            });
        let port = match spec.peer_port {
            None => 179,
            Some(p) if in_range(p, 1, 16384) => p as u16,
            Some(p) => {
                errors.push(Invalid::new(
                    o,
                    "spec.peerPort",
                    p.to_string(),
                    "is out of range",
                    "1 to 16384",
                ));
                179
            }
        };
        let (hold_time, keepalive_time) = peer_timers(o, spec, &mut errors);
        let connect_time = spec.connect_time.as_ref().and_then(|text| match parse_duration(text) {
            Ok(d) if d.subsec_nanos() == 0 && in_range(d.as_secs() as i64, 1, 65535) => Some(d),
            Ok(_) => {
                errors.push(Invalid::new(
                    o,
                    "spec.connectTime",
                    text,
                    "is not a whole number of seconds from 1 to 65535",
                    "a duration such as 10s",
                ));
                None
            }
            Err(problem) => {
                errors.push(Invalid::new(
                    o,
                    "spec.connectTime",
                    text,
                    problem,
                    "a duration such as 10s",
                ));
                None
            }
        });
        let router_id = spec
            .router_id
            .as_ref()
            .and_then(|text| match text.trim().parse::<Ipv4Addr>() {
                Ok(id) if !id.is_unspecified() => Some(id),
                _ => {
                    errors.push(Invalid::new(
                        o,
                        "spec.routerID",
                        text,
                        "is not a usable BGP identifier",
                        "a non-zero IPv4 address such as 192.0.2.1",
                    ));
                    None
                }
            });
        // An empty password or Secret name is none, as MetalLB reads them
        // (its conversion of a v1beta1 peer writes `passwordSecret: {}`).
        let inline = spec.password.as_ref().filter(|p| !p.is_empty());
        let secret = spec.password_secret.as_ref().filter(|s| !s.name.is_empty());
        let password = match (inline, secret) {
            (Some(_), Some(secret)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.passwordSecret",
                    &secret.name,
                    "is set together with spec.password",
                    "exactly one of password or passwordSecret",
                ));
                None
            }
            (Some(p), None) => match Md5Key::new(p.as_str()) {
                Ok(key) => Some(PeerPassword::Inline(key)),
                Err(why) => {
                    errors.push(Invalid::new(
                        o,
                        "spec.password",
                        "(hidden)",
                        why,
                        "1 to 80 bytes (the TCP MD5 key limit)",
                    ));
                    None
                }
            },
            (None, Some(secret)) => {
                if !valid_dns_subdomain(&secret.name) {
                    errors.push(Invalid::new(
                        o,
                        "spec.passwordSecret.name",
                        &secret.name,
                        "is not a Secret name",
                        "a DNS subdomain such as bgp-password",
                    ));
                }
                let key = self.password_from_secret(o, secret, &mut errors);
                Some(PeerPassword::Secret {
                    name: secret.name.clone(),
                    namespace: secret.namespace.clone(),
                    key,
                })
            }
            (None, None) => None,
        };
        if let Some(profile) = &spec.bfd_profile {
            match self.config.bfd_profiles.get(profile) {
                None if !self.seen_name(Kind::BfdProfile, profile) => errors.push(Invalid::new(
                    o,
                    "spec.bfdProfile",
                    profile,
                    "names no BFDProfile",
                    self.known(Kind::BfdProfile),
                )),
                Some(p) if p.echo_mode && spec.ebgp_multi_hop => errors.push(Invalid::new(
                    o,
                    "spec.bfdProfile",
                    profile,
                    "has echoMode on, which BFD forbids on a multihop session",
                    "a profile without echoMode for an ebgpMultiHop peer",
                )),
                _ => {}
            }
        }
        let peer = BgpPeer {
            name: resource.metadata.name.clone(),
            my_asn: spec.my_asn,
            peer_asn,
            local_asn: spec.local_asn,
            endpoint,
            source_address,
            port,
            hold_time,
            keepalive_time,
            connect_time,
            router_id,
            node_selectors: spec.node_selectors.clone(),
            password,
            bfd_profile: spec.bfd_profile.clone(),
            graceful_restart: spec.enable_graceful_restart,
            ebgp_multi_hop: spec.ebgp_multi_hop,
            vrf: spec.vrf.clone().filter(|v| !v.is_empty()),
            disable_mp: spec.disable_mp,
            dual_stack_address_family: spec.dual_stack_address_family,
        };
        if peer.ebgp_multi_hop && peer.is_internal() {
            errors.push(Invalid::new(
                o,
                "spec.ebgpMultiHop",
                "true",
                "is set on an iBGP peer (peer AS equals ours)",
                "ebgpMultiHop only for eBGP peers",
            ));
        }
        if let Some(vrf) = &peer.vrf {
            check_interface(o, "spec.vrf", vrf, &mut errors);
        }
        validate_selectors(o, "spec.nodeSelectors", &spec.node_selectors, &mut errors);
        // The same session twice: same address, port, VRF and nodes.
        let key = |p: &BgpPeer| {
            let selectors: Vec<String> = p.node_selectors.iter().map(LabelSelector::canonical).collect();
            (format!("{:?}", p.endpoint), p.port, p.vrf.clone(), selectors)
        };
        if let Some(other) = self.config.bgp_peers.values().find(|other| key(other) == key(&peer)) {
            errors.push(Invalid::new(
                o,
                "spec.peerAddress",
                spec.peer_address.clone().or(spec.interface.clone()).unwrap_or_default(),
                format!(
                    "duplicates BGPPeer {} (same address, port, VRF and node selectors)",
                    other.name
                ),
                "one BGPPeer per session",
            ));
        }
        if !errors.is_empty() {
            return self.extend(errors);
        }
        self.config.bgp_peers.insert(peer.name.clone(), peer);
    }

    fn bfd_profile(&mut self, resource: &Resource<BfdProfileSpec>) {
        let Some(object) = self.claim_name(Kind::BfdProfile, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let mut field = |name: &str, value: Option<i64>, low: i64, high: i64, default: i64, unit: &str| -> i64 {
            match value {
                None => default,
                Some(v) if in_range(v, low, high) => v,
                Some(v) => {
                    errors.push(Invalid::new(
                        &object,
                        format!("spec.{name}"),
                        v.to_string(),
                        "is out of range",
                        format!("{low} to {high}{unit}"),
                    ));
                    default
                }
            }
        };
        let profile = BfdProfile {
            name: resource.metadata.name.clone(),
            receive_interval_ms: field("receiveInterval", spec.receive_interval, 10, 60000, 300, " ms") as u32,
            transmit_interval_ms: field("transmitInterval", spec.transmit_interval, 10, 60000, 300, " ms") as u32,
            detect_multiplier: field("detectMultiplier", spec.detect_multiplier, 2, 255, 3, "") as u8,
            echo_interval_ms: field("echoInterval", spec.echo_interval, 10, 60000, 50, " ms") as u32,
            echo_mode: spec.echo_mode,
            passive_mode: spec.passive_mode,
            minimum_ttl: field("minimumTtl", spec.minimum_ttl, 1, 254, 254, "") as u8,
        };
        if !errors.is_empty() {
            return self.extend(errors);
        }
        self.config.bfd_profiles.insert(profile.name.clone(), profile);
    }

    fn community(&mut self, resource: &Resource<CommunitySpec>) {
        let Some(object) = self.claim_name(Kind::Community, &resource.metadata) else {
            return;
        };
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        for (i, alias) in resource.spec.communities.iter().enumerate() {
            let field = format!("spec.communities[{i}]");
            if alias.name.trim().is_empty() {
                errors.push(Invalid::new(
                    &object,
                    format!("{field}.name"),
                    "",
                    "is empty",
                    "an alias name",
                ));
            } else if self.config.communities.contains_key(&alias.name)
                || parsed.iter().any(|(n, _): &(String, _)| *n == alias.name)
            {
                errors.push(Invalid::new(
                    &object,
                    format!("{field}.name"),
                    &alias.name,
                    "is defined twice",
                    "alias names unique across all Community objects",
                ));
            }
            match BgpCommunity::parse(&alias.value) {
                Some(value) => parsed.push((alias.name.clone(), value)),
                None => errors.push(Invalid::new(
                    &object,
                    format!("{field}.value"),
                    &alias.value,
                    "is not a community",
                    "AS:VALUE (each 0 to 65535), large:A:B:C (each 0 to 4294967295) or a well-known name",
                )),
            }
        }
        if !errors.is_empty() {
            return self.extend(errors);
        }
        self.config.communities.extend(parsed);
    }

    fn l2_policy(&mut self, resource: &Resource<L2PolicySpec>) {
        let Some(object) = self.claim_name(Kind::L2Policy, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        validate_selectors(&object, "spec.serviceSelectors", &spec.service_selectors, &mut errors);
        let addresses_per_service = match spec.addresses_per_service {
            None => 1,
            Some(n) if in_range(n, 1, i64::from(crate::service::MAX_IPS_PER_FAMILY)) => n as u8,
            Some(n) => {
                errors.push(Invalid::new(
                    &object,
                    "spec.addressesPerService",
                    n.to_string(),
                    "is out of range",
                    format!("1 to {}", crate::service::MAX_IPS_PER_FAMILY),
                ));
                1
            }
        };
        let node_preferences = Self::weighted(&object, "spec.nodePreferences", &spec.node_preferences, &mut errors);
        let failback = match spec.failback.as_deref() {
            None | Some("Revertive") => Failback::Revertive,
            Some("NonRevertive") => Failback::NonRevertive,
            Some(other) => {
                errors.push(Invalid::new(
                    &object,
                    "spec.failback",
                    other,
                    "is not a failback mode",
                    "Revertive or NonRevertive",
                ));
                Failback::Revertive
            }
        };
        if !errors.is_empty() {
            return self.extend(errors);
        }
        let name = resource.metadata.name.clone();
        self.config.l2_policies.insert(
            name.clone(),
            L2Policy {
                name,
                service_selectors: spec.service_selectors.clone(),
                addresses_per_service,
                node_preferences,
                failback,
            },
        );
    }
}

/// MetalLB's `parseTimers`: given one of hold time and keepalive, the other
/// is derived (x3 or /3); neither gives 90 s and 30 s. Hold time is 0 or at
/// least 3 s, in whole seconds, and not below the keepalive.
fn peer_timers(object: &ObjectRef, spec: &BgpPeerSpec, errors: &mut Vec<Invalid>) -> (Duration, Duration) {
    let mut read = |field: &str, text: &Option<String>| -> Option<Duration> {
        let text = text.as_ref()?;
        match parse_duration(text) {
            Ok(d) if d.subsec_nanos() != 0 => {
                errors.push(Invalid::new(
                    object,
                    field,
                    text,
                    "is not a whole number of seconds",
                    "whole seconds, as BGP carries them (e.g. 90s)",
                ));
                None
            }
            Ok(d) if d.as_secs() > 65535 => {
                errors.push(Invalid::new(
                    object,
                    field,
                    text,
                    "exceeds 65535 s",
                    "at most 65535s (16 bits in OPEN)",
                ));
                None
            }
            Ok(d) => Some(d),
            Err(problem) => {
                errors.push(Invalid::new(
                    object,
                    field,
                    text,
                    problem,
                    "a duration such as 90s or 1m30s",
                ));
                None
            }
        }
    };
    let hold = read("spec.holdTime", &spec.hold_time);
    let keepalive = read("spec.keepaliveTime", &spec.keepalive_time);
    let (hold, keepalive) = match (hold, keepalive) {
        (None, None) => (Duration::from_secs(90), Duration::from_secs(30)),
        (Some(h), None) => (h, Duration::from_secs(h.as_secs() / 3)),
        (None, Some(k)) => (k * 3, k),
        (Some(h), Some(k)) => (h, k),
    };
    if !hold.is_zero() && hold < Duration::from_secs(3) {
        errors.push(Invalid::new(
            object,
            "spec.holdTime",
            spec.hold_time
                .clone()
                .unwrap_or_else(|| format!("{}s (derived)", hold.as_secs())),
            "is below 3 seconds",
            "0 (no keepalives) or at least 3s (RFC 4271 4.2)",
        ));
    }
    if keepalive > hold {
        errors.push(Invalid::new(
            object,
            "spec.keepaliveTime",
            spec.keepalive_time.clone().unwrap_or_default(),
            format!("exceeds the hold time {}s", hold.as_secs()),
            "a keepalive no longer than the hold time (usually a third of it)",
        ));
    }
    (hold, keepalive)
}

/// Linux interface names: 1 to 15 bytes, no `/`, `:` or whitespace.
fn check_interface(object: &ObjectRef, field: &str, name: &str, errors: &mut Vec<Invalid>) {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !ok {
        errors.push(Invalid::new(
            object,
            field,
            name,
            "is not a Linux interface name",
            "1 to 15 characters without '/', ':' or whitespace",
        ));
    }
}

/// Result of offering a new configuration to a [`ConfigStore`].
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// Accepted; this is the new generation number.
    Accepted(u64),
    /// Identical to the running configuration; nothing changed.
    Unchanged(u64),
    /// Rejected; the previous configuration (if any) keeps running.
    Rejected(Rejected),
}

/// Holds the running configuration and the last rejection. An invalid
/// update never replaces a valid one.
#[derive(Debug, Clone)]
pub struct ConfigStore<T> {
    active: Option<T>,
    generation: u64,
    last_rejection: Option<Rejected>,
    rejections: u64,
}

impl<T> Default for ConfigStore<T> {
    fn default() -> Self {
        ConfigStore {
            active: None,
            generation: 0,
            last_rejection: None,
            rejections: 0,
        }
    }
}

impl<T: PartialEq> ConfigStore<T> {
    /// Offers the outcome of reading a configuration.
    pub fn offer(&mut self, candidate: Result<T, Rejected>) -> Offer {
        match candidate {
            Ok(config) => {
                self.last_rejection = None;
                if self.active.as_ref() == Some(&config) {
                    return Offer::Unchanged(self.generation);
                }
                self.active = Some(config);
                self.generation += 1;
                Offer::Accepted(self.generation)
            }
            Err(rejected) => {
                self.rejections += 1;
                self.last_rejection = Some(rejected.clone());
                Offer::Rejected(rejected)
            }
        }
    }

    /// The running configuration.
    pub fn active(&self) -> Option<&T> {
        self.active.as_ref()
    }

    /// Generation of the running configuration (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Why the latest offer was refused, if it was.
    pub fn last_rejection(&self) -> Option<&Rejected> {
        self.last_rejection.as_ref()
    }

    /// How many offers were refused so far.
    pub fn rejections(&self) -> u64 {
        self.rejections
    }
}
