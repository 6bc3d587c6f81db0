//! The mesh on a real UDP socket: one tokio task owns the socket, the
//! secure channel and the [`Mesh`], and talks to the rest of the agent by
//! channels. It never blocks: the socket is non-blocking and the only
//! waits are on the socket, the next timer and the command channel.
//!
//! Two clocks: the mesh runs on a monotonic clock (tokio's `Instant`), the
//! secure envelope's send time on the wall clock, since it is compared
//! across nodes.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::identity::NodeId;
use crate::mesh::{MemberView, Mesh, MeshEvent, MeshStats, ServicePlan};
use crate::ownership::{Fence, FenceStatus};
use crate::profile::Profile;
use crate::secure::{DropReason, Epoch, Keyring, SecureChannel};

pub use crate::mesh::WeightFn;

/// Why the driver could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The gossip socket could not be opened.
    #[error("gossip socket {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// No randomness from the operating system.
    #[error("random source: {0}")]
    Random(String),
}

/// How to run the mesh.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Node name.
    pub node: String,
    /// Gossip address to bind (and to be reached at).
    pub bind: SocketAddr,
    /// Seeds to join through.
    pub seeds: Vec<SocketAddr>,
    /// Cluster keys.
    pub keyring: Keyring,
    /// Cluster label (bound into every packet's authentication).
    pub label: Vec<u8>,
    /// Timing.
    pub profile: Profile,
    /// Quorum fence.
    pub fence: Fence,
    /// Tolerated clock skew and packet age (ms).
    pub max_age_ms: u64,
    /// Node labels, in the first record.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// How often dropped and refused datagrams are summed up in the log (at
/// info level, only when there were any) and in the published status.
pub const DROP_SUMMARY: Duration = Duration::from_secs(10);

/// What the rest of the agent asks of the mesh.
pub enum Command {
    /// The services ownership is computed for (replacing the previous
    /// plan), and what this node's record says of them.
    SetServices(ServicePlan),
    /// Hand over, leave, and stop; answered when the leave was sent.
    Leave(oneshot::Sender<()>),
    /// Replace the keyring (key rotation).
    SetKeyring(Keyring),
    /// Replace the seeds and announce to them (the cluster's nodes, as the
    /// API server lists them).
    SetSeeds(Vec<SocketAddr>),
    /// Expect a cluster of this many members, this node included (the
    /// quorum fence's reference size).
    ExpectMembers(usize),
    /// Replace the labels in this node's record (its Node object's, in a
    /// cluster).
    SetLabels(std::collections::BTreeMap<String, String>),
    /// Replace what this node's record says of its BGP announcements.
    SetBgp(crate::record::BgpSection),
    /// Read the clock (a stall of this process is noticed then), evaluate
    /// ownership and publish it; answered once published. Asked by an
    /// interface that stalled, which takes no decision made before the
    /// stall.
    Evaluate(oneshot::Sender<()>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::SetServices(_) => "SetServices",
            Command::Leave(_) => "Leave",
            Command::SetKeyring(_) => "SetKeyring",
            Command::SetSeeds(_) => "SetSeeds",
            Command::ExpectMembers(_) => "ExpectMembers",
            Command::SetLabels(_) => "SetLabels",
            Command::SetBgp(_) => "SetBgp",
            Command::Evaluate(_) => "Evaluate",
        })
    }
}

/// A snapshot of the mesh for introspection, published on membership,
/// record and quorum changes.
#[derive(Debug, Clone, Default)]
pub struct MeshStatus {
    /// This node's identity.
    pub identity: Option<NodeId>,
    /// Live members, this node first.
    pub members: Vec<MemberView>,
    /// The quorum fence: whether this node may announce, and why.
    pub fence: FenceStatus,
    /// Protocol counters.
    pub stats: MeshStats,
    /// Datagrams refused by the secure envelope, by reason, over this
    /// node's life (refreshed at least every [`DROP_SUMMARY`]).
    pub drops: Vec<(DropReason, u64)>,
    /// Bytes sent on the wire (with the envelope).
    pub wire_bytes_sent: u64,
}

