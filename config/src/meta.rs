//! Kubernetes object metadata and label selectors, as far as meshlb needs them.
//!
//! The semantics follow `k8s.io/apimachinery`: an empty selector matches
//! everything, `matchLabels` and every `matchExpressions` entry are ANDed, and
//! a list of selectors (MetalLB's `nodeSelectors`, `serviceSelectors`, ...)
//! matches when any one of them does, an empty list matching everything.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Invalid;

/// Labels or annotations: string keys to string values, kept sorted so every
/// node iterates them in the same order.
pub type StringMap = BTreeMap<String, String>;

/// The part of `metadata` meshlb reads. Other metadata fields
/// (managedFields, ownerReferences, ...) are accepted and ignored, so
/// objects exported from a cluster load unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name; required.
    #[serde(default)]
    pub name: String,
    /// Namespace; for Services it defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels, matched by selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: StringMap,
    /// Annotations; Services carry the `metallb.io/...` knobs here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: StringMap,
    /// RFC 3339 creation time, when the object came from a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// The API server's id of the object, when it came from a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The version the object was read at, when it came from a cluster:
    /// writes that depend on what was read carry it as a precondition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// The kinds meshlb reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `metallb.io` IPAddressPool.
    IpAddressPool,
    /// `metallb.io` L2Advertisement.
    L2Advertisement,
    /// `metallb.io` BGPAdvertisement.
    BgpAdvertisement,
    /// `metallb.io` BGPPeer (v1beta2, or v1beta1 converted).
    BgpPeer,
    /// `metallb.io` BFDProfile.
    BfdProfile,
    /// `metallb.io` Community.
    Community,
    /// `meshlb.io` L2Policy: meshlb's own L2 extensions.
    L2Policy,
    /// `network.deckhouse.io` MetalLoadBalancerClass: Deckhouse's Layer 2
    /// classes (cluster-scoped).
    MetalLoadBalancerClass,
    /// core/v1 Service.
    Service,
    /// core/v1 Namespace (its labels feed `namespaceSelectors`).
    Namespace,
    /// discovery.k8s.io/v1 EndpointSlice (which nodes have ready endpoints).
    EndpointSlice,
    /// core/v1 Node (labels and the conditions that rule a node out).
    Node,
    /// core/v1 Secret (a BGPPeer's `passwordSecret`).
    Secret,
}

