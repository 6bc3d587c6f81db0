//! The membership benchmarks' reports: failure detection of meshlb's mesh
//! against serf, the lab soak, the owner watch and the mesh at scale on
//! virtual time.

use std::time::Duration;

use meshlb_chaos::LabError;
use meshlb_chaos::bench::{Summary, secs};

/// The lab soak: one soak per strain, the counts as a table, then every
/// change of hands seen.
pub(crate) fn bench_soak(
    nodes: usize,
    secs: u64,
    strains: Vec<meshlb_chaos::soak::SoakStrain>,
    seed: u64,
    quota_percent: f64,
) -> Result<(), LabError> {
    use meshlb_chaos::soak::soak;
    println!(
        "Live meshlb agents (standalone, fast profile, a Service per node) on {nodes} nodes, {secs} s per strain, \
         seed {seed}, CPU quota {quota_percent} % of a core:"
    );
    println!(
        "| strain | ran, s | addresses that changed hands | members declared down (summed over the agents' views) | members told they were down | stalls | periods throttled by the quota |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut changes = Vec::new();
    for strain in strains {
        let report = soak(nodes, strain, Duration::from_secs(secs), seed, quota_percent)?;
        let throttled = report.throttled.map_or("-".to_owned(), |(periods, throttled)| {
            format!("{throttled} of {periods}")
        });
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {throttled} |",
            strain.describe(),
            report.ran.as_secs_f64(),
            report.changes.len(),
            report.declared_down,
            report.rejoins,
            report.stalls
        );
        changes.extend(report.changes.into_iter().map(|c| (strain, c)));
    }
    for (strain, (at, address, announcers)) in changes {
        println!(
            "{}: {address} announced by [{}] at {at:.1} s",
            strain.describe(),
            announcers.join(", ")
        );
    }
    Ok(())
}

pub(crate) fn bench_serf(runs: usize, sizes: Vec<usize>) -> Result<(), LabError> {
    println!(
        "{} (LAN profile): failure detection after SIGKILL of one member, {runs} runs each; seconds",
        serf_version()
    );
    println!("| members | first detection median | p90 | max | all agree median | p90 | max | runs |");
    println!("|---|---|---|---|---|---|---|---|");
    for nodes in sizes {
        let (mut first, mut all) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            match meshlb_chaos::scenario::serf_detection(nodes) {
                Ok(d) => {
                    first.extend(d.first());
                    all.extend(d.all_agree());
                }
                Err(e) => eprintln!("run failed: {e}"),
            }
        }
        if let (Some(f), Some(a)) = (Summary::of(&first), Summary::of(&all)) {
            println!("| {nodes} | {} |", detection_cells(&f, &a));
        }
    }
    Ok(())
}

/// Table cells of a detection benchmark: first detection and all agree
/// (median, p90, max), then the run count.
fn detection_cells(first: &Summary, all: &Summary) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} | {}",
        secs(first.median),
        secs(first.p90),
        secs(first.max),
        secs(all.median),
        secs(all.p90),
        secs(all.max),
        all.runs
    )
}

pub(crate) fn bench_gossip(runs: usize, sizes: Vec<usize>, window: u64, loss: f64) -> Result<(), LabError> {
    use meshlb_chaos::gossip_bench::{crash_detection, steady_state};
    println!(
        "meshlb (fast profile) and {} (LAN profile) on the same nodes: detection of a crashed node, {runs} runs each; seconds",
        serf_version()
    );
    println!("| members | system | first detection median | p90 | max | all agree median | p90 | max | runs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for &nodes in &sizes {
        let mut samples: [(Vec<Duration>, Vec<Duration>); 2] = Default::default();
        for _ in 0..runs {
            match crash_detection(nodes) {
                Ok(run) => {
                    for (slot, d) in samples.iter_mut().zip([&run.meshlb, &run.serf]) {
                        slot.0.extend(d.first());
                        slot.1.extend(d.all_agree());
                    }
                }
                Err(e) => eprintln!("run failed: {e}"),
            }
        }
        let mut medians = Vec::new();
        for (system, (first, all)) in ["meshlb", "serf"].iter().zip(&samples) {
            if let (Some(f), Some(a)) = (Summary::of(first), Summary::of(all)) {
                println!("| {nodes} | {system} | {} |", detection_cells(&f, &a));
                medians.push((f.median, a.median));
            }
        }
        if let [(mesh_first, mesh_all), (serf_first, serf_all)] = medians[..] {
            ratios.push((
                nodes,
                serf_first.as_secs_f64() / mesh_first.as_secs_f64(),
                serf_all.as_secs_f64() / mesh_all.as_secs_f64(),
            ));
        }
    }
    println!();
    println!("| members | serf / meshlb, first detection (medians) | serf / meshlb, all agree (medians) |");
    println!("|---|---|---|");
    for (nodes, first, all) in ratios {
        println!("| {nodes} | {first:.1}x | {all:.1}x |");
    }
    println!();
    println!(
        "All members alive: bytes sent per node per second over {window} s, then live members declared down over {window} s of loss"
    );
    println!(
        "| members | meshlb bytes/node/s | serf bytes/node/s | loss between nodes | meshlb false downs | serf false failures |"
    );
    println!("|---|---|---|---|---|---|");
    for &nodes in &sizes {
        match steady_state(nodes, Duration::from_secs(window), loss) {
            Ok(s) => println!(
                "| {nodes} | {:.0} | {:.0} | {:.2} % | {} | {} |",
                s.meshlb_bytes_per_node_sec,
                s.serf_bytes_per_node_sec,
                s.path_loss_percent,
                s.meshlb_false_downs,
                s.serf_false_failures
            ),
            Err(e) => eprintln!("steady state with {nodes} members failed: {e}"),
        }
    }
    Ok(())
}

