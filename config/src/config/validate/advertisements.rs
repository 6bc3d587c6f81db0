//! L2Advertisements, BGPAdvertisements and the Communities they name.

use super::*;
use crate::addresses::Family;
use crate::error::Invalid;
use crate::kinds::{BgpAdvertisementSpec, CommunitySpec, L2AdvertisementSpec, WeightedNodeSelector};
use crate::meta::{Kind, ObjectRef, validate_selectors};
use crate::object::Resource;

impl Builder {
    pub(super) fn weighted(
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

    pub(super) fn l2_advertisement(&mut self, resource: &Resource<L2AdvertisementSpec>) {
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

    pub(super) fn bgp_advertisement(&mut self, resource: &Resource<BgpAdvertisementSpec>) {
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

    pub(super) fn community(&mut self, resource: &Resource<CommunitySpec>) {
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
}
