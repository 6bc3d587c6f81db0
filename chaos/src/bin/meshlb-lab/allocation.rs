//! The allocation benchmarks' reports: the IP allocator alone, and
//! against MetalLB's controller on a real API server.

use std::time::Duration;

use meshlb_chaos::LabError;
use meshlb_chaos::bench::secs;

pub(crate) fn bench_allocator(services: usize, pools: usize, runs: usize) -> Result<(), LabError> {
    use meshlb_chaos::ipam_bench::{millis, run};
    let report = run(services, pools, runs).ok_or_else(|| LabError::Invalid("no benchmark runs".into()))?;
    println!(
        "{} services over {} pools: {} assigned, {} IPv4 and {} IPv6 addresses in use",
        report.services, report.pools, report.assigned, report.addresses_v4, report.addresses_v6
    );
    println!("| operation | median ms | p90 ms | max ms | runs |");
    println!("|---|---|---|---|---|");
    for (name, s) in [
        ("allocate all from scratch", report.allocate),
        ("restart: re-admit all", report.restart),
        ("one more service", report.add_one),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            millis(s.median),
            millis(s.p90),
            millis(s.max),
            s.runs
        );
    }
    println!(
        "peak RSS (VmHWM): {} KiB with the workload built; {} KiB after allocating everything once \
         (+{} KiB: allocator and results); {} KiB after all runs",
        report.peak_rss_before_kib,
        report.peak_rss_allocated_kib,
        report.peak_rss_allocated_kib.saturating_sub(report.peak_rss_before_kib),
        report.peak_rss_after_kib
    );
    Ok(())
}

pub(crate) fn bench_kube_allocation(
    burst: usize,
    existing: usize,
    metallb_controller: Option<std::path::PathBuf>,
) -> Result<(), LabError> {
    use meshlb_chaos::kube_bench::{Allocator, quantile, run};
    let mut allocators = vec![Allocator::Meshlb(meshlb_chaos::agent::agent_binary()?)];
    allocators.extend(metallb_controller.map(Allocator::Metallb));
    let mut reports = Vec::new();
    for allocator in &allocators {
        reports.push(run(allocator, burst, existing)?);
    }
    println!("| allocator | burst | create to status median s | p99 | max | all allocated after s |");
    println!("|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.allocator,
            r.burst,
            secs(quantile(&r.burst_latencies, 0.5)),
            secs(quantile(&r.burst_latencies, 0.99)),
            secs(quantile(&r.burst_latencies, 1.0)),
            secs(r.burst_total)
        );
    }
    println!();
    println!(
        "| allocator | Services and EndpointSlices present | start to all allocated s | peak RSS MiB | CPU s until then | CPU s per 1,000 updates |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} | {} | {} | {:.1} | {} | {} |",
            r.allocator,
            r.existing,
            secs(r.cold_start),
            r.peak_rss_kib as f64 / 1024.0,
            secs(r.cold_start_cpu),
            secs(r.cpu_per_1000_updates)
        );
    }
    if let [meshlb, metallb] = reports.as_slice() {
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-9);
        println!();
        println!(
            "MetalLB / meshlb: burst median {:.1}x, burst all allocated {:.1}x, cold start {:.1}x",
            ratio(
                quantile(&meshlb.burst_latencies, 0.5),
                quantile(&metallb.burst_latencies, 0.5)
            ),
            ratio(meshlb.burst_total, metallb.burst_total),
            ratio(meshlb.cold_start, metallb.cold_start)
        );
    }
    Ok(())
}
