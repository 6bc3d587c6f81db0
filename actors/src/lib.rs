//! # meshlb-actors: the agent's actors
//!
//! Place in the architecture: each protocol's policy and its thin actors.
//! The policy is pure (the Layer 2 plan, [`l2::plan`]; BGP's,
//! [`bgp::plan`]); the actors (one per BGP peer and per network interface,
//! the BGP listener and BFD) own sockets and timers and pass messages to
//! the sans-IO cores here and in `meshlb-wire` and `meshlb-gossip`, and one
//! applier per mode keeps them in step with its plan. The agent
//! (`meshlb-node-agent`) only starts them and connects them to its sources,
//! mesh and status; the answering actors run on an arbiter of their own.
//!
//! Status: Layer 2 mode ([`l2`]): plan, link state, responder, the applier
//! and interface actors on actix, run by the agent and tested
//! against real clients in the lab. BGP ([`bgp`]): plan, session core with
//! collision handling, outgoing RIB, peer actor, listener and applier; BFD
//! ([`bfd`]): session core and actor; lab-tested against bird2, FRR and
//! gobgpd.

pub mod bfd;
pub mod bgp;
pub mod eligibility;
mod error;
pub mod l2;
pub mod netlink;

pub use error::ActorError;

/// Now, on tokio's clock (the mesh's, [`meshlb_gossip::now`]): what the
/// actors give the sans-IO cores as their time.
pub use meshlb_gossip::now;
