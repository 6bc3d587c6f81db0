//! Standalone mode: configuration from a directory, reloaded on change.
//!
//! Each reading goes through `meshlb-config`: read (bounded, see
//! [`ReadLimits`]), parse, validate as a whole, offer to the
//! [`ConfigStore`] (an invalid reading never replaces the last valid one;
//! the rejection is logged and kept for introspection), then allocate with
//! the [`Reconciler`], remember the assignments in the state file, and
//! (re)start the services' health checks.
//!
//! In the running agent ([`Standalone::run`]) all of that but the health
//! checks happens on a blocking thread, off the thread that gossips and
//! answers ARP and NDP: a large or hostile file delays the next
//! configuration, never an answer or a probe, and the running one keeps
//! being served meanwhile. A reading whose files are byte for byte those
//! already read is recognised by its fingerprint and costs no parsing.
//!
//! A reading that would withdraw every address the agent announces, or
//! remove every pool (a file truncated by an editor or a `>` redirection
//! before it is written anew reads as empty), is held for
//! [`SourceOptions::hold_withdraw_all`] with a warning, and applied only if
//! the files still read the same then. Any other change applies at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlb_config::health::{Health, HealthCheck};
use meshlb_config::service::{ClassFilter, ServiceKey};
use meshlb_config::{ConfigStore, Inventory, Offer, Reconciler, Rejected, ServiceOutcome};
use tokio::sync::watch;

use crate::file_source::{ReadLimits, read_directory, watch as watch_directory};
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
    /// The reading would withdraw everything; it is applied only if the
    /// files still read the same at `until`. The previous configuration
    /// keeps running meanwhile.
    Held {
        /// What it would withdraw.
        reason: String,
        /// When the files are read again to decide.
        until: Instant,
    },
}

/// How the standalone source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOptions {
    /// Bounds on the files.
    pub limits: ReadLimits,
    /// How long a reading that withdraws everything is held.
    pub hold_withdraw_all: Duration,
}

/// The default of [`SourceOptions::hold_withdraw_all`]: longer than an
/// editor takes between truncating a file and writing it anew.
pub const DEFAULT_HOLD_WITHDRAW_ALL: Duration = Duration::from_secs(5);

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            limits: ReadLimits::default(),
            hold_withdraw_all: DEFAULT_HOLD_WITHDRAW_ALL,
        }
    }
}

/// A held reading: its fingerprint and since when.
#[derive(Debug, Clone, Copy)]
struct Held {
    fingerprint: u64,
    since: Instant,
}

/// The standalone agent's configuration pipeline (plain, blocking work:
/// see [`Standalone::run`] for where it runs).
#[derive(Debug)]
pub struct Standalone {
    dir: PathBuf,
    state_path: Option<PathBuf>,
    options: SourceOptions,
    store: ConfigStore<Arc<Inventory>>,
    reconciler: Reconciler,
    outcomes: BTreeMap<ServiceKey, ServiceOutcome>,
    /// The fingerprint of the last reading that was parsed.
    last_parsed: Option<u64>,
    /// How many readings were parsed.
    parsed: u64,
    held: Option<Held>,
}

impl Standalone {
    /// Reads remembered assignments from `state_path` (if given) and
    /// prepares to read `dir` with the default [`SourceOptions`].
    pub fn new(dir: &Path, state_path: Option<&Path>, classes: ClassFilter) -> Result<Standalone, AgentError> {
        let remembered = match state_path {
            Some(path) => state_file::load(path)?,
            None => BTreeMap::new(),
        };
        Ok(Standalone {
            dir: dir.to_path_buf(),
            state_path: state_path.map(Path::to_path_buf),
            options: SourceOptions::default(),
            store: ConfigStore::default(),
            reconciler: Reconciler::new(classes, remembered),
            outcomes: BTreeMap::new(),
            last_parsed: None,
            parsed: 0,
            held: None,
        })
    }

    /// The same pipeline reading with `options`.
    pub fn with_options(mut self, options: SourceOptions) -> Standalone {
        self.options = options;
        self
    }

