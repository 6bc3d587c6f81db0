//! The README's demo on Kubernetes: a lab of 3 real nodes and a client
//! ([`crate::cluster`]: containerd, a kubelet and kube-proxy on every
//! node, the API server, scheduler and controller manager on a
//! control-plane host); meshlb's image loaded into the nodes and its Helm
//! chart installed as a user installs it, the DaemonSet's pods coming up;
//! then what a MetalLB user applies: a pool and an L2Advertisement, and a
//! workload (a Deployment of two echo pods) behind a LoadBalancer Service
//! with externalTrafficPolicy Local, so the node that answers for the
//! address is one that runs a pod. It shows `kubectl get pods,svc` with
//! the EXTERNAL-IP and the owner's ServiceL2Status, crashes the owner's
//! node (every process on it, its pods, its link) while the client probes
//! the address every 10 ms, and shows the outage and the new owner.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::cluster::{Announcer, Cluster, ClusterFault, MESHLB_IMAGE, settled_arp_owner};
use crate::error::LabError;
use crate::kube_env::{CHART_NAMESPACE, KubeEnv};
use crate::lab::{Lab, LabSpec};
use crate::scenario::FailoverRun;
use crate::wait::wait_for;

/// What the demo showed.
#[derive(Debug)]
pub struct KubeDemoReport {
    /// The node its ServiceL2Status named before the crash.
    pub owner_before: String,
    /// The crash as the client saw it.
    pub run: FailoverRun,
    /// The node its ServiceL2Status names after.
    pub owner_after: String,
}

/// The echo Service's (of examples/layer2/selectorless.yaml) address,
/// once the allocator wrote it.
pub fn echo_address(env: &KubeEnv) -> Result<Ipv4Addr, LabError> {
    let mut address = String::new();
    wait_for(Duration::from_secs(60), "the echo Service to get an address", || {
        address = env
            .run_kubectl(&[
                "get",
                "service",
                "-n",
                "shop",
                "echo",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .unwrap_or_default();
        !address.is_empty()
    })?;
    address
        .parse()
        .map_err(|_| LabError::Invalid(format!("the Service's address {address:?}")))
}

/// The node the echo Service's ServiceL2Status names (several, if more
/// than one object exists for a moment; empty if none).
pub fn reported_owner(env: &KubeEnv) -> Result<String, LabError> {
    env.run_kubectl(&[
        "get",
        "servicel2statuses",
        "-n",
        CHART_NAMESPACE,
        "-l",
        "metallb.io/service-name=echo",
        "-o",
        "jsonpath={.items[*].status.node}",
    ])
}

/// Runs the demo, telling `show` each step (with kubectl's output) as it
/// happens.
pub fn kube_demo(show: &mut dyn FnMut(&str)) -> Result<KubeDemoReport, LabError> {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(3, 1, false)
    })?;
    lab.run(|lab| {
        show("starting a cluster: the API server (with etcd), scheduler and controller manager on the");
        show("control-plane host; containerd, a kubelet and kube-proxy on every node...");
        let cluster = Cluster::start(lab)?;
        let env = cluster.env();
        show("$ kubectl get nodes");
        show(&env.run_kubectl(&["get", "nodes"])?);
        show("building meshlb's image (scripts/image) and loading it into every node's containerd...");
        cluster.import_meshlb_image(&[DEMO_TAG])?;
        show(&format!(
            "$ helm install meshlb charts/meshlb --namespace metallb-system --create-namespace \\\n    \
             --set speaker.image.repository={MESHLB_IMAGE} --set speaker.image.tag={DEMO_TAG}"
        ));
        cluster.install_meshlb(DEMO_TAG, &[])?;
        show("$ kubectl get pods -n metallb-system -o wide");
        show(&env.run_kubectl(&["get", "pods", "-n", CHART_NAMESPACE, "-o", "wide"])?);
        show("$ kubectl apply -f examples/layer2/pools.yaml   (an IPAddressPool and an L2Advertisement)");
        env.apply("pools.yaml", include_str!("../../examples/layer2/pools.yaml"))?;
        show("$ kubectl apply -f -   (namespace shop: a Deployment of 2 echo pods, a LoadBalancer Service,");
        show("                        externalTrafficPolicy Local)");
        cluster.deploy_echo("shop", "echo", 2, "Local")?;
        let address = echo_address(env)?;
        // The address may move once while the pods' endpoints come up one
        // by one: the owner is the node that answers, settled.
        let owner_before = settled_arp_owner(lab, address)?;
        wait_for(Duration::from_secs(60), "a ServiceL2Status naming the owner", || {
            reported_owner(env).unwrap_or_default() == owner_before
        })?;
        show("$ kubectl get pods,svc -n shop -o wide");
        show(&env.run_kubectl(&["get", "pods,svc", "-n", "shop", "-o", "wide"])?);
        show("$ kubectl get servicel2statuses -n metallb-system");
        show(&env.run_kubectl(&["get", "servicel2statuses", "-n", CHART_NAMESPACE])?);

        show(&format!(
            "the client probes {address} every 10 ms; the owner's node crashes (every process, every pod, its link)."
        ));
        let run = cluster.fail_owner(lab, address, Announcer::Meshlb, ClusterFault::NodeCrash)?;
        let mut owner_after = String::new();
        wait_for(Duration::from_secs(60), "the successor's ServiceL2Status", || {
            owner_after = reported_owner(env).unwrap_or_default();
            !owner_after.is_empty() && !owner_after.split_whitespace().any(|n| n == run.old_owner)
        })?;
        show("$ kubectl get servicel2statuses -n metallb-system");
        show(&env.run_kubectl(&["get", "servicel2statuses", "-n", CHART_NAMESPACE])?);
        Ok(KubeDemoReport {
            owner_before,
            run,
            owner_after,
        })
    })
}

/// The tag the demo loads meshlb's image under.
const DEMO_TAG: &str = "demo";
