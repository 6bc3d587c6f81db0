//! Scenarios: a lab, a workload, one fault, and what the client saw.

use crate::error::LabError;
use crate::keepalived::{self, VrrpSpec};
use crate::lab::{Lab, LabProcess, LabSpec};
use crate::probe::{Outage, Prober, RESPONDER_PORT};
use crate::random::random_below;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// A fault injected into the node that currently serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// The machine dies: every process SIGKILLed, the node cut off the segment.
    Crash,
    /// The load balancer process is frozen (SIGSTOP).
    Freeze,
    /// The load balancer process is stopped gracefully (SIGTERM).
    Stop,
}

impl std::fmt::Display for NodeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeFault::Crash => "crash",
            NodeFault::Freeze => "freeze",
            NodeFault::Stop => "graceful stop",
        })
    }
}

/// How long a scenario waits, after a fault, for another node to serve.
pub const OBSERVE_AFTER_FAULT: Duration = Duration::from_secs(10);

/// What one failover run measured.
#[derive(Debug, Clone)]
pub struct FailoverRun {
    /// The node that served before the fault.
    pub old_owner: String,
    /// Another node that served after it, if the client switched within
    /// the observation time (a frozen keepalived leaves the old node serving).
    pub new_owner: Option<String>,
    /// The nodes holding the virtual IP at the end: more than one is a split brain.
    pub vip_holders_after: Vec<String>,
    /// The outage as the prober saw it.
    pub outage: Outage,
    /// Probes answered twice.
    pub duplicate_answers: usize,
    /// When the fault had taken effect.
    pub fault_at: Instant,
    /// Every probe.
    pub log: crate::probe::ProbeLog,
}

/// Starts the lab responder (`<lab_binary> responder`) on every node.
pub fn start_responders(lab: &Lab, lab_binary: &Path) -> Result<Vec<LabProcess>, LabError> {
    let binary = lab_binary.to_string_lossy().into_owned();
    let nodes = lab.node_names();
    nodes
        .iter()
        .map(|n| {
            lab.spawn(
                n,
                "responder",
                &binary,
                &["responder", "--name", n, "--port", &RESPONDER_PORT.to_string()],
            )
        })
        .collect()
}

/// keepalived on `nodes` nodes (node1 has the highest priority) serving
/// 203.0.113.10; a client probes it every 10 ms; `fault` hits the master.
pub fn keepalived_failover(
    lab_binary: &Path,
    nodes: usize,
    vrrp: &VrrpSpec,
    fault: NodeFault,
) -> Result<FailoverRun, LabError> {
    let lab = Lab::build(&LabSpec::segment(nodes, 1, false))?;
    lab.run(|lab| keepalived_failover_in(lab, lab_binary, nodes, vrrp, fault))
}

fn keepalived_failover_in(
    lab: &Lab,
    lab_binary: &Path,
    nodes: usize,
    vrrp: &VrrpSpec,
    fault: NodeFault,
) -> Result<FailoverRun, LabError> {
    let _responders = start_responders(lab, lab_binary)?;
    let daemons: Vec<LabProcess> = (1..=nodes)
        .map(|i| keepalived::start(lab, &format!("node{i}"), 250u8.saturating_sub(10 * i as u8), vrrp))
        .collect::<Result<_, _>>()?;
    // node1 has the highest priority and preempts: it is the steady master.
    let master = "node1".to_owned();
    keepalived::wait_for_master(lab, &master, vrrp.vip, Duration::from_secs(15))?;
    let interval = Duration::from_millis(10);
    let prober = Prober::start(
        lab,
        "client1",
        SocketAddr::new(vrrp.vip.into(), RESPONDER_PORT),
        interval,
    )?;
    prober.wait_for_answer(Instant::now(), Duration::from_secs(5), |n| n == master)?;
    // Real failures strike at any phase of the protocol's timers: wait a
    // random 0.5 to 1.5 s so runs sample that phase instead of repeating one.
    std::thread::sleep(Duration::from_millis(500) + random_below(Duration::from_secs(1)));

    let master_daemon = daemons
        .iter()
        .find(|d| d.host == master)
        .ok_or_else(|| LabError::Invalid(format!("no keepalived on {master}")))?;
    match fault {
        NodeFault::Crash => lab.crash(&master)?,
        NodeFault::Freeze => master_daemon.freeze()?,
        NodeFault::Stop => master_daemon.terminate()?,
    }
    // The fault counts from when it has taken effect: probes answered while
    // it was being applied belong to "before".
    let fault_at = Instant::now();
    let new_owner = prober
        .wait_for_answer(fault_at, OBSERVE_AFTER_FAULT, |n| n != master)
        .ok();
    std::thread::sleep(Duration::from_millis(300));
    let mut vip_holders_after = keepalived::holders(lab, vrrp.vip);
    if fault == NodeFault::Crash {
        // The crashed node's namespace keeps its addresses, but it is cut
        // off and runs nothing: a dead machine holds no IP.
        vip_holders_after.retain(|h| *h != master);
    }
    let log = prober.stop();
    let outage = log
        .outage_after(fault_at)
        .ok_or_else(|| LabError::Invalid("no probe was answered after the fault".into()))?;
    if fault == NodeFault::Freeze {
        master_daemon.thaw()?;
    }
    Ok(FailoverRun {
        old_owner: master,
        new_owner,
        vip_holders_after,
        outage,
        duplicate_answers: log.duplicates().len(),
        fault_at,
        log,
    })
}

/// The configuration of meshlb's Layer 2 scenarios and of the demo
/// (`examples/lab/config.yaml`): web on 203.0.113.10 and 2001:db8:100::10,
/// api on 203.0.113.11, announced on eth0 by every node.
pub const MESHLB_LAB_CONFIG: &str = include_str!("../../examples/lab/config.yaml");

/// The address meshlb's failover scenarios probe (web's IPv4 address).
pub const MESHLB_VIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 10);

