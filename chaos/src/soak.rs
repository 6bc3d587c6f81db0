//! The lab soak: live meshlb agents (standalone, the `fast` profile with
//! the owner watch) on one lab segment under one strain for minutes of
//! real time, counting what must never happen while no member dies: an
//! address changing hands, a member declared down, a member told it was
//! down (it rejoins under a renewed identity). The strains are the issue's:
//! loss on every path, bursts of heavy loss, an owner's agent stopped for
//! 200 ms at random, an owner's agent held to 5 % of a core by a CPU quota.
//! Minutes of real time each, so a benchmark (`meshlb-lab soak`), not a
//! test; [`crate::watch_bench`] soaks the same strains on virtual time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::agent::{MeshAgent, start_cluster_with};
use crate::error::LabError;
use crate::gossip_bench::per_port_loss;
use crate::lab::{Lab, LabSpec};
use crate::random::XorShift;
use crate::serf::now_secs;

/// What strikes the live cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoakStrain {
    /// 5 % loss between every two nodes.
    Loss,
    /// 5 % loss, and every 10 s a 2 s burst of 30 %.
    Bursts,
    /// Every 1.5 s one owner's agent stopped (SIGSTOP) for 200 ms, owners
    /// in turn.
    Stalls,
    /// One owner's agent held to a share of a core (a CPU quota of that
    /// many ms in every 100 ms; the is 5 %) throughout.
    CpuQuota,
}

impl SoakStrain {
    /// In words, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            SoakStrain::Loss => "5 % loss",
            SoakStrain::Bursts => "5 % loss, 2 s of 30 % every 10 s",
            SoakStrain::Stalls => "an owner's agent stopped 200 ms every 1.5 s",
            SoakStrain::CpuQuota => "an owner's agent held to a CPU quota",
        }
    }
}

/// What one soak counted.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// How long it ran.
    pub ran: Duration,
    /// Addresses whose announcers changed from the ones at the start: (seconds
    /// into the soak, address, announcers then).
    pub changes: Vec<(f64, String, Vec<String>)>,
    /// Live members declared down, summed over the agents' views.
    pub declared_down: usize,
    /// Agents told they were down (each rejoined).
    pub rejoins: usize,
    /// Stalls inflicted.
    pub stalls: usize,
    /// Under the CPU quota: the periods of 100 ms the agent ran in, and in
    /// how many of them the quota stopped it.
    pub throttled: Option<(u64, u64)>,
}

/// The agents' configuration: one pool and `services` Layer 2 Services
/// (`default/web-<i>`), one address each, announced on `eth0`.
fn services_config(services: usize) -> String {
    let mut config = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
         metadata: {name: lab, namespace: metallb-system}\nspec: {addresses: [203.0.113.10-203.0.113.40]}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lab, namespace: metallb-system}\n\
         spec: {ipAddressPools: [lab], interfaces: [eth0]}\n",
    );
    for i in 0..services {
        config.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web-{i}, namespace: default}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ));
    }
    config
}

/// Every address some agent reports, with the agents announcing it.
fn announcers(agents: &[MeshAgent]) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for agent in agents {
        for (address, (_, here)) in agent.state.ownership() {
            let entry = seen.entry(address).or_default();
            if here {
                entry.insert(agent.node.clone());
            }
        }
    }
    seen
}

/// A CPU quota cgroup holding one process, removed (the process moved back
/// to the root first) when dropped.
struct CpuQuota {
    dir: PathBuf,
    root: PathBuf,
    pid: i32,
}

impl CpuQuota {
    /// Puts `pid` in a new cgroup `name` of the `cpu` hierarchy allowed
    /// `quota_us` of CPU time in every 100 ms.
    fn hold(name: &str, pid: i32, quota_us: u64) -> Result<CpuQuota, LabError> {
        let root = crate::cluster::cpu_hierarchy()?;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        // Removed again if a write below fails.
        let quota = CpuQuota { dir, root, pid };
        let write = |file: &str, text: &str| {
            let path = quota.dir.join(file);
            std::fs::write(&path, text).map_err(|e| LabError::io(format!("write {}", path.display()), e))
        };
        write("cpu.cfs_period_us", "100000")?;
        write("cpu.cfs_quota_us", &quota_us.to_string())?;
        write("cgroup.procs", &pid.to_string())?;
        Ok(quota)
    }

