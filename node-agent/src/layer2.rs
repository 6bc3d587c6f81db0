//! Layer 2 mode in the agent: from configuration, assignments, health and
//! link state to what this node tells the mesh, and from the mesh's
//! ownership decision to what each interface answers for.
//!
//! [`plan`] is pure: for every service holding addresses from a pool that an
//! L2Advertisement covers (and whose service selectors match), it gives the
//! mesh a [`ServiceSpec`] (addresses, failback from the meshlb L2Policy),
//! says whether this node can serve it (an advertisement selects this node,
//! its health check if any passes, one of its interfaces is up), and on
//! which interfaces each address is answered. Preference weights are the
//! sum of the matching `nodeSelectors` weights of L2Advertisement
//! `preferredNodes`-style entries and L2Policy `nodePreferences`, matched
//! against the labels in each node's gossiped record.
//!
//! [`run`] is the glue: it republishes the plan to the mesh when it changes,
//! puts this node's serveable service addresses on the loopback interface
//! (with `arp_ignore`/`arp_announce` on the announcing interfaces, so the
//! kernel delivers their traffic but never answers ARP for them), and feeds
//! each interface's announcer the owned addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use meshlb_actors::l2::interface::{AnnouncerStatus, run_announcer};
use meshlb_actors::l2::responder::AnnounceSchedule;
use meshlb_actors::l2::socket::link_is_up;
use meshlb_config::config::{Failback, WeightedSelector};
use meshlb_config::health::Health;
use meshlb_config::meta::{StringMap, any_matches};
use meshlb_config::service::ServiceKey;
use meshlb_config::{Inventory, ServiceOutcome};
use meshlb_gossip::driver::{Command, WeightFn};
use meshlb_gossip::mesh::ServiceSpec;
use meshlb_gossip::record::{NodeRecord, service_id};
use tokio::sync::{mpsc, watch};

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

/// What the agent has read and decided, as Layer 2 needs it.
#[derive(Debug, Clone, Default)]
pub struct AgentState {
    /// The running configuration and services.
    pub inventory: Arc<Inventory>,
    /// Every service's outcome.
    pub outcomes: BTreeMap<ServiceKey, ServiceOutcome>,
    /// Health of the services with a health check.
    pub health: BTreeMap<ServiceKey, Health>,
}

/// One Layer 2 service as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Service {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// What the mesh ranks.
    pub spec: ServiceSpec,
    /// Whether this node can serve it now.
    pub serveable: bool,
    /// Interfaces its addresses are answered on (here).
    pub interfaces: BTreeSet<String>,
    /// Node preferences.
    pub preferences: Vec<WeightedSelector>,
}

/// The Layer 2 plan of this node. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Plan {
    /// Services announced in Layer 2 mode, by id.
    pub services: BTreeMap<u64, L2Service>,
    /// Link state of every interface some service may use.
    pub links: BTreeMap<String, bool>,
}

impl L2Plan {
    /// Ids of the services this node can serve.
    pub fn serving(&self) -> BTreeSet<u64> {
        self.services
            .values()
            .filter(|s| s.serveable)
            .map(|s| s.spec.id)
            .collect()
    }

