//! A real Kubernetes cluster in a lab: on every node namespace a
//! containerd (with runc and the CNI bridge plugin), a kubelet and a
//! kube-proxy; on the control-plane host, beside the API server
//! ([`crate::kube_env`]), the scheduler and the controller manager. Pods
//! are scheduled, run as containers, probed and restarted by the real
//! components, and Services reach them through kube-proxy, so what the
//! lab strikes is a cluster as users run one.
//!
//! ```text
//!   control (198.51.100.2): kube-testenv (etcd + kube-apiserver),
//!                           kube-scheduler, kube-controller-manager
//!   nodeN (198.51.100.1N):  containerd, kubelet, kube-proxy (nftables),
//!                           cni0 198.18.N.1/24 for the node's pods
//! ```
//!
//! Addresses come from the lab's ranges: pods from 198.18.0.0/16 (a /24
//! per node, routed between the nodes and from the control-plane host in
//! their namespaces alone), cluster IPs from 198.19.0.0/16 (the API
//! server's range). kube-proxy runs in nftables mode: it needs only the
//! `nft` the lab already uses, and it is the mode upstream develops.
//!
//! Each node's kubelet and containerd run in the node's network namespace
//! but this process's mount namespace ([`Lab::spawn_sharing_mounts`]), so
//! the mounts one makes (a pod's volumes, a container's root filesystem)
//! the other sees. Their state lives under [`NODES_ROOT`]`/<lab>/<node>`,
//! the pods' network namespaces included (containerd mounts them under
//! its state directory, not in `/run/netns`), their pods' cgroups under a
//! cgroup of the node's own in every hierarchy (`/<lab>-<node>`: kubelets
//! sharing one would delete each other's pods as orphans). A node's
//! processes, its pods, its mounts (the pods' namespaces among them) and
//! its cgroups all go
//! when the [`Cluster`] is dropped, also when a test panics, and
//! [`sweep`] removes those of labs whose process died.
//!
//! What the machine lacks shapes the settings: without CAP_SYS_RESOURCE
//! no process may lower its OOM score or raise its open-file limit past
//! 20,000, so containerd clamps OOM scores (`restrict_oom_score_adj`) and
//! the kubelet asks for no more files than that; cgroups are version 1,
//! which kubelet 1.37 runs on only when told (`failCgroupV1: false`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::LabError;
use crate::kube_env::KubeEnv;
use crate::lab::{Lab, LabProcess, Role};
use crate::netns::{LAB_PREFIX, SweepScope, run, run_command};
use crate::probe::Prober;
use crate::scenario::{FailoverRun, OBSERVE_AFTER_FAULT};

/// Where every lab's nodes keep their state: `<lab>/<node>` inside.
pub const NODES_ROOT: &str = "/tmp/meshlb-nodes";

/// The pods' range: node N's pods get 198.18.N.0/24.
pub const POD_NETWORK: &str = "198.18.0.0/16";

/// The cluster IPs' range (the API server's `--service-cluster-ip-range`).
pub const CLUSTER_IP_NETWORK: &str = "198.19.0.0/16";

/// How long nodes may take to become Ready.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the nodes' binaries and images are.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    /// The directory holding kubelet, kube-proxy, kube-scheduler and
    /// kube-controller-manager.
    pub dir: PathBuf,
}

impl NodeBinaries {
    /// `$MESHLB_KUBE_NODE_BIN`, or what `scripts/kube-testenv --node`
    /// built (it builds them if they are not cached yet). Asked once per
    /// process.
    pub fn find() -> Result<NodeBinaries, LabError> {
        static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
        let found = FOUND.get_or_init(|| match std::env::var_os("MESHLB_KUBE_NODE_BIN") {
            Some(dir) => Ok(PathBuf::from(dir)),
            None => crate::kube_env::built_by_script(&["--node"]).map_err(|e| e.to_string()),
        });
        let dir = found.clone().map_err(LabError::Invalid)?;
        for binary in ["kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"] {
            if !dir.join(binary).is_file() {
                return Err(LabError::Invalid(format!(
                    "{binary} is not in {} (scripts/kube-testenv --node builds it)",
                    dir.display()
                )));
            }
        }
        Ok(NodeBinaries { dir })
    }

    /// The path of `binary`.
    pub fn path(&self, binary: &str) -> PathBuf {
        self.dir.join(binary)
    }

    /// Image `name` (`pause`, `udp-echo`) as the build left it: its
    /// archive and its reference (`localhost/pause:3.10.2`).
    pub fn image(&self, name: &str) -> Result<(PathBuf, String), LabError> {
        let images = self.dir.join("../images");
        let reference_file = images.join(format!("{name}.ref"));
        let reference = std::fs::read_to_string(&reference_file)
            .map_err(|e| LabError::io(format!("read {}", reference_file.display()), e))?;
        Ok((images.join(format!("{name}.tar")), reference.trim().to_owned()))
    }
}

/// One node's Kubernetes processes and state.
#[derive(Debug)]
pub struct RealNode {
    /// The node's name (its lab host's).
    pub name: String,
    /// Its pods' range (198.18.N.0/24).
    pod_cidr: String,
    netns: String,
    dir: PathBuf,
    cgroup: String,
    // Stopped in this order: nothing restarts a container once the
    // kubelet is gone.
    kubelet: Option<LabProcess>,
    proxy: Option<LabProcess>,
    containerd: Option<LabProcess>,
    /// The kubelet's program and arguments, to start it again.
    kubelet_command: Vec<String>,
}

/// A lab's cluster of real nodes. See the module documentation.
#[derive(Debug)]
pub struct Cluster {
    // Dropped in order: the nodes first (while the API server still
    // answers their last words), then the control plane.
    nodes: Vec<RealNode>,
    control: Vec<LabProcess>,
    env: KubeEnv,
    binaries: NodeBinaries,
}

