//! The owner watch on the deterministic virtual network: a crashed owner is
//! replaced within the watch's deadline at any size, a live one never is
//! (loss, loss bursts, stalls of 200 ms), and an owner frozen past the
//! deadline is silent when it thaws.

use std::net::{IpAddr, Ipv4Addr};

use meshlb_gossip::mesh::{Eligible, MeshService};
use meshlb_gossip::ownership::Failback;
use meshlb_gossip::profile::Profile;
use meshlb_gossip::record::service_id;
use meshlb_gossip::sim::{SimNet, Strain};

fn services(count: usize) -> Vec<MeshService> {
    (0..count)
        .map(|i| MeshService {
            id: service_id(&format!("default/svc-{i}")),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, i as u8 + 1))],
            failback: Failback::Revertive,
            eligible: Eligible::Any,
        })
        .collect()
}

/// `n` members serving `count` services, converged and settled.
fn cluster(n: usize, seed: u64, count: usize, evaluate_every_ms: u64) -> SimNet {
    let mut net = SimNet::new(n, Profile::fast(), seed);
    net.set_evaluation_interval(evaluate_every_ms);
    net.set_services(services(count));
    net.start_all();
    assert!(
        net.run_until_converged(60_000).is_some(),
        "{n} members did not converge"
    );
    net.run_for(4 * Profile::fast().probe_period_ms + 100);
    assert!(net.run_until_converged(30_000).is_some(), "claims did not converge");
    net.run_for(500);
    net
}

/// A crash at several phases of the heartbeat, at 3, 10 and 50 members:
/// another node announces every address of the crashed owner within the
/// watch's deadline of its last heartbeat (and not before it: the watch,
/// not chance, did it), declared by exactly one watcher, with never two
/// announcers.
#[test]
fn a_crashed_owner_is_replaced_within_the_watch_deadline_at_any_size() {
    let profile = Profile::fast();
    for (n, count) in [(3, 3), (10, 10), (50, 20)] {
        for phase in 0..4u64 {
            let mut net = cluster(n, 100 + n as u64 + phase, count, 50);
            net.run_for(phase * 7);
            let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
            let victim =
                net.sole_announcers()[&address].unwrap_or_else(|| panic!("{n}: {address} has no single owner"));
            let before = net.watch_declarations();
            let (took, overlap) = net.crash_and_time_failover(victim, 2_000);
            let bound = profile.watch_down_ms + 10;
            let floor = profile.watch_down_ms - profile.watch_interval_ms - 5;
            assert!(
                took.is_some_and(|t| (floor..=bound).contains(&t)),
                "{n} members, phase {phase}: replaced after {took:?} ms (expected {floor}..={bound})"
            );
            assert_eq!(overlap, 0, "{n} members: two announcers meanwhile");
            assert_eq!(
                net.watch_declarations() - before,
                1,
                "{n} members: one watcher declared it"
            );
        }
    }
}

/// Ten members, twenty services, 60 s of virtual time under each strain
/// the issue names (5 % loss, bursts of 30 %, stalls of 200 ms): no member
/// is declared down and no address changes hands. (Stalls during bursts
/// are beyond it: `meshlb-lab bench owner-watch` counts them.)
#[test]
fn no_false_failover_under_loss_bursts_or_stalls() {
    for strain in [Strain::Loss, Strain::Bursts, Strain::Stalls] {
        for seed in [7u64, 8] {
            let mut net = cluster(10, seed, 20, 50);
            let report = net.soak(strain, 60_000);
            assert_eq!(
                report.changes,
                Vec::new(),
                "{strain:?}, seed {seed}: ownership changed with no member dead"
            );
            assert_eq!(
                report.declared_down, 0,
                "{strain:?}, seed {seed}: a live member declared down"
            );
            assert_eq!(net.watch_declarations(), 0);
            if strain == Strain::Stalls {
                assert!(report.stalls >= 30, "{} stalls", report.stalls);
            }
        }
    }
}

