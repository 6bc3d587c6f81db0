//! The CustomResourceDefinitions, generated from the kinds' Rust types
//! (behind the `kubernetes` feature).
//!
//! Group `metallb.io` with MetalLB's kinds, versions, field names and
//! printer columns, so a cluster moves from MetalLB to meshlb keeping its
//! CRDs and objects; group `meshlb.io` with L2Policy; Deckhouse's
//! MetalLoadBalancerClass (`network.deckhouse.io`, cluster-scoped), so a
//! Deckhouse user's classes apply unchanged. The spec types are
//! the ones in [`crate::kinds`] (the same types standalone mode parses); the
//! status-only kinds MetalLB's speakers and controller write
//! (ServiceL2Status, ServiceBGPStatus, ConfigurationState) are here.
//!
//! Per-object rules live in the schema, as bounds and CEL
//! (`x-kubernetes-validations`), so `kubectl apply` refuses a bad CIDR, a
//! hold time of 2 s or a malformed community with a message naming the
//! field, without an admission webhook. Rules between objects (overlapping
//! pools, references) are [`crate::config`]'s, as in standalone mode. The
//! rules here are never stricter than [`crate::config`]'s: anything meshlb
//! would run is admitted.
//!
//! BGPPeer serves v1beta1 beside the v1beta2 storage version with
//! conversion `None`: v1beta1's fields are a subset of v1beta2's under the
//! same names, so the API server converts by relabelling, as MetalLB's
//! conversion webhook does, without a webhook.

// clippy reads the repeated `type_ = "string"` of the kube printer columns
// as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::crd::merge_crds;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{
    BfdProfile, BgpAdvertisement, BgpPeer, BgpPeerV1beta1, Community, IpAddressPool, L2Advertisement, L2Policy,
    MetalLoadBalancerClass,
};

/// Every CustomResourceDefinition meshlb reads or writes, in the order
/// `meshlb-agent crds` prints them.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    let mut peer = merge_crds(vec![BgpPeer::crd(), BgpPeerV1beta1::crd()], "v1beta2")
        // Both inputs come from the derive with one group, kind and scope.
        .unwrap_or_else(|_| BgpPeer::crd());
    // merge_crds keeps the order given; list the versions oldest first as
    // MetalLB's CRD does.
    peer.spec.versions.sort_by(|a, b| a.name.cmp(&b.name));
    let mut all = vec![
        IpAddressPool::crd(),
        L2Advertisement::crd(),
        BgpAdvertisement::crd(),
        peer,
        BfdProfile::crd(),
        Community::crd(),
        ServiceL2Status::crd(),
        ServiceBgpStatus::crd(),
        ConfigurationState::crd(),
        L2Policy::crd(),
        AddressClaim::crd(),
        MetalLoadBalancerClass::crd(),
    ];
    for crd in &mut all {
        let spec_required = SPEC_REQUIRED.contains(&crd.spec.names.kind.as_str());
        for version in &mut crd.spec.versions {
            if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
                drop_empty_defaults(schema);
                known_formats(schema);
                if !spec_required {
                    optional_spec(schema);
                }
            }
        }
    }
    all
}

/// The kinds whose objects must have a `spec`: those whose spec has a
/// required field (an IPAddressPool's `addresses`, as in MetalLB's CRD;
/// meshlb's AddressClaim). Every other kind takes an object with no spec,
/// as MetalLB's CRDs do: the `kind: L2Advertisement` of MetalLB's Layer 2
/// guide, with only `metadata`, announces every pool.
const SPEC_REQUIRED: [&str; 2] = ["IPAddressPool", "AddressClaim"];

/// Drops `spec` from the object's required fields (the derive requires it
/// of every kind with a spec).
fn optional_spec(schema: &mut JSONSchemaProps) {
    if let Some(required) = schema.required.as_mut() {
        required.retain(|field| field != "spec");
        if required.is_empty() {
            schema.required = None;
        }
    }
}

/// Replaces the integer formats the API server does not know (schemars
/// writes `uint32` for `u32`; kubectl then warns on every apply) by
/// MetalLB's spelling: `int64` with the bounds of the unsigned type.
fn known_formats(schema: &mut JSONSchemaProps) {
    if schema.format.as_deref() == Some("uint32") {
        schema.format = Some("int64".into());
        schema.minimum = Some(0.0);
        schema.maximum = Some(f64::from(u32::MAX));
    }
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        known_formats(property);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        known_formats(items);
    }
}

