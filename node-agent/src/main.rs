//! `meshlb-agent`: the per-node daemon (see the library docs for the
//! architecture).
//!
//! Today it runs in standalone mode: `meshlb-agent run --config-dir DIR`
//! reads MetalLB-style YAML, allocates addresses and watches for changes;
//! `meshlb-agent check DIR` validates a directory and shows what would be
//! assigned. With `--gossip-bind` it joins the gossip mesh.
//! `meshlb-agent announce --interface IF --address IP...` answers ARP and
//! NDP for fixed addresses (the Layer 2 path on its own, before the agent
//! wires it to ownership).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use actix::Actor as _;
use meshlb_config::service::ClassFilter;
use meshlb_node_agent::file_source::ReadLimits;
use meshlb_node_agent::layer2::{self, AgentState, Layer2Actor, Layer2Options};
use meshlb_node_agent::mesh::{AgentMesh, MeshOptions};
use meshlb_node_agent::standalone::{Reload, SourceOptions, Standalone};

#[derive(Parser)]
#[command(name = "meshlb-agent", version, about = "meshlb per-node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration directory and print what would be assigned.
    Check {
        /// Directory of YAML files.
        dir: PathBuf,
        /// Serve only this loadBalancerClass (default: class-less services and meshlb.io/meshlb).
        #[arg(long)]
        lb_class: Option<String>,
    },
    /// Run in standalone mode from a configuration directory.
    Run {
        /// Directory of YAML files, reloaded when it changes.
        #[arg(long)]
        config_dir: PathBuf,
        /// Where assignments are remembered across restarts.
        #[arg(long, default_value = "/var/lib/meshlb")]
        state_dir: PathBuf,
        /// Serve only this loadBalancerClass (default: class-less services and meshlb.io/meshlb).
        #[arg(long)]
        lb_class: Option<String>,
        /// Re-read the directory this often even without change events (seconds).
        #[arg(long, default_value_t = 30)]
        resync_seconds: u64,
        /// Refuse (keeping the running configuration) a file larger than
        /// this; the default is etcd's limit on a Kubernetes request.
        #[arg(long, default_value_t = meshlb_node_agent::file_source::DEFAULT_MAX_FILE_BYTES)]
        max_config_file_bytes: u64,
        /// Hold a reading that would withdraw every address or remove every
        /// pool (a truncated file reads as empty) this long, and apply it
        /// only if the files still read the same then (seconds).
        #[arg(long, default_value_t = meshlb_node_agent::standalone::DEFAULT_HOLD_WITHDRAW_ALL.as_secs_f64())]
        hold_withdraw_all_seconds: f64,
        #[command(flatten)]
        mesh: Box<MeshArgs>,
    },
    /// Answer ARP and NDP for fixed addresses on one interface, announcing
    /// them on start, until SIGTERM (no mesh, no configuration: a
    /// diagnostic, and the lab's probe of the Layer 2 answering path).
    Announce {
        /// The interface to answer on.
        #[arg(long)]
        interface: String,
        /// An address to answer for (repeat for several).
        #[arg(long = "address", required = true)]
        addresses: Vec<std::net::IpAddr>,
        /// Re-announce every this many milliseconds after the initial repeats.
        #[arg(long)]
        refresh_ms: Option<u64>,
    },
}

/// Gossip mesh options (the mesh is joined when --gossip-bind is given).
#[derive(clap::Args)]
struct MeshArgs {
    /// This node's name in the mesh (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Address and port the gossip socket binds and is reached at.
    #[arg(long)]
    gossip_bind: Option<std::net::SocketAddr>,
    /// A member to join through (repeat for several; listing every node is fine).
    #[arg(long = "join")]
    seeds: Vec<std::net::SocketAddr>,
    /// How many nodes the cluster has, this one included. The agent claims
    /// nothing until it has heard from a majority of them (so an agent with
    /// the wrong key or a firewalled port never answers for addresses the
    /// cluster serves). Default: this node plus the distinct --join
    /// addresses other than its own; without --join, say 1 for a
    /// single-node cluster.
    #[arg(long)]
    cluster_size: Option<usize>,
    /// Cluster keys, `ID:HEX` one per line, the first used to send.
    #[arg(long)]
    cluster_key_file: Option<PathBuf>,
    /// Cluster label: clusters sharing a key but not a label ignore each other.
    #[arg(long, default_value = "meshlb")]
    cluster_label: String,
    /// Timing profile: fast (default, sub-second detection) or lan (memberlist's LAN timing).
    #[arg(long, default_value = "fast")]
    mesh_profile: String,
    /// A node label published to the mesh, KEY=VALUE (repeat for several).
    #[arg(long = "node-label")]
    labels: Vec<String>,
    /// After the initial gratuitous ARP and unsolicited NA repeats, announce
    /// owned addresses again every this many milliseconds (default: never).
    #[arg(long)]
    l2_refresh_ms: Option<u64>,
}