/// meshlb agents (default `fast` profile) on `nodes` nodes serving
/// [`MESHLB_LAB_CONFIG`]; a client probes [`MESHLB_VIP`] every 10 ms;
/// `fault` hits the node that answers, after a random 0.5–1.5 s. The
/// agents come from [`crate::agent::agent_binary`].
pub fn meshlb_failover(lab_binary: &Path, nodes: usize, fault: NodeFault) -> Result<FailoverRun, LabError> {
    let lab = Lab::build(&LabSpec::segment(nodes, 1, false))?;
    lab.run(|lab| meshlb_failover_in(lab, lab_binary, fault))
}

/// One crash of the answering node among `nodes` meshlb agents, drawn as
/// a [`crate::plot::Timeline`]: who answered each probe, and every
/// announcement of the address on the segment (captured on the bridge),
/// in seconds from the crash.
pub fn meshlb_failover_timeline(
    lab_binary: &Path,
    nodes: usize,
) -> Result<(FailoverRun, crate::plot::Timeline), LabError> {
    let lab = Lab::build(&LabSpec::segment(nodes, 1, false))?;
    lab.run(|lab| {
        let _responders = start_responders(lab, lab_binary)?;
        let names = lab.node_names();
        let agents = crate::agent::start_cluster_with(lab, &names, "fast", MESHLB_LAB_CONFIG)?;
        let detector = crate::splitbrain::SplitBrainDetector::start(lab)?;
        let capture_started = Instant::now();
        let run = fail_meshlb_owner(lab, &agents, NodeFault::Crash)?;
        let claims = detector.stop()?;
        let from_fault = |at: Instant| -> f64 {
            if at >= run.fault_at {
                (at - run.fault_at).as_secs_f64()
            } else {
                -(run.fault_at - at).as_secs_f64()
            }
        };
        let lane = |name: &str| names.iter().position(|n| n == name);
        let mut line = crate::plot::Timeline {
            lanes: names.clone(),
            ..Default::default()
        };
        for probe in &run.log.probes {
            match probe.answered_by().and_then(lane) {
                Some(l) => line.answered.push((from_fault(probe.sent), l)),
                None => line.unanswered.push(from_fault(probe.sent)),
            }
        }
        let fault_in_capture = from_fault(capture_started);
        for claim in claims.claims.iter().filter(|c| c.ip == IpAddr::V4(MESHLB_VIP)) {
            let node = lab.hosts().iter().find(|h| h.mac == claim.mac).map(|h| h.name.clone());
            if let Some(l) = node.as_deref().and_then(lane) {
                line.announcements.push((claim.at + fault_in_capture, l));
            }
        }
        line.marks.push((0.0, format!("{} crashes", run.old_owner)));
        if let Some(switch) = run.outage.switchover {
            line.marks
                .push((switch.as_secs_f64(), format!("{} answers", run.outage.after)));
        }
        Ok((run, line))
    })
}

fn meshlb_failover_in(lab: &Lab, lab_binary: &Path, fault: NodeFault) -> Result<FailoverRun, LabError> {
    let _responders = start_responders(lab, lab_binary)?;
    let names = lab.node_names();
    let agents = crate::agent::start_cluster_with(lab, &names, "fast", MESHLB_LAB_CONFIG)?;
    fail_meshlb_owner(lab, &agents, fault)
}

/// Probes [`MESHLB_VIP`] from `client1` every 10 ms, waits for an answer,
/// then after a random 0.5–1.5 s applies `fault` to the node that answers,
/// and measures what the client saw.
fn fail_meshlb_owner(lab: &Lab, agents: &[crate::agent::MeshAgent], fault: NodeFault) -> Result<FailoverRun, LabError> {
    fail_owner(lab, MESHLB_VIP, fault, |owner| {
        agents.iter().find(|a| a.node == owner).map(|a| &a.process)
    })
}

/// Probes `address` from `client1` every 10 ms, waits for an answer, then
/// after a random 0.5–1.5 s applies `fault` to the node that answers (to
/// its announcing process, `process_on` it, for a freeze or a stop), and
/// measures what the client saw; a frozen process is thawed afterwards.
pub fn fail_owner<'a>(
    lab: &Lab,
    address: std::net::Ipv4Addr,
    fault: NodeFault,
    process_on: impl Fn(&str) -> Option<&'a LabProcess>,
) -> Result<FailoverRun, LabError> {
    let prober = Prober::start(
        lab,
        "client1",
        SocketAddr::new(address.into(), RESPONDER_PORT),
        Duration::from_millis(10),
    )?;
    let owner = prober.wait_for_answer(Instant::now(), Duration::from_secs(15), |_| true)?;
    std::thread::sleep(Duration::from_millis(500) + random_below(Duration::from_secs(1)));
    let process = process_on(&owner).ok_or_else(|| LabError::Invalid(format!("no announcer on {owner}")))?;
    match fault {
        NodeFault::Crash => lab.crash(&owner)?,
        NodeFault::Freeze => process.freeze()?,
        NodeFault::Stop => process.terminate()?,
    }
    let fault_at = Instant::now();
    let new_owner = prober
        .wait_for_answer(fault_at, OBSERVE_AFTER_FAULT, |n| n != owner)
        .ok();
    std::thread::sleep(Duration::from_millis(300));
    let vip_holders_after = crate::probe::arp_answerers(lab, "client1", address)
        .into_iter()
        .filter_map(|mac| lab.hosts().iter().find(|h| h.mac == mac).map(|h| h.name.clone()))
        .collect();
    let log = prober.stop();
    let outage = log
        .outage_after(fault_at)
        .ok_or_else(|| LabError::Invalid("no probe was answered after the fault".into()))?;
    if fault == NodeFault::Freeze {
        process.thaw()?;
    }
    Ok(FailoverRun {
        old_owner: owner,
        new_owner,
        vip_holders_after,
        outage,
        duplicate_answers: log.duplicates().len(),
        fault_at,
        log,
    })
}

