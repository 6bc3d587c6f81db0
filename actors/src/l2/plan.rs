//! The Layer 2 plan: from the running configuration, assignments, health
//! and link state to what this node tells the mesh and where each address
//! is answered. Pure: no sockets, no actors, no clock.
//!
//! For every service holding addresses from a pool that an L2Advertisement
//! covers (and whose service selectors match), [`plan`] gives the mesh a
//! [`MeshService`] (addresses, failback from the meshlb L2Policy), says
//! whether this node can serve it, and if not why ([`Blocker`]): an
//! advertisement selects this node (by its Node object's labels in a
//! cluster), what both modes require holds ([`crate::eligibility`]: the
//! node not excluded, a ready endpoint, a passing health check), and one
//! of its interfaces is up; and on which
//! interfaces each address is answered: those the advertisement names, or
//! every interface not excluded by default ([`EXCLUDED_PREFIXES`]: loopback
//! and the virtual links of containers, CNIs and tunnels). Preference
//! weights are the sum of the matching `nodeSelectors` weights of
//! L2Advertisement `preferredNodes`-style entries and L2Policy
//! `nodePreferences`, matched against the labels in each node's gossiped
//! record.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use meshlb_config::config::{Failback, WeightedSelector};
use meshlb_config::meta::any_matches;
use meshlb_config::service::{EndpointIndex, ServiceKey};
use meshlb_gossip::mesh::{MeshService, ServicePlan, WeightFn};
use meshlb_gossip::record::{Layer2Section, NodeRecord, ServiceId, service_id};

use crate::eligibility::{Assigned, assigned, eligible, service_blocker};
pub use crate::eligibility::{Blocker, PlanInput, ThisNode};
use crate::l2::links::{Link, Links};

/// Interfaces never announced on unless an L2Advertisement names them:
/// loopback, and the virtual links of containers, CNIs and tunnels.
pub const EXCLUDED_PREFIXES: &[&str] = &[
    "lo",
    "veth",
    "cni",
    "docker",
    "br-",
    "virbr",
    "flannel",
    "cali",
    "cilium",
    "lxc",
    "kube-",
    "vxlan",
    "tunl",
    "tun",
    "tap",
    "weave",
    "genev",
    "nodelocaldns",
    "wg",
    "dummy",
    "meshlb",
];

/// Whether `name` is announced on by default (an advertisement without
/// `interfaces`).
pub fn eligible_by_default(name: &str) -> bool {
    !EXCLUDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One Layer 2 service as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedService {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// What the mesh ranks.
    pub spec: MeshService,
    /// Why this node cannot serve it now (`None`: it can).
    pub blocked: Option<Blocker>,
    /// Interfaces its addresses are answered on (here).
    pub interfaces: BTreeSet<String>,
    /// Node preferences.
    pub preferences: Vec<WeightedSelector>,
}

impl PlannedService {
    /// Whether this node can serve it now.
    pub fn serveable(&self) -> bool {
        self.blocked.is_none()
    }
}

/// The Layer 2 plan of this node. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Plan {
    /// Services announced in Layer 2 mode, by id.
    pub services: BTreeMap<ServiceId, PlannedService>,
    /// Link state of every interface some service may use.
    pub links: Links,
}

impl L2Plan {
    /// Ids of the services this node can serve.
    pub fn serving(&self) -> BTreeSet<ServiceId> {
        self.services
            .values()
            .filter(|s| s.serveable())
            .map(|s| s.spec.id)
            .collect()
    }

    /// The mesh's view: every service and how nodes are weighted.
    pub fn mesh_services(&self) -> Vec<MeshService> {
        self.services.values().map(|s| s.spec.clone()).collect()
    }

    /// What this plan tells the mesh: its services, the weights, and this
    /// node's record section (what it serves, its links).
    pub fn mesh_plan(&self) -> ServicePlan {
        ServicePlan {
            services: self.mesh_services(),
            weight: self.weight_fn(),
            layer2: Layer2Section {
                serving: self.serving(),
                links: self
                    .links
                    .iter()
                    .map(|(name, link)| (name.clone(), link.is_up()))
                    .collect(),
            },
        }
    }

    /// Addresses of the services this node can serve.
    pub fn local_addresses(&self) -> BTreeSet<IpAddr> {
        self.services
            .values()
            .filter(|s| s.serveable())
            .flat_map(|s| s.spec.addresses.iter().copied())
            .collect()
    }

    /// Which interfaces answer for each owned address: those of its
    /// service that are up.
    pub fn interfaces_for(&self, owned: &BTreeSet<IpAddr>) -> BTreeMap<String, BTreeSet<IpAddr>> {
        let mut out: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for service in self.services.values() {
            for address in service.spec.addresses.iter().filter(|a| owned.contains(a)) {
                for interface in &service.interfaces {
                    if self.links.get(interface).copied().is_some_and(Link::is_up) {
                        out.entry(interface.clone()).or_default().insert(*address);
                    }
                }
            }
        }
        out
    }

