//! Layer 2 mode: answering ARP and NDP for the service IPs this node owns.
//!
//! [`plan`] is the policy: from the running configuration, health and link
//! state to what this node tells the mesh and where each address is
//! answered (pure). [`responder`] is the sans-IO core of answering (what to
//! answer and announce, when); [`socket`] owns the raw frame socket and
//! multicast memberships of one interface; [`links`] reads every
//! interface's link state, in one place. The actors are thin glue around
//! them:
//! - [`applier::Layer2Applier`] follows the plan and the mesh's ownership
//!   decision and gives each interface its whole address set;
//! - [`interface::InterfaceActor`], one per interface, answers for the
//!   set it was given.
//!
//! The agent's Layer 2 glue makes the plan and hands it to the applier;
//! the applier and the interface actors run on an arbiter of their own.

pub mod applier;
pub mod interface;
pub mod links;
pub mod plan;
pub mod responder;
pub mod socket;