/// meshlb agents on every node of `lab` serving [`MESHLB_LAB_CONFIG`] (and
/// whatever else their configuration directory holds), once exactly one
/// answers `client1`'s ARP requests for [`MESHLB_VIP`] (within `limit`).
fn start_answering_cluster(lab: &Lab, limit: Duration) -> Result<Vec<crate::agent::MeshAgent>, LabError> {
    let names = lab.node_names();
    let agents = crate::agent::start_cluster_with(lab, &names, "fast", MESHLB_LAB_CONFIG)?;
    crate::wait::wait_for(limit, "one node to answer for the service address", || {
        crate::probe::arp_answerers(lab, "client1", MESHLB_VIP).len() == 1
    })?;
    Ok(agents)
}

/// ARP answer times a client sees, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct ArpLatency {
    /// For a service address, answered by a meshlb agent.
    pub meshlb_ms: Vec<f64>,
    /// For the owner node's own address, answered by its kernel.
    pub kernel_ms: Vec<f64>,
}

/// Three meshlb agents serving [`MESHLB_LAB_CONFIG`]; the client sends
/// `requests` broadcast ARP requests for [`MESHLB_VIP`] and as many for the
/// owner's own address, one after another, and records each answer's round
/// trip.
pub fn arp_latency(requests: usize) -> Result<ArpLatency, LabError> {
    let lab = Lab::build(&LabSpec::segment(3, 1, false))?;
    lab.run(|lab| {
        let _agents = start_answering_cluster(lab, Duration::from_secs(15))?;
        let owner_mac = crate::probe::arp_answerers(lab, "client1", MESHLB_VIP)
            .into_iter()
            .next()
            .ok_or_else(|| LabError::Invalid("the owner stopped answering".into()))?;
        let owner = lab
            .hosts()
            .iter()
            .find(|h| h.mac == owner_mac)
            .ok_or_else(|| LabError::Invalid(format!("no host has MAC {owner_mac}")))?
            .ipv4;
        Ok(ArpLatency {
            meshlb_ms: crate::probe::arp_round_trips(lab, "client1", MESHLB_VIP, requests),
            kernel_ms: crate::probe::arp_round_trips(lab, "client1", owner, requests),
        })
    })
}

/// ARP answers and gossip health in one condition of [`reload_health`].
#[derive(Debug, Clone, Default)]
pub struct AgentHealth {
    /// ARP requests sent for [`MESHLB_VIP`] (one `arping` each, waiting a
    /// second at most).
    pub arp_asked: usize,
    /// Round trips of those answered, ms.
    pub arp_ms: Vec<f64>,
    /// Configurations the agents accepted meanwhile, all agents together.
    pub reloads: usize,
    /// Members any agent declared down meanwhile.
    pub members_down: usize,
    /// Times an agent noticed it had been stalled for a second or more.
    pub stalls: usize,
}

/// What [`reload_health`] saw, idle and while reloading.
#[derive(Debug, Clone, Default)]
pub struct ReloadHealth {
    /// Bytes of configuration the agents read at every reload.
    pub config_bytes: usize,
    /// With the configuration unchanged.
    pub idle: AgentHealth,
    /// While the configuration changes every two seconds.
    pub reloading: AgentHealth,
}

/// How many services go into one file of [`reload_health`]'s
/// configuration (each file stays below the agent's default size limit).
const SERVICES_PER_FILE: usize = 5_000;

/// The filler of [`reload_health`]: `count` IPv6 services, numbered from
/// `first`, in a pool no L2Advertisement covers (allocated, not announced).
fn filler(first: usize, count: usize, extra: bool) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if first == 0 {
        text.push_str(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: filler, namespace: metallb-system}\n\
             spec: {addresses: ['2001:db8:200::/112'], autoAssign: false}\n",
        );
    }
    let services = (first..first + count)
        .map(|i| i.to_string())
        .chain(extra.then(|| format!("{first}-extra")));
    for name in services {
        let _ = write!(
            text,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: filler-{name}\n  namespace: default\n  \
             annotations: {{metallb.io/address-pool: filler}}\nspec: {{type: LoadBalancer, ipFamilyPolicy: SingleStack, \
             ipFamilies: [IPv6], ports: [{{port: 80}}]}}\n"
        );
    }
    text
}

/// Three meshlb agents serving [`MESHLB_LAB_CONFIG`] plus `services`
/// filler services (allocated, not announced). The client measures ARP
/// round trips for [`MESHLB_VIP`] (at least `requests`, for at least
/// `window`) with the configuration unchanged, then again while one file
/// of the configuration changes every two seconds (each change a full
/// reload: read, parse, validate, allocate); both times, the members any
/// agent declared down and the stalls any agent noticed.
pub fn reload_health(services: usize, requests: usize, window: Duration) -> Result<ReloadHealth, LabError> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let files: Vec<(String, String, String)> = (0..services.div_ceil(SERVICES_PER_FILE))
        .map(|k| {
            let first = k * SERVICES_PER_FILE;
            let count = SERVICES_PER_FILE.min(services - first);
            (
                format!("filler-{k}.yaml"),
                filler(first, count, false),
                filler(first, count, true),
            )
        })
        .collect();
    let config_bytes = MESHLB_LAB_CONFIG.len() + files.iter().map(|(_, text, _)| text.len()).sum::<usize>();
    let lab = Lab::build(&LabSpec::segment(3, 1, false))?;
    lab.run(|lab| {
        for (name, text, _) in &files {
            crate::agent::write_config_file(lab, name, text)?;
        }
        let names = lab.node_names();
        let agents = start_answering_cluster(lab, Duration::from_secs(120))?;
        let count = |agents: &[crate::agent::MeshAgent], what: &str| {
            agents
                .iter()
                .map(|a| a.process.log().matches(what).count())
                .sum::<usize>()
        };
        let measure = |lab: &Lab| -> AgentHealth {
            let from = crate::serf::now_secs();
            let (reloads, stalls) = (count(&agents, "configuration accepted"), count(&agents, "was stalled"));
            let started = Instant::now();
            let (mut arp_ms, mut arp_asked) = (Vec::new(), 0);
            while arp_asked < requests || started.elapsed() < window {
                arp_ms.extend(crate::probe::arp_round_trips(lab, "client1", MESHLB_VIP, 10));
                arp_asked += 10;
            }
            let until = crate::serf::now_secs();
            AgentHealth {
                arp_asked,
                arp_ms,
                reloads: count(&agents, "configuration accepted") - reloads,
                members_down: agents
                    .iter()
                    .flat_map(|a| {
                        names
                            .iter()
                            .map(move |m| a.state.events_between("member-down", m, from, until))
                    })
                    .sum(),
                stalls: count(&agents, "was stalled") - stalls,
            }
        };
        let idle = measure(lab);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = Arc::clone(&stop);
            let files = files.clone();
            let dir = lab.log_dir().join("meshlb").join("config");
            std::thread::spawn(move || {
                let mut turn = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (name, plain, extra) = &files[turn % files.len()];
                    let text = if (turn / files.len()).is_multiple_of(2) {
                        extra
                    } else {
                        plain
                    };
                    let tmp = dir.join(format!("{name}.tmp"));
                    if std::fs::write(&tmp, text)
                        .and_then(|()| std::fs::rename(&tmp, dir.join(name)))
                        .is_err()
                    {
                        return;
                    }
                    turn += 1;
                    for _ in 0..20 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };
        let reloading = measure(lab);
        stop.store(true, Ordering::Relaxed);
        let _ = writer.join();
        Ok(ReloadHealth {
            config_bytes,
            idle,
            reloading,
        })
    })
}

