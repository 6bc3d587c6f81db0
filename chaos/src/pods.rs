//! A workload's container run as a lab process, as its pod would run it:
//! no kubelet runs here (that is issue 34's lab), so what a kubelet would
//! give the container is given by hand, from the installed object itself
//! (a Deployment or DaemonSet as another project's chart or manifest
//! installed it):
//! - its arguments, and its environment with the downward API's values
//!   (`metadata.name`, `metadata.namespace`, `spec.nodeName`,
//!   `status.hostIP`, `status.podIP`; the pod's address is its node's, as
//!   with hostNetwork) filled in;
//! - its Secret and ConfigMap volumes written to a directory of the lab
//!   and kept in step with their objects every second (as a kubelet
//!   syncs them: a webhook's certificate appears once its controller made
//!   it), every mount path in the arguments and environment pointing
//!   there;
//! - its service account's credentials, as `KUBECONFIG` (a token the
//!   TokenRequest API issued), and a `/tmp` of its own (`TMPDIR`);
//! - its Pod object, with the status a kubelet would report.
//!
//! The image's program is replaced by a binary built from the same
//! project's sources (`scripts/metallb`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;

use crate::error::LabError;
use crate::kube_env::{KubeEnv, Kubectl};
use crate::lab::{Lab, LabProcess};

/// A container running as a lab process, its volumes kept in step.
#[derive(Debug)]
pub struct PodProcess {
    /// The pod's name.
    pub pod: String,
    /// Its node.
    pub node: String,
    /// The process.
    pub process: LabProcess,
    stop_sync: Arc<AtomicBool>,
    sync: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        self.stop_sync.store(true, Ordering::Relaxed);
        if let Some(sync) = self.sync.take() {
            let _ = sync.join();
        }
    }
}

/// A Secret or ConfigMap volume: where it is mounted, and its object.
#[derive(Debug, Clone)]
struct Projected {
    /// `secret` or `configmap`.
    kind: &'static str,
    object: String,
    /// Where its files go in the lab.
    dir: PathBuf,
}

/// The `path` field of a JSON value, or null.
fn at<'a>(value: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter().fold(value, |v, key| &v[*key])
}

/// Writes the data of `kind` `object` in `namespace` into `dir` (each key a
/// file), if it exists; whether it does.
fn project(kubectl: &Kubectl, namespace: &str, projected: &Projected) -> Result<bool, LabError> {
    let Ok(text) = kubectl.run(&["get", projected.kind, "-n", namespace, &projected.object, "-o", "json"]) else {
        return Ok(false);
    };
    let object: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LabError::Invalid(format!("{}: {e}", projected.object)))?;
    std::fs::create_dir_all(&projected.dir).map_err(|e| LabError::io("create a volume directory", e))?;
    let data = object["data"].as_object().cloned().unwrap_or_default();
    for (key, value) in data {
        let text = value.as_str().unwrap_or_default();
        let bytes = if projected.kind == "secret" {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| LabError::Invalid(format!("{}/{key}: {e}", projected.object)))?
        } else {
            text.as_bytes().to_vec()
        };
        let path = projected.dir.join(&key);
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            let temporary = projected.dir.join(format!(".{key}.new"));
            std::fs::write(&temporary, &bytes).map_err(|e| LabError::io("write a volume file", e))?;
            std::fs::rename(&temporary, &path).map_err(|e| LabError::io("write a volume file", e))?;
        }
    }
    Ok(true)
}

/// Creates the Pod object `pod` of `workload` on `node`, with the status a
/// kubelet reports for it running there at `address` (the node's: the
/// projects run here list their peers' Pods by label and read their
/// addresses).
fn register_pod(
    env: &KubeEnv,
    namespace: &str,
    workload: &serde_json::Value,
    pod: &str,
    node: &str,
    address: &str,
) -> Result<(), LabError> {
    let template = at(workload, &["spec", "template"]);
    let mut spec = template["spec"].clone();
    spec["nodeName"] = serde_json::json!(node);
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": spec,
    });
    env.apply(&format!("pod-{pod}.yaml"), &object.to_string())?;
    let status = serde_json::json!({
        "phase": "Running",
        "hostIP": address,
        "podIP": address,
        "podIPs": [{"ip": address}],
        "conditions": [{"type": "Ready", "status": "True"}],
    });
    env.patch_status("pod", namespace, pod, status)
}

