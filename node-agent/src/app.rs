//! The agent's life: what starts in which order, and the order things stop
//! in. `main.rs` only turns the command line into [`RunOptions`].
//!
//! Startup, in order:
//! 1. the pipeline, with the assignments remembered in the state directory
//!    (a state file that does not parse stops the agent here: starting
//!    without it could hand a running service's address to another);
//! 2. the configuration source: the directory (read at once and watched),
//!    or the API server (listed, then watched);
//! 3. with `--gossip-bind`: the answering arbiter (a thread of its own,
//!    see below) with the link monitor, the gossip mesh on it, then Layer 2
//!    (the glue actor, which starts interface and service actors there as
//!    the configuration asks);
//! 4. the status files, the introspection API and the metrics, from the
//!    hub; in a
//!    cluster, the ConfigurationState
//!    and ServiceL2Status writers and the allocator candidate (it
//!    allocates while it holds the allocator Lease);
//! 5. the pipeline runs until SIGTERM or SIGINT.
//!
//! Two threads of actors: the control thread (this one: the pipeline, the
//! Layer 2 and BGP glue, the status files, Kubernetes, the gRPC API, the
//! metrics) and the answering arbiter (the gossip driver, the link monitor,
//! the service, membership and interface actors; the BGP listener, peers,
//! unnumbered discovery and BFD). A relist, a burst of
//! updates or a slow reader on the control thread never delays an ARP
//! answer or a gossip probe. Configuration parsing and allocation run on
//! blocking threads besides.
//!
//! Shutdown, in order: the allocator gives its Lease up; the mesh hands
//! this node's addresses over (its record says it is leaving, its
//! successors start announcing while it still does) and leaves; then Layer 2 goes quiet (service actors
//! withdraw, interface actors stop answering) and the service addresses'
//! local routes go; then the answering arbiter stops. Each step is bounded, so a stuck
//! component does not hold up exit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::Arbiter;
use meshlb_actors::l2::links::{self, LinkReader};
use meshlb_config::service::ClassFilter;
use meshlb_config::{AddressSource, ServiceOutcome};

use crate::KubeClientError;
use crate::layer2::{self, Layer2Actor, Layer2Inputs};
use crate::local_address::Delivery;
use crate::mesh::{AgentMesh, MeshOptions};
use crate::node::NodeOptions;
use crate::pipeline::{Pipeline, Reload};
use crate::running::Decisions;
use crate::sources::files::{FileSource, ReadLimits};
use crate::sources::kubernetes::allocator::{self, AllocatorOptions};
use crate::sources::kubernetes::{KubernetesSource, cluster_keys, config_state, permissions, service_status};
use crate::status::StatusHub;
use crate::{AgentError, remembered, status_files};
use tokio::sync::watch;

/// Where the configuration comes from.
#[derive(Debug)]
pub enum SourceOptions {
    /// Standalone: a directory of YAML files.
    Files {
        /// The configuration directory.
        dir: PathBuf,
        /// How often the directory is re-read without a change event.
        resync: Duration,
        /// Bounds on the configuration files.
        limits: ReadLimits,
    },
    /// A cluster: the API server.
    Kubernetes {
        /// A kubeconfig file; none: the in-cluster configuration (or
        /// `$KUBECONFIG`).
        kubeconfig: Option<PathBuf>,
        /// The namespace of the metallb.io objects.
        namespace: String,
        /// This node's name (its ConfigurationState, its name as an
        /// allocator candidate).
        node: String,
        /// The Lease allocating agents compete for; none: this one never
        /// allocates (it announces what the allocator writes).
        allocator_lease: Option<String>,
    },
}

/// Everything `meshlb-agent run` needs.
#[derive(Debug)]
pub struct RunOptions {
    /// Where the configuration comes from.
    pub source: SourceOptions,
    /// Where assignments and status files are kept.
    pub state_dir: PathBuf,
    /// The loadBalancerClasses served.
    pub classes: ClassFilter,
    /// How long a configuration that withdraws everything is held.
    pub hold_withdraw_all: Duration,
    /// How long a Service keeps addresses no pool covers any more.
    pub hold_orphaned: Duration,
    /// The mesh and Layer 2, when `--gossip-bind` is given.
    pub mesh: Option<(MeshOptions, NodeOptions)>,
    /// The port BGP peers connect to (0: none; it is bound once a BGPPeer
    /// selects this node).
    pub bgp_listen_port: u16,
    /// How long a stopping agent waits for other nodes to announce its
    /// BGP addresses before withdrawing them.
    pub bgp_drain_timeout: Duration,
    /// Where the introspection API listens.
    pub grpc_listen: crate::introspection::Listen,
    /// Where the Prometheus metrics are served, if anywhere.
    pub metrics_listen: crate::metrics::Listen,
}

