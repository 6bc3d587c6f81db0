//! Deckhouse's Layer 2 objects: the MetalLoadBalancerClass and the Service
//! of its module's documented example (`fixtures/deckhouse-example.yaml`),
//! how a Service finds its class, and the annotations Deckhouse reads.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use meshlb_config::reconcile::ServiceOutcome;
use meshlb_config::service::{ClassFilter, ServiceKey};
use meshlb_config::{Inventory, Reconciler, parse_documents};

/// The documented example, as written (comments included).
const DOCUMENTED: &str = include_str!("fixtures/deckhouse-example.yaml");

fn inventory(text: &str) -> Inventory {
    Inventory::build(&parse_documents(text, "t.yaml").unwrap().objects).unwrap()
}

fn apply(text: &str) -> BTreeMap<ServiceKey, std::sync::Arc<ServiceOutcome>> {
    Reconciler::new(ClassFilter::default(), BTreeMap::new()).apply(&inventory(text), Instant::now())
}

fn addresses(outcomes: &BTreeMap<ServiceKey, std::sync::Arc<ServiceOutcome>>, name: &str) -> Vec<String> {
    let outcome = outcomes
        .iter()
        .find(|(k, _)| &*k.name == name)
        .map(|(_, o)| o)
        .unwrap_or_else(|| panic!("no outcome for {name}: {outcomes:?}"));
    match &**outcome {
        ServiceOutcome::Assigned(a) => a.addresses.iter().map(IpAddr::to_string).collect(),
        other => panic!("{name}: {other}"),
    }
}

/// A LoadBalancer Service on port 80 (unless `extra_spec` names its ports).
fn service(name: &str, extra_meta: &str, extra_spec: &str) -> String {
    let ports = if extra_spec.contains("ports:") {
        ""
    } else {
        "  ports: [{port: 80}]\n"
    };
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{extra_meta}spec:\n  type: LoadBalancer\n{ports}{extra_spec}"
    )
}

const POOL: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: metallb-pool, namespace: metallb-system}
spec: {addresses: [203.0.113.0/28]}
";

#[test]
fn the_documented_example_gets_three_addresses_from_its_class() {
    let inventory = inventory(DOCUMENTED);
    let class = &inventory.config.classes["ingress"];
    assert!(!class.is_default);
    let pool = &inventory.config.pools["ingress"];
    assert_eq!(pool.class.as_deref(), Some("ingress"));
    let advertisement = &inventory.config.l2_advertisements["ingress"];
    assert!(advertisement.pools.covers(pool));
    assert_eq!(
        advertisement.node_selectors[0].match_labels,
        BTreeMap::from([("node-role.kubernetes.io/loadbalancer".to_owned(), String::new())])
    );
    let mut reconciler = Reconciler::new(ClassFilter::default(), BTreeMap::new());
    let outcomes = reconciler.apply(&inventory, Instant::now());
    assert_eq!(
        addresses(&outcomes, "nginx-deployment"),
        ["192.168.2.100", "192.168.2.101", "192.168.2.102"],
        "the three of Deckhouse's `kubectl get svc`"
    );
    // The pool's counters, which the metrics give as MetalLB's
    // metallb_allocator_addresses_*{pool} (Deckhouse's dashboards), name
    // the class.
    let counters = reconciler.allocator().counters();
    let (_, ingress) = counters.iter().find(|(pool, _)| pool.as_str() == "ingress").unwrap();
    assert_eq!((ingress.v4.in_use, ingress.v4.total), (3, 51));
}

#[test]
fn a_class_pool_serves_its_class_alone_and_other_advertisements_do_not_cover_it() {
    let text = format!(
        "{POOL}---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: all, namespace: metallb-system}}\n---\n{DOCUMENTED}{}{}",
        service("classless", "", ""),
        service("named-pool", "  annotations: {metallb.io/address-pool: ingress}\n", ""),
    );
    let inventory = inventory(&text);
    assert!(
        !inventory.config.l2_advertisements["all"]
            .pools
            .covers(&inventory.config.pools["ingress"]),
        "an advertisement of every pool covers no class's pool"
    );
    let outcomes = apply(&text);
    assert_eq!(addresses(&outcomes, "classless"), ["203.0.113.0"]);
    let refused = outcomes.iter().find(|(k, _)| &*k.name == "named-pool").unwrap().1;
    assert!(
        refused.to_string().contains("MetalLoadBalancerClass ingress's"),
        "{refused}"
    );
}

#[test]
fn which_class_a_service_gets() {
    let default_class = "
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {name: l2-default}
spec: {addressPool: [198.51.100.0/28], isDefault: true}
";
    let text = format!(
        "{POOL}---\n{DOCUMENTED}{default_class}{}{}{}{}{}",
        service("classless", "", ""),
        service(
            "annotated",
            "  annotations: {network.deckhouse.io/metal-load-balancer-class: ingress}\n",
            ""
        ),
        service("foreign", "", "  loadBalancerClass: example.com/other\n"),
        service("meshlb", "", "  loadBalancerClass: meshlb.io/meshlb\n"),
        service(
            "unknown",
            "  annotations: {network.deckhouse.io/metal-load-balancer-class: nope}\n",
            ""
        ),
    );
    let outcomes = apply(&text);
    assert_eq!(addresses(&outcomes, "classless"), ["198.51.100.0"], "the default class");
    // Served in name order: the first of the class's addresses.
    assert_eq!(
        addresses(&outcomes, "annotated"),
        ["192.168.2.100"],
        "the annotation's class"
    );
    assert!(
        !outcomes.keys().any(|k| &*k.name == "foreign"),
        "another implementation's Service is not ours, default or not"
    );
    assert_eq!(
        addresses(&outcomes, "meshlb"),
        ["203.0.113.0"],
        "meshlb's own class is MetalLB-style, not the default class"
    );
    let unknown = outcomes.iter().find(|(k, _)| &*k.name == "unknown").unwrap().1;
    assert!(
        unknown
            .to_string()
            .contains("network.deckhouse.io/metal-load-balancer-class] \"nope\" names no MetalLoadBalancerClass"),
        "{unknown}"
    );
}

