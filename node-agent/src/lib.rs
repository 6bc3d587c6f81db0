//! # meshlb-agent: the per-node daemon
//!
//! Place in the architecture: the composition root every node runs (a
//! DaemonSet in Kubernetes, a plain daemon in standalone mode), and thin on
//! purpose. Configuration comes from a source ([`sources`]: a directory of
//! YAML files, or the Kubernetes API) as a stream of snapshots; the
//! [`pipeline`] turns them into addresses with `meshlb-config`; the mesh of
//! `meshlb-gossip` decides who announces what; the actors of
//! `meshlb-actors` answer. What the pipeline decides reaches what acts on
//! it through [`running`]; every component publishes what it knows to the
//! [`status`] hub, which only the state files, the gRPC introspection API
//! ([`introspection`]), the Prometheus metrics ([`metrics`]) and the
//! Kubernetes status writers read. Protocol policy lives with its
//! protocol, not here.
//!
//! | module | what |
//! |---|---|
//! | [`app`] | startup and the shutdown order; `check` and `announce` |
//! | [`migrate`] | `migrate --from-metallb`: takes a cluster over from MetalLB, keeping every object and address |
//! | [`sources`] | configuration sources: a stream of snapshots and rejections ([`sources::files`]: a directory; [`sources::kubernetes`]: the API server, and what the agents write back) |
//! | [`pipeline`] | takes any source's updates: validate, allocate, keep the last good, publish |
//! | [`running`] | what the pipeline decides, for what acts on it: the running state both modes and the allocator follow, the Nodes the mesh follows |
//! | [`status`] | the status hub: every component's snapshots, read by the state files, the gRPC API and the metrics |
//! | [`status_files`] | the state directory's status files, written from the hub |
//! | [`introspection`] | the read-only gRPC API over the hub, with reflection and health |
//! | [`listen`] | where the API and the metrics listen (`host:port`, `unix:/path`, `off`) |
//! | [`metrics`] | Prometheus metrics sampled from the hub, MetalLB's names where they mean the same |
//! | [`remembered`] | what the agent remembers across restarts: assignments (standalone), a graceful restart's addresses |
//! | [`health`] | runs the local health probes services declare |
//! | [`mesh`] | joins the gossip mesh (its driver on the answering thread), key rotation, reports to the hub |
//! | [`node`] | this node as both modes plan with it: name, labels, how it serves |
//! | [`layer2`] | the glue that makes the Layer 2 plan and hands it to the Layer 2 applier of `meshlb-actors` |
//! | [`bgp`] | starts the BGP applier of `meshlb-actors` (peers, listener, BFD, Router Discovery, the drain) and connects it to the agent |
//! | [`local_address`] | service addresses (Layer 2's and BGP's) delivered by local routes, the kernel kept from answering ARP for them |

pub mod app;
pub mod bgp;
pub mod health;
pub mod introspection;
pub mod layer2;
pub mod listen;
pub mod local_address;
pub mod mesh;
pub mod metrics;
pub mod migrate;
pub mod node;
pub mod pipeline;
pub mod remembered;
pub mod running;
pub mod sources;
pub mod status;
pub mod status_files;

use std::path::PathBuf;

use meshlb_actors::now;

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory watcher failed.
    #[error("watching {path}: {source}")]
    Watch {
        /// The watched path.
        path: PathBuf,
        /// The cause.
        source: notify::Error,
    },
    /// The cluster key file is unreadable as a keyring.
    #[error("{path}: {problem}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        problem: KeyFileProblem,
    },
    /// The gossip mesh could not start.
    #[error("gossip mesh: {0}")]
    Mesh(#[from] meshlb_gossip::driver::DriverError),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// An actor could not start (an interface's socket, for one).
    #[error(transparent)]
    Actor(#[from] meshlb_actors::ActorError),
    /// The configuration source stopped producing updates.
    #[error("the configuration source stopped")]
    SourceStopped,
    /// A task of the agent panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A part of the agent another depends on has stopped.
    #[error("{0} has stopped")]
    Stopped(&'static str),
    /// The state file is not what the agent writes.
    #[error("{path}: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        source: serde_yaml_ng::Error,
    },
    /// The Kubernetes client could not be set up (kubeconfig, in-cluster
    /// configuration).
    #[error("Kubernetes client: {0}")]
    KubeClient(#[from] KubeClientError),
    /// The introspection API's reflection could not be built.
    #[error("introspection API: {0}")]
    Introspection(#[from] tonic_reflection::server::Error),
}

/// What is wrong with a cluster key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileProblem {
    /// A line is not a key.
    #[error("line {line}: {source}")]
    Line {
        /// The line number (from 1).
        line: usize,
        /// Why.
        source: meshlb_gossip::secure::KeyError,
    },
    /// No key in it.
    #[error("no cluster key")]
    Empty,
    /// The keys do not make a keyring.
    #[error(transparent)]
    Keyring(meshlb_gossip::secure::KeyError),
}

/// Why no Kubernetes client could be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    /// The kubeconfig given is unreadable or unusable.
    #[error("{path}: {source}")]
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No configuration found as kubectl would find it.
    #[error(transparent)]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error(transparent)]
    Client(#[from] kube::Error),
}