/// The agent's side of a running mesh.
#[derive(Debug)]
pub struct MeshHandle {
    /// Commands to the mesh.
    pub commands: mpsc::Sender<Command>,
    /// Membership and record events.
    pub events: mpsc::UnboundedReceiver<MeshEvent>,
    /// The latest status.
    pub status: watch::Receiver<MeshStatus>,
    /// The addresses this node announces now (empty once it has left).
    pub announce: watch::Receiver<BTreeSet<IpAddr>>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Binds the socket and spawns the mesh task on the current tokio runtime.
pub async fn start(config: DriverConfig) -> Result<MeshHandle, DriverError> {
    let socket = UdpSocket::bind(config.bind).await.map_err(|source| DriverError::Bind {
        addr: config.bind,
        source,
    })?;
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| DriverError::Random(e.to_string()))?;
    let mut epoch: Epoch = [0; 16];
    epoch.copy_from_slice(&random[..16]);
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&random[16..]);
    let identity = NodeId::new(config.node.clone(), config.bind, wall_ms());
    let mut mesh = Mesh::new(identity, config.profile.clone(), u64::from_le_bytes(seed), crate::now());
    mesh.set_fence(config.fence.clone());
    let labels = config.labels.clone();
    if let Err(e) = mesh.set_labels(labels) {
        tracing::warn!("node labels left out of the record: {e}");
    }
    mesh.join(&config.seeds, crate::now());
    let channel = SecureChannel::new(config.keyring.clone(), &config.label, epoch, config.max_age_ms);
    let (commands, command_rx) = mpsc::channel(64);
    let (event_tx, events) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(MeshStatus::default());
    let (announce_tx, announce) = watch::channel(BTreeSet::new());
    let task = MeshTask {
        socket,
        channel,
        mesh,
        events: event_tx,
        status: status_tx,
        announce: announce_tx,
        wire_bytes_sent: 0,
        summarised: DropTally::default(),
    };
    tokio::spawn(task.run(command_rx));
    Ok(MeshHandle {
        commands,
        events,
        status,
        announce,
    })
}

struct MeshTask {
    socket: UdpSocket,
    channel: SecureChannel,
    mesh: Mesh,
    events: mpsc::UnboundedSender<MeshEvent>,
    status: watch::Sender<MeshStatus>,
    announce: watch::Sender<BTreeSet<IpAddr>>,
    wire_bytes_sent: u64,
    /// The drop counts at the last summary.
    summarised: DropTally,
}

/// Datagrams dropped so far: by the envelope, by reason, and refused by
/// the mesh after authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DropTally {
    envelope: Vec<(DropReason, u64)>,
    refused: u64,
}

impl DropTally {
    /// What was dropped since `earlier`, as `reason=count` words.
    fn since(&self, earlier: &DropTally) -> String {
        let before = |reason: DropReason| {
            earlier
                .envelope
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n)
        };
        let mut words: Vec<String> = self
            .envelope
            .iter()
            .filter(|(reason, n)| *n > before(*reason))
            .map(|(reason, n)| format!("{}={}", drop_reason_name(*reason), n - before(*reason)))
            .collect();
        if self.refused > earlier.refused {
            words.push(format!("refused-by-mesh={}", self.refused - earlier.refused));
        }
        words.join(" ")
    }
}

/// A drop reason as one word, for logs and status files.
pub fn drop_reason_name(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Truncated => "truncated",
        DropReason::Version => "unknown-version",
        DropReason::UnknownKey => "unknown-key",
        DropReason::Stale => "stale",
        DropReason::Future => "future",
        DropReason::Replayed => "replayed",
        DropReason::Forged => "forged",
    }
}

