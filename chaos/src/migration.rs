//! Moving a cluster from MetalLB to meshlb, as a user does it, on real
//! nodes ([`crate::cluster`]: containerd, a kubelet and kube-proxy on
//! every node): MetalLB v0.15 installed from its own artifacts (its Helm
//! chart, or its native manifest, from its Go module; its images packed
//! from the binaries built from that module), its controller and speakers
//! running as real pods with their webhooks live, configured and owning
//! the addresses of 22 Services in front of real echo pods; meshlb's image
//! on the nodes under the name its chart uses by default; then the
//! README's migration steps, read from the README and run as written,
//! while a client probes one address every 10 ms and the split-brain
//! detector watches every address on the segment. The kubelets stop
//! MetalLB's pods and start meshlb's as in any cluster.
//!
//! Used by the migration tests and `meshlb-lab bench migration`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cluster::{Announcer, Cluster};
use crate::error::LabError;
use crate::kube_env::KubeEnv;
use crate::lab::{Lab, LabSpec};
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

/// The echo pods' Deployment, and the label every Service selects them by.
const ECHO: &str = "echo";

/// Service `i` of [`SERVICE_COUNT`], in front of the echo pods: most take
/// any address; some name theirs under either of MetalLB's annotation
/// prefixes; two share one; two take the second pool.
fn service(i: usize) -> String {
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
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i:02}\n  namespace: {SERVICES}\n  \
         annotations: {{{annotations}}}\nspec:\n  type: LoadBalancer\n  selector: {{app: {ECHO}}}\n  \
         ports: [{{name: p, port: {port}, targetPort: {echo_port}, protocol: {protocol}}}]\n",
        echo_port = crate::cluster::ECHO_PORT,
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
/// the cluster, then the lab.
pub struct MetallbCluster {
    /// The cluster of real nodes.
    pub cluster: Cluster,
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
    /// A lab of 3 real nodes and a client with the control plane on its
    /// control-plane host and MetalLB installed by `install`, running, and
    /// answering for the addresses it gave [`SERVICE_COUNT`] Services.
    pub fn build(install: Install) -> Result<MetallbCluster, LabError> {
        let lab = Lab::build(&LabSpec {
            control_plane: true,
            ..LabSpec::segment(3, 1, false)
        })?;
        let cluster = Cluster::start(&lab).inspect_err(|_| lab.keep_logs())?;
        let scratch = lab.log_dir().join("migration");
        std::fs::create_dir_all(&scratch).map_err(|e| LabError::io("create the migration directory", e))?;
        let mut metallb = MetallbCluster {
            cluster,
            lab,
            install,
            addresses: BTreeMap::new(),
            probed: Ipv4Addr::UNSPECIFIED,
            scratch,
        };
        if let Err(e) = metallb.install_metallb().and_then(|()| metallb.configure()) {
            metallb.lab.keep_logs();
            return Err(e);
        }
        Ok(metallb)
    }

    /// The API server and its tools.
    pub fn env(&self) -> &KubeEnv {
        self.cluster.env()
    }

