//! The validated configuration: pools, advertisements, peers, profiles,
//! meshlb policies and Deckhouse's classes, cross-checked as a whole.
//!
//! [`Config::build`] rejects at least everything MetalLB rejects
//! (`internal/config/config.go`, `validation.go` and the CRD schemas), and a
//! few things MetalLB lets through to fail later. Every problem is reported
//! at once, each naming the object, the field, the value and what is
//! allowed (the validators are in `validate/`). [`ConfigStore`] keeps the
//! last configuration that passed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use meshlb_wire::bgp::{Community, LargeCommunity};

use crate::addresses::{AddressRange, Family};
use crate::error::Error;
use crate::meta::{LabelSelector, StringMap, any_matches};
use crate::secret::Md5Key;

mod store;
mod validate;

pub use store::{ConfigStore, Offer};

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
    /// The MetalLoadBalancerClass whose pool this is (named after it): it
    /// serves that class's Services, and they take from it alone.
    pub class: Option<String>,
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
    /// The class whose advertisement this is: it covers its class's pool
    /// alone, and no other advertisement covers a class's pool.
    pub class: Option<String>,
}

impl PoolScope {
    /// Neither names nor selectors means every pool but the classes'.
    pub fn covers(&self, pool: &Pool) -> bool {
        match (&self.class, &pool.class) {
            (Some(ours), Some(its)) => ours == its,
            (Some(_), None) | (None, Some(_)) => false,
            (None, None) => {
                (self.names.is_empty() && self.selectors.is_empty())
                    || self.names.contains(&pool.name)
                    || self.selectors.iter().any(|s| s.matches(&pool.labels))
            }
        }
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

/// What happens when a more preferred node comes back, or a node joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// It takes the address back (MetalLB's behaviour), and a node that
    /// comes takes its share of addresses from the busiest.
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

/// A validated MetalLoadBalancerClass (Deckhouse): its pool and its
/// L2Advertisement, both named after it, are in [`Config::pools`] and
/// [`Config::l2_advertisements`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerClass {
    /// Name (the `loadBalancerClass` its Services name).
    pub name: String,
    /// The class of LoadBalancer Services that name no class.
    pub is_default: bool,
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
    /// Deckhouse MetalLoadBalancerClasses (at most one of them default).
    pub classes: BTreeMap<String, LoadBalancerClass>,
    /// What is accepted but probably not meant: an advertisement naming a
    /// pool or peer that does not exist (yet: in a cluster objects arrive
    /// in any order, and MetalLB ignores such names too). The name matches
    /// nothing until an object of that name appears.
    pub warnings: Vec<Error>,
}

impl Config {
    /// The default MetalLoadBalancerClass, if one is.
    pub fn default_class(&self) -> Option<&LoadBalancerClass> {
        self.classes.values().find(|c| c.is_default)
    }

    /// The L2Policy applying to a service with these labels: the first by
    /// name whose selectors match.
    pub fn l2_policy_for(&self, service_labels: &StringMap) -> Option<&L2Policy> {
        self.l2_policies
            .values()
            .find(|p| any_matches(&p.service_selectors, service_labels))
    }
}