/// Removes the `default: ""`, `[]` and `{}` the schema generator derives
/// from `#[serde(default)]`: the API server would write them into every
/// stored object (and check `""` against the field's rules), where
/// MetalLB's CRDs leave an absent field absent. Defaults with meaning
/// (`avoidBuggyIPs: false`) stay.
fn drop_empty_defaults(schema: &mut JSONSchemaProps) {
    let is_empty = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::Null => true,
        _ => false,
    };
    if schema.default.as_ref().is_some_and(|d| is_empty(&d.0)) {
        schema.default = None;
    }
    for property in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        drop_empty_defaults(property);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        drop_empty_defaults(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        drop_empty_defaults(values);
    }
}

/// The definitions as one multi-document YAML text, ready for
/// `kubectl apply -f -`.
pub fn definitions_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut text = String::new();
    for crd in definitions() {
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(text)
}

/// The status of kinds whose status MetalLB leaves empty (it declares the
/// status subresource all the same; so does meshlb, to keep the CRDs alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmptyStatus {}

/// IPAddressPool status: addresses in use and free, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IpAddressPoolStatus {
    /// Addresses of the pool held by services, IPv4.
    #[serde(rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    /// Addresses of the pool held by services, IPv6.
    #[serde(rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    /// Addresses of the pool still free, IPv4.
    #[serde(rename = "availableIPv4")]
    pub available_ipv4: i64,
    /// Addresses of the pool still free, IPv6 (saturating at `i64::MAX`).
    #[serde(rename = "availableIPv6")]
    pub available_ipv6: i64,
}

/// `ServiceL2Status` has no spec (MetalLB writes `spec: {}`).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    doc = "Which node announces a LoadBalancer Service over Layer 2 (written by the agents).",
    plural = "servicel2statuses",
    namespaced,
    status = "L2ServiceStatus",
    printcolumn(name = "Allocated Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Service Name", type_ = "string", json_path = ".status.serviceName"),
    printcolumn(name = "Service Namespace", type_ = "string", json_path = ".status.serviceNamespace")
)]
pub struct ServiceL2StatusSpec {}

/// Which node announces a service over Layer 2, and on which interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct L2ServiceStatus {
    /// The announcing node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = rules::immutable)]
    pub node: String,
    /// The service's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = rules::immutable)]
    pub service_name: String,
    /// The service's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = rules::immutable)]
    pub service_namespace: String,
    /// The interfaces the node answers on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceName>,
}

/// One interface of a [`L2ServiceStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InterfaceName {
    /// The interface's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `ServiceBGPStatus` has no spec (MetalLB writes `spec: {}`).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceBGPStatus",
    doc = "Which node announces a LoadBalancer Service to which BGP peers (written by the agents).",
    root = "ServiceBgpStatus",
    plural = "servicebgpstatuses",
    namespaced,
    status = "BgpServiceStatus",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Service Name", type_ = "string", json_path = ".status.serviceName"),
    printcolumn(name = "Service Namespace", type_ = "string", json_path = ".status.serviceNamespace")
)]
pub struct ServiceBgpStatusSpec {}

/// Which node announces a service to which BGP peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpServiceStatus {
    /// The announcing node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = rules::immutable)]
    pub node: String,
    /// The service's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = rules::immutable)]
    pub service_name: String,
    /// The service's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = rules::immutable)]
    pub service_namespace: String,
    /// The BGPPeer objects the service is announced to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

/// `ConfigurationState` has no spec at all: only status.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ConfigurationState",
    doc = "Whether a component's configuration was accepted, and why not (written by the agents).",
    namespaced,
    no_spec,
    status = "ConfigurationStateStatus",
    printcolumn(name = "Result", type_ = "string", json_path = ".status.result"),
    printcolumn(name = "ErrorSummary", type_ = "string", json_path = ".status.errorSummary"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ConfigurationStateSpec {}

/// One component's configuration result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationStateStatus {
    /// `Valid`, `Invalid` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ConfigurationResult>,
    /// The errors, joined, when the result is `Invalid`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_summary: String,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The result in a [`ConfigurationStateStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConfigurationResult {
    /// The last configuration read was accepted.
    Valid,
    /// The last configuration read was refused; the last good one runs.
    Invalid,
    /// Not known yet.
    Unknown,
}

