//! A real Kubernetes API server for tests: the `kube-testenv` binary that
//! `scripts/kube-testenv` builds from the Go module proxy (an embedded etcd
//! and the real kube-apiserver in one process, with TLS, token and
//! client-certificate authentication, RBAC and a service-account issuer),
//! and kubectl and helm of the same build.
//!
//! [`KubeEnv::start`] runs one on a free loopback port in a temporary
//! directory and waits until `/readyz` says ok; [`KubeEnv::client`] is an
//! admin `kube::Client`, [`KubeEnv::service_account_client`] one that
//! authenticates with a real service-account token from the TokenRequest
//! API, [`KubeEnv::kubectl`] and [`KubeEnv::helm`] commands aimed at it.
//! Dropping it stops the server and removes the directory, also when a
//! test panics (the server's log is printed then); a test binary that
//! dies without dropping it leaves nothing either, since the server stops
//! when its parent is gone and removes its directory. Every instance is
//! its own cluster, so parallel tests never collide.
//!
//! In a lab ([`KubeEnv::start_in_lab`]) the server runs on the lab's
//! control-plane host at its lab address (198.51.100.2:6443), so agents in
//! the node namespaces reach it exactly as DaemonSet pods reach a cluster's
//! API server; kubectl and helm then run inside the control-plane
//! namespace, and a `kube::Client` must be made and used on a thread inside
//! a lab namespace ([`crate::netns::in_netns`]), since the root namespace
//! has no route to the lab.
//!
//! The binaries come from `$MESHLB_KUBE_BIN` if set, otherwise from
//! `scripts/kube-testenv` (which builds them once per version into a cache
//! and prints where they are).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};

/// Where kube-testenv, kubectl and helm are.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    /// The directory holding the three.
    pub dir: PathBuf,
}

impl KubeBinaries {
    /// `$MESHLB_KUBE_BIN`, or what `scripts/kube-testenv` built (it builds
    /// them if they are not cached yet: minutes the first time). Asked once
    /// per process.
    pub fn find() -> Result<KubeBinaries, LabError> {
        static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
        let found = FOUND.get_or_init(|| KubeBinaries::locate().map(|b| b.dir).map_err(|e| e.to_string()));
        match found {
            Ok(dir) => Ok(KubeBinaries { dir: dir.clone() }),
            Err(e) => Err(LabError::Invalid(e.clone())),
        }
    }

    fn locate() -> Result<KubeBinaries, LabError> {
        if let Some(dir) = std::env::var_os("MESHLB_KUBE_BIN") {
            return KubeBinaries::checked(PathBuf::from(dir));
        }
        KubeBinaries::checked(built_by_script(&[])?)
    }

    fn checked(dir: PathBuf) -> Result<KubeBinaries, LabError> {
        for binary in ["kube-testenv", "kubectl", "helm"] {
            if !dir.join(binary).is_file() {
                return Err(LabError::Invalid(format!(
                    "{binary} is not in {} (scripts/kube-testenv builds it)",
                    dir.display()
                )));
            }
        }
        Ok(KubeBinaries { dir })
    }

    /// The path of `binary` (`kube-testenv`, `kubectl`, `helm`).
    pub fn path(&self, binary: &str) -> PathBuf {
        self.dir.join(binary)
    }
}

/// Runs `scripts/kube-testenv` with `args` (it builds what is not cached
/// yet: minutes the first time); the directory it prints.
pub(crate) fn built_by_script(args: &[&str]) -> Result<PathBuf, LabError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube-testenv");
    let output = Command::new(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| LabError::Spawn {
            program: script.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: format!("{} {}", script.display(), args.join(" ")),
            status: output.status.to_string(),
            stderr: "see above".into(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// How long the API server may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The API server's port in a lab (its namespace is the lab's own).
pub const LAB_PORT: u16 = 6443;

/// The server process.
#[derive(Debug)]
enum Server {
    /// On loopback, a child of this process.
    Local(Child),
    /// On the lab's control-plane host.
    Lab(LabProcess),
}

/// kubectl as admin against one server, to use apart from its
/// [`KubeEnv`] (on another thread).
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    netns: Option<String>,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    /// Runs kubectl with `args` to completion; its standard output.
    pub fn run(&self, args: &[&str]) -> Result<String, LabError> {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home);
        crate::netns::run_command(command, &format!("kubectl {}", args.join(" ")))
    }
}

/// A running API server. See the module documentation.
#[derive(Debug)]
pub struct KubeEnv {
    binaries: KubeBinaries,
    /// The server's directory (credentials, etcd, kubeconfig).
    dir: PathBuf,
    /// Where its log goes (beside `dir`, kept across restarts).
    log: PathBuf,
    /// Scratch space for kubectl's and helm's caches.
    home: PathBuf,
    address: std::net::IpAddr,
    port: u16,
    /// The lab namespace it runs in, if it runs in a lab.
    netns: Option<String>,
    /// The real nodes it serves, if any (`--nodes`).
    nodes: Vec<String>,
    server: Option<Server>,
}

/// A directory name no other run uses.
fn unique_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("meshlb-{what}-{}-{n}", std::process::id()))
}

