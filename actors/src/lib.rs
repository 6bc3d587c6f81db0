//! # meshlb-actors: the agent's actors
//!
//! Place in the architecture: thin actors (one per service, per BGP peer, per
//! network interface, plus membership and configuration) that own sockets and
//! timers and pass messages to the sans-IO cores in `meshlb-wire` and
//! `meshlb-gossip`. Protocol logic does not live here, except for the small
//! sans-IO core of Layer 2 answering ([`l2::responder`]), which has no other
//! home: it is neither a codec nor gossip.
//!
//! Status: Layer 2 mode ([`l2`]): interface, service and membership actors
//! on actix, run by the agent and tested against real clients in the lab.
//! BGP peer actors come with BGP mode.

mod error;
pub mod l2;

pub use error::ActorError;
