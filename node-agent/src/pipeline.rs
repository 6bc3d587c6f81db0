//! The reconcile pipeline: from a [configuration source](crate::sources)'s
//! updates to what the agent runs.
//!
//! Every update goes through `meshlb-config`: a snapshot is offered to the
//! [`ConfigStore`] (a rejection never replaces the last valid
//! configuration; it is logged and kept for introspection, and the
//! Services, EndpointSlices, Nodes and Namespaces read with it, when the
//! source could read them all, are served with the last valid
//! configuration meanwhile, as MetalLB serves them), then allocated with the
//! [`Reconciler`]; the assignments are remembered in the state file, the
//! services' health checks (re)started, and the result published as an
//! [`RunningState`], the pools' address counters beside it. The pipeline takes any source: it never looks behind
//! the stream of updates.
//!
//! In the running agent ([`Pipeline::run`]) allocation and the state file
//! run on a blocking thread, as the source's reading and parsing do, off
//! the thread that gossips and answers ARP and NDP: a large or hostile
//! configuration delays the next configuration, never an answer or a probe,
//! and the running one keeps being served meanwhile.
//!
//! A snapshot that would withdraw every address the agent announces, or
//! remove every pool (a file truncated by an editor or a `>` redirection
//! before it is written anew reads as empty; so does a careless `kubectl
//! delete`), is held for [`Pipeline::holding_withdrawals_for`] with a
//! warning, and applied only if no other update replaced it meanwhile. Any
//! other change applies at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlb_config::health::{Health, HealthCheck};
use meshlb_config::reconcile::{Holds, Outcomes};
use meshlb_config::service::{ClassFilter, ServiceKey};
use meshlb_config::{AddressSource, ConfigStore, Inventory, Offer, Reconciler, Rejected, ServiceOutcome};
use tokio::sync::watch;

use crate::health::HealthMonitors;
use crate::remembered::AssignmentsFile;
use crate::running::{Decisions, RunningState};
use crate::sources::{Snapshot, SourceStream, SourceUpdate};
use crate::status::{ConfigStatus, Rejection, StatusHub};
use crate::{AgentError, now};

/// What one update did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    /// A new configuration runs; these services changed outcome.
    Accepted {
        /// Generation now running.
        generation: u64,
        /// Services whose outcome changed (new, changed or gone: `None`).
        changed: BTreeMap<ServiceKey, Option<Arc<ServiceOutcome>>>,
        /// The update's configuration was refused, for these reasons: what
        /// runs is its cluster objects (new Services among them) with the
        /// previous configuration.
        refused: Option<Rejected>,
    },
    /// The update says what is already running.
    Unchanged,
    /// The update was refused; the previous configuration keeps running.
    Rejected(Rejected),
    /// The snapshot would withdraw everything; it is applied at `until`
    /// unless another update replaces it first. The previous configuration
    /// keeps running meanwhile.
    Held {
        /// What it would withdraw.
        reason: String,
        /// When it is applied.
        until: Instant,
    },
}

/// The default of [`Pipeline::holding_withdrawals_for`]: longer than an
/// editor takes between truncating a file and writing it anew.
pub const DEFAULT_HOLD_WITHDRAW_ALL: Duration = Duration::from_secs(5);

/// A held snapshot and since when.
#[derive(Debug, Clone)]
struct Held {
    snapshot: Snapshot,
    since: Instant,
}

/// The agent's configuration pipeline (plain, blocking work: see
/// [`Pipeline::run`] for where it runs).
#[derive(Debug)]
pub struct Pipeline {
    assignments_file: Option<AssignmentsFile>,
    hold_withdraw_all: Duration,
    store: ConfigStore<Arc<Inventory>>,
    /// The source's fingerprint of the running snapshot.
    fingerprint: Option<u64>,
    reconciler: Reconciler,
    outcomes: Arc<Outcomes>,
    held: Option<Held>,
    /// Updates taken from the source over the agent's life.
    updates: u64,
}

