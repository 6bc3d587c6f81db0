//! The README's demo on Kubernetes: a lab of 3 nodes and a client with the
//! real API server on its control-plane host (no kubelet: the lab runs
//! each node's agent as the chart's DaemonSet pod would, with the chart's
//! ServiceAccount), meshlb installed with helm, then what a MetalLB user
//! applies: a pool, an L2Advertisement and a Service (with its
//! EndpointSlice, as the endpoints controller would write it). It shows
//! the Service's EXTERNAL-IP and the owner from its ServiceL2Status,
//! crashes the owner while the client probes the address every 10 ms, and
//! shows the outage and the new owner. kube-proxy is played by the lab, as
//! in [`crate::kube_failover`].

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::error::LabError;
use crate::kube_env::{CHART_NAMESPACE, KubeEnv};
use crate::lab::{Lab, LabSpec};
use crate::scenario::{FailoverRun, NodeFault, fail_owner, start_responders};
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
pub fn kube_demo(lab_binary: &Path, show: &mut dyn FnMut(&str)) -> Result<KubeDemoReport, LabError> {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(3, 1, false)
    })?;
    lab.run(|lab| {
        show("starting the API server (kube-apiserver with etcd) on the control-plane host...");
        let env = KubeEnv::start_in_lab(lab)?;
        // No kubelet registers the lab's hosts: the Nodes are written as
        // one would.
        env.register_lab_nodes(lab)?;
        show("$ helm install meshlb charts/meshlb --namespace metallb-system --create-namespace");
        env.install_chart(&[])?;
        show("$ kubectl apply -f examples/layer2/pools.yaml   (an IPAddressPool and an L2Advertisement)");
        env.apply("pools.yaml", include_str!("../../examples/layer2/pools.yaml"))?;
        show("$ kubectl create namespace shop; kubectl apply -f examples/layer2/selectorless.yaml   (a Service)");
        env.run_kubectl(&["create", "namespace", "shop"])?;
        env.apply("service.yaml", include_str!("../../examples/layer2/selectorless.yaml"))?;

        show("the agents start on every node with the DaemonSet's arguments and ServiceAccount...");
        let agents = crate::agent::start_chart_cluster(lab, &env)?;
        let address = echo_address(&env)?;
        let _responders = start_responders(lab, lab_binary)?;
        crate::kube_failover::play_kube_proxy(lab, address)?;
        let mut owner_before = String::new();
        wait_for(Duration::from_secs(30), "a ServiceL2Status naming one owner", || {
            owner_before = reported_owner(&env).unwrap_or_default();
            !owner_before.is_empty() && !owner_before.contains(' ')
        })?;
        show("$ kubectl get svc -n shop");
        show(&env.run_kubectl(&["get", "svc", "-n", "shop"])?);
        show("$ kubectl get servicel2statuses -n metallb-system");
        show(&env.run_kubectl(&["get", "servicel2statuses", "-n", CHART_NAMESPACE])?);

        show(&format!(
            "the client probes {address} every 10 ms; the owner's node crashes."
        ));
        let run = fail_owner(lab, address, NodeFault::Crash, |node| {
            agents.iter().find(|a| a.node == node).map(|a| &a.process)
        })?;
        let mut owner_after = String::new();
        wait_for(Duration::from_secs(30), "the successor's ServiceL2Status", || {
            owner_after = reported_owner(&env).unwrap_or_default();
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
