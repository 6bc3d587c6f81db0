//! `meshlb-agent`: the per-node daemon (see the library docs for the
//! architecture).
//!
//! `meshlb-agent run --config-dir DIR` runs standalone: it reads
//! MetalLB-style YAML, allocates addresses and watches for changes.
//! `meshlb-agent run --kubernetes` reads the same objects and the Services
//! from the API server;
//! `meshlb-agent check DIR` validates a directory and shows what would be
//! assigned. With `--gossip-bind` it joins the gossip mesh.
//! `meshlb-agent crds` prints the CustomResourceDefinitions.
//! `meshlb-agent announce --interface IF --address IP...` answers ARP and
//! NDP for fixed addresses (the Layer 2 path on its own, before the agent
//! wires it to ownership).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meshlb_config::service::ClassFilter;
use meshlb_node_agent::app::{self, RunOptions, SourceOptions};
use meshlb_node_agent::mesh::MeshOptions;
use meshlb_node_agent::node::NodeOptions;
use meshlb_node_agent::sources::files::{DEFAULT_MAX_FILE_BYTES, ReadLimits};

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
    /// Run: standalone from a configuration directory, or in a cluster.
    Run {
        /// Directory of YAML files, reloaded when it changes (standalone).
        #[arg(long, required_unless_present = "kubernetes", conflicts_with = "kubernetes")]
        config_dir: Option<PathBuf>,
        /// Read the configuration and Services from the Kubernetes API
        /// (in-cluster configuration, or --kubeconfig).
        #[arg(long)]
        kubernetes: bool,
        /// Kubeconfig file for --kubernetes (default: in-cluster, or $KUBECONFIG).
        #[arg(long, requires = "kubernetes")]
        kubeconfig: Option<PathBuf>,
        /// Namespace of the metallb.io objects, for --kubernetes.
        #[arg(long, default_value = meshlb_node_agent::sources::kubernetes::DEFAULT_NAMESPACE)]
        namespace: String,
        /// With --kubernetes: never allocate (only announce what the
        /// allocating agent writes into Service status).
        #[arg(long, requires = "kubernetes")]
        no_allocator: bool,
        /// With --kubernetes: the Lease allocating agents compete for.
        /// Agents naming different Leases allocate at the same time, kept
        /// from giving one address twice by the address claims alone.
        #[arg(long, default_value = meshlb_node_agent::sources::kubernetes::allocator::LEASE_NAME)]
        allocator_lease: String,
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
        #[arg(long, default_value_t = DEFAULT_MAX_FILE_BYTES)]
        max_config_file_bytes: u64,
        #[command(flatten)]
        holds: Box<HoldArgs>,
        /// Take BGP peers' connections on this port (0: connect to them
        /// only). Bound once a BGPPeer selects this node.
        #[arg(long, default_value_t = meshlb_actors::bgp::listener::BGP_PORT)]
        bgp_listen_port: u16,
        /// Stopping, wait up to this long for other nodes to announce this
        /// one's BGP addresses before withdrawing them (seconds, at most
        /// 3600; 0: no wait).
        #[arg(long, default_value_t = 10)]
        bgp_drain_seconds: u64,
        /// Serve the read-only introspection API (gRPC, with reflection)
        /// here: host:port, unix:/path, or off.
        #[arg(long, default_value = meshlb_node_agent::introspection::DEFAULT_LISTEN)]
        grpc_listen: meshlb_node_agent::introspection::Listen,
        /// Serve Prometheus metrics here: host:port, unix:/path, or off.
        #[arg(long, default_value = meshlb_node_agent::metrics::DEFAULT_LISTEN)]
        metrics_listen: meshlb_node_agent::metrics::Listen,
        #[command(flatten)]
        mesh: Box<MeshArgs>,
    },
    /// Print the CustomResourceDefinitions (metallb.io and meshlb.io) as
    /// YAML, for `kubectl apply -f -`.
    Crds,
    /// Move a cluster from MetalLB to meshlb, keeping every object and
    /// every Service's address: back everything up, remove MetalLB's
    /// webhooks, take over its CRDs (no conversion webhook, every object
    /// readable), make `helm uninstall metallb` keep them, stop MetalLB's
    /// controller and speakers. Then install meshlb in the same namespace.
    Migrate {
        /// Where from (MetalLB, the only one so far).
        #[arg(long, required = true)]
        from_metallb: bool,
        /// Say what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// MetalLB's namespace.
        #[arg(long, default_value = meshlb_node_agent::sources::kubernetes::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The kubeconfig (default: as kubectl finds one).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Where the backup of every object goes (default:
        /// metallb-backup-<time>.yaml here).
        #[arg(long)]
        backup: Option<PathBuf>,
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

/// What the agent holds back when its configuration loses things.
#[derive(clap::Args)]
struct HoldArgs {
    /// Hold a reading that would withdraw every address or remove every
    /// pool (a truncated file reads as empty) this long, and apply it
    /// only if the files still read the same then (seconds).
    #[arg(long, default_value_t = meshlb_node_agent::pipeline::DEFAULT_HOLD_WITHDRAW_ALL.as_secs_f64())]
    hold_withdraw_all_seconds: f64,
    /// A Service whose addresses no pool covers any more (its pool
    /// deleted, or every pool gone with the CRDs) keeps them, not
    /// announced, this long at most (a Go duration: 1h, 15m; 0: let them
    /// go at once and allocate anew, as MetalLB does). A pool covering
    /// them again, or the Service asking for other addresses, ends the
    /// hold sooner.
    #[arg(long, default_value = "1h", value_parser = parse_hold)]
    hold_orphaned_addresses: Duration,
}

/// Gossip mesh options (the mesh is joined when --gossip-bind is given).
#[derive(clap::Args)]
struct MeshArgs {
    /// This node's name in the mesh (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Address and port the gossip socket binds and is reached at.
    #[arg(long)]
    gossip_bind: Option<SocketAddr>,
    /// A member to join through (repeat for several; listing every node is fine).
    #[arg(long = "join")]
    seeds: Vec<SocketAddr>,
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
    /// With --kubernetes, instead of --cluster-key-file: the Secret (in
    /// --namespace) whose `keys` entry holds the cluster keys, in the key
    /// file's form; followed as it changes (key rotation).
    #[arg(long, conflicts_with = "cluster_key_file", requires = "kubernetes")]
    cluster_key_secret: Option<String>,
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

/// What is wrong with the command line.
#[derive(Debug, PartialEq, thiserror::Error)]
enum CliError {
    /// The gossip address is no address of this node.
    #[error("--gossip-bind {0}: give the address the other nodes reach this one at")]
    UnspecifiedBind(SocketAddr),
    /// Gossip is always authenticated.
    #[error(
        "--gossip-bind needs --cluster-key-file (or, with --kubernetes, --cluster-key-secret): gossip is always authenticated"
    )]
    NoKeyFile,
    /// No such timing profile.
    #[error("unknown --mesh-profile {0:?} (fast, lan)")]
    Profile(String),
    /// No node name given and none found.
    #[error("no --node-name and no host name: {0}")]
    NoNodeName(String),
    /// The node name does not fit the mesh.
    #[error("node name {0:?} must be 1 to 253 characters")]
    NodeName(String),
    /// A label that is not KEY=VALUE.
    #[error("--node-label {0:?} is not KEY=VALUE")]
    Label(String),
    /// A cluster of no node.
    #[error("--cluster-size 0: a cluster has at least this node")]
    EmptyCluster,
    /// A cluster smaller than the nodes named.
    #[error("--cluster-size {size} is smaller than the {named} nodes this one and its --join addresses name")]
    ClusterTooSmall {
        /// As given.
        size: usize,
        /// This node and its distinct seeds.
        named: usize,
    },
    /// Nothing says how large the cluster is.
    #[error(
        "no --join address other than this node's own: name the other members with --join, \
         or say --cluster-size 1 for a single-node cluster"
    )]
    UnknownClusterSize,
    /// A hold time out of range.
    #[error("--hold-withdraw-all-seconds {0} is not between 0 and 3600")]
    HoldTime(f64),
    /// A file limit that refuses everything.
    #[error("--max-config-file-bytes 0 would refuse every file")]
    NoFileSize,
}