/// The Helm release the tests install the chart as (its objects, the
/// ServiceAccount included, are named so).
pub const CHART_RELEASE: &str = "meshlb";
/// The namespace they install it in: MetalLB's.
pub const CHART_NAMESPACE: &str = "metallb-system";
/// The Secret the chart makes for the mesh's cluster keys (release
/// [`CHART_RELEASE`], no `clusterKeys.existingSecret`), whose `keys` entry
/// users edit to rotate them.
pub const CHART_CLUSTER_KEY_SECRET: &str = "meshlb-cluster-keys";

/// The manifest (JSON, for kubectl) of Secret [`CHART_CLUSTER_KEY_SECRET`]
/// holding `keys` (the key file's form: `ID:HEX` lines, the first used to
/// send).
pub fn cluster_key_secret(keys: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": CHART_CLUSTER_KEY_SECRET, "namespace": CHART_NAMESPACE},
        "stringData": {"keys": keys},
    })
    .to_string()
}

/// The Helm chart's directory.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/meshlb")
}

impl KubeEnv {
    /// Starts an API server on a free loopback port and waits until it is
    /// ready.
    pub fn start() -> Result<KubeEnv, LabError> {
        let binaries = KubeBinaries::find()?;
        let root = unique_dir("kube");
        std::fs::create_dir_all(&root).map_err(|e| LabError::io(format!("create {}", root.display()), e))?;
        let mut env = KubeEnv {
            binaries,
            dir: root.join("server"),
            log: root.join("kube-testenv.log"),
            home: root.join("home"),
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            port: 0,
            netns: None,
            nodes: Vec::new(),
            server: None,
        };
        env.spawn()?;
        env.port = env.read_port()?;
        env.wait_ready(READY_TIMEOUT)?;
        Ok(env)
    }

    /// Starts an API server on `lab`'s control-plane host (a lab built
    /// with [`crate::lab::LabSpec::control_plane`]) at its lab address and
    /// [`LAB_PORT`], and waits until it is ready.
    pub fn start_in_lab(lab: &Lab) -> Result<KubeEnv, LabError> {
        KubeEnv::start_for_nodes_in_lab(lab, Vec::new())
    }

    /// [`KubeEnv::start_in_lab`] for a cluster of real `nodes` (their
    /// kubelets, kube-proxies, scheduler and controller manager: see
    /// [`crate::cluster`]): with their credentials, in files
    /// `kubeconfig-<node>` and `kubeconfig-<component>` of
    /// [`KubeEnv::credentials_dir`].
    pub fn start_for_nodes_in_lab(lab: &Lab, nodes: Vec<String>) -> Result<KubeEnv, LabError> {
        let host = lab.host("control")?;
        let binaries = KubeBinaries::find()?;
        // With the lab's logs: removed with them, kept with them when a
        // test fails.
        let root = lab.log_dir().join("kube");
        std::fs::create_dir_all(&root).map_err(|e| LabError::io(format!("create {}", root.display()), e))?;
        let mut env = KubeEnv {
            binaries,
            dir: root.join("server"),
            log: lab.log_dir().join("control-kube-apiserver.log"),
            home: root.join("home"),
            address: host.ipv4.into(),
            port: LAB_PORT,
            netns: Some(host.netns.clone()),
            nodes,
            server: None,
        };
        env.spawn_in_lab(lab)?;
        env.wait_ready(READY_TIMEOUT)?;
        Ok(env)
    }

