//! BFD (RFC 5880, single hop RFC 5881, multihop RFC 5883): fast detection
//! of a failed path to a BGP peer, so the BGP session goes down in about a
//! second instead of at the hold time.
//!
//! [`session`] is one session's sans-IO core (asynchronous mode and the
//! Echo function); [`actor::BfdActor`], one per agent, owns the UDP
//! sockets, runs a core per peer with a bfdProfile and tells the peer's
//! BGP actor when its session goes down; [`echo_path`] finds where a
//! session's Echo packets go and sends them.

pub mod actor;
pub mod echo_path;
pub mod session;
