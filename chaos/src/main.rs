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
use std::time::Duration;

#[derive(Parser)]
#[command(name = "meshlb-lab", about = "meshlb's network-namespace lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The README demo on Kubernetes: the API server, the chart installed with helm, 3 agents with its
    /// identity; a pool, an L2Advertisement and a Service applied; crash the owner, print the outage.
    Demo {
        /// The standalone demo instead: 3 agents reading files, a router and a client.
        #[arg(long)]
        standalone: bool,
    },
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
        /// A real Kubernetes cluster: a control-plane host with the API
        /// server, scheduler and controller manager, and on every node
        /// containerd, a kubelet and kube-proxy (built by
        /// scripts/kube-testenv).
        #[arg(long)]
        kubernetes: bool,
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
    /// Allocation against a real API server: a burst of Services, and a cold start with many present (meshlb, and MetalLB's controller beside it when given).
    KubeAllocation {
        /// Services created at once.
        #[arg(long, default_value_t = 1000)]
        burst: usize,
        /// Services (each with an EndpointSlice) present before the allocator starts.
        #[arg(long, default_value_t = 10000)]
        existing: usize,
        /// MetalLB's controller binary, to run on the same workload.
        #[arg(long)]
        metallb_controller: Option<std::path::PathBuf>,
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
    /// meshlb's agent and gobgpd as speakers, side by side: IPv6 host routes until they are in bird2's RIB and the kernel FIB, and gone.
    BgpRoutes {
        /// Runs per route count and speaker.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Route counts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1000, 10000])]
        routes: Vec<usize>,
        /// Also draw the largest count's comparison into this SVG file.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
        /// Run meshlb's agent alone, without gobgpd beside it (for working
        /// on the agent; no comparison, no plot).
        #[arg(long, conflicts_with = "plot")]
        meshlb_only: bool,
    },
    /// meshlb's agent cold with many IPv6 Services: until the node delivers every address and bird2's kernel routes every one, with the order checked.
    BgpDelivery {
        /// Runs per route count.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Route counts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10000])]
        routes: Vec<usize>,
    },
    /// BGP mode through FRR: probes lost when a node leaves after meshlb's drain, against a crash.
    BgpDrain {
        /// Runs per case.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// BGP mode through FRR: the outage a crashed node causes a client behind the router, with and without BFD.
    BgpFailover {
        /// Runs per case.
        #[arg(long, default_value_t = 10)]
        runs: usize,
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
    /// meshlb's gossip mesh against serf in the same labs: crash detection, bandwidth, false failures under loss.
    Gossip {
        /// Crash runs per cluster size.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_values_t = vec![3, 10, 50])]
        nodes: Vec<usize>,
        /// Length of the bandwidth window and of the loss window, seconds.
        #[arg(long, default_value_t = 60)]
        window: u64,
        /// Frame loss between any two nodes in the loss window, percent.
        #[arg(long, default_value_t = 5.0)]
        loss: f64,
    },
    /// Layer 2 failover: meshlb's agents, keepalived (default and fast timers) and, given its speaker, MetalLB in the same run, per fault; and ARP answer latency.
    L2Failover {
        /// Runs per system, fault and size.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Node counts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![3, 10])]
        nodes: Vec<usize>,
        /// Faults to inject (all by default).
        #[arg(long, value_enum)]
        fault: Vec<FaultArg>,
        /// ARP requests per target in the latency measurement.
        #[arg(long, default_value_t = 200)]
        arp_requests: usize,
        /// Adds meshlb and MetalLB on real nodes (a cluster of kubelets,
        /// each system installed as its users do; a fresh cluster a run,
        /// a minute or two each): the node crashes, the agent is frozen,
        /// the agent's pod is deleted.
        #[arg(long)]
        real_nodes: bool,
        /// Also draw meshlb against MetalLB on real nodes into this SVG
        /// file (with --real-nodes).
        #[arg(long, requires = "real_nodes")]
        plot: Option<PathBuf>,
    },
    /// Moving from MetalLB: MetalLB installed by its chart and by its manifest, running and answering for 22 Services; the README's migration steps; how long until meshlb announces everything, and what a client probing one address every 10 ms lost.
    Migration {
        /// Runs per install method.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// ARP answer latency and gossip health of three agents while their configuration reloads, against idle.
    L2Reload {
        /// Services in the configuration (all but two allocated, not announced).
        #[arg(long, default_value_t = 20000)]
        services: usize,
        /// ARP requests per condition (at least).
        #[arg(long, default_value_t = 200)]
        arp_requests: usize,
        /// Seconds per condition (at least).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
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

fn demo() -> Result<(), LabError> {
    use meshlb_chaos::scenario::{MESHLB_VIP, meshlb_demo};
    println!("meshlb demo: a lab of 3 nodes, a router and a client on one segment;");
    println!("meshlb-agent runs on every node with examples/lab/config.yaml (Layer 2 mode).");
    let report = meshlb_demo(&self_binary()?)?;
    let name = |a: &std::net::IpAddr| match a.to_string().as_str() {
        "203.0.113.11" => "default/api",
        _ => "default/web",
    };
    let show = |owners: &[(std::net::IpAddr, Option<String>)]| {
        for (address, owner) in owners {
            println!(
                "  {:<12} {:<18} answered by {}",
                name(address),
                address.to_string(),
                owner.as_deref().unwrap_or("nobody")
            );
        }
    };
    show(&report.owners_before);
    println!(
        "the client probes {MESHLB_VIP} every 10 ms; {} crashes.",
        report.run.old_owner
    );
    print_failover("owner", &report.run);
    println!("after the crash:");
    show(&report.owners_after);
    println!("lab torn down.");
    Ok(())
}

fn kube_demo() -> Result<(), LabError> {
    println!("meshlb demo on Kubernetes: a cluster of 3 real nodes and a client on one segment, in");
    println!("network namespaces; meshlb installed with helm runs as the DaemonSet's pods.");
    let report = meshlb_chaos::kube_demo::kube_demo(&mut |line| println!("{line}"))?;
    print_failover("owner", &report.run);
    println!("  {:<24}: {}", "ServiceL2Status before", report.owner_before);
    println!("  {:<24}: {}", "ServiceL2Status after", report.owner_after);
    println!("lab torn down. `meshlb-lab demo --standalone` shows meshlb without Kubernetes.");
    Ok(())
}

/// Prints what a client saw of one crash failover; `role` names the node
/// that served (owner, master).
fn print_failover(role: &str, run: &meshlb_chaos::scenario::FailoverRun) {
    let line = |label: String, value: String| println!("  {label:<24}: {value}");
    line(format!("{role} before the crash"), run.old_owner.clone());
    line(
        format!("{role} after"),
        run.new_owner.clone().unwrap_or_else(|| "none".into()),
    );
    line(
        "outage".into(),
        format!("{} s ({} probes lost)", secs(run.outage.window), run.outage.lost),
    );
    if let Some(s) = run.outage.switchover {
        line(format!("crash to new {role}"), format!("{} s", secs(s)));
    }
    line("probes answered twice".into(), run.duplicate_answers.to_string());
}

fn smoke() -> Result<(), LabError> {
    let vrrp = VrrpSpec::default_timers(VIP);
    println!(
        "meshlb-lab smoke: 3 nodes run keepalived (VRRP, advert_int {} s) for {VIP};",
        vrrp.advert_interval
    );
    println!("a client probes {VIP} every 10 ms; the master node crashes.");
    let run = keepalived_failover(&self_binary()?, 3, &vrrp, NodeFault::Crash)?;
    print_failover("master", &run);
    println!("lab torn down. `meshlb-lab demo` shows meshlb's agents in the same place.");
    Ok(())
}

fn up(nodes: usize, clients: usize, router: Option<RouterArg>, ipv6: bool, kubernetes: bool) -> Result<(), LabError> {
    use meshlb_chaos::router::{Router, RouterKind};
    let lab = meshlb_chaos::Lab::build(&meshlb_chaos::LabSpec {
        nodes,
        clients,
        router: router.is_some(),
        control_plane: kubernetes,
        ipv6,
        ..meshlb_chaos::LabSpec::default()
    })?;
    let cluster = kubernetes
        .then(|| meshlb_chaos::cluster::Cluster::start(&lab))
        .transpose()?;
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
    if let Some(cluster) = &cluster {
        let kube = cluster.env();
        println!(
            "Kubernetes API server {} (kubeconfig {}); from a host, for one:\n  ip netns exec {} {} --kubeconfig {} get nodes",
            kube.server(),
            kube.kubeconfig().display(),
            kube.netns().unwrap_or_default(),
            kube.binary("kubectl").display(),
            kube.kubeconfig().display()
        );
    }
    println!("enter a host with `ip netns exec <netns> <command>`; Ctrl-C tears the lab down");
    loop {
        std::thread::park();
    }
}

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

fn bench_l2_failover(
    runs: usize,
    sizes: Vec<usize>,
    faults: Vec<FaultArg>,
    arp_requests: usize,
    real_nodes: bool,
    plot: Option<&std::path::Path>,
) -> Result<(), LabError> {
    use meshlb_chaos::cluster::{Announcer, ClusterFault};
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
        }
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

fn bench_l2_reload(services: usize, arp_requests: usize, window: Duration) -> Result<(), LabError> {
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

fn bench_keepalived(runs: usize, nodes: usize, faults: Vec<FaultArg>) -> Result<(), LabError> {
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

fn bench_gossip(runs: usize, sizes: Vec<usize>, window: u64, loss: f64) -> Result<(), LabError> {
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

fn bench_gobgp_routes(runs: usize, counts: Vec<usize>) -> Result<(), LabError> {
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

fn bench_bgp_routes(
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

fn bench_bgp_delivery(runs: usize, counts: Vec<usize>) -> Result<(), LabError> {
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

fn bench_migration(runs: usize) -> Result<(), LabError> {
    use meshlb_chaos::migration::{Install, MetallbCluster, readme_steps};
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .map_err(|e| LabError::io("read the README", e))?;
    let blocks = readme_steps(&readme)?;
    println!(
        "MetalLB v0.15.2 (controller and 3 speakers as pods on 3 real nodes, webhooks live) answering for 22 \
         Services; the README's migration steps; a client probing one address every 10 ms; {runs} runs each; seconds"
    );
    println!(
        "| MetalLB installed by | first command to meshlb announcing every address (median / max) | \
         MetalLB stopped to meshlb announcing every address (median / max) | probes lost (median / max) | \
         addresses changed | runs |"
    );
    println!("|---|---|---|---|---|---|");
    for install in [Install::Chart, Install::Manifest] {
        let mut steps = blocks.first().cloned().unwrap_or_default();
        if install == Install::Chart {
            steps.extend(blocks.get(1).cloned().unwrap_or_default());
        }
        let (mut took, mut gap, mut lost, mut changed) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let run = MetallbCluster::build(install).and_then(|mut cluster| cluster.migrate(&steps));
            match run {
                Ok(migration) => {
                    took.push(migration.took.as_secs_f64());
                    gap.push(migration.gap.as_secs_f64());
                    lost.push(migration.probes.lost() as f64);
                    changed += migration.addresses_changed.len();
                }
                Err(e) => eprintln!("{install}: a run failed: {e}"),
            }
        }
        let pair = |mut v: Vec<f64>, digits: usize| {
            v.sort_by(f64::total_cmp);
            format!(
                "{:.*} / {:.*}",
                digits,
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
                digits,
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        println!(
            "| {install} | {} | {} | {} | {changed} | {} |",
            pair(took.clone(), 1),
            pair(gap, 1),
            pair(lost, 0),
            took.len()
        );
    }
    Ok(())
}

fn bench_bgp_drain(runs: usize) -> Result<(), LabError> {
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
            match meshlb_chaos::scenario::bgp_node_exit(BgpAnnouncer::Meshlb { bfd: true }, drain, &lab_binary) {
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

fn bench_bgp_failover(runs: usize) -> Result<(), LabError> {
    let lab_binary = self_binary()?;
    println!(
        "3 nodes (meshlb agents, or gobgpd) -> FRR (ECMP, hold time 9 s); a client behind the router probing \
         every 10 ms; the answering node crashed; {runs} runs each; seconds"
    );
    println!("| case | outage (median / p90 / max) | probes lost (median) | runs |");
    println!("|---|---|---|---|");
    use meshlb_chaos::scenario::BgpAnnouncer;
    let cases = [
        ("meshlb with BFD 300 ms x 3", BgpAnnouncer::Meshlb { bfd: true }),
        ("meshlb without BFD", BgpAnnouncer::Meshlb { bfd: false }),
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

fn bench_kube_allocation(
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
                delay: Duration::from_millis(delay_ms),
                jitter: Duration::from_millis(jitter_ms),
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
            kubernetes,
        } => {
            install_teardown_on_signal();
            up(nodes, clients, router, !no_ipv6, kubernetes)
        }
        Command::Smoke => {
            install_teardown_on_signal();
            smoke()
        }
        Command::Demo { standalone } => {
            install_teardown_on_signal();
            if standalone { demo() } else { kube_demo() }
        }
        Command::Bench {
            bench: Bench::Keepalived { runs, nodes, fault },
        } => {
            install_teardown_on_signal();
            bench_keepalived(runs, nodes, fault)
        }
        Command::Bench {
            bench:
                Bench::BgpRoutes {
                    runs,
                    routes,
                    plot,
                    meshlb_only,
                },
        } => {
            install_teardown_on_signal();
            bench_bgp_routes(runs, routes, plot.as_deref(), meshlb_only)
        }
        Command::Bench {
            bench: Bench::BgpDelivery { runs, routes },
        } => {
            install_teardown_on_signal();
            bench_bgp_delivery(runs, routes)
        }
        Command::Bench {
            bench: Bench::Migration { runs },
        } => {
            install_teardown_on_signal();
            bench_migration(runs)
        }
        Command::Bench {
            bench: Bench::BgpDrain { runs },
        } => {
            install_teardown_on_signal();
            bench_bgp_drain(runs)
        }
        Command::Bench {
            bench: Bench::BgpFailover { runs },
        } => {
            install_teardown_on_signal();
            bench_bgp_failover(runs)
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
            bench:
                Bench::KubeAllocation {
                    burst,
                    existing,
                    metallb_controller,
                },
        } => bench_kube_allocation(burst, existing, metallb_controller),
        Command::Bench {
            bench:
                Bench::Gossip {
                    runs,
                    nodes,
                    window,
                    loss,
                },
        } => {
            install_teardown_on_signal();
            bench_gossip(runs, nodes, window, loss)
        }
        Command::Bench {
            bench:
                Bench::L2Failover {
                    runs,
                    nodes,
                    fault,
                    arp_requests,
                    real_nodes,
                    plot,
                },
        } => {
            install_teardown_on_signal();
            bench_l2_failover(runs, nodes, fault, arp_requests, real_nodes, plot.as_deref())
        }
        Command::Bench {
            bench:
                Bench::L2Reload {
                    services,
                    arp_requests,
                    seconds,
                },
        } => bench_l2_reload(services, arp_requests, Duration::from_secs(seconds)),
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