/// What the demo saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Each service address and the node answering for it, before the crash.
    pub owners_before: Vec<(IpAddr, Option<String>)>,
    /// The same after the crash.
    pub owners_after: Vec<(IpAddr, Option<String>)>,
    /// The failover of [`MESHLB_VIP`] as the client saw it.
    pub run: FailoverRun,
}

/// The README demo: a lab of 3 nodes, a router and a client; meshlb agents
/// on the nodes serving [`MESHLB_LAB_CONFIG`]; which node answers for each
/// service address; the client probes [`MESHLB_VIP`] every 10 ms while its
/// owner crashes; the outage, and the owners afterwards.
pub fn meshlb_demo(lab_binary: &Path) -> Result<DemoReport, LabError> {
    let lab = Lab::build(&LabSpec {
        router: true,
        ..LabSpec::segment(3, 1, true)
    })?;
    lab.run(|lab| {
        let _responders = start_responders(lab, lab_binary)?;
        let names = lab.node_names();
        let agents = crate::agent::start_cluster_with(lab, &names, "fast", MESHLB_LAB_CONFIG)?;
        let addresses: Vec<IpAddr> = ["203.0.113.10", "2001:db8:100::10", "203.0.113.11"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        crate::wait::wait_for(Duration::from_secs(15), "every service address to be answered", || {
            owners(lab, &addresses).iter().all(|(_, o)| o.is_some())
        })?;
        let owners_before = owners(lab, &addresses);
        let run = fail_meshlb_owner(lab, &agents, NodeFault::Crash)?;
        Ok(DemoReport {
            owners_before,
            owners_after: owners(lab, &addresses),
            run,
        })
    })
}

/// The node answering ARP (IPv4) or NDP (IPv6) for each address, as the
/// client sees it; `None` for no answer or several.
fn owners(lab: &Lab, addresses: &[IpAddr]) -> Vec<(IpAddr, Option<String>)> {
    let node_of =
        |mac: meshlb_wire::ethernet::MacAddr| lab.hosts().iter().find(|h| h.mac == mac).map(|h| h.name.clone());
    addresses
        .iter()
        .map(|address| {
            let owner = match address {
                IpAddr::V4(v4) => {
                    let macs = crate::probe::arp_answerers(lab, "client1", *v4);
                    if macs.len() == 1 {
                        macs.into_iter().next().and_then(node_of)
                    } else {
                        None
                    }
                }
                IpAddr::V6(v6) => crate::probe::ndp_answerer(lab, "client1", *v6).and_then(node_of),
            };
            (*address, owner)
        })
        .collect()
}

/// serf on `nodes` nodes; after a random 0.5–1.5 s, the last node's agent
/// is SIGKILLed; returns when each survivor declared it failed.
pub fn serf_detection(nodes: usize) -> Result<crate::serf::Detection, LabError> {
    let lab = Lab::build(&LabSpec::segment(nodes, 0, false))?;
    lab.run(|lab| {
        let names = lab.node_names();
        let agents = crate::serf::start_cluster(lab, &names)?;
        std::thread::sleep(Duration::from_millis(500) + random_below(Duration::from_secs(1)));
        crate::serf::kill_and_detect(&agents, &format!("node{nodes}"), Duration::from_secs(60))
    })
}

/// One route-scale run: from the speaker loading the routes (or withdrawing
/// them) until the router's RIB and kernel FIB hold all of them (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteScaleRun {
    /// Until every route is in bird2's RIB.
    pub rib: Duration,
    /// Until every route is in the router's kernel FIB.
    pub fib: Duration,
    /// From the withdrawal until bird2's RIB has none left.
    pub withdraw_rib: Duration,
    /// From the withdrawal until the kernel FIB has none left.
    pub withdraw_fib: Duration,
}

/// gobgpd on node1 announces `count` IPv6 host routes (2001:db8:100::/64)
/// to bird2 on the router over an IPv6 eBGP session, `runs` times: the
/// routes are loaded into gobgpd while the session is down (from an MRT
/// dump), then the session is enabled and timed from Established until
/// bird2's RIB and the router's kernel FIB hold all of them; then one "delete all" is timed
/// until both are empty. (The lab's IPv4 ranges hold only 768 host routes,
/// so host routes at this scale are IPv6 /128s.)
pub fn gobgp_route_scale(count: usize, runs: usize) -> Result<Vec<SpeakerRouteScaleRun>, LabError> {
    route_scale_lab()?.run(|lab| gobgp_route_scale_in(lab, count, runs))
}

/// The route-scale lab: one node and the router, with IPv6.
fn route_scale_lab() -> Result<Lab, LabError> {
    Lab::build(&LabSpec {
        nodes: 1,
        clients: 0,
        router: true,
        ipv6: true,
        ..LabSpec::default()
    })
}

