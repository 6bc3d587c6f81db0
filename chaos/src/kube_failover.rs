//! Layer 2 failover in a cluster, meshlb beside MetalLB: one lab with the
//! real API server on its control-plane host, and for both systems the same
//! pool, L2Advertisement, Service and EndpointSlice (endpoints ready on
//! every node). A run starts one system's agents on every node (meshlb's
//! `meshlb-agent run --kubernetes`, or MetalLB's speaker in native mode
//! with memberlist, [`crate::metallb`]), probes the Service's address from
//! the client every 10 ms, applies one fault to the node that answers, then
//! stops every agent and restores the node for the next run, so runs of the
//! two systems interleave against one API server.
//!
//! kube-proxy is played by the lab: every node accepts the Service
//! address's traffic (it sits on loopback, with `arp_ignore`/`arp_announce`
//! set so the kernel never answers ARP for it), as kube-proxy makes every
//! node deliver a LoadBalancer address's traffic. So, as in a cluster, a
//! node whose agent is frozen or stopped still serves the clients that
//! reach it; what the fault interrupts is who answers ARP, and the client
//! moves when another node announces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::LabError;
use crate::kube_env::KubeEnv;
use crate::lab::{Lab, LabProcess, LabSpec};
use crate::probe::RESPONDER_PORT;
use crate::scenario::{FailoverRun, NodeFault, fail_owner, start_responders};
use crate::wait::wait_for;

/// The Service address both systems announce (the first of the examples'
/// `lan` pool, requested by the Service).
pub const SERVICE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

/// The Layer 2 agents a run starts on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcer {
    /// meshlb's agents (`fast` mesh profile).
    Meshlb,
    /// MetalLB's speaker, this binary.
    Metallb(PathBuf),
}

/// The agents of one run, stopped (SIGKILL) when dropped.
enum Agents {
    Meshlb(Vec<crate::agent::MeshAgent>),
    Metallb(Vec<crate::metallb::Speaker>),
}

impl Agents {
    fn process_on(&self, node: &str) -> Option<&LabProcess> {
        match self {
            Agents::Meshlb(agents) => agents.iter().find(|a| a.node == node).map(|a| &a.process),
            Agents::Metallb(speakers) => speakers.iter().find(|s| s.node == node).map(|s| &s.process),
        }
    }
}

/// The shared lab. Fields drop in order: responders, the API server, the lab.
pub struct KubeFailoverLab {
    responders: Vec<LabProcess>,
    env: KubeEnv,
    lab: Lab,
    lab_binary: PathBuf,
    memberlist_key: PathBuf,
}

/// Makes every node of `lab` deliver `address`'s traffic to its own
/// responder, as kube-proxy makes every node deliver a LoadBalancer
/// address's: the address on loopback, and `arp_ignore`/`arp_announce` on
/// eth0 so the kernel never answers ARP for it (the announcer does).
pub fn play_kube_proxy(lab: &Lab, address: Ipv4Addr) -> Result<(), LabError> {
    for node in lab.node_names() {
        for setting in ["net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"] {
            lab.exec(&node, "sysctl", &["-qw", setting])?;
        }
        lab.exec(&node, "ip", &["addr", "replace", &format!("{address}/32"), "dev", "lo"])?;
    }
    Ok(())
}

/// The objects both systems serve: the examples' pool and advertisement,
/// meshlb's cluster keys, and the echo Service (asking for
/// [`SERVICE_ADDRESS`]) with a ready endpoint on every node.
fn objects(lab: &Lab) -> Result<String, LabError> {
    let endpoints: String = lab
        .hosts_with(crate::lab::Role::Node)
        .map(|h| {
            format!(
                "  - {{addresses: [\"{}\"], nodeName: {}, conditions: {{ready: true}}}}\n",
                h.ipv4, h.name
            )
        })
        .collect();
    let keys = crate::agent::cluster_key_secret(&format!("{}\n", crate::agent::random_key(1)?));
    Ok(format!(
        "{pools}\n---\n{keys}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: bench\n  \
         annotations: {{metallb.io/loadBalancerIPs: \"{SERVICE_ADDRESS}\"}}\n\
         spec:\n  type: LoadBalancer\n  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4]\n  \
         ports: [{{name: echo, port: {RESPONDER_PORT}, protocol: UDP}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-1\n  namespace: bench\n  \
         labels: {{kubernetes.io/service-name: echo}}\naddressType: IPv4\nendpoints:\n{endpoints}\
         ports: [{{name: echo, port: {RESPONDER_PORT}, protocol: UDP}}]\n",
        pools = include_str!("../../examples/layer2/pools.yaml"),
    ))
}

