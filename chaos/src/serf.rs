//! serf (HashiCorp memberlist, the failure detector MetalLB uses) as a
//! baseline for meshlb's gossip mesh: how long after a member is SIGKILLed
//! the others declare it failed, and when they all agree.
//!
//! Each agent runs an event handler that appends a wall-clock timestamp and
//! the event's member lines to a file per node, so detection times come
//! from the agents' own notifications.

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};
use crate::wait::wait_for;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// memberlist's gossip port.
pub const SERF_PORT: u16 = 7946;
/// serf's RPC endpoint inside each node (that node's own loopback).
pub const SERF_RPC: &str = "127.0.0.1:7373";

/// A serf agent on a node.
#[derive(Debug)]
pub struct SerfAgent {
    /// The node it runs on (also its serf member name).
    pub node: String,
    /// The agent process.
    pub process: LabProcess,
    events: PathBuf,
}

/// Starts a serf agent (LAN profile, serf's default) on each of `nodes`;
/// all join the first. Returns once every agent sees every member alive.
pub fn start_cluster(lab: &Lab, nodes: &[String]) -> Result<Vec<SerfAgent>, LabError> {
    let seed = lab
        .host(nodes.first().ok_or_else(|| LabError::Invalid("no serf nodes".into()))?)?
        .ipv4;
    let mut agents = Vec::new();
    for node in nodes {
        let host = lab.host(node)?;
        let events = lab.log_dir().join(format!("{node}-serf-events.log"));
        let handler = lab.log_dir().join(format!("{node}-serf-handler.sh"));
        std::fs::write(
            &handler,
            format!(
                "#!/bin/sh\n{{ echo \"@ $(date +%s.%N) $SERF_EVENT\"; cat; }} >> '{}'\n",
                events.display()
            ),
        )
        .map_err(|e| LabError::io("write serf event handler", e))?;
        crate::netns::run("chmod", &["+x", &handler.to_string_lossy()])?;
        let mut args = vec![
            "agent".to_owned(),
            format!("-node={node}"),
            format!("-bind={}:{SERF_PORT}", host.ipv4),
            format!("-rpc-addr={SERF_RPC}"),
            format!("-event-handler={}", handler.display()),
            "-log-level=info".into(),
        ];
        if host.ipv4 != seed {
            args.push(format!("-join={seed}:{SERF_PORT}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = lab.spawn(node, "serf", "serf", &refs)?;
        agents.push(SerfAgent {
            node: node.clone(),
            process,
            events,
        });
        // Later agents join the seed: it must be listening first.
        if host.ipv4 == seed {
            wait_for(Duration::from_secs(10), "the serf seed's RPC", || {
                lab.exec(node, "serf", &["members", &format!("-rpc-addr={SERF_RPC}")])
                    .is_ok()
            })?;
        }
    }
    // Asking 50 agents over RPC takes seconds per round: allow for size.
    wait_for(
        Duration::from_secs(30 + nodes.len() as u64),
        "every serf agent to see every member alive",
        || {
            agents
                .iter()
                .all(|a| alive_members(lab, &a.node).is_ok_and(|m| m.len() == nodes.len()))
        },
    )?;
    Ok(agents)
}

/// Members `node`'s agent reports alive.
pub fn alive_members(lab: &Lab, node: &str) -> Result<Vec<String>, LabError> {
    Ok(lab
        .exec(
            node,
            "serf",
            &["members", &format!("-rpc-addr={SERF_RPC}"), "-status=alive"],
        )?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

impl SerfAgent {
    /// When this agent's handler was told `member` failed (seconds since
    /// the Unix epoch), if it was.
    pub fn failed_at(&self, member: &str) -> Option<f64> {
        self.failures().into_iter().find(|(_, m)| m == member).map(|(at, _)| at)
    }

    /// How many members this agent's handler was told failed between
    /// `from` and `until` (Unix seconds).
    pub fn failures_between(&self, from: f64, until: f64) -> usize {
        self.failures()
            .iter()
            .filter(|(at, _)| (from..=until).contains(at))
            .count()
    }

    /// Every member-failed notification: (Unix seconds, member). One event
    /// lists its members on the lines after its stamp.
    fn failures(&self) -> Vec<(f64, String)> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        let mut current: Option<(f64, bool)> = None;
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("@ ") {
                let mut parts = rest.split_whitespace();
                current = parts
                    .next()
                    .and_then(|at| at.parse().ok())
                    .map(|at| (at, parts.next() == Some("member-failed")));
            } else if let Some((at, true)) = current
                && let Some(member) = line.split_whitespace().next()
            {
                out.push((at, member.to_owned()));
            }
        }
        out
    }
}

/// How long the surviving agents took to declare a killed member failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Per surviving node: seconds from the kill to its member-failed event.
    pub per_node: BTreeMap<String, Duration>,
}

impl Detection {
    /// From a fault at `at` (Unix seconds) and, per surviving node, when it
    /// reported the node down (`None`: not yet; left out).
    pub fn since(at: f64, stamps: impl IntoIterator<Item = (String, Option<f64>)>) -> Detection {
        Detection {
            per_node: stamps
                .into_iter()
                .filter_map(|(node, seen)| Some((node, Duration::from_secs_f64((seen? - at).max(0.0)))))
                .collect(),
        }
    }

    /// The first agent's detection time.
    pub fn first(&self) -> Option<Duration> {
        self.per_node.values().min().copied()
    }

    /// When every agent agreed (the last one's detection time).
    pub fn all_agree(&self) -> Option<Duration> {
        self.per_node.values().max().copied()
    }
}

/// Wall-clock seconds since the Unix epoch (how daemons' event logs stamp
/// events).
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// SIGKILLs `victim`'s agent and waits (up to `timeout`) until every other
/// agent has declared it failed.
pub fn kill_and_detect(agents: &[SerfAgent], victim: &str, timeout: Duration) -> Result<Detection, LabError> {
    let target = agents
        .iter()
        .find(|a| a.node == victim)
        .ok_or_else(|| LabError::Invalid(format!("no serf agent on {victim}")))?;
    let killed_at = now_secs();
    target.process.kill()?;
    let others: Vec<&SerfAgent> = agents.iter().filter(|a| a.node != victim).collect();
    wait_for(timeout, &format!("every serf agent to declare {victim} failed"), || {
        others.iter().all(|a| a.failed_at(victim).is_some())
    })?;
    Ok(Detection::since(
        killed_at,
        others.iter().map(|a| (a.node.clone(), a.failed_at(victim))),
    ))
}
