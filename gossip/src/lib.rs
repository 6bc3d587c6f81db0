//! # meshlb-gossip: the agents' mesh
//!
//! Place in the architecture: every `meshlb-agent` joins a SWIM mesh (driven by
//! `foca`) over authenticated, encrypted UDP. From the live membership and each
//! node's disseminated state, every node computes the same owner for each
//! service IP, without the Kubernetes API server.
//!
//! Status: empty. The foca driver, secure transport and ownership logic arrive
//! with the gossip-mesh issue.