/// An owner stalled past the watch's deadline (frozen, its datagrams
/// queued) is replaced, and when it wakes it reads that it was declared
/// down first and announces nothing: never two announcers after the thaw.
#[test]
fn an_owner_frozen_past_the_deadline_is_silent_when_it_thaws() {
    for freeze in [300u64, 600, 1_500] {
        let mut net = cluster(5, 40 + freeze, 10, 50);
        let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 3));
        let victim = net.sole_announcers()[&address].unwrap_or_else(|| panic!("{address} has no single owner"));
        let lost: Vec<IpAddr> = net.nodes[victim].announcing.iter().copied().collect();
        let frozen_at = net.now_ms;
        net.stall(victim, freeze);
        let mut replaced_at = None;
        while net.now_ms < frozen_at + freeze {
            net.run_for(1);
            let others: Vec<bool> = lost
                .iter()
                .map(|a| net.announcers()[a].iter().any(|n| *n != victim))
                .collect();
            if replaced_at.is_none() && others.iter().all(|o| *o) {
                replaced_at = Some(net.now_ms - frozen_at);
            }
        }
        let replaced = replaced_at.unwrap_or_else(|| panic!("freeze {freeze}: not replaced while frozen"));
        assert!(
            replaced <= Profile::fast().watch_down_ms + 10,
            "freeze {freeze}: replaced after {replaced} ms"
        );
        // From the thaw on: one announcer at most, every millisecond.
        while net.now_ms < frozen_at + freeze + 3_000 {
            net.run_for(1);
            for (a, announcers) in net.announcers() {
                assert!(
                    announcers.len() <= 1,
                    "freeze {freeze}: {a} announced by {announcers:?} {} ms after the thaw",
                    net.now_ms - frozen_at - freeze
                );
            }
        }
        assert!(net.run_until_converged(20_000).is_some());
        net.run_for(2_000);
        for (a, announcers) in net.announcers() {
            assert_eq!(announcers.len(), 1, "freeze {freeze}: {a} by {announcers:?}");
        }
    }
}

/// An owner cut off from every other member (the client may still reach
/// it) takes itself for cut off before its watcher's side takes over: the
/// majority announces within the watch's deadline and the two sides never
/// announce together. After the heal, one announcer each.
#[test]
fn an_owner_cut_off_goes_quiet_before_the_majority_takes_over() {
    for seed in [61u64, 62, 63] {
        let mut net = cluster(5, seed, 10, 50);
        let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 4));
        let owner = net.sole_announcers()[&address].unwrap_or_else(|| panic!("{address} has no single owner"));
        let others: Vec<usize> = (0..5).filter(|i| *i != owner).collect();
        let cut_at = net.now_ms;
        net.partition(&[&[owner], &others]);
        let mut taken_at = None;
        while net.now_ms < cut_at + 3_000 {
            net.run_for(1);
            let announcers = net.announcers();
            for (a, by) in &announcers {
                assert!(
                    by.len() <= 1,
                    "seed {seed}: {a} announced by {by:?} {} ms into the cut",
                    net.now_ms - cut_at
                );
            }
            if taken_at.is_none() && announcers[&address].iter().any(|n| *n != owner) {
                taken_at = Some(net.now_ms - cut_at);
            }
        }
        let taken = taken_at.unwrap_or(u64::MAX);
        assert!(
            taken <= Profile::fast().watch_down_ms + 10,
            "seed {seed}: taken over after {taken} ms"
        );
        assert!(
            net.nodes[owner].announcing.is_empty(),
            "seed {seed}: the cut-off owner still announces"
        );
        net.heal();
        assert!(net.run_until_converged(30_000).is_some());
        net.run_for(3_000);
        for (a, by) in net.announcers() {
            assert_eq!(by.len(), 1, "seed {seed}: after the heal {a} by {by:?}");
        }
    }
}
