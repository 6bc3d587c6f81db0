//! IPAddressPools: addresses, selectors, and no two pools overlapping (a
//! MetalLoadBalancerClass's pool included).

use super::*;
use crate::addresses::{ADDRESS_FORMS, AddressRange};
use crate::error::Invalid;
use crate::kinds::IpAddressPoolSpec;
use crate::meta::{Kind, LabelSelector, ObjectRef, valid_dns_subdomain, validate_selectors};
use crate::object::Resource;

impl Builder {
    pub(super) fn pool(&mut self, resource: &Resource<IpAddressPoolSpec>) {
        let Some(object) = self.claim_name(Kind::IpAddressPool, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let ranges = address_ranges(&object, "spec.addresses", &spec.addresses, &mut errors);
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
                class: None,
            },
        );
    }

    /// Overlaps between pools, each reported on the pool read later (the
    /// later document of a file; the newer object of a cluster).
    pub(super) fn check_pool_overlaps(&mut self) {
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
        let origin = |pool: &str| match self.config.pools.get(pool).and_then(|p| p.class.as_ref()) {
            Some(_) => (Kind::MetalLoadBalancerClass, "spec.addressPool"),
            None => (Kind::IpAddressPool, "spec.addresses"),
        };
        let found: Vec<_> = found
            .into_iter()
            .map(|(pool, range, other, other_range)| {
                let (kind, field) = origin(&pool);
                let (other_kind, _) = origin(&other);
                (
                    pool,
                    kind,
                    field,
                    range,
                    format!("overlaps {other_range} of {other_kind} {other}"),
                )
            })
            .collect();
        for (pool, kind, field, range, problem) in found {
            self.location = self.pool_locations.get(&pool).cloned().flatten();
            let object = ObjectRef {
                kind,
                namespace: None,
                name: pool.clone(),
            };
            self.push(Invalid::new(
                &object,
                field,
                range,
                problem,
                "addresses that belong to no other pool",
            ));
        }
    }

    /// The pools an advertisement covers; a name of no pool is a warning.
    pub(super) fn pool_scope(
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
            class: None,
        }
    }
}

/// The ranges of a pool's address list (`field`: `spec.addresses`, or a
/// class's `spec.addressPool`): CIDRs or ranges, at least one, none
/// overlapping another of the list.
pub(super) fn address_ranges(
    object: &ObjectRef,
    field: &str,
    entries: &[String],
    errors: &mut Vec<Invalid>,
) -> Vec<AddressRange> {
    if entries.is_empty() {
        errors.push(Invalid::new(
            object,
            field,
            "",
            "is empty",
            format!("at least one entry: {ADDRESS_FORMS}"),
        ));
    }
    let mut ranges: Vec<AddressRange> = Vec::new();
    let mut indices: Vec<usize> = Vec::new();
    for (i, text) in entries.iter().enumerate() {
        let entry = format!("{field}[{i}]");
        match text.parse::<AddressRange>() {
            Ok(range) => {
                if let Some(j) = ranges.iter().position(|r| r.overlaps(&range)) {
                    errors.push(Invalid::new(
                        object,
                        entry,
                        text,
                        format!("overlaps {field}[{}] ({}) of the same pool", indices[j], ranges[j]),
                        "ranges that do not overlap",
                    ));
                }
                ranges.push(range);
                indices.push(i);
            }
            Err(problem) => errors.push(Invalid::new(object, entry, text, problem.to_string(), ADDRESS_FORMS)),
        }
    }
    ranges
}
