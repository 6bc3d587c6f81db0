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
//! [`Layer2Actor`] is the glue: it republishes the plan to the mesh when it
//! changes, puts this node's serveable service addresses on the loopback
//! interface (with `arp_ignore`/`arp_announce` on the announcing interfaces,
//! so the kernel delivers their traffic but never answers ARP for them), and
//! starts and places the service and interface actors of `meshlb-actors`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message, ResponseFuture, StreamHandler, WrapFuture,
};
use meshlb_actors::l2::interface::{AnnouncerStatus, InterfaceActor, Shutdown};
use meshlb_actors::l2::membership::{MembershipActor, Services};
use meshlb_actors::l2::responder::AnnounceSchedule;
use meshlb_actors::l2::service::{Placement, ServiceActor, StopService};
use meshlb_actors::l2::socket::link_is_up;
use meshlb_config::config::{Failback, WeightedSelector};
use meshlb_config::health::Health;
use meshlb_config::meta::{StringMap, any_matches};
use meshlb_config::service::ServiceKey;
use meshlb_gossip::driver::{Command, WeightFn};
use meshlb_gossip::mesh::{ServicePlan, ServiceSpec};
use meshlb_gossip::record::{NodeRecord, service_id};
use tokio::sync::{mpsc, watch};

use crate::local_address::LocalAddresses;
pub use crate::pipeline::AgentState;

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

/// The configuration actor of Layer 2 mode. See the module documentation.
///
/// It follows the agent's state (configuration, outcomes, health) and the
/// link state, and on every change of the resulting [`L2Plan`]: publishes
/// `serving` and `links` in this node's record and the services to the
/// mesh, places the loopback addresses, starts, places and stops the
/// service actors, and starts the interface actors they need.
pub struct Layer2Actor {
    options: Layer2Options,
    mesh: mpsc::Sender<Command>,
    state: watch::Receiver<Arc<AgentState>>,
    membership: Addr<MembershipActor>,
    published: Option<L2Plan>,
    interfaces: BTreeMap<String, Addr<InterfaceActor>>,
    services: BTreeMap<u64, Addr<ServiceActor>>,
    local: watch::Sender<(BTreeSet<IpAddr>, BTreeMap<String, bool>)>,
    local_task: Option<tokio::task::JoinHandle<()>>,
}

impl Layer2Actor {
    /// Starts Layer 2 mode (inside an actix system): `state` is the agent's
    /// state, `mesh` takes records and services, `announce` is the mesh's
    /// ownership decision.
    pub fn start(
        options: Layer2Options,
        state: watch::Receiver<Arc<AgentState>>,
        mesh: mpsc::Sender<Command>,
        announce: watch::Receiver<BTreeSet<IpAddr>>,
    ) -> Addr<Layer2Actor> {
        let membership = MembershipActor::new(announce).start();
        let (local, mut local_rx) = watch::channel((BTreeSet::new(), BTreeMap::new()));
        let mut addresses = LocalAddresses::new(options.local_addresses);
        // Loopback addresses change through `ip`, awaited off the actor.
        let local_task = tokio::task::spawn_local(async move {
            loop {
                let (wanted, links) = local_rx.borrow_and_update().clone();
                addresses.set(&wanted, &links).await;
                if local_rx.changed().await.is_err() {
                    addresses.set(&BTreeSet::new(), &BTreeMap::new()).await;
                    return;
                }
            }
        });
        Layer2Actor {
            options,
            mesh,
            state,
            membership,
            published: None,
            interfaces: BTreeMap::new(),
            services: BTreeMap::new(),
            local,
            local_task: Some(local_task),
        }
        .start()
    }

    fn interface(&mut self, name: &str) -> Option<Addr<InterfaceActor>> {
        if let Some(actor) = self.interfaces.get(name) {
            return Some(actor.clone());
        }
        let (status, _) = watch::channel(AnnouncerStatus::default());
        match InterfaceActor::open(name, self.options.schedule.clone(), status) {
            Ok(actor) => {
                let addr = actor.start();
                self.interfaces.insert(name.to_owned(), addr.clone());
                Some(addr)
            }
            Err(e) => {
                tracing::error!("{e}; addresses owned here are not answered on {name}");
                None
            }
        }
    }

    fn replan(&mut self, ctx: &mut Context<Self>) {
        let snapshot = Arc::clone(&self.state.borrow_and_update());
        let next = plan(&snapshot, &self.options.node_labels, &interfaces());
        if self.published.as_ref() == Some(&next) {
            return;
        }
        let services = Command::SetServices(ServicePlan {
            services: next.specs(),
            weight: next.weight_fn(),
            serving: next.serving(),
            links: next.links.clone(),
        });
        let mesh = self.mesh.clone();
        ctx.spawn(
            async move {
                if mesh.send(services).await.is_err() {
                    tracing::debug!("the mesh has stopped; Layer 2 plan not published");
                }
            }
            .into_actor(self),
        );
        self.local.send_replace((next.local_addresses(), next.links.clone()));
        // Service actors: placed anew, started, or stopped.
        let mut placed = BTreeMap::new();
        for (id, service) in &next.services {
            let interfaces = service
                .interfaces
                .iter()
                .filter_map(|name| {
                    let up = next.links.get(name).copied().unwrap_or(false);
                    self.interface(name)
                        .map(|actor| (name.clone(), (actor.recipient(), up)))
                })
                .collect();
            let placement = Placement {
                addresses: service.spec.addresses.iter().copied().collect(),
                interfaces,
            };
            let actor = match self.services.remove(id) {
                Some(actor) => {
                    actor.do_send(placement);
                    actor
                }
                None => ServiceActor::new(*id, placement).start(),
            };
            placed.insert(*id, actor);
        }
        for (_, gone) in std::mem::take(&mut self.services) {
            gone.do_send(StopService);
        }
        self.services = placed;
        self.membership.do_send(Services(self.services.clone()));
        self.published = Some(next);
    }
}

impl Actor for Layer2Actor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let changes = futures_util::stream::unfold(self.state.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some((StateChanged, rx))
        });
        ctx.add_stream(changes);
        ctx.run_interval(LINK_POLL, |actor, ctx| actor.replan(ctx));
        self.replan(ctx);
    }
}

struct StateChanged;

impl StreamHandler<StateChanged> for Layer2Actor {
    fn handle(&mut self, _: StateChanged, ctx: &mut Context<Self>) {
        self.replan(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The agent's state is gone only at shutdown, which sends `Stop`.
    }
}

/// Stops Layer 2 mode: every service actor withdraws its claims, every
/// interface actor goes quiet, the loopback addresses are removed; answered
/// once all of that is done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Layer2Actor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        for (_, service) in std::mem::take(&mut self.services) {
            service.do_send(StopService);
        }
        for (_, interface) in std::mem::take(&mut self.interfaces) {
            interface.do_send(Shutdown);
        }
        // Closing the channel makes the task remove the addresses and end.
        let (closed, _) = watch::channel((BTreeSet::new(), BTreeMap::new()));
        drop(std::mem::replace(&mut self.local, closed));
        let task = self.local_task.take();
        ctx.stop();
        Box::pin(async move {
            if let Some(task) = task {
                let _ = task.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use meshlb_config::Inventory;

    fn state(yaml: &str) -> AgentState {
        let objects = meshlb_config::parse_documents(yaml, "test.yaml").unwrap();
        let inventory = Inventory::build(&objects).unwrap();
        let mut reconciler = meshlb_config::Reconciler::new(Default::default(), BTreeMap::new());
        let outcomes = reconciler.apply(&inventory);
        AgentState {
            generation: 1,
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