    /// The mesh's view: every service and how nodes are weighted.
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.services.values().map(|s| s.spec.clone()).collect()
    }

    /// Addresses of the services this node can serve.
    pub fn local_addresses(&self) -> BTreeSet<IpAddr> {
        self.services
            .values()
            .filter(|s| s.serveable)
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
                    if self.links.get(interface).copied().unwrap_or(false) {
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
        let preferences: BTreeMap<u64, Vec<WeightedSelector>> = self
            .services
            .values()
            .filter(|s| !s.preferences.is_empty())
            .map(|s| (s.spec.id, s.preferences.clone()))
            .collect();
        Arc::new(move |record: &NodeRecord, spec: &ServiceSpec| {
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

/// Builds the plan. `interfaces` are this node's interfaces with their link
/// state.
pub fn plan(state: &AgentState, node_labels: &StringMap, interfaces: &BTreeMap<String, bool>) -> L2Plan {
    let config = &state.inventory.config;
    let mut out = L2Plan::default();
    for (key, outcome) in &state.outcomes {
        let Some(assignment) = outcome.assignment() else {
            continue;
        };
        let Some(service) = state.inventory.services.get(key) else {
            continue;
        };
        let Some(pool) = config.pools.get(&assignment.pool) else {
            continue;
        };
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
            if !any_matches(&advertisement.node_selectors, node_labels) {
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
        let healthy = state.health.get(key).is_none_or(|h| *h == Health::Healthy);
        let link_up = chosen.iter().any(|i| interfaces.get(i).copied().unwrap_or(false));
        for interface in &chosen {
            out.links
                .insert(interface.clone(), interfaces.get(interface).copied().unwrap_or(false));
        }
        let spec = ServiceSpec {
            id: service_id(&key.to_string()),
            addresses: assignment.addresses.clone(),
            failback: policy.map_or(Failback::Revertive, |p| p.failback),
        };
        out.services.insert(
            spec.id,
            L2Service {
                key: key.clone(),
                spec,
                serveable: selected_here && healthy && link_up,
                interfaces: chosen,
                preferences,
            },
        );
    }
    out
}

/// This node's interfaces with an Ethernet address and their link state.
pub fn interfaces() -> BTreeMap<String, bool> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/type")).is_ok_and(|t| t.trim() == "1")
                && name != "lo"
        })
        .map(|name| {
            let up = link_is_up(&name);
            (name, up)
        })
        .collect()
}

/// How Layer 2 runs in this agent.
#[derive(Debug, Clone)]
pub struct Layer2Options {
    /// This node's labels (as published in the mesh).
    pub node_labels: StringMap,
    /// Gratuitous announcement schedule.
    pub schedule: AnnounceSchedule,
    /// Whether service addresses go on the loopback interface so this node
    /// accepts their traffic (standalone mode; kube-proxy does it in
    /// Kubernetes).
    pub local_addresses: bool,
}

/// How often link state is read.
const LINK_POLL: Duration = Duration::from_millis(100);

/// Runs Layer 2 mode until `state` closes. `mesh` takes records and
/// services; `announce` is the mesh's ownership decision.
pub async fn run(
    options: Layer2Options,
    mut state: watch::Receiver<Arc<AgentState>>,
    mesh: mpsc::Sender<Command>,
    mut announce: watch::Receiver<BTreeSet<IpAddr>>,
) {
    let mut published: Option<L2Plan> = None;
    let mut announcers: BTreeMap<String, watch::Sender<BTreeSet<IpAddr>>> = BTreeMap::new();
    let mut local = crate::local_address::LocalAddresses::new(options.local_addresses);
    let mut link_poll = tokio::time::interval(LINK_POLL);
    link_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = state.changed() => if changed.is_err() { break },
            changed = announce.changed() => if changed.is_err() { break },
            _ = link_poll.tick() => {}
        }
        let snapshot = Arc::clone(&state.borrow_and_update());
        let next = plan(&snapshot, &options.node_labels, &interfaces());
        if published.as_ref() != Some(&next) {
            let (serving, links, specs) = (next.serving(), next.links.clone(), next.specs());
            let update = Command::UpdateRecord(Box::new(move |r: &mut NodeRecord| {
                r.serving = serving;
                r.links = links;
            }));
            let services = Command::SetServices {
                services: specs,
                weight: next.weight_fn(),
            };
            if mesh.send(update).await.is_err() || mesh.send(services).await.is_err() {
                break;
            }
            local.set(&next.local_addresses(), &next.links).await;
            published = Some(next.clone());
        }
        let owned = announce.borrow_and_update().clone();
        let per_interface = next.interfaces_for(&owned);
        for (interface, addresses) in &per_interface {
            let sender = announcers
                .entry(interface.clone())
                .or_insert_with(|| spawn_announcer(interface, options.schedule.clone()));
            sender.send_if_modified(|set| {
                let modified = set != addresses;
                *set = addresses.clone();
                modified
            });
        }
        for (interface, sender) in &announcers {
            if !per_interface.contains_key(interface) {
                sender.send_if_modified(|set| {
                    let modified = !set.is_empty();
                    set.clear();
                    modified
                });
            }
        }
    }
    // Shutting down: nothing more is announced.
    for sender in announcers.values() {
        sender.send_replace(BTreeSet::new());
    }
    local.set(&BTreeSet::new(), &BTreeMap::new()).await;
}

