//! Timing profiles for the mesh: every knob, what it does to detection
//! time and to false suspicion.
//!
//! Detection of a crashed member takes about
//! `2 * probe_period + suspect_to_down` (see
//! [`Profile::detection_bound_ms`]): someone must pick the dead member to
//! probe (foca probes members round-robin in a shuffled order, and with
//! `n` members the dead one is probed about once per period, so usually
//! within one period and now and then after two or three), the probe and
//! its indirect probes must fail (one period), and the suspicion must time
//! out without a refutation.
//!
//! | knob | faster detection | fewer false suspicions |
//! |---|---|---|
//! | `probe_period_ms` | lower | higher: more time for acks and indirect acks |
//! | `probe_rtt_ms` | (no effect once below the period) | higher than the real round trip, or healthy members look slow |
//! | `indirect_probes` | — | higher: more paths to refute a lost ping |
//! | `suspect_to_down_ms` | lower | higher: more time for the suspect to hear and refute |
//! | `max_transmissions` | — (dissemination) | higher: updates and refutations reach everyone under loss |
//! | `gossip_every_ms`, `gossip_fanout` | faster agreement after detection | — |
//! | `anti_entropy_ms` | — | repairs records lost to packet loss |
//! | `watch_interval_ms` | lower (a crash is seen sooner after the last heartbeat) | — (costs bandwidth: a heartbeat per interval for each owner, and an echo back when the owner heard nothing else for an interval) |
//! | `watch_down_ms` | lower | higher than the longest stall a live owner may show plus one interval |
//!
//! SWIM's bound is for any member; an owner (a node announcing addresses)
//! is also watched by one member ([`crate::watch`]): heartbeats every
//! `watch_interval_ms`, probes through helpers after `watch_suspect_ms` of
//! silence, and declared down after `watch_down_ms` of it.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use crate::watch::WatchTiming;

/// Largest plaintext datagram the mesh produces: 1,400 bytes on the wire
/// (below any Ethernet MTU with room for tunnels) less the secure envelope
/// and the one-byte message kind.
pub const MAX_PLAINTEXT: usize = 1400 - crate::secure::OVERHEAD - 1;

/// Timing of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Name, for logs.
    pub name: &'static str,
    /// How often each member probes one other member.
    pub probe_period_ms: u64,
    /// How long a direct probe waits before asking others to probe.
    pub probe_rtt_ms: u64,
    /// How many members are asked to probe indirectly.
    pub indirect_probes: usize,
    /// How long a suspect has to refute before it is declared down.
    pub suspect_to_down_ms: u64,
    /// How many times each update rides along with messages.
    pub max_transmissions: u8,
    /// How often pending updates are pushed to random members.
    pub gossip_every_ms: u64,
    /// To how many members.
    pub gossip_fanout: usize,
    /// How often a member exchanges record digests with a random member.
    pub anti_entropy_ms: u64,
    /// How often seeds are announced to while no member is known.
    pub rejoin_seeds_ms: u64,
    /// How often down members are announced to (heals partitions).
    pub announce_down_ms: u64,
    /// How often an owner sends its watcher a heartbeat (0: no owner
    /// watch, SWIM alone).
    pub watch_interval_ms: u64,
    /// Silence before a watcher probes its owner through helpers.
    pub watch_suspect_ms: u64,
    /// Silence before a watcher declares its owner down (with a helper's
    /// word that it heard nothing either).
    pub watch_down_ms: u64,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile::fast()
    }
}

