//! The agent's place in the gossip mesh: starts the `meshlb-gossip` driver,
//! publishes this node's record, and reports membership.
//!
//! Until gRPC introspection exists, the mesh reports to two files in the
//! state directory, which the lab reads:
//! - `mesh-events.log`: one line per event, `@ <unix seconds> <event> <node>`
//!   (`member-up`, `member-down`, `rejoined`, and `idle`, `stalled`, `left`
//!   with no node), appended;
//! - `mesh-members`: the live members as this node sees them, one per line
//!   (`<name> <address> boot=<ms> rejoin=<n>`, then from its record
//!   `settling=<true|false> claims=<addresses, comma-separated, or ->`, or
//!   `record=none` before it arrived), then `quorum <true|false>` and what
//!   the fence counts (`live=<n> reference=<n> expected=<n>
//!   heard-majority=<true|false>`: see [`Fence`]), replaced atomically on
//!   every change. A member that is `settling` does not take an address
//!   from a member that claims it;
//! - `mesh-drops`: gossip datagrams dropped over the agent's life, one
//!   `<reason> <count>` line per reason (`forged` for a wrong key or
//!   label, `replayed`, `stale`, `truncated`, …, and `refused-by-mesh` for
//!   authenticated datagrams the mesh could not use), refreshed at least
//!   every [`driver::DROP_SUMMARY`] while they grow, when the log also
//!   sums them up.
//!
//! The cluster the fence measures against is the one this node is told
//! of ([`MeshOptions::expected_members`]): until it has heard from a
//! majority of it, the agent claims nothing and says so.
//!
//! Key rotation without downtime: the key file is re-read every
//! [`KEY_FILE_POLL`] (a Kubernetes Secret volume changes by swapping a
//! symlink, so the content is compared, not the modification time). A new
//! keyring replaces the old one at once; a file that does not parse is
//! logged and the running keyring stays. Rotate in three steps, each on
//! every node before the next: add the new key as a secondary line, make it
//! the first line, remove the old one.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshlb_gossip::driver::{self, Command, DriverConfig, MeshHandle, MeshStatus};
use meshlb_gossip::mesh::MeshEvent;
use meshlb_gossip::ownership::Fence;
use meshlb_gossip::profile::Profile;
use meshlb_gossip::secure::{ClusterKey, Keyring};

use crate::AgentError;

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
    /// Cluster label.
    pub label: String,
    /// Timing profile.
    pub profile: Profile,
    /// Node labels, published in the record.
    pub labels: BTreeMap<String, String>,
    /// How many members the cluster has, this node included: the quorum
    /// fence's expected size.
    pub expected_members: usize,
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
    let bad = |message: String| AgentError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    let keys = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| ClusterKey::parse(l).map_err(|e| bad(format!("line {}: {e}", n + 1))))
        .collect::<Result<Vec<_>, _>>()?;
    let (primary, others) = keys.split_first().ok_or_else(|| bad("no cluster key".into()))?;
    Keyring::new(primary, others).map_err(|e| bad(e.to_string()))
}

/// How often the key file is re-read.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

/// A running mesh membership.
#[derive(Debug)]
pub struct AgentMesh {
    commands: tokio::sync::mpsc::Sender<Command>,
    announce: tokio::sync::watch::Receiver<std::collections::BTreeSet<std::net::IpAddr>>,
    reporter: tokio::task::JoinHandle<()>,
    key_watcher: tokio::task::JoinHandle<()>,
}

