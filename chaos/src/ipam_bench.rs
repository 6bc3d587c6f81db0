//! The allocator benchmark: many services over many pools, timed and with
//! peak memory, for docs/benchmarks.md. Pure computation; no lab needed.
//!
//! Workload (deterministic, by service index): 60 % single-stack IPv4,
//! 20 % single-stack IPv6, 20 % RequireDualStack; every tenth service shares
//! an address (one of 97 keys, ports distinct); every twentieth names its
//! pool; services spread over 20 namespaces. Pool `i` holds
//! `198.18.(8i).0/21` (RFC 2544 benchmark space) and `2001:db8:i::/116`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use meshlb_config::addresses::AddressRange;
use meshlb_config::addresses::Family;
use meshlb_config::config::Pool;
use meshlb_config::meta::StringMap;
use meshlb_config::service::{AllocationRequest, Backend, FamilyPolicy, PortKey, ServiceKey};
use meshlb_config::{Allocator, allocate_all};

use crate::bench::Summary;

/// The pools of the workload.
pub fn pools(count: usize) -> Vec<Pool> {
    (0..count)
        .map(|i| {
            let v4 = Ipv4Addr::new(198, 18, (8 * i) as u8, 0);
            let v4_last = Ipv4Addr::from(u32::from(v4) + 2047);
            let v6 = Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 0);
            let v6_last = Ipv6Addr::from(u128::from(v6) + 4095);
            let range = |a: IpAddr, b: IpAddr| AddressRange::new(a, b).unwrap_or_else(|e| unreachable!("{e}"));
            Pool {
                name: format!("pool-{i:02}"),
                labels: StringMap::new(),
                ranges: vec![range(v4.into(), v4_last.into()), range(v6.into(), v6_last.into())],
                auto_assign: true,
                avoid_buggy_ips: i % 2 == 1,
                allocation: None,
                class: None,
            }
        })
        .collect()
}

/// The service requests of the workload.
pub fn requests(count: usize, pools: usize) -> Vec<AllocationRequest> {
    (0..count)
        .map(|i| {
            let (family_policy, families) = match i % 10 {
                0..=5 => (FamilyPolicy::SingleStack, vec![Family::V4]),
                6 | 7 => (FamilyPolicy::SingleStack, vec![Family::V6]),
                _ => (FamilyPolicy::RequireDualStack, vec![Family::V4, Family::V6]),
            };
            AllocationRequest {
                service: ServiceKey::new(format!("ns-{:02}", i % 20), format!("svc-{i:05}")),
                labels: StringMap::new(),
                namespace_labels: Default::default(),
                pool: (i % 20 == 7 && pools > 0).then(|| format!("pool-{:02}", (i / 20) % pools)),
                addresses: vec![],
                family_policy,
                families,
                per_family: 1,
                sharing_key: (i % 10 == 3).then(|| format!("share-{}", i % 97)),
                class: None,
                ports: vec![PortKey {
                    protocol: meshlb_config::service::Protocol::Tcp,
                    port: 1000 + (i % 60000) as u16,
                }],
                backend: Backend::Cluster,
            }
        })
        .collect()
}

/// Results of the allocator benchmark.
#[derive(Debug, Clone)]
pub struct IpamReport {
    /// Services.
    pub services: usize,
    /// Pools.
    pub pools: usize,
    /// Services that got addresses.
    pub assigned: usize,
    /// Distinct addresses handed out, per family.
    pub addresses_v4: u128,
    /// IPv6.
    pub addresses_v6: u128,
    /// Allocating every service from scratch.
    pub allocate: Summary,
    /// Restart: re-admitting every existing assignment.
    pub restart: Summary,
    /// One more service into the full allocator.
    pub add_one: Summary,
    /// Peak resident memory with the workload built, before allocating, KiB.
    pub peak_rss_before_kib: u64,
    /// Peak resident memory after the first allocation of everything, KiB.
    pub peak_rss_allocated_kib: u64,
    /// Peak resident memory after all runs (restarts keep two allocators), KiB.
    pub peak_rss_after_kib: u64,
}

/// VmHWM (peak resident set) of this process, KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the benchmark `runs` times.
pub fn run(services: usize, pool_count: usize, runs: usize) -> Option<IpamReport> {
    let pool_list = pools(pool_count);
    let request_list = requests(services, pool_count);
    let peak_rss_before_kib = peak_rss_kib();
    let mut peak_rss_allocated_kib = 0;
    let mut allocate = Vec::new();
    let mut restart = Vec::new();
    let mut add_one = Vec::new();
    let mut last: Option<(Allocator, usize)> = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let (allocator, results) =
            allocate_all(pool_list.clone(), request_list.iter().map(|r| (r.clone(), Vec::new())));
        allocate.push(started.elapsed());
        if peak_rss_allocated_kib == 0 {
            peak_rss_allocated_kib = peak_rss_kib();
        }
        let assigned = results.values().filter(|r| r.is_ok()).count();

        let existing: Vec<(AllocationRequest, Vec<IpAddr>)> = request_list
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    allocator
                        .assignment(&r.service)
                        .map(|a| a.addresses.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let started = Instant::now();
        let (mut restarted, _) = allocate_all(pool_list.clone(), existing);
        restart.push(started.elapsed());

        for k in 0..100 {
            let mut extra = request_list[k % request_list.len().max(1)].clone();
            extra.service = ServiceKey::new("extra", format!("svc-{k}"));
            let started = Instant::now();
            let _ = restarted.assign(&extra);
            add_one.push(started.elapsed());
            restarted.release(&extra.service);
        }
        last = Some((allocator, assigned));
    }
    let (allocator, assigned) = last?;
    let counters = allocator.counters();
    let sum = |f: fn(&meshlb_config::allocator::PoolCounters) -> u128| counters.values().map(f).sum::<u128>();
    Some(IpamReport {
        services,
        pools: pool_count,
        assigned,
        addresses_v4: sum(|c| c.v4.in_use),
        addresses_v6: sum(|c| c.v6.in_use),
        allocate: Summary::of(&allocate)?,
        restart: Summary::of(&restart)?,
        add_one: Summary::of(&add_one)?,
        peak_rss_before_kib,
        peak_rss_allocated_kib,
        peak_rss_after_kib: peak_rss_kib(),
    })
}

/// Milliseconds with three decimals.
pub fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_workload_assigns_everything_and_restart_keeps_it() {
        let report = run(400, 2, 1).unwrap();
        assert_eq!(report.assigned, 400);
        // 40 % of services take an IPv6 address (single-stack IPv6 and dual stack), 80 % an IPv4
        // one; sharing can only lower the count of addresses in use.
        assert!(report.addresses_v6 > 0 && report.addresses_v6 <= 160, "{report:?}");
        assert!(report.addresses_v4 > 0 && report.addresses_v4 <= 320, "{report:?}");
    }
}
