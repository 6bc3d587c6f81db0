//! Configuration sources: the seam between where configuration comes from
//! and the pipeline that runs it ([`crate::pipeline`]).
//!
//! A source turns what it reads (a directory of YAML files, or the
//! Kubernetes API) into a stream of [`SourceUpdate`]s, in order:
//! either a consistent [`Snapshot`] of everything it holds, parsed and
//! built into an [`Inventory`] (so every object and reference in it was
//! read at one moment), or a report of why its current input cannot be
//! used ([`Rejected`]: which file or object, which field, why; with the
//! cluster's objects of the reading when only its configuration is at
//! fault, so new Services are served meanwhile). A source
//! sends an update only when its input changed; what it does to tell is its
//! own business (the file source compares a hash of the bytes, so an
//! unchanged directory costs no parsing).
//!
//! The pipeline never looks behind the stream: it offers each update (the
//! newest, when several queued up: each is a whole reading) to
//! the configuration store (a rejection never replaces the running
//! snapshot), allocates, and publishes the result. Reading and parsing run
//! on blocking threads inside the source, off the thread that gossips and
//! answers.
//!
//! | source | what |
//! |---|---|
//! | [`files`] | a directory of YAML files, watched with inotify and re-read every resync |
//! | [`kubernetes`] | the API server: reflectors on Services, EndpointSlices, Nodes, Namespaces and the metallb.io objects |

pub mod files;
pub mod kubernetes;

use std::collections::BTreeMap;
use std::sync::Arc;

use meshlb_config::service::Node;
use meshlb_config::{Error, Inventory, Located, Object, Rejected};
use tokio::sync::mpsc;

/// One consistent reading of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Everything the source holds, validated as a whole.
    pub inventory: Arc<Inventory>,
    /// The source's fingerprint of its input (equal inputs, equal
    /// fingerprints): shown in status, never compared across sources.
    pub fingerprint: u64,
}

/// What a source tells the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUpdate {
    /// The input changed and reads as this.
    Snapshot(Snapshot),
    /// The input changed and its configuration cannot be used: the running
    /// configuration stays.
    Rejected {
        /// Why.
        rejected: Rejected,
        /// The cluster's objects of the same reading (Services,
        /// EndpointSlices, Nodes, Namespaces; no configuration), when all
        /// of them could be read: served with the running configuration
        /// meanwhile, as MetalLB serves new Services with its last good
        /// configuration.
        cluster: Option<Snapshot>,
    },
}

impl SourceUpdate {
    /// The update for a reading of `objects` in which the configuration
    /// objects `unreadable` could not be read (their errors reject it).
    pub fn of_reading(objects: &[Located<Object>], unreadable: Vec<Error>, fingerprint: u64) -> SourceUpdate {
        let built = if unreadable.is_empty() {
            Inventory::build(objects)
        } else {
            Err(Rejected { errors: unreadable })
        };
        let snapshot = |inventory| Snapshot {
            inventory: Arc::new(inventory),
            fingerprint,
        };
        match built {
            Ok(inventory) => SourceUpdate::Snapshot(snapshot(inventory)),
            Err(rejected) => SourceUpdate::Rejected {
                rejected,
                cluster: Inventory::build_cluster(objects).ok().map(snapshot),
            },
        }
    }

    /// The Node objects this update read, if it read the cluster's
    /// objects, whether or not its configuration can be used.
    pub fn nodes(&self) -> Option<&BTreeMap<String, Node>> {
        match self {
            SourceUpdate::Snapshot(snapshot)
            | SourceUpdate::Rejected {
                cluster: Some(snapshot),
                ..
            } => Some(&snapshot.inventory.nodes),
            SourceUpdate::Rejected { cluster: None, .. } => None,
        }
    }

    /// An input that cannot be read at all.
    pub fn unreadable(rejected: Rejected) -> SourceUpdate {
        SourceUpdate::Rejected {
            rejected,
            cluster: None,
        }
    }
}

/// Which kinds a source reads, and whether it can read each: `None`, or
/// why not. A kind it cannot read keeps the last copy read (none, if it
/// never could); the others are served all the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readability {
    /// Every kind, by name.
    pub kinds: BTreeMap<String, Option<String>>,
}

impl Readability {
    /// The kinds that cannot be read, and why.
    pub fn unreadable(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kinds
            .iter()
            .filter_map(|(kind, why)| Some((kind.as_str(), why.as_deref()?)))
    }
}

/// A running source: its updates, in order, and whatever must stay alive
/// for it to keep producing them (a watcher, a task).
#[derive(Debug)]
pub struct SourceStream {
    /// The updates; closed when the source stops.
    pub updates: mpsc::Receiver<SourceUpdate>,
    /// Which kinds it can read, as that changes.
    pub readability: tokio::sync::watch::Receiver<Arc<Readability>>,
    /// Stops the source when dropped.
    pub guard: SourceGuard,
}

impl SourceStream {
    /// A source's stream of `updates` that reads every kind it reads (or
    /// says nothing of its kinds), kept running by `guard`.
    pub fn new(updates: mpsc::Receiver<SourceUpdate>, guard: SourceGuard) -> SourceStream {
        SourceStream {
            updates,
            readability: tokio::sync::watch::Sender::new(Arc::default()).subscribe(),
            guard,
        }
    }
}

/// Keeps a source running while held; stops its task when dropped.
#[derive(Debug)]
pub struct SourceGuard {
    task: tokio::task::JoinHandle<()>,
}

impl SourceGuard {
    /// A guard over the source's task.
    pub fn new(task: tokio::task::JoinHandle<()>) -> SourceGuard {
        SourceGuard { task }
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
