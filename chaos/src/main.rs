//! `meshlb-lab`: build labs, inject faults, run scenarios and benchmarks.
//!
//! Every lab this process builds is torn down on exit, on panic and on
//! SIGINT/SIGTERM; `meshlb-lab sweep` removes labs left by a process that
//! was killed outright.

use clap::{Parser, Subcommand, ValueEnum};
use meshlb_chaos::LabError;
use meshlb_chaos::bench::{Summary, secs};
use meshlb_chaos::keepalived::VrrpSpec;
use meshlb_chaos::netns::{SweepScope, sweep};
use meshlb_chaos::probe::run_responder;
use meshlb_chaos::scenario::{NodeFault, keepalived_failover};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "meshlb-lab", about = "meshlb's network-namespace lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a 3-node lab, fail over keepalived under a 10 ms prober, print the outage, tear down.
    Smoke,
    /// Build a lab, print its hosts, keep it up until Ctrl-C (then tear it down).
    Up {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Run this BGP router on a router host, peering with every node.
        #[arg(long, value_enum)]
        router: Option<RouterArg>,
        /// IPv4 only.
        #[arg(long)]
        no_ipv6: bool,
    },
    /// Remove lab namespaces (and their processes) left behind by dead runs.
    Sweep {
        /// Remove every lab, including those of running processes.
        #[arg(long)]
        all: bool,
    },
    /// Run a benchmark and print a table.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// Hold packets queued to NFQUEUE for a delay (run inside a lab's switch namespace).
    Delayer {
        /// NFQUEUE number.
        #[arg(long)]
        queue: u16,
        /// Delay in milliseconds.
        #[arg(long)]
        delay_ms: u64,
        /// Jitter in milliseconds (uniform, both ways).
        #[arg(long, default_value_t = 0)]
        jitter_ms: u64,
        /// Percentage of packets let through at once.
        #[arg(long, default_value_t = 0.0)]
        reorder_percent: f64,
    },
    /// Answer UDP probes with this node's name (run inside a lab node).
    Responder {
        /// Name to answer with.
        #[arg(long)]
        name: String,
        /// UDP port.
        #[arg(long, default_value_t = meshlb_chaos::probe::RESPONDER_PORT)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// The IP allocator: services over pools, from scratch, on restart, one more; time and peak memory.
    Allocator {
        /// Services.
        #[arg(long, default_value_t = 10000)]
        services: usize,
        /// Pools (each an IPv4 /21 and an IPv6 /116).
        #[arg(long, default_value_t = 10)]
        pools: usize,
        /// Runs.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// keepalived (VRRP) failover: outage window per fault, default and fast timers.
    Keepalived {
        /// Runs per fault and timer setting.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Nodes in the VRRP group.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Faults to inject (all by default).
        #[arg(long, value_enum)]
        fault: Vec<FaultArg>,
    },
    /// gobgpd as a speaker: IPv6 host routes until they are in bird2's RIB and the kernel FIB, and gone.
    GobgpRoutes {
        /// Runs per route count.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Route counts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1000, 10000])]
        routes: Vec<usize>,
    },
    /// serf (memberlist, MetalLB's detector): SIGKILL of a member until the others declare it failed.
    Serf {
        /// Runs per cluster size.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_values_t = vec![3, 10])]
        nodes: Vec<usize>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RouterArg {
    Bird,
    Frr,
    Gobgp,
}

#[derive(Clone, Copy, ValueEnum)]
enum FaultArg {
    Crash,
    Freeze,
    Stop,
}

impl From<FaultArg> for NodeFault {
    fn from(f: FaultArg) -> Self {
        match f {
            FaultArg::Crash => NodeFault::Crash,
            FaultArg::Freeze => NodeFault::Freeze,
            FaultArg::Stop => NodeFault::Stop,
        }
    }
}

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn self_binary() -> Result<PathBuf, LabError> {
    std::env::current_exe().map_err(|e| LabError::Invalid(format!("cannot find the meshlb-lab binary: {e}")))
}

/// On SIGINT/SIGTERM, tear down this process's labs, then exit.
fn install_teardown_on_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        eprintln!("meshlb-lab: cannot install signal handlers; use `meshlb-lab sweep` after an interrupt");
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("meshlb-lab: signal {signal}, tearing down labs");
            let _ = sweep(&SweepScope::Owner(std::process::id() as i32));
            std::process::exit(128 + signal);
        }
    });
}

fn smoke() -> Result<(), LabError> {
    let vrrp = VrrpSpec::default_timers(VIP);
    println!(
        "meshlb-lab smoke: 3 nodes run keepalived (VRRP, advert_int {} s) for {VIP};",
        vrrp.advert_interval
    );
    println!("a client probes {VIP} every 10 ms; the master node crashes.");
    let run = keepalived_failover(&self_binary()?, 3, &vrrp, NodeFault::Crash)?;
    println!("  master before the crash : {}", run.old_owner);
    println!(
        "  master after            : {}",
        run.new_owner.as_deref().unwrap_or("none")
    );
    println!(
        "  outage                  : {} s ({} probes lost)",
        secs(run.outage.window),
        run.outage.lost
    );
    println!("  probes answered twice   : {}", run.duplicate_answers);
    if let Some(s) = run.outage.switchover {
        println!("  crash to new master     : {} s", secs(s));
    }
    println!("lab torn down. meshlb's own agent replaces keepalived here once Layer 2 mode lands.");
    Ok(())
}

