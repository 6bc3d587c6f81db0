//! Standalone mode: configuration from a directory, reloaded on change.
//!
//! Each reading goes through `meshlb-config`: parse, validate as a whole,
//! offer to the [`ConfigStore`] (an invalid reading never replaces the last
//! valid one; the rejection is logged and kept for introspection), then
//! allocate with the [`Reconciler`], remember the assignments in the state
//! file, and (re)start the services' health checks.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshlb_config::health::{Health, HealthCheck};
use meshlb_config::service::{ClassFilter, ServiceKey};
use meshlb_config::{ConfigStore, Inventory, Offer, Reconciler, Rejected, ServiceOutcome};
use tokio::sync::watch;

use crate::file_source::{read_directory, watch as watch_directory};
use crate::health::HealthMonitors;
use crate::layer2::AgentState;
use crate::{AgentError, state_file};

/// What one reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    /// A new configuration runs; these services changed outcome.
    Accepted {
        /// Generation now running.
        generation: u64,
        /// Services whose outcome changed (new, changed or gone: `None`).
        changed: BTreeMap<ServiceKey, Option<ServiceOutcome>>,
    },
    /// The files say what is already running.
    Unchanged,
    /// The reading was refused; the previous configuration keeps running.
    Rejected(Rejected),
}

/// The standalone agent's state.
pub struct Standalone {
    dir: PathBuf,
    state_path: Option<PathBuf>,
    store: ConfigStore<Inventory>,
    reconciler: Reconciler,
    outcomes: BTreeMap<ServiceKey, ServiceOutcome>,
    monitors: Option<HealthMonitors>,
    health: Option<watch::Receiver<BTreeMap<ServiceKey, Health>>>,
}

impl Standalone {
    /// Reads remembered assignments from `state_path` (if given) and
    /// prepares to read `dir`. Health checks run only once [`Self::run`] or
    /// [`Self::enable_health_checks`] is called inside a Tokio runtime.
    pub fn new(dir: &Path, state_path: Option<&Path>, classes: ClassFilter) -> Result<Standalone, AgentError> {
        let remembered = match state_path {
            Some(path) => state_file::load(path)?,
            None => BTreeMap::new(),
        };
        Ok(Standalone {
            dir: dir.to_path_buf(),
            state_path: state_path.map(Path::to_path_buf),
            store: ConfigStore::default(),
            reconciler: Reconciler::new(classes, remembered),
            outcomes: BTreeMap::new(),
            monitors: None,
            health: None,
        })
    }

    /// Starts health monitoring (needs a Tokio runtime).
    pub fn enable_health_checks(&mut self) -> watch::Receiver<BTreeMap<ServiceKey, Health>> {
        let (mut monitors, rx) = HealthMonitors::new();
        if let Some(inventory) = self.store.active() {
            monitors.update(health_checks(inventory, &self.outcomes));
        }
        self.monitors = Some(monitors);
        self.health = Some(rx.clone());
        rx
    }

    /// The configuration store (running generation, last rejection).
    pub fn store(&self) -> &ConfigStore<Inventory> {
        &self.store
    }

    /// Every served service's outcome.
    pub fn outcomes(&self) -> &BTreeMap<ServiceKey, ServiceOutcome> {
        &self.outcomes
    }

    /// The reconciler (allocator and counters).
    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// Reads the directory and applies it if valid.
    pub fn reload(&mut self) -> Reload {
        let reading = read_directory(&self.dir).and_then(|objects| Inventory::build(&objects));
        let generation = match self.store.offer(reading) {
            Offer::Accepted(generation) => generation,
            Offer::Unchanged(_) => return Reload::Unchanged,
            Offer::Rejected(rejected) => return Reload::Rejected(rejected),
        };
        let Some(inventory) = self.store.active() else {
            return Reload::Unchanged;
        };
        let outcomes = self.reconciler.apply(inventory);
        let mut changed = BTreeMap::new();
        for (key, outcome) in &outcomes {
            if self.outcomes.get(key) != Some(outcome) {
                changed.insert(key.clone(), Some(outcome.clone()));
            }
        }
        for key in self.outcomes.keys().filter(|k| !outcomes.contains_key(*k)) {
            changed.insert(key.clone(), None);
        }
        if let Some(monitors) = &mut self.monitors {
            monitors.update(health_checks(inventory, &outcomes));
        }
        self.outcomes = outcomes;
        if let Some(path) = &self.state_path
            && let Err(e) = state_file::save(path, self.reconciler.allocator())
        {
            tracing::error!(error = %e, "cannot remember assignments; a restart may reassign addresses");
        }
        Reload::Accepted { generation, changed }
    }

