//! The configuration kinds as written in YAML: MetalLB's `metallb.io` custom
//! resources with every documented field, meshlb's own `meshlb.io` kind, and
//! Deckhouse's `network.deckhouse.io` MetalLoadBalancerClass.
//!
//! These types mirror the manifests one to one and accept anything
//! well-formed; [`crate::config::Config`] turns a set of them into a
//! validated configuration. Unknown `spec` fields are rejected so that a
//! misspelt field (`autoAsign`) is an error rather than a silent default.

// clippy reads the repeated `type_ = "string"` of the kube printer columns
// as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use serde::{Deserialize, Serialize};

use crate::meta::{LabelSelector, StringMap};

/// `metallb.io/v1beta1` IPAddressPool spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "IPAddressPool",
        doc = "A pool of IP addresses that can be allocated to LoadBalancer Services.",
        root = "IpAddressPool",
        plural = "ipaddresspools",
        namespaced,
        status = "crate::crd::IpAddressPoolStatus",
        printcolumn(name = "Auto Assign", type_ = "boolean", json_path = ".spec.autoAssign"),
        printcolumn(name = "Avoid Buggy IPs", type_ = "boolean", json_path = ".spec.avoidBuggyIPs"),
        printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAddressPoolSpec {
    /// CIDRs or `first-last` ranges, IPv4 and IPv6.
    #[serde(default)]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::addresses))]
    pub addresses: Vec<String>,
    /// Whether services get addresses from this pool without asking for it
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// Skip IPv4 addresses ending in `.0` and `.255`.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Which services this pool serves first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocationSpec>,
}

/// `IPAddressPool.spec.serviceAllocation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAllocationSpec {
    /// Lower is preferred; 0 (the default) is the lowest priority.
    #[serde(default)]
    pub priority: i32,
    /// Namespaces whose services may use the pool.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespace label selectors (ORed with `namespaces`).
    #[serde(default)]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Service label selectors, ANDed with the namespace rule.
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

/// `metallb.io/v1beta1` L2Advertisement spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "L2Advertisement",
        doc = "Announces the addresses of the selected pools over Layer 2 (ARP and NDP).",
        plural = "l2advertisements",
        namespaced,
        status = "crate::crd::EmptyStatus",
        printcolumn(name = "IPAddressPools", type_ = "string", json_path = ".spec.ipAddressPools"),
        printcolumn(
            name = "IPAddressPool Selectors",
            type_ = "string",
            json_path = ".spec.ipAddressPoolSelectors"
        ),
        printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
        printcolumn(
            name = "Node Selectors",
            type_ = "string",
            json_path = ".spec.nodeSelectors",
            priority = 10
        ),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2AdvertisementSpec {
    /// Pools announced (with `ipAddressPoolSelectors`; neither means all).
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// Pools announced, by pool labels.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes allowed to announce (default all).
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to answer on (default all eligible).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Services announced, by service labels (default all).
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
    /// Soft preference among the allowed nodes.
    #[serde(default)]
    pub preferred_node_selectors: Vec<WeightedNodeSelector>,
}

/// A weighted node preference (`preferredNodeSelectors`, `nodePreferences`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedNodeSelector {
    /// 1 to 100; weights of matching entries are summed.
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 1, max = 100)))]
    pub weight: i32,
    /// Nodes this weight applies to.
    pub preference: LabelSelector,
}

