//! Deckhouse's MetalLoadBalancerClasses: each becomes a pool and an
//! L2Advertisement named after it (the pool serves the class's Services
//! alone, the advertisement covers that pool alone), as Deckhouse's module
//! makes an IPAddressPool and an L2Advertisement of each class; at most one
//! class is the default.

use super::*;
use crate::error::Invalid;
use crate::kinds::MetalLoadBalancerClassSpec;
use crate::meta::{Kind, LabelSelector, ObjectRef, validate_selectors};
use crate::object::Resource;
use pools::address_ranges;

impl Builder {
    /// Pass 1, after the IPAddressPools: the class's pool.
    pub(super) fn class(&mut self, resource: &Resource<MetalLoadBalancerClassSpec>) {
        let Some(object) = self.claim_name(Kind::MetalLoadBalancerClass, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let name = resource.metadata.name.clone();
        let mut errors = Vec::new();
        if let Some(other) = spec.type_.as_deref().filter(|t| *t != "L2") {
            errors.push(Invalid::new(
                &object,
                "spec.type",
                other,
                "is not a class type meshlb serves",
                "L2 (or nothing, which means L2)",
            ));
        }
        let ranges = address_ranges(&object, "spec.addressPool", &spec.address_pool, &mut errors);
        let nodes = LabelSelector {
            match_labels: spec.node_selector.clone(),
            match_expressions: Vec::new(),
        };
        validate_selectors(&object, "spec.nodeSelector", std::slice::from_ref(&nodes), &mut errors);
        let interfaces = spec.l2.as_ref().map(|l2| l2.interfaces.clone()).unwrap_or_default();
        for (i, interface) in interfaces.iter().enumerate() {
            check_interface(&object, &format!("spec.l2.interfaces[{i}]"), interface, &mut errors);
        }
        if self.seen_name(Kind::IpAddressPool, &name) {
            errors.push(Invalid::new(
                &object,
                "metadata.name",
                &name,
                "is also an IPAddressPool's name; the class's pool is named after the class",
                "a class name no IPAddressPool has",
            ));
        }
        if !errors.is_empty() {
            return self.extend(errors);
        }
        self.pool_locations.insert(name.clone(), self.location.clone());
        self.pool_order.push(name.clone());
        self.config.pools.insert(
            name.clone(),
            Pool {
                name: name.clone(),
                labels: resource.metadata.labels.clone(),
                ranges,
                auto_assign: false,
                avoid_buggy_ips: false,
                allocation: None,
                class: Some(name.clone()),
            },
        );
        self.class_advertisements.push((
            object,
            self.location.clone(),
            L2Advertisement {
                name: name.clone(),
                pools: PoolScope {
                    names: vec![name.clone()],
                    selectors: Vec::new(),
                    class: Some(name.clone()),
                },
                node_selectors: vec![nodes],
                interfaces,
                service_selectors: Vec::new(),
                preferred_nodes: Vec::new(),
            },
        ));
        self.config.classes.insert(
            name.clone(),
            LoadBalancerClass {
                name,
                is_default: spec.is_default,
            },
        );
    }

    /// After pass 2: the classes' advertisements beside the
    /// L2Advertisements, and one default class at most.
    pub(super) fn finish_classes(&mut self) {
        for (object, location, advertisement) in std::mem::take(&mut self.class_advertisements) {
            self.location = location;
            if self.seen_name(Kind::L2Advertisement, &advertisement.name) {
                self.push(Invalid::new(
                    &object,
                    "metadata.name",
                    &advertisement.name,
                    "is also an L2Advertisement's name; the class's advertisement is named after the class",
                    "a class name no L2Advertisement has",
                ));
                continue;
            }
            self.config
                .l2_advertisements
                .insert(advertisement.name.clone(), advertisement);
        }
        let defaults: Vec<String> = self
            .config
            .classes
            .values()
            .filter(|c| c.is_default)
            .map(|c| c.name.clone())
            .collect();
        if defaults.len() > 1 {
            for name in &defaults {
                let object = ObjectRef::named(Kind::MetalLoadBalancerClass, None, name.clone());
                self.location = self
                    .seen
                    .get(&Kind::MetalLoadBalancerClass)
                    .and_then(|m| m.get(name).cloned())
                    .flatten();
                self.push(Invalid::new(
                    &object,
                    "spec.isDefault",
                    "true",
                    format!(
                        "is set on {} classes ({}): which one a Service without a class gets would be a guess",
                        defaults.len(),
                        defaults.join(", ")
                    ),
                    "isDefault on one MetalLoadBalancerClass at most",
                ));
            }
        }
    }
}
