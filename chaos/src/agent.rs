//! meshlb agents in the lab: a cluster of `meshlb-agent run --gossip-bind`
//! processes, one per node, started by the lab for tests of the agent
//! alone, and what any agent reports in its state directory
//! ([`AgentState`]: the mesh's members and events, interfaces, ownership,
//! cluster keys), also one a kubelet runs
//! ([`crate::cluster::Cluster::agent_state`]). The same measurements as
//! [`crate::serf`], so the two are compared side by side.

use std::collections::BTreeMap;
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
    workspace_binary("meshlb-agent", "MESHLB_AGENT", "meshlb-node-agent")
}

/// The `meshlbctl` binary: `$MESHLBCTL`, or beside the running executable.
pub fn ctl_binary() -> Result<PathBuf, LabError> {
    workspace_binary("meshlbctl", "MESHLBCTL", "meshlb-ctl")
}

/// One of the workspace's binaries, `name`: the path in `$env`, or beside
/// the running executable (built from `package`).
fn workspace_binary(name: &str, env: &str, package: &str) -> Result<PathBuf, LabError> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| LabError::io("locate the running executable", e))?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for _ in 0..2 {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    Err(LabError::Invalid(format!(
        "{name} not found beside this executable: build it (cargo build -p {package}) or set {env}"
    )))
}

/// One agent on a node, started by the lab.
#[derive(Debug)]
pub struct MeshAgent {
    /// Node (and member) name.
    pub node: String,
    /// The agent process.
    pub process: LabProcess,
    /// What it reports in its state directory.
    pub state: AgentState,
    /// Its cluster key file (`ID:HEX` lines, the first the primary).
    pub key_file: PathBuf,
}

/// What an agent reports in its state directory (`--state-dir`): the
/// mesh's members and events, its interfaces, the addresses' ownership,
/// and the cluster keys it took from a Secret. The same files whether the
/// lab started the agent or a kubelet did (then the directory is the
/// pod's emptyDir volume, see [`crate::cluster::Cluster::agent_state`]).
#[derive(Debug, Clone)]
pub struct AgentState {
    /// The state directory.
    pub dir: PathBuf,
}

/// A fresh random cluster key line, `ID:HEX`.
pub fn random_key(id: u8) -> Result<String, LabError> {
    let mut key = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| LabError::io("open /dev/urandom", e))?,
        &mut key,
    )
    .map_err(|e| LabError::io("read /dev/urandom", e))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{id}:{hex}"))
}

fn agents_dir(lab: &Lab) -> PathBuf {
    lab.log_dir().join("meshlb")
}

/// The configuration [`start_cluster`] gives agents: one pool, nothing
/// announced.
pub const POOL_ONLY: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
metadata: {name: lab, namespace: metallb-system}\nspec: {addresses: [203.0.113.10-203.0.113.20]}\n";

/// One IPv4 Service (`default/web`, 203.0.113.10 from pool `lab`, eleven
/// addresses) announced in Layer 2 on `eth0` by every node.
pub const L2_WEB: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
    metadata: {name: lab, namespace: metallb-system}\nspec: {addresses: [203.0.113.10-203.0.113.20]}\n---\n\
    apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lab, namespace: metallb-system}\n\
    spec: {ipAddressPools: [lab], interfaces: [eth0]}\n---\n\
    apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
    spec: {type: LoadBalancer, ports: [{port: 80}]}\n";

/// Starts an agent on each of `nodes` with timing `profile` (`fast` or
/// `lan`) and one shared random cluster key, every agent listing every node
/// as a seed, configured with [`POOL_ONLY`]. Returns once every agent sees
/// every member.
pub fn start_cluster(lab: &Lab, nodes: &[String], profile: &str) -> Result<Vec<MeshAgent>, LabError> {
    start_cluster_with(lab, nodes, profile, POOL_ONLY)
}

/// [`start_cluster`] with the configuration `config` (YAML, the agents'
/// configuration directory's one file).
pub fn start_cluster_with(
    lab: &Lab,
    nodes: &[String],
    profile: &str,
    config: &str,
) -> Result<Vec<MeshAgent>, LabError> {
    start_cluster_with_args(lab, nodes, profile, config, |_| Vec::new())
}

