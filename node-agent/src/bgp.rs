//! BGP mode in the agent: starts the BGP applier
//! ([`meshlb_actors::bgp::applier`]) and connects it to the agent. The
//! applier makes the BGP plan ([`meshlb_actors::bgp::plan`]) from the
//! running state ([`crate::running`], the pipeline's watch) and this node
//! ([`NodeOptions`]) whenever either changes, and keeps the peers, the
//! listener, BFD and Router Discovery in step with it; what it reports
//! (the peers' and BFD sessions' status) goes to the hub, what it needs
//! delivered to [`Delivery`], what it announces to the mesh.
//!
//! Every node that may announce a Service does; the router spreads traffic
//! over them (ECMP). It starts with the mesh (`--gossip-bind`), whose node
//! name and labels it plans with. Standalone, the addresses this node
//! announces get local routes ([`Delivery`], shared with Layer 2), so it
//! accepts the traffic the router sends it. A stop ([`Stop`]) is a
//! graceful restart (the addresses stay delivered for the successor:
//! [`crate::remembered::RestartRecord`]) or a drain that loses no traffic.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, ArbiterHandle};
pub use meshlb_actors::bgp::applier::Stop;
use meshlb_actors::bgp::applier::{BgpApplier, BgpApplierInputs};
use meshlb_actors::bgp::plan::plan;
use meshlb_gossip::driver::{Command, MeshStatus};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::WatchStream;

use crate::local_address::Delivery;
use crate::node::NodeOptions;
use crate::running::RunningState;
use crate::status::StatusHub;

/// What BGP mode works with.
#[derive(Debug, Clone)]
pub struct BgpInputs {
    /// This node's IPv4 address if it has one: the BGP identifier of the
    /// peers that set none (as MetalLB derives it).
    pub router_id: Option<Ipv4Addr>,
    /// Peers' connections are taken on this port (0: none) once there is a
    /// peer.
    pub listen_port: u16,
    /// What the pipeline decided: the plan is made from it.
    pub running: watch::Receiver<Arc<RunningState>>,
    /// Where the peers' and BFD sessions' status is published.
    pub hub: StatusHub,
    /// Where the peers and the listener run.
    pub answering: ArbiterHandle,
    /// The owner of the service addresses' delivery: told what this node
    /// announces, so it accepts the traffic (standalone), and telling
    /// which addresses it delivers.
    pub delivery: Delivery,
    /// The mesh: this node's record says what it announces over BGP.
    pub mesh: mpsc::Sender<Command>,
    /// The mesh's status: the others' records say what they announce (a
    /// drain waits for them).
    pub mesh_status: watch::Receiver<MeshStatus>,
    /// How long a drain waits for other nodes to announce this node's
    /// addresses before withdrawing them anyway (zero: no wait).
    pub drain_timeout: Duration,
    /// Whether this start is a graceful restart (see
    /// [`meshlb_actors::bgp::peering::NodeFacts`]).
    pub restarted: bool,
}

/// Starts BGP mode for the node of `options` (inside an actix system, on
/// the control thread: the plan is made there).
pub fn start(options: NodeOptions, inputs: BgpInputs) -> Addr<BgpApplier> {
    let BgpInputs {
        router_id,
        listen_port,
        running,
        hub,
        answering,
        delivery,
        mesh,
        mesh_status,
        drain_timeout,
        restarted,
    } = inputs;
    let replan = Box::pin(WatchStream::from_changes(running.clone()).map(|_| ()));
    let (bgp_hub, bfd_hub) = (hub.clone(), hub);
    BgpApplier::start(BgpApplierInputs {
        node: options.node.clone(),
        plan: Box::new(move |facts| {
            let running = Arc::clone(&running.borrow());
            if running.generation == 0 {
                return None;
            }
            let (input, node) = options.plan_inputs(&running);
            Some(plan(input, node, facts))
        }),
        replan,
        router_id,
        restarted,
        listen_port,
        answering,
        deliverable: delivery.deliverable(),
        deliver: Box::new(move |needed: BTreeSet<IpAddr>| delivery.set_bgp(needed)),
        mesh,
        mesh_status,
        drain_timeout,
        report: Box::new(move |status| bgp_hub.bgp().publish(status)),
        report_bfd: Arc::new(move |sessions| bfd_hub.bfd().publish(sessions)),
    })
}

/// This node's IPv4 address for the BGP identifier: the gossip address's
/// when it is IPv4.
pub fn router_id_from(bind: SocketAddr) -> Option<Ipv4Addr> {
    match bind.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    }
}
