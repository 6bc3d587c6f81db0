//! meshlb's gossip mesh against serf (memberlist, MetalLB's failure
//! detector) in one lab: both run on every node at once, so they see the
//! same topology, the same loss and the same crash at the same instant.
//!
//! - [`crash_detection`]: a node dies (every process SIGKILLed, the node
//!   cut off the segment); how long until the first survivor, and until
//!   every survivor, declares it down, per system.
//! - [`steady_state`]: all members alive; bytes each system sends per node
//!   per second (IP packets leaving each node, counted by nftables in the
//!   node's namespace, so both are measured the same way), and how many
//!   times a live member is declared down under random loss.

use std::time::Duration;

use crate::agent::{self, MeshAgent};
use crate::error::LabError;
use crate::lab::{Lab, LabSpec};
use crate::random::random_below;
use crate::serf::{self, Detection, SerfAgent, now_secs};
use crate::wait::wait_for;

/// Both systems' detection of one crash.
#[derive(Debug, Clone)]
pub struct CrashDetection {
    /// meshlb (fast profile).
    pub meshlb: Detection,
    /// serf (LAN profile).
    pub serf: Detection,
}

/// What both systems did in a window with every member alive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyState {
    /// Members.
    pub nodes: usize,
    /// Window length.
    pub window: Duration,
    /// Frame loss between any two nodes in the loss window (percent).
    pub path_loss_percent: f64,
    /// meshlb: mean bytes sent per node per second (IP packets).
    pub meshlb_bytes_per_node_sec: f64,
    /// serf: the same.
    pub serf_bytes_per_node_sec: f64,
    /// meshlb: times any agent declared a live member down.
    pub meshlb_false_downs: usize,
    /// serf: times any agent declared a live member failed.
    pub serf_false_failures: usize,
}

fn lab_of(nodes: usize) -> Result<Lab, LabError> {
    let lab = Lab::build(&LabSpec::segment(nodes, 0, false))?;
    // Every node talks to every other: beyond a few dozen nodes the
    // machine-wide neighbour table would overflow (see the method's doc).
    lab.pin_neighbours()?;
    Ok(lab)
}

/// Starts meshlb (profile `fast`) and serf on every node of a fresh lab of
/// `nodes`, waits a random 0.5–1.5 s after both converged, crashes the last
/// node and waits (up to 60 s) until every survivor of both systems
/// declared it down.
pub fn crash_detection(nodes: usize) -> Result<CrashDetection, LabError> {
    let lab = lab_of(nodes)?;
    lab.run(|lab| {
        let names = lab.node_names();
        let serf_agents = serf::start_cluster(lab, &names)?;
        let mesh_agents = agent::start_cluster(lab, &names, "fast")?;
        std::thread::sleep(Duration::from_millis(500) + random_below(Duration::from_secs(1)));
        let victim = names
            .last()
            .ok_or_else(|| LabError::Invalid("no nodes".into()))?
            .clone();
        let at = now_secs();
        lab.crash(&victim)?;
        let mesh_survivors: Vec<&MeshAgent> = mesh_agents.iter().filter(|a| a.node != victim).collect();
        let serf_survivors: Vec<&SerfAgent> = serf_agents.iter().filter(|a| a.node != victim).collect();
        let mesh_seen = |a: &MeshAgent| a.state.event_at("member-down", &victim, at);
        let serf_seen = |a: &SerfAgent| a.failed_at(&victim);
        wait_for(
            Duration::from_secs(60),
            &format!("every meshlb and serf agent to declare {victim} down"),
            || {
                mesh_survivors.iter().all(|a| mesh_seen(a).is_some())
                    && serf_survivors.iter().all(|a| serf_seen(a).is_some())
            },
        )?;
        Ok(CrashDetection {
            meshlb: Detection::since(at, mesh_survivors.iter().map(|a| (a.node.clone(), mesh_seen(a)))),
            serf: Detection::since(at, serf_survivors.iter().map(|a| (a.node.clone(), serf_seen(a)))),
        })
    })
}

/// Per-node loss that makes `path_percent` between two nodes: a frame
/// crosses the sender's and the receiver's switch port, each dropping
/// independently.
pub fn per_port_loss(path_percent: f64) -> f64 {
    100.0 * (1.0 - (1.0 - path_percent / 100.0).sqrt())
}

