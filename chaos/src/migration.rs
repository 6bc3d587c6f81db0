//! Moving a cluster from MetalLB to meshlb, as a user does it: MetalLB
//! v0.15 installed from its own artifacts (its Helm chart, or its native
//! manifest, from its Go module), its controller and speakers running (as
//! their pods would: [`crate::pods`]) with its webhooks live, configured
//! and owning the addresses of 22 Services; then the README's migration
//! steps, read from the README and run as written, while a client probes
//! one address every 10 ms and the split-brain detector watches every
//! address on the segment. What a kubelet and the controllers would do
//! in between (stop the pods of a deleted DaemonSet, start those of a new
//! one) is done by hand: no kubelet runs here.
//!
//! The lab plays kube-proxy for the probed address (every node delivers
//! it), so a client whose ARP cache names a node that no longer answers
//! ARP is still served until another node announces the address.
//!
//! Used by the migration tests and `meshlb-lab bench migration`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::kube_env::KubeEnv;
use crate::lab::{Lab, LabProcess, LabSpec};
use crate::pods::PodProcess;
use crate::probe::{ProbeLog, Prober, RESPONDER_PORT};
use crate::splitbrain::{ClaimLog, SplitBrainDetector};
use crate::wait::wait_for;

/// How MetalLB was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// `helm install metallb` of its chart (native BGP: `speaker.frr.enabled=false`).
    Chart,
    /// `kubectl apply -f metallb-native.yaml`.
    Manifest,
}

impl Install {
    /// The names of its controller Deployment and speaker DaemonSet.
    fn workloads(self) -> (&'static str, &'static str) {
        match self {
            Install::Chart => ("metallb-controller", "metallb-speaker"),
            Install::Manifest => ("controller", "speaker"),
        }
    }

    /// Its memberlist Secret (MetalLB's controller makes it).
    fn memberlist_secret(self) -> &'static str {
        match self {
            Install::Chart => "metallb-memberlist",
            Install::Manifest => "memberlist",
        }
    }
}

impl std::fmt::Display for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Install::Chart => "MetalLB's Helm chart",
            Install::Manifest => "MetalLB's native manifest",
        })
    }
}

/// MetalLB's namespace, where meshlb goes too.
pub const NAMESPACE: &str = "metallb-system";

/// The namespace of the Services.
pub const SERVICES: &str = "shop";

/// How many Services MetalLB serves before the migration.
pub const SERVICE_COUNT: usize = 22;

/// The configuration, as a MetalLB user has it: two pools (the second not
/// auto-assigned), the L2Advertisement with no spec of MetalLB's guide,
/// a BGPPeer written as v1beta1 and one as v1beta2 (peers in the
/// documentation prefix, which no lab host has) and a Community (and
/// [`BFD_PROFILE`] later).
const CONFIGURATION: &str = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec:
  addresses: [198.51.100.200-198.51.100.229]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: second, namespace: metallb-system}
spec:
  addresses: [198.51.100.240/29]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: everything, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {name: old-peer, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 192.0.2.1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: new-peer, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64514, peerAddress: 192.0.2.2, holdTime: 90s}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: communities, namespace: metallb-system}
spec:
  communities:
    - {name: vpn-only, value: '65535:65282'}
";

/// A BFDProfile, applied once MetalLB serves everything: MetalLB in
/// native mode (the one without FRR, which the lab runs) refuses a
/// configuration that has one ("bfd profiles section set") and keeps its
/// last good one, as a cluster where one was added after looks.
const BFD_PROFILE: &str = "\
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 300, transmitInterval: 300, detectMultiplier: 3}
";