/// node1's and the router's IPv6 addresses, and bird2 on the router
/// peering with node1 over IPv6.
fn route_scale_peering(lab: &Lab) -> Result<(Ipv6Addr, Ipv6Addr, crate::router::Router), LabError> {
    use crate::router::{NODE_ASN, Router, RouterKind};
    let node_v6 = lab
        .host("node1")?
        .ipv6
        .ok_or_else(|| LabError::Invalid("node1 has no IPv6".into()))?;
    let router_v6 = lab
        .host("router")?
        .ipv6
        .ok_or_else(|| LabError::Invalid("router has no IPv6".into()))?;
    let router = Router::start_with_peers(lab, RouterKind::Bird, vec![(node_v6.into(), NODE_ASN)])?;
    Ok((node_v6, router_v6, router))
}

fn gobgp_route_scale_in(lab: &Lab, count: usize, runs: usize) -> Result<Vec<SpeakerRouteScaleRun>, LabError> {
    use crate::router::{NODE_ASN, ROUTER_ASN, kernel_route_count};
    use crate::wait::wait_for;
    let node = lab.host("node1")?.clone();
    let (node_v6, router_v6, router) = route_scale_peering(lab)?;
    let speaker = crate::speaker::GobgpSpeaker::start(lab, "node1", NODE_ASN, router_v6.into(), ROUTER_ASN)?;
    router.wait_established(lab, 1, Duration::from_secs(60))?;

    let (base, _) = crate::lab::SERVICE_NET_V6;
    let prefixes: Vec<meshlb_wire::bgp::Prefix6> = (1..=count as u128)
        .map(|i| meshlb_wire::bgp::Prefix::host(Ipv6Addr::from(u128::from(base) + i)))
        .collect();
    // Files of at most 250 routes: what one `gobgp mrt inject` is sure to
    // deliver (see `GobgpSpeaker::load_mrt`).
    let mut files = Vec::new();
    for (i, chunk) in prefixes.chunks(250).enumerate() {
        let dump = crate::mrt::table_dump(node_v6.into(), NODE_ASN, node.ipv4, chunk, node_v6.into());
        let file = lab.log_dir().join(format!("routes-{count}-{i}.mrt"));
        std::fs::write(&file, dump).map_err(|e| LabError::io("write MRT dump", e))?;
        files.push((file, chunk.len()));
    }

    let limit = Duration::from_secs(120);
    let count_v6 = |lab: &Lab| router.bird_route_count(lab);
    let mut out = Vec::new();
    for _ in 0..runs {
        // Untimed: the session is down while gobgpd's RIB is filled.
        speaker.disable_peer(lab, router_v6.into())?;
        wait_for(limit, "bird2's RIB to empty", || count_v6(lab).is_ok_and(|n| n == 0))?;
        wait_for(limit, "the kernel FIB to empty", || {
            kernel_route_count(lab, "router", "bird").is_ok_and(|n| n == 0)
        })?;
        let pid = u32::try_from(speaker.pid()).map_err(|_| LabError::Invalid("gobgpd's pid".into()))?;
        let cpu_unloaded = crate::kube_bench::wait_idle(pid)?;
        speaker.load_mrt(lab, &files, "ipv6")?;
        let cpu_before = crate::kube_bench::wait_idle(pid)?;

        // Timed from the session reaching Established, by bird2's own
        // millisecond clock (session setup waits on gobgpd's reconnect
        // timer, which is not route transfer): until the last route is
        // imported into bird2's RIB, and until the kernel FIB holds all
        // (polled, so a few milliseconds late at worst).
        // Then one "delete all" until both are empty.
        speaker.enable_peer(lab, router_v6.into())?;
        let timing = time_announced_and_withdrawn(lab, &router, count, limit, || speaker.withdraw_all(lab))?;
        let (peak_rss_kib, cpu_after) = crate::kube_bench::usage(pid)?;
        out.push(SpeakerRouteScaleRun {
            timing,
            peak_rss_kib,
            load_cpu: cpu_before.saturating_sub(cpu_unloaded),
            cpu: cpu_after.saturating_sub(cpu_before),
        });
    }
    Ok(out)
}

/// [`time_announced`], then [`time_withdrawn`] by `withdraw`.
fn time_announced_and_withdrawn(
    lab: &Lab,
    router: &crate::router::Router,
    count: usize,
    limit: Duration,
    withdraw: impl FnOnce() -> Result<(), LabError>,
) -> Result<RouteScaleRun, LabError> {
    let (rib, fib) = time_announced(lab, router, count, limit)?;
    let (withdraw_rib, withdraw_fib) = time_withdrawn(lab, router, limit, withdraw)?;
    Ok(RouteScaleRun {
        rib,
        fib,
        withdraw_rib,
        withdraw_fib,
    })
}

/// Once bird2's RIB and the router's kernel FIB hold `count` routes: how
/// long after the session's Established each did, by bird2's own
/// millisecond clock (session setup is not route transfer) for the RIB,
/// polled (a few milliseconds late at worst) for the FIB.
fn time_announced(
    lab: &Lab,
    router: &crate::router::Router,
    count: usize,
    limit: Duration,
) -> Result<(Duration, Duration), LabError> {
    use crate::router::kernel_route_count;
    use crate::wait::wait_for;
    wait_for(limit, &format!("{count} routes in bird2's RIB"), || {
        router.bird_route_count(lab).is_ok_and(|n| n >= count)
    })?;
    wait_for(limit, &format!("{count} routes in the kernel FIB"), || {
        kernel_route_count(lab, "router", "bird").is_ok_and(|n| n >= count)
    })?;
    let fib_done = std::time::SystemTime::now();
    let established = router.bird_established_at(lab, 0)?;
    let last_import = router
        .bird_last_import(lab)?
        .ok_or_else(|| LabError::Invalid("bird2 shows no routes".into()))?;
    Ok((
        last_import.duration_since(established).unwrap_or_default(),
        fib_done.duration_since(established).unwrap_or_default(),
    ))
}