#[test]
fn two_default_classes_are_refused_naming_both() {
    let text = "
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {name: a}
spec: {addressPool: [198.51.100.0/28], isDefault: true}
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {name: b}
spec: {addressPool: [198.51.100.16/28], isDefault: true}
";
    let rejected = Inventory::build(&parse_documents(text, "t.yaml").unwrap().objects).unwrap_err();
    let text = rejected.to_string();
    assert!(
        text.contains("MetalLoadBalancerClass a: spec.isDefault \"true\" is set on 2 classes (a, b)")
            && text.contains("MetalLoadBalancerClass b: spec.isDefault"),
        "{text}"
    );
}

#[test]
fn bad_classes_are_refused_with_the_field() {
    let text = format!(
        "{POOL}---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {{name: metallb-pool}}
spec: {{addressPool: [203.0.113.8/29], type: BGP, l2: {{interfaces: ['bad name']}}}}
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {{name: empty}}
spec: {{nodeSelector: {{'bad key!': x}}}}
"
    );
    let text = Inventory::build(&parse_documents(&text, "t.yaml").unwrap().objects)
        .unwrap_err()
        .to_string();
    for wanted in [
        "MetalLoadBalancerClass metallb-pool: spec.type \"BGP\" is not a class type meshlb serves",
        "MetalLoadBalancerClass metallb-pool: metadata.name \"metallb-pool\" is also an IPAddressPool's name",
        "MetalLoadBalancerClass metallb-pool: spec.l2.interfaces[0]",
        "MetalLoadBalancerClass empty: spec.addressPool \"\" is empty",
        "MetalLoadBalancerClass empty: spec.nodeSelector[0]",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in\n{text}");
    }
}

#[test]
fn deckhouse_annotations_count_name_and_share_addresses() {
    let text = format!(
        "{DOCUMENTED}{}{}{}{}{}{}",
        service(
            "pinned",
            "  annotations:\n    network.deckhouse.io/l2-load-balancer-external-ips-count: \"3\"\n    network.deckhouse.io/load-balancer-ips: 192.168.2.140, 192.168.2.120\n",
            "  loadBalancerClass: ingress\n"
        ),
        service(
            "zero",
            "  annotations: {network.deckhouse.io/l2-load-balancer-external-ips-count: \"0\"}\n",
            "  loadBalancerClass: ingress\n"
        ),
        service(
            "words",
            "  annotations: {network.deckhouse.io/l2-load-balancer-external-ips-count: three}\n",
            "  loadBalancerClass: ingress\n"
        ),
        service(
            "shared-current",
            "  annotations: {network.deckhouse.io/load-balancer-shared-ip-key: k, network.deckhouse.io/load-balancer-ips: 192.168.2.150}\n",
            "  loadBalancerClass: ingress\n  externalTrafficPolicy: Cluster\n"
        ),
        service(
            "shared-older",
            "  annotations: {network.deckhouse.io/load-balancer-allow-shared-ip: k, network.deckhouse.io/load-balancer-ips: 192.168.2.150}\n",
            "  loadBalancerClass: ingress\n  ports: [{port: 81}]\n"
        ),
        service(
            "shared-oldest",
            "  annotations: {network.deckhouse.io/allow-shared-ip: k, network.deckhouse.io/load-balancer-ips: 192.168.2.150}\n",
            "  loadBalancerClass: ingress\n  ports: [{port: 82}]\n"
        ),
    );
    let outcomes = apply(&text);
    assert_eq!(
        addresses(&outcomes, "pinned"),
        ["192.168.2.140", "192.168.2.120", "192.168.2.100"],
        "entry i is address i; the rest allocated (those naming addresses are served first)"
    );
    assert_eq!(addresses(&outcomes, "zero").len(), 1, "a count not above 1 is 1");
    let words = outcomes.iter().find(|(k, _)| &*k.name == "words").unwrap().1;
    assert!(words.to_string().contains("is not a valid address count"), "{words}");
    // One address, asked for by three Services on distinct ports: each
    // needs the key, under whichever of Deckhouse's names.
    for name in ["shared-current", "shared-older", "shared-oldest"] {
        assert_eq!(addresses(&outcomes, name), ["192.168.2.150"], "{name} shares by key");
    }
}

/// A Service's class follows its annotation when it changes (Deckhouse
/// keeps the first class it bound): its addresses move to the new class's
/// pool at the next reading.
#[test]
fn a_services_class_follows_its_annotation() {
    let other = "
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {name: other}
spec: {addressPool: [198.51.100.0/28]}
";
    let with_class = |class: &str| {
        format!(
            "{DOCUMENTED}{other}{}",
            service(
                "moving",
                &format!("  annotations: {{network.deckhouse.io/metal-load-balancer-class: {class}}}\n"),
                ""
            )
        )
    };
    let mut reconciler = Reconciler::new(ClassFilter::default(), BTreeMap::new());
    let first = reconciler.apply(&inventory(&with_class("ingress")), Instant::now());
    assert_eq!(addresses(&first, "moving"), ["192.168.2.100"]);
    let second = reconciler.apply(&inventory(&with_class("other")), Instant::now());
    assert_eq!(addresses(&second, "moving"), ["198.51.100.0"]);
}