    /// Starts the server process on `lab`'s control-plane host.
    fn spawn_in_lab(&mut self, lab: &Lab) -> Result<(), LabError> {
        let program = self.binaries.path("kube-testenv");
        let (address, port) = (self.address.to_string(), self.port.to_string());
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args = vec![
            "--dir",
            &dir,
            "--bind",
            &address,
            "--port",
            &port,
            "--exit-with-parent",
            // `meshlb-lab up` ends by signal, never dropping this.
            "--remove-dir-on-exit",
        ];
        let nodes = self.nodes.join(",");
        if !nodes.is_empty() {
            args.extend(["--nodes", &nodes]);
        }
        let process = lab.spawn("control", "kube-apiserver", &program.to_string_lossy(), &args)?;
        self.server = Some(Server::Lab(process));
        Ok(())
    }

    /// Crashes a lab's API server (SIGKILL: its connections reset, its
    /// etcd data kept) and starts it again on the same address and data,
    /// then waits until it is ready.
    pub fn crash_and_restart_in_lab(&mut self, lab: &Lab) -> Result<(), LabError> {
        match self.server.take() {
            Some(Server::Lab(process)) => {
                process.kill()?;
                if process.wait_exit(Duration::from_secs(10))?.is_none() {
                    return Err(LabError::Invalid("the killed API server did not exit".into()));
                }
            }
            other => {
                self.server = other;
                return Err(LabError::Invalid("not a lab's API server".into()));
            }
        }
        self.spawn_in_lab(lab)?;
        self.wait_ready(READY_TIMEOUT)
    }