impl AgentMesh {
    /// Joins the mesh and starts reporting to `state_dir`.
    pub async fn start(options: MeshOptions, state_dir: &Path) -> Result<AgentMesh, AgentError> {
        let (keyring, key_text) = read_keyring(&options.key_file)?;
        tracing::info!(file = %options.key_file.display(), keys = ?keyring, "cluster keys loaded");
        std::fs::create_dir_all(state_dir).map_err(|source| AgentError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let handle = driver::start(DriverConfig {
            node: options.node.clone(),
            bind: options.bind,
            seeds: options.seeds.clone(),
            keyring,
            label: options.label.clone().into_bytes(),
            profile: options.profile.clone(),
            fence: Fence::default().expecting(options.expected_members),
            max_age_ms: 30_000,
            labels: options.labels.clone(),
        })
        .await?;
        tracing::info!(node = %options.node, bind = %options.bind, profile = options.profile.name, "joined the gossip mesh");
        let commands = handle.commands.clone();
        let announce = handle.announce.clone();
        let reporter = tokio::spawn(report(handle, state_dir.to_path_buf()));
        let key_watcher = tokio::spawn(watch_key_file(options.key_file.clone(), key_text, commands.clone()));
        Ok(AgentMesh {
            commands,
            announce,
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn report(mut handle: MeshHandle, dir: PathBuf) {
    let events_path = dir.join("mesh-events.log");
    let members_path = dir.join("mesh-members");
    let drops_path = dir.join("mesh-drops");
    let mut drops_written = None;
    loop {
        tokio::select! {
            event = handle.events.recv() => {
                let Some(event) = event else { return };
                let (kind, node) = match &event {
                    MeshEvent::MemberUp(id) => ("member-up", id.name.as_str()),
                    MeshEvent::MemberDown(id) => ("member-down", id.name.as_str()),
                    MeshEvent::Rejoined(id) => ("rejoined", id.name.as_str()),
                    MeshEvent::Idle => ("idle", ""),
                    MeshEvent::Stalled(_) => ("stalled", ""),
                    MeshEvent::Left => ("left", ""),
                    MeshEvent::RecordChanged(_) => continue,
                };
                tracing::info!(node, "mesh: {kind}");
                let line = format!("@ {:.6} {kind} {node}\n", unix_now());
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&events_path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = written {
                    tracing::warn!("{}: {e}", events_path.display());
                }
            }
            changed = handle.status.changed() => {
                if changed.is_err() {
                    return;
                }
                let status = handle.status.borrow_and_update().clone();
                if let Err(e) = write_atomically(&members_path, &members_text(&status)) {
                    tracing::warn!("{}: {e}", members_path.display());
                }
                let drops = drops_text(&status);
                if drops_written.as_ref() != Some(&drops) {
                    match write_atomically(&drops_path, &drops) {
                        Ok(()) => drops_written = Some(drops),
                        Err(e) => tracing::warn!("{}: {e}", drops_path.display()),
                    }
                }
            }
        }
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn drops_text(status: &MeshStatus) -> String {
    let mut text = String::new();
    for (reason, count) in &status.drops {
        text.push_str(&format!("{} {count}\n", driver::drop_reason_name(*reason)));
    }
    text.push_str(&format!("refused-by-mesh {}\n", status.stats.refused_datagrams));
    text
}

fn members_text(status: &MeshStatus) -> String {
    let mut text = String::new();
    for m in &status.members {
        text.push_str(&format!(
            "{} {} boot={} rejoin={}",
            m.id.name, m.id.addr, m.id.boot, m.id.rejoin
        ));
        match &m.record {
            Some(record) => {
                let claims: Vec<String> = record.claims.iter().map(ToString::to_string).collect();
                let claims = if claims.is_empty() {
                    "-".to_owned()
                } else {
                    claims.join(",")
                };
                text.push_str(&format!(" settling={} claims={claims}\n", record.settling));
            }
            None => text.push_str(" record=none\n"),
        }
    }
    let fence = &status.fence;
    text.push_str(&format!(
        "quorum {} live={} reference={} expected={} heard-majority={}\n",
        fence.quorum, fence.live, fence.reference, fence.expected, fence.heard_majority
    ));
    text
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
    fn members_are_listed_with_what_their_records_say() {
        use meshlb_gossip::identity::NodeId;
        use meshlb_gossip::mesh::MemberView;
        use meshlb_gossip::ownership::FenceStatus;
        use meshlb_gossip::record::NodeRecord;

        let id = |name: &str, last: u8| NodeId::new(name, SocketAddr::from(([192, 0, 2, last], 7947)), 100);
        let mut record = NodeRecord::new("b", 100);
        record.settling = false;
        record.claims = ["203.0.113.10".parse().unwrap(), "2001:db8:100::10".parse().unwrap()].into();
        let status = MeshStatus {
            members: vec![
                MemberView {
                    id: id("a", 1),
                    record: Some(NodeRecord::new("a", 100)),
                },
                MemberView {
                    id: id("b", 2),
                    record: Some(record),
                },
                MemberView {
                    id: id("c", 3),
                    record: None,
                },
            ],
            fence: FenceStatus {
                expected: 3,
                reference: 3,
                live: 3,
                heard_majority: true,
                quorum: true,
            },
            ..MeshStatus::default()
        };
        assert_eq!(
            members_text(&status),
            "a 192.0.2.1:7947 boot=100 rejoin=0 settling=true claims=-\n\
             b 192.0.2.2:7947 boot=100 rejoin=0 settling=false claims=203.0.113.10,2001:db8:100::10\n\
             c 192.0.2.3:7947 boot=100 rejoin=0 record=none\n\
             quorum true live=3 reference=3 expected=3 heard-majority=true\n"
        );
    }

    #[test]
    fn drops_are_listed_by_reason() {
        use meshlb_gossip::secure::DropReason;
        let mut status = MeshStatus {
            drops: vec![(DropReason::Replayed, 4), (DropReason::Forged, 20_000)],
            ..MeshStatus::default()
        };
        status.stats.refused_datagrams = 2;
        assert_eq!(drops_text(&status), "replayed 4\nforged 20000\nrefused-by-mesh 2\n");
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
}