impl Cluster {
    /// Starts the API server on `lab`'s control-plane host, the scheduler
    /// and the controller manager beside it, and every node of the lab,
    /// and waits until every node is Ready.
    pub fn start(lab: &Lab) -> Result<Cluster, LabError> {
        let binaries = NodeBinaries::find()?;
        let names = lab.node_names();
        let env = KubeEnv::start_for_nodes_in_lab(lab, names.clone())?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            control: Vec::new(),
            env,
            binaries,
        };
        cluster.route_pods(lab)?;
        cluster.start_control_plane(lab)?;
        for (index, name) in names.iter().enumerate() {
            let node = RealNode::start(lab, &cluster.env, &cluster.binaries, name, index + 1)?;
            cluster.nodes.push(node);
        }
        cluster.wait_nodes_ready(NODE_READY_TIMEOUT)?;
        Ok(cluster)
    }

    /// The API server and its tools.
    pub fn env(&self) -> &KubeEnv {
        &self.env
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RealNode] {
        &self.nodes
    }

    /// Every node's pod range routed from every other node and from the
    /// control-plane host (webhooks and aggregated APIs reach pods); the
    /// cluster IPs routed on every node (its kube-proxy translates them
    /// after the route is chosen: a node without a route to them, as the
    /// lab's have no default route, could not reach a Service).
    fn route_pods(&self, lab: &Lab) -> Result<(), LabError> {
        let nodes: Vec<_> = lab.hosts_with(Role::Node).cloned().collect();
        let control = lab.host("control")?;
        for node in &nodes {
            run(
                "ip",
                &["-n", &node.netns, "route", "add", CLUSTER_IP_NETWORK, "dev", "eth0"],
            )?;
        }
        for (index, node) in nodes.iter().enumerate() {
            let cidr = pod_cidr(index + 1);
            for other in nodes.iter().filter(|o| o.name != node.name).chain([control]) {
                run(
                    "ip",
                    &["-n", &other.netns, "route", "add", &cidr, "via", &node.ipv4.to_string()],
                )?;
            }
        }
        Ok(())
    }

    fn start_control_plane(&mut self, lab: &Lab) -> Result<(), LabError> {
        let credentials = self.env.credentials_dir().to_path_buf();
        let kubeconfig = |component: &str| credentials.join(format!("kubeconfig-{component}"));
        let scheduler_config = credentials.join("kube-scheduler.yaml");
        write(
            &scheduler_config,
            &format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
                 clientConnection: {{kubeconfig: {}}}\nleaderElection: {{leaderElect: false}}\n",
                kubeconfig("kube-scheduler").display()
            ),
        )?;
        let scheduler = lab.spawn(
            "control",
            "kube-scheduler",
            &self.binaries.path("kube-scheduler").to_string_lossy(),
            &[
                &format!("--config={}", scheduler_config.display()),
                // No serving: nothing here scrapes or probes it.
                "--secure-port=0",
                "--v=1",
            ],
        )?;
        self.control.push(scheduler);
        let controller_manager = lab.spawn(
            "control",
            "kube-controller-manager",
            &self.binaries.path("kube-controller-manager").to_string_lossy(),
            &[
                &format!("--kubeconfig={}", kubeconfig("kube-controller-manager").display()),
                "--leader-elect=false",
                "--secure-port=0",
                // Each controller under a service account of its own, as
                // kubeadm runs it.
                "--use-service-account-credentials=true",
                &format!(
                    "--service-account-private-key-file={}",
                    credentials.join("service-account.key").display()
                ),
                &format!("--root-ca-file={}", credentials.join("ca.crt").display()),
                &format!("--cluster-cidr={POD_NETWORK}"),
                "--v=1",
            ],
        )?;
        self.control.push(controller_manager);
        Ok(())
    }

    /// Waits until every node reports Ready.
    pub fn wait_nodes_ready(&self, timeout: Duration) -> Result<(), LabError> {
        let timeout_arg = format!("--timeout={}s", timeout.as_secs());
        let deadline = std::time::Instant::now() + timeout;
        // The nodes must exist before `kubectl wait` can wait on them.
        loop {
            let listed = self.env.run_kubectl(&["get", "nodes", "-o", "name"])?;
            if listed.lines().count() >= self.nodes.len() {
                break;
            }
            self.check_running()?;
            if std::time::Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: format!("{} nodes to register (listed: {listed:?})", self.nodes.len()),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.env
            .run_kubectl(&["wait", "--for=condition=Ready", "node", "--all", &timeout_arg])
            .map(|_| ())
    }

    /// An error naming the first node or control-plane process that exited.
    pub fn check_running(&self) -> Result<(), LabError> {
        let processes = self.control.iter().chain(
            self.nodes
                .iter()
                .flat_map(|n| [&n.kubelet, &n.proxy, &n.containerd].into_iter().flatten()),
        );
        for process in processes {
            if !process.is_running() {
                let log = process.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(LabError::Invalid(format!(
                    "{} on {} exited; its log ends:\n{}",
                    process.name,
                    process.host,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
        }
        Ok(())
    }
}

/// The repository the lab imports meshlb's image as (the chart's
/// `speaker.image.repository`, as a user sets it to their registry's).
pub const MESHLB_IMAGE: &str = "localhost/meshlb-agent";

/// The echo workload's container port; its Services' port is the lab
/// prober's ([`crate::probe::RESPONDER_PORT`]).
pub const ECHO_PORT: u16 = 8007;

impl Cluster {
    /// Builds meshlb's image (`scripts/image`, the Dockerfile's final
    /// stage) and imports it into every node as [`MESHLB_IMAGE`] under
    /// each of `tags` (a new tag is a new pod template: a rolling update).
    pub fn import_meshlb_image(&self, tags: &[&str]) -> Result<(), LabError> {
        let references: Vec<String> = tags.iter().map(|tag| format!("{MESHLB_IMAGE}:{tag}")).collect();
        self.import_meshlb_image_as(&references)
    }

    /// Builds meshlb's image as [`Cluster::import_meshlb_image`] does and
    /// imports it into every node under each of `references` (full image
    /// names: the chart's default, `ghcr.io/meshlb/meshlb-agent:VERSION`,
    /// where a user's `helm install` without values finds it).
    pub fn import_meshlb_image_as(&self, references: &[String]) -> Result<(), LabError> {
        let scratch = self.env.credentials_dir().join("meshlb-image");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image");
        let mut build = std::process::Command::new(&script);
        build.arg(&scratch);
        run_command(build, "scripts/image")?;
        let archive = scratch.with_extension("tar");
        let mut pack = std::process::Command::new("tar");
        pack.arg("-C").arg(&scratch).arg("-cf").arg(&archive).arg(".");
        run_command(pack, "tar of meshlb's image")?;
        let built = format!("{MESHLB_IMAGE}:latest");
        for node in &self.nodes {
            node.ctr(&[
                "images",
                "import",
                "--base-name",
                MESHLB_IMAGE,
                &archive.to_string_lossy(),
            ])?;
            for reference in references {
                node.ctr(&["images", "tag", "--force", &built, reference])?;
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        let _ = std::fs::remove_file(&archive);
        Ok(())
    }

    /// How many processes named `command` run in the nodes' pods (every
    /// container's, on the host's network or not).
    pub fn running(&self, command: &str) -> Result<usize, LabError> {
        let hierarchies = cgroup_hierarchies()?;
        let roots: Vec<PathBuf> = self
            .nodes
            .iter()
            .flat_map(|n| hierarchies.iter().map(|h| h.join(&n.cgroup)))
            .filter(|r| r.is_dir())
            .collect();
        let (pids, _) = cgroup_processes(&roots);
        Ok(pids
            .into_iter()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == command))
            .count())
    }

    /// Waits until `kubectl rollout status` says `kind/name` in
    /// `namespace` is rolled out (three minutes at most, five for a
    /// DaemonSet, whose pods roll one node at a time).
    pub fn rollout(&self, kind: &str, namespace: &str, name: &str) -> Result<(), LabError> {
        let timeout = if kind == "daemonset" {
            "--timeout=300s"
        } else {
            "--timeout=180s"
        };
        self.env
            .run_kubectl(&["rollout", "status", kind, name, "-n", namespace, timeout])
            .map(|_| ())
    }

    /// Installs (or upgrades) meshlb's chart as a user does, its image
    /// [`MESHLB_IMAGE`]`:tag` (imported first), with `--set` `values`,
    /// and waits until the DaemonSet's pods are Ready on every node.
    pub fn install_meshlb(&self, tag: &str, values: &[&str]) -> Result<(), LabError> {
        let repository = format!("speaker.image.repository={MESHLB_IMAGE}");
        let image_tag = format!("speaker.image.tag={tag}");
        let mut all = vec![repository.as_str(), image_tag.as_str()];
        all.extend_from_slice(values);
        self.env.install_chart(&all)?;
        self.rollout(
            "daemonset",
            crate::kube_env::CHART_NAMESPACE,
            crate::kube_env::CHART_RELEASE,
        )
    }

    /// Installs MetalLB as its users do with its native manifest
    /// (`config/manifests/metallb-native.yaml` from its module, applied
    /// unchanged), its images (`scripts/metallb images`, under MetalLB's
    /// own names) imported into every node first, as a registry pull
    /// would have put them there; waits until its controller and a
    /// speaker on every node are Ready. Its webhooks are reached through
    /// their Service's endpoints (the API server routes to endpoints, and
    /// the control-plane host routes the pods' ranges).
    pub fn install_metallb(&self) -> Result<(), LabError> {
        self.import_metallb_images()?;
        let manifest = crate::metallb::module_dir()?.join("config/manifests/metallb-native.yaml");
        self.env.run_kubectl(&["apply", "-f", &manifest.to_string_lossy()])?;
        self.rollout("deployment", crate::metallb::NAMESPACE, "controller")?;
        self.rollout("daemonset", crate::metallb::NAMESPACE, "speaker")
    }

    /// Imports MetalLB's images (`scripts/metallb images`, under
    /// MetalLB's own names) into every node, as a registry pull would have
    /// put them there: its manifest and its chart then run unchanged.
    pub fn import_metallb_images(&self) -> Result<(), LabError> {
        let images = crate::metallb::images_dir()?;
        for node in &self.nodes {
            for image in ["controller", "speaker"] {
                node.import_image(&images.join(format!("{image}.tar")))?;
            }
        }
        Ok(())
    }

    /// A Deployment `name` of `replicas` udp-echo pods in `namespace`
    /// (created if missing), spread over the nodes, behind a LoadBalancer
    /// Service `name` on UDP port [`crate::probe::RESPONDER_PORT`] with
    /// `external_traffic_policy` (`Cluster` or `Local`); waits until the
    /// pods are Ready.
    pub fn deploy_echo(
        &self,
        namespace: &str,
        name: &str,
        replicas: usize,
        external_traffic_policy: &str,
    ) -> Result<(), LabError> {
        let port = crate::probe::RESPONDER_PORT;
        let service = format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: {external_traffic_policy}
  selector: {{app: {name}}}
  ports: [{{name: echo, port: {port}, targetPort: {ECHO_PORT}, protocol: UDP}}]
"#
        );
        self.deploy_pods(namespace, name, replicas)?;
        self.env.apply(&format!("{namespace}-{name}-service.yaml"), &service)
    }

    /// A Deployment `name` of `replicas` udp-echo pods labelled `app:
    /// name` in `namespace` (created if missing), spread over the nodes,
    /// each answering on UDP port [`ECHO_PORT`] with its pod's and node's
    /// names; waits until the pods are Ready.
    pub fn deploy_pods(&self, namespace: &str, name: &str, replicas: usize) -> Result<(), LabError> {
        let (_, image) = self.binaries.image("udp-echo")?;
        let manifest = format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      topologySpreadConstraints:
        - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: {name}}}}}}}
      containers:
        - name: echo
          image: {image}
          imagePullPolicy: IfNotPresent
          args: [--port={ECHO_PORT}]
          ports: [{{containerPort: {ECHO_PORT}, protocol: UDP}}]
          env:
            - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
            - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