    /// MetalLB installed by [`MetallbCluster::install`], its images on the
    /// nodes, its controller and speakers Ready; meshlb's image on the
    /// nodes under the chart's default name, where the README's
    /// `helm install` finds it.
    fn install_metallb(&self) -> Result<(), LabError> {
        let env = self.env();
        self.cluster.import_metallb_images()?;
        let module = crate::metallb::module_dir()?;
        match self.install {
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
        let (controller, speaker) = self.install.workloads();
        self.cluster.rollout("deployment", NAMESPACE, controller)?;
        self.cluster.rollout("daemonset", NAMESPACE, speaker)?;
        fix_int32_bounds(env, "bgppeers.metallb.io")?;
        self.cluster.import_meshlb_image_as(&[env.chart_default_image()?])
    }

    /// The configuration, the echo pods (one on every node) and the
    /// Services, applied (through MetalLB's webhooks); waits until MetalLB
    /// gave every Service its address and one node answers for each.
    fn configure(&mut self) -> Result<(), LabError> {
        let env = self.cluster.env();
        crate::metallb::apply_when_admitted(env, "metallb-configuration.yaml", CONFIGURATION)?;
        self.cluster.deploy_pods(SERVICES, ECHO, 3)?;
        let services: String = (0..SERVICE_COUNT).map(service).collect();
        env.apply("services.yaml", &services)?;
        wait_for(Duration::from_secs(120), "MetalLB to address every Service", || {
            self.addresses = service_addresses(env).unwrap_or_default();
            self.addresses.len() == SERVICE_COUNT && self.addresses.values().all(|a| !a.is_empty())
        })?;
        self.probed = self.addresses["s00"][0]
            .parse()
            .map_err(|_| LabError::Invalid("s00's address".into()))?;
        let lab = &self.lab;
        for address in self.distinct_addresses() {
            wait_for(Duration::from_secs(60), "MetalLB's speakers to answer ARP", || {
                crate::probe::arp_answerers(lab, "client1", address).len() == 1
            })?;
        }
        env.apply("bfd-profile.yaml", BFD_PROFILE)
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
    /// path, aimed at this cluster, while the kubelets stop MetalLB's pods
    /// and start meshlb's. Returns what happened, once meshlb's agents
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
            self.env()
                .binary("kubectl")
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            std::env::var("PATH").unwrap_or_default()
        );
        let netns = self.lab.host("control")?.netns.clone();
        let detector = SplitBrainDetector::start(&self.lab)?;
        let capture_started = Instant::now();
        // When MetalLB's last process (a speaker or its controller) is
        // gone, watched while the steps run.
        let watching = std::sync::atomic::AtomicBool::new(true);
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
        let cluster = &self.cluster;
        let metallb_gone = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    let speakers = cluster.running(Announcer::Metallb.command()).unwrap_or(1);
                    let controllers = cluster.running("controller").unwrap_or(1);
                    if speakers + controllers == 0 {
                        return Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            });
            let ran = self.run_steps(steps, &netns, &path, &mut done, &mut addresses_changed);
            if ran.is_ok() {
                // MetalLB's pods may still be stopping after the last step.
                let _ = wait_for(Duration::from_secs(60), "MetalLB's pods to stop", || {
                    watcher.is_finished()
                });
            }
            watching.store(false, std::sync::atomic::Ordering::Relaxed);
            let gone = watcher.join().unwrap_or(None);
            ran.map(|()| gone)
        })?;
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

    /// Runs each of `steps` with `sh -c` in network namespace `netns`,
    /// `path` its PATH, in the scratch directory, aimed at this cluster;
    /// records what each printed in `done` and, after each, every Service
    /// whose addresses are no longer MetalLB's in `changed`.
    fn run_steps(
        &self,
        steps: &[String],
        netns: &str,
        path: &str,
        done: &mut Vec<(String, String)>,
        changed: &mut Vec<String>,
    ) -> Result<(), LabError> {
        let env = self.env();
        for step in steps {
            let mut command = std::process::Command::new("ip");
            command
                .args(["netns", "exec", netns, "sh", "-c", step])
                .current_dir(&self.scratch)
                .env("PATH", path)
                .env("KUBECONFIG", env.kubeconfig())
                .env("HOME", &self.scratch)
                .env("HELM_CACHE_HOME", self.scratch.join("helm-cache"))
                .env("HELM_CONFIG_HOME", self.scratch.join("helm-config"))
                .env("HELM_DATA_HOME", self.scratch.join("helm-data"));
            let printed = crate::netns::run_command(command, step)?;
            done.push((step.clone(), printed));
            let now = service_addresses(env)?;
            for (service, addresses) in &self.addresses {
                if now.get(service) != Some(addresses) {
                    changed.push(format!(
                        "after `{step}`: {service} has {:?}, had {addresses:?}",
                        now.get(service)
                    ));
                }
            }
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
