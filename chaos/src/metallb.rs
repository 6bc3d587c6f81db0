//! MetalLB in the lab, as its users have it: its module from the Go module
//! proxy ([`module_dir`]: its chart, manifests, CRDs, config samples and
//! documentation, applied by the tests as they are), and its binaries
//! built from it ([`binary`]). The speaker (`go.universe.tf/metallb/speaker`)
//! runs in native mode with memberlist, one per node, as its DaemonSet pod
//! with hostNetwork would run it, against the lab's API server: for the
//! benchmarks that set meshlb beside MetalLB, and the migration tests.
//!
//! No kubelet runs here, so the speaker Pods it lists to find its
//! memberlist peers are created as objects and given the status a kubelet
//! would report (Running, pod and host IP the node's address).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::LabError;
use crate::kube_env::KubeEnv;
use crate::lab::{Lab, LabProcess};

/// The MetalLB release `chaos/metallb/go.mod` pins.
pub const VERSION: &str = "v0.15.2";

/// The namespace MetalLB runs in (and reads its configuration from).
pub const NAMESPACE: &str = "metallb-system";

/// The speaker Pods' labels, which the speakers list to find each other
/// (`METALLB_ML_LABELS` in MetalLB's manifests).
pub const SPEAKER_LABELS: &str = "app=metallb,component=speaker";

/// memberlist's port (MetalLB's default).
pub const MEMBERLIST_PORT: u16 = 7946;

/// The speaker's metrics port (MetalLB's default).
pub const METRICS_PORT: u16 = 7472;

/// Runs `scripts/metallb ARG`; what it prints, trimmed.
fn script(arg: &str) -> Result<PathBuf, LabError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/metallb");
    let mut command = std::process::Command::new(&script);
    command.arg(arg).stderr(std::process::Stdio::inherit());
    let printed = crate::netns::run_command(command, &format!("scripts/metallb {arg}"))?;
    let path = PathBuf::from(printed.trim());
    if path.as_os_str().is_empty() || !path.exists() {
        return Err(LabError::Invalid(format!(
            "scripts/metallb {arg} printed no existing path ({printed:?})"
        )));
    }
    Ok(path)
}

/// The directory of MetalLB's module ([`VERSION`]) in Go's module cache,
/// downloaded from the module proxy if need be: `charts/metallb`,
/// `config/manifests/metallb-native.yaml`, `config/crd/bases`,
/// `configsamples`, `website/content`. Asked once per process.
pub fn module_dir() -> Result<PathBuf, LabError> {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| script("module").map_err(|e| e.to_string()))
        .clone()
        .map_err(LabError::Invalid)
}

/// One of MetalLB's binaries, `controller` or `speaker`, built from the
/// module (minutes the first time, cached after).
pub fn binary(name: &str) -> Result<PathBuf, LabError> {
    script(name)
}

/// Creates a speaker Pod object on every node of `lab` (and their service
/// account), with the status a kubelet would report for a hostNetwork pod.
pub fn register_speaker_pods(env: &KubeEnv, lab: &Lab) -> Result<(), LabError> {
    let mut manifest =
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: speaker, namespace: {NAMESPACE}}}\n");
    for node in lab.hosts_with(crate::lab::Role::Node) {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: speaker-{name}\n  namespace: {NAMESPACE}\n  \
             labels: {{app: metallb, component: speaker}}\nspec:\n  nodeName: {name}\n  hostNetwork: true\n  \
             serviceAccountName: speaker\n  automountServiceAccountToken: false\n  \
             containers: [{{name: speaker, image: \"quay.io/metallb/speaker:{VERSION}\"}}]\n",
            name = node.name
        ));
    }
    env.apply("speaker-pods.yaml", &manifest)?;
    for node in lab.hosts_with(crate::lab::Role::Node) {
        let address = node.ipv4.to_string();
        let status = serde_json::json!({
            "phase": "Running",
            "hostIP": address,
            "podIP": address,
            "podIPs": [{"ip": address}],
        });
        env.patch_status("pod", NAMESPACE, &format!("speaker-{}", node.name), status)?;
    }
    Ok(())
}

/// One MetalLB speaker.
#[derive(Debug)]
pub struct Speaker {
    /// Its node.
    pub node: String,
    /// The process.
    pub process: LabProcess,
}

impl Speaker {
    /// The nodes this speaker's memberlist has reported joining (MetalLB
    /// logs each membership event, its own join included).
    pub fn joined(&self) -> BTreeSet<String> {
        self.process
            .log()
            .lines()
            .filter(|l| l.contains("\"node event\":\"NodeJoin\""))
            .filter_map(|l| {
                let value: serde_json::Value = serde_json::from_str(l).ok()?;
                value.get("node name")?.as_str().map(str::to_owned)
            })
            .collect()
    }
}

/// Starts MetalLB's speaker `binary` on `node` with the lab API server's
/// admin `kubeconfig`, memberlist on the node's address, encrypted with the
/// key in `secret_dir/secretkey` (where MetalLB mounts its memberlist
/// Secret).
pub fn start_speaker(
    lab: &Lab,
    node: &str,
    binary: &Path,
    kubeconfig: &Path,
    secret_dir: &Path,
) -> Result<Speaker, LabError> {
    let address = lab.host(node)?.ipv4.to_string();
    let args = [
        "--kubeconfig".to_owned(),
        kubeconfig.to_string_lossy().into_owned(),
        "--node-name".into(),
        node.into(),
        "--pod-name".into(),
        format!("speaker-{node}"),
        "--namespace".into(),
        NAMESPACE.into(),
        "--host".into(),
        address.clone(),
        "--port".into(),
        METRICS_PORT.to_string(),
        "--ml-bindaddr".into(),
        address,
        "--ml-bindport".into(),
        MEMBERLIST_PORT.to_string(),
        "--ml-labels".into(),
        SPEAKER_LABELS.into(),
        "--ml-secret-key-path".into(),
        secret_dir.to_string_lossy().into_owned(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = lab.spawn(node, "metallb-speaker", &binary.to_string_lossy(), &refs)?;
    Ok(Speaker {
        node: node.to_owned(),
        process,
    })
}

/// Writes a random memberlist key where [`start_speaker`] reads it, in
/// `lab`'s log directory; the directory.
pub fn write_memberlist_key(lab: &Lab) -> Result<PathBuf, LabError> {
    let dir = lab.log_dir().join("metallb-memberlist");
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("create the memberlist key directory", e))?;
    let key = crate::agent::random_key(1)?;
    let path = dir.join("secretkey");
    std::fs::write(&path, key).map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_the_one_go_mod_pins() {
        let go_mod = include_str!("../metallb/go.mod");
        assert!(go_mod.contains(&format!("go.universe.tf/metallb {}", super::VERSION)));
    }
}