"#
        );
        self.env.apply(&format!("{namespace}-{name}.yaml"), &manifest)?;
        self.rollout("deployment", namespace, name)
    }

    /// Moves Deployment `namespace/name`'s pods to `node` (a node
    /// selector on its template), waits until the move is rolled out, and
    /// returns the pods' names.
    pub fn pin_deployment(&self, namespace: &str, name: &str, node: &str) -> Result<Vec<String>, LabError> {
        let patch =
            format!(r#"{{"spec":{{"template":{{"spec":{{"nodeSelector":{{"kubernetes.io/hostname":"{node}"}}}}}}}}}}"#);
        self.env.run_kubectl(&[
            "patch",
            "deployment",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            &patch,
        ])?;
        self.rollout("deployment", namespace, name)?;
        let replicas: usize = self
            .env
            .run_kubectl(&[
                "get",
                "deployment",
                name,
                "-n",
                namespace,
                "-o",
                "jsonpath={.spec.replicas}",
            ])?
            .trim()
            .parse()
            .map_err(|_| LabError::Invalid(format!("Deployment {namespace}/{name}: no replica count")))?;
        // Pods of the old template may still be terminating.
        let mut pods = Vec::new();
        crate::wait::wait_for(Duration::from_secs(90), "only the pinned pods to be left", || {
            let listed = self
                .env
                .run_kubectl(&[
                    "get",
                    "pods",
                    "-n",
                    namespace,
                    "-l",
                    &format!("app={name}"),
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
                ])
                .unwrap_or_default();
            let all: Vec<(String, String)> = listed
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(p, n)| (p.to_owned(), n.to_owned()))
                .collect();
            pods = all.iter().map(|(p, _)| p.clone()).collect();
            all.len() == replicas && all.iter().all(|(_, n)| n == node)
        })?;
        Ok(pods)
    }
}

