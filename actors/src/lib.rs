//! # meshlb-actors: the agent's actors
//!
//! Place in the architecture: thin actors (one per service, per BGP peer, per
//! network interface, plus membership and configuration) that own sockets and
//! timers and pass messages to the sans-IO cores in `meshlb-wire` and
//! `meshlb-gossip`. Protocol logic does not live here.
//!
//! Status: empty. The actors arrive with the Layer 2 issue.