/// [`start_cluster_with`], each node's agent also given `extra(node)` as
/// arguments.
pub fn start_cluster_with_args(
    lab: &Lab,
    nodes: &[String],
    profile: &str,
    config: &str,
    extra: impl Fn(&str) -> Vec<String>,
) -> Result<Vec<MeshAgent>, LabError> {
    write_config(lab, config)?;
    let keys = random_key(1)?;
    let agents = nodes
        .iter()
        .map(|node| start_agent_with(lab, node, nodes, &keys, profile, &extra(node)))
        .collect::<Result<Vec<_>, _>>()?;
    until_all_see_each_other(agents)
}

/// `agents`, once every one sees every other.
fn until_all_see_each_other(agents: Vec<MeshAgent>) -> Result<Vec<MeshAgent>, LabError> {
    wait_for(
        Duration::from_secs(30),
        "every meshlb agent to see every member",
        || {
            agents
                .iter()
                .all(|a| a.state.members().is_ok_and(|m| m.len() == agents.len()))
        },
    )?;
    Ok(agents)
}

/// Starts one agent on `node` with key file text `keys`, joining through
/// `seeds` (node names), with timing `profile`. Does not wait.
pub fn start_agent(lab: &Lab, node: &str, seeds: &[String], keys: &str, profile: &str) -> Result<MeshAgent, LabError> {
    start_agent_with(lab, node, seeds, keys, profile, &[])
}

/// [`start_agent`] with further `meshlb-agent run` arguments (node labels,
/// say).
pub fn start_agent_with(
    lab: &Lab,
    node: &str,
    seeds: &[String],
    keys: &str,
    profile: &str,
    extra: &[String],
) -> Result<MeshAgent, LabError> {
    let binary = agent_binary()?;
    let binary = binary.to_string_lossy().into_owned();
    let root = agents_dir(lab);
    let config = root.join("config");
    if !config.join(CONFIG_FILE).exists() {
        write_config(lab, POOL_ONLY)?;
    }
    let host = lab.host(node)?;
    let state_dir = root.join(node);
    let key_file = root.join(format!("{node}.key"));
    write_atomically(&key_file, keys)?;
    let mut args = vec![
        "run".to_owned(),
        "--config-dir".into(),
        config.to_string_lossy().into_owned(),
        "--state-dir".into(),
        state_dir.to_string_lossy().into_owned(),
        "--node-name".into(),
        node.to_owned(),
        "--gossip-bind".into(),
        format!("{}:{GOSSIP_PORT}", host.mesh_address()),
        "--mesh-profile".into(),
        profile.into(),
        "--cluster-key-file".into(),
        key_file.to_string_lossy().into_owned(),
    ];
    for seed in seeds {
        args.push("--join".into());
        args.push(format!("{}:{GOSSIP_PORT}", lab.host(seed)?.mesh_address()));
    }
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = lab.spawn(node, "meshlb-agent", &binary, &refs)?;
    Ok(MeshAgent {
        node: node.to_owned(),
        process,
        state: AgentState { dir: state_dir },
        key_file,
    })
}

/// The agents' configuration in BGP mode towards the lab's router: pool
/// `routed` of `addresses` (YAML flow list items), one BGPPeer `router` at
/// `router` (`peer_extra` added to its spec), a BGPAdvertisement of the
/// pool, and Service `default/web` (`service_extra` added to its spec);
/// `documents` come first.
pub fn bgp_config(
    router: std::net::IpAddr,
    addresses: &str,
    peer_extra: &str,
    service_extra: &str,
    documents: &str,
) -> String {
    bgp_config_at(
        &format!("peerAddress: '{router}'"),
        addresses,
        peer_extra,
        service_extra,
        documents,
    )
}

/// [`bgp_config`] with the BGPPeer's endpoint given as its YAML field:
/// `peerAddress: '...'`, or `interface: up0` for an unnumbered peer.
pub fn bgp_config_at(
    endpoint: &str,
    addresses: &str,
    peer_extra: &str,
    service_extra: &str,
    documents: &str,
) -> String {
    use crate::router::{NODE_ASN, ROUTER_ASN};
    format!(
        "{documents}apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: routed, namespace: metallb-system}}\n\
         spec: {{addresses: [{addresses}]}}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\n\
         spec: {{myASN: {NODE_ASN}, peerASN: {ROUTER_ASN}, {endpoint}{peer_extra}}}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: routed, namespace: metallb-system}}\n\
         spec: {{ipAddressPools: [routed]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
         spec: {{type: LoadBalancer{service_extra}, ports: [{{port: 80}}]}}\n"
    )
}

