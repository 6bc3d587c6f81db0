//! # meshlb-chaos: the lab
//!
//! Place in the architecture: the instrument every feature is proven and
//! measured with (the `meshlb-lab` binary and the library its tests use).
//! It builds hosts as Linux network namespaces joined by veth pairs and a
//! bridge ([`lab`]), runs real third-party software in them (keepalived;
//! bird2, FRR and gobgpd as routers in [`router`]; gobgpd as a speaker in
//! [`speaker`]; serf in [`serf`]; meshlb's own agents in [`agent`]), injects faults (process signals, link state, isolation,
//! partitions, loss, router restarts), and observes the result from a client
//! ([`probe`]), from the segment ([`splitbrain`]) and from the router's RIB
//! and kernel FIB ([`router`]), and from any host's kernel as it changes
//! ([`kernel_watch`]). [`kube_env`] runs a real Kubernetes API
//! server (with etcd) for tests, on loopback or on a lab's control-plane
//! host; [`kube_bench`] measures allocation against it, and
//! [`kube_demo`] is the README's demo, with the Helm chart. [`cluster`]
//! makes a lab's nodes real Kubernetes nodes (containerd, kubelet and
//! kube-proxy on each, the scheduler and the controller manager beside
//! the API server), where MetalLB runs from its own artifacts
//! ([`metallb`]), [`kube_failover`] measures Layer 2 failover of meshlb
//! beside MetalLB, and [`migration`] moves a cluster from MetalLB to
//! meshlb as the README says. [`placement_bench`] measures where several
//! addresses per Service land over node churn, against Deckhouse's rule;
//! [`watch_bench`] measures the owner watch's failover, false failovers
//! and bytes on virtual time, at sizes beyond a lab, [`mesh_scale_bench`]
//! what the mesh costs with many members and many services, and [`soak`]
//! counts false failovers of live agents under loss and CPU starvation.
//!
//! Labs never touch the root namespace's addresses or routes, carry a
//! per-process name prefix so parallel runs do not collide, and are torn
//! down on drop, on panic, on SIGINT/SIGTERM (in the binary) and by
//! `meshlb-lab sweep` after a crash.
//!
//! This kernel has no `sch_netem`, `dummy` or `matchall`: loss is applied
//! with nftables on the bridge (`numgen random`), delay and reordering by a
//! userspace delayer on NFQUEUE ([`delay`]).

pub mod agent;
pub mod bench;
pub mod cluster;
pub mod delay;
mod error;
pub mod gossip_bench;
pub mod ipam_bench;
pub mod keepalived;
pub mod kernel_watch;
pub mod kube_bench;
pub mod kube_demo;
pub mod kube_env;
pub mod kube_failover;
pub mod lab;
pub mod mesh_scale_bench;
pub mod metallb;
pub mod migration;
pub mod mrt;
pub mod netns;
pub mod placement_bench;
pub mod plot;
pub mod probe;
mod random;
pub mod router;
pub mod scenario;
pub mod serf;
pub mod soak;
pub mod speaker;
pub mod splitbrain;
pub mod wait;
pub mod watch_bench;

pub use error::LabError;
pub use lab::{Host, Lab, LabProcess, LabSpec, ROUTER_LINK, Role};