/// `metallb.io/v1beta1` BGPAdvertisement spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "BGPAdvertisement",
        doc = "Announces the addresses of the selected pools to BGP peers.",
        root = "BgpAdvertisement",
        plural = "bgpadvertisements",
        namespaced,
        status = "crate::crd::EmptyStatus",
        printcolumn(name = "IPAddressPools", type_ = "string", json_path = ".spec.ipAddressPools"),
        printcolumn(
            name = "IPAddressPool Selectors",
            type_ = "string",
            json_path = ".spec.ipAddressPoolSelectors"
        ),
        printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
        printcolumn(
            name = "Node Selectors",
            type_ = "string",
            json_path = ".spec.nodeSelectors",
            priority = 10
        ),
    )
)]
#[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::advertisement))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpAdvertisementSpec {
    /// IPv4 prefix length announced (default 32).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 0, max = 32)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length: Option<i32>,
    /// IPv6 prefix length announced (default 128).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 0, max = 128)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length_v6: Option<i32>,
    /// LOCAL_PREF for iBGP peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// `AA:NN`, `large:A:B:C`, well-known names or Community aliases.
    #[serde(default)]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::advertisement_communities))]
    pub communities: Vec<String>,
    /// Pools announced (with selectors; neither means all).
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// Pools announced, by pool labels.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes used as next hops (default all).
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeer names to announce to (default all).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Services announced, by service labels (default all).
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

