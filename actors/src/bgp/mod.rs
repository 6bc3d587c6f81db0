//! BGP mode: announcing service addresses to routers.
//!
//! [`session`] is the sans-IO core of one BGP session (RFC 4271's finite
//! state machine with its timers, OPEN negotiation and checks); the
//! per-peer actor owning the TCP socket, the outgoing RIB (assignments to
//! UPDATE diffs) and graceful restart come around it, in the shape of
//! Layer 2 ([`crate::l2`]): pure cores, thin actors.

pub mod session;
