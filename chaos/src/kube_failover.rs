//! Layer 2 failover on real nodes, meshlb beside MetalLB: for each run a
//! lab of real nodes ([`crate::cluster`]: containerd, a kubelet and
//! kube-proxy on every node), one system installed as its users install
//! it (meshlb's chart, or MetalLB's native manifest with its images), the
//! examples' pool and L2Advertisement, and an echo pod behind a
//! LoadBalancer Service (externalTrafficPolicy Cluster). The pod is moved
//! off the node that answers for the address, so a crash of that node
//! takes only the announcer's part; then the client probes the address
//! every 10 ms and one fault strikes the owner ([`Cluster::fail_owner`]).
//!
//! A run builds its cluster afresh: a crashed node does not come back, and
//! a cluster that ran one system's agents would carry their state into the
//! other's run. Slow (a minute or two a run), so for `meshlb-lab bench`,
//! not for CI.

use crate::cluster::{Announcer, Cluster, ClusterFault};
use crate::error::LabError;
use crate::lab::{Lab, LabSpec};
use crate::scenario::FailoverRun;

/// The examples' Layer 2 pool and advertisement, which both systems read.
const POOLS: &str = include_str!("../../examples/layer2/pools.yaml");

/// The image tag meshlb's image is imported under.
const MESHLB_TAG: &str = "bench";

/// One run: a fresh cluster of `nodes` real nodes and a client, running
/// `announcer`; `fault` strikes the node that answers for the echo
/// Service's address; what the client saw.
pub fn failover(nodes: usize, announcer: Announcer, fault: ClusterFault) -> Result<FailoverRun, LabError> {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(nodes, 1, false)
    })?;
    lab.run(|lab| {
        let cluster = Cluster::start(lab)?;
        let env = cluster.env();
        match announcer {
            Announcer::Meshlb => {
                cluster.import_meshlb_image(&[MESHLB_TAG])?;
                cluster.install_meshlb(MESHLB_TAG, &[])?;
                env.apply("pools.yaml", POOLS)?;
            }
            Announcer::Metallb => {
                cluster.install_metallb()?;
                crate::metallb::apply_when_admitted(env, "pools.yaml", POOLS)?;
            }
        }
        cluster.deploy_echo("shop", "echo", 1, "Cluster")?;
        let address = crate::kube_demo::echo_address(env)?;
        let owner = crate::cluster::settled_arp_owner(lab, address)?;
        let away = lab
            .node_names()
            .into_iter()
            .find(|n| *n != owner)
            .ok_or_else(|| LabError::Invalid("a failover needs two nodes".into()))?;
        cluster.pin_deployment("shop", "echo", &away)?;
        let run = cluster.fail_owner(lab, address, announcer, fault)?;
        if run.old_owner == away {
            return Err(LabError::Invalid(format!(
                "the address moved to {away}, the pod's node, before the fault"
            )));
        }
        Ok(run)
    })
}
