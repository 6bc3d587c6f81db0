//! # meshlb-agent: the per-node daemon
//!
//! Place in the architecture: the binary every node runs (a DaemonSet in
//! Kubernetes, a plain daemon in standalone mode). It reads configuration
//! (a directory of YAML files today; the Kubernetes API later), turns it into
//! addresses with `meshlb-config`, and will start the actors of
//! `meshlb-actors`, join the gossip mesh of `meshlb-gossip`, and serve gRPC
//! introspection and Prometheus metrics.
//!
//! | module | what |
//! |---|---|
//! | [`file_source`] | reads a configuration directory; watches it for changes |
//! | [`state_file`] | remembers assignments across restarts in standalone mode |
//! | [`standalone`] | the standalone loop: read, validate, allocate, keep the last good |
//! | [`health`] | runs the local health probes services declare |
//! | [`mesh`] | joins the gossip mesh, publishes this node's record, reports membership |
//! | [`layer2`] | Layer 2 mode: what this node serves, what each interface answers for |
//! | [`local_address`] | service addresses on loopback, kernel kept from answering ARP for them |

pub mod file_source;
pub mod health;
pub mod layer2;
pub mod local_address;
pub mod mesh;
pub mod standalone;
pub mod state_file;

use std::path::PathBuf;

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
    #[error("{path}: {message}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The gossip mesh could not start.
    #[error("gossip mesh: {0}")]
    Mesh(#[from] meshlb_gossip::driver::DriverError),
    /// A task of the agent ended abnormally.
    #[error("task failed: {0}")]
    Task(String),
    /// The state file is not what the agent writes.
    #[error("{path}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