    /// The configuration store (running generation, last rejection).
    pub fn store(&self) -> &ConfigStore<Arc<Inventory>> {
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

    /// How many readings were parsed (a reading of unchanged files is not).
    pub fn readings_parsed(&self) -> u64 {
        self.parsed
    }

    /// When a held reading is to be read again, if one is held.
    pub fn held_until(&self) -> Option<Instant> {
        self.held.map(|h| h.since + self.options.hold_withdraw_all)
    }

    /// Reads the directory and applies it if valid (blocking: file reads,
    /// parsing, validation, allocation, the state file).
    pub fn reload(&mut self) -> Reload {
        let reading = match read_directory(&self.dir, &self.options.limits) {
            Ok(reading) => reading,
            Err(rejected) => return self.reject(rejected),
        };
        if self.last_parsed == Some(reading.fingerprint) && self.held.is_none() {
            return Reload::Unchanged;
        }
        self.last_parsed = Some(reading.fingerprint);
        self.parsed += 1;
        let inventory = match reading.parse().and_then(|objects| Inventory::build(&objects)) {
            Ok(inventory) => Arc::new(inventory),
            Err(rejected) => return self.reject(rejected),
        };
        if self.store.active() == Some(&inventory) {
            self.held = None;
            self.store.offer(Ok(inventory));
            return Reload::Unchanged;
        }
        let mut next = self.reconciler.clone();
        let outcomes = next.apply(&inventory);
        if let Some(reason) = self.withdraws_everything(&inventory, &outcomes) {
            let now = Instant::now();
            let held = match self.held {
                Some(held) if held.fingerprint == reading.fingerprint => held,
                _ => Held {
                    fingerprint: reading.fingerprint,
                    since: now,
                },
            };
            let until = held.since + self.options.hold_withdraw_all;
            if now < until {
                self.held = Some(held);
                return Reload::Held { reason, until };
            }
            tracing::warn!(
                "the files still read the same after {:?}: {reason}",
                self.options.hold_withdraw_all
            );
        }
        self.held = None;
        let generation = match self.store.offer(Ok(inventory)) {
            Offer::Accepted(generation) => generation,
            Offer::Unchanged(_) => return Reload::Unchanged,
            Offer::Rejected(rejected) => return Reload::Rejected(rejected),
        };
        self.reconciler = next;
        let mut changed = BTreeMap::new();
        for (key, outcome) in &outcomes {
            if self.outcomes.get(key) != Some(outcome) {
                changed.insert(key.clone(), Some(outcome.clone()));
            }
        }
        for key in self.outcomes.keys().filter(|k| !outcomes.contains_key(*k)) {
            changed.insert(key.clone(), None);
        }
        self.outcomes = outcomes;
        if let Some(path) = &self.state_path
            && let Err(e) = state_file::save(path, self.reconciler.allocator())
        {
            tracing::error!(error = %e, "cannot remember assignments; a restart may reassign addresses");
        }
        Reload::Accepted { generation, changed }
    }

    fn reject(&mut self, rejected: Rejected) -> Reload {
        self.held = None;
        self.store.offer(Err(rejected.clone()));
        Reload::Rejected(rejected)
    }

    /// Why applying `inventory` (with `outcomes`) would withdraw everything,
    /// if it would: every pool removed, or no address left where some are
    /// announced now.
    fn withdraws_everything(
        &self,
        inventory: &Inventory,
        outcomes: &BTreeMap<ServiceKey, ServiceOutcome>,
    ) -> Option<String> {
        let running = self.store.active()?;
        let announced = self.outcomes.values().filter(|o| o.assignment().is_some()).count();
        if inventory.config.pools.is_empty() && !running.config.pools.is_empty() {
            return Some(format!(
                "it removes every pool ({} now, holding addresses for {announced} services)",
                running.config.pools.len()
            ));
        }
        if announced > 0 && !outcomes.values().any(|o| o.assignment().is_some()) {
            return Some(format!(
                "it withdraws every address ({announced} services hold addresses now)"
            ));
        }
        None
    }

    /// Reloads now, then on every change of the directory (and every
    /// `resync` as a safety net, and when a held reading is due), logging
    /// what happens, until `shutdown` completes. Each reload runs on a
    /// blocking thread; the running configuration, outcomes and health go
    /// to `published` after every change.
    pub async fn run(
        self,
        resync: Duration,
        shutdown: impl Future<Output = ()>,
        published: watch::Sender<Arc<AgentState>>,
    ) -> Result<(), AgentError> {
        let (_watcher, mut changes) = watch_directory(&self.dir, Duration::from_millis(200))?;
        let (mut monitors, mut health) = HealthMonitors::new();
        let mut agent = self.reload_off_thread(&mut monitors).await?;
        agent.publish(&published, &health);
        let mut resync_timer = tokio::time::interval(resync);
        resync_timer.tick().await;
        tokio::pin!(shutdown);
        loop {
            let held_until = agent.held_until().map(tokio::time::Instant::from_std);
            let hold_over = async {
                match held_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = changes.recv() => agent = agent.reload_off_thread(&mut monitors).await?,
                _ = resync_timer.tick() => agent = agent.reload_off_thread(&mut monitors).await?,
                () = hold_over => agent = agent.reload_off_thread(&mut monitors).await?,
                Ok(()) = health.changed() => {}
            }
            agent.publish(&published, &health);
        }
        tracing::info!("shutting down");
        Ok(())
    }

    /// [`Standalone::reload`] on a blocking thread, then the log and, for a
    /// new configuration, the health checks.
    async fn reload_off_thread(mut self, monitors: &mut HealthMonitors) -> Result<Standalone, AgentError> {
        let (agent, reload) = tokio::task::spawn_blocking(move || {
            let reload = self.reload();
            (self, reload)
        })
        .await
        .map_err(|e| AgentError::Task(e.to_string()))?;
        log_reload(&reload);
        if let (Reload::Accepted { .. }, Some(inventory)) = (&reload, agent.store.active()) {
            monitors.update(health_checks(inventory, &agent.outcomes));
        }
        Ok(agent)
    }

    fn publish(
        &self,
        published: &watch::Sender<Arc<AgentState>>,
        health: &watch::Receiver<BTreeMap<ServiceKey, Health>>,
    ) {
        let Some(inventory) = self.store.active() else { return };
        let generation = self.store.generation();
        let health = health.borrow();
        published.send_if_modified(|current| {
            // A new generation is the only way the inventory and the
            // outcomes change; comparing it spares comparing them.
            let modified = current.generation != generation || current.health != *health;
            if modified {
                *current = Arc::new(AgentState {
                    generation,
                    inventory: Arc::clone(inventory),
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
        Reload::Held { reason, until } => tracing::warn!(
            "configuration held: {reason}; the previous one keeps running, and this one is applied only if \
             the files still read the same in {:.1} s",
            until.saturating_duration_since(Instant::now()).as_secs_f64()
        ),
    }
}