fn serf_version() -> String {
    std::process::Command::new("serf")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "serf".into())
}

/// The soaks of the owner-watch benchmark: their length in virtual
/// seconds (0: none) and how many per strain and profile, each on its own
/// seed.
pub(crate) struct Soaks {
    pub(crate) secs: u64,
    pub(crate) seeds: u64,
}

/// The owner watch on virtual time: failover with and without it at each
/// size (0 and 5 % loss), false failovers over soaks under each strain,
/// bytes per node; optionally the failover CDF. `suspicion` replaces
/// SWIM's suspicion time in both profiles.
/// `meshlb-lab bench mesh-scale`: one row per member count.
pub(crate) fn bench_mesh_scale(sizes: &[usize], services: usize, steady: u64, limit: u64, seed: u64) {
    use meshlb_chaos::mesh_scale_bench::measure;

    println!(
        "The mesh at scale on virtual time (fast profile, every member serving every service, one address each), \
         seed {seed}; steady state over {steady} s; an evaluation's time is wall time on this machine"
    );
    println!(
        "| members | services | record bytes (fragments) | start to agreement s | bytes/s per member, mean (most) | \
         evaluation median ms | p90 | max | evaluations per member per s | one service added: bytes per member beyond steady | agreed after s | crash failover s | wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1_000.0);
    let virtual_secs = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.2}", v as f64 / 1_000.0));
    for &members in sizes {
        let r = measure(members, services, steady, limit, seed);
        let (median, p90, max) = r.evaluation.map_or_else(
            || ("-".to_owned(), "-".to_owned(), "-".to_owned()),
            |e| (ms(e.median), ms(e.p90), ms(e.max)),
        );
        println!(
            "| {} | {} | {} ({}) | {} | {:.0} ({:.0}) | {median} | {p90} | {max} | {:.1} | {:.0} | {} | {} | {:.0} |",
            r.members,
            r.services,
            r.record.0,
            r.record.1,
            virtual_secs(r.converged_ms),
            r.steady_bytes.0,
            r.steady_bytes.1,
            r.evaluations_per_sec,
            r.change_bytes,
            virtual_secs(r.change_agreed_ms),
            virtual_secs(r.failover_ms),
            r.wall.as_secs_f64()
        );
    }
}