/// `AddressClaim`: the allocator's record that an address is taken, and
/// by which Services (several, when they share it). One object per
/// address, named for it ([`claim_name`]), so the API server's uniqueness
/// of names is what makes a double allocation impossible: an allocator
/// writes an address into a Service's status only after a claim naming
/// that Service exists (see the allocator in meshlb-node-agent).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "meshlb.io",
    version = "v1alpha1",
    kind = "AddressClaim",
    plural = "addressclaims",
    namespaced,
    doc = "An address taken by one Service, or by Services sharing it (written by meshlb's allocator).",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(name = "Services", type_ = "string", json_path = ".spec.holders[*].name")
)]
#[serde(rename_all = "camelCase")]
pub struct AddressClaimSpec {
    /// The address claimed; never changes.
    #[schemars(transform = rules::claimed_address)]
    pub address: String,
    /// The pool it was given from.
    #[serde(default)]
    pub pool: String,
    /// The `allow-shared-ip` key of its holders, when they share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_key: Option<String>,
    /// The Services holding it.
    #[serde(default)]
    pub holders: Vec<ClaimHolder>,
}

/// A Service holding an [`AddressClaim`]: its namespace, name and uid
/// (a Service deleted and created again under its name is another holder).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ClaimHolder {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service's uid.
    pub uid: String,
}

impl ClaimHolder {
    /// The Service's namespace and name.
    pub fn service(&self) -> crate::service::ServiceKey {
        crate::service::ServiceKey::new(self.namespace.clone(), self.name.clone())
    }
}

/// The name of the [`AddressClaim`] of `address`: `v4-192.0.2.7`, or
/// `v6-` and the address's 32 hex digits (an IPv6 address in text holds
/// `:`, which names may not).
pub fn claim_name(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => format!("v4-{v4}"),
        std::net::IpAddr::V6(v6) => format!("v6-{:032x}", u128::from(v6)),
    }
}

/// The CEL rules and bounds, as schema transforms named for the field
/// they apply to (`#[schemars(transform = ...)]` on the kinds' fields).
/// Rules on list items go on the items, with bounds on the list and the
/// strings, so the API server's cost estimate stays within its budget.
pub(crate) mod rules {
    use schemars::Schema;
    use serde_json::{Value, json};

    /// Longest address entry: an IPv6 range with IPv4-mapped ends is 93.
    const MAX_ADDRESS_LEN: u64 = 128;
    /// Most address entries in one pool.
    const MAX_ADDRESSES: u64 = 1024;
    /// Longest community entry or alias name (a DNS subdomain's length).
    const MAX_COMMUNITY_LEN: u64 = 253;
    /// Most communities on one advertisement or Community object.
    const MAX_COMMUNITIES: u64 = 256;
    /// Longest duration text.
    const MAX_DURATION_LEN: u64 = 32;

    fn add_rules(schema: &mut Schema, rules: Value) {
        let object = schema.ensure_object();
        let list = object
            .entry("x-kubernetes-validations")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let (Value::Array(list), Value::Array(rules)) = (list, rules) {
            list.extend(rules);
        }
    }

    fn max_length(schema: &mut Schema, max: u64) {
        schema.insert("maxLength".into(), max.into());
    }

    /// Bounds a list and its string items, and puts `rules` on the items.
    fn each_item(schema: &mut Schema, max_items: u64, max_len: u64, rules: Value) {
        schema.insert("maxItems".into(), max_items.into());
        if let Some(Value::Object(items)) = schema.get_mut("items") {
            items.insert("maxLength".into(), max_len.into());
            items.insert("x-kubernetes-validations".into(), rules);
        }
    }

    /// AddressClaim `address`: an IP address, fixed at creation.
    pub fn claimed_address(schema: &mut Schema) {
        address(schema);
        immutable(schema);
    }

    /// A transition rule: the value may not change once set.
    pub fn immutable(schema: &mut Schema) {
        add_rules(
            schema,
            json!([{"rule": "self == oldSelf", "message": "Value is immutable"}]),
        );
    }