impl Profile {
    /// The default: a LAN tuned for fast detection. A crashed member is
    /// typically declared down within [`Profile::detection_bound_ms`]
    /// (900 ms), and a crashed owner within 235 ms of its last heartbeat
    /// by its watcher (heartbeats every 20 ms: an owner stalled for 200 ms
    /// is not declared down), so that a Layer 2 failover (detection, then
    /// one gratuitous ARP) takes about a quarter second. On a LAN the
    /// round trip is well under a millisecond, so a 100 ms probe wait and
    /// three indirect paths leave a healthy member a wide margin even at
    /// 10% loss, and a false suspicion is refuted within the 400 ms
    /// suspicion time: the suspecter tells the suspect directly every
    /// [`SUSPICION_NOTICE_MS`](crate::mesh::SUSPICION_NOTICE_MS) (besides
    /// the gossip rounds, every 100 ms to three members), and the suspect
    /// announces itself back.
    pub fn fast() -> Profile {
        Profile {
            name: "fast",
            probe_period_ms: 250,
            probe_rtt_ms: 100,
            indirect_probes: 3,
            suspect_to_down_ms: 400,
            max_transmissions: 10,
            gossip_every_ms: 100,
            gossip_fanout: 3,
            anti_entropy_ms: 2000,
            rejoin_seeds_ms: 1000,
            announce_down_ms: 2000,
            watch_interval_ms: 20,
            watch_suspect_ms: 120,
            watch_down_ms: 235,
        }
    }

    /// memberlist's LAN timing (1 s probes, 500 ms probe wait, 4 s suspicion
    /// for small clusters): what serf and MetalLB run.
    pub fn lan() -> Profile {
        Profile {
            name: "lan",
            probe_period_ms: 1000,
            probe_rtt_ms: 500,
            indirect_probes: 3,
            suspect_to_down_ms: 4000,
            max_transmissions: 10,
            gossip_every_ms: 200,
            gossip_fanout: 3,
            anti_entropy_ms: 10_000,
            rejoin_seeds_ms: 2000,
            announce_down_ms: 10_000,
            watch_interval_ms: 0,
            watch_suspect_ms: 0,
            watch_down_ms: 0,
        }
    }

    /// A profile by name (`fast`, `lan`).
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "fast" => Some(Profile::fast()),
            "lan" => Some(Profile::lan()),
            _ => None,
        }
    }

    /// Typical time from a crash to a member declaring it down, without
    /// loss. Not a hard bound: SWIM picks probe targets in a shuffled
    /// order, so a member may take longer to probe the dead one (the
    /// simulation holds every member to twice this).
    pub fn detection_bound_ms(&self) -> u64 {
        2 * self.probe_period_ms + self.suspect_to_down_ms
    }

    /// The shortest stall of an agent's process (ms) after which what it
    /// announced before is not acted on until the mesh has decided again:
    /// the owner watch's [`WatchTiming::stall_ms`], or without the watch
    /// the mesh's [`crate::mesh::STALL_MS`].
    pub fn stall_ms(&self) -> u64 {
        self.watch_timing()
            .map_or(crate::mesh::STALL_MS, |timing| timing.stall_ms())
    }

    /// The owner watch's timing (`None`: no watch).
    pub fn watch_timing(&self) -> Option<WatchTiming> {
        (self.watch_interval_ms > 0).then_some(WatchTiming {
            interval_ms: self.watch_interval_ms,
            suspect_ms: self.watch_suspect_ms.max(self.watch_interval_ms),
            down_ms: self
                .watch_down_ms
                .max(self.watch_suspect_ms)
                .max(self.watch_interval_ms),
        })
    }

    /// The foca configuration for this profile.
    pub fn foca_config(&self) -> foca::Config {
        let nz = |n: usize| NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN);
        foca::Config {
            probe_period: Duration::from_millis(self.probe_period_ms.max(2)),
            probe_rtt: Duration::from_millis(self.probe_rtt_ms.clamp(1, self.probe_period_ms.max(2) - 1)),
            num_indirect_probes: nz(self.indirect_probes),
            max_transmissions: NonZeroU8::new(self.max_transmissions.max(1)).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: Duration::from_millis(self.suspect_to_down_ms.max(1)),
            // Down entries are kept a day: renewed identities rejoin at once
            // regardless, and a stale identity must not come back.
            remove_down_after: Some(Duration::from_secs(24 * 3600)),
            max_packet_size: nz(MAX_PLAINTEXT),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: Duration::from_secs(30),
                num_members: nz(1),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: Duration::from_millis(self.announce_down_ms.max(1)),
                num_members: nz(2),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: Duration::from_millis(self.gossip_every_ms.max(1)),
                num_members: nz(self.gossip_fanout),
            }),
        }
    }
}