/// How long after `withdraw` bird2's RIB, and then the router's kernel
/// FIB, were empty (polled).
fn time_withdrawn(
    lab: &Lab,
    router: &crate::router::Router,
    limit: Duration,
    withdraw: impl FnOnce() -> Result<(), LabError>,
) -> Result<(Duration, Duration), LabError> {
    use crate::router::kernel_route_count;
    use crate::wait::wait_for;
    let start = Instant::now();
    withdraw()?;
    wait_for(limit, "bird2's RIB to empty", || {
        router.bird_route_count(lab).is_ok_and(|n| n == 0)
    })?;
    let rib = start.elapsed();
    wait_for(limit, "the kernel FIB to empty", || {
        kernel_route_count(lab, "router", "bird").is_ok_and(|n| n == 0)
    })?;
    Ok((rib, start.elapsed()))
}

/// One route-scale run of a speaker: what [`RouteScaleRun`] measures, with
/// the speaker's peak RSS and its CPU time in two phases, the same for
/// both speakers: loading the routes with the session down (meshlb's
/// agent from its start: configuration read, Services assigned, addresses
/// delivered; gobgpd from the first MRT file injected until the last is
/// in its RIB; each until idle), then the session (from enabling it until
/// every route is withdrawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerRouteScaleRun {
    /// The timings.
    pub timing: RouteScaleRun,
    /// The speaker's peak resident memory, KiB.
    pub peak_rss_kib: u64,
    /// The speaker's CPU time (user and system) loading the routes.
    pub load_cpu: Duration,
    /// The speaker's CPU time (user and system) from enabling the session
    /// until every route is withdrawn.
    pub cpu: Duration,
}

/// The configuration of the route-scale run: `count` single-stack IPv6
/// Services from one pool, announced (with `advertised`) to bird2 over
/// IPv6, in files of at most 2,000 Services (the agent's file limit).
fn route_scale_config(router_v6: Ipv6Addr, count: usize, advertised: bool) -> Vec<(String, String)> {
    use crate::router::{NODE_ASN, ROUTER_ASN};
    let (base, _) = crate::lab::SERVICE_NET_V6;
    let last = Ipv6Addr::from(u128::from(base) + count as u128);
    let first = Ipv6Addr::from(u128::from(base) + 1);
    let mut main = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: scale, namespace: metallb-system}}\n\
         spec: {{addresses: ['{first}-{last}']}}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\n\
         spec: {{myASN: {NODE_ASN}, peerASN: {ROUTER_ASN}, peerAddress: '{router_v6}', holdTime: 90s}}\n"
    );
    if advertised {
        main.push_str(
            "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n\
             metadata: {name: scale, namespace: metallb-system}\nspec: {ipAddressPools: [scale]}\n",
        );
    }
    let mut files = vec![(crate::agent::CONFIG_FILE.to_owned(), main)];
    for (chunk, start) in (0..count).step_by(2000).enumerate() {
        let mut text = String::new();
        for i in start..count.min(start + 2000) {
            let _ = std::fmt::Write::write_fmt(
                &mut text,
                format_args!(
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: default}}\n\
                 spec: {{type: LoadBalancer, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], ports: [{{port: 80}}]}}\n"
                ),
            );
        }
        files.push((format!("services-{chunk}.yaml"), text));
    }
    files
}

/// meshlb's agent on node1 announces `count` IPv6 host routes (one per
/// Service) to bird2 over IPv6 eBGP, `runs` times, measured as
/// [`gobgp_route_scale`] measures gobgpd: each run starts the agent with
/// bird2's session disabled and waits until the node delivers every
/// address (the routes loaded: configuration read, Services assigned, from
/// its state file after the first run); then bird2 enables the session,
/// timed from bird2's Established until its RIB and the kernel FIB hold
/// every route; then the BGPAdvertisement is removed (the agent withdraws
/// every route in UPDATEs) and timed until both are empty; then the agent
/// is killed.
pub fn meshlb_route_scale(count: usize, runs: usize) -> Result<Vec<SpeakerRouteScaleRun>, LabError> {
    route_scale_lab()?.run(|lab| meshlb_route_scale_in(lab, count, runs))
}

fn meshlb_route_scale_in(lab: &Lab, count: usize, runs: usize) -> Result<Vec<SpeakerRouteScaleRun>, LabError> {
    use crate::wait::wait_for;
    let (_, router_v6, router) = route_scale_peering(lab)?;
    let write = |advertised: bool| -> Result<(), LabError> {
        for (name, text) in route_scale_config(router_v6, count, advertised) {
            crate::agent::write_config_file(lab, &name, &text)?;
        }
        Ok(())
    };
    let names = lab.node_names();
    let keys = crate::agent::random_key(1)?;
    let extra: Vec<String> = ["--cluster-size", "1", "--bgp-drain-seconds", "0"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let limit = Duration::from_secs(180);
    wait_for(limit, "bird2 answering", || router.bird_route_count(lab).is_ok())?;
    let mut out = Vec::new();
    for _ in 0..runs {
        write(true)?;
        router.set_bird_peer_enabled(lab, 0, false)?;
        let agent = crate::agent::start_agent_with(lab, "node1", &names, &keys, "fast", &extra)?;
        let pid = u32::try_from(agent.process.pid()).map_err(|_| LabError::Invalid("agent pid".into()))?;
        wait_for(limit, &format!("{count} addresses delivered on node1"), || {
            crate::router::kernel_route_count(lab, "node1", &PROTOCOL_MESHLB.to_string()).is_ok_and(|n| n >= count)
        })?;
        let load_cpu = crate::kube_bench::wait_idle(pid)?;
        router.set_bird_peer_enabled(lab, 0, true)?;
        let timing = time_announced_and_withdrawn(lab, &router, count, limit, || write(false))?;
        let (peak_rss_kib, cpu) = crate::kube_bench::usage(pid)?;
        agent.process.kill()?;
        agent.process.wait_exit(Duration::from_secs(10))?;
        wait_for(limit, "the session down", || {
            router.established_peers(lab).is_ok_and(|p| p.is_empty())
        })?;
        out.push(SpeakerRouteScaleRun {
            timing,
            peak_rss_kib,
            load_cpu,
            cpu: cpu.saturating_sub(load_cpu),
        });
    }
    Ok(out)
}

/// What [`delivery_order`] saw: when a node's service addresses became
/// deliverable and when the router installed their routes, and the
/// reverse on withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRun {
    /// The routes the router's kernel FIB installed.
    pub routes_installed: usize,
    /// Of those, the destinations whose one Echo Request, sent the moment
    /// the route was installed, got no reply.
    pub unanswered: Vec<IpAddr>,
    /// Routes installed before their address was on the node.
    pub announced_early: Vec<IpAddr>,
    /// The addresses removed from the node.
    pub addresses_removed: usize,
    /// Addresses removed from the node while the router still had their
    /// route.
    pub removed_early: Vec<IpAddr>,
    /// From the agent's start until the node had every address.
    pub addresses_in: Duration,
    /// From the agent's start until the router's FIB had every route.
    pub routes_in: Duration,
}