    /// IPAddressPool `addresses`: each a CIDR or a `first-last` range of
    /// one family (spaces around the parts allowed, as MetalLB trims them).
    pub fn addresses(schema: &mut Schema) {
        let first = "self.split('-')[0].trim()";
        let last = "self.split('-')[1].trim()";
        let rule = format!(
            "isCIDR(self.trim()) || (self.split('-').size() == 2 && isIP({first}) && isIP({last}) \
             && ip({first}).family() == ip({last}).family())"
        );
        each_item(
            schema,
            MAX_ADDRESSES,
            MAX_ADDRESS_LEN,
            json!([{
                "rule": rule,
                "messageExpression": "'must be a CIDR (192.0.2.0/24) or a first-last range of one family; not ' + self",
            }]),
        );
    }

    fn community(x: &str) -> String {
        let standard = format!(
            "({x}.trim().matches('^[0-9]{{1,5}}:[0-9]{{1,5}}$') && int({x}.trim().split(':')[0]) <= 65535 \
             && int({x}.trim().split(':')[1]) <= 65535)"
        );
        let part = |i: usize| format!("int({x}.trim().split(':')[{i}]) <= 4294967295");
        let large = format!(
            "({x}.trim().matches('^large:[0-9]{{1,10}}:[0-9]{{1,10}}:[0-9]{{1,10}}$') && {} && {} && {})",
            part(1),
            part(2),
            part(3)
        );
        let names: Vec<String> = meshlb_wire::bgp::Community::well_known()
            .map(|(_, name)| format!("'{name}'"))
            .collect();
        let well_known = format!("({x}.trim().lowerAscii().replace('_', '-') in [{}])", names.join(", "));
        format!("{standard} || {large} || {well_known}")
    }

    /// A Community object's alias `value`.
    pub fn community_value(schema: &mut Schema) {
        max_length(schema, MAX_COMMUNITY_LEN);
        add_rules(
            schema,
            json!([{
                "rule": community("self"),
                "messageExpression": "'must be AS:VALUE (each 0 to 65535), large:A:B:C (each 0 to 4294967295) or a \
                                      well-known name such as no-export; not ' + self",
            }]),
        );
    }

    /// A Community object's list of aliases.
    pub fn community_aliases(schema: &mut Schema) {
        schema.insert("maxItems".into(), MAX_COMMUNITIES.into());
    }

    /// BGPAdvertisement `communities`: values, or aliases (without `:`)
    /// of Community objects, which the configuration resolves.
    pub fn advertisement_communities(schema: &mut Schema) {
        each_item(
            schema,
            MAX_COMMUNITIES,
            MAX_COMMUNITY_LEN,
            json!([{
                "rule": format!("!self.contains(':') || {}", community("self")),
                "messageExpression": "'must be AS:VALUE (each 0 to 65535), large:A:B:C (each 0 to 4294967295), a \
                                      well-known name or a Community alias; not ' + self",
            }]),
        );
    }

    /// BGPAdvertisement: MetalLB's rule, word for word.
    pub fn advertisement(schema: &mut Schema) {
        add_rules(
            schema,
            json!([{
                "rule": "!has(self.serviceSelectors) || self.serviceSelectors.size() == 0 || \
                         ((!has(self.aggregationLength) || self.aggregationLength == 32) && \
                         (!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))",
                "message": "serviceSelectors and aggregationLength are mutually exclusive, can only be used \
                            together with default aggregationLength (32) and aggregationLengthV6 (128)",
            }]),
        );
    }

    /// An IP address field.
    pub fn address(schema: &mut Schema) {
        max_length(schema, MAX_ADDRESS_LEN);
        add_rules(
            schema,
            json!([{"rule": "isIP(self.trim())", "messageExpression": "'must be an IP address; not ' + self"}]),
        );
    }

    /// BGPPeer `routerID`.
    pub fn router_id(schema: &mut Schema) {
        max_length(schema, MAX_ADDRESS_LEN);
        add_rules(
            schema,
            json!([{
                "rule": "isIP(self.trim()) && ip(self.trim()).family() == 4",
                "messageExpression": "'must be an IPv4 address (a BGP identifier); not ' + self",
            }]),
        );
    }

    fn whole_seconds() -> Value {
        json!({"rule": "duration(self).getMilliseconds() % 1000 == 0 && duration(self).getSeconds() <= 65535",
               "messageExpression": "'must be whole seconds, at most 65535s; not ' + self"})
    }