impl Pipeline {
    /// Reads remembered assignments from `state_path` (if given); serves
    /// the services of `classes`.
    pub fn new(state_path: Option<&Path>, classes: ClassFilter) -> Result<Pipeline, AgentError> {
        let assignments_file = state_path.map(AssignmentsFile::new);
        let remembered = match &assignments_file {
            Some(file) => file.load()?,
            None => BTreeMap::new(),
        };
        Ok(Pipeline {
            assignments_file,
            hold_withdraw_all: DEFAULT_HOLD_WITHDRAW_ALL,
            store: ConfigStore::default(),
            fingerprint: None,
            reconciler: Reconciler::new(classes, remembered),
            outcomes: Arc::default(),
            held: None,
            updates: 0,
        })
    }

    /// The same pipeline taking services' addresses from `source` (a
    /// cluster's agents read them from status; see [`AddressSource`]).
    pub fn taking_addresses_from(mut self, source: AddressSource) -> Pipeline {
        self.reconciler = self.reconciler.taking_addresses_from(source);
        self
    }

    /// The same pipeline keeping addresses no pool covers any more for at
    /// most `hold` (see [`meshlb_config::reconcile::Holds`]; zero lets them
    /// go at once, as MetalLB does).
    pub fn holding_orphaned_addresses_for(mut self, hold: Duration) -> Pipeline {
        self.reconciler = self.reconciler.with_holds(Holds::new(hold));
        self
    }

    /// The same pipeline holding a snapshot that withdraws everything for
    /// `hold` (default [`DEFAULT_HOLD_WITHDRAW_ALL`]).
    pub fn holding_withdrawals_for(mut self, hold: Duration) -> Pipeline {
        self.hold_withdraw_all = hold;
        self
    }

    /// The configuration store (running generation, last rejection).
    pub fn store(&self) -> &ConfigStore<Arc<Inventory>> {
        &self.store
    }

    /// Every served service's outcome.
    pub fn outcomes(&self) -> &Outcomes {
        &self.outcomes
    }

