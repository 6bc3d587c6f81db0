//! The BGP benchmarks' reports: route scale against gobgpd (with its plot),
//! routes held for delivery, the drain against a crash, failover with BFD.

use std::time::Duration;

use meshlb_chaos::LabError;
use meshlb_chaos::bench::{Summary, secs};

use crate::self_binary;

pub(crate) fn bench_gobgp_routes(runs: usize, counts: Vec<usize>) -> Result<(), LabError> {
    println!("gobgpd (speaker, node1) -> bird2 (router), one IPv6 eBGP session, {runs} runs each; seconds");
    println!(
        "| routes | session Established -> all in RIB (median / p90 / max) | -> all in kernel FIB | delete all -> RIB empty | -> FIB empty | peak RSS (max) | CPU loading the routes (max) | CPU, session enabled -> all withdrawn (max) | runs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cell = |s: Option<Summary>| {
        s.map(|s| format!("{} / {} / {}", secs(s.median), secs(s.p90), secs(s.max)))
            .unwrap_or_default()
    };
    for count in counts {
        let done = meshlb_chaos::scenario::gobgp_route_scale(count, runs)?;
        let pick = |f: fn(&meshlb_chaos::scenario::RouteScaleRun) -> Duration| {
            Summary::of(&done.iter().map(|r| f(&r.timing)).collect::<Vec<_>>())
        };
        println!(
            "| {count} | {} | {} | {} | {} | {} | {} |",
            cell(pick(|r| r.rib)),
            cell(pick(|r| r.fib)),
            cell(pick(|r| r.withdraw_rib)),
            cell(pick(|r| r.withdraw_fib)),
            Usage::of(&done).cells(),
            done.len()
        );
    }
    Ok(())
}

/// A speaker's largest peak RSS (MiB), CPU time loading the routes and CPU
/// time in the session, over its runs: what the table and the plot show.
struct Usage {
    rss_mib: f64,
    load_cpu: Duration,
    cpu: Duration,
}

impl Usage {
    fn of(runs: &[meshlb_chaos::scenario::SpeakerRouteScaleRun]) -> Usage {
        Usage {
            rss_mib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            load_cpu: runs.iter().map(|r| r.load_cpu).max().unwrap_or_default(),
            cpu: runs.iter().map(|r| r.cpu).max().unwrap_or_default(),
        }
    }

    /// The table's last cells.
    fn cells(&self) -> String {
        format!(
            "{:.1} MiB | {} s | {} s",
            self.rss_mib,
            secs(self.load_cpu),
            secs(self.cpu)
        )
    }
}

