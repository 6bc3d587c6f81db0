//! The mesh at scale on virtual time: many members, many services, the
//! mesh's own code on [`SimNet`] (no lab, so it reaches sizes two cores
//! cannot run as processes). For each size it measures what grows with
//! the cluster:
//!
//! - the start: from every member starting until each holds every other's
//!   current record, and one record's size on the wire (a node's record
//!   lists every service it can serve);
//! - the steady state: bytes each member sends per second, and the wall
//!   time of each ownership evaluation ([`Mesh::evaluate_ownership`],
//!   which every member runs on every event and at least every evaluation
//!   interval);
//! - one service added on every member: bytes sent until every member
//!   holds every record again, beyond the steady rate, and how long that
//!   took;
//! - a crash of a member announcing addresses: until each of its
//!   addresses is announced by one other member.
//!
//! [`Mesh::evaluate_ownership`]: meshlb_gossip::mesh::Mesh::evaluate_ownership

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use meshlb_gossip::mesh::{Eligible, MeshService};
use meshlb_gossip::ownership::Failback;
use meshlb_gossip::profile::Profile;
use meshlb_gossip::record::service_id;
use meshlb_gossip::sim::SimNet;

use crate::bench::Summary;

/// The most services [`services`] numbers (one address each from
/// 198.18.0.0/15, the lab's pod and ClusterIP range, network address left
/// out).
pub const MAX_SERVICES: usize = (1 << 17) - 2;

/// `count` services every member can serve, one IPv4 address each.
pub fn services(count: usize) -> Vec<MeshService> {
    (0..count.min(MAX_SERVICES)).map(service).collect()
}

/// Service `i` of [`services`] (`i` below [`MAX_SERVICES`]).
fn service(i: usize) -> MeshService {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    MeshService {
        id: service_id(&format!("default/svc-{i}")),
        addresses: vec![IpAddr::V4(Ipv4Addr::from(base + 1 + i as u32))],
        failback: Failback::Revertive,
        eligible: Eligible::Any,
    }
}

/// What one size measured.
#[derive(Debug, Clone, Default)]
pub struct ScaleReport {
    /// Members.
    pub members: usize,
    /// Services.
    pub services: usize,
    /// One member's record: bytes over all its fragments, and fragments.
    pub record: (usize, usize),
    /// Virtual ms from every member starting until each held every other's
    /// current record (`None`: not within the limit, and nothing further
    /// was measured).
    pub converged_ms: Option<u64>,
    /// Steady state: bytes a member sends per second, mean over the
    /// members and the most any sends.
    pub steady_bytes: (f64, f64),
    /// Wall time of the ownership evaluations in the steady window.
    pub evaluation: Option<Summary>,
    /// Evaluations in the steady window, per member per second.
    pub evaluations_per_sec: f64,
    /// One service added: bytes a member sent until every member held
    /// every record again, beyond the steady rate, mean over the members.
    pub change_bytes: f64,
    /// Virtual ms from the change until every member held every record.
    pub change_agreed_ms: Option<u64>,
    /// Virtual ms from a crash of the member announcing the most addresses
    /// until each is announced by one other (`None`: not within 10 s).
    pub failover_ms: Option<u64>,
    /// Wall time the whole measurement took.
    pub wall: Duration,
}

/// Measures `members` members with `count` services (seeded), the steady
/// state over `steady_secs` virtual seconds; `limit_secs` bounds each wait
/// for agreement.
pub fn measure(members: usize, count: usize, steady_secs: u64, limit_secs: u64, seed: u64) -> ScaleReport {
    let count = count.min(MAX_SERVICES - 1);
    let began = Instant::now();
    let profile = Profile::fast();
    let mut report = ScaleReport {
        members,
        services: count,
        ..ScaleReport::default()
    };
    let mut net = SimNet::new(members, profile.clone(), seed);
    let planned = services(count);
    net.set_services(planned.clone());
    net.start_all();
    report.converged_ms = net.run_until_converged(limit_secs * 1_000);
    if report.converged_ms.is_none() {
        report.wall = began.elapsed();
        return report;
    }
    report.record = net.nodes[0]
        .mesh
        .as_ref()
        .and_then(|m| m.own_record().fragments().ok())
        .map(|f| (f.iter().map(Vec::len).sum(), f.len()))
        .unwrap_or_default();
    // Past the settle time, claims spread.
    net.run_for(4 * profile.probe_period_ms + 500);
    let _ = net.run_until_converged(limit_secs * 1_000);

    net.time_evaluations();
    report.steady_bytes = net.send_rate_over(steady_secs * 1_000);
    let times = net.take_evaluation_times();
    report.evaluations_per_sec = times.len() as f64 / members as f64 / steady_secs.max(1) as f64;
    report.evaluation = Summary::of(&times);

    let mut more = planned;
    more.push(service(count));
    let changed_at = net.now_ms;
    let before = net.bytes_sent();
    net.set_services(more);
    report.change_agreed_ms = net.run_until_converged(limit_secs * 1_000);
    let window_secs = (net.now_ms - changed_at) as f64 / 1_000.0;
    let after = net.bytes_sent();
    let sent: u64 = before.iter().zip(&after).map(|(b, a)| a.saturating_sub(*b)).sum();
    report.change_bytes = sent as f64 / members as f64 - report.steady_bytes.0 * window_secs;

    let busiest = (0..members).max_by_key(|&i| net.nodes[i].announcing.len()).unwrap_or(0);
    report.failover_ms = net.crash_and_time_failover(busiest, 10_000).0;
    report.wall = began.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_have_distinct_addresses_in_the_lab_range() {
        let all = services(MAX_SERVICES + 5);
        assert_eq!(all.len(), MAX_SERVICES);
        let addresses: std::collections::BTreeSet<IpAddr> = all.iter().flat_map(|s| s.addresses.clone()).collect();
        assert_eq!(addresses.len(), MAX_SERVICES);
        let range = (
            u32::from(Ipv4Addr::new(198, 18, 0, 0)),
            u32::from(Ipv4Addr::new(198, 19, 255, 255)),
        );
        assert!(addresses.iter().all(|a| match a {
            IpAddr::V4(v4) => (range.0 + 1..range.1).contains(&u32::from(*v4)),
            IpAddr::V6(_) => false,
        }));
    }

    /// A small size end to end: everything measured, the record growing
    /// with the services, one added service agreed on, the crash failed
    /// over.
    #[test]
    fn a_small_mesh_is_measured_end_to_end() {
        let small = measure(5, 20, 2, 30, 7);
        let larger = measure(5, 200, 2, 30, 7);
        for report in [&small, &larger] {
            assert!(report.converged_ms.is_some(), "{report:?}");
            assert!(report.steady_bytes.0 > 0.0 && report.steady_bytes.1 >= report.steady_bytes.0);
            assert!(report.evaluation.is_some_and(|e| e.runs > 0));
            assert!(report.change_agreed_ms.is_some(), "{report:?}");
            assert!(report.failover_ms.is_some(), "{report:?}");
        }
        assert!(
            larger.record.0 > small.record.0,
            "{:?} against {:?}",
            larger.record,
            small.record
        );
    }
}