pub(crate) fn bench_owner_watch(
    runs: usize,
    sizes: Vec<usize>,
    soaks: Soaks,
    suspicion: Option<u64>,
    cdf: Option<&std::path::Path>,
) -> Result<(), LabError> {
    use meshlb_chaos::plot::Series;
    use meshlb_chaos::watch_bench::{crash_failovers, profiles};

    let [with, without] = profiles().map(|profile| meshlb_gossip::profile::Profile {
        suspect_to_down_ms: suspicion.unwrap_or(profile.suspect_to_down_ms),
        ..profile
    });
    println!(
        "SWIM's suspicion time: {} ms. Crash of an owner (a node announcing addresses) on virtual time, {runs} runs per row: \
         from the crash to every one of its addresses announced by one other node; seconds",
        with.suspect_to_down_ms
    );
    println!("| members | loss | detection | failover median | p90 | max | runs | missed | two announcers, ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut series = Vec::new();
    for &members in &sizes {
        // Services enough that most members own one, at most 20.
        let services = members.clamp(3, 20);
        for loss in [0.0, 0.05] {
            for profile in [&with, &without] {
                let result = crash_failovers(profile, members, services, loss, runs, 1_000 + members as u64);
                let percent = loss * 100.0;
                let Some(summary) = Summary::of(&result.took) else {
                    println!(
                        "| {members} | {percent:.0} % | {} | - | - | - | 0 | {} | - |",
                        profile.name, result.missed
                    );
                    continue;
                };
                println!(
                    "| {members} | {percent:.0} % | {} | {} | {} | {} | {} | {} | {} |",
                    profile.name,
                    secs(summary.median),
                    secs(summary.p90),
                    secs(summary.max),
                    summary.runs,
                    result.missed,
                    result.overlap_ms
                );
                if loss == 0.0 {
                    series.push(Series {
                        name: format!("{members} members, {}", profile.name),
                        samples: result.took.iter().map(Duration::as_secs_f64).collect(),
                    });
                }
            }
        }
    }
    if soaks.secs > 0 && soaks.seeds > 0 {
        soak_table(&[&with, &without], &soaks);
    }
    bandwidth_table(&[&with, &without], &sizes);
    if let Some(file) = cdf {
        let svg = meshlb_chaos::plot::cdf(
            "Crash of an owner: time until its addresses are announced again (virtual time, no loss)",
            "s",
            &series,
        );
        std::fs::write(file, svg).map_err(|e| LabError::io(format!("write {}", file.display()), e))?;
        println!();
        println!("CDF written to {}", file.display());
    }
    Ok(())
}

/// False failovers over soaks at 10 members under each strain, per
/// profile, one soak per seed.
fn soak_table(profiles: &[&meshlb_gossip::profile::Profile], soaks: &Soaks) {
    use meshlb_chaos::watch_bench::soak;
    use meshlb_gossip::sim::Strain;
    let Soaks { secs, seeds } = *soaks;
    println!();
    println!(
        "False failovers over soaks of {secs} virtual seconds at 10 members, 20 services, {seeds} seeds \
         (a soak stops at its first change):"
    );
    println!(
        "| strain | detection | soaks with a change | virtual seconds run | members declared down (by an owner's watcher) | stalls |"
    );
    println!("|---|---|---|---|---|---|");
    for strain in Strain::ALL {
        for profile in profiles {
            let reports: Vec<_> = (0..seeds)
                .filter_map(|seed| soak(profile, 10, 20, strain, secs, 77 + seed))
                .collect();
            let sum = |count: fn(&meshlb_gossip::sim::SoakReport) -> u64| reports.iter().map(count).sum::<u64>();
            let unconverged = seeds as usize - reports.len();
            println!(
                "| {} | {} | {} of {}{} | {:.0} | {} ({}) | {} |",
                strain.describe(),
                profile.name,
                reports.iter().filter(|r| !r.changes.is_empty()).count(),
                reports.len(),
                if unconverged > 0 {
                    format!(" ({unconverged} did not converge)")
                } else {
                    String::new()
                },
                sum(|r| r.ran_ms) as f64 / 1e3,
                sum(|r| r.declared_down),
                sum(|r| r.watch_declarations),
                sum(|r| r.stalls as u64)
            );
        }
    }
}

/// Bytes each node sends per second at each size, with one service and
/// with a service for most members, per profile (the first two).
fn bandwidth_table(profiles: &[&meshlb_gossip::profile::Profile; 2], sizes: &[usize]) {
    use meshlb_chaos::watch_bench::bandwidth;
    let [with, without] = *profiles;
    println!();
    println!(
        "Bytes sent per node per second (with the 50-byte envelope), 60 virtual seconds, steady state: mean / busiest node"
    );
    println!(
        "| members | services | {} | {} | ratio of the means |",
        with.name, without.name
    );
    println!("|---|---|---|---|---|");
    for &members in sizes {
        for services in [1, members.clamp(3, 20)] {
            let (Some((w_mean, w_most)), Some((s_mean, s_most))) = (
                bandwidth(with, members, services, 60, 5),
                bandwidth(without, members, services, 60, 5),
            ) else {
                continue;
            };
            println!(
                "| {members} | {services} | {w_mean:.0} / {w_most:.0} | {s_mean:.0} / {s_most:.0} | {:.2} |",
                w_mean / s_mean.max(1.0)
            );
        }
    }
}