/// Starts both systems on every node of a fresh lab of `nodes`, measures
/// the bytes each sends over `window` with no loss, then applies
/// `path_loss_percent` between every pair of nodes for another `window` and
/// counts the live members each declared down.
pub fn steady_state(nodes: usize, window: Duration, path_loss_percent: f64) -> Result<SteadyState, LabError> {
    let lab = lab_of(nodes)?;
    lab.run(|lab| {
        let names = lab.node_names();
        for node in &names {
            install_counters(lab, node)?;
        }
        let serf_agents = serf::start_cluster(lab, &names)?;
        let mesh_agents = agent::start_cluster(lab, &names, "fast")?;
        // Let joins and initial record exchange finish before counting.
        std::thread::sleep(Duration::from_secs(5));

        let before = total_sent(lab, &names)?;
        std::thread::sleep(window);
        let after = total_sent(lab, &names)?;
        let per_node_sec = |bytes: u64| bytes as f64 / nodes as f64 / window.as_secs_f64();

        let loss_from = now_secs();
        // The lab drops in steps of 0.1 %: report the loss actually applied.
        let port_loss = (per_port_loss(path_loss_percent) * 10.0).round() / 10.0;
        let path_loss_percent = 100.0 * (1.0 - (1.0 - port_loss / 100.0).powi(2));
        for node in &names {
            lab.set_loss(node, port_loss)?;
        }
        std::thread::sleep(window);
        lab.heal()?;
        let loss_until = now_secs();
        let meshlb_false_downs = mesh_agents
            .iter()
            .map(|a| {
                names
                    .iter()
                    .filter(|m| **m != a.node)
                    .map(|m| a.state.events_between("member-down", m, loss_from, loss_until))
                    .sum::<usize>()
            })
            .sum();
        let serf_false_failures = serf_agents
            .iter()
            .map(|a| a.failures_between(loss_from, loss_until))
            .sum();
        Ok(SteadyState {
            nodes,
            window,
            path_loss_percent,
            meshlb_bytes_per_node_sec: per_node_sec(after.meshlb.saturating_sub(before.meshlb)),
            serf_bytes_per_node_sec: per_node_sec(after.serf.saturating_sub(before.serf)),
            meshlb_false_downs,
            serf_false_failures,
        })
    })
}

/// Bytes sent by each system, summed over nodes.
#[derive(Debug, Clone, Copy, Default)]
struct SentBytes {
    meshlb: u64,
    serf: u64,
}

const COUNTER_TABLE: &str = "meshlb_bench";

/// Counts, in `node`'s namespace, the IP bytes it sends on meshlb's gossip
/// port (UDP) and on serf's (memberlist's UDP probes and gossip, and its
/// TCP push/pull and fallback probes).
fn install_counters(lab: &Lab, node: &str) -> Result<(), LabError> {
    let (mesh, serf_port) = (agent::GOSSIP_PORT, serf::SERF_PORT);
    let script = format!(
        "table inet {COUNTER_TABLE} {{\n\
         counter meshlb {{}}\n counter serf {{}}\n\
         chain out {{\n type filter hook output priority 0; policy accept;\n\
         udp sport {mesh} counter name \"meshlb\"\n\
         meta l4proto {{ tcp, udp }} th sport {serf_port} counter name \"serf\"\n\
         meta l4proto {{ tcp, udp }} th dport {serf_port} th sport != {serf_port} counter name \"serf\"\n\
         }}\n}}\n"
    );
    let path = lab.log_dir().join(format!("{node}-counters.nft"));
    std::fs::write(&path, script).map_err(|e| LabError::io("write counter ruleset", e))?;
    lab.exec(node, "nft", &["-f", &path.to_string_lossy()]).map(|_| ())
}

fn total_sent(lab: &Lab, nodes: &[String]) -> Result<SentBytes, LabError> {
    let mut sum = SentBytes::default();
    for node in nodes {
        sum.meshlb += counter_bytes(lab, node, "meshlb")?;
        sum.serf += counter_bytes(lab, node, "serf")?;
    }
    Ok(sum)
}

fn counter_bytes(lab: &Lab, node: &str, counter: &str) -> Result<u64, LabError> {
    let text = lab.exec(node, "nft", &["list", "counter", "inet", COUNTER_TABLE, counter])?;
    text.split_whitespace()
        .skip_while(|w| *w != "bytes")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| LabError::Invalid(format!("{node}: no byte count in `nft list counter`: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_port_loss_composes_to_the_path_loss() {
        let port = per_port_loss(5.0) / 100.0;
        let path = 1.0 - (1.0 - port) * (1.0 - port);
        assert!((path - 0.05).abs() < 1e-9, "{path}");
        assert_eq!(per_port_loss(0.0), 0.0);
    }
}