impl Cluster {
    /// Node `name` dies: cut off the segment, every process in its
    /// namespace killed (kubelet, containerd, kube-proxy, the shims, the
    /// pods on the host's network, meshlb's among them) and every pod in
    /// its cgroups. Its Node object stays as it was, as a dead machine's
    /// does, until the controller manager finds its lease expired.
    pub fn crash_node(&self, lab: &Lab, name: &str) -> Result<(), LabError> {
        let node = self.node(name)?;
        lab.crash(name)?;
        remove_cgroup(&node.cgroup);
        Ok(())
    }

    /// Sends `signal` to `announcer`'s agent on `node` (its container's
    /// process, on the host's network): SIGKILL, and the kubelet restarts
    /// the container, as after any crash of the agent; SIGSTOP freezes it.
    pub fn signal_agent(
        &self,
        announcer: Announcer,
        node: &str,
        signal: nix::sys::signal::Signal,
    ) -> Result<(), LabError> {
        let node = self.node(node)?;
        let command = announcer.command();
        let agents: Vec<i32> = crate::netns::pids_in(&node.netns)?
            .into_iter()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == command))
            .collect();
        if agents.is_empty() {
            return Err(LabError::Invalid(format!("no {command} runs on {}", node.name)));
        }
        for pid in agents {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(|source| LabError::Sys {
                what: format!("{signal} to {command} {pid} on {}", node.name),
                source,
            })?;
        }
        Ok(())
    }

    /// Deletes `announcer`'s agent pod on `node` as `kubectl delete pod`
    /// does (the kubelet stops it gracefully, its DaemonSet makes
    /// another), without waiting for it to go; the deleted pod's name.
    pub fn delete_agent_pod(&self, announcer: Announcer, node: &str) -> Result<String, LabError> {
        let pod = self.agent_pods(announcer, Some(node), "{.metadata.name}")?;
        if pod.is_empty() {
            return Err(LabError::Invalid(format!("no {announcer} pod on {node}")));
        }
        self.env
            .run_kubectl(&["delete", "pod", "-n", announcer.namespace(), &pod, "--wait=false"])?;
        Ok(pod)
    }

    /// What `jsonpath` (applied to each pod in turn) picks out of
    /// `announcer`'s agent pods, only the one on `node` if given; empty if
    /// there are none.
    pub fn agent_pods(&self, announcer: Announcer, node: Option<&str>, jsonpath: &str) -> Result<String, LabError> {
        let on_node = node.map(|node| format!("spec.nodeName={node}"));
        let mut args = vec!["get", "pods", "-n", announcer.namespace(), "-l", announcer.pod_labels()];
        if let Some(selector) = &on_node {
            args.extend(["--field-selector", selector]);
        }
        let output = format!("jsonpath={{range .items[*]}}{jsonpath}{{end}}");
        args.extend(["-o", &output]);
        self.env.run_kubectl(&args)
    }

    /// Probes `address` from `client1` every 10 ms; once answered, after
    /// a random 0.5–1.5 s, applies `fault` to the node that answers ARP
    /// for it (to `announcer`'s agent there, for the agent's faults),
    /// waits until the cluster has settled again (after a crash or a
    /// freeze, another node answers; after a killed agent or a deleted
    /// pod, the kubelet has restarted it or the DaemonSet replaced it, and
    /// one node answers, whichever: the agent may be back before the
    /// others count it gone), and measures what the client saw. The
    /// owners are nodes (ARP), not the pods that answered: the run's
    /// `new_owner` and `outage.switchover` are the first other node that
    /// claimed the address on the segment after the fault, and when.
    pub fn fail_owner(
        &self,
        lab: &Lab,
        address: std::net::Ipv4Addr,
        announcer: Announcer,
        fault: ClusterFault,
    ) -> Result<FailoverRun, LabError> {
        use nix::sys::signal::Signal;
        let prober = Prober::start(
            lab,
            "client1",
            std::net::SocketAddr::new(address.into(), crate::probe::RESPONDER_PORT),
            Duration::from_millis(10),
        )?;
        prober.wait_for_answer(std::time::Instant::now(), Duration::from_secs(30), |_| true)?;
        let owner = settled_arp_owner(lab, address)?;
        let owner_mac = lab.host(&owner)?.mac;
        let detector = crate::splitbrain::SplitBrainDetector::start(lab)?;
        let capture_started = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(500) + crate::random::random_below(Duration::from_secs(1)));
        let mut deleted_pod = String::new();
        match fault {
            ClusterFault::NodeCrash => self.crash_node(lab, &owner)?,
            ClusterFault::AgentKilled => self.signal_agent(announcer, &owner, Signal::SIGKILL)?,
            ClusterFault::AgentFrozen => self.signal_agent(announcer, &owner, Signal::SIGSTOP)?,
            ClusterFault::AgentPodDeleted => deleted_pod = self.delete_agent_pod(announcer, &owner)?,
        }
        let fault_at = std::time::Instant::now();
        let mut vip_holders_after = Vec::new();
        let settled = match fault {
            ClusterFault::NodeCrash | ClusterFault::AgentFrozen => {
                crate::wait::wait_for(OBSERVE_AFTER_FAULT, "another node to answer ARP", || {
                    vip_holders_after = arp_owners(lab, address).into_iter().collect();
                    vip_holders_after.len() == 1 && vip_holders_after[0] != owner
                })
            }
            ClusterFault::AgentKilled => self.wait_agent_restarted(announcer, &owner),
            ClusterFault::AgentPodDeleted => self.wait_agent_replaced(announcer, &owner, &deleted_pod),
        }
        .and_then(|()| {
            if vip_holders_after.is_empty() {
                vip_holders_after = vec![settled_arp_owner(lab, address)?];
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(300));
        let log = prober.stop();
        let claims = detector.stop()?;
        settled?;
        let mut outage = log
            .outage_after(fault_at)
            .ok_or_else(|| LabError::Invalid(format!("no probe was answered after the {fault}")))?;
        // The same pod answers before and after: when the client moved is
        // when another node first claimed the address on the segment.
        let since_fault = (fault_at - capture_started).as_secs_f64();
        let taken_over = claims
            .claims
            .iter()
            .find(|c| c.ip == std::net::IpAddr::V4(address) && c.mac != owner_mac && c.at >= since_fault);
        outage.switchover = taken_over.map(|c| Duration::from_secs_f64(c.at - since_fault));
        let new_owner = taken_over.and_then(|c| lab.hosts().iter().find(|h| h.mac == c.mac).map(|h| h.name.clone()));
        Ok(FailoverRun {
            old_owner: owner,
            new_owner,
            vip_holders_after,
            outage,
            duplicate_answers: log.duplicates().len(),
            fault_at,
            log,
        })
    }
}