impl MeshTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 65_536];
        let mut leaving: Option<oneshot::Sender<()>> = None;
        let mut drop_summary = tokio::time::interval(DROP_SUMMARY);
        drop_summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.flush(false).await;
        loop {
            // The mesh says when it next needs the clock (at most
            // EVALUATE_EVERY_MS away); it notices a stall itself.
            let due = tokio::time::Instant::from_std(self.mesh.poll_timeout());
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(from, &buf[..len]),
                    Err(e) => tracing::warn!("gossip socket: {e}"),
                },
                () = tokio::time::sleep_until(due) => self.mesh.handle_timeout(crate::now()),
                _ = drop_summary.tick() => self.summarise_drops(),
                command = commands.recv() => match command {
                    Some(Command::SetServices(plan)) => {
                        tracing::debug!(?plan, "services for the mesh");
                        if let Err(e) = self.mesh.set_services(plan) {
                            tracing::warn!("publishing the services served here: {e}");
                        }
                    }
                    Some(Command::SetKeyring(keyring)) => self.channel.set_keyring(keyring),
                    Some(Command::SetSeeds(seeds)) => self.mesh.set_seeds(&seeds),
                    Some(Command::ExpectMembers(members)) => self.mesh.expect_members(members),
                    Some(Command::SetLabels(labels)) => {
                        if let Err(e) = self.mesh.set_labels(labels) {
                            tracing::warn!("node labels left out of the record: {e}");
                        }
                    }
                    Some(Command::SetBgp(bgp)) => {
                        if let Err(e) = self.mesh.set_bgp(bgp) {
                            tracing::warn!("BGP announcements left out of the record: {e}");
                        }
                    }
                    Some(Command::Evaluate(done)) => {
                        self.mesh.handle_timeout(crate::now());
                        self.flush(true).await;
                        let _ = done.send(());
                    }
                    Some(Command::Leave(done)) => {
                        if let Err(e) = self.mesh.begin_leave(crate::now()) {
                            tracing::warn!("begin leave: {e}");
                        }
                        leaving = Some(done);
                    }
                    None => return,
                },
            }
            self.flush(false).await;
            if self.mesh.has_left() {
                if let Some(done) = leaving.take() {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    fn receive(&mut self, from: SocketAddr, packet: &[u8]) {
        let plaintext = match self.channel.open(packet, wall_ms()) {
            Ok(p) => p,
            Err(reason) => {
                tracing::debug!(%from, ?reason, "gossip datagram dropped");
                return;
            }
        };
        if let Err(e) = self.mesh.handle_datagram(from, &plaintext, crate::now()) {
            tracing::debug!(%from, "gossip datagram refused: {e}");
        }
    }

    /// Passes on the mesh's events, sends what it queued, and evaluates
    /// ownership when it is due or an event came (or `evaluate` asks),
    /// publishing the decision and the status.
    async fn flush(&mut self, evaluate: bool) {
        let mut changed = false;
        while let Some(event) = self.mesh.poll_event() {
            changed = true;
            match &event {
                MeshEvent::Stalled(stalled) => tracing::warn!(
                    stalled_ms = stalled.as_millis(),
                    "this agent was stalled; announcing nothing until it has re-learned the mesh"
                ),
                // Handed over: silence before the goodbye goes out.
                MeshEvent::Left => {
                    self.announce.send_replace(BTreeSet::new());
                }
                _ => {}
            }
            let _ = self.events.send(event);
        }
        self.send_queued().await;
        if evaluate || self.mesh.take_evaluation_due() || changed {
            let mine = self.mesh.evaluate_ownership();
            self.announce.send_if_modified(|current| {
                let modified = *current != mine;
                *current = mine;
                modified
            });
            // Changed claims are published in the record: send it now.
            self.send_queued().await;
        }
        let fence = self.mesh.fence_status();
        // This node's record is the first member's in the published status.
        let (was, stale_record) = {
            let published = self.status.borrow();
            let own = published.members.first().and_then(|m| m.record.as_ref());
            (
                published.identity.as_ref().map(|_| published.fence),
                own.map(|r| r.stamp()) != Some(self.mesh.own_record().stamp()),
            )
        };
        if was.is_none_or(|was| was.quorum != fence.quorum) {
            log_fence(&fence);
        }
        if changed || was != Some(fence) || stale_record {
            self.publish();
        }
    }

    fn drop_tally(&self) -> DropTally {
        DropTally {
            envelope: self.channel.drops().iter().collect(),
            refused: self.mesh.stats().refused_datagrams,
        }
    }

    /// Logs what was dropped since the last summary (if anything) and
    /// publishes the counts.
    fn summarise_drops(&mut self) {
        let now = self.drop_tally();
        if now == self.summarised {
            return;
        }
        tracing::info!(
            "gossip datagrams dropped in the last {} s: {}",
            DROP_SUMMARY.as_secs(),
            now.since(&self.summarised)
        );
        self.summarised = now;
        self.publish();
    }

    async fn send_queued(&mut self) {
        while let Some((to, plaintext)) = self.mesh.poll_transmit() {
            let packet = self.channel.seal(&plaintext, wall_ms());
            self.wire_bytes_sent += packet.len() as u64;
            if let Err(e) = self.socket.send_to(&packet, to).await {
                tracing::debug!(%to, "gossip send: {e}");
            }
        }
    }

    fn publish(&self) {
        let status = MeshStatus {
            identity: Some(self.mesh.identity().clone()),
            members: self.mesh.members(),
            fence: self.mesh.fence_status(),
            stats: self.mesh.stats().clone(),
            drops: self.channel.drops().iter().collect(),
            wire_bytes_sent: self.wire_bytes_sent,
        };
        self.status.send_replace(status);
    }
}

/// Says in the log why this node may or may not announce.
fn log_fence(fence: &FenceStatus) {
    if fence.quorum {
        tracing::info!(%fence, "quorum: this node may announce");
    } else if let (false, Some(expected)) = (fence.heard_majority, fence.expected) {
        tracing::warn!(
            %fence,
            "no quorum: not yet heard from a majority of the {expected} members this node expects; claiming nothing",
        );
    } else if fence.expected.is_none() {
        tracing::warn!(
            %fence,
            "no quorum: the cluster's size is not known yet (in a cluster: the Node list has not been read); claiming nothing",
        );
    } else {
        tracing::warn!(
            %fence,
            "no quorum: sees {} of {} members; claiming nothing",
            fence.live,
            fence.reference
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_summaries_name_only_what_grew() {
        let earlier = DropTally {
            envelope: vec![(DropReason::Forged, 3), (DropReason::Replayed, 1)],
            refused: 2,
        };
        let now = DropTally {
            envelope: vec![
                (DropReason::Truncated, 5),
                (DropReason::Forged, 10),
                (DropReason::Replayed, 1),
            ],
            refused: 4,
        };
        assert_eq!(now.since(&earlier), "truncated=5 forged=7 refused-by-mesh=2");
        assert_eq!(now.since(&now), "");
    }
}