/// `metallb.io/v1beta2` BGPPeer spec (the storage version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta2",
        kind = "BGPPeer",
        root = "BgpPeer",
        doc = "A BGP session the selected nodes open to a router.",
        plural = "bgppeers",
        namespaced,
        status = "crate::crd::EmptyStatus",
        printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
        printcolumn(name = "ASN", type_ = "string", json_path = ".spec.peerASN"),
        printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
        printcolumn(name = "Multi Hops", type_ = "string", json_path = ".spec.ebgpMultiHop"),
    )
)]
#[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::peer))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    /// Our AS number.
    #[serde(default, rename = "myASN")]
    pub my_asn: u32,
    /// The peer's AS number (exclusive with `dynamicASN`).
    #[serde(default, rename = "peerASN", skip_serializing_if = "Option::is_none")]
    pub peer_asn: Option<u32>,
    /// `internal` or `external`: learn the peer AS from its OPEN.
    #[serde(default, rename = "dynamicASN", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::dynamic_asn))]
    pub dynamic_asn: Option<String>,
    /// AS presented to the peer instead of `myASN`.
    #[serde(default, rename = "localASN", skip_serializing_if = "Option::is_none")]
    pub local_asn: Option<u32>,
    /// The peer's address (exclusive with `interface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::address))]
    pub peer_address: Option<String>,
    /// Unnumbered session over this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Local address to connect from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::address))]
    pub source_address: Option<String>,
    /// TCP port of the peer (default 179).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 0, max = 16384)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<i64>,
    /// BGP hold time (Go duration).
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::hold_time))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<String>,
    /// BGP keepalive interval (Go duration).
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::keepalive_time))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// Wait between connection attempts (Go duration, whole seconds).
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::connect_time))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<String>,
    /// BGP identifier (an IPv4 address).
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::router_id))]
    #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Nodes that peer (default all).
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password (exclusive with `passwordSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Secret of type `kubernetes.io/basic-auth` holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretReference>,
    /// BFDProfile name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_profile: Option<String>,
    /// Advertise the Graceful Restart capability.
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::graceful_restart))]
    #[serde(default)]
    pub enable_graceful_restart: bool,
    /// Allow an eBGP peer more than one hop away.
    #[serde(default, rename = "ebgpMultiHop")]
    pub ebgp_multi_hop: bool,
    /// VRF to peer from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    /// Deprecated: one session per family.
    #[serde(default, rename = "disableMP")]
    pub disable_mp: bool,
    /// Also carry the other address family over this session.
    #[serde(default)]
    pub dual_stack_address_family: bool,
}

/// `metallb.io/v1beta1` BGPPeer spec (deprecated; converted to v1beta2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "BGPPeer",
        root = "BgpPeerV1beta1",
        doc = "A BGP session the selected nodes open to a router (deprecated version).",
        plural = "bgppeers",
        namespaced,
        status = "crate::crd::EmptyStatus",
        storage = false,
        deprecated = "metallb.io/v1beta1 BGPPeer is deprecated; use metallb.io/v1beta2",
        printcolumn(name = "Address", type_ = "string", json_path = ".spec.peerAddress"),
        printcolumn(name = "ASN", type_ = "string", json_path = ".spec.peerASN"),
        printcolumn(name = "BFD Profile", type_ = "string", json_path = ".spec.bfdProfile"),
        printcolumn(name = "Multi Hops", type_ = "string", json_path = ".spec.ebgpMultiHop"),
    )
)]
#[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::peer_v1beta1))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpecV1beta1 {
    /// Our AS number.
    #[serde(default, rename = "myASN")]
    pub my_asn: u32,
    /// The peer's AS number.
    #[serde(default, rename = "peerASN")]
    pub peer_asn: u32,
    /// The peer's address.
    #[serde(default)]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::address))]
    pub peer_address: String,
    /// Local address to connect from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::address))]
    pub source_address: Option<String>,
    /// TCP port of the peer.
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 0, max = 16384)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<i64>,
    /// BGP hold time.
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::hold_time))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<String>,
    /// BGP keepalive interval.
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::keepalive_time))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// BGP identifier.
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::router_id))]
    #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Nodes that peer.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// BFDProfile name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_profile: Option<String>,
    /// Allow an eBGP peer more than one hop away.
    #[serde(default, rename = "ebgpMultiHop")]
    pub ebgp_multi_hop: bool,
}

impl From<BgpPeerSpecV1beta1> for BgpPeerSpec {
    fn from(old: BgpPeerSpecV1beta1) -> BgpPeerSpec {
        BgpPeerSpec {
            my_asn: old.my_asn,
            peer_asn: Some(old.peer_asn),
            peer_address: Some(old.peer_address),
            source_address: old.source_address,
            peer_port: old.peer_port,
            hold_time: old.hold_time,
            keepalive_time: old.keepalive_time,
            router_id: old.router_id,
            node_selectors: old.node_selectors,
            password: old.password,
            bfd_profile: old.bfd_profile,
            ebgp_multi_hop: old.ebgp_multi_hop,
            ..BgpPeerSpec::default()
        }
    }
}

/// A reference to a Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretReference {
    /// Secret name.
    #[serde(default)]
    pub name: String,
    /// Secret namespace (default: the peer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `metallb.io/v1beta1` BFDProfile spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "BFDProfile",
        doc = "BFD timers and modes for BGP sessions.",
        root = "BfdProfile",
        plural = "bfdprofiles",
        namespaced,
        status = "crate::crd::EmptyStatus",
        printcolumn(name = "Passive Mode", type_ = "boolean", json_path = ".spec.passiveMode"),
        printcolumn(name = "Transmit Interval", type_ = "integer", json_path = ".spec.transmitInterval"),
        printcolumn(name = "Receive Interval", type_ = "integer", json_path = ".spec.receiveInterval"),
        printcolumn(name = "Multiplier", type_ = "integer", json_path = ".spec.detectMultiplier"),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BfdProfileSpec {
    /// Minimum receive interval in ms (10 to 60000, default 300).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 10, max = 60000)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_interval: Option<i64>,
    /// Minimum transmit interval in ms (10 to 60000, default 300).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 10, max = 60000)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmit_interval: Option<i64>,
    /// Detection multiplier (2 to 255, default 3).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 2, max = 255)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_multiplier: Option<i64>,
    /// Echo transmit interval in ms (10 to 60000, default 50).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 10, max = 60000)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_interval: Option<i64>,
    /// Use echo packets (single hop only).
    #[serde(default)]
    pub echo_mode: bool,
    /// Wait for the peer to start the session.
    #[serde(default)]
    pub passive_mode: bool,
    /// Minimum incoming TTL for multihop sessions (1 to 254, default 254).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 1, max = 254)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ttl: Option<i64>,
}

/// `metallb.io/v1beta1` Community spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "metallb.io",
        version = "v1beta1",
        kind = "Community",
        doc = "Names for BGP community values, used in BGPAdvertisement communities.",
        plural = "communities",
        namespaced,
        status = "crate::crd::EmptyStatus",
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunitySpec {
    /// Named community values.
    #[serde(default)]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::community_aliases))]
    pub communities: Vec<CommunityAlias>,
}

/// One alias of a Community object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityAlias {
    /// The alias used in BGPAdvertisement `communities`.
    #[serde(default)]
    pub name: String,
    /// `AA:NN` or `large:A:B:C`.
    #[serde(default)]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::community_value))]
    pub value: String,
}

/// `meshlb.io/v1alpha1` L2Policy spec: meshlb's Layer 2 extensions.
///
/// A policy applies to the services its selectors match (all when empty).
/// When several policies match a service, the one whose name sorts first
/// applies, so every node resolves the same policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "meshlb.io",
        version = "v1alpha1",
        kind = "L2Policy",
        doc = "meshlb's Layer 2 extensions: several addresses per service on distinct nodes, node preference, failback.",
        plural = "l2policies",
        namespaced,
        status = "crate::crd::EmptyStatus",
        printcolumn(
            name = "Addresses Per Service",
            type_ = "integer",
            json_path = ".spec.addressesPerService"
        ),
        printcolumn(name = "Failback", type_ = "string", json_path = ".spec.failback"),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L2PolicySpec {
    /// Services the policy applies to (default all).
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
    /// Addresses each service gets per family, each announced from a
    /// different node (1 to 16, default 1).
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 1, max = 16)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_per_service: Option<i64>,
    /// Node preference weights for ownership (1 to 100 each, summed).
    #[serde(default)]
    pub node_preferences: Vec<WeightedNodeSelector>,
    /// `Revertive` (default, as MetalLB): a returning preferred node takes
    /// the address back, and a node that joins or returns takes its share
    /// of addresses from the busiest. `NonRevertive`: the address stays
    /// where it is until its owner fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::failback))]
    pub failback: Option<String>,
}

/// `network.deckhouse.io/v1alpha1` MetalLoadBalancerClass spec: Deckhouse's
/// Layer 2 load balancer class (its `metallb` module), accepted as
/// Deckhouse's manifests write it. A class is a pool of addresses, the
/// nodes that announce them and on which interfaces; a Service belongs to
/// it by `spec.loadBalancerClass`, by the
/// `network.deckhouse.io/metal-load-balancer-class` annotation, or as the
/// default class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "kubernetes",
    kube(
        group = "network.deckhouse.io",
        version = "v1alpha1",
        kind = "MetalLoadBalancerClass",
        doc = "Deckhouse's Layer 2 load balancer class: an address pool, the nodes that announce it and their interfaces.",
        plural = "metalloadbalancerclasses",
        status = "crate::crd::EmptyStatus",
        printcolumn(name = "Default", type_ = "boolean", json_path = ".spec.isDefault"),
        printcolumn(name = "Address Pool", type_ = "string", json_path = ".spec.addressPool"),
        printcolumn(name = "Node Selector", type_ = "string", json_path = ".spec.nodeSelector"),
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetalLoadBalancerClassSpec {
    /// `L2` (or absent, which means the same).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::class_type))]
    pub type_: Option<String>,
    /// CIDRs or `first-last` ranges, IPv4 and IPv6.
    #[serde(default)]
    #[cfg_attr(feature = "kubernetes", schemars(transform = crate::crd::rules::addresses))]
    pub address_pool: Vec<String>,
    /// Node labels, each to equal (empty: every node).
    #[serde(default)]
    pub node_selector: StringMap,
    /// Layer 2 settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<MetalLoadBalancerClassL2>,
    /// The class of every LoadBalancer Service that names no class.
    #[serde(default)]
    pub is_default: bool,
    /// Accepted and ignored, as Deckhouse does (its speakers run with the
    /// module's tolerations).
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
}

/// `MetalLoadBalancerClass.spec.l2`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetalLoadBalancerClassL2 {
    /// Interfaces to answer on (empty: every eligible one).
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// A core/v1 toleration, as a MetalLoadBalancerClass may carry one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Taint effect matched (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// Taint key matched (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// How long a NoExecute taint is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
    /// Taint value matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}
