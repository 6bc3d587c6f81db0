//! The running state: what the [pipeline](crate::pipeline) has read and
//! decided (the configuration and services, every service's outcome and
//! health), which both modes' plans ([`crate::node::NodeOptions::plan_inputs`]),
//! the allocator and the Service status writers follow. The pipeline alone
//! publishes it, on the watch of [`crate::status::StatusHub::running`];
//! the glue of each mode is handed that watch when it starts. What is for
//! dashboards only (the pools' address counters) is published beside it,
//! never in it, so a change for a dashboard cannot make the protocols
//! replan.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlb_config::Inventory;
use meshlb_config::health::Health;
use meshlb_config::reconcile::Outcomes;
use meshlb_config::service::ServiceKey;

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