impl Kind {
    /// The name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IpAddressPool => "IPAddressPool",
            Kind::L2Advertisement => "L2Advertisement",
            Kind::BgpAdvertisement => "BGPAdvertisement",
            Kind::BgpPeer => "BGPPeer",
            Kind::BfdProfile => "BFDProfile",
            Kind::Community => "Community",
            Kind::L2Policy => "L2Policy",
            Kind::MetalLoadBalancerClass => "MetalLoadBalancerClass",
            Kind::Service => "Service",
            Kind::Namespace => "Namespace",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::Secret => "Secret",
        }
    }

    /// The apiVersion meshlb reads and writes this kind at (BGPPeer is
    /// also read at `metallb.io/v1beta1`).
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::IpAddressPool
            | Kind::L2Advertisement
            | Kind::BgpAdvertisement
            | Kind::BfdProfile
            | Kind::Community => "metallb.io/v1beta1",
            Kind::BgpPeer => "metallb.io/v1beta2",
            Kind::L2Policy => "meshlb.io/v1alpha1",
            Kind::MetalLoadBalancerClass => "network.deckhouse.io/v1alpha1",
            Kind::Service | Kind::Namespace | Kind::Node | Kind::Secret => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    /// The namespace an object of this kind is in when its manifest names
    /// none: Services and EndpointSlices are read as in `default` (their
    /// keys say so); meshlb's and MetalLB's own kinds are shown as written.
    pub fn implied_namespace(self) -> Option<&'static str> {
        match self {
            Kind::Service | Kind::EndpointSlice => Some("default"),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one object in messages: `IPAddressPool metallb-system/pool-a`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The object's kind.
    pub kind: Kind,
    /// Its namespace, when it has one.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// The reference for an object of `kind` with this metadata.
    pub fn new(kind: Kind, meta: &ObjectMeta) -> ObjectRef {
        ObjectRef::named(kind, meta.namespace.clone(), meta.name.clone())
    }

    /// The reference for an object of `kind` named `name` in `namespace`
    /// (or in the namespace the kind implies, if none).
    pub fn named(kind: Kind, namespace: Option<String>, name: String) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: namespace.or_else(|| kind.implied_namespace().map(str::to_owned)),
            name,
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() { "<unnamed>" } else { &self.name };
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, name),
            None => write!(f, "{} {}", self.kind, name),
        }
    }
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Every listed label must be present with this value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: StringMap,
    /// Every expression must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`; must be empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy this selector. Unknown operators never match
    /// (validation rejects them before a selector is used).
    pub fn matches(&self, labels: &StringMap) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => value.is_some_and(|v| req.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// A canonical text form (sorted), used to compare selectors for sharing.
    pub fn canonical(&self) -> String {
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for req in &self.match_expressions {
            let mut values = req.values.clone();
            values.sort();
            parts.push(format!("{} {} ({})", req.key, req.operator, values.join(",")));
        }
        parts.sort();
        parts.join(";")
    }

    /// Checks keys, values and operators; `field` is the selector's path.
    pub fn validate(&self, object: &ObjectRef, field: &str, errors: &mut Vec<Invalid>) {
        for (key, value) in &self.match_labels {
            check_label_key(object, &format!("{field}.matchLabels"), key, errors);
            check_label_value(object, &format!("{field}.matchLabels[{key}]"), value, errors);
        }
        for (i, req) in self.match_expressions.iter().enumerate() {
            let path = format!("{field}.matchExpressions[{i}]");
            check_label_key(object, &format!("{path}.key"), &req.key, errors);
            match req.operator.as_str() {
                "In" | "NotIn" => {
                    if req.values.is_empty() {
                        errors.push(Invalid::new(
                            object,
                            format!("{path}.values"),
                            "[]",
                            format!("operator {} needs at least one value", req.operator),
                            "one or more label values",
                        ));
                    }
                    for (j, v) in req.values.iter().enumerate() {
                        check_label_value(object, &format!("{path}.values[{j}]"), v, errors);
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !req.values.is_empty() {
                        errors.push(Invalid::new(
                            object,
                            format!("{path}.values"),
                            req.values.join(","),
                            format!("operator {} takes no values", req.operator),
                            "an empty list",
                        ));
                    }
                }
                other => errors.push(Invalid::new(
                    object,
                    format!("{path}.operator"),
                    other,
                    "is not a selector operator",
                    "In, NotIn, Exists or DoesNotExist",
                )),
            }
        }
    }
}

/// Whether any selector in `selectors` matches; an empty list matches all.
pub fn any_matches(selectors: &[LabelSelector], labels: &StringMap) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

/// Validates every selector of a list field.
pub fn validate_selectors(object: &ObjectRef, field: &str, selectors: &[LabelSelector], errors: &mut Vec<Invalid>) {
    for (i, selector) in selectors.iter().enumerate() {
        selector.validate(object, &format!("{field}[{i}]"), errors);
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// A label name part: at most 63 characters, alphanumerics, `-`, `_`, `.`,
/// beginning and ending with an alphanumeric.
fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(is_name_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A DNS-1123 subdomain: at most 253 characters of lower-case labels.
pub fn valid_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn check_label_key(object: &ObjectRef, field: &str, key: &str, errors: &mut Vec<Invalid>) {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => valid_dns_subdomain(prefix) && valid_label_name(name),
        None => valid_label_name(key),
    };
    if !ok {
        errors.push(Invalid::new(
            object,
            field,
            key,
            "is not a valid label key",
            "an optional DNS subdomain prefix and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'",
        ));
    }
}

fn check_label_value(object: &ObjectRef, field: &str, value: &str, errors: &mut Vec<Invalid>) {
    if !(value.is_empty() || valid_label_name(value)) {
        errors.push(Invalid::new(
            object,
            field,
            value,
            "is not a valid label value",
            "empty, or at most 63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> StringMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn selector_semantics_follow_apimachinery() {
        let node = labels(&[("zone", "a"), ("role", "edge")]);
        assert!(LabelSelector::default().matches(&node));
        let by_label = LabelSelector {
            match_labels: labels(&[("zone", "a")]),
            ..Default::default()
        };
        assert!(by_label.matches(&node));
        assert!(!by_label.matches(&labels(&[("zone", "b")])));
        let cases = [
            (expr("zone", "In", &["a", "b"]), true),
            (expr("zone", "In", &["c"]), false),
            (expr("zone", "NotIn", &["c"]), true),
            (expr("missing", "NotIn", &["c"]), true),
            (expr("role", "Exists", &[]), true),
            (expr("role", "DoesNotExist", &[]), false),
            (expr("zone", "Bogus", &[]), false),
        ];
        for (req, want) in cases {
            let s = LabelSelector {
                match_expressions: vec![req.clone()],
                ..Default::default()
            };
            assert_eq!(s.matches(&node), want, "{req:?}");
        }
        assert!(any_matches(&[], &node));
        assert!(!any_matches(std::slice::from_ref(&by_label), &labels(&[])));
    }

    #[test]
    fn invalid_selectors_are_named() {
        let obj = ObjectRef {
            kind: Kind::L2Advertisement,
            namespace: None,
            name: "ad".into(),
        };
        let s = LabelSelector {
            match_labels: labels(&[("bad key!", "v")]),
            match_expressions: vec![expr("zone", "In", &[]), expr("zone", "Near", &[])],
        };
        let mut errors = Vec::new();
        s.validate(&obj, "spec.nodeSelectors[0]", &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(text[0].contains("spec.nodeSelectors[0].matchLabels") && text[0].contains("bad key!"));
        assert!(text[1].contains("matchExpressions[0].values") && text[1].contains("needs at least one value"));
        assert!(text[2].contains("Near") && text[2].contains("In, NotIn, Exists or DoesNotExist"));
    }

    #[test]
    fn canonical_form_ignores_order() {
        let a = LabelSelector {
            match_expressions: vec![expr("x", "In", &["2", "1"])],
            ..Default::default()
        };
        let b = LabelSelector {
            match_expressions: vec![expr("x", "In", &["1", "2"])],
            ..Default::default()
        };
        assert_eq!(a.canonical(), b.canonical());
    }
}