/// How long each shutdown step may take.
const SHUTDOWN_STEP: Duration = Duration::from_secs(5);

/// Runs the agent until SIGTERM or SIGINT (see the module documentation).
pub fn run(options: RunOptions) -> Result<(), AgentError> {
    actor_system()?.block_on(async move {
        let RunOptions {
            source,
            state_dir,
            classes,
            hold_withdraw_all,
            hold_orphaned,
            mesh,
            bgp_listen_port,
            bgp_drain_timeout,
            grpc_listen,
            metrics_listen,
        } = options;
        std::fs::create_dir_all(&state_dir).map_err(|source| AgentError::Io {
            path: state_dir.clone(),
            source,
        })?;
        let decisions = Decisions::default();
        let hub = StatusHub::mirroring(&decisions);
        // A cluster's Services have EndpointSlices: one without any has no
        // ready endpoint, and is not announced (MetalLB's rule).
        let in_cluster = matches!(source, SourceOptions::Kubernetes { .. });
        let mesh = mesh.map(|(options, layer2)| {
            (
                options,
                NodeOptions {
                    require_endpoints: in_cluster,
                    ..layer2
                },
            )
        });
        let (stop_allocator, allocator_stopped) = watch::channel(false);
        let mut allocator = None;
        // The cluster keys, when a Secret holds them: written to the key
        // file before the mesh starts.
        let mut keys_written = None;
        let (pipeline, source) = match source {
            SourceOptions::Files { dir, resync, limits } => {
                // Standalone agents allocate, and remember what they gave.
                let pipeline = Pipeline::new(Some(&state_dir.join("assignments.yaml")), classes)?;
                tracing::info!(config_dir = %dir.display(), "meshlb-agent standalone");
                (pipeline, FileSource::new(&dir, limits).spawn(resync)?)
            }
            SourceOptions::Kubernetes {
                kubeconfig,
                namespace,
                node,
                allocator_lease,
            } => {
                // In a cluster, Service status is the record of what each
                // service holds; one agent at a time writes it.
                let pipeline = Pipeline::new(None, classes.clone())?.taking_addresses_from(AddressSource::Status);
                let client = kube_client(kubeconfig.as_deref()).await?;
                tracing::info!(%namespace, "meshlb-agent in Kubernetes");
                tokio::spawn(permissions::check(
                    client.clone(),
                    namespace.clone(),
                    allocator_lease
                        .clone()
                        .unwrap_or_else(|| allocator::LEASE_NAME.to_owned()),
                ));
                tokio::spawn(config_state::run(
                    client.clone(),
                    namespace.clone(),
                    node.clone(),
                    hub.config().watch(),
                    hub.source().watch(),
                ));
                if let Some((options, _)) = &mesh
                    && let Some(secret) = &options.key_secret
                {
                    keys_written = Some(cluster_keys::follow(
                        client.clone(),
                        &namespace,
                        secret,
                        options.key_file.clone(),
                    ));
                }
                tokio::spawn(service_status::run_layer2(
                    client.clone(),
                    namespace.clone(),
                    node.clone(),
                    hub.layer2().watch(),
                    hub.mesh().watch(),
                ));
                tokio::spawn(service_status::run_bgp(
                    client.clone(),
                    namespace.clone(),
                    node.clone(),
                    hub.bgp().watch(),
                    hub.running().watch(),
                    hub.mesh().watch(),
                ));
                if let Some(lease_name) = allocator_lease {
                    let options = AllocatorOptions {
                        lease_name,
                        hold_orphaned,
                        ..AllocatorOptions::new(namespace.clone(), node, classes)
                    };
                    allocator = Some(tokio::spawn(allocator::run(
                        client.clone(),
                        options,
                        decisions.running(),
                        hub.pools().watch(),
                        allocator_stopped,
                    )));
                }
                (pipeline, KubernetesSource::new(client, namespace).spawn())
            }
        };
        let pipeline = pipeline
            .holding_withdrawals_for(hold_withdraw_all)
            .holding_orphaned_addresses_for(hold_orphaned);
        let status_files = status_files::spawn(hub.clone(), state_dir.clone());
        let introspection = crate::introspection::spawn(hub.clone(), &grpc_listen).await?;
        let metrics = crate::metrics::spawn(hub.clone(), &metrics_listen);
        let mut announcing = None;
        if let Some((options, node_options)) = mesh {
            let answering = Arbiter::new();
            let (links_tx, links) = watch::channel(LinkReader::default().read());
            answering.spawn(links::monitor(links_tx));
            if let Some(mut written) = keys_written {
                tracing::info!("waiting for the cluster keys from their Secret");
                if written.wait_for(|w| *w).await.is_err() {
                    return Err(AgentError::Stopped("the cluster key Secret follower"));
                }
            }
            // In a cluster the Nodes name this node's labels, and without
            // --join nor --cluster-size the seeds and the cluster size.
            let follow = in_cluster.then(|| (options.node.clone(), options.bind, options.expected_members.is_none()));
            let gossip_bind = options.bind;
            let stall_bound = Duration::from_millis(options.profile.stall_ms());
            let mesh = AgentMesh::start(options, hub.clone(), &answering.handle()).await?;
            if let Some((node, bind, bootstrap)) = follow {
                tokio::spawn(crate::mesh::follow_nodes(
                    node,
                    bind,
                    bootstrap,
                    decisions.nodes(),
                    mesh.commands(),
                ));
            }
            // A predecessor's graceful restart: its addresses are adopted,
            // and a start within the restart time is announced as one.
            let restart_record = state_dir.join(remembered::RESTART_RECORD_FILE);
            let predecessor = remembered::take_restart(&restart_record).unwrap_or_else(|e| {
                tracing::warn!("{e}; starting afresh");
                None
            });
            let restarted = predecessor.as_ref().is_some_and(|r| {
                r.restarts_at(std::time::SystemTime::now(), meshlb_actors::bgp::peering::RESTART_TIME)
            });
            if restarted {
                tracing::info!("a BGP graceful restart: the peers hold this node's routes");
            }
            // Loopback addresses change through `ip`, awaited off the actors.
            let (delivery, delivery_task) = Delivery::start(
                node_options.local_addresses,
                predecessor.map(|r| r.addresses).unwrap_or_default(),
            );
            let bgp = crate::bgp::start(
                node_options.clone(),
                crate::bgp::BgpInputs {
                    running: decisions.running(),
                    router_id: crate::bgp::router_id_from(gossip_bind),
                    listen_port: bgp_listen_port,
                    hub: hub.clone(),
                    answering: answering.handle(),
                    delivery: delivery.clone(),
                    mesh: mesh.commands(),
                    mesh_status: mesh.status(),
                    drain_timeout: bgp_drain_timeout,
                    restarted,
                },
            );
            let interfaces =
                layer2::open_interfaces(node_options.schedule.clone(), stall_bound, links.clone(), hub.clone());
            let layer2 = Layer2Actor::start(
                node_options,
                Layer2Inputs {
                    running: decisions.running(),
                    hub: hub.clone(),
                    mesh: mesh.commands(),
                    owned: mesh.owned_addresses(),
                    links,
                    answering: answering.handle(),
                    interfaces,
                    delivery: delivery.clone(),
                },
            );
            announcing = Some((answering, mesh, layer2, bgp, delivery, delivery_task));
        } else {
            tracing::warn!("no --gossip-bind: nothing is announced");
        }
        let result = pipeline.run(source, shutdown_signal(), hub.clone(), decisions).await;
        if let Some(allocator) = allocator {
            // It gives the Lease up, so another agent allocates at once.
            let _ = stop_allocator.send(true);
            let _ = tokio::time::timeout(SHUTDOWN_STEP, allocator).await;
        }
        if let Some((answering, mesh, layer2, bgp, delivery, delivery_task)) = announcing {
            // BGP drains (the others announce, then this node withdraws
            // and ceases), but for peers helping with a graceful restart,
            // which keep the routes while the node keeps the addresses.
            // A drain waits for the others, then lingers after withdrawing.
            let drain = bgp_drain_timeout + meshlb_actors::bgp::drain::WITHDRAW_LINGER + SHUTDOWN_STEP;
            let kept = match tokio::time::timeout(drain, bgp.send(crate::bgp::Stop)).await {
                Ok(Ok(kept)) => kept,
                _ => Default::default(),
            };
            mesh.leave().await;
            let _ = tokio::time::timeout(SHUTDOWN_STEP, layer2.send(layer2::Stop)).await;
            if !kept.is_empty() {
                let record = remembered::RestartRecord::now(kept.clone());
                match remembered::save_restart(&state_dir.join(remembered::RESTART_RECORD_FILE), &record) {
                    Ok(()) => tracing::info!(
                        addresses = kept.len(),
                        "stopped for a BGP graceful restart: the addresses stay delivered"
                    ),
                    Err(e) => tracing::warn!("{e}: the next start will not adopt the addresses left"),
                }
            }
            delivery.close(kept);
            let _ = tokio::time::timeout(SHUTDOWN_STEP, delivery_task).await;
            answering.stop();
            let joined = tokio::task::spawn_blocking(move || answering.join());
            let _ = tokio::time::timeout(SHUTDOWN_STEP, joined).await;
        }
        status_files.abort();
        for task in [introspection, metrics].into_iter().flatten() {
            task.abort();
        }
        result
    })
}

