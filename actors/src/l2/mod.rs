//! Layer 2 mode: answering ARP and NDP for the service IPs this node owns.
//!
//! [`responder`] is the sans-IO core (what to answer and announce, when);
//! [`socket`] owns the raw frame socket and multicast memberships of one
//! interface. The actors are thin glue around them:
//! - [`interface::InterfaceActor`], one per interface, answers for the
//!   addresses claimed on it;
//! - [`service::ServiceActor`], one per service, claims the addresses this
//!   node owns on the interfaces whose link is up;
//! - [`membership::MembershipActor`] tells the service actors what the
//!   mesh's ownership decision gives this node.
//!
//! The agent's configuration side starts and places service actors.

pub mod interface;
pub mod membership;
pub mod responder;
pub mod service;
pub mod socket;
