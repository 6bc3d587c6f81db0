//! What decides, in either mode, whether this node may announce a
//! Service: the running configuration the plans are made from
//! ([`PlanInput`]), this node as they see it ([`ThisNode`]), and why it may
//! not ([`Blocker`], [`service_blocker`]): labelled out of external load
//! balancers or its network unavailable, no ready endpoint anywhere
//! (externalTrafficPolicy Cluster) or on this node (Local), as MetalLB's
//! speakers require, or a failing health check. What the endpoints allow
//! every node alike ([`eligible`]) also goes to the mesh, whose owners
//! wait until every node has read the same. The Layer 2 plan
//! ([`crate::l2::plan`]) and the BGP plan ([`crate::bgp::plan`]) add their
//! own conditions around these.

use std::collections::BTreeMap;

use meshlb_config::Inventory;
use meshlb_config::allocator::Assignment;
use meshlb_config::config::Pool;
use meshlb_config::health::Health;
use meshlb_config::meta::StringMap;
use meshlb_config::reconcile::Outcomes;
use meshlb_config::service::{EndpointIndex, Service, ServiceKey, Spelled, TrafficPolicy};
use meshlb_gossip::mesh::Eligible;

/// Why this node cannot announce a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// No advertisement of its pool selects this node.
    NotSelected,
    /// The node is labelled out of external load balancers, or its network
    /// is unavailable.
    NodeExcluded,
    /// The Service has no ready endpoint anywhere.
    NoEndpoints,
    /// externalTrafficPolicy Local, and no ready endpoint on this node.
    NoLocalEndpoint,
    /// Its health check fails.
    Unhealthy,
    /// Layer 2: none of its interfaces here is up.
    LinksDown,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Blocker::NotSelected => "no advertisement of its pool selects this node",
            Blocker::NodeExcluded => "the node is excluded from external load balancers (label or network unavailable)",
            Blocker::NoEndpoints => "the Service has no ready endpoint",
            Blocker::NoLocalEndpoint => "externalTrafficPolicy Local and no ready endpoint on this node",
            Blocker::Unhealthy => "its health check fails",
            Blocker::LinksDown => "none of its interfaces here is up",
        })
    }
}

/// What the plan is made from: the running configuration as the
/// pipeline decided it.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The running configuration and services.
    pub inventory: &'a Inventory,
    /// Every service's outcome.
    pub outcomes: &'a Outcomes,
    /// Health of the services with a health check.
    pub health: &'a BTreeMap<ServiceKey, Health>,
    /// Whether a Service without EndpointSlices counts as having no ready
    /// endpoint (a cluster's, where every selecting Service has them) or
    /// as one whose endpoints are not told (standalone files).
    pub require_endpoints: bool,
}

/// This node as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct ThisNode<'a> {
    /// Its name, as endpoints name their node.
    pub name: &'a str,
    /// Its labels, matched by nodeSelectors.
    pub labels: &'a StringMap,
    /// Whether it may announce at all: not labelled out of external load
    /// balancers, and its network available.
    pub may_announce: bool,
}

impl<'a> ThisNode<'a> {
    /// Node `name` as `inventory` has it: its Node object's labels and
    /// conditions when there is one (a cluster's), otherwise the
    /// `configured` labels.
    pub fn of(name: &'a str, configured: &'a StringMap, inventory: &'a Inventory) -> ThisNode<'a> {
        match inventory.nodes.get(name) {
            Some(node) => ThisNode {
                name,
                labels: &node.metadata.labels,
                may_announce: node.may_announce(),
            },
            None => ThisNode {
                name,
                labels: configured,
                may_announce: true,
            },
        }
    }
}

/// A Service holding addresses, with what they come from.
pub struct Assigned<'a> {
    /// `namespace/name`.
    pub key: &'a ServiceKey,
    /// Its addresses and their pool's name.
    pub assignment: &'a Assignment,
    /// The Service.
    pub service: &'a Service,
    /// The pool.
    pub pool: &'a Pool,
}

/// Every Service of `input` that holds addresses from a pool of the
/// running configuration.
pub fn assigned<'a>(input: &PlanInput<'a>) -> impl Iterator<Item = Assigned<'a>> {
    let inventory = input.inventory;
    input.outcomes.iter().filter_map(move |(key, outcome)| {
        let assignment = outcome.assignment()?;
        Some(Assigned {
            key,
            assignment,
            service: inventory.services.get(key)?,
            pool: inventory.config.pools.get(&*assignment.pool)?,
        })
    })
}

/// Why `node` may not announce the service `key` whatever the mode, if it
/// may not: the node excluded, then the nodes its endpoints let serve it
/// (`eligible`, from [`eligible`]), then its health.
pub fn service_blocker(
    input: &PlanInput<'_>,
    eligible: &Eligible,
    key: &ServiceKey,
    node: &ThisNode<'_>,
) -> Option<Blocker> {
    if !node.may_announce {
        return Some(Blocker::NodeExcluded);
    }
    match eligible {
        Eligible::None => return Some(Blocker::NoEndpoints),
        Eligible::Nodes(nodes) if !nodes.contains(node.name) => return Some(Blocker::NoLocalEndpoint),
        Eligible::Nodes(_) | Eligible::Any => {}
    }
    let healthy = input.health.get(key).is_none_or(|h| *h == Health::Healthy);
    (!healthy).then_some(Blocker::Unhealthy)
}

/// Which nodes `service`'s (`key`) endpoints let serve it, as every node
/// that read the same EndpointSlices sees it: none without a ready
/// endpoint (or without EndpointSlices, where they are required), with
/// externalTrafficPolicy Local the nodes that have one, otherwise any.
pub fn eligible(input: &PlanInput<'_>, endpoints: &EndpointIndex, key: &ServiceKey, service: &Service) -> Eligible {
    let local = service.spec.external_traffic_policy == Some(Spelled::Known(TrafficPolicy::Local));
    match endpoints.get(key) {
        None if input.require_endpoints => Eligible::None,
        None => Eligible::Any,
        Some(e) if local => Eligible::Nodes(e.nodes.clone()),
        Some(e) if !e.any_healthy => Eligible::None,
        Some(_) => Eligible::Any,
    }
}

/// The running configuration of a YAML text as the pipeline would decide
/// it, for the plans' tests.
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::BTreeMap;

    use meshlb_config::Inventory;
    use meshlb_config::health::Health;
    use meshlb_config::reconcile::Outcomes;
    use meshlb_config::service::ServiceKey;

    use super::PlanInput;

    /// A decided configuration.
    pub(crate) struct State {
        pub(crate) inventory: Inventory,
        pub(crate) outcomes: Outcomes,
        pub(crate) health: BTreeMap<ServiceKey, Health>,
    }

    impl State {
        /// What the plans take (standalone: endpoints not required).
        pub(crate) fn input(&self) -> PlanInput<'_> {
            PlanInput {
                inventory: &self.inventory,
                outcomes: &self.outcomes,
                health: &self.health,
                require_endpoints: false,
            }
        }
    }

    /// `yaml` read, validated and allocated.
    pub(crate) fn state(yaml: &str) -> State {
        let objects = meshlb_config::parse_documents(yaml, "test.yaml").unwrap().objects;
        let inventory = Inventory::build(&objects).unwrap();
        let mut reconciler = meshlb_config::Reconciler::new(Default::default(), BTreeMap::new());
        let outcomes = reconciler.apply(&inventory, std::time::Instant::now());
        State {
            inventory,
            outcomes,
            health: BTreeMap::new(),
        }
    }
}