/// A client from `kubeconfig`, or from the in-cluster configuration (or
/// `$KUBECONFIG`) when none is given, as kubectl would find one.
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, KubeClientError> {
    let unusable = |source| KubeClientError::Kubeconfig {
        path: kubeconfig.map(Path::to_path_buf).unwrap_or_default(),
        source,
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(unusable)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(unusable)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// What `meshlb-agent check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// Lines to print.
    pub lines: Vec<String>,
    /// Whether the configuration is valid and every service got addresses.
    pub ok: bool,
    /// Whether the configuration was rejected.
    pub rejected: bool,
}

/// Reads `dir` once as the agent would and says what it would assign.
pub fn check(dir: &Path, classes: ClassFilter) -> Result<CheckReport, AgentError> {
    let mut source = FileSource::new(dir, ReadLimits::default());
    let mut pipeline = Pipeline::new(None, classes)?;
    let mut lines = Vec::new();
    let reload = source
        .read()
        .map(|update| pipeline.offer(update, std::time::Instant::now()));
    if let Some(Reload::Rejected(rejected)) = &reload {
        lines.extend(rejected.errors.iter().map(|e| format!("error: {e}")));
        lines.push(format!("{} error(s); configuration rejected", rejected.errors.len()));
        return Ok(CheckReport {
            lines,
            ok: false,
            rejected: true,
        });
    }
    let Some(inventory) = pipeline.store().active() else {
        return Err(AgentError::SourceStopped);
    };
    let config = &inventory.config;
    lines.push(format!(
        "configuration valid: {} pools, {} L2Advertisements, {} BGPAdvertisements, {} BGPPeers, {} BFDProfiles, \
         {} community aliases, {} L2Policies, {} MetalLoadBalancerClasses, {} services",
        config.pools.len(),
        config.l2_advertisements.len(),
        config.bgp_advertisements.len(),
        config.bgp_peers.len(),
        config.bfd_profiles.len(),
        config.communities.len(),
        config.l2_policies.len(),
        config.classes.len(),
        inventory.services.len()
    ));
    let mut ok = true;
    for (key, outcome) in pipeline.outcomes() {
        ok &= matches!(**outcome, ServiceOutcome::Assigned(_));
        lines.push(format!("service {key}: {outcome}"));
    }
    for (pool, c) in pipeline.reconciler().allocator().counters() {
        lines.push(format!(
            "pool {pool}: IPv4 {}/{} in use, IPv6 {}/{} in use",
            c.v4.in_use, c.v4.total, c.v6.in_use, c.v6.total
        ));
    }
    Ok(CheckReport {
        lines,
        ok,
        rejected: false,
    })
}

/// Answers ARP and NDP for fixed `addresses` on `interface` until SIGTERM
/// or SIGINT (no mesh, no configuration: a diagnostic, and the lab's probe
/// of the answering path).
pub fn announce(
    interface: &str,
    addresses: Vec<std::net::IpAddr>,
    refresh: Option<std::time::Duration>,
) -> Result<(), AgentError> {
    use meshlb_actors::l2::interface::{AnnouncerStatus, Answer, InterfaceActor, Shutdown};
    use meshlb_actors::l2::responder::AnnounceSchedule;
    actor_system()?.block_on(async move {
        let (status_tx, status) = watch::channel(AnnouncerStatus::default());
        let schedule = AnnounceSchedule {
            refresh,
            ..AnnounceSchedule::default()
        };
        let (links_tx, links) = watch::channel(LinkReader::default().read());
        let monitor = tokio::task::spawn_local(links::monitor(links_tx));
        let actor = InterfaceActor::open(interface, schedule, status_tx, links)?.start();
        actor.do_send(Answer {
            addresses: addresses.into_iter().collect(),
            resync: None,
        });
        shutdown_signal().await;
        let _ = actor.send(Shutdown).await;
        monitor.abort();
        let last = status.borrow().clone();
        tracing::info!(link_up = last.link_up, stats = ?last.stats, "stopped answering");
        Ok(())
    })
}

/// The actors' system: a tokio current-thread runtime (timers, sockets,
/// signals, child processes) with actix's local task set.
fn actor_system() -> Result<actix_rt::SystemRunner, AgentError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    Ok(actix_rt::System::with_tokio_rt(move || runtime))
}

/// Completes on SIGTERM or SIGINT.
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
