//! This node as both modes' glue ([`crate::layer2`], [`crate::bgp`]) plan
//! with it: its name, its labels and how it serves ([`NodeOptions`], from
//! the command line), and what their plans are made from
//! ([`NodeOptions::plan_inputs`]).

use meshlb_actors::eligibility::{PlanInput, ThisNode};
use meshlb_actors::l2::responder::AnnounceSchedule;
use meshlb_config::meta::StringMap;

use crate::running::RunningState;

/// This node, and how it serves its addresses.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's name (its Node object's, in a cluster).
    pub node: String,
    /// This node's labels (as published in the mesh), where no Node
    /// object says otherwise.
    pub node_labels: StringMap,
    /// Whether a Service without EndpointSlices has no ready endpoint (in a
    /// cluster; standalone files need not list endpoints).
    pub require_endpoints: bool,
    /// Layer 2's gratuitous announcement schedule.
    pub schedule: AnnounceSchedule,
    /// Whether service addresses get local routes so this node accepts
    /// their traffic (standalone mode; kube-proxy does it in
    /// Kubernetes).
    pub local_addresses: bool,
}

impl NodeOptions {
    /// What the plans (Layer 2's and BGP's) are made from: the running
    /// state, and this node as these options and the running inventory's
    /// Node say.
    pub fn plan_inputs<'a>(&'a self, running: &'a RunningState) -> (PlanInput<'a>, ThisNode<'a>) {
        let input = PlanInput {
            inventory: &running.inventory,
            outcomes: &running.outcomes,
            health: &running.health,
            require_endpoints: self.require_endpoints,
        };
        let node = ThisNode::of(&self.node, &self.node_labels, &running.inventory);
        (input, node)
    }
}