impl Cluster {
    /// Waits until the kubelet on `node` has restarted `announcer`'s
    /// agent container and it is Ready.
    pub fn wait_agent_restarted(&self, announcer: Announcer, node: &str) -> Result<(), LabError> {
        crate::wait::wait_for(Duration::from_secs(120), "the killed agent restarted and Ready", || {
            let status = self
                .agent_pods(
                    announcer,
                    Some(node),
                    "{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}",
                )
                .unwrap_or_default();
            status
                .split_once(' ')
                .is_some_and(|(restarts, ready)| restarts.parse::<u32>().is_ok_and(|n| n > 0) && ready == "true")
        })
    }

    /// Waits until `announcer`'s agent pod on `node` is another than
    /// `deleted`, and Ready.
    pub fn wait_agent_replaced(&self, announcer: Announcer, node: &str, deleted: &str) -> Result<(), LabError> {
        crate::wait::wait_for(
            Duration::from_secs(120),
            "the deleted agent's pod replaced and Ready",
            || {
                let status = self
                    .agent_pods(
                        announcer,
                        Some(node),
                        "{.metadata.name} {.status.containerStatuses[0].ready}{\"\\n\"}",
                    )
                    .unwrap_or_default();
                status.lines().any(|line| {
                    line.split_once(' ')
                        .is_some_and(|(pod, ready)| pod != deleted && ready == "true")
                }) && !status.lines().any(|line| line.starts_with(&format!("{deleted} ")))
            },
        )
    }
}

impl Cluster {
    fn node(&self, name: &str) -> Result<&RealNode, LabError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no real node {name}")))
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut RealNode, LabError> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::Invalid(format!("no real node {name}")))
    }

    /// Kills `node`'s kubelet (SIGKILL, as a crash would; the node's
    /// containers, kube-proxy and network go on): its Node turns NotReady
    /// once its lease expires.
    pub fn stop_kubelet(&mut self, node: &str) -> Result<(), LabError> {
        if let Some(kubelet) = self.node_mut(node)?.kubelet.take() {
            kubelet.kill()?;
            kubelet.wait_exit(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Crashes the API server (SIGKILL) and starts it again on the same
    /// address, credentials and data; waits until it is ready.
    pub fn crash_and_restart_api_server(&mut self, lab: &Lab) -> Result<(), LabError> {
        self.env.crash_and_restart_in_lab(lab)
    }

    /// Each of `announcer`'s agent pods' name and log (its running
    /// container's).
    pub fn agent_logs(&self, announcer: Announcer) -> Result<Vec<(String, String)>, LabError> {
        let pods = self.agent_pods(announcer, None, "{.metadata.name} ")?;
        pods.split_whitespace()
            .map(|pod| {
                let log = self.env.run_kubectl(&["logs", "-n", announcer.namespace(), pod])?;
                Ok((pod.to_owned(), log))
            })
            .collect()
    }

    /// What meshlb's agent on `node` reports in its state directory: the
    /// chart's `state` emptyDir volume, which lives on the node's disk in
    /// the kubelet's directory of the pod (kept across the container's
    /// restarts, gone with the pod). Asks the API server for the pod's
    /// uid: ask before cutting it off.
    pub fn agent_state(&self, node: &str) -> Result<crate::agent::AgentState, LabError> {
        let uid = self.agent_pods(Announcer::Meshlb, Some(node), "{.metadata.uid}")?;
        if uid.is_empty() {
            return Err(LabError::Invalid(format!("no meshlb pod on {node}")));
        }
        let dir = self
            .node(node)?
            .kubelet_dir()
            .join("pods")
            .join(uid)
            .join("volumes/kubernetes.io~empty-dir/state");
        Ok(crate::agent::AgentState { dir })
    }

    /// Starts `node`'s kubelet again after [`Cluster::stop_kubelet`]
    /// (its log: `<node>-kubelet-again.log`).
    pub fn start_kubelet(&mut self, lab: &Lab, node: &str) -> Result<(), LabError> {
        self.node_mut(node)?.spawn_kubelet(lab, "kubelet-again")
    }

    /// Node `node`'s Ready condition's status (`True`, `False`,
    /// `Unknown`) and its taints' keys.
    pub fn node_state(&self, node: &str) -> Result<(String, Vec<String>), LabError> {
        let out = self.env.run_kubectl(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.taints[*].key}",
        ])?;
        let mut words = out.split_whitespace().map(str::to_owned);
        let ready = words.next().unwrap_or_default();
        Ok((ready, words.collect()))
    }
}

