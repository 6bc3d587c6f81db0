//! `meshlb-lab`: build labs, inject faults, run scenarios and benchmarks.
//!
//! Every lab this process builds is torn down on exit, on panic and on
//! SIGINT/SIGTERM; `meshlb-lab sweep` removes labs left by a process that
//! was killed outright.

mod allocation;
mod bgp;
mod l2;
mod mesh;
mod migration;
mod placement;

use clap::{Parser, Subcommand, ValueEnum};
use meshlb_chaos::LabError;
use meshlb_chaos::bench::secs;
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
    /// Several addresses per Service over node churn: addresses moved per node change and per-node spread, meshlb's placement against Deckhouse's rule (pure computation, no lab).
    Placement {
        /// Node objects at the start.
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// Services (1 to 3 addresses each).
        #[arg(long, default_value_t = 500)]
        services: usize,
        /// Node changes (fail, return, join, delete).
        #[arg(long, default_value_t = 200)]
        changes: usize,
        /// Seed of the churn.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also draw the comparison into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
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
    /// The mesh at scale on virtual time (the mesh's code on a simulated network, no lab): many members and services; the start, one record's size, bytes per member per second, each ownership evaluation's wall time, one service added, a crash.
    MeshScale {
        /// Member counts.
        #[arg(long, value_delimiter = ',', default_values_t = vec![100, 250])]
        members: Vec<usize>,
        /// Services (one address each, every member serving every one).
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Steady-state window, virtual seconds.
        #[arg(long, default_value_t = 10)]
        steady: u64,
        /// The longest wait for agreement, virtual seconds.
        #[arg(long, default_value_t = 300)]
        limit: u64,
        /// Seed of the simulated network.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The owner watch on virtual time (the mesh's code on a simulated network, no lab): crash failover with the watch and with SWIM alone at each size, false failovers over a soak under each strain, bytes per node.
    OwnerWatch {
        /// Crash runs per size and profile.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_values_t = vec![3, 10, 50, 200])]
        nodes: Vec<usize>,
        /// Length of each soak, virtual seconds (at 10 members; 0: none).
        #[arg(long, default_value_t = 600)]
        soak: u64,
        /// Soaks per strain and profile, each on its own seed.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// SWIM's suspicion time for both profiles, ms (default: the profile's).
        #[arg(long)]
        suspicion: Option<u64>,
        /// Also draw the failover distributions (a CDF) into this SVG file.
        #[arg(long)]
        cdf: Option<PathBuf>,
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
        /// Also draw the distribution of every system's crash outages (a
        /// CDF) into this SVG file.
        #[arg(long)]
        cdf: Option<PathBuf>,
        /// Also crash meshlb's answering node once more at the first size
        /// and draw that failover over time (who answered each probe, the
        /// announcements on the segment) into this SVG file.
        #[arg(long)]
        timeline: Option<PathBuf>,
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
    /// False failovers of live agents (standalone, a Service per node) under each strain, minutes of real time each: addresses that changed hands, members declared down, members told they were down.
    Soak {
        /// Nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Length of each soak, seconds.
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// Strains, one soak each.
        #[arg(long, value_delimiter = ',', default_values_t = vec![StrainArg::Loss, StrainArg::Bursts, StrainArg::Stalls, StrainArg::CpuQuota])]
        strains: Vec<StrainArg>,
        /// Seed of the stalls' timing and of the quota's victim.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The CPU quota, percent of a core.
        #[arg(long, default_value_t = 5.0)]
        quota: f64,
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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrainArg {
    Loss,
    Bursts,
    Stalls,
    CpuQuota,
}

impl std::fmt::Display for StrainArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.to_possible_value().ok_or(std::fmt::Error)?;
        f.write_str(value.get_name())
    }
}

impl From<StrainArg> for meshlb_chaos::soak::SoakStrain {
    fn from(s: StrainArg) -> Self {
        use meshlb_chaos::soak::SoakStrain;
        match s {
            StrainArg::Loss => SoakStrain::Loss,
            StrainArg::Bursts => SoakStrain::Bursts,
            StrainArg::Stalls => SoakStrain::Stalls,
            StrainArg::CpuQuota => SoakStrain::CpuQuota,
        }
    }
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
            l2::bench_keepalived(runs, nodes, fault)
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
            bgp::bench_bgp_routes(runs, routes, plot.as_deref(), meshlb_only)
        }
        Command::Bench {
            bench: Bench::BgpDelivery { runs, routes },
        } => {
            install_teardown_on_signal();
            bgp::bench_bgp_delivery(runs, routes)
        }
        Command::Bench {
            bench: Bench::Migration { runs },
        } => {
            install_teardown_on_signal();
            migration::bench_migration(runs)
        }
        Command::Bench {
            bench: Bench::BgpDrain { runs },
        } => {
            install_teardown_on_signal();
            bgp::bench_bgp_drain(runs)
        }
        Command::Bench {
            bench: Bench::BgpFailover { runs },
        } => {
            install_teardown_on_signal();
            bgp::bench_bgp_failover(runs)
        }
        Command::Bench {
            bench: Bench::GobgpRoutes { runs, routes },
        } => {
            install_teardown_on_signal();
            bgp::bench_gobgp_routes(runs, routes)
        }
        Command::Bench {
            bench: Bench::Allocator { services, pools, runs },
        } => allocation::bench_allocator(services, pools, runs),
        Command::Bench {
            bench:
                Bench::OwnerWatch {
                    runs,
                    nodes,
                    soak,
                    seeds,
                    suspicion,
                    cdf,
                },
        } => mesh::bench_owner_watch(
            runs,
            nodes,
            mesh::Soaks { secs: soak, seeds },
            suspicion,
            cdf.as_deref(),
        ),
        Command::Bench {
            bench:
                Bench::MeshScale {
                    members,
                    services,
                    steady,
                    limit,
                    seed,
                },
        } => {
            mesh::bench_mesh_scale(&members, services, steady, limit, seed);
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Placement {
                    nodes,
                    services,
                    changes,
                    seed,
                    plot,
                },
        } => placement::bench_placement(nodes, services, changes, seed, plot.as_deref()),
        Command::Bench {
            bench:
                Bench::KubeAllocation {
                    burst,
                    existing,
                    metallb_controller,
                },
        } => allocation::bench_kube_allocation(burst, existing, metallb_controller),
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
            mesh::bench_gossip(runs, nodes, window, loss)
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
                    cdf,
                    timeline,
                },
        } => {
            install_teardown_on_signal();
            l2::bench_l2_failover(
                runs,
                nodes,
                fault,
                arp_requests,
                real_nodes,
                l2::L2Figures {
                    plot: plot.as_deref(),
                    cdf: cdf.as_deref(),
                    timeline: timeline.as_deref(),
                },
            )
        }
        Command::Bench {
            bench:
                Bench::L2Reload {
                    services,
                    arp_requests,
                    seconds,
                },
        } => l2::bench_l2_reload(services, arp_requests, Duration::from_secs(seconds)),
        Command::Bench {
            bench: Bench::Serf { runs, nodes },
        } => {
            install_teardown_on_signal();
            mesh::bench_serf(runs, nodes)
        }
        Command::Bench {
            bench:
                Bench::Soak {
                    nodes,
                    secs,
                    strains,
                    seed,
                    quota,
                },
        } => {
            install_teardown_on_signal();
            mesh::bench_soak(nodes, secs, strains.into_iter().map(Into::into).collect(), seed, quota)
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
