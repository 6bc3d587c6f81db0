//! The agent's place in the gossip mesh: starts the `meshlb-gossip` driver,
//! publishes this node's record, and reports membership.
//!
//! What the mesh knows goes to the [status hub](crate::status): its
//! status snapshots (members and records, the fence, counters) and its
//! membership events; the state directory's files are written from there
//! ([`crate::status_files`]).
//!
//! The cluster the fence measures against is the one this node is told
//! of ([`MeshOptions::expected_members`]): until it has heard from a
//! majority of it, the agent claims nothing and says so. In a cluster the
//! Node objects can tell it instead, and name the seeds ([`follow_nodes`]):
//! every node's InternalIP at this node's gossip port, kept up to date as
//! Nodes come and go; and this node's record carries its Node's labels.
//!
//! Key rotation without downtime: the key file is re-read every
//! [`KEY_FILE_POLL`] (a Kubernetes Secret volume changes by swapping a
//! symlink, so the content is compared, not the modification time). A new
//! keyring replaces the old one at once; a file that does not parse is
//! logged and the running keyring stays. Rotate in three steps, each on
//! every node before the next: add the new key as a secondary line, make it
//! the first line, remove the old one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::ArbiterHandle;
use meshlb_gossip::driver::{self, Command, DriverConfig, MeshHandle, MeshStatus};
use meshlb_gossip::mesh::MeshEvent;
use meshlb_gossip::ownership::Fence;
use meshlb_gossip::profile::Profile;
use meshlb_gossip::secure::{ClusterKey, Keyring};

use meshlb_config::service::Node;

use crate::status::{StatusHub, TimedMeshEvent};
use crate::{AgentError, KeyFileProblem};

/// How this agent joins the mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Node name.
    pub node: String,
    /// Gossip address to bind.
    pub bind: SocketAddr,
    /// Seeds.
    pub seeds: Vec<SocketAddr>,
    /// File of cluster keys, `ID:HEX` one per line, the first the primary.
    pub key_file: PathBuf,
    /// The Secret `key_file` is kept to, in a cluster
    /// ([`crate::sources::kubernetes::cluster_keys`]).
    pub key_secret: Option<String>,
    /// Cluster label.
    pub label: String,
    /// Timing profile.
    pub profile: Profile,
    /// Node labels, published in the record.
    pub labels: BTreeMap<String, String>,
    /// How many members the cluster has, this node included: the quorum
    /// fence's expected size. `None`: the cluster's Node objects say (and
    /// name the seeds, see [`follow_nodes`]); until they do, this node
    /// claims nothing.
    pub expected_members: Option<usize>,
}

/// Reads a keyring file: see [`parse_keyring`].
pub fn read_keyring(path: &Path) -> Result<(Keyring, String), AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((parse_keyring(path, &text)?, text))
}

/// Parses the text of keyring file `path`: `ID:HEX` per line (blank lines
/// and `#` comments ignored), the first key the primary.
pub fn parse_keyring(path: &Path, text: &str) -> Result<Keyring, AgentError> {
    let bad = |problem| AgentError::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let keys = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| ClusterKey::parse(l).map_err(|source| bad(KeyFileProblem::Line { line: n + 1, source })))
        .collect::<Result<Vec<_>, _>>()?;
    let (primary, others) = keys.split_first().ok_or_else(|| bad(KeyFileProblem::Empty))?;
    Keyring::new(primary, others).map_err(|e| bad(KeyFileProblem::Keyring(e)))
}

/// How often the key file is re-read.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

/// A running mesh membership.
#[derive(Debug)]
pub struct AgentMesh {
    commands: tokio::sync::mpsc::Sender<Command>,
    announce: tokio::sync::watch::Receiver<std::collections::BTreeSet<std::net::IpAddr>>,
    status: tokio::sync::watch::Receiver<MeshStatus>,
    reporter: tokio::task::JoinHandle<()>,
    key_watcher: tokio::task::JoinHandle<()>,
}