/// What [`Cluster::fail_owner`] does to the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterFault {
    /// The node dies ([`Cluster::crash_node`]).
    NodeCrash,
    /// The agent on it is SIGKILLed ([`Cluster::signal_agent`]); the
    /// kubelet restarts it.
    AgentKilled,
    /// The agent on it is frozen (SIGSTOP), its node and pods running on.
    AgentFrozen,
    /// The agent's pod is deleted ([`Cluster::delete_agent_pod`]): a
    /// graceful stop, and a new pod from the DaemonSet.
    AgentPodDeleted,
}

impl std::fmt::Display for ClusterFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterFault::NodeCrash => "node crash",
            ClusterFault::AgentKilled => "agent killed",
            ClusterFault::AgentFrozen => "agent frozen",
            ClusterFault::AgentPodDeleted => "agent's pod deleted",
        })
    }
}

/// Which load balancer's agents a cluster runs: meshlb's chart
/// ([`Cluster::install_meshlb`]) or MetalLB's native manifest
/// ([`Cluster::install_metallb`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcer {
    /// meshlb's DaemonSet.
    Meshlb,
    /// MetalLB's speaker DaemonSet (and its controller).
    Metallb,
}

impl Announcer {
    /// The agent's process name (its container's entrypoint).
    pub fn command(self) -> &'static str {
        match self {
            Announcer::Meshlb => "meshlb-agent",
            Announcer::Metallb => "speaker",
        }
    }

    /// The agent pods' namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Announcer::Meshlb => crate::kube_env::CHART_NAMESPACE,
            Announcer::Metallb => crate::metallb::NAMESPACE,
        }
    }

    /// A label selector for the agent pods (and no others).
    pub fn pod_labels(self) -> &'static str {
        match self {
            Announcer::Meshlb => "app.kubernetes.io/name=meshlb",
            Announcer::Metallb => crate::metallb::SPEAKER_LABELS,
        }
    }
}

impl std::fmt::Display for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Announcer::Meshlb => f.write_str("meshlb"),
            Announcer::Metallb => write!(f, "MetalLB {}", crate::metallb::VERSION),
        }
    }
}

/// The one node that answers `client1`'s ARP requests for `address`, the
/// same in two rounds of requests (an address may still be moving while
/// the Service's endpoints come up one by one).
pub fn settled_arp_owner(lab: &Lab, address: std::net::Ipv4Addr) -> Result<String, LabError> {
    let mut previous = BTreeSet::new();
    let mut owner = None;
    crate::wait::wait_for(
        Duration::from_secs(60),
        "one node, the same twice, to answer ARP",
        || {
            let now = arp_owners(lab, address);
            if now.len() == 1 && now == previous {
                owner = now.into_iter().next();
                return true;
            }
            previous = now;
            false
        },
    )?;
    owner.ok_or_else(|| LabError::Invalid(format!("no node answers ARP for {address}")))
}

/// The nodes whose MACs answer `client1`'s ARP requests for `address`.
pub fn arp_owners(lab: &Lab, address: std::net::Ipv4Addr) -> BTreeSet<String> {
    crate::probe::arp_answerers(lab, "client1", address)
        .into_iter()
        .filter_map(|mac| lab.hosts().iter().find(|h| h.mac == mac).map(|h| h.name.clone()))
        .collect()
}

/// Node `index`'s (from 1) pod range.
pub fn pod_cidr(index: usize) -> String {
    format!("198.18.{index}.0/24")
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))
}

fn create_dir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(|e| LabError::io(format!("create {}", path.display()), e))
}

/// The cgroup hierarchies (version 1 and 2): mount point, filesystem type
/// and super options (a version 1 hierarchy's controllers among them).
fn cgroup_mounts() -> Result<Vec<(PathBuf, String, String)>, LabError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| LabError::io("read /proc/self/mountinfo", e))?;
    Ok(mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fields = after.split_whitespace();
            let fstype = fields.next()?;
            let options = fields.nth(1).unwrap_or_default();
            let mount_point = before.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2")
                .then(|| (PathBuf::from(mount_point), fstype.to_owned(), options.to_owned()))
        })
        .collect())
}

/// The mount points of the cgroup hierarchies (version 1 and 2).
fn cgroup_hierarchies() -> Result<Vec<PathBuf>, LabError> {
    Ok(cgroup_mounts()?.into_iter().map(|(point, _, _)| point).collect())
}

/// The mount point of the version 1 hierarchy with the `cpu` controller
/// (where a CPU quota is set: `cpu.cfs_quota_us`).
pub(crate) fn cpu_hierarchy() -> Result<PathBuf, LabError> {
    cgroup_mounts()?
        .into_iter()
        .find(|(_, fstype, options)| fstype == "cgroup" && options.split(',').any(|o| o == "cpu"))
        .map(|(point, _, _)| point)
        .ok_or_else(|| LabError::Invalid("no cgroup hierarchy with the cpu controller is mounted".into()))
}