pub(crate) fn bench_bgp_routes(
    runs: usize,
    counts: Vec<usize>,
    plot: Option<&std::path::Path>,
    meshlb_only: bool,
) -> Result<(), LabError> {
    use meshlb_chaos::scenario::{RouteScaleRun, SpeakerRouteScaleRun};
    let speakers = if meshlb_only {
        "meshlb-agent"
    } else {
        "meshlb-agent and gobgpd"
    };
    println!("{speakers} (speaker, node1) -> bird2 (router), one IPv6 eBGP session, {runs} runs each; seconds");
    println!(
        "| routes | speaker | Established -> all in RIB (median / p90 / max) | -> all in kernel FIB | withdraw all -> RIB empty | -> FIB empty | peak RSS (max) | CPU loading the routes (max) | CPU, session enabled -> all withdrawn (max) | runs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cell = |s: Option<Summary>| {
        s.map(|s| format!("{} / {} / {}", secs(s.median), secs(s.p90), secs(s.max)))
            .unwrap_or_default()
    };
    let row = |count: usize, speaker: &str, done: &[SpeakerRouteScaleRun]| {
        let pick =
            |f: fn(&RouteScaleRun) -> Duration| Summary::of(&done.iter().map(|r| f(&r.timing)).collect::<Vec<_>>());
        println!(
            "| {count} | {speaker} | {} | {} | {} | {} | {} | {} |",
            cell(pick(|r| r.rib)),
            cell(pick(|r| r.fib)),
            cell(pick(|r| r.withdraw_rib)),
            cell(pick(|r| r.withdraw_fib)),
            Usage::of(done).cells(),
            done.len()
        );
        pick(|r| r.rib).map(|s| s.median)
    };
    for count in counts {
        let meshlb = meshlb_chaos::scenario::meshlb_route_scale(count, runs)?;
        let ours = row(count, "meshlb", &meshlb);
        if meshlb_only {
            continue;
        }
        let gobgp = meshlb_chaos::scenario::gobgp_route_scale(count, runs)?;
        let theirs = row(count, "gobgpd", &gobgp);
        if let Some(file) = plot {
            let svg = route_scale_plot(count, runs, &meshlb, &gobgp);
            std::fs::write(file, svg).map_err(|e| LabError::io(format!("write {}", file.display()), e))?;
        }
        if let (Some(ours), Some(theirs)) = (ours, theirs)
            && !theirs.is_zero()
        {
            println!(
                "| {count} | meshlb / gobgpd, RIB median | {:.2} | | | | | | | |",
                ours.as_secs_f64() / theirs.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// The SVG of [`bench_bgp_routes`]'s comparison at `count` routes.
fn route_scale_plot(
    count: usize,
    runs: usize,
    meshlb: &[meshlb_chaos::scenario::SpeakerRouteScaleRun],
    gobgp: &[meshlb_chaos::scenario::SpeakerRouteScaleRun],
) -> String {
    use meshlb_chaos::plot::{Pair, paired_bars};
    use meshlb_chaos::scenario::{RouteScaleRun, SpeakerRouteScaleRun};
    let median = |done: &[SpeakerRouteScaleRun], f: fn(&RouteScaleRun) -> Duration| {
        Summary::of(&done.iter().map(|r| f(&r.timing)).collect::<Vec<_>>()).map_or(0.0, |s| s.median.as_secs_f64())
    };
    let (ours, theirs) = (Usage::of(meshlb), Usage::of(gobgp));
    let pairs = [
        Pair {
            measure: "Established -> all in RIB, s".into(),
            first: median(meshlb, |r| r.rib),
            second: median(gobgp, |r| r.rib),
        },
        Pair {
            measure: "withdraw all -> RIB empty, s".into(),
            first: median(meshlb, |r| r.withdraw_rib),
            second: median(gobgp, |r| r.withdraw_rib),
        },
        Pair {
            measure: "peak RSS, MiB".into(),
            first: ours.rss_mib,
            second: theirs.rss_mib,
        },
        Pair {
            measure: "CPU loading the routes, s".into(),
            first: ours.load_cpu.as_secs_f64(),
            second: theirs.load_cpu.as_secs_f64(),
        },
        Pair {
            measure: "CPU, session enabled -> withdrawn, s".into(),
            first: ours.cpu.as_secs_f64(),
            second: theirs.cpu.as_secs_f64(),
        },
    ];
    paired_bars(
        &format!("{count} IPv6 host routes into bird2: times the median of {runs} runs, RSS and CPU the largest"),
        ("meshlb-agent", "gobgpd"),
        &pairs,
    )
}

pub(crate) fn bench_bgp_delivery(runs: usize, counts: Vec<usize>) -> Result<(), LabError> {
    println!(
        "meshlb-agent (node1) starting cold with one IPv6 Service per route -> bird2 (router); \
         each route pinged from the router as its kernel installs it; {runs} runs each; seconds"
    );
    println!(
        "| routes | agent start -> every address delivered (median / max) | -> every route in the router's FIB | \
         routes before their address | pings unanswered | addresses removed before their route | runs |"
    );
    println!("|---|---|---|---|---|---|---|");
    for count in counts {
        let mut done = Vec::new();
        for _ in 0..runs {
            match meshlb_chaos::scenario::delivery_order(count) {
                Ok(run) => done.push(run),
                Err(e) => eprintln!("{count} routes: a run failed: {e}"),
            }
        }
        let cell = |f: fn(&meshlb_chaos::scenario::DeliveryRun) -> Duration| {
            Summary::of(&done.iter().map(f).collect::<Vec<_>>())
                .map(|s| format!("{} / {}", secs(s.median), secs(s.max)))
                .unwrap_or_default()
        };
        let total = |f: fn(&meshlb_chaos::scenario::DeliveryRun) -> usize| done.iter().map(f).sum::<usize>();
        println!(
            "| {count} | {} | {} | {} | {} | {} | {} |",
            cell(|r| r.addresses_in),
            cell(|r| r.routes_in),
            total(|r| r.announced_early.len()),
            total(|r| r.unanswered.len()),
            total(|r| r.removed_early.len()),
            done.len()
        );
    }
    Ok(())
}

pub(crate) fn bench_bgp_drain(runs: usize) -> Result<(), LabError> {
    use meshlb_chaos::scenario::BgpAnnouncer;
    let lab_binary = self_binary()?;
    println!(
        "3 meshlb agents -> FRR (ECMP, hold time 9 s, BFD 300 ms x 3); a client behind the router probing \
         every 10 ms; the answering node leaves; {runs} runs each"
    );
    println!("| how the node leaves | probes lost after it began (median / max) | runs |");
    println!("|---|---|---|");
    for (name, drain) in [
        ("its agent drains (SIGTERM), then the node crashes", true),
        ("the node crashes", false),
    ] {
        let mut lost = Vec::new();
        for _ in 0..runs {
            match meshlb_chaos::scenario::bgp_node_exit(BgpAnnouncer::Meshlb { bfd_ms: Some(300) }, drain, &lab_binary)
            {
                Ok((_, n)) => lost.push(n),
                Err(e) => eprintln!("{name}: a run failed: {e}"),
            }
        }
        lost.sort_unstable();
        println!(
            "| {name} | {} / {} | {} |",
            lost.get(lost.len() / 2).copied().unwrap_or(0),
            lost.last().copied().unwrap_or(0),
            lost.len()
        );
    }
    Ok(())
}

pub(crate) fn bench_bgp_failover(runs: usize) -> Result<(), LabError> {
    let lab_binary = self_binary()?;
    println!(
        "3 nodes (meshlb agents, or gobgpd) -> FRR (ECMP, hold time 9 s; BFD on both sides at meshlb's timers); a client behind the router probing \
         every 10 ms; the answering node crashed; {runs} runs each; seconds"
    );
    println!("| case | outage (median / p90 / max) | probes lost (median) | runs |");
    println!("|---|---|---|---|");
    use meshlb_chaos::scenario::BgpAnnouncer;
    let cases = [
        ("meshlb with BFD 50 ms x 3", BgpAnnouncer::Meshlb { bfd_ms: Some(50) }),
        ("meshlb with BFD 300 ms x 3", BgpAnnouncer::Meshlb { bfd_ms: Some(300) }),
        ("meshlb without BFD", BgpAnnouncer::Meshlb { bfd_ms: None }),
        ("gobgpd (no BFD)", BgpAnnouncer::Gobgp),
    ];
    for (name, announcer) in cases {
        let mut outages = Vec::new();
        let mut lost = Vec::new();
        for _ in 0..runs {
            match meshlb_chaos::scenario::bgp_crash_failover(announcer, &lab_binary) {
                Ok(outage) => {
                    outages.push(outage.window);
                    lost.push(outage.lost);
                }
                Err(e) => eprintln!("{name}: a run failed: {e}"),
            }
        }
        lost.sort_unstable();
        let cell = Summary::of(&outages)
            .map(|s| format!("{} / {} / {}", secs(s.median), secs(s.p90), secs(s.max)))
            .unwrap_or_default();
        println!(
            "| {name} | {cell} | {} | {} |",
            lost.get(lost.len() / 2).copied().unwrap_or(0),
            outages.len()
        );
    }
    Ok(())
}