    /// Reloads now, then on every change of the directory (and every
    /// `resync` as a safety net), logging what happens, until `shutdown`
    /// completes. The running configuration, outcomes and health go to
    /// `published` after every change.
    pub async fn run(
        mut self,
        resync: Duration,
        shutdown: impl Future<Output = ()>,
        published: watch::Sender<Arc<AgentState>>,
    ) -> Result<(), AgentError> {
        let (_watcher, mut changes) = watch_directory(&self.dir, Duration::from_millis(200))?;
        let mut health = self.enable_health_checks();
        log_reload(&self.reload());
        self.publish(&published, &health);
        let mut resync_timer = tokio::time::interval(resync);
        resync_timer.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = changes.recv() => log_reload(&self.reload()),
                _ = resync_timer.tick() => log_reload(&self.reload()),
                Ok(()) = health.changed() => {}
            }
            self.publish(&published, &health);
        }
        tracing::info!("shutting down");
        Ok(())
    }

    fn publish(
        &self,
        published: &watch::Sender<Arc<AgentState>>,
        health: &watch::Receiver<BTreeMap<ServiceKey, Health>>,
    ) {
        let Some(inventory) = self.store.active() else { return };
        let health = health.borrow();
        published.send_if_modified(|current| {
            // Compared first: the inventory is copied only when it changed.
            let modified =
                *current.inventory != *inventory || current.outcomes != self.outcomes || current.health != *health;
            if modified {
                *current = Arc::new(AgentState {
                    inventory: Arc::new(inventory.clone()),
                    outcomes: self.outcomes.clone(),
                    health: health.clone(),
                });
            }
            modified
        });
    }
}

/// Health checks of the services that hold addresses.
fn health_checks(
    inventory: &Inventory,
    outcomes: &BTreeMap<ServiceKey, ServiceOutcome>,
) -> BTreeMap<ServiceKey, HealthCheck> {
    let mut checks = BTreeMap::new();
    for (key, service) in &inventory.services {
        if outcomes.get(key).and_then(ServiceOutcome::assignment).is_none() {
            continue;
        }
        match HealthCheck::from_service(service) {
            Ok(Some(check)) => {
                checks.insert(key.clone(), check);
            }
            Ok(None) => {}
            Err(errors) => {
                for e in errors {
                    tracing::warn!(service = %key, "{e}; the service is treated as unhealthy here");
                }
            }
        }
    }
    checks
}

/// Logs a reload the way an operator wants to read it.
pub fn log_reload(reload: &Reload) {
    match reload {
        Reload::Accepted { generation, changed } => {
            tracing::info!(generation, changed = changed.len(), "configuration accepted");
            for (key, outcome) in changed {
                match outcome {
                    Some(ServiceOutcome::Assigned(a)) => tracing::info!(service = %key, "assigned {a}"),
                    Some(other) => tracing::warn!(service = %key, "{other}"),
                    None => tracing::info!(service = %key, "released"),
                }
            }
        }
        Reload::Unchanged => tracing::debug!("configuration unchanged"),
        Reload::Rejected(rejected) => {
            tracing::error!(
                errors = rejected.errors.len(),
                "configuration rejected; the previous one keeps running"
            );
            for e in &rejected.errors {
                tracing::error!("{e}");
            }
        }
    }
}
