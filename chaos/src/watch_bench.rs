//! The owner-watch benchmark on virtual time: how long a crashed owner's
//! addresses go unannounced, with the watch ([`meshlb_gossip::watch`]) and
//! with SWIM alone, at any size; how many false failovers the strains
//! bring over a long soak; what the watch costs in bytes. The mesh's own
//! code on [`SimNet`] (loss, delay, stalls); no lab needed, so it runs to
//! sizes a lab on two cores cannot (200 members).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use meshlb_gossip::mesh::{Eligible, MeshService};
use meshlb_gossip::ownership::Failback;
use meshlb_gossip::profile::Profile;
use meshlb_gossip::record::service_id;
use meshlb_gossip::sim::{SimNet, SoakReport, Strain};

use crate::random::XorShift;

/// The profiles compared: the default (`fast`, with the owner watch) and
/// the same without the watch (SWIM's detection alone: what meshlb did
/// before).
pub fn profiles() -> [Profile; 2] {
    let with = Profile::fast();
    let without = Profile {
        name: "fast, SWIM alone",
        watch_interval_ms: 0,
        ..Profile::fast()
    };
    [with, without]
}

fn services(count: usize) -> Vec<MeshService> {
    (0..count)
        .map(|i| MeshService {
            id: service_id(&format!("default/svc-{i}")),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1))],
            failback: Failback::Revertive,
            eligible: Eligible::Any,
        })
        .collect()
}

/// `members` nodes with `count` services, converged and settled; `None`
/// when they do not converge within a virtual minute.
fn cluster(members: usize, count: usize, profile: &Profile, loss: f64, seed: u64) -> Option<SimNet> {
    let mut net = SimNet::new(members, profile.clone(), seed);
    // Evaluation follows every event (a death among them); by the clock
    // at least every 200 ms as in the agent, every second past 50 members
    // (200 members each ranking 200 candidates is the costly part of
    // simulating, not of the mesh).
    net.set_evaluation_interval(if members > 50 {
        1_000
    } else {
        meshlb_gossip::mesh::EVALUATE_EVERY_MS
    });
    net.set_services(services(count));
    net.start_all();
    net.run_until_converged(60_000)?;
    net.run_for(4 * profile.probe_period_ms + 500);
    net.run_until_converged(30_000)?;
    net.run_for(500);
    net.loss = loss;
    Some(net)
}

/// Crash failovers of one profile at one size and loss.
#[derive(Debug, Clone, Default)]
pub struct Failovers {
    /// From the crash to every address of the owner announced by one
    /// other node.
    pub took: Vec<Duration>,
    /// Runs not failed over within 10 s.
    pub missed: usize,
    /// Milliseconds during which some address had two announcers.
    pub overlap_ms: u64,
}

/// `runs` crashes on one cluster of `members` (`services` services), each
/// of the owner of a random address at a random phase; the crashed node
/// restarts and the cluster settles before the next.
pub fn crash_failovers(
    profile: &Profile,
    members: usize,
    services_count: usize,
    loss: f64,
    runs: usize,
    seed: u64,
) -> Failovers {
    let mut out = Failovers::default();
    let mut random = XorShift::from_seed(seed);
    let Some(mut net) = cluster(members, services_count, profile, loss, seed) else {
        out.missed = runs;
        return out;
    };
    for _ in 0..runs {
        net.run_for((random.unit() * 1_000.0) as u64);
        let owned: Vec<usize> = net.sole_announcers().values().flatten().copied().collect();
        if owned.is_empty() {
            out.missed += 1;
            continue;
        }
        let victim = owned[((random.unit() * owned.len() as f64) as usize).min(owned.len() - 1)];
        let (took, overlap) = net.crash_and_time_failover(victim, 10_000);
        out.overlap_ms += overlap;
        match took {
            Some(ms) => out.took.push(Duration::from_millis(ms)),
            None => out.missed += 1,
        }
        // Back, and settled, before the next crash.
        net.start(victim);
        net.run_until_converged(30_000);
        net.run_for(4 * profile.probe_period_ms + 1_000);
    }
    out
}

/// A soak of `secs` virtual seconds under `strain` at `members` members.
pub fn soak(
    profile: &Profile,
    members: usize,
    services_count: usize,
    strain: Strain,
    secs: u64,
    seed: u64,
) -> Option<SoakReport> {
    let mut net = cluster(members, services_count, profile, 0.0, seed)?;
    Some(net.soak(strain, secs * 1_000))
}

/// Bytes each node sends per second (with the secure envelope), steady
/// state over `secs` virtual seconds: the mean over the nodes, and the
/// most any node sends.
pub fn bandwidth(profile: &Profile, members: usize, services_count: usize, secs: u64, seed: u64) -> Option<(f64, f64)> {
    let mut net = cluster(members, services_count, profile, 0.0, seed)?;
    Some(net.send_rate_over(secs * 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_fails_over_faster_than_swim_and_costs_bytes() {
        let [with, without] = profiles();
        let fast = crash_failovers(&with, 3, 3, 0.0, 3, 1);
        let slow = crash_failovers(&without, 3, 3, 0.0, 3, 1);
        assert_eq!((fast.missed, slow.missed), (0, 0));
        assert_eq!(fast.overlap_ms + slow.overlap_ms, 0);
        let worst_fast = fast.took.iter().max().copied().unwrap_or_default();
        let best_slow = slow.took.iter().min().copied().unwrap_or(Duration::MAX);
        assert!(worst_fast < best_slow, "{fast:?} against {slow:?}");
        let (with_bytes, _) = bandwidth(&with, 3, 3, 10, 2).unwrap_or_default();
        let (without_bytes, _) = bandwidth(&without, 3, 3, 10, 2).unwrap_or_default();
        assert!(
            with_bytes > without_bytes && without_bytes > 0.0,
            "{with_bytes} against {without_bytes}"
        );
    }
}