/// The agents' main configuration file in their configuration directory.
pub const CONFIG_FILE: &str = "config.yaml";

/// Replaces the agents' configuration (they reload it on change).
pub fn write_config(lab: &Lab, config: &str) -> Result<(), LabError> {
    write_config_file(lab, CONFIG_FILE, config)
}

/// Replaces (atomically) or adds file `name` of the agents' configuration
/// directory.
pub fn write_config_file(lab: &Lab, name: &str, text: &str) -> Result<(), LabError> {
    let dir = agents_dir(lab).join("config");
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io("create agent config dir", e))?;
    write_atomically(&dir.join(name), text)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| LabError::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| LabError::io(format!("replace {}", path.display()), e))
}

impl MeshAgent {
    /// Replaces this agent's key file (atomically, as a Secret volume
    /// update would); the agent picks it up on its next poll.
    pub fn set_keys(&self, keys: &str) -> Result<(), LabError> {
        write_atomically(&self.key_file, keys)
    }
}

impl AgentState {
    /// The cluster keys the agent took from its Secret
    /// (`--cluster-key-secret`), in the key file's form.
    pub fn secret_keys(&self) -> Result<String, LabError> {
        std::fs::read_to_string(self.dir.join("cluster-keys")).map_err(|e| LabError::io("read cluster-keys", e))
    }

    /// Members the agent reports live (itself included).
    pub fn members(&self) -> Result<Vec<String>, LabError> {
        Ok(self.member_lines()?.into_iter().map(|(name, _)| name).collect())
    }

    /// Members whose record, as the agent has it, claims `address`.
    pub fn claimants_of(&self, address: &str) -> Result<Vec<String>, LabError> {
        Ok(self
            .member_lines()?
            .into_iter()
            .filter(|(_, fields)| {
                fields
                    .iter()
                    .filter_map(|f| f.strip_prefix("claims="))
                    .any(|claims| claims.split(',').any(|c| c == address))
            })
            .map(|(name, _)| name)
            .collect())
    }

    /// `member`'s identity as the agent has it: its (boot, rejoin) pair,
    /// which rises when the member rejoins with a renewed identity.
    pub fn identity_of(&self, member: &str) -> Result<Option<(u64, u64)>, LabError> {
        Ok(self
            .member_lines()?
            .into_iter()
            .find(|(name, _)| name == member)
            .and_then(|(_, fields)| {
                let field = |key: &str| fields.iter().find_map(|f| f.strip_prefix(key)?.parse().ok());
                Some((field("boot=")?, field("rejoin=")?))
            }))
    }

