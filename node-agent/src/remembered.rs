//! What the agent remembers across restarts, in its state directory.
//!
//! Assignments, in standalone mode: in a cluster, `Service.status` records
//! which addresses a service holds, and the agent re-admits them on start.
//! Standalone files carry no status, so the agent writes its assignments
//! to a state file (atomically: a temporary file renamed over the old one)
//! whenever they change ([`AssignmentsFile`]: a reload that changes no
//! assignment, such as a withdrawal, writes nothing) and re-admits them
//! before allocating anything new. A missing file means a first start.
//!
//! A graceful restart's record ([`RestartRecord`]): an agent stopping
//! while its BGP peers help it restart (RFC 4724) leaves the local routes
//! of the addresses it announces, so the node goes on delivering the traffic the
//! routers still send it, and writes them down with the time; its
//! successor takes the record (adopting the addresses as its own, and
//! announcing a restart if it comes within the restart time).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshlb_config::Reconciler;
use meshlb_config::service::ServiceKey;
use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Default, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    assignments: Vec<Entry>,
}

#[derive(Debug, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    namespace: Arc<str>,
    name: Arc<str>,
    pool: Arc<str>,
    addresses: Vec<IpAddr>,
}

/// The assignments file: writes the allocator's assignments, and the
/// addresses services hold though no pool covers them (held again on
/// restart: a hold's time starts anew then), only when they differ from
/// what it last wrote.
#[derive(Debug)]
pub struct AssignmentsFile {
    path: PathBuf,
    /// A hash of what was last written; none before the first write (or
    /// after a failed one, so the next reload tries again).
    written: Option<u64>,
}

impl AssignmentsFile {
    /// The file at `path`; nothing is read or written yet.
    pub fn new(path: &Path) -> AssignmentsFile {
        AssignmentsFile {
            path: path.to_path_buf(),
            written: None,
        }
    }

    /// Reads the assignments remembered in the file; a missing file gives
    /// none.
    pub fn load(&self) -> Result<BTreeMap<ServiceKey, Vec<IpAddr>>, AgentError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => {
                return Err(AgentError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let state: StateFile = serde_yaml_ng::from_str(&text).map_err(|source| AgentError::State {
            path: self.path.clone(),
            source,
        })?;
        Ok(state
            .assignments
            .into_iter()
            .map(|e| (ServiceKey::new(e.namespace, e.name), e.addresses))
            .collect())
    }

    /// Writes what `reconciler` holds if it differs from the last write;
    /// whether it wrote.
    pub fn save(&mut self, reconciler: &Reconciler) -> Result<bool, AgentError> {
        let state = state_of(reconciler);
        let mut hasher = DefaultHasher::new();
        state.hash(&mut hasher);
        let hash = hasher.finish();
        if self.written == Some(hash) {
            return Ok(false);
        }
        self.written = None;
        let text = serde_yaml_ng::to_string(&state).map_err(|source| AgentError::State {
            path: self.path.clone(),
            source,
        })?;
        write_atomically(
            &self.path,
            "# Written by meshlb-agent: addresses held by services, re-admitted on restart.\n",
            &text,
        )?;
        self.written = Some(hash);
        Ok(true)
    }
}

/// What the assignments file holds for `reconciler`.
fn state_of(reconciler: &Reconciler) -> StateFile {
    let held = reconciler.holds().held().map(|(k, addresses)| Entry {
        namespace: k.namespace.clone(),
        name: k.name.clone(),
        // No pool covers them (see meshlb_config::reconcile::Holds).
        pool: "".into(),
        addresses: addresses.to_vec(),
    });
    StateFile {
        assignments: reconciler
            .allocator()
            .assignments()
            .map(|(k, a)| Entry {
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                pool: a.pool.clone(),
                addresses: a.addresses.clone(),
            })
            .chain(held)
            .collect(),
    }
}

/// Writes `header` and `text` to `path` through a temporary file renamed
/// over it, so a reader never sees half of it.
fn write_atomically(path: &Path, header: &str, text: &str) -> Result<(), AgentError> {
    let io = |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(header.as_bytes())
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// The file of a graceful restart's record, in the state directory.
pub const RESTART_RECORD_FILE: &str = "bgp-restart.yaml";

/// What an agent stopping for a graceful restart leaves its successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartRecord {
    /// When it stopped, seconds since the Unix epoch.
    pub stopped_at: u64,
    /// The addresses left delivered.
    pub addresses: BTreeSet<IpAddr>,
}

impl RestartRecord {
    /// A record of `addresses` left now.
    pub fn now(addresses: BTreeSet<IpAddr>) -> RestartRecord {
        RestartRecord {
            stopped_at: unix_seconds(SystemTime::now()),
            addresses,
        }
    }