/// The mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        // The kernel writes a space in a path as \040.
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Kills every process in cgroup `name` of every hierarchy (and its
/// descendants) until none is left, then removes the cgroups, deepest
/// first.
fn remove_cgroup(name: &str) {
    let Ok(hierarchies) = cgroup_hierarchies() else {
        return;
    };
    let roots: Vec<PathBuf> = hierarchies
        .iter()
        .map(|h| h.join(name))
        .filter(|r| r.is_dir())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (pids, mut dirs) = cgroup_processes(&roots);
        if pids.is_empty() || std::time::Instant::now() > deadline {
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                let _ = std::fs::remove_dir(dir);
            }
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The processes in the cgroups at and under `roots`, and those cgroups.
fn cgroup_processes(roots: &[PathBuf]) -> (BTreeSet<i32>, Vec<PathBuf>) {
    let mut pids = BTreeSet::new();
    let mut dirs = Vec::new();
    for root in roots {
        collect_cgroups(root, &mut dirs);
    }
    for dir in &dirs {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    (pids, dirs)
}

fn collect_cgroups(dir: &Path, into: &mut Vec<PathBuf>) {
    into.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_cgroups(&entry.path(), into);
            }
        }
    }
}

/// Where every kubelet links its containers' logs (a path kubelet does
/// not let one configure).
const CONTAINER_LOG_LINKS: &str = "/var/log/containers";

/// Where containerd 1.6's shims listen, whatever containerd's own state
/// directory (a path it does not let one configure).
const SHIM_SOCKETS: &str = "/run/containerd/s/";

/// Where the CNI library caches each sandbox's results, named
/// `<network>-<sandbox id>-<interface>` (containerd 1.6 does not let one
/// configure it).
const CNI_RESULTS: &str = "/var/lib/cni/results";

/// Removes a node's state: the processes in its cgroups, its mounts, its
/// cgroups, what its containerd's killed tasks left outside the node's
/// directory ([`remove_task_leftovers`]), the directory, and the links to
/// its containers' logs (their targets' paths hold the lab's name,
/// `mlb<pid>n<k>` as `cgroup` starts).
fn remove_node_state(dir: &Path, cgroup: &str) {
    remove_cgroup(cgroup);
    for point in mounts_under(dir) {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
    remove_task_leftovers(dir);
    let _ = std::fs::remove_dir_all(dir);
    let Some(pods_dir) = cgroup.split_once('-').map(|(lab, node)| format!("/{lab}/{node}-pods/")) else {
        return;
    };
    if let Ok(links) = std::fs::read_dir(CONTAINER_LOG_LINKS) {
        for link in links.flatten() {
            if std::fs::read_link(link.path()).is_ok_and(|target| target.to_string_lossy().contains(&pods_dir)) {
                let _ = std::fs::remove_file(link.path());
            }
        }
    }
}

/// What the tasks of the containerd whose state is in node directory
/// `dir` leave outside it when they are killed rather than stopped (a
/// stop would remove both): each shim's socket (its address is in the
/// task's bundle) and the CNI results cached under each sandbox's id.
fn remove_task_leftovers(dir: &Path) {
    let tasks = dir.join("containerd-state/io.containerd.runtime.v2.task/k8s.io");
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return;
    };
    let mut ids = Vec::new();
    for task in entries.flatten() {
        ids.push(task.file_name().to_string_lossy().into_owned());
        let address = std::fs::read_to_string(task.path().join("address")).unwrap_or_default();
        if let Some(socket) = address.trim().strip_prefix("unix://")
            && socket.starts_with(SHIM_SOCKETS)
        {
            let _ = std::fs::remove_file(socket);
        }
    }
    if let Ok(results) = std::fs::read_dir(CNI_RESULTS) {
        for result in results.flatten() {
            let name = result.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| name.contains(&format!("-{id}-"))) {
                let _ = std::fs::remove_file(result.path());
            }
        }
    }
}

