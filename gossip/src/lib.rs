//! # meshlb-gossip: the agents' mesh
//!
//! Place in the architecture: every `meshlb-agent` joins a SWIM mesh (driven by
//! `foca`) over authenticated, encrypted UDP. From the live membership and each
//! node's disseminated state, every node computes the same owner for each
//! service IP, without the Kubernetes API server.
//!
//! Everything here is sans-IO: the agent owns the socket and the clock and
//! feeds bytes and times in.
//!
//! | module | what |
//! |---|---|
//! | [`secure`] | the datagram envelope: XChaCha20-Poly1305, keyring, replay window |
//! | [`ownership`] | ranked owners per address (MetalLB's rendezvous hash, weights, groups, non-revertive), quorum fence |
//!
//! Still to come (issue 5): the foca driver, node state records, and the
//! simulation.

pub mod ownership;
pub mod secure;