/// Why `--hold-orphaned-addresses` is refused.
#[derive(Debug, thiserror::Error)]
enum HoldError {
    /// Not a Go duration.
    #[error("{text:?} {source}")]
    NotADuration {
        text: String,
        source: meshlb_config::duration::DurationError,
    },
    /// Longer than a week.
    #[error("{0:?} is longer than a week")]
    TooLong(String),
}

/// Parses `--hold-orphaned-addresses`: a Go duration of at most a week.
fn parse_hold(text: &str) -> Result<Duration, HoldError> {
    let hold = meshlb_config::duration::parse_duration(text).map_err(|source| HoldError::NotADuration {
        text: text.to_owned(),
        source,
    })?;
    if hold > Duration::from_secs(7 * 24 * 3600) {
        return Err(HoldError::TooLong(text.to_owned()));
    }
    Ok(hold)
}

impl MeshArgs {
    /// The mesh's and Layer 2's options; `in_cluster`: the agent reads the
    /// API server, whose Nodes may name the seeds and the cluster size.
    fn options(self, in_cluster: bool, state_dir: &Path) -> Result<Option<(MeshOptions, NodeOptions)>, CliError> {
        let Some(bind) = self.gossip_bind else { return Ok(None) };
        if bind.ip().is_unspecified() {
            // It is also this node's identity in the mesh, and how its
            // own entry among the --join addresses is recognised.
            return Err(CliError::UnspecifiedBind(bind));
        }
        // A Secret's keys go to a file in the state directory, which the
        // mesh reads as it reads any key file.
        let key_file = match (self.cluster_key_file, &self.cluster_key_secret) {
            (Some(file), _) => file,
            (None, Some(_)) => state_dir.join("cluster-keys"),
            (None, None) => return Err(CliError::NoKeyFile),
        };
        let profile = meshlb_gossip::profile::Profile::by_name(&self.mesh_profile)
            .ok_or_else(|| CliError::Profile(self.mesh_profile.clone()))?;
        let node = match self.node_name {
            Some(n) => n,
            None => std::fs::read_to_string(HOST_NAME)
                .map(|h| h.trim().to_owned())
                .map_err(|e| CliError::NoNodeName(e.to_string()))?,
        };
        if node.is_empty() || node.len() > meshlb_gossip::identity::MAX_NAME_LEN {
            return Err(CliError::NodeName(node));
        }
        let expected_members = expected_members(bind, &self.seeds, self.cluster_size, in_cluster)?;
        let mut labels = std::collections::BTreeMap::new();
        for l in self.labels {
            let (k, v) = l.split_once('=').ok_or_else(|| CliError::Label(l.clone()))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        let layer2 = NodeOptions {
            node: node.clone(),
            node_labels: labels.clone(),
            // Set by the source: a cluster's Services have endpoints.
            require_endpoints: false,
            schedule: meshlb_actors::l2::responder::AnnounceSchedule {
                refresh: self.l2_refresh_ms.map(std::time::Duration::from_millis),
                ..Default::default()
            },
            // In a cluster kube-proxy (or what replaces it) delivers a
            // Service's traffic; the node's addresses are not meshlb's.
            local_addresses: !in_cluster,
        };
        Ok(Some((
            MeshOptions {
                node,
                bind,
                seeds: self.seeds,
                key_file,
                key_secret: self.cluster_key_secret,
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
/// In a cluster (`in_cluster`), neither given: `None`, the Nodes the API
/// server lists say (and name the seeds).
fn expected_members(
    bind: SocketAddr,
    seeds: &[SocketAddr],
    cluster_size: Option<usize>,
    in_cluster: bool,
) -> Result<Option<usize>, CliError> {
    let named = 1 + seeds
        .iter()
        .filter(|s| **s != bind)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    match cluster_size {
        Some(0) => Err(CliError::EmptyCluster),
        Some(size) if size < named => Err(CliError::ClusterTooSmall { size, named }),
        Some(size) => Ok(Some(size)),
        None if named == 1 && in_cluster => Ok(None),
        None if named == 1 => Err(CliError::UnknownClusterSize),
        None => Ok(Some(named)),
    }
}

const HOST_NAME: &str = "/proc/sys/kernel/hostname";

/// This machine's host name, if it has one.
fn host_name() -> Option<String> {
    std::fs::read_to_string(HOST_NAME)
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn classes(lb_class: Option<String>) -> ClassFilter {
    lb_class.map(ClassFilter::only).unwrap_or_default()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's watcher warns at every retry; the agent says once what
            // a refusal means and what to do (sources::kubernetes).
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime::watcher=error")),
        )
        .with_writer(std::io::stderr)
        // Colour for people at a terminal, plain text for log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Check { dir, lb_class } => match app::check(&dir, classes(lb_class)) {
            Ok(report) => {
                for line in &report.lines {
                    println!("{line}");
                }
                match (report.rejected, report.ok) {
                    (true, _) => ExitCode::FAILURE,
                    (false, true) => ExitCode::SUCCESS,
                    (false, false) => ExitCode::from(2),
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config_dir,
            kubernetes: _,
            kubeconfig,
            namespace,
            no_allocator,
            allocator_lease,
            state_dir,
            lb_class,
            resync_seconds,
            max_config_file_bytes,
            holds,
            bgp_listen_port,
            bgp_drain_seconds,
            grpc_listen,
            metrics_listen,
            mesh,
        } => {
            let node = mesh.node_name.clone().or_else(host_name);
            let in_cluster = config_dir.is_none();
            let options = run_options(
                max_config_file_bytes,
                holds.hold_withdraw_all_seconds,
                *mesh,
                in_cluster,
                &state_dir,
            )
            .and_then(|(limits, hold_withdraw_all, mesh)| {
                Ok(RunOptions {
                    // clap requires one of --config-dir and --kubernetes.
                    source: match config_dir {
                        Some(dir) => SourceOptions::Files {
                            dir,
                            resync: Duration::from_secs(resync_seconds.max(1)),
                            limits,
                        },
                        None => SourceOptions::Kubernetes {
                            kubeconfig,
                            namespace,
                            node: node.ok_or_else(|| CliError::NoNodeName("no host name".into()))?,
                            allocator_lease: (!no_allocator).then_some(allocator_lease),
                        },
                    },
                    state_dir,
                    classes: classes(lb_class),
                    hold_withdraw_all,
                    hold_orphaned: holds.hold_orphaned_addresses,
                    mesh,
                    bgp_listen_port,
                    bgp_drain_timeout: Duration::from_secs(bgp_drain_seconds.min(3600)),
                    grpc_listen,
                    metrics_listen,
                })
            });
            match options {
                Ok(options) => exit(app::run(options)),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Migrate {
            from_metallb: _,
            dry_run,
            namespace,
            kubeconfig,
            backup,
        } => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let options = meshlb_node_agent::migrate::MigrateOptions {
                kubeconfig,
                namespace,
                dry_run,
                backup: backup.unwrap_or_else(|| PathBuf::from(format!("metallb-backup-{stamp}.yaml"))),
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let done = match runtime {
                Ok(runtime) => runtime.block_on(meshlb_node_agent::migrate::run(&options, &mut |line| {
                    println!("{line}");
                })),
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crds => match meshlb_config::crd::definitions_yaml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Announce {
            interface,
            addresses,
            refresh_ms,
        } => exit(app::announce(
            &interface,
            addresses,
            refresh_ms.map(std::time::Duration::from_millis),
        )),
    }
}

fn exit(result: Result<(), meshlb_node_agent::AgentError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

type Checked = (ReadLimits, Duration, Option<(MeshOptions, NodeOptions)>);

fn run_options(
    max_file_bytes: u64,
    hold_seconds: f64,
    mesh: MeshArgs,
    in_cluster: bool,
    state_dir: &Path,
) -> Result<Checked, CliError> {
    if !(0.0..=3600.0).contains(&hold_seconds) {
        return Err(CliError::HoldTime(hold_seconds));
    }
    if max_file_bytes == 0 {
        return Err(CliError::NoFileSize);
    }
    Ok((
        ReadLimits { max_file_bytes },
        Duration::from_secs_f64(hold_seconds),
        mesh.options(in_cluster, state_dir)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line is consistent, and `run` parses with every
    /// default (a default its field's type cannot take fails here, not at
    /// a user's start).
    #[test]
    fn the_command_line_parses_with_its_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["meshlb-agent", "run", "--config-dir", "/etc/meshlb"]).unwrap();
        assert!(matches!(cli.command, Command::Run { .. }));
        let off = Cli::try_parse_from([
            "meshlb-agent",
            "run",
            "--config-dir",
            "/etc/meshlb",
            "--metrics-listen",
            "off",
            "--grpc-listen",
            "unix:/run/meshlb.sock",
        ]);
        assert!(off.is_ok());
        assert!(Cli::try_parse_from(["meshlb-agent", "run", "--config-dir", "x", "--metrics-listen", "nope"]).is_err());
    }

    #[test]
    fn the_expected_cluster_is_explicit_or_the_seeds() {
        let at = |last: u8| SocketAddr::from(([192, 0, 2, last], 7947));
        let me = at(1);
        // Every node listed, this one included, one twice: three nodes.
        assert_eq!(
            expected_members(me, &[at(1), at(2), at(3), at(3)], None, false),
            Ok(Some(3))
        );
        assert_eq!(expected_members(me, &[at(2)], Some(5), false), Ok(Some(5)));
        let alone = expected_members(me, &[], None, false).unwrap_err().to_string();
        assert!(alone.contains("--cluster-size 1"), "{alone}");
        assert_eq!(expected_members(me, &[at(1)], Some(1), false), Ok(Some(1)));
        let small = expected_members(me, &[at(2), at(3)], Some(2), false)
            .unwrap_err()
            .to_string();
        assert!(small.contains("smaller than the 3 nodes"), "{small}");
        assert!(expected_members(me, &[], Some(0), false).is_err());
        // In a cluster, nothing given: the API server's Nodes say.
        assert_eq!(expected_members(me, &[], None, true), Ok(None));
        assert_eq!(expected_members(me, &[at(2)], None, true), Ok(Some(2)));
    }
}