fn up(nodes: usize, clients: usize, router: Option<RouterArg>, ipv6: bool) -> Result<(), LabError> {
    use meshlb_chaos::router::{Router, RouterKind};
    let lab = meshlb_chaos::Lab::build(&meshlb_chaos::LabSpec {
        nodes,
        clients,
        router: router.is_some(),
        ipv6,
        ..meshlb_chaos::LabSpec::default()
    })?;
    let _router = router
        .map(|r| {
            let kind = match r {
                RouterArg::Bird => RouterKind::Bird,
                RouterArg::Frr => RouterKind::Frr,
                RouterArg::Gobgp => RouterKind::Gobgp,
            };
            Router::start(&lab, kind)
        })
        .transpose()?;
    println!("lab {} is up; logs in {}", lab.name(), lab.log_dir().display());
    for h in lab.hosts() {
        let v6 = h.ipv6.map(|a| a.to_string()).unwrap_or_default();
        println!("  {:<8} netns {:<24} {} {} {}", h.name, h.netns, h.mac, h.ipv4, v6);
    }
    println!("enter a host with `ip netns exec <netns> <command>`; Ctrl-C tears the lab down");
    loop {
        std::thread::park();
    }
}

fn bench_keepalived(runs: usize, nodes: usize, faults: Vec<FaultArg>) -> Result<(), LabError> {
    let faults: Vec<NodeFault> = if faults.is_empty() {
        vec![NodeFault::Crash, NodeFault::Freeze, NodeFault::Stop]
    } else {
        faults.into_iter().map(NodeFault::from).collect()
    };
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
            let windows: Vec<_> = completed.iter().map(|r| r.outage.window).collect();
            if let Some(s) = Summary::of(&windows) {
                let moved = completed.iter().filter(|r| r.new_owner.is_some()).count();
                let split = completed.iter().filter(|r| r.vip_holders_after.len() > 1).count();
                println!(
                    "| advert_int {} s | {fault} | {} | {} | {} | {} | {moved}/{} | {split}/{} |",
                    vrrp.advert_interval,
                    secs(s.median),
                    secs(s.p90),
                    secs(s.max),
                    s.runs,
                    s.runs,
                    s.runs
                );
            }
        }
    }
    Ok(())
}

fn bench_serf(runs: usize, sizes: Vec<usize>) -> Result<(), LabError> {
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
            println!(
                "| {nodes} | {} | {} | {} | {} | {} | {} | {} |",
                secs(f.median),
                secs(f.p90),
                secs(f.max),
                secs(a.median),
                secs(a.p90),
                secs(a.max),
                a.runs
            );
        }
    }
    Ok(())
}

fn bench_gobgp_routes(runs: usize, counts: Vec<usize>) -> Result<(), LabError> {
    println!("gobgpd (speaker, node1) -> bird2 (router), one IPv6 eBGP session, {runs} runs each; seconds");
    println!(
        "| routes | session Established -> all in RIB (median / p90 / max) | -> all in kernel FIB | delete all -> RIB empty | -> FIB empty | runs |"
    );
    println!("|---|---|---|---|---|---|");
    let cell = |s: Option<Summary>| {
        s.map(|s| format!("{} / {} / {}", secs(s.median), secs(s.p90), secs(s.max)))
            .unwrap_or_default()
    };
    for count in counts {
        let done = meshlb_chaos::scenario::gobgp_route_scale(count, runs)?;
        let pick = |f: fn(&meshlb_chaos::scenario::RouteScaleRun) -> std::time::Duration| {
            Summary::of(&done.iter().map(f).collect::<Vec<_>>())
        };
        println!(
            "| {count} | {} | {} | {} | {} | {} |",
            cell(pick(|r| r.rib)),
            cell(pick(|r| r.fib)),
            cell(pick(|r| r.withdraw_rib)),
            cell(pick(|r| r.withdraw_fib)),
            done.len()
        );
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

fn bench_allocator(services: usize, pools: usize, runs: usize) -> Result<(), LabError> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Responder { name, port } => {
            run_responder(&name, port).map_err(|e| LabError::io(format!("responder on port {port}"), e))
        }
        Command::Delayer {
            queue,
            delay_ms,
            jitter_ms,
            reorder_percent,
        } => {
            let impairment = meshlb_chaos::delay::Impairment {
                delay: std::time::Duration::from_millis(delay_ms),
                jitter: std::time::Duration::from_millis(jitter_ms),
                reorder_percent,
            };
            meshlb_chaos::delay::run_delayer(queue, &impairment)
                .map_err(|e| LabError::io(format!("delayer on NFQUEUE {queue}"), e))
        }
        Command::Sweep { all } => {
            let scope = if all { SweepScope::All } else { SweepScope::Orphaned };
            sweep(&scope).map(|removed| println!("removed {} namespaces: {}", removed.len(), removed.join(" ")))
        }
        Command::Up {
            nodes,
            clients,
            router,
            no_ipv6,
        } => {
            install_teardown_on_signal();
            up(nodes, clients, router, !no_ipv6)
        }
        Command::Smoke => {
            install_teardown_on_signal();
            smoke()
        }
        Command::Bench {
            bench: Bench::Keepalived { runs, nodes, fault },
        } => {
            install_teardown_on_signal();
            bench_keepalived(runs, nodes, fault)
        }
        Command::Bench {
            bench: Bench::GobgpRoutes { runs, routes },
        } => {
            install_teardown_on_signal();
            bench_gobgp_routes(runs, routes)
        }
        Command::Bench {
            bench: Bench::Allocator { services, pools, runs },
        } => bench_allocator(services, pools, runs),
        Command::Bench {
            bench: Bench::Serf { runs, nodes },
        } => {
            install_teardown_on_signal();
            bench_serf(runs, nodes)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshlb-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