    /// The labels of `member`'s record, as the agent has it.
    pub fn labels_of(&self, member: &str) -> Result<BTreeMap<String, String>, LabError> {
        Ok(self
            .member_lines()?
            .into_iter()
            .filter(|(name, _)| name == member)
            .flat_map(|(_, fields)| fields)
            .filter_map(|f| f.strip_prefix("labels=").map(str::to_owned))
            .flat_map(|labels| {
                labels
                    .split(',')
                    .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Members whose record, as the agent has it, says they are settling.
    pub fn settling_members(&self) -> Result<Vec<String>, LabError> {
        Ok(self
            .member_lines()?
            .into_iter()
            .filter(|(_, fields)| fields.iter().any(|f| f == "settling=true"))
            .map(|(name, _)| name)
            .collect())
    }

    /// `mesh-members` as (name, the other fields of its line).
    fn member_lines(&self) -> Result<Vec<(String, Vec<String>)>, LabError> {
        let text =
            std::fs::read_to_string(self.dir.join("mesh-members")).map_err(|e| LabError::io("read mesh-members", e))?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with("quorum "))
            .filter_map(|l| {
                let mut words = l.split_whitespace().map(str::to_owned);
                Some((words.next()?, words.collect()))
            })
            .collect())
    }

    /// The agent's quorum fence as it reports it: the `quorum …` line of
    /// `mesh-members` (`quorum true|false expected=N heard-majority=…`),
    /// empty if it wrote none yet.
    pub fn fence(&self) -> Result<String, LabError> {
        let text =
            std::fs::read_to_string(self.dir.join("mesh-members")).map_err(|e| LabError::io("read mesh-members", e))?;
        Ok(text
            .lines()
            .find(|l| l.starts_with("quorum "))
            .unwrap_or_default()
            .to_owned())
    }

    /// Whether the agent reports a quorum.
    pub fn has_quorum(&self) -> Result<bool, LabError> {
        Ok(self.fence()?.split_whitespace().nth(1) == Some("true"))
    }

    /// Gossip datagrams the agent dropped, by reason (its `mesh-drops`
    /// file: `forged`, `replayed`, …, `refused-by-mesh`).
    pub fn drops(&self) -> Result<std::collections::BTreeMap<String, u64>, LabError> {
        let text =
            std::fs::read_to_string(self.dir.join("mesh-drops")).map_err(|e| LabError::io("read mesh-drops", e))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (reason, count) = l.split_once(' ')?;
                Some((reason.to_owned(), count.trim().parse().ok()?))
            })
            .collect())
    }

    /// Its `interfaces` status file: per interface, its `key=value` fields
    /// (`link`, `answering`, `arp-replies`, `na-replies`, …).
    pub fn interfaces(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.dir.join("interfaces")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next()?.to_owned();
                let fields = words
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Some((name, fields))
            })
            .collect()
    }

    /// Its `ownership` status file for `address`: the members it sees
    /// announcing it, and whether this node does.
    pub fn ownership_of(&self, address: &str) -> Option<(Vec<String>, bool)> {
        self.ownership().remove(address)
    }

    /// Its `ownership` status file: for every address, the members it sees
    /// announcing it, and whether this node does.
    pub fn ownership(&self) -> BTreeMap<String, (Vec<String>, bool)> {
        let text = std::fs::read_to_string(self.dir.join("ownership")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let field = |key: &str| words.iter().find_map(|w| w.strip_prefix(key));
                let announcers = field("announcers=")?
                    .split(',')
                    .filter(|a| *a != "-")
                    .map(str::to_owned)
                    .collect();
                Some(((*words.get(1)?).to_owned(), (announcers, field("here=")? == "true")))
            })
            .collect()
    }

    /// How many times the agent reported `event`, for any member, between
    /// `from` and `until` (Unix seconds).
    pub fn count_events(&self, event: &str, from: f64, until: f64) -> usize {
        self.events()
            .iter()
            .filter(|(at, e, _)| (from..=until).contains(at) && e == event)
            .count()
    }

    /// How many times the agent reported `event` for `member` between
    /// `from` and `until` (Unix seconds).
    pub fn events_between(&self, event: &str, member: &str, from: f64, until: f64) -> usize {
        self.events()
            .iter()
            .filter(|(at, e, m)| (from..=until).contains(at) && e == event && m == member)
            .count()
    }

    /// Every event the agent reported: (Unix seconds, event, member).
    fn events(&self) -> Vec<(f64, String, String)> {
        let text = std::fs::read_to_string(self.dir.join("mesh-events.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut parts = line.strip_prefix("@ ")?.split_whitespace();
                let at: f64 = parts.next()?.parse().ok()?;
                let event = parts.next()?.to_owned();
                Some((at, event, parts.next().unwrap_or_default().to_owned()))
            })
            .collect()
    }

    /// When (Unix seconds) the agent first reported `event` for `member`
    /// at or after `since`.
    pub fn event_at(&self, event: &str, member: &str, since: f64) -> Option<f64> {
        self.events()
            .into_iter()
            .find(|(at, e, m)| *at >= since && e == event && m == member)
            .map(|(at, _, _)| at)
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
        others
            .iter()
            .all(|a| a.state.event_at("member-down", victim, at).is_some())
    })?;
    Ok(Detection::since(
        at,
        others
            .iter()
            .map(|a| (a.node.clone(), a.state.event_at("member-down", victim, at))),
    ))
}