fn spawn_announcer(interface: &str, schedule: AnnounceSchedule) -> watch::Sender<BTreeSet<IpAddr>> {
    let (owned_tx, owned_rx) = watch::channel(BTreeSet::new());
    let (status_tx, _status) = watch::channel(AnnouncerStatus::default());
    let name = interface.to_owned();
    tokio::spawn(async move {
        if let Err(e) = run_announcer(&name, schedule, owned_rx, status_tx).await {
            tracing::error!("{e}; addresses owned here are not answered on {name}");
        }
    });
    tracing::info!(interface, "answering ARP and NDP");
    owned_tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(yaml: &str) -> AgentState {
        let objects = meshlb_config::parse_documents(yaml, "test.yaml").unwrap();
        let inventory = Inventory::build(&objects).unwrap();
        let mut reconciler = meshlb_config::Reconciler::new(Default::default(), BTreeMap::new());
        let outcomes = reconciler.apply(&inventory);
        AgentState {
            inventory: Arc::new(inventory),
            outcomes,
            health: BTreeMap::new(),
        }
    }

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

    fn links(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(k, v)| ((*k).into(), *v)).collect()
    }

    #[test]
    fn only_pools_an_l2advertisement_covers_are_planned() {
        let plan = plan(&state(CONFIG), &labels(&[("l2", "yes")]), &links(&[("eth0", true)]));
        let keys: Vec<String> = plan.services.values().map(|s| s.key.to_string()).collect();
        assert_eq!(keys, vec!["default/web"]);
        let web = plan.services.values().next().unwrap();
        assert!(web.serveable);
        assert_eq!(web.interfaces, BTreeSet::from(["eth0".to_owned()]));
        assert_eq!(plan.serving(), BTreeSet::from([web.spec.id]));
        assert_eq!(plan.local_addresses().len(), 1);
    }

    #[test]
    fn a_node_the_advertisement_does_not_select_does_not_serve() {
        let plan = plan(&state(CONFIG), &labels(&[("l2", "no")]), &links(&[("eth0", true)]));
        assert_eq!(plan.services.len(), 1, "the mesh still learns the service");
        assert!(plan.serving().is_empty());
        assert!(plan.local_addresses().is_empty());
    }

    #[test]
    fn link_down_or_failing_health_means_not_serving() {
        let node = labels(&[("l2", "yes")]);
        let down = plan(&state(CONFIG), &node, &links(&[("eth0", false)]));
        assert!(down.serving().is_empty());
        assert_eq!(down.links, links(&[("eth0", false)]));
        let mut sick = state(CONFIG);
        sick.health.insert(ServiceKey::new("default", "web"), Health::Unhealthy);
        assert!(plan(&sick, &node, &links(&[("eth0", true)])).serving().is_empty());
    }

    #[test]
    fn default_interfaces_leave_out_virtual_links() {
        let plan = plan(
            &state(CONFIG),
            &labels(&[("l2", "yes")]),
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
            &state(CONFIG),
            &labels(&[("l2", "yes")]),
            &links(&[("eth0", true), ("eth1", false)]),
        );
        let address = plan.services.values().next().unwrap().spec.addresses[0];
        let map = plan.interfaces_for(&BTreeSet::from([address]));
        assert_eq!(map.keys().cloned().collect::<Vec<_>>(), vec!["eth0".to_owned()]);
        assert!(plan.interfaces_for(&BTreeSet::new()).is_empty());
    }
}
