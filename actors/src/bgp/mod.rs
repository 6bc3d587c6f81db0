//! BGP mode: announcing service addresses to routers.
//!
//! [`plan`] is the policy: from the running configuration to this node's
//! peers and the routes each should have (pure); [`session`] is the
//! sans-IO core of one BGP session (RFC 4271's finite state machine with
//! its timers, OPEN negotiation and checks); [`rib_out`] turns the routes
//! wanted for a peer into UPDATE diffs; [`socket`] sets the connection's
//! TCP MD5 key and TTL security; [`peer::PeerActor`], one per peer, owns
//! the TCP connection and runs a session and its RIB against it. Graceful
//! restart and the agent's glue come next, in the shape of Layer 2
//! ([`crate::l2`]): pure cores, thin actors.

pub mod peer;
pub mod plan;
pub mod rib_out;
pub mod session;
pub mod socket;
