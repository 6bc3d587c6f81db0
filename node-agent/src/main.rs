//! # meshlb-agent: the per-node daemon
//!
//! Place in the architecture: the binary every node runs (a DaemonSet in
//! Kubernetes, a plain daemon in standalone mode). It reads configuration
//! (Kubernetes or a directory of YAML files), starts the actors of
//! `meshlb-actors`, joins the gossip mesh of `meshlb-gossip`, and serves gRPC
//! introspection and Prometheus metrics.
//!
//! Status: the agent is not built yet; this binary only reports that, so
//! that nobody mistakes it for a working load balancer.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "meshlb-agent {}: not implemented yet (see README.md, 'What works today')",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