impl RealNode {
    /// Starts node `name` (the lab's `index`th, from 1): containerd with
    /// the images imported, then the kubelet and kube-proxy.
    fn start(
        lab: &Lab,
        env: &KubeEnv,
        binaries: &NodeBinaries,
        name: &str,
        index: usize,
    ) -> Result<RealNode, LabError> {
        let host = lab.host(name)?;
        let dir = Path::new(NODES_ROOT).join(lab.name()).join(name);
        let mut node = RealNode {
            name: name.to_owned(),
            pod_cidr: pod_cidr(index),
            netns: host.netns.clone(),
            dir: dir.clone(),
            cgroup: format!("{}-{name}", lab.name()),
            kubelet: None,
            proxy: None,
            containerd: None,
            kubelet_command: Vec::new(),
        };
        // From here on, Drop removes whatever part was made.
        for sub in ["cni", "ipam", "kubelet", "runc", "opt"] {
            create_dir(&dir.join(sub))?;
        }
        for hierarchy in cgroup_hierarchies()? {
            create_dir(&hierarchy.join(&node.cgroup))?;
        }
        // Forwarding between the pods' bridge and the segment, and bridged
        // pod traffic through netfilter (kube-proxy's rules see a pod
        // reaching a Service whose endpoint is a pod on the same bridge).
        run(
            "ip",
            &[
                "netns",
                "exec",
                &host.netns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.bridge.bridge-nf-call-iptables=1",
            ],
        )?;
        let (pause_archive, pause) = binaries.image("pause")?;
        node.start_containerd(lab, &pause)?;
        node.import_image(&pause_archive)?;
        let (echo_archive, _) = binaries.image("udp-echo")?;
        node.import_image(&echo_archive)?;
        node.start_kubelet(lab, env, binaries, host.ipv4)?;
        node.start_proxy(lab, env, binaries, host.ipv4)?;
        Ok(node)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn start_containerd(&mut self, lab: &Lab, pause: &str) -> Result<(), LabError> {
        let dir = &self.dir;
        let d = |sub: &str| dir.join(sub).display().to_string();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = d("containerd"),
            state = d("containerd-state"),
            socket = self.socket().display(),
            opt = d("opt"),
            runc = d("runc"),
            cni = d("cni"),
        );
        write(&dir.join("containerd.toml"), &config)?;
        let cni = format!(
            r#"{{
  "cniVersion": "0.4.0",
  "name": "lab",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{cidr}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{ipam}"
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#,
            cidr = self.pod_cidr,
            ipam = d("ipam"),
        );
        write(&dir.join("cni/10-lab.conflist"), &cni)?;
        let containerd = lab.spawn_sharing_mounts(
            &self.name,
            "containerd",
            "containerd",
            &["--config", &dir.join("containerd.toml").to_string_lossy()],
        )?;
        self.containerd = Some(containerd);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.ctr(&["version"]).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: format!("containerd on {}", self.name),
                    waited: Duration::from_secs(30),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Runs `ctr` against this node's containerd, in the CRI's namespace.
    fn ctr(&self, args: &[&str]) -> Result<String, LabError> {
        let mut command = std::process::Command::new("ctr");
        command
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", "k8s.io"])
            .args(args);
        run_command(command, &format!("ctr {} on {}", args.join(" "), self.name))
    }

    /// Imports an image archive into this node's containerd, as a
    /// registry pull would have put it there.
    fn import_image(&self, archive: &Path) -> Result<(), LabError> {
        self.ctr(&["images", "import", &archive.to_string_lossy()]).map(|_| ())
    }

    /// The kubelet's directory (`--root-dir`): its pods' volumes.
    fn kubelet_dir(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    fn start_kubelet(
        &mut self,
        lab: &Lab,
        env: &KubeEnv,
        binaries: &NodeBinaries,
        address: std::net::Ipv4Addr,
    ) -> Result<(), LabError> {
        let dir = &self.dir;
        let config = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{socket}
address: {address}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
maxOpenFiles: 20000
protectKernelDefaults: false
resolvConf: ""
podLogsDir: {logs}
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "1Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}}
"#,
            socket = self.socket().display(),
            ca = env.credentials_dir().join("ca.crt").display(),
            cgroup = self.cgroup,
            logs = lab.log_dir().join(format!("{}-pods", self.name)).display(),
        );
        write(&dir.join("kubelet.yaml"), &config)?;
        self.kubelet_command = vec![
            binaries.path("kubelet").to_string_lossy().into_owned(),
            format!("--config={}", dir.join("kubelet.yaml").display()),
            format!(
                "--kubeconfig={}",
                env.credentials_dir()
                    .join(format!("kubeconfig-{}", self.name))
                    .display()
            ),
            format!("--root-dir={}", self.kubelet_dir().display()),
            format!("--hostname-override={}", self.name),
            format!("--node-ip={address}"),
            "--v=1".into(),
        ];
        self.spawn_kubelet(lab, "kubelet")
    }

    /// Starts the kubelet with the command [`RealNode::start_kubelet`]
    /// made, logging to `<node>-<log>.log`.
    fn spawn_kubelet(&mut self, lab: &Lab, log: &str) -> Result<(), LabError> {
        let Some((program, args)) = self.kubelet_command.split_first() else {
            return Err(LabError::Invalid(format!("{}: no kubelet command", self.name)));
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.kubelet = Some(lab.spawn_sharing_mounts(&self.name, log, program, &args)?);
        Ok(())
    }

    fn start_proxy(
        &mut self,
        lab: &Lab,
        env: &KubeEnv,
        binaries: &NodeBinaries,
        address: std::net::Ipv4Addr,
    ) -> Result<(), LabError> {
        let config = format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {name}
bindAddress: {address}
clusterCIDR: {POD_NETWORK}
healthzBindAddress: {address}:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {{maxPerCore: 0, min: 0}}
"#,
            kubeconfig = env.credentials_dir().join("kubeconfig-kube-proxy").display(),
            name = self.name,
        );
        let path = self.dir.join("kube-proxy.yaml");
        write(&path, &config)?;
        let proxy = lab.spawn_sharing_mounts(
            &self.name,
            "kube-proxy",
            &binaries.path("kube-proxy").to_string_lossy(),
            &[&format!("--config={}", path.display()), "--v=1"],
        )?;
        self.proxy = Some(proxy);
        Ok(())
    }

    /// Where the node keeps its state: containerd's and the kubelet's,
    /// and its pods' network namespaces (mounted under containerd's state
    /// directory, `netns_mounts_under_state_dir`, not in `/run/netns`
    /// where nothing of the node's would remove them).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        drop(self.kubelet.take());
        drop(self.proxy.take());
        drop(self.containerd.take());
        // Whatever else runs on the node: the shims and the pods on the
        // host's network (in its namespace), the other pods (in its
        // cgroups).
        let _ = crate::netns::kill_all_in(&self.netns);
        remove_node_state(&self.dir, &self.cgroup);
        if let Some(lab_dir) = self.dir.parent()
            && std::fs::read_dir(lab_dir).is_ok_and(|mut entries| entries.next().is_none())
        {
            let _ = std::fs::remove_dir(lab_dir);
        }
    }
}

/// Removes the node state (processes, mounts, cgroups, directories) of the
/// labs `scope` selects, as [`crate::netns::sweep`] removes their
/// namespaces, and any other cgroup of theirs (`<lab>-...` at the top of a
/// hierarchy: a soak's CPU quota); the labs' names.
pub fn sweep(scope: &SweepScope) -> Vec<String> {
    let mut removed = Vec::new();
    for hierarchy in cgroup_hierarchies().unwrap_or_default() {
        for entry in std::fs::read_dir(&hierarchy).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let lab = name.split('-').next().unwrap_or(&name);
            if name.starts_with(LAB_PREFIX) && scope.selects_lab(lab) && entry.path().is_dir() {
                remove_cgroup(&name);
            }
        }
    }
    let Ok(labs) = std::fs::read_dir(NODES_ROOT) else {
        return removed;
    };
    for lab in labs.flatten() {
        let name = lab.file_name().to_string_lossy().into_owned();
        if !name.starts_with(LAB_PREFIX) || !scope.selects_lab(&name) {
            continue;
        }
        if let Ok(nodes) = std::fs::read_dir(lab.path()) {
            for node in nodes.flatten() {
                let node_name = node.file_name().to_string_lossy().into_owned();
                // The node's kubelet, containerd and shims first, as a
                // dropped node's go: nothing restarts a pod meanwhile.
                let netns = format!("{name}-{node_name}");
                let _ = crate::netns::kill_all_in(&netns);
                remove_node_state(&node.path(), &netns);
            }
        }
        let _ = std::fs::remove_dir_all(lab.path());
        removed.push(name);
    }
    removed
}
