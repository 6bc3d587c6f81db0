//! BGP mode: announcing service addresses to routers.
//!
//! [`plan`] is the policy: from the running configuration to this node's
//! peers, each one's session configuration and BFD session
//! ([`peering`]) and the routes each should have (pure); [`drain`] takes
//! a node stopping for good out of the routers' paths (RFC 8326, sans-IO);
//! [`session`] is the
//! sans-IO core of one BGP session (RFC 4271's finite state machine with
//! its timers, OPEN negotiation and checks); [`connections`] runs a
//! peer's session over the connection each side opens, resolving their
//! collision (sans-IO too); [`rib_out`] turns the routes wanted for a peer
//! into UPDATE diffs; [`socket`] sets the connection's TCP MD5 key and TTL
//! security; [`peer::PeerActor`], one per peer, owns the TCP connections
//! and runs the core and its RIB against them; [`listener`] takes the
//! connections peers open and hands each to its peer's actor;
//! [`unnumbered`] finds the peer of a session over an interface's
//! link-local addresses (Router Discovery, sans-IO core and actor). BFD, whose
//! failure takes a session down, is [`crate::bfd`]'s. [`applier`] keeps
//! all those actors in step with the plan and runs a stop. Pure cores,
//! thin actors, in the shape of Layer 2 ([`crate::l2`]).

pub mod applier;
pub mod connections;
pub mod drain;
pub mod listener;
pub mod peer;
pub mod peering;
pub mod plan;
pub mod rib_out;
pub mod session;
pub mod socket;
pub mod unnumbered;