/// Service `i` of [`SERVICE_COUNT`] and its EndpointSlice (ready on every
/// node): most take any address; some name theirs under either of
/// MetalLB's annotation prefixes; two share one; two take the second pool.
fn service(i: usize, nodes: &[(String, Ipv4Addr)]) -> String {
    let annotations = match i {
        16 => "metallb.universe.tf/loadBalancerIPs: 198.51.100.225".to_owned(),
        17 => "metallb.io/loadBalancerIPs: 198.51.100.226".to_owned(),
        18 | 19 => "metallb.io/loadBalancerIPs: 198.51.100.227, metallb.io/allow-shared-ip: dns".to_owned(),
        20 => "metallb.io/address-pool: second".to_owned(),
        21 => "metallb.universe.tf/address-pool: second".to_owned(),
        _ => String::new(),
    };
    let (port, protocol) = match i {
        18 => (53, "TCP"),
        19 => (53, "UDP"),
        _ => (RESPONDER_PORT, "UDP"),
    };
    let endpoints: String = nodes
        .iter()
        .map(|(name, address)| {
            format!("  - {{addresses: [\"{address}\"], nodeName: {name}, conditions: {{ready: true}}}}\n")
        })
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i:02}\n  namespace: {SERVICES}\n  \
         annotations: {{{annotations}}}\nspec:\n  type: LoadBalancer\n  ipFamilyPolicy: SingleStack\n  \
         ipFamilies: [IPv4]\n  ports: [{{name: p, port: {port}, protocol: {protocol}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s{i:02}-1\n  \
         namespace: {SERVICES}\n  labels: {{kubernetes.io/service-name: s{i:02}}}\naddressType: IPv4\n\
         endpoints:\n{endpoints}ports: [{{name: p, port: {port}, protocol: {protocol}}}]\n"
    )
}

/// The migration steps the README gives: the commands of each `sh` block
/// under its "Moving from MetalLB" heading (the steps for every cluster,
/// then those for a cluster that ran MetalLB's Helm chart), comments
/// stripped.
pub fn readme_steps(readme: &str) -> Result<Vec<Vec<String>>, LabError> {
    let section = readme
        .split("\n### Moving from MetalLB")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .ok_or_else(|| LabError::Invalid("the README has no \"Moving from MetalLB\" section".into()))?;
    let blocks: Vec<Vec<String>> = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .map(|block| {
            block
                .lines()
                .map(|l| l.split(" #").next().unwrap_or_default().trim().to_owned())
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect()
        })
        .collect();
    if blocks.is_empty() {
        return Err(LabError::Invalid(
            "the README's migration section has no sh block".into(),
        ));
    }
    Ok(blocks)
}

/// A cluster running MetalLB, ready to migrate. Fields drop in order:
/// processes, then the server, then the lab.
pub struct MetallbCluster {
    /// meshlb's agents, once the migration started them.
    pub agents: Vec<crate::agent::MeshAgent>,
    controller: Option<PodProcess>,
    speakers: Vec<PodProcess>,
    responders: Vec<LabProcess>,
    /// The API server.
    pub env: KubeEnv,
    /// The lab.
    pub lab: Lab,
    install: Install,
    /// Every Service's addresses as MetalLB gave them.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// The address the client probes (Service s00's).
    pub probed: Ipv4Addr,
    scratch: PathBuf,
}

/// What one migration did.
#[derive(Debug)]
pub struct Migration {
    /// The commands run, and what each printed.
    pub steps: Vec<(String, String)>,
    /// From the first command until meshlb had announced every address.
    pub took: Duration,
    /// From MetalLB's last process stopping until meshlb had announced
    /// every address: while new ARP questions went unanswered.
    pub gap: Duration,
    /// The client's probes meanwhile.
    pub probes: ProbeLog,
    /// Every claim on the segment meanwhile.
    pub claims: ClaimLog,
    /// Whether every Service kept its address after each step.
    pub addresses_changed: Vec<String>,
    /// When the first command started.
    pub started: Instant,
    /// Seconds into the capture ([`Migration::claims`]) when MetalLB's
    /// last process had stopped: every claim after it is meshlb's.
    pub metallb_gone_at: f64,
}

impl Migration {
    /// The claims made once MetalLB was gone (meshlb's).
    pub fn meshlb_claims(&self) -> ClaimLog {
        ClaimLog {
            claims: self
                .claims
                .claims
                .iter()
                .filter(|c| c.at >= self.metallb_gone_at)
                .cloned()
                .collect(),
        }
    }
}

impl MetallbCluster {
    /// A lab of 3 nodes and a client with the API server on its
    /// control-plane host and MetalLB installed by `install`, running, and
    /// answering for the addresses it gave [`SERVICE_COUNT`] Services.
    /// `lab_binary` runs the responders.
    pub fn build(install: Install, lab_binary: &Path) -> Result<MetallbCluster, LabError> {
        let lab = Lab::build(&LabSpec {
            control_plane: true,
            ..LabSpec::segment(3, 1, false)
        })?;
        let env = KubeEnv::start_in_lab(&lab)?;
        env.register_lab_nodes(&lab)?;
        let module = crate::metallb::module_dir()?;
        match install {
            Install::Chart => {
                let mut helm = env.helm();
                helm.args(["install", "metallb"])
                    .arg(module.join("charts/metallb"))
                    .args(["--namespace", NAMESPACE, "--create-namespace"])
                    .args(["--set", "speaker.frr.enabled=false"]);
                crate::netns::run_command(helm, "helm install metallb")?;
            }
            Install::Manifest => {
                let manifest = module.join("config/manifests/metallb-native.yaml");
                env.run_kubectl(&["apply", "-f", &manifest.to_string_lossy()])?;
            }
        }
        fix_int32_bounds(&env, "bgppeers.metallb.io")?;
        let scratch = lab.log_dir().join("migration");
        std::fs::create_dir_all(&scratch).map_err(|e| LabError::io("create the migration directory", e))?;
        let mut cluster = MetallbCluster {
            agents: Vec::new(),
            controller: None,
            speakers: Vec::new(),
            responders: Vec::new(),
            env,
            lab,
            install,
            addresses: BTreeMap::new(),
            probed: Ipv4Addr::UNSPECIFIED,
            scratch,
        };
        if let Err(e) = cluster.start_metallb().and_then(|()| cluster.configure(lab_binary)) {
            cluster.lab.keep_logs();
            return Err(e);
        }
        Ok(cluster)
    }

    /// MetalLB's controller (on the control-plane host, so that its ports
    /// are not a speaker's) with its webhooks reachable through the
    /// webhook Service's endpoints, then a speaker on every node.
    fn start_metallb(&mut self) -> Result<(), LabError> {
        let (controller, speaker) = self.install.workloads();
        let control = self.lab.host("control")?.ipv4;
        // The endpoint controller's part: the webhook Service's endpoint
        // is the controller's pod.
        self.env.apply(
            "webhook-endpoints.yaml",
            &format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: metallb-webhook-service-1\n  \
                 namespace: {NAMESPACE}\n  labels: {{kubernetes.io/service-name: metallb-webhook-service}}\n\
                 addressType: IPv4\nendpoints:\n  - {{addresses: [\"{control}\"], conditions: {{ready: true}}}}\n\
                 ports: [{{port: 9443, protocol: TCP}}]\n"
            ),
        )?;
        let binary = crate::metallb::binary("controller")?;
        self.controller = Some(crate::pods::run_container(
            &self.lab,
            &self.env,
            "control",
            NAMESPACE,
            "deployment",
            controller,
            "controller",
            &binary,
            &[
                format!("--namespace={NAMESPACE}"),
                "--cert-dir=/tmp/k8s-webhook-server/serving-certs".into(),
            ],
        )?);
        // The controller makes the memberlist Secret and the webhooks'
        // certificate; the speakers need the first, every write of
        // MetalLB's kinds the second.
        let env = &self.env;
        wait_for(Duration::from_secs(120), "MetalLB's memberlist Secret", || {
            env.run_kubectl(&["get", "secret", "-n", NAMESPACE, self.install.memberlist_secret()])
                .is_ok()
        })?;
        let binary = crate::metallb::binary("speaker")?;
        for node in self.lab.node_names() {
            self.speakers.push(crate::pods::run_container(
                &self.lab,
                &self.env,
                &node,
                NAMESPACE,
                "daemonset",
                speaker,
                "speaker",
                &binary,
                &[format!("--namespace={NAMESPACE}")],
            )?);
        }
        Ok(())
    }

    /// The configuration and the Services, applied (through MetalLB's
    /// webhooks); waits until MetalLB gave every Service its address and
    /// one node answers for each.
    fn configure(&mut self, lab_binary: &Path) -> Result<(), LabError> {
        let env = &self.env;
        env.run_kubectl(&["create", "namespace", SERVICES])?;
        // The webhooks answer once the controller has its certificate.
        let mut refusal = String::new();
        wait_for(
            Duration::from_secs(120),
            "MetalLB's webhooks to admit the configuration",
            || match env.apply("metallb-configuration.yaml", CONFIGURATION) {
                Ok(()) => true,
                Err(e) => {
                    refusal = e.to_string();
                    false
                }
            },
        )
        .map_err(|e| {
            let log = self.controller.as_ref().map(|c| c.process.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            LabError::Invalid(format!(
                "{e}: {refusal}\nMetalLB's controller, last lines:\n{}",
                tail.join("\n")
            ))
        })?;
        let nodes: Vec<(String, Ipv4Addr)> = self
            .lab
            .hosts_with(crate::lab::Role::Node)
            .map(|h| (h.name.clone(), h.ipv4))
            .collect();
        let services: String = (0..SERVICE_COUNT).map(|i| service(i, &nodes)).collect();
        env.apply("services.yaml", &services)?;
        wait_for(Duration::from_secs(120), "MetalLB to address every Service", || {
            self.addresses = service_addresses(env).unwrap_or_default();
            self.addresses.len() == SERVICE_COUNT && self.addresses.values().all(|a| !a.is_empty())
        })?;
        self.probed = self.addresses["s00"][0]
            .parse()
            .map_err(|_| LabError::Invalid("s00's address".into()))?;
        self.responders = crate::scenario::start_responders(&self.lab, lab_binary)?;
        crate::kube_failover::play_kube_proxy(&self.lab, self.probed)?;
        let lab = &self.lab;
        for address in self.distinct_addresses() {
            wait_for(Duration::from_secs(60), "MetalLB's speakers to answer ARP", || {
                crate::probe::arp_answerers(lab, "client1", address).len() == 1
            })?;
        }
        self.env.apply("bfd-profile.yaml", BFD_PROFILE)
    }

    /// Every distinct Service address.
    pub fn distinct_addresses(&self) -> Vec<Ipv4Addr> {
        let mut all: Vec<Ipv4Addr> = self
            .addresses
            .values()
            .flatten()
            .filter_map(|a| a.parse().ok())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Runs `steps` (the README's commands) as a user in the cluster's
    /// namespace would, each with `meshlb-agent`, kubectl and helm on its
    /// path, aimed at this cluster; after each, what the cluster's kubelets
    /// and controllers would do. Returns what happened, once meshlb's agents
    /// answer for every address.
    pub fn migrate(&mut self, steps: &[String]) -> Result<Migration, LabError> {
        // The README's relative paths (charts/meshlb) from the repository.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let charts = self.scratch.join("charts");
        if !charts.exists() {
            std::os::unix::fs::symlink(repo.join("charts"), &charts)
                .map_err(|e| LabError::io("link the charts into the scratch directory", e))?;
        }
        let agent = crate::agent::agent_binary()?;
        let agent_dir = agent
            .parent()
            .ok_or_else(|| LabError::Invalid("meshlb-agent's directory".into()))?;
        let path = format!(
            "{}:{}:{}",
            agent_dir.display(),
            self.env
                .binary("kubectl")
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            std::env::var("PATH").unwrap_or_default()
        );
        let netns = self.lab.host("control")?.netns.clone();
        let detector = SplitBrainDetector::start(&self.lab)?;
        let capture_started = Instant::now();
        let mut metallb_gone = None;
        let prober = Prober::start(
            &self.lab,
            "client1",
            SocketAddr::new(self.probed.into(), RESPONDER_PORT),
            Duration::from_millis(10),
        )?;
        prober.wait_for_answer(Instant::now(), Duration::from_secs(10), |_| true)?;
        let started = Instant::now();
        let mut done = Vec::new();
        let mut addresses_changed = Vec::new();
        for step in steps {
            let mut command = std::process::Command::new("ip");
            command
                .args(["netns", "exec", &netns, "sh", "-c", step])
                .current_dir(&self.scratch)
                .env("PATH", &path)
                .env("KUBECONFIG", self.env.kubeconfig())
                .env("HOME", &self.scratch)
                .env("HELM_CACHE_HOME", self.scratch.join("helm-cache"))
                .env("HELM_CONFIG_HOME", self.scratch.join("helm-config"))
                .env("HELM_DATA_HOME", self.scratch.join("helm-data"));
            let printed = crate::netns::run_command(command, step)?;
            done.push((step.clone(), printed));
            self.play_the_cluster()?;
            if metallb_gone.is_none() && self.speakers.is_empty() && self.controller.is_none() {
                metallb_gone = Some(Instant::now());
            }
            let now = service_addresses(&self.env)?;
            for (service, addresses) in &self.addresses {
                if now.get(service) != Some(addresses) {
                    addresses_changed.push(format!(
                        "after `{step}`: {service} has {:?}, had {addresses:?}",
                        now.get(service)
                    ));
                }
            }
        }
        // meshlb answers for every address.
        let lab = &self.lab;
        let nodes: Vec<String> = lab
            .hosts_with(crate::lab::Role::Node)
            .map(|h| h.mac.to_string().to_lowercase())
            .collect();
        for address in self.distinct_addresses() {
            wait_for(Duration::from_secs(60), "meshlb to answer for every address", || {
                let answerers = crate::probe::arp_answerers(lab, "client1", address);
                answerers.len() == 1 && answerers.iter().all(|m| nodes.contains(&m.to_string().to_lowercase()))
            })?;
        }
        let probes = prober.stop();
        let claims = detector.stop()?;
        let metallb_gone_at = metallb_gone
            .ok_or_else(|| LabError::Invalid("MetalLB still runs after the README's steps".into()))?
            .saturating_duration_since(capture_started)
            .as_secs_f64();
        // When meshlb had announced the last address, in the capture's time.
        let mut announced_at = metallb_gone_at;
        for address in self.distinct_addresses() {
            let first = claims
                .claims
                .iter()
                .filter(|c| c.ip == std::net::IpAddr::V4(address) && c.at >= metallb_gone_at)
                .map(|c| c.at)
                .fold(f64::INFINITY, f64::min);
            if first.is_finite() {
                announced_at = announced_at.max(first);
            }
        }
        let first_command = started.saturating_duration_since(capture_started).as_secs_f64();
        Ok(Migration {
            steps: done,
            took: Duration::from_secs_f64((announced_at - first_command).max(0.0)),
            gap: Duration::from_secs_f64(announced_at - metallb_gone_at),
            probes,
            claims,
            addresses_changed,
            started,
            metallb_gone_at,
        })
    }

    /// What the kubelets and controllers would do now: the pods of
    /// MetalLB's deleted workloads stop (SIGTERM, as a kubelet stops a
    /// pod), and meshlb's DaemonSet, once installed, runs on every node.
    fn play_the_cluster(&mut self) -> Result<(), LabError> {
        let (controller, speaker) = self.install.workloads();
        let gone = |kind: &str, name: &str| self.env.run_kubectl(&["get", kind, "-n", NAMESPACE, name]).is_err();
        if gone("daemonset", speaker) {
            // Every node's kubelet stops its speaker at once.
            for pod in &self.speakers {
                pod.process.terminate()?;
            }
            for pod in self.speakers.drain(..) {
                stop_pod(&self.env, pod)?;
            }
        }
        if gone("deployment", controller)
            && let Some(pod) = self.controller.take()
        {
            stop_pod(&self.env, pod)?;
        }
        let installed = self
            .env
            .run_kubectl(&["get", "daemonset", "-n", NAMESPACE, crate::kube_env::CHART_RELEASE])
            .is_ok();
        if installed && self.agents.is_empty() {
            self.agents = crate::agent::start_chart_cluster(&self.lab, &self.env)?;
        }
        Ok(())
    }
}

/// Makes CRD `name` admit objects on Kubernetes 1.37: MetalLB v0.15.2's
/// BGPPeer CRD declares `myASN` and `peerASN` as `format: int32` with a
/// maximum of 4294967295, which the API server refuses for every object
/// ("Maximum boundary value must be of type integer with format int32"),
/// so no BGPPeer can be created under it; MetalLB v0.16 writes `int64`, as
/// this does (as a user on Kubernetes 1.37 must, to have BGPPeers at all).
fn fix_int32_bounds(env: &KubeEnv, name: &str) -> Result<(), LabError> {
    fn walk(schema: &mut serde_json::Value) {
        let too_large = schema["maximum"].as_f64().is_some_and(|m| m > f64::from(i32::MAX));
        if schema["format"] == "int32" && too_large {
            schema["format"] = serde_json::json!("int64");
        }
        for key in ["properties", "additionalProperties"] {
            if let Some(children) = schema.get_mut(key).and_then(|c| c.as_object_mut()) {
                children.values_mut().for_each(walk);
            }
        }
        if let Some(items) = schema.get_mut("items") {
            walk(items);
        }
    }
    let text = env.run_kubectl(&["get", "crd", name, "-o", "json"])?;
    let mut crd: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LabError::Invalid(format!("CRD {name}: {e}")))?;
    for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
        walk(&mut version["schema"]["openAPIV3Schema"]);
    }
    env.replace(&format!("{name}.json"), &crd.to_string())
}

/// Stops a pod's process as a kubelet does (SIGTERM, then SIGKILL after
/// its grace), and removes its Pod object (as the garbage collector
/// would, its owner gone).
fn stop_pod(env: &KubeEnv, pod: PodProcess) -> Result<(), LabError> {
    pod.process.terminate()?;
    if pod.process.wait_exit(Duration::from_secs(10))?.is_none() {
        pod.process.kill()?;
    }
    env.run_kubectl(&["delete", "pod", "-n", NAMESPACE, &pod.pod, "--wait=false"])
        .map(|_| ())
}

/// The addresses in every Service's status, by name.
pub fn service_addresses(env: &KubeEnv) -> Result<BTreeMap<String, Vec<String>>, LabError> {
    let text = env.run_kubectl(&["get", "services", "-n", SERVICES, "-o", "json"])?;
    let list: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LabError::Invalid(format!("the Services: {e}")))?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let name = s["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let addresses = s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                .collect();
            (name, addresses)
        })
        .collect())
}