    /// The reconciler (allocator and counters).
    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// When a held snapshot is applied, if one is held.
    pub fn held_until(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.since + self.hold_withdraw_all)
    }

    /// Takes a source's update at `now` (blocking: allocation, the state
    /// file).
    pub fn offer(&mut self, update: SourceUpdate, now: Instant) -> Reload {
        self.updates += 1;
        // Any update replaces a held snapshot.
        self.held = None;
        match update {
            SourceUpdate::Snapshot(snapshot) => self.consider(snapshot, None, now),
            SourceUpdate::Rejected { rejected, cluster } => {
                let serving = match (cluster, self.store.active()) {
                    (Some(cluster), Some(running)) => {
                        let inventory = Arc::unwrap_or_clone(cluster.inventory).with_config(running.config.clone());
                        let snapshot = Snapshot {
                            inventory: Arc::new(inventory),
                            fingerprint: cluster.fingerprint,
                        };
                        Some(self.consider(snapshot, None, now))
                    }
                    _ => None,
                };
                // Recorded after the cluster objects are taken, so it is
                // the last word on the configuration.
                self.store.offer(Err(rejected.clone()));
                match serving {
                    Some(Reload::Accepted {
                        generation, changed, ..
                    }) => Reload::Accepted {
                        generation,
                        changed,
                        refused: Some(rejected),
                    },
                    // Under a refused configuration nothing is withdrawn
                    // wholesale: that waits for a configuration that reads.
                    Some(Reload::Held { .. }) => {
                        self.held = None;
                        Reload::Rejected(rejected)
                    }
                    _ => Reload::Rejected(rejected),
                }
            }
        }
    }

    /// Applies the held snapshot if its time has come by `now` and no
    /// update replaced it; otherwise says it is still held.
    pub fn hold_over(&mut self, now: Instant) -> Reload {
        match self.held.take() {
            Some(held) => self.consider(held.snapshot, Some(held.since), now),
            None => Reload::Unchanged,
        }
    }

    /// Offers `snapshot` at `now` (held since `held_since`, if it was).
    fn consider(&mut self, snapshot: Snapshot, held_since: Option<Instant>, now: Instant) -> Reload {
        if self.store.active() == Some(&snapshot.inventory) {
            self.fingerprint = Some(snapshot.fingerprint);
            self.store.offer(Ok(snapshot.inventory));
            return Reload::Unchanged;
        }
        // A snapshot that may withdraw everything is tried on a copy of the
        // reconciler, to be held; one that surely keeps some address (the
        // usual case) is applied in place, sparing a copy of every
        // service's state.
        let may_withdraw_everything = snapshot.inventory.config.pools.is_empty()
            || !self.reconciler.surely_keeps_some_address(&snapshot.inventory);
        let mut tried = None;
        // How long allocating takes, for the metrics.
        let timer = Instant::now();
        let outcomes = if may_withdraw_everything {
            let mut next = self.reconciler.clone();
            let outcomes = next.apply(&snapshot.inventory, now);
            tried = Some(next);
            outcomes
        } else {
            self.reconciler.apply(&snapshot.inventory, now)
        };
        if let Some(reason) = self.withdraws_everything(&snapshot.inventory, &outcomes) {
            let since = held_since.unwrap_or(now);
            let until = since + self.hold_withdraw_all;
            if now < until {
                self.held = Some(Held { snapshot, since });
                return Reload::Held { reason, until };
            }
            tracing::warn!(
                "no other configuration came within {:?}: {reason}",
                self.hold_withdraw_all
            );
        }
        let generation = match self.store.offer(Ok(Arc::clone(&snapshot.inventory))) {
            Offer::Accepted(generation) => generation,
            Offer::Unchanged(_) => return Reload::Unchanged,
            Offer::Rejected(rejected) => return Reload::Rejected(rejected),
        };
        self.fingerprint = Some(snapshot.fingerprint);
        if let Some(next) = tried {
            self.reconciler = next;
        }
        self.take_outcomes(outcomes, generation, timer)
    }

    /// When the next hold of addresses no pool covers ends, if one runs
    /// ([`meshlb_config::reconcile::Holds`]).
    pub fn holds_end(&self) -> Option<Instant> {
        self.reconciler.holds().next_end()
    }

    /// Serves the running configuration again at `now`: a hold of
    /// addresses no pool covers has ended.
    pub fn end_holds(&mut self, now: Instant) -> Reload {
        let Some(inventory) = self.store.active().cloned() else {
            return Reload::Unchanged;
        };
        let timer = Instant::now();
        let outcomes = self.reconciler.apply(&inventory, now);
        self.take_outcomes(outcomes, self.store.generation(), timer)
    }

    /// Records `outcomes` of `generation` (allocating them started at
    /// `timer`, for the metrics): the services that changed, the state
    /// file.
    fn take_outcomes(&mut self, outcomes: Outcomes, generation: u64, timer: Instant) -> Reload {
        let mut changed = BTreeMap::new();
        let mut allocated = false;
        for (key, outcome) in &outcomes {
            if self.outcomes.get(key) != Some(outcome) {
                allocated |= outcome.assignment().is_some_and(|a| {
                    self.outcomes
                        .get(key)
                        .and_then(|o| o.assignment())
                        .map(|b| &b.addresses)
                        != Some(&a.addresses)
                });
                changed.insert(key.clone(), Some(Arc::clone(outcome)));
            }
        }
        if allocated && self.reconciler.address_source() == AddressSource::Allocate {
            metrics::histogram!(crate::metrics::ALLOCATION_SECONDS).record(timer.elapsed().as_secs_f64());
        }
        for key in self.outcomes.keys().filter(|k| !outcomes.contains_key(*k)) {
            changed.insert(key.clone(), None);
        }
        self.outcomes = Arc::new(outcomes);
        if let Some(file) = &mut self.assignments_file
            && let Err(e) = file.save(&self.reconciler)
        {
            tracing::error!(error = %e, "cannot remember assignments; a restart may reassign addresses");
        }
        Reload::Accepted {
            generation,
            changed,
            refused: None,
        }
    }

    /// Why applying `inventory` (with `outcomes`) would withdraw everything,
    /// if it would: every pool removed, or no address left where some are
    /// announced now.
    fn withdraws_everything(&self, inventory: &Inventory, outcomes: &Outcomes) -> Option<String> {
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

    /// Takes `source`'s updates (and applies a held snapshot when due),
    /// logging what happens, until `shutdown` completes or the source
    /// stops. Each update is handled on a blocking thread; after every
    /// change the running configuration, outcomes and health go to
    /// `decisions` (and the Nodes read, as soon as they are read), the
    /// configuration's status and the pools' counters to the hub.
    pub async fn run(
        self,
        source: SourceStream,
        shutdown: impl Future<Output = ()>,
        hub: StatusHub,
        decisions: Decisions,
    ) -> Result<(), AgentError> {
        let SourceStream {
            mut updates,
            mut readability,
            guard: _source,
        } = source;
        // What the source can read goes to the hub as it changes.
        let forward = {
            let hub = hub.clone();
            tokio::spawn(async move {
                loop {
                    let now = Arc::clone(&readability.borrow_and_update());
                    hub.source()
                        .publish_when(|published| *published != *now, || (*now).clone());
                    if readability.changed().await.is_err() {
                        break;
                    }
                }
            })
        };
        let _forward = AbortOnDrop(forward);
        let (mut monitors, mut health) = HealthMonitors::new();
        let mut agent = self;
        tokio::pin!(shutdown);
        loop {
            let until = |at: Option<Instant>| async move {
                match at {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let hold_over = until(agent.held_until());
            let holds_end = until(agent.holds_end());
            tokio::select! {
                _ = &mut shutdown => break,
                update = updates.recv() => match update {
                    Some(mut update) => {
                        // Every update is a whole reading: when several
                        // queued up meanwhile, the newest says it all.
                        while let Ok(newer) = updates.try_recv() {
                            update = newer;
                        }
                        // The mesh needs the Nodes even while no
                        // configuration has been accepted yet.
                        if let Some(nodes) = update.nodes() {
                            decisions.publish_nodes(nodes);
                        }
                        agent = agent.off_thread(move |p| p.offer(update, now()), &mut monitors, &hub).await?
                    }
                    None => return Err(AgentError::SourceStopped),
                },
                () = hold_over => agent = agent.off_thread(|p| p.hold_over(now()), &mut monitors, &hub).await?,
                () = holds_end => agent = agent.off_thread(|p| p.end_holds(now()), &mut monitors, &hub).await?,
                Ok(()) = health.changed() => {}
            }
            agent.publish(&hub, &decisions, &health);
        }
        tracing::info!("shutting down");
        Ok(())
    }

    /// `step` on a blocking thread, then the log and, for a new
    /// configuration, the health checks.
    async fn off_thread(
        mut self,
        step: impl FnOnce(&mut Pipeline) -> Reload + Send + 'static,
        monitors: &mut HealthMonitors,
        hub: &StatusHub,
    ) -> Result<Pipeline, AgentError> {
        let (agent, reload) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let reload = step(&mut self);
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "update handled");
            (self, reload)
        })
        .await?;
        log_reload(&reload);
        if let (Reload::Accepted { .. }, Some(inventory)) = (&reload, agent.store.active()) {
            for warning in &inventory.config.warnings {
                tracing::warn!("{warning}");
            }
            monitors.update(health_checks(inventory, &agent.outcomes));
        }
        agent.publish_config(hub, &reload);
        Ok(agent)
    }

    /// What the configuration store holds, after `reload`.
    fn publish_config(&self, hub: &StatusHub, reload: &Reload) {
        let now = std::time::SystemTime::now();
        hub.config().update(|status| {
            *status = ConfigStatus {
                generation: self.store.generation(),
                fingerprint: self.fingerprint,
                accepted_at: match reload {
                    Reload::Accepted { .. } => Some(now),
                    _ => status.accepted_at,
                },
                last_rejection: match (reload, self.store.last_rejection()) {
                    (Reload::Rejected(_) | Reload::Accepted { refused: Some(_), .. }, Some(rejected)) => {
                        Some(Rejection {
                            at: now,
                            errors: rejected.errors.clone(),
                        })
                    }
                    (_, Some(_)) => status.last_rejection.clone(),
                    (_, None) => None,
                },
                rejections: self.store.rejections(),
                updates: self.updates,
                held: match reload {
                    Reload::Held { reason, .. } => Some(reason.clone()),
                    _ => None,
                },
                warnings: self
                    .store
                    .active()
                    .map(|inventory| inventory.config.warnings.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            };
        });
    }

    /// What the pipeline holds now as a running state, with `health`
    /// (`None` before a configuration was accepted).
    pub fn running_state(&self, health: &BTreeMap<ServiceKey, Health>) -> Option<RunningState> {
        Some(RunningState {
            generation: self.store.generation(),
            inventory: Arc::clone(self.store.active()?),
            outcomes: Arc::clone(&self.outcomes),
            health: health.clone(),
        })
    }

    /// The running configuration, outcomes and health; the pools' counters
    /// first, so whoever follows the running state reads them as new.
    fn publish(&self, hub: &StatusHub, decisions: &Decisions, health: &watch::Receiver<BTreeMap<ServiceKey, Health>>) {
        let Some(running) = self.running_state(&health.borrow()) else {
            return;
        };
        let pools = self.reconciler.allocator().counters();
        hub.pools().publish_when(|current| *current != pools, || pools.clone());
        decisions.publish_running(running);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Health checks of the services that hold addresses.
fn health_checks(inventory: &Inventory, outcomes: &Outcomes) -> BTreeMap<ServiceKey, HealthCheck> {
    let mut checks = BTreeMap::new();
    for (key, service) in &inventory.services {
        if outcomes.get(key).and_then(|o| o.assignment()).is_none() {
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
        Reload::Accepted {
            generation,
            changed,
            refused,
        } => {
            match refused {
                Some(rejected) => {
                    log_rejected(rejected);
                    tracing::info!(
                        generation,
                        changed = changed.len(),
                        "services changed; served with the previous configuration"
                    );
                }
                None => tracing::info!(generation, changed = changed.len(), "configuration accepted"),
            }
            for (key, outcome) in changed {
                match outcome.as_deref() {
                    Some(ServiceOutcome::Assigned(a)) => tracing::info!(service = %key, "assigned {a}"),
                    // Normal in a cluster until the allocator writes status.
                    Some(ServiceOutcome::Pending) => tracing::debug!(service = %key, "pending"),
                    Some(other) => tracing::warn!(service = %key, "{other}"),
                    None => tracing::info!(service = %key, "released"),
                }
            }
        }
        Reload::Unchanged => tracing::debug!("configuration unchanged"),
        Reload::Rejected(rejected) => log_rejected(rejected),
        Reload::Held { reason, until } => tracing::warn!(
            "configuration held: {reason}; the previous one keeps running, and this one is applied only if \
             no other change comes within {:.1} s",
            until.saturating_duration_since(Instant::now()).as_secs_f64()
        ),
    }
}

fn log_rejected(rejected: &Rejected) {
    tracing::error!(
        errors = rejected.errors.len(),
        "configuration rejected; the previous one keeps running"
    );
    for e in &rejected.errors {
        tracing::error!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SourceGuard;

    fn snapshot(yaml: &str, fingerprint: u64) -> SourceUpdate {
        let objects = meshlb_config::parse_documents(yaml, "memory").unwrap().objects;
        SourceUpdate::Snapshot(Snapshot {
            inventory: Arc::new(Inventory::build(&objects).unwrap()),
            fingerprint,
        })
    }

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: vips}\nspec: {addresses: [192.0.2.0/30]}\n";
    const WEB: &str =
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";

    /// The pipeline runs whatever stream a source gives it: snapshots are
    /// allocated and published in order, a rejection keeps the running
    /// snapshot and is kept for introspection, and the source stopping
    /// stops the pipeline with a reason.
    #[tokio::test]
    async fn the_pipeline_takes_any_source() {
        let (tx, updates) = tokio::sync::mpsc::channel(4);
        let source = SourceStream::new(updates, SourceGuard::new(tokio::spawn(std::future::pending())));
        let decisions = Decisions::default();
        let hub = StatusHub::mirroring(&decisions);
        let mut state = decisions.running();
        let pipeline = Pipeline::new(None, ClassFilter::default()).unwrap();
        let run = tokio::spawn(pipeline.run(source, std::future::pending(), hub.clone(), decisions));

        tx.send(snapshot(POOL, 1)).await.unwrap();
        state.wait_for(|s| s.generation == 1).await.unwrap();
        tx.send(snapshot(&format!("{POOL}{WEB}"), 2)).await.unwrap();
        let running = state.wait_for(|s| s.generation == 2).await.unwrap().clone();
        let web = &running.outcomes[&ServiceKey::new("default", "web")];
        assert_eq!(
            web.assignment().unwrap().addresses,
            ["192.0.2.0".parse::<std::net::IpAddr>().unwrap()]
        );

        let rejected = Rejected {
            errors: vec![meshlb_config::Error::Parse {
                location: meshlb_config::SourceLocation {
                    file: "Service default/db".into(),
                    line: 0,
                },
                object: None,
                message: "spec.ports: required".into(),
            }],
        };
        tx.send(SourceUpdate::unreadable(rejected)).await.unwrap();
        drop(tx);
        let stopped = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(stopped, Err(AgentError::SourceStopped)), "{stopped:?}");
        assert_eq!(state.borrow().generation, 2, "a rejection keeps the running snapshot");
        let config = hub.config().get();
        assert_eq!(
            (config.generation, config.fingerprint, config.rejections),
            (2, Some(2), 1)
        );
        let errors = config
            .last_rejection
            .as_ref()
            .map(|r| r.errors.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("spec.ports: required"), "{errors:?}");
    }

    /// The Nodes a reading holds are published even when its configuration
    /// is refused and none has run yet (the mesh bootstraps from them);
    /// an unreadable input leaves the last Nodes read in place.
    #[tokio::test]
    async fn the_nodes_are_published_before_any_configuration_runs() {
        let (tx, updates) = tokio::sync::mpsc::channel(4);
        let source = SourceStream::new(updates, SourceGuard::new(tokio::spawn(std::future::pending())));
        let decisions = Decisions::default();
        let (mut running, mut nodes) = (decisions.running(), decisions.nodes());
        let pipeline = Pipeline::new(None, ClassFilter::default()).unwrap();
        let run = tokio::spawn(pipeline.run(source, std::future::pending(), StatusHub::default(), decisions));

        let overlapping = POOL.replace("name: vips", "name: more");
        let node = "---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
        let objects = meshlb_config::parse_documents(&format!("{POOL}---\n{overlapping}{node}"), "memory")
            .unwrap()
            .objects;
        let refused = SourceUpdate::of_reading(&objects, Vec::new(), 1);
        let SourceUpdate::Rejected {
            rejected,
            cluster: Some(_),
        } = refused.clone()
        else {
            panic!("overlapping pools are refused, the Node read: {refused:?}");
        };
        tx.send(refused).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), nodes.wait_for(|n| !n.is_empty()))
            .await
            .expect("the Nodes are published")
            .unwrap()
            .clone();
        assert_eq!(read.keys().collect::<Vec<_>>(), ["n1"]);
        tx.send(SourceUpdate::unreadable(rejected)).await.unwrap();
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap();
        assert_eq!(running.borrow_and_update().generation, 0, "no configuration runs");
        assert_eq!(nodes.borrow_and_update().keys().collect::<Vec<_>>(), ["n1"]);
    }

    /// An update that gives a service addresses is timed in the allocation
    /// histogram; one that gives none is not, nor is an agent that takes
    /// addresses from status (the cluster allocator times its own).
    #[test]
    fn allocations_are_timed() {
        let reading = |yaml: &str, fingerprint| {
            let objects = meshlb_config::parse_documents(yaml, "memory").unwrap().objects;
            SourceUpdate::of_reading(&objects, Vec::new(), fingerprint)
        };
        let timed = |pipeline: &mut Pipeline, updates: &[(String, u64)]| {
            let text = crate::metrics::tests::recorded(|| {
                for (yaml, fingerprint) in updates {
                    pipeline.offer(reading(yaml, *fingerprint), Instant::now());
                }
            });
            text.lines()
                .find_map(|l| l.strip_prefix("meshlb_allocation_seconds_count "))
                .map_or(0, |count| count.parse::<u64>().unwrap())
        };
        let db = WEB.replace("name: web", "name: db");
        let namespace = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n";
        let updates = [
            (format!("{POOL}{WEB}"), 1),
            // Nothing new to allocate.
            (format!("{POOL}{WEB}{namespace}"), 2),
            (format!("{POOL}{WEB}{namespace}{db}"), 3),
        ];
        let mut allocating = Pipeline::new(None, ClassFilter::default()).unwrap();
        assert_eq!(timed(&mut allocating, &updates), 2);
        let mut from_status = Pipeline::new(None, ClassFilter::default())
            .unwrap()
            .taking_addresses_from(AddressSource::Status);
        assert_eq!(timed(&mut from_status, &updates), 0);
    }

    /// While the configuration is refused, the running one serves the
    /// reading's Services: a new Service gets an address from it, a
    /// deleted one releases its own, and the refusal stays on record
    /// until a configuration that reads arrives. A file that does not
    /// parse serves nothing of its reading.
    #[test]
    fn a_refused_configuration_serves_new_services_with_the_last_good_one() {
        let reading = |yaml: &str, fingerprint| {
            let objects = meshlb_config::parse_documents(yaml, "memory").unwrap().objects;
            SourceUpdate::of_reading(&objects, Vec::new(), fingerprint)
        };
        let address = |pipeline: &Pipeline, name: &str| {
            pipeline
                .outcomes()
                .get(&ServiceKey::new("default", name))
                .and_then(|o| o.assignment())
                .map(|a| a.addresses.clone())
        };
        let mut pipeline = Pipeline::new(None, ClassFilter::default()).unwrap();
        assert!(matches!(
            pipeline.offer(reading(&format!("{POOL}{WEB}"), 1), Instant::now()),
            Reload::Accepted { refused: None, .. }
        ));
        let web = address(&pipeline, "web");
        assert!(web.is_some());

        // A second pool overlapping the first, and a new Service.
        let overlapping = "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: more}\nspec: {addresses: [192.0.2.0/29]}\n";
        let db = WEB.replace("name: web", "name: db");
        let update = reading(&format!("{POOL}{overlapping}{WEB}{db}"), 2);
        assert!(
            matches!(&update, SourceUpdate::Rejected { cluster: Some(_), .. }),
            "{update:?}"
        );
        let Reload::Accepted {
            changed,
            refused: Some(refused),
            ..
        } = pipeline.offer(update, Instant::now())
        else {
            panic!("the new Service is served");
        };
        assert!(
            refused.errors.iter().any(|e| e.to_string().contains("more")),
            "{refused:?}"
        );
        assert_eq!(
            changed.keys().map(ToString::to_string).collect::<Vec<_>>(),
            ["default/db"]
        );
        assert_eq!(address(&pipeline, "web"), web, "nothing served moves");
        assert!(address(&pipeline, "db").is_some_and(|a| a != web.clone().unwrap_or_default()));
        let running = pipeline.store().active().unwrap();
        assert_eq!(
            running.config.pools.keys().collect::<Vec<_>>(),
            ["vips"],
            "the last good configuration runs"
        );
        assert!(pipeline.store().last_rejection().is_some());

        // Still refused, and db deleted: it releases its address.
        let Reload::Accepted { changed, .. } =
            pipeline.offer(reading(&format!("{POOL}{overlapping}{WEB}"), 3), Instant::now())
        else {
            panic!("the deleted Service is released");
        };
        assert_eq!(changed.get(&ServiceKey::new("default", "db")), Some(&None));
        // The same again: nothing to serve, still refused.
        assert!(matches!(
            pipeline.offer(reading(&format!("{POOL}{overlapping}{WEB}"), 3), Instant::now()),
            Reload::Rejected(_)
        ));
        // Unparseable: nothing of it is served.
        assert!(matches!(
            SourceUpdate::unreadable(refused.clone()),
            SourceUpdate::Rejected { cluster: None, .. }
        ));
        // A configuration that reads clears the refusal.
        let Reload::Accepted {
            changed, refused: None, ..
        } = pipeline.offer(reading(&format!("{POOL}{WEB}"), 4), Instant::now())
        else {
            panic!("a configuration that reads is accepted");
        };
        assert!(changed.is_empty(), "{changed:?}");
        assert!(pipeline.store().last_rejection().is_none());
    }
}
