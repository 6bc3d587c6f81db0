//! Validation: [`Config::build`] checks every object of the configuration
//! kinds and the references between them, collecting every problem (the
//! object, the field, the value and what is allowed) rather than stopping
//! at the first. One module per family of kinds: [`pools`] (IPAddressPools
//! and their overlaps), [`advertisements`] (L2 and BGP advertisements,
//! Communities), [`peers`] (BGPPeers, their password Secrets and
//! BFDProfiles), [`policies`] (meshlb's L2Policies), [`classes`]
//! (Deckhouse's MetalLoadBalancerClasses).

mod advertisements;
mod classes;
mod peers;
mod policies;
mod pools;

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::duration::parse_duration;
use crate::error::{Error, Invalid, Rejected, SourceLocation};
use crate::kinds::BgpPeerSpec;
use crate::meta::{Kind, ObjectMeta, ObjectRef};
use crate::object::{Located, Object};
use crate::secret::Secret;

impl Config {
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
        // Classes after every IPAddressPool, whose names their pools must
        // not take.
        for located in objects {
            if let Object::MetalLoadBalancerClass(r) = &located.object {
                builder.location = Some(located.location.clone());
                builder.class(r);
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
        builder.finish_classes();
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
    /// Each class's L2Advertisement, added once every L2Advertisement's
    /// name is known.
    class_advertisements: Vec<(ObjectRef, Option<SourceLocation>, L2Advertisement)>,
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
                    problem.to_string(),
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
