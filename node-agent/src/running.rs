//! The running state: what the [pipeline](crate::pipeline) has read and
//! decided (the configuration and services, every service's outcome and
//! health), which both modes' plans ([`crate::node::NodeOptions::plan_inputs`])
//! and the allocator act on, and the cluster's Node objects as last read,
//! which the mesh finds its seeds and this node's labels in. The pipeline
//! alone publishes both, on [`Decisions`]; whatever acts on them is handed
//! a watch of them when it starts. The status hub only mirrors the running
//! state for the readers that show it ([`crate::status::StatusHub::running`]),
//! and what is for dashboards only (the pools' address counters) goes to
//! the hub, never here, so a change for a dashboard cannot make the
//! protocols replan.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlb_config::Inventory;
use meshlb_config::health::Health;
use meshlb_config::reconcile::Outcomes;
use meshlb_config::service::{Node, ServiceKey};
use tokio::sync::watch;

/// The cluster's Node objects by name (empty until a reading had them).
pub type Nodes = BTreeMap<String, Node>;

/// What the pipeline has read and decided: what the protocols act on.
#[derive(Debug, Clone, Default)]
pub struct RunningState {
    /// The configuration generation these were computed from (0: none).
    pub generation: u64,
    /// The running configuration and services.
    pub inventory: Arc<Inventory>,
    /// Every service's outcome (the pipeline's own, shared).
    pub outcomes: Arc<Outcomes>,
    /// Health of the services with a health check.
    pub health: BTreeMap<ServiceKey, Health>,
}

/// What the pipeline decides, for what acts on it. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct Decisions {
    running: watch::Sender<Arc<RunningState>>,
    nodes: watch::Sender<Arc<Nodes>>,
}

impl Decisions {
    /// Follows the running state.
    pub fn running(&self) -> watch::Receiver<Arc<RunningState>> {
        self.running.subscribe()
    }

    /// Follows the Node objects read, whether or not the configuration
    /// read with them was accepted.
    pub fn nodes(&self) -> watch::Receiver<Arc<Nodes>> {
        self.nodes.subscribe()
    }

    /// Publishes `running` unless the one published has its generation
    /// and health (a new generation is the only way the inventory and the
    /// outcomes change: comparing it spares comparing them).
    pub fn publish_running(&self, running: RunningState) {
        self.running.send_if_modified(|current| {
            let modified = current.generation != running.generation || current.health != running.health;
            if modified {
                *current = Arc::new(running);
            }
            modified
        });
    }

    /// Publishes `nodes` unless they are the ones published.
    pub fn publish_nodes(&self, nodes: &Nodes) {
        self.nodes.send_if_modified(|current| {
            let modified = **current != *nodes;
            if modified {
                *current = Arc::new(nodes.clone());
            }
            modified
        });
    }
}
