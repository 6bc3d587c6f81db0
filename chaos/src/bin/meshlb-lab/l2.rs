//! The Layer 2 benchmarks' reports: failover against keepalived and MetalLB
//! (lab and real nodes), reloads under ARP load, keepalived's own timers.

use std::time::Duration;

use meshlb_chaos::LabError;
use meshlb_chaos::bench::{Summary, secs};
use meshlb_chaos::keepalived::VrrpSpec;
use meshlb_chaos::scenario::{NodeFault, keepalived_failover};

use crate::{FaultArg, VIP, self_binary};

/// One table row of failover runs: outage summary, when the client moved
/// to another node, runs that moved it, runs that ended with two or more
/// claimants.
fn failover_row(label: &str, fault: NodeFault, completed: &[meshlb_chaos::scenario::FailoverRun]) {
    let windows: Vec<_> = completed.iter().map(|r| r.outage.window).collect();
    if let Some(s) = Summary::of(&windows) {
        let switchovers: Vec<_> = completed.iter().filter_map(|r| r.outage.switchover).collect();
        let moved_at = Summary::of(&switchovers).map_or_else(
            || "- | -".to_owned(),
            |m| format!("{} | {}", secs(m.median), secs(m.p90)),
        );
        let moved = completed.iter().filter(|r| r.new_owner.is_some()).count();
        let split = completed.iter().filter(|r| r.vip_holders_after.len() > 1).count();
        println!(
            "| {label} | {fault} | {} | {} | {} | {moved_at} | {} | {moved}/{} | {split}/{} |",
            secs(s.median),
            secs(s.p90),
            secs(s.max),
            s.runs,
            s.runs,
            s.runs
        );
    }
}

/// What [`bench_l2_failover`]'s plot shows of one size and fault on real
/// nodes, meshlb's runs against MetalLB's: the outage a crash costs, and
/// for every fault when another node took the address.
fn real_node_pairs(
    nodes: usize,
    fault: NodeFault,
    meshlb: &[meshlb_chaos::scenario::FailoverRun],
    metallb: &[meshlb_chaos::scenario::FailoverRun],
) -> Vec<meshlb_chaos::plot::Pair> {
    use meshlb_chaos::plot::Pair;
    let median = |runs: &[meshlb_chaos::scenario::FailoverRun],
                  f: fn(&meshlb_chaos::scenario::FailoverRun) -> Option<Duration>| {
        Summary::of(&runs.iter().filter_map(f).collect::<Vec<_>>()).map_or(0.0, |s| s.median.as_secs_f64())
    };
    let mut pairs = Vec::new();
    if fault == NodeFault::Crash {
        pairs.push(Pair {
            measure: format!("{nodes} nodes, {fault}: outage, s"),
            first: median(meshlb, |r| Some(r.outage.window)),
            second: median(metallb, |r| Some(r.outage.window)),
        });
    }
    pairs.push(Pair {
        measure: format!("{nodes} nodes, {fault}: moved after, s"),
        first: median(meshlb, |r| r.outage.switchover),
        second: median(metallb, |r| r.outage.switchover),
    });
    pairs
}

fn faults_or_all(faults: Vec<FaultArg>) -> Vec<NodeFault> {
    if faults.is_empty() {
        vec![NodeFault::Crash, NodeFault::Freeze, NodeFault::Stop]
    } else {
        faults.into_iter().map(NodeFault::from).collect()
    }
}

/// The figures `bench l2-failover` draws besides its tables, each into
/// the SVG file given.
pub(crate) struct L2Figures<'a> {
    /// meshlb against MetalLB on real nodes (paired bars).
    pub plot: Option<&'a std::path::Path>,
    /// Every system's crash outages as a CDF.
    pub cdf: Option<&'a std::path::Path>,
    /// One more crash of meshlb's answering node over time.
    pub timeline: Option<&'a std::path::Path>,
}