    /// `(periods, periods throttled)` so far, from `cpu.stat`.
    fn throttled(&self) -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        Some((field("nr_periods ")?, field("nr_throttled ")?))
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // Every thread of the process back to the root, then the cgroup,
        // now empty, can go.
        let _ = std::fs::write(self.root.join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Runs `nodes` agents with a Service per node on a fresh lab, waits until
/// every address has one announcer, then applies `strain` for `duration`
/// and counts (`seed` sets the stalls' timing and the quota's victim;
/// `quota_percent` of a core is the CPU quota's).
pub fn soak(
    nodes: usize,
    strain: SoakStrain,
    duration: Duration,
    seed: u64,
    quota_percent: f64,
) -> Result<SoakReport, LabError> {
    if !(1.0..=100.0).contains(&quota_percent) {
        return Err(LabError::Invalid(format!(
            "a CPU quota of {quota_percent} % of a core is not between 1 (the kernel's least, 1 ms in 100) and 100"
        )));
    }
    let lab = Lab::build(&LabSpec::segment(nodes, 0, false))?;
    lab.run(|lab| {
        let names = lab.node_names();
        let agents = start_cluster_with(lab, &names, "fast", &services_config(nodes))?;
        let start = crate::wait::wait_until(
            Duration::from_secs(60),
            || "every address to have one announcer".into(),
            || {
                let seen = announcers(&agents);
                (seen.len() == nodes && seen.values().all(|a| a.len() == 1)).then_some(seen)
            },
        )?;
        // Settled: a few seconds more for the records to reach everyone.
        std::thread::sleep(Duration::from_secs(3));
        let owners: Vec<String> = start
            .values()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let by_node: BTreeMap<&str, &MeshAgent> = agents.iter().map(|a| (a.node.as_str(), a)).collect();
        let mut random = XorShift::from_seed(seed);
        let from = now_secs();
        let began = Instant::now();
        let quota = match strain {
            SoakStrain::CpuQuota => {
                let victim = &owners[(random.unit() * owners.len() as f64) as usize % owners.len()];
                Some(CpuQuota::hold(
                    &format!("{}-{victim}-quota", lab.name()),
                    by_node[victim.as_str()].process.pid(),
                    (quota_percent * 1_000.0).round() as u64,
                )?)
            }
            _ => None,
        };
        let mut report = SoakReport {
            ran: Duration::ZERO,
            changes: Vec::new(),
            declared_down: 0,
            rejoins: 0,
            stalls: 0,
            throttled: None,
        };
        let (light, heavy) = (per_port_loss(5.0), per_port_loss(30.0));
        let mut loss_now = None;
        let mut next_stall = Duration::from_millis(500 + (random.unit() * 1_000.0) as u64);
        let mut last = start.clone();
        while began.elapsed() < duration {
            let t = began.elapsed();
            let loss = match strain {
                SoakStrain::Loss => Some(light),
                SoakStrain::Bursts if t.as_millis() % 10_000 >= 8_000 => Some(heavy),
                SoakStrain::Bursts => Some(light),
                SoakStrain::Stalls | SoakStrain::CpuQuota => None,
            };
            if loss != loss_now {
                for node in &names {
                    lab.set_loss(node, loss.unwrap_or(0.0))?;
                }
                loss_now = loss;
            }
            if strain == SoakStrain::Stalls && t >= next_stall {
                let victim = &owners[report.stalls % owners.len()];
                let process = &by_node[victim.as_str()].process;
                process.freeze()?;
                std::thread::sleep(Duration::from_millis(200));
                process.thaw()?;
                report.stalls += 1;
                next_stall = began.elapsed() + Duration::from_millis(1_300 + (random.unit() * 400.0) as u64);
            }
            std::thread::sleep(Duration::from_millis(50));
            let now = announcers(&agents);
            for (address, nodes_now) in &now {
                let changed = start.get(address) != Some(nodes_now) && last.get(address) != Some(nodes_now);
                if changed {
                    report.changes.push((
                        began.elapsed().as_secs_f64(),
                        address.clone(),
                        nodes_now.iter().cloned().collect(),
                    ));
                }
            }
            last = now;
        }
        report.ran = began.elapsed();
        report.throttled = quota.as_ref().and_then(CpuQuota::throttled);
        drop(quota);
        lab.heal()?;
        let until = now_secs();
        for agent in &agents {
            report.declared_down += agent.state.count_events("member-down", from, until);
            report.rejoins += agent.state.count_events("rejoined", from, until);
        }
        Ok(report)
    })
}
