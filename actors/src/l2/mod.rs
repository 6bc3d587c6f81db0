//! Layer 2 mode: answering ARP and NDP for the service IPs this node owns.
//!
//! [`responder`] is the sans-IO core (what to answer and announce, when);
//! [`socket`] owns the raw frame socket and multicast memberships of one
//! interface; [`interface`] is the glue that runs one against the other.

pub mod interface;
pub mod responder;
pub mod socket;