/// meshlb's agent on node1 starts cold with `count` IPv6 Services
/// announced to bird2 (as [`meshlb_route_scale`] runs it), while the
/// router's kernel is watched and each route's destination pinged from
/// the router the moment the route is installed, and node1's kernel is
/// watched for the local routes that deliver its addresses; then the BGPAdvertisement is removed and
/// everything is watched going away.
pub fn delivery_order(count: usize) -> Result<DeliveryRun, LabError> {
    route_scale_lab()?.run(|lab| delivery_order_in(lab, count))
}

/// The protocol number bird2 installs its routes with (RTPROT_BIRD).
const PROTOCOL_BIRD: u8 = 12;
use meshlb_wire::rtnetlink::PROTOCOL_MESHLB;

fn delivery_order_in(lab: &Lab, count: usize) -> Result<DeliveryRun, LabError> {
    use crate::kernel_watch::{Change, KernelWatch, first_times};
    use crate::router::kernel_route_count;
    use crate::wait::wait_for;
    let (_, router_v6, _router) = route_scale_peering(lab)?;
    let write = |advertised: bool| -> Result<(), LabError> {
        for (name, text) in route_scale_config(router_v6, count, advertised) {
            crate::agent::write_config_file(lab, &name, &text)?;
        }
        Ok(())
    };
    write(true)?;
    let service_net = crate::lab::SERVICE_NET_V6;
    let at_node = KernelWatch::start(lab, "node1")?;
    let at_router = KernelWatch::probing_new_routes(lab, "router", PROTOCOL_BIRD, service_net)?;
    let names = lab.node_names();
    let keys = crate::agent::random_key(1)?;
    let extra: Vec<String> = ["--cluster-size", "1"].iter().map(|s| (*s).to_owned()).collect();
    let limit = Duration::from_secs(120);
    let started = Instant::now();
    let agent = crate::agent::start_agent_with(lab, "node1", &names, &keys, "fast", &extra)?;
    wait_for(limit, &format!("{count} routes in the router's FIB"), || {
        kernel_route_count(lab, "router", "bird").is_ok_and(|n| n >= count)
    })?;
    // The last replies.
    std::thread::sleep(Duration::from_secs(1));
    write(false)?;
    wait_for(limit, "the router's FIB to empty", || {
        kernel_route_count(lab, "router", "bird").is_ok_and(|n| n == 0)
    })?;
    wait_for(limit, "node1's service addresses to go", || {
        crate::router::kernel_route_count(lab, "node1", &PROTOCOL_MESHLB.to_string()).is_ok_and(|n| n == 0)
    })?;
    agent.process.kill()?;
    let node = at_node.stop()?;
    let routed = at_router.stop()?;

    let service = |address: &IpAddr| matches!(address, IpAddr::V6(v6) if crate::kernel_watch::inside(*v6, service_net));
    // When each service address's host route (of `protocol`) was added,
    // or removed, in `events`.
    let routes = |events: &[crate::kernel_watch::Event], added: bool, protocol: u8| {
        first_times(events, |c| match *c {
            Change::RouteAdded(a, 128, p) if added && p == protocol && service(&a) => Some(a),
            Change::RouteRemoved(a, 128, p) if !added && p == protocol && service(&a) => Some(a),
            _ => None,
        })
    };
    let (added, removed) = (
        routes(&node, true, PROTOCOL_MESHLB),
        routes(&node, false, PROTOCOL_MESHLB),
    );
    let (installed, uninstalled) = (
        routes(&routed, true, PROTOCOL_BIRD),
        routes(&routed, false, PROTOCOL_BIRD),
    );
    let replies = first_times(&routed, |c| match c {
        Change::EchoReply(a) => Some(*a),
        _ => None,
    });
    let latest = |times: &std::collections::BTreeMap<IpAddr, Instant>| {
        times
            .values()
            .max()
            .map(|at| at.saturating_duration_since(started))
            .unwrap_or_default()
    };
    Ok(DeliveryRun {
        routes_installed: installed.len(),
        unanswered: installed.keys().filter(|a| !replies.contains_key(a)).copied().collect(),
        announced_early: installed
            .iter()
            .filter(|(a, at)| added.get(a).is_none_or(|added| added > at))
            .map(|(a, _)| *a)
            .collect(),
        addresses_removed: removed.len(),
        removed_early: removed
            .iter()
            .filter(|(a, at)| installed.contains_key(a) && uninstalled.get(a).is_none_or(|gone| gone > at))
            .map(|(a, _)| *a)
            .collect(),
        addresses_in: latest(&added),
        routes_in: latest(&installed),
    })
}

/// Who announces the service address to the router in
/// [`bgp_crash_failover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpAnnouncer {
    /// meshlb's agents, with BFD (this interval, ms, both ways, x 3, on
    /// both sides) or without.
    Meshlb {
        /// BFD's interval.
        bfd_ms: Option<u32>,
    },
    /// gobgpd on every node (no BFD), the address on each node's loopback.
    Gobgp,
}