    /// Whether a start at `now` is within `restart_time` of the stop: the
    /// peers still hold the routes, so the start is a restart.
    pub fn restarts_at(&self, now: SystemTime, restart_time: Duration) -> bool {
        unix_seconds(now).saturating_sub(self.stopped_at) < restart_time.as_secs()
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes `record` to `path`.
pub fn save_restart(path: &Path, record: &RestartRecord) -> Result<(), AgentError> {
    let text = serde_yaml_ng::to_string(record).map_err(|source| AgentError::State {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomically(
        path,
        "# Written by meshlb-agent stopping for a BGP graceful restart; taken by the next start.\n",
        &text,
    )
}

/// Takes the record at `path`: reads and removes it. None when there is
/// none; an unreadable one is an error (and removed, so one bad file does
/// not stop every start).
pub fn take_restart(path: &Path) -> Result<Option<RestartRecord>, AgentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AgentError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let removed = std::fs::remove_file(path).map_err(|source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    });
    let record = serde_yaml_ng::from_str(&text).map_err(|source| AgentError::State {
        path: path.to_path_buf(),
        source,
    })?;
    removed?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses held though their pool is gone are remembered with the
    /// assigned ones, so a restart holds them again; the file is written
    /// only when what it holds changes.
    #[test]
    fn held_addresses_are_remembered_across_a_restart() {
        let inventory = |text: &str| {
            meshlb_config::Inventory::build(&meshlb_config::parse_documents(text, "t.yaml").unwrap().objects).unwrap()
        };
        let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n\
                    spec: {addresses: [192.0.2.0/30]}\n---\n";
        let services = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n";
        let mut reconciler = Reconciler::new(Default::default(), BTreeMap::new());
        let now = std::time::Instant::now();
        reconciler.apply(&inventory(&format!("{pool}{services}")), now);
        reconciler.apply(&inventory(services), now);
        assert_eq!(reconciler.allocator().assignments().count(), 0, "the pool is gone");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assignments.yaml");
        let mut file = AssignmentsFile::new(&path);
        assert!(file.save(&reconciler).unwrap());
        let remembered = file.load().unwrap();
        assert_eq!(
            remembered.get(&ServiceKey::new("default", "a")),
            Some(&vec!["192.0.2.0".parse::<IpAddr>().unwrap()])
        );

        std::fs::remove_file(&path).unwrap();
        assert!(!file.save(&reconciler).unwrap(), "nothing changed");
        assert!(!path.exists(), "nothing written");
        reconciler.apply(&inventory(&format!("{pool}{services}")), now);
        assert!(file.save(&reconciler).unwrap(), "the pool is back: assigned again");
        assert_eq!(file.load().unwrap(), remembered);
    }

    #[test]
    fn a_restart_record_is_taken_once_and_dates_the_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESTART_RECORD_FILE);
        assert_eq!(take_restart(&path).unwrap(), None, "none: a first start");

        let addresses: BTreeSet<IpAddr> = ["203.0.113.20".parse().unwrap(), "2001:db8:100::1".parse().unwrap()].into();
        let record = RestartRecord::now(addresses);
        save_restart(&path, &record).unwrap();
        assert_eq!(take_restart(&path).unwrap(), Some(record.clone()));
        assert_eq!(take_restart(&path).unwrap(), None, "taken");

        let stop = UNIX_EPOCH + Duration::from_secs(record.stopped_at);
        let restart_time = Duration::from_secs(120);
        assert!(record.restarts_at(stop + Duration::from_secs(30), restart_time));
        assert!(!record.restarts_at(stop + Duration::from_secs(120), restart_time));

        std::fs::write(&path, "stopped_at: [").unwrap();
        assert!(matches!(take_restart(&path), Err(AgentError::State { .. })));
        assert!(!path.exists(), "a bad record does not stop the next start too");
    }
}
