//! # meshlb-actors: the agent's actors
//!
//! Place in the architecture: each protocol's policy and its thin actors.
//! The policy is pure (the Layer 2 plan, [`l2::plan`]; BGP's,
//! [`bgp::plan`]); the actors (one per BGP peer and per network interface,
//! the Layer 2 applier, the BGP listener and BFD) own sockets and timers
//! and pass messages to the sans-IO cores here and in `meshlb-wire` and
//! `meshlb-gossip`. The
//! agent (`meshlb-node-agent`) only wires them together and applies what
//! the policy decides; the answering actors run on an arbiter of their own.
//!
//! Status: Layer 2 mode ([`l2`]): plan, link state, responder, the applier
//! and interface actors on actix, run by the agent and tested
//! against real clients in the lab. BGP ([`bgp`]): plan, session core with
//! collision handling, outgoing RIB, peer actor and listener; BFD
//! ([`bfd`]): session core and actor; lab-tested against bird2, FRR and
//! gobgpd.

pub mod bfd;
pub mod bgp;
pub mod eligibility;
mod error;
pub mod l2;
pub mod netlink;

pub use error::ActorError;