pub(crate) fn bench_l2_failover(
    runs: usize,
    sizes: Vec<usize>,
    faults: Vec<FaultArg>,
    arp_requests: usize,
    real_nodes: bool,
    figures: L2Figures<'_>,
) -> Result<(), LabError> {
    let L2Figures {
        plot,
        cdf: cdf_plot,
        timeline,
    } = figures;
    use meshlb_chaos::cluster::{Announcer, ClusterFault};
    use meshlb_chaos::plot::Series;
    use meshlb_chaos::scenario::meshlb_failover;
    let faults = faults_or_all(faults);
    let binary = self_binary()?;
    let systems = if real_nodes {
        format!(
            "meshlb (fast profile) standalone, meshlb's chart and MetalLB {}'s native manifest on real nodes, and keepalived",
            meshlb_chaos::metallb::VERSION
        )
    } else {
        "meshlb (fast profile) and keepalived".to_owned()
    };
    println!("Layer 2 failover: {systems}, {runs} runs each, prober every 10 ms; seconds");
    println!(
        "| nodes, system | fault | outage median | p90 | max | client moved after, median | p90 | runs | client moved to another node | 2+ claimants after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut pairs = Vec::new();
    let mut crash_outages: Vec<Series> = Vec::new();
    for &nodes in &sizes {
        for fault in &faults {
            let mut meshlb = Vec::new();
            let mut default_vrrp = Vec::new();
            let mut fast_vrrp = Vec::new();
            let announcers: &[Announcer] = if real_nodes {
                &[Announcer::Meshlb, Announcer::Metallb]
            } else {
                &[]
            };
            let mut on_real_nodes: Vec<(Announcer, Vec<meshlb_chaos::scenario::FailoverRun>)> =
                announcers.iter().map(|a| (*a, Vec::new())).collect();
            // On real nodes, what a user's operations do to the agent: the
            // node dies, the agent freezes, its pod is deleted (a graceful
            // stop).
            let cluster_fault = match fault {
                NodeFault::Crash => ClusterFault::NodeCrash,
                NodeFault::Freeze => ClusterFault::AgentFrozen,
                NodeFault::Stop => ClusterFault::AgentPodDeleted,
            };
            // Interleaved, so slow drift of the machine hits all alike.
            for _ in 0..runs {
                match meshlb_failover(&binary, nodes, *fault) {
                    Ok(run) => meshlb.push(run),
                    Err(e) => eprintln!("meshlb run failed: {e}"),
                }
                for (vrrp, out) in [
                    (VrrpSpec::default_timers(VIP), &mut default_vrrp),
                    (VrrpSpec::fast_timers(VIP), &mut fast_vrrp),
                ] {
                    match keepalived_failover(&binary, nodes, &vrrp, *fault) {
                        Ok(run) => out.push(run),
                        Err(e) => eprintln!("keepalived run failed: {e}"),
                    }
                }
                for (announcer, out) in &mut on_real_nodes {
                    match meshlb_chaos::kube_failover::failover(nodes, *announcer, cluster_fault) {
                        Ok(run) => out.push(run),
                        Err(e) => eprintln!("{announcer} run on real nodes failed: {e}"),
                    }
                }
            }
            failover_row(&format!("{nodes}, meshlb"), *fault, &meshlb);
            for (announcer, out) in &on_real_nodes {
                failover_row(&format!("{nodes}, {announcer} on real nodes"), *fault, out);
            }
            if let [(_, ours), (_, theirs)] = on_real_nodes.as_slice() {
                pairs.extend(real_node_pairs(nodes, *fault, ours, theirs));
            }
            failover_row(&format!("{nodes}, keepalived 1 s"), *fault, &default_vrrp);
            failover_row(&format!("{nodes}, keepalived 0.1 s"), *fault, &fast_vrrp);
            if *fault == NodeFault::Crash {
                let mut systems: Vec<(String, &[meshlb_chaos::scenario::FailoverRun])> =
                    vec![(format!("meshlb, {nodes} nodes"), &meshlb)];
                systems.extend(
                    on_real_nodes
                        .iter()
                        .map(|(a, out)| (format!("{a} on real nodes, {nodes} nodes"), out.as_slice())),
                );
                systems.push((format!("keepalived 1 s, {nodes} nodes"), &default_vrrp));
                systems.push((format!("keepalived 0.1 s, {nodes} nodes"), &fast_vrrp));
                crash_outages.extend(systems.into_iter().map(|(name, runs)| Series {
                    name,
                    samples: runs.iter().map(|r| r.outage.window.as_secs_f64()).collect(),
                }));
            }
        }
    }
    if let Some(file) = cdf_plot {
        let svg = meshlb_chaos::plot::cdf(
            &format!("Layer 2 failover: the outage a crashed node costs a client, {runs} runs each"),
            "outage seen by a client probing every 10 ms, s",
            &crash_outages,
        );
        std::fs::write(file, svg).map_err(|e| LabError::io(format!("write {}", file.display()), e))?;
    }
    if let (Some(file), Some(&nodes)) = (timeline, sizes.first()) {
        let (run, line) = meshlb_chaos::scenario::meshlb_failover_timeline(&binary, nodes)?;
        let svg = meshlb_chaos::plot::timeline(
            &format!(
                "One crash among {nodes} meshlb agents: {} s without an answer",
                secs(run.outage.window)
            ),
            &line,
            -0.2,
            0.6,
        );
        std::fs::write(file, svg).map_err(|e| LabError::io(format!("write {}", file.display()), e))?;
        println!(
            "Timeline of one more crash at {nodes} nodes written to {} (outage {} s)",
            file.display(),
            secs(run.outage.window)
        );
    }
    if let Some(file) = plot {
        let svg = meshlb_chaos::plot::paired_bars(
            &format!("Layer 2 failover on real nodes, the median of {runs} runs"),
            ("meshlb", &format!("MetalLB {}", meshlb_chaos::metallb::VERSION)),
            &pairs,
        );
        std::fs::write(file, svg).map_err(|e| LabError::io(format!("write {}", file.display()), e))?;
    }
    println!();
    let latency = meshlb_chaos::scenario::arp_latency(arp_requests)?;
    println!(
        "ARP answer latency seen by the client ({arp_requests} broadcast requests each, one arping each); milliseconds"
    );
    println!("| answered by | median | p90 | max | answers |");
    println!("|---|---|---|---|---|");
    for (label, samples) in [
        ("meshlb (service IP, user space)", &latency.meshlb_ms),
        ("kernel (the node's own IP)", &latency.kernel_ms),
    ] {
        let as_durations: Vec<Duration> = samples.iter().map(|ms| Duration::from_secs_f64(ms / 1000.0)).collect();
        if let Some(s) = Summary::of(&as_durations) {
            println!(
                "| {label} | {:.3} | {:.3} | {:.3} | {} |",
                s.median.as_secs_f64() * 1000.0,
                s.p90.as_secs_f64() * 1000.0,
                s.max.as_secs_f64() * 1000.0,
                s.runs
            );
        }
    }
    Ok(())
}

pub(crate) fn bench_l2_reload(services: usize, arp_requests: usize, window: Duration) -> Result<(), LabError> {
    let report = meshlb_chaos::scenario::reload_health(services, arp_requests, window)?;
    println!(
        "Layer 2 answers and gossip health while 3 agents reload {} services ({:.1} MB of YAML; one file changed \
         every 2 s), against idle, {} s each; ARP round trips for the service address in milliseconds",
        services + 2,
        report.config_bytes as f64 / 1e6,
        window.as_secs()
    );
    println!(
        "| condition | ARP median | p90 | max | answered / asked | reloads (3 agents) | members declared down | stalls |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, health) in [("idle", &report.idle), ("reloading", &report.reloading)] {
        let samples: Vec<Duration> = health
            .arp_ms
            .iter()
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect();
        let Some(s) = Summary::of(&samples) else {
            println!(
                "| {label} | - | - | - | 0 / {} | {} | {} | {} |",
                health.arp_asked, health.reloads, health.members_down, health.stalls
            );
            continue;
        };
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {} / {} | {} | {} | {} |",
            s.median.as_secs_f64() * 1000.0,
            s.p90.as_secs_f64() * 1000.0,
            s.max.as_secs_f64() * 1000.0,
            s.runs,
            health.arp_asked,
            health.reloads,
            health.members_down,
            health.stalls
        );
    }
    Ok(())
}

pub(crate) fn bench_keepalived(runs: usize, nodes: usize, faults: Vec<FaultArg>) -> Result<(), LabError> {
    let faults = faults_or_all(faults);
    let binary = self_binary()?;
    println!("keepalived failover, {nodes} nodes, {runs} runs each, prober every 10 ms; seconds");
    println!(
        "| timers | fault | outage median | p90 | max | runs | client moved to another node | VIP on 2+ nodes after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for vrrp in [VrrpSpec::default_timers(VIP), VrrpSpec::fast_timers(VIP)] {
        for fault in &faults {
            let mut completed = Vec::new();
            for _ in 0..runs {
                match keepalived_failover(&binary, nodes, &vrrp, *fault) {
                    Ok(run) => completed.push(run),
                    Err(e) => eprintln!("run failed: {e}"),
                }
            }
            failover_row(&format!("advert_int {} s", vrrp.advert_interval), *fault, &completed);
        }
    }
    Ok(())
}