impl AgentMesh {
    /// Joins the mesh, its driver running on `answering`'s thread (so
    /// probes are answered and failures detected whatever the control
    /// thread is doing), and starts reporting to `hub`.
    pub async fn start(
        options: MeshOptions,
        hub: StatusHub,
        answering: &ArbiterHandle,
    ) -> Result<AgentMesh, AgentError> {
        let (keyring, key_text) = read_keyring(&options.key_file)?;
        tracing::info!(file = %options.key_file.display(), keys = ?keyring, "cluster keys loaded");
        let config = DriverConfig {
            node: options.node.clone(),
            bind: options.bind,
            seeds: options.seeds.clone(),
            keyring,
            label: options.label.clone().into_bytes(),
            profile: options.profile.clone(),
            fence: match options.expected_members {
                Some(members) => Fence::default().expecting(members),
                None => Fence::default().size_not_known(),
            },
            max_age_ms: 30_000,
            labels: options.labels.clone(),
        };
        let (started, handle) = tokio::sync::oneshot::channel();
        let spawned = answering.spawn(async move {
            let _ = started.send(driver::start(config).await);
        });
        if !spawned {
            return Err(AgentError::Stopped("the answering thread"));
        }
        let handle = handle.await.map_err(|_| AgentError::Stopped("the gossip driver"))??;
        tracing::info!(node = %options.node, bind = %options.bind, profile = options.profile.name, "joined the gossip mesh");
        let commands = handle.commands.clone();
        let announce = handle.announce.clone();
        let status = handle.status.clone();
        let reporter = tokio::spawn(report(handle, hub));
        let key_watcher = tokio::spawn(watch_key_file(options.key_file.clone(), key_text, commands.clone()));
        Ok(AgentMesh {
            commands,
            announce,
            status,
            reporter,
            key_watcher,
        })
    }

    /// Commands to the mesh (records, services).
    pub fn commands(&self) -> tokio::sync::mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// The addresses the mesh decided this node announces.
    pub fn owned_addresses(&self) -> tokio::sync::watch::Receiver<std::collections::BTreeSet<std::net::IpAddr>> {
        self.announce.clone()
    }

    /// The mesh's status: members and their records.
    pub fn status(&self) -> tokio::sync::watch::Receiver<MeshStatus> {
        self.status.clone()
    }

    /// Hands over and leaves (bounded: a stuck mesh does not hold up exit).
    pub async fn leave(self) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Leave(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), finished).await;
        }
        self.reporter.abort();
        self.key_watcher.abort();
        tracing::info!("left the gossip mesh");
    }
}

/// Re-reads the key file every [`KEY_FILE_POLL`] and hands a changed,
/// valid keyring to the mesh. `seen` is the text the running keyring came
/// from; a bad file is reported once per change and changes nothing.
async fn watch_key_file(path: PathBuf, mut seen: String, commands: tokio::sync::mpsc::Sender<Command>) {
    let mut tick = tokio::time::interval(KEY_FILE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(file = %path.display(), "key file unreadable, keeping the running keys: {e}");
                continue;
            }
        };
        if text == seen {
            continue;
        }
        seen = text;
        match parse_keyring(&path, &seen) {
            Ok(keyring) => {
                tracing::info!(file = %path.display(), keys = ?keyring, "cluster keys changed");
                if commands.send(Command::SetKeyring(keyring)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!("{e}; keeping the running keys"),
        }
    }
}

/// Passes the mesh's status and events on to the hub (and events to the log).
async fn report(mut handle: MeshHandle, hub: StatusHub) {
    loop {
        tokio::select! {
            event = handle.events.recv() => {
                let Some(event) = event else { return };
                // Record changes are many and in the status already.
                if matches!(event, MeshEvent::RecordChanged(_)) {
                    continue;
                }
                tracing::info!(node = event.member().unwrap_or_default(), "mesh: {}", event.kind());
                // Nobody listening is fine: the event is in the log.
                let _ = hub.mesh_events().send(TimedMeshEvent {
                    at: SystemTime::now(),
                    event,
                });
            }
            changed = handle.status.changed() => {
                if changed.is_err() {
                    return;
                }
                let status = handle.status.borrow_and_update().clone();
                hub.mesh().publish(status);
            }
        }
    }
}

/// The seeds and cluster size `nodes` give a node named `own` gossiping at
/// `bind`: every other Node's first InternalIP of the bind address's
/// family, at the same port; every Node (this one counted even if its Node
/// is missing).
pub fn seeds_from_nodes(nodes: &BTreeMap<String, Node>, own: &str, bind: SocketAddr) -> (Vec<SocketAddr>, usize) {
    let seeds = nodes
        .iter()
        .filter(|(name, _)| name.as_str() != own)
        .filter_map(|(_, node)| node.internal_ips().find(|ip| ip.is_ipv4() == bind.is_ipv4()))
        .map(|ip| SocketAddr::new(ip, bind.port()))
        .collect();
    let members = nodes.len() + usize::from(!nodes.contains_key(own));
    (seeds, members)
}