/// A crash of the node answering a client behind the router, in BGP mode:
/// three nodes announce 203.0.113.20 to FRR (ECMP; hold time 9 s), by
/// `announcer`; the prober on the remote host sends every 10 ms; the
/// answering node is crashed (its processes killed, its link cut: no FIN,
/// no Cease) at a random moment, and the outage runs from the crashed
/// node's last answer until another node answers, as the router gives up
/// the crashed next hop (BFD's detection time, or the hold time).
pub fn bgp_crash_failover(announcer: BgpAnnouncer, lab_binary: &Path) -> Result<Outage, LabError> {
    bgp_node_exit(announcer, false, lab_binary).map(|(outage, _)| outage)
}

/// [`bgp_crash_failover`], or with `drain` a planned exit: the answering
/// node's agent is stopped (SIGTERM: it drains) and the node crashes once
/// it has exited, as a machine powered off after maintenance. Also returns
/// the probes sent after the fault (the SIGTERM, or the crash) that got no
/// answer.
pub fn bgp_node_exit(announcer: BgpAnnouncer, drain: bool, lab_binary: &Path) -> Result<(Outage, usize), LabError> {
    let lab = Lab::build(&LabSpec {
        router: true,
        remote_client: true,
        ..LabSpec::segment(3, 0, false)
    })?;
    lab.run(|lab| bgp_crash_failover_in(lab, announcer, drain, lab_binary))
}

fn bgp_crash_failover_in(
    lab: &Lab,
    announcer: BgpAnnouncer,
    drain: bool,
    lab_binary: &Path,
) -> Result<(Outage, usize), LabError> {
    let bfd_ms = match announcer {
        BgpAnnouncer::Meshlb { bfd_ms } => bfd_ms,
        BgpAnnouncer::Gobgp => None,
    };
    let bfd = bfd_ms.is_some();
    use crate::router::{BfdTimers, NODE_ASN, ROUTER_ASN, Router, RouterKind, RouterOptions, kernel_routes};
    use crate::wait::wait_for;
    let nodes: Vec<(IpAddr, u32)> = lab
        .hosts_with(crate::lab::Role::Node)
        .map(|h| (IpAddr::V4(h.ipv4), NODE_ASN))
        .collect();
    let options = RouterOptions {
        bfd: bfd_ms.map(|interval_ms| BfdTimers {
            interval_ms,
            multiplier: 3,
        }),
        ..RouterOptions::default()
    };
    let router = Router::start_with_options(lab, RouterKind::Frr, nodes.clone(), options)?;
    let router_address = lab.host("router")?.ipv4;
    let (profile, peer_bfd) = match bfd_ms {
        Some(ms) => (
            format!(
                "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: fast, namespace: metallb-system}}\n\
                 spec: {{receiveInterval: {ms}, transmitInterval: {ms}, detectMultiplier: 3}}\n---\n"
            ),
            ", bfdProfile: fast",
        ),
        None => (String::new(), ""),
    };
    let config = crate::agent::bgp_config(
        router_address.into(),
        "203.0.113.20/32",
        &format!(", holdTime: 9s{peer_bfd}"),
        "",
        &profile,
    );
    let names = lab.node_names();
    // Kept until the crash: the agents or the speakers.
    let mut _agents = Vec::new();
    let mut _speakers = Vec::new();
    match announcer {
        BgpAnnouncer::Meshlb { .. } => _agents = crate::agent::start_cluster_with(lab, &names, "fast", &config)?,
        BgpAnnouncer::Gobgp => {
            for node in &names {
                lab.exec(node, "ip", &["addr", "add", "203.0.113.20/32", "dev", "lo"])?;
                let speaker = crate::speaker::GobgpSpeaker::start_with_hold_time(
                    lab,
                    node,
                    NODE_ASN,
                    router_address.into(),
                    ROUTER_ASN,
                    Some(9),
                )?;
                speaker.announce(lab, "203.0.113.20/32", &crate::speaker::Announcement::default())?;
                _speakers.push(speaker);
            }
        }
    }
    router.wait_established(lab, nodes.len(), Duration::from_secs(60))?;
    wait_for(Duration::from_secs(60), "an ECMP route over every node", || {
        kernel_routes(lab, "router")
            .unwrap_or_default()
            .iter()
            .any(|r| r.prefix == "203.0.113.20/32" && r.next_hops.len() == nodes.len())
    })?;
    if bfd {
        wait_for(Duration::from_secs(60), "every BFD session up", || {
            router.bfd_up_peers(lab).is_ok_and(|p| p.len() == nodes.len())
        })?;
    }
    let _responders = start_responders(lab, lab_binary)?;
    let prober = Prober::start(
        lab,
        "remote",
        SocketAddr::new(
            "203.0.113.20"
                .parse()
                .map_err(|_| LabError::Invalid("address".into()))?,
            RESPONDER_PORT,
        ),
        Duration::from_millis(10),
    )?;
    let owner = prober.wait_for_answer(Instant::now(), Duration::from_secs(15), |_| true)?;
    std::thread::sleep(Duration::from_millis(500) + random_below(Duration::from_secs(1)));
    let fault_at = Instant::now();
    let agent = _agents.iter().find(|a| a.node == owner);
    match agent {
        Some(agent) if drain => {
            agent.process.terminate()?;
            agent.process.wait_exit(Duration::from_secs(30))?;
            lab.crash(&owner)?;
        }
        _ => lab.crash(&owner)?,
    }
    prober.wait_for_answer(fault_at, Duration::from_secs(30), |n| n != owner)?;
    std::thread::sleep(Duration::from_millis(300));
    let log = prober.stop();
    let lost = log
        .probes
        .iter()
        .filter(|p| p.sent >= fault_at && p.answers.is_empty())
        .count();
    // The fault takes some milliseconds to apply (isolation, then the
    // kill; a drain takes seconds): probes sent meanwhile are still
    // answered by the node leaving. Its outage runs from its last answer.
    let last_answer = log
        .probes
        .iter()
        .filter(|p| p.sent >= fault_at && p.answered_by() == Some(owner.as_str()))
        .map(|p| p.sent)
        .max();
    let gone_at = last_answer.map_or(fault_at, |sent| sent + Duration::from_nanos(1));
    let outage = log
        .outage_after(gone_at)
        .ok_or_else(|| LabError::Invalid("no probe was answered after the fault".into()))?;
    Ok((outage, lost))
}