impl MeshArgs {
    fn options(self) -> Result<Option<(MeshOptions, Layer2Options)>, String> {
        let Some(bind) = self.gossip_bind else { return Ok(None) };
        if bind.ip().is_unspecified() {
            // It is also this node's identity in the mesh, and how its
            // own entry among the --join addresses is recognised.
            return Err(format!(
                "--gossip-bind {bind}: give the address the other nodes reach this one at"
            ));
        }
        let key_file = self
            .cluster_key_file
            .ok_or("--gossip-bind needs --cluster-key-file: gossip is always authenticated")?;
        let profile = meshlb_gossip::profile::Profile::by_name(&self.mesh_profile)
            .ok_or_else(|| format!("unknown --mesh-profile {:?} (fast, lan)", self.mesh_profile))?;
        let node = match self.node_name {
            Some(n) => n,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .map_err(|e| format!("no --node-name and no host name: {e}"))?,
        };
        if node.is_empty() || node.len() > meshlb_gossip::identity::MAX_NAME_LEN {
            return Err(format!("node name {node:?} must be 1 to 253 characters"));
        }
        let expected_members = expected_members(bind, &self.seeds, self.cluster_size)?;
        let mut labels = std::collections::BTreeMap::new();
        for l in self.labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| format!("--node-label {l:?} is not KEY=VALUE"))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        let layer2 = Layer2Options {
            node_labels: labels.clone(),
            schedule: meshlb_actors::l2::responder::AnnounceSchedule {
                refresh_ms: self.l2_refresh_ms,
                ..Default::default()
            },
            local_addresses: true,
        };
        Ok(Some((
            MeshOptions {
                node,
                bind,
                seeds: self.seeds,
                key_file,
                label: self.cluster_label,
                profile,
                labels,
                expected_members,
            },
            layer2,
        )))
    }
}

/// The cluster size the quorum fence expects: `--cluster-size`, or this
/// node and its distinct seeds. Hearing no one must never make a node a
/// quorum of one, so a node with no other seed needs `--cluster-size 1`.
fn expected_members(
    bind: std::net::SocketAddr,
    seeds: &[std::net::SocketAddr],
    cluster_size: Option<usize>,
) -> Result<usize, String> {
    let named = 1 + seeds
        .iter()
        .filter(|s| **s != bind)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    match cluster_size {
        Some(0) => Err("--cluster-size 0: a cluster has at least this node".into()),
        Some(size) if size < named => Err(format!(
            "--cluster-size {size} is smaller than the {named} nodes this one and its --join addresses name"
        )),
        Some(size) => Ok(size),
        None if named == 1 => Err(
            "no --join address other than this node's own: name the other members with --join, \
             or say --cluster-size 1 for a single-node cluster"
                .into(),
        ),
        None => Ok(named),
    }
}

fn classes(lb_class: Option<String>) -> ClassFilter {
    lb_class.map(ClassFilter::only).unwrap_or_default()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour for people at a terminal, plain text for log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Check { dir, lb_class } => check(&dir, classes(lb_class)),
        Command::Run {
            config_dir,
            state_dir,
            lb_class,
            resync_seconds,
            max_config_file_bytes,
            hold_withdraw_all_seconds,
            mesh,
        } => match (
            mesh.options(),
            source_options(max_config_file_bytes, hold_withdraw_all_seconds),
        ) {
            (Ok(mesh), Ok(source)) => run(
                config_dir,
                state_dir,
                classes(lb_class),
                Duration::from_secs(resync_seconds.max(1)),
                source,
                mesh,
            ),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Announce {
            interface,
            addresses,
            refresh_ms,
        } => announce(interface, addresses, refresh_ms),
    }
}