/// Keeps the mesh to what the Node objects read say (the hub's
/// [`crate::running::Decisions::nodes`], read whether or not the configuration is
/// accepted), until the hub or the mesh closes: this node's record carries
/// its Node's labels (the others match their node preferences against
/// them), and with `bootstrap` (no `--join` nor `--cluster-size`) the seeds
/// and the expected size are the Nodes' ([`seeds_from_nodes`]).
pub async fn follow_nodes(
    own: String,
    bind: SocketAddr,
    bootstrap: bool,
    mut read: tokio::sync::watch::Receiver<Arc<BTreeMap<String, Node>>>,
    commands: tokio::sync::mpsc::Sender<Command>,
) {
    let mut told_seeds = None;
    let mut told_labels = None;
    read.mark_changed();
    while read.changed().await.is_ok() {
        let nodes = Arc::clone(&read.borrow_and_update());
        // None read yet: a cluster has at least this node's Node.
        if nodes.is_empty() {
            continue;
        }
        if let Some(node) = nodes.get(&own)
            && told_labels.as_ref() != Some(&node.metadata.labels)
        {
            let labels = node.metadata.labels.clone();
            if commands.send(Command::SetLabels(labels.clone())).await.is_err() {
                return;
            }
            told_labels = Some(labels);
        }
        if !bootstrap {
            continue;
        }
        let now = seeds_from_nodes(&nodes, &own, bind);
        if told_seeds.as_ref() == Some(&now) {
            continue;
        }
        tracing::info!(seeds = ?now.0, members = now.1, "mesh seeds and cluster size from the Nodes");
        let (seeds, members) = now.clone();
        if commands.send(Command::SetSeeds(seeds)).await.is_err()
            || commands.send(Command::ExpectMembers(members)).await.is_err()
        {
            return;
        }
        told_seeds = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "1:0000000000000000000000000000000000000000000000000000000000000001";
    const KEY_B: &str = "2:0000000000000000000000000000000000000000000000000000000000000002";

    #[test]
    fn the_first_key_is_primary_and_comments_are_skipped() {
        let path = Path::new("keys");
        let ring = parse_keyring(path, &format!("# rotation step 2\n\n{KEY_B}\n  {KEY_A}  \n")).unwrap();
        assert_eq!(ring.primary_id(), 2);
        assert_eq!(format!("{ring:?}"), "Keyring { primary: 2, ids: [1, 2] }");
    }

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        let path = Path::new("keys");
        let message = |text: &str| parse_keyring(path, text).unwrap_err().to_string();
        assert!(message("").contains("no cluster key"), "{}", message(""));
        assert!(message("# only a comment\n").contains("no cluster key"));
        let bad_line = message(&format!("{KEY_A}\n2:zz\n"));
        assert!(bad_line.contains("line 2"), "{bad_line}");
        let duplicate = message(&format!("{KEY_A}\n{KEY_A}\n"));
        assert!(duplicate.contains('1'), "{duplicate}");
    }

    /// Every other Node's InternalIP of the gossip address's family, at the
    /// gossip port, and every Node counted, this one too if its Node is
    /// missing.
    #[test]
    fn seeds_and_size_come_from_the_nodes() {
        let yaml = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n\
                    status: {addresses: [{type: InternalIP, address: 198.51.100.11}]}\n---\n\
                    apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n\
                    status: {addresses: [{type: Hostname, address: n2}, {type: InternalIP, address: '2001:db8::12'}, \
                    {type: InternalIP, address: 198.51.100.12}]}\n---\n\
                    apiVersion: v1\nkind: Node\nmetadata: {name: n3}\n";
        let objects = meshlb_config::parse_documents(yaml, "nodes").unwrap().objects;
        let inventory = meshlb_config::Inventory::build(&objects).unwrap();
        let bind: SocketAddr = "198.51.100.11:7946".parse().unwrap();
        let (seeds, members) = seeds_from_nodes(&inventory.nodes, "n1", bind);
        assert_eq!(seeds, ["198.51.100.12:7946".parse::<SocketAddr>().unwrap()]);
        assert_eq!(members, 3, "n3 has no address yet, but runs an agent");
        assert_eq!(seeds_from_nodes(&inventory.nodes, "n9", bind).1, 4);
    }
}
