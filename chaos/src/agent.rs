//! meshlb agents in the lab: a cluster of `meshlb-agent run --gossip-bind`
//! processes, one per node, and what they report about the mesh (the
//! `mesh-members` and `mesh-events.log` files each writes in its state
//! directory). The same measurements as [`crate::serf`], so the two are
//! compared side by side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};
use crate::serf::{Detection, now_secs};
use crate::wait::wait_for;

/// meshlb's gossip port in the lab.
pub const GOSSIP_PORT: u16 = 7947;

/// The `meshlb-agent` binary: `$MESHLB_AGENT`, or beside the running
/// executable (cargo puts test binaries in `target/<profile>/deps` and
/// binaries in `target/<profile>`).
pub fn agent_binary() -> Result<PathBuf, LabError> {
    if let Some(path) = std::env::var_os("MESHLB_AGENT") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| LabError::io("locate the running executable", e))?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for _ in 0..2 {
        let candidate = dir.join("meshlb-agent");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    Err(LabError::Invalid(
        "meshlb-agent not found beside this executable: build it (cargo build -p meshlb-node-agent) or set MESHLB_AGENT"
            .into(),
    ))
}

/// One agent on a node.
#[derive(Debug)]
pub struct MeshAgent {
    /// Node (and member) name.
    pub node: String,
    /// The agent process.
    pub process: LabProcess,
    /// Its state directory.
    pub state_dir: PathBuf,
}

/// Starts an agent on each of `nodes` with timing `profile` (`fast` or
/// `lan`), every agent listing every node as a seed. Returns once every
/// agent sees every member.
pub fn start_cluster(lab: &Lab, nodes: &[String], profile: &str) -> Result<Vec<MeshAgent>, LabError> {
    let binary = agent_binary()?;
    let binary = binary.to_string_lossy().into_owned();
    let root = lab.log_dir().join("meshlb");
    let config = root.join("config");
    std::fs::create_dir_all(&config).map_err(|e| LabError::io("create agent config dir", e))?;
    std::fs::write(
        config.join("pool.yaml"),
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lab, namespace: metallb-system}\n\
         spec: {addresses: [203.0.113.10-203.0.113.20]}\n",
    )
    .map_err(|e| LabError::io("write agent config", e))?;
    let key_file = root.join("cluster.key");
    let mut key = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| LabError::io("open /dev/urandom", e))?,
        &mut key,
    )
    .map_err(|e| LabError::io("read /dev/urandom", e))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key_file, format!("1:{hex}\n")).map_err(|e| LabError::io("write cluster key", e))?;
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| lab.host(n).map(|h| format!("{}:{GOSSIP_PORT}", h.ipv4)))
        .collect::<Result<_, _>>()?;
    let mut agents = Vec::new();
    for node in nodes {
        let host = lab.host(node)?;
        let state_dir = root.join(node);
        let mut args = vec![
            "run".to_owned(),
            "--config-dir".into(),
            config.to_string_lossy().into_owned(),
            "--state-dir".into(),
            state_dir.to_string_lossy().into_owned(),
            "--node-name".into(),
            node.clone(),
            "--gossip-bind".into(),
            format!("{}:{GOSSIP_PORT}", host.ipv4),
            "--cluster-key-file".into(),
            key_file.to_string_lossy().into_owned(),
            "--mesh-profile".into(),
            profile.into(),
        ];
        for seed in &seeds {
            args.push("--join".into());
            args.push(seed.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = lab.spawn(node, "meshlb-agent", &binary, &refs)?;
        agents.push(MeshAgent {
            node: node.clone(),
            process,
            state_dir,
        });
    }
    wait_for(
        Duration::from_secs(30),
        "every meshlb agent to see every member",
        || agents.iter().all(|a| a.members().is_ok_and(|m| m.len() == nodes.len())),
    )?;
    Ok(agents)
}

impl MeshAgent {
    /// Members this agent reports live (itself included).
    pub fn members(&self) -> Result<Vec<String>, LabError> {
        let text = std::fs::read_to_string(self.state_dir.join("mesh-members"))
            .map_err(|e| LabError::io("read mesh-members", e))?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with("quorum "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect())
    }

    /// Whether this agent reports a quorum.
    pub fn has_quorum(&self) -> Result<bool, LabError> {
        let text = std::fs::read_to_string(self.state_dir.join("mesh-members"))
            .map_err(|e| LabError::io("read mesh-members", e))?;
        Ok(text.lines().any(|l| l == "quorum true"))
    }

    /// When (Unix seconds) this agent last reported `event` for `member`
    /// at or after `since`.
    pub fn event_at(&self, event: &str, member: &str, since: f64) -> Option<f64> {
        let text = std::fs::read_to_string(self.state_dir.join("mesh-events.log")).ok()?;
        text.lines().find_map(|line| {
            let mut parts = line.strip_prefix("@ ")?.split_whitespace();
            let at: f64 = parts.next()?.parse().ok()?;
            (at >= since && parts.next()? == event && parts.next()? == member).then_some(at)
        })
    }
}

/// Applies `fault` to `victim`'s agent and waits (up to `timeout`) until
/// every other agent reported it down.
pub fn detect(
    agents: &[MeshAgent],
    victim: &str,
    timeout: Duration,
    fault: impl FnOnce(&MeshAgent) -> Result<(), LabError>,
) -> Result<Detection, LabError> {
    let target = agents
        .iter()
        .find(|a| a.node == victim)
        .ok_or_else(|| LabError::Invalid(format!("no meshlb agent on {victim}")))?;
    let at = now_secs();
    fault(target)?;
    let others: Vec<&MeshAgent> = agents.iter().filter(|a| a.node != victim).collect();
    wait_for(timeout, &format!("every meshlb agent to declare {victim} down"), || {
        others.iter().all(|a| a.event_at("member-down", victim, at).is_some())
    })?;
    Ok(Detection {
        per_node: others
            .iter()
            .filter_map(|a| {
                let seen = a.event_at("member-down", victim, at)?;
                Some((a.node.clone(), Duration::from_secs_f64((seen - at).max(0.0))))
            })
            .collect(),
    })
}