/// Runs container `container` of `kind` (`deployment` or `daemonset`)
/// `name` in `namespace` on lab node `node` with `binary` in place of its
/// image's program, as its pod would run (see the module documentation).
/// `extra_args` are appended, mount paths in them pointed into the lab as
/// well (flags whose defaults name paths inside the image).
#[allow(clippy::too_many_arguments)]
pub fn run_container(
    lab: &Lab,
    env: &KubeEnv,
    node: &str,
    namespace: &str,
    kind: &str,
    name: &str,
    container: &str,
    binary: &Path,
    extra_args: &[String],
) -> Result<PodProcess, LabError> {
    let text = env.run_kubectl(&["get", kind, "-n", namespace, name, "-o", "json"])?;
    let workload: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LabError::Invalid(format!("{kind}/{name}: {e}")))?;
    let spec = at(&workload, &["spec", "template", "spec"]);
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let Some(spec_container) = containers.iter().find(|c| c["name"] == container) else {
        return Err(LabError::Invalid(format!("{kind}/{name} has no container {container}")));
    };
    let host = lab.host(node)?;
    let address = host.ipv4.to_string();
    let pod = format!("{name}-{node}");
    let root = lab.log_dir().join("pods").join(&pod);
    // Volumes: Secret and ConfigMap ones projected under `root`.
    let mut projected: Vec<Projected> = Vec::new();
    let mut mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    for mount in spec_container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(volume), Some(path)) = (mount["name"].as_str(), mount["mountPath"].as_str()) else {
            continue;
        };
        let Some(volume) = volumes.iter().find(|v| v["name"] == volume) else {
            continue;
        };
        let dir = root.join(path.trim_start_matches('/'));
        let source = if let Some(secret) = volume["secret"]["secretName"].as_str() {
            ("secret", secret)
        } else if let Some(map) = volume["configMap"]["name"].as_str() {
            ("configmap", map)
        } else {
            continue;
        };
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io("create a volume directory", e))?;
        projected.push(Projected {
            kind: source.0,
            object: source.1.to_owned(),
            dir: dir.clone(),
        });
        mounts.insert(path.to_owned(), dir);
    }
    let kubectl = env.kubectl_handle();
    for volume in &projected {
        project(&kubectl, namespace, volume)?;
    }
    // A mount path anywhere in a value (`/etc/ml_secret_key`,
    // `--cert-dir=/tmp/...`) points into the lab.
    let relocate = |value: &str| -> String {
        let mut value = value.to_owned();
        for (path, dir) in &mounts {
            value = value.replace(path.as_str(), &dir.to_string_lossy());
        }
        value
    };
    let field = |path: &str| -> Option<String> {
        Some(match path {
            "metadata.name" => pod.clone(),
            "metadata.namespace" => namespace.to_owned(),
            "spec.nodeName" => node.to_owned(),
            "status.hostIP" | "status.podIP" => address.clone(),
            _ => return None,
        })
    };
    let mut variables: Vec<(String, String)> = Vec::new();
    for variable in spec_container["env"].as_array().into_iter().flatten() {
        let Some(key) = variable["name"].as_str() else { continue };
        let value = match (
            variable["value"].as_str(),
            at(variable, &["valueFrom", "fieldRef", "fieldPath"]).as_str(),
        ) {
            (Some(value), _) => relocate(value),
            (None, Some(path)) => field(path)
                .ok_or_else(|| LabError::Invalid(format!("{kind}/{name}: no value for field {path} here")))?,
            _ => continue,
        };
        variables.push((key.to_owned(), value));
    }
    register_pod(env, namespace, &workload, &pod, node, &address)?;
    let account = spec["serviceAccountName"].as_str().unwrap_or("default");
    let kubeconfig = env.service_account_kubeconfig(namespace, account)?;
    variables.push(("KUBECONFIG".into(), kubeconfig.to_string_lossy().into_owned()));
    // The container's own /tmp (programs that put files there by default,
    // as controller-runtime's webhook server looks for its certificate).
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| LabError::io("create the pod's /tmp", e))?;
    variables.push(("TMPDIR".into(), tmp.to_string_lossy().into_owned()));
    let mut args: Vec<String> = spec_container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .chain(spec_container["args"].as_array().into_iter().flatten())
        .filter_map(|a| a.as_str().map(relocate))
        .collect();
    args.extend(extra_args.iter().map(|a| relocate(a)));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = lab.spawn_with_env(node, &pod, &binary.to_string_lossy(), &refs, &variables)?;
    // Keep the volumes in step, as a kubelet does.
    let stop_sync = Arc::new(AtomicBool::new(false));
    let sync = (!projected.is_empty()).then(|| {
        let stop = Arc::clone(&stop_sync);
        let namespace = namespace.to_owned();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for volume in &projected {
                    let _ = project(&kubectl, &namespace, volume);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    });
    Ok(PodProcess {
        pod,
        node: node.to_owned(),
        process,
        stop_sync,
        sync,
    })
}
