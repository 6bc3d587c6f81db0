//! Layer 2 mode: answering ARP and NDP for the service IPs this node owns.
//!
//! [`plan`] is the policy: from the running configuration, health and link
//! state to what this node tells the mesh and where each address is
//! answered (pure). [`responder`] is the sans-IO core of answering (what to
//! answer and announce, when); [`socket`] owns the raw frame socket and
//! multicast memberships of one interface; [`links`] reads every
//! interface's link state, in one place. The actors are thin glue around
//! them:
//! - [`interface::InterfaceActor`], one per interface, answers for the
//!   addresses claimed on it;
//! - [`service::ServiceActor`], one per service, claims the addresses this
//!   node owns on the interfaces whose link is up;
//! - [`membership::MembershipActor`] tells the service actors what the
//!   mesh's ownership decision gives this node.
//!
//! The agent's Layer 2 glue applies the plan: it starts and places service
//! actors, and runs them, the interface actors and the link monitor on an
//! arbiter of their own.

pub mod interface;
pub mod links;
pub mod membership;
pub mod plan;
pub mod responder;
pub mod service;
pub mod socket;