impl KubeFailoverLab {
    /// A lab of `nodes` nodes, a client and the control-plane host running
    /// the API server with the objects both systems serve; the Service's
    /// status already holds [`SERVICE_ADDRESS`] (MetalLB's controller, or
    /// meshlb's allocator, would have written it), and MetalLB's speaker
    /// Pods exist. `lab_binary` runs the responders.
    pub fn build(nodes: usize, lab_binary: &Path) -> Result<KubeFailoverLab, LabError> {
        let lab = Lab::build(&LabSpec {
            control_plane: true,
            ..LabSpec::segment(nodes, 1, false)
        })?;
        let env = KubeEnv::start_in_lab(&lab)?;
        env.register_lab_nodes(&lab)?;
        env.apply_crds()?;
        env.apply(
            "namespaces.yaml",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n---\n\
                 apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench}}\n",
                crate::metallb::NAMESPACE
            ),
        )?;
        env.apply("objects.yaml", &objects(&lab)?)?;
        let status = serde_json::json!({"loadBalancer": {"ingress": [{"ip": SERVICE_ADDRESS.to_string()}]}});
        env.patch_status("service", "bench", "echo", status)?;
        crate::metallb::register_speaker_pods(&env, &lab)?;
        let memberlist_key = crate::metallb::write_memberlist_key(&lab)?;
        Ok(KubeFailoverLab {
            responders: Vec::new(),
            env,
            lab,
            lab_binary: lab_binary.to_path_buf(),
            memberlist_key,
        })
    }

    /// Every node as it was before the last run's fault, playing
    /// kube-proxy; no agent running; the client's neighbour cache empty.
    fn restore(&mut self) -> Result<(), LabError> {
        self.lab.heal()?;
        play_kube_proxy(&self.lab, SERVICE_ADDRESS)?;
        // A crash kills the node's responder with everything else on it.
        if self.responders.len() != self.lab.node_names().len() || self.responders.iter().any(|r| !r.is_running()) {
            self.responders.clear();
            self.responders = start_responders(&self.lab, &self.lab_binary)?;
        }
        self.lab.exec("client1", "ip", &["neigh", "flush", "all"])?;
        Ok(())
    }

    /// `announcer`'s agents on every node, once they have found each other.
    fn start(&self, announcer: &Announcer) -> Result<Agents, LabError> {
        let names = self.lab.node_names();
        match announcer {
            Announcer::Meshlb => Ok(Agents::Meshlb(crate::agent::start_kubernetes_cluster(
                &self.lab,
                &names,
                "fast",
                &self.env.kubeconfig(),
            )?)),
            Announcer::Metallb(binary) => {
                let speakers = names
                    .iter()
                    .map(|node| {
                        crate::metallb::start_speaker(
                            &self.lab,
                            node,
                            binary,
                            &self.env.kubeconfig(),
                            &self.memberlist_key,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let everyone: std::collections::BTreeSet<String> = names.iter().cloned().collect();
                wait_for(Duration::from_secs(60), "every speaker to see every node join", || {
                    speakers.iter().all(|s| s.joined() == everyone)
                })?;
                Ok(Agents::Metallb(speakers))
            }
        }
    }

    /// One run: `announcer`'s agents on every node, the client probing
    /// [`SERVICE_ADDRESS`] every 10 ms; after a random 0.5–1.5 s `fault`
    /// hits the node that answers; what the client saw.
    pub fn failover(&mut self, announcer: &Announcer, fault: NodeFault) -> Result<FailoverRun, LabError> {
        self.restore()?;
        let agents = self.start(announcer)?;
        let lab = &self.lab;
        wait_for(
            Duration::from_secs(30),
            "one node to answer ARP for the Service",
            || crate::probe::arp_answerers(lab, "client1", SERVICE_ADDRESS).len() == 1,
        )?;
        fail_owner(lab, SERVICE_ADDRESS, fault, |owner| agents.process_on(owner))
    }
}