    /// The weight function for the mesh: per service, the sum of the
    /// weights of the preferences matching a node's labels.
    pub fn weight_fn(&self) -> WeightFn {
        let preferences: BTreeMap<ServiceId, Vec<WeightedSelector>> = self
            .services
            .values()
            .filter(|s| !s.preferences.is_empty())
            .map(|s| (s.spec.id, s.preferences.clone()))
            .collect();
        Arc::new(move |record: &NodeRecord, spec: &MeshService| {
            preferences.get(&spec.id).map_or(0, |prefs| {
                prefs
                    .iter()
                    .filter(|p| p.selector.matches(&record.labels))
                    .map(|p| u32::from(p.weight))
                    .sum()
            })
        })
    }
}

/// Builds the plan of `node`, whose interfaces and their link state are
/// `interfaces`.
pub fn plan(input: PlanInput<'_>, node: ThisNode<'_>, interfaces: &Links) -> L2Plan {
    let config = &input.inventory.config;
    let endpoints = EndpointIndex::new(input.inventory.endpoint_slices.iter().map(AsRef::as_ref));
    let mut out = L2Plan::default();
    for Assigned {
        key,
        assignment,
        service,
        pool,
    } in assigned(&input)
    {
        let labels = &service.metadata.labels;
        let advertisements: Vec<_> = config
            .l2_advertisements
            .values()
            .filter(|a| a.pools.covers(pool) && any_matches(&a.service_selectors, labels))
            .collect();
        if advertisements.is_empty() {
            continue;
        }
        let mut chosen = BTreeSet::new();
        let mut selected_here = false;
        for advertisement in &advertisements {
            if !any_matches(&advertisement.node_selectors, node.labels) {
                continue;
            }
            selected_here = true;
            if advertisement.interfaces.is_empty() {
                chosen.extend(interfaces.keys().filter(|i| eligible_by_default(i)).cloned());
            } else {
                chosen.extend(
                    advertisement
                        .interfaces
                        .iter()
                        .filter(|i| interfaces.contains_key(*i))
                        .cloned(),
                );
            }
        }
        let policy = config.l2_policy_for(labels);
        let mut preferences: Vec<WeightedSelector> = advertisements
            .iter()
            .flat_map(|a| a.preferred_nodes.iter().cloned())
            .collect();
        if let Some(policy) = policy {
            preferences.extend(policy.node_preferences.iter().cloned());
        }
        let link_up = chosen
            .iter()
            .any(|i| interfaces.get(i).copied().is_some_and(Link::is_up));
        let eligible = eligible(&input, &endpoints, key, service);
        let blocked = if !selected_here {
            Some(Blocker::NotSelected)
        } else if let Some(blocker) = service_blocker(&input, &eligible, key, &node) {
            Some(blocker)
        } else if !link_up {
            Some(Blocker::LinksDown)
        } else {
            None
        };
        for interface in &chosen {
            out.links.insert(
                interface.clone(),
                interfaces.get(interface).copied().unwrap_or(Link::Down),
            );
        }
        let spec = MeshService {
            id: service_id(&key.to_string()),
            addresses: assignment.addresses.clone(),
            failback: policy.map_or(Failback::Revertive, |p| p.failback),
            eligible,
        };
        out.services.insert(
            spec.id,
            PlannedService {
                key: key.clone(),
                spec,
                blocked,
                interfaces: chosen,
                preferences,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlb_config::health::Health;
    use meshlb_config::meta::StringMap;
    use meshlb_gossip::mesh::Eligible;

    use crate::eligibility::fixture::state;

    const CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: l2, namespace: metallb-system}
spec: {addresses: [203.0.113.10-203.0.113.20]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bgp-only, namespace: metallb-system}
spec: {addresses: [192.0.2.10-192.0.2.20], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec:
  ipAddressPools: [l2]
  nodeSelectors: [{matchLabels: {l2: 'yes'}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
  annotations: {metallb.io/address-pool: bgp-only}
spec: {type: LoadBalancer, ports: [{port: 5432}]}
";

    fn labels(pairs: &[(&str, &str)]) -> StringMap {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    /// Node n1 with these labels, not excluded.
    fn here(labels: &StringMap) -> ThisNode<'_> {
        ThisNode {
            name: "n1",
            labels,
            may_announce: true,
        }
    }

    fn links(pairs: &[(&str, bool)]) -> Links {
        pairs.iter().map(|(k, v)| ((*k).into(), Link::from_up(*v))).collect()
    }

    #[test]
    fn only_pools_an_l2advertisement_covers_are_planned() {
        let plan = plan(
            state(CONFIG).input(),
            here(&labels(&[("l2", "yes")])),
            &links(&[("eth0", true)]),
        );
        let keys: Vec<String> = plan.services.values().map(|s| s.key.to_string()).collect();
        assert_eq!(keys, vec!["default/web"]);
        let web = plan.services.values().next().unwrap();
        assert!(web.serveable());
        assert_eq!(web.interfaces, BTreeSet::from(["eth0".to_owned()]));
        assert_eq!(plan.serving(), BTreeSet::from([web.spec.id]));
        assert_eq!(plan.local_addresses().len(), 1);
    }

    /// MetalLB's `preferredNodeSelectors` (an L2Advertisement's, as MetalLB
    /// writes it) and meshlb's L2Policy `nodePreferences` add up to a
    /// node's weight for the services they cover; a Deckhouse class's
    /// Service is planned through its class's advertisement, on the nodes
    /// its nodeSelector picks.
    #[test]
    fn preferences_weigh_nodes_and_a_class_selects_its_nodes() {
        let config = format!(
            "{CONFIG}---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: preferring, namespace: metallb-system}}
spec:
  ipAddressPools: [l2]
  preferredNodeSelectors:
  - {{weight: 50, preference: {{matchLabels: {{zone: a}}}}}}
  - {{weight: 30, preference: {{matchExpressions: [{{key: rack, operator: In, values: [r1]}}]}}}}
---
apiVersion: meshlb.io/v1alpha1
kind: L2Policy
metadata: {{name: policy}}
spec: {{nodePreferences: [{{weight: 5, preference: {{matchLabels: {{zone: a}}}}}}]}}
---
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {{name: ingress}}
spec: {{addressPool: [198.51.100.0/28], nodeSelector: {{lb: 'yes'}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: classed, namespace: default}}
spec: {{type: LoadBalancer, loadBalancerClass: ingress, ports: [{{port: 80}}]}}
"
        );
        let state = state(&config);
        let plan = plan_of(&state, &[("l2", "yes")]);
        let web = planned(&plan, "default/web");
        let weight = plan.weight_fn();
        let record = |pairs: &[(&str, &str)]| {
            let mut record = NodeRecord::new("n2", 1);
            record.labels = labels(pairs);
            record
        };
        assert_eq!(weight(&record(&[("zone", "a"), ("rack", "r1")]), &web.spec), 85);
        assert_eq!(weight(&record(&[("zone", "a")]), &web.spec), 55);
        assert_eq!(weight(&record(&[("rack", "r1")]), &web.spec), 30);
        assert_eq!(weight(&record(&[]), &web.spec), 0);
        let classed = planned(&plan, "default/classed");
        assert_eq!(classed.blocked, Some(Blocker::NotSelected), "not a node of the class");
        let on_class_node = plan_of(&state, &[("lb", "yes")]);
        let classed = planned(&on_class_node, "default/classed");
        assert!(classed.serveable());
        assert_eq!(
            weight(&record(&[("zone", "a")]), &classed.spec),
            5,
            "the L2Policy covers every Service, the advertisement only its pools"
        );
    }

    fn planned<'a>(plan: &'a L2Plan, key: &str) -> &'a PlannedService {
        plan.services
            .values()
            .find(|s| s.key.to_string() == key)
            .unwrap_or_else(|| panic!("{key} not planned"))
    }

    fn plan_of(state: &crate::eligibility::fixture::State, pairs: &[(&str, &str)]) -> L2Plan {
        plan(state.input(), here(&labels(pairs)), &links(&[("eth0", true)]))
    }

    #[test]
    fn a_node_the_advertisement_does_not_select_does_not_serve() {
        let plan = plan(
            state(CONFIG).input(),
            here(&labels(&[("l2", "no")])),
            &links(&[("eth0", true)]),
        );
        assert_eq!(plan.services.len(), 1, "the mesh still learns the service");
        assert!(plan.serving().is_empty());
        assert!(plan.local_addresses().is_empty());
    }

    #[test]
    fn link_down_or_failing_health_means_not_serving() {
        let node = labels(&[("l2", "yes")]);
        let down = plan(state(CONFIG).input(), here(&node), &links(&[("eth0", false)]));
        assert!(down.serving().is_empty());
        assert_eq!(down.links, links(&[("eth0", false)]));
        let mut sick = state(CONFIG);
        sick.health.insert(ServiceKey::new("default", "web"), Health::Unhealthy);
        assert!(
            plan(sick.input(), here(&node), &links(&[("eth0", true)]))
                .serving()
                .is_empty()
        );
    }

    #[test]
    fn default_interfaces_leave_out_virtual_links() {
        let plan = plan(
            state(CONFIG).input(),
            here(&labels(&[("l2", "yes")])),
            &links(&[
                ("eth0", true),
                ("veth12ab", true),
                ("cni0", true),
                ("docker0", true),
                ("ens3", true),
            ]),
        );
        let web = plan.services.values().next().unwrap();
        assert_eq!(web.interfaces, BTreeSet::from(["eth0".to_owned(), "ens3".to_owned()]));
    }

    #[test]
    fn owned_addresses_go_to_the_up_interfaces_of_their_service() {
        let plan = plan(
            state(CONFIG).input(),
            here(&labels(&[("l2", "yes")])),
            &links(&[("eth0", true), ("eth1", false)]),
        );
        let address = plan.services.values().next().unwrap().spec.addresses[0];
        let map = plan.interfaces_for(&BTreeSet::from([address]));
        assert_eq!(map.keys().cloned().collect::<Vec<_>>(), vec!["eth0".to_owned()]);
        assert!(plan.interfaces_for(&BTreeSet::new()).is_empty());
    }

    /// In a cluster, the Node object says what this node is: its labels
    /// for nodeSelectors (not the configured ones), and the exclusion
    /// label or NetworkUnavailable take it out, as in MetalLB.
    #[test]
    fn the_node_object_selects_and_excludes() {
        let node = |extra: &str| {
            format!("{CONFIG}---\napiVersion: v1\nkind: Node\nmetadata: {{name: n1, labels: {{l2: 'yes'{extra}}}}}\n")
        };
        let eth0 = links(&[("eth0", true)]);
        let nothing = StringMap::new();
        let web = |yaml: &str| {
            let state = state(yaml);
            let plan = plan(state.input(), ThisNode::of("n1", &nothing, &state.inventory), &eth0);
            plan.services.values().next().unwrap().blocked
        };
        assert_eq!(web(&node("")), None, "selected by the Node's labels");
        assert_eq!(
            web(CONFIG),
            Some(Blocker::NotSelected),
            "no Node: the configured labels (none)"
        );
        assert_eq!(
            web(&node(", node.kubernetes.io/exclude-from-external-load-balancers: ''")),
            Some(Blocker::NodeExcluded)
        );
        let unavailable = format!(
            "{}status: {{conditions: [{{type: NetworkUnavailable, status: 'True'}}]}}\n",
            node("")
        );
        assert_eq!(web(&unavailable), Some(Blocker::NodeExcluded));
        let available = unavailable.replace("'True'", "'False'");
        assert_eq!(web(&available), None);
    }

    /// MetalLB's endpoint rule: Cluster, some ready endpoint anywhere;
    /// Local, one on this node. A cluster's Service without slices has
    /// none; a standalone one's endpoints are not told.
    #[test]
    fn endpoints_decide_who_may_serve() {
        let slice = |node: &str, ready: bool| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\n\
                 endpoints: [{{addresses: [198.18.0.1], nodeName: {node}, conditions: {{ready: {ready}}}}}]\n"
            )
        };
        let local = CONFIG.replace(
            "metadata: {name: web, namespace: default}\nspec: {type: LoadBalancer,",
            "metadata: {name: web, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local,",
        );
        assert_ne!(local, CONFIG);
        let eth0 = links(&[("eth0", true)]);
        let selected = labels(&[("l2", "yes")]);
        let web = |yaml: &str, name: &str, cluster: bool| {
            let state = state(yaml);
            let input = PlanInput {
                require_endpoints: cluster,
                ..state.input()
            };
            let node = ThisNode {
                name,
                labels: &selected,
                may_announce: true,
            };
            let planned = plan(input, node, &eth0).services.into_values().next().unwrap();
            (planned.blocked, planned.spec.eligible)
        };
        // What every node tells the mesh the endpoints allow is the same
        // on each, whether or not it serves.
        let n2 = Eligible::Nodes(BTreeSet::from(["n2".to_owned()]));
        assert_eq!(
            web(CONFIG, "n1", false),
            (None, Eligible::Any),
            "standalone, no slices: not told"
        );
        assert_eq!(web(CONFIG, "n1", true), (Some(Blocker::NoEndpoints), Eligible::None));
        let elsewhere = format!("{CONFIG}{}", slice("n2", true));
        assert_eq!(
            web(&elsewhere, "n1", true),
            (None, Eligible::Any),
            "Cluster: anywhere will do"
        );
        let not_ready = format!("{CONFIG}{}", slice("n2", false));
        assert_eq!(
            web(&not_ready, "n1", false),
            (Some(Blocker::NoEndpoints), Eligible::None)
        );
        let local_elsewhere = format!("{local}{}", slice("n2", true));
        assert_eq!(
            web(&local_elsewhere, "n1", true),
            (Some(Blocker::NoLocalEndpoint), n2.clone())
        );
        assert_eq!(
            web(&local_elsewhere, "n2", true),
            (None, n2),
            "Local: the node with the endpoint"
        );
    }
}