    fn spawn(&mut self) -> Result<(), LabError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| LabError::io(format!("open {}", self.log.display()), e))?;
        let err = log.try_clone().map_err(|e| LabError::io("clone log file", e))?;
        let program = self.binaries.path("kube-testenv");
        let child = Command::new(&program)
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--exit-with-parent",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        self.server = Some(Server::Local(child));
        Ok(())
    }

    /// The port, from the server URL in the kubeconfig it writes first.
    fn read_port(&mut self) -> Result<u16, LabError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(self.kubeconfig()) {
                let port = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("server: https://"))
                    .and_then(|hostport| hostport.rsplit_once(':'))
                    .and_then(|(_, port)| port.parse().ok());
                if let Some(port) = port {
                    return Ok(port);
                }
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: "kube-testenv to write its kubeconfig".into(),
                    waited: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn check_running(&mut self) -> Result<(), LabError> {
        let exited = match self.server.as_mut() {
            Some(Server::Local(child)) => child.try_wait().map_err(|e| LabError::io("wait for kube-testenv", e))?,
            Some(Server::Lab(process)) => process.wait_exit(Duration::ZERO)?,
            None => return Err(LabError::Invalid("kube-testenv is not running".into())),
        };
        match exited {
            None => Ok(()),
            Some(status) => Err(LabError::Command {
                command: "kube-testenv".into(),
                status: status.to_string(),
                stderr: self.log_tail(40),
            }),
        }
    }

    /// Waits until `/readyz` says ok.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self
                .kubectl()
                .args(["get", "--raw", "/readyz"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"ok"));
            if ready {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("the API server to be ready ({})", self.log.display()),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The directory holding the CA (`ca.crt`) and the admin client
    /// certificate (`admin.crt`, `admin.key`).
    pub fn credentials_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's URL.
    pub fn server(&self) -> String {
        format!("https://{}", std::net::SocketAddr::new(self.address, self.port))
    }

    /// The lab namespace the server runs in, if it runs in a lab.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The path of one of the environment's binaries (`kubectl`, `helm`,
    /// `kube-testenv`), to run elsewhere (in a node's namespace, say).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.binaries.path(name)
    }

    /// `binary` run where the server is reachable: here, or inside the
    /// lab's control-plane namespace.
    fn command(&self, binary: &str) -> Command {
        match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(self.binaries.path(binary));
                command
            }
            None => Command::new(self.binaries.path(binary)),
        }
    }

    /// kubectl aimed at this server as admin.
    pub fn kubectl(&self) -> Command {
        let mut command = self.command("kubectl");
        command
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .stdin(Stdio::null());
        command
    }

    /// A handle that runs kubectl as admin against this server from any
    /// thread, for as long as the server runs.
    pub fn kubectl_handle(&self) -> Kubectl {
        Kubectl {
            program: self.binaries.path("kubectl"),
            netns: self.netns.clone(),
            kubeconfig: self.kubeconfig(),
            home: self.home.clone(),
        }
    }

    /// helm aimed at this server as admin, its caches in the scratch space.
    pub fn helm(&self) -> Command {
        let mut command = self.command("helm");
        command
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", self.home.join("helm-config"))
            .env("HELM_DATA_HOME", self.home.join("helm-data"))
            .stdin(Stdio::null());
        command
    }

    /// An admin client (in a lab: make and use it inside a lab namespace).
    pub async fn client(&self) -> Result<kube::Client, LabError> {
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(|e| LabError::Invalid(format!("kube client: {e}")))
    }

    async fn config(&self) -> Result<kube::Config, LabError> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())
            .map_err(|e| LabError::Invalid(format!("{}: {e}", self.kubeconfig().display())))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| LabError::Invalid(format!("{}: {e}", self.kubeconfig().display())))
    }

    /// Installs (or upgrades) meshlb's Helm chart as release
    /// [`CHART_RELEASE`] in namespace `metallb-system` (created if
    /// missing), its CRDs included, with `--set` `values`; helm's output.
    /// On a cluster of real nodes the kubelets run the DaemonSet's pods
    /// ([`crate::cluster::Cluster::install_meshlb`]); without them, tests
    /// of the agent alone run it with [`KubeEnv::chart_kubeconfig`].
    pub fn install_chart(&self, values: &[&str]) -> Result<String, LabError> {
        let mut command = self.helm();
        command
            .args(["upgrade", "--install", CHART_RELEASE])
            .arg(chart_dir())
            .args(["--namespace", CHART_NAMESPACE, "--create-namespace"]);
        for value in values {
            command.args(["--set", value]);
        }
        crate::netns::run_command(command, "helm upgrade --install meshlb")
    }

    /// The image meshlb's chart runs when no value names one (its
    /// repository and the chart's appVersion), as `helm template` renders
    /// the DaemonSet.
    pub fn chart_default_image(&self) -> Result<String, LabError> {
        let mut command = self.helm();
        command.args(["template", CHART_RELEASE]).arg(chart_dir()).args([
            "--namespace",
            CHART_NAMESPACE,
            "--show-only",
            "templates/daemonset.yaml",
        ]);
        let rendered = crate::netns::run_command(command, "helm template meshlb")?;
        rendered
            .lines()
            .find_map(|line| line.trim().strip_prefix("image:"))
            .map(|image| image.trim().trim_matches('"').to_owned())
            .filter(|image| !image.is_empty())
            .ok_or_else(|| LabError::Invalid("meshlb's chart renders no image".into()))
    }

    /// A kubeconfig of the chart's ServiceAccount (see
    /// [`KubeEnv::install_chart`]): the identity and permissions of the
    /// DaemonSet's pods.
    pub fn chart_kubeconfig(&self) -> Result<PathBuf, LabError> {
        self.service_account_kubeconfig(CHART_NAMESPACE, CHART_RELEASE)
    }

    /// A kubeconfig authenticating as service account `namespace/name`
    /// (created if missing) with a token the TokenRequest API issued, good
    /// for an hour: what a pod of that account holds.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf, LabError> {
        if let Err(e) = self.run_kubectl(&["create", "serviceaccount", name, "-n", namespace])
            && !e.to_string().contains("already exists")
        {
            return Err(e);
        }
        let token = self.run_kubectl(&[
            "create",
            "token",
            name,
            "-n",
            namespace,
            "--duration",
            "3600s",
            "--audience",
            &self.server(),
        ])?;
        let mut kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())
            .map_err(|e| LabError::Invalid(format!("{}: {e}", self.kubeconfig().display())))?;
        for user in &mut kubeconfig.auth_infos {
            user.auth_info = Some(kube::config::AuthInfo {
                token: Some(token.trim().to_owned().into()),
                ..Default::default()
            });
        }
        let text = serde_json::to_string(&kubeconfig)
            .map_err(|e| LabError::Invalid(format!("kubeconfig for {namespace}/{name}: {e}")))?;
        let path = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        std::fs::write(&path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    /// A client authenticating as service account `namespace/name`
    /// (created if missing): see [`KubeEnv::service_account_kubeconfig`].
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<kube::Client, LabError> {
        let path = self.service_account_kubeconfig(namespace, name)?;
        let kubeconfig = kube::config::Kubeconfig::read_from(&path)
            .map_err(|e| LabError::Invalid(format!("{}: {e}", path.display())))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| LabError::Invalid(format!("{}: {e}", path.display())))?;
        kube::Client::try_from(config).map_err(|e| LabError::Invalid(format!("kube client: {e}")))
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) -> Result<(), LabError> {
        let mut child = match self.server.take() {
            None => return Ok(()),
            Some(Server::Lab(process)) => {
                process.terminate()?;
                if process.wait_exit(Duration::from_secs(10))?.is_none() {
                    process.kill()?;
                }
                return Ok(());
            }
            Some(Server::Local(child)) => child,
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(());
                }
            }
        }
    }

    /// Stops the server and starts it again on the same port, credentials
    /// and etcd data (an API-server restart), then waits until it is ready.
    /// A server on loopback only.
    pub fn restart(&mut self) -> Result<(), LabError> {
        if self.netns.is_some() {
            return Err(LabError::Invalid("restart a lab's API server through the lab".into()));
        }
        self.stop()?;
        self.spawn()?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// Runs kubectl with `args` aimed at this server to completion; its
    /// standard output.
    pub fn run_kubectl(&self, args: &[&str]) -> Result<String, LabError> {
        let mut command = self.kubectl();
        command.args(args);
        crate::netns::run_command(command, &format!("kubectl {}", args.join(" ")))
    }

    /// Writes `text` to file `name` of the scratch space; its path.
    fn scratch_file(&self, name: &str, text: &str) -> Result<String, LabError> {
        let path = self.home.join(name);
        std::fs::create_dir_all(&self.home).map_err(|e| LabError::io(format!("create {}", self.home.display()), e))?;
        std::fs::write(&path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// Applies `manifest` with kubectl (written to file `name` of the
    /// scratch space first).
    pub fn apply(&self, name: &str, manifest: &str) -> Result<(), LabError> {
        let path = self.scratch_file(name, manifest)?;
        self.run_kubectl(&["apply", "-f", &path]).map(|_| ())
    }

    /// Replaces the objects of `manifest` (each with the resourceVersion it
    /// was read at) with kubectl.
    pub fn replace(&self, name: &str, manifest: &str) -> Result<(), LabError> {
        let path = self.scratch_file(name, manifest)?;
        self.run_kubectl(&["replace", "-f", &path]).map(|_| ())
    }

    /// Merges `status` (the object's `status` field) into `kind` `name` in
    /// `namespace` through the status subresource, as a kubelet or a
    /// controller writes status.
    pub fn patch_status(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        status: serde_json::Value,
    ) -> Result<(), LabError> {
        let patch = serde_json::json!({ "status": status }).to_string();
        self.run_kubectl(&[
            "patch",
            kind,
            "-n",
            namespace,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .map(|_| ())
    }

    /// Applies meshlb's CRDs (as `meshlb-agent crds` prints them) with
    /// kubectl, and waits until they are established.
    pub fn apply_crds(&self) -> Result<(), LabError> {
        let mut crds = Command::new(crate::agent::agent_binary()?);
        crds.arg("crds");
        self.apply("crds.yaml", &crate::netns::run_command(crds, "meshlb-agent crds")?)?;
        self.run_kubectl(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "60s",
            "crd",
            "--all",
        ])?;
        Ok(())
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kube-testenv log ({}), last lines:\n{}",
                self.log.display(),
                self.log_tail(30)
            );
        }
        let _ = self.stop();
        if let Some(root) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// Installs meshlb's CustomResourceDefinitions (`meshlb-agent crds`: the
/// metallb.io kinds and meshlb's own) and waits until the API server
/// serves them.
pub async fn install_crds(client: &kube::Client) -> Result<(), LabError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions};
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let api = |e: kube::Error| LabError::Invalid(format!("installing the CRDs: {e}"));
    for crd in meshlb_config::crd::definitions() {
        crds.create(&Default::default(), &crd).await.map_err(api)?;
    }
    for crd in meshlb_config::crd::definitions() {
        let name = crd.metadata.name.unwrap_or_default();
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(READY_TIMEOUT, established)
            .await
            .map_err(|_| LabError::Invalid(format!("CRD {name} not established within {READY_TIMEOUT:?}")))?
            .map_err(|e| LabError::Invalid(format!("CRD {name}: {e}")))?;
    }
    Ok(())
}