fn check(dir: &std::path::Path, classes: ClassFilter) -> ExitCode {
    let mut agent = match Standalone::new(dir, None, classes) {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match agent.reload() {
        Reload::Rejected(rejected) => {
            for e in &rejected.errors {
                println!("error: {e}");
            }
            println!("{} error(s); configuration rejected", rejected.errors.len());
            return ExitCode::FAILURE;
        }
        Reload::Accepted { .. } | Reload::Unchanged | Reload::Held { .. } => {}
    }
    let Some(inventory) = agent.store().active() else {
        return ExitCode::FAILURE;
    };
    let config = &inventory.config;
    println!(
        "configuration valid: {} pools, {} L2Advertisements, {} BGPAdvertisements, {} BGPPeers, {} BFDProfiles, \
         {} community aliases, {} L2Policies, {} services",
        config.pools.len(),
        config.l2_advertisements.len(),
        config.bgp_advertisements.len(),
        config.bgp_peers.len(),
        config.bfd_profiles.len(),
        config.communities.len(),
        config.l2_policies.len(),
        inventory.services.len()
    );
    let mut failed = false;
    for (key, outcome) in agent.outcomes() {
        failed |= !matches!(outcome, meshlb_config::ServiceOutcome::Assigned(_));
        println!("service {key}: {outcome}");
    }
    for (pool, c) in agent.reconciler().allocator().counters() {
        println!(
            "pool {pool}: IPv4 {}/{} in use, IPv6 {}/{} in use",
            c.v4.in_use, c.v4.total, c.v6.in_use, c.v6.total
        );
    }
    if failed { ExitCode::from(2) } else { ExitCode::SUCCESS }
}

fn source_options(max_file_bytes: u64, hold_seconds: f64) -> Result<SourceOptions, String> {
    if !(0.0..=3600.0).contains(&hold_seconds) {
        return Err(format!(
            "--hold-withdraw-all-seconds {hold_seconds} is not between 0 and 3600"
        ));
    }
    if max_file_bytes == 0 {
        return Err("--max-config-file-bytes 0 would refuse every file".into());
    }
    Ok(SourceOptions {
        limits: ReadLimits { max_file_bytes },
        hold_withdraw_all: Duration::from_secs_f64(hold_seconds),
    })
}

fn run(
    config_dir: PathBuf,
    state_dir: PathBuf,
    classes: ClassFilter,
    resync: Duration,
    source: SourceOptions,
    mesh: Option<(MeshOptions, Layer2Options)>,
) -> ExitCode {
    let Some(system) = actor_system() else {
        return ExitCode::FAILURE;
    };
    let result = system.block_on(async {
        let agent =
            Standalone::new(&config_dir, Some(&state_dir.join("assignments.yaml")), classes)?.with_options(source);
        tracing::info!(config_dir = %config_dir.display(), "meshlb-agent standalone");
        let (state_tx, state_rx) = tokio::sync::watch::channel(Arc::new(AgentState::default()));
        let mut layer2 = None;
        let mesh = match mesh {
            Some((options, layer2_options)) => {
                let mesh = AgentMesh::start(options, &state_dir).await?;
                layer2 = Some(Layer2Actor::start(
                    layer2_options,
                    state_rx,
                    mesh.commands(),
                    mesh.announce(),
                ));
                Some(mesh)
            }
            None => {
                tracing::warn!("no --gossip-bind: nothing is announced");
                None
            }
        };
        let result = agent.run(resync, shutdown_signal(), state_tx).await;
        // Hand over, then go quiet: the mesh keeps this node's addresses
        // until its successors know it is leaving, then gives them up, and
        // the actors stop answering; last, the loopback addresses go.
        if let Some(mesh) = mesh {
            mesh.leave().await;
        }
        if let Some(layer2) = layer2 {
            let _ = tokio::time::timeout(Duration::from_secs(5), layer2.send(layer2::Stop)).await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn announce(interface: String, addresses: Vec<std::net::IpAddr>, refresh_ms: Option<u64>) -> ExitCode {
    use meshlb_actors::l2::interface::{AnnouncerStatus, Claim, InterfaceActor, Shutdown};
    use meshlb_actors::l2::responder::AnnounceSchedule;
    let Some(system) = actor_system() else {
        return ExitCode::FAILURE;
    };
    let result = system.block_on(async {
        let (status_tx, status) = tokio::sync::watch::channel(AnnouncerStatus::default());
        let schedule = AnnounceSchedule {
            refresh_ms,
            ..AnnounceSchedule::default()
        };
        let actor = InterfaceActor::open(&interface, schedule, status_tx)?.start();
        actor.do_send(Claim {
            service: 0,
            addresses: addresses.into_iter().collect(),
            sent: tokio::time::Instant::now(),
        });
        shutdown_signal().await;
        let _ = actor.send(Shutdown).await;
        let last = status.borrow().clone();
        tracing::info!(link_up = last.link_up, stats = ?last.stats, "stopped answering");
        Ok::<(), meshlb_actors::ActorError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The actors' system: a tokio current-thread runtime (timers, sockets,
/// signals, child processes) with actix's local task set.
fn actor_system() -> Option<actix_rt::SystemRunner> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => Some(actix_rt::System::with_tokio_rt(move || runtime)),
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            None
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_cluster_is_explicit_or_the_seeds() {
        let at = |last: u8| std::net::SocketAddr::from(([192, 0, 2, last], 7947));
        let me = at(1);
        // Every node listed, this one included, one twice: three nodes.
        assert_eq!(expected_members(me, &[at(1), at(2), at(3), at(3)], None), Ok(3));
        assert_eq!(expected_members(me, &[at(2)], Some(5)), Ok(5));
        let alone = expected_members(me, &[], None).unwrap_err();
        assert!(alone.contains("--cluster-size 1"), "{alone}");
        assert_eq!(expected_members(me, &[at(1)], Some(1)), Ok(1));
        let small = expected_members(me, &[at(2), at(3)], Some(2)).unwrap_err();
        assert!(small.contains("smaller than the 3 nodes"), "{small}");
        assert!(expected_members(me, &[], Some(0)).is_err());
    }
}
