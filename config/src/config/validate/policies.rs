//! meshlb's L2Policies: failback and weighted node preferences.

use super::*;
use crate::error::Invalid;
use crate::kinds::L2PolicySpec;
use crate::meta::{Kind, validate_selectors};
use crate::object::Resource;

impl Builder {
    pub(super) fn l2_policy(&mut self, resource: &Resource<L2PolicySpec>) {
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