    /// BGPPeer `holdTime`: 0 or at least 3 s (RFC 4271 4.2), whole
    /// seconds, at most 65535 s.
    pub fn hold_time(schema: &mut Schema) {
        max_length(schema, MAX_DURATION_LEN);
        add_rules(
            schema,
            json!([
                {"rule": "duration(self) == duration('0s') || duration(self) >= duration('3s')",
                 "messageExpression": "'must be 0 (no keepalives) or at least 3s (RFC 4271 4.2); not ' + self"},
                whole_seconds(),
            ]),
        );
    }

    /// BGPPeer `keepaliveTime`.
    pub fn keepalive_time(schema: &mut Schema) {
        max_length(schema, MAX_DURATION_LEN);
        add_rules(schema, json!([whole_seconds()]));
    }

    /// BGPPeer `connectTime`: MetalLB's rules, word for word.
    pub fn connect_time(schema: &mut Schema) {
        max_length(schema, MAX_DURATION_LEN);
        add_rules(
            schema,
            json!([
                {"rule": "duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535",
                 "message": "connect time should be between 1 seconds to 65535"},
                {"rule": "duration(self).getMilliseconds() % 1000 == 0",
                 "message": "connect time should contain a whole number of seconds"},
            ]),
        );
    }

    /// BGPPeer `enableGracefulRestart`: MetalLB's rule.
    pub fn graceful_restart(schema: &mut Schema) {
        add_rules(
            schema,
            json!([{"rule": "self == oldSelf", "message": "EnableGracefulRestart cannot be changed after creation"}]),
        );
    }

    /// BGPPeer v1beta2: the exclusive pairs, and keepalive within hold.
    pub fn peer(schema: &mut Schema) {
        add_rules(
            schema,
            json!([
                {"rule": "!(has(self.peerASN) && has(self.dynamicASN))",
                 "message": "peerASN and dynamicASN are mutually exclusive", "fieldPath": ".dynamicASN"},
                {"rule": "!(has(self.peerAddress) && has(self.interface))",
                 "message": "peerAddress and interface are mutually exclusive", "fieldPath": ".interface"},
                // Empty ones are absent, as MetalLB reads them: its
                // conversion from v1beta1 writes `passwordSecret: {}`.
                {"rule": "!(has(self.password) && self.password != '' && has(self.passwordSecret) \
                          && has(self.passwordSecret.name) && self.passwordSecret.name != '')",
                 "message": "password and passwordSecret are mutually exclusive", "fieldPath": ".passwordSecret"},
            ]),
        );
        require(schema, &["myASN"]);
        timers(schema);
    }

    /// BGPPeer v1beta1: the fields MetalLB's v1beta1 schema requires, and
    /// keepalive within hold.
    pub fn peer_v1beta1(schema: &mut Schema) {
        require(schema, &["myASN", "peerASN", "peerAddress"]);
        timers(schema);
    }

    /// Marks fields required (as MetalLB's schema does) and drops the
    /// default the generator gave them.
    fn require(schema: &mut Schema, fields: &[&str]) {
        if let Some(Value::Object(properties)) = schema.get_mut("properties") {
            for field in fields {
                if let Some(Value::Object(property)) = properties.get_mut(*field) {
                    property.remove("default");
                }
            }
        }
        let object = schema.ensure_object();
        let required = object.entry("required").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(required) = required {
            for field in fields {
                if !required.iter().any(|r| r == field) {
                    required.push(Value::from(*field));
                }
            }
        }
    }

    /// keepaliveTime within holdTime (both BGPPeer versions).
    fn timers(schema: &mut Schema) {
        add_rules(
            schema,
            json!([{"rule": "!has(self.holdTime) || !has(self.keepaliveTime) || \
                             duration(self.keepaliveTime) <= duration(self.holdTime)",
                    "message": "keepaliveTime must not exceed holdTime", "fieldPath": ".keepaliveTime"}]),
        );
    }

    /// MetalLoadBalancerClass `type`.
    pub fn class_type(schema: &mut Schema) {
        schema.insert("enum".into(), json!(["L2"]));
    }

    /// L2Policy `failback`.
    pub fn failback(schema: &mut Schema) {
        schema.insert("enum".into(), json!(["Revertive", "NonRevertive"]));
    }

    /// BGPPeer `dynamicASN`.
    pub fn dynamic_asn(schema: &mut Schema) {
        schema.insert("enum".into(), json!(["internal", "external"]));
    }
}
